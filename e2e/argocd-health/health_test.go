// Package health runs the ListaCompraRelease health check of config/argocd in gopher-lua, the
// interpreter Argo CD uses, the way Argo CD runs a health script: a fresh state with only the
// base, table and package libraries, the resource as the global `obj` (a Lua table), and the
// script's return value (a table with `status` and `message`) as the health.
package health

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"gopkg.in/yaml.v3"
)

const (
	customizations = "../../config/argocd/resource_customizations/listacompra.app/ListaCompraRelease"
	configMap      = "../../config/argocd/argocd-cm.yaml"
	configMapKey   = "resource.customizations.health.listacompra.app_ListaCompraRelease"
)

// validStatuses are the health codes Argo CD accepts from a script; anything else it reports
// as Unknown ("Lua returned an invalid health status").
var validStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

type healthStatus struct {
	Status  string `yaml:"status"`
	Message string `yaml:"message"`
}

type testCase struct {
	HealthStatus healthStatus `yaml:"healthStatus"`
	InputPath    string       `yaml:"inputPath"`
}

// toLua converts a decoded YAML/JSON value into Lua values as Argo CD does: maps become
// tables keyed by string, lists become arrays (from 1), every number an LNumber.
func toLua(L *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case []interface{}:
		t := L.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(L, item))
		}
		return t
	case map[string]interface{}:
		t := L.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetString(key, toLua(L, item))
		}
		return t
	default:
		panic(fmt.Sprintf("unexpected YAML value %T", value))
	}
}

// runArgoLua runs script with obj as Argo CD runs its health and action scripts (a fresh
// state with only the package, base, table and a safe os library, the resource as the global
// `obj`, one second at most) and hands the table it returned to read.
func runArgoLua(script string, obj map[string]interface{}, read func(*lua.LTable) error) error {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage,
		lua.BaseLibName: lua.OpenBase,
		lua.TabLibName:  lua.OpenTable,
		lua.OsLibName:   openSafeOs,
	} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(open), NRet: 0, Protect: true}, lua.LString(name)); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return err
	}
	table, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return fmt.Errorf("the script returned %s, not a table", L.Get(-1).Type())
	}
	return read(table)
}

// openSafeOs is Argo CD's "safe" os library: time and date, nothing that touches the system.
func openSafeOs(L *lua.LState) int {
	lua.OpenOs(L)
	os := L.GetGlobal("os").(*lua.LTable)
	for _, unsafe := range []string{"execute", "exit", "getenv", "remove", "rename", "setenv", "setlocale", "tmpname"} {
		os.RawSetString(unsafe, lua.LNil)
	}
	return 0
}

// runHealth runs script against obj and returns the health it reports.
func runHealth(script string, obj map[string]interface{}) (healthStatus, error) {
	var out healthStatus
	err := runArgoLua(script, obj, func(table *lua.LTable) error {
		for key, field := range map[string]*string{"status": &out.Status, "message": &out.Message} {
			switch v := table.RawGetString(key).(type) {
			case lua.LString:
				*field = string(v)
			case *lua.LNilType:
			default:
				return fmt.Errorf("%s is a %s, not a string", key, v.Type())
			}
		}
		return nil
	})
	if err != nil {
		return healthStatus{}, err
	}
	if !validStatuses[out.Status] {
		return healthStatus{}, fmt.Errorf("invalid health status %q (Argo CD would show Unknown)", out.Status)
	}
	return out, nil
}

func readYAML(t *testing.T, path string, into interface{}) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

// scripts returns the health script as a file and as embedded in the argocd-cm snippet.
func scripts(t *testing.T) map[string]string {
	t.Helper()
	file, err := os.ReadFile(filepath.Join(customizations, "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	readYAML(t, configMap, &cm)
	return map[string]string{"health.lua": string(file), "argocd-cm": cm.Data[configMapKey]}
}

func cases(t *testing.T) []testCase {
	t.Helper()
	var file struct {
		Tests []testCase `yaml:"tests"`
	}
	readYAML(t, filepath.Join(customizations, "health_test.yaml"), &file)
	if len(file.Tests) == 0 {
		t.Fatal("health_test.yaml has no tests")
	}
	return file.Tests
}

func TestConfigMapCarriesTheSameScript(t *testing.T) {
	s := scripts(t)
	if s["argocd-cm"] != s["health.lua"] {
		t.Fatalf("%s key %s differs from health.lua; regenerate it from the file", configMap, configMapKey)
	}
}

func TestHealthOfEveryFixture(t *testing.T) {
	for source, script := range scripts(t) {
		for _, tc := range cases(t) {
			t.Run(source+"/"+strings.TrimSuffix(filepath.Base(tc.InputPath), ".yaml"), func(t *testing.T) {
				var obj map[string]interface{}
				readYAML(t, filepath.Join(customizations, tc.InputPath), &obj)
				got, err := runHealth(script, obj)
				if err != nil {
					t.Fatalf("script failed: %v", err)
				}
				if got != tc.HealthStatus {
					t.Fatalf("got  %+v\nwant %+v", got, tc.HealthStatus)
				}
			})
		}
	}
}

// Every phase of the CRD, every status the mapping promises, and every fixture are covered.
func TestCasesCoverEveryPhaseAndStatus(t *testing.T) {
	phases := map[string]bool{}
	statuses := map[string]bool{}
	used := map[string]bool{}
	for _, tc := range cases(t) {
		used[filepath.Base(tc.InputPath)] = true
		statuses[tc.HealthStatus.Status] = true
		var obj struct {
			Status struct {
				Phase string `yaml:"phase"`
			} `yaml:"status"`
		}
		readYAML(t, filepath.Join(customizations, tc.InputPath), &obj)
		phases[obj.Status.Phase] = true
	}
	for _, p := range []string{"Pending", "AwaitingApproval", "Migrating", "RollingOut", "Verifying", "Succeeded", "RollingBack", "RolledBack", "Failed", ""} {
		if !phases[p] {
			t.Errorf("no fixture with phase %q", p)
		}
	}
	for _, s := range []string{"Healthy", "Progressing", "Degraded", "Suspended"} {
		if !statuses[s] {
			t.Errorf("no case expects %s", s)
		}
	}
	fixtures, err := filepath.Glob(filepath.Join(customizations, "testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var unused []string
	for _, f := range fixtures {
		if !used[filepath.Base(f)] {
			unused = append(unused, filepath.Base(f))
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("fixtures not in health_test.yaml: %v", unused)
	}
}

// The script must not depend on libraries Argo CD does not open for configured checks.
func TestScriptNeedsNoStringLibrary(t *testing.T) {
	s := scripts(t)["health.lua"]
	for _, banned := range []string{"string.", ":format(", ":match(", ":find(", ":gsub(", ":sub("} {
		if strings.Contains(s, banned) {
			t.Errorf("health.lua uses %q, which needs the string library", banned)
		}
	}
}

// A broken script is reported, not passed: the harness can fail.
func TestHarnessRejectsBadScripts(t *testing.T) {
	obj := map[string]interface{}{"metadata": map[string]interface{}{"generation": 1}}
	if _, err := runHealth(`return "Healthy"`, obj); err == nil {
		t.Error("a script returning a string was accepted")
	}
	if _, err := runHealth(`return { status = "Fine" }`, obj); err == nil {
		t.Error("an invalid health status was accepted")
	}
	if _, err := runHealth(`return string.format("%s", "x")`, obj); err == nil {
		t.Error("the string library is open, Argo CD does not open it")
	}
}

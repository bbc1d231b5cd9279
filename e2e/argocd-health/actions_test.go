package health

// The ListaCompraRelease resource actions of config/argocd, run in gopher-lua the way Argo CD
// runs them: discovery.lua returns the actions an object offers (name -> {disabled, ...}), an
// action's action.lua returns the changed object, which Argo CD then patches onto the live one.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"gopkg.in/yaml.v3"
)

const (
	actionsDir       = customizations + "/actions"
	actionsConfigKey = "resource.customizations.actions.listacompra.app_ListaCompraRelease"
)

type discoveryTest struct {
	InputPath string `yaml:"inputPath"`
	Result    []struct {
		Name     string `yaml:"name"`
		Disabled bool   `yaml:"disabled"`
	} `yaml:"result"`
}

type actionTest struct {
	Action             string `yaml:"action"`
	InputPath          string `yaml:"inputPath"`
	ExpectedOutputPath string `yaml:"expectedOutputPath"`
}

type actionTests struct {
	DiscoveryTests []discoveryTest `yaml:"discoveryTests"`
	ActionTests    []actionTest    `yaml:"actionTests"`
}

// runScript runs script with obj as Argo CD does (see runArgoLua) and returns what it
// returned, as Go values.
func runScript(t *testing.T, script string, obj map[string]interface{}) interface{} {
	t.Helper()
	var out interface{}
	if err := runArgoLua(script, obj, func(table *lua.LTable) error {
		out = fromLua(table)
		return nil
	}); err != nil {
		t.Fatalf("script failed: %v", err)
	}
	return out
}

// fromLua converts a Lua value to Go as gopher-json does for Argo CD: a table with only
// positive integer keys is an array, any other a map; numbers are float64.
func fromLua(value lua.LValue) interface{} {
	switch v := value.(type) {
	case *lua.LNilType:
		return nil
	case lua.LBool:
		return bool(v)
	case lua.LString:
		return string(v)
	case lua.LNumber:
		return float64(v)
	case *lua.LTable:
		if n := v.MaxN(); n > 0 {
			items := make([]interface{}, 0, n)
			for i := 1; i <= n; i++ {
				items = append(items, fromLua(v.RawGetInt(i)))
			}
			return items
		}
		m := map[string]interface{}{}
		v.ForEach(func(key, item lua.LValue) { m[key.String()] = fromLua(item) })
		return m
	default:
		return value.String()
	}
}

// normalised is value after a JSON round trip (integers become float64, as from Lua).
func normalised(t *testing.T, value interface{}) interface{} {
	t.Helper()
	data, err := json.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	var out interface{}
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// actionScripts returns, per source (the files, and the argocd-cm snippet), the discovery
// script and each action's script.
func actionScripts(t *testing.T) map[string]map[string]string {
	t.Helper()
	files := map[string]string{}
	read := func(name, path string) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(data)
	}
	read("discovery", filepath.Join(actionsDir, "discovery.lua"))
	entries, err := os.ReadDir(actionsDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && e.Name() != "testdata" {
			read(e.Name(), filepath.Join(actionsDir, e.Name(), "action.lua"))
		}
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	readYAML(t, configMap, &cm)
	var snippet struct {
		Discovery   string `yaml:"discovery.lua"`
		Definitions []struct {
			Name   string `yaml:"name"`
			Action string `yaml:"action.lua"`
		} `yaml:"definitions"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data[actionsConfigKey]), &snippet); err != nil {
		t.Fatalf("%s key %s: %v", configMap, actionsConfigKey, err)
	}
	fromCM := map[string]string{"discovery": snippet.Discovery}
	for _, d := range snippet.Definitions {
		fromCM[d.Name] = d.Action
	}
	return map[string]map[string]string{"files": files, "argocd-cm": fromCM}
}

func TestConfigMapCarriesTheSameActions(t *testing.T) {
	s := actionScripts(t)
	if !reflect.DeepEqual(s["files"], s["argocd-cm"]) {
		var names []string
		for name := range s["files"] {
			names = append(names, name)
		}
		sort.Strings(names)
		t.Fatalf("%s key %s differs from the actions folder (%s); copy the files into it", configMap, actionsConfigKey, strings.Join(names, ", "))
	}
}

func loadActionTests(t *testing.T) actionTests {
	t.Helper()
	var tests actionTests
	readYAML(t, filepath.Join(actionsDir, "action_test.yaml"), &tests)
	if len(tests.DiscoveryTests) == 0 || len(tests.ActionTests) == 0 {
		t.Fatal("action_test.yaml has no tests")
	}
	return tests
}

func TestActionDiscoveryOfEveryFixture(t *testing.T) {
	for source, scripts := range actionScripts(t) {
		for _, tc := range loadActionTests(t).DiscoveryTests {
			t.Run(source+"/"+strings.TrimSuffix(filepath.Base(tc.InputPath), ".yaml"), func(t *testing.T) {
				var obj map[string]interface{}
				readYAML(t, filepath.Join(actionsDir, tc.InputPath), &obj)
				got, ok := runScript(t, scripts["discovery"], obj).(map[string]interface{})
				if !ok {
					t.Fatalf("discovery returned no map of actions")
				}
				if len(got) != len(tc.Result) {
					t.Fatalf("got %d actions %v, want %d", len(got), got, len(tc.Result))
				}
				for _, want := range tc.Result {
					action, ok := got[want.Name].(map[string]interface{})
					if !ok {
						t.Fatalf("action %s missing from %v", want.Name, got)
					}
					if disabled, _ := action["disabled"].(bool); disabled != want.Disabled {
						t.Errorf("%s: disabled %v, want %v", want.Name, disabled, want.Disabled)
					}
					if _, ok := scripts[want.Name]; !ok {
						t.Errorf("%s is offered but has no action.lua", want.Name)
					}
				}
			})
		}
	}
}

func TestEveryActionMakesItsExpectedObject(t *testing.T) {
	covered := map[string]bool{}
	for source, scripts := range actionScripts(t) {
		for _, tc := range loadActionTests(t).ActionTests {
			covered[tc.Action] = true
			t.Run(source+"/"+tc.Action+"/"+strings.TrimSuffix(filepath.Base(tc.InputPath), ".yaml"), func(t *testing.T) {
				script, ok := scripts[tc.Action]
				if !ok {
					t.Fatalf("no action.lua for %s", tc.Action)
				}
				var obj, want map[string]interface{}
				readYAML(t, filepath.Join(actionsDir, tc.InputPath), &obj)
				readYAML(t, filepath.Join(actionsDir, tc.ExpectedOutputPath), &want)
				got := normalised(t, runScript(t, script, obj))
				if !reflect.DeepEqual(got, normalised(t, want)) {
					gotJSON, _ := json.MarshalIndent(got, "", "  ")
					t.Fatalf("%s made\n%s", tc.Action, gotJSON)
				}
			})
		}
	}
	for name := range actionScripts(t)["files"] {
		if name != "discovery" && !covered[name] {
			t.Errorf("action %s has no actionTests case", name)
		}
	}
}

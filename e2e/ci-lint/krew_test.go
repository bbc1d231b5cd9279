package cilint

// The krew manifest that e2e/scripts/krew-manifest.sh writes for the kubectl plugin is one
// krew accepts: krew's own validate-krew-manifest (pinned in go.mod as a tool, with krew)
// checks its structure and installs it with `kubectl krew install` from an HTTP server, which
// downloads the archive, verifies its sha256 and finds the binary and the LICENSE.
// Run by e2e/tests/pipeline_example.rs, which passes the built plugin (LC_PLUGIN_BINARY) and
// the control plane's kubectl (LC_KUBECTL).

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func build(t *testing.T, pkg, out string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

func TestKrewInstallsThePluginFromItsManifest(t *testing.T) {
	plugin, kubectl := os.Getenv("LC_PLUGIN_BINARY"), os.Getenv("LC_KUBECTL")
	if plugin == "" || kubectl == "" {
		t.Fatal("LC_PLUGIN_BINARY and LC_KUBECTL must name the built plugin and a kubectl: run it through e2e/tests/pipeline_example.rs (make test)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	build(t, "sigs.k8s.io/krew/cmd/krew", filepath.Join(bin, "kubectl-krew"))
	build(t, "sigs.k8s.io/krew/cmd/validate-krew-manifest", filepath.Join(bin, "validate-krew-manifest"))
	if err := os.Symlink(kubectl, filepath.Join(bin, "kubectl")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	server := httptest.NewServer(http.FileServer(http.Dir(out)))
	defer server.Close()
	script := exec.Command("bash", "../scripts/krew-manifest.sh", "v0.1.0", server.URL+"/releases", plugin, filepath.Join(out, "releases"))
	if b, err := script.CombinedOutput(); err != nil {
		t.Fatalf("krew-manifest.sh: %v\n%s", err, b)
	}
	manifest := filepath.Join(out, "releases", "listacompra.yaml")
	validate := func(path string) (string, error) {
		cmd := exec.Command(filepath.Join(bin, "validate-krew-manifest"), "-manifest", path)
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "HOME="+dir)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	text, err := validate(manifest)
	if err != nil || !strings.Contains(text, "all 1 spec.platforms installed fine") {
		t.Fatalf("validate-krew-manifest refused the manifest (%v):\n%s", err, text)
	}

	// Not a rubber stamp: an archive that is not the one the manifest names is refused.
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(dir, "tampered", "listacompra.yaml")
	if err := os.MkdirAll(filepath.Dir(tampered), 0o755); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i, line := range lines {
		if strings.Contains(line, "sha256: ") {
			lines[i] = line[:strings.Index(line, "sha256: ")] + "sha256: " + strings.Repeat("0", 64)
		}
	}
	if err := os.WriteFile(tampered, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if text, err := validate(tampered); err == nil {
		t.Fatalf("a manifest with the wrong sha256 was accepted:\n%s", text)
	}
}

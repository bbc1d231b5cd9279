// Package cilint keeps the pipeline examples of config/ci valid: every workflow there is
// checked by actionlint (github.com/rhysd/actionlint, used as a library, pinned in go.mod),
// which knows GitHub Actions' syntax, expressions, contexts and the popular actions' inputs.
package cilint

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/rhysd/actionlint"
)

const workflows = "../../config/ci"

func TestEveryWorkflowPassesActionlint(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(workflows, "*.yml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no workflows in %s (%v)", workflows, err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			if problems, report := lint(t, path); problems > 0 {
				t.Fatalf("%d problems:\n%s", problems, report)
			}
		})
	}
}

// The linter is not a rubber stamp: a workflow with a typo in a job key and an unknown
// expression context is refused.
func TestActionlintRefusesABrokenWorkflow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "broken.yml")
	broken := "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    stepz: []\n    steps:\n      - run: echo ${{ nosuch.value }}\n"
	if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	if problems, report := lint(t, path); problems < 2 {
		t.Fatalf("expected at least 2 problems, got %d:\n%s", problems, report)
	}
}

// lint runs actionlint over the workflow at path: how many problems, and its report.
func lint(t *testing.T, path string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	linter, err := actionlint.NewLinter(&out, &actionlint.LinterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	errs, err := linter.LintFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return len(errs), out.String()
}

//! The pipeline example of `config/ci` (the runbook's `deploy-production` with `kubectl
//! listacompra status` as its gate) stays a valid GitHub Actions workflow: actionlint, as a
//! library in the Go module `e2e/ci-lint`, checks every workflow there.

use anyhow::{Result, ensure};
use e2e::gotest::{passed_subtests, run_module};

#[test]
fn the_pipeline_examples_pass_actionlint() -> Result<()> {
    let text = run_module("ci-lint")?;
    ensure!(
        passed_subtests(&text, "TestEveryWorkflowPassesActionlint") >= 1
            && text.contains("--- PASS: TestActionlintRefusesABrokenWorkflow"),
        "the workflows were not all checked:\n{text}"
    );
    Ok(())
}

//! What pipelines and platform teams take from the repository stays valid, checked by the Go
//! module `e2e/ci-lint`: the pipeline example of `config/ci` (the runbook's
//! `deploy-production` with `kubectl listacompra status` as its gate) passes actionlint, and
//! the krew manifest of the kubectl plugin installs with krew itself.

use anyhow::{Result, ensure};
use e2e::binaries::workspace_binary;
use e2e::cluster::Cluster;
use e2e::gotest::{passed_subtests, run_module_with};

#[tokio::test]
async fn the_pipeline_example_passes_actionlint_and_the_plugin_installs_with_krew() -> Result<()> {
    let plugin = workspace_binary("kubectl-listacompra")?;
    let kubectl = Cluster::start().await?.bin_dir()?.join("kubectl");
    let text = run_module_with(
        "ci-lint",
        &[
            ("LC_PLUGIN_BINARY", plugin.as_os_str()),
            ("LC_KUBECTL", kubectl.as_os_str()),
        ],
    )?;
    ensure!(
        passed_subtests(&text, "TestEveryWorkflowPassesActionlint") >= 1
            && text.contains("--- PASS: TestActionlintRefusesABrokenWorkflow")
            && text.contains("--- PASS: TestKrewInstallsThePluginFromItsManifest"),
        "not everything was checked:\n{text}"
    );
    Ok(())
}

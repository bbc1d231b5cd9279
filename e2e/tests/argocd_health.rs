//! The Argo CD health check and resource actions for ListaCompraRelease (`config/argocd`),
//! run by gopher-lua — the interpreter Argo CD embeds — over the fixtures of their
//! `health_test.yaml` and `actions/action_test.yaml`. The Go module in `e2e/argocd-health`
//! does the work; this test runs it so that `make test` counts it.

use anyhow::{Result, ensure};
use e2e::gotest::{passed_subtests, run_module};

#[test]
fn argocd_health_check_passes_its_fixtures_in_gopher_lua() -> Result<()> {
    let text = run_module("argocd-health")?;
    // One sub-test per fixture and script source (file and argocd-cm): the cases really ran.
    let fixtures = passed_subtests(&text, "TestHealthOfEveryFixture");
    ensure!(
        fixtures >= 2 * 12,
        "only {fixtures} fixture runs passed:\n{text}"
    );
    let actions = passed_subtests(&text, "TestEveryActionMakesItsExpectedObject")
        + passed_subtests(&text, "TestActionDiscoveryOfEveryFixture");
    ensure!(
        actions >= 2 * 10,
        "only {actions} action runs passed:\n{text}"
    );
    for test in [
        "TestConfigMapCarriesTheSameScript",
        "TestCasesCoverEveryPhaseAndStatus",
        "TestHarnessRejectsBadScripts",
        "TestConfigMapCarriesTheSameActions",
        "TestActionDiscoveryOfEveryFixture",
        "TestEveryActionMakesItsExpectedObject",
    ] {
        ensure!(
            text.contains(&format!("--- PASS: {test}")),
            "{test} did not pass:\n{text}"
        );
    }
    Ok(())
}

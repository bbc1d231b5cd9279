//! The Argo CD health check and resource actions for ListaCompraRelease (`config/argocd`),
//! run by gopher-lua — the interpreter Argo CD embeds — over the fixtures of their
//! `health_test.yaml` and `actions/action_test.yaml`. The Go module in `e2e/argocd-health`
//! does the work; this test runs it so that `make test` counts it.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use e2e::env::repo_root;

#[test]
fn argocd_health_check_passes_its_fixtures_in_gopher_lua() -> Result<()> {
    let dir = repo_root().join("e2e/argocd-health");
    let output = Command::new("go")
        .args(["test", "-count=1", "-v", "./..."])
        .current_dir(&dir)
        .output()
        .context("run `go test` (install Go 1.26 or later and put it on PATH)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        output.status.success(),
        "go test in {} failed:\n{text}",
        dir.display()
    );
    // One sub-test per fixture and script source (file and argocd-cm): the cases really ran.
    let fixtures = text
        .lines()
        .filter(|l| {
            l.trim_start()
                .starts_with("--- PASS: TestHealthOfEveryFixture/")
        })
        .count();
    ensure!(
        fixtures >= 2 * 12,
        "only {fixtures} fixture runs passed:\n{text}"
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

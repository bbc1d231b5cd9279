//! The command line's contract, without a cluster: help with examples and exit codes, shell
//! completion, usage errors (exit 2) and a kubeconfig that cannot be loaded (exit 4). The
//! commands against a real cluster and operator are tested in
//! `operator/tests/kubectl_plugin.rs`.

use std::process::{Command, Output};

fn plugin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-listacompra"))
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("the plugin runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn help_names_every_command_with_examples_and_exit_codes() {
    let output = plugin(&["--help"]);
    assert!(output.status.success());
    let help = text(&output);
    for expected in [
        "get",
        "status",
        "history",
        "approve",
        "retry",
        "pause",
        "resume",
        "abort",
        "completion",
        "kubectl listacompra status lc -n production --timeout 30m",
        "1  status: the release rolled back or failed",
        "5  the command does not apply",
    ] {
        assert!(
            help.contains(expected),
            "{expected:?} missing from --help:\n{help}"
        );
    }
}

#[test]
fn completion_prints_a_script_for_the_shell() {
    let output = plugin(&["completion", "bash"]);
    assert!(output.status.success(), "{}", text(&output));
    let script = String::from_utf8_lossy(&output.stdout);
    assert!(
        script.contains("kubectl-listacompra") && script.contains("approve"),
        "{script}"
    );
}

#[test]
fn usage_errors_exit_2_naming_the_fix() {
    let output = plugin(&["status", "lc", "--timeout", "5d"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("the unit must be s, m or h"),
        "{}",
        text(&output)
    );
    let output = plugin(&["approve", "lc"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("--role"), "{}", text(&output));
}

#[test]
fn a_kubeconfig_that_cannot_be_loaded_exits_4_saying_so() {
    let output = plugin(&["get", "lc"]);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output));
    assert!(
        text(&output).contains("error: loading the kubeconfig"),
        "{}",
        text(&output)
    );
}

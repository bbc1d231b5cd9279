//! Tests written in Go, for what only a Go library does faithfully (gopher-lua, the
//! interpreter Argo CD embeds; actionlint): each is a module under `e2e/` that `go test` runs.

use std::process::Command;

use crate::env::repo_root;
use crate::{Error, Result};

/// Runs `go test -count=1 -v ./...` in the module `e2e/<module>` and returns its output;
/// an error, with that output, when a test failed.
pub fn run_module(module: &str) -> Result<String> {
    run_module_with(module, &[])
}

/// As [`run_module`], with extra environment variables for the tests.
pub fn run_module_with(module: &str, env: &[(&str, &std::ffi::OsStr)]) -> Result<String> {
    let dir = repo_root().join("e2e").join(module);
    let command = format!("go test -count=1 -v ./... (in {})", dir.display());
    let output = Command::new("go")
        .args(["test", "-count=1", "-v", "./..."])
        .envs(env.iter().copied())
        .current_dir(&dir)
        .output()
        .map_err(|source| Error::Spawn {
            script: "go (install Go 1.26 or later and put it on PATH)".into(),
            source,
        })?;
    crate::printed(command, &output)
}

/// How many sub-tests of `test` passed in the output of [`run_module`].
pub fn passed_subtests(output: &str, test: &str) -> usize {
    let prefix = format!("--- PASS: {test}/");
    output
        .lines()
        .filter(|l| l.trim_start().starts_with(&prefix))
        .count()
}

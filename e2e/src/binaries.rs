//! Finding the workspace's own binaries (`listacompra-api`, `listacompra-operator`).
//!
//! Tests of the `e2e` crate cannot name another package's binaries with
//! `CARGO_BIN_EXE_*`, so they take them from the target folder the tests themselves were
//! built into. `cargo test --workspace` (what `make test` runs) builds every binary before it
//! runs any test; `make demo` builds them first too.

use std::path::PathBuf;

use crate::{Error, Result};

/// The path of the workspace binary `name` (also its package's name) in the profile folder this program was built in.
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|source| Error::Io {
        action: "finding the running executable".to_owned(),
        source,
    })?;
    // target/<profile>/deps/<test>-<hash> for tests, target/<profile>/<bin> for binaries.
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingBinary {
            path,
            fix: format!("build it first: cargo build --locked -p {name} --bin {name}"),
        })
    }
}

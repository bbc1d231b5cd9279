//! Writes the CRDs' YAML (`ListaCompraRelease`, `ListaCompraApproval`, `ListaCompraRestore`)
//! to `config/crd/` and into the operator's Helm chart, or prints them with `--stdout`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Folders the generated YAML is committed in, relative to the workspace root.
const TARGETS: [&str; 2] = ["config/crd", "helm/listacompra-operator/crds"];

fn main() -> ExitCode {
    let files = match listacompra_crds::crd_files() {
        Ok(files) => files,
        Err(e) => {
            eprintln!("crdgen: cannot serialize the CRDs: {e}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::args().any(|a| a == "--stdout") {
        for (_, yaml) in &files {
            print!("---\n{yaml}");
        }
        return ExitCode::SUCCESS;
    }
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for folder in TARGETS {
        for (file, yaml) in &files {
            let path = root.join(folder).join(file);
            let written = std::fs::create_dir_all(root.join(folder))
                .and_then(|()| std::fs::write(&path, yaml));
            if let Err(e) = written {
                eprintln!("crdgen: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {folder}/{file}");
        }
    }
    ExitCode::SUCCESS
}

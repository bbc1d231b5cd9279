//! Writes the `ListaCompraRelease` CRD YAML to `config/crd/` and into the operator's Helm
//! chart, or prints it with `--stdout`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the generated YAML is committed, relative to the workspace root.
const TARGETS: [&str; 2] = [
    "config/crd/listacompra.app_listacomprareleases.yaml",
    "helm/listacompra-operator/crds/listacompra.app_listacomprareleases.yaml",
];

fn main() -> ExitCode {
    let yaml = match listacompra_crds::crd_yaml() {
        Ok(yaml) => yaml,
        Err(e) => {
            eprintln!("crdgen: cannot serialize the CRD: {e}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::args().any(|a| a == "--stdout") {
        print!("{yaml}");
        return ExitCode::SUCCESS;
    }
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for target in TARGETS {
        let path = root.join(target);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, &yaml));
        if let Err(e) = written {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {target}");
    }
    ExitCode::SUCCESS
}

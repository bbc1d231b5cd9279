//! The committed CRD YAML must be exactly what `crdgen` writes from the Rust types.

use std::path::Path;

#[test]
fn committed_crd_yaml_matches_the_types() {
    let files = listacompra_crds::crd_files().expect("the CRDs render");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for folder in ["config/crd", "helm/listacompra-operator/crds"] {
        for (name, expected) in &files {
            let file = format!("{folder}/{name}");
            let committed = std::fs::read_to_string(root.join(&file)).unwrap_or_else(|e| {
                panic!("{file} is missing ({e}); run `cargo run -p listacompra-crds --bin crdgen`")
            });
            assert!(
                committed == *expected,
                "{file} is out of date with crds/src; run `cargo run -p listacompra-crds --bin crdgen` and commit the result"
            );
        }
    }
}

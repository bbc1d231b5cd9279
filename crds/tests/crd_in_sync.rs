//! The committed CRD YAML must be exactly what `crdgen` writes from the Rust types.

use std::path::Path;

#[test]
fn committed_crd_yaml_matches_the_types() {
    let expected = listacompra_crds::crd_yaml().expect("the CRD renders");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in [
        "config/crd/listacompra.app_listacomprareleases.yaml",
        "helm/listacompra-operator/crds/listacompra.app_listacomprareleases.yaml",
    ] {
        let committed = std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| {
            panic!("{file} is missing ({e}); run `cargo run -p listacompra-crds --bin crdgen`")
        });
        assert!(
            committed == expected,
            "{file} is out of date with crds/src; run `cargo run -p listacompra-crds --bin crdgen` and commit the result"
        );
    }
}

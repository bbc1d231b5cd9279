//! `listacompra-operator`: the controller for `ListaCompraRelease` resources.
//!
//! Only the command line exists so far; the controller is built by the operator issue.

fn main() {
    println!(
        "listacompra-operator {} (group {})",
        env!("CARGO_PKG_VERSION"),
        listacompra_crds::GROUP
    );
}

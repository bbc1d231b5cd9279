//! The `ListaCompraRelease` API (group `listacompra.app`).
//!
//! The types themselves arrive with the CRD issue; this crate already fixes the group so
//! the operator and the tests agree on it.

/// API group of every ListaCompra custom resource.
pub const GROUP: &str = "listacompra.app";

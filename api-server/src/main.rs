//! `listacompra-api`: the ListaCompra HTTP API.
//!
//! Only the command line exists so far; the service is built by the API server issue.

fn main() {
    println!("listacompra-api {}", env!("CARGO_PKG_VERSION"));
}

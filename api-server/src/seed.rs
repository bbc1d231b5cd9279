//! Demo data for local use: one user with one list (idempotent).

use sqlx::PgPool;

use crate::domain;
use crate::store::Store;
use crate::{Error, Result};

/// The demo account.
pub const DEMO_EMAIL: &str = "demo@listacompra.example";

/// Creates the demo user (password `password`) and a list, unless the user exists.
/// Returns whether anything was created.
pub async fn seed(pool: &PgPool, password: &str) -> Result<bool> {
    let store = Store::new(pool.clone());
    if store.user_by_email(DEMO_EMAIL).await?.is_some() {
        return Ok(false);
    }
    let hash = crate::auth::hash_password(password)?;
    let fail = |e: crate::error::AppError| Error::Data(format!("seeding: {e}"));
    let user = store.create_user(DEMO_EMAIL, &hash).await.map_err(fail)?;
    let list = store
        .create_list(user, "Compra semanal")
        .await
        .map_err(fail)?;
    for (name, qty, unit, category) in [
        ("leche", 2.0, Some("l"), Some("dairy")),
        ("pan", 1.0, None, Some("bakery")),
        ("huevos", 12.0, None, Some("dairy")),
        ("tomates", 1.0, Some("kg"), Some("produce")),
    ] {
        let item = domain::new_item(name, Some(qty), unit, category, None)
            .map_err(|e| Error::Data(format!("seeding: {e}")))?;
        store.add_item(user, list.id, &item).await.map_err(fail)?;
    }
    Ok(true)
}

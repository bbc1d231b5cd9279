//! Demo data for local use: one user with one list (idempotent), made through the use cases.

use sqlx::PgPool;

use crate::auth::Argon2Hasher;
use crate::error::AppError;
use crate::ports::Store;
use crate::store::PgStore;
use crate::usecases::{NewItem, UseCases};
use crate::{Error, Result};

/// The demo account.
pub const DEMO_EMAIL: &str = "demo@listacompra.example";

/// Creates the demo user with `password` and a list, unless the user exists.
/// Returns whether anything was created.
pub async fn seed(pool: &PgPool, password: &str) -> Result<bool> {
    let store = PgStore::new(pool.clone());
    if store.user_by_email(DEMO_EMAIL).await?.is_some() {
        return Ok(false);
    }
    let api = UseCases::new(store, Argon2Hasher::default(), ());
    let fail = |e: AppError| match e {
        AppError::Internal(e) => e,
        other => Error::Data(format!("seeding: {other}")),
    };
    let user = api.register(DEMO_EMAIL, password).await.map_err(fail)?.id;
    let list = api
        .create_list(user, "Compra semanal")
        .await
        .map_err(fail)?;
    for (name, quantity, unit, category) in [
        ("leche", 2.0, Some("l"), Some("dairy")),
        ("pan", 1.0, None, Some("bakery")),
        ("huevos", 12.0, None, Some("dairy")),
        ("tomates", 1.0, Some("kg"), Some("produce")),
    ] {
        let item = NewItem {
            name: name.to_owned(),
            quantity: Some(quantity),
            unit: unit.map(str::to_owned),
            category: category.map(str::to_owned),
            note: None,
        };
        api.add_item(user, list.id, &item).await.map_err(fail)?;
    }
    Ok(true)
}

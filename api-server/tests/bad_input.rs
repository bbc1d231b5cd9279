//! Bad input found while re-checking the HTTP edge: each gets a 4xx JSON body naming the
//! field (or the credential), never a 500.

mod common;

use std::time::Duration;

use anyhow::Result;
use listacompra_api::auth::{AUDIENCE, Claims, ISSUER, Tokens};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn numbers_too_large_for_a_double_name_their_field() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (_, _, token) = app.user().await?;
    let list = app.create_list(&token, "Casa").await?;
    let (s, b) = app
        .raw(
            Method::POST,
            &format!("/v1/lists/{list}/items"),
            Some(&token),
            r#"{"name": "leche", "quantity": 1e400}"#,
        )
        .await?;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["field"], "quantity", "{b}");
    let (s, item) = app
        .call(
            Method::POST,
            &format!("/v1/lists/{list}/items"),
            Some(&token),
            Some(json!({ "name": "leche" })),
        )
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{item}");
    let (s, b) = app
        .raw(
            Method::PATCH,
            &format!(
                "/v1/lists/{list}/items/{}",
                item["id"].as_str().unwrap_or_default()
            ),
            Some(&token),
            r#"{"quantity": -2e308}"#,
        )
        .await?;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["field"], "quantity", "{b}");
    Ok(())
}

#[tokio::test]
async fn a_valid_token_of_a_user_that_does_not_exist_is_401_not_500() -> Result<()> {
    let (app, _db) = common::app().await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let token =
        Tokens::new(&app.config.jwt_secret, None, Duration::from_secs(60))?.sign(&Claims {
            sub: uuid::Uuid::new_v4(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            exp: now + 60,
            ver: 0,
        })?;
    let (s, b) = app
        .call(
            Method::POST,
            "/v1/lists",
            Some(&token),
            Some(json!({ "name": "Casa" })),
        )
        .await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(b["error"], "unauthorized", "{b}");
    // Reads too: the token's user must exist (its token version is read on every request).
    let (s, b) = app
        .call(Method::GET, "/v1/lists", Some(&token), None)
        .await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    Ok(())
}

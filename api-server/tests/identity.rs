//! Identity lifecycle (issue 13), against the real server and services: forged tokens,
//! key rotation, logout, ownership transfer (an offer the recipient accepts) and account
//! enumeration through sharing and transfer offers.

mod common;

use anyhow::Result;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Base64url without padding (what JWT segments use).
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The header of a JWT, decoded (no signature check).
fn header_of(token: &str) -> Result<Value> {
    let header = jsonwebtoken::decode_header(token)?;
    Ok(serde_json::to_value(header)?)
}

/// Claims that would be valid for `user` (at token version 0) if signed with the right key.
fn good_claims(user: &str) -> Value {
    let now = now();
    json!({
        "sub": user,
        "iss": listacompra_api::auth::ISSUER,
        "aud": listacompra_api::auth::AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "ver": 0,
    })
}

/// A token signed with `secret` and `alg`, with `kid` in its header.
fn forge(alg: Algorithm, secret: &str, kid: Option<&str>, claims: &Value) -> Result<String> {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    Ok(jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// An unsigned token (`alg: none`).
fn unsigned(kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({ "alg": "none", "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    format!(
        "{}.{}.",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// GET /v1/lists with `token`: status, `WWW-Authenticate` and body.
async fn probe(app: &common::TestApp, token: &str) -> Result<(StatusCode, String, Value)> {
    probe_at(app, token, "/v1/lists").await
}

/// GET `path` with `token`: status, `WWW-Authenticate` and body.
async fn probe_at(
    app: &common::TestApp,
    token: &str,
    path: &str,
) -> Result<(StatusCode, String, Value)> {
    let res = app
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await?;
    let status = res.status();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = res.json().await.unwrap_or_default();
    Ok((status, challenge, body))
}

#[tokio::test]
async fn forged_tokens_are_answered_401_invalid_token() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (user, _, token) = app.user().await?;
    let secret = app.config.jwt_secret.clone();
    let kid = header_of(&token)?["kid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let claims = good_claims(&user);
    let expired = {
        let mut c = claims.clone();
        c["iat"] = json!(now() - 1200);
        c["exp"] = json!(now() - 600);
        c
    };
    let mut foreign_issuer = claims.clone();
    foreign_issuer["iss"] = json!("someone-else");
    let mut foreign_audience = claims.clone();
    foreign_audience["aud"] = json!("other-app");
    let kid = Some(kid.as_str()).filter(|k| !k.is_empty());
    let cases: Vec<(&str, String)> = vec![
        ("alg none", unsigned(kid, &claims)),
        (
            "HS512 signed with the right secret",
            forge(Algorithm::HS512, &secret, kid, &claims)?,
        ),
        (
            "HS384 signed with the right secret",
            forge(Algorithm::HS384, &secret, kid, &claims)?,
        ),
        ("expired", forge(Algorithm::HS256, &secret, kid, &expired)?),
        (
            "unknown kid, right secret",
            forge(Algorithm::HS256, &secret, Some("0123456789abcdef"), &claims)?,
        ),
        (
            "right kid, wrong secret",
            forge(
                Algorithm::HS256,
                "another-secret-that-is-32-bytes-long!!",
                kid,
                &claims,
            )?,
        ),
        (
            "foreign issuer",
            forge(Algorithm::HS256, &secret, kid, &foreign_issuer)?,
        ),
        (
            "foreign audience",
            forge(Algorithm::HS256, &secret, kid, &foreign_audience)?,
        ),
    ];
    // The control: a token forged with the right key, kid and algorithm is accepted, so
    // each rejection below is about the one thing that case changes.
    let (s, _, b) = probe(&app, &forge(Algorithm::HS256, &secret, kid, &claims)?).await?;
    assert_eq!(s, StatusCode::OK, "control token refused: {b}");
    let mut accepted = Vec::new();
    for (case, forged) in &cases {
        let (s, challenge, body) = probe(&app, forged).await?;
        let ok = s == StatusCode::UNAUTHORIZED
            && body["error"] == "unauthorized"
            && body["message"].is_string()
            && challenge == r#"Bearer error="invalid_token""#;
        if !ok {
            accepted.push(format!("{case}: {s} {challenge:?} {body}"));
        }
    }
    assert!(
        accepted.is_empty(),
        "not rejected as expected:\n{}",
        accepted.join("\n")
    );
    Ok(())
}

#[tokio::test]
async fn issued_tokens_name_their_key_by_kid_never_the_key_itself() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (_, _, token) = app.user().await?;
    let header = header_of(&token)?;
    assert_eq!(header["alg"], "HS256", "{header}");
    let kid = header["kid"].as_str().unwrap_or_default();
    assert_eq!(kid.len(), 16, "kid {kid:?} in {header}");
    assert!(kid.chars().all(|c| c.is_ascii_hexdigit()), "{header}");
    assert!(
        !app.config.jwt_secret.contains(kid),
        "the kid is part of the secret"
    );
    Ok(())
}

#[tokio::test]
async fn logout_revokes_every_token_of_the_user_and_only_theirs() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (_, email, first) = app.user().await?;
    let (_, _, bystander) = app.user().await?;
    let second = app.login(&email).await?;
    let own = app.create_list(&first, "Casa").await?;
    let theirs = app.create_list(&bystander, "Otra").await?;
    let (s, b) = app
        .call(Method::POST, "/v1/auth/logout", Some(&first), None)
        .await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    for token in [&first, &second] {
        let (s, challenge, b) = probe(&app, token).await?;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "a token still works after logout: {b}"
        );
        assert_eq!(challenge, r#"Bearer error="invalid_token""#);
        // The list read checks the token's version in its own statement: a revoked token
        // is refused there too, as the token (401), whether the list is the user's own,
        // another's or none, and before a malformed id's 400, as on every route.
        let none = uuid::Uuid::new_v4().to_string();
        for list in [own.as_str(), theirs.as_str(), none.as_str(), "not-a-uuid"] {
            let (s, challenge, b) = probe_at(&app, token, &format!("/v1/lists/{list}")).await?;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "GET /v1/lists/{list}: {b}");
            assert_eq!(challenge, r#"Bearer error="invalid_token""#, "{list}");
        }
    }
    // Logging out twice with a revoked token is refused like any invalid token.
    let (s, _) = app
        .call(Method::POST, "/v1/auth/logout", Some(&first), None)
        .await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Other users are not affected, and the user can log in again.
    let (s, _, b) = probe(&app, &bystander).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    let third = app.login(&email).await?;
    let (s, _, b) = probe(&app, &third).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .call(Method::GET, &format!("/v1/lists/{own}"), Some(&third), None)
        .await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .call(
            Method::GET,
            &format!("/v1/lists/{theirs}"),
            Some(&third),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    Ok(())
}

#[tokio::test]
async fn sharing_with_an_unknown_email_answers_like_sharing_with_an_account() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (_, _, owner) = app.user().await?;
    let (_, existing, _) = app.user().await?;
    let list = app.create_list(&owner, "Casa").await?;
    let members = format!("/v1/lists/{list}/members");
    let share = |email: String| {
        app.call(
            Method::POST,
            &members,
            Some(&owner),
            Some(json!({ "email": email, "role": "member" })),
        )
    };
    let nobody = format!("nobody{}@example.com", uuid::Uuid::new_v4().simple());
    let (s_known, b_known) = share(existing.clone()).await?;
    let (s_unknown, b_unknown) = share(nobody.clone()).await?;
    assert_eq!(s_known, s_unknown, "{b_known} vs {b_unknown}");
    assert_eq!(
        sorted_keys(&b_known),
        sorted_keys(&b_unknown),
        "{b_known} vs {b_unknown}"
    );
    assert_eq!(b_unknown["email"], nobody.as_str(), "{b_unknown}");
    assert_eq!(b_known["email"], existing.as_str(), "{b_known}");
    // The list does not tell them apart either: both are listed, with the ids answered.
    let (s, detail) = app
        .call(
            Method::GET,
            &format!("/v1/lists/{list}"),
            Some(&owner),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::OK, "{detail}");
    let listed = |b: &Value| {
        detail["members"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["user_id"] == b["user_id"]).cloned())
    };
    let (known, unknown) = (listed(&b_known), listed(&b_unknown));
    assert_eq!(
        known.as_ref().map(sorted_keys),
        unknown.as_ref().map(sorted_keys),
        "{detail}"
    );
    assert_eq!(
        unknown.map(|m| m["email"].clone()),
        Some(json!(nobody)),
        "{detail}"
    );
    // Sharing again is the same conflict for both.
    let (s_known, _) = share(existing.clone()).await?;
    let (s_unknown, _) = share(nobody.clone()).await?;
    assert_eq!(
        (s_known, s_unknown),
        (StatusCode::CONFLICT, StatusCode::CONFLICT)
    );
    // When the invitee registers, they are a member.
    let (s, b) = app
        .call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({ "email": nobody, "password": "correct horse" })),
        )
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let invitee = app.login(&nobody).await?;
    let (s, b) = app
        .call(
            Method::GET,
            &format!("/v1/lists/{list}"),
            Some(&invitee),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["role"], "member", "{b}");
    assert_eq!(b["members"].as_array().map(Vec::len), Some(3), "{b}");
    Ok(())
}

/// `PUT /v1/lists/{list}/owner` with `to` as the holder of `token`.
async fn offer(
    app: &common::TestApp,
    list: &str,
    token: &str,
    to: &str,
) -> Result<(StatusCode, Value)> {
    app.call(
        Method::PUT,
        &format!("/v1/lists/{list}/owner"),
        Some(token),
        Some(json!({ "user_id": to })),
    )
    .await
}

/// `POST /v1/lists/{list}/owner/accept` as the holder of `token`.
async fn accept(app: &common::TestApp, list: &str, token: &str) -> Result<(StatusCode, Value)> {
    app.call(
        Method::POST,
        &format!("/v1/lists/{list}/owner/accept"),
        Some(token),
        None,
    )
    .await
}

/// The list's `owner_id` as the holder of `token` sees it.
async fn owner_of(app: &common::TestApp, list: &str, token: &str) -> Result<Value> {
    let (s, b) = app
        .call(Method::GET, &format!("/v1/lists/{list}"), Some(token), None)
        .await?;
    anyhow::ensure!(s == StatusCode::OK, "{s} {b}");
    Ok(b["owner_id"].clone())
}

#[tokio::test]
async fn the_creator_offers_ownership_and_the_member_accepts_it() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (creator_id, _, creator) = app.user().await?;
    let (co_owner_id, co_owner_email, co_owner) = app.user().await?;
    let (member_id, member_email, member) = app.user().await?;
    let (stranger_id, _, _) = app.user().await?;
    let list = app.create_list(&creator, "Casa").await?;
    for (email, role) in [(&co_owner_email, "owner"), (&member_email, "member")] {
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/v1/lists/{list}/members"),
                Some(&creator),
                Some(json!({ "email": email, "role": role })),
            )
            .await?;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    // A co-owner cannot take the list over, nor give it away.
    let (s, b) = offer(&app, &list, &co_owner, &co_owner_id).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = offer(&app, &list, &member, &member_id).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // Only to a member (or a pending invitation).
    let (s, b) = offer(&app, &list, &creator, &stranger_id).await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(b["message"], "member not found", "{b}");
    // Nothing to accept before an offer.
    let (s, b) = accept(&app, &list, &member).await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    // The creator offers the list to a plain member: nothing changes yet.
    let (s, b) = offer(&app, &list, &creator, &member_id).await?;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["user_id"], member_id.as_str(), "{b}");
    assert_eq!(owner_of(&app, &list, &member).await?, creator_id.as_str());
    // Nobody else can accept it.
    let (s, b) = accept(&app, &list, &co_owner).await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(owner_of(&app, &list, &creator).await?, creator_id.as_str());
    // The member accepts: they become its owner and creator.
    let (s, b) = accept(&app, &list, &member).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["owner_id"], member_id.as_str(), "{b}");
    assert_eq!(b["role"], "owner", "{b}");
    let (s, b) = app
        .call(
            Method::GET,
            &format!("/v1/lists/{list}"),
            Some(&member),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["owner_id"], member_id.as_str(), "{b}");
    assert_eq!(b["role"], "owner", "{b}");
    // An offer is taken once.
    let (s, b) = accept(&app, &list, &member).await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    // The former creator stays as a co-owner: they can no longer remove the new creator,
    // and they may now leave.
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("/v1/lists/{list}/members/{member_id}"),
            Some(&creator),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("/v1/lists/{list}/members/{creator_id}"),
            Some(&creator),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    Ok(())
}

#[tokio::test]
async fn an_ownership_offer_does_not_tell_an_invitation_from_an_account() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (creator_id, _, creator) = app.user().await?;
    let (_, existing, victim) = app.user().await?;
    let nobody = format!("nobody{}@example.com", uuid::Uuid::new_v4().simple());
    let list = app.create_list(&creator, "Casa").await?;
    let mut ids = Vec::new();
    for email in [&existing, &nobody] {
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/v1/lists/{list}/members"),
                Some(&creator),
                Some(json!({ "email": email })),
            )
            .await?;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        ids.push(b["user_id"].as_str().unwrap_or_default().to_owned());
    }
    let (s_known, b_known) = offer(&app, &list, &creator, &ids[0]).await?;
    let (s_unknown, b_unknown) = offer(&app, &list, &creator, &ids[1]).await?;
    // Same status, same shape: the answer does not tell who has an account.
    assert_eq!(s_known, s_unknown, "{b_known} vs {b_unknown}");
    assert_eq!(s_known, StatusCode::ACCEPTED, "{b_known}");
    assert_eq!(
        sorted_keys(&b_known),
        sorted_keys(&b_unknown),
        "{b_known} vs {b_unknown}"
    );
    assert_eq!(
        b_known["status"], b_unknown["status"],
        "{b_known} vs {b_unknown}"
    );
    // Nothing is pushed onto anyone: the owner is unchanged, the account's role too.
    assert_eq!(owner_of(&app, &list, &creator).await?, creator_id.as_str());
    let (s, b) = app
        .call(
            Method::GET,
            &format!("/v1/lists/{list}"),
            Some(&victim),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["role"], "member", "{b}");
    // The latest offer (to the invitation) replaced the first: the account cannot accept.
    let (s, b) = accept(&app, &list, &victim).await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(owner_of(&app, &list, &creator).await?, creator_id.as_str());
    Ok(())
}

/// A server on the database of `db` with these keys.
async fn server_with_keys(
    services: &e2e::services::Services,
    db: &common::TestDb,
    current: &str,
    previous: Option<&str>,
) -> Result<common::TestApp> {
    let mut config = common::config(services, db)?;
    config.jwt_secret = current.to_owned();
    config.jwt_secret_previous = previous.map(str::to_owned);
    common::TestApp::start(config, false).await
}

#[tokio::test]
async fn the_secret_rotates_without_logging_anyone_out() -> Result<()> {
    const OLD: &str = "the-old-secret-0123456789-0123456789-abc";
    const NEW: &str = "the-new-secret-0123456789-0123456789-xyz";
    let services = common::services().await?;
    let db = common::TestDb::migrated(&services).await?;
    let before = server_with_keys(&services, &db, OLD, None).await?;
    let (_, email, old_token) = before.user().await?;
    // A token issued before keys had ids (no kid), signed with the old key.
    let (user, _, _) = before.user().await?;
    let legacy = forge(Algorithm::HS256, OLD, None, &good_claims(&user))?;
    before.stop().await;

    // Rotation: the new secret signs, the old one still verifies.
    let during = server_with_keys(&services, &db, NEW, Some(OLD)).await?;
    let (s, _, b) = probe(&during, &old_token).await?;
    assert_eq!(
        s,
        StatusCode::OK,
        "the previous key's token was refused: {b}"
    );
    let new_token = during.login(&email).await?;
    assert_eq!(
        header_of(&new_token)?["kid"],
        listacompra_api::auth::key_id(NEW).as_str()
    );
    assert_ne!(header_of(&new_token)?["kid"], header_of(&old_token)?["kid"]);
    // A token without kid is checked with the current key only.
    let (s, _, _) = probe(&during, &legacy).await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    during.stop().await;

    // Once the previous key is removed, its tokens stop working; the new ones do not.
    let after = server_with_keys(&services, &db, NEW, None).await?;
    let (s, challenge, b) = probe(&after, &old_token).await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(challenge, r#"Bearer error="invalid_token""#);
    let (s, _, b) = probe(&after, &new_token).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    let legacy_new = forge(Algorithm::HS256, NEW, None, &good_claims(&user))?;
    let (s, _, b) = probe(&after, &legacy_new).await?;
    assert_eq!(s, StatusCode::OK, "a token from before kids existed: {b}");
    Ok(())
}

#[tokio::test]
async fn the_server_refuses_to_start_with_a_short_secret_or_an_unbounded_lifetime() -> Result<()> {
    let services = common::services().await?;
    let db = common::TestDb::migrated(&services).await?;
    let short = "x".repeat(31);
    let mut config = common::config(&services, &db)?;
    config.jwt_secret = short.clone();
    let err = common::TestApp::start(config, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("JWT_SECRET:") && err.contains("32 bytes"),
        "{err}"
    );
    let mut config = common::config(&services, &db)?;
    config.jwt_secret_previous = Some(short);
    let err = common::TestApp::start(config, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("JWT_SECRET_PREVIOUS"), "{err}");
    let mut config = common::config(&services, &db)?;
    config.jwt_ttl = std::time::Duration::from_secs(86_401);
    let err = common::TestApp::start(config, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("JWT_TTL_SECONDS"), "{err}");
    Ok(())
}

#[tokio::test]
async fn on_a_schema_older_than_revision_7_requests_are_503_naming_the_revision() -> Result<()> {
    let services = common::services().await?;
    let db = common::TestDb::migrated(&services).await?;
    listacompra_api::migrate::reset_to(&db.pool, Some(6)).await?;
    let app = common::TestApp::start(common::config(&services, &db)?, false).await?;
    let (s, b) = app
        .call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({ "email": "old@example.com", "password": "correct horse" })),
        )
        .await?;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap_or_default()
            .contains("migrate --to 7"),
        "{b}"
    );
    // A user registered by a build of revision 6.
    let user = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO users (id, email, password_hash) VALUES ($1::uuid, 'old@example.com', $2)",
    )
    .bind(&user)
    .bind(listacompra_api::auth::hash_password("correct horse")?)
    .execute(&db.pool)
    .await?;
    let (s, b) = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": "old@example.com", "password": "correct horse" })),
        )
        .await?;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(b["error"], "unavailable", "{b}");
    let message = b["message"].as_str().unwrap_or_default();
    assert!(message.contains("migrate --to 7"), "{b}");
    let token = forge(
        Algorithm::HS256,
        &app.config.jwt_secret,
        Some(&listacompra_api::auth::key_id(&app.config.jwt_secret)),
        &good_claims(&user),
    )?;
    let (s, _, b) = probe(&app, &token).await?;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap_or_default()
            .contains("migrate --to 7"),
        "{b}"
    );
    Ok(())
}

/// Removing the recipient of an offer withdraws it: sharing the list with them again later
/// does not bring the old offer back.
#[tokio::test]
async fn removing_the_recipient_withdraws_the_offer() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (creator_id, _, creator) = app.user().await?;
    let (member_id, member_email, member) = app.user().await?;
    let list = app.create_list(&creator, "Casa").await?;
    let share = || async {
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/v1/lists/{list}/members"),
                Some(&creator),
                Some(json!({ "email": member_email, "role": "member" })),
            )
            .await?;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        anyhow::Ok(())
    };
    share().await?;
    let (s, b) = offer(&app, &list, &creator, &member_id).await?;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("/v1/lists/{list}/members/{member_id}"),
            Some(&creator),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    share().await?;
    let (s, b) = accept(&app, &list, &member).await?;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the removed recipient's offer was taken: {b}"
    );
    assert_eq!(owner_of(&app, &list, &creator).await?, creator_id.as_str());
    Ok(())
}

/// The keys of a JSON object answer, sorted: two answers of the same shape have the same.
fn sorted_keys(b: &Value) -> Vec<String> {
    let mut keys: Vec<String> = b
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

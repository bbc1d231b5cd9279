//! Attachments against a real S3-protocol server (s3s-fs) and PostgreSQL: uploads and
//! downloads go straight to the store through presigned URLs, the store itself refuses what
//! was not signed, access follows list membership, and no object outlives its attachment
//! (deleted while the store is down, or never confirmed).

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use common::{TestApp, TestDb, eventually};
use e2e::attachments::{Attachments, sha256};
use e2e::private::PrivateService;
use listacompra_api::domain::AttachmentRules;
use listacompra_api::metrics::Metrics;
use listacompra_api::objects::S3Objects;
use listacompra_api::objects::janitor::{Janitor, Round};
use listacompra_api::ports::ObjectStore;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `n` bytes that differ from test to test.
fn bytes(n: usize) -> Vec<u8> {
    let seed = uuid::Uuid::new_v4();
    seed.as_bytes().iter().copied().cycle().take(n).collect()
}

/// The attachments client of the holder of `token`.
fn client(app: &TestApp, token: &str) -> Attachments {
    Attachments::new(&app.base, token).expect("an HTTP client")
}

/// Sends `body` with a presigned request (no API call, so no token).
async fn send_presigned(
    presigned: &Value,
    body: Vec<u8>,
    header: Option<(&str, &str)>,
) -> Result<(StatusCode, String)> {
    Ok(Attachments::new("", "")?
        .send_presigned(presigned, body, header)
        .await?)
}

/// A server with attachments on the store described by `env`, on a fresh database.
async fn app_on(
    services: &e2e::services::Services,
    env: &e2e::env::Env,
    url_ttl: Duration,
    rules: AttachmentRules,
    workers: bool,
) -> Result<(TestApp, TestDb)> {
    let db = TestDb::migrated(services).await?;
    let mut config = common::config(services, &db)?;
    config.attachments.s3 = Some(common::s3_config(env)?);
    config.attachments.url_ttl = url_ttl;
    config.attachments.rules = rules;
    let app = TestApp::start(config, workers).await?;
    Ok((app, db))
}

#[tokio::test]
async fn upload_list_download_and_delete_follow_membership() -> Result<()> {
    let (app, db, objects) =
        on_shared_store(Duration::from_secs(300), AttachmentRules::default()).await?;
    let (_, _, ana) = app.user().await?;
    let (_, bea_email, bea) = app.user().await?;
    let (_, _, eve) = app.user().await?;
    let list = app.create_list(&ana, "Compra").await?;
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/v1/lists/{list}/members"),
            Some(&ana),
            Some(json!({ "email": bea_email })),
        )
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let data = bytes(200 * 1024);
    let (s, announced) = client(&app, &bea)
        .announce(&list, "recibo mayo.pdf", "application/pdf", &data)
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{announced}");
    assert_eq!(announced["attachment"]["state"], "pending");
    assert_eq!(announced["upload"]["method"], "PUT");
    let id = announced["attachment"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/lists/{list}/attachments/{id}");

    // Not confirmed: not listed, not downloadable, and confirming before the bytes arrive
    // is refused.
    assert_eq!(listed(&app, &ana, &list).await?, 0);
    let (s, b) = app.call(Method::GET, &path, Some(&ana), None).await?;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, b) = app
        .call(Method::POST, &format!("{path}/confirm"), Some(&bea), None)
        .await?;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");

    let (s, text) = send_presigned(&announced["upload"], data.clone(), None).await?;
    assert!(s.is_success(), "upload: {s} {text}");
    let (s, b) = app
        .call(Method::POST, &format!("{path}/confirm"), Some(&bea), None)
        .await?;
    assert_eq!(
        (s, b["state"].as_str()),
        (StatusCode::OK, Some("ready")),
        "{b}"
    );
    // Confirming again is harmless.
    let (s, again) = app
        .call(Method::POST, &format!("{path}/confirm"), Some(&ana), None)
        .await?;
    assert_eq!(
        (s, &again["confirmed_at"]),
        (StatusCode::OK, &b["confirmed_at"])
    );

    let (s, b) = app
        .call(
            Method::GET,
            &format!("/v1/lists/{list}/attachments"),
            Some(&ana),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::OK);
    let listed = b["attachments"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{b}");
    assert_eq!(listed[0]["name"], "recibo mayo.pdf");
    assert_eq!(listed[0]["size_bytes"], data.len());
    assert_eq!(listed[0]["sha256"], sha256(&data));
    assert!(
        listed[0].get("object_key").is_none(),
        "keys are never shown: {b}"
    );

    // Downloaded back byte for byte, under its name, by another member.
    let (s, b) = app.call(Method::GET, &path, Some(&ana), None).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    let res = reqwest::get(b["download"]["url"].as_str().unwrap()).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/pdf")
    );
    let disposition = res
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        disposition.contains("filename*=UTF-8''recibo%20mayo.pdf"),
        "{disposition}"
    );
    assert_eq!(res.bytes().await?.as_ref(), data.as_slice());

    // Someone outside the list sees nothing, and changes nothing.
    for (method, p) in [
        (Method::GET, format!("/v1/lists/{list}/attachments")),
        (Method::GET, path.clone()),
        (Method::POST, format!("{path}/confirm")),
        (Method::DELETE, path.clone()),
        (Method::POST, format!("/v1/lists/{list}/attachments")),
    ] {
        let body = (method == Method::POST && p.ends_with("attachments")).then(|| {
            json!({ "name": "x.txt", "content_type": "text/plain", "size_bytes": 1, "sha256": sha256(b"x") })
        });
        let (s, b) = app.call(method.clone(), &p, Some(&eve), body).await?;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {p}: {b}");
    }

    // Deleted by a member: gone from the list at once, and from the store at the janitor's
    // next round (run here by the test; the server's workers are off).
    let key = format!("attachments/{list}/{id}");
    assert!(objects.head(&key).await?.is_some());
    let (s, _) = app.call(Method::DELETE, &path, Some(&bea), None).await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.call(Method::GET, &path, Some(&ana), None).await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let objects: Arc<dyn ObjectStore> = Arc::new(objects);
    let janitor = Janitor::new(db.pool.clone(), objects.clone(), Metrics::new("test")?);
    assert_eq!(janitor.round().await?.deleted, 1);
    assert!(
        objects.head(&key).await?.is_none(),
        "the object follows its attachment"
    );
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_store_refuses_what_the_url_was_not_signed_for() -> Result<()> {
    let (app, _db, objects) =
        on_shared_store(Duration::from_secs(300), AttachmentRules::default()).await?;
    let (_, _, ana) = app.user().await?;
    let list = app.create_list(&ana, "Compra").await?;
    let data = bytes(4096);
    let (s, announced) = client(&app, &ana)
        .announce(&list, "foto.png", "image/png", &data)
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{announced}");
    let key = format!(
        "attachments/{list}/{}",
        announced["attachment"]["id"].as_str().unwrap()
    );
    let upload = &announced["upload"];

    // Another content type, a larger body, other bytes of the same length: each refused by
    // the store for what it is (the signature covers type and length, the checksum the
    // bytes), and nothing stored.
    let (s, text) =
        send_presigned(upload, data.clone(), Some(("content-type", "text/html"))).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "other content type: {text}");
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");
    let mut larger = data.clone();
    larger.extend_from_slice(&bytes(1024 * 1024));
    // The store judges the signed length from the headers and answers before it reads the
    // body; it then closes the connection. Whether the client reads that 403 or first fails
    // to write the rest of a 1 MiB body into the closed connection is a race of the two
    // sockets (seen once in CI: "error writing a body to connection: Broken pipe"). Both
    // are the store refusing the body; what matters, that nothing is stored, is checked
    // below.
    match send_presigned(upload, larger, None).await {
        Ok((s, text)) => {
            assert_eq!(s, StatusCode::FORBIDDEN, "larger body: {text}");
            assert!(text.contains("SignatureDoesNotMatch"), "{text}");
        }
        Err(e) => {
            let chain = format!("{e:#}");
            assert!(
                chain.contains("error writing a body to connection"),
                "larger body: neither refused nor cut off by the store: {chain}"
            );
        }
    }
    let mut other = data.clone();
    other[0] ^= 0xff;
    let (s, text) = send_presigned(upload, other, None).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "other bytes: {text}");
    assert!(text.contains("BadDigest"), "{text}");
    // (s3s-fs 0.14 writes the body before it checks the checksum, so a refused body may be
    // left under the key, without its checksum: the API's confirm checks what is stored.)
    let stored = objects.head(&key).await?;
    assert!(
        stored.as_ref().is_none_or(|o| o.sha256.is_none()),
        "no object with a checksum may be stored: {stored:?}"
    );
    let id = announced["attachment"]["id"].as_str().unwrap();
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/v1/lists/{list}/attachments/{id}/confirm"),
            Some(&ana),
            None,
        )
        .await?;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "a refused upload never becomes an attachment: {b}"
    );

    app.stop().await;

    // An expired URL: on a server whose URLs live 2 s (ATTACHMENT_URL_TTL_SECONDS), the right
    // bytes sent after the expiry are refused too.
    let (app, _db, _) = on_shared_store(Duration::from_secs(2), AttachmentRules::default()).await?;
    let (_, _, ana) = app.user().await?;
    let list = app.create_list(&ana, "Compra").await?;
    let (s, announced) = client(&app, &ana)
        .announce(&list, "foto.png", "image/png", &data)
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{announced}");
    let upload = &announced["upload"];
    let expires_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(upload["expires_at"].clone())?;
    eventually(
        "the upload URL to expire",
        Duration::from_secs(20),
        || async {
            Ok((chrono::Utc::now() > expires_at + chrono::Duration::seconds(1)).then_some(()))
        },
    )
    .await?;
    let (s, text) = send_presigned(upload, data.clone(), None).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "expired URL: {text}");
    assert!(text.contains("expired"), "{text}");
    let id = announced["attachment"]["id"].as_str().unwrap_or_default();
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/v1/lists/{list}/attachments/{id}/confirm"),
            Some(&ana),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn bad_announcements_name_the_field_and_the_quota_holds() -> Result<()> {
    let rules = AttachmentRules {
        quota_bytes: 10_001,
        max_per_list: 3,
        ..AttachmentRules::default()
    };
    let (app, _db, _objects) = on_shared_store(Duration::from_secs(300), rules).await?;
    let (_, _, ana) = app.user().await?;
    let list = app.create_list(&ana, "Compra").await?;
    let path = format!("/v1/lists/{list}/attachments");
    for (body, field) in [
        (
            json!({ "name": "a.html", "content_type": "text/html", "size_bytes": 5, "sha256": sha256(b"hello") }),
            "content_type",
        ),
        (
            json!({ "name": "", "content_type": "text/plain", "size_bytes": 5, "sha256": sha256(b"hello") }),
            "name",
        ),
        (
            json!({ "name": "a.txt", "content_type": "text/plain", "size_bytes": 0, "sha256": sha256(b"hello") }),
            "size_bytes",
        ),
        (
            json!({ "name": "a.txt", "content_type": "text/plain", "size_bytes": 5, "sha256": "nope" }),
            "sha256",
        ),
        (
            json!({ "name": "a.txt", "content_type": "text/plain", "size_bytes": 5, "sha256": sha256(b"hello"), "item_id": uuid::Uuid::new_v4() }),
            "item_id",
        ),
    ] {
        let (s, b) = app
            .call(Method::POST, &path, Some(&ana), Some(body))
            .await?;
        assert_eq!(
            (s, b["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
            "{b}"
        );
    }
    // Pending uploads count: 6,000 + 6,000 bytes exceed a quota of 10,001.
    let (s, b) = client(&app, &ana)
        .announce(&list, "a.txt", "text/plain", &bytes(6000))
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = client(&app, &ana)
        .announce(&list, "b.txt", "text/plain", &bytes(6000))
        .await?;
    assert_eq!(
        (s, b["limit"].as_str()),
        (StatusCode::CONFLICT, Some("ATTACHMENT_QUOTA_BYTES")),
        "{b}"
    );
    let (s, b) = client(&app, &ana)
        .announce(&list, "c.txt", "text/plain", &bytes(4000))
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // A list holds at most ATTACHMENT_MAX_PER_LIST (3 here) whatever their sizes.
    let (s, b) = client(&app, &ana)
        .announce(&list, "d.txt", "text/plain", &bytes(1))
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = client(&app, &ana)
        .announce(&list, "e.txt", "text/plain", &bytes(1))
        .await?;
    assert_eq!(
        (s, b["limit"].as_str()),
        (StatusCode::CONFLICT, Some("ATTACHMENT_MAX_PER_LIST")),
        "{b}"
    );
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn without_a_bucket_attachments_answer_501_and_the_rest_works() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (_, _, ana) = app.user().await?;
    let list = app.create_list(&ana, "Compra").await?;
    let (s, b) = app
        .call(
            Method::GET,
            &format!("/v1/lists/{list}/attachments"),
            Some(&ana),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap_or_default()
            .contains("S3_BUCKET"),
        "{b}"
    );
    let (s, _) = app
        .call(Method::GET, &format!("/v1/lists/{list}"), Some(&ana), None)
        .await?;
    assert_eq!(s, StatusCode::OK);
    app.stop().await;
    Ok(())
}

/// How many attachments the list shows to the holder of `token`.
async fn listed(app: &TestApp, token: &str, list: &str) -> Result<usize> {
    let (s, b) = app
        .call(
            Method::GET,
            &format!("/v1/lists/{list}/attachments"),
            Some(token),
            None,
        )
        .await?;
    anyhow::ensure!(s == StatusCode::OK, "listing attachments: {s} {b}");
    b["attachments"]
        .as_array()
        .map(Vec::len)
        .context("no attachments array")
}

/// A server with attachments on the shared S3 server (workers off), and a client of that
/// store for the test's own checks.
async fn on_shared_store(
    url_ttl: Duration,
    rules: AttachmentRules,
) -> Result<(TestApp, TestDb, S3Objects)> {
    let services = common::services_with_s3().await?;
    let (app, db) = app_on(&services, services.env(), url_ttl, rules, false).await?;
    let objects = S3Objects::new(&common::s3_config(services.env())?, Duration::from_secs(5))?;
    Ok((app, db, objects))
}

/// Objects stored in a private S3 server (keys under `attachments/`).
async fn stored(objects: &S3Objects, keys: &[String]) -> Result<usize> {
    let mut n = 0;
    for key in keys {
        if objects.head(key).await?.is_some() {
            n += 1;
        }
    }
    Ok(n)
}

#[tokio::test]
async fn deleting_a_list_while_the_store_is_down_leaves_no_object_once_it_is_back() -> Result<()> {
    let services = common::services_with_s3().await?;
    let s3 = PrivateService::s3()?;
    let env = s3.env()?;
    let (app, db) = app_on(
        &services,
        &env,
        Duration::from_secs(300),
        AttachmentRules::default(),
        true,
    )
    .await?;
    let objects = S3Objects::new(&common::s3_config(&env)?, Duration::from_secs(5))?;
    let (_, _, ana) = app.user().await?;
    let list = app.create_list(&ana, "Compra").await?;
    let mut keys = Vec::new();
    for _ in 0..3 {
        let id = client(&app, &ana)
            .upload(&list, "recibo.pdf", "application/pdf", &bytes(10_000))
            .await?;
        keys.push(format!("attachments/{list}/{id}"));
    }
    assert_eq!(stored(&objects, &keys).await?, 3);

    let ready = |app: &TestApp| {
        let http = app.http.clone();
        let url = format!("{}/ready", app.base);
        async move {
            let res = http
                .get(url)
                .header("x-healthcheck-token", "health-token")
                .send()
                .await?;
            let status = res.status();
            anyhow::Ok((status, res.json::<Value>().await?))
        }
    };
    let (s, b) = ready(&app).await?;
    assert_eq!(
        (s, &b["checks"]["object_store"]["ok"]),
        (StatusCode::OK, &json!(true)),
        "{b}"
    );

    s3.down()?;
    // The store is only reported: still ready, degraded (after the probe cache's second).
    eventually(
        "/ready to report the store down",
        Duration::from_secs(10),
        || async {
            let (s, b) = ready(&app).await?;
            anyhow::ensure!(s == StatusCode::OK, "/ready answered {s}: {b}");
            Ok((b["degraded"] == json!(["object_store"])).then_some(()))
        },
    )
    .await?;
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("/v1/lists/{list}"),
            Some(&ana),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    // The janitor tries, fails and keeps the keys.
    eventually(
        "a failed deletion while the store is down",
        Duration::from_secs(30),
        || async {
            let failures: i64 =
                sqlx::query_scalar("SELECT count(*) FROM object_deletions WHERE attempts > 0")
                    .fetch_one(&db.pool)
                    .await?;
            Ok((failures > 0).then_some(()))
        },
    )
    .await?;
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM object_deletions")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(waiting, 3);
    let metrics = app.metrics().await?;
    let failures: f64 = metrics
        .lines()
        .find(|l| l.starts_with("listacompra_object_deletion_failures_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .context("the failures counter")?;
    assert!(failures >= 1.0, "{failures}");

    s3.up()?;
    // Deleted once the store is back; each key then waits only for its last deletion after
    // its URL's expiry (see the sweep test).
    eventually(
        "every object deleted once the store is back",
        Duration::from_secs(60),
        || async {
            let done: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM object_deletions WHERE attempts = 0 \
                 AND last_error IS NULL AND next_attempt_at > now() + interval '10 minutes'",
            )
            .fetch_one(&db.pool)
            .await?;
            Ok((done == 3).then_some(()))
        },
    )
    .await?;
    assert_eq!(
        stored(&objects, &keys).await?,
        0,
        "no object may outlive its list"
    );
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn unconfirmed_uploads_are_swept_with_their_objects() -> Result<()> {
    let (app, db, objects) =
        on_shared_store(Duration::from_secs(300), AttachmentRules::default()).await?;
    let objects: Arc<dyn ObjectStore> = Arc::new(objects);
    let janitor = Janitor::new(db.pool.clone(), objects.clone(), Metrics::new("test")?);
    let (_, _, ana) = app.user().await?;
    let list = app.create_list(&ana, "Compra").await?;
    // Uploaded but never confirmed, and one confirmed that must stay.
    let data = bytes(3000);
    let (s, announced) = client(&app, &ana)
        .announce(&list, "a.txt", "text/plain", &data)
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{announced}");
    let late = data.clone();
    let (s, text) = send_presigned(&announced["upload"], data, None).await?;
    assert!(s.is_success(), "{text}");
    let key = format!(
        "attachments/{list}/{}",
        announced["attachment"]["id"].as_str().unwrap()
    );
    let kept_id = {
        let data = bytes(3000);
        let (s, b) = client(&app, &ana)
            .announce(&list, "b.txt", "text/plain", &data)
            .await?;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        send_presigned(&b["upload"], data, None).await?;
        let id = b["attachment"]["id"].as_str().unwrap().to_owned();
        let (s, b) = app
            .call(
                Method::POST,
                &format!("/v1/lists/{list}/attachments/{id}/confirm"),
                Some(&ana),
                None,
            )
            .await?;
        assert_eq!(s, StatusCode::OK, "{b}");
        id
    };

    // Nothing is swept while the URLs work.
    assert_eq!(janitor.round().await?, Round::default());
    // Its URL expires (the test moves the recorded expiry to a second ago rather than wait
    // ATTACHMENT_URL_TTL_SECONDS): the sweep removes the attachment and its object.
    sqlx::query("UPDATE attachments SET upload_expires_at = now() - interval '1 second' WHERE state = 'pending'")
        .execute(&db.pool)
        .await?;
    let swept = janitor.round().await?;
    assert_eq!((swept.swept, swept.deleted), (1, 1), "{swept:?}");
    assert!(
        objects.head(&key).await?.is_none(),
        "the unconfirmed object is gone"
    );
    // The key is kept for a last deletion 15 minutes after the URL's expiry, when no upload
    // started with it can still land...
    let (due_in,): (f64,) = sqlx::query_as(
        "SELECT extract(epoch FROM next_attempt_at - now())::float8 FROM object_deletions WHERE object_key = $1",
    )
    .bind(&key)
    .fetch_one(&db.pool)
    .await?;
    assert!(
        due_in > 800.0,
        "last deletion due in {due_in} s; 15 minutes after expiry expected"
    );
    // ... such as this one, with the URL still valid in the store's eyes (it was signed for
    // 300 s): the object is back, with no attachment.
    let (s, text) = send_presigned(&announced["upload"], late.clone(), None).await?;
    assert!(s.is_success(), "{text}");
    assert!(objects.head(&key).await?.is_some());
    // The last deletion removes it (the test moves its schedule to now) and forgets the key.
    sqlx::query("UPDATE object_deletions SET next_attempt_at = now(), final_at = now()")
        .execute(&db.pool)
        .await?;
    let round = janitor.round().await?;
    assert_eq!(round.deleted, 1, "{round:?}");
    assert!(
        objects.head(&key).await?.is_none(),
        "no object outlives its attachment"
    );
    assert_eq!(janitor.pending().await?, 0);
    assert!(
        objects
            .head(&format!("attachments/{list}/{kept_id}"))
            .await?
            .is_some(),
        "a confirmed attachment keeps its object"
    );
    assert_eq!(listed(&app, &ana, &list).await?, 1);
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn reverting_the_attachments_revision_refuses_while_attachments_exist() -> Result<()> {
    let (app, db, _) =
        on_shared_store(Duration::from_secs(300), AttachmentRules::default()).await?;
    let (_, _, ana) = app.user().await?;
    let list = app.create_list(&ana, "Compra").await?;
    let id = client(&app, &ana)
        .upload(&list, "ticket.pdf", "application/pdf", &bytes(1000))
        .await?;
    let err = listacompra_api::migrate::reset_to(&db.pool, Some(9))
        .await
        .expect_err("a revert that would drop an attachment must refuse");
    let message = format!("{err:#}");
    assert!(
        message.contains("1 attachment(s)") && message.contains("Keep revision 10"),
        "{message}"
    );
    // Revision 11 (an index) went down; revision 10 refused and stays.
    assert_eq!(listacompra_api::migrate::current(&db.pool).await?, 10);
    // Nothing was lost: the attachment is still listed.
    assert_eq!(listed(&app, &ana, &list).await?, 1);
    // Once the attachments are gone (and their objects deleted), the revert goes through.
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/lists/{list}/attachments/{id}"),
            Some(&ana),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    sqlx::query("DELETE FROM object_deletions")
        .execute(&db.pool)
        .await?;
    listacompra_api::migrate::reset_to(&db.pool, Some(9)).await?;
    assert_eq!(listacompra_api::migrate::current(&db.pool).await?, 9);
    app.stop().await;
    Ok(())
}

//! What hostile clients do, against the real server and services: each check names the
//! attack and the bound that holds.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{TestApp, TestDb};
use listacompra_api::config::Limits;
use listacompra_api::domain::Caps;
use listacompra_api::ratelimit::RateLimitConfig;
use listacompra_crds::metrics as names;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() -> Result<()> {
    let (app, _db) = common::app().await?;
    // One made-up method first: whatever label it gets exists from now on.
    let first = Method::from_bytes(b"ZZ0")?;
    app.http
        .request(first, format!("{}/x", app.base))
        .send()
        .await?;
    // So is the scrape's own line.
    app.metrics().await?;
    let before = app.metrics().await?.lines().count();
    for i in 1..=300 {
        let method = Method::from_bytes(format!("ZZ{i}").as_bytes())?;
        let res = app
            .http
            .request(method, format!("{}/x", app.base))
            .send()
            .await?;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    let text = app.metrics().await?;
    assert_eq!(
        text.lines().count(),
        before,
        "300 made-up methods added lines:\n{text}"
    );
    assert!(!text.contains("ZZ"), "a made-up method became a label");
    Ok(())
}

#[tokio::test]
async fn the_latency_histogram_measures_api_routes_only() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (_, _, token) = app.user().await?;
    for path in ["/health", "/ready", "/metrics", "/openapi.json", "/nope"] {
        app.call(Method::GET, path, None, None).await?;
    }
    app.call(Method::PUT, "/v1/lists", Some(&token), None)
        .await?;
    app.call(Method::GET, "/v1/lists", Some(&token), None)
        .await?;
    let text = app.metrics().await?;
    let histogram: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(names::HTTP_REQUEST_DURATION_SECONDS))
        .collect();
    assert!(
        histogram
            .iter()
            .any(|l| l.contains(r#"route="/v1/lists""#) && l.contains(r#"method="GET""#)),
        "{text}"
    );
    for route in [
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
        "unmatched",
    ] {
        let label = format!(r#"route="{route}""#);
        assert!(
            !histogram.iter().any(|l| l.contains(&label)),
            "{route} is in the latency histogram:\n{text}"
        );
    }
    // They are still counted, with bounded labels.
    assert!(
        text.lines()
            .any(|l| l.starts_with("listacompra_http_requests_total")
                && l.contains(r#"route="/health""#)),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("listacompra_http_requests_total")
                && l.contains(r#"route="unmatched""#)
                && l.contains(r#"status="404""#)),
        "{text}"
    );
    Ok(())
}

/// A server on a fresh database whose limits `change` adjusts.
async fn app_with(change: impl FnOnce(&mut Limits)) -> Result<(TestApp, TestDb)> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let mut config = common::config(&services, &db)?;
    change(&mut config.limits);
    Ok((TestApp::start(config, false).await?, db))
}

/// Reads from `stream` until the server closes it; `None` when it is still open after
/// `guard` (a bound so a failing test ends, not a speed assertion).
async fn closed_by_server(stream: &mut tokio::net::TcpStream, guard: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(guard, read_all).await.ok()?;
    Some(got)
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The header-read timeout short and the idle timeout long: only the configured
    // HTTP_HEADER_READ_TIMEOUT_SECONDS can end this connection within the guard (hyper's own
    // default is 30 s, and the trickle below keeps the connection from ever being idle).
    let (app, _db) = app_with(|l| {
        l.header_read_timeout = Duration::from_secs(1);
        l.idle_timeout = Duration::from_secs(60);
    })
    .await?;
    let stream = tokio::net::TcpStream::connect(app.addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    // A slowloris: one byte of a header that never ends, every 300 ms, until the server
    // hangs up (a write then fails).
    let trickle = tokio::spawn(async move {
        let start = b"GET /health HTTP/1.1\r\nHost: a\r\nX-Slow: ";
        let bytes = start.iter().copied().chain(std::iter::repeat(b'a'));
        let mut sent = 0usize;
        for byte in bytes {
            if writer.write_all(&[byte]).await.is_err() || writer.flush().await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        sent
    });
    let started = std::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    trickle.abort();
    assert!(
        closed.is_ok(),
        "a client trickling its headers is still connected 10 s later \
         (HTTP_HEADER_READ_TIMEOUT_SECONDS=1)"
    );
    // Closed by the header-read timeout, not at once for some other reason.
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed after {elapsed:?}"
    );
    // The server is still serving everyone else.
    let (s, _) = app.call(Method::GET, "/health", None, None).await?;
    assert_eq!(s, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn a_client_that_connects_and_sends_nothing_is_disconnected() -> Result<()> {
    let (app, _db) = app_with(|l| l.idle_timeout = Duration::from_secs(1)).await?;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await?;
    let answer = closed_by_server(&mut stream, Duration::from_secs(60)).await;
    assert!(
        answer.is_some(),
        "an idle connection is still open after 60 s"
    );
    Ok(())
}

async fn login(app: &common::TestApp, email: &str, password: &str) -> Result<reqwest::Response> {
    Ok(app
        .http
        .post(format!("{}/v1/auth/login", app.base))
        .json(&serde_json::json!({ "email": email, "password": password }))
        .send()
        .await?)
}

/// Asserts a 429 with a whole-seconds Retry-After and a JSON body naming the limit.
async fn assert_rate_limited(res: reqwest::Response, limit: &str) -> Result<()> {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()?
        .parse()?;
    assert!(retry_after >= 1, "Retry-After: {retry_after}");
    let body: serde_json::Value = res.json().await?;
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert_eq!(body["limit"], limit, "{body}");
    assert_eq!(body["retry_after_seconds"], retry_after, "{body}");
    Ok(())
}

#[tokio::test]
async fn password_guessing_on_one_account_is_rate_limited_and_others_still_log_in() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (_, victim, _) = app.user().await?;
    let (_, bystander, _) = app.user().await?;
    let mut limited = None;
    for i in 0..40 {
        let res = login(&app, &victim, &format!("guess {i}")).await?;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(res);
            break;
        }
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = limited.expect("40 wrong passwords for one account were never answered 429");
    assert_rate_limited(res, "RATE_LIMIT_AUTH_PER_ACCOUNT_PER_MINUTE").await?;
    // Other accounts, from the same address, are not affected.
    let res = login(&app, &bystander, "correct horse").await?;
    assert_eq!(res.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn a_flood_from_one_address_is_rate_limited() -> Result<()> {
    let (app, _db) = common::app().await?;
    let mut limited = None;
    // Each with a new e-mail (so no account limit applies) and a password too short to be
    // hashed: what bounds this is the per-address limit.
    for i in 0..200 {
        let res = app
            .http
            .post(format!("{}/v1/auth/register", app.base))
            .json(&serde_json::json!({ "email": format!("flood{i}@example.com"), "password": "x" }))
            .send()
            .await?;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(res);
            break;
        }
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let res = limited.expect("200 registrations from one address were never answered 429");
    assert_rate_limited(res, "RATE_LIMIT_AUTH_PER_ADDRESS_PER_MINUTE").await
}

#[tokio::test]
async fn a_client_that_never_finishes_its_body_gets_408_and_is_disconnected() -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let (app, _db) = app_with(|l| l.body_read_timeout = Duration::from_secs(1)).await?;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await?;
    stream
        .write_all(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"email\"",
        )
        .await?;
    let answer = closed_by_server(&mut stream, Duration::from_secs(60))
        .await
        .expect("the connection is still open 60 s after a partial body");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""error":"request_timeout""#), "{text}");
    assert!(text.contains("HTTP_BODY_READ_TIMEOUT_SECONDS"), "{text}");
    Ok(())
}

#[tokio::test]
async fn a_login_flood_beyond_the_hashing_slots_is_answered_503_not_queued() -> Result<()> {
    let (app, _db) = app_with(|l| {
        l.hash_concurrency = 1;
        l.hash_queue_timeout = Duration::from_millis(1);
        // Rate limits off: what bounds this is the hashing semaphore.
        l.rate = RateLimitConfig {
            auth_per_address: 0,
            auth_per_account: 0,
            suggestions_per_user: 0,
            ..RateLimitConfig::default()
        };
    })
    .await?;
    let mut busy = None;
    for round in 0..5 {
        let attempts = (0..24).map(|i| {
            let app = &app;
            async move { login(app, &format!("r{round}n{i}@example.com"), "guess guess").await }
        });
        for res in futures::future::join_all(attempts).await {
            let res = res?;
            match res.status() {
                StatusCode::UNAUTHORIZED => {}
                StatusCode::SERVICE_UNAVAILABLE => busy = Some(res),
                other => panic!("unexpected {other}"),
            }
        }
        if busy.is_some() {
            break;
        }
    }
    let res = busy.expect("24 concurrent logins with one hashing slot were never answered 503");
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()?
        .parse()?;
    assert!(retry_after >= 1);
    let body: serde_json::Value = res.json().await?;
    assert_eq!(body["error"], "overloaded", "{body}");
    assert_eq!(body["limit"], "PASSWORD_HASH_CONCURRENCY", "{body}");
    // The slot comes free once the flood's hashes end (on a loaded machine that takes a
    // while, and a login meanwhile is rightly 503): then a real registration and login work.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match app.user().await {
            Ok(_) => break,
            Err(e) if e.to_string().contains("503") && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(e.context("a real login after the flood, within 30 s of its end"));
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn suggestion_requests_are_rate_limited_per_user() -> Result<()> {
    let (app, _db) = app_with(|l| l.rate.suggestions_per_user = 2).await?;
    let (_, _, token) = app.user().await?;
    let list = app.create_list(&token, "Casa").await?;
    let ask = || {
        app.http
            .post(format!("{}/v1/lists/{list}/suggestions", app.base))
            .bearer_auth(&token)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(ask().await?.status(), StatusCode::ACCEPTED);
    }
    assert_rate_limited(ask().await?, "RATE_LIMIT_SUGGESTIONS_PER_USER_PER_MINUTE").await?;
    // Another user is not affected.
    let (_, _, other) = app.user().await?;
    let theirs = app.create_list(&other, "Otra").await?;
    let res = app
        .http
        .post(format!("{}/v1/lists/{theirs}/suggestions", app.base))
        .bearer_auth(&other)
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    Ok(())
}

#[tokio::test]
async fn a_co_owner_cannot_remove_the_creator_and_members_can_leave() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (creator_id, _, creator) = app.user().await?;
    let (co_owner_id, co_owner_email, co_owner) = app.user().await?;
    let (member_id, member_email, member) = app.user().await?;
    let list = app.create_list(&creator, "Casa").await?;
    let members = format!("/v1/lists/{list}/members");
    for (email, role) in [(&co_owner_email, "owner"), (&member_email, "member")] {
        let (s, b) = app
            .call(
                Method::POST,
                &members,
                Some(&creator),
                Some(serde_json::json!({ "email": email, "role": role })),
            )
            .await?;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    // A co-owner cannot remove the creator (owner_id would name a non-member).
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("{members}/{creator_id}"),
            Some(&co_owner),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["message"].as_str().is_some_and(|m| m.contains("creator")),
        "{b}"
    );
    // Nor can the creator leave: the list would have nobody behind owner_id.
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("{members}/{creator_id}"),
            Some(&creator),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    // A member cannot remove someone else...
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("{members}/{co_owner_id}"),
            Some(&member),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // ...but can leave, and the list is then gone for them.
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("{members}/{member_id}"),
            Some(&member),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, _) = app
        .call(
            Method::GET,
            &format!("/v1/lists/{list}"),
            Some(&member),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A co-owner can leave too; the creator still owns the list.
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("{members}/{co_owner_id}"),
            Some(&co_owner),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, b) = app
        .call(
            Method::GET,
            &format!("/v1/lists/{list}"),
            Some(&creator),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["owner_id"], creator_id.as_str(), "{b}");
    assert_eq!(b["members"].as_array().map(Vec::len), Some(1), "{b}");
    Ok(())
}

/// Asserts a 4xx JSON answer naming `limit`.
fn assert_names_limit(
    status: StatusCode,
    body: &serde_json::Value,
    expected: StatusCode,
    limit: &str,
) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["limit"], limit, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains(limit)),
        "{body}"
    );
}

#[tokio::test]
async fn items_members_lists_and_bodies_are_capped_and_the_answer_names_the_cap() -> Result<()> {
    let (app, _db) = app_with(|l| {
        l.caps = Caps {
            items_per_list: 2,
            members_per_list: 2,
            lists_per_user: 2,
        };
        l.max_body_bytes = 1024;
    })
    .await?;
    let (_, _, token) = app.user().await?;
    let list = app.create_list(&token, "Casa").await?;
    let items = format!("/v1/lists/{list}/items");
    for name in ["leche", "pan"] {
        let (s, b) = app
            .call(
                Method::POST,
                &items,
                Some(&token),
                Some(serde_json::json!({ "name": name })),
            )
            .await?;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let (s, b) = app
        .call(
            Method::POST,
            &items,
            Some(&token),
            Some(serde_json::json!({ "name": "huevos" })),
        )
        .await?;
    assert_names_limit(s, &b, StatusCode::CONFLICT, "MAX_ITEMS_PER_LIST");

    app.create_list(&token, "Otra").await?;
    let (s, b) = app
        .call(
            Method::POST,
            "/v1/lists",
            Some(&token),
            Some(serde_json::json!({ "name": "Tercera" })),
        )
        .await?;
    assert_names_limit(s, &b, StatusCode::CONFLICT, "MAX_LISTS_PER_USER");

    // The creator is the first member.
    let (_, first, _) = app.user().await?;
    let (_, second, _) = app.user().await?;
    let members = format!("/v1/lists/{list}/members");
    let (s, b) = app
        .call(
            Method::POST,
            &members,
            Some(&token),
            Some(serde_json::json!({ "email": first })),
        )
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app
        .call(
            Method::POST,
            &members,
            Some(&token),
            Some(serde_json::json!({ "email": second })),
        )
        .await?;
    assert_names_limit(s, &b, StatusCode::CONFLICT, "MAX_MEMBERS_PER_LIST");

    let big = serde_json::json!({ "name": "x".repeat(2000) });
    let (s, b) = app
        .call(
            Method::PATCH,
            &format!("/v1/lists/{list}"),
            Some(&token),
            Some(big),
        )
        .await?;
    assert_names_limit(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "HTTP_MAX_BODY_BYTES");
    Ok(())
}

#[tokio::test]
async fn registering_a_taken_email_answers_like_a_new_account() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (_, taken, _) = app.user().await?;
    let fresh = format!("fresh{}@example.com", uuid::Uuid::new_v4().simple());
    let register = |email: String| {
        app.call(
            Method::POST,
            "/v1/auth/register",
            None,
            Some(serde_json::json!({ "email": email, "password": "another one" })),
        )
    };
    let (s_taken, b_taken) = register(taken.clone()).await?;
    let (s_fresh, b_fresh) = register(fresh).await?;
    // Same status, same shape: the answer does not tell whether the account existed.
    assert_eq!(s_taken, s_fresh, "{b_taken} vs {b_fresh}");
    assert_eq!(s_taken, StatusCode::CREATED);
    let keys = |b: &serde_json::Value| {
        b.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(keys(&b_taken), keys(&b_fresh));
    assert_eq!(b_taken["email"], taken.as_str());
    // And the existing account is untouched.
    let res = login(&app, &taken, "correct horse").await?;
    assert_eq!(res.status(), StatusCode::OK);
    let res = login(&app, &taken, "another one").await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}

/// A login from `address` (as the trusted proxy reports it in `X-Forwarded-For`).
async fn login_from(
    app: &common::TestApp,
    address: &str,
    email: &str,
    password: &str,
) -> Result<reqwest::Response> {
    Ok(app
        .http
        .post(format!("{}/v1/auth/login", app.base))
        .header("x-forwarded-for", address)
        .json(&serde_json::json!({ "email": email, "password": password }))
        .send()
        .await?)
}

#[tokio::test]
async fn failed_logins_from_other_addresses_do_not_lock_the_owner_out() -> Result<()> {
    // Behind one proxy: the client address is the last X-Forwarded-For entry.
    let (app, _db) = app_with(|l| l.trusted_proxy_hops = 1).await?;
    let (_, victim, _) = app.user().await?;
    let per_account = app.config.limits.rate.auth_per_account;
    // Someone else floods the account with wrong passwords from many addresses, three
    // times the per-account quota.
    for i in 0..per_account * 3 {
        let attacker = format!("198.51.100.{}", i % 250 + 1);
        let res = login_from(&app, &attacker, &victim, &format!("guess {i}")).await?;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
        // The owner, from their own address, keeps getting in throughout.
        if i % 5 == 4 {
            let res = login_from(&app, "203.0.113.7", &victim, "correct horse").await?;
            assert_eq!(
                res.status(),
                StatusCode::OK,
                "the owner was locked out after {} failures by others",
                i + 1
            );
        }
    }
    // One address guessing on its own still hits the account limit.
    let mut limited = None;
    for i in 0..per_account * 4 {
        let res = login_from(&app, "198.51.100.251", &victim, &format!("again {i}")).await?;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(res);
            break;
        }
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = limited.expect("one address guessing was never answered 429");
    assert_rate_limited(res, "RATE_LIMIT_AUTH_PER_ACCOUNT_PER_MINUTE").await
}

#[tokio::test]
async fn only_the_creator_deletes_a_list_and_a_co_owner_gets_403() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (creator_id, _, creator) = app.user().await?;
    let (_, co_owner_email, co_owner) = app.user().await?;
    let list = app.create_list(&creator, "Casa").await?;
    let (s, b) = app
        .call(
            Method::POST,
            &format!("/v1/lists/{list}/members"),
            Some(&creator),
            Some(serde_json::json!({ "email": co_owner_email, "role": "owner" })),
        )
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let path = format!("/v1/lists/{list}");
    // A co-owner cannot delete the creator's list: 403 naming why (they may leave instead).
    let (s, b) = app
        .call(Method::DELETE, &path, Some(&co_owner), None)
        .await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(b["error"], "forbidden", "{b}");
    let message = b["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("creator") && message.contains("leave"),
        "{b}"
    );
    // The list is still there for the creator, unchanged.
    let (s, b) = app.call(Method::GET, &path, Some(&creator), None).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["owner_id"], creator_id.as_str(), "{b}");
    // The creator still deletes it.
    let (s, b) = app
        .call(Method::DELETE, &path, Some(&creator), None)
        .await?;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (s, _) = app.call(Method::GET, &path, Some(&creator), None).await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn deeply_nested_json_is_a_4xx_and_the_server_keeps_answering() -> Result<()> {
    let (app, _db) = common::app().await?;
    let (_, _, token) = app.user().await?;
    let nested = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    for (path, token) in [("/v1/auth/login", None), ("/v1/lists", Some(&token))] {
        let mut req = app
            .http
            .post(format!("{}{path}", app.base))
            .header("content-type", "application/json")
            .body(nested.clone());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await?;
        let status = res.status();
        let text = res.text().await?;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {status} {text}"
        );
        let body: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{path}: not JSON ({e}): {text}"))?;
        assert!(body["error"].is_string(), "{path}: {body}");
        assert_eq!(body["field"], "body", "{path}: {body}");
    }
    // Still answering, to anonymous and authenticated callers.
    let (s, _) = app.call(Method::GET, "/health", None, None).await?;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = app
        .call(Method::GET, "/v1/lists", Some(&token), None)
        .await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    Ok(())
}

#[tokio::test]
async fn a_chunked_body_over_the_cap_is_413_naming_the_cap() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let max = 4096;
    let (app, _db) = app_with(|l| l.max_body_bytes = max).await?;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await?;
    // No Content-Length: the size is only known by reading, chunk after chunk.
    stream
        .write_all(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .await?;
    let chunk = format!("{:x}\r\n{}\r\n", 1024, " ".repeat(1024));
    let mut sent = 0;
    // Twice the cap; the server may answer (and stop reading) before all of it arrived.
    while sent < 2 * max {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
        sent += 1024;
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .map_err(|_| anyhow::anyhow!("no complete answer within 10 s"))??;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let (_, body) = text.split_once("\r\n\r\n").unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(body)?;
    assert_eq!(body["error"], "payload_too_large", "{body}");
    assert_eq!(body["limit"], "HTTP_MAX_BODY_BYTES", "{body}");
    assert_eq!(body["max"], max, "{body}");
    let (s, _) = app.call(Method::GET, "/health", None, None).await?;
    assert_eq!(s, StatusCode::OK);
    Ok(())
}

/// A refused login waits `RATE_LIMIT_DELAY_MS` for its 429, so a client retrying in a loop
/// sends one request per hold; the latency KPI measures the decision, not the hold.
#[tokio::test]
async fn a_refused_request_is_held_before_its_429_and_the_latency_kpi_does_not_count_it()
-> Result<()> {
    let hold = Duration::from_secs(2);
    let (app, _db) = app_with(|l| {
        l.rate = RateLimitConfig {
            auth_per_address: 1,
            delay: hold,
            ..RateLimitConfig::default()
        };
    })
    .await?;
    let first = login(&app, "held@example.com", "guess guess").await?;
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    let started = std::time::Instant::now();
    let refused = login(&app, "held@example.com", "guess guess").await?;
    let waited = started.elapsed();
    assert!(
        waited >= hold,
        "the 429 came after {waited:?}, not held for {hold:?}"
    );
    assert_rate_limited(refused, "RATE_LIMIT_AUTH_PER_ADDRESS_PER_MINUTE").await?;
    let text = app.metrics().await?;
    let sum: f64 = text
        .lines()
        .find(|l| {
            l.starts_with(&format!("{}_sum", names::HTTP_REQUEST_DURATION_SECONDS))
                && l.contains(r#"route="/v1/auth/login""#)
                && l.contains(r#"status="429""#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no latency of the 429 in the histogram:\n{text}"));
    assert!(
        sum < hold.as_secs_f64() / 2.0,
        "the latency KPI counted the hold: {sum} s for one 429"
    );
    Ok(())
}

/// A request that takes longer than `HTTP_REQUEST_TIMEOUT_SECONDS` (a stuck dependency,
/// played by injected latency) is answered 503 with Retry-After naming the limit, and the
/// server goes on answering.
#[tokio::test]
async fn a_request_past_the_request_timeout_is_503_naming_the_limit() -> Result<()> {
    let services = common::services().await?;
    let db = TestDb::migrated(&services).await?;
    let mut config = common::config(&services, &db)?;
    config.limits.request_timeout = Duration::from_secs(1);
    config.fault = listacompra_api::fault::FaultConfig {
        latency: Duration::from_secs(5),
        error_rate: 0.0,
        routes: vec!["/v1/lists".to_owned()],
    };
    let app = TestApp::start(config, false).await?;
    let (_, _, token) = app.user().await?; // /v1/auth is not slowed down
    let res = app
        .http
        .get(format!("{}/v1/lists", app.base))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: serde_json::Value = res.json().await?;
    assert_eq!(body["error"], "request_timeout", "{body}");
    assert_eq!(body["limit"], "HTTP_REQUEST_TIMEOUT_SECONDS", "{body}");
    let (status, _) = app.call(Method::GET, "/health", None, None).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

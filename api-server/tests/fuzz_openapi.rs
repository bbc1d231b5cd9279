//! A property test of the HTTP edge driven by the OpenAPI document: for every documented
//! operation, requests are generated from its parameters and request schema, mixed with
//! hostile values (wrong types, nulls, boundaries, unknown and missing fields, malformed
//! JSON, bad path parameters, missing or forged tokens). The property: the server never
//! answers 5xx, and every status it answers is one the document lists for that operation.
//!
//! Deterministic: the seed is fixed (set FUZZ_SEED to explore others; FUZZ_CASES for more).

mod common;

use anyhow::{Context, Result};
use common::{TestApp, TestDb};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

/// xorshift64*: small, deterministic, good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/components/schemas/")
            .map_or(schema, |name| &doc["components"]["schemas"][name]),
        None => schema,
    }
}

fn hostile(rng: &mut Rng) -> Value {
    rng.pick(&[
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5e300),
        json!(""),
        json!(" "),
        json!("x".repeat(5000)),
        json!("\u{0000}\u{202e}ñ😀"),
        json!([]),
        json!({}),
        json!(["a", 1]),
        json!(uuid::Uuid::new_v4().to_string()),
    ])
    .clone()
}

fn generate(doc: &Value, schema: &Value, rng: &mut Rng, depth: u32) -> Value {
    let schema = resolve(doc, schema);
    if depth > 3 || rng.chance(15) {
        return hostile(rng);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec!["object"],
    };
    if let Some(values) = schema["enum"].as_array() {
        return rng.pick(values).clone();
    }
    match *rng.pick(&types) {
        "object" => {
            let mut out = Map::new();
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(props) = schema["properties"].as_object() {
                for (name, prop) in props {
                    if required.contains(&name.as_str()) && rng.chance(90) || rng.chance(50) {
                        out.insert(name.clone(), generate(doc, prop, rng, depth + 1));
                    }
                }
            }
            if rng.chance(10) {
                out.insert("unexpected".to_owned(), json!(1));
            }
            Value::Object(out)
        }
        "array" => {
            let n = rng.below(4);
            Value::Array(
                (0..n)
                    .map(|_| generate(doc, &schema["items"], rng, depth + 1))
                    .collect(),
            )
        }
        "string" => {
            if schema["format"] == "uuid" {
                return json!(uuid::Uuid::new_v4().to_string());
            }
            if schema["format"] == "email" {
                return json!(format!("f{}@example.com", rng.next() % 1000));
            }
            let max = schema["maxLength"].as_u64().unwrap_or(50);
            let lens = [1, 2, max, max + 1, 0];
            let len = *rng.pick(&lens);
            json!("é".repeat(usize::try_from(len).unwrap_or(1)))
        }
        "number" => json!(*rng.pick(&[0.5, 1.0, 100_000.0, 100_000.5, 0.0, -3.0])),
        "integer" => json!(*rng.pick(&[0, 1, 20, 100, 101, -1, 1_000_001])),
        "boolean" => json!(rng.chance(50)),
        "null" => Value::Null,
        _ => hostile(rng),
    }
}

#[tokio::test]
async fn no_generated_request_gets_a_5xx_or_an_undocumented_status() -> Result<()> {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_1157);
    let cases: usize = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut rng = Rng(seed);
    // With attachments on the shared S3 server, so their operations are exercised for real
    // (without a bucket they answer 501, tested in attachments.rs).
    let services = common::services_with_s3().await?;
    let db = TestDb::migrated(&services).await?;
    let mut config = common::config(&services, &db)?;
    // Logout revokes the token, and the test logs in again after each one: the login rate
    // limits (tested in hostile.rs) would refuse that here.
    config.attachments.s3 = Some(common::s3_config(services.env())?);
    config.limits.rate.auth_per_address = 0;
    config.limits.rate.auth_per_account = 0;
    let app = TestApp::start(config, false).await?;
    let (_, email, mut token) = app.user().await?;
    let list_id = app.create_list(&token, "fuzz").await?;
    let (_, item) = app
        .call(
            Method::POST,
            &format!("/v1/lists/{list_id}/items"),
            Some(&token),
            Some(json!({ "name": "x" })),
        )
        .await?;
    let item_id = item["id"].as_str().context("item id")?.to_owned();
    let (_, doc) = app.call(Method::GET, "/openapi.json", None, None).await?;

    let mut sent = 0;
    for (path, ops) in doc["paths"].as_object().context("paths")? {
        for (method, op) in ops.as_object().context("ops")? {
            for _ in 0..cases {
                let concrete: Vec<String> = path
                    .split('/')
                    .map(|seg| match seg {
                        "{list_id}" if rng.chance(60) => list_id.clone(),
                        "{item_id}" if rng.chance(60) => item_id.clone(),
                        s if s.starts_with('{') => rng
                            .pick(&[
                                "not-a-uuid",
                                "0",
                                "%00",
                                "..",
                                "00000000-0000-0000-0000-000000000000",
                                "%F0%9F%98%80",
                            ])
                            .to_string(),
                        s => s.to_owned(),
                    })
                    .collect();
                let mut url = format!("{}{}", app.base, concrete.join("/"));
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                let mut query: Vec<String> = Vec::new();
                for p in params.iter().filter(|p| p["in"] == "query") {
                    if !rng.chance(60) {
                        continue;
                    }
                    let text = match generate(&doc, &p["schema"], &mut rng, 0) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    let text = text.replace(['&', '#', ' '], "");
                    query.push(format!("{}={text}", p["name"].as_str().unwrap_or("x")));
                }
                if !query.is_empty() {
                    url = format!("{url}?{}", query.join("&"));
                }
                let mut req = app
                    .http
                    .request(Method::from_bytes(method.to_uppercase().as_bytes())?, &url);
                if op.get("security").is_some() {
                    match rng.below(10) {
                        0 => {}
                        1 => req = req.bearer_auth("forged.token.value"),
                        _ => req = req.bearer_auth(&token),
                    }
                }
                if let Some(schema) =
                    op["requestBody"]["content"]["application/json"]["schema"].as_object()
                {
                    let schema = Value::Object(schema.clone());
                    req = match rng.below(10) {
                        0 => req.header("content-type", "application/json").body(
                            rng.pick(&[
                                "",
                                "{",
                                "[]",
                                "null",
                                "\"x\"",
                                "{\"a\":}",
                                "\u{00ff}\u{00fe}",
                            ])
                            .to_string(),
                        ),
                        _ => req.json(&generate(&doc, &schema, &mut rng, 0)),
                    };
                }
                let res = req.send().await?;
                let status = res.status();
                let body = res.text().await.unwrap_or_default();
                sent += 1;
                if op["operationId"] == "logout" && status == StatusCode::NO_CONTENT {
                    // The token is revoked now: log in again for the operations that follow.
                    token = app.login(&email).await.context("login after logout")?;
                }
                assert!(
                    !status.is_server_error(),
                    "{method} {url} -> {status}: {body} (seed {seed})"
                );
                // 404/405 for a mangled path are routing answers, documented globally.
                let documented = op["responses"][status.as_str()].is_object()
                    || (status == StatusCode::NOT_FOUND && body.contains("route_not_found"));
                assert!(
                    documented,
                    "{method} {path} answered undocumented {status}: {body} (url {url}, seed {seed})"
                );
            }
        }
    }
    assert!(sent >= 19 * cases);
    Ok(())
}

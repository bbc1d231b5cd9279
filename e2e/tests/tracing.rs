//! Traces as the runbook has them (OpenTelemetry, exported to Jaeger), checked end to end with
//! the real API binary exporting over OTLP to the real Jaeger (built from its Go module by
//! `e2e/scripts/build-jaeger.sh`), read back through Jaeger's query API:
//!
//! - a request that carries `traceparent` continues the caller's trace: its server span is
//!   named after the route template, is a child of the caller's span, and has the database
//!   work as child spans;
//! - a suggestion request is one trace from the request through the outbox relay's publish
//!   (the context kept with the outbox row) to the AI worker's consume (the context in the
//!   message's `traceparent` header);
//! - a request without one starts a trace of its own, and the JSON log line of the request
//!   (found by its `x-request-id`) carries that trace id;
//! - with no `OTEL_*` endpoint nothing is exported and log lines carry no trace id;
//! - the operator makes one trace per reconcile of a release, named and tagged with it, and
//!   its log lines inside carry that trace id.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::api::ApiProcess;
use e2e::env::Component;
use e2e::services::Services;
use serde_json::{Value, json};

/// The API binary on a database of its own, its relay and AI worker running (offline
/// provider: no API key) on exchanges and queues of this run's own.
async fn start_api(services: &Services, run: &str, otel: &[(&str, &str)]) -> Result<ApiProcess> {
    let prefix = format!("tracing.{run}");
    let mut env = vec![("RUN_WORKER", "true"), ("AMQP_PREFIX", prefix.as_str())];
    env.extend_from_slice(otel);
    let log = std::env::temp_dir().join(format!("tracing-{run}-api.log"));
    Ok(ApiProcess::start(services, &format!("tracing_{run}"), &env, log).await?)
}

/// The services with Jaeger, and an API exporting its traces there under a service name of
/// this run's own (`listacompra-api-<run>`), with `extra` variables: (services, run, service
/// name, API).
async fn start_traced_api(
    extra: &[(&str, &str)],
) -> Result<(Services, String, String, ApiProcess)> {
    let services = Services::start(&[
        Component::Postgres,
        Component::Redis,
        Component::RabbitMq,
        Component::Jaeger,
    ])
    .await?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let service = format!("listacompra-api-{run}");
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", services.otlp_endpoint()?),
        ("OTEL_SERVICE_NAME", service.as_str()),
        // Export within a fraction of a second instead of every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    env.extend_from_slice(extra);
    let api = start_api(&services, &run, &env).await?;
    Ok((services, run, service, api))
}

/// The log line of the request with `request_id` (the access line, `msg` "request").
async fn request_line(api: &ApiProcess, request_id: &str) -> Result<Value> {
    eventually(
        "the request's log line",
        Duration::from_secs(10),
        || async {
            Ok(api
                .log_lines()
                .into_iter()
                .find(|l| l["request_id"] == request_id && l["msg"] == "request"))
        },
    )
    .await
}

async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    e2e::cluster::poll(what, timeout, Duration::from_millis(500), check).await
}

/// The trace `id` as Jaeger's query API returns it, once it holds a span named `name`.
async fn jaeger_trace(query_url: &str, id: &str, name: &str) -> Result<Value> {
    let http = reqwest::Client::new();
    eventually(
        &format!("trace {id} with span {name:?} in Jaeger"),
        Duration::from_secs(60),
        || async {
            let res = http
                .get(format!("{query_url}/api/traces/{id}"))
                .send()
                .await?;
            if !res.status().is_success() {
                return Ok(None);
            }
            let body: Value = res.json().await?;
            let trace = body["data"][0].clone();
            let found = spans(&trace).iter().any(|s| s["operationName"] == name);
            Ok(found.then_some(trace))
        },
    )
    .await
}

fn spans(trace: &Value) -> Vec<Value> {
    trace["spans"].as_array().cloned().unwrap_or_default()
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

fn parent_of(span: &Value) -> Option<String> {
    span["references"]
        .as_array()?
        .iter()
        .find(|r| r["refType"] == "CHILD_OF")
        .and_then(|r| r["spanID"].as_str())
        .map(str::to_owned)
}

#[tokio::test]
async fn requests_are_traced_into_jaeger_and_their_log_lines_carry_the_trace_id() -> Result<()> {
    let (services, run, service, api) = start_traced_api(&[]).await?;
    let query_url = services.jaeger_query_url()?.to_owned();
    let http = reqwest::Client::new();

    // 1. The caller's trace continues: registration (database work) under our traceparent.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let res = http
        .post(format!("{}/v1/auth/register", api.base))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(
            &json!({ "email": format!("{run}@example.com"), "password": "correct horse battery" }),
        )
        .send()
        .await?;
    ensure!(res.status().is_success(), "register: {}", res.status());
    let trace = jaeger_trace(&query_url, &trace_id, "POST /v1/auth/register")
        .await
        .with_context(|| format!("API log: {}", api.log_path().display()))?;
    let all = spans(&trace);
    let server = all
        .iter()
        .find(|s| s["operationName"] == "POST /v1/auth/register")
        .context("server span")?;
    ensure!(
        parent_of(server).as_deref() == Some(caller_span),
        "the server span is not a child of the caller's span: {server}"
    );
    ensure!(
        tag(server, "span.kind") == Some(&json!("server")),
        "{server}"
    );
    ensure!(
        tag(server, "http.route") == Some(&json!("/v1/auth/register")),
        "{server}"
    );
    ensure!(
        tag(server, "http.response.status_code").is_some_and(|v| v == 201 || v == 200),
        "{server}"
    );
    let server_id = server["spanID"].as_str().context("spanID")?;
    let db: Vec<&Value> = all
        .iter()
        .filter(|s| {
            s["operationName"]
                .as_str()
                .is_some_and(|n| n.starts_with("db."))
        })
        .collect();
    ensure!(!db.is_empty(), "no database span in {trace}");
    for span in &db {
        ensure!(
            tag(span, "db.system.name") == Some(&json!("postgresql")),
            "{span}"
        );
        ensure!(tag(span, "span.kind") == Some(&json!("client")), "{span}");
    }
    ensure!(
        db.iter()
            .any(|s| parent_of(s).as_deref() == Some(server_id)),
        "no database span is a child of the server span: {trace}"
    );
    let process = &trace["processes"][trace["spans"][0]["processID"].as_str().unwrap_or("p1")];
    ensure!(process["serviceName"] == service.as_str(), "{process}");

    // 2. A request without traceparent starts its own trace; its log line names it.
    let request_id = format!("req-{run}");
    let res = http
        .get(format!("{}/v1/lists", api.base))
        .header("x-request-id", &request_id)
        .send()
        .await?;
    ensure!(
        res.status() == 401,
        "GET /v1/lists without a token: {}",
        res.status()
    );
    let line = request_line(&api, &request_id).await?;
    for field in ["ts", "level", "msg", "target"] {
        ensure!(line.get(field).is_some(), "{field} missing in {line}");
    }
    let own_trace = line["trace_id"]
        .as_str()
        .context("trace_id in the log line")?;
    ensure!(own_trace != trace_id && own_trace.len() == 32, "{line}");
    jaeger_trace(&query_url, own_trace, "GET /v1/lists").await?;

    // 2b. A malformed or invalid traceparent (bad hex, wrong length, the all-zero trace id
    // the W3C spec forbids) is ignored: the request is served and starts a trace of its own.
    for (i, bad) in [
        "00-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-0123456789abcdef-01",
        "00-0af7651916cd43dd8448eb211c80319c-01",
        "00-00000000000000000000000000000000-0123456789abcdef-01",
        "garbage",
    ]
    .into_iter()
    .enumerate()
    {
        let request_id = format!("req-bad-{i}-{run}");
        let res = http
            .get(format!("{}/v1/lists", api.base))
            .header("x-request-id", &request_id)
            .header("traceparent", bad)
            .send()
            .await?;
        ensure!(res.status() == 401, "traceparent {bad:?}: {}", res.status());
        let line = request_line(&api, &request_id).await?;
        let trace = line["trace_id"].as_str().context("trace_id")?;
        ensure!(
            trace.len() == 32 && trace.chars().any(|c| c != '0') && trace != own_trace,
            "traceparent {bad:?} gave {line}"
        );
        jaeger_trace(&query_url, trace, "GET /v1/lists").await?;
    }

    // 3. A suggestion request: request -> outbox relay -> AI worker, one trace.
    let credentials =
        json!({ "email": format!("{run}@example.com"), "password": "correct horse battery" });
    let login: Value = http
        .post(format!("{}/v1/auth/login", api.base))
        .json(&credentials)
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().context("token")?.to_owned();
    let list: Value = http
        .post(format!("{}/v1/lists", api.base))
        .bearer_auth(&token)
        .json(&json!({ "name": "traced" }))
        .send()
        .await?
        .json()
        .await?;
    let list_id = list["id"].as_str().context("list id")?;
    http.post(format!("{}/v1/lists/{list_id}/items", api.base))
        .bearer_auth(&token)
        .json(&json!({ "name": "pasta" }))
        .send()
        .await?
        .error_for_status()?;
    let suggestion_trace = uuid::Uuid::new_v4().simple().to_string();
    let res = http
        .post(format!("{}/v1/lists/{list_id}/suggestions", api.base))
        .bearer_auth(&token)
        .header(
            "traceparent",
            format!("00-{suggestion_trace}-{caller_span}-01"),
        )
        .send()
        .await?;
    ensure!(res.status().is_success(), "suggestions: {}", res.status());
    let trace = jaeger_trace(&query_url, &suggestion_trace, "ai.suggestion")
        .await
        .with_context(|| format!("API log: {}", api.log_path().display()))?;
    let all = spans(&trace);
    let named = |name: &str| {
        all.iter()
            .find(|s| s["operationName"] == name)
            .cloned()
            .with_context(|| format!("no span {name} in {trace}"))
    };
    named("POST /v1/lists/{list_id}/suggestions")?;
    let publish = named("publish suggestion.requested")?;
    let consume = named("ai.suggestion")?;
    ensure!(
        tag(&publish, "span.kind") == Some(&json!("producer")),
        "{publish}"
    );
    ensure!(
        tag(&consume, "span.kind") == Some(&json!("consumer")),
        "{consume}"
    );
    ensure!(
        parent_of(&consume) == publish["spanID"].as_str().map(str::to_owned),
        "the worker's span is not a child of the relay's publish: {trace}"
    );
    // The publish descends from the request's server span (through its database span).
    let ids: Vec<&str> = all.iter().filter_map(|s| s["spanID"].as_str()).collect();
    ensure!(
        parent_of(&publish).is_some_and(|p| ids.contains(&p.as_str())),
        "the relay's publish is not in the request's trace tree: {trace}"
    );
    Ok(api.stop(&services).await?)
}

#[tokio::test]
async fn without_an_otlp_endpoint_nothing_is_traced_and_lines_have_no_trace_id() -> Result<()> {
    let services =
        Services::start(&[Component::Postgres, Component::Redis, Component::RabbitMq]).await?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let api = start_api(&services, &run, &[]).await?;
    let request_id = format!("req-{run}");
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    reqwest::Client::new()
        .get(format!("{}/v1/lists", api.base))
        .header("x-request-id", &request_id)
        .header("traceparent", format!("00-{trace_id}-0123456789abcdef-01"))
        .send()
        .await?;
    let line = request_line(&api, &request_id).await?;
    ensure!(line.get("trace_id").is_none(), "{line}");
    ensure!(line["level"] == "info" && line["status"] == 401, "{line}");
    Ok(api.stop(&services).await?)
}

#[tokio::test]
async fn a_quiet_log_level_does_not_cut_the_traces() -> Result<()> {
    // RUST_LOG filters the log lines only: the spans still reach Jaeger.
    let (services, run, _, api) = start_traced_api(&[("RUST_LOG", "warn")]).await?;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let res = reqwest::Client::new()
        .post(format!("{}/v1/auth/register", api.base))
        .header("traceparent", format!("00-{trace_id}-0123456789abcdef-01"))
        .json(
            &json!({ "email": format!("{run}@example.com"), "password": "correct horse battery" }),
        )
        .send()
        .await?;
    ensure!(res.status() == 201, "register: {}", res.status());
    let trace = jaeger_trace(
        services.jaeger_query_url()?,
        &trace_id,
        "POST /v1/auth/register",
    )
    .await?;
    let spans = trace["spans"].as_array().map_or(0, Vec::len);
    ensure!(
        spans >= 2,
        "the request and its database spans are expected: {trace}"
    );
    ensure!(
        !api.log_lines().iter().any(|l| l["msg"] == "request"),
        "RUST_LOG=warn should hide the access lines"
    );
    Ok(api.stop(&services).await?)
}

#[tokio::test]
async fn the_operator_traces_each_reconcile_of_a_release() {
    e2e::cluster::with_namespace("tracing-operator", |ctx| async move {
        let services = Services::start(&[Component::Jaeger]).await?;
        let query_url = services.jaeger_query_url()?.to_owned();
        e2e::crd::install_crds(&ctx.client).await?;
        let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let service = format!("listacompra-operator-{run}");
        let log = std::env::temp_dir().join(format!("tracing-{run}-operator.log"));
        let _operator = e2e::operator::OperatorProcess::start_with_env(
            ctx.cluster.kubeconfig(),
            &ctx.namespace,
            log.clone(),
            vec![
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                    services.otlp_endpoint()?.to_owned(),
                ),
                ("OTEL_SERVICE_NAME".to_owned(), service.clone()),
                ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "200".to_owned()),
            ],
        )?;
        // A release whose Secrets do not exist yet: the operator reconciles it and waits.
        let mut manifest = e2e::crd::minimal_release("traced");
        manifest["metadata"]["namespace"] = json!(ctx.namespace);
        let release: kube::api::DynamicObject = serde_json::from_value(manifest)?;
        let gvk =
            kube::core::GroupVersionKind::gvk("listacompra.app", "v1alpha1", "ListaCompraRelease");
        let resource = kube::core::ApiResource::from_gvk(&gvk);
        let api: kube::Api<kube::api::DynamicObject> =
            kube::Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &resource);
        api.create(&kube::api::PostParams::default(), &release)
            .await?;

        let http = reqwest::Client::new();
        let trace = eventually(
            "a reconcile trace of the release in Jaeger",
            Duration::from_secs(90),
            || async {
                let body: Value = http
                    .get(format!("{query_url}/api/traces"))
                    .query(&[
                        ("service", service.as_str()),
                        ("operation", "reconcile"),
                        ("limit", "20"),
                    ])
                    .send()
                    .await?
                    .json()
                    .await?;
                Ok(body["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    // The first reconcile writes the status, in a child span.
                    .find(|t| {
                        let all = spans(t);
                        all.iter().any(|s| {
                            s["operationName"] == "reconcile"
                                && tag(s, "release") == Some(&json!("traced"))
                                && tag(s, "namespace") == Some(&json!(ctx.namespace))
                                && all.iter().any(|w| {
                                    w["operationName"] == "status.write"
                                        && parent_of(w).as_deref() == s["spanID"].as_str()
                                })
                        })
                    })
                    .cloned())
            },
        )
        .await
        .with_context(|| format!("operator log: {}", log.display()))?;
        let reconcile = spans(&trace)
            .into_iter()
            .find(|s| s["operationName"] == "reconcile")
            .context("reconcile span")?;
        for key in ["version", "attempt", "phase"] {
            ensure!(tag(&reconcile, key).is_some(), "{key} missing: {reconcile}");
        }
        // A reconcile is a trace of its own, rooted at kube-runtime's `reconciling object`.
        let roots: Vec<Value> = spans(&trace)
            .into_iter()
            .filter(|s| parent_of(s).is_none())
            .collect();
        ensure!(
            roots.len() == 1
                && (roots[0]["operationName"] == "reconciling object"
                    || roots[0]["operationName"] == "reconcile"),
            "a reconcile is a trace of its own: {trace}"
        );
        // Its log lines carry its trace id.
        // (Jaeger's API may drop a trace id's leading zeros; the log keeps all 32 digits.)
        let trace_id = reconcile["traceID"].as_str().context("traceID")?.to_owned();
        let lines = std::fs::read_to_string(&log)?;
        ensure!(
            lines
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|l| { l["trace_id"] == trace_id.as_str() && l["release"] == "traced" }),
            "no log line of the reconcile carries trace {trace_id}: {}",
            log.display()
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

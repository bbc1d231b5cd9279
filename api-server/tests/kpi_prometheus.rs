//! The operator's default KPI queries (listacompra_crds::analysis::default_kpis), run by the
//! real Prometheus against this server's metrics: every one returns a judgeable number for
//! the released version, within the runbook's bounds for a healthy server.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{TestApp, TestDb, eventually};
use e2e::services::Services;
use listacompra_crds::analysis::default_kpis;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn the_default_kpi_queries_read_this_servers_metrics_by_version() -> Result<()> {
    let services = Services::start(e2e::env::ALL_SERVICES).await?;
    let db = TestDb::migrated(&services).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut config = common::config(&services, &db)?;
    config.app_version = format!("kpi-{}", &run[..8]);
    let version = config.app_version.clone();
    let namespace = format!("kpi-{}", &run[..8]);
    let app = TestApp::start(config, true).await?;

    // Prometheus scrapes the server with the label the operator's queries select on.
    let target = services
        .prometheus_targets_dir()?
        .join(format!("api-{run}.json"));
    std::fs::write(
        &target,
        json!([{ "targets": [app.addr.to_string()], "labels": { "namespace": namespace } }])
            .to_string(),
    )?;
    let result = async {
        let (_, _, token) = app.user().await?;
        let list_id = app.create_list(&token, "KPI").await?;
        let lp = format!("/v1/lists/{list_id}");
        app.call(
            Method::POST,
            &format!("{lp}/items"),
            Some(&token),
            Some(json!({ "name": "pasta" })),
        )
        .await?;
        let http = reqwest::Client::new();
        let query_url = format!("{}/api/v1/query", services.prometheus_url()?);
        let query = |promql: String| {
            let http = http.clone();
            let query_url = query_url.clone();
            async move {
                let body: Value = http
                    .get(&query_url)
                    .query(&[("query", promql.as_str())])
                    .send()
                    .await?
                    .json()
                    .await?;
                // NaN (0/0 when nothing happened in the window) counts as no value yet.
                let value = body["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|v| v.is_finite());
                anyhow::Ok(value)
            }
        };
        // A counter's first scraped value shows no increase: wait until Prometheus has
        // seen this version's AI series (exported at 0 from the start), then run a job.
        let series =
            format!("listacompra_ai_jobs_total{{version=\"{version}\",outcome=\"success\"}}");
        eventually(
            "Prometheus to scrape the server",
            Duration::from_secs(60),
            || query(series.clone()),
        )
        .await?;
        let (_, req) = app
            .call(
                Method::POST,
                &format!("{lp}/suggestions"),
                Some(&token),
                None,
            )
            .await?;
        let sp = format!("{lp}/suggestions/{}", req["id"].as_str().context("id")?);
        eventually("the AI job", Duration::from_secs(30), || async {
            let (_, b) = app.call(Method::GET, &sp, Some(&token), None).await?;
            Ok((b["status"] == "done").then_some(()))
        })
        .await?;
        // The operator's rendering, each `{{window:<duration>}}` at its duration as written.
        let render =
            |q: &str| listacompra_crds::analysis::render(q, &namespace, "api", &version, None);
        for kpi in default_kpis() {
            let promql = render(&kpi.query);
            let guard = kpi
                .sample_guard
                .as_ref()
                .map(|g| (render(&g.query), g.minimum));
            // Keep traffic flowing until the KPI is judgeable: a number, on enough samples
            // (as the operator requires before it judges).
            let value = eventually(
                &format!("KPI {}", kpi.name),
                Duration::from_secs(90),
                || async {
                    for _ in 0..10 {
                        app.call(Method::GET, &lp, Some(&token), None).await?;
                    }
                    if let Some((q, minimum)) = &guard
                        && query(q.clone()).await?.is_none_or(|n| n < *minimum)
                    {
                        return Ok(None);
                    }
                    query(promql.clone()).await
                },
            )
            .await?;
            if let Some(max) = kpi.max {
                assert!(value <= max, "{}: {value} > {max} ({promql})", kpi.name);
            }
            if let Some(min) = kpi.min {
                assert!(value >= min, "{}: {value} < {min} ({promql})", kpi.name);
            }
        }
        anyhow::Ok(())
    }
    .await;
    std::fs::remove_file(&target)?;
    app.stop().await;
    result
}

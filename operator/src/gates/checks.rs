//! Running the gates for one reconcile: the health check against the release's Service,
//! the KPI measurement and the pre-flight alert query against Prometheus, with the
//! credentials they read from Secrets (sent only where `egress` allows). The controller
//! calls these when `decide` says a check is due; judging the answers is `health`,
//! `analysis` and `decide`'s business.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use listacompra_crds::ListaCompraRelease;
use listacompra_crds::analysis::{AnalysisSpec, PrometheusSpec};
use listacompra_crds::status::{KpiResult, Verdict};
use listacompra_crds::workload::SecretKeyRef;
use tracing::warn;

use super::analysis::{self, QueryOutcome};
use super::{egress, health, prometheus};
use crate::controller::Context;
use crate::decide::FiringAlert;
use crate::error::{Error, Result, kube as kube_err};
use crate::naming;

/// The value of `reference` (a key of a Secret in `namespace`).
async fn read_secret(ctx: &Context, namespace: &str, reference: &SecretKeyRef) -> Result<String> {
    let client = &ctx.client;
    ctx.metrics.api_reads.with_label_values(&["secret"]).inc();
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(&reference.name)
        .await
        .map_err(kube_err(format!("reading Secret {}", reference.name)))?;
    let problem = |problem: &str| Error::Secret {
        name: reference.name.clone(),
        key: reference.key.clone(),
        problem: problem.to_owned(),
    };
    let secret = secret.ok_or_else(|| problem("the Secret does not exist"))?;
    let bytes = secret
        .data
        .and_then(|mut data| data.remove(&reference.key))
        .ok_or_else(|| problem("the key does not exist"))?;
    String::from_utf8(bytes.0)
        .map(|s| s.trim().to_owned())
        .map_err(|_| problem("the value is not UTF-8"))
}

#[tracing::instrument(name = "gate.health", skip_all)]
/// One check of the release's health gate, with the token from its Secret when
/// `with_token` (the watch after the gate passed asks without it).
pub async fn health_check(
    release: &ListaCompraRelease,
    namespace: &str,
    ctx: &Context,
    with_token: bool,
) -> Result<Result<(), String>> {
    let spec = &release.spec;
    let base = spec.health.base_url.clone().unwrap_or_else(|| {
        format!(
            "http://{}.{namespace}.svc:{}",
            naming::workload_name(&release.name_any()),
            spec.service.port
        )
    });
    let token_ref = spec
        .health
        .token_secret_ref
        .as_ref()
        .or(spec.env.healthcheck_token.as_ref())
        .filter(|_| with_token);
    let service = naming::workload_name(&release.name_any());
    if token_ref.is_some()
        && let Err(refused) = egress::check(&base, &service, namespace, &ctx.allowed_hosts)
    {
        warn!(base_url = %base, "{refused}");
        return Ok(Err(format!("health-check token: {refused}")));
    }
    let token = match token_ref {
        // Any error reading the token (missing, 403, timeout) is a failed check, visible in
        // status and counted toward the thresholds and the deadline, never a silent retry
        // loop that freezes the release.
        Some(reference) => match read_secret(ctx, namespace, reference).await {
            Ok(token) => Some(token),
            Err(e) => return Ok(Err(format!("health-check token: {e}"))),
        },
        None => None,
    };
    Ok(health::check(&ctx.http, &base, &spec.health, token.as_deref()).await)
}

/// The credentials for `prometheus`, read from their Secrets only when they may go to its
/// address ([`egress::check`]).
async fn prometheus_credentials(
    prometheus: &PrometheusSpec,
    release: &ListaCompraRelease,
    namespace: &str,
    ctx: &Context,
) -> Result<prometheus::Credentials> {
    let Some(auth) = &prometheus.auth else {
        return Ok(prometheus::Credentials::None);
    };
    let service = naming::workload_name(&release.name_any());
    if let Err(refused) =
        egress::check(&prometheus.address, &service, namespace, &ctx.allowed_hosts)
    {
        warn!(address = %prometheus.address, "{refused}");
        return Err(Error::Refused(refused));
    }
    Ok(match (&auth.bearer_token_secret_ref, &auth.basic_auth) {
        (Some(token), _) => {
            prometheus::Credentials::Bearer(read_secret(ctx, namespace, token).await?)
        }
        (None, Some(basic)) => prometheus::Credentials::Basic {
            username: read_secret(ctx, namespace, &basic.username_secret_ref).await?,
            password: read_secret(ctx, namespace, &basic.password_secret_ref).await?,
        },
        (None, None) => prometheus::Credentials::None,
    })
}

/// The firing alerts matching the release's pre-flight check, or why Prometheus could not
/// say (its credentials unreadable or not allowed to go to its address included): the
/// decision waits on either.
#[tracing::instrument(name = "gate.preflight", skip_all)]
pub async fn preflight_alerts(
    release: &ListaCompraRelease,
    namespace: &str,
    ctx: &Context,
) -> std::result::Result<Vec<FiringAlert>, String> {
    let spec = &release.spec;
    let Some(check) = spec.preflight.as_ref().map(|p| &p.firing_alerts) else {
        return Ok(Vec::new());
    };
    let Some(prometheus) = check
        .prometheus
        .as_ref()
        .or(spec.analysis.as_ref().map(|a| &a.prometheus))
    else {
        return Err("no Prometheus to ask: set spec.preflight.firingAlerts.prometheus".to_owned());
    };
    let credentials = prometheus_credentials(prometheus, release, namespace, ctx)
        .await
        .map_err(|e| format!("Prometheus credentials: {e}"))?;
    let timeout = Duration::from_secs(u64::try_from(prometheus.timeout_seconds).unwrap_or(5));
    let alerts = prometheus::firing_alerts(
        &ctx.http,
        &prometheus.address,
        &credentials,
        timeout,
        &check.match_labels,
    )
    .await;
    match &alerts {
        Ok(firing) => ctx
            .metrics
            .gate_verdicts
            .with_label_values(&["preflight", if firing.is_empty() { "pass" } else { "fail" }])
            .inc(),
        Err(e) => {
            warn!(error = %e, "pre-flight alert query failed");
            ctx.metrics
                .gate_verdicts
                .with_label_values(&["preflight", "inconclusive"])
                .inc();
        }
    }
    alerts
}

#[tracing::instrument(name = "gate.kpi", skip_all)]
pub async fn measure(
    release: &ListaCompraRelease,
    namespace: &str,
    analysis: &AnalysisSpec,
    ctx: &Context,
) -> Result<Vec<KpiResult>> {
    // Credentials that cannot be read (missing, 403, timeout) or may not go to this address
    // make every KPI inconclusive (visible in status, counted by inconclusiveLimit), never a
    // breach and never a freeze.
    let credentials = prometheus_credentials(&analysis.prometheus, release, namespace, ctx).await;
    let credentials = match credentials {
        Ok(credentials) => credentials,
        Err(e) => {
            let outcome = QueryOutcome::Error(format!("Prometheus credentials: {e}"));
            return Ok(analysis
                .kpis
                .iter()
                .map(|kpi| analysis::judge(kpi, &outcome, None))
                .collect());
        }
    };
    let timeout =
        Duration::from_secs(u64::try_from(analysis.prometheus.timeout_seconds).unwrap_or(5));
    let name = release.name_any();
    let version = &release.spec.version;
    // How long this attempt's version has been verified: the KPI windows stop there.
    let verified_for = release
        .status
        .as_ref()
        .and_then(|s| s.verification_start_time.as_ref())
        .map(|start| {
            std::time::Duration::try_from(
                k8s_openapi::jiff::Timestamp::now().duration_since(start.0),
            )
            .unwrap_or_default()
        });
    let mut results = Vec::with_capacity(analysis.kpis.len());
    for kpi in &analysis.kpis {
        let promql =
            listacompra_crds::analysis::render(&kpi.query, namespace, &name, version, verified_for);
        let value = prometheus::query(
            &ctx.http,
            &analysis.prometheus.address,
            &credentials,
            timeout,
            &promql,
        )
        .await;
        let guard = match &kpi.sample_guard {
            Some(guard) => {
                let promql = listacompra_crds::analysis::render(
                    &guard.query,
                    namespace,
                    &name,
                    version,
                    verified_for,
                );
                Some(
                    prometheus::query(
                        &ctx.http,
                        &analysis.prometheus.address,
                        &credentials,
                        timeout,
                        &promql,
                    )
                    .await,
                )
            }
            None => None,
        };
        let result = analysis::judge(kpi, &value, guard.as_ref());
        if let (Verdict::Inconclusive, QueryOutcome::Error(e)) = (result.verdict, &value) {
            warn!(kpi = %kpi.name, error = %e, "KPI query failed");
        }
        results.push(result);
    }
    Ok(results)
}

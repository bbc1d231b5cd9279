//! The pre-flight check: an attempt launches nothing while matching alerts fire (the
//! runbook's checklist item "Grafana dashboard without active alerts").

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::analysis::PrometheusSpec;

/// What must hold right before an attempt launches its migration (after its approvals).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreflightSpec {
    /// Alerts that hold the release while they fire.
    pub firing_alerts: FiringAlertsCheck,
}

/// Alerts that hold a release: while Prometheus has a firing alert carrying every label in
/// `matchLabels`, the attempt waits in phase `Pending` (condition Reconciling, reason
/// `AlertsFiring`, naming the alerts); when Prometheus cannot be asked it waits too (reason
/// `AlertsUnknown`): the check fails closed. Past the progress deadline the release is
/// Stalled with the same reason, and it still goes on by itself once the alerts resolve.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.matchLabels) >= 1").message("preflight.firingAlerts.matchLabels: name at least one label, e.g. severity: critical (an always-firing alert such as Watchdog would hold every release)").field_path(".matchLabels"))]
#[x_kube(validation = Rule::new("self.matchLabels.all(k, k.matches('^[a-zA-Z_][a-zA-Z0-9_]*$') && !k.startsWith('__') && k != 'alertstate')").message("preflight.firingAlerts.matchLabels: keys are Prometheus label names ([a-zA-Z_][a-zA-Z0-9_]*, not __* and not alertstate, which the check sets to firing)").field_path(".matchLabels"))]
#[x_kube(validation = Rule::new("self.matchLabels.all(k, size(self.matchLabels[k]) >= 1 && size(self.matchLabels[k]) <= 256)").message("preflight.firingAlerts.matchLabels: values are 1 to 256 characters (an empty value would match every alert without the label)").field_path(".matchLabels"))]
pub struct FiringAlertsCheck {
    /// The Prometheus that evaluates the alerting rules. Defaults to `analysis.prometheus`
    /// (required when the release has no `analysis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSpec>,
    /// Labels an alert must carry, with these exact values, to hold the release, e.g.
    /// `{severity: critical, service: listacompra-api}`. Prometheus's `ALERTS` series in
    /// state `firing` are asked (alerts still `pending` do not hold).
    #[schemars(extend("maxProperties" = 8))]
    pub match_labels: BTreeMap<String, String>,
}

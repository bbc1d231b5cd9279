//! The pre-flight check, right before an attempt launches (after its approvals and once what
//! it names exists): no alert matching `spec.preflight.firingAlerts` may be firing. It fails
//! closed: when Prometheus cannot be asked, the release waits as it would for an alert.

use std::collections::BTreeMap;

use super::machine::Machine;

/// Reconciling (and Stalled, and Event) reason while matching alerts fire.
const ALERTS_FIRING: &str = "AlertsFiring";
/// Reconciling (and Stalled, and Event) reason while Prometheus cannot say.
const ALERTS_UNKNOWN: &str = "AlertsUnknown";
/// Alerts named in a message, at most (the rest are counted).
const NAMED: usize = 5;

/// A firing alert as Prometheus reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiringAlert {
    /// `alertname`.
    pub name: String,
    /// Its other labels (without `alertname` and `alertstate`).
    pub labels: BTreeMap<String, String>,
}

impl std::fmt::Display for FiringAlert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        write!(f, "{} ({labels})", self.name)
    }
}

/// Stalled reasons of this step: they clear by themselves once the alerts resolve.
pub(super) const SELF_CLEARING: [&str; 2] = [ALERTS_FIRING, ALERTS_UNKNOWN];

impl Machine<'_, '_> {
    /// True when nothing holds the launch: no pre-flight check, or no matching alert firing.
    /// Otherwise the release waits (see `wait_outside`), saying which alerts fire.
    pub(super) fn preflight_clear(&mut self) -> bool {
        let Some(check) = self.spec().preflight.as_ref().map(|p| &p.firing_alerts) else {
            return true;
        };
        let selector = check
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        match &self.o.firing_alerts {
            Some(Ok(alerts)) if alerts.is_empty() => true,
            Some(Ok(alerts)) => {
                let mut named: Vec<String> =
                    alerts.iter().take(NAMED).map(ToString::to_string).collect();
                if alerts.len() > NAMED {
                    named.push(format!("and {} more", alerts.len() - NAMED));
                }
                self.wait_outside(
                    ALERTS_FIRING,
                    ALERTS_FIRING,
                    format!(
                        "{} alert(s) matching {selector} firing: {}; launching nothing until they resolve",
                        alerts.len(),
                        named.join("; ")
                    ),
                );
                false
            }
            Some(Err(e)) => {
                self.wait_outside(
                    ALERTS_UNKNOWN,
                    ALERTS_UNKNOWN,
                    format!(
                        "cannot tell whether alerts matching {selector} are firing ({e}); launching nothing until Prometheus answers"
                    ),
                );
                false
            }
            None => {
                self.wait_outside(
                    ALERTS_UNKNOWN,
                    ALERTS_UNKNOWN,
                    format!("alerts matching {selector} not checked yet"),
                );
                false
            }
        }
    }
}

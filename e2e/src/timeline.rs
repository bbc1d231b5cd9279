//! The release timeline: phases over time per version, and every KPI measurement against its
//! bounds, drawn as an SVG picture a person can open in a browser.

use std::fmt::Write as _;
use std::time::Duration;

/// One measured KPI value.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiPoint {
    /// When, since the story started.
    pub at: Duration,
    /// The version measured.
    pub version: String,
    /// KPI name.
    pub name: String,
    /// The value, when the query returned one.
    pub value: Option<f64>,
    /// Lower bound, if any.
    pub min: Option<f64>,
    /// Upper bound, if any.
    pub max: Option<f64>,
    /// The gate's verdict (`Pass`, `Fail`, `Inconclusive`).
    pub verdict: String,
}

/// What happened, in order.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// (when, version, phase) for every phase change.
    pub phases: Vec<(Duration, String, String)>,
    /// Every KPI measurement.
    pub kpis: Vec<KpiPoint>,
    /// When the story ended.
    pub end: Duration,
}

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 30.0;
const LANE: f64 = 28.0;
const CHART: f64 = 130.0;

fn phase_colour(phase: &str) -> &'static str {
    match phase {
        "Succeeded" => "#2e7d32",
        "RolledBack" => "#ef6c00",
        "Failed" => "#c62828",
        "RollingBack" => "#ffb74d",
        "Verifying" => "#64b5f6",
        "RollingOut" => "#1e88e5",
        "Migrating" => "#7e57c2",
        "Restoring" => "#8d6e63",
        _ => "#9e9e9e",
    }
}

fn version_colour(index: usize) -> &'static str {
    [
        "#1b5e20", "#0d47a1", "#b71c1c", "#4a148c", "#e65100", "#006064",
    ][index % 6]
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Timeline {
    /// Versions in the order they first appear.
    pub fn versions(&self) -> Vec<String> {
        let mut versions: Vec<String> = Vec::new();
        for (_, v, _) in &self.phases {
            if !versions.contains(v) {
                versions.push(v.clone());
            }
        }
        versions
    }

    fn kpi_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for p in &self.kpis {
            if !names.contains(&p.name) {
                names.push(p.name.clone());
            }
        }
        names
    }

    /// Until when a version's final phase holds: a Succeeded version serves until a later one
    /// succeeds; a failed one is the spec's version until the next is applied.
    fn superseded(&self, version: &str, phase: &str, at: Duration) -> Duration {
        self.phases
            .iter()
            .filter(|(t, v, p)| {
                *t > at && v != version && (phase != "Succeeded" || p == "Succeeded")
            })
            .map(|(t, _, _)| *t)
            .next()
            .unwrap_or(self.end)
    }

    /// The picture: one lane of phases per version, then one chart per KPI with its bounds.
    pub fn svg(&self, title: &str) -> String {
        let versions = self.versions();
        let names = self.kpi_names();
        let total = self.end.as_secs_f64().max(1.0);
        let x = |at: Duration| LEFT + (WIDTH - LEFT - RIGHT) * at.as_secs_f64() / total;
        let lanes_top = 50.0;
        let charts_top = lanes_top + LANE * versions.len() as f64 + 50.0;
        let height = charts_top + (CHART + 40.0) * names.len() as f64 + 40.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"#,
            escape(title)
        );

        // Phase lanes.
        for (row, version) in versions.iter().enumerate() {
            let y = lanes_top + LANE * row as f64;
            let _ = writeln!(
                s,
                r#"<text x="10" y="{}" font-weight="bold">v{}</text>"#,
                y + 17.0,
                escape(version)
            );
            let changes: Vec<&(Duration, String, String)> = self
                .phases
                .iter()
                .filter(|(_, v, _)| v == version)
                .collect();
            for (i, (at, _, phase)) in changes.iter().enumerate() {
                // A phase lasts until the next change of any version (a new release takes
                // over) or the end.
                let next = self
                    .phases
                    .iter()
                    .map(|(t, _, _)| *t)
                    .find(|t| t > at)
                    .unwrap_or(self.end);
                let terminal = matches!(phase.as_str(), "Succeeded" | "RolledBack" | "Failed");
                let until = if terminal && i + 1 == changes.len() {
                    self.superseded(version, phase, *at)
                } else {
                    next
                };
                let (x0, x1) = (x(*at), x(until).max(x(*at) + 2.0));
                let _ = writeln!(
                    s,
                    r#"<rect x="{x0:.1}" y="{}" width="{:.1}" height="{}" fill="{}" opacity="{}"><title>v{} {} at {:.1}s</title></rect>"#,
                    y + 3.0,
                    x1 - x0,
                    LANE - 6.0,
                    phase_colour(phase),
                    if terminal && i + 1 == changes.len() {
                        "0.35"
                    } else {
                        "0.9"
                    },
                    escape(version),
                    escape(phase),
                    at.as_secs_f64()
                );
                if x1 - x0 > 55.0 {
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{}" fill="black">{}</text>"#,
                        x0 + 4.0,
                        y + 18.0,
                        escape(phase)
                    );
                }
            }
        }

        // KPI charts.
        for (row, name) in names.iter().enumerate() {
            let top = charts_top + (CHART + 40.0) * row as f64;
            let points: Vec<&KpiPoint> = self.kpis.iter().filter(|p| &p.name == name).collect();
            let bounds: Vec<f64> = points
                .iter()
                .flat_map(|p| [p.min, p.max])
                .flatten()
                .collect();
            let values: Vec<f64> = points.iter().filter_map(|p| p.value).collect();
            let hi = values
                .iter()
                .chain(&bounds)
                .fold(f64::MIN, |a, b| a.max(*b))
                .max(1.0)
                * 1.15;
            let lo = values.iter().chain(&bounds).fold(0.0_f64, |a, b| a.min(*b));
            let y = |v: f64| top + CHART - CHART * (v - lo) / (hi - lo);
            let _ = writeln!(
                s,
                r##"<text x="{LEFT}" y="{}" font-weight="bold">{}</text><rect x="{LEFT}" y="{top}" width="{}" height="{CHART}" fill="none" stroke="#bbb"/>"##,
                top - 6.0,
                escape(name),
                WIDTH - LEFT - RIGHT
            );
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" text-anchor="end" fill="#666">{hi:.0}</text><text x="{}" y="{}" text-anchor="end" fill="#666">{lo:.0}</text>"##,
                LEFT - 6.0,
                top + 10.0,
                LEFT - 6.0,
                top + CHART
            );
            for bound in bounds
                .iter()
                .copied()
                .fold(Vec::<f64>::new(), |mut acc, b| {
                    if !acc.contains(&b) {
                        acc.push(b);
                    }
                    acc
                })
            {
                let _ = writeln!(
                    s,
                    r##"<line x1="{LEFT}" x2="{}" y1="{by:.1}" y2="{by:.1}" stroke="#c62828" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" fill="#c62828" text-anchor="end">bound {bound}</text>"##,
                    WIDTH - RIGHT,
                    WIDTH - RIGHT - 4.0,
                    y(bound) - 4.0,
                    by = y(bound)
                );
            }
            for p in points {
                let colour =
                    version_colour(versions.iter().position(|v| v == &p.version).unwrap_or(0));
                match p.value {
                    Some(v) => {
                        let _ = writeln!(
                            s,
                            r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{colour}" stroke="{}" stroke-width="2"><title>v{} {}: {v:.2} ({})</title></circle>"#,
                            x(p.at),
                            y(v),
                            if p.verdict == "Fail" {
                                "#c62828"
                            } else {
                                "white"
                            },
                            escape(&p.version),
                            escape(&p.name),
                            escape(&p.verdict)
                        );
                    }
                    None => {
                        let _ = writeln!(
                            s,
                            r#"<text x="{:.1}" y="{:.1}" fill="{colour}" text-anchor="middle">?<title>v{} {}: no data ({})</title></text>"#,
                            x(p.at),
                            top + CHART - 4.0,
                            escape(&p.version),
                            escape(&p.name),
                            escape(&p.verdict)
                        );
                    }
                }
            }
        }

        // Time axis and legend.
        let axis = height - 20.0;
        let step = if total > 300.0 {
            60
        } else if total > 120.0 {
            30
        } else {
            10
        };
        let mut t: u32 = 0;
        while f64::from(t) <= total {
            let tx = x(Duration::from_secs(u64::from(t)));
            let _ = writeln!(
                s,
                r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="{lanes_top}" y2="{}" stroke="#eee"/><text x="{tx:.1}" y="{axis}" text-anchor="middle" fill="#666">{t}s</text>"##,
                axis - 14.0
            );
            t += step;
        }
        let mut lx = WIDTH - RIGHT - 80.0 * versions.len() as f64;
        for (i, v) in versions.iter().enumerate() {
            let _ = writeln!(
                s,
                r#"<circle cx="{lx}" cy="20" r="5" fill="{}"/><text x="{}" y="24">v{}</text>"#,
                version_colour(i),
                lx + 8.0,
                escape(v)
            );
            lx += 80.0;
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_lane_per_version_and_a_chart_per_kpi_with_its_bound() {
        let timeline = Timeline {
            phases: vec![
                (Duration::from_secs(0), "1.0.0".into(), "Migrating".into()),
                (Duration::from_secs(5), "1.0.0".into(), "Succeeded".into()),
                (Duration::from_secs(10), "1.2.0".into(), "Verifying".into()),
                (Duration::from_secs(20), "1.2.0".into(), "RolledBack".into()),
            ],
            kpis: vec![KpiPoint {
                at: Duration::from_secs(15),
                version: "1.2.0".into(),
                name: "p95-latency-ms".into(),
                value: Some(612.0),
                min: None,
                max: Some(350.0),
                verdict: "Fail".into(),
            }],
            end: Duration::from_secs(30),
        };
        let svg = timeline.svg("demo <1>");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains(">v1.0.0</text>") && svg.contains(">v1.2.0</text>"));
        assert!(svg.contains("bound 350"));
        assert!(svg.contains("v1.2.0 p95-latency-ms: 612.00 (Fail)"));
        assert!(svg.contains("demo &lt;1&gt;"));
        assert_eq!(
            svg.matches("<circle").count(),
            1 + 2,
            "one point and two legend dots"
        );
    }
}

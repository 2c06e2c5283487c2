//! `/metrics`' health series, rendered from the registry at each scrape instead of being kept
//! in the metrics recorder. Health is state, read off the registry when asked; a recorder
//! cannot forget a series, so a deployment that a reload removed would go on being reported
//! as it last was (an alert on `llm_tower_endpoint_healthy == 0` firing until a restart for
//! a deployment nobody routes to). Rendered here, a removed deployment's series end with it.

use std::fmt::Write;

use llm_tower::{EndpointSnapshot, HealthRegistry, Status};

/// One family: its name, type, help, and a sample per deployment it applies to.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    /// Its samples for a deployment: extra labels and a value; none where it does not apply.
    samples: fn(&EndpointSnapshot) -> Vec<(&'static str, f64)>,
}

const FAMILIES: [Family; 5] = [
    Family {
        name: "llm_tower_endpoint_healthy",
        kind: "gauge",
        help: "1 while the deployment takes traffic, 0 while it is ejected or waiting for its probe.",
        samples: |s| vec![("", f64::from(u8::from(s.status == Status::Healthy)))],
    },
    Family {
        name: "llm_tower_ejections_total",
        kind: "counter",
        help: "Ejections of the deployment since its configuration first had it.",
        samples: |s| vec![("", s.total_ejections as f64)],
    },
    Family {
        name: "llm_tower_health_checks_total",
        kind: "counter",
        help: "Health checks of the deployment's endpoint, by result.",
        samples: |s| match s.last_check {
            Some(_) => vec![
                (r#",result="passed""#, s.checks_passed as f64),
                (r#",result="failed""#, s.checks_failed as f64),
            ],
            None => Vec::new(),
        },
    },
    Family {
        name: "llm_tower_health_check_latency_seconds",
        kind: "gauge",
        help: "How long the last health check of the deployment's endpoint took.",
        samples: |s| {
            s.last_check
                .iter()
                .map(|check| ("", check.latency_ms / 1000.0))
                .collect()
        },
    },
    Family {
        name: "llm_tower_latency_estimate_seconds",
        kind: "gauge",
        help: "least_latency's estimate of the deployment's time to first byte.",
        samples: |s| s.latency_ms.iter().map(|ms| ("", ms / 1000.0)).collect(),
    },
];

/// The health of every deployment `registry` has now, in the Prometheus text format.
pub(crate) fn render(registry: &HealthRegistry) -> String {
    let snapshot = registry.snapshot();
    let mut out = String::new();
    for family in &FAMILIES {
        let mut header = false;
        for deployment in &snapshot {
            for (labels, value) in (family.samples)(deployment) {
                if !header {
                    header = true;
                    let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
                    let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
                }
                let _ = writeln!(
                    out,
                    "{}{{endpoint=\"{}\"{labels}}} {value}",
                    family.name,
                    escape(deployment.id.as_str())
                );
            }
        }
    }
    out
}

/// A label value as the text format wants it.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("openai/gpt-4o"), "openai/gpt-4o");
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }

    #[test]
    fn an_empty_registry_renders_nothing() {
        assert_eq!(render(&HealthRegistry::new()), "");
    }
}

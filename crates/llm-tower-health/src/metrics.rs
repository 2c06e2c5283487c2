//! The per-deployment health series, defined once: each deployment's health
//! (`llm_tower_endpoint_healthy` 1/0), its ejections (`llm_tower_ejections_total`) and,
//! where they apply, its endpoint's health checks (`llm_tower_health_checks_total` by
//! `result`, `llm_tower_health_check_latency_seconds` of the last one) and its
//! `least_latency` estimate (`llm_tower_latency_estimate_seconds`).
//!
//! They are state, read off a registry snapshot when asked, and reach a scrape either way:
//! through the `metrics` facade ([`record_health_metrics`]), or rendered as Prometheus text
//! at each scrape ([`render_health_metrics`]). Only the second forgets a deployment that
//! leaves the registry: a recorder keeps every series it was given, so a deployment a
//! reload removed would go on being reported as it last was (an alert on
//! `llm_tower_endpoint_healthy == 0` firing until a restart for a deployment nobody routes
//! to).

use std::fmt::Write;

use crate::{EndpointSnapshot, HealthRegistry, Status};

/// A sample of a family: the `result` label where it has one, and the value.
type Sample = (Option<&'static str>, f64);

/// One family: its name, type, help, and its samples for a deployment.
struct Family {
    name: &'static str,
    counter: bool,
    help: &'static str,
    /// Its samples for a deployment; none where it does not apply.
    samples: fn(&EndpointSnapshot) -> Vec<Sample>,
}

const FAMILIES: [Family; 5] = [
    Family {
        name: "llm_tower_endpoint_healthy",
        counter: false,
        help: "1 while the deployment takes traffic, 0 while it is ejected or waiting for its probe.",
        samples: |s| vec![(None, f64::from(u8::from(s.status == Status::Healthy)))],
    },
    Family {
        name: "llm_tower_ejections_total",
        counter: true,
        help: "Ejections of the deployment since its configuration first had it.",
        samples: |s| vec![(None, s.total_ejections as f64)],
    },
    Family {
        name: "llm_tower_health_checks_total",
        counter: true,
        help: "Health checks of the deployment's endpoint, by result.",
        samples: |s| match s.last_check {
            Some(_) => vec![
                (Some("passed"), s.checks_passed as f64),
                (Some("failed"), s.checks_failed as f64),
            ],
            None => Vec::new(),
        },
    },
    Family {
        name: "llm_tower_health_check_latency_seconds",
        counter: false,
        help: "How long the last health check of the deployment's endpoint took.",
        samples: |s| {
            s.last_check
                .iter()
                .map(|check| (None, check.latency_ms / 1000.0))
                .collect()
        },
    },
    Family {
        name: "llm_tower_latency_estimate_seconds",
        counter: false,
        help: "least_latency's estimate of the deployment's time to first byte.",
        samples: |s| s.latency_ms.iter().map(|ms| (None, ms / 1000.0)).collect(),
    },
];

/// Publishes the health series of `registry`'s deployments through the `metrics` facade;
/// call it before rendering metrics. A deployment that leaves the registry stays exported as
/// it last was: where deployments come and go, use [`render_health_metrics`].
///
/// ```
/// llm_tower_health::metrics::record_health_metrics(&llm_tower_health::HealthRegistry::new());
/// ```
pub fn record_health_metrics(registry: &HealthRegistry) {
    for snapshot in registry.snapshot() {
        for family in &FAMILIES {
            for (result, value) in (family.samples)(&snapshot) {
                let mut labels = vec![("endpoint", snapshot.id.to_string())];
                labels.extend(result.map(|result| ("result", result.to_owned())));
                if family.counter {
                    metrics::counter!(family.name, &labels).absolute(value as u64);
                } else {
                    metrics::gauge!(family.name, &labels).set(value);
                }
            }
        }
    }
}

/// The health series of the deployments `registry` has now, in the Prometheus text format
/// (to append to a recorder's): a deployment that left the registry is not in them.
///
/// ```
/// use llm_tower_core::Endpoint;
/// use llm_tower_health::{DeploymentHealth, HealthPolicy, HealthRegistry};
///
/// let registry = HealthRegistry::new();
/// let endpoint = Endpoint::builder("openai", "http://127.0.0.1:1").build().unwrap();
/// let policy = HealthPolicy { unhealthy_threshold: 1, max_cooldown: std::time::Duration::from_secs(60), max_probe_interval: std::time::Duration::from_secs(10) };
/// let _openai = DeploymentHealth::new(&registry, "openai".into(), &endpoint, None, policy);
/// let text = llm_tower_health::metrics::render_health_metrics(&registry);
/// assert!(text.contains("llm_tower_endpoint_healthy{endpoint=\"openai\"} 1\n"));
/// assert!(text.contains("# TYPE llm_tower_ejections_total counter\n"));
/// ```
pub fn render_health_metrics(registry: &HealthRegistry) -> String {
    let snapshot = registry.snapshot();
    let mut out = String::new();
    for family in &FAMILIES {
        let mut header = false;
        for deployment in &snapshot {
            for (result, value) in (family.samples)(deployment) {
                if !header {
                    header = true;
                    let kind = if family.counter { "counter" } else { "gauge" };
                    let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
                    let _ = writeln!(out, "# TYPE {} {kind}", family.name);
                }
                let _ = write!(
                    out,
                    "{}{{endpoint=\"{}\"",
                    family.name,
                    escape(deployment.id.as_str())
                );
                if let Some(result) = result {
                    let _ = write!(out, ",result=\"{result}\"");
                }
                let _ = writeln!(out, "}} {value}");
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
        assert_eq!(render_health_metrics(&HealthRegistry::new()), "");
    }
}

//! [`OtelSettings`]: where spans and metrics go (`otel:` in a configuration file). Always
//! compiled, so that a file naming them is read by every build; exporting needs the `otel`
//! feature.

use std::collections::BTreeMap;
use std::fmt;

use http::{HeaderName, HeaderValue, Uri};
use llm_tower_core::{ConfigError, Secret};
use serde::{Deserialize, Serialize};

/// OpenTelemetry export over OTLP/HTTP (protobuf): `otel: { endpoint, service_name,
/// sample_ratio, headers }`. Whatever is left out is taken from the standard environment
/// variables, then the defaults: `OTEL_EXPORTER_OTLP_ENDPOINT` (else
/// `http://localhost:4318`), `OTEL_SERVICE_NAME` (else `llm-tower`),
/// `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` (else every trace, or as the client's
/// `traceparent` says); `OTEL_EXPORTER_OTLP_HEADERS` is added to `headers` (and wins on a
/// name both give); and `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
/// `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_BSP_SCHEDULE_DELAY` and
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` are read as the OpenTelemetry SDK reads them.
///
/// ```
/// use llm_tower::otel::OtelSettings;
///
/// let settings: OtelSettings = serde_json::from_str(
///     r#"{ "endpoint": "http://collector:4318", "sample_ratio": 0.25,
///          "headers": { "x-honeycomb-team": "hc-secret-key" } }"#,
/// ).unwrap();
/// assert_eq!(settings.traces_url().unwrap().unwrap(), "http://collector:4318/v1/traces");
/// // Header values can be keys: they never show.
/// assert!(!format!("{settings:?}").contains("hc-secret"));
/// assert_eq!(settings.validate().is_ok(), cfg!(feature = "otel"));
/// ```
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtelSettings {
    /// The OTLP/HTTP receiver's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`: traces are sent
    /// to `{endpoint}/v1/traces`, metrics to `{endpoint}/v1/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `service.name` of every span and metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The share of traces recorded (0 to 1), for traces the client did not start: a
    /// client's `traceparent` decides for its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<f64>,
    /// Headers sent with every export (a backend's API key): never shown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Secret>,
}

impl OtelSettings {
    /// Where traces go: `{endpoint}/v1/traces`, or `None` to leave it to the environment.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `otel.endpoint` when it is not an `http://` or
    /// `https://` URL.
    pub fn traces_url(&self) -> Result<Option<String>, ConfigError> {
        self.signal_url("traces")
    }

    /// Where metrics go: `{endpoint}/v1/metrics`, or `None` to leave it to the environment.
    ///
    /// # Errors
    ///
    /// As [`traces_url`](Self::traces_url).
    pub fn metrics_url(&self) -> Result<Option<String>, ConfigError> {
        self.signal_url("metrics")
    }

    fn signal_url(&self, signal: &str) -> Result<Option<String>, ConfigError> {
        let Some(endpoint) = &self.endpoint else {
            return Ok(None);
        };
        let uri: Uri = endpoint
            .parse()
            .map_err(|err| ConfigError::invalid("otel.endpoint", format!("{err}")))?;
        let scheme = uri.scheme_str();
        if !matches!(scheme, Some("http" | "https")) || uri.authority().is_none() {
            return Err(ConfigError::invalid(
                "otel.endpoint",
                "must be an http:// or https:// URL (the OTLP/HTTP receiver, port 4318 by default)",
            ));
        }
        if uri.query().is_some() {
            return Err(ConfigError::invalid(
                "otel.endpoint",
                "must not have a query",
            ));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            // It would show wherever the settings do, and OTLP does not read it: a token
            // goes in `headers`.
            return Err(ConfigError::invalid(
                "otel.endpoint",
                "must not hold a user or password: put a token in otel.headers",
            ));
        }
        if scheme == Some("https") && !crate::HttpClient::SUPPORTS_HTTPS {
            return Err(ConfigError::invalid(
                "otel.endpoint",
                "is https://, and this build has no TLS (a `rustls-*` feature of llm-tower)",
            ));
        }
        Ok(Some(format!(
            "{}/v1/{signal}",
            endpoint.trim_end_matches('/')
        )))
    }

    /// Checks the endpoint, the ratio and the headers (without showing their values).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field; in a build without the `otel` feature,
    /// naming `otel`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !cfg!(feature = "otel") {
            return Err(ConfigError::invalid(
                "otel",
                "this build cannot export telemetry: it was built without llm-tower's `otel` feature",
            ));
        }
        self.traces_url()?;
        if let Some(ratio) = self.sample_ratio
            && !(0.0..=1.0).contains(&ratio)
        {
            return Err(ConfigError::invalid(
                "otel.sample_ratio",
                format!("is {ratio}; it must be between 0 and 1"),
            ));
        }
        if self
            .service_name
            .as_ref()
            .is_some_and(|name| name.trim().is_empty())
        {
            return Err(ConfigError::invalid(
                "otel.service_name",
                "must not be empty",
            ));
        }
        for (name, value) in &self.headers {
            if HeaderName::try_from(name.as_str()).is_err() {
                return Err(ConfigError::invalid(
                    "otel.headers",
                    format!("`{name}` is not a header name"),
                ));
            }
            if HeaderValue::try_from(value.expose_secret()).is_err() {
                return Err(ConfigError::invalid(
                    "otel.headers",
                    format!("the value of `{name}` is not a header value"),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for OtelSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelSettings")
            .field("endpoint", &self.endpoint)
            .field("service_name", &self.service_name)
            .field("sample_ratio", &self.sample_ratio)
            .field("headers", &self.headers)
            .finish()
    }
}

#[cfg(all(test, feature = "otel"))]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_their_field_without_showing_header_values() {
        let with = |json: &str| serde_json::from_str::<OtelSettings>(json).unwrap();
        for (json, field) in [
            (r#"{"endpoint": "collector:4318"}"#, "otel.endpoint"),
            (r#"{"endpoint": "grpc://collector:4317"}"#, "otel.endpoint"),
            (r#"{"endpoint": "http://c:4318/?x=1"}"#, "otel.endpoint"),
            (
                r#"{"endpoint": "http://user:secret@c:4318"}"#,
                "otel.endpoint",
            ),
            (r#"{"sample_ratio": 1.5}"#, "otel.sample_ratio"),
            (r#"{"sample_ratio": -0.1}"#, "otel.sample_ratio"),
            (r#"{"service_name": " "}"#, "otel.service_name"),
            (r#"{"headers": {"bad header": "v"}}"#, "otel.headers"),
            (
                r#"{"headers": {"x-key": "line\nbreak-secret"}}"#,
                "otel.headers",
            ),
        ] {
            let err = with(json).validate().unwrap_err().to_string();
            assert!(err.contains(field), "{json}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
        assert!(OtelSettings::default().validate().is_ok());
        let ok = with(r#"{"endpoint": "https://api.honeycomb.io/", "sample_ratio": 0}"#);
        assert!(ok.validate().is_ok());
        assert_eq!(
            ok.metrics_url().unwrap().unwrap(),
            "https://api.honeycomb.io/v1/metrics"
        );
    }

    #[test]
    fn header_values_never_show() {
        let settings: OtelSettings =
            serde_json::from_str(r#"{"headers": {"authorization": "Bearer sk-otel-123"}}"#)
                .unwrap();
        let shown = format!("{settings:?} {}", serde_json::to_string(&settings).unwrap());
        assert!(!shown.contains("sk-otel"), "{shown}");
        assert!(
            serde_json::from_str::<OtelSettings>(r#"{"endpoint": "x", "unknown": 1}"#).is_err()
        );
    }
}

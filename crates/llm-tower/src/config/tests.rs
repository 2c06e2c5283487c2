//! The configuration loader against every row of the schema, in YAML and TOML.
#![cfg(all(feature = "yaml", feature = "toml"))]

use std::time::Duration;

use llm_tower_core::{
    CountBased, Endpoint, EndpointConfig, ExponentialBackoff, RetryOn, RetryPolicy, RetryReason,
};
use llm_tower_fallback::{Strategy, WhenAllUnhealthy};

use super::*;

const YAML: &str = r#"
strategy: weighted
when_all_unhealthy: fail
max_body_bytes: 1048576
unhealthy_threshold: 2
max_cooldown: 30s
max_probe_interval: 5s
max_continuations: 2
retry_budget: { percent: 25, min_per_second: 5, ttl: 5s }
client: { connect_timeout: 2s, pool_idle_timeout: 30s }
endpoints:
  - id: openai-main
    base_url: https://api.openai.com/v1
    provider: openai
    api_key: ${LLM_TOWER_TEST_KEY}
    priority: 0
    weight: 3
    fallback: true
    health_check_interval: 2500
    timeout: 60s
    first_byte_timeout: 10s
    retry_on: [connect, 429, first_byte_timeout]
    retry_policy:
      name: ExponentialBackoff
      config: { times: 3, initial_interval: 50ms, max_interval: 2s, multiplier: 1.5 }
  - id: claude
    base_url: https://api.anthropic.com/v1
    provider: anthropic
    api_key: sk-ant-literal
    default_max_tokens: 2048
    drop_unsupported: [logprobs]
    priority: 1
    retry_policy: { name: CountBased, config: { times: 1 } }
  - id: local
    base_url: http://127.0.0.1:11434/v1
    provider: custom
    continuation: prefill
    auth_header: x-token
    auth_prefix: "Token "
    api_key: "${LLM_TOWER_UNSET_VAR:-fallback-key}"
    fallback: false
    timeout: null
    retry_policy: { name: NoRetry }
"#;

const TOML: &str = r#"
strategy = "weighted"
when_all_unhealthy = "fail"
max_body_bytes = 1048576
unhealthy_threshold = 2
max_cooldown = "30s"
max_probe_interval = "5s"
max_continuations = 2
retry_budget = { percent = 25, min_per_second = 5, ttl = "5s" }
client = { connect_timeout = "2s", pool_idle_timeout = "30s" }

[[endpoints]]
id = "openai-main"
base_url = "https://api.openai.com/v1"
provider = "openai"
api_key = "${LLM_TOWER_TEST_KEY}"
priority = 0
weight = 3
fallback = true
health_check_interval = 2500
timeout = "60s"
first_byte_timeout = "10s"
retry_on = ["connect", 429, "first_byte_timeout"]
retry_policy = { name = "ExponentialBackoff", config = { times = 3, initial_interval = "50ms", max_interval = "2s", multiplier = 1.5 } }

[[endpoints]]
id = "claude"
base_url = "https://api.anthropic.com/v1"
provider = "anthropic"
default_max_tokens = 2048
drop_unsupported = ["logprobs"]
api_key = "sk-ant-literal"
priority = 1
retry_policy = { name = "CountBased", config = { times = 1 } }

[[endpoints]]
id = "local"
base_url = "http://127.0.0.1:11434/v1"
provider = "custom"
continuation = "prefill"
auth_header = "x-token"
auth_prefix = "Token "
api_key = "${LLM_TOWER_UNSET_VAR:-fallback-key}"
fallback = false
retry_policy = { name = "NoRetry" }
"#;

fn parse_with_env(text: &str, format: Format, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    };
    Config::from_whole_document(Document::parse_with_env(text, format, &lookup)?)
}

fn yaml(text: &str) -> Result<Config, ConfigError> {
    parse_with_env(text, Format::Yaml, &[("LLM_TOWER_TEST_KEY", "sk-from-env")])
}

#[test]
fn yaml_and_toml_read_the_same() {
    let env = [("LLM_TOWER_TEST_KEY", "sk-from-env")];
    let from_yaml = parse_with_env(YAML, Format::Yaml, &env).unwrap();
    let mut from_toml = parse_with_env(TOML, Format::Toml, &env).unwrap();
    // TOML has no null: the YAML file disables the timeout of `local` with `timeout: null`.
    assert_eq!(
        from_toml.endpoints[2].timeout,
        Some(Endpoint::DEFAULT_TIMEOUT)
    );
    from_toml.endpoints[2].timeout = None;
    assert_eq!(from_yaml, from_toml);

    let c = from_yaml;
    assert_eq!(c.fallback.strategy, Strategy::Weighted);
    assert_eq!(c.fallback.when_all_unhealthy, WhenAllUnhealthy::Fail);
    assert_eq!(c.fallback.max_cooldown, Duration::from_secs(30));
    assert_eq!(c.fallback.max_probe_interval, Duration::from_secs(5));
    assert_eq!(c.fallback.max_continuations, 2);
    assert_eq!(c.retry.budget.ttl, Duration::from_secs(5));
    assert_eq!(c.client.connect_timeout, Duration::from_secs(2));
    assert_eq!(c.client.pool_max_idle_per_host, 64);
    let eps = c.build_endpoints().unwrap();
    assert_eq!(eps[0].credential().unwrap().1, "Bearer sk-from-env");
    assert_eq!(eps[0].health_check_interval(), Duration::from_millis(2500));
    assert_eq!(eps[0].first_byte_timeout(), Some(Duration::from_secs(10)));
    assert_eq!(
        eps[0].retry_on(),
        RetryOn::of([
            RetryReason::Connect,
            RetryReason::TooManyRequests,
            RetryReason::FirstByteTimeout
        ])
    );
    assert_eq!(eps[1].retry_on(), RetryOn::default());
    assert_eq!(eps[1].translation().default_max_tokens, 2048);
    assert!(eps[1].translation().drops("logprobs"));
    assert_eq!(
        eps[0].translation(),
        &llm_tower_core::Translation::default()
    );
    assert_eq!(
        eps[0].retry_policy(),
        &RetryPolicy::ExponentialBackoff(ExponentialBackoff {
            times: 3,
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_secs(2),
            multiplier: 1.5
        })
    );
    assert_eq!(eps[1].credential().unwrap().0, "x-api-key");
    assert_eq!(
        eps[1].retry_policy(),
        &RetryPolicy::CountBased(CountBased { times: 1 })
    );
    assert_eq!(eps[1].weight(), 1);
    assert!(eps[1].fallback());
    let (name, value) = eps[2].credential().unwrap();
    assert_eq!(
        (name.as_str(), value.to_str().unwrap()),
        ("x-token", "Token fallback-key")
    );
    assert!(!eps[2].fallback());
    assert_eq!(
        eps[2].continuation(),
        Some(llm_tower_core::Continuation::Prefill)
    );
    assert_eq!(eps[0].continuation(), None);
    assert_eq!(eps[2].timeout(), None);
    assert_eq!(eps[2].retry_policy(), &RetryPolicy::NoRetry);
    // Nothing secret in Debug or serialisation.
    let shown = format!("{c:?} {eps:?} {}", serde_json::to_string(&c).unwrap());
    for secret in ["sk-from-env", "sk-ant-literal", "fallback-key"] {
        assert!(!shown.contains(secret), "{secret} leaked");
    }
}

#[test]
fn defaults() {
    let c = yaml("endpoints: [{ id: a, base_url: 'http://localhost:1' }]").unwrap();
    assert_eq!(
        c,
        Config::with_endpoints(vec![EndpointConfig::new("a", "http://localhost:1")])
    );
    let e = &c.build_endpoints().unwrap()[0];
    assert_eq!(e.health_check_interval(), Duration::from_secs(5));
    assert_eq!(e.retry_policy(), &RetryPolicy::default());
    assert!(!e.retry_on().contains(RetryReason::Timeout));
    assert_eq!(e.timeout(), Some(Duration::from_secs(600)));
    assert!(e.credential().is_none());
    assert_eq!(c.fallback.max_body_bytes, 32 * 1024 * 1024);
    assert_eq!(c.fallback.max_probe_interval, Duration::from_secs(10));
    assert!(c.usage, "tokens are counted unless a file says not to");
    assert!(c.prices.is_empty());
}

fn err(text: &str) -> String {
    yaml(text).unwrap_err().to_string()
}

/// Configurations that must be refused, and what the error must say.
const INVALID: &[(&str, &[&str])] = &[
    (
        "prices: { gpt-4o: { input: -2.5, output: 10 } }\nendpoints: [{ id: a, base_url: 'http://h' }]",
        &["prices.gpt-4o.input", "non-negative"],
    ),
    (
        "prices: { gpt-4o: { input: 2.5, ouput: 10 } }\nendpoints: [{ id: a, base_url: 'http://h' }]",
        &["prices.gpt-4o", "ouput"],
    ),
    (
        "usage: sometimes\nendpoints: [{ id: a, base_url: 'http://h' }]",
        &["usage"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', retry_on: [connect, sometimes] }]",
        &[
            "endpoints[0].retry_on",
            "unknown `sometimes`",
            "first_byte_timeout",
        ],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', timeout: 5000000000000000h }]",
        &["endpoint `a`: timeout", "24h"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', retry_policy: { name: ExponentialBackoff, config: { multiplier: .nan } } }]",
        &[
            "endpoints[0].retry_policy.config.multiplier",
            "not a finite number",
        ],
    ),
    (
        "max_cooldown: .inf\nendpoints: [{ id: a, base_url: 'http://h' }]",
        &["max_cooldown", "not a finite number"],
    ),
    (
        "endpoints: [{ id: \"a\\nb\", base_url: 'http://h' }]",
        &["id", "\\n", "A-Z"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', provider: custom, auth_header: host }]",
        &["endpoint `a`: auth_header", "`host`"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', provider: custom, auth_header: transfer-encoding }]",
        &["endpoint `a`: auth_header", "transfer-encoding"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', provider: custom, auth_header: Content-Length }]",
        &["endpoint `a`: auth_header", "content-length"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', provider: custom, auth_header: user-agent }]",
        &["endpoint `a`: auth_header", "set or read by the gateway"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', provider: custom, auth_header: expect }]",
        &["endpoint `a`: auth_header", "`expect`"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', provider: custom, auth_header: x-request-id }]",
        &["endpoint `a`: auth_header", "`x-request-id`"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', stream_idle_timeout: 0s }]",
        &["endpoint `a`: stream_idle_timeout", "greater than zero"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h' }, { id: a, base_url: 'http://h' }]",
        &["endpoints[1].id", "duplicate id `a`"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'not a url' }]",
        &["endpoint `a`: base_url"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'ftp://h/' }]",
        &["endpoint `a`: base_url", "http or https"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', api_key: '' }]",
        &["endpoint `a`: api_key", "empty"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', api_key: \"sk\\r\\nx: y\" }]",
        &["endpoint `a`: api_key", "control character"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', provider: bedrock }]",
        &["endpoints[0].provider", "unknown variant `bedrock`"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', retry_policy: { name: Sometimes } }]",
        &["endpoints[0].retry_policy", "unknown variant `Sometimes`"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', api_key: 12345678901234 }]",
        &["endpoints[0].api_key", "quoted string"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', api_key: 'sk-${X' }]",
        &["endpoints[0].api_key", "closing"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', weight: 0 }]",
        &["endpoint `a`: weight", "at least 1"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', wieght: 2 }]",
        &["endpoints[0]", "unknown field `wieght`"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', timeout: 'soon' }]",
        &["endpoints[0].timeout", "invalid duration"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', provider: custom }]",
        &["endpoint `a`: auth_header", "required"],
    ),
    ("endpoints: []", &["endpoints", "at least one"]),
    (
        "unhealthy_threshold: 0\nendpoints: [{ id: a, base_url: 'http://h' }]",
        &["unhealthy_threshold"],
    ),
    (
        "max_cooldown: 5000000000000h\nendpoints: [{ id: a, base_url: 'http://h' }]",
        &["max_cooldown", "24h"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', health_check_interval: 48h }]",
        &["endpoint `a`: health_check_interval", "24h"],
    ),
    (
        "retry_budget: { ttl: 2m }\nendpoints: [{ id: a, base_url: 'http://h' }]",
        &["retry_budget.ttl"],
    ),
    (
        "stratgy: weighted\nendpoints: [{ id: a, base_url: 'http://h' }]",
        &["unknown field `stratgy`", "`strategy`", "`retry_budget`"],
    ),
    (
        "retry_budget: { percent: .nan }\nendpoints: [{ id: a, base_url: 'http://h' }]",
        &["retry_budget.percent"],
    ),
    (
        "strategy: random\nendpoints: [{ id: a, base_url: 'http://h' }]",
        &["strategy", "unknown variant"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', health_check: { path: models } }]",
        &["endpoint `a`: health_check: path", "must start with `/`"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', health_check: { path: '/../admin' } }]",
        &["endpoint `a`: health_check: path", "`..` segments"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', health_check: { interval: 0s } }]",
        &["endpoint `a`: health_check: interval", "greater than zero"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', health_check: { expect: 6xx } }]",
        &["endpoints[0].health_check.expect", "6xx"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', health_check: { every: 5s } }]",
        &["endpoints[0].health_check", "unknown field `every`"],
    ),
    (
        "latency_decay: 0s\nendpoints: [{ id: a, base_url: 'http://h' }]",
        &["latency_decay", "greater than zero"],
    ),
    (
        "endpoints: [{ id: a, base_url: 'http://h', api_key: '${LLM_TOWER_SURELY_UNSET}' }]",
        &["endpoints[0].api_key", "LLM_TOWER_SURELY_UNSET", "not set"],
    ),
];

#[test]
fn health_checks_and_least_latency() {
    let c = yaml(
        "strategy: least_latency\nlatency_decay: 3s\nendpoints:\n  \
         - { id: a, base_url: 'http://h/v1', health_check: { path: /models, method: GET, \
         interval: 30s, timeout: 5s, expect: 200 } }\n  \
         - { id: b, base_url: 'http://h/v1', health_check: { expect: 2xx } }\n  \
         - { id: c, base_url: 'http://h/v1' }",
    )
    .unwrap();
    assert_eq!(
        c.fallback.strategy,
        llm_tower_fallback::Strategy::LeastLatency
    );
    assert_eq!(c.fallback.latency_decay, Duration::from_secs(3));
    let endpoints = c.build_endpoints().unwrap();
    let a = endpoints[0].health_check().unwrap();
    assert_eq!(a.interval, Some(Duration::from_secs(30)));
    assert_eq!(
        a.expect,
        llm_tower_core::ExpectStatus::Status(http::StatusCode::OK)
    );
    let b = endpoints[1].health_check().unwrap();
    assert_eq!((b.path.as_str(), b.interval), ("/models", None));
    assert!(endpoints[2].health_check().is_none());
}

#[test]
fn invalid_cases_name_the_field() {
    let cases = INVALID;
    // A key in the wrong place is not repeated in the error.
    let message = err(
        "retry_budget: 'sk-secret-in-the-wrong-place'\nendpoints: [{ id: a, base_url: 'http://h' }]",
    );
    assert!(message.starts_with("retry_budget"), "{message}");
    assert!(!message.contains("sk-secret"), "{message}");
    for (text, needles) in cases {
        let message = err(text);
        for needle in *needles {
            assert!(
                message.contains(needle),
                "{text}\n  -> {message}\n  missing {needle}"
            );
        }
        assert!(!message.contains("sk\r\n"), "{message}");
        assert!(
            !message.contains("12345678901234") && !message.contains("sk-"),
            "{message}"
        );
    }
}

#[test]
fn files_by_extension() {
    let dir = std::env::temp_dir().join(format!("llm-tower-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml_path = dir.join("c.toml");
    std::fs::write(
        &toml_path,
        "[[endpoints]]\nid = \"a\"\nbase_url = \"http://h\"\n",
    )
    .unwrap();
    assert_eq!(Config::from_path(&toml_path).unwrap().endpoints[0].id, "a");
    let yaml_path = dir.join("c.yml");
    std::fs::write(
        &yaml_path,
        "endpoints:\n  - id: b\n    base_url: http://h\n",
    )
    .unwrap();
    assert_eq!(Config::from_path(&yaml_path).unwrap().endpoints[0].id, "b");
    let json_path = dir.join("c.json");
    std::fs::write(
        &json_path,
        r#"{"endpoints": [{"id": "c", "base_url": "http://h"}]}"#,
    )
    .unwrap();
    assert_eq!(Config::from_path(&json_path).unwrap().endpoints[0].id, "c");
    let ini_path = dir.join("c.ini");
    std::fs::write(&ini_path, "").unwrap();
    assert!(matches!(
        Config::from_path(&ini_path),
        Err(ConfigError::UnknownFormat { .. })
    ));
    assert!(matches!(
        Config::from_path(dir.join("missing.yaml")),
        Err(ConfigError::Io { .. })
    ));
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "endpoints: [ {").unwrap();
    assert!(matches!(
        Config::from_path(&bad),
        Err(ConfigError::Parse { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

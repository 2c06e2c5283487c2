//! The configuration loader must return an error, never panic, on any input; and whatever it
//! accepts must build its endpoints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_tower::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for parsed in [Config::from_yaml_str(text), Config::from_toml_str(text)] {
        if let Ok(config) = parsed {
            let endpoints = config.build_endpoints().expect("a loaded config builds");
            // Keys never show in Debug output.
            let shown = format!("{config:?} {endpoints:?}");
            for endpoint in &config.endpoints {
                if let Some(key) = &endpoint.api_key {
                    let key = key.expose_secret();
                    if key.len() >= 8 {
                        assert!(!shown.contains(key));
                    }
                }
            }
        }
    }
});

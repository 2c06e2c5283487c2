//! Building the layer: invalid configurations are refused.

mod common;

use llm_tower_fallback::{FallbackLayer, HealthRegistry};

use common::ep;

#[tokio::test(start_paused = true)]
async fn builder_rejects_bad_input() {
    let err = FallbackLayer::builder(vec![ep("a"), ep("a")])
        .build(HealthRegistry::new())
        .unwrap_err();
    assert!(err.to_string().contains("duplicate id `a`"), "{err}");
    assert!(
        FallbackLayer::builder(Vec::new())
            .build(HealthRegistry::new())
            .is_err()
    );
    assert!(
        FallbackLayer::builder(vec![ep("a")])
            .unhealthy_threshold(0)
            .build(HealthRegistry::new())
            .is_err()
    );
}

//! The handles a request is counted on, through the `metrics` facade, whatever the threads'
//! memos hold: a recorder on the other side counts by name and labels.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use llm_tower_core::{Caller, EndpointId, ModelName, Usage};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use super::MetricHandles;
use crate::respond::accounting::Accounted;

/// Counters by name and labels, as a recorder registers them.
#[derive(Default)]
struct Counting(Mutex<BTreeMap<String, Arc<AtomicU64>>>);

impl Counting {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let key = key_of(name, labels.iter().map(|(k, v)| (*k, *v)));
        self.0
            .lock()
            .unwrap()
            .get(&key)
            .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
    }
}

fn key_of<'a>(name: &str, labels: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut labels: Vec<_> = labels.collect();
    labels.sort_unstable();
    format!("{name}{labels:?}")
}

impl Recorder for Counting {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let name = key_of(key.name(), key.labels().map(|l| (l.key(), l.value())));
        let counter = self.0.lock().unwrap().entry(name).or_default().clone();
        Counter::from_arc(counter)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Requests of many clients (more than each thread keeps slots for), on two deployments, each
/// client sending a few in a row with another status and model each time, some of which
/// share a slot: each count must land on its own labels.
#[test]
fn every_count_lands_on_its_own_labels() {
    let recorder = Counting::default();
    let clients: Vec<Caller> = (0..12).map(|n| Caller::new(format!("team-{n}"))).collect();
    let deployments = [EndpointId::new("first"), EndpointId::new("second")];
    // Names and statuses that share slots: models of one length, and 200 with 504 (a slot is
    // picked by the model's length and the status's spread).
    let models = ["gpt-4o", "o3-pro", "gpt-4o-mini"];
    let statuses = [
        StatusCode::OK,
        StatusCode::GATEWAY_TIMEOUT,
        StatusCode::TOO_MANY_REQUESTS,
    ];
    // What each set of labels must count, worked out beside the handles.
    let mut requests: BTreeMap<(String, u16), u64> = BTreeMap::new();
    let mut tokens: BTreeMap<(String, &str, &str), (u64, u64)> = BTreeMap::new();
    metrics::with_local_recorder(&recorder, || {
        let handles = MetricHandles::default();
        // Each client sends a few in a row, which find the slots its last one took.
        for (round, (n, client)) in
            (0..2).flat_map(|r| clients.iter().enumerate().map(move |c| (r, c)))
        {
            for k in 0..3 {
                let (status, model) = (statuses[k], models[k]);
                let deployment = &deployments[n % 2];
                handles.request(status, Some(client));
                *requests
                    .entry((client.name().to_owned(), status.as_u16()))
                    .or_default() += 1;
                let usage = Usage {
                    input: n as u64 + 1,
                    output: (round * 3 + k) as u64 + 1,
                    ..Usage::default()
                };
                // A model named anew each time, as a request's scan names it.
                let accounted = Accounted {
                    usage,
                    model: Some(ModelName::from(model)),
                    cost: None,
                };
                handles.usage(Some(client), &accounted, deployment);
                let counted = tokens
                    .entry((client.name().to_owned(), model, deployment.as_str()))
                    .or_default();
                *counted = (counted.0 + usage.input, counted.1 + usage.output);
            }
        }
    });
    for ((client, status), count) in requests {
        let status = status.to_string();
        let labels = [("client", &*client), ("status", &*status)];
        assert_eq!(
            recorder.value("llm_tower_requests_total", &labels),
            count,
            "{labels:?}"
        );
    }
    for ((client, model, deployment), (input, output)) in tokens {
        let labels = |kind| {
            [
                ("client", &*client),
                ("model", model),
                ("deployment", deployment),
                ("kind", kind),
            ]
        };
        let value = |kind| recorder.value("llm_tower_tokens_total", &labels(kind));
        assert_eq!(
            (value("input"), value("output")),
            (input, output),
            "{:?}",
            labels("input")
        );
    }
}

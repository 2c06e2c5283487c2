//! The latency score of one deployment for `least_latency`: a peak-EWMA of the time to the
//! first byte of its answers.
//!
//! This is the estimate of tower's `load::PeakEwma` (itself Finagle's), kept per deployment
//! instead of per service: the balancer picks among deployments that share one inner
//! service, so there is no per-endpoint service for tower's wrapper to measure, and
//! tower's load is read through its `Load` trait on a service we do not have. The algorithm
//! is the same:
//!
//! - an answer slower than the estimate replaces it at once (the *peak*): a deployment that
//!   slows down loses traffic immediately;
//! - a faster one moves the estimate towards it with weight `1 - e^(-Δt/τ)`, where `Δt` is
//!   the time since the last update and `τ` the decay (`latency_decay`, 10 s by default), so
//!   that the estimate follows time rather than request counts;
//! - while a deployment gets no answers and has no request in flight, its estimate decays
//!   towards zero with the same `τ`: one that was slow becomes worth a try again, and its
//!   score can recover. With requests in flight it does not decay (Finagle's rule): a
//!   deployment that hangs has nothing to show for them, and must not look faster for it.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// A deployment's latency estimate; `None` until it is observed or seeded.
#[derive(Debug, Default)]
pub(crate) struct PeakEwma {
    estimate: Mutex<Option<Estimate>>,
}

#[derive(Clone, Copy, Debug)]
struct Estimate {
    /// Seconds.
    value: f64,
    at: Instant,
}

impl Estimate {
    /// The weight of the past after `elapsed`, for a decay of `tau`.
    fn decay(self, now: Instant, tau: Duration) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (-elapsed / tau.as_secs_f64().max(f64::MIN_POSITIVE)).exp()
    }
}

impl PeakEwma {
    fn lock(&self) -> MutexGuard<'_, Option<Estimate>> {
        self.estimate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The estimate at `now` in seconds: decayed towards zero since it was last updated when
    /// the deployment is `idle`, as last updated otherwise.
    pub(crate) fn get(&self, now: Instant, tau: Duration, idle: bool) -> Option<f64> {
        let estimate = (*self.lock())?;
        Some(if idle {
            estimate.value * estimate.decay(now, tau)
        } else {
            estimate.value
        })
    }

    /// The estimate as last updated, without decay (for operators).
    pub(crate) fn last(&self) -> Option<Duration> {
        self.lock()
            .map(|e| Duration::try_from_secs_f64(e.value).unwrap_or(Duration::MAX))
    }

    /// An answer took `latency`.
    pub(crate) fn observe(&self, latency: Duration, now: Instant, tau: Duration) {
        let latency = latency.as_secs_f64();
        let mut estimate = self.lock();
        let value = match *estimate {
            Some(past) if latency < past.value => {
                let decay = past.decay(now, tau);
                past.value * decay + latency * (1.0 - decay)
            }
            _ => latency,
        };
        *estimate = Some(Estimate { value, at: now });
    }

    /// Starts an unobserved estimate at `value` seconds (the tier's median, so that a new
    /// or restored deployment neither floods nor starves); an observed one is left alone.
    pub(crate) fn seed(&self, value: f64, now: Instant) {
        self.lock().get_or_insert(Estimate { value, at: now });
    }

    /// Forgets the estimate: the deployment was ejected, and what it did before says
    /// nothing about how it does now.
    pub(crate) fn reset(&self) {
        *self.lock() = None;
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // paused time makes these exact
mod tests {
    use super::*;

    const TAU: Duration = Duration::from_secs(10);
    const MS: f64 = 1e-3;

    #[tokio::test(start_paused = true)]
    async fn peaks_at_once_and_eases_down_with_time() {
        let ewma = PeakEwma::default();
        let t0 = Instant::now();
        assert_eq!(ewma.get(t0, TAU, true), None);
        ewma.observe(Duration::from_millis(10), t0, TAU);
        assert_eq!(ewma.get(t0, TAU, true), Some(10.0 * MS));
        // A slower answer is taken at once.
        ewma.observe(Duration::from_millis(50), t0, TAU);
        assert_eq!(ewma.get(t0, TAU, true), Some(50.0 * MS));
        // A faster one one τ later weighs 1 - 1/e.
        let t1 = t0 + TAU;
        ewma.observe(Duration::from_millis(10), t1, TAU);
        let expected =
            50.0 * MS / std::f64::consts::E + 10.0 * MS * (1.0 - 1.0 / std::f64::consts::E);
        assert!((ewma.get(t1, TAU, true).unwrap() - expected).abs() < 1e-12);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_estimate_decays_towards_zero() {
        let ewma = PeakEwma::default();
        let t0 = Instant::now();
        ewma.observe(Duration::from_millis(50), t0, TAU);
        let later = ewma.get(t0 + TAU * 3, TAU, true).unwrap();
        assert!(later < 50.0 * MS * 0.05, "{later}");
        // Not while it has requests in flight: they may be hanging.
        assert_eq!(ewma.get(t0 + TAU * 3, TAU, false), Some(50.0 * MS));
        assert_eq!(ewma.last(), Some(Duration::from_millis(50)));
    }

    #[tokio::test(start_paused = true)]
    async fn seeding_never_overrides_an_observation() {
        let ewma = PeakEwma::default();
        let now = Instant::now();
        ewma.seed(0.020, now);
        assert_eq!(ewma.get(now, TAU, true), Some(0.020));
        ewma.seed(0.5, now);
        assert_eq!(ewma.get(now, TAU, true), Some(0.020));
        ewma.reset();
        assert_eq!(ewma.get(now, TAU, true), None);
    }
}

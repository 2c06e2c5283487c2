//! [`Usage`], the tokens an answer cost, and [`UsageRecord`], where a request's attempts
//! leave theirs for the layer that accounts for them.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::model::ModelName;

/// The tokens of one answer, as its provider reported them, in OpenAI's terms whatever the
/// provider: `input` counts every prompt token (cached ones included, as OpenAI counts them;
/// Anthropic's cache reads and writes are added to its `input_tokens`), `output` every
/// generated one (reasoning included; Gemini's thoughts are added to its candidates).
///
/// ```
/// use llm_tower_core::Usage;
///
/// let first = Usage { input: 1200, output: 40, cached_input: 1024, reasoning: 0, estimated: false };
/// let continued = Usage { input: 1300, output: 60, ..Usage::default() };
/// let both = first + continued;
/// assert_eq!((both.input, both.output, both.cached_input), (2500, 100, 1024));
/// assert_eq!(both.to_string(), "2500/100");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub input: u64,
    /// Generated tokens, reasoning included.
    pub output: u64,
    /// Prompt tokens read from the provider's cache (billed at its cached price).
    pub cached_input: u64,
    /// Generated tokens spent on reasoning.
    pub reasoning: u64,
    /// Some of it was estimated, not reported: a stream that broke or was abandoned before its
    /// usage came (output counted from the text delivered, at about 4 characters a token).
    pub estimated: bool,
}

impl std::ops::Add for Usage {
    type Output = Self;

    fn add(self, more: Self) -> Self {
        Self {
            input: self.input.saturating_add(more.input),
            output: self.output.saturating_add(more.output),
            cached_input: self.cached_input.saturating_add(more.cached_input),
            reasoning: self.reasoning.saturating_add(more.reasoning),
            estimated: self.estimated || more.estimated,
        }
    }
}

/// `input/output`, as the access log shows it.
impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.input, self.output)
    }
}

/// Request and response extension: where the answers to a request leave their [`Usage`]. A
/// layer that accounts for tokens (the facade's `Respond`, with usage on) puts one on the
/// request; every attempt carries it (the balancer moves it into each attempt's
/// [`AttemptContext`](crate::AttemptContext); read it with [`UsageRecord::of`]), and the
/// usage layer of the attempt that answered adds what its answer reported once the
/// answer's body has ended, broken off or been dropped. Failed attempts add nothing. The same
/// record is on the response, for a library user to read once the body is done.
///
/// ```
/// use llm_tower_core::{Usage, UsageRecord};
///
/// let record = UsageRecord::default();
/// assert_eq!(record.usage(), None);
/// let attempt = record.clone(); // what an attempt carries
/// attempt.add(Usage { input: 12, output: 5, ..Usage::default() });
/// attempt.set_model("gpt-4o".into());
/// assert_eq!(record.usage().unwrap().output, 5);
/// assert_eq!(record.model().as_deref(), Some("gpt-4o"));
/// ```
#[derive(Clone, Default)]
pub struct UsageRecord(Arc<Mutex<Recorded>>);

#[derive(Default)]
struct Recorded {
    usage: Option<Usage>,
    model: Option<ModelName>,
}

impl UsageRecord {
    /// Adds an answer's usage (a continued stream's answers add up).
    pub fn add(&self, usage: Usage) {
        let mut recorded = self.lock();
        recorded.usage = Some(recorded.usage.map_or(usage, |before| before + usage));
    }

    /// The usage recorded so far (`None`: no answer reported any).
    pub fn usage(&self) -> Option<Usage> {
        self.lock().usage
    }

    /// Names the model the request asked for, when no balancer routed it by model (the
    /// usage layer reads it from the request body for the accounting to price it).
    pub fn set_model(&self, model: ModelName) {
        self.lock().model.get_or_insert(model);
    }

    /// The model a request's usage is priced as: `answered`, the model the balancer routed
    /// it to (after aliases and chains), else the one named with [`set_model`](Self::set_model).
    pub fn priced_model(&self, answered: Option<&ModelName>) -> Option<ModelName> {
        answered.cloned().or_else(|| self.model())
    }

    /// The model named with [`set_model`](Self::set_model).
    pub fn model(&self) -> Option<ModelName> {
        self.lock().model.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for UsageRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UsageRecord").field(&self.usage()).finish()
    }
}

//! [`AttemptContext`]: what the balancer tells the layers inside about one attempt, in one
//! extension, and the accessors that read each part of it.

use http::Extensions;

use crate::attempt::{AttemptKind, Attempts};
use crate::extensions::{CredentialsSet, Deployment, Selected, SingleTry};
use crate::usage::UsageRecord;

/// Request and response extension: one attempt as the balancer sends it. The endpoint
/// ([`Selected`]), the [`Deployment`] when it says more than the endpoint does, the request's
/// attempt log ([`Attempts`]), whether it is tried once only ([`SingleTry`]), its
/// [`AttemptKind`] when the balancer says it, whether the auth layer set its credentials
/// ([`CredentialsSet`]), and the request's [`UsageRecord`] when a layer outside wants usage.
///
/// They travel together because every entry of a request's extensions is an allocation of
/// its own, and a fourth entry makes the map grow: the balancer makes a request per attempt
/// and per retry, and the answer carries the same facts back. Each part is read through its
/// own accessor ([`Selected::of`], [`Deployment::of`], [`Attempts::of`], [`SingleTry::of`],
/// [`AttemptKind::of`], [`CredentialsSet::of`], [`UsageRecord::of`]), or several through one
/// [`AttemptFacts`]; both also find a part inserted on its own, as a layer used without the
/// balancer is given it.
///
/// ```
/// use std::sync::Arc;
/// use llm_tower_core::{AttemptContext, Attempts, Endpoint, Selected, SingleTry};
///
/// let endpoint = Arc::new(Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap());
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(AttemptContext::new(Selected(endpoint), Attempts::new()));
/// assert_eq!(Selected::of(request.extensions()).unwrap().id().as_str(), "a");
/// assert!(!SingleTry::of(request.extensions()));
/// ```
#[derive(Clone, Debug)]
pub struct AttemptContext {
    /// The endpoint the attempt goes to.
    pub selected: Selected,
    /// The deployment, when it is not just the endpoint (a model, or an id of its own).
    pub deployment: Option<Deployment>,
    /// The request's attempt log.
    pub log: Attempts,
    /// Tried once only (see [`SingleTry`]).
    pub single_try: bool,
    /// What the attempt is, when the balancer says it (see [`AttemptKind`]).
    pub kind: Option<AttemptKind>,
    /// The auth layer set the credentials (see [`CredentialsSet`]).
    pub credentials_set: bool,
    /// Where the answer's usage goes, when a layer outside the balancer wants it (see
    /// [`UsageRecord`]): the balancer takes it off the request's own extensions, so that an
    /// attempt's map holds one entry fewer to copy.
    pub usage: Option<UsageRecord>,
}

impl AttemptContext {
    /// An attempt on `selected`, recorded in `log`; the rest unsaid.
    pub fn new(selected: Selected, log: Attempts) -> Self {
        Self {
            selected,
            deployment: None,
            log,
            single_try: false,
            kind: None,
            credentials_set: false,
            usage: None,
        }
    }

    /// The context among `extensions`.
    pub fn of(extensions: &Extensions) -> Option<&Self> {
        extensions.get::<Self>()
    }
}

/// What the extensions of an attempt (or of its answer) say of it: the parts of its
/// [`AttemptContext`], found with one lookup, or where there is none (a layer used without
/// the balancer) each part inserted on its own. For a layer that reads several parts: each
/// accessor ([`Selected::of`], ...) looks the context up again.
///
/// ```
/// use std::sync::Arc;
/// use llm_tower_core::{AttemptContext, AttemptFacts, Attempts, Endpoint, Selected, SingleTry};
///
/// let endpoint = Arc::new(Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap());
/// let mut request = http::Request::new(());
/// let mut context = AttemptContext::new(Selected(endpoint.clone()), Attempts::new());
/// context.single_try = true;
/// request.extensions_mut().insert(context);
/// let facts = AttemptFacts::of(request.extensions());
/// assert_eq!(facts.selected().unwrap().id().as_str(), "a");
/// assert!(facts.single_try() && facts.deployment().is_none());
///
/// // Without a context, each part as it was inserted.
/// let mut alone = http::Request::new(());
/// alone.extensions_mut().insert(Selected(endpoint));
/// alone.extensions_mut().insert(SingleTry);
/// let facts = AttemptFacts::of(alone.extensions());
/// assert_eq!(facts.selected().unwrap().id().as_str(), "a");
/// assert!(facts.single_try() && facts.log().is_none());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct AttemptFacts<'a> {
    context: Option<&'a AttemptContext>,
    extensions: &'a Extensions,
}

impl<'a> AttemptFacts<'a> {
    /// What `extensions` say of their attempt.
    pub fn of(extensions: &'a Extensions) -> Self {
        Self {
            context: AttemptContext::of(extensions),
            extensions,
        }
    }

    /// The endpoint ([`Selected`]).
    pub fn selected(self) -> Option<&'a Selected> {
        match self.context {
            Some(context) => Some(&context.selected),
            None => self.extensions.get(),
        }
    }

    /// The [`Deployment`], when it says more than the endpoint does.
    pub fn deployment(self) -> Option<&'a Deployment> {
        match self.context {
            Some(context) => context.deployment.as_ref(),
            None => self.extensions.get(),
        }
    }

    /// The request's attempt log ([`Attempts`]).
    pub fn log(self) -> Option<&'a Attempts> {
        match self.context {
            Some(context) => Some(&context.log),
            None => self.extensions.get(),
        }
    }

    /// Tried once only ([`SingleTry`]).
    pub fn single_try(self) -> bool {
        match self.context {
            Some(context) => context.single_try,
            None => self.extensions.get::<SingleTry>().is_some(),
        }
    }

    /// What the attempt is, when it is said ([`AttemptKind`]).
    pub fn kind(self) -> Option<AttemptKind> {
        match self.context {
            Some(context) => context.kind,
            None => self.extensions.get().copied(),
        }
    }

    /// The auth layer set the credentials ([`CredentialsSet`]).
    pub fn credentials_set(self) -> bool {
        match self.context {
            Some(context) => context.credentials_set,
            None => self.extensions.get::<CredentialsSet>().is_some(),
        }
    }

    /// Where the answer's usage goes ([`UsageRecord`]): one inserted on its own (as the layer
    /// that wants usage inserts it, and as a response carries it), else the context's. The
    /// one on its own goes first: a stack nested in a balancer's attempt (a deployment that
    /// is a whole stack of its own, with usage on) puts its own record beside the outer
    /// attempt's context, and its layers must count into that one.
    pub fn usage(self) -> Option<&'a UsageRecord> {
        self.extensions
            .get()
            .or_else(|| self.context.and_then(|context| context.usage.as_ref()))
    }
}

impl Selected {
    /// The endpoint a request goes to (or a response came from), from its
    /// [`AttemptContext`] or a `Selected` of its own.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use llm_tower_core::{Endpoint, Selected};
    ///
    /// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
    /// let mut request = http::Request::new(());
    /// assert!(Selected::of(request.extensions()).is_none());
    /// request.extensions_mut().insert(Selected(Arc::new(endpoint)));
    /// assert_eq!(Selected::of(request.extensions()).unwrap().id().as_str(), "a");
    /// ```
    pub fn of(extensions: &Extensions) -> Option<&Self> {
        AttemptFacts::of(extensions).selected()
    }
}

impl Deployment {
    /// The deployment a request goes to (or a response came from), when it says more than its
    /// endpoint does: from its [`AttemptContext`] or a `Deployment` of its own.
    ///
    /// ```
    /// use llm_tower_core::{Deployment, EndpointId};
    ///
    /// let mut response = http::Response::new(());
    /// response.extensions_mut().insert(Deployment::new(EndpointId::from("a/gpt-4o"), Some("gpt-4o".into())));
    /// assert_eq!(Deployment::of(response.extensions()).unwrap().id.as_str(), "a/gpt-4o");
    /// ```
    pub fn of(extensions: &Extensions) -> Option<&Self> {
        AttemptFacts::of(extensions).deployment()
    }
}

impl Attempts {
    /// The attempt log a request or response carries: from its [`AttemptContext`] or an
    /// `Attempts` of its own.
    ///
    /// ```
    /// use llm_tower_core::Attempts;
    ///
    /// let mut response = http::Response::new(());
    /// assert!(Attempts::of(response.extensions()).is_none());
    /// response.extensions_mut().insert(Attempts::new());
    /// assert!(Attempts::of(response.extensions()).unwrap().is_empty());
    /// ```
    pub fn of(extensions: &Extensions) -> Option<&Self> {
        AttemptFacts::of(extensions).log()
    }
}

impl SingleTry {
    /// Whether a request is to be tried once only: said by its [`AttemptContext`] or a
    /// `SingleTry` of its own.
    ///
    /// ```
    /// use llm_tower_core::SingleTry;
    ///
    /// let mut request = http::Request::new(());
    /// assert!(!SingleTry::of(request.extensions()));
    /// request.extensions_mut().insert(SingleTry);
    /// assert!(SingleTry::of(request.extensions()));
    /// ```
    pub fn of(extensions: &Extensions) -> bool {
        AttemptFacts::of(extensions).single_try()
    }
}

impl AttemptKind {
    /// What an attempt is, when its request says: from its [`AttemptContext`] or an
    /// `AttemptKind` of its own.
    ///
    /// ```
    /// use llm_tower_core::AttemptKind;
    ///
    /// let mut request = http::Request::new(());
    /// assert_eq!(AttemptKind::of(request.extensions()), None);
    /// AttemptKind::Hedge.mark(request.extensions_mut());
    /// assert_eq!(AttemptKind::of(request.extensions()), Some(AttemptKind::Hedge));
    /// ```
    pub fn of(extensions: &Extensions) -> Option<Self> {
        AttemptFacts::of(extensions).kind()
    }

    /// Says on a request that it is this kind of attempt (in its [`AttemptContext`], when it
    /// has one).
    pub fn mark(self, extensions: &mut Extensions) {
        match extensions.get_mut::<AttemptContext>() {
            Some(context) => context.kind = Some(self),
            None => {
                extensions.insert(self);
            }
        }
    }
}

impl UsageRecord {
    /// Where the answers to a request (or this response) leave their usage, if anyone wants
    /// it: a `UsageRecord` of its own, else its [`AttemptContext`]'s (see
    /// [`AttemptFacts::usage`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use llm_tower_core::{AttemptContext, Attempts, Endpoint, Selected, UsageRecord};
    ///
    /// let mut request = http::Request::new(());
    /// assert!(UsageRecord::of(request.extensions()).is_none());
    /// request.extensions_mut().insert(UsageRecord::default());
    /// assert!(UsageRecord::of(request.extensions()).is_some());
    ///
    /// // An attempt of the balancer's carries it in its context.
    /// let endpoint = Arc::new(Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap());
    /// let mut context = AttemptContext::new(Selected(endpoint), Attempts::new());
    /// context.usage = Some(UsageRecord::default());
    /// let mut attempt = http::Request::new(());
    /// attempt.extensions_mut().insert(context);
    /// assert_eq!(UsageRecord::of(attempt.extensions()).unwrap().usage(), None);
    ///
    /// // A stack nested in that attempt puts its own beside it: that one is read.
    /// let inner = UsageRecord::default();
    /// inner.add(llm_tower_core::Usage { input: 3, ..Default::default() });
    /// attempt.extensions_mut().insert(inner);
    /// assert_eq!(UsageRecord::of(attempt.extensions()).unwrap().usage().unwrap().input, 3);
    /// ```
    pub fn of(extensions: &Extensions) -> Option<&Self> {
        AttemptFacts::of(extensions).usage()
    }
}

impl CredentialsSet {
    /// Whether the auth layer set a request's credentials: said by its [`AttemptContext`] or
    /// a `CredentialsSet` of its own.
    ///
    /// ```
    /// use llm_tower_core::CredentialsSet;
    ///
    /// let mut request = http::Request::new(());
    /// assert!(!CredentialsSet::of(request.extensions()));
    /// CredentialsSet::mark(request.extensions_mut());
    /// assert!(CredentialsSet::of(request.extensions()));
    /// ```
    pub fn of(extensions: &Extensions) -> bool {
        AttemptFacts::of(extensions).credentials_set()
    }

    /// Says on a request that its credentials are set (in its [`AttemptContext`], when it has
    /// one).
    pub fn mark(extensions: &mut Extensions) {
        match extensions.get_mut::<AttemptContext>() {
            Some(context) => context.credentials_set = true,
            None => {
                extensions.insert(Self);
            }
        }
    }
}

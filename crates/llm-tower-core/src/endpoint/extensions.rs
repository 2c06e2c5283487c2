//! The request extensions the layers pass each other: which endpoint ([`Selected`]), whether
//! an attempt is a single try ([`SingleTry`]), whether its credentials were set
//! ([`CredentialsSet`]), which client sent it ([`Caller`]), and how to make it again
//! ([`Replay`]).

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use super::Endpoint;

/// Request extension naming the endpoint a request is sent to. The balancer inserts it; the
/// retry and auth layers read it.
///
/// ```
/// use std::sync::Arc;
/// use llm_tower_core::{Endpoint, Selected};
///
/// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(Selected(Arc::new(endpoint)));
/// assert_eq!(request.extensions().get::<Selected>().unwrap().id().as_str(), "a");
/// ```
#[derive(Clone, Debug)]
pub struct Selected(pub Arc<Endpoint>);

/// Request extension marking an attempt that must be tried once only: the balancer sets it
/// on the half-open probe of an endpoint that was cooling down, so that a user request never
/// waits through retries and backoff on an endpoint that is probably still down. The retry
/// layer makes no retry of such a request.
///
/// ```
/// use llm_tower_core::SingleTry;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(SingleTry);
/// assert!(request.extensions().get::<SingleTry>().is_some());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SingleTry;

/// Request extension saying that the auth layer has set this request's credentials: the
/// client's stripped and the endpoint's key set (or the client's kept, when asked to). A
/// transport that is handed a request the balancer chose ([`Selected`]) without it refuses
/// to send it: the auth layer is missing from the stack, and the request still carries the
/// client's own credentials.
///
/// ```
/// use llm_tower_core::CredentialsSet;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(CredentialsSet);
/// assert!(request.extensions().get::<CredentialsSet>().is_some());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CredentialsSet;

/// Request extension naming the client a request came from, set by whoever authenticated it
/// (the gateway's client keys). It is a name, never a credential: the access log and metrics
/// show it.
///
/// ```
/// use llm_tower_core::Caller;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(Caller::new("team-a"));
/// assert_eq!(request.extensions().get::<Caller>().unwrap().name(), "team-a");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Caller(Arc<str>);

impl Caller {
    /// A caller of this name.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// Request extension that remakes the request for another try, so that a retry layer need not
/// copy every request before its first try in case a retry follows. The balancer inserts it
/// (from the copy it keeps for fallback anyway); without it, the retry layer copies the
/// request itself when a retry is possible.
///
/// ```
/// use llm_tower_core::Replay;
///
/// let replay = Replay::new(|| http::Request::new("again"));
/// let mut request = replay.request();
/// request.extensions_mut().insert(replay.clone());
/// assert_eq!(*request.extensions().get::<Replay<&str>>().unwrap().request().body(), "again");
/// ```
pub struct Replay<B>(Arc<dyn Fn() -> http::Request<B> + Send + Sync>);

impl<B> Replay<B> {
    /// A replay that calls `make` for every new copy.
    pub fn new(make: impl Fn() -> http::Request<B> + Send + Sync + 'static) -> Self {
        Self(Arc::new(make))
    }

    /// A new copy of the request.
    pub fn request(&self) -> http::Request<B> {
        (self.0)()
    }
}

impl<B> Clone for Replay<B> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<B> fmt::Debug for Replay<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replay").finish_non_exhaustive()
    }
}

impl Deref for Selected {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.0
    }
}

//! [`RedisUrl`]: a Redis server's URL (the health store's, the limits store's), which may hold
//! a password; how it is shown without it, and what is checked of its form.
//!
//! The `redis` client reads a password from the user info (`redis://user:pw@host`) and, in
//! a `redis+unix://` URL, from the query (`?pass=pw`). Operators also write `?password=`,
//! which the client ignores for `redis://` but which is still their password. Every one of
//! these is hidden, and so is anything before an `@` that a password holding `/`, `?` or
//! `#` (not percent-encoded) would push out of the user info.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// A Redis URL, which may hold a password: shown (`Display`, `Debug`) and serialised with
/// the password replaced by `***`, wherever the URL has it.
///
/// ```
/// use llm_tower_core::RedisUrl;
///
/// let url = RedisUrl::from("redis://app:hunter2@cache:6379");
/// assert_eq!(url.to_string(), "redis://app:***@cache:6379");
/// assert_eq!(serde_json::to_string(&url).unwrap(), r#""redis://app:***@cache:6379""#);
/// assert_eq!(url.expose(), "redis://app:hunter2@cache:6379");
/// let url = RedisUrl::from("redis://cache:6379/0?password=hunter2");
/// assert_eq!(url.to_string(), "redis://cache:6379/0?password=***");
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct RedisUrl(String);

impl Serialize for RedisUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl RedisUrl {
    /// The URL as written, password included: for connecting, never for showing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for RedisUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl From<String> for RedisUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl RedisUrl {
    /// Checks the URL's form, for the configuration path `field`: `redis://`, a host, and a
    /// port from 1 to 65535 when one is written.
    ///
    /// ```
    /// use llm_tower_core::RedisUrl;
    ///
    /// assert!(RedisUrl::from("redis://:pw@10.0.0.5:6379/2").validate("store.redis").is_ok());
    /// let err = RedisUrl::from("rediss://:pw@h").validate("store.redis").unwrap_err();
    /// assert!(err.to_string().contains("store.redis") && !err.to_string().contains("pw"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `field`, the URL shown without its password.
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        let rest = self.0.strip_prefix("redis://").ok_or_else(|| {
            ConfigError::invalid(
                field,
                format!(
                    "`{self}` is not a redis:// URL (TLS, rediss://, and Redis Cluster are not supported)"
                ),
            )
        })?;
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        if host.is_empty() || host.starts_with(['/', ':']) {
            return Err(ConfigError::invalid(
                field,
                format!("`{self}` names no host"),
            ));
        }
        let authority = host.split(['/', '?', '#']).next().unwrap_or(host);
        let port_ok = authority
            .parse::<http::uri::Authority>()
            .is_ok_and(|a| crate::port_is_valid(&a));
        if !port_ok {
            return Err(ConfigError::invalid(
                field,
                format!("`{self}` is not host[:port] with a port from 1 to 65535"),
            ));
        }
        Ok(())
    }
}

/// Checks the prefix of a store's keys (configuration path `field`): letters, digits, `.`,
/// `_`, `-` or `:`, not empty, so that it cannot run into what follows it.
///
/// ```
/// use llm_tower_core::validate_key_prefix;
///
/// assert!(validate_key_prefix("store.prefix", "llm-tower:eu").is_ok());
/// assert!(validate_key_prefix("store.prefix", "two words").is_err());
/// ```
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming `field`.
pub fn validate_key_prefix(field: &str, prefix: &str) -> Result<(), ConfigError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if prefix.is_empty() || !prefix.chars().all(allowed) {
        return Err(ConfigError::invalid(
            field,
            format!("`{prefix}` must be letters, digits, `.`, `_`, `-` or `:`, and not empty"),
        ));
    }
    Ok(())
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A URL written without its scheme is masked all the same: it is shown in the error
        // that says so.
        let rest = match self.0.split_once("://") {
            Some((scheme, rest)) => {
                write!(f, "{scheme}://")?;
                rest
            }
            None => &self.0,
        };
        // The authority ends at the path, query or fragment; only there can a password be.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if stray_at(tail) {
            // An `@` where no URL the client reads has one: a password with a `/`, `?` or
            // `#` written as is. All before the last `@` may be that password.
            let (_, after) = rest.rsplit_once('@').unwrap_or(("", rest));
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            let (host, tail) = after.split_at(end);
            write!(f, "***@{host}")?;
            return write_tail(f, tail);
        }
        match authority.rsplit_once('@') {
            Some((user_info, host)) => {
                // A lone name is shown as a password too: redis URLs put either there.
                let user = user_info.split_once(':').map_or("", |(user, _)| user);
                write!(f, "{user}:***@{host}")?;
            }
            None => f.write_str(authority)?,
        }
        write_tail(f, tail)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Query parameters that hold a password: `pass` (what the client reads) and `password`.
fn is_password(key: &str) -> bool {
    let key = percent_decoded(key).to_ascii_lowercase();
    key == "pass" || key == "password"
}

/// Whether the part after the authority has an `@` anywhere but in the value of a `user`
/// parameter (a user name may be an e-mail address).
fn stray_at(tail: &str) -> bool {
    let (before_fragment, fragment) = tail.split_once('#').unwrap_or((tail, ""));
    let (path, query) = before_fragment
        .split_once('?')
        .unwrap_or((before_fragment, ""));
    path.contains('@')
        || fragment.contains('@')
        || query.split('&').any(|pair| match pair.split_once('=') {
            Some((key, _)) if percent_decoded(key).eq_ignore_ascii_case("user") => false,
            _ => pair.contains('@'),
        })
}

/// The path, query and fragment, with the values of password parameters hidden. A part that
/// follows one without a `=` is taken for more of that password (an `&` not encoded).
fn write_tail(f: &mut fmt::Formatter<'_>, tail: &str) -> fmt::Result {
    let Some((path, query)) = tail.split_once('?') else {
        return f.write_str(tail);
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    write!(f, "{path}?")?;
    let mut hiding = false;
    for (i, pair) in query.split('&').enumerate() {
        let key = pair.split_once('=').map(|(key, _)| key);
        if hiding && key.is_none() {
            continue;
        }
        if i > 0 {
            f.write_str("&")?;
        }
        hiding = key.is_some_and(is_password);
        match key {
            Some(key) if hiding => write!(f, "{key}=***")?,
            _ => f.write_str(pair)?,
        }
    }
    match fragment {
        Some(fragment) => write!(f, "#{fragment}"),
        None => Ok(()),
    }
}

/// `text` with its `%XX` escapes decoded (ASCII only: enough to recognise a name).
fn percent_decoded(text: &str) -> String {
    let mut decoded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((before, after)) = rest.split_once('%') {
        decoded.push_str(before);
        match after
            .get(..2)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            Some(byte) if byte.is_ascii() => {
                decoded.push(char::from(byte));
                rest = &after[2..];
            }
            _ => {
                decoded.push('%');
                rest = after;
            }
        }
    }
    decoded.push_str(rest);
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
            ("redis://user:p@ss@h", "redis://user:***@h"),
            ("redis://pw-as-user@h", "redis://:***@h"),
            ("redis://h:1/0?user=a@b", "redis://h:1/0?user=a@b"),
            // In the query, as `redis+unix://` URLs have it, or as operators write it.
            ("redis://h:1/0?password=pw", "redis://h:1/0?password=***"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=pw&user=app",
                "redis+unix:///run/redis.sock?db=1&pass=***&user=app",
            ),
            ("redis://h?PassWord=pw#frag", "redis://h?PassWord=***#frag"),
            ("redis://h?pa%73s=pw", "redis://h?pa%73s=***"),
            ("redis://h?password=p&w&db=2", "redis://h?password=***&db=2"),
            ("redis://h?password=", "redis://h?password=***"),
            // A password with `/`, `?` or `#` not encoded: no authority the client reads,
            // and all before the last `@` hidden.
            ("redis://:ab#cd@host:6379", "redis://***@host:6379"),
            ("redis://user:12/cd@host:6379/0", "redis://***@host:6379/0"),
            ("redis://:ab?cd=x@host", "redis://***@host"),
            ("redis://s3cret@h:1/?a@b", "redis://***@b"),
            (
                "redis://u:pw@h/x@y?password=z",
                "redis://***@y?password=***",
            ),
            // Without its scheme, as a mistaken setting is shown in its error.
            (":pw@host:6379", ":***@host:6379"),
            ("host:6379?password=pw", "host:6379?password=***"),
        ] {
            let url = RedisUrl::from(url);
            assert_eq!(url.to_string(), shown);
            assert_eq!(format!("{url:?}"), format!("\"{shown}\""));
            assert_eq!(serde_json::to_string(&url).unwrap(), format!("\"{shown}\""));
        }
    }

    #[test]
    fn escapes_are_decoded_only_to_recognise_a_name() {
        assert_eq!(percent_decoded("pa%73s"), "pass");
        assert_eq!(percent_decoded("%zz%4"), "%zz%4");
        assert_eq!(percent_decoded("%C3%A9"), "%C3%A9");
    }
}

//! `${VAR}` interpolation of configuration text from the environment.

/// Why [`interpolate_env`] failed.
///
/// ```
/// use llm_tower::config::{InterpolationError, interpolate_env};
///
/// let lookup = |_: &str| None;
/// assert_eq!(interpolate_env("${NOPE}", &lookup), Err(InterpolationError::Unset("NOPE".into())));
/// assert_eq!(interpolate_env("${NOPE:-fine}", &lookup).unwrap(), "fine");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterpolationError {
    /// This variable is not set and has no default.
    Unset(String),
    /// A `${` has no closing `}`.
    Unterminated,
}

/// Replaces `${VAR}` with `lookup(VAR)`, `${VAR:-default}` with the default when `VAR` is
/// unset or empty, and `$${` with a literal `${`. Other `$` signs are left alone.
///
/// # Errors
///
/// The first variable that is unset and has no default, or an unterminated `${`.
pub fn interpolate_env(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or(InterpolationError::Unterminated)?;
            let expr = &after[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            match (
                lookup(name).filter(|v| !v.is_empty() || default.is_none()),
                default,
            ) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(InterpolationError::Unset(name.to_owned())),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation() {
        let env = |name: &str| match name {
            "A" => Some("alpha".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(interpolate_env("x-${A}-y", &env).unwrap(), "x-alpha-y");
        assert_eq!(interpolate_env("${B:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(interpolate_env("${EMPTY:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(interpolate_env("${EMPTY}", &env).unwrap(), "");
        assert_eq!(interpolate_env("$${A} $5 $", &env).unwrap(), "${A} $5 $");
        assert_eq!(
            interpolate_env("${B}", &env).unwrap_err(),
            InterpolationError::Unset("B".into())
        );
        assert_eq!(
            interpolate_env("sk-secret${A", &env).unwrap_err(),
            InterpolationError::Unterminated
        );
    }
}

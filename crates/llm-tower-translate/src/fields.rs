//! The client's request as a translation reads it, and what it does with a field the
//! deployment cannot honour: drops it when the endpoint says so (`drop_unsupported`), else
//! refuses the request naming the field and the deployment.

use llm_tower_core::{Error, ErrorKind, Translation};
use serde_json::{Map, Value};

/// `field` of `request` cannot be honoured (`why`): removed when the endpoint's `options` drop
/// it, else the error `refuse` makes of it.
pub(crate) fn cannot_honour(
    request: &mut Map<String, Value>,
    field: &str,
    why: &str,
    options: &Translation,
    refuse: impl Fn(&str, &str) -> Error,
) -> Result<(), Error> {
    if options.drops(field) {
        request.remove(field);
        return Ok(());
    }
    Err(refuse(field, why))
}

/// The client's request body as a JSON object.
pub(crate) fn request_object(body: &[u8]) -> Result<Map<String, Value>, Error> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(request)) => Ok(request),
        _ => Err(Error::new(
            ErrorKind::InvalidRequest,
            "the request body is not a JSON object",
        )),
    }
}

/// Makes the 400 refusing a field of a request to `deployment`, `target` saying what it is
/// ("an Anthropic endpoint").
pub(crate) fn refuser<'a>(
    deployment: &'a str,
    target: &'a str,
) -> impl Fn(&str, &str) -> Error + Copy + 'a {
    move |field: &str, why: &str| {
        Error::new(
            ErrorKind::InvalidRequest,
            format!("\"{field}\" {why} by deployment {deployment} ({target})"),
        )
    }
}

/// Drops or refuses each of `fields` that `request` sets (to anything but null or `false`),
/// and, with `one_choice`, an `n` above 1.
pub(crate) fn check_unsupported(
    request: &mut Map<String, Value>,
    fields: &[&str],
    one_choice: bool,
    options: &Translation,
    refuse: impl Fn(&str, &str) -> Error + Copy,
) -> Result<(), Error> {
    for field in fields {
        if request
            .get(*field)
            .is_some_and(|v| !v.is_null() && v != &Value::Bool(false))
        {
            cannot_honour(request, field, "is not supported", options, refuse)?;
        }
    }
    if one_choice
        && request
            .get("n")
            .and_then(Value::as_u64)
            .is_some_and(|n| n > 1)
    {
        cannot_honour(
            request,
            "n",
            "greater than 1 is not supported",
            options,
            refuse,
        )?;
    }
    Ok(())
}

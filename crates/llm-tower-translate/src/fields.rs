//! What a translation does with a field the deployment cannot honour: drops it when the
//! endpoint says so (`drop_unsupported`), else refuses the request naming it.

use llm_tower_core::{Error, Translation};
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

//! What a request is expected to use, from its body: its input at about 4 bytes a token, and
//! the output it allows (`max_tokens` and the like, else [`DEFAULT_OUTPUT`]); its cost at the
//! model's price.

use llm_tower_core::{Usage, find_top_level};
use llm_tower_usage::Prices;

use crate::limiter::Estimate;

/// The output reserved for a request that sets no limit of its own.
pub const DEFAULT_OUTPUT: u64 = 4096;

/// The fields in which the APIs limit a request's output.
const OUTPUT_LIMITS: [&str; 3] = ["max_completion_tokens", "max_tokens", "max_output_tokens"];

/// The estimate for `body`, asking for `model`.
pub(crate) fn estimate(body: &[u8], model: Option<&str>, prices: &Prices) -> Estimate {
    let input = body.len() as u64 / 4;
    let output = OUTPUT_LIMITS
        .iter()
        .find_map(|field| {
            let at = find_top_level(body, field)?;
            std::str::from_utf8(&body[at]).ok()?.parse::<u64>().ok()
        })
        .unwrap_or(DEFAULT_OUTPUT);
    let usage = Usage {
        input,
        output,
        ..Usage::default()
    };
    Estimate {
        tokens: input.saturating_add(output),
        usd: model.and_then(|model| prices.cost(model, &usage)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_by_size_output_by_its_limit() {
        let prices: Prices =
            serde_json::from_str(r#"{"m": {"input": 1000000, "output": 2000000}}"#).unwrap();
        let body = br#"{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
        let priced = estimate(body, Some("m"), &prices);
        let input = body.len() as u64 / 4;
        assert_eq!(priced.tokens, input + 100);
        assert_eq!(priced.usd, Some(input as f64 + 200.0));
        let open = estimate(br#"{"model":"x"}"#, Some("x"), &prices);
        assert_eq!((open.tokens, open.usd), (3 + DEFAULT_OUTPUT, None));
    }
}

//! What a request is expected to use, from its body (core's [`estimate_usage`]: its input
//! at about 4 bytes a token, the output it allows), and its cost at the model's price.

use llm_tower_core::estimate_usage;
use llm_tower_usage::Prices;

use crate::limiter::Estimate;

/// The estimate for `body`, asking for `model`.
pub(crate) fn estimate(body: &[u8], model: Option<&str>, prices: &Prices) -> Estimate {
    let usage = estimate_usage(body);
    Estimate {
        tokens: usage.input.saturating_add(usage.output),
        usd: model.and_then(|model| prices.cost(model, &usage)),
    }
}

#[cfg(test)]
mod tests {
    use llm_tower_core::DEFAULT_OUTPUT;

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

//! Reasoning between the APIs. OpenAI asks for it with a level (`reasoning_effort`: `none`,
//! `minimal`, `low`, `medium`, `high`); Anthropic (`thinking.budget_tokens`) and Gemini 2.x
//! (`thinkingConfig.thinkingBudget`) with a budget of tokens; Gemini 3 with a level again
//! (`thinkingConfig.thinkingLevel`). The levels and budgets are Google's own table for its
//! OpenAI-compatible endpoint (low 1 024, medium 8 192, high 24 576), so a level means the same
//! on every provider, and a budget read back to a level lands where it was written from.
//!
//! Reasoning text in answers: Anthropic's `thinking` blocks and Gemini's thought parts become
//! `reasoning_content` on OpenAI's message and deltas (the field DeepSeek, vLLM and LiteLLM
//! use; OpenAI's own chat API returns no reasoning text), and an OpenAI-compatible server's
//! `reasoning_content` (or `reasoning`) becomes an Anthropic `thinking` block.

use serde_json::Value;

/// The budget of tokens for an OpenAI `reasoning_effort` (`None`: not a level).
pub(crate) fn budget_of(effort: &str) -> Option<u64> {
    match effort {
        "none" => Some(0),
        "minimal" | "low" => Some(1024),
        "medium" => Some(8192),
        "high" => Some(24576),
        _ => None,
    }
}

/// The OpenAI `reasoning_effort` nearest a budget of tokens (on a log scale: each level owns
/// the budgets closer to its own than to its neighbours').
pub(crate) fn effort_of(budget: u64) -> &'static str {
    match budget {
        0 => "none",
        1..=2896 => "low",
        2897..=14188 => "medium",
        _ => "high",
    }
}

/// The reasoning text an OpenAI-compatible server put in a message or a delta: DeepSeek's and
/// vLLM's `reasoning_content`, or the `reasoning` of newer vLLM and OpenRouter.
pub(crate) fn reasoning_text(message: &Value) -> Option<&str> {
    message
        .get("reasoning_content")
        .or_else(|| message.get("reasoning"))
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_read_back_from_its_budget_is_the_level() {
        for effort in ["none", "low", "medium", "high"] {
            assert_eq!(effort_of(budget_of(effort).unwrap()), effort);
        }
        assert_eq!(effort_of(budget_of("minimal").unwrap()), "low");
        assert_eq!(budget_of("extreme"), None);
    }
}

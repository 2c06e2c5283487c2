//! [`ModelFallbacks`]: which model to try when every deployment of another has failed.

use std::collections::{BTreeMap, HashMap};

use llm_tower_core::{ConfigError, Endpoint, ModelName};
use serde::{Deserialize, Serialize};

/// Model fallback chains: when every deployment of a model failed with an outcome that falls
/// back, the request goes on with the next model of its chain (its `model` rewritten), then
/// the next. A chain is followed once: the models in it are tried with their own
/// deployments, not with their own chains. In configuration, the top-level
/// `models: {gpt-4o: {fallback: [gpt-4o-mini, llama-70b]}}`.
///
/// ```
/// use llm_tower_fallback::ModelFallbacks;
///
/// let chains = ModelFallbacks::new().chain("gpt-4o", ["gpt-4o-mini", "llama-70b"]);
/// assert_eq!(chains.fallbacks("gpt-4o").len(), 2);
/// assert!(chains.fallbacks("gpt-4o-mini").is_empty());
/// let from_config: ModelFallbacks =
///     serde_json::from_str(r#"{"gpt-4o": {"fallback": ["gpt-4o-mini"]}}"#).unwrap();
/// assert_eq!(&*from_config.fallbacks("gpt-4o")[0], "gpt-4o-mini");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ModelFallbacks(BTreeMap<String, ModelSettings>);

/// One model's entry under the top-level `models`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSettings {
    /// The models to try, in order, when every deployment of this one failed.
    #[serde(default)]
    fallback: Vec<String>,
    /// The models to try, in order, when this one refused the prompt as longer than its
    /// context window (bigger ones, as a rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    context_window_fallback: Vec<String>,
}

impl ModelFallbacks {
    /// No chains.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the chain of `model`.
    #[must_use]
    pub fn chain(
        mut self,
        model: impl Into<String>,
        fallbacks: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let fallback = fallbacks.into_iter().map(Into::into).collect();
        self.0.entry(model.into()).or_default().fallback = fallback;
        self
    }

    /// Adds (or replaces) the models `model`'s requests go on to when it answers that the
    /// prompt does not fit its context window (a 400 `context_length_exceeded`, "prompt is too
    /// long"): `models: {gpt-4o: {context_window_fallback: [gpt-4.1]}}`.
    ///
    /// ```
    /// use llm_tower_fallback::ModelFallbacks;
    ///
    /// let models = ModelFallbacks::new().context_window_fallback("gpt-4o", ["gpt-4.1"]);
    /// assert_eq!(&*models.context_window_fallbacks("gpt-4o")[0], "gpt-4.1");
    /// assert!(models.fallbacks("gpt-4o").is_empty(), "not an ordinary chain");
    /// ```
    #[must_use]
    pub fn context_window_fallback(
        mut self,
        model: impl Into<String>,
        bigger: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let bigger = bigger.into_iter().map(Into::into).collect();
        self.0
            .entry(model.into())
            .or_default()
            .context_window_fallback = bigger;
        self
    }

    /// Whether there are no chains.
    pub fn is_empty(&self) -> bool {
        self.0
            .values()
            .all(|m| m.fallback.is_empty() && m.context_window_fallback.is_empty())
    }

    /// The chain of `model` (empty when it has none).
    pub fn fallbacks(&self, model: &str) -> Vec<ModelName> {
        self.0
            .get(model)
            .map(|m| m.fallback.iter().map(|name| name.as_str().into()).collect())
            .unwrap_or_default()
    }

    /// The models `model` goes on to when the prompt does not fit it (empty when none).
    pub fn context_window_fallbacks(&self, model: &str) -> Vec<ModelName> {
        self.0
            .get(model)
            .map(|m| {
                m.context_window_fallback
                    .iter()
                    .map(|name| name.as_str().into())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every model with a chain, and its chain.
    pub fn iter(&self) -> impl Iterator<Item = (ModelName, Vec<ModelName>)> + '_ {
        self.0
            .keys()
            .map(|model| (model.as_str().into(), self.fallbacks(model)))
    }

    /// Checks the chains against the endpoints that will serve them: every model named is
    /// served by some endpoint (listed in its `models`, or there is an endpoint that serves
    /// any model), no chain names a model twice or its own model, and no chain leads back to
    /// where it started (`a → b`, `b → a`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `models.<model>`.
    pub fn validate(&self, endpoints: &[Endpoint]) -> Result<(), ConfigError> {
        let serves_any = endpoints.iter().any(|e| e.models().is_none());
        let known = |model: &str| {
            serves_any
                || endpoints
                    .iter()
                    .any(|endpoint| endpoint.route_for(model).is_some())
        };
        for (model, settings) in &self.0 {
            let field = format!("models.{model}");
            if !known(model) {
                return Err(ConfigError::invalid(field, "no endpoint serves this model"));
            }
            for (key, list) in [
                ("fallback", &settings.fallback),
                ("context_window_fallback", &settings.context_window_fallback),
            ] {
                for (i, next) in list.iter().enumerate() {
                    if !known(next) {
                        return Err(ConfigError::invalid(
                            format!("{field}.{key}"),
                            format!("no endpoint serves `{next}`"),
                        ));
                    }
                    if next == model || list[..i].contains(next) {
                        return Err(ConfigError::invalid(
                            format!("{field}.{key}"),
                            format!("`{next}` is named twice in the chain of `{model}`"),
                        ));
                    }
                }
            }
        }
        self.check_cycles()
    }

    /// A chain that leads back to its own model, through the other chains, is a cycle.
    /// Depth-first, each model visited once: linear in the models and chain entries.
    fn check_cycles(&self) -> Result<(), ConfigError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Open,
            Done,
        }
        let next =
            |model: &str| -> &[String] { self.0.get(model).map_or(&[], |s| s.fallback.as_slice()) };
        let mut marks: HashMap<&str, Mark> = HashMap::new();
        for start in self.0.keys() {
            if marks.contains_key(start.as_str()) {
                continue;
            }
            // The path from `start`, each model with how many of its successors were seen.
            let mut path: Vec<(&str, usize)> = vec![(start, 0)];
            marks.insert(start, Mark::Open);
            while let Some((model, seen)) = path.last_mut() {
                let Some(successor) = next(model).get(*seen) else {
                    marks.insert(model, Mark::Done);
                    path.pop();
                    continue;
                };
                *seen += 1;
                match marks.get(successor.as_str()) {
                    Some(Mark::Done) => {}
                    Some(Mark::Open) => {
                        let from = path.iter().position(|(m, _)| *m == successor).unwrap_or(0);
                        let mut cycle: Vec<&str> = path[from..].iter().map(|(m, _)| *m).collect();
                        cycle.push(successor);
                        return Err(ConfigError::invalid(
                            format!("models.{}.fallback", cycle[0]),
                            format!("the chains form a cycle: {}", cycle.join(" → ")),
                        ));
                    }
                    None => {
                        marks.insert(successor, Mark::Open);
                        path.push((successor, 0));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(id: &str, models: &[&str]) -> Endpoint {
        Endpoint::builder(id, "http://127.0.0.1:1")
            .models(models.iter().copied())
            .build()
            .unwrap()
    }

    #[test]
    fn unknown_repeated_and_cyclic_chains_are_rejected() {
        let endpoints = [endpoint("a", &["x", "y", "z"])];
        let check = |chains: ModelFallbacks| chains.validate(&endpoints).map_err(|e| e.to_string());
        assert!(check(ModelFallbacks::new().chain("x", ["y", "z"])).is_ok());
        assert_eq!(
            check(ModelFallbacks::new().context_window_fallback("x", ["y", "nope"])).unwrap_err(),
            "models.x.context_window_fallback: no endpoint serves `nope`"
        );
        let both: ModelFallbacks =
            serde_json::from_str(r#"{"x": {"fallback": ["y"], "context_window_fallback": ["z"]}}"#)
                .unwrap();
        assert!(check(both.clone()).is_ok());
        assert_eq!(
            (
                &*both.fallbacks("x")[0],
                &*both.context_window_fallbacks("x")[0]
            ),
            ("y", "z")
        );
        assert_eq!(
            check(ModelFallbacks::new().chain("x", ["nope"])).unwrap_err(),
            "models.x.fallback: no endpoint serves `nope`"
        );
        assert_eq!(
            check(ModelFallbacks::new().chain("nope", ["x"])).unwrap_err(),
            "models.nope: no endpoint serves this model"
        );
        assert!(check(ModelFallbacks::new().chain("x", ["x"])).is_err());
        assert!(check(ModelFallbacks::new().chain("x", ["y", "y"])).is_err());
        let cycle = check(
            ModelFallbacks::new()
                .chain("x", ["y"])
                .chain("y", ["z"])
                .chain("z", ["x"]),
        )
        .unwrap_err();
        assert!(cycle.contains("cycle"), "{cycle}");
        assert!(
            cycle.contains("x → y → z → x")
                || cycle.contains("y → z → x → y")
                || cycle.contains("z → x → y → z"),
            "{cycle}"
        );
        // With an endpoint that serves any model, any name is served.
        let any = [
            endpoint("a", &["x"]),
            Endpoint::builder("b", "http://127.0.0.1:2")
                .build()
                .unwrap(),
        ];
        assert!(
            ModelFallbacks::new()
                .chain("x", ["anything"])
                .validate(&any)
                .is_ok()
        );
    }
}

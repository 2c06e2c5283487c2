//! A configuration document: parsed from YAML, TOML or JSON, `${VAR}`s replaced, and split
//! among the settings structs that own its top-level keys.

use std::fmt::Write as _;
use std::path::Path;

use llm_tower_core::ConfigError;
use serde::de::{self, DeserializeOwned, Visitor};
use serde_json::{Map, Value};

use super::env::{InterpolationError, interpolate_env};

/// A configuration file's formats.
///
/// ```
/// use std::path::Path;
/// use llm_tower::config::Format;
///
/// assert_eq!(Format::of_path(Path::new("gw.yml")), Some(Format::Yaml));
/// assert_eq!(Format::of_path(Path::new("gw.ini")), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// YAML (feature `yaml`).
    Yaml,
    /// TOML (feature `toml`).
    Toml,
    /// JSON (always available).
    Json,
}

impl Format {
    /// The format of a file, by its extension (`.yaml`/`.yml`, `.toml`, `.json`).
    pub fn of_path(path: &Path) -> Option<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Some(Self::Yaml),
            Some("toml") => Some(Self::Toml),
            Some("json") => Some(Self::Json),
            _ => None,
        }
    }
}

/// A parsed configuration document whose top-level keys are handed out to the settings
/// structs that own them ([`take`](Self::take)); whatever nobody took is an unknown field
/// ([`finish`](Self::finish)). This is how the gateway's file adds its own keys to the
/// library's without repeating any of them.
///
/// ```
/// use llm_tower::config::{Document, Format};
/// use llm_tower::{Config, RetrySettings};
///
/// let mut document = Document::parse(r#"{"retry_budget": {"percent": 5}, "listen": "x"}"#, Format::Json)?;
/// let retry: RetrySettings = document.take()?;
/// assert_eq!(retry.budget.percent, 5.0);
/// let err = document.finish().unwrap_err();
/// assert!(err.to_string().contains("unknown field `listen`"));
/// # Ok::<(), llm_tower::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Document {
    map: Map<String, Value>,
    /// Every key some struct asked for, for the message about an unknown one.
    known: Vec<&'static str>,
}

impl Document {
    /// Reads a file (format by extension) and replaces `${VAR}` from the environment.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`], [`ConfigError::UnknownFormat`] (also for a format whose feature is
    /// off), [`ConfigError::Parse`] or [`ConfigError::MissingEnv`].
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let unknown = || ConfigError::UnknownFormat {
            path: path.to_owned(),
        };
        let format = Format::of_path(path).ok_or_else(unknown)?;
        if !format.is_enabled() {
            return Err(unknown());
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, format)
    }

    /// Parses text and replaces `${VAR}` from the environment.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] (also for a format whose feature is off) or
    /// [`ConfigError::MissingEnv`].
    pub fn parse(text: &str, format: Format) -> Result<Self, ConfigError> {
        Self::parse_with_env(text, format, &|var| std::env::var(var).ok())
    }

    pub(crate) fn parse_with_env(
        text: &str,
        format: Format,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut value = format.parse(text)?;
        interpolate_value(&mut value, &mut String::new(), lookup)?;
        Self::from_value(value)
    }

    /// A document from an already parsed (and interpolated) value.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] when the value is not a map.
    pub fn from_value(value: Value) -> Result<Self, ConfigError> {
        match value {
            Value::Object(map) => Ok(Self {
                map,
                known: Vec::new(),
            }),
            // An empty YAML file is null: no keys.
            Value::Null => Ok(Self {
                map: Map::new(),
                known: Vec::new(),
            }),
            other => Err(ConfigError::Parse {
                field: String::new(),
                message: format!("expected a map of settings, found {}", kind_of(&other)),
            }),
        }
    }

    /// Takes the top-level keys that `T`'s fields name and deserialises `T` from them. Errors
    /// name the field's path from the top of the document (`retry_budget.ttl`,
    /// `endpoints[1].provider`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] naming the field.
    pub fn take<T: DeserializeOwned>(&mut self) -> Result<T, ConfigError> {
        let fields = field_names::<T>();
        self.known.extend_from_slice(fields);
        let mut part = Map::new();
        for field in fields {
            if let Some((key, value)) = self.map.remove_entry(*field) {
                part.insert(key, value);
            }
        }
        serde_path_to_error::deserialize(Value::Object(part)).map_err(|err| ConfigError::Parse {
            field: err.path().to_string(),
            message: redact_strings(&err.into_inner().to_string()),
        })
    }

    /// Checks that every key was taken.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] naming the first unknown key and the known ones.
    pub fn finish(self) -> Result<(), ConfigError> {
        let Some(key) = self.map.keys().next() else {
            return Ok(());
        };
        let mut known = self.known;
        known.sort_unstable();
        let mut message = format!("unknown field `{key}`, expected one of ");
        for (i, name) in known.iter().enumerate() {
            let _ = write!(message, "{}`{name}`", if i == 0 { "" } else { ", " });
        }
        Err(ConfigError::Parse {
            field: String::new(),
            message,
        })
    }
}

impl Format {
    fn is_enabled(self) -> bool {
        match self {
            Self::Yaml => cfg!(feature = "yaml"),
            Self::Toml => cfg!(feature = "toml"),
            Self::Json => true,
        }
    }

    fn parse(self, text: &str) -> Result<Value, ConfigError> {
        match self {
            #[cfg(feature = "yaml")]
            Self::Yaml => finite_value(serde_yaml_ng::Deserializer::from_str(text)),
            #[cfg(feature = "toml")]
            Self::Toml => finite_value(toml::de::Deserializer::parse(text).map_err(|e| {
                ConfigError::Parse {
                    field: String::new(),
                    message: e.to_string(),
                }
            })?),
            Self::Json => {
                let mut deserializer = serde_json::Deserializer::from_str(text);
                let value = finite_value(&mut deserializer)?;
                deserializer.end().map_err(|e| ConfigError::Parse {
                    field: String::new(),
                    message: e.to_string(),
                })?;
                Ok(value)
            }
            #[allow(unreachable_patterns)]
            other => Err(ConfigError::Parse {
                field: String::new(),
                message: format!(
                    "this build of llm-tower reads no {other:?} (enable the `{}` feature)",
                    format!("{other:?}").to_ascii_lowercase()
                ),
            }),
        }
    }
}

/// Reads a whole document into a [`Value`], refusing non-finite numbers (YAML's `.nan` and
/// `.inf`, TOML's `nan` and `inf`) wherever they are, naming the field: a `Value` cannot hold
/// them, and turning them into `null` would silently give the field its default.
fn finite_value<'de, D>(deserializer: D) -> Result<Value, ConfigError>
where
    D: de::Deserializer<'de>,
{
    serde_path_to_error::deserialize::<_, FiniteValue>(deserializer)
        .map(|value| value.0)
        .map_err(|err| ConfigError::Parse {
            field: err.path().to_string(),
            message: err.into_inner().to_string(),
        })
}

/// A [`Value`] whose numbers are all finite.
struct FiniteValue(Value);

impl<'de> de::Deserialize<'de> for FiniteValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FiniteVisitor).map(FiniteValue)
    }
}

struct FiniteVisitor;

impl<'de> Visitor<'de> for FiniteVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a configuration value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        if v.is_finite() {
            Ok(Value::from(v))
        } else {
            Err(E::custom(format!("{v} is not a finite number")))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        de::Deserialize::deserialize(deserializer).map(|v: FiniteValue| v.0)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Value, D::Error> {
        self.visit_some(deserializer)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(FiniteValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Map::new();
        while let Some((key, FiniteValue(value))) = map.next_entry::<String, FiniteValue>()? {
            entries.insert(key, value);
        }
        Ok(Value::Object(entries))
    }
}

/// serde quotes the string it could not use (`invalid type: string "…"`), and a string in the
/// wrong place may be a key: the quoted text is never repeated.
fn redact_strings(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("string \"") {
        let (before, quoted) = rest.split_at(at + "string \"".len());
        out.push_str(before);
        out.push_str("***\"");
        rest = quoted.find('"').map_or("", |end| &quoted[end + 1..]);
    }
    out.push_str(rest);
    out
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Replaces `${VAR}` in every string of the document; errors name the field.
fn interpolate_value(
    value: &mut Value,
    path: &mut String,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(text) if text.contains('$') => {
            *text = interpolate_env(text, lookup).map_err(|err| match err {
                InterpolationError::Unset(var) => ConfigError::MissingEnv {
                    field: path.clone(),
                    var,
                },
                // The text may be a key: it is not repeated in the message.
                InterpolationError::Unterminated => {
                    ConfigError::invalid(path.clone(), "has a `${` without its closing `}`")
                }
            })?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                interpolate_value(item, path, lookup)?;
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                interpolate_value(item, path, lookup)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// The field names of a struct that derives `Deserialize`, read from what it tells a
/// deserializer (serde offers no other way to ask).
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields
}

struct FieldProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for FieldProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only structs have field names"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

//! How a job's input becomes the agent's input type and its output the job's
//! result.
//!
//! The host passes the job's input as JSON text (`null` when the client sent none).
//! [`agent!`](crate::agent) turns it into the agent function's input type with
//! [`FromInput`]: any `serde::de::DeserializeOwned` type is deserialized with
//! `serde_json`, and [`RawJson`] takes the text as it is. Input that does not
//! deserialize ends the job with `INVALID_REQUEST` and one of these messages:
//!
//! - ``input is not JSON: MESSAGE`` when the text is not JSON;
//! - ``invalid input at `PATH`: MESSAGE`` when a field does not fit, e.g.
//!   ``invalid input at `count`: invalid value: integer `-1`, expected u64 at line 1
//!   column 11``;
//! - ``invalid input: MESSAGE`` when the whole value does not fit (e.g. `null` for
//!   a struct, or a missing field).
//!
//! serde's usual rules apply: unknown fields are ignored (unless the type says
//! `#[serde(deny_unknown_fields)]`), an `Option` field may be absent or `null`, a
//! `#[serde(default)]` field may be absent. One exception: the input itself, when
//! its type is a struct, must be a JSON object (serde would also take an array of
//! the fields in order; nested structs still do). [`lenient`] reads a field of the
//! wrong type as its default instead of refusing the input.
//!
//! The function's output becomes the result with [`IntoOutput`]: any
//! `serde::Serialize` type is serialized to JSON, and [`RawJson`] is returned as
//! is (the host refuses a result that is not JSON).

use crate::Failure;
use serde::de::{Deserialize, DeserializeOwned, Deserializer, Visitor};
use serde::ser::Serialize;

/// JSON text taken or returned as it is, without parsing: as an input type the
/// job's input exactly as the host sent it; as an output type a result that is
/// already JSON (the host checks that it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawJson(pub String);

/// A type a job's input JSON can be turned into: every
/// `serde::de::DeserializeOwned` type, and [`RawJson`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an agent's input",
    label = "derive `serde::Deserialize` for it, or take `RawJson` or `serde_json::Value`"
)]
pub trait FromInput: Sized {
    /// Reads the input from the JSON text the host sent; a failure ends the job.
    fn from_input(json: String) -> Result<Self, Failure>;
}

impl<T: DeserializeOwned> FromInput for T {
    fn from_input(json: String) -> Result<T, Failure> {
        parse(&json)
    }
}

impl FromInput for RawJson {
    fn from_input(json: String) -> Result<RawJson, Failure> {
        Ok(RawJson(json))
    }
}

/// A type an agent's output can be turned into the job's result JSON: every
/// `serde::Serialize` type, and [`RawJson`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an agent's output",
    label = "derive `serde::Serialize` for it, or return `RawJson` or `serde_json::Value`"
)]
pub trait IntoOutput {
    /// The result as JSON text; a failure ends the job.
    fn into_output(self) -> Result<String, Failure>;
}

impl<T: Serialize> IntoOutput for T {
    fn into_output(self) -> Result<String, Failure> {
        serde_json::to_string(&self)
            .map_err(|e| Failure::internal(format!("the result cannot be serialized: {e}")))
    }
}

impl IntoOutput for RawJson {
    fn into_output(self) -> Result<String, Failure> {
        Ok(self.0)
    }
}

/// Deserializes `json` as [`FromInput`] does, with the messages described in the
/// [module documentation](self) (e.g. to read a [`RawJson`] input later).
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, Failure> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value: T = serde_path_to_error::deserialize(ObjectsOnly(&mut de)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        Failure::invalid_request(if inner.is_syntax() || inner.is_eof() {
            format!("input is not JSON: {inner}")
        } else if path == "." || path.is_empty() {
            format!("invalid input: {inner}")
        } else {
            format!("invalid input at `{path}`: {inner}")
        })
    })?;
    de.end()
        .map_err(|e| Failure::invalid_request(format!("input is not JSON: {e}")))?;
    Ok(value)
}

/// A deserializer that reads a struct only from a map (a JSON object), never from
/// a sequence; everything else goes to the inner deserializer unchanged.
struct ObjectsOnly<D>(D);

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method($($arg,)* visitor)
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectsOnly<D> {
    type Error = D::Error;

    forward! {
        deserialize_any(); deserialize_bool(); deserialize_i8(); deserialize_i16();
        deserialize_i32(); deserialize_i64(); deserialize_i128(); deserialize_u8();
        deserialize_u16(); deserialize_u32(); deserialize_u64(); deserialize_u128();
        deserialize_f32(); deserialize_f64(); deserialize_char(); deserialize_str();
        deserialize_string(); deserialize_bytes(); deserialize_byte_buf();
        deserialize_option(); deserialize_unit(); deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str); deserialize_seq();
        deserialize_tuple(len: usize); deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map(); deserialize_identifier(); deserialize_ignored_any();
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// For `#[serde(default, deserialize_with = "arcp_agent::input::lenient")]`: a
/// field whose value does not fit its type (a number where a string was expected,
/// say) is read as the type's default instead of refusing the whole input.
///
/// ```
/// use arcp_agent::prelude::*;
///
/// #[derive(Deserialize)]
/// struct Input {
///     #[serde(default, deserialize_with = "arcp_agent::input::lenient")]
///     method: Option<String>,
/// }
///
/// let input: Input = arcp_agent::input::parse(r#"{"method": 5}"#).unwrap();
/// assert_eq!(input.method, None);
/// ```
pub fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(T::deserialize(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Ticks {
        count: u64,
        progress: Option<bool>,
    }

    fn message<T: DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        let f = parse::<T>(json).unwrap_err();
        assert_eq!(f.code(), &crate::ErrorCode::InvalidRequest);
        f.message().to_owned()
    }

    #[test]
    fn messages_name_what_is_wrong() {
        assert!(message::<Ticks>("{nope").starts_with("input is not JSON: "));
        assert!(message::<Ticks>("").starts_with("input is not JSON: "));
        assert!(message::<Ticks>("{\"count\": 1} x").starts_with("input is not JSON: "));
        let m = message::<Ticks>("{\"count\": -1}");
        assert!(
            m.starts_with("invalid input at `count`: invalid value"),
            "{m}"
        );
        let m = message::<Ticks>("{\"count\": 1, \"progress\": 3}");
        assert!(
            m.starts_with("invalid input at `progress`: invalid type"),
            "{m}"
        );
        let m = message::<Ticks>("null");
        assert!(m.starts_with("invalid input: invalid type: null"), "{m}");
        let m = message::<Ticks>("[1, true]");
        assert!(
            m.starts_with("invalid input: invalid type: sequence"),
            "{m}"
        );
        let m = message::<Ticks>("{}");
        assert!(m.starts_with("invalid input: missing field `count`"), "{m}");
    }

    #[test]
    fn values_and_raw_text_take_anything() {
        let v: serde_json::Value = FromInput::from_input("[1, {\"a\": null}]".into()).unwrap();
        assert_eq!(v[1]["a"], serde_json::Value::Null);
        let raw = RawJson::from_input(" {\"a\":1} ".into()).unwrap();
        assert_eq!(raw.0, " {\"a\":1} ");
        let _: serde::de::IgnoredAny = FromInput::from_input("{\"x\": [1, 2]}".into()).unwrap();
    }

    #[test]
    fn lenient_fields_fall_back_to_their_default() {
        #[derive(Deserialize)]
        struct In {
            #[serde(default, deserialize_with = "lenient")]
            currency: Option<String>,
            #[serde(default, deserialize_with = "lenient")]
            headers: std::collections::BTreeMap<String, serde_json::Value>,
        }
        let i: In = parse("{\"currency\": 5, \"headers\": [1]}").unwrap();
        assert_eq!(i.currency, None);
        assert!(i.headers.is_empty());
        let i: In = parse("{\"currency\": \"EUR\"}").unwrap();
        assert_eq!(i.currency.as_deref(), Some("EUR"));
    }

    #[test]
    fn output_is_json_text() {
        assert_eq!("3 chunks".to_owned().into_output().unwrap(), "\"3 chunks\"");
        assert_eq!(
            RawJson("{\"a\":1}".into()).into_output().unwrap(),
            "{\"a\":1}"
        );
    }
}

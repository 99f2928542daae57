//! How each type of configuration value is read from TOML or from text (environment variables and
//! flags), and written back as TOML.
//!
//! One parser per type means a duration is read the same way whether it comes from the file, the
//! environment or a flag. Everything here is pure; range checks that belong to a single key live
//! next to that key in the schema, not here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::de::DeValue;

use crate::error::ErrorKind;
use crate::schema::LogFormat;

/// Why a value was rejected: the class of problem and a message saying what was expected.
pub(crate) type Problem = (ErrorKind, String);

/// A value as it arrives: typed TOML from the file, or plain text from the environment or a flag.
#[derive(Clone, Copy)]
pub(crate) enum Input<'a, 'i> {
    /// A value from the TOML file, with its TOML type.
    Toml(&'a DeValue<'i>),
    /// A value from an environment variable or a flag; always text.
    Text(&'a str),
}

impl Input<'_, '_> {
    /// Reads the input as a `T`, or says what was expected.
    pub(crate) fn parse<T: Value>(self) -> Result<T, Problem> {
        match self {
            Input::Text(s) => T::from_text(s).map_err(|m| (ErrorKind::InvalidValue, m)),
            Input::Toml(v) => T::from_toml(v),
        }
    }
}

/// A type that can be a configuration value.
pub(crate) trait Value: Sized {
    /// What a valid value looks like, with an article: `a duration such as "90d"`.
    const EXPECTED: &'static str;

    /// Parses the textual form; the error is a complete sentence naming the bad value.
    fn from_text(s: &str) -> Result<Self, String>;

    /// Reads a TOML value. Most values are TOML strings in their textual form.
    fn from_toml(v: &DeValue<'_>) -> Result<Self, Problem> {
        match v {
            DeValue::String(s) => Self::from_text(s).map_err(|m| (ErrorKind::InvalidValue, m)),
            other => Err(wrong_type::<Self>(other)),
        }
    }

    /// The value as it would be written in a TOML file.
    fn to_toml(&self) -> String;
}

/// The "expected X, found a boolean" message.
fn wrong_type<T: Value>(found: &DeValue<'_>) -> Problem {
    (ErrorKind::WrongType, format!("expected {}, found {}", T::EXPECTED, a_type(found)))
}

/// The TOML type of a value with its article: "an integer", "a string".
pub(crate) fn a_type(value: &DeValue<'_>) -> String {
    let ty = value.type_str();
    let article = if ty.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {ty}")
}

impl Value for String {
    const EXPECTED: &'static str = "a string";

    fn from_text(s: &str) -> Result<Self, String> {
        Ok(s.to_owned())
    }

    fn to_toml(&self) -> String {
        toml_string(self)
    }
}

impl Value for bool {
    const EXPECTED: &'static str = "true or false";

    fn from_text(s: &str) -> Result<Self, String> {
        match s {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("{s:?} is not true or false")),
        }
    }

    fn from_toml(v: &DeValue<'_>) -> Result<Self, Problem> {
        match v {
            DeValue::Boolean(b) => Ok(*b),
            other => Err(wrong_type::<Self>(other)),
        }
    }

    fn to_toml(&self) -> String {
        self.to_string()
    }
}

impl Value for PathBuf {
    const EXPECTED: &'static str = "a path (a string)";

    fn from_text(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the path is empty; expected a directory path".to_owned());
        }
        Ok(PathBuf::from(s))
    }

    fn to_toml(&self) -> String {
        toml_string(&self.to_string_lossy())
    }
}

impl Value for SocketAddr {
    const EXPECTED: &'static str = "an IP address and port such as \"127.0.0.1:8720\"";

    fn from_text(s: &str) -> Result<Self, String> {
        s.parse().map_err(|_| {
            format!(
                "{s:?} is not an IP address and port: expected for example \"127.0.0.1:8720\" or \
                 \"[::1]:8720\" (host names are not resolved)"
            )
        })
    }

    fn to_toml(&self) -> String {
        toml_string(&self.to_string())
    }
}

impl Value for Duration {
    const EXPECTED: &'static str = "a duration such as \"90d\" (a string)";

    fn from_text(s: &str) -> Result<Self, String> {
        token::parse_duration(s).map_err(|e| e.to_string())
    }

    fn to_toml(&self) -> String {
        toml_string(&token::format_duration(*self))
    }
}

impl Value for token::Prefix {
    const EXPECTED: &'static str = "a token prefix such as \"ttk\" (a string)";

    fn from_text(s: &str) -> Result<Self, String> {
        token::Prefix::new(s).map_err(|e| format!("{s:?} is not a valid prefix: {e}"))
    }

    fn to_toml(&self) -> String {
        toml_string(self.as_str())
    }
}

impl Value for LogFormat {
    const EXPECTED: &'static str = "\"text\" or \"json\"";

    fn from_text(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("{s:?} is not a log format: expected \"text\" or \"json\"")),
        }
    }

    fn to_toml(&self) -> String {
        toml_string(self.as_str())
    }
}

impl Value for crate::schema::Durability {
    const EXPECTED: &'static str = "\"durable\" or \"buffered\"";

    fn from_text(s: &str) -> Result<Self, String> {
        match s {
            "durable" => Ok(crate::schema::Durability::Durable),
            "buffered" => Ok(crate::schema::Durability::Buffered),
            _ => Err(format!("{s:?} is not a durability: expected \"durable\" or \"buffered\"")),
        }
    }

    fn to_toml(&self) -> String {
        toml_string(self.as_str())
    }
}

impl Value for Option<PathBuf> {
    const EXPECTED: &'static str = "a file path (empty for none)";

    fn from_text(s: &str) -> Result<Self, String> {
        Ok(if s.is_empty() { None } else { Some(PathBuf::from(s)) })
    }

    fn to_toml(&self) -> String {
        toml_string(&self.as_ref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default())
    }
}

impl Value for Option<String> {
    const EXPECTED: &'static str = "a string (empty for none)";

    fn from_text(s: &str) -> Result<Self, String> {
        Ok(if s.is_empty() { None } else { Some(s.to_owned()) })
    }

    fn to_toml(&self) -> String {
        toml_string(self.as_deref().unwrap_or_default())
    }
}

impl Value for token::RateLimit {
    const EXPECTED: &'static str = "a rate such as \"60/min\"";

    fn from_text(s: &str) -> Result<Self, String> {
        token::RateLimit::parse(s).map_err(|e| e.to_string())
    }

    fn to_toml(&self) -> String {
        toml_string(&self.to_string())
    }
}

impl Value for Vec<ipnet::IpNet> {
    const EXPECTED: &'static str = "a list of networks such as [\"10.0.0.0/8\"]";

    /// Text (environment, flags) is comma-separated: `10.0.0.0/8,::1`.
    fn from_text(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| token::parse_cidr(p).map_err(|e| e.to_string()))
            .collect()
    }

    fn from_toml(v: &DeValue<'_>) -> Result<Self, Problem> {
        match v {
            DeValue::Array(items) => items
                .iter()
                .map(|item| match item.get_ref() {
                    DeValue::String(s) => token::parse_cidr(s).map_err(|e| (ErrorKind::InvalidValue, e.to_string())),
                    other => Err(wrong_type::<Self>(other)),
                })
                .collect(),
            other => Err(wrong_type::<Self>(other)),
        }
    }

    fn to_toml(&self) -> String {
        format!("[{}]", self.iter().map(|n| toml_string(&n.to_string())).collect::<Vec<_>>().join(", "))
    }
}

impl Value for u64 {
    const EXPECTED: &'static str = "a whole number (an integer)";

    fn from_text(s: &str) -> Result<Self, String> {
        s.parse().map_err(|_| format!("{s:?} is not a whole number"))
    }

    fn from_toml(v: &DeValue<'_>) -> Result<Self, Problem> {
        match v {
            DeValue::Integer(i) => {
                i128::from_str_radix(i.as_str(), i.radix()).ok().and_then(|n| u64::try_from(n).ok()).ok_or_else(|| {
                    (ErrorKind::InvalidValue, format!("{i} is out of range: expected a whole number from 0 up"))
                })
            }
            other => Err(wrong_type::<Self>(other)),
        }
    }

    fn to_toml(&self) -> String {
        self.to_string()
    }
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::toml_string;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_string("x\u{1}y\n"), r#""x\u0001y\n""#);
    }
}

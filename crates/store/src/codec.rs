//! Conversions between domain values and the column values every backend stores: times as
//! integer microseconds since the Unix epoch, lists and maps as JSON text, scopes and networks
//! in their canonical text form.

use std::collections::BTreeMap;

use ipnet::IpNet;
use jiff::Timestamp;
use token::{RateLimit, Scope};

use crate::{Result, StoreError};

pub(crate) fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

pub(crate) fn opt_micros(t: Option<Timestamp>) -> Option<i64> {
    t.map(micros)
}

pub(crate) fn time(us: i64) -> Result<Timestamp> {
    Timestamp::from_microsecond(us).map_err(|_| StoreError::Corrupt(format!("time {us} out of range")))
}

pub(crate) fn opt_time(us: Option<i64>) -> Result<Option<Timestamp>> {
    us.map(time).transpose()
}

// Lists and maps go straight between Rust and JSON text, without a `serde_json::Value` in
// between; the empty ones, most events' values, skip serde altogether.

pub(crate) fn strings_to_json<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "[]".to_owned();
    }
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) fn json_to_strings(text: &str) -> Result<Vec<String>> {
    if text == "[]" {
        return Ok(Vec::new());
    }
    serde_json::from_str(text)
        .map_err(|_| StoreError::Corrupt(format!("expected a JSON array of strings, found {text:?}")))
}

pub(crate) fn map_to_json(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "{}".to_owned();
    }
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned())
}

pub(crate) fn json_to_map(text: &str) -> Result<BTreeMap<String, String>> {
    if text == "{}" {
        return Ok(BTreeMap::new());
    }
    serde_json::from_str(text)
        .map_err(|_| StoreError::Corrupt(format!("expected a JSON object of strings, found {text:?}")))
}

pub(crate) fn scopes(text: &str) -> Result<Vec<Scope>> {
    json_to_strings(text)?.iter().map(|s| Scope::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))).collect()
}

pub(crate) fn cidrs(text: &str) -> Result<Vec<IpNet>> {
    json_to_strings(text)?
        .iter()
        .map(|s| s.parse().map_err(|_| StoreError::Corrupt(format!("bad network {s:?}"))))
        .collect()
}

pub(crate) fn rate_limit(text: Option<String>) -> Result<Option<RateLimit>> {
    text.map(|s| RateLimit::parse(&s).map_err(|e| StoreError::Corrupt(e.to_string()))).transpose()
}

pub(crate) fn hash(bytes: Vec<u8>) -> Result<token::SecretHash> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| StoreError::Corrupt("secret hash is not 32 bytes".to_owned()))?;
    Ok(token::SecretHash(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips() {
        let v = vec!["a".to_owned(), "b\"c".to_owned()];
        assert_eq!(json_to_strings(&strings_to_json(&v)).unwrap(), v);
        let m: BTreeMap<String, String> = [("k".to_owned(), "v\n".to_owned())].into();
        assert_eq!(json_to_map(&map_to_json(&m)).unwrap(), m);
        assert!(json_to_strings("{}").is_err());
        assert!(json_to_strings("[1]").is_err());
        assert!(json_to_map("[1]").is_err());
        assert!(json_to_map(r#"{"k": 1}"#).is_err());
        assert_eq!(strings_to_json::<String>(&[]), "[]");
        assert_eq!(map_to_json(&BTreeMap::new()), "{}");
    }
}

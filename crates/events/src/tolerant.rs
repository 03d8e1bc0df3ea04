//! Lenient decoding, in one place, for exactly the ways real Key Vault event payloads vary
//! (../shared/reference/event-grid.md): key casing, stray whitespace in keys and values, and NBF/EXP as a
//! number, a string or null. Everything else stays strict so the typed structs remain declarative.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, de::Error as _};
use serde_json::{Map, Value};

use crate::DecodeError;

/// Renames the keys of `object` to their canonical spelling: a key that matches one of `canonical` once
/// trimmed and compared without regard to case takes that spelling; any other key is only trimmed.
/// Two keys that collapse into one are an error rather than a silent choice between them.
pub(crate) fn canonical_keys(
    object: Map<String, Value>,
    canonical: &[&str],
    path: &str,
) -> Result<Map<String, Value>, DecodeError> {
    let mut out = Map::with_capacity(object.len());
    for (key, value) in object {
        let trimmed = key.trim();
        let name = canonical
            .iter()
            .find(|c| c.eq_ignore_ascii_case(trimmed))
            .map_or_else(|| trimmed.to_owned(), |c| (*c).to_owned());
        if out.contains_key(&name) {
            let at = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
            return Err(DecodeError::new(at, format!("appears twice (as '{key}' and another spelling)")));
        }
        out.insert(name, value);
    }
    Ok(out)
}

/// A string with surrounding whitespace removed.
pub(crate) fn trimmed<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    Ok(s.trim().to_owned())
}

/// An optional string, trimmed; `null`, a missing key and an all-blank string are all "absent".
pub(crate) fn trimmed_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    Ok(s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
}

/// Epoch seconds as a JSON number (integer or float), a string of digits, or `null`.
/// An RFC 3339 timestamp string is accepted too: nothing documents it, but it is unambiguous.
pub(crate) fn epoch_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let value = Value::deserialize(d)?;
    let seconds = match &value {
        Value::Null => return Ok(None),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i,
            // Fractional seconds carry nothing Key Vault uses; truncate toward the past.
            (None, Some(f)) if f.is_finite() => f.floor() as i64,
            _ => return Err(D::Error::custom(format!("epoch seconds out of range: {n}"))),
        },
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            match s.parse::<i64>() {
                Ok(i) => i,
                Err(_) => {
                    return DateTime::parse_from_rfc3339(s).map(|t| Some(t.with_timezone(&Utc))).map_err(|_| {
                        D::Error::custom(format!("expected epoch seconds or an RFC 3339 time, found \"{s}\""))
                    });
                }
            }
        }
        other => {
            return Err(D::Error::custom(format!(
                "expected epoch seconds as a number, a string or null, found {}",
                kind_of(other)
            )));
        }
    };
    DateTime::from_timestamp(seconds, 0)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("epoch seconds out of range: {seconds}")))
}

/// An optional RFC 3339 time (`eventTime`, `time`), trimmed.
pub(crate) fn time_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(s) = trimmed_opt(d)? else { return Ok(None) };
    DateTime::parse_from_rfc3339(&s)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| D::Error::custom(format!("expected an RFC 3339 time, found \"{s}\" ({e})")))
}

/// Epoch seconds as keyturn writes them back out: a JSON number, or null.
pub(crate) fn epoch_value(time: Option<DateTime<Utc>>) -> Value {
    time.map_or(Value::Null, |t| Value::from(t.timestamp()))
}

/// How a JSON value is described in error messages: "a string", "an array", ... (shared with the adapters,
/// so every decode error in keyturn words it the same way).
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize)]
    struct Epoch(#[serde(deserialize_with = "epoch_opt")] Option<DateTime<Utc>>);

    fn epoch(v: Value) -> Result<Option<i64>, String> {
        serde_json::from_value::<Epoch>(v).map(|e| e.0.map(|t| t.timestamp())).map_err(|e| e.to_string())
    }

    #[test]
    fn epoch_accepts_every_shape_real_payloads_use() {
        assert_eq!(epoch(json!(1559082102)), Ok(Some(1559082102)));
        assert_eq!(epoch(json!("1559082102")), Ok(Some(1559082102)));
        assert_eq!(epoch(json!(" 1559082102 ")), Ok(Some(1559082102)));
        assert_eq!(epoch(json!(1559082102.9)), Ok(Some(1559082102)));
        assert_eq!(epoch(json!(null)), Ok(None));
        assert_eq!(epoch(json!("")), Ok(None));
        assert_eq!(epoch(json!("2019-05-28T22:21:42Z")), Ok(Some(1559082102)));
    }

    #[test]
    fn epoch_rejects_what_no_payload_means() {
        assert!(epoch(json!(true)).unwrap_err().contains("found a boolean"));
        assert!(epoch(json!("tomorrow")).unwrap_err().contains("\"tomorrow\""));
        assert!(epoch(json!(i64::MAX)).unwrap_err().contains("out of range"));
    }

    #[test]
    fn keys_are_matched_without_case_or_whitespace() {
        let object = json!({"objectname ": "a", "VAULTNAME": "v", "Extra": 1});
        let Value::Object(map) = object else { unreachable!() };
        let out = canonical_keys(map, &["ObjectName", "VaultName"], "data").unwrap();
        assert_eq!(Value::Object(out), json!({"ObjectName": "a", "VaultName": "v", "Extra": 1}));
    }

    #[test]
    fn keys_that_collapse_into_one_are_an_error_naming_the_path() {
        let Value::Object(map) = json!({"Id": "a", "id": "b"}) else { unreachable!() };
        let err = canonical_keys(map, &["Id"], "data").unwrap_err();
        assert_eq!(err.path(), "data.Id");
    }
}

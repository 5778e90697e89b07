//! Command-line parameters into a JSON-RPC params object.

use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};

/// `key=value ...` or one JSON object. A value is JSON when it is a number that fits an
/// integer exactly, true, false, null, an object, an array or a quoted string; anything
/// else is a string (so a hash made only of digits stays a string).
pub fn parse(args: &[String]) -> Result<Value> {
    if let [only] = args {
        if only.trim_start().starts_with('{') {
            let value: Value = serde_json::from_str(only)
                .map_err(|e| anyhow!("the parameters are not a JSON object: {e}"))?;
            return Ok(value);
        }
    }
    let mut params = Map::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            bail!("parameter {arg:?} is not key=value (or give one JSON object)");
        };
        if key.is_empty() {
            bail!("parameter {arg:?} has no name before '='");
        }
        if params.insert(key.to_string(), value_of(value)).is_some() {
            bail!("parameter {key:?} is given twice");
        }
    }
    Ok(Value::Object(params))
}

fn value_of(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Number(n)) if n.is_u64() || n.is_i64() => Value::Number(n),
        Ok(Value::Number(_)) | Err(_) => Value::String(text.to_string()),
        Ok(other) => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn values_are_json_where_they_can_be_and_strings_otherwise() {
        let digits = "1".repeat(64);
        let got = parse(&args(&[
            "height=5",
            "raw=true",
            &format!("txid={digits}"),
            "hash=00ab",
            "addr=/ip4/127.0.0.1/tcp/1",
            "name=\"5\"",
            "ratio=0.5",
        ]))
        .unwrap();
        assert_eq!(
            got,
            json!({"height": 5, "raw": true, "txid": digits, "hash": "00ab",
                   "addr": "/ip4/127.0.0.1/tcp/1", "name": "5", "ratio": "0.5"})
        );
    }

    #[test]
    fn one_json_object_is_the_params() {
        assert_eq!(
            parse(&args(&[r#"{"limit": 3}"#])).unwrap(),
            json!({"limit": 3})
        );
    }

    #[test]
    fn malformed_parameters_are_named() {
        assert!(parse(&args(&["height"]))
            .unwrap_err()
            .to_string()
            .contains("\"height\""));
        assert!(parse(&args(&["a=1", "a=2"]))
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(parse(&args(&["{oops"])).is_err());
    }
}

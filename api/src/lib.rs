//! The node's JSON-RPC interface as types: for each method, its name, its params and its
//! result. The node answers with these types and every program that asks (wallet, cli,
//! miner, pool, bench) reads them, so a field renamed on one side fails to compile on the
//! other instead of quietly reading as 0 or "missing".
//!
//! Params are strict (`deny_unknown_fields`: a misspelt parameter is an error that names
//! it); results are lenient (a client ignores fields a newer node adds). Amounts travel
//! as decimal strings of base units (`Units`): JavaScript's numbers are exact only to 2^53.

mod account;
mod chain;
pub mod codes;
mod mining;
mod net;
mod node;
mod subscriptions;

pub use account::*;
pub use chain::*;
pub use mining::*;
pub use net::*;
pub use node::*;
pub use subscriptions::*;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One RPC method: its name, what it takes and what it gives.
pub trait Method {
    const NAME: &'static str;
    type Params: Serialize + DeserializeOwned;
    type Result: Serialize + DeserializeOwned;
}

/// Declares a method's marker type.
macro_rules! method {
    ($(#[$doc:meta])* $marker:ident, $name:literal, $params:ty => $result:ty) => {
        $(#[$doc])*
        pub struct $marker;
        impl $crate::Method for $marker {
            const NAME: &'static str = $name;
            type Params = $params;
            type Result = $result;
        }
    };
}
pub(crate) use method;

/// The params of a method that takes none (`{}`, or nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// An amount on the wire: a decimal string of base units (read from a number too, as
/// nodes before amounts were strings gave it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Units(pub apiary_core::Amount);

impl Serialize for Units {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.base_units())
    }
}

impl<'de> Deserialize<'de> for Units {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(u64),
        }
        let units = match Either::deserialize(d)? {
            Either::Text(text) => text.parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "{text:?} is not an amount (a whole number of base units)"
                ))
            })?,
            Either::Number(n) => n,
        };
        Ok(Units(apiary_core::Amount::from_base_units(units)))
    }
}

/// The field names a params type takes, for checking the catalog against the types: a
/// strict type names them all when it refuses an unknown one.
pub fn param_names<P: DeserializeOwned>() -> Vec<String> {
    let probe = serde_json::json!({"\u{1}": 0});
    let Err(error) = serde_json::from_value::<P>(probe) else {
        return Vec::new();
    };
    // "unknown field `\u{1}`, expected `a`", "… expected `a` or `b`", "… expected one
    // of `a`, `b`, `c`": every name after "expected" is in backticks.
    let text = error.to_string();
    let Some((_, expected)) = text.split_once("expected") else {
        return Vec::new();
    };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_core::Amount;

    #[test]
    fn units_travel_as_decimal_strings_and_read_numbers_too() {
        let units = Units(Amount::from_base_units(u64::MAX));
        let json = serde_json::to_value(units).unwrap();
        assert_eq!(json, serde_json::json!("18446744073709551615"));
        assert_eq!(serde_json::from_value::<Units>(json).unwrap(), units);
        let old = serde_json::from_value::<Units>(serde_json::json!(5)).unwrap();
        assert_eq!(old, Units(Amount::from_base_units(5)));
        assert!(serde_json::from_value::<Units>(serde_json::json!("5.0")).is_err());
    }

    #[test]
    fn a_params_type_names_its_fields() {
        assert_eq!(param_names::<TxSubmitParams>(), vec!["tx"]);
        assert_eq!(param_names::<TxGetParams>(), vec!["txid", "raw"]);
        assert_eq!(
            param_names::<AccountHistoryParams>(),
            vec!["address", "limit", "cursor"]
        );
        assert!(param_names::<NoParams>().is_empty());
    }

    #[test]
    fn a_misspelt_param_is_refused() {
        let wrong = serde_json::json!({"adress": "x"});
        assert!(serde_json::from_value::<AccountParams>(wrong).is_err());
    }
}

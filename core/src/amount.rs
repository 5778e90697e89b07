//! Amounts of coin. Stored and sent as integer base units; typed and shown to people as
//! decimal coins, converted with exact integer arithmetic (never floats).

use std::fmt;
use std::str::FromStr;

/// Decimal places of one coin.
pub const COIN_DECIMALS: u32 = 8;
/// Base units in one coin.
pub const COIN: u64 = 10u64.pow(COIN_DECIMALS);

crate::unit_newtype! {
    /// Coins, as base units (`COIN` a coin).
    pub struct Amount(u64);
}

/// Text that is not an amount of coins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not digits with at most one point.
    #[error("{0:?} is not an amount of coins: use digits with at most one '.', like 1.5")]
    Malformed(String),
    /// Finer than a base unit.
    #[error("{0:?} has more than {COIN_DECIMALS} decimal places")]
    TooPrecise(String),
    /// More than an amount holds.
    #[error("{0:?} is more coins than can exist")]
    TooLarge(String),
}

impl Amount {
    /// Nothing.
    pub const ZERO: Amount = Amount(0);
    /// The most an amount holds.
    pub const MAX: Amount = Amount(u64::MAX);

    /// `units` base units.
    pub const fn from_base_units(units: u64) -> Amount {
        Amount(units)
    }

    /// In base units.
    pub const fn base_units(self) -> u64 {
        self.0
    }

    /// `coins` whole coins, or None past the largest amount.
    pub fn from_coins(coins: u64) -> Option<Amount> {
        coins.checked_mul(COIN).map(Amount)
    }

    /// The sum, or None past the largest amount.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// The difference, or None below zero.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// Parses decimal coins such as `12`, `1.5` or `0.00000001`.
    pub fn parse_coins(text: &str) -> Result<Amount, AmountError> {
        let malformed = || AmountError::Malformed(text.to_string());
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
            return Err(malformed());
        }
        if frac.len() > COIN_DECIMALS as usize {
            return Err(AmountError::TooPrecise(text.to_string()));
        }
        let too_large = || AmountError::TooLarge(text.to_string());
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        let frac_units: u64 = if frac.is_empty() {
            0
        } else {
            let scale = 10u64.pow(COIN_DECIMALS - frac.len() as u32);
            frac.parse::<u64>().map_err(|_| malformed())? * scale
        };
        whole
            .checked_mul(COIN)
            .and_then(|u| u.checked_add(frac_units))
            .map(Amount)
            .ok_or_else(too_large)
    }
}

impl FromStr for Amount {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Amount::parse_coins(s)
    }
}

/// Shows coins with as few decimals as are exact: `1.5`, `0.00000001`, `21`.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / COIN;
        let frac = self.0 % COIN;
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let frac = format!("{frac:0width$}", width = COIN_DECIMALS as usize);
        write!(f, "{whole}.{}", frac.trim_end_matches('0'))
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_shows_coins_exactly() {
        assert_eq!(
            Amount::parse_coins("1.5").unwrap().base_units(),
            150_000_000
        );
        assert_eq!(Amount::parse_coins("0.00000001").unwrap().base_units(), 1);
        assert_eq!(Amount::parse_coins(".5").unwrap().base_units(), 50_000_000);
        assert_eq!(Amount::parse_coins("21").unwrap().to_string(), "21");
        assert_eq!(Amount::from_base_units(150_000_000).to_string(), "1.5");
        assert!(matches!(
            Amount::parse_coins("1.000000001"),
            Err(AmountError::TooPrecise(_))
        ));
        for bad in ["", ".", "1,5", "-1", "1e3", "1.2.3", " 1"] {
            assert!(
                matches!(Amount::parse_coins(bad), Err(AmountError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Amount::parse_coins("184467440738"),
            Err(AmountError::TooLarge(_))
        ));
    }

    proptest! {
        #[test]
        fn display_parses_back(units in any::<u64>()) {
            let amount = Amount::from_base_units(units);
            prop_assert_eq!(Amount::parse_coins(&amount.to_string()).unwrap(), amount);
        }
    }
}

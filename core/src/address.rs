//! Addresses: an ed25519 public key, shown to people as bech32m with the chain's prefix so
//! that a mistyped address, or one of another chain, is refused before anything is signed.

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32m, Hrp};
use borsh::{BorshDeserialize, BorshSerialize};
use std::fmt;

/// The 32 bytes of an ed25519 public key.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Address(pub [u8; 32]);

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", hex::encode(self.0))
    }
}

/// The human-readable part of a chain's addresses, e.g. `apdev`.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize)]
pub struct AddressPrefix(String);

/// Text that is not an address of this chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not bech32m (the text, and why).
    #[error("{0:?} is not a bech32m address: {1}")]
    Malformed(String, String),
    /// An address of another chain.
    #[error("address {address:?} is for a chain with prefix {found:?}, this chain's prefix is {expected:?}")]
    WrongPrefix {
        /// The text.
        address: String,
        /// This chain's prefix.
        expected: String,
        /// The address's.
        found: String,
    },
    /// Bech32m of other than 32 bytes (the text, and its byte count).
    #[error("address {0:?} holds {1} bytes, an address holds 32")]
    WrongLength(String, usize),
    /// A prefix that no chain may have.
    #[error(
        "address prefix {0:?} must be 1 to 16 lowercase letters or digits, starting with a letter"
    )]
    BadPrefix(String),
}

impl AddressPrefix {
    /// `prefix`, if a chain may have it.
    pub fn new(prefix: &str) -> Result<AddressPrefix, AddressError> {
        let ok = (1..=16).contains(&prefix.len())
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !ok {
            return Err(AddressError::BadPrefix(prefix.to_string()));
        }
        Ok(AddressPrefix(prefix.to_string()))
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn hrp(&self) -> Hrp {
        Hrp::parse(&self.0).expect("validated in AddressPrefix::new")
    }
}

impl BorshDeserialize for AddressPrefix {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let mut buf = [0u8; 16];
        let text = crate::encoding::read_bounded_str(reader, &mut buf)?;
        AddressPrefix::new(text).map_err(crate::encoding::invalid_data)
    }
}

impl Address {
    /// Bech32m with `prefix`, as people and RPC see it.
    pub fn to_text(&self, prefix: &AddressPrefix) -> String {
        bech32::encode_lower::<Bech32m>(prefix.hrp(), &self.0).expect("32 bytes always fit bech32m")
    }

    /// Parses the text form of an address of any chain, checking the bech32m checksum and
    /// the length: the address and its prefix (for a tool that does not know the chain
    /// yet, such as a miner before its pool answers).
    pub fn parse_any_chain(text: &str) -> Result<(Address, AddressPrefix), AddressError> {
        let checked = CheckedHrpstring::new::<Bech32m>(text)
            .map_err(|e| AddressError::Malformed(text.to_string(), e.to_string()))?;
        let prefix = AddressPrefix::new(&checked.hrp().to_lowercase())?;
        Ok((Address::parse(text, &prefix)?, prefix))
    }

    /// Parses the text form, checking the bech32m checksum and that the prefix is this chain's.
    pub fn parse(text: &str, prefix: &AddressPrefix) -> Result<Address, AddressError> {
        let checked = CheckedHrpstring::new::<Bech32m>(text)
            .map_err(|e| AddressError::Malformed(text.to_string(), e.to_string()))?;
        let found = checked.hrp().to_lowercase();
        if found != prefix.0 {
            return Err(AddressError::WrongPrefix {
                address: text.to_string(),
                expected: prefix.0.clone(),
                found,
            });
        }
        let bytes: Vec<u8> = checked.byte_iter().collect();
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| AddressError::WrongLength(text.to_string(), bytes.len()))?;
        Ok(Address(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_refuses_typos_and_other_chains() {
        let prefix = AddressPrefix::new("apdev").unwrap();
        let address = Address([7; 32]);
        let text = address.to_text(&prefix);
        assert!(text.starts_with("apdev1"));
        assert_eq!(Address::parse(&text, &prefix).unwrap(), address);

        // One mistyped character breaks the checksum.
        let mut typo: Vec<char> = text.chars().collect();
        let i = typo.len() - 3;
        typo[i] = if typo[i] == 'q' { 'p' } else { 'q' };
        let typo: String = typo.into_iter().collect();
        assert!(matches!(
            Address::parse(&typo, &prefix),
            Err(AddressError::Malformed(..))
        ));

        let other = AddressPrefix::new("apmain").unwrap();
        assert!(matches!(
            Address::parse(&address.to_text(&other), &prefix),
            Err(AddressError::WrongPrefix { .. })
        ));
    }

    #[test]
    fn an_address_of_any_chain_is_read_with_its_prefix() {
        let text = Address([7; 32]).to_text(&AddressPrefix::new("apdev").unwrap());
        let (address, prefix) = Address::parse_any_chain(&text).unwrap();
        assert_eq!((address, prefix.as_str()), (Address([7; 32]), "apdev"));
        assert!(Address::parse_any_chain("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq").is_err());
        assert!(Address::parse_any_chain("nonsense").is_err());
    }

    #[test]
    fn bech32_without_m_is_refused() {
        let prefix = AddressPrefix::new("apdev").unwrap();
        let plain = bech32::encode_lower::<bech32::Bech32>(prefix.hrp(), &[7; 32]).unwrap();
        assert!(Address::parse(&plain, &prefix).is_err());
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(AddressPrefix::new("Ap").is_err());
        assert!(AddressPrefix::new("").is_err());
        assert!(AddressPrefix::new("1ap").is_err());
        assert!(AddressPrefix::new("apdev2").is_ok());
    }
}

//! The state commitment as consensus defines it: a binary sparse Merkle tree over the 256
//! bits of each address, most significant bit first. An empty subtree hashes to 32 zero
//! bytes; a subtree that holds exactly one account hashes to that account's leaf hash,
//! wherever the subtree sits; any other subtree hashes to the node hash of its two halves.
//! Everything else in this module (pages, caches, proofs) is a faster way to the same root.

use super::Account;
use crate::address::Address;
use crate::hash::{sha256_short, tag, Hash256};

/// The hash of an empty subtree (and of the state with no account).
pub const EMPTY: Hash256 = Hash256::ZERO;

/// SHA-256(0x02 ‖ address ‖ balance as u64 LE ‖ nonce as u64 LE): 49 bytes.
pub fn leaf_hash(address: &Address, account: &Account) -> Hash256 {
    let mut message = [0u8; 49];
    message[0] = tag::ACCOUNT_LEAF;
    message[1..33].copy_from_slice(&address.0);
    message[33..41].copy_from_slice(&account.balance.base_units().to_le_bytes());
    message[41..].copy_from_slice(&account.nonce.0.to_le_bytes());
    sha256_short(&message)
}

/// SHA-256(0x03 ‖ left ‖ right): 65 bytes, plain SHA-256 that any language (and a
/// browser's WebCrypto) computes.
pub fn node_hash(left: &Hash256, right: &Hash256) -> Hash256 {
    let mut message = [0u8; 65];
    message[0] = tag::STATE_NODE;
    message[1..33].copy_from_slice(&left.0);
    message[33..].copy_from_slice(&right.0);
    sha256_short(&message)
}

/// Bit `index` (0 = the most significant of byte 0) of an address.
pub fn bit(address: &Address, index: usize) -> bool {
    address.0[index / 8] & (0x80 >> (index % 8)) != 0
}

/// The root of the accounts `sorted` by address (each once, none empty), straight from
/// the definition: the reference the paged tree is tested against, and what a third
/// party recomputes from docs/protocol.md.
pub fn root_of_sorted(sorted: &[(Address, Account)]) -> Hash256 {
    let leaves: Vec<(Address, Hash256)> = sorted
        .iter()
        .map(|(a, acc)| (*a, leaf_hash(a, acc)))
        .collect();
    root_of_leaves(&leaves, 0)
}

/// The hash of the subtree at bit `depth` holding exactly `leaves` (sorted, distinct,
/// sharing their first `depth` bits).
pub fn root_of_leaves(leaves: &[(Address, Hash256)], depth: usize) -> Hash256 {
    match leaves {
        [] => EMPTY,
        [(_, leaf)] => *leaf,
        _ => {
            let split = leaves.partition_point(|(address, _)| !bit(address, depth));
            let (left, right) = leaves.split_at(split);
            node_hash(
                &root_of_leaves(left, depth + 1),
                &root_of_leaves(right, depth + 1),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amount::Amount;
    use crate::state::Nonce;

    fn account(balance: u64) -> Account {
        Account {
            balance: Amount::from_base_units(balance),
            nonce: Nonce(0),
        }
    }

    #[test]
    fn leaves_and_nodes_are_the_tagged_sha256_the_protocol_names() {
        use crate::hash::tagged_hash;
        let address = Address([9; 32]);
        let account = Account {
            balance: Amount::from_base_units(u64::MAX - 1),
            nonce: Nonce(7),
        };
        let mut value = [0u8; 16];
        value[..8].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
        value[8..].copy_from_slice(&7u64.to_le_bytes());
        assert_eq!(
            leaf_hash(&address, &account),
            tagged_hash(tag::ACCOUNT_LEAF, &[&address.0, &value])
        );
        let (l, r) = (Hash256([1; 32]), Hash256([2; 32]));
        assert_eq!(
            node_hash(&l, &r),
            tagged_hash(tag::STATE_NODE, &[&l.0, &r.0])
        );
    }

    #[test]
    fn one_account_is_its_leaf_and_two_meet_where_their_bits_part() {
        let a = Address([0x00; 32]);
        let mut b = Address([0x00; 32]);
        b.0[0] = 0b0010_0000;
        assert_eq!(root_of_sorted(&[]), EMPTY);
        assert_eq!(
            root_of_sorted(&[(a, account(1))]),
            leaf_hash(&a, &account(1))
        );
        // a and b part at bit 2: two nodes over the empty right halves above them.
        let meet = node_hash(&leaf_hash(&a, &account(1)), &leaf_hash(&b, &account(2)));
        let expected = node_hash(&node_hash(&meet, &EMPTY), &EMPTY);
        assert_eq!(
            root_of_sorted(&[(a, account(1)), (b, account(2))]),
            expected
        );
    }
}

//! The paged tree against the commitment's definition, for every page width; undo; and
//! proofs of one account and of ranges, which fail when one byte changes.

use super::proof::{prove, prove_range, ProofEnd};
use super::*;
use crate::hash::Hash256;
use proptest::prelude::*;

fn account(balance: u64, nonce: u64) -> Account {
    Account {
        balance: Amount::from_base_units(balance),
        nonce: Nonce(nonce),
    }
}

/// Addresses that share long prefixes now and then, so pages nest and chain.
fn address(seed: u16) -> Address {
    let mut bytes = [0u8; 32];
    bytes[0] = (seed >> 8) as u8 & 0b1100_0000;
    bytes[1] = seed as u8;
    bytes[31] = (seed % 7) as u8;
    if seed.is_multiple_of(5) {
        bytes[0] |= 0b0010_0000;
        bytes[20] = 0xff;
    }
    Address(bytes)
}

fn reference_root(state: &MemoryState) -> Hash256 {
    let sorted: Vec<(Address, Account)> = state.iter().map(|(a, acc)| (*a, *acc)).collect();
    root_of_sorted(&sorted)
}

#[test]
fn empty_and_single_account_states() {
    let mut state = MemoryState::new();
    assert_eq!(state.root(), EMPTY);
    state.set(Address([1; 32]), Some(account(0, 0)));
    assert_eq!(state.root(), EMPTY, "an empty account is no account");
    state.set(Address([1; 32]), Some(account(5, 0)));
    assert_eq!(state.root(), leaf_hash(&Address([1; 32]), &account(5, 0)));
    state.set(Address([1; 32]), None);
    assert_eq!(state.root(), EMPTY);
    assert_eq!(state.pages().count(), 0);
}

/// Two addresses that differ only in their last bit sit 64 pages deep: changing, finding,
/// walking and proving them works on a default thread's stack, as any recipient's
/// address may be chosen so (a sender's is a key; a recipient's is any 32 bytes).
#[test]
fn the_deepest_paths_work_on_a_default_stack() {
    std::thread::spawn(|| {
        let twin = |last: u8| {
            let mut bytes = [0x5a; 32];
            bytes[31] = 0x5a | last;
            Address(bytes)
        };
        let (a, b) = (twin(0), twin(1));
        let mut state = MemoryState::new();
        state.apply(&[(a, Some(account(1, 0))), (b, Some(account(2, 0)))]);
        assert_eq!(state.root(), reference_root(&state));
        assert_eq!(state.pages().count(), 64);
        assert_eq!(tree::account(&state, &b).unwrap(), Some(account(2, 0)));
        let proof = prove(&state, &a).unwrap();
        assert_eq!(proof.siblings.len(), 256);
        assert_eq!(proof.verify(&state.root(), &a), Ok(Some(account(1, 0))));
        state.set(b, None);
        assert_eq!(state.root(), leaf_hash(&a, &account(1, 0)));
        assert_eq!(state.pages().count(), 1);
    })
    .join()
    .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn finding_and_walking_agree_with_the_accounts(
        seeds in prop::collection::btree_set(0u16..2000, 0..80),
        asked in 0u16..2000,
        from in 0u16..2000,
    ) {
        let all: std::collections::BTreeMap<Address, Account> = seeds.iter().map(|s| (address(*s), account(*s as u64 + 1, 0))).collect();
        let state = MemoryState::from_accounts(all.clone());
        prop_assert_eq!(tree::account(&state, &address(asked)).unwrap(), all.get(&address(asked)).copied());
        // In one batch, in any order and with repeats: each as asked alone.
        let batch: Vec<Address> = [asked, from, asked, 7, 1999].iter().map(|s| address(*s)).collect();
        let alone: Vec<Option<Account>> = batch.iter().map(|a| all.get(a).copied()).collect();
        prop_assert_eq!(tree::accounts(&state, &batch).unwrap(), alone);
        let mut walked = Vec::new();
        tree::walk(&state, &address(from), &mut |leaf| {
            walked.push((leaf.address, leaf.account));
            walked.len() < 10
        }).unwrap();
        let expected: Vec<(Address, Account)> = all.range(address(from)..).take(10).map(|(a, acc)| (*a, *acc)).collect();
        prop_assert_eq!(walked, expected);
    }

    #[test]
    fn every_layout_keeps_the_defined_root_through_changes_and_undo(
        bits in prop::sample::select(vec![1u8, 2, 4]),
        initial in prop::collection::vec((0u16..2000, 1u64..1000, 0u64..3), 0..60),
        blocks in prop::collection::vec(
            prop::collection::vec((0u16..2000, 0u64..1000, 0u64..3), 1..30), 1..5),
    ) {
        let layout = Layout::new(bits).unwrap();
        let mut state = MemoryState::with_layout(layout);
        let mut changes: Vec<(Address, Option<Account>)> = initial
            .iter()
            .map(|(s, b, n)| (address(*s), Some(account(*b, *n))))
            .collect();
        changes.sort_by_key(|(a, _)| *a);
        changes.dedup_by_key(|(a, _)| *a);
        state.apply(&changes);
        prop_assert_eq!(state.root(), reference_root(&state));
        // Built at once, the same root and the same pages.
        let built = MemoryState::from_accounts(state.iter().map(|(a, acc)| (*a, *acc)));
        prop_assert_eq!(built.root(), state.root());
        let mut undos = Vec::new();
        for block in &blocks {
            let before = (state.root(), state.len());
            let mut delta = StateDelta::load(&state, &block.iter().map(|(s, ..)| address(*s)).collect::<Vec<_>>()).unwrap();
            for (s, balance, nonce) in block {
                delta.set(address(*s), account(*balance, *nonce));
            }
            let (changes, undo) = delta.finish();
            state.apply(&changes);
            prop_assert_eq!(state.root(), reference_root(&state));
            undos.push((undo, before));
        }
        for (undo, (root, len)) in undos.into_iter().rev() {
            state.apply_undo(&undo);
            prop_assert_eq!((state.root(), state.len()), (root, len));
        }
        // Every page left is one the tree needs: removing everything leaves none.
        let all: Vec<(Address, Option<Account>)> = state.iter().map(|(a, _)| (*a, None)).collect();
        state.apply(&all);
        prop_assert_eq!(state.root(), EMPTY);
        prop_assert_eq!(state.pages().count(), 0);
    }

    #[test]
    fn proofs_of_presence_and_absence_verify_and_a_changed_byte_fails(
        seeds in prop::collection::btree_set(0u16..2000, 0..80),
        asked in 0u16..2000,
    ) {
        let all: std::collections::BTreeMap<Address, Account> = seeds.iter().map(|s| (address(*s), account(*s as u64 + 1, 0))).collect();
        let state = MemoryState::from_accounts(all);
        let root = state.root();
        let target = address(asked);
        let proof = prove(&state, &target).unwrap();
        let expected = state.get(&target);
        prop_assert_eq!(proof.verify(&root, &target).unwrap(), expected);
        // A byte changed in the account or in any sibling: it no longer verifies.
        if let ProofEnd::Leaf { address, account: found } = &proof.end {
            let mut forged = proof.clone();
            forged.end = ProofEnd::Leaf { address: *address, account: Account { balance: Amount::from_base_units(found.balance.base_units() ^ 1), ..*found } };
            prop_assert!(forged.verify(&root, &target).is_err());
        }
        for i in 0..proof.siblings.len() {
            let mut forged = proof.clone();
            forged.siblings[i].0[0] ^= 1;
            prop_assert!(forged.verify(&root, &target).is_err());
        }
    }

    #[test]
    fn ranges_verify_whole_and_fail_with_an_account_left_out_changed_or_added(
        seeds in prop::collection::btree_set(0u16..2000, 2..120),
        from in 0usize..120,
        count in 1usize..40,
    ) {
        // Distinct addresses (seeds may meet at one), the last seed's account kept.
        let all: std::collections::BTreeMap<Address, Account> = seeds.iter().map(|s| (address(*s), account(*s as u64 + 1, 2))).collect();
        let sorted: Vec<(Address, Account)> = all.into_iter().collect();
        let state = MemoryState::from_accounts(sorted.clone());
        let root = state.root();
        let from = from % sorted.len();
        let to = (from + count).min(sorted.len()) - 1;
        // The range starts at an address before its first account, as a peer asked.
        let mut first = sorted[from].0;
        let mut before = first;
        before.0[31] = before.0[31].wrapping_sub(1);
        if before < first && (from == 0 || sorted[from - 1].0 < before) {
            first = before;
        }
        let last = sorted[to].0;
        let accounts: Vec<(Address, Account)> = sorted[from..=to].to_vec();
        let proof = prove_range(&state, &first, &last).unwrap();
        prop_assert_eq!(proof.verify(&root, &first, &last, &accounts), Ok(()));
        if accounts.len() > 1 {
            let mut missing = accounts.clone();
            missing.remove(accounts.len() / 2);
            prop_assert!(proof.verify(&root, &first, &last, &missing).is_err());
        }
        let mut changed = accounts.clone();
        changed[0].1.nonce = Nonce(3);
        prop_assert!(proof.verify(&root, &first, &last, &changed).is_err());
        let mut extra = accounts.clone();
        let mut stranger = last;
        stranger.0[31] = stranger.0[31].wrapping_sub(1);
        if !accounts.iter().any(|(a, _)| *a == stranger) && stranger >= first {
            extra.push((stranger, account(1, 0)));
            extra.sort_by_key(|(a, _)| *a);
            prop_assert!(proof.verify(&root, &first, &last, &extra).is_err());
        }
    }
}

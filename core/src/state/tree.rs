//! Changing the paged tree: a batch of account changes walks down from the root page
//! through the pages on their paths (read through a `PageSource`: memory, a cache, a
//! store), and comes back up with the new root and the pages to write. Only the pages on
//! changed paths are read, rehashed or written: the cost grows with the changes and the
//! depth (about log16 of the accounts), never with the number of accounts.

use super::commit::EMPTY;
use super::page::{Layout, Page, PageKey, Slot, Summary};
use crate::address::Address;
use crate::hash::Hash256;
use std::sync::Arc;

/// A leaf's new hash, or `None` where the account is gone.
pub type LeafChange = (Address, Option<Hash256>);

/// A state that cannot be read (an I/O error, a damaged store): never a verdict on a
/// block, and never taken for an absent account.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the state: {0}")]
pub struct SourceError(pub String);

/// Where a tree's pages are read from.
pub trait PageSource: Sync {
    fn page(&self, key: &PageKey) -> Result<Option<Arc<Page>>, SourceError>;

    /// How its pages are laid out.
    fn layout(&self) -> Layout;
}

/// The pages of a change: what to write under each key (None: delete it).
pub type PageWrites = Vec<(PageKey, Option<Arc<Page>>)>;

/// What a batch of changes does to the tree.
#[derive(Clone, Debug, Default)]
pub struct TreeUpdate {
    pub root: Hash256,
    pub pages: PageWrites,
    /// Node hashes it took (what it costs; for benchmarks).
    pub hashes: usize,
}

/// What an update carries down and back: the pages to write, and the hashes taken.
#[derive(Default)]
struct Work {
    writes: PageWrites,
    hashes: usize,
}

/// Changes worth spreading over the cores: below this, one thread is quicker.
const PARALLEL_CHANGES: usize = 256;

/// Applies `changes` — sorted by address, each once; a leaf hash, or None for an account
/// removed — to the tree read through `source`.
pub fn update(source: &impl PageSource, changes: &[LeafChange]) -> Result<TreeUpdate, SourceError> {
    let layout = source.layout();
    debug_assert!(changes.windows(2).all(|w| w[0].0 < w[1].0));
    let root = source.page(&PageKey::ROOT)?;
    if changes.is_empty() {
        return Ok(TreeUpdate {
            root: root.map_or(EMPTY, |page| page.hash()),
            ..TreeUpdate::default()
        });
    }
    let mut work = Work::default();
    let page = update_page(source, layout, PageKey::ROOT, root, changes, &mut work)?;
    let root = page.hash();
    // The root page is kept while any account is (even one, alone in its slot).
    work.writes.push((
        PageKey::ROOT,
        (page.summary() != Summary::Empty).then_some(page),
    ));
    Ok(TreeUpdate {
        root,
        pages: work.writes,
        hashes: work.hashes,
    })
}

/// The page at `key` (None: none yet) after `changes`, all below it; writes of the pages
/// below go to `work`. Pages stay on the heap: the recursion may be 64 pages deep.
fn update_page(
    source: &impl PageSource,
    layout: Layout,
    key: PageKey,
    page: Option<Arc<Page>>,
    changes: &[LeafChange],
    work: &mut Work,
) -> Result<Arc<Page>, SourceError> {
    let mut page = page.unwrap_or_else(|| Arc::new(Page::empty(layout)));
    let groups = by_slot(layout, key.depth(), changes);
    if changes.len() >= PARALLEL_CHANGES && groups.len() > 1 {
        use rayon::prelude::*;
        let slots: Vec<(usize, Slot, Work)> = groups
            .par_iter()
            .map(|&(slot, group)| {
                let mut own = Work::default();
                let new = update_slot(
                    source,
                    layout,
                    key.child(layout, slot),
                    *page.slot(slot),
                    group,
                    &mut own,
                )?;
                Ok((slot, new, own))
            })
            .collect::<Result<_, SourceError>>()?;
        let mut changed = Vec::with_capacity(slots.len());
        for (slot, new, own) in slots {
            changed.push((slot, new));
            work.hashes += own.hashes;
            work.writes.extend(own.writes);
        }
        work.hashes += Arc::make_mut(&mut page).set_slots(changed);
    } else {
        let mut changed = Vec::with_capacity(groups.len());
        for (slot, group) in groups {
            let new = update_slot(
                source,
                layout,
                key.child(layout, slot),
                *page.slot(slot),
                group,
                work,
            )?;
            changed.push((slot, new));
        }
        work.hashes += Arc::make_mut(&mut page).set_slots(changed);
    }
    Ok(page)
}

/// `changes` split by the slot they fall in on a page at `depth`, in slot order.
fn by_slot(layout: Layout, depth: usize, changes: &[LeafChange]) -> Vec<(usize, &[LeafChange])> {
    let mut groups = Vec::new();
    let mut rest = changes;
    while let Some((first, _)) = rest.first() {
        let slot = layout.slot_of(first, depth);
        let end = rest.partition_point(|(address, _)| layout.slot_of(address, depth) <= slot);
        groups.push((slot, &rest[..end]));
        rest = &rest[end..];
    }
    groups
}

/// The slot whose subtree is at `key` after `changes`.
fn update_slot(
    source: &impl PageSource,
    layout: Layout,
    key: PageKey,
    slot: Slot,
    changes: &[LeafChange],
    work: &mut Work,
) -> Result<Slot, SourceError> {
    match slot {
        Slot::Empty => {
            let leaves: Vec<(Address, Hash256)> = changes
                .iter()
                .filter_map(|(address, leaf)| leaf.map(|leaf| (*address, leaf)))
                .collect();
            Ok(build(layout, key, &leaves, work))
        }
        Slot::Leaf { address, hash } => {
            // The one account there, unless a change names it, joins the changes.
            let mut leaves: Vec<(Address, Hash256)> = Vec::with_capacity(changes.len() + 1);
            let mut kept = changes.iter().all(|(changed, _)| *changed != address);
            for (changed, leaf) in changes {
                if kept && address < *changed {
                    leaves.push((address, hash));
                    kept = false;
                }
                if let Some(leaf) = leaf {
                    leaves.push((*changed, *leaf));
                }
            }
            if kept {
                leaves.push((address, hash));
            }
            Ok(build(layout, key, &leaves, work))
        }
        Slot::Child { .. } => {
            let page = source.page(&key)?.ok_or_else(|| {
                SourceError(format!(
                    "state page at depth {} under {} is missing",
                    key.depth(),
                    key.prefix()
                        .0
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                ))
            })?;
            let page = update_page(source, layout, key, Some(page), changes, work)?;
            Ok(match page.summary() {
                Summary::Empty => {
                    work.writes.push((key, None));
                    Slot::Empty
                }
                // One account left below: it moves up into this slot.
                Summary::One { slot, hash } => {
                    work.writes.push((key, None));
                    let Slot::Leaf { address, .. } = *page.slot(slot as usize) else {
                        unreachable!("a page summed up as one account holds it in a leaf slot")
                    };
                    Slot::Leaf { address, hash }
                }
                Summary::Many(hash) => {
                    work.writes.push((key, Some(page)));
                    Slot::Child { hash }
                }
            })
        }
    }
}

/// The slot for exactly `leaves` (sorted, distinct) below `key`, writing a page for each
/// subtree of two or more.
fn build(layout: Layout, key: PageKey, leaves: &[(Address, Hash256)], work: &mut Work) -> Slot {
    let writes = &mut work.writes;
    build_into(layout, key, leaves, &mut work.hashes, &mut |key, page| {
        writes.push((key, Some(Arc::new(page))))
    })
}

/// As `build`, handing each page to `sink` (children before their parents) instead of
/// keeping them: a tree of any size is built in memory of its depth.
pub fn build_into(
    layout: Layout,
    key: PageKey,
    leaves: &[(Address, Hash256)],
    hashes: &mut usize,
    sink: &mut dyn FnMut(PageKey, Page),
) -> Slot {
    match leaves {
        [] => Slot::Empty,
        [(address, hash)] => Slot::Leaf {
            address: *address,
            hash: *hash,
        },
        _ => {
            let mut slots = vec![Slot::Empty; layout.slots()];
            let mut rest = leaves;
            while let Some((first, _)) = rest.first() {
                let slot = layout.slot_of(first, key.depth());
                let end = rest.partition_point(|(a, _)| layout.slot_of(a, key.depth()) <= slot);
                slots[slot] =
                    build_into(layout, key.child(layout, slot), &rest[..end], hashes, sink);
                rest = &rest[end..];
            }
            let page = Box::new(Page::from_slots_counted(slots, hashes));
            let hash = page.hash();
            sink(key, *page);
            Slot::Child { hash }
        }
    }
}

/// Builds the whole tree of `leaves` (sorted, distinct), handing each page to `sink`
/// (the root page last); returns the root.
pub fn build_tree(
    layout: Layout,
    leaves: &[(Address, Hash256)],
    sink: &mut dyn FnMut(PageKey, Page),
) -> Hash256 {
    match leaves {
        [] => EMPTY,
        [(address, hash)] => {
            let mut root = Page::empty(layout);
            root.set_slot(
                layout.slot_of(address, 0),
                Slot::Leaf {
                    address: *address,
                    hash: *hash,
                },
            );
            sink(PageKey::ROOT, root);
            *hash
        }
        _ => match build_into(layout, PageKey::ROOT, leaves, &mut 0, sink) {
            Slot::Child { hash } => hash,
            _ => unreachable!("two or more leaves build a page"),
        },
    }
}

//! Changing the paged tree: a batch of account changes walks down from the root page
//! through the pages on their paths (read through a `PageSource`: memory, a cache, a
//! store), and comes back up with the new root and the pages to write. Only the pages on
//! changed paths are read, rehashed or written: the cost grows with the changes and the
//! depth (about log16 of the accounts), never with the number of accounts.

use super::commit::EMPTY;
use super::page::{Layout, Leaf, Page, PageKey, Slot, Summary};
use super::Account;
use crate::address::Address;
use crate::hash::Hash256;
use std::sync::Arc;

/// An account's new value, or `None` where it is gone.
pub type AccountChange = (Address, Option<Account>);

/// A change as the tree takes it: the new leaf, or `None`.
type LeafChange = (Address, Option<Leaf>);

/// A state that cannot be read (an I/O error, a damaged store): never a verdict on a
/// block, and never taken for an absent account.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the state: {0}")]
pub struct SourceError(pub String);

/// Where a tree's pages are read from.
pub trait PageSource: Sync {
    /// The page at `key` (None: no page there).
    fn page(&self, key: &PageKey) -> Result<Option<Arc<Page>>, SourceError>;

    /// How its pages are laid out.
    fn layout(&self) -> Layout;
}

/// A source that keeps every page it hands out. A block is walked twice (its accounts are
/// read, then its changes written) over the same pages: the second walk finds them here,
/// in a map of the block's own size, instead of in every layer of the source again.
pub struct Remembering<'a, S> {
    source: &'a S,
    // A mutex only because sources are `Sync`; one thread walks a block.
    seen: std::sync::Mutex<super::FastMap<PageKey, Option<Arc<Page>>>>,
}

impl<'a, S: PageSource> Remembering<'a, S> {
    /// Remembers the pages `source` hands out.
    pub fn new(source: &'a S) -> Remembering<'a, S> {
        Remembering {
            source,
            seen: Default::default(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, super::FastMap<PageKey, Option<Arc<Page>>>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: PageSource> PageSource for Remembering<'_, S> {
    fn page(&self, key: &PageKey) -> Result<Option<Arc<Page>>, SourceError> {
        if let Some(page) = self.seen().get(key) {
            return Ok(page.clone());
        }
        let page = self.source.page(key)?;
        self.seen().insert(*key, page.clone());
        Ok(page)
    }

    fn layout(&self) -> Layout {
        self.source.layout()
    }
}

impl<S: PageSource> super::AccountSource for Remembering<'_, S> {
    fn account(&self, address: &Address) -> Result<Option<Account>, SourceError> {
        account(self, address)
    }

    fn accounts(&self, addresses: &[Address]) -> Result<Vec<Option<Account>>, SourceError> {
        accounts(self, addresses)
    }
}

/// The pages of a change: what to write under each key (None: delete it).
pub type PageWrites = Vec<(PageKey, Option<Arc<Page>>)>;

/// What a batch of changes does to the tree.
#[derive(Clone, Debug, Default)]
pub struct TreeUpdate {
    /// The new root.
    pub root: Hash256,
    /// The pages to write (None: delete).
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

/// Applies `changes` — sorted by address, each once; the new account, or None (or an
/// empty account) for one removed — to the tree read through `source`.
pub fn update(
    source: &impl PageSource,
    changes: &[AccountChange],
) -> Result<TreeUpdate, SourceError> {
    let layout = source.layout();
    debug_assert!(changes.windows(2).all(|w| w[0].0 < w[1].0));
    let leaf = |(address, account): &AccountChange| {
        let account = account.filter(|a| !a.is_empty());
        (
            *address,
            account.map(|account| Leaf::new(*address, account)),
        )
    };
    // On the calling thread: a node connects blocks while the pool checks the signatures
    // of the next ones, and work queued behind those would wait for them.
    let changes: Vec<LeafChange> = changes.iter().map(leaf).collect();
    let changes = changes.as_slice();
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
            let leaves: Vec<Leaf> = changes.iter().filter_map(|(_, leaf)| *leaf).collect();
            Ok(build(layout, key, &leaves, work))
        }
        Slot::Leaf(there) => {
            // The one account there, unless a change names it, joins the changes.
            let mut leaves: Vec<Leaf> = Vec::with_capacity(changes.len() + 1);
            let mut kept = changes.iter().all(|(changed, _)| *changed != there.address);
            for (changed, leaf) in changes {
                if kept && there.address < *changed {
                    leaves.push(there);
                    kept = false;
                }
                leaves.extend(leaf);
            }
            if kept {
                leaves.push(there);
            }
            Ok(build(layout, key, &leaves, work))
        }
        Slot::Child { .. } => {
            let page = source.page(&key)?.ok_or_else(|| missing(&key))?;
            let page = update_page(source, layout, key, Some(page), changes, work)?;
            Ok(match page.summary() {
                Summary::Empty => {
                    work.writes.push((key, None));
                    Slot::Empty
                }
                // One account left below: it moves up into this slot.
                Summary::One { slot, .. } => {
                    work.writes.push((key, None));
                    *page.slot(slot as usize)
                }
                Summary::Many(hash) => {
                    work.writes.push((key, Some(page)));
                    Slot::Child { hash }
                }
            })
        }
    }
}

/// A page the tree above says is there, and is not: a damaged store.
fn missing(key: &PageKey) -> SourceError {
    SourceError(format!(
        "state page at depth {} under {} is missing",
        key.depth(),
        key.prefix()
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

/// The account at `address` in the tree read through `source` (None: there is none):
/// down the pages on its path to where the path ends.
pub fn account(
    source: &impl PageSource,
    address: &Address,
) -> Result<Option<Account>, SourceError> {
    let layout = source.layout();
    let mut key = PageKey::ROOT;
    let Some(mut page) = source.page(&key)? else {
        return Ok(None);
    };
    loop {
        match *page.slot(layout.slot_of(address, key.depth())) {
            Slot::Empty => return Ok(None),
            Slot::Leaf(leaf) => return Ok((leaf.address == *address).then_some(leaf.account)),
            Slot::Child { .. } => {
                key = key.child(layout, layout.slot_of(address, key.depth()));
                page = source.page(&key)?.ok_or_else(|| missing(&key))?;
            }
        }
    }
}

/// The accounts of `addresses` (any order, repeats allowed; None: absent), reading each
/// page on their paths once, as a block's update will: a batch of a block's senders and
/// recipients shares the pages near the root.
pub fn accounts(
    source: &impl PageSource,
    addresses: &[Address],
) -> Result<Vec<Option<Account>>, SourceError> {
    let mut order: Vec<usize> = (0..addresses.len()).collect();
    order.sort_unstable_by_key(|&i| addresses[i]);
    let mut sorted: Vec<Address> = order.iter().map(|&i| addresses[i]).collect();
    sorted.dedup();
    let mut found = vec![None; sorted.len()];
    if let Some(root) = source.page(&PageKey::ROOT)? {
        find_in(source, PageKey::ROOT, &root, &sorted, &mut found)?;
    }
    let mut answers = vec![None; addresses.len()];
    let mut at = 0;
    for &i in &order {
        while sorted[at] != addresses[i] {
            at += 1;
        }
        answers[i] = found[at];
    }
    Ok(answers)
}

/// Fills `found` with the accounts of `addresses` (sorted, distinct, all below `key`).
fn find_in(
    source: &impl PageSource,
    key: PageKey,
    page: &Page,
    addresses: &[Address],
    found: &mut [Option<Account>],
) -> Result<(), SourceError> {
    let layout = source.layout();
    let (mut addresses, mut found) = (addresses, found);
    while let Some(first) = addresses.first() {
        let slot = layout.slot_of(first, key.depth());
        let end = addresses.partition_point(|a| layout.slot_of(a, key.depth()) <= slot);
        let (here, rest) = addresses.split_at(end);
        let (out, rest_out) = std::mem::take(&mut found).split_at_mut(end);
        match page.slot(slot) {
            Slot::Empty => {}
            Slot::Leaf(leaf) => {
                if let Ok(i) = here.binary_search(&leaf.address) {
                    out[i] = Some(leaf.account);
                }
            }
            Slot::Child { .. } => {
                let child = key.child(layout, slot);
                let below = source.page(&child)?.ok_or_else(|| missing(&child))?;
                find_in(source, child, &below, here, out)?;
            }
        }
        addresses = rest;
        found = rest_out;
    }
    Ok(())
}

/// Every account of the tree read through `source` from `from` on, in address order, to
/// `visit` until it returns false. Reads only the pages that hold them.
pub fn walk(
    source: &impl PageSource,
    from: &Address,
    visit: &mut dyn FnMut(&Leaf) -> bool,
) -> Result<(), SourceError> {
    match source.page(&PageKey::ROOT)? {
        None => Ok(()),
        Some(root) => walk_page(source, PageKey::ROOT, &root, from, visit).map(|_| ()),
    }
}

/// `walk` within one page; Ok(false) once `visit` asked to stop.
fn walk_page(
    source: &impl PageSource,
    key: PageKey,
    page: &Page,
    from: &Address,
    visit: &mut dyn FnMut(&Leaf) -> bool,
) -> Result<bool, SourceError> {
    let layout = source.layout();
    // Slots wholly before `from` hold nothing wanted; the one on its path may.
    let first = if PageKey::on_path(from, key.depth()) == key {
        layout.slot_of(from, key.depth())
    } else {
        0
    };
    for index in first..layout.slots() {
        let going = match page.slot(index) {
            Slot::Empty => true,
            Slot::Leaf(leaf) => leaf.address < *from || visit(leaf),
            Slot::Child { .. } => {
                let child = key.child(layout, index);
                let below = source.page(&child)?.ok_or_else(|| missing(&child))?;
                walk_page(source, child, &below, from, visit)?
            }
        };
        if !going {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The slot for exactly `leaves` (sorted, distinct) below `key`, writing a page for each
/// subtree of two or more.
fn build(layout: Layout, key: PageKey, leaves: &[Leaf], work: &mut Work) -> Slot {
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
    leaves: &[Leaf],
    hashes: &mut usize,
    sink: &mut dyn FnMut(PageKey, Page),
) -> Slot {
    match leaves {
        [] => Slot::Empty,
        [leaf] => Slot::Leaf(*leaf),
        _ => {
            let mut slots = vec![Slot::Empty; layout.slots()];
            let mut rest = leaves;
            while let Some(first) = rest.first() {
                let slot = layout.slot_of(&first.address, key.depth());
                let end = rest.partition_point(|l| layout.slot_of(&l.address, key.depth()) <= slot);
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
pub fn build_tree(layout: Layout, leaves: &[Leaf], sink: &mut dyn FnMut(PageKey, Page)) -> Hash256 {
    match leaves {
        [] => EMPTY,
        [leaf] => {
            let mut root = Page::empty(layout);
            root.set_slot(layout.slot_of(&leaf.address, 0), Slot::Leaf(*leaf));
            sink(PageKey::ROOT, root);
            leaf.hash
        }
        _ => match build_into(layout, PageKey::ROOT, leaves, &mut 0, sink) {
            Slot::Child { hash } => hash,
            _ => unreachable!("two or more leaves build a page"),
        },
    }
}

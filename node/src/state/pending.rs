//! Changes on top of the state that nobody has kept yet: a branch being switched to, block
//! by block (each block reads what the ones before it changed), or a template being
//! built. Dropped, it leaves the state as it was; kept, it is committed whole.

use super::{StateChanges, StateDb};
use apiary_core::state::{tree, AccountSource, Layout, Page, PageKey, PageSource, SourceError};
use apiary_core::{Account, Address, Hash256, StateUndo};
use std::sync::Arc;

pub struct Pending<'a> {
    base: &'a StateDb,
    changes: StateChanges,
    root: Option<Hash256>,
}

impl<'a> Pending<'a> {
    pub fn new(base: &'a StateDb) -> Pending<'a> {
        Pending {
            base,
            changes: StateChanges::default(),
            root: None,
        }
    }

    /// Takes in one step's tree pages.
    pub fn apply(&mut self, tree: tree::TreeUpdate) {
        self.changes.pages.extend(tree.pages);
        self.root = Some(tree.root);
    }

    /// Undoes a block: its accounts back to what they were, and the tree with them.
    pub fn apply_undo(&mut self, undo: &StateUndo) -> Result<(), SourceError> {
        let mut accounts = undo.previous.clone();
        accounts.sort_unstable_by_key(|(a, _)| *a);
        let update = tree::update(&*self, &accounts)?;
        self.apply(update);
        Ok(())
    }

    /// The root after the changes so far.
    pub fn root(&self) -> Result<Hash256, SourceError> {
        match self.root {
            Some(root) => Ok(root),
            None => self.base.root(),
        }
    }

    /// What to commit.
    pub fn into_changes(self) -> StateChanges {
        self.changes
    }
}

impl AccountSource for Pending<'_> {
    fn account(&self, address: &Address) -> Result<Option<Account>, SourceError> {
        tree::account(self, address)
    }

    fn accounts(&self, addresses: &[Address]) -> Result<Vec<Option<Account>>, SourceError> {
        tree::accounts(self, addresses)
    }
}

impl PageSource for Pending<'_> {
    fn page(&self, key: &PageKey) -> Result<Option<Arc<Page>>, SourceError> {
        match self.changes.pages.get(key) {
            Some(page) => Ok(page.clone()),
            None => self.base.page(key),
        }
    }

    fn layout(&self) -> Layout {
        Layout::NODE
    }
}

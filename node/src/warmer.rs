//! Reading ahead of an import's chain thread when the state is colder than the cache.

use crate::chain::CheckedBlock;
use crate::state::StateDb;
use apiary_core::Address;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

/// A block of an import that read more pages than this from the store finds the state
/// cold: the blocks after it are read ahead.
pub(crate) const WARM_AFTER_READS: u64 = 256;
/// How many blocks ahead of the one connecting the warmer reads (more would evict pages
/// from the cache before their block comes).
const WARM_AHEAD: usize = 3;

/// Reads the state pages of the next blocks of an import on a thread of its own while the
/// chain connects the current one, once the state proves cold (a ledger larger than the
/// cache): the chain thread then finds them in memory instead of waiting for the store
/// one page at a time. Reads only, so it can never change what a block does.
pub(crate) struct Warmer {
    sender: Option<SyncSender<Vec<Address>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    cold: Cell<bool>,
    sent_up_to: Cell<usize>,
}

impl Warmer {
    pub(crate) fn start(ledger: Arc<StateDb>) -> Warmer {
        let (sender, receiver) = sync_channel::<Vec<Address>>(WARM_AHEAD);
        let thread = std::thread::Builder::new()
            .name("state-warmer".into())
            .spawn(move || {
                for addresses in receiver {
                    // A failed read is the chain's to report, when it reads the page.
                    let _ = apiary_core::state::AccountSource::accounts(&*ledger, &addresses);
                }
            })
            .ok();
        Warmer {
            sender: thread.is_some().then_some(sender),
            thread,
            cold: Cell::new(false),
            sent_up_to: Cell::new(0),
        }
    }

    pub(crate) fn cold(&self, cold: bool) {
        self.cold.set(cold);
    }

    /// Hands the warmer the checked blocks up to `WARM_AHEAD` after `next`, each once.
    pub(crate) fn ahead_of<E>(
        &self,
        next: usize,
        waiting: &BTreeMap<usize, Result<CheckedBlock, E>>,
    ) {
        let Some(sender) = self.sender.as_ref().filter(|_| self.cold.get()) else {
            return;
        };
        let mut position = self.sent_up_to.get().max(next + 1);
        while position <= next + WARM_AHEAD {
            let Some(Ok(checked)) = waiting.get(&position) else {
                break;
            };
            let addresses = apiary_core::validate::touched_addresses(checked.block());
            if sender.try_send(addresses).is_err() {
                break;
            }
            position += 1;
        }
        self.sent_up_to.set(position);
    }
}

impl Drop for Warmer {
    fn drop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

//! What the network tells the rest of the node (peers, sync progress, the clock
//! warning) and takes from it (operator commands), kept fresh by the event loop.

use crate::sync::SyncProgress;
use libp2p::{Multiaddr, PeerId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

pub use apiary_api::PeerInfo;

/// Operator commands (admin RPC), carried out by the network's event loop.
#[derive(Debug)]
pub enum NetCommand {
    /// Lift any ban on the address's peer and dial it.
    Connect(Multiaddr),
    /// Close every connection to the peer and refuse it for a while.
    Disconnect { peer: PeerId, ban: Duration },
}

/// What the network tells the rest of the node, kept fresh by the event loop.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) peers: HashMap<PeerId, PeerInfo>,
    /// Some peer has proved a chain with more work than ours.
    syncing: bool,
    progress: SyncProgress,
    clock_warning: Option<String>,
}

#[derive(Clone)]
pub struct NetworkHandle {
    pub peer_id: PeerId,
    pub(super) shared: Arc<Mutex<Shared>>,
    pub(super) commands: mpsc::UnboundedSender<NetCommand>,
}

impl NetworkHandle {
    pub(super) fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut peers: Vec<PeerInfo> = self.shared().peers.values().cloned().collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        peers
    }

    pub fn peer_count(&self) -> usize {
        self.shared().peers.len()
    }

    pub fn command(&self, command: NetCommand) -> bool {
        self.commands.send(command).is_ok()
    }

    /// Whether some peer has proved, with checked headers, a chain with more work.
    pub fn is_syncing(&self) -> bool {
        self.shared().syncing
    }

    pub fn sync_progress(&self) -> SyncProgress {
        self.shared().progress.clone()
    }

    /// Set when the blocks of several peers disagree with this machine's clock.
    pub fn clock_warning(&self) -> Option<String> {
        self.shared().clock_warning.clone()
    }

    pub(super) fn set_sync(&self, syncing: bool, progress: SyncProgress) {
        let mut shared = self.shared();
        shared.syncing = syncing;
        shared.progress = progress;
    }

    pub(super) fn set_clock_warning(&self, warning: Option<String>) {
        let mut shared = self.shared();
        if warning.is_some() && shared.clock_warning.is_none() {
            tracing::warn!(
                warning = warning.as_deref().unwrap_or(""),
                "this machine's clock"
            );
        }
        shared.clock_warning = warning;
    }
}

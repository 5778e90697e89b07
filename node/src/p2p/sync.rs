//! Catching up: what peers say of their chains, headers-first download (the plan is in
//! `download`), and the importer that connects downloaded blocks in order.

use super::*;

impl Service {
    pub(super) fn learn_status(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        status: Status,
    ) {
        if status.genesis != self.genesis {
            tracing::warn!(%peer, theirs = %status.genesis, ours = %self.genesis, "peer runs another chain; disconnecting");
            let _ = swarm.disconnect_peer_id(peer);
            return;
        }
        self.set_peer(peer, |info| info.height = Some(status.height.0));
        {
            let mut sync = self.handle.sync.lock().unwrap_or_else(|e| e.into_inner());
            if status.total_work > sync.best_work {
                sync.best_work = status.total_work;
                sync.best_known_height = status.height.0;
            }
        }
        self.peer_status.insert(peer, status);
        // A peer further ahead than before may take chunks of the download under way.
        self.advance_download(swarm);
        self.sync_from_best(swarm);
    }

    /// Starts downloading from the peer with the most work, if it has more than we do and
    /// nothing is being downloaded or imported.
    pub(super) fn sync_from_best(&mut self, swarm: &mut Swarm<Behaviour>) {
        // While the disk is full nothing could be stored: the next tick looks again.
        if self.download.is_some()
            || self.importing > 0
            || self.node.health().storage_full().is_some()
        {
            return;
        }
        let ours = self.node.lock().chain.tip_entry().total_work;
        let Some(peer) = self
            .peer_status
            .iter()
            .filter(|(_, s)| s.total_work > ours)
            .max_by_key(|(_, s)| s.total_work)
            .map(|(p, _)| *p)
        else {
            return;
        };
        self.download = Some(Download::new(peer));
        self.request_headers(swarm);
    }

    /// Asks the download's source for the headers after the last it sent (after our
    /// chain, at first).
    pub(super) fn request_headers(&mut self, swarm: &mut Swarm<Behaviour>) {
        let Some(download) = &mut self.download else {
            return;
        };
        let mut locator: Vec<BlockHash> = download.last_header.iter().map(|(h, _)| *h).collect();
        locator.extend(self.node.lock().chain.locator());
        download.awaiting_headers = true;
        send_request(
            swarm,
            &download.source,
            SyncRequest::GetHeaders {
                locator,
                max: MAX_HEADERS_PER_RESPONSE,
            },
        );
    }

    /// Headers from the source: each must follow the one before (the first, the last we
    /// had or a block we hold) and meet its own proof of work, so a peer cannot make us
    /// fetch bodies for headers that cost nothing. The rest is checked when they connect.
    pub(super) fn on_headers(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        headers: Vec<BlockHeader>,
    ) {
        let Some(download) = self.download.as_mut().filter(|d| d.source == peer) else {
            return;
        };
        if !download.awaiting_headers {
            return;
        }
        download.awaiting_headers = false;
        if headers.is_empty() {
            download.headers_done = true;
            self.advance_download(swarm);
            return;
        }
        let parent = match download.last_header {
            Some(last) => Some(last),
            None => {
                let chain = &self.node.lock().chain;
                chain
                    .entry(&headers[0].prev_hash)
                    .map(|e| (headers[0].prev_hash, e.header.height))
            }
        };
        let checked = parent
            .ok_or_else(|| "headers that build on a block we do not know".to_string())
            .and_then(|(mut prev, mut height)| {
                let mut hashes = Vec::with_capacity(headers.len());
                for header in &headers {
                    let hash = header.hash();
                    if header.prev_hash != prev || header.height != height.next() {
                        return Err(format!("header {hash} does not follow the one before"));
                    }
                    if !header.bits.to_target().is_ok_and(|t| t.is_met_by(&hash.0)) {
                        return Err(format!("header {hash} fails its proof of work"));
                    }
                    hashes.push(hash);
                    (prev, height) = (hash, header.height);
                }
                Ok(hashes)
            });
        match checked {
            Ok(hashes) => {
                download.add_headers(&hashes, headers[0].height);
                self.advance_download(swarm);
            }
            Err(why) => {
                self.download = None;
                self.peer_status.remove(&peer);
                self.penalise(swarm, peer, BAN_SCORE, &format!("sync: {why}"));
            }
        }
    }

    /// Bodies a peer sent for the chunk it was asked for.
    pub(super) fn on_bodies(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        blocks: Vec<Vec<u8>>,
    ) {
        let Some(download) = &mut self.download else {
            return;
        };
        let hash_of = |bytes: &[u8]| {
            (bytes.len() >= apiary_core::block::HEADER_BYTES).then(|| {
                BlockHash(apiary_core::hash::sha256d(
                    &bytes[..apiary_core::block::HEADER_BYTES],
                ))
            })
        };
        if let Err(why) = download.on_bodies(peer, blocks, hash_of) {
            self.penalise(swarm, peer, BAN_SCORE / 2, &format!("sync: {why}"));
        }
        self.advance_download(swarm);
    }

    /// Hands downloaded chunks to the importer in order, asks idle peers for the next ones,
    /// asks the source for more headers when few are left, and ends a finished download.
    pub(super) fn advance_download(&mut self, swarm: &mut Swarm<Behaviour>) {
        let Some(download) = &mut self.download else {
            return;
        };
        for batch in download.ready() {
            if let Some(imports) = &self.imports {
                self.importing += 1;
                let _ = imports.send(batch);
            }
        }
        // The source has at least the headers it sent, whatever its last status said.
        let source_reaches = download.last_header.map_or(Height(0), |(_, h)| h);
        let peers: Vec<(PeerId, Height)> = self
            .peer_status
            .iter()
            .map(|(peer, status)| {
                let reaches = if *peer == download.source {
                    status.height.max(source_reaches)
                } else {
                    status.height
                };
                (*peer, reaches)
            })
            .collect();
        for (peer, chunk) in download.assign(&peers, self.importing, Instant::now()) {
            let hashes = chunk.hashes;
            send_request(swarm, &peer, SyncRequest::GetBodies { hashes });
        }
        self.handle
            .sync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .download_peers = download.suppliers.len();
        if download.wants_headers() {
            self.request_headers(swarm);
        } else if download.is_finished() && self.importing == 0 {
            tracing::info!(
                peers = download.suppliers.len(),
                "download finished; bodies came from {} peer(s)",
                download.suppliers.len()
            );
            self.download = None;
            self.sync_from_best(swarm);
        }
    }

    /// A peer left or failed a request: its chunk goes to someone else; if it was the
    /// source of the headers, the download starts over from the best peer left.
    pub(super) fn lose_peer(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId) {
        let Some(download) = &mut self.download else {
            return;
        };
        download.peer_lost(&peer);
        if download.source == peer {
            self.download = None;
            self.peer_status.remove(&peer);
            self.sync_from_best(swarm);
        } else {
            self.advance_download(swarm);
        }
    }

    /// Updates blocks/s and ETA for `node_info`, and logs them every few seconds.
    pub(super) fn note_sync_progress(&mut self, received: u64) {
        let height = self.node.lock().chain.height().0;
        let mut sync = self.handle.sync.lock().unwrap_or_else(|e| e.into_inner());
        if received == 0 || height >= sync.best_known_height {
            self.sync_started = None;
            sync.blocks_per_s = 0.0;
            sync.eta_s = None;
            return;
        }
        let (started, total) = self.sync_started.get_or_insert((Instant::now(), 0));
        *total += received;
        let rate = *total as f64 / started.elapsed().as_secs_f64().max(1e-3);
        sync.blocks_per_s = (rate * 10.0).round() / 10.0;
        sync.eta_s = Some(((sync.best_known_height - height) as f64 / rate.max(1e-3)) as u64);
        if self.sync_logged.elapsed() >= Duration::from_secs(2) {
            self.sync_logged = Instant::now();
            tracing::info!(
                height,
                best_known = sync.best_known_height,
                blocks_per_s = sync.blocks_per_s,
                eta_s = sync.eta_s,
                "syncing"
            );
        }
    }
}

/// Connects a batch of blocks from `peer` in order (see `Node::connect_in_order`).
/// Returns how many were taken and the penalty the sender earned by the first refused one.
pub(super) fn connect_in_order(node: &Node, peer: PeerId, blocks: Vec<Vec<u8>>) -> (usize, u32) {
    let count = blocks.len();
    match node.connect_in_order(blocks) {
        Ok(()) => (count, 0),
        Err(stopped) => {
            tracing::warn!(%peer, error = %stopped.error, "block from sync refused");
            let penalty = match &*stopped.error {
                ImportError::Decode(_) => BAN_SCORE,
                ImportError::Chain(e) => e.misbehavior_score(),
            };
            (stopped.position, penalty)
        }
    }
}

//! Where the work comes from: the node's `templates` subscription (a new template the
//! moment the tip changes), or long polls of `mining_template` where no node offers
//! WebSocket. Each template is published with a generation number the hashing threads
//! compare against between batches.

use anyhow::{anyhow, Context, Result};
use apiary_client::Client;
use apiary_core::block::target_words;
use apiary_core::BlockHeader;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One template to search: the header (nonce 0) and its target.
pub struct Work {
    pub id: String,
    pub height: u64,
    pub header: BlockHeader,
    pub target: [u32; 8],
    /// What the block pays (reward and fees, base units), as the template says.
    pub reward: u64,
    /// A pool's job: its target is a share's, met many times; the search goes on after
    /// each find. (A node's template wants one block.)
    pub many: bool,
}

impl Work {
    pub fn from_template(template: &apiary_api::Template) -> Result<Work> {
        let id = template.id.clone();
        let bytes = hex::decode(&template.header).context("a header that is not hex")?;
        let header: BlockHeader = borsh::from_slice(&bytes).context("an undecodable header")?;
        let target = target_words(
            &header
                .bits
                .to_target()
                .map_err(|e| anyhow!("the template's bits: {e}"))?,
        );
        let reward = template.reward.0.base_units();
        Ok(Work {
            id,
            height: header.height.0,
            header,
            target,
            reward,
            many: false,
        })
    }
}

/// The current work, and a number that changes with it.
#[derive(Default)]
pub struct Board {
    current: Mutex<Option<Arc<Work>>>,
    generation: AtomicU64,
}

impl Board {
    pub fn publish(&self, work: Work) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(work));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Option<(u64, Arc<Work>)> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        // Read under the lock: a generation never names an older template than this.
        current
            .clone()
            .map(|work| (self.generation.load(Ordering::Acquire), work))
    }
}

/// Keeps `board` fed until the process ends: through a subscription when a node offers
/// one, else by long polling; a node that goes away is replaced by the next that answers.
/// `on_work` is told of each new template (for the log).
pub fn feed(client: &Client, address: &str, board: &Board, on_work: &dyn Fn(&Work, &str)) {
    let params = json!({"topic": "templates", "address": address});
    loop {
        if let Ok(mut subscription) = client.subscribe(params.clone()) {
            loop {
                match subscription.next_as::<apiary_api::Template>(Duration::from_secs(60)) {
                    Ok(Some(template)) => publish(board, &template, on_work, &subscription.url),
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
            continue;
        }
        // No node takes a socket: long polls, each answering when the tip changes.
        let mut longpoll_id: Option<String> = None;
        loop {
            let request = apiary_api::TemplateParams {
                address: address.to_string(),
                longpoll_id: longpoll_id.take(),
                txs: None,
            };
            match client.ask::<apiary_api::MiningTemplate>(&request) {
                Ok(template) => {
                    longpoll_id = Some(template.longpoll_id.clone());
                    publish(board, &template, on_work, "long poll");
                }
                Err(error) => {
                    eprintln!("no template: {error}; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                    break;
                }
            }
        }
    }
}

fn publish(
    board: &Board,
    template: &apiary_api::Template,
    on_work: &dyn Fn(&Work, &str),
    from: &str,
) {
    match Work::from_template(template) {
        Ok(work) => {
            on_work(&work, from);
            board.publish(work);
        }
        Err(error) => eprintln!("a template this miner cannot use: {error}"),
    }
}

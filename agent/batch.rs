//! The batcher: collects blocks of events into batches by count, size and age.
//!
//! A batch is sealed when it holds `max_events` events or `max_bytes` payload bytes, or when
//! its first block is `max_age` old. A block (the lines of one read, at most `max_events` of
//! them) is never split, so that each batch's per-rule mask counts are exact: when a block
//! would overflow the current batch, the batch is sealed first and the block starts the next
//! one. Only a single block larger than `max_bytes` (one read of long lines) makes a batch
//! larger than `max_bytes`.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::checkpoint::FileEntry;
use crate::config::BatchConfig;
use crate::seal::Content;
use crate::source::Block;

/// A batch ready to seal, with what becomes durable with it.
#[derive(Debug, Default)]
pub struct Batch {
    /// Events and their summary.
    pub content: Content,
    /// The last position of every file with lines in this batch.
    pub positions: BTreeMap<u64, FileEntry>,
    /// Finished files whose checkpoints go once this batch is durable.
    pub forgets: Vec<u64>,
    /// Blocks in the batch (for the pipeline's in-flight accounting).
    pub blocks: usize,
}

struct Current {
    batch: Batch,
    counts: Vec<u64>,
    started: Instant,
}

/// Accumulates blocks into batches.
pub struct Batcher {
    cfg: BatchConfig,
    ids: Vec<String>,
    cur: Option<Current>,
}

impl Batcher {
    /// `ids` are the engine's mask ids (`Redactor::ids`), which block counts are indexed by.
    pub fn new(cfg: BatchConfig, ids: Vec<String>) -> Batcher {
        Batcher {
            cfg,
            ids,
            cur: None,
        }
    }

    /// Adds a block; appends to `ready` the batches it completes.
    pub fn push(&mut self, block: Block, ready: &mut Vec<Batch>) {
        if let Some(c) = &self.cur {
            let b = &c.batch.content;
            if b.count > 0
                && (b.count + block.events > self.cfg.max_events
                    || (b.payload.len() + block.payload.len()) as u64 > self.cfg.max_bytes)
            {
                ready.extend(self.flush());
            }
        }
        let cur = self.cur.get_or_insert_with(|| Current {
            batch: Batch::default(),
            counts: Vec::new(),
            started: Instant::now(),
        });
        let b = &mut cur.batch;
        if block.events > 0 {
            if b.content.count == 0 {
                b.content.first_ts.clone_from(&block.ts);
            }
            b.content.last_ts = block.ts;
            b.content.count += block.events;
            b.content.payload.extend_from_slice(&block.payload);
        }
        if cur.counts.len() < block.counts.len() {
            cur.counts.resize(block.counts.len(), 0);
        }
        for (a, d) in cur.counts.iter_mut().zip(&block.counts) {
            *a += d;
        }
        if let Some(p) = block.position {
            b.positions.insert(p.lineage, p.entry);
        }
        if let Some(f) = block.forget {
            b.positions.remove(&f);
            b.forgets.push(f);
        }
        b.blocks += 1;
        if b.content.count >= self.cfg.max_events
            || b.content.payload.len() as u64 >= self.cfg.max_bytes
        {
            ready.extend(self.flush());
        }
    }

    /// When the current batch must be sealed, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.cur.as_ref().map(|c| c.started + self.cfg.max_age)
    }

    /// Takes the current batch, whatever its size.
    pub fn flush(&mut self) -> Option<Batch> {
        let mut cur = self.cur.take()?;
        cur.batch.content.masks = cur
            .counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| {
                let id = self.ids.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
                (id, n)
            })
            .collect();
        Some(cur.batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn block(events: u64, bytes: usize, counts: Vec<u64>) -> Block {
        Block {
            payload: vec![b'x'; bytes],
            events,
            ts: format!("t{events}"),
            counts,
            ..Block::default()
        }
    }

    #[test]
    fn seals_by_count_and_bytes_without_splitting_blocks() {
        let cfg = BatchConfig {
            max_events: 10,
            max_bytes: 1000,
            max_age: Duration::from_secs(5),
        };
        let mut b = Batcher::new(cfg, vec!["a".into(), "b".into()]);
        let mut ready = Vec::new();
        b.push(block(6, 100, vec![0, 2]), &mut ready);
        assert!(ready.is_empty());
        b.push(block(6, 100, vec![1, 0]), &mut ready);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].content.count, 6);
        assert_eq!(ready[0].content.masks.get("b"), Some(&2));
        assert_eq!(ready[0].content.masks.get("a"), None);
        b.push(block(4, 100, vec![]), &mut ready);
        assert_eq!(ready.len(), 2);
        assert_eq!(ready[1].content.count, 10);
        assert_eq!(ready[1].content.masks.get("a"), Some(&1));
        b.push(block(1, 5000, vec![]), &mut ready);
        assert_eq!(ready.len(), 3, "an oversized block is a batch of its own");
        assert!(b.flush().is_none());
    }
}

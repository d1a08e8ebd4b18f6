//! The write side: frames handed over by other threads go onto their connections' queues, and the
//! connections with something queued are written.

use super::Owner;
use crate::stats::{SendDrop, TcpClose};
use crate::tcp::conn::Role;
use std::time::Instant;

impl Owner {
    /// Moves frames handed over by other threads onto their connections.
    pub(super) fn take_handoff(&mut self) {
        let handoff = &self.shared.tcp;
        while let Some(batch) = handoff.pop() {
            let conn = self
                .by_addr
                .get(&batch.to)
                .copied()
                .and_then(|slot| Some((slot, self.conns.get_mut(slot)?.as_mut()?)));
            match conn {
                // Still connecting: `finish_connect` says hello itself; anything older is stale.
                Some((_, conn)) if conn.role == (Role::Dialed { connected: false }) => {
                    self.stats
                        .send_drop(SendDrop::TcpNotConnected, batch.packets as u64);
                    handoff.give_back(batch.frames);
                }
                Some((slot, conn)) => {
                    let dropped = conn.enqueue(batch.frames, batch.packets, handoff);
                    if dropped < batch.packets {
                        self.dirty.push(slot);
                    }
                    if dropped > 0 {
                        self.stats
                            .send_drop(SendDrop::TcpBackpressure, u64::from(dropped));
                    }
                }
                None => {
                    self.stats
                        .send_drop(SendDrop::TcpNotConnected, batch.packets as u64);
                    handoff.give_back(batch.frames);
                }
            }
        }
    }

    pub(super) fn write_dirty(&mut self, now: Instant) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for &slot in &dirty {
            let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if conn.role == (Role::Dialed { connected: false }) {
                continue;
            }
            if conn.flush(&self.shared.tcp).is_err() {
                self.close(slot, TcpClose::Error, now);
                continue;
            }
            conn.tune_unsent_limit(now);
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }
}

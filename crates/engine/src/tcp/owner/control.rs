//! Applying what the control plane asked ([`Control`]): a new or closed listener, the fwmark, and the
//! set of `tcp://` endpoints to keep a connection to.

use super::{Dial, LISTENER, Owner};
use crate::stats::TcpClose;
use crate::tcp::Control;
use mio::Interest;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Owner {
    pub(super) fn apply_control(&mut self, now: Instant) {
        if !self.shared.tcp_control_dirty.swap(false, Ordering::Acquire) {
            return;
        }
        let control = std::mem::take(
            &mut *self
                .shared
                .tcp_control
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let Control {
            listener,
            fwmark,
            dial_targets,
        } = control;
        if let Some(mark) = fwmark {
            self.fwmark = mark;
            for conn in self.conns.iter().flatten() {
                let _ = fastwire_io::tcp::set_fwmark(&conn.stream, mark);
            }
            // SYN-ACKs leave with the listener's mark.
            if let Some(listener) = &self.listener {
                let _ = fastwire_io::tcp::set_fwmark(listener, mark);
            }
        }
        if let Some(listener) = listener {
            if let Some(mut old) = self.listener.take() {
                let _ = self.poll.registry().deregister(&mut old);
            }
            if let Some(std_listener) = listener {
                let mut l = mio::net::TcpListener::from_std(std_listener);
                match self
                    .poll
                    .registry()
                    .register(&mut l, LISTENER, Interest::READABLE)
                {
                    Ok(()) => {
                        self.listener = Some(l);
                        self.accept(now);
                    }
                    Err(e) => tracing::error!("cannot watch the TCP listener: {e}"),
                }
            }
        }
        if let Some(targets) = dial_targets {
            let wanted: HashSet<SocketAddr> = targets.into_iter().collect();
            let gone: Vec<SocketAddr> = self
                .dials
                .keys()
                .filter(|a| !wanted.contains(a))
                .copied()
                .collect();
            for target in gone {
                if let Some(slot) = self.dials.remove(&target).and_then(|d| d.slot) {
                    self.close(slot, TcpClose::Unconfigured, now);
                }
            }
            for target in wanted {
                self.dials.entry(target).or_insert(Dial {
                    slot: None,
                    failures: 0,
                    next_attempt: now,
                    session_worked: true,
                });
            }
            self.next_housekeeping = Some(now);
        }
    }
}

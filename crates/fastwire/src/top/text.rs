//! The plain-text frame `fastwire top` prints when stdout is not a terminal (a pipe, a log, a script).

use std::fmt::Write as _;

use super::model::{View, age, bits_per_second};

pub fn render(iface: &str, view: &View, interval_seconds: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", headline(iface, view, interval_seconds));
    let _ = writeln!(
        out,
        "{:<44}  {:<24}  {:>13}  {:>13}  {:>9}",
        "PEER", "ENDPOINT", "RECEIVE", "TRANSMIT", "HANDSHAKE"
    );
    for p in &view.peers {
        let _ = writeln!(
            out,
            "{:<44}  {:<24}  {:>13}  {:>13}  {:>9}",
            p.public_key,
            p.endpoint,
            bits_per_second(p.rx_bits_per_second),
            bits_per_second(p.tx_bits_per_second),
            age(p.handshake_age),
        );
    }
    if view.peer_count > view.peers.len() {
        let _ = writeln!(
            out,
            "(and {} more peers)",
            view.peer_count - view.peers.len()
        );
    }
    if view.drops_per_second.is_empty() {
        let _ = writeln!(out, "drops/s: none");
    } else {
        let drops: Vec<String> = view
            .drops_per_second
            .iter()
            .map(|(reason, rate)| format!("{reason} {rate:.1}"))
            .collect();
        let _ = writeln!(out, "drops/s: {}", drops.join(", "));
    }
    if !view.workers.is_empty() {
        let _ = writeln!(
            out,
            "{:<10}  {:>10}  {:>10}  {:>9}  {:>9}",
            "WORKER", "RX pkt/s", "TX pkt/s", "RX batch", "TX batch"
        );
        for w in &view.workers {
            let _ = writeln!(
                out,
                "{:<10}  {:>10.0}  {:>10.0}  {:>9.1}  {:>9.1}",
                w.label, w.rx_packets_per_second, w.tx_packets_per_second, w.rx_batch, w.tx_batch
            );
        }
    }
    out
}

/// `fastwire top: wg0 — 3 peers, 1 with a session — sorted by receive rate — every 1 s`.
pub fn headline(iface: &str, view: &View, interval_seconds: f64) -> String {
    format!(
        "fastwire top: {iface} — {} peer{}, {} with a session — sorted by {} — every {interval_seconds} s",
        view.peer_count,
        if view.peer_count == 1 { "" } else { "s" },
        view.peers_with_session,
        view.sort.name(),
    )
}

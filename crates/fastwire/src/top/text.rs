//! The plain-text frame `fastwire top` prints when stdout is not a terminal (a pipe, a log, a script).

use std::fmt::Write as _;

use super::model::{View, age, bits_per_second};

/// Column widths: negative is left-aligned (text), positive right-aligned (numbers).
const PEER_COLUMNS: [i8; 5] = [-44, -24, 13, 13, 9];
const WORKER_COLUMNS: [i8; 5] = [-10, 10, 10, 9, 9];

/// One row of a table, its cells two spaces apart.
fn line(out: &mut String, widths: &[i8], cells: &[&str]) {
    let row: Vec<String> = widths
        .iter()
        .zip(cells)
        .map(|(&width, cell)| {
            let w = usize::from(width.unsigned_abs());
            if width < 0 {
                format!("{cell:<w$}")
            } else {
                format!("{cell:>w$}")
            }
        })
        .collect();
    let _ = writeln!(out, "{}", row.join("  "));
}

pub fn render(iface: &str, view: &View, interval_seconds: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", headline(iface, view, interval_seconds));
    line(
        &mut out,
        &PEER_COLUMNS,
        &["PEER", "ENDPOINT", "RECEIVE", "TRANSMIT", "HANDSHAKE"],
    );
    for p in &view.peers {
        let rx = bits_per_second(p.rx_bits_per_second);
        let tx = bits_per_second(p.tx_bits_per_second);
        let age = age(p.handshake_age);
        line(
            &mut out,
            &PEER_COLUMNS,
            &[&p.public_key, &p.endpoint, &rx, &tx, &age],
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
        let header = ["WORKER", "RX pkt/s", "TX pkt/s", "RX batch", "TX batch"];
        line(&mut out, &WORKER_COLUMNS, &header);
        for w in &view.workers {
            let cells = [
                w.label.clone(),
                format!("{:.0}", w.rx_packets_per_second),
                format!("{:.0}", w.tx_packets_per_second),
                format!("{:.1}", w.rx_batch),
                format!("{:.1}", w.tx_batch),
            ];
            line(
                &mut out,
                &WORKER_COLUMNS,
                &cells.each_ref().map(String::as_str),
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

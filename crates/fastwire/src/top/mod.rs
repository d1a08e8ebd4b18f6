//! `fastwire top [IFACE]`: a live view of one interface, read through its UAPI socket once per
//! interval — per-peer rates, handshake ages, drops per second by reason, each worker's load. A terminal
//! gets the interactive view ([`tui`]); anything else (a pipe, a file) gets plain frames ([`text`]).

mod model;
mod text;
mod tui;

#[cfg(test)]
mod tests;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

pub use model::SortBy;

use crate::uapi::client;

pub struct Options {
    pub interval: Duration,
    /// Plain frames to print before exiting (text mode only; `None`: until interrupted).
    pub count: Option<usize>,
    /// Peers per plain frame (the terminal view shows as many as fit).
    pub max_peers: usize,
    pub sort: SortBy,
}

/// Reads one interface.
pub struct Sampler {
    pub iface: String,
    started: Instant,
}

impl Sampler {
    pub fn sample(&mut self) -> Result<model::Sample, String> {
        let snapshot = client::get(&self.iface)?;
        // wireguard-go does not know the verb: its view simply has no drops and no workers.
        let stats = client::stats(&self.iface).unwrap_or_default();
        Ok(model::Sample {
            at: self.started.elapsed(),
            wall: SystemTime::now(),
            snapshot,
            stats,
        })
    }
}

pub fn run(iface: Option<&str>, options: &Options) -> Result<(), String> {
    let iface = match iface {
        Some(iface) => iface.to_string(),
        None => only_interface()?,
    };
    let mut sampler = Sampler {
        iface,
        started: Instant::now(),
    };
    if std::io::stdout().is_terminal() && options.count.is_none() {
        tui::run(&mut sampler, options)
    } else {
        plain(&mut sampler, options)
    }
}

/// With no name given: the one interface there is.
fn only_interface() -> Result<String, String> {
    let mut ifaces =
        client::list_interfaces().map_err(|e| format!("cannot list interfaces: {e}"))?;
    match ifaces.len() {
        0 => Err(format!(
            "no interfaces: nothing serves a UAPI socket in {}",
            crate::uapi::SOCKET_DIR
        )),
        1 => Ok(ifaces.remove(0)),
        _ => Err(format!(
            "several interfaces ({}): name one, e.g. fastwire top {}",
            ifaces.join(", "),
            ifaces[0]
        )),
    }
}

/// One frame per interval, each with the rates of the interval before it.
fn plain(sampler: &mut Sampler, options: &Options) -> Result<(), String> {
    let mut before = sampler.sample()?;
    let mut printed = 0;
    let mut stdout = std::io::stdout().lock();
    while options.count.is_none_or(|n| printed < n) {
        std::thread::sleep(options.interval);
        let now = sampler.sample()?;
        let view = model::view(Some(&before), &now, options.sort, options.max_peers);
        let frame = text::render(&sampler.iface, &view, options.interval.as_secs_f64());
        let separator = if printed > 0 { "\n" } else { "" };
        // A closed pipe (`fastwire top | head`) ends the view quietly.
        if write!(stdout, "{separator}{frame}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Ok(());
        }
        printed += 1;
        before = now;
    }
    Ok(())
}

//! The demo's measurements, each run by helpers inside the namespaces: ping and the bulk transfer
//! with a ping alongside it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::interrupt::Interrupt;
use super::process::Spawned;
use super::protocol::HelperEvent;
use super::report::ProgressLine;
use super::tunnel::{End, in_namespace, this_binary};

const BULK_PORT: u16 = 5201;
/// Beyond the transfer itself: connect, the sink's 10 s stall limit, the confirmation.
const BULK_SLACK: Duration = Duration::from_secs(25);
const HELPER_SLACK: Duration = Duration::from_secs(5);
const LOADED_PING_INTERVAL_MS: u64 = 200;

/// Round-trip times from one run of the ping helper.
#[derive(Debug, Default)]
pub struct PingSummary {
    pub rtts: Vec<Duration>,
    pub lost: u64,
    /// When the first echo request left.
    pub started: Option<SystemTime>,
}

impl PingSummary {
    fn absorb(&mut self, line: &str) {
        match HelperEvent::parse(line) {
            Some(HelperEvent::PingStart { unix_us }) => {
                self.started = Some(UNIX_EPOCH + Duration::from_micros(unix_us));
            }
            Some(HelperEvent::PingReply { rtt_us, .. }) => {
                self.rtts.push(Duration::from_micros(rtt_us))
            }
            Some(HelperEvent::PingLost { .. }) => self.lost += 1,
            _ => {}
        }
    }

    pub fn sent(&self) -> u64 {
        self.rtts.len() as u64 + self.lost
    }

    pub fn min(&self) -> Option<Duration> {
        self.rtts.iter().min().copied()
    }

    pub fn max(&self) -> Option<Duration> {
        self.rtts.iter().max().copied()
    }

    pub fn avg(&self) -> Option<Duration> {
        let count = u32::try_from(self.rtts.len()).ok().filter(|&n| n > 0)?;
        Some(self.rtts.iter().sum::<Duration>() / count)
    }
}

/// Runs `demo-helper ARGS` inside `end`'s namespace.
fn helper(name: &str, end: End, args: &[&str]) -> Result<Spawned, String> {
    let mut full = vec!["demo-helper"];
    full.extend_from_slice(args);
    Spawned::start(name, in_namespace(end.namespace, this_binary()?, &full))
}

fn start_ping(
    from: End,
    to: Ipv4Addr,
    count: u64,
    interval_ms: u64,
    timeout_ms: u64,
) -> Result<Spawned, String> {
    let (target, count, interval, timeout) = (
        to.to_string(),
        count.to_string(),
        interval_ms.to_string(),
        timeout_ms.to_string(),
    );
    let args = [
        "ping",
        &target,
        "--count",
        &count,
        "--interval-ms",
        &interval,
        "--timeout-ms",
        &timeout,
    ];
    helper(&format!("ping {to}"), from, &args)
}

/// Pings `to` from inside `from` and waits for all the answers.
pub fn ping(
    from: End,
    to: Ipv4Addr,
    count: u64,
    interval_ms: u64,
    timeout_ms: u64,
    interrupt: &Interrupt,
) -> Result<PingSummary, String> {
    let mut pinger = start_ping(from, to, count, interval_ms, timeout_ms)?;
    let limit = Duration::from_millis(count * (interval_ms + timeout_ms)) + HELPER_SLACK;
    let status = pinger.wait(limit, interrupt)?;
    let mut summary = PingSummary::default();
    pinger
        .remaining_lines()
        .iter()
        .for_each(|line| summary.absorb(line));
    pinger.expect_success(status)?;
    Ok(summary)
}

pub struct BulkOutcome {
    pub bytes: u64,
    pub elapsed: Duration,
    pub loaded_ping: PingSummary,
}

/// A verified TCP transfer from `from` to `to` for `seconds` with a live progress line, while a
/// second helper pings across the same tunnel to measure latency under load.
pub fn bulk(
    from: End,
    to: End,
    seconds: u64,
    interrupt: &Interrupt,
) -> Result<BulkOutcome, String> {
    let listen = SocketAddr::from((to.overlay, BULK_PORT)).to_string();
    let mut sink = helper("sink", to, &["sink", "--listen", &listen])?;
    let listening = interrupt.wait_for(HELPER_SLACK, || {
        if let Some(status) = sink.exit_status()? {
            return Err(sink.failure(status));
        }
        let lines = sink.pending_lines();
        Ok(lines
            .iter()
            .any(|l| HelperEvent::parse(l) == Some(HelperEvent::Listening))
            .then_some(()))
    })?;
    listening.ok_or("the sink did not start listening")?;

    let secs = seconds.to_string();
    let mut source = helper(
        "source",
        from,
        &["source", "--connect", &listen, "--seconds", &secs],
    )?;
    // Stop pinging a little before the transfer ends, so every echo meets a loaded tunnel.
    let ping_count = (seconds * 1000 / LOADED_PING_INTERVAL_MS)
        .saturating_sub(3)
        .max(1);
    let mut pinger = start_ping(from, to.overlay, ping_count, LOADED_PING_INTERVAL_MS, 1000)?;

    let mut report = SourceReport {
        progress: ProgressLine::new(),
        sent: None,
    };
    let mut loaded_ping = PingSummary::default();
    let finished = interrupt.wait_for(Duration::from_secs(seconds) + BULK_SLACK, || {
        source
            .pending_lines()
            .iter()
            .for_each(|line| report.absorb(line));
        pinger
            .pending_lines()
            .iter()
            .for_each(|line| loaded_ping.absorb(line));
        source.exit_status()
    });
    let outcome = finished.and_then(|status| {
        let source_status = status.ok_or("the transfer did not finish in time")?;
        source
            .remaining_lines()
            .iter()
            .for_each(|line| report.absorb(line));
        let sink_status = sink.wait(HELPER_SLACK, interrupt)?;
        // A corrupt stream is the sink's finding; report it rather than the source's broken pipe.
        sink.expect_success(sink_status)?;
        source.expect_success(source_status)?;
        report
            .sent
            .ok_or_else(|| "the source did not report what it sent".to_string())
    });
    let (bytes, elapsed) = match outcome {
        Ok(sent) => sent,
        Err(e) => {
            report.progress.abandon();
            return Err(e);
        }
    };
    report.progress.finish(bytes, elapsed);
    let ping_status = pinger.wait(HELPER_SLACK, interrupt)?;
    pinger
        .remaining_lines()
        .iter()
        .for_each(|line| loaded_ping.absorb(line));
    pinger.expect_success(ping_status)?;
    Ok(BulkOutcome {
        bytes,
        elapsed,
        loaded_ping,
    })
}

/// What the source helper said: progress as it goes, then the confirmed total.
struct SourceReport {
    progress: ProgressLine,
    sent: Option<(u64, Duration)>,
}

impl SourceReport {
    fn absorb(&mut self, line: &str) {
        match HelperEvent::parse(line) {
            Some(HelperEvent::Progress { ms, bytes }) => self.progress.update(ms, bytes),
            Some(HelperEvent::Sent { bytes, us }) => {
                self.sent = Some((bytes, Duration::from_micros(us)))
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summary_collects_helper_lines() {
        let mut summary = PingSummary::default();
        for line in [
            "ping-start unix_us=1000000",
            "ping-reply seq=0 rtt_us=300",
            "ping-lost seq=1",
            "noise",
        ] {
            summary.absorb(line);
        }
        summary.absorb("ping-reply seq=2 rtt_us=100");
        assert_eq!(summary.started, Some(UNIX_EPOCH + Duration::from_secs(1)));
        assert_eq!(summary.sent(), 3);
        assert_eq!(summary.min(), Some(Duration::from_micros(100)));
        assert_eq!(summary.avg(), Some(Duration::from_micros(200)));
        assert_eq!(summary.max(), Some(Duration::from_micros(300)));
        assert_eq!(PingSummary::default().avg(), None);
    }
}

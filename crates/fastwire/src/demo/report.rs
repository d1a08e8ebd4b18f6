//! How the demo talks: numbered steps, the live progress line and the results block.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::interrupt::Interrupt;
use super::measure::{BulkOutcome, PingSummary};

/// Prints `[n/total] what ... outcome`, one line per step.
pub struct Steps<'a> {
    done: usize,
    total: usize,
    interrupt: &'a Interrupt,
}

impl<'a> Steps<'a> {
    pub fn new(total: usize, interrupt: &'a Interrupt) -> Self {
        Self {
            done: 0,
            total,
            interrupt,
        }
    }

    /// Runs one step; its closure returns the outcome to print after the label.
    pub fn run<T>(
        &mut self,
        what: &str,
        body: impl FnOnce() -> Result<(T, String), String>,
    ) -> Result<T, String> {
        self.done += 1;
        print!("[{}/{}] {what} ... ", self.done, self.total);
        let _ = std::io::stdout().flush();
        let result = body();
        match &result {
            Ok((_, outcome)) => println!("{outcome}"),
            // Ctrl-C also reaches a running `ip`, whose failure is then not the real story.
            Err(_) if self.interrupt.is_set() => println!("interrupted"),
            Err(_) => println!("failed"),
        }
        result.map(|(value, _)| value)
    }

    /// Starts a step whose body prints its own lines below the label.
    pub fn heading(&mut self, what: &str) {
        self.done += 1;
        println!("[{}/{}] {what}", self.done, self.total);
    }
}

/// The `\r`-rewritten transfer line; only drawn on a terminal, so captured output stays clean.
pub struct ProgressLine {
    live: bool,
    last: (u64, u64),
}

const INDENT: &str = "      ";

impl ProgressLine {
    pub fn new() -> Self {
        Self {
            live: std::io::stdout().is_terminal(),
            last: (0, 0),
        }
    }

    /// The source reported `bytes` written after `ms`; the rate shown is since the previous report.
    pub fn update(&mut self, ms: u64, bytes: u64) {
        let (last_ms, last_bytes) = std::mem::replace(&mut self.last, (ms, bytes));
        if !self.live || ms <= last_ms {
            return;
        }
        let rate = bits_per_second(
            bytes.saturating_sub(last_bytes),
            Duration::from_millis(ms - last_ms),
        );
        print!(
            "\r{INDENT}{:>5.1} s  {:>9} sent  {:>12}",
            ms as f64 / 1000.0,
            mib(bytes),
            rate_text(rate)
        );
        let _ = std::io::stdout().flush();
    }

    /// Replaces the live line with the final totals.
    pub fn finish(&self, bytes: u64, elapsed: Duration) {
        let rate = rate_text(bits_per_second(bytes, elapsed));
        let clear = if self.live { "\r\x1b[K" } else { "" };
        println!(
            "{clear}{INDENT}{:>5.1} s  {:>9} sent  {rate:>12} average",
            elapsed.as_secs_f64(),
            mib(bytes)
        );
    }

    /// Ends the live line so the next output starts on a fresh line.
    pub fn abandon(&self) {
        if self.live && self.last.0 > 0 {
            println!();
        }
    }
}

pub fn bits_per_second(bytes: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        bytes as f64 * 8.0 / elapsed.as_secs_f64()
    }
}

pub fn rate_text(bits_per_second: f64) -> String {
    if bits_per_second >= 1e9 {
        format!("{:.2} Gbit/s", bits_per_second / 1e9)
    } else {
        format!("{:.0} Mbit/s", bits_per_second / 1e6)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / f64::from(1 << 30))
    } else {
        mib(bytes)
    }
}

pub fn ms_text(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// `0.21 / 0.30 / 0.52 ms (min/avg/max), 0 of 10 lost`.
pub fn ping_text(ping: &PingSummary) -> String {
    match (ping.min(), ping.avg(), ping.max()) {
        (Some(min), Some(avg), Some(max)) => format!(
            "{} / {} / {} (min/avg/max), {} of {} lost",
            ms_value(min),
            ms_value(avg),
            ms_text(max),
            ping.lost,
            ping.sent()
        ),
        _ => format!("no reply, {} of {} lost", ping.lost, ping.sent()),
    }
}

fn ms_value(duration: Duration) -> String {
    ms_text(duration).trim_end_matches(" ms").to_string()
}

pub struct Results<'a> {
    pub tunnel: &'a str,
    pub handshake: Duration,
    pub idle_ping: &'a PingSummary,
    pub bulk: &'a BulkOutcome,
}

pub fn print_results(results: &Results<'_>) {
    let bulk = results.bulk;
    println!();
    println!(
        "results ({} tunnel, one pair of namespaces on this machine)",
        results.tunnel
    );
    println!(
        "  throughput        {:<12} {} in {:.2} s, every byte verified",
        rate_text(bits_per_second(bulk.bytes, bulk.elapsed)),
        size_text(bulk.bytes),
        bulk.elapsed.as_secs_f64()
    );
    println!("  ping, idle        {}", ping_text(results.idle_ping));
    println!("  ping, under load  {}", ping_text(&bulk.loaded_ping));
    println!("  handshake         {}", ms_text(results.handshake));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_pick_a_readable_unit() {
        assert_eq!(rate_text(2.071e9), "2.07 Gbit/s");
        assert_eq!(rate_text(612.4e6), "612 Mbit/s");
        assert_eq!(
            rate_text(bits_per_second(125_000_000, Duration::from_secs(1))),
            "1.00 Gbit/s"
        );
        assert_eq!(bits_per_second(1, Duration::ZERO), 0.0);
    }

    #[test]
    fn sizes_switch_to_gib() {
        assert_eq!(size_text(100 << 20), "100.0 MiB");
        assert_eq!(size_text(3 << 29), "1.50 GiB");
    }

    #[test]
    fn milliseconds_keep_useful_precision() {
        assert_eq!(ms_text(Duration::from_micros(215)), "0.21 ms");
        assert_eq!(ms_text(Duration::from_micros(12_345)), "12.3 ms");
    }

    #[test]
    fn ping_line_reads_naturally() {
        let mut ping = PingSummary::default();
        assert_eq!(ping_text(&ping), "no reply, 0 of 0 lost");
        ping.rtts = vec![Duration::from_micros(200), Duration::from_micros(400)];
        ping.lost = 1;
        assert_eq!(
            ping_text(&ping),
            "0.20 / 0.30 / 0.40 ms (min/avg/max), 1 of 3 lost"
        );
    }
}

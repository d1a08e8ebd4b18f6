//! The one-line messages the helpers print on stdout for the demo to read: `word key=value ...`.

use std::fmt;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelperEvent {
    /// The ping helper sent its first request at this wall-clock time (µs since the Unix epoch).
    PingStart {
        unix_us: u64,
    },
    PingReply {
        seq: u64,
        rtt_us: u64,
    },
    PingLost {
        seq: u64,
    },
    /// The sink is ready for the source to connect.
    Listening,
    /// The source has written `bytes` after `ms` milliseconds.
    Progress {
        ms: u64,
        bytes: u64,
    },
    /// The sink confirmed `bytes` verified bytes, `us` microseconds after the first write.
    Sent {
        bytes: u64,
        us: u64,
    },
    /// The sink received and verified `bytes`.
    Received {
        bytes: u64,
    },
}

impl fmt::Display for HelperEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelperEvent::PingStart { unix_us } => write!(f, "ping-start unix_us={unix_us}"),
            HelperEvent::PingReply { seq, rtt_us } => {
                write!(f, "ping-reply seq={seq} rtt_us={rtt_us}")
            }
            HelperEvent::PingLost { seq } => write!(f, "ping-lost seq={seq}"),
            HelperEvent::Listening => write!(f, "listening"),
            HelperEvent::Progress { ms, bytes } => write!(f, "progress ms={ms} bytes={bytes}"),
            HelperEvent::Sent { bytes, us } => write!(f, "sent bytes={bytes} us={us}"),
            HelperEvent::Received { bytes } => write!(f, "received bytes={bytes}"),
        }
    }
}

impl HelperEvent {
    /// Parses a line printed by `Display`; anything else is `None`.
    pub fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let kind = words.next()?;
        let fields: Vec<(&str, u64)> = words
            .map(|w| {
                w.split_once('=')
                    .and_then(|(k, v)| Some((k, v.parse().ok()?)))
            })
            .collect::<Option<_>>()?;
        let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        Some(match kind {
            "ping-start" => HelperEvent::PingStart {
                unix_us: get("unix_us")?,
            },
            "ping-reply" => HelperEvent::PingReply {
                seq: get("seq")?,
                rtt_us: get("rtt_us")?,
            },
            "ping-lost" => HelperEvent::PingLost { seq: get("seq")? },
            "listening" => HelperEvent::Listening,
            "progress" => HelperEvent::Progress {
                ms: get("ms")?,
                bytes: get("bytes")?,
            },
            "sent" => HelperEvent::Sent {
                bytes: get("bytes")?,
                us: get("us")?,
            },
            "received" => HelperEvent::Received {
                bytes: get("bytes")?,
            },
            _ => return None,
        })
    }
}

/// Prints `event` as one line and flushes, so the demo sees it at once.
pub fn emit(out: &mut impl Write, event: HelperEvent) -> Result<(), String> {
    writeln!(out, "{event}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips() {
        let events = [
            HelperEvent::PingStart {
                unix_us: 1_700_000_000_000_000,
            },
            HelperEvent::PingReply {
                seq: 3,
                rtt_us: 215,
            },
            HelperEvent::PingLost { seq: 4 },
            HelperEvent::Listening,
            HelperEvent::Progress {
                ms: 250,
                bytes: 1 << 30,
            },
            HelperEvent::Sent {
                bytes: 12345,
                us: 5_000_123,
            },
            HelperEvent::Received { bytes: 12345 },
        ];
        for event in events {
            assert_eq!(HelperEvent::parse(&event.to_string()), Some(event));
        }
    }

    #[test]
    fn rejects_other_lines() {
        for line in [
            "",
            "progress ms=1",
            "progress ms=x bytes=2",
            "hello",
            "sent bytes=1 us",
        ] {
            assert_eq!(HelperEvent::parse(line), None, "{line:?}");
        }
    }
}

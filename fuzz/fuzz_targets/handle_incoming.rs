//! `Device::handle_incoming` on a device with a peer, a live session and a pending handshake, fed a
//! sequence of real messages — data sealed by the peer, its initiation, the response and cookie reply to
//! the pending handshake — each possibly edited, replayed, reordered, or sent from another address, with
//! time passing in between. Invariants: no panic; a message that was edited is never accepted as data;
//! an unedited data message is accepted at most once (the replay window).
#![no_main]

use arbitrary::Arbitrary;
use fastwire_fuzz::{A_ADDR, Fixture, inner_packet};
use fastwire_proto::{Endpoint, Incoming, TimerSchedule};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Arbitrary, Debug)]
enum Edit {
    Flip { at: u16, mask: u8 },
    Truncate { len: u16 },
    Append { bytes: Vec<u8> },
    SetByte { at: u16, value: u8 },
}

#[derive(Arbitrary, Debug)]
enum Template {
    Initiation,
    Response,
    CookieReply,
    /// Data sealed by A now: IPv4/IPv6, inner source and destination (last byte), body.
    Data {
        v6: bool,
        src: u8,
        dst: u8,
        body: Vec<u8>,
    },
    /// An earlier message again (a replay, or out of order).
    Earlier {
        which: u8,
    },
    Raw {
        bytes: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum From {
    Peer,
    /// Roaming, or a spoofed source.
    Elsewhere {
        ip: [u8; 4],
        port: u16,
    },
    Tcp,
}

#[derive(Arbitrary, Debug)]
struct Step {
    message: Template,
    edits: Vec<Edit>,
    from: From,
    /// Time passing before the step, in milliseconds (up to ~65 s, so timers and expiry move).
    advance_ms: u16,
}

fn apply(msg: &mut Vec<u8>, edits: &[Edit]) -> bool {
    let before = msg.clone();
    for e in edits.iter().take(8) {
        match e {
            Edit::Flip { at, mask } => {
                if let Some(b) = msg.get_mut(*at as usize % before.len().max(1)) {
                    *b ^= mask;
                }
            }
            Edit::Truncate { len } => msg.truncate(*len as usize),
            Edit::Append { bytes } => msg.extend_from_slice(&bytes[..bytes.len().min(256)]),
            Edit::SetByte { at, value } => {
                if let Some(b) = msg.get_mut(*at as usize % before.len().max(1)) {
                    *b = *value;
                }
            }
        }
    }
    *msg != before
}

/// Handshakes (DH) dominate a fresh fixture's cost: one is reused for a few inputs.
const INPUTS_PER_FIXTURE: u32 = 32;

thread_local! {
    static FIXTURE: RefCell<(u32, Option<Fixture>)> = const { RefCell::new((0, None)) };
}

fuzz_target!(|steps: Vec<Step>| {
    FIXTURE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.1.is_none() || slot.0 >= INPUTS_PER_FIXTURE {
            *slot = (0, Some(Fixture::new()));
        }
        slot.0 += 1;
        let f = slot.1.as_ref().unwrap();
        let mut now = f.now;
        let mut sent: Vec<(Vec<u8>, bool)> = Vec::new();
        let mut accepted_once: Vec<Vec<u8>> = Vec::new();
        let mut reply = [0u8; 256];
        let mut timers = TimerSchedule::default();
        for step in steps.iter().take(64) {
            now += Duration::from_millis(step.advance_ms as u64);
            let (mut msg, fresh_data) = match &step.message {
                Template::Initiation => (f.initiation.clone(), false),
                Template::Response => (f.response.clone(), false),
                Template::CookieReply => (f.cookie_reply.clone(), false),
                Template::Data { v6, src, dst, body } => {
                    let packet = inner_packet(*v6, *src, *dst, &body[..body.len().min(1400)]);
                    match f.seal_from_a(&packet, now) {
                        Some(m) => (m, true),
                        None => continue,
                    }
                }
                Template::Earlier { which } => {
                    match sent.get(*which as usize % sent.len().max(1)) {
                        Some((m, _)) => (m.clone(), false),
                        None => continue,
                    }
                }
                Template::Raw { bytes } => (bytes[..bytes.len().min(2048)].to_vec(), false),
            };
            let edited = apply(&mut msg, &step.edits);
            let src = match step.from {
                From::Peer => Endpoint::udp(A_ADDR),
                From::Elsewhere { ip, port } => Endpoint::udp(SocketAddr::from((ip, port))),
                From::Tcp => Endpoint::tcp(A_ADDR),
            };
            let original = msg.clone();
            let got = f.b.dev.handle_incoming(src, &mut msg, now, &mut reply);
            if let Incoming::Data { .. } | Incoming::Keepalive { .. } = got {
                assert!(
                    !edited || !fresh_data,
                    "an edited data message was accepted: {step:?}"
                );
                assert!(
                    !accepted_once.contains(&original),
                    "the same data message was accepted twice (replay): {step:?}"
                );
                accepted_once.push(original.clone());
            }
            sent.push((original, fresh_data));
            // Follow-ups a real engine would do, so timers and rekeys move too.
            f.b.dev.run_timers(&mut timers, now, |_, _| {});
        }
    });
});

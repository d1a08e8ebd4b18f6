//! WireGuard over TCP: a byte stream cut into reads of arbitrary sizes, parsed in place by
//! `FrameBuffer`, each frame handed to a device with a live session as a TCP endpoint would hand it.
//! Invariants: no panic; the frames handed out are exactly the stream's frames, in order, whatever the
//! cuts; a zero-length frame stops parsing, as the connection is then closed.
#![no_main]

use arbitrary::Arbitrary;
use fastwire_fuzz::{A_ADDR, Fixture};
use fastwire_proto::Endpoint;
use fastwire_proto::framing::FrameBuffer;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

#[derive(Arbitrary, Debug)]
struct Input {
    stream: Vec<u8>,
    /// Sizes of the successive reads (0 means "as much as fits").
    cuts: Vec<u16>,
    /// Also frame real messages (sealed data) into the stream, so decryption is reached.
    real: Vec<(u16, Vec<u8>)>,
}

/// The frames a whole stream holds, parsed the simple way, until the first zero-length frame.
fn reference(stream: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    while stream.len() >= at + 2 {
        let len = u16::from_be_bytes([stream[at], stream[at + 1]]) as usize;
        if len == 0 {
            return (out, true);
        }
        if stream.len() < at + 2 + len {
            break;
        }
        out.push(stream[at + 2..at + 2 + len].to_vec());
        at += 2 + len;
    }
    (out, false)
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

fuzz_target!(|input: Input| {
    FIXTURE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let f = slot.get_or_insert_with(Fixture::new);
        let mut stream = Vec::new();
        for (at, body) in input.real.iter().take(8) {
            let packet = fastwire_fuzz::inner_packet(false, 1, 2, &body[..body.len().min(1300)]);
            if let Some(msg) = f.seal_from_a(&packet, f.now) {
                stream.extend_from_slice(&(msg.len() as u16).to_be_bytes());
                stream.extend_from_slice(&msg);
            }
            let cut = (*at as usize).min(input.stream.len());
            stream.extend_from_slice(&input.stream[..cut]);
        }
        stream.extend_from_slice(&input.stream);
        let (expected, zero) = reference(&stream);
        let mut buf = FrameBuffer::with_capacity(0);
        let mut got = Vec::new();
        let mut fed = 0;
        let mut cuts = input.cuts.iter().cycle();
        let mut stopped = false;
        let mut reply = [0u8; 256];
        'outer: while fed < stream.len() {
            let spare = buf.spare();
            assert!(!spare.is_empty(), "spare() is never empty");
            let want = match cuts.next() {
                Some(0) | None => spare.len(),
                Some(&n) => n as usize,
            };
            let n = want.min(spare.len()).min(stream.len() - fed).max(1);
            spare[..n].copy_from_slice(&stream[fed..fed + n]);
            buf.filled(n);
            fed += n;
            loop {
                match buf.next_frame() {
                    Ok(Some(frame)) => {
                        got.push(frame.to_vec());
                        let _ = f.b.dev.handle_incoming(
                            Endpoint::tcp(A_ADDR),
                            frame,
                            f.now,
                            &mut reply,
                        );
                    }
                    Ok(None) => break,
                    Err(_) => {
                        stopped = true;
                        break 'outer;
                    }
                }
            }
            if input.cuts.is_empty() && fed >= stream.len() {
                break;
            }
        }
        assert_eq!(
            stopped, zero,
            "a zero-length frame stops parsing, and nothing else does"
        );
        assert_eq!(got, expected, "the frames, in order, whatever the cuts");
    });
});

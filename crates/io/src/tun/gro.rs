//! Coalescing a batch of packets into one TUN write per flow run (GRO), without copying them.
//!
//! The packets lie in the caller's buffer, each with free headroom in front (the engine decrypts them in
//! place, behind their WireGuard header). [`Gro::plan`] groups each TCP or UDP flow's in-order segments
//! of one size into a super-packet: the first packet's headers are rewritten for the whole (lengths, the
//! IPv4 header checksum, the pseudo-header checksum the kernel completes), a virtio-net header goes into
//! its headroom, and the write is a list of spans — the first packet whole, then each later packet's
//! payload — that the Linux queue hands to one `writev`. A packet that joins nothing is written alone
//! behind an empty virtio-net header.
//!
//! Why our own rather than tun-rs' `GROTable` (which this replaced): tun-rs copies every packet into a
//! fresh `Vec` and appends each payload to the first packet's buffer, so the engine had to copy every
//! plaintext into a growable buffer first — three copies and an allocation per packet, about 280 ns of
//! the receive path's 1.5 µs per 1420-byte packet (bench/RESULTS.md). Here the only copy is the kernel's.
//!
//! The rules are the kernel's TCP GRO (`tcp_gro_receive`) and wireguard-go's: same addresses, ports, TOS
//! or traffic class and flow label, DF bit and TTL, a valid IPv4 header checksum; TCP flags ACK (PSH only
//! on the last), the next sequence number, the same acknowledgement, window, reserved bits and options;
//! every segment the first one's size but the last, which may be smaller; the checksum of every segment
//! valid (the kernel trusts a coalesced packet's payload, so a bad segment must not hide in one); at
//! most 64 segments and 64 KiB. Not checked: the kernel's rule on IPv4 IDs (wireguard-go does not
//! either; segmentation renumbers them). A flow's packets keep their order: a packet that may be the
//! flow's (a later fragment too) and does not join its open run closes it.
//!
//! Sans-IO: `plan` only edits the buffer and lists spans (fuzzed by fuzz/fuzz_targets/tun_offload.rs).

use tun_rs::{checksum, checksum_no_fold};

/// The virtio-net header in front of every packet of an offload TUN device.
pub const VNET_HDR_LEN: usize = 10;

/// Segments per super-packet: the kernel's own GRO stops at 64, and older kernels refuse longer UDP
/// GSO trains. A write is at most this many spans.
pub const MAX_SEGMENTS: u16 = 64;
/// Flows with a run open at once; one more closes the oldest (it is written as it stands).
const OPEN_FLOWS: usize = 16;
const NONE: u32 = u32::MAX;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
const VNET_F_NEEDS_CSUM: u8 = 1;
const VNET_GSO_TCPV4: u8 = 1;
const VNET_GSO_TCPV6: u8 = 4;
const VNET_GSO_UDP_L4: u8 = 5;

#[derive(Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    v6: bool,
    proto: u8,
    /// Source then destination address (IPv4: the first 8 bytes).
    addrs: [u8; 32],
    /// Source then destination port.
    ports: [u8; 4],
}

/// What one packet is, as far as coalescing cares.
struct Parsed {
    key: FlowKey,
    iph: usize,
    /// TCP or UDP header length.
    l4h: usize,
    /// Whether it may be part of a super-packet at all (well-formed, a candidate's flags, a payload).
    candidate: bool,
    payload: usize,
    seq: u32,
    ack: u32,
    psh: bool,
    /// Fields that must be equal across a run: TOS / traffic class, DF and reserved bits, TTL / hop
    /// limit, IPv6 flow label; TCP: the reserved and AE bits and the window (the kernel's flag word).
    sig: [u8; 9],
}

/// A run of one flow's segments, written as one packet (alone when `segments == 1`).
struct Run {
    head: u32,
    last: u32,
    key: FlowKey,
    iph: u16,
    l4h: u16,
    gso_size: u16,
    segments: u16,
    /// The super-packet's IP length.
    len: u32,
    next_seq: u32,
    ack: u32,
    sig: [u8; 9],
    psh: bool,
    /// The head's checksum, checked once a second segment wants to join.
    head_valid: Option<bool>,
}

/// Reusable coalescing state: one per writer, allocations kept between batches.
#[derive(Default)]
pub struct Gro {
    runs: Vec<Run>,
    /// Each packet's next segment in its run.
    next: Vec<u32>,
    /// Runs that may still grow (indices into `runs`), oldest first.
    open: Vec<u32>,
    spans: Vec<(usize, usize)>,
    writes: Vec<(u32, u32)>,
}

impl Gro {
    pub fn new() -> Self {
        Self::default()
    }

    /// Plans the writes of `packets` (each `buf[start..start + len]` with at least [`VNET_HDR_LEN`]
    /// bytes of headroom that belong to no other packet); `udp`: the device takes UDP super-packets.
    /// Rewrites the headers of every run's first packet and fills every headroom; then [`Gro::writes`]
    /// lists the spans of each write. Spans out of `buf` are the caller's bug and panic.
    pub fn plan(&mut self, buf: &mut [u8], packets: &[(usize, usize)], udp: bool) {
        self.runs.clear();
        self.open.clear();
        self.spans.clear();
        self.writes.clear();
        self.next.clear();
        self.next.resize(packets.len(), NONE);
        for (i, &(start, len)) in packets.iter().enumerate() {
            let i = i as u32;
            let p = match parse(&buf[start..start + len], udp) {
                Seen::Flow(p) => p,
                Seen::MaybeFlow { v6, addrs, proto } => {
                    // It may belong to a flow between these addresses that has a run open (a later
                    // fragment, IPv6 behind extension headers): those runs end here, to keep order.
                    let runs = &self.runs;
                    self.open.retain(|&r| {
                        let key = &runs[r as usize].key;
                        !(key.v6 == v6
                            && key.addrs == addrs
                            && proto.is_none_or(|p| p == key.proto))
                    });
                    self.alone(i);
                    continue;
                }
                Seen::Other => {
                    self.alone(i);
                    continue;
                }
            };
            let open = self
                .open
                .iter()
                .position(|&r| self.runs[r as usize].key == p.key);
            if let Some(at) = open {
                let r = self.open[at] as usize;
                if p.candidate && self.join(buf, packets, r, i, &p) {
                    let run = &self.runs[r];
                    if run.psh || p.payload < usize::from(run.gso_size) {
                        self.open.remove(at);
                    }
                    continue;
                }
                // Whatever comes of this packet, the run ends here so that the flow keeps its order.
                self.open.remove(at);
            }
            if p.candidate {
                self.start_run(i, &p);
            } else {
                self.alone(i);
            }
        }
        for r in 0..self.runs.len() {
            self.finish(buf, packets, r);
        }
    }

    /// The writes, in order: each a list of `(start, len)` spans of the buffer to write as one packet.
    pub fn writes(&self) -> impl Iterator<Item = &[(usize, usize)]> {
        self.writes
            .iter()
            .map(|&(first, n)| &self.spans[first as usize..(first + n) as usize])
    }

    fn alone(&mut self, packet: u32) {
        self.runs.push(Run {
            head: packet,
            last: packet,
            key: FlowKey {
                v6: false,
                proto: 0,
                addrs: [0; 32],
                ports: [0; 4],
            },
            iph: 0,
            l4h: 0,
            gso_size: 0,
            segments: 1,
            len: 0,
            next_seq: 0,
            ack: 0,
            sig: [0; 9],
            psh: false,
            head_valid: None,
        });
    }

    fn start_run(&mut self, packet: u32, p: &Parsed) {
        let r = self.runs.len() as u32;
        self.runs.push(Run {
            head: packet,
            last: packet,
            key: p.key,
            iph: p.iph as u16,
            l4h: p.l4h as u16,
            gso_size: p.payload as u16,
            segments: 1,
            len: (p.iph + p.l4h + p.payload) as u32,
            next_seq: p.seq.wrapping_add(p.payload as u32),
            ack: p.ack,
            sig: p.sig,
            psh: p.psh,
            head_valid: None,
        });
        if p.psh {
            return;
        }
        if self.open.len() == OPEN_FLOWS {
            self.open.remove(0);
        }
        self.open.push(r);
    }

    /// Appends packet `i` to run `r` if the rules allow it.
    fn join(
        &mut self,
        buf: &[u8],
        packets: &[(usize, usize)],
        r: usize,
        i: u32,
        p: &Parsed,
    ) -> bool {
        let run = &self.runs[r];
        let fits = p.iph == usize::from(run.iph)
            && p.l4h == usize::from(run.l4h)
            && p.sig == run.sig
            && p.payload <= usize::from(run.gso_size)
            && run.segments < MAX_SEGMENTS
            && run.len as usize + p.payload <= 65_535;
        if !fits {
            return false;
        }
        let (head_start, _) = packets[run.head as usize];
        let (start, len) = packets[i as usize];
        if p.key.proto == TCP {
            let options = p.iph + 20..p.iph + p.l4h;
            let same_options = buf[head_start..][options.clone()] == buf[start..][options.clone()];
            if p.seq != run.next_seq || p.ack != run.ack || !same_options {
                return false;
            }
        }
        let head_valid = match run.head_valid {
            Some(valid) => valid,
            None => {
                let (_, head_len) = packets[run.head as usize];
                l4_checksum_valid(&buf[head_start..head_start + head_len], &p.key, p.iph)
            }
        };
        self.runs[r].head_valid = Some(head_valid);
        if !head_valid || !l4_checksum_valid(&buf[start..start + len], &p.key, p.iph) {
            return false;
        }
        let run = &mut self.runs[r];
        self.next[run.last as usize] = i;
        run.last = i;
        run.segments += 1;
        run.len += p.payload as u32;
        run.next_seq = run.next_seq.wrapping_add(p.payload as u32);
        run.psh |= p.psh;
        true
    }

    /// Writes run `r`'s headers and lists its spans.
    fn finish(&mut self, buf: &mut [u8], packets: &[(usize, usize)], r: usize) {
        let run = &self.runs[r];
        let (start, len) = packets[run.head as usize];
        let first = self.spans.len() as u32;
        self.spans.push((start - VNET_HDR_LEN, VNET_HDR_LEN + len));
        if run.segments == 1 {
            buf[start - VNET_HDR_LEN..start].fill(0);
        } else {
            let headers = usize::from(run.iph + run.l4h);
            let mut at = self.next[run.head as usize];
            while at != NONE {
                let (s, l) = packets[at as usize];
                self.spans.push((s + headers, l - headers));
                at = self.next[at as usize];
            }
            write_super_headers(buf, start, run);
        }
        self.writes.push((first, self.spans.len() as u32 - first));
    }
}

/// Rewrites the head packet at `buf[start..]` to stand for the whole run, with its virtio-net header.
fn write_super_headers(buf: &mut [u8], start: usize, run: &Run) {
    let iph = usize::from(run.iph);
    let total = run.len as usize;
    let l4_len = total - iph;
    let key = &run.key;
    let head = &mut buf[start..];
    if key.v6 {
        head[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    } else {
        head[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        head[10..12].fill(0);
        let ip_sum = !checksum(&head[..iph], 0);
        head[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    }
    let (gso_type, csum_offset) = match (key.proto, key.v6) {
        (UDP, _) => {
            head[iph + 4..iph + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            (VNET_GSO_UDP_L4, 6)
        }
        (_, false) => (VNET_GSO_TCPV4, 16),
        (_, true) => (VNET_GSO_TCPV6, 16),
    };
    if key.proto == TCP && run.psh {
        head[iph + 13] |= TCP_PSH;
    }
    // NEEDS_CSUM: the checksum field holds the pseudo-header's sum, the kernel adds the rest.
    let pseudo = checksum(&[], pseudo_header_sum(key, l4_len));
    head[iph + csum_offset..iph + csum_offset + 2].copy_from_slice(&pseudo.to_be_bytes());
    // The kernel reads the header in native byte order (little-endian virtio on every host we build
    // for, native on a legacy big-endian one).
    let vnet = &mut buf[start - VNET_HDR_LEN..start];
    vnet[0] = VNET_F_NEEDS_CSUM;
    vnet[1] = gso_type;
    vnet[2..4].copy_from_slice(&(run.iph + run.l4h).to_ne_bytes());
    vnet[4..6].copy_from_slice(&run.gso_size.to_ne_bytes());
    vnet[6..8].copy_from_slice(&run.iph.to_ne_bytes());
    vnet[8..10].copy_from_slice(&(csum_offset as u16).to_ne_bytes());
}

fn pseudo_header_sum(key: &FlowKey, l4_len: usize) -> u64 {
    let addrs = if key.v6 {
        &key.addrs[..]
    } else {
        &key.addrs[..8]
    };
    let len = (l4_len as u16).to_be_bytes();
    checksum_no_fold(&[0, key.proto, len[0], len[1]], checksum_no_fold(addrs, 0))
}

fn l4_checksum_valid(packet: &[u8], key: &FlowKey, iph: usize) -> bool {
    let sum = pseudo_header_sum(key, packet.len() - iph);
    checksum(&packet[iph..], sum) == 0xffff
}

/// What a packet is to the planner.
enum Seen {
    /// A TCP or UDP packet, keyed by its flow.
    Flow(Parsed),
    /// No ports to key it on, but it may be part of a TCP or UDP flow between these addresses (`proto`:
    /// which, when known): a later IPv4 fragment, an IPv6 packet behind extension headers.
    MaybeFlow {
        v6: bool,
        addrs: [u8; 32],
        proto: Option<u8>,
    },
    /// Not a flow we coalesce (ICMP, other protocols, not IP, truncated).
    Other,
}

/// Reads what coalescing needs.
fn parse(p: &[u8], udp_ok: bool) -> Seen {
    let Some(&first) = p.first() else {
        return Seen::Other;
    };
    let mut addrs = [0u8; 32];
    let (v6, iph, proto, ip_ok, mut sig) = match first >> 4 {
        4 if p.len() >= 20 => {
            let iph = usize::from(p[0] & 0x0f) * 4;
            addrs[..8].copy_from_slice(&p[12..20]);
            let proto = p[9];
            let fragment_offset = u16::from_be_bytes([p[6] & 0x1f, p[7]]);
            if iph < 20 || (fragment_offset != 0 && (proto == TCP || proto == UDP)) {
                let proto = (iph >= 20).then_some(proto);
                return Seen::MaybeFlow {
                    v6: false,
                    addrs,
                    proto,
                };
            }
            let more_fragments = p[6] & 0x20 != 0;
            let total_ok = usize::from(u16::from_be_bytes([p[2], p[3]])) == p.len();
            let header_ok = checksum(&p[..20], 0) == 0xffff;
            let ok = iph == 20 && total_ok && !more_fragments && header_ok;
            (
                false,
                iph,
                proto,
                ok,
                [p[1], p[6] >> 5, p[8], 0, 0, 0, 0, 0, 0],
            )
        }
        6 if p.len() >= 40 => {
            addrs.copy_from_slice(&p[8..40]);
            let proto = p[6];
            if !(proto == TCP || proto == UDP || proto == ICMPV6) {
                return Seen::MaybeFlow {
                    v6: true,
                    addrs,
                    proto: None,
                };
            }
            let payload_ok = usize::from(u16::from_be_bytes([p[4], p[5]])) == p.len() - 40;
            let sig = [p[0], p[1] >> 4, p[7], p[1] & 0x0f, p[2], p[3], 0, 0, 0];
            (true, 40, proto, payload_ok, sig)
        }
        _ => return Seen::Other,
    };
    if !(proto == TCP || proto == UDP) || p.len() < iph + 8 {
        return Seen::Other;
    }
    let key = FlowKey {
        v6,
        proto,
        addrs,
        ports: [p[iph], p[iph + 1], p[iph + 2], p[iph + 3]],
    };
    let mut parsed = Parsed {
        key,
        iph,
        l4h: 8,
        candidate: false,
        payload: 0,
        seq: 0,
        ack: 0,
        psh: false,
        sig,
    };
    if !ip_ok || p.len() > 65_535 {
        return Seen::Flow(parsed);
    }
    if proto == TCP {
        if p.len() < iph + 20 {
            return Seen::Flow(parsed);
        }
        let tcp = &p[iph..];
        let l4h = usize::from(tcp[12] >> 4) * 4;
        let flags = tcp[13];
        if !(20..=60).contains(&l4h) || p.len() < iph + l4h {
            return Seen::Flow(parsed);
        }
        // The rest of the kernel's flag word must match too: reserved and AE bits, the window.
        sig[6..9].copy_from_slice(&[tcp[12] & 0x0f, tcp[14], tcp[15]]);
        parsed.sig = sig;
        parsed.l4h = l4h;
        parsed.payload = p.len() - iph - l4h;
        parsed.seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        parsed.ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
        parsed.psh = flags & TCP_PSH != 0;
        parsed.candidate = (flags == TCP_ACK || flags == TCP_ACK | TCP_PSH) && parsed.payload > 0;
    } else {
        let udp_len = usize::from(u16::from_be_bytes([p[iph + 4], p[iph + 5]]));
        parsed.payload = p.len() - iph - 8;
        parsed.candidate = udp_ok && udp_len == p.len() - iph && parsed.payload > 0;
    }
    Seen::Flow(parsed)
}

#[cfg(test)]
#[path = "gro_tests.rs"]
mod tests;

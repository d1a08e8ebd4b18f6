//! TUN devices behind one small interface: the engine reads and writes batches of IP packets through
//! [`TunQueue`] and never sees a descriptor, a HANDLE or a platform crate's types.
//!
//! - Linux ([`linux`]): tun-rs, multi-queue (one queue per worker), IFF_VNET_HDR offloads: a read may be
//!   a TSO/USO super-packet split into segments (tun-rs), a batch write is coalesced where the packets
//!   lie ([`gro`], our own) and written with `writev`.
//! - Windows ([`windows`]): one long-lived Wintun session; reads drain the ring, writes go into it.
//! - macOS ([`macos`]): utun through tun-rs, one queue.
//! - [`fake`]: a device made of a loopback UDP socket, for engine tests on every platform.

use crate::wait::WaitHandle;
use std::io;
use std::sync::Arc;

pub mod fake;
#[cfg(target_os = "linux")]
pub mod gro;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(windows)]
mod windows;

/// Bytes a caller leaves free in front of each packet it hands to [`TunQueue::send_batch`] and asks
/// [`TunQueue::recv_batch`] for (`offset >= HEADROOM`): room for the platform's per-packet header.
pub const HEADROOM: usize = 10;

/// Where one packet of a [`TunQueue::send_batch`] lies in the caller's buffer: `(start, len)`.
pub type PacketSpan = (usize, usize);

/// The packets of a [`TunQueue::send_batch`] that were not written: counted, never waited for or
/// retried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unsent {
    /// The device's queue was full (Wintun's ring, utun's interface queue).
    pub full: usize,
    /// The system refused them (a packet it will not take, say); the batch's others were still written.
    pub failed: usize,
}

/// Most segments one [`TunQueue::recv_batch`] returns, and the batch size writes are planned for.
pub const MAX_SEGMENTS: usize = 128;

/// Largest IP packet a TUN device hands over (and a coalesced write may build).
pub const MAX_PACKET: usize = 65_535;

/// What the system granted for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offloads {
    /// TCP segmentation offload: reads may be TCP super-packets, writes may be coalesced.
    pub tcp: bool,
    /// UDP segmentation offload as well (Linux 6.2+).
    pub udp: bool,
}

/// How to create a device.
#[derive(Debug, Clone)]
pub struct TunOptions {
    /// The interface name asked for (on macOS `utun` lets the kernel pick `utunN`).
    pub name: String,
    /// Queues to open; platforms with one queue open one whatever is asked ([`MULTI_QUEUE`]).
    pub queues: usize,
    pub mtu: u16,
    /// Ask for offloads (TSO/GRO) where the platform has them.
    pub offload: bool,
    /// Windows: Wintun ring capacity in bytes (a power of two, 128 KiB to 64 MiB); 0 = the default.
    pub ring_capacity: u32,
}

/// Whether this platform's TUN device has more than one queue (Linux: IFF_MULTI_QUEUE).
pub const MULTI_QUEUE: bool = cfg!(target_os = "linux");

/// A created device: its queues and what it can do. Dropping every queue removes the interface.
pub struct TunDevice {
    /// The name the system gave it (macOS: `utunN`).
    pub name: String,
    pub queues: Vec<Arc<dyn TunQueue>>,
    pub offloads: Offloads,
}

/// Per-reader scratch space (Linux: where a super-packet lands before it is split).
pub struct ReadScratch {
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) buf: Vec<u8>,
}

impl ReadScratch {
    pub fn new() -> Self {
        let len = if cfg!(target_os = "linux") {
            HEADROOM + MAX_PACKET
        } else {
            0
        };
        Self { buf: vec![0; len] }
    }
}

impl Default for ReadScratch {
    fn default() -> Self {
        Self::new()
    }
}

/// Per-writer state for coalescing a batch of packets into fewer, larger writes (Linux: [`gro::Gro`]).
#[derive(Default)]
pub struct Coalescer {
    #[cfg(target_os = "linux")]
    pub(crate) gro: gro::Gro,
}

impl Coalescer {
    pub fn new() -> Self {
        Self::default()
    }
}

/// One queue of a TUN device. Reads come from one thread at a time; writes may come from several
/// threads, each with its own [`Coalescer`].
pub trait TunQueue: Send + Sync {
    /// Reads at least one packet and at most `bufs.len()` segments without blocking: segment `i` lands
    /// at `bufs[i][offset..offset + sizes[i]]` (`offset >= HEADROOM`). Returns how many; `WouldBlock`
    /// when nothing is waiting.
    fn recv_batch(
        &self,
        scratch: &mut ReadScratch,
        bufs: &mut [&mut [u8]],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize>;

    /// Writes each packet `buf[start..start + len]` of `packets` without blocking, a flow's packets in
    /// their order. Each packet has [`HEADROOM`] bytes in front of it in `buf` that belong to no other
    /// packet: the writer may put a header there and rewrite the packet's headers (coalescing), so the
    /// bytes are not what they were afterwards. Every packet is tried; returns those that were not
    /// written ([`Unsent`]). An error means nothing more was written: the interface is gone
    /// ([`TunQueue::is_gone`]), or a span lies outside `buf` or without its headroom (`InvalidInput`,
    /// checked before anything is written).
    fn send_batch(
        &self,
        coalescer: &mut Coalescer,
        buf: &mut [u8],
        packets: &[PacketSpan],
    ) -> io::Result<Unsent>;

    /// The interface's current MTU (the user may change it while we run).
    fn mtu(&self) -> io::Result<u16>;

    /// Readable when [`TunQueue::recv_batch`] has something; failed when the interface is gone.
    fn wait_handle(&self) -> WaitHandle;

    /// Whether an error from this queue means the interface is gone (rather than one bad packet).
    fn is_gone(&self, error: &io::Error) -> bool;
}

/// Checks the spans of a [`TunQueue::send_batch`]: inside `buf`, with their headroom.
pub(crate) fn check_spans(buf: &[u8], packets: &[PacketSpan]) -> io::Result<()> {
    let fits = |&(start, len): &PacketSpan| {
        start >= HEADROOM && start.checked_add(len).is_some_and(|end| end <= buf.len())
    };
    if packets.iter().all(fits) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a packet span outside the buffer or without headroom",
        ))
    }
}

/// Creates the interface. Errors are one line saying what is wrong and what to do.
pub fn create(opts: &TunOptions) -> Result<TunDevice, String> {
    #[cfg(target_os = "linux")]
    return linux::create(opts);
    #[cfg(target_os = "macos")]
    return macos::create(opts);
    #[cfg(windows)]
    return windows::create(opts);
    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    {
        let _ = opts;
        Err("fastwire has no TUN support for this operating system yet".into())
    }
}

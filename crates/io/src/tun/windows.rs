//! Windows TUN through Wintun, as seed 000 describes it: one adapter and one long-lived session per
//! interface, opened at start and ended at stop, never per packet. Reads drain the session's ring in
//! batches and, when it is empty, the engine waits on the session's read event together with its
//! sockets and wakers in one WaitForMultipleObjects. Writes go straight into ring space (allocate, copy,
//! send: no heap allocation per packet); a full ring is a counted drop, never a wait.
//!
//! `wintun.dll` is loaded at run time from the directory of `fastwire.exe` only. Our own thin binding
//! rather than the `wintun` or tun-rs crates: neither exposes the read event for a shared wait with the
//! exact Win32 errors (tun-rs keeps the event private; `wintun` drops the error codes of adapter and
//! session creation and configures the adapter through netsh).

use super::{
    Coalescer, Offloads, PacketSpan, ReadScratch, TunDevice, TunOptions, TunQueue, Unsent,
    check_spans,
};
use crate::wait::WaitHandle;
use std::ffi::c_void;
use std::io;
use std::sync::{Arc, OnceLock};
use windows_sys::Win32::Foundation::{
    ERROR_BUFFER_OVERFLOW, ERROR_HANDLE_EOF, ERROR_NO_MORE_ITEMS, GetLastError, HANDLE, NO_ERROR,
};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetIpInterfaceEntry, InitializeIpInterfaceEntry, MIB_IPINTERFACE_ROW, SetIpInterfaceEntry,
};
use windows_sys::Win32::NetworkManagement::Ndis::NET_LUID_LH;
use windows_sys::Win32::Networking::WinSock::{ADDRESS_FAMILY, AF_INET, AF_INET6};
use windows_sys::core::GUID;

/// Ring capacity when none is configured: wireguard-go's choice (8 MiB) until it is measured on Windows.
pub const DEFAULT_RING_CAPACITY: u32 = 8 << 20;
const MIN_RING_CAPACITY: u32 = 128 << 10;
const MAX_RING_CAPACITY: u32 = 64 << 20;

type AdapterHandle = *mut c_void;
type SessionHandle = *mut c_void;

/// The Wintun entry points we use (wintun.h; all `WINAPI`).
struct Wintun {
    _lib: libloading::Library,
    create_adapter: unsafe extern "system" fn(*const u16, *const u16, *const GUID) -> AdapterHandle,
    open_adapter: unsafe extern "system" fn(*const u16) -> AdapterHandle,
    close_adapter: unsafe extern "system" fn(AdapterHandle),
    get_adapter_luid: unsafe extern "system" fn(AdapterHandle, *mut NET_LUID_LH),
    start_session: unsafe extern "system" fn(AdapterHandle, u32) -> SessionHandle,
    end_session: unsafe extern "system" fn(SessionHandle),
    get_read_wait_event: unsafe extern "system" fn(SessionHandle) -> HANDLE,
    receive_packet: unsafe extern "system" fn(SessionHandle, *mut u32) -> *mut u8,
    release_receive_packet: unsafe extern "system" fn(SessionHandle, *const u8),
    allocate_send_packet: unsafe extern "system" fn(SessionHandle, u32) -> *mut u8,
    send_packet: unsafe extern "system" fn(SessionHandle, *const u8),
}

static WINTUN: OnceLock<Result<Wintun, String>> = OnceLock::new();

fn wintun() -> Result<&'static Wintun, String> {
    WINTUN.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Wintun, String> {
    use windows_sys::Win32::System::LibraryLoader::{
        LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR, LOAD_LIBRARY_SEARCH_SYSTEM32,
    };
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find fastwire.exe's directory: {e}"))?;
    let path = exe.with_file_name("wintun.dll");
    let hint = "download Wintun from https://www.wintun.net and put bin\\amd64\\wintun.dll next to fastwire.exe";
    if !path.exists() {
        return Err(format!("{} is missing — {hint}", path.display()));
    }
    // SAFETY: loading wintun.dll runs its DllMain, which only initialises the library; the flags limit
    // its own dependencies to its directory and System32.
    let lib = unsafe {
        libloading::os::windows::Library::load_with_flags(
            &path,
            LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR | LOAD_LIBRARY_SEARCH_SYSTEM32,
        )
    }
    .map_err(|e| {
        let why = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
        format!("cannot load {}: {why} — {hint}", path.display())
    })?;
    let lib: libloading::Library = lib.into();
    macro_rules! entry {
        ($name:literal) => {
            // SAFETY: the symbol is one of wintun.h's exports and the field's type is its C signature;
            // the library stays loaded for as long as `Wintun` (and the process) lives.
            *unsafe { lib.get($name) }.map_err(|e| {
                format!("{} is not a usable wintun.dll ({e}) — {hint}", path.display())
            })?
        };
    }
    Ok(Wintun {
        create_adapter: entry!(b"WintunCreateAdapter\0"),
        open_adapter: entry!(b"WintunOpenAdapter\0"),
        close_adapter: entry!(b"WintunCloseAdapter\0"),
        get_adapter_luid: entry!(b"WintunGetAdapterLUID\0"),
        start_session: entry!(b"WintunStartSession\0"),
        end_session: entry!(b"WintunEndSession\0"),
        get_read_wait_event: entry!(b"WintunGetReadWaitEvent\0"),
        receive_packet: entry!(b"WintunReceivePacket\0"),
        release_receive_packet: entry!(b"WintunReleaseReceivePacket\0"),
        allocate_send_packet: entry!(b"WintunAllocateSendPacket\0"),
        send_packet: entry!(b"WintunSendPacket\0"),
        _lib: lib,
    })
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// A stable GUID per interface name (FNV-1a over the name), so Windows keeps one network profile for
/// the interface across restarts instead of a new "Network 12" each time.
fn guid_for(name: &str) -> GUID {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in b"fastwire:".iter().chain(name.as_bytes()) {
        h ^= u128::from(*b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    let b = h.to_be_bytes();
    GUID {
        data1: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        data2: u16::from_be_bytes([b[4], b[5]]),
        // Version 4, RFC 4122 variant: a well-formed GUID.
        data3: (u16::from_be_bytes([b[6], b[7]]) & 0x0fff) | 0x4000,
        data4: [
            b[8] & 0x3f | 0x80,
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15],
        ],
    }
}

fn last_error() -> u32 {
    // SAFETY: GetLastError only reads this thread's last-error value.
    unsafe { GetLastError() }
}

/// The adapter and its session; ending the session and closing the adapter (which removes it) happen
/// once, when the last reference goes.
struct WintunQueue {
    api: &'static Wintun,
    adapter: AdapterHandle,
    session: SessionHandle,
    read_event: HANDLE,
    luid: NET_LUID_LH,
}

// SAFETY: Wintun sessions are thread-safe (its receive and send sides each take their own lock), and the
// handles are only released in Drop, when no other reference exists.
unsafe impl Send for WintunQueue {}
// SAFETY: as above.
unsafe impl Sync for WintunQueue {}

impl Drop for WintunQueue {
    fn drop(&mut self) {
        // SAFETY: the session and adapter are ours and live; nothing uses them after this.
        unsafe {
            (self.api.end_session)(self.session);
            (self.api.close_adapter)(self.adapter);
        }
    }
}

pub(crate) fn create(opts: &TunOptions) -> Result<TunDevice, String> {
    let api = wintun()?;
    let name = opts.name.as_str();
    let capacity = match opts.ring_capacity {
        0 => DEFAULT_RING_CAPACITY,
        n => n,
    };
    if !capacity.is_power_of_two() || !(MIN_RING_CAPACITY..=MAX_RING_CAPACITY).contains(&capacity) {
        return Err(format!(
            "ring capacity {capacity} is not a power of two from 128KiB to 64MiB"
        ));
    }
    let wname = wide(name);
    // SAFETY: `wname` is a NUL-terminated UTF-16 string that outlives the call.
    let existing = unsafe { (api.open_adapter)(wname.as_ptr()) };
    if !existing.is_null() {
        // SAFETY: a handle we just opened, closed once (closing an opened adapter does not remove it).
        unsafe { (api.close_adapter)(existing) };
        return Err(format!(
            "interface {name} already exists — another fastwire or WireGuard tunnel has it; pick another name"
        ));
    }
    let tunnel_type = wide("fastwire");
    let guid = guid_for(name);
    // SAFETY: both strings are NUL-terminated UTF-16 and `guid` a live GUID, all outliving the call.
    let adapter = unsafe { (api.create_adapter)(wname.as_ptr(), tunnel_type.as_ptr(), &guid) };
    if adapter.is_null() {
        let e = io::Error::from_raw_os_error(last_error() as i32);
        return Err(format!(
            "cannot create interface {name}: {e} (is fastwire running as Administrator?)"
        ));
    }
    // SAFETY: `adapter` is live; the session handle is checked below.
    let session = unsafe { (api.start_session)(adapter, capacity) };
    if session.is_null() {
        let e = io::Error::from_raw_os_error(last_error() as i32);
        // SAFETY: the adapter we created, closed once (which removes it).
        unsafe { (api.close_adapter)(adapter) };
        return Err(format!("cannot start a Wintun session on {name}: {e}"));
    }
    let mut luid = NET_LUID_LH { Value: 0 };
    // SAFETY: `adapter` is live and `luid` a valid out-pointer.
    unsafe { (api.get_adapter_luid)(adapter, &mut luid) };
    // SAFETY: `session` is live; the event belongs to it (never closed by us).
    let read_event = unsafe { (api.get_read_wait_event)(session) };
    let queue = WintunQueue {
        api,
        adapter,
        session,
        read_event,
        luid,
    };
    queue
        .set_mtu(opts.mtu)
        .map_err(|e| format!("cannot set the MTU of {name}: {e}"))?;
    Ok(TunDevice {
        name: name.to_string(),
        queues: vec![Arc::new(queue)],
        offloads: Offloads::default(),
    })
}

impl WintunQueue {
    fn interface_row(&self, family: ADDRESS_FAMILY) -> io::Result<MIB_IPINTERFACE_ROW> {
        let mut row = MIB_IPINTERFACE_ROW::default();
        // SAFETY: `row` is a live, writable MIB_IPINTERFACE_ROW.
        unsafe { InitializeIpInterfaceEntry(&mut row) };
        row.Family = family;
        row.InterfaceLuid = self.luid;
        // SAFETY: as above; the call fills the row for the LUID and family we set.
        match unsafe { GetIpInterfaceEntry(&mut row) } {
            NO_ERROR => Ok(row),
            e => Err(io::Error::from_raw_os_error(e as i32)),
        }
    }

    /// Sets the IPv4 MTU (and the IPv6 one where IPv6 allows it: at least 1280).
    fn set_mtu(&self, mtu: u16) -> io::Result<()> {
        for family in [AF_INET, AF_INET6] {
            if family == AF_INET6 && mtu < 1280 {
                continue;
            }
            let mut row = match self.interface_row(family) {
                Ok(row) => row,
                // No IPv6 stack on the adapter: nothing to set.
                Err(_) if family == AF_INET6 => continue,
                Err(e) => return Err(e),
            };
            row.NlMtu = u32::from(mtu);
            // SetIpInterfaceEntry refuses the SitePrefixLength GetIpInterfaceEntry hands back.
            row.SitePrefixLength = if family == AF_INET {
                0
            } else {
                row.SitePrefixLength.min(128)
            };
            // SAFETY: `row` is a live row filled by GetIpInterfaceEntry.
            match unsafe { SetIpInterfaceEntry(&mut row) } {
                NO_ERROR => {}
                e => return Err(io::Error::from_raw_os_error(e as i32)),
            }
        }
        Ok(())
    }
}

fn gone_error() -> io::Error {
    io::Error::from_raw_os_error(ERROR_HANDLE_EOF as i32)
}

impl TunQueue for WintunQueue {
    fn recv_batch(
        &self,
        _scratch: &mut ReadScratch,
        bufs: &mut [&mut [u8]],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        let mut n = 0;
        while n < bufs.len().min(sizes.len()) {
            let mut size = 0u32;
            // SAFETY: `session` is live; `size` is a valid out-pointer.
            let packet = unsafe { (self.api.receive_packet)(self.session, &mut size) };
            if packet.is_null() {
                return match last_error() {
                    ERROR_NO_MORE_ITEMS if n > 0 => Ok(n),
                    ERROR_NO_MORE_ITEMS => Err(io::ErrorKind::WouldBlock.into()),
                    ERROR_HANDLE_EOF => Err(gone_error()),
                    e => Err(io::Error::from_raw_os_error(e as i32)),
                };
            }
            let len = size as usize;
            let room = bufs[n].len().saturating_sub(offset);
            if len <= room {
                // SAFETY: Wintun hands out `size` readable bytes at `packet` until we release it; the
                // destination has `room >= len` bytes after `offset`.
                unsafe {
                    std::ptr::copy_nonoverlapping(packet, bufs[n][offset..].as_mut_ptr(), len);
                }
                sizes[n] = len;
                n += 1;
            }
            // A packet larger than the buffer (the MTU was raised behind our back) is dropped here; the
            // next MTU check resizes the buffers.
            // SAFETY: `packet` came from receive_packet on this session and is released exactly once.
            unsafe { (self.api.release_receive_packet)(self.session, packet) };
        }
        Ok(n)
    }

    fn send_batch(
        &self,
        _coalescer: &mut Coalescer,
        buf: &mut [u8],
        packets: &[PacketSpan],
    ) -> io::Result<Unsent> {
        check_spans(buf, packets)?;
        let mut unsent = Unsent::default();
        for &(start, len) in packets {
            let packet = &buf[start..start + len];
            let Ok(len) = u32::try_from(packet.len()) else {
                unsent.failed += 1;
                continue;
            };
            // SAFETY: `session` is live; the returned ring space is checked below.
            let space = unsafe { (self.api.allocate_send_packet)(self.session, len) };
            if space.is_null() {
                match last_error() {
                    ERROR_BUFFER_OVERFLOW => unsent.full += 1,
                    ERROR_HANDLE_EOF => return Err(gone_error()),
                    // A packet the ring will not take (too large): the others still go.
                    _ => unsent.failed += 1,
                }
                continue;
            }
            // SAFETY: Wintun gave `len` writable bytes at `space`; allocate, copy and send follow each
            // other with nothing in between (an allocated packet never sent would stall the ring).
            unsafe {
                std::ptr::copy_nonoverlapping(packet.as_ptr(), space, packet.len());
                (self.api.send_packet)(self.session, space);
            }
        }
        Ok(unsent)
    }

    fn mtu(&self) -> io::Result<u16> {
        self.interface_row(AF_INET)
            .map(|row| u16::try_from(row.NlMtu).unwrap_or(u16::MAX))
    }

    fn wait_handle(&self) -> WaitHandle {
        WaitHandle::from_event(self.read_event)
    }

    fn is_gone(&self, error: &io::Error) -> bool {
        error.raw_os_error() == Some(ERROR_HANDLE_EOF as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_guids_are_stable_well_formed_and_distinct() {
        let a = guid_for("wg0");
        let b = guid_for("wg0");
        let c = guid_for("wg1");
        assert_eq!(
            (a.data1, a.data2, a.data3, a.data4),
            (b.data1, b.data2, b.data3, b.data4)
        );
        assert_ne!((a.data1, a.data4), (c.data1, c.data4));
        assert_eq!(a.data3 >> 12, 4, "version 4");
        assert_eq!(a.data4[0] >> 6, 0b10, "RFC 4122 variant");
    }

    #[test]
    fn a_missing_wintun_dll_is_one_line_saying_what_to_do() {
        // Test executables live in target/.../deps, where no wintun.dll is.
        if std::env::current_exe()
            .unwrap()
            .with_file_name("wintun.dll")
            .exists()
        {
            return;
        }
        let err = create(&TunOptions {
            name: "fw-test".into(),
            queues: 1,
            mtu: 1420,
            offload: false,
            ring_capacity: 0,
        })
        .err()
        .expect("no wintun.dll beside the test");
        assert!(err.contains("wintun.dll is missing"), "{err}");
        assert!(err.contains("wintun.net"), "{err}");
        assert!(!err.contains('\n'));
    }
}

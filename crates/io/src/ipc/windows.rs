//! Named pipes as wireguard-go serves them (`ipc/uapi_windows.go`, `ipc/namedpipe`), with overlapped
//! I/O so that every wait can be cut short: an accept by the listener's stop event, a read or write by
//! its timeout or the stream's shutdown event (then `CancelIoEx` and a waiting `GetOverlappedResult`,
//! so the kernel is done with the buffer and the OVERLAPPED before we return).

use std::ffi::OsStr;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_BROKEN_PIPE, ERROR_INVALID_OWNER, ERROR_IO_PENDING, ERROR_NO_DATA,
    ERROR_NOT_ALL_ASSIGNED, ERROR_PIPE_BUSY, ERROR_PIPE_CONNECTED, ERROR_PIPE_NOT_CONNECTED,
    ERROR_SEM_TIMEOUT, GENERIC_READ, GENERIC_WRITE, GetLastError, HANDLE, INVALID_HANDLE_VALUE,
    LUID, LocalFree, WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
    SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    AdjustTokenPrivileges, IsWellKnownSid, LUID_AND_ATTRIBUTES, LookupPrivilegeValueW,
    OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SE_PRIVILEGE_ENABLED, SE_RESTORE_NAME,
    SECURITY_ATTRIBUTES, TOKEN_ADJUST_PRIVILEGES, TOKEN_PRIVILEGES, TOKEN_QUERY,
    WinBuiltinAdministratorsSid, WinLocalSystemSid,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, FindClose, FindFirstFileW,
    FindNextFileW, OPEN_EXISTING, PIPE_ACCESS_DUPLEX, ReadFile, SECURITY_IDENTIFICATION,
    SECURITY_SQOS_PRESENT, WIN32_FIND_DATAW, WriteFile,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, DisconnectNamedPipe, PIPE_READMODE_BYTE,
    PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
    WaitNamedPipeW,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, GetCurrentProcess, INFINITE, OpenProcessToken, ResetEvent, SetEvent,
    WaitForMultipleObjects, WaitForSingleObject,
};

use super::{Incoming, IpcStream, timed_out};

pub(super) const DEFAULT_DIR: &str = r"\\.\pipe\ProtectedPrefix\Administrators\WireGuard";
pub(super) const ADMIN_HINT: &str = "run as Administrator";

/// The root of the pipe namespace; pipe names below it are flat strings that may hold backslashes.
const PIPE_ROOT: &str = r"\\.\pipe\";

/// wireguard-go's: owner SYSTEM; protected DACL with full access for SYSTEM and Administrators only;
/// mandatory label High with no-write-up, no-read-up, no-execute-up, so a non-elevated admin is refused.
const SDDL: &str = "O:SYD:P(A;;GA;;;SY)(A;;GA;;;BA)S:(ML;;NWNRNX;;;HI)";
/// The same without the owner, for an admin who may not make SYSTEM the owner.
const SDDL_NO_OWNER: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)S:(ML;;NWNRNX;;;HI)";

/// Pipe buffer sizes (a hint to the system), as in wireguard-go's Win32 equivalent.
const BUFFER: u32 = 4096;
/// How long a client retries while every instance of the pipe is busy (between two accepts).
const BUSY_RETRY: Duration = Duration::from_secs(5);

fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(Some(0)).collect()
}

/// The pipe-name prefix of `dir` below `\\.\pipe\`, without a trailing backslash (maybe empty).
fn relative_prefix(dir: &Path) -> io::Result<String> {
    let text = dir.to_str().unwrap_or_default();
    let rel = text
        .get(..PIPE_ROOT.len())
        .filter(|head| head.eq_ignore_ascii_case(PIPE_ROOT))
        .and_then(|_| text.get(PIPE_ROOT.len()..))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a pipe name prefix (\\\\.\\pipe\\...)",
                    dir.display()
                ),
            )
        })?;
    Ok(rel.trim_end_matches('\\').to_string())
}

pub(super) fn endpoint_path(dir: &Path, iface: &str) -> io::Result<PathBuf> {
    let rel = relative_prefix(dir)?;
    Ok(PathBuf::from(if rel.is_empty() {
        format!("{PIPE_ROOT}{iface}")
    } else {
        format!("{PIPE_ROOT}{rel}\\{iface}")
    }))
}

/// Every pipe name on the machine, relative to `\\.\pipe\` (as `wg.exe` lists them). Wine 8 cannot
/// list the pipe namespace (ERROR_BAD_DEV_TYPE); Windows can.
fn all_pipes() -> io::Result<Vec<String>> {
    let pattern = wide(OsStr::new(r"\\.\pipe\*"));
    let mut data = WIN32_FIND_DATAW::default();
    // SAFETY: `pattern` is NUL-terminated and `data` is a valid out-parameter; both outlive the call.
    let find = unsafe { FindFirstFileW(pattern.as_ptr(), &mut data) };
    if find == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    let mut names = Vec::new();
    loop {
        let len = data
            .cFileName
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(data.cFileName.len());
        names.push(String::from_utf16_lossy(&data.cFileName[..len]));
        // SAFETY: `find` is the live search handle from FindFirstFileW; `data` is a valid out-parameter.
        if unsafe { FindNextFileW(find, &mut data) } == 0 {
            break;
        }
    }
    // SAFETY: `find` is our search handle, closed exactly once, here.
    unsafe { FindClose(find) };
    Ok(names)
}

/// The interface names under `dir`'s prefix (`PREFIX\IFACE`, IFACE without a backslash).
fn pipes_under(dir: &Path) -> io::Result<Vec<String>> {
    Ok(names_under(&relative_prefix(dir)?, all_pipes()?))
}

/// Of the pipe names `all` (relative to `\\.\pipe\`), the last components of those right under `rel`.
fn names_under(rel: &str, all: Vec<String>) -> Vec<String> {
    let prefix = if rel.is_empty() {
        String::new()
    } else {
        format!("{rel}\\")
    };
    all.into_iter()
        .filter_map(|name| {
            let head = name.get(..prefix.len())?;
            let iface = name.get(prefix.len()..)?;
            (head.eq_ignore_ascii_case(&prefix) && !iface.is_empty() && !iface.contains('\\'))
                .then(|| iface.to_string())
        })
        .collect()
}

pub(super) fn list(dir: &Path) -> io::Result<Vec<String>> {
    pipes_under(dir)
}

pub(super) fn exists(_dir: &Path, path: &Path, _iface: &str) -> bool {
    pipe_exists(path)
}

/// Whether a pipe of this full name exists. Opening it would take an instance from its server;
/// WaitNamedPipe does not: it fails at once with ERROR_FILE_NOT_FOUND when there is no such pipe, and
/// times out when every instance is busy.
fn pipe_exists(path: &Path) -> bool {
    let name = wide(path.as_os_str());
    // SAFETY: `name` is NUL-terminated and outlives the call.
    if unsafe { WaitNamedPipeW(name.as_ptr(), 1) } != 0 {
        return true;
    }
    let e = io::Error::last_os_error();
    is_error(&e, ERROR_SEM_TIMEOUT)
}

/// A manual-reset event, initially unsignalled.
fn event() -> io::Result<OwnedHandle> {
    // SAFETY: no security attributes and no name: only integers are passed.
    let raw = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
    if raw.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh event handle that nothing else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(raw) })
}

fn raw(handle: &OwnedHandle) -> HANDLE {
    handle.as_raw_handle()
}

fn is_signalled(event: &OwnedHandle) -> bool {
    // SAFETY: a zero-timeout wait on a live event handle.
    unsafe { WaitForSingleObject(raw(event), 0) == WAIT_OBJECT_0 }
}

/// Waits for the first of `handles` to be signalled: `Some(index)`, or `None` on timeout.
fn wait_any(handles: &[HANDLE], timeout: Option<Duration>) -> io::Result<Option<usize>> {
    let ms = timeout.map_or(INFINITE, |d| {
        u32::try_from(d.as_micros().div_ceil(1000)).map_or(INFINITE - 1, |ms| ms.min(INFINITE - 1))
    });
    // SAFETY: every handle in `handles` is live for the call (their owners are borrowed by our
    // callers); the pointer is valid for `handles.len()` (at most 2) elements.
    let rc = unsafe { WaitForMultipleObjects(handles.len() as u32, handles.as_ptr(), 0, ms) };
    if rc == WAIT_TIMEOUT {
        return Ok(None);
    }
    if rc == WAIT_FAILED {
        return Err(io::Error::last_os_error());
    }
    let index = rc.wrapping_sub(WAIT_OBJECT_0) as usize;
    if index < handles.len() {
        Ok(Some(index))
    } else {
        Err(io::Error::other(format!("unexpected wait result {rc}")))
    }
}

/// A security descriptor from SDDL, freed on drop.
struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is a heap block we own alone and only read; it has no thread affinity.
unsafe impl Send for SecurityDescriptor {}

impl SecurityDescriptor {
    fn from_sddl(sddl: &str) -> io::Result<Self> {
        let text = wide(OsStr::new(sddl));
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `text` is NUL-terminated and outlives the call; `sd` is a valid out-pointer, and the
        // descriptor it receives is ours to LocalFree.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(sd))
    }

    /// Attributes pointing into `self`: valid as long as `self` is.
    fn attributes(&self) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.0,
            bInheritHandle: 0,
        }
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW, freed once.
        unsafe { LocalFree(self.0) };
    }
}

/// Creates one server instance of the pipe `name`: byte mode, overlapped, no remote clients.
/// `security` is the pipe's descriptor when this instance creates the pipe (the first one); for later
/// instances of an existing pipe it is ignored.
fn create_instance(
    name: &[u16],
    first: bool,
    security: &SecurityDescriptor,
) -> io::Result<OwnedHandle> {
    let attributes = security.attributes();
    let open_mode = PIPE_ACCESS_DUPLEX
        | FILE_FLAG_OVERLAPPED
        | if first {
            FILE_FLAG_FIRST_PIPE_INSTANCE
        } else {
            0
        };
    // SAFETY: `name` is NUL-terminated; `attributes` and the descriptor it points to (`security`)
    // outlive the call.
    let pipe = unsafe {
        CreateNamedPipeW(
            name.as_ptr(),
            open_mode,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            PIPE_UNLIMITED_INSTANCES,
            BUFFER,
            BUFFER,
            0,
            &attributes,
        )
    };
    if pipe == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `pipe` is a fresh pipe handle that nothing else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(pipe) })
}

fn is_error(e: &io::Error, code: u32) -> bool {
    e.raw_os_error() == Some(code as i32)
}

/// Runs `f` with SeRestorePrivilege enabled on our token (it lets an elevated admin name SYSTEM as an
/// object's owner), then puts the privilege back as it was. If it cannot be enabled, runs `f` anyway.
fn with_restore_privilege<T>(f: impl FnOnce() -> T) -> T {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo-handle of our own process; `token` is a valid out-pointer.
    if unsafe {
        OpenProcessToken(
            GetCurrentProcess(),
            TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY,
            &mut token,
        )
    } == 0
    {
        return f();
    }
    // SAFETY: `token` is the fresh token handle opened above, owned here only.
    let token = unsafe { OwnedHandle::from_raw_handle(token) };
    let mut luid = LUID::default();
    // SAFETY: SE_RESTORE_NAME is a static NUL-terminated wide string; `luid` is a valid out-pointer.
    if unsafe { LookupPrivilegeValueW(std::ptr::null(), SE_RESTORE_NAME, &mut luid) } == 0 {
        return f();
    }
    let enable = TOKEN_PRIVILEGES {
        PrivilegeCount: 1,
        Privileges: [LUID_AND_ATTRIBUTES {
            Luid: luid,
            Attributes: SE_PRIVILEGE_ENABLED,
        }],
    };
    let mut previous = TOKEN_PRIVILEGES::default();
    let mut previous_len = 0u32;
    // SAFETY: `token` is live with TOKEN_ADJUST_PRIVILEGES; `enable` and `previous` are valid
    // TOKEN_PRIVILEGES of the stated size (one entry, all a single privilege needs).
    let adjusted = unsafe {
        AdjustTokenPrivileges(
            raw(&token),
            0,
            &enable,
            size_of::<TOKEN_PRIVILEGES>() as u32,
            &mut previous,
            &mut previous_len,
        )
    } != 0;
    // AdjustTokenPrivileges succeeds without enabling a privilege the token does not hold.
    // SAFETY: reads the calling thread's last-error value; no arguments.
    let held = adjusted && unsafe { GetLastError() } != ERROR_NOT_ALL_ASSIGNED;
    let result = f();
    if held && previous.PrivilegeCount > 0 {
        // SAFETY: as above; `previous` is what the first call returned (the privilege's old state).
        unsafe {
            AdjustTokenPrivileges(
                raw(&token),
                0,
                &previous,
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }
    result
}

fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn in_use(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("{} answers", path.display()),
    )
}

/// The first instance, which carries the pipe's security descriptor. Returns a note when the
/// descriptor had to go without its SYSTEM owner.
fn create_first(name: &[u16], path: &Path) -> io::Result<(OwnedHandle, Option<String>)> {
    let create = |sddl: &str| -> io::Result<OwnedHandle> {
        let sd = SecurityDescriptor::from_sddl(sddl)?;
        create_instance(name, true, &sd)
    };
    let result = match create(SDDL) {
        Err(e) if is_error(&e, ERROR_INVALID_OWNER) => with_restore_privilege(|| create(SDDL)),
        other => other,
    };
    let result = match result {
        Err(e) if is_error(&e, ERROR_INVALID_OWNER) => create(SDDL_NO_OWNER).map(|pipe| {
            let note = format!(
                "{} could not be given SYSTEM as owner ({e}); wg.exe refuses such a pipe — run \
                 fastwire as SYSTEM (e.g. as a service) for wg.exe",
                path.display()
            );
            (pipe, Some(note))
        }),
        other => other.map(|pipe| (pipe, None)),
    };
    result.map_err(|e| {
        if is_error(&e, ERROR_PIPE_BUSY) || (is_error(&e, ERROR_ACCESS_DENIED) && pipe_exists(path))
        {
            in_use(path)
        } else {
            context(e, format!("cannot create {}", path.display()))
        }
    })
}

#[derive(Clone)]
pub(super) struct Stopper(Arc<OwnedHandle>);

impl Stopper {
    pub fn stop(&self) {
        // SAFETY: a live event handle, kept alive by the Arc.
        unsafe { SetEvent(raw(&self.0)) };
    }
}

pub(super) struct Listener {
    name: Vec<u16>,
    path: PathBuf,
    /// The instance waiting for the next client. There is always one while we serve, so the pipe name
    /// never lapses for another process to take.
    pending: Option<OwnedHandle>,
    /// Given to every later instance: ignored while the pipe exists, it keeps the pipe protected
    /// should its name ever lapse (no instance left) and an instance create it anew. No owner, so
    /// that no privilege is needed.
    instance_security: SecurityDescriptor,
    /// Signalled when a ConnectNamedPipe completes.
    connected: OwnedHandle,
    stop: Stopper,
    notes: Vec<String>,
}

/// How one overlapped ConnectNamedPipe ended.
enum Connect {
    Connected,
    /// The client connected and left before we looked.
    Gone,
    Stopped,
}

impl Listener {
    pub fn bind(_dir: &Path, path: &Path) -> io::Result<Self> {
        // FILE_FLAG_FIRST_PIPE_INSTANCE refuses an existing name on Windows; look first as well, which
        // also holds where that flag is not enforced (Wine 8).
        if pipe_exists(path) {
            return Err(in_use(path));
        }
        let name = wide(path.as_os_str());
        let (first, note) = create_first(&name, path)?;
        Ok(Self {
            name,
            path: path.to_path_buf(),
            pending: Some(first),
            instance_security: SecurityDescriptor::from_sddl(SDDL_NO_OWNER)?,
            connected: event()?,
            stop: Stopper(Arc::new(event()?)),
            notes: note.into_iter().collect(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    pub fn accept(&mut self) -> io::Result<Incoming> {
        loop {
            if is_signalled(&self.stop.0) {
                return Ok(Incoming::Stopped);
            }
            let pipe = match self.pending.take() {
                Some(pipe) => pipe,
                None => self.create_instance()?,
            };
            match self.connect(&pipe) {
                Ok(Connect::Connected) => {
                    // The next instance exists before this one can go away. If it cannot be made now,
                    // the next accept tries again.
                    self.pending = self.create_instance().ok();
                    return Ok(Incoming::Connection(IpcStream(Stream::new(pipe, true)?)));
                }
                Ok(Connect::Gone) => {
                    // SAFETY: `pipe` is a live server instance; disconnecting readies it for reuse.
                    unsafe { DisconnectNamedPipe(raw(&pipe)) };
                    self.pending = Some(pipe);
                }
                Ok(Connect::Stopped) => return Ok(Incoming::Stopped),
                Err(e) => {
                    self.pending = Some(pipe);
                    return Err(e);
                }
            }
        }
    }

    fn create_instance(&self) -> io::Result<OwnedHandle> {
        create_instance(&self.name, false, &self.instance_security)
    }

    fn connect(&self, pipe: &OwnedHandle) -> io::Result<Connect> {
        // SAFETY: our live manual-reset event.
        unsafe { ResetEvent(raw(&self.connected)) };
        let mut overlapped = OVERLAPPED {
            hEvent: raw(&self.connected),
            ..Default::default()
        };
        // SAFETY: `pipe` is a live overlapped server instance; `overlapped` stays in place on this
        // frame until the operation is over (GetOverlappedResult below waits for it).
        let ok = unsafe { ConnectNamedPipe(raw(pipe), &mut overlapped) };
        if ok != 0 {
            return Ok(Connect::Connected);
        }
        let e = io::Error::last_os_error();
        if is_error(&e, ERROR_PIPE_CONNECTED) {
            return Ok(Connect::Connected);
        }
        if is_error(&e, ERROR_NO_DATA) {
            return Ok(Connect::Gone);
        }
        if !is_error(&e, ERROR_IO_PENDING) {
            return Err(e);
        }
        let waited = wait_any(&[raw(&self.connected), raw(&self.stop.0)], None);
        let done = matches!(waited, Ok(Some(0)));
        if !done {
            // SAFETY: cancels exactly the operation started above, on a live handle.
            unsafe { CancelIoEx(raw(pipe), &overlapped) };
        }
        let mut transferred = 0u32;
        // SAFETY: `overlapped` belongs to the operation started above; bWait = TRUE returns only once
        // it completed or was cancelled, after which the kernel no longer uses it.
        let ok = unsafe { GetOverlappedResult(raw(pipe), &overlapped, &mut transferred, 1) };
        let result = (ok == 0).then(io::Error::last_os_error);
        match waited? {
            Some(0) => match result {
                None => Ok(Connect::Connected),
                Some(e) if is_error(&e, ERROR_NO_DATA) || is_error(&e, ERROR_PIPE_CONNECTED) => {
                    Ok(if is_error(&e, ERROR_NO_DATA) {
                        Connect::Gone
                    } else {
                        Connect::Connected
                    })
                }
                Some(e) => Err(e),
            },
            // A client that connected just now sees the pipe close.
            _ => Ok(Connect::Stopped),
        }
    }

    /// The pipe goes with its last instance; nothing to remove.
    pub fn close(self) -> io::Result<()> {
        Ok(())
    }
}

/// One end of a connected pipe, shared by the stream's clones.
struct Pipe {
    handle: OwnedHandle,
    /// Manual-reset; signalled by `shutdown`, after which reads are end-of-stream and writes fail.
    shutdown: OwnedHandle,
    /// The server end (it can disconnect the client).
    server: bool,
    read_timeout: Mutex<Option<Duration>>,
    write_timeout: Mutex<Option<Duration>>,
}

/// How an overlapped read or write ended.
enum Outcome {
    Done(usize),
    TimedOut,
    Shutdown,
    Failed(io::Error),
}

impl Pipe {
    fn is_shut(&self) -> bool {
        is_signalled(&self.shutdown)
    }

    /// Waits for the operation of `overlapped` to end, cancelling it on timeout or shutdown, and
    /// returns only once the kernel is done with it.
    fn finish(&self, overlapped: &OVERLAPPED, timeout: Option<Duration>) -> Outcome {
        let waited = wait_any(&[overlapped.hEvent, raw(&self.shutdown)], timeout);
        let cut = match waited {
            Ok(Some(0)) => None,
            Ok(Some(_)) => Some(Outcome::Shutdown),
            Ok(None) => Some(Outcome::TimedOut),
            Err(e) => Some(Outcome::Failed(e)),
        };
        if cut.is_some() {
            // SAFETY: cancels exactly our operation, on the live handle it was started on.
            unsafe { CancelIoEx(raw(&self.handle), overlapped) };
        }
        let mut transferred = 0u32;
        // SAFETY: `overlapped` belongs to the operation in flight; bWait = TRUE returns only once it
        // completed or was cancelled, after which the kernel no longer touches it or its buffer.
        let ok = unsafe { GetOverlappedResult(raw(&self.handle), overlapped, &mut transferred, 1) };
        let error = (ok == 0).then(io::Error::last_os_error);
        match (error, cut) {
            // Completed, possibly just before the cancellation.
            (None, _) => Outcome::Done(transferred as usize),
            (Some(_), _) if transferred > 0 => Outcome::Done(transferred as usize),
            (Some(e), None) => Outcome::Failed(e),
            (Some(_), Some(why)) => why,
        }
    }
}

pub(super) struct Stream(Arc<Pipe>);

impl Stream {
    fn new(handle: OwnedHandle, server: bool) -> io::Result<Self> {
        Ok(Self(Arc::new(Pipe {
            handle,
            shutdown: event()?,
            server,
            read_timeout: Mutex::new(None),
            write_timeout: Mutex::new(None),
        })))
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        *self
            .0
            .read_timeout
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = timeout;
        Ok(())
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        *self
            .0
            .write_timeout
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = timeout;
        Ok(())
    }

    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self(Arc::clone(&self.0)))
    }

    pub fn shutdown(&self) -> io::Result<()> {
        let pipe = &self.0;
        // SAFETY: live handles, kept alive by the Arc. CancelIoEx with no OVERLAPPED cancels every
        // operation in flight on the handle, from any thread; each one's owner still waits for it.
        unsafe {
            SetEvent(raw(&pipe.shutdown));
            CancelIoEx(raw(&pipe.handle), std::ptr::null());
        }
        if pipe.server {
            // SAFETY: the live server end of the pipe; the client's operations fail from now on.
            unsafe { DisconnectNamedPipe(raw(&pipe.handle)) };
        }
        Ok(())
    }

    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let pipe = &self.0;
        if buf.is_empty() || pipe.is_shut() {
            return Ok(0);
        }
        let timeout = *pipe
            .read_timeout
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let done = event()?;
        let mut overlapped = OVERLAPPED {
            hEvent: raw(&done),
            ..Default::default()
        };
        // SAFETY: `buf` is valid for `len` bytes, and it, `overlapped` and `done` outlive the
        // operation: `finish` does not return before the kernel is done with them.
        let ok = unsafe {
            ReadFile(
                raw(&pipe.handle),
                buf.as_mut_ptr(),
                len,
                std::ptr::null_mut(),
                &mut overlapped,
            )
        };
        if ok == 0 {
            let e = io::Error::last_os_error();
            if !is_error(&e, ERROR_IO_PENDING) {
                return end_of_stream_or(e);
            }
        }
        match pipe.finish(&overlapped, timeout) {
            Outcome::Done(n) => Ok(n),
            Outcome::TimedOut => Err(timed_out("read")),
            Outcome::Shutdown => Ok(0),
            Outcome::Failed(_) if pipe.is_shut() => Ok(0),
            Outcome::Failed(e) => end_of_stream_or(e),
        }
    }

    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let pipe = &self.0;
        if pipe.is_shut() {
            return Err(shut());
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let timeout = *pipe
            .write_timeout
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let done = event()?;
        let mut overlapped = OVERLAPPED {
            hEvent: raw(&done),
            ..Default::default()
        };
        // SAFETY: `buf` is valid for `len` bytes, and it, `overlapped` and `done` outlive the
        // operation: `finish` does not return before the kernel is done with them.
        let ok = unsafe {
            WriteFile(
                raw(&pipe.handle),
                buf.as_ptr(),
                len,
                std::ptr::null_mut(),
                &mut overlapped,
            )
        };
        if ok == 0 {
            let e = io::Error::last_os_error();
            if !is_error(&e, ERROR_IO_PENDING) {
                return Err(e);
            }
        }
        match pipe.finish(&overlapped, timeout) {
            Outcome::Done(n) => Ok(n),
            Outcome::TimedOut => Err(timed_out("write")),
            Outcome::Shutdown => Err(shut()),
            Outcome::Failed(_) if pipe.is_shut() => Err(shut()),
            Outcome::Failed(e) => Err(e),
        }
    }
}

fn shut() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the connection was shut down")
}

/// The peer closing or disconnecting is end-of-stream for a reader.
fn end_of_stream_or(e: io::Error) -> io::Result<usize> {
    if [ERROR_BROKEN_PIPE, ERROR_PIPE_NOT_CONNECTED, ERROR_NO_DATA]
        .iter()
        .any(|&code| is_error(&e, code))
    {
        Ok(0)
    } else {
        Err(e)
    }
}

/// Refuses a pipe that neither SYSTEM nor Administrators own: only they can create one under
/// `ProtectedPrefix\Administrators`, and a squatter must not read our configuration.
fn check_owner(pipe: &OwnedHandle, path: &Path) -> io::Result<()> {
    let mut owner: PSID = std::ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `pipe` is live; the out-pointers are valid; `descriptor` receives a LocalAlloc'ed block
    // (freed below) that `owner` points into.
    let rc = unsafe {
        GetSecurityInfo(
            raw(pipe),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut descriptor,
        )
    };
    if rc != 0 {
        return Err(context(
            io::Error::from_raw_os_error(rc as i32),
            format!("cannot read the owner of {}", path.display()),
        ));
    }
    // SAFETY: `owner` points into `descriptor`, still allocated.
    let trusted = unsafe {
        IsWellKnownSid(owner, WinLocalSystemSid) != 0
            || IsWellKnownSid(owner, WinBuiltinAdministratorsSid) != 0
    };
    // SAFETY: allocated by GetSecurityInfo for us, freed once; `owner` is not used after this.
    unsafe { LocalFree(descriptor) };
    if trusted {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{} is owned by neither SYSTEM nor Administrators; refusing it",
            path.display()
        )))
    }
}

pub(super) fn connect(path: &Path) -> io::Result<Stream> {
    let name = wide(path.as_os_str());
    let give_up = Instant::now() + BUSY_RETRY;
    loop {
        // SAFETY: `name` is NUL-terminated; no security attributes or template file. The SQOS flags
        // keep the server from impersonating us beyond identification.
        let pipe = unsafe {
            CreateFileW(
                name.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                0,
                std::ptr::null(),
                OPEN_EXISTING,
                FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
                std::ptr::null_mut(),
            )
        };
        if pipe != INVALID_HANDLE_VALUE {
            // SAFETY: `pipe` is a fresh handle that nothing else owns.
            let pipe = unsafe { OwnedHandle::from_raw_handle(pipe) };
            check_owner(&pipe, path)?;
            return Stream::new(pipe, false);
        }
        let e = io::Error::last_os_error();
        if !is_error(&e, ERROR_PIPE_BUSY) || Instant::now() >= give_up {
            return Err(e);
        }
        // Every instance is taken for the moment (the server is between two accepts).
        // SAFETY: `name` is NUL-terminated.
        unsafe { WaitNamedPipeW(name.as_ptr(), 250) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipc_pipe_names_and_prefixes() {
        let dir = Path::new(DEFAULT_DIR);
        assert_eq!(
            endpoint_path(dir, "wg0").unwrap(),
            PathBuf::from(r"\\.\pipe\ProtectedPrefix\Administrators\WireGuard\wg0")
        );
        assert_eq!(
            endpoint_path(Path::new(r"\\.\pipe\"), "wg0").unwrap(),
            PathBuf::from(r"\\.\pipe\wg0")
        );
        assert!(endpoint_path(Path::new(r"C:\temp"), "wg0").is_err());
        let all = [
            r"ProtectedPrefix\Administrators\WireGuard\wg0",
            r"protectedprefix\administrators\wireguard\wg1",
            r"ProtectedPrefix\Administrators\WireGuard\deeper\x",
            r"ProtectedPrefix\Administrators\WireGuardX",
            r"ProtectedPrefix\Administrators\WireGuard\",
            "other",
        ];
        let rel = relative_prefix(dir).unwrap();
        assert_eq!(
            names_under(&rel, all.iter().map(|s| s.to_string()).collect()),
            vec!["wg0", "wg1"]
        );
    }
}

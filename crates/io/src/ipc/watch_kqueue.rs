//! macOS (and the BSDs): one kqueue for [listener, stop waker, socket directory].
//!
//! A socket node cannot be opened on Darwin, so, as wireguard-go does, the watch is on the directory:
//! `EVFILT_VNODE` + `NOTE_WRITE` fires whenever an entry is added or removed (ours or another
//! daemon's), and each event is checked against the inode we bound. `NOTE_DELETE | NOTE_RENAME` cover
//! the directory itself going away.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::event::{EvFlags, EventFilter, FilterFlag, KEvent, Kqueue};

use super::unix::Ready;
use crate::wait::Waker;

pub(super) struct Watch {
    kqueue: Kqueue,
    listener: RawFd,
    waker: RawFd,
    /// The open directory the vnode watch is on; `None` when it could not be set up (a note says so).
    dir: Option<OwnedFd>,
}

fn event(fd: RawFd, filter: EventFilter, flags: EvFlags, fflags: FilterFlag) -> KEvent {
    KEvent::new(fd as usize, filter, flags, fflags, 0, 0)
}

impl Watch {
    pub fn new(
        dir: &Path,
        _path: &Path,
        listener: &UnixListener,
        waker: &Waker,
        notes: &mut Vec<String>,
    ) -> io::Result<Self> {
        let kqueue = Kqueue::new()?;
        let listener = listener.as_raw_fd();
        let waker = waker.wait_handle().0;
        // Level-triggered: a pending connection is reported until it is accepted.
        let read = [
            event(
                listener,
                EventFilter::EVFILT_READ,
                EvFlags::EV_ADD,
                FilterFlag::empty(),
            ),
            event(
                waker,
                EventFilter::EVFILT_READ,
                EvFlags::EV_ADD,
                FilterFlag::empty(),
            ),
        ];
        kqueue.kevent(&read, &mut [], None)?;
        let watch_dir = || -> io::Result<OwnedFd> {
            let fd = OwnedFd::from(File::open(dir)?);
            let vnode = event(
                fd.as_raw_fd(),
                EventFilter::EVFILT_VNODE,
                EvFlags::EV_ADD | EvFlags::EV_CLEAR,
                FilterFlag::NOTE_WRITE | FilterFlag::NOTE_DELETE | FilterFlag::NOTE_RENAME,
            );
            kqueue.kevent(&[vnode], &mut [], None)?;
            Ok(fd)
        };
        let dir_fd = watch_dir()
            .inspect_err(|e| {
                notes.push(format!("cannot watch {} for removal: {e}", dir.display()));
            })
            .ok();
        Ok(Self {
            kqueue,
            listener,
            waker,
            dir: dir_fd,
        })
    }

    pub fn wait(&self, _listener: &UnixListener, _waker: &Waker) -> io::Result<Ready> {
        let mut events = [event(
            -1,
            EventFilter::EVFILT_READ,
            EvFlags::empty(),
            FilterFlag::empty(),
        ); 4];
        let n = match self.kqueue.kevent(&[], &mut events, None) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        let dir = self.dir.as_ref().map(AsRawFd::as_raw_fd);
        let mut ready = Ready::default();
        for e in events.iter().take(n) {
            let fd = RawFd::try_from(e.ident()).unwrap_or(-1);
            if fd == self.listener {
                ready.accept = true;
            } else if fd == self.waker {
                ready.stop = true;
            } else if Some(fd) == dir {
                ready.changed = true;
            }
        }
        Ok(ready)
    }

    /// `EV_CLEAR` resets the vnode event when it is reported: nothing to consume.
    pub fn drain(&self) {}
}

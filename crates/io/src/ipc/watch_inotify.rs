//! Linux: inotify on the socket file, and poll(2) over [listener, stop waker, inotify].
//!
//! Unlinking a file changes its link count, which inotify reports as IN_ATTRIB on the inode (the bound
//! socket keeps the inode alive, so IN_DELETE_SELF would come too late).

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::Path;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::unix::Ready;
use crate::wait::{self, WaitHandle, Waker};

pub(super) struct Watch {
    /// `None` when inotify could not be set up: then removal goes unnoticed (a note says so).
    inotify: Option<Inotify>,
}

impl Watch {
    pub fn new(
        _dir: &Path,
        path: &Path,
        _listener: &UnixListener,
        _waker: &Waker,
        notes: &mut Vec<String>,
    ) -> io::Result<Self> {
        let watch = || -> nix::Result<Inotify> {
            let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
            inotify.add_watch(
                path,
                AddWatchFlags::IN_ATTRIB
                    | AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF,
            )?;
            Ok(inotify)
        };
        let inotify = watch()
            .inspect_err(|e| {
                notes.push(format!("cannot watch {} for removal: {e}", path.display()));
            })
            .ok();
        Ok(Self { inotify })
    }

    pub fn wait(&self, listener: &UnixListener, waker: &Waker) -> io::Result<Ready> {
        let mut handles = [
            WaitHandle::from_fd(listener),
            waker.wait_handle(),
            waker.wait_handle(),
        ];
        let count = match &self.inotify {
            Some(inotify) => {
                handles[2] = WaitHandle::from_fd(&inotify.as_fd());
                3
            }
            None => 2,
        };
        let mut ready = [wait::Ready::default(); 3];
        wait::wait(&handles[..count], &mut ready[..count], None)?;
        let any = |r: &wait::Ready| r.readable || r.failed;
        Ok(Ready {
            accept: any(&ready[0]),
            stop: any(&ready[1]),
            changed: count == 3 && any(&ready[2]),
        })
    }

    /// Consumes the events that woke us.
    pub fn drain(&self) {
        if let Some(inotify) = &self.inotify {
            while inotify.read_events().is_ok() {}
        }
    }
}

//! Child processes of the demo: each in its own process group (so a Ctrl-C on the terminal reaches
//! only the demo, which then stops them in order), output collected by reader threads, and stopped on
//! drop so no error path leaves one running.

use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::interrupt::Interrupt;

/// Lines kept for error messages; longer output is dropped, not buffered.
const TAIL_LINES: usize = 20;
const MAX_LINE: usize = 4096;
/// Stdout lines waiting for the demo; a child that floods its stdout loses lines rather than memory.
const LINE_QUEUE: usize = 4096;
/// How long a child gets to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_millis(1500);

pub struct Spawned {
    name: String,
    child: Child,
    lines: Receiver<String>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Spawned {
    /// Starts `command` with stdin closed and stdout/stderr captured.
    pub fn start(name: &str, mut command: Command) -> Result<Self, String> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Only the last line or two reach the user; a backtrace would push the panic message out.
            .env("RUST_BACKTRACE", "0")
            .process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (sender, lines) = sync_channel(LINE_QUEUE);
        if let Some(stdout) = child.stdout.take() {
            let tail = Arc::clone(&tail);
            thread::spawn(move || collect_lines(stdout, &tail, Some(&sender)));
        }
        if let Some(stderr) = child.stderr.take() {
            let tail = Arc::clone(&tail);
            thread::spawn(move || collect_lines(stderr, &tail, None));
        }
        Ok(Self {
            name: name.to_string(),
            child,
            lines,
            tail,
        })
    }

    /// Stdout lines that already arrived.
    pub fn pending_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match self.lines.try_recv() {
                Ok(line) => out.push(line),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return out,
            }
        }
    }

    /// The stdout lines still on their way after the child exited (the reader threads may lag).
    pub fn remaining_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(1);
        // The channel closes when the reader thread reaches the end of the pipe.
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            out.push(line);
        }
        out
    }

    /// `Some(status)` once the child has exited.
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>, String> {
        self.child
            .try_wait()
            .map_err(|e| format!("cannot check {}: {e}", self.name))
    }

    /// Waits for the child to exit on its own; kills it and fails when it takes longer than `timeout`.
    pub fn wait(&mut self, timeout: Duration, interrupt: &Interrupt) -> Result<ExitStatus, String> {
        match interrupt.wait_for(timeout, || self.exit_status())? {
            Some(status) => Ok(status),
            None => {
                self.stop();
                Err(format!(
                    "{} did not finish within {} s",
                    self.name,
                    timeout.as_secs()
                ))
            }
        }
    }

    /// One line saying how the child failed, with the last thing it printed.
    pub fn failure(&self, status: ExitStatus) -> String {
        let last_words = self
            .tail
            .lock()
            .ok()
            .and_then(|tail| last_words(tail.iter()));
        match last_words {
            Some(words) => format!("{} failed ({status}): {words}", self.name),
            None => format!("{} failed ({status})", self.name),
        }
    }

    /// The child's status, as an error unless it exited successfully.
    pub fn expect_success(&self, status: ExitStatus) -> Result<(), String> {
        if status.success() {
            Ok(())
        } else {
            Err(self.failure(status))
        }
    }

    /// SIGTERM, a grace period for its own cleanup, then SIGKILL. Idempotent.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // The child is unreaped, so its pid cannot have been reused.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The line that best says why a child died: its last one, skipping Rust's backtrace hints and
/// naming a panic as such.
fn last_words<'a>(lines: impl DoubleEndedIterator<Item = &'a String>) -> Option<String> {
    let mut meaningful = lines.rev().filter(|line| !line.starts_with("note: "));
    let last = meaningful.next()?;
    Some(match meaningful.next() {
        Some(before) if before.contains("panicked at") => format!("panicked: {last}"),
        _ => last.clone(),
    })
}

/// Splits a child's output into lines (cut at `MAX_LINE`), keeps the last few and forwards stdout's.
fn collect_lines(
    mut output: impl Read,
    tail: &Mutex<VecDeque<String>>,
    forward: Option<&SyncSender<String>>,
) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    let emit = |bytes: &[u8]| {
        let line = String::from_utf8_lossy(bytes).trim_end().to_string();
        if line.is_empty() {
            return;
        }
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.clone());
        }
        if let Some(sender) = forward {
            let _ = sender.try_send(line);
        }
    };
    while let Ok(n) = output.read(&mut buf) {
        let Some(read) = buf.get(..n).filter(|r| !r.is_empty()) else {
            break;
        };
        for &byte in read {
            if byte == b'\n' {
                emit(&pending);
                pending.clear();
            } else if pending.len() < MAX_LINE {
                pending.push(byte);
            }
        }
    }
    emit(&pending);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(lines: &[&str]) -> Option<String> {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        last_words(lines.iter())
    }

    #[test]
    fn last_words_name_the_cause() {
        assert_eq!(words(&[]), None);
        assert_eq!(
            words(&["starting", "ERROR: no TUN"]).as_deref(),
            Some("ERROR: no TUN")
        );
        let panic = [
            "thread 'main' panicked at src/daemon.rs:25:9:",
            "not yet implemented",
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        ];
        assert_eq!(
            words(&panic).as_deref(),
            Some("panicked: not yet implemented")
        );
    }
}

//! Two network namespaces joined by a veth pair: a two-host network on one machine.
//!
//! The veth ends are created directly inside the namespaces, so deleting the namespaces removes
//! everything this module made.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub const NS_A: &str = "fwdemo-a";
pub const NS_B: &str = "fwdemo-b";
pub const UNDERLAY_A: &str = "10.77.0.1";
pub const UNDERLAY_B: &str = "10.77.0.2";
const VETH_A: &str = "fwdemo-va";
const VETH_B: &str = "fwdemo-vb";

/// Runs `ip ARGS`; the error is `ip`'s own message.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr.lines().next().unwrap_or("no message").trim();
        Err(format!("`ip {}` failed: {reason}", args.join(" ")))
    }
}

/// The demo's namespaces that exist right now (left over from a run that was killed).
pub fn existing_namespaces() -> Result<Vec<&'static str>, String> {
    let list = ip(&["netns", "list"])?;
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    Ok([NS_A, NS_B]
        .into_iter()
        .filter(|ns| names.contains(ns))
        .collect())
}

/// Kills every process inside `ns` and deletes it.
pub fn remove_namespace(ns: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let pids = namespace_pids(ns);
        if pids.is_empty() || Instant::now() >= deadline {
            break;
        }
        for pid in pids {
            let _ = kill(pid, Signal::SIGKILL);
        }
        thread::sleep(Duration::from_millis(20));
    }
    ip(&["netns", "delete", ns]).map(drop)
}

fn namespace_pids(ns: &str) -> Vec<Pid> {
    let Ok(list) = ip(&["netns", "pids", ns]) else {
        return Vec::new();
    };
    list.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .map(Pid::from_raw)
        .collect()
}

/// The namespaces, removed on drop.
pub struct Testbed {
    live: Vec<&'static str>,
}

impl Testbed {
    pub fn create() -> Result<Self, String> {
        let mut testbed = Testbed { live: Vec::new() };
        for ns in [NS_A, NS_B] {
            ip(&["netns", "add", ns])?;
            testbed.live.push(ns);
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "link", "add", VETH_A, "netns", NS_A, "type", "veth", "peer", "name", VETH_B, "netns",
            NS_B,
        ])?;
        for (ns, veth, addr) in [(NS_A, VETH_A, UNDERLAY_A), (NS_B, VETH_B, UNDERLAY_B)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", veth])?;
            ip(&["-n", ns, "link", "set", veth, "up"])?;
        }
        Ok(testbed)
    }

    /// Deletes the namespaces (and with them the veth pair and any interface inside). Idempotent.
    pub fn remove(&mut self) -> Result<(), String> {
        let mut first_error = None;
        for ns in self.live.drain(..) {
            if let Err(e) = remove_namespace(ns) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

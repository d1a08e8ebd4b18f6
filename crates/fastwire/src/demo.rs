//! `fastwire demo`: the first command a newcomer runs.
//!
//! As root on a bare Linux machine it builds two network namespaces joined by a veth pair, brings a
//! tunnel up between them, shows the handshake, pings across, pushes a verified bulk TCP transfer
//! through the tunnel while pinging alongside, prints throughput and round-trip times, and removes
//! everything it made, also when interrupted. It needs only this binary and iproute2: the traffic
//! comes from `fastwire demo-helper ...` run inside the namespaces.
//!
//! Only SIGKILL defeats the cleanup; the next run then finds the namespaces and removes them first.

mod args;
mod bulk;
mod icmp;
mod interrupt;
mod measure;
mod pattern;
mod ping;
mod process;
mod protocol;
mod report;
mod testbed;
mod tunnel;

use std::net::Ipv4Addr;
use std::time::Duration;

use interrupt::Interrupt;
use process::Spawned;
use report::{Results, Steps};
use testbed::{NS_A, NS_B, Testbed};
use tunnel::{End, Keypair, TunnelProgram};

const A: End = End {
    namespace: NS_A,
    iface: "fwdemo0a",
    underlay: Ipv4Addr::new(10, 77, 0, 1),
    overlay: Ipv4Addr::new(10, 78, 0, 1),
};
const B: End = End {
    namespace: NS_B,
    iface: "fwdemo0b",
    underlay: Ipv4Addr::new(10, 77, 0, 2),
    overlay: Ipv4Addr::new(10, 78, 0, 2),
};
/// A handshake is retried after 5 s, so one lost initiation still completes within this.
const HANDSHAKE_TIMEOUT_MS: u64 = 6000;
const IDLE_PINGS: u64 = 10;
/// An hour is plenty for a demo, and keeps every derived count and deadline small.
const MAX_SECONDS: u64 = 3600;

/// `fastwire demo --seconds N`.
pub fn run(seconds: u64) -> Result<(), String> {
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err(format!("--seconds must be between 1 and {MAX_SECONDS}"));
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("fastwire demo needs root (CAP_NET_ADMIN): run it with sudo".into());
    }
    testbed::ip(&["-V"])
        .map_err(|_| "fastwire demo needs iproute2 (the `ip` command): install it")?;
    let interrupt = Interrupt::install()?;
    let program = TunnelProgram::from_env()?;

    println!(
        "fastwire demo: a {} tunnel between two network namespaces",
        program.label()
    );
    remove_leftovers()?;
    let mut made = Made::default();
    let result = demo(&program, seconds, &interrupt, &mut made);
    let cleanup = made.remove();
    match &cleanup {
        Ok(()) => {
            println!("cleanup: tunnel processes stopped, namespaces and UAPI sockets removed")
        }
        Err(e) => println!("cleanup: {e}"),
    }
    match result {
        Ok(results) => {
            report::print_results(&results.view(&program.label()));
            cleanup
        }
        Err(_) if interrupt.is_set() => Err("interrupted".into()),
        Err(e) => Err(e),
    }
}

/// `fastwire demo-helper MODE ...`, run by the demo inside its namespaces.
pub fn helper(args: &[String]) -> Result<(), String> {
    let args = args::HelperArgs::parse(args)?;
    let mode: String = args.positional(0, "helper mode (ping, source or sink)")?;
    match mode.as_str() {
        "ping" => ping::run(&args),
        "source" => bulk::source(&args),
        "sink" => bulk::sink(&args),
        other => Err(format!(
            "unknown demo helper {other:?} (ping, source or sink)"
        )),
    }
}

/// What the demo created, so it can all be removed, in order, whatever happened.
#[derive(Default)]
struct Made {
    testbed: Option<Testbed>,
    daemons: Vec<Spawned>,
}

impl Made {
    fn remove(&mut self) -> Result<(), String> {
        // Daemons first, so they remove their interfaces and sockets themselves.
        for daemon in &mut self.daemons {
            daemon.stop();
        }
        self.daemons.clear();
        tunnel::remove_socket(A.iface);
        tunnel::remove_socket(B.iface);
        self.testbed
            .take()
            .map_or(Ok(()), |mut testbed| testbed.remove())
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// A namespace that survived an earlier run (killed with SIGKILL, say) would make `ip netns add` fail.
fn remove_leftovers() -> Result<(), String> {
    for ns in testbed::existing_namespaces()? {
        println!("note: removing namespace {ns}, left over from an earlier run");
        testbed::remove_namespace(ns)?;
    }
    tunnel::remove_socket(A.iface);
    tunnel::remove_socket(B.iface);
    Ok(())
}

struct DemoResults {
    handshake: Duration,
    idle_ping: measure::PingSummary,
    bulk: measure::BulkOutcome,
}

impl DemoResults {
    fn view<'a>(&'a self, tunnel: &'a str) -> Results<'a> {
        Results {
            tunnel,
            handshake: self.handshake,
            idle_ping: &self.idle_ping,
            bulk: &self.bulk,
        }
    }
}

fn demo(
    program: &TunnelProgram,
    seconds: u64,
    interrupt: &Interrupt,
    made: &mut Made,
) -> Result<DemoResults, String> {
    let mut steps = Steps::new(6, interrupt);
    let label = program.label();

    steps.run(
        &format!("namespaces {NS_A} and {NS_B}, joined by a veth pair"),
        || {
            made.testbed = Some(Testbed::create()?);
            Ok(((), format!("{} <-> {}", A.underlay, B.underlay)))
        },
    )?;

    steps.run(
        &format!("starting {label} -f {} and {label} -f {}", A.iface, B.iface),
        || {
            for end in [A, B] {
                made.daemons.push(tunnel::start(program, end, interrupt)?);
            }
            Ok(((), "UAPI sockets up".to_string()))
        },
    )?;

    steps.run("generating keys, configuring both ends over UAPI", || {
        let (keys_a, keys_b) = (Keypair::generate(), Keypair::generate());
        tunnel::configure(A, &keys_a, B, keys_b.public)?;
        tunnel::configure(B, &keys_b, A, keys_a.public)?;
        tunnel::bring_up(A)?;
        tunnel::bring_up(B)?;
        Ok((
            (),
            format!("{} <-> {}, MTU {}", A.overlay, B.overlay, tunnel::MTU),
        ))
    })?;

    let handshake = steps.run(&format!("handshake {} <-> {}", A.iface, B.iface), || {
        let took = handshake(interrupt)?;
        Ok((took, format!("completed in {}", report::ms_text(took))))
    })?;

    let idle_ping = steps.run(
        &format!("ping {} -> {}, {IDLE_PINGS} echoes", A.overlay, B.overlay),
        || {
            let summary = measure::ping(A, B.overlay, IDLE_PINGS, 100, 1000, interrupt)?;
            let text = report::ping_text(&summary);
            Ok((summary, text))
        },
    )?;

    steps.heading(&format!(
        "bulk TCP {} -> {} for {seconds} s, every byte verified, ping alongside",
        A.overlay, B.overlay
    ));
    let bulk = measure::bulk(A, B, seconds, interrupt)?;
    Ok(DemoResults {
        handshake,
        idle_ping,
        bulk,
    })
}

/// Sends one ping to start the handshake, then checks both ends report it. The time shown is from
/// the first packet to the initiator's completed handshake (at most the first ping's round trip).
fn handshake(interrupt: &Interrupt) -> Result<Duration, String> {
    let trigger = measure::ping(A, B.overlay, 1, 0, HANDSHAKE_TIMEOUT_MS, interrupt)?;
    let first_rtt = trigger.min().ok_or_else(|| {
        format!(
            "no reply through the tunnel within {} s: the handshake did not complete",
            HANDSHAKE_TIMEOUT_MS / 1000
        )
    })?;
    let both = interrupt.wait_for(Duration::from_secs(3), || {
        Ok(tunnel::last_handshake(A)?.zip(tunnel::last_handshake(B)?))
    })?;
    let (initiator_done, _) =
        both.ok_or("the ping went through, but the two ends do not both report a handshake")?;
    let took = trigger
        .started
        .and_then(|start| initiator_done.duration_since(start).ok())
        .filter(|took| *took <= first_rtt)
        .unwrap_or(first_rtt);
    Ok(took)
}

//! fastwire-loadgen: bounded load for the benchmarks, aimed only at test addresses.
//!
//! `flood` sends handshake initiations with a valid mac1 (it needs only the target's public key, which is
//! not secret: the cheapest attack on a WireGuard responder) or random junk of the same size, from many
//! source ports, with UDP GSO: one system call carries up to 64 datagrams, so the flooder costs the
//! machine a small fraction of a core where a per-datagram sender (tests/e2e/handshake_flood.py) takes a
//! whole one — on a 2-core machine that difference decides what a flood benchmark measures.
//!
//! `clients` plays many genuine WireGuard clients (fastwire-proto as a client library) against one
//! server, for the scale benchmark: handshakes per second and their latency.

mod clients;
mod flood;
mod target;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "fastwire-loadgen", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Flood a WireGuard port with valid-mac1 initiations or junk, bounded in count and time.
    Flood(flood::Args),
    /// Print the [Peer] sections of the `clients` of a seed, for the server's configuration.
    ClientsConfig(clients::ConfigArgs),
    /// Handshake from many real WireGuard clients; prints the rate the server completes them and the
    /// latency of each, as JSON.
    Clients(clients::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Flood(args) => flood::run(&args),
        Command::ClientsConfig(args) => clients::print_config(&args),
        Command::Clients(args) => clients::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fastwire-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The command line: what `fastwire ...` parses and runs.

#[cfg(target_os = "linux")]
use crate::demo;
use crate::{config, daemon, keys, show, show_json, syncconf, top, wgquick};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

const AFTER_HELP: &str = "\
Examples:
  fastwire -f wg0                 # create wg0 and serve /var/run/wireguard/wg0.sock in the foreground
  wg setconf wg0 wg0.conf         # then configure it exactly as you would wireguard-go
  WG_QUICK_USERSPACE_IMPLEMENTATION=fastwire wg-quick up ./wg0.conf
  fastwire up /etc/wireguard/wg0.conf     # or run standalone from a wg-quick file
  fastwire demo                   # two namespaces, a tunnel, a ping and a bulk transfer
  fastwire -f wg0 --metrics-listen 127.0.0.1:9586   # Prometheus metrics at /metrics

WireGuard over TCP (for networks that block UDP):
  fastwire -f wg0 --listen-tcp-port 443   # server: accept TCP on 443 beside its UDP port
  fastwire up server.conf         # ... or put `ListenTcpPort = 443' in [Interface]
  fastwire up client.conf         # client: [Peer] Endpoint = tcp://vpn.example.com:443";

const TCP_MAX_UNAUTHENTICATED_HELP: &str = "\
How many accepted TCP connections may wait for a valid WireGuard handshake; when one more arrives, \
the oldest waiting one is closed. Caps what scanners and connection floods cost a TCP listener";

/// A count of at least 1.
fn parse_positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{text}' is not a number of at least 1")),
    }
}

/// Seconds between `fastwire top` readings.
fn parse_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.1..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "`{text}' is not a number of seconds from 0.1 to 3600"
        )),
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum TopSort {
    /// Fastest receive rate first.
    Rx,
    /// Fastest transmit rate first.
    Tx,
    /// Most recent handshake first.
    Handshake,
    /// By public key.
    Key,
}

/// fastwire — a fast userspace WireGuard tunnel.
///
/// Called with an interface name, it behaves like wireguard-go: it creates the TUN interface and serves
/// the WireGuard UAPI socket /var/run/wireguard/IFACE.sock, so `wg`, `wg-quick` and other tools drive it.
#[derive(Parser, Debug)]
#[command(name = "fastwire", version, after_help = AFTER_HELP, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Stay in the foreground instead of daemonizing.
    #[arg(short, long)]
    foreground: bool,

    #[command(flatten)]
    plane: DataPlaneArgs,

    /// Also accept WireGuard-over-TCP connections on this TCP port (as `listen_tcp_port=N` over the
    /// UAPI would); fails at start if the port is taken.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    listen_tcp_port: Option<u16>,

    #[arg(long, value_name = "N", value_parser = parse_positive, help = TCP_MAX_UNAUTHENTICATED_HELP,
          default_value_t = fastwire_engine::DEFAULT_TCP_MAX_UNAUTHENTICATED)]
    tcp_max_unauthenticated: usize,

    #[command(flatten)]
    metrics: MetricsArgs,

    /// Internal: set by the background launcher; stop using the terminal once the interface is up.
    #[arg(long, hide = true)]
    detach_after_start: bool,

    /// Do not use TUN offloads (TSO/GRO), even where the kernel has them. Also: FASTWIRE_OFFLOAD=0.
    #[arg(long, global = true)]
    no_offload: bool,

    /// Interface to create (wireguard-go calling convention).
    #[arg(value_name = "IFACE")]
    iface: Option<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

const METRICS_LISTEN_HELP: &str = "\
Serve Prometheus metrics at http://ADDR:PORT/metrics: prometheus_wireguard_exporter's per-peer series \
(wireguard_sent_bytes_total, wireguard_received_bytes_total, wireguard_latest_handshake_seconds), then \
fastwire's drops by reason, TCP closes by reason and counters. Off unless given; anyone who can reach \
the port can read peer keys and traffic, so keep it on loopback or a management network \
(e.g. 127.0.0.1:9586)";

/// The Prometheus endpoint; the same flags for `fastwire IFACE` and `fastwire up`.
#[derive(clap::Args, Debug, Clone, Copy)]
struct MetricsArgs {
    #[arg(long, value_name = "ADDR:PORT", value_parser = config::parse_metrics_listen, help = METRICS_LISTEN_HELP)]
    metrics_listen: Option<std::net::SocketAddr>,

    /// Leave the per-peer series out of the metrics (with tens of thousands of peers they are most of
    /// every scrape).
    #[arg(long)]
    metrics_no_peers: bool,
}

impl MetricsArgs {
    fn peers(&self) -> crate::metrics::PeerSeries {
        if self.metrics_no_peers {
            crate::metrics::PeerSeries::Omit
        } else {
            crate::metrics::PeerSeries::Include
        }
    }

    fn choice(&self) -> wgquick::MetricsChoice {
        wgquick::MetricsChoice {
            listen: self.metrics_listen,
            peers: self.peers(),
        }
    }

    fn options(&self) -> Option<daemon::MetricsOptions> {
        self.metrics_listen.map(|listen| daemon::MetricsOptions {
            listen,
            peers: self.peers(),
        })
    }
}

/// How the data plane is laid out; the same flags for `fastwire IFACE` and `fastwire up`.
#[derive(clap::Args, Debug, Clone, Copy)]
struct DataPlaneArgs {
    /// Number of data-plane workers (default: one per online CPU).
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    workers: Option<usize>,

    /// TUN queues to open (Linux; default: one per worker). 1 selects the single-queue data path that
    /// Windows and macOS always use: one queue read by one worker at a time, the crypto spread over all
    /// workers, every peer's packets kept in order.
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    tun_queues: Option<usize>,

    /// Windows: the Wintun ring's size in bytes, a power of two from 128KiB to 64MiB (e.g. 4MiB).
    #[arg(long, value_name = "SIZE", value_parser = config::parse_ring_capacity)]
    ring_capacity: Option<u32>,

    /// Linux: run the data-path workers real-time (SCHED_FIFO, needs root or CAP_SYS_NICE), so packets
    /// are handled as soon as they arrive rather than after busy programs: on a loaded 2-core machine a
    /// ping beside 4 streams went from 2.15 to 0.55 ms (median). Off by default, since a worker kept busy
    /// (a flood) then holds its core for up to the kernel's real-time share (95 %).
    #[arg(long)]
    realtime: bool,
}

impl From<DataPlaneArgs> for daemon::DataPlane {
    fn from(a: DataPlaneArgs) -> Self {
        daemon::DataPlane {
            workers: a.workers,
            tun_queues: a.tun_queues,
            ring_capacity: a.ring_capacity,
            realtime: a.realtime.then_some(true),
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Bring a tunnel up from a wg-quick style file and run it in the foreground until a signal.
    #[command(
        after_help = "Example:\n  fastwire up /etc/wireguard/wg0.conf   # interface wg0, from the file name"
    )]
    Up {
        /// wg-quick configuration file; the interface is named after the file (wg0.conf -> wg0).
        file: PathBuf,
        #[command(flatten)]
        plane: DataPlaneArgs,
        #[arg(long, value_name = "N", value_parser = parse_positive, help = TCP_MAX_UNAUTHENTICATED_HELP,
              default_value_t = fastwire_engine::DEFAULT_TCP_MAX_UNAUTHENTICATED)]
        tcp_max_unauthenticated: usize,
        #[command(flatten)]
        metrics: MetricsArgs,
    },
    /// Make a running interface match a wg-quick file, keeping sessions: peers gone from the file are
    /// removed, the others updated in place (as `wg syncconf IFACE <(wg-quick strip FILE)`). Addresses,
    /// MTU, DNS and routes are left alone. `systemctl reload fastwire@IFACE` runs this.
    #[command(
        after_help = "Example:\n  fastwire syncconf wg0 /etc/wireguard/wg0.conf   # after editing the file"
    )]
    Syncconf {
        /// The running interface.
        iface: String,
        /// wg-quick configuration file (its [Interface] keys and [Peer] sections are used).
        file: PathBuf,
    },
    /// Stop a tunnel started with `fastwire up` (by file or interface name) and remove what it created.
    #[command(
        after_help = "Examples:\n  fastwire down wg0\n  fastwire down /etc/wireguard/wg0.conf"
    )]
    Down {
        /// The configuration file or the interface name.
        target: String,
    },
    /// Print a new base64 private key (same format as `wg genkey`).
    #[command(after_help = "Example:\n  umask 077; fastwire genkey > private.key")]
    Genkey,
    /// Read a base64 private key on stdin and print its public key (same as `wg pubkey`).
    #[command(after_help = "Example:\n  fastwire pubkey < private.key > public.key")]
    Pubkey,
    /// Print a new base64 preshared key (same as `wg genpsk`).
    #[command(after_help = "Example:\n  fastwire genpsk > peer.psk")]
    Genpsk,
    /// Show interfaces: peers, endpoints, handshakes, transfer, and packets dropped by reason.
    #[command(
        after_help = "Examples:\n  fastwire show\n  fastwire show wg0\n  fastwire show --json wg0 | jq '.interfaces[0].peers[].transfer_rx'"
    )]
    Show {
        /// Interface to show (default: every fastwire/WireGuard UAPI socket found).
        iface: Option<String>,
        /// Print JSON for scripts: one object with an `interfaces` array (keys in base64, times in
        /// UNIX seconds, counters as numbers; the private key is never printed).
        #[arg(long)]
        json: bool,
    },
    /// A live view of one interface: each peer's receive/transmit rate, endpoint and transport,
    /// handshake age; drops per second by reason; each worker's packets per second and batch sizes.
    ///
    /// On a terminal it is interactive (q quits; s cycles the sort; r, t, h, k sort by receive,
    /// transmit, handshake, key). When stdout is not a terminal, or with --count, it prints plain
    /// frames instead, one per interval.
    #[command(
        after_help = "Examples:\n  fastwire top wg0\n  fastwire top wg0 --count 3 --sort tx     # three plain frames, busiest senders first\n  fastwire top --interval 5 | tee top.log"
    )]
    Top {
        /// Interface to watch (default: the only one there is).
        iface: Option<String>,
        /// Seconds between readings (at least 0.1).
        #[arg(long, short = 'i', value_name = "SECONDS", default_value_t = 1.0, value_parser = parse_interval)]
        interval: f64,
        /// Print this many plain frames, then exit (also on a terminal).
        #[arg(long, short = 'n', value_name = "N", value_parser = parse_positive)]
        count: Option<usize>,
        /// Peers per plain frame, in sort order (the terminal view shows as many as fit).
        #[arg(long, value_name = "N", default_value_t = 20, value_parser = parse_positive)]
        peers: usize,
        /// The order of the peers.
        #[arg(long, value_enum, default_value_t = TopSort::Rx)]
        sort: TopSort,
    },
    /// Run a self-contained demo: two namespaces, a tunnel, handshake, ping, bulk transfer, cleanup.
    #[command(after_help = "Example:\n  sudo fastwire demo --seconds 5")]
    Demo {
        /// Seconds of bulk transfer.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Internal helpers the demo runs inside its namespaces (traffic source/sink, ping).
    /// Internal: write man pages and shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenerateAssets { dir: PathBuf },
    #[command(hide = true)]
    DemoHelper {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The program: parse the command line, run it, report an error in one line.
/// The whole command-line definition (for man pages and completions).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    daemon::set_offload(!cli.no_offload);
    let result = match (cli.command, cli.iface) {
        (Some(command), _) => run_command(command),
        (None, Some(iface)) => daemon::run_wireguard_go_style(
            &iface,
            &daemon::GoStyleOptions {
                foreground: cli.foreground,
                detach_after_start: cli.detach_after_start,
                plane: cli.plane.into(),
                listen_tcp_port: cli.listen_tcp_port,
                tcp_max_unauthenticated: cli.tcp_max_unauthenticated,
                metrics: cli.metrics.options(),
            },
        ),
        (None, None) => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // An empty message means the error was already reported (by a child process).
            if !message.is_empty() {
                // Not eprintln!: a detached daemon's stderr may be gone, and that must not panic.
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "fastwire: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run_command(command: Command) -> Result<(), String> {
    match command {
        Command::Up {
            file,
            plane,
            tcp_max_unauthenticated,
            metrics,
        } => wgquick::up(&file, plane.into(), tcp_max_unauthenticated, metrics.choice()),
        Command::Down { target } => wgquick::down(&target),
        Command::GenerateAssets { dir } => crate::assets::generate(self::command(), &dir),
        Command::Syncconf { iface, file } => syncconf::syncconf(&iface, &file),
        Command::Genkey => keys::genkey(),
        Command::Pubkey => keys::pubkey(),
        Command::Genpsk => keys::genpsk(),
        Command::Top {
            iface,
            interval,
            count,
            peers,
            sort,
        } => top::run(
            iface.as_deref(),
            &top::Options {
                interval: std::time::Duration::from_secs_f64(interval),
                count,
                max_peers: peers,
                sort: match sort {
                    TopSort::Rx => top::SortBy::Rx,
                    TopSort::Tx => top::SortBy::Tx,
                    TopSort::Handshake => top::SortBy::Handshake,
                    TopSort::Key => top::SortBy::Key,
                },
            },
        ),
        Command::Show { iface, json: false } => show::show(iface.as_deref()),
        Command::Show { iface, json: true } => show_json::show_json(iface.as_deref()),
        #[cfg(target_os = "linux")]
        Command::Demo { seconds } => demo::run(seconds),
        #[cfg(target_os = "linux")]
        Command::DemoHelper { args } => demo::helper(&args),
        #[cfg(not(target_os = "linux"))]
        Command::Demo { .. } | Command::DemoHelper { .. } => Err(
            "fastwire demo needs Linux network namespaces; on this system, try `fastwire up FILE` with a peer"
                .into(),
        ),
    }
}

/// Logs go to stderr; `FASTWIRE_LOG` (e.g. `debug`, `fastwire_engine=trace`) picks the level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FASTWIRE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

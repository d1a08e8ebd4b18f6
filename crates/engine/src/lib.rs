//! fastwire's data plane: workers that wire TUN <-> WireGuard <-> UDP, the timer thread, and the
//! configuration interface (apply a [`config::DeviceUpdate`], read a [`config::DeviceSnapshot`]).

pub mod config;
mod handshake;
mod pipeline;
mod rx_batch;
mod shared;
pub mod stats;
mod tcp;
mod timer;
mod tun_sink;
mod tx_batch;
mod worker;

pub use shared::ShutdownReason;

use crate::config::{DeviceSnapshot, DeviceUpdate, PeerSnapshot, SetError};
use crate::shared::Shared;
use crate::stats::WorkerStats;
use arc_swap::ArcSwapOption;
use fastwire_io::tun::{Offloads, TunDevice, TunOptions, TunQueue};
use fastwire_io::udp::UdpSocket;
use fastwire_io::wait::Waker;
use fastwire_proto::Device;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

/// How to start the data plane.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Interface name to create.
    pub iface: String,
    /// Worker threads; 0 = one per online CPU.
    pub workers: usize,
    /// TUN queues: 0 = one per worker where the platform has multi-queue TUN (Linux), else 1. With one
    /// queue and several workers the single-queue pipeline spreads the crypto over the workers.
    pub tun_queues: usize,
    pub mtu: u16,
    /// Use TUN offloads (TSO/GRO) when the kernel has them.
    pub offload: bool,
    /// Windows: Wintun ring capacity in bytes; 0 = the default.
    pub ring_capacity: u32,
    /// Most TCP connections accepted but not yet authenticated by a handshake; beyond it the oldest is
    /// closed. 0 = the default ([`DEFAULT_TCP_MAX_UNAUTHENTICATED`]).
    pub tcp_max_unauthenticated: usize,
    /// Run the data-path workers SCHED_FIFO (Linux, needs root or CAP_SYS_NICE): woken packets are
    /// handled at once instead of after busy normal threads (bench/RESULTS.md: ping under 4 streams p50
    /// 2.15 -> 0.55 ms on 2 cores). Off by default: a worker busy at 100 % (a flood) then takes its core
    /// for up to the kernel's real-time share (95 %).
    pub realtime: bool,
}

impl EngineOptions {
    /// Defaults for the interface `iface`: a worker per CPU, multi-queue where available, MTU 1420.
    pub fn new(iface: &str) -> Self {
        Self {
            iface: iface.to_string(),
            workers: 0,
            tun_queues: 0,
            mtu: 1420,
            offload: true,
            ring_capacity: 0,
            tcp_max_unauthenticated: 0,
            realtime: false,
        }
    }
}

/// Makes the calling data-path thread real-time when asked; says so (once per thread) when it cannot.
fn raise_priority(realtime: bool) {
    if !realtime {
        return;
    }
    if let Err(e) = fastwire_io::sys::set_thread_realtime() {
        tracing::warn!(
            thread = std::thread::current().name().unwrap_or("?"),
            "cannot run the data path real-time (SCHED_FIFO): {e} — it needs root or CAP_SYS_NICE on \
             Linux; running at normal priority"
        );
    }
}

/// Default cap on unauthenticated TCP connections.
pub const DEFAULT_TCP_MAX_UNAUTHENTICATED: usize = 64;

/// How the data plane is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPath {
    /// One run-to-completion worker per TUN queue, each with its own UDP socket.
    MultiQueue { queues: usize },
    /// One TUN queue and one UDP socket shared by `workers` workers (leader/followers, ordered commit).
    SingleQueue { workers: usize },
}

/// `2 TUN queues, a worker each` / `1 TUN queue, 4 workers`.
impl std::fmt::Display for DataPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        match *self {
            DataPath::MultiQueue { queues } => {
                write!(f, "{queues} TUN queue{}, a worker each", plural(queues))
            }
            DataPath::SingleQueue { workers } => write!(f, "1 TUN queue, {workers} workers"),
        }
    }
}

/// A running tunnel interface.
pub struct Engine {
    shared: Arc<Shared>,
    /// Each counting thread's stats, with its label in `worker_LABEL_NAME` stats.
    stats: Vec<(String, Arc<WorkerStats>)>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    config_lock: Mutex<()>,
    /// The listen port last configured (0 = any), as opposed to the port actually bound.
    configured_port: std::sync::atomic::AtomicU16,
    /// The `tcp://` endpoint configured for each peer that has one: the TCP owner keeps them connected.
    tcp_dial_targets: Mutex<std::collections::HashMap<config::Key, std::net::SocketAddr>>,
    iface: String,
    offloads: Offloads,
    data_path: DataPath,
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Engine {
    /// Creates the TUN interface, binds a UDP socket on a random port and starts the workers.
    /// Errors are one line saying what is wrong and what to do.
    pub fn start(opts: EngineOptions) -> Result<Engine, String> {
        if !fastwire_io::sys::may_admin_network() {
            return Err(fastwire_io::sys::admin_hint(&opts.iface));
        }
        let workers = Self::worker_count(&opts);
        let queues = match opts.tun_queues {
            0 if fastwire_io::tun::MULTI_QUEUE => workers,
            0 => 1,
            n => n.min(workers),
        };
        let device = fastwire_io::tun::create(&TunOptions {
            name: opts.iface.clone(),
            queues,
            mtu: opts.mtu,
            offload: opts.offload,
            ring_capacity: opts.ring_capacity,
        })?;
        Self::start_on(device, opts)
    }

    fn worker_count(opts: &EngineOptions) -> usize {
        match opts.workers {
            0 => default_workers(),
            n => n,
        }
    }

    /// Starts the data plane on a device already created (a real one from [`fastwire_io::tun::create`],
    /// or a fake one in tests). With more than one queue there is a worker per queue.
    pub fn start_on(device: TunDevice, opts: EngineOptions) -> Result<Engine, String> {
        let TunDevice {
            name,
            queues,
            offloads,
        } = device;
        let data_path = if queues.len() > 1 {
            DataPath::MultiQueue {
                queues: queues.len(),
            }
        } else {
            match Self::worker_count(&opts) {
                1 => DataPath::MultiQueue { queues: 1 },
                workers => DataPath::SingleQueue { workers },
            }
        };
        let (workers, sockets_wanted) = match data_path {
            DataPath::MultiQueue { queues } => (queues, queues),
            DataPath::SingleQueue { workers } => (workers, 1),
        };
        tracing::info!(iface = %name, ?data_path, tcp_offload = offloads.tcp, udp_offload = offloads.udp, "TUN device ready");
        let sockets = UdpSocket::bind_group(0, 0, sockets_wanted)
            .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
        let wakers = (0..workers)
            .map(|_| Waker::new())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot create a waker: {e}"))?;
        let tcp_poll =
            mio::Poll::new().map_err(|e| format!("cannot create a poller for TCP: {e}"))?;
        let tcp_waker = mio::Waker::new(tcp_poll.registry(), tcp::WAKER_TOKEN)
            .map_err(|e| format!("cannot create a waker for TCP: {e}"))?;
        let shared = Arc::new(Shared {
            device: Device::new(Instant::now()),
            sockets: ArcSwapOption::from_pointee(sockets),
            retired_kernel_drops: std::sync::atomic::AtomicU64::new(0),
            fwmark: AtomicU32::new(0),
            mtu: AtomicUsize::new(opts.mtu as usize),
            stop: AtomicBool::new(false),
            worker_wakers: wakers,
            timer_wake: (Mutex::new(false), Condvar::new()),
            shutdown: (Mutex::new(None), Condvar::new()),
            control_stats: WorkerStats::default(),
            tcp_states: stats::TcpStates::default(),
            handshakes: handshake::HandshakeQueue::new(),
            tcp: tcp::TcpHandoff::new(tcp_waker),
            tcp_control: Mutex::new(tcp::Control::default()),
            tcp_control_dirty: AtomicBool::new(false),
            tcp_port: std::sync::atomic::AtomicU16::new(0),
        });
        let engine = Engine {
            shared,
            stats: Vec::new(),
            threads: Mutex::new(Vec::new()),
            config_lock: Mutex::new(()),
            configured_port: std::sync::atomic::AtomicU16::new(0),
            tcp_dial_targets: Mutex::new(std::collections::HashMap::new()),
            iface: name,
            offloads,
            data_path,
        };
        let mut engine = engine;
        match engine.spawn_threads(queues, tcp_poll, &opts) {
            Ok(()) => Ok(engine),
            Err(e) => {
                // Nothing half-started is left behind: the threads already running are stopped.
                engine.stop();
                Err(e)
            }
        }
    }

    fn spawn_threads(
        &mut self,
        queues: Vec<Arc<dyn TunQueue>>,
        tcp_poll: mio::Poll,
        opts: &EngineOptions,
    ) -> Result<(), String> {
        let shared = self.shared.clone();
        let realtime = opts.realtime;
        let spawn = |engine: &Engine, name: String, f: Box<dyn FnOnce() + Send>| {
            let t = std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(|e| format!("cannot start a thread: {e}"))?;
            engine
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(t);
            Ok::<_, String>(())
        };
        // The TCP owner writes what it decrypts through the first queue: a queue of its own would also
        // receive outgoing packets (the kernel spreads flows over all queues) that nobody reads.
        let tcp_tun = queues[0].clone();
        match self.data_path {
            DataPath::MultiQueue { .. } => {
                for (index, tun) in queues.into_iter().enumerate() {
                    let s = Arc::new(WorkerStats::default());
                    self.stats.push((index.to_string(), s.clone()));
                    let w = worker::Worker {
                        index,
                        shared: shared.clone(),
                        tun,
                        stats: s,
                    };
                    spawn(
                        self,
                        format!("fw-worker-{index}"),
                        Box::new(move || {
                            raise_priority(realtime);
                            w.run()
                        }),
                    )?;
                }
            }
            DataPath::SingleQueue { workers } => {
                let p = Arc::new(pipeline::Pipeline::new(
                    queues[0].clone(),
                    workers,
                    shared.mtu(),
                ));
                for index in 0..workers {
                    let s = Arc::new(WorkerStats::default());
                    self.stats.push((index.to_string(), s.clone()));
                    let w = pipeline::PipelineWorker {
                        index,
                        shared: shared.clone(),
                        pipeline: p.clone(),
                        stats: s,
                    };
                    spawn(
                        self,
                        format!("fw-worker-{index}"),
                        Box::new(move || {
                            raise_priority(realtime);
                            w.run()
                        }),
                    )?;
                }
            }
        }
        let tcp_stats = Arc::new(WorkerStats::default());
        self.stats.push(("tcp".into(), tcp_stats.clone()));
        let limits = tcp::Limits {
            max_unauthenticated: match opts.tcp_max_unauthenticated {
                0 => DEFAULT_TCP_MAX_UNAUTHENTICATED,
                n => n,
            },
        };
        let sh = shared.clone();
        spawn(
            self,
            "fw-tcp".into(),
            Box::new(move || tcp::run(sh, tcp_poll, tcp_tun, tcp_stats, limits)),
        )?;
        let handshake_stats = Arc::new(WorkerStats::default());
        self.stats
            .push(("handshake".into(), handshake_stats.clone()));
        let sh = shared.clone();
        spawn(
            self,
            "fw-handshake".into(),
            Box::new(move || {
                sh.handshakes.set_thread(std::thread::current());
                handshake::run(sh, handshake_stats)
            }),
        )?;
        let sh = shared.clone();
        spawn(self, "fw-timers".into(), Box::new(move || timer::run(sh)))?;
        Ok(())
    }

    /// How the data plane is laid out.
    pub fn data_path(&self) -> DataPath {
        self.data_path
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The TUN offloads the kernel granted.
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// Applies one configuration transaction (a UAPI `set=1`, or a config file).
    pub fn apply(&self, update: &DeviceUpdate) -> Result<(), SetError> {
        let _g = self.config_lock.lock().unwrap_or_else(|p| p.into_inner());
        let device = &self.shared.device;
        let now = Instant::now();
        if let Some(fwmark) = update.fwmark {
            for s in self.shared.sockets.load().iter().flat_map(|g| g.iter()) {
                s.set_fwmark(fwmark)
                    .map_err(|e| SetError::Io(format!("cannot set fwmark: {e}")))?;
            }
            self.shared.fwmark.store(fwmark, Ordering::Relaxed);
            self.shared.control_tcp(|c| c.fwmark = Some(fwmark));
        }
        if let Some(port) = update.listen_tcp_port {
            self.set_tcp_port(port)?;
        }
        if let Some(port) = update.listen_port {
            // As wireguard-go: only a change of the configured port rebinds (so a repeated
            // `listen_port=0` keeps the random port it got), and a port we already hold is kept.
            let configured = self.configured_port.load(Ordering::Relaxed);
            let current = self.listen_port();
            let rebind = port != configured && (port == 0 || current != Some(port));
            if rebind {
                let fwmark = self.shared.fwmark.load(Ordering::Relaxed);
                let sockets = match self.data_path {
                    DataPath::MultiQueue { queues } => queues,
                    DataPath::SingleQueue { .. } => 1,
                };
                let group = UdpSocket::bind_group(port, fwmark, sockets).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AddrInUse {
                        SetError::PortInUse(port)
                    } else {
                        SetError::Io(format!("cannot bind UDP port {port}: {e}"))
                    }
                })?;
                let old = self.shared.sockets.swap(Some(Arc::new(group)));
                let retired = old.as_deref().map_or(0, |g| kernel_drops(g));
                self.shared
                    .retired_kernel_drops
                    .fetch_add(retired, Ordering::Relaxed);
                self.shared.wake_workers();
            }
            self.configured_port.store(port, Ordering::Relaxed);
        }
        if let Some(key) = update.private_key {
            device.set_private_key(key);
        }
        let mut targets = self
            .tcp_dial_targets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let targets_before = targets.clone();
        // One batch: each table is copied once for the whole transaction, not once per peer.
        let result = device.configure(|batch| {
            let mut result = Ok(());
            if update.replace_peers {
                batch.clear_peers();
                targets.clear();
            }
            for p in &update.peers {
                if p.remove {
                    batch.remove_peer(&p.public_key);
                    targets.remove(&p.public_key);
                    continue;
                }
                if p.update_only && batch.peer(&p.public_key).is_none() {
                    continue;
                }
                // Our own public key as a peer is ignored, as wireguard-go does.
                let Some(peer) = batch.add_peer(p.public_key) else {
                    continue;
                };
                if let Some(psk) = p.preshared_key {
                    peer.set_preshared_key(psk);
                }
                if let Some(endpoint) = p.endpoint {
                    let endpoint = config::Endpoint {
                        transport: endpoint.transport,
                        addr: fastwire_io::udp::canonical(endpoint.addr),
                        local: None,
                    };
                    peer.set_endpoint(endpoint);
                    if endpoint.is_tcp() {
                        targets.insert(p.public_key, endpoint.addr);
                    } else {
                        targets.remove(&p.public_key);
                    }
                }
                if p.replace_allowed_ips || !p.allowed_ips.is_empty() {
                    let ips: Vec<_> = p.allowed_ips.iter().map(|a| (a.addr, a.cidr)).collect();
                    if let Err(e) = batch.set_allowed_ips(&peer, p.replace_allowed_ips, &ips) {
                        // What was applied so far stays applied (as in wireguard-go), TCP endpoints too.
                        result = Err(SetError::Invalid(e));
                        break;
                    }
                }
                if let Some(secs) = p.persistent_keepalive {
                    let old = peer.persistent_keepalive();
                    peer.set_persistent_keepalive(secs);
                    // As wireguard-go: turning it on sends one now; changing the interval does not.
                    if (old == 0) != (secs == 0) {
                        device.persistent_keepalive_changed(&peer, now);
                    }
                }
            }
            result
        });
        if *targets != targets_before {
            let mut list: Vec<_> = targets.values().copied().collect();
            list.sort();
            list.dedup();
            self.shared.control_tcp(|c| c.dial_targets = Some(list));
        }
        drop(targets);
        device.take_timers_dirty();
        self.shared.wake_timer();
        result
    }

    /// Opens, moves or closes (port 0) the TCP listener. Bound here so a taken port is an error of the
    /// `set`, not a log line.
    fn set_tcp_port(&self, port: u16) -> Result<(), SetError> {
        if port == self.shared.tcp_port.load(Ordering::Relaxed) {
            return Ok(());
        }
        let listener = if port == 0 {
            None
        } else {
            let fwmark = self.shared.fwmark.load(Ordering::Relaxed);
            Some(fastwire_io::tcp::listen(port, fwmark).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    SetError::TcpPortInUse(port)
                } else {
                    SetError::Io(format!("cannot listen on TCP port {port}: {e}"))
                }
            })?)
        };
        self.shared.control_tcp(|c| c.listener = Some(listener));
        self.shared.tcp_port.store(port, Ordering::Relaxed);
        Ok(())
    }

    fn listen_port(&self) -> Option<u16> {
        self.shared
            .sockets
            .load()
            .as_ref()
            .and_then(|g| g.first())
            .map(|s| s.port())
    }

    /// What `get=1` reports.
    pub fn snapshot(&self) -> DeviceSnapshot {
        let device = &self.shared.device;
        let now = Instant::now();
        let wall_now = SystemTime::now();
        let mut peers: Vec<PeerSnapshot> = device
            .peers()
            .into_iter()
            .map(|p| PeerSnapshot {
                public_key: p.public_key,
                preshared_key: p.preshared_key(),
                endpoint: p.endpoint(),
                last_handshake: device
                    .last_handshake(&p)
                    .map(|t| wall_now - now.saturating_duration_since(t)),
                rx_bytes: p.rx_bytes.load(Ordering::Relaxed),
                tx_bytes: p.tx_bytes.load(Ordering::Relaxed),
                persistent_keepalive: p.persistent_keepalive(),
                allowed_ips: device
                    .allowed_ips(&p)
                    .into_iter()
                    .map(|(addr, cidr)| config::AllowedIp { addr, cidr })
                    .collect(),
            })
            .collect();
        peers.sort_by_key(|p| p.public_key);
        DeviceSnapshot {
            private_key: device.private_key(),
            listen_port: self.listen_port().unwrap_or(0),
            listen_tcp_port: self.shared.tcp_port.load(Ordering::Relaxed),
            fwmark: self.shared.fwmark.load(Ordering::Relaxed),
            peers,
        }
    }

    /// Counters summed over all threads (packets, and drops by reason), then each thread's share of
    /// the packet and batch counters, then the open TCP connections by state.
    pub fn stats(&self) -> Vec<(String, u64)> {
        let all = self
            .stats
            .iter()
            .map(|(_, s)| &**s)
            .chain(std::iter::once(&self.shared.control_stats));
        let mut out = stats::summarize(all);
        out.extend(stats::per_worker(
            self.stats.iter().map(|(label, s)| (label.as_str(), &**s)),
        ));
        out.extend(self.shared.tcp_states.summarize());
        if fastwire_io::udp::KERNEL_DROPS_COUNTED {
            let current = self
                .shared
                .sockets
                .load()
                .as_deref()
                .map_or(0, |g| kernel_drops(g));
            let retired = self.shared.retired_kernel_drops.load(Ordering::Relaxed);
            out.push((stats::KERNEL_QUEUE_DROPS.to_string(), retired + current));
        }
        out
    }

    /// Asks the engine to stop; [`Engine::wait`] returns.
    pub fn request_shutdown(&self, reason: ShutdownReason) {
        self.shared.request_shutdown(reason);
    }

    /// A handle that can request shutdown from another thread (a signal handler thread, say).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shared.clone())
    }

    /// Blocks until shutdown is requested or the data plane stops by itself.
    pub fn wait(&self) -> ShutdownReason {
        let (lock, cv) = &self.shared.shutdown;
        let mut r = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(reason) = *r {
                return reason;
            }
            r = cv.wait(r).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Stops every thread and closes the TUN queues, which removes the interface. Idempotent.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.request_shutdown(ShutdownReason::Requested);
        self.shared.wake_workers();
        self.shared.wake_timer();
        self.shared.tcp.wake();
        self.shared.handshakes.unpark();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
        self.shared.sockets.store(None);
    }
}

/// The datagrams the kernel dropped on a socket group's receive queues (0 where it does not say).
fn kernel_drops(group: &[UdpSocket]) -> u64 {
    group.iter().filter_map(UdpSocket::kernel_drops).sum()
}

/// Requests shutdown of an engine from anywhere.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Shared>);

impl ShutdownHandle {
    pub fn request(&self, reason: ShutdownReason) {
        self.0.request_shutdown(reason);
    }
}

//! fastwire's data plane: workers that wire TUN <-> WireGuard <-> UDP, the timer thread, and the
//! configuration interface (apply a [`config::DeviceUpdate`], read a [`config::DeviceSnapshot`]).

pub mod config;
mod handshake;
mod shared;
pub mod stats;
mod tcp;
mod timer;
mod tun_sink;
mod worker;

pub use shared::ShutdownReason;

use crate::config::{DeviceSnapshot, DeviceUpdate, PeerSnapshot, SetError};
use crate::shared::Shared;
use crate::stats::WorkerStats;
use arc_swap::ArcSwapOption;
use fastwire_io::poll::Waker;
use fastwire_io::tun::TunQueue;
use fastwire_io::udp::UdpSocket;
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
    /// Worker threads (one TUN queue each); 0 = one per online CPU.
    pub workers: usize,
    pub mtu: u16,
    /// Use TUN offloads (TSO/GRO) when the kernel has them.
    pub offload: bool,
    /// Most TCP connections accepted but not yet authenticated by a handshake; beyond it the oldest is
    /// closed. 0 = the default ([`DEFAULT_TCP_MAX_UNAUTHENTICATED`]).
    pub tcp_max_unauthenticated: usize,
}

/// Default cap on unauthenticated TCP connections.
pub const DEFAULT_TCP_MAX_UNAUTHENTICATED: usize = 64;

/// A running tunnel interface.
pub struct Engine {
    shared: Arc<Shared>,
    stats: Vec<Arc<WorkerStats>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    config_lock: Mutex<()>,
    /// The listen port last configured (0 = any), as opposed to the port actually bound.
    configured_port: std::sync::atomic::AtomicU16,
    /// The `tcp://` endpoint configured for each peer that has one: the TCP owner keeps them connected.
    tcp_dial_targets: Mutex<std::collections::HashMap<config::Key, std::net::SocketAddr>>,
    iface: String,
    offloads: fastwire_io::tun::Offloads,
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Engine {
    /// Creates the TUN interface, binds a UDP socket on a random port and starts the workers.
    /// Errors are one line saying what is wrong and what to do.
    pub fn start(opts: EngineOptions) -> Result<Engine, String> {
        let workers = if opts.workers == 0 {
            default_workers()
        } else {
            opts.workers
        };
        if !fastwire_io::sys::has_net_admin() {
            return Err(format!(
                "cannot create interface {}: permission denied — run as root or grant CAP_NET_ADMIN",
                opts.iface
            ));
        }
        let (queues, offloads) = TunQueue::create(&opts.iface, workers, opts.mtu, opts.offload)?;
        tracing::info!(iface = %opts.iface, workers, tcp_offload = offloads.tcp, udp_offload = offloads.udp, "TUN device created");
        let queues: Vec<Arc<TunQueue>> = queues.into_iter().map(Arc::new).collect();
        let sockets = UdpSocket::bind_group(0, 0, workers)
            .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
        let wakers = (0..workers)
            .map(|_| Waker::new())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot create an eventfd: {e}"))?;
        let tcp_poll =
            mio::Poll::new().map_err(|e| format!("cannot create an epoll instance: {e}"))?;
        let tcp_waker = mio::Waker::new(tcp_poll.registry(), tcp::WAKER_TOKEN)
            .map_err(|e| format!("cannot create an eventfd: {e}"))?;
        let shared = Arc::new(Shared {
            device: Device::new(Instant::now()),
            sockets: ArcSwapOption::from_pointee(sockets),
            fwmark: AtomicU32::new(0),
            mtu: AtomicUsize::new(opts.mtu as usize),
            stop: AtomicBool::new(false),
            worker_wakers: wakers,
            timer_wake: (Mutex::new(false), Condvar::new()),
            shutdown: (Mutex::new(None), Condvar::new()),
            control_stats: WorkerStats::default(),
            handshakes: handshake::HandshakeQueue::new(),
            tcp: tcp::TcpHandoff::new(tcp_waker),
            tcp_control: Mutex::new(tcp::Control::default()),
            tcp_control_dirty: AtomicBool::new(false),
            tcp_port: std::sync::atomic::AtomicU16::new(0),
        });
        let mut stats = Vec::new();
        let mut threads = Vec::new();
        // The TCP owner writes what it decrypts through worker 0's queue: a queue of its own would also
        // receive outgoing packets (the kernel spreads flows over all queues) that nobody reads.
        let tcp_tun = queues[0].clone();
        for (index, tun) in queues.into_iter().enumerate() {
            let s = Arc::new(WorkerStats::default());
            stats.push(s.clone());
            let w = worker::Worker {
                index,
                shared: shared.clone(),
                tun,
                stats: s,
            };
            let t = std::thread::Builder::new()
                .name(format!("fw-worker-{index}"))
                .spawn(move || w.run())
                .map_err(|e| format!("cannot start a worker thread: {e}"))?;
            threads.push(t);
        }
        let tcp_stats = Arc::new(WorkerStats::default());
        stats.push(tcp_stats.clone());
        let limits = tcp::Limits {
            max_unauthenticated: match opts.tcp_max_unauthenticated {
                0 => DEFAULT_TCP_MAX_UNAUTHENTICATED,
                n => n,
            },
        };
        let sh = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("fw-tcp".into())
                .spawn(move || tcp::run(sh, tcp_poll, tcp_tun, tcp_stats, limits))
                .map_err(|e| format!("cannot start the TCP thread: {e}"))?,
        );
        let handshake_stats = Arc::new(WorkerStats::default());
        stats.push(handshake_stats.clone());
        let sh = shared.clone();
        let handshake_thread = std::thread::Builder::new()
            .name("fw-handshake".into())
            .spawn(move || handshake::run(sh, handshake_stats))
            .map_err(|e| format!("cannot start the handshake thread: {e}"))?;
        shared
            .handshakes
            .set_thread(handshake_thread.thread().clone());
        threads.push(handshake_thread);
        let sh = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("fw-timers".into())
                .spawn(move || timer::run(sh))
                .map_err(|e| format!("cannot start the timer thread: {e}"))?,
        );
        Ok(Engine {
            shared,
            stats,
            threads: Mutex::new(threads),
            config_lock: Mutex::new(()),
            configured_port: std::sync::atomic::AtomicU16::new(0),
            tcp_dial_targets: Mutex::new(std::collections::HashMap::new()),
            iface: opts.iface,
            offloads,
        })
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The TUN offloads the kernel granted.
    pub fn offloads(&self) -> fastwire_io::tun::Offloads {
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
                let workers = self.shared.worker_wakers.len();
                let group = UdpSocket::bind_group(port, fwmark, workers).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AddrInUse {
                        SetError::PortInUse(port)
                    } else {
                        SetError::Io(format!("cannot bind UDP port {port}: {e}"))
                    }
                })?;
                self.shared.sockets.store(Some(Arc::new(group)));
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
        let mut result = Ok(());
        if update.replace_peers {
            device.clear_peers();
            targets.clear();
        }
        for p in &update.peers {
            if p.remove {
                device.remove_peer(&p.public_key);
                targets.remove(&p.public_key);
                continue;
            }
            if p.update_only && device.peer(&p.public_key).is_none() {
                continue;
            }
            // Our own public key as a peer is ignored, as wireguard-go does.
            let Some(peer) = device.add_peer(p.public_key) else {
                continue;
            };
            if let Some(psk) = p.preshared_key {
                peer.set_preshared_key(psk);
            }
            if let Some(endpoint) = p.endpoint {
                let endpoint = config::Endpoint {
                    transport: endpoint.transport,
                    addr: fastwire_io::udp::canonical(endpoint.addr),
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
                if let Err(e) = device.set_allowed_ips(&peer, p.replace_allowed_ips, &ips) {
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

    /// Counters summed over all workers: packets, and drops by reason.
    pub fn stats(&self) -> Vec<(String, u64)> {
        let all = self
            .stats
            .iter()
            .map(|s| &**s)
            .chain(std::iter::once(&self.shared.control_stats));
        stats::summarize(all)
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

/// Requests shutdown of an engine from anywhere.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Shared>);

impl ShutdownHandle {
    pub fn request(&self, reason: ShutdownReason) {
        self.0.request_shutdown(reason);
    }
}

//! Where a peer is reached: an address, and whether over UDP or over a TCP connection.
//!
//! Roaming treats both alike: the endpoint follows the latest authenticated packet, so a peer that moves
//! from UDP to TCP (or back) is answered the way it last spoke.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    /// WireGuard messages framed with a u16 big-endian length on a TCP connection to/from `addr`.
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// UDP: our own address the peer's packets arrive on, so answers leave from it (a multi-homed host
    /// otherwise answers from whatever address its routes pick, and the peer's NAT or firewall drops
    /// that). `None`: let the routing table pick. Learned from received packets, never configured.
    pub local: Option<IpAddr>,
}

/// The URL scheme that selects the TCP transport in configuration (`tcp://host:port`).
pub const TCP_SCHEME: &str = "tcp://";

impl Endpoint {
    pub fn udp(addr: SocketAddr) -> Self {
        Self {
            transport: Transport::Udp,
            addr,
            local: None,
        }
    }

    /// A UDP peer at `addr` that talks to our address `local`.
    pub fn udp_to(addr: SocketAddr, local: Option<IpAddr>) -> Self {
        Self {
            local,
            ..Self::udp(addr)
        }
    }

    pub fn tcp(addr: SocketAddr) -> Self {
        Self {
            transport: Transport::Tcp,
            addr,
            local: None,
        }
    }

    pub fn is_tcp(&self) -> bool {
        self.transport == Transport::Tcp
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Self::udp(addr)
    }
}

/// `1.2.3.4:51820`, `[::1]:51820` for UDP; `tcp://1.2.3.4:443` for TCP. The local address is not shown.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transport {
            Transport::Udp => write!(f, "{}", self.addr),
            Transport::Tcp => write!(f, "{TCP_SCHEME}{}", self.addr),
        }
    }
}

/// Parses the [`Display`](fmt::Display) form (literal addresses only; name resolution is the caller's).
impl FromStr for Endpoint {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix(TCP_SCHEME) {
            Some(rest) => rest.parse().map(Endpoint::tcp),
            None => s.parse().map(Endpoint::udp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        for s in [
            "1.2.3.4:5",
            "[::1]:51820",
            "tcp://10.0.0.1:443",
            "tcp://[fd00::1]:8443",
        ] {
            let e: Endpoint = s.parse().unwrap();
            assert_eq!(e.to_string(), s);
        }
        assert!("tcp://host:1".parse::<Endpoint>().is_err());
        assert!("udp://1.2.3.4:1".parse::<Endpoint>().is_err());
        assert!("tcp://1.2.3.4:1".parse::<Endpoint>().unwrap().is_tcp());
    }
}

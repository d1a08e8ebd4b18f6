//! Where load may go: the test underlays and loopback, nothing else, so a typo never aims a flood at a
//! real host.

use std::net::{IpAddr, SocketAddr};

/// The test networks: netbench's and the e2e suite's underlays (10.77.0.0/16, fd77::/64) and loopback.
pub fn is_test_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.octets()[..2] == [10, 77],
        IpAddr::V6(v6) => v6.is_loopback() || v6.segments()[..4] == [0xfd77, 0, 0, 0],
    }
}

pub fn parse_target(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not ADDRESS:PORT (e.g. 10.77.0.2:51820)"))?;
    if !is_test_address(addr.ip()) {
        return Err(format!(
            "refusing target {addr}: only 10.77.0.0/16, fd77::/64 and loopback are test addresses"
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_test_networks_are_targets() {
        for ok in [
            "10.77.0.2:51820",
            "127.0.0.1:1",
            "[fd77::2]:51820",
            "[::1]:9",
        ] {
            assert!(parse_target(ok).is_ok(), "{ok}");
        }
        for refused in [
            "10.78.0.2:51820",
            "8.8.8.8:53",
            "[fd78::1]:1",
            "[2001:db8::1]:1",
        ] {
            assert!(parse_target(refused).is_err(), "{refused}");
        }
        assert!(parse_target("10.77.0.2").is_err(), "a port is required");
    }
}

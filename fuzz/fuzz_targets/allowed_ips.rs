//! The allowed-IPs trie against a reference model (a list scanned for the longest match): arbitrary
//! sequences of insert, remove, remove-by-value and lookups. Invariants: every lookup, the length and
//! the entries agree with the model.
#![no_main]

use arbitrary::Arbitrary;
use fastwire_proto::allowed_ips::AllowedIps;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
    /// Addresses near each other, so prefixes overlap often.
    Near(u8, u8),
}

impl Addr {
    fn ip(self) -> IpAddr {
        match self {
            Addr::V4(b) => IpAddr::V4(Ipv4Addr::from(b)),
            Addr::V6(b) => IpAddr::V6(Ipv6Addr::from(b)),
            Addr::Near(a, b) => IpAddr::V4(Ipv4Addr::new(10, a & 3, b, 0)),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Insert(Addr, u8, u8),
    Remove(Addr, u8),
    RemoveValue(u8),
    Lookup(Addr),
    Clear,
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(a) => (u32::from(a) as u128, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

fn mask(ip: IpAddr, cidr: u8) -> (bool, u128) {
    let (v, width) = bits(ip);
    let keep = if cidr == 0 {
        0
    } else {
        (!0u128) << (width - cidr) & (!0u128 >> (128 - width))
    };
    (ip.is_ipv6(), v & keep)
}

fn matches(prefix: (bool, u128, u8), ip: IpAddr) -> bool {
    let (v6, net, cidr) = prefix;
    v6 == ip.is_ipv6() && mask(ip, cidr).1 == net
}

fuzz_target!(|ops: Vec<Op>| {
    let mut trie: AllowedIps<u8> = AllowedIps::new();
    let mut model: Vec<((bool, u128, u8), u8)> = Vec::new();
    for op in ops.iter().take(512) {
        match *op {
            Op::Insert(addr, cidr, value) => {
                let ip = addr.ip();
                let valid = cidr <= bits(ip).1;
                assert_eq!(
                    trie.insert(ip, cidr, value).is_ok(),
                    valid,
                    "insert validity {ip}/{cidr}"
                );
                if valid {
                    let (v6, net) = mask(ip, cidr);
                    model.retain(|(p, _)| *p != (v6, net, cidr));
                    model.push(((v6, net, cidr), value));
                }
            }
            Op::Remove(addr, cidr) => {
                let ip = addr.ip();
                let got = trie.remove(ip, cidr);
                let want = if cidr <= bits(ip).1 {
                    let (v6, net) = mask(ip, cidr);
                    let at = model.iter().position(|(p, _)| *p == (v6, net, cidr));
                    at.map(|i| model.remove(i).1)
                } else {
                    None
                };
                assert_eq!(got, want, "remove {ip}/{cidr}");
            }
            Op::RemoveValue(value) => {
                trie.remove_value(&value);
                model.retain(|(_, v)| *v != value);
            }
            Op::Lookup(addr) => {
                let ip = addr.ip();
                let want = model
                    .iter()
                    .filter(|(p, _)| matches(*p, ip))
                    .max_by_key(|(p, _)| p.2)
                    .map(|(_, v)| *v);
                assert_eq!(trie.lookup(ip).copied(), want, "lookup {ip}");
            }
            Op::Clear => {
                trie.clear();
                model.clear();
            }
        }
        assert_eq!(trie.len(), model.len(), "entry count");
    }
    let mut entries: Vec<_> = trie
        .iter()
        .map(|(ip, cidr, v)| (mask(ip, cidr), cidr, *v))
        .collect();
    let mut want: Vec<_> = model
        .iter()
        .map(|((v6, net, cidr), v)| ((*v6, *net), *cidr, *v))
        .collect();
    entries.sort();
    want.sort();
    assert_eq!(entries, want, "iteration yields exactly the entries");
});

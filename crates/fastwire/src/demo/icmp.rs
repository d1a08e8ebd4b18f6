//! ICMPv4 echo packets: build requests, recognise our replies (RFC 792, checksum RFC 1071).
//!
//! Pure byte handling so it can be tested without a raw socket. Replies arrive from a raw socket with
//! their IPv4 header in front, and the socket sees every ICMP packet of the namespace, so parsing must
//! accept anything without panicking and keep only our own echo replies.

use std::net::Ipv4Addr;

const ECHO_REPLY: u8 = 0;
const ECHO_REQUEST: u8 = 8;
const ICMP_HEADER_LEN: usize = 8;
const IPV4_MIN_HEADER_LEN: usize = 20;
const PROTOCOL_ICMP: u8 = 1;

/// Payload size of the classic `ping` (64-byte ICMP message).
pub const PAYLOAD_LEN: usize = 56;

/// The Internet checksum: ones' complement of the ones' complement sum of 16-bit words.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo request (no IP header: the raw socket adds it).
pub fn echo_request(id: u16, seq: u16) -> [u8; ICMP_HEADER_LEN + PAYLOAD_LEN] {
    let mut packet = [0u8; ICMP_HEADER_LEN + PAYLOAD_LEN];
    packet[0] = ECHO_REQUEST;
    packet[4..6].copy_from_slice(&id.to_be_bytes());
    packet[6..8].copy_from_slice(&seq.to_be_bytes());
    for (i, byte) in packet[ICMP_HEADER_LEN..].iter_mut().enumerate() {
        *byte = i as u8;
    }
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

/// An echo reply as read from a raw IPv4 socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoReply {
    pub source: Ipv4Addr,
    pub id: u16,
    pub seq: u16,
}

/// Parses an IPv4 datagram carrying an ICMP echo reply with a valid checksum; anything else is `None`.
pub fn parse_echo_reply(datagram: &[u8]) -> Option<EchoReply> {
    let first = *datagram.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < IPV4_MIN_HEADER_LEN || *datagram.get(9)? != PROTOCOL_ICMP {
        return None;
    }
    let source = Ipv4Addr::from(<[u8; 4]>::try_from(datagram.get(12..16)?).ok()?);
    let icmp = datagram.get(header_len..)?;
    if icmp.len() < ICMP_HEADER_LEN || icmp[0] != ECHO_REPLY || icmp[1] != 0 || checksum(icmp) != 0
    {
        return None;
    }
    Some(EchoReply {
        source,
        id: u16::from_be_bytes([icmp[4], icmp[5]]),
        seq: u16::from_be_bytes([icmp[6], icmp[7]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wraps an ICMP message in a minimal IPv4 header, as the kernel hands it to a raw socket.
    fn ipv4(source: Ipv4Addr, icmp: &[u8]) -> Vec<u8> {
        let mut datagram = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, PROTOCOL_ICMP, 0, 0];
        datagram.extend_from_slice(&source.octets());
        datagram.extend_from_slice(&[10, 78, 0, 1]);
        datagram.extend_from_slice(icmp);
        datagram
    }

    fn reply_to(request: &[u8]) -> Vec<u8> {
        let mut reply = request.to_vec();
        reply[0] = ECHO_REPLY;
        reply[2..4].fill(0);
        let sum = checksum(&reply);
        reply[2..4].copy_from_slice(&sum.to_be_bytes());
        reply
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2, so the checksum is !0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn checksum_pads_odd_length_with_zero() {
        assert_eq!(checksum(&[0xab]), checksum(&[0xab, 0x00]));
    }

    #[test]
    fn request_has_valid_checksum_and_fields() {
        let packet = echo_request(0x1234, 7);
        assert_eq!(packet[0], ECHO_REQUEST);
        assert_eq!(checksum(&packet), 0);
        assert_eq!(&packet[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn parses_reply_to_our_request() {
        let source = Ipv4Addr::new(10, 78, 0, 2);
        let datagram = ipv4(source, &reply_to(&echo_request(42, 3)));
        let reply = parse_echo_reply(&datagram).expect("a valid reply");
        assert_eq!(
            reply,
            EchoReply {
                source,
                id: 42,
                seq: 3
            }
        );
    }

    #[test]
    fn ignores_requests_corrupt_replies_and_garbage() {
        let source = Ipv4Addr::new(10, 78, 0, 2);
        let request = echo_request(42, 3);
        assert_eq!(parse_echo_reply(&ipv4(source, &request)), None);

        let mut corrupt = reply_to(&request);
        corrupt[20] ^= 1;
        assert_eq!(parse_echo_reply(&ipv4(source, &corrupt)), None);

        let truncated = ipv4(source, &reply_to(&request)[..4]);
        assert_eq!(parse_echo_reply(&truncated), None);

        let mut bad_ihl = ipv4(source, &reply_to(&request));
        bad_ihl[0] = 0x4f;
        assert_eq!(parse_echo_reply(&bad_ihl), None);

        for len in 0..40 {
            let _ = parse_echo_reply(&vec![0x45; len]);
        }
    }
}

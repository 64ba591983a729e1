//! The address a request really came from: the peer, unless the peer is a
//! trusted proxy, in which case `X-Forwarded-For` is walked from the right
//! past every trusted hop. A client cannot forge its address by sending the
//! header itself.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::ConnectInfo;
use http::HeaderMap;
use ipnet::IpNet;

pub fn client_ip(headers: &HeaderMap, peer: Option<&ConnectInfo<SocketAddr>>, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer.map(|c| c.0.ip())?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // Garbage in the chain: stop at the last address we could trust.
            Err(_) => break,
        }
    }
    Some(client)
}

/// `ip` as `Display` writes it. An IPv4 address is spelled directly:
/// `Display` goes through the formatter's padding for each octet, about
/// 1,300 instructions for every checkout's `X-Forwarded-For` and every
/// callback's stored address (issue 14).
pub fn text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4_text(v4),
        IpAddr::V6(v6) => v6.to_string(),
    }
}

fn v4_text(ip: Ipv4Addr) -> String {
    let mut s = String::with_capacity(15);
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if octet >= 100 {
            s.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            s.push(char::from(b'0' + octet / 10 % 10));
        }
        s.push(char::from(b'0' + octet % 10));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(headers: &[&str], peer: &str, trusted: &[&str]) -> String {
        let mut h = HeaderMap::new();
        for v in headers {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        let peer = ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 1234));
        let trusted: Vec<IpNet> = trusted.iter().map(|s| s.parse().unwrap()).collect();
        client_ip(&h, Some(&peer), &trusted).unwrap().to_string()
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        assert_eq!(ip(&["6.6.6.6"], "1.2.3.4", &[]), "1.2.3.4");
        assert_eq!(ip(&["6.6.6.6"], "1.2.3.4", &["10.0.0.0/8"]), "1.2.3.4");
    }

    #[test]
    fn trusted_proxy_is_walked_past() {
        assert_eq!(ip(&["6.6.6.6, 203.0.113.9"], "10.0.0.1", &["10.0.0.0/8"]), "203.0.113.9");
        assert_eq!(ip(&["6.6.6.6, 203.0.113.9, 10.0.0.2"], "10.0.0.1", &["10.0.0.0/8"]), "203.0.113.9");
        assert_eq!(ip(&["203.0.113.9", "10.0.0.2"], "10.0.0.1", &["10.0.0.0/8"]), "203.0.113.9");
        assert_eq!(ip(&[], "10.0.0.1", &["10.0.0.0/8"]), "10.0.0.1");
        assert_eq!(ip(&["junk, 10.0.0.3"], "10.0.0.1", &["10.0.0.0/8"]), "10.0.0.3");
    }

    #[test]
    fn an_address_is_spelled_as_display_spells_it() {
        for octet in 0..=255u8 {
            for ip in [[octet, 0, 0, 0], [0, octet, 0, 0], [10, 0, octet, 1], [255, 255, 255, octet]] {
                let ip = IpAddr::from(ip);
                assert_eq!(text(ip), ip.to_string());
            }
        }
        for v6 in ["::1", "2001:db8::8a2e:370:7334", "::ffff:1.2.3.4"] {
            let ip: IpAddr = v6.parse().unwrap();
            assert_eq!(text(ip), ip.to_string());
        }
    }

    proptest::proptest! {
        #[test]
        fn any_v4_address_is_spelled_as_display_spells_it(bits: u32) {
            let ip = IpAddr::from(Ipv4Addr::from(bits));
            proptest::prop_assert_eq!(text(ip), ip.to_string());
        }
    }
}

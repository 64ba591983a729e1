//! The address a request really came from: the peer, unless the peer is a
//! trusted proxy, in which case `X-Forwarded-For` is walked from the right
//! past every trusted hop. A client cannot forge its address by sending the
//! header itself.

use std::net::{IpAddr, SocketAddr};

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
}

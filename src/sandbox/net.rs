//! The HTTP client behind `net.fetch`: one pooled client per runtime, a resolver
//! that refuses private and loopback addresses unless the operator allows them (so a
//! DNS name cannot smuggle a request to them), redirects followed by hand so that
//! every hop is checked against the lease again, and a cap on response size.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Operator settings for outgoing HTTP.
#[derive(Debug, Clone)]
pub struct NetPolicy {
    /// Allow loopback, private, link-local and similar addresses.
    pub allow_private: bool,
    /// Largest response body, in bytes.
    pub max_response_bytes: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Redirects followed at most.
    pub max_redirects: usize,
}

impl Default for NetPolicy {
    fn default() -> Self {
        NetPolicy {
            allow_private: false,
            max_response_bytes: 8 << 20,
            timeout: Duration::from_secs(30),
            max_redirects: 5,
        }
    }
}

/// Whether `ip` is an address a job may reach without the operator's say-so: not
/// loopback, private, link-local, shared (CGNAT), unspecified, multicast, broadcast,
/// documentation, benchmarking or reserved. IPv6 forms that carry an IPv4 address
/// (IPv4-mapped and -compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged
/// by the address they carry, since a gateway on the path would deliver to it;
/// Teredo and local-use NAT64 are refused outright (the carried address cannot be
/// judged, or is local by definition).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                // Shared address space (RFC 6598).
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                // IETF protocol assignments (RFC 6890), including DS-Lite's B4.
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                // Benchmarking (RFC 2544).
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                // 6to4 relay anycast (RFC 7526).
                || (o[0] == 192 && o[1] == 88 && o[2] == 99)
                // Reserved, class E (RFC 1112).
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let o = v6.octets();
            let carried =
                |a: usize| IpAddr::V4(std::net::Ipv4Addr::new(o[a], o[a + 1], o[a + 2], o[a + 3]));
            // IPv4-mapped (::ffff:a.b.c.d) and the deprecated IPv4-compatible
            // (::a.b.c.d); `::` and `::1` are judged as IPv6 below.
            if s[..5] == [0; 5] && (s[5] == 0xffff || (s[5] == 0 && s[6] != 0)) {
                return is_public(carried(12));
            }
            // NAT64 well-known prefix (RFC 6052).
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public(carried(12));
            }
            // 6to4 (RFC 3056): the IPv4 address is bits 16..48.
            if s[0] == 0x2002 {
                return is_public(carried(2));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local (fc00::/7), link-local (fe80::/10), site-local (fec0::/10).
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                // Local-use NAT64 (RFC 8215).
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
                // Discard-only (RFC 6666).
                || s[..4] == [0x100, 0, 0, 0]
                // Teredo (2001::/32), benchmarking (2001:2::/48), ORCHID (2001:10::/28,
                // 2001:20::/28) and documentation (2001:db8::/32).
                || (s[0] == 0x2001
                    && (s[1] == 0
                        || (s[1] == 2 && s[2] == 0)
                        || (s[1] & 0xfff0) == 0x10
                        || (s[1] & 0xfff0) == 0x20
                        || s[1] == 0xdb8)))
        }
    }
}

/// Why a response body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body would pass the cap (said by its `Content-Length`, or found while
    /// reading it; nothing past the cap is read).
    #[error("the response body is over the {0}-byte limit")]
    TooLarge(usize),
    /// The connection failed while reading.
    #[error("reading the response body: {0}")]
    Read(#[from] reqwest::Error),
}

/// Reads `resp`'s body chunk by chunk and gives up as soon as it would pass `max`
/// bytes, so that a hostile or broken server costs at most `max` bytes of memory
/// (a `Content-Length` over `max` is refused before anything is read).
pub async fn read_body_within(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    let mut data = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if data.len() + chunk.len() > max {
            return Err(BodyError::TooLarge(max));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

/// Resolves names and drops the addresses the policy refuses.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                let msg = format!("{host} resolves to no address a job may reach");
                return Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    msg,
                )) as _);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The shared client.
pub struct NetClient {
    pub(super) client: reqwest::Client,
    pub(super) policy: NetPolicy,
}

impl NetClient {
    /// A client with `policy`.
    pub fn new(policy: NetPolicy) -> anyhow::Result<Arc<NetClient>> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: policy.allow_private,
            }))
            .timeout(policy.timeout)
            .user_agent(concat!("arcp-host/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()?;
        Ok(Arc::new(NetClient { client, policy }))
    }

    /// Refuses an IP-literal host the policy does not allow (names are checked by
    /// the resolver when connecting).
    pub(super) fn check_literal(&self, url: &url::Url) -> Result<(), String> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err("URL has no host".into()),
        };
        if self.policy.allow_private || is_public(ip) {
            Ok(())
        } else {
            Err(format!("{ip} is a private or loopback address"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_loopback_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_that_carry_a_private_ipv4_address_are_not_public() {
        for ip in [
            // NAT64 well-known prefix around loopback, private and metadata addresses.
            "64:ff9b::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            // 6to4 around loopback and private addresses.
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            // IPv4-compatible (deprecated).
            "::127.0.0.1",
            "::10.0.0.1",
            // Teredo, local-use NAT64, discard-only, documentation, site-local.
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "64:ff9b:1::10.0.0.1",
            "100::1",
            "2001:db8::1",
            "fec0::1",
            // IPv4 reserved, benchmarking, IETF assignments, 6to4 relay anycast.
            "240.0.0.1",
            "255.255.255.254",
            "198.18.0.1",
            "192.0.0.8",
            "192.88.99.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["64:ff9b::1.1.1.1", "2002:0101:0101::1", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}

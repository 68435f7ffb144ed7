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
/// loopback, private, link-local, shared (CGNAT), unspecified, multicast or
/// broadcast, also when written as an IPv4-mapped IPv6 address.
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
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
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
}

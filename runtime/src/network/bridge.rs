//! The bridge the containers' veths hang off, and IPv4 forwarding in the
//! host namespace.

use super::plan::check_link_name;
use super::rtnl::Rtnl;
use super::{Netns, NetworkError, TeardownErrors};
use ipnet::{Ipv4Net, Ipv6Net};

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// A Linux bridge in a host namespace, with the containers' gateway address.
/// Deleted by `delete` or on drop.
#[derive(Debug)]
pub struct Bridge {
    host: Netns,
    name: String,
    gateway: Ipv4Net,
    deleted: bool,
    /// ip_forward was 0 before this bridge turned it on: it goes back to 0
    /// with the bridge, so a host namespace not ours (`isocheck container
    /// run --net bridge` on a real host) is left as found.
    forwarding_was_off: bool,
}

impl Bridge {
    /// Creates bridge `name` (`isoc-br*`) in `host`, gives it `gateway`
    /// (e.g. 10.89.0.1/24), brings it up, and enables IPv4 forwarding in
    /// `host` only.
    pub fn create(host: &Netns, name: &str, gateway: Ipv4Net) -> Result<Bridge, NetworkError> {
        check_link_name("bridge", name, "isoc-br")?;
        let mut rtnl = Rtnl::open_in(host)?;
        rtnl.add_bridge(name)?;
        let bridge = Bridge {
            host: host.try_clone()?,
            name: name.to_string(),
            gateway,
            deleted: false,
            forwarding_was_off: false,
        };
        // From here on, a failure drops `bridge`, which deletes the link.
        let index = rtnl.link_index(name)?;
        rtnl.add_address(index, name, gateway)?;
        rtnl.set_up(index, name)?;
        let mut bridge = bridge;
        bridge.forwarding_was_off = !forwarding_enabled(host)?;
        enable_forwarding(host)?;
        Ok(bridge)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Gives the bridge an IPv6 gateway address too (e.g.
    /// fd69:736f:6368:89::1/64), without duplicate address detection.
    pub fn add_ipv6(&self, gateway6: Ipv6Net) -> Result<(), NetworkError> {
        super::add_address6(&self.host, &self.name, gateway6)
    }

    pub fn gateway(&self) -> Ipv4Net {
        self.gateway
    }

    /// Deletes the bridge link and puts ip_forward back if this bridge
    /// turned it on.
    pub fn delete(mut self) -> Result<(), TeardownErrors> {
        self.deleted = true;
        let errors: Vec<NetworkError> = [delete_bridge(&self.host, &self.name), self.restore()]
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(TeardownErrors(errors))
        }
    }

    fn restore(&self) -> Result<(), NetworkError> {
        if !self.forwarding_was_off {
            return Ok(());
        }
        self.host
            .run_in(|| std::fs::write(IP_FORWARD, "0"))?
            .map_err(|source| NetworkError::Sysctl {
                path: IP_FORWARD.into(),
                value: "0".into(),
                source,
            })
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if !self.deleted {
            if let Err(e) = delete_bridge(&self.host, &self.name) {
                tracing::warn!(bridge = %self.name, error = %e, "dropping Bridge: delete failed");
            }
            if let Err(e) = self.restore() {
                tracing::warn!(bridge = %self.name, error = %e, "dropping Bridge: restore ip_forward failed");
            }
        }
    }
}

fn delete_bridge(host: &Netns, name: &str) -> Result<(), NetworkError> {
    Rtnl::open_in(host)?.delete_link_named(name)
}

/// Writes 1 to ip_forward from a thread inside `host`: /proc/sys/net shows
/// the namespace of the thread that opens the file, so this changes `host`
/// and nothing else.
pub fn enable_forwarding(host: &Netns) -> Result<(), NetworkError> {
    host.run_in(|| std::fs::write(IP_FORWARD, "1"))?
        .map_err(|source| NetworkError::Sysctl {
            path: IP_FORWARD.into(),
            value: "1".into(),
            source,
        })
}

/// Reads ip_forward as seen from inside `ns`.
pub fn forwarding_enabled(ns: &Netns) -> Result<bool, NetworkError> {
    ns.run_in(|| std::fs::read_to_string(IP_FORWARD))?
        .map(|value| value.trim() == "1")
        .map_err(|source| NetworkError::Sysctl {
            path: IP_FORWARD.into(),
            value: "<read>".into(),
            source,
        })
}

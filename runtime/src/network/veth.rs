//! A container's attachment: a veth pair created in one request with its
//! peer already inside the container's namespace, the container side
//! addressed and routed, and its published ports.

use super::nat::{self, PublishedRule};
use super::plan::veth_host_name;
use super::rtnl::{veth_request, Rtnl};
use super::{Netns, NetworkError, TeardownErrors};
use crate::spec::BridgeAttachment;
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};

/// The container side of the veth is always called this.
pub const CONTAINER_IFNAME: &str = "eth0";

/// A container's veth and DNAT rules. `detach` (or drop) removes them; the
/// container's end goes with the pair.
#[derive(Debug)]
pub struct VethAttachment {
    host: Netns,
    host_ifname: String,
    address: Ipv4Net,
    rules: Vec<PublishedRule>,
    detached: bool,
}

impl VethAttachment {
    /// Name of the host end (`isoc-v*`).
    pub fn host_ifname(&self) -> &str {
        &self.host_ifname
    }

    /// The container's address with prefix.
    pub fn address(&self) -> Ipv4Net {
        self.address
    }

    /// The DNAT rules added for `publish`.
    pub fn published_rules(&self) -> &[PublishedRule] {
        &self.rules
    }

    /// Deletes the DNAT rules and the host end (which takes the pair with
    /// it); keeps going past errors and returns them all.
    pub fn detach(mut self) -> Result<(), TeardownErrors> {
        self.detached = true;
        self.teardown()
    }

    /// Removes the published ports now and leaves the veth pair to the
    /// kernel: it goes when the container's network namespace is torn down.
    /// Deleting the link here costs ~30 ms (the unregister waits for RCU)
    /// on the caller's path; the namespace's own teardown does it off it.
    /// Only for a container whose namespace is dying (its PID 1 reaped).
    pub fn release_with_netns(mut self) -> Result<(), TeardownErrors> {
        self.detached = true;
        match nat::unpublish(&self.host, &self.rules) {
            Ok(()) => Ok(()),
            Err(e) => TeardownErrors::from_vec(vec![e]),
        }
    }

    fn teardown(&mut self) -> Result<(), TeardownErrors> {
        let mut errors = Vec::new();
        if let Err(e) = nat::unpublish(&self.host, &self.rules) {
            errors.push(e);
        }
        match Rtnl::open_in(&self.host)
            .and_then(|mut rtnl| rtnl.delete_link_named(&self.host_ifname))
        {
            // The container's namespace already died and took the pair.
            Ok(()) | Err(NetworkError::LinkNotFound { .. }) => {}
            Err(e) => errors.push(e),
        }
        TeardownErrors::from_vec(errors)
    }
}

impl Drop for VethAttachment {
    fn drop(&mut self) {
        if !self.detached {
            if let Err(e) = self.teardown() {
                tracing::warn!(veth = %self.host_ifname, error = %e, "dropping VethAttachment");
            }
        }
    }
}

fn invalid(field: &'static str, value: &str, reason: impl ToString) -> NetworkError {
    NetworkError::Plan {
        field,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// The attachment's IPv6 address and gateway, if it has them, parsed and
/// checked (a gateway needs an address, on its prefix).
fn parse_address6(
    att: &BridgeAttachment,
) -> Result<Option<(Ipv6Net, Option<std::net::Ipv6Addr>)>, NetworkError> {
    let Some(text) = &att.address6 else {
        return match &att.gateway6 {
            Some(g) => Err(invalid("network.bridge.gateway6", g, "needs an address6")),
            None => Ok(None),
        };
    };
    let address: Ipv6Net = text
        .parse()
        .map_err(|e| invalid("network.bridge.address6", text, e))?;
    if address.addr() == address.network() {
        return Err(invalid(
            "network.bridge.address6",
            text,
            "is the subnet-router anycast address of its prefix",
        ));
    }
    let gateway = match &att.gateway6 {
        None => None,
        Some(g) => {
            let gateway: std::net::Ipv6Addr = g
                .parse()
                .map_err(|e| invalid("network.bridge.gateway6", g, e))?;
            if !address.contains(&gateway) || gateway == address.addr() {
                return Err(invalid(
                    "network.bridge.gateway6",
                    g,
                    format!(
                        "not another address of the container's prefix {}",
                        address.trunc()
                    ),
                ));
            }
            Some(gateway)
        }
    };
    Ok(Some((address, gateway)))
}

/// The attachment's addresses, parsed and checked before anything is made.
fn parse_attachment(att: &BridgeAttachment) -> Result<(Ipv4Net, Option<Ipv4Addr>), NetworkError> {
    let address: Ipv4Net = att
        .address
        .parse()
        .map_err(|e| invalid("network.bridge.address", &att.address, e))?;
    if address.prefix_len() < 31
        && (address.addr() == address.network() || address.addr() == address.broadcast())
    {
        return Err(invalid(
            "network.bridge.address",
            &att.address,
            "is the network or broadcast address of its subnet",
        ));
    }
    let gateway = match &att.gateway {
        None => None,
        Some(text) => {
            let gateway: Ipv4Addr = text
                .parse()
                .map_err(|e| invalid("network.bridge.gateway", text, e))?;
            if !address.contains(&gateway) || gateway == address.addr() {
                return Err(invalid(
                    "network.bridge.gateway",
                    text,
                    format!(
                        "not another address of the container's subnet {}",
                        address.trunc()
                    ),
                ));
            }
            Some(gateway)
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    for forward in &att.publish {
        if !seen.insert(forward.host_port) {
            return Err(invalid(
                "network.bridge.publish.host_port",
                &forward.host_port.to_string(),
                "published twice",
            ));
        }
        if forward.host_port == 0 || forward.container_port == 0 {
            return Err(invalid(
                "network.bridge.publish",
                &format!("{}:{}", forward.host_port, forward.container_port),
                "port 0",
            ));
        }
    }
    Ok((address, gateway))
}

/// Attaches the container `container_pid` to bridge `att.bridge` in `host`.
/// See [`attach_netns`].
pub fn attach(
    host: &Netns,
    container_pid: i32,
    att: &BridgeAttachment,
    name_hint: &str,
) -> Result<VethAttachment, NetworkError> {
    attach_netns(host, &Netns::from_pid(container_pid)?, att, name_hint)
}

/// Attaches the namespace `container` to bridge `att.bridge` in `host`:
/// 1. one RTM_NEWLINK makes the pair: host end `isoc-v<hint>` (on the bridge
///    and up, unless `att.detached`), peer `eth0` created in `container`;
/// 2. in `container`: address on eth0, eth0 and lo up, default route via
///    `att.gateway`;
/// 3. `att.publish`: DNAT rules in `inet isocheck` (one nft batch).
///
/// On failure the host end is deleted again.
pub fn attach_netns(
    host: &Netns,
    container: &Netns,
    att: &BridgeAttachment,
    name_hint: &str,
) -> Result<VethAttachment, NetworkError> {
    let (address, gateway) = parse_attachment(att)?;
    let address6 = parse_address6(att)?;
    let host_ifname = veth_host_name(name_hint);

    let mut host_rtnl = Rtnl::open_in(host)?;
    let controller = if att.detached {
        None
    } else {
        Some(host_rtnl.link_index(&att.bridge)?)
    };
    let request = veth_request(
        &host_ifname,
        controller,
        CONTAINER_IFNAME,
        container.as_fd().as_raw_fd(),
    );
    host_rtnl.add_veth(
        request,
        &format!("add veth {host_ifname} (peer {CONTAINER_IFNAME} in the container)"),
    )?;
    let mut attachment = VethAttachment {
        host: host.try_clone()?,
        host_ifname,
        address,
        rules: Vec::new(),
        detached: false,
    };
    // From here, an early return drops `attachment`, which deletes the pair.

    let mut inside = Rtnl::open_in(container)?;
    let lo = inside.link_index("lo")?;
    inside.set_up(lo, "lo")?;
    let eth0 = inside.link_index(CONTAINER_IFNAME)?;
    inside.add_address(eth0, CONTAINER_IFNAME, address)?;
    if let Some((address6, _)) = address6 {
        inside.add_address6(eth0, CONTAINER_IFNAME, address6)?;
    }
    inside.set_up(eth0, CONTAINER_IFNAME)?;
    if let Some(gateway) = gateway {
        inside.add_route(Ipv4Net::default(), gateway)?;
    }
    if let Some((_, Some(gateway6))) = address6 {
        inside.add_default_route6(gateway6)?;
    }

    if !att.publish.is_empty() {
        attachment.rules = nat::publish(
            host,
            address.addr(),
            &att.publish,
            &format!("isocheck publish {}", attachment.host_ifname),
        )?;
    }
    Ok(attachment)
}

/// The no-network case: the container's namespace gets only `lo`, up.
pub fn loopback_up(container_pid: i32) -> Result<(), NetworkError> {
    loopback_up_netns(&Netns::from_pid(container_pid)?)
}

pub fn loopback_up_netns(container: &Netns) -> Result<(), NetworkError> {
    let mut rtnl = Rtnl::open_in(container)?;
    let lo = rtnl.link_index("lo")?;
    rtnl.set_up(lo, "lo")
}

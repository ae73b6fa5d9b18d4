//! Container networking over synchronous netlink and nftables, attached to a
//! "host" namespace given as a parameter (the harness's stand-in host).
//!
//! - [`Netns`]: a namespace handle; work inside runs on a scoped thread.
//! - [`Bridge`], [`attach`] / [`VethAttachment`], [`loopback_up`]: links,
//!   addresses and routes, one route netlink socket per namespace.
//! - [`Nat`]: masquerade and DNAT in our own table `inet isocheck`, one
//!   `nft -j -f -` per batch. Ports published by `attach` are added to the
//!   same table (created on demand); see `nat.rs` for the order of teardown.
//! - [`OutsideWorld`]: the NAT testbed namespace behind an uplink.
//! - [`SubnetPlan`], [`OutsidePlan`]: addresses checked before anything is
//!   created.
//!
//! Starting a networked container spawns no process, except one `nft` when
//! ports are published (and one per `Nat::enable`/`delete`).
//!
//! Kernel notes (checked on 6.18 with /proc/config.gz):
//! - `CONFIG_BRIDGE_NETFILTER=y` is built in, and a new netns starts with
//!   `net.bridge.bridge-nf-call-iptables = 1`: bridged IPv4 between
//!   containers also crosses the inet hooks. Our chains are nat chains with
//!   policy accept and the DNAT rules match only `fib daddr type local`, so
//!   container-to-container traffic is untouched; no forward chain is needed
//!   (nothing else filters in the stand-in), and no module has to be loaded.
//! - `/proc/sys/net` resolves to the namespace of the thread that opens the
//!   file, so forwarding is written from a thread inside the host netns
//!   (a privileged test checks the caller's value is unchanged).
//! - Not supported: reaching a published port via 127.0.0.1 (would need
//!   `route_localnet` and a masquerade of loopback sources) and hairpin (a
//!   container reaching its own published port via the host address: would
//!   need masquerade of bridge-to-bridge DNATed traffic). The output-chain
//!   rule does serve connections from the host namespace to its own
//!   non-loopback addresses.

mod bridge;
mod nat;
mod netns;
mod outside;
mod plan;
mod rtnl;
mod veth;

pub use bridge::{enable_forwarding, forwarding_enabled, Bridge};
pub use nat::{Nat, PublishedRule, TABLE};
pub use netns::{Netns, NetnsFile};
pub use outside::{OutsideWorld, OUTSIDE_IFNAME};
pub use plan::{overlaps, veth_host_name, OutsidePlan, SubnetPlan};
pub use veth::{
    attach, attach_netns, loopback_up, loopback_up_netns, VethAttachment, CONTAINER_IFNAME,
};

use ipnet::Ipv4Net;
use std::path::PathBuf;

/// Prefix of every interface we create.
pub const LINK_PREFIX: &str = "isoc-";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("opening network namespace {path}: {source}")]
    OpenNetns {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network namespace file {path}: {step}: {source}")]
    NetnsFile {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("duplicating a network namespace fd: {source}")]
    DupNetns { source: std::io::Error },
    #[error("setns(CLONE_NEWNET): {source}")]
    Setns { source: nix::Error },
    #[error("unshare(CLONE_NEWNET): {source}")]
    Unshare { source: nix::Error },
    #[error("a thread working inside a network namespace panicked")]
    ThreadPanicked,
    #[error("opening a route netlink socket: {source}")]
    NetlinkSocket { source: std::io::Error },
    #[error("netlink I/O for '{request}': {source}")]
    NetlinkIo {
        request: String,
        source: std::io::Error,
    },
    #[error("decoding the netlink reply to '{request}': {message}")]
    NetlinkDecode { request: String, message: String },
    #[error("netlink refused '{request}': {source}")]
    Netlink {
        request: String,
        source: std::io::Error,
    },
    #[error("no link named {name}")]
    LinkNotFound { name: String },
    #[error("writing {value} to {path}: {source}")]
    Sysctl {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("nft ({step}): {message}")]
    Nft { step: &'static str, message: String },
    #[error("invalid {field} {value:?}: {reason}")]
    Plan {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("subnet {subnet} overlaps {other}")]
    SubnetOverlap { subnet: Ipv4Net, other: Ipv4Net },
    #[error("subnet {subnet} has no free container address left")]
    SubnetExhausted { subnet: Ipv4Net },
}

/// Every error met while tearing down; teardown does not stop at the first.
#[derive(Debug, thiserror::Error)]
#[error("{} teardown error(s): {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct TeardownErrors(pub Vec<NetworkError>);

impl TeardownErrors {
    fn from_vec(errors: Vec<NetworkError>) -> Result<(), TeardownErrors> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(TeardownErrors(errors))
        }
    }
}

/// Puts the IPv6 `address` on link `ifname` in `ns`, without duplicate
/// address detection (our own addresses on our own links: usable at once).
pub fn add_address6(ns: &Netns, ifname: &str, address: ipnet::Ipv6Net) -> Result<(), NetworkError> {
    let mut rtnl = rtnl::Rtnl::open_in(ns)?;
    let index = rtnl.link_index(ifname)?;
    rtnl.add_address6(index, ifname, address)
}

/// What of ours is left in `host`: `isoc-*` links and the `inet isocheck`
/// table. Errors while looking are listed as entries too, so nothing is
/// silently missed.
pub fn leftovers(host: &Netns) -> Vec<String> {
    let mut found = Vec::new();
    match rtnl::Rtnl::open_in(host).and_then(|mut rtnl| rtnl.links()) {
        Ok(links) => found.extend(
            links
                .into_iter()
                .filter(|link| link.name.starts_with(LINK_PREFIX))
                .map(|link| format!("link {}", link.name)),
        ),
        Err(e) => found.push(format!("error listing links: {e}")),
    }
    match nat::table_exists(host) {
        Ok(true) => found.push(format!("nft table inet {TABLE}")),
        Ok(false) => {}
        Err(e) => found.push(format!("error listing nft tables: {e}")),
    }
    found
}

/// Removes every `isoc-*` link and the `inet isocheck` table from `host`,
/// keeping going past errors (for `isocheck cleanup`).
pub fn cleanup(host: &Netns) -> Result<(), TeardownErrors> {
    let mut errors = Vec::new();
    match rtnl::Rtnl::open_in(host) {
        Ok(mut rtnl) => match rtnl.links() {
            Ok(links) => {
                for link in links.iter().filter(|l| l.name.starts_with(LINK_PREFIX)) {
                    match rtnl.delete_link(link.index, &link.name) {
                        // Deleting one veth end removes its peer too.
                        Err(NetworkError::Netlink { source, .. })
                            if source.raw_os_error() == Some(nix::errno::Errno::ENODEV as i32) => {}
                        Err(e) => errors.push(e),
                        Ok(()) => {}
                    }
                }
            }
            Err(e) => errors.push(e),
        },
        Err(e) => errors.push(e),
    }
    if let Err(e) = nat::delete_table(host) {
        errors.push(e);
    }
    TeardownErrors::from_vec(errors)
}

#[cfg(all(test, feature = "privileged"))]
mod privileged_tests;
#[cfg(test)]
mod tests;

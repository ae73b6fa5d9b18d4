//! Address planning: which addresses a run uses, checked before anything is
//! created. Pure code.

use super::NetworkError;
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

fn plan_error(field: &'static str, value: impl ToString, reason: impl ToString) -> NetworkError {
    NetworkError::Plan {
        field,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// Hands out container addresses from one subnet: the gateway (the bridge)
/// is the first host address (.1), containers get .2, .3, ... up to the last
/// address before broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetPlan {
    subnet: Ipv4Net,
    handed_out: BTreeSet<Ipv4Addr>,
    /// The last address handed out: the search for a free one starts after
    /// it, so a released address is reused as late as possible (a container
    /// whose namespace is still being torn down may hold it for a moment).
    last: Option<Ipv4Addr>,
}

impl SubnetPlan {
    /// Plans `subnet`, refusing one that is not a network address, too small
    /// for a gateway and one container (/30 at most), or that overlaps one of
    /// `others` (the run's other subnets: other bridges, the uplink, the
    /// outside world).
    pub fn new(subnet: Ipv4Net, others: &[Ipv4Net]) -> Result<SubnetPlan, NetworkError> {
        if subnet.network() != subnet.addr() {
            return Err(plan_error(
                "subnet",
                subnet,
                format!("not a network address (did you mean {}?)", subnet.trunc()),
            ));
        }
        if subnet.prefix_len() > 30 {
            return Err(plan_error(
                "subnet",
                subnet,
                "too small: needs a gateway and at least one container (/30 or larger)",
            ));
        }
        if let Some(other) = others.iter().find(|other| overlaps(&subnet, other)) {
            return Err(NetworkError::SubnetOverlap {
                subnet,
                other: *other,
            });
        }
        Ok(SubnetPlan {
            subnet,
            handed_out: BTreeSet::new(),
            last: None,
        })
    }

    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    /// The bridge's address, with the subnet's prefix (e.g. 10.89.0.1/24).
    pub fn gateway(&self) -> Ipv4Net {
        let first = u32::from(self.subnet.network()) + 1;
        Ipv4Net::new(Ipv4Addr::from(first), self.subnet.prefix_len()).expect("prefix already valid")
    }

    /// The next free container address after the last one handed out
    /// (wrapping around), with the subnet's prefix.
    pub fn allocate(&mut self) -> Result<Ipv4Net, NetworkError> {
        let first = u32::from(self.subnet.network()) + 2;
        let last = u32::from(self.subnet.broadcast()) - 1;
        let start = self.last.map_or(first, |a| u32::from(a) + 1);
        let free = (start..=last)
            .chain(first..start.min(last + 1))
            .map(Ipv4Addr::from)
            .find(|address| !self.handed_out.contains(address))
            .ok_or(NetworkError::SubnetExhausted {
                subnet: self.subnet,
            })?;
        self.handed_out.insert(free);
        self.last = Some(free);
        Ok(Ipv4Net::new(free, self.subnet.prefix_len()).expect("prefix already valid"))
    }

    /// Gives an address back for reuse.
    pub fn release(&mut self, address: Ipv4Addr) -> bool {
        self.handed_out.remove(&address)
    }
}

/// True when the two networks share any address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The addresses of the NAT testbed: an uplink between the stand-in host and
/// an "outside" namespace, and a "world" address behind the outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsidePlan {
    /// Name of the uplink's stand-in end (`isoc-up*`, at most 15 bytes).
    pub uplink_name: String,
    /// The stand-in's uplink address, e.g. 198.51.100.1/24.
    pub standin_address: Ipv4Net,
    /// The outside's uplink address, same subnet, e.g. 198.51.100.2/24.
    pub outside_address: Ipv4Net,
    /// The world subnet routed to the outside, e.g. 203.0.113.0/24.
    pub world_subnet: Ipv4Net,
    /// The address a server in the outside listens on, e.g. 203.0.113.1.
    pub world_address: Ipv4Addr,
}

impl Default for OutsidePlan {
    fn default() -> Self {
        OutsidePlan {
            uplink_name: "isoc-up0".into(),
            standin_address: "198.51.100.1/24".parse().expect("literal"),
            outside_address: "198.51.100.2/24".parse().expect("literal"),
            world_subnet: "203.0.113.0/24".parse().expect("literal"),
            world_address: Ipv4Addr::new(203, 0, 113, 1),
        }
    }
}

impl OutsidePlan {
    /// Refuses a plan whose addresses are unusable or whose subnets overlap
    /// each other or one of `others` (the container subnets).
    pub fn validate(&self, others: &[Ipv4Net]) -> Result<(), NetworkError> {
        check_link_name("uplink_name", &self.uplink_name, "isoc-up")?;
        check_host_address("standin_address", self.standin_address)?;
        check_host_address("outside_address", self.outside_address)?;
        if self.standin_address.trunc() != self.outside_address.trunc() {
            return Err(plan_error(
                "outside_address",
                self.outside_address,
                format!(
                    "not in the stand-in's uplink subnet {}",
                    self.standin_address.trunc()
                ),
            ));
        }
        if self.standin_address.addr() == self.outside_address.addr() {
            return Err(plan_error(
                "outside_address",
                self.outside_address,
                "same address as standin_address",
            ));
        }
        if self.world_subnet.network() != self.world_subnet.addr() {
            return Err(plan_error(
                "world_subnet",
                self.world_subnet,
                "not a network address",
            ));
        }
        if !self.world_subnet.contains(&self.world_address)
            || self.world_address == self.world_subnet.network()
            || (self.world_subnet.prefix_len() < 31
                && self.world_address == self.world_subnet.broadcast())
        {
            return Err(plan_error(
                "world_address",
                self.world_address,
                format!("not a host address of world_subnet {}", self.world_subnet),
            ));
        }
        let uplink = self.standin_address.trunc();
        if overlaps(&uplink, &self.world_subnet) {
            return Err(NetworkError::SubnetOverlap {
                subnet: self.world_subnet,
                other: uplink,
            });
        }
        for other in others {
            for mine in [uplink, self.world_subnet] {
                if overlaps(&mine, other) {
                    return Err(NetworkError::SubnetOverlap {
                        subnet: mine,
                        other: *other,
                    });
                }
            }
        }
        Ok(())
    }
}

/// An address usable on an interface: not the network or broadcast address
/// of its own subnet, not unspecified, loopback or multicast.
fn check_host_address(field: &'static str, address: Ipv4Net) -> Result<(), NetworkError> {
    let ip = address.addr();
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() {
        return Err(plan_error(field, address, "not a unicast host address"));
    }
    if address.prefix_len() < 31 && (ip == address.network() || ip == address.broadcast()) {
        return Err(plan_error(
            field,
            address,
            "is the network or broadcast address of its subnet",
        ));
    }
    Ok(())
}

/// Our interface names: the isocheck prefix, at most 15 bytes (IFNAMSIZ - 1),
/// letters, digits and '-'.
pub(crate) fn check_link_name(
    field: &'static str,
    name: &str,
    prefix: &str,
) -> Result<(), NetworkError> {
    if !name.starts_with(prefix) {
        return Err(plan_error(field, name, format!("must start with {prefix}")));
    }
    if name.len() > 15 {
        return Err(plan_error(field, name, "longer than 15 bytes (IFNAMSIZ)"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(plan_error(
            field,
            name,
            "only letters, digits, '-' and '_' allowed",
        ));
    }
    Ok(())
}

/// The host end of a container's veth: `isoc-v` and up to 9 bytes of the
/// hint (letters and digits only), so it fits IFNAMSIZ.
pub fn veth_host_name(name_hint: &str) -> String {
    let short: String = name_hint
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(9)
        .collect();
    format!("isoc-v{short}")
}

//! The NAT testbed: an "outside" namespace the run creates, joined to the
//! stand-in host by a veth uplink, with a "world" address behind it. It only
//! ever links namespaces the run made; it is not host networking.

use super::plan::OutsidePlan;
use super::rtnl::{veth_request, Rtnl};
use super::{Netns, NetworkError, TeardownErrors};
use std::os::fd::{AsFd, AsRawFd};

/// The outside's end of the uplink.
pub const OUTSIDE_IFNAME: &str = "eth0";

/// The outside namespace and the uplink to it. Dropping it deletes the
/// uplink; the namespace goes away with its last handle.
#[derive(Debug)]
pub struct OutsideWorld {
    standin: Netns,
    outside: Netns,
    plan: OutsidePlan,
    deleted: bool,
}

impl OutsideWorld {
    /// Validates `plan`, then: a new namespace "outside"; a veth
    /// `plan.uplink_name` in `standin` with its peer `eth0` in outside;
    /// addresses on both ends; `plan.world_address`/32 on outside's lo; a
    /// route in the stand-in to `plan.world_subnet` via the outside end.
    pub fn create(standin: &Netns, plan: &OutsidePlan) -> Result<OutsideWorld, NetworkError> {
        plan.validate(&[])?;
        let outside = Netns::new_anonymous()?;
        let mut standin_rtnl = Rtnl::open_in(standin)?;
        standin_rtnl.add_veth(
            veth_request(
                &plan.uplink_name,
                None,
                OUTSIDE_IFNAME,
                outside.as_fd().as_raw_fd(),
            ),
            &format!(
                "add uplink veth {} (peer {OUTSIDE_IFNAME} outside)",
                plan.uplink_name
            ),
        )?;
        let world = OutsideWorld {
            standin: standin.try_clone()?,
            outside,
            plan: plan.clone(),
            deleted: false,
        };
        // From here, an early return drops `world`, which deletes the uplink.
        let uplink = standin_rtnl.link_index(&plan.uplink_name)?;
        standin_rtnl.add_address(uplink, &plan.uplink_name, plan.standin_address)?;
        standin_rtnl.add_route(plan.world_subnet, plan.outside_address.addr())?;

        let mut outside_rtnl = Rtnl::open_in(&world.outside)?;
        let lo = outside_rtnl.link_index("lo")?;
        outside_rtnl.set_up(lo, "lo")?;
        let world_address = ipnet::Ipv4Net::new(plan.world_address, 32).expect("/32 is valid");
        outside_rtnl.add_address(lo, "lo", world_address)?;
        let eth0 = outside_rtnl.link_index(OUTSIDE_IFNAME)?;
        outside_rtnl.add_address(eth0, OUTSIDE_IFNAME, plan.outside_address)?;
        outside_rtnl.set_up(eth0, OUTSIDE_IFNAME)?;
        Ok(world)
    }

    /// The outside namespace (run servers and clients in it with `run_in`).
    pub fn outside(&self) -> &Netns {
        &self.outside
    }

    pub fn plan(&self) -> &OutsidePlan {
        &self.plan
    }

    /// Deletes the uplink; the outside namespace ends when `self` is dropped.
    pub fn delete(mut self) -> Result<(), TeardownErrors> {
        self.deleted = true;
        self.delete_uplink().map_err(|e| TeardownErrors(vec![e]))
    }

    fn delete_uplink(&self) -> Result<(), NetworkError> {
        match Rtnl::open_in(&self.standin)
            .and_then(|mut rtnl| rtnl.delete_link_named(&self.plan.uplink_name))
        {
            Ok(()) | Err(NetworkError::LinkNotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for OutsideWorld {
    fn drop(&mut self) {
        if !self.deleted {
            if let Err(e) = self.delete_uplink() {
                tracing::warn!(uplink = %self.plan.uplink_name, error = %e, "dropping OutsideWorld");
            }
        }
    }
}

//! The network the network scenarios run on, all inside the stand-in host:
//! two bridges that are not connected to each other (the second exists for
//! controls), an "outside world" namespace behind an uplink, and a TCP
//! listener on the first bridge's address (something for a container to
//! reach when it shares the stand-in's network). Addresses are the
//! documentation ranges; nothing here can route to a real network.

use crate::fixtures::FixtureError;
use ipnet::{Ipv4Net, Ipv6Net};
use isocheck_runtime::network::{
    Bridge, Nat, Netns, NetworkError, OutsidePlan, OutsideWorld, SubnetPlan,
};
use isocheck_runtime::spec::{BridgeAttachment, PortForward};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::process::{Child, Command, Stdio};

/// Container subnets of the two bridges.
pub const FIRST_SUBNET: &str = "10.89.0.0/24";
pub const SECOND_SUBNET: &str = "10.90.0.0/24";
/// Their IPv6 twins: unique local prefixes of our own (fd69:736f:6368 is
/// "iso" + "ch" in ASCII), a container's ::N the twin of its .N.
pub const FIRST_SUBNET6: &str = "fd69:736f:6368:89::/64";
pub const SECOND_SUBNET6: &str = "fd69:736f:6368:90::/64";
/// An IPv6 address of the stand-in off every container's prefix (on its
/// `lo`): reaching it takes the default route through the bridge.
pub const STANDIN_OFFLINK6: &str = "fd69:736f:6368:ee::1";
/// Port of the stand-in's listener on the first bridge's address.
pub const STANDIN_PORT: u16 = 7100;

#[derive(Debug)]
pub struct NetTestbed {
    host: Netns,
    first: Bridge,
    first_plan: SubnetPlan,
    second: Bridge,
    second_plan: SubnetPlan,
    outside: OutsideWorld,
    _listener: TcpListener,
    /// The same listener on the first bridge's IPv6 address, when the
    /// kernel has IPv6.
    _listener6: Option<TcpListener>,
}

/// What can fail once the testbed stands, per half.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error("enable NAT: {0}")]
    Nat(NetworkError),
    #[error("enter the outside netns: {0}")]
    EnterOutside(NetworkError),
    #[error("start the probe outside: {0}")]
    StartOutside(std::io::Error),
}

fn net(step: &'static str) -> impl FnOnce(NetworkError) -> FixtureError {
    move |e| FixtureError::Network(format!("{step}: {e}"))
}

fn parse_net(text: &str) -> Ipv4Net {
    text.parse().unwrap_or_else(|_| Ipv4Net::default())
}

/// Whether this kernel has IPv6 (the scenarios that need it require it).
pub fn ipv6_available() -> bool {
    std::path::Path::new("/proc/net/if_inet6").exists()
}

/// The IPv6 twin of an IPv4 address of `subnet4` in `prefix6`: host part N
/// of the one is ::N of the other (10.89.0.7 -> fd69:736f:6368:89::7/64).
pub fn twin6(address4: Ipv4Addr, subnet4: Ipv4Net, prefix6: &str) -> Option<Ipv6Net> {
    let prefix: Ipv6Net = prefix6.parse().ok()?;
    let host = u32::from(address4) & !u32::from(subnet4.netmask());
    let address = Ipv6Addr::from(u128::from(prefix.network()) | u128::from(host));
    Ipv6Net::new(address, prefix.prefix_len()).ok()
}

impl NetTestbed {
    pub fn create(run_id: &str) -> Result<NetTestbed, FixtureError> {
        let host = Netns::current().map_err(net("open the stand-in's netns"))?;
        let outside_plan = OutsidePlan {
            uplink_name: format!("isoc-up{run_id}"),
            ..OutsidePlan::default()
        };
        let first_plan = SubnetPlan::new(
            parse_net(FIRST_SUBNET),
            &[outside_plan.standin_address, outside_plan.world_subnet],
        )
        .map_err(net("plan the first subnet"))?;
        let second_plan = SubnetPlan::new(
            parse_net(SECOND_SUBNET),
            &[
                first_plan.subnet(),
                outside_plan.standin_address,
                outside_plan.world_subnet,
            ],
        )
        .map_err(net("plan the second subnet"))?;
        let first = Bridge::create(&host, &format!("isoc-br{run_id}"), first_plan.gateway())
            .map_err(net("create the first bridge"))?;
        let second = Bridge::create(&host, &format!("isoc-br{run_id}2"), second_plan.gateway())
            .map_err(net("create the second bridge"))?;
        let ipv6 = ipv6_available();
        if ipv6 {
            let offlink: Ipv6Net = format!("{STANDIN_OFFLINK6}/128")
                .parse()
                .map_err(|e| FixtureError::Network(format!("{STANDIN_OFFLINK6}: {e}")))?;
            isocheck_runtime::network::add_address6(&host, "lo", offlink)
                .map_err(net("give the stand-in its off-link IPv6 address"))?;
            for (bridge, plan, prefix6) in [
                (&first, &first_plan, FIRST_SUBNET6),
                (&second, &second_plan, SECOND_SUBNET6),
            ] {
                if let Some(gateway6) = twin6(plan.gateway().addr(), plan.subnet(), prefix6) {
                    bridge
                        .add_ipv6(gateway6)
                        .map_err(net("give a bridge its IPv6 address"))?;
                }
            }
        }
        isocheck_runtime::network::enable_forwarding(&host).map_err(net("enable forwarding"))?;
        let outside =
            OutsideWorld::create(&host, &outside_plan).map_err(net("create the outside world"))?;
        let listener =
            TcpListener::bind((first_plan.gateway().addr(), STANDIN_PORT)).map_err(|source| {
                FixtureError::Io {
                    step: "listen on the stand-in's bridge address",
                    path: format!("{}:{STANDIN_PORT}", first_plan.gateway().addr()).into(),
                    source,
                }
            })?;
        let listener6 = match twin6(
            first_plan.gateway().addr(),
            first_plan.subnet(),
            FIRST_SUBNET6,
        ) {
            Some(gateway6) if ipv6 => Some(
                TcpListener::bind((gateway6.addr(), STANDIN_PORT)).map_err(|source| {
                    FixtureError::Io {
                        step: "listen on the stand-in's bridge IPv6 address",
                        path: format!("[{}]:{STANDIN_PORT}", gateway6.addr()).into(),
                        source,
                    }
                })?,
            ),
            _ => None,
        };
        Ok(NetTestbed {
            host,
            first,
            first_plan,
            second,
            second_plan,
            outside,
            _listener: listener,
            _listener6: listener6,
        })
    }

    /// A fresh address on the first (or, for controls, the second) bridge.
    pub fn attachment(
        &mut self,
        second: bool,
        detached: bool,
        publish: Option<PortForward>,
    ) -> Result<BridgeAttachment, NetworkError> {
        let (bridge, plan, prefix6) = if second {
            (&self.second, &mut self.second_plan, SECOND_SUBNET6)
        } else {
            (&self.first, &mut self.first_plan, FIRST_SUBNET6)
        };
        let address = plan.allocate()?;
        let address6 = ipv6_available()
            .then(|| twin6(address.addr(), plan.subnet(), prefix6))
            .flatten();
        Ok(BridgeAttachment {
            bridge: bridge.name().to_string(),
            address: address.to_string(),
            // The second bridge is an island: no default route, so nothing
            // reaches the first bridge through the stand-in's forwarding.
            gateway: (!second).then(|| plan.gateway().addr().to_string()),
            address6: address6.map(|a| a.to_string()),
            // As for IPv4: only the first bridge routes anywhere.
            gateway6: address6
                .filter(|_| !second)
                .and_then(|_| twin6(plan.gateway().addr(), plan.subnet(), prefix6))
                .map(|g| g.addr().to_string()),
            publish: publish.into_iter().collect(),
            detached,
        })
    }

    /// Gives an attachment's address back once its container is gone.
    pub fn release(&mut self, att: &BridgeAttachment) {
        if let Ok(net) = att.address.parse::<Ipv4Net>() {
            if !self.first_plan.release(net.addr()) {
                self.second_plan.release(net.addr());
            }
        }
    }

    /// Masquerade for the first subnet out of the uplink (one nft batch).
    pub fn nat(&self) -> Result<Nat, TestbedError> {
        Nat::enable(
            &self.host,
            self.first_plan.subnet(),
            &self.outside.plan().uplink_name,
        )
        .map_err(TestbedError::Nat)
    }

    /// Starts the probe in the outside namespace (stdin and stdout piped:
    /// closing stdin tells a server `--until stdin-eof` to stop).
    pub fn spawn_outside(
        &self,
        probe: &std::path::Path,
        argv: &[String],
    ) -> Result<Child, TestbedError> {
        let mut cmd = Command::new(probe);
        cmd.args(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        crate::fixtures::die_with_parent(&mut cmd);
        self.outside
            .outside()
            .enter_on_spawn(&mut cmd)
            .map_err(TestbedError::EnterOutside)?;
        cmd.spawn().map_err(TestbedError::StartOutside)
    }

    /// Placeholders for scenario files.
    pub fn vars(&self) -> BTreeMap<String, String> {
        let plan = self.outside.plan();
        let gateway: Ipv4Addr = self.first_plan.gateway().addr();
        let gateway6 = twin6(gateway, self.first_plan.subnet(), FIRST_SUBNET6)
            .map(|g| g.addr().to_string())
            .unwrap_or_default();
        BTreeMap::from([
            ("bridge.gateway".into(), gateway.to_string()),
            ("bridge.gateway6".into(), gateway6),
            ("standin.offlink6".into(), STANDIN_OFFLINK6.into()),
            ("standin.address".into(), gateway.to_string()),
            ("standin.port".into(), STANDIN_PORT.to_string()),
            (
                "uplink.address".into(),
                plan.standin_address.addr().to_string(),
            ),
            ("outside.world".into(), plan.world_address.to_string()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_and_its_ipv6_twin_share_the_host_part() {
        let subnet: Ipv4Net = FIRST_SUBNET.parse().expect("subnet");
        let twin = twin6(Ipv4Addr::new(10, 89, 0, 7), subnet, FIRST_SUBNET6).expect("twin");
        assert_eq!(twin.to_string(), "fd69:736f:6368:89::7/64");
        let gateway = twin6(Ipv4Addr::new(10, 89, 0, 1), subnet, FIRST_SUBNET6).expect("twin");
        assert_eq!(gateway.addr().to_string(), "fd69:736f:6368:89::1");
        let second: Ipv4Net = SECOND_SUBNET.parse().expect("subnet");
        let twin = twin6(Ipv4Addr::new(10, 90, 0, 254), second, SECOND_SUBNET6).expect("twin");
        assert_eq!(twin.to_string(), "fd69:736f:6368:90::fe/64");
    }
}

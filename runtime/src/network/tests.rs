//! Tests without root: address plans, nft batches, netlink messages.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used)]

use super::nat::{delete_table_batch, masquerade_batch, publish_batch, unpublish_batch};
use super::rtnl::{address_request, bridge_request, route_request, set_up_request, veth_request};
use super::*;
use crate::spec::PortForward;
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute};
use netlink_packet_route::RouteNetlinkMessage;
use proptest::prelude::*;
use rstest::rstest;
use std::net::Ipv4Addr;

fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

// ---- address planning ----

#[test]
fn subnet_plan_gateway_is_first_host_and_containers_follow() {
    let mut plan = SubnetPlan::new(net("10.89.0.0/24"), &[]).unwrap();
    assert_eq!(plan.gateway(), net("10.89.0.1/24"));
    assert_eq!(plan.allocate().unwrap(), net("10.89.0.2/24"));
    assert_eq!(plan.allocate().unwrap(), net("10.89.0.3/24"));
    // A released address is reused only after the rest of the range.
    assert!(plan.release(Ipv4Addr::new(10, 89, 0, 2)));
    assert_eq!(plan.allocate().unwrap(), net("10.89.0.4/24"));
}

#[test]
fn subnet_plan_wraps_around_to_released_addresses() {
    // /29: .1 gateway, .2-.6 containers.
    let mut plan = SubnetPlan::new(net("10.89.0.0/29"), &[]).unwrap();
    for last in 2..=6 {
        assert_eq!(plan.allocate().unwrap(), net(&format!("10.89.0.{last}/29")));
    }
    assert!(plan.allocate().is_err());
    assert!(plan.release(Ipv4Addr::new(10, 89, 0, 3)));
    assert_eq!(plan.allocate().unwrap(), net("10.89.0.3/29"));
}

#[test]
fn subnet_plan_refuses_exhaustion() {
    // /30: .0 network, .1 gateway, .2 the one container, .3 broadcast.
    let mut plan = SubnetPlan::new(net("10.89.0.0/30"), &[]).unwrap();
    assert_eq!(plan.allocate().unwrap(), net("10.89.0.2/30"));
    let err = plan.allocate().unwrap_err();
    assert!(matches!(err, NetworkError::SubnetExhausted { .. }), "{err}");
    assert!(err.to_string().contains("10.89.0.0/30"), "{err}");
}

#[rstest]
#[case("10.89.0.0/24", "10.89.0.0/16")]
#[case("10.89.0.0/24", "10.89.0.128/25")]
#[case("10.89.0.0/24", "10.89.0.0/24")]
fn subnet_plan_refuses_overlap(#[case] subnet: &str, #[case] other: &str) {
    let err = SubnetPlan::new(net(subnet), &[net("192.168.0.0/24"), net(other)]).unwrap_err();
    assert!(matches!(err, NetworkError::SubnetOverlap { .. }), "{err}");
    assert!(err.to_string().contains(other), "{err}");
}

#[rstest]
#[case("10.89.0.1/24", "not a network address")]
#[case("10.89.0.0/31", "too small")]
#[case("10.89.0.0/32", "too small")]
fn subnet_plan_refuses_bad_subnets(#[case] subnet: &str, #[case] reason: &str) {
    let err = SubnetPlan::new(net(subnet), &[]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("subnet") && text.contains(subnet) && text.contains(reason),
        "{text}"
    );
}

proptest! {
    #[test]
    fn subnet_plan_hands_out_distinct_host_addresses(base in any::<u32>(), prefix in 24u8..=30) {
        let subnet = Ipv4Net::new(Ipv4Addr::from(base), prefix).unwrap().trunc();
        let mut plan = SubnetPlan::new(subnet, &[]).unwrap();
        let capacity = (1u32 << (32 - prefix)) - 3;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..capacity {
            let address = plan.allocate().unwrap();
            prop_assert!(subnet.contains(&address.addr()));
            prop_assert_ne!(address.addr(), subnet.network());
            prop_assert_ne!(address.addr(), subnet.broadcast());
            prop_assert_ne!(address.addr(), plan.gateway().addr());
            prop_assert!(seen.insert(address.addr()));
        }
        prop_assert!(plan.allocate().is_err());
    }

    #[test]
    fn overlap_is_symmetric_and_matches_shared_addresses(a in any::<u32>(), pa in 8u8..=32, b in any::<u32>(), pb in 8u8..=32) {
        let x = Ipv4Net::new(Ipv4Addr::from(a), pa).unwrap().trunc();
        let y = Ipv4Net::new(Ipv4Addr::from(b), pb).unwrap().trunc();
        let shared = u32::from(x.network()) <= u32::from(y.broadcast())
            && u32::from(y.network()) <= u32::from(x.broadcast());
        prop_assert_eq!(overlaps(&x, &y), shared);
        prop_assert_eq!(overlaps(&x, &y), overlaps(&y, &x));
    }
}

#[test]
fn outside_plan_default_is_valid() {
    OutsidePlan::default()
        .validate(&[net("10.89.0.0/24")])
        .unwrap();
}

#[rstest]
#[case::outside_other_subnet(|p: &mut OutsidePlan| p.outside_address = net("198.51.101.2/24"), "outside_address", "198.51.101.2/24")]
#[case::same_address(|p: &mut OutsidePlan| p.outside_address = net("198.51.100.1/24"), "outside_address", "198.51.100.1/24")]
#[case::network_address(|p: &mut OutsidePlan| p.standin_address = net("198.51.100.0/24"), "standin_address", "198.51.100.0/24")]
#[case::broadcast(|p: &mut OutsidePlan| p.outside_address = net("198.51.100.255/24"), "outside_address", "198.51.100.255/24")]
#[case::loopback(|p: &mut OutsidePlan| p.standin_address = net("127.0.0.2/8"), "standin_address", "127.0.0.2/8")]
#[case::world_outside_subnet(|p: &mut OutsidePlan| p.world_address = Ipv4Addr::new(203, 0, 114, 1), "world_address", "203.0.114.1")]
#[case::world_not_network(|p: &mut OutsidePlan| p.world_subnet = net("203.0.113.1/24"), "world_subnet", "203.0.113.1/24")]
#[case::long_name(|p: &mut OutsidePlan| p.uplink_name = "isoc-up-much-too-long".into(), "uplink_name", "isoc-up-much-too-long")]
#[case::foreign_name(|p: &mut OutsidePlan| p.uplink_name = "eth1".into(), "uplink_name", "eth1")]
fn outside_plan_refusals_name_field_and_value(
    #[case] change: fn(&mut OutsidePlan),
    #[case] field: &str,
    #[case] value: &str,
) {
    let mut plan = OutsidePlan::default();
    change(&mut plan);
    let text = plan.validate(&[]).unwrap_err().to_string();
    assert!(text.contains(field) && text.contains(value), "{text}");
}

#[rstest]
#[case::world_overlaps_uplink(|p: &mut OutsidePlan| { p.world_subnet = net("198.51.100.128/25"); p.world_address = Ipv4Addr::new(198, 51, 100, 129); })]
#[case::world_covers_uplink(|p: &mut OutsidePlan| { p.world_subnet = net("198.51.0.0/16"); p.world_address = Ipv4Addr::new(198, 51, 7, 1); })]
fn outside_plan_refuses_internal_overlap(#[case] change: fn(&mut OutsidePlan)) {
    let mut plan = OutsidePlan::default();
    change(&mut plan);
    let err = plan.validate(&[]).unwrap_err();
    assert!(matches!(err, NetworkError::SubnetOverlap { .. }), "{err}");
}

#[test]
fn outside_plan_refuses_overlap_with_container_subnet() {
    let err = OutsidePlan::default()
        .validate(&[net("203.0.113.0/28")])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "subnet 203.0.113.0/24 overlaps 203.0.113.0/28"
    );
}

#[rstest]
#[case("web-1", "isoc-vweb1")]
#[case("run42-container-17", "isoc-vrun42cont")]
#[case("", "isoc-v")]
fn veth_host_names_fit_ifnamsiz(#[case] hint: &str, #[case] expected: &str) {
    let name = veth_host_name(hint);
    assert_eq!(name, expected);
    assert!(name.len() <= 15);
}

// ---- nftables batches ----

fn pretty(batch: &nftables::schema::Nftables<'_>) -> String {
    serde_json::to_string_pretty(batch).unwrap()
}

#[test]
fn masquerade_batch_json() {
    insta::assert_snapshot!(pretty(&masquerade_batch(net("10.89.0.0/24"), "isoc-up0")));
}

#[test]
fn publish_batch_json() {
    let forwards = [
        PortForward {
            host_port: 8080,
            container_port: 80,
        },
        PortForward {
            host_port: 2222,
            container_port: 22,
        },
    ];
    insta::assert_snapshot!(pretty(&publish_batch(
        Ipv4Addr::new(10, 89, 0, 2),
        &forwards,
        "isocheck publish isoc-vweb1"
    )));
}

#[test]
fn unpublish_and_delete_table_batches_json() {
    let rules = [
        PublishedRule {
            chain: "prerouting".into(),
            handle: 7,
        },
        PublishedRule {
            chain: "output".into(),
            handle: 8,
        },
    ];
    insta::assert_snapshot!(pretty(&unpublish_batch(&rules)));
    insta::assert_snapshot!(pretty(&delete_table_batch()));
}

#[test]
fn batches_only_ever_name_our_table() {
    let forwards = [PortForward {
        host_port: 1,
        container_port: 2,
    }];
    for batch in [
        masquerade_batch(net("10.0.0.0/8"), "x"),
        publish_batch(Ipv4Addr::new(10, 0, 0, 2), &forwards, "c"),
        delete_table_batch(),
    ] {
        let value = serde_json::to_value(&batch).unwrap();
        let mut tables = Vec::new();
        collect_tables(&value, &mut tables);
        assert!(!tables.is_empty());
        assert!(tables.iter().all(|t| t == "isocheck"), "{tables:?}");
        // Table families are all inet; the only other "family" is the
        // address family of a dnat statement.
        let text = value.to_string();
        let families = text.matches("\"family\":").count();
        let inet = text.matches("\"family\":\"inet\"").count();
        let dnat_ip = text.matches("\"family\":\"ip\"").count();
        assert_eq!(families, inet + dnat_ip, "{text}");
        assert_eq!(dnat_ip, text.matches("\"dnat\"").count(), "{text}");
    }
}

fn collect_tables(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                if key == "table" {
                    if let Some(name) = inner.as_str() {
                        out.push(name.to_string());
                    } else if let Some(name) = inner.get("name").and_then(|n| n.as_str()) {
                        out.push(name.to_string());
                    }
                }
                collect_tables(inner, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_tables(i, out)),
        _ => {}
    }
}

// ---- netlink messages ----

/// Serializes a request as the socket would send it and parses it back, so
/// the assertions see what the kernel would receive.
fn on_the_wire(message: RouteNetlinkMessage) -> RouteNetlinkMessage {
    let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(message));
    packet.header.flags = NLM_F_REQUEST;
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf);
    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf)
        .unwrap()
        .payload
    {
        NetlinkPayload::InnerMessage(inner) => inner,
        other => panic!("unexpected payload {other:?}"),
    }
}

fn name_of(message: &LinkMessage) -> Option<&str> {
    message.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

fn infos(message: &LinkMessage) -> &[LinkInfo] {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => Some(infos.as_slice()),
            _ => None,
        })
        .expect("IFLA_LINKINFO present")
}

#[test]
fn veth_request_puts_the_peer_in_the_container_namespace() {
    let RouteNetlinkMessage::NewLink(message) = on_the_wire(RouteNetlinkMessage::NewLink(
        veth_request("isoc-vweb1", Some(7), "eth0", 42),
    )) else {
        panic!("not RTM_NEWLINK")
    };
    assert_eq!(name_of(&message), Some("isoc-vweb1"));
    assert!(message.attributes.contains(&LinkAttribute::Controller(7)));
    assert!(message.header.flags.contains(LinkFlags::Up));
    assert!(message.header.change_mask.contains(LinkFlags::Up));
    // The host end itself stays in the namespace the socket lives in.
    assert!(!message
        .attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::NetNsFd(_))));

    let infos = infos(&message);
    assert!(infos.contains(&LinkInfo::Kind(InfoKind::Veth)), "{infos:?}");
    let peer = infos
        .iter()
        .find_map(|info| match info {
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) => Some(peer),
            _ => None,
        })
        .expect("VETH_INFO_PEER present");
    assert_eq!(name_of(peer), Some("eth0"));
    assert!(
        peer.attributes.contains(&LinkAttribute::NetNsFd(42)),
        "{peer:?}"
    );
}

#[test]
fn detached_veth_has_no_controller() {
    let message = veth_request("isoc-vctl", None, "eth0", 3);
    assert!(!message
        .attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::Controller(_))));
}

#[test]
fn bridge_request_names_kind_bridge() {
    let RouteNetlinkMessage::NewLink(message) =
        on_the_wire(RouteNetlinkMessage::NewLink(bridge_request("isoc-br1")))
    else {
        panic!("not RTM_NEWLINK")
    };
    assert_eq!(name_of(&message), Some("isoc-br1"));
    assert_eq!(infos(&message), &[LinkInfo::Kind(InfoKind::Bridge)]);
}

#[test]
fn set_up_request_targets_index_with_up_mask() {
    let message = set_up_request(9);
    assert_eq!(message.header.index, 9);
    assert_eq!(message.header.flags, LinkFlags::Up);
    assert_eq!(message.header.change_mask, LinkFlags::Up);
}

#[test]
fn address_request_carries_local_prefix_and_broadcast() {
    let RouteNetlinkMessage::NewAddress(message) = on_the_wire(RouteNetlinkMessage::NewAddress(
        address_request(4, net("10.89.0.2/24")),
    )) else {
        panic!("not RTM_NEWADDR")
    };
    assert_eq!(message.header.index, 4);
    assert_eq!(message.header.prefix_len, 24);
    let ip = std::net::IpAddr::V4(Ipv4Addr::new(10, 89, 0, 2));
    assert!(message.attributes.contains(&AddressAttribute::Local(ip)));
    assert!(message
        .attributes
        .contains(&AddressAttribute::Broadcast(Ipv4Addr::new(10, 89, 0, 255))));
}

#[test]
fn default_route_request_has_gateway_and_no_destination() {
    let RouteNetlinkMessage::NewRoute(message) = on_the_wire(RouteNetlinkMessage::NewRoute(
        route_request(Ipv4Net::default(), Ipv4Addr::new(10, 89, 0, 1)),
    )) else {
        panic!("not RTM_NEWROUTE")
    };
    assert_eq!(message.header.destination_prefix_length, 0);
    assert_eq!(message.header.table, 254);
    assert_eq!(
        message.attributes,
        vec![RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
            10, 89, 0, 1
        )))]
    );
}

#[test]
fn subnet_route_request_has_destination() {
    let message = route_request(net("203.0.113.0/24"), Ipv4Addr::new(198, 51, 100, 2));
    assert_eq!(message.header.destination_prefix_length, 24);
    assert!(message
        .attributes
        .contains(&RouteAttribute::Destination(RouteAddress::Inet(
            Ipv4Addr::new(203, 0, 113, 0)
        ))));
}

#[test]
fn teardown_errors_report_every_error() {
    let errors = TeardownErrors(vec![
        NetworkError::LinkNotFound {
            name: "isoc-va".into(),
        },
        NetworkError::Nft {
            step: "delete table inet isocheck",
            message: "boom".into(),
        },
    ]);
    let text = errors.to_string();
    assert!(text.starts_with("2 teardown error(s)"), "{text}");
    assert!(text.contains("isoc-va") && text.contains("boom"), "{text}");
}

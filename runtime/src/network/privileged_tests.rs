//! Tests that need root. Each builds its own "host" with
//! `Netns::new_anonymous()`, so nothing reaches the machine's namespaces;
//! every link, rule and namespace dies with the test.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::spec::{BridgeAttachment, PortForward};
use nix::sys::socket::{
    recvfrom, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol,
    SockType, SockaddrIn,
};
use nix::sys::time::TimeVal;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SUBNET: &str = "10.89.0.0/24";

fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

fn attachment(bridge: &str, address: &str) -> BridgeAttachment {
    BridgeAttachment {
        bridge: bridge.into(),
        address: address.into(),
        gateway: Some("10.89.0.1".into()),
        address6: None,
        gateway6: None,
        publish: Vec::new(),
        detached: false,
    }
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One ICMP echo from inside `ns` to `target` over a raw socket; the round
/// trip time, or None after `timeout`.
fn ping(ns: &Netns, target: Ipv4Addr, timeout: Duration) -> Option<Duration> {
    ns.run_in(|| {
        let fd = socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::empty(),
            SockProtocol::Icmp,
        )
        .expect("raw ICMP socket");
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 100_000)).unwrap();
        let id: u16 = std::process::id() as u16 ^ 0x5a5a;
        let mut request = vec![8u8, 0, 0, 0, (id >> 8) as u8, id as u8, 0, 1];
        request.extend_from_slice(b"isocheck");
        let sum = checksum(&request);
        request[2..4].copy_from_slice(&sum.to_be_bytes());
        let destination = SockaddrIn::from(SocketAddrV4::new(target, 0));
        let started = Instant::now();
        sendto(fd.as_raw_fd(), &request, &destination, MsgFlags::empty()).ok()?;
        let mut buf = [0u8; 1500];
        while started.elapsed() < timeout {
            let Ok((len, _)) = recvfrom::<SockaddrIn>(fd.as_raw_fd(), &mut buf) else {
                continue;
            };
            let header = usize::from(buf[0] & 0x0f) * 4;
            let icmp = &buf[header..len];
            if icmp.len() >= 8 && icmp[0] == 0 && u16::from_be_bytes([icmp[4], icmp[5]]) == id {
                return Some(started.elapsed());
            }
        }
        None
    })
    .unwrap()
}

/// A TCP server inside `ns` on `address` that accepts one connection within
/// `timeout`, echoes a line and reports the peer address it saw.
fn serve_once(
    ns: &Netns,
    address: SocketAddr,
    timeout: Duration,
) -> mpsc::Receiver<Option<SocketAddr>> {
    let listener = ns.run_in(|| TcpListener::bind(address)).unwrap().unwrap();
    listener.set_nonblocking(true).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    stream.set_nonblocking(false).unwrap();
                    let mut line = [0u8; 5];
                    stream.read_exact(&mut line).unwrap();
                    stream.write_all(&line).unwrap();
                    tx.send(Some(peer)).unwrap();
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        tx.send(None).unwrap();
    });
    rx
}

/// Connects from inside `ns`, sends "hello", reads it back; the round trip
/// time of connect + echo.
fn connect_echo(ns: &Netns, address: SocketAddr, timeout: Duration) -> std::io::Result<Duration> {
    ns.run_in(|| {
        let started = Instant::now();
        let mut stream = TcpStream::connect_timeout(&address, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"hello")?;
        let mut back = [0u8; 5];
        stream.read_exact(&mut back)?;
        assert_eq!(&back, b"hello");
        Ok(started.elapsed())
    })
    .unwrap()
}

#[test]
fn new_anonymous_is_a_new_namespace_and_current_is_unchanged() {
    let before = Netns::current().unwrap().id().unwrap();
    let anonymous = Netns::new_anonymous().unwrap();
    assert_ne!(anonymous.id().unwrap(), before);
    assert_eq!(Netns::current().unwrap().id().unwrap(), before);
    let inside = anonymous
        .run_in(|| Netns::current().unwrap().id().unwrap())
        .unwrap();
    assert_eq!(inside, anonymous.id().unwrap());
}

#[test]
fn forwarding_is_enabled_in_the_host_namespace_only() {
    let current = Netns::current().unwrap();
    let before = forwarding_enabled(&current).unwrap();
    let host = Netns::new_anonymous().unwrap();
    assert!(
        !forwarding_enabled(&host).unwrap(),
        "a new netns starts with forwarding off"
    );
    enable_forwarding(&host).unwrap();
    assert!(forwarding_enabled(&host).unwrap());
    assert_eq!(forwarding_enabled(&current).unwrap(), before);
    assert!(!forwarding_enabled(&Netns::new_anonymous().unwrap()).unwrap());
    eprintln!("ip_forward: test process netns {before}, our host netns true");
}

/// A bridge turns forwarding on in its namespace and, deleted or dropped,
/// puts it back to off when it found it off (a host namespace not ours is
/// left as found); one that found it on leaves it on.
#[test]
fn a_bridge_leaves_ip_forward_as_it_found_it() {
    let host = Netns::new_anonymous().unwrap();
    let bridge = Bridge::create(&host, "isoc-brfw", net("10.89.0.1/24")).unwrap();
    assert!(forwarding_enabled(&host).unwrap());
    bridge.delete().unwrap();
    assert!(!forwarding_enabled(&host).unwrap(), "delete restores 0");
    drop(Bridge::create(&host, "isoc-brfw", net("10.89.0.1/24")).unwrap());
    assert!(!forwarding_enabled(&host).unwrap(), "drop restores 0");
    enable_forwarding(&host).unwrap();
    drop(Bridge::create(&host, "isoc-brfw", net("10.89.0.1/24")).unwrap());
    assert!(forwarding_enabled(&host).unwrap(), "found on, left on");
}

#[test]
fn command_starts_inside_the_namespace_and_attach_by_pid_works() {
    let host = Netns::new_anonymous().unwrap();
    let container = Netns::new_anonymous().unwrap();
    let mut sleep = Command::new("sleep");
    sleep.arg("30");
    let mut child = container
        .enter_on_spawn(&mut sleep)
        .unwrap()
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    assert_eq!(
        Netns::from_pid(pid).unwrap().id().unwrap(),
        container.id().unwrap()
    );

    let bridge = Bridge::create(&host, "isoc-brpid", net("10.89.0.1/24")).unwrap();
    let veth = attach(&host, pid, &attachment("isoc-brpid", "10.89.0.2/24"), "pid").unwrap();
    assert_eq!(veth.host_ifname(), "isoc-vpid");
    let rtt = ping(&host, Ipv4Addr::new(10, 89, 0, 2), Duration::from_secs(2));
    eprintln!("ping host -> pid container 10.89.0.2: {rtt:?}");
    assert!(rtt.is_some());
    veth.detach().unwrap();
    bridge.delete().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(leftovers(&host), Vec::<String>::new());
}

#[test]
fn loopback_only_without_network() {
    let container = Netns::new_anonymous().unwrap();
    assert!(
        ping(&container, Ipv4Addr::LOCALHOST, Duration::from_millis(300)).is_none(),
        "lo starts down"
    );
    loopback_up_netns(&container).unwrap();
    let rtt = ping(&container, Ipv4Addr::LOCALHOST, Duration::from_secs(1));
    eprintln!("ping 127.0.0.1 in a lo-only netns: {rtt:?}");
    assert!(rtt.is_some());
    let names: Vec<String> = rtnl::Rtnl::open_in(&container)
        .unwrap()
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, vec!["lo".to_string()]);
}

#[test]
fn bridge_connects_two_containers_and_the_host() {
    let host = Netns::new_anonymous().unwrap();
    let bridge = Bridge::create(&host, "isoc-brtwo", net("10.89.0.1/24")).unwrap();
    let a = Netns::new_anonymous().unwrap();
    let b = Netns::new_anonymous().unwrap();
    let va = attach_netns(&host, &a, &attachment("isoc-brtwo", "10.89.0.2/24"), "a").unwrap();
    let vb = attach_netns(&host, &b, &attachment("isoc-brtwo", "10.89.0.3/24"), "b").unwrap();

    let to_gateway = ping(&a, Ipv4Addr::new(10, 89, 0, 1), Duration::from_secs(2));
    let a_to_b = ping(&a, Ipv4Addr::new(10, 89, 0, 3), Duration::from_secs(2));
    let server = serve_once(
        &b,
        "10.89.0.3:7000".parse().unwrap(),
        Duration::from_secs(5),
    );
    let tcp = connect_echo(
        &a,
        "10.89.0.3:7000".parse().unwrap(),
        Duration::from_secs(2),
    );
    let peer = server.recv().unwrap();
    eprintln!("ping A -> bridge: {to_gateway:?}; ping A -> B: {a_to_b:?}; TCP A -> B connect+echo: {tcp:?}, B saw peer {peer:?}");
    assert!(to_gateway.is_some());
    assert!(a_to_b.is_some());
    tcp.unwrap();
    assert_eq!(
        peer.unwrap().ip(),
        std::net::IpAddr::V4(Ipv4Addr::new(10, 89, 0, 2))
    );

    let mut leftover = leftovers(&host);
    leftover.sort();
    assert_eq!(
        leftover,
        vec!["link isoc-brtwo", "link isoc-va", "link isoc-vb"]
    );
    va.detach().unwrap();
    vb.detach().unwrap();
    bridge.delete().unwrap();
    assert_eq!(leftovers(&host), Vec::<String>::new());
}

#[test]
fn control_detached_veth_gets_no_reply() {
    let host = Netns::new_anonymous().unwrap();
    let _bridge = Bridge::create(&host, "isoc-brctl", net("10.89.0.1/24")).unwrap();
    let c = Netns::new_anonymous().unwrap();
    let mut att = attachment("isoc-brctl", "10.89.0.2/24");
    att.detached = true;
    let _veth = attach_netns(&host, &c, &att, "ctl").unwrap();
    let rtt = ping(&c, Ipv4Addr::new(10, 89, 0, 1), Duration::from_secs(1));
    eprintln!("control: ping from a detached veth to the bridge: {rtt:?}");
    assert!(rtt.is_none());
}

#[test]
fn control_two_unconnected_bridges_do_not_reach_each_other() {
    let host = Netns::new_anonymous().unwrap();
    let _one = Bridge::create(&host, "isoc-brone", net("10.89.0.1/24")).unwrap();
    let _two = Bridge::create(&host, "isoc-brtw", net("10.89.1.1/24")).unwrap();
    let a = Netns::new_anonymous().unwrap();
    let b = Netns::new_anonymous().unwrap();
    let mut att_a = attachment("isoc-brone", "10.89.0.2/24");
    att_a.gateway = None;
    let mut att_b = attachment("isoc-brtw", "10.89.1.2/24");
    att_b.gateway = None;
    let _va = attach_netns(&host, &a, &att_a, "a").unwrap();
    let _vb = attach_netns(&host, &b, &att_b, "b").unwrap();
    let rtt = ping(&a, Ipv4Addr::new(10, 89, 1, 2), Duration::from_millis(500));
    let tcp = connect_echo(
        &a,
        "10.89.1.2:7000".parse().unwrap(),
        Duration::from_millis(500),
    );
    eprintln!("control: unconnected bridges: ping {rtt:?}, tcp {tcp:?}");
    assert!(rtt.is_none());
    assert!(tcp.is_err());
}

fn nat_testbed(
    bridge_name: &str,
    uplink: &str,
) -> (Netns, Bridge, OutsideWorld, Netns, VethAttachment) {
    let host = Netns::new_anonymous().unwrap();
    let bridge = Bridge::create(&host, bridge_name, net("10.89.0.1/24")).unwrap();
    let plan = OutsidePlan {
        uplink_name: uplink.into(),
        ..OutsidePlan::default()
    };
    plan.validate(&[net(SUBNET)]).unwrap();
    let world = OutsideWorld::create(&host, &plan).unwrap();
    let container = Netns::new_anonymous().unwrap();
    let mut att = attachment(bridge_name, "10.89.0.2/24");
    att.publish = vec![PortForward {
        host_port: 8080,
        container_port: 80,
    }];
    let veth = attach_netns(&host, &container, &att, "web").unwrap();
    (host, bridge, world, container, veth)
}

#[test]
fn nat_masquerades_to_the_outside_world() {
    let (host, bridge, world, container, veth) = nat_testbed("isoc-brnat", "isoc-upnat");
    let nat = Nat::enable(&host, net(SUBNET), "isoc-upnat").unwrap();
    let server = serve_once(
        world.outside(),
        "203.0.113.1:9000".parse().unwrap(),
        Duration::from_secs(5),
    );
    let tcp = connect_echo(
        &container,
        "203.0.113.1:9000".parse().unwrap(),
        Duration::from_secs(2),
    );
    let peer = server.recv().unwrap();
    let rtt = ping(
        &container,
        Ipv4Addr::new(203, 0, 113, 1),
        Duration::from_secs(2),
    );
    eprintln!(
        "NAT: container -> 203.0.113.1:9000 {tcp:?}, outside saw peer {peer:?}; ping {rtt:?}"
    );
    tcp.unwrap();
    assert_eq!(
        peer.unwrap().ip(),
        std::net::IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))
    );
    assert!(rtt.is_some());

    veth.detach().unwrap();
    nat.delete().unwrap();
    world.delete().unwrap();
    bridge.delete().unwrap();
    assert_eq!(leftovers(&host), Vec::<String>::new());
}

#[test]
fn control_without_masquerade_the_outside_cannot_answer() {
    let (host, _bridge, world, container, veth) = nat_testbed("isoc-brnon", "isoc-upnon");
    let server = serve_once(
        world.outside(),
        "203.0.113.1:9000".parse().unwrap(),
        Duration::from_secs(3),
    );
    let tcp = connect_echo(
        &container,
        "203.0.113.1:9000".parse().unwrap(),
        Duration::from_secs(1),
    );
    let peer = server.recv().unwrap();
    eprintln!("control, no masquerade: connect {tcp:?}; outside saw peer {peer:?}");
    assert!(tcp.is_err());
    // The outside has no route back to 10.89.0.0/24: no handshake completes.
    assert_eq!(peer, None);
    veth.detach().unwrap();
    // The table made for the published port stays (empty chains) until
    // deleted: cleanup takes it and the links.
    assert_eq!(
        leftovers(&host),
        vec![
            "link isoc-brnon",
            "link isoc-upnon",
            "nft table inet isocheck"
        ]
    );
    cleanup(&host).unwrap();
    assert_eq!(leftovers(&host), Vec::<String>::new());
}

#[test]
fn dnat_forwards_the_published_port_from_outside() {
    let (host, _bridge, world, container, veth) = nat_testbed("isoc-brdn", "isoc-updn");
    assert_eq!(veth.published_rules().len(), 2);
    let server = serve_once(
        &container,
        "10.89.0.2:80".parse().unwrap(),
        Duration::from_secs(5),
    );
    let tcp = connect_echo(
        world.outside(),
        "198.51.100.1:8080".parse().unwrap(),
        Duration::from_secs(2),
    );
    let peer = server.recv().unwrap();
    eprintln!("DNAT: outside -> 198.51.100.1:8080 {tcp:?}; container saw peer {peer:?}");
    tcp.unwrap();
    assert_eq!(
        peer.unwrap().ip(),
        std::net::IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2))
    );

    // Locally originated: the output chain rule serves the stand-in itself.
    let server = serve_once(
        &container,
        "10.89.0.2:80".parse().unwrap(),
        Duration::from_secs(5),
    );
    let local = connect_echo(
        &host,
        "198.51.100.1:8080".parse().unwrap(),
        Duration::from_secs(2),
    );
    let local_peer = server.recv().unwrap();
    eprintln!("DNAT (output chain): stand-in -> 198.51.100.1:8080 {local:?}; container saw peer {local_peer:?}");
    local.unwrap();
    assert!(local_peer.is_some());

    // Detach removes the DNAT rules (the table itself stays until deleted).
    veth.detach().unwrap();
    let again = connect_echo(
        world.outside(),
        "198.51.100.1:8080".parse().unwrap(),
        Duration::from_millis(500),
    );
    eprintln!("DNAT after detach: {again:?}");
    assert!(again.is_err());
    cleanup(&host).unwrap();
    assert_eq!(leftovers(&host), Vec::<String>::new());
}

#[test]
fn control_without_dnat_the_port_is_closed() {
    let host = Netns::new_anonymous().unwrap();
    let _bridge = Bridge::create(&host, "isoc-brnd", net("10.89.0.1/24")).unwrap();
    let world = OutsideWorld::create(
        &host,
        &OutsidePlan {
            uplink_name: "isoc-upnd".into(),
            ..OutsidePlan::default()
        },
    )
    .unwrap();
    let container = Netns::new_anonymous().unwrap();
    let _veth = attach_netns(
        &host,
        &container,
        &attachment("isoc-brnd", "10.89.0.2/24"),
        "nd",
    )
    .unwrap();
    let server = serve_once(
        &container,
        "10.89.0.2:80".parse().unwrap(),
        Duration::from_secs(2),
    );
    let tcp = connect_echo(
        world.outside(),
        "198.51.100.1:8080".parse().unwrap(),
        Duration::from_secs(1),
    );
    eprintln!("control, no DNAT: outside -> 198.51.100.1:8080 {tcp:?}");
    assert!(tcp.is_err());
    assert_eq!(server.recv().unwrap(), None);
}

#[test]
fn cleanup_removes_links_and_table_and_keeps_going() {
    let host = Netns::new_anonymous().unwrap();
    let bridge = Bridge::create(&host, "isoc-brcl", net("10.89.0.1/24")).unwrap();
    let nat = Nat::enable(&host, net(SUBNET), "isoc-upcl").unwrap();
    let world = OutsideWorld::create(
        &host,
        &OutsidePlan {
            uplink_name: "isoc-upcl".into(),
            ..OutsidePlan::default()
        },
    )
    .unwrap();
    let c = Netns::new_anonymous().unwrap();
    let veth = attach_netns(&host, &c, &attachment("isoc-brcl", "10.89.0.2/24"), "cl").unwrap();
    let mut found = leftovers(&host);
    found.sort();
    assert_eq!(
        found,
        vec![
            "link isoc-brcl",
            "link isoc-upcl",
            "link isoc-vcl",
            "nft table inet isocheck"
        ]
    );
    cleanup(&host).unwrap();
    assert_eq!(leftovers(&host), Vec::<String>::new());
    // The handles' own teardown now finds nothing; it must report, not panic.
    assert!(bridge.delete().is_err());
    nat.delete().unwrap(); // delete of a missing table is idempotent by design
    world.delete().unwrap();
    veth.detach().unwrap();
    // Cleanup of a clean namespace succeeds.
    cleanup(&host).unwrap();
}

#[test]
fn attach_refuses_bad_addresses_before_creating_anything() {
    let host = Netns::new_anonymous().unwrap();
    let _bridge = Bridge::create(&host, "isoc-brbad", net("10.89.0.1/24")).unwrap();
    let c = Netns::new_anonymous().unwrap();
    for (address, gateway, field) in [
        ("10.89.0.300/24", "10.89.0.1", "network.bridge.address"),
        ("10.89.0.0/24", "10.89.0.1", "network.bridge.address"),
        ("10.89.0.2/24", "10.90.0.1", "network.bridge.gateway"),
    ] {
        let mut att = attachment("isoc-brbad", address);
        att.gateway = Some(gateway.into());
        let err = attach_netns(&host, &c, &att, "bad")
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{err}");
    }
    assert_eq!(leftovers(&host), vec!["link isoc-brbad"]);
}

/// A bound namespace is found again by its path (the same namespace, not
/// the caller's), and `remove` leaves neither the mount nor the file.
#[test]
fn a_netns_file_names_its_namespace_until_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("isocheck-netns");
    let file = NetnsFile::create(&path).unwrap();
    let by_path = Netns::from_path(&path).unwrap();
    assert_eq!(by_path.id().unwrap(), file.netns().id().unwrap());
    assert_ne!(
        by_path.id().unwrap(),
        Netns::current().unwrap().id().unwrap()
    );
    let mounted = |p: &std::path::Path| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
    };
    assert!(mounted(&path));
    // A second one at the same path is refused, naming the path.
    let e = NetnsFile::create(&path).unwrap_err().to_string();
    assert!(e.contains("isocheck-netns"), "{e}");
    file.remove().unwrap();
    assert!(!mounted(&path));
    assert!(!path.exists());
}

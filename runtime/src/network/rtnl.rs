//! Route netlink, synchronously: one socket per namespace, opened inside it
//! (a netlink socket stays bound to the namespace it was created in). The
//! message builders are plain functions so tests can inspect them without
//! root.

use super::{Netns, NetworkError};
use ipnet::{Ipv4Net, Ipv6Net};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

/// A route netlink socket bound to one namespace.
pub(crate) struct Rtnl {
    socket: Socket,
    sequence: u32,
}

/// One link as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
}

impl Rtnl {
    /// Opens a socket inside `ns` (on a thread switched into it).
    pub fn open_in(ns: &Netns) -> Result<Rtnl, NetworkError> {
        ns.run_in(Rtnl::open_here)?
    }

    fn open_here() -> Result<Rtnl, NetworkError> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|source| NetworkError::NetlinkSocket { source })?;
        socket
            .bind_auto()
            .map_err(|source| NetworkError::NetlinkSocket { source })?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|source| NetworkError::NetlinkSocket { source })?;
        Ok(Rtnl {
            socket,
            sequence: 0,
        })
    }

    /// Sends one request and collects the replies up to the ACK (or, for a
    /// dump, up to DONE). A NACK becomes `NetworkError::Netlink` naming `what`.
    fn execute(
        &mut self,
        what: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetworkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut packet =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(message));
        packet.header.flags = flags;
        packet.header.sequence_number = sequence;
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(|source| NetworkError::NetlinkIo {
                request: what.to_string(),
                source,
            })?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        let mut receive = vec![0u8; 64 * 1024];
        loop {
            let size = self
                .socket
                .recv(&mut &mut receive[..], 0)
                .map_err(|source| NetworkError::NetlinkIo {
                    request: what.to_string(),
                    source,
                })?;
            let mut offset = 0;
            while offset < size {
                let reply: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&receive[offset..size]).map_err(|e| {
                        NetworkError::NetlinkDecode {
                            request: what.to_string(),
                            message: e.to_string(),
                        }
                    })?;
                let length = reply.header.length as usize;
                if length == 0 {
                    break;
                }
                offset += length;
                if reply.header.sequence_number != sequence {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(replies),
                        Some(code) => {
                            return Err(NetworkError::Netlink {
                                request: what.to_string(),
                                source: std::io::Error::from_raw_os_error(-code.get()),
                            })
                        }
                    },
                    NetlinkPayload::Done(_) if dump => return Ok(replies),
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    _ => {}
                }
            }
        }
    }

    fn change(&mut self, what: &str, message: RouteNetlinkMessage) -> Result<(), NetworkError> {
        self.execute(what, message, NLM_F_REQUEST | NLM_F_ACK)
            .map(drop)
    }

    fn create(&mut self, what: &str, message: RouteNetlinkMessage) -> Result<(), NetworkError> {
        self.execute(
            what,
            message,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Every link in the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, NetworkError> {
        let replies = self.execute(
            "dump links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(Link {
                    index: link.header.index,
                    name: link_name(&link)?,
                }),
                _ => None,
            })
            .collect())
    }

    /// The index of link `name`.
    pub fn link_index(&mut self, name: &str) -> Result<u32, NetworkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        let replies = self.execute(
            &format!("get link {name}"),
            RouteNetlinkMessage::GetLink(message),
            NLM_F_REQUEST | NLM_F_ACK,
        );
        let replies = match replies {
            Err(NetworkError::Netlink { source, .. })
                if source.raw_os_error() == Some(nix::errno::Errno::ENODEV as i32) =>
            {
                return Err(NetworkError::LinkNotFound {
                    name: name.to_string(),
                })
            }
            other => other?,
        };
        replies
            .into_iter()
            .find_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })
            .ok_or_else(|| NetworkError::LinkNotFound {
                name: name.to_string(),
            })
    }

    pub fn add_bridge(&mut self, name: &str) -> Result<(), NetworkError> {
        self.create(
            &format!("add bridge {name}"),
            RouteNetlinkMessage::NewLink(bridge_request(name)),
        )
    }

    pub fn add_veth(&mut self, message: LinkMessage, what: &str) -> Result<(), NetworkError> {
        self.create(what, RouteNetlinkMessage::NewLink(message))
    }

    pub fn set_up(&mut self, index: u32, name: &str) -> Result<(), NetworkError> {
        self.change(
            &format!("set {name} up"),
            RouteNetlinkMessage::SetLink(set_up_request(index)),
        )
    }

    pub fn add_address(
        &mut self,
        index: u32,
        name: &str,
        address: Ipv4Net,
    ) -> Result<(), NetworkError> {
        self.create(
            &format!("add address {address} to {name}"),
            RouteNetlinkMessage::NewAddress(address_request(index, address)),
        )
    }

    /// An IPv6 address, without duplicate address detection (IFA_F_NODAD):
    /// our own ULA addresses on links we made, usable at once instead of
    /// after DAD's second or so.
    pub fn add_address6(
        &mut self,
        index: u32,
        name: &str,
        address: Ipv6Net,
    ) -> Result<(), NetworkError> {
        self.create(
            &format!("add address {address} to {name}"),
            RouteNetlinkMessage::NewAddress(address6_request(index, address)),
        )
    }

    pub fn add_route(
        &mut self,
        destination: Ipv4Net,
        gateway: Ipv4Addr,
    ) -> Result<(), NetworkError> {
        self.create(
            &format!("add route {destination} via {gateway}"),
            RouteNetlinkMessage::NewRoute(route_request(destination, gateway)),
        )
    }

    /// The IPv6 default route via `gateway` (on-link on the container's
    /// prefix).
    pub fn add_default_route6(&mut self, gateway: Ipv6Addr) -> Result<(), NetworkError> {
        self.create(
            &format!("add route ::/0 via {gateway}"),
            RouteNetlinkMessage::NewRoute(default_route6_request(gateway)),
        )
    }

    pub fn delete_link(&mut self, index: u32, name: &str) -> Result<(), NetworkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        self.change(
            &format!("delete link {name}"),
            RouteNetlinkMessage::DelLink(message),
        )
    }

    /// Deletes link `name` by name (looked up first).
    pub fn delete_link_named(&mut self, name: &str) -> Result<(), NetworkError> {
        let index = self.link_index(name)?;
        self.delete_link(index, name)
    }
}

pub(crate) fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
}

/// RTM_NEWLINK for a bridge named `name`.
pub(crate) fn bridge_request(name: &str) -> LinkMessage {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_string()));
    message
        .attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Bridge,
        )]));
    message
}

/// RTM_NEWLINK for a veth pair in one request: the host end `host_name`,
/// enslaved to `controller` when given and brought up; the peer `peer_name`
/// created directly in the namespace whose fd is `peer_netns`, so it never
/// exists in the host namespace.
pub(crate) fn veth_request(
    host_name: &str,
    controller: Option<u32>,
    peer_name: &str,
    peer_netns: RawFd,
) -> LinkMessage {
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(peer_name.to_string()));
    peer.attributes.push(LinkAttribute::NetNsFd(peer_netns));

    let mut message = LinkMessage::default();
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message
        .attributes
        .push(LinkAttribute::IfName(host_name.to_string()));
    if let Some(controller) = controller {
        message
            .attributes
            .push(LinkAttribute::Controller(controller));
    }
    message.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    message
}

/// RTM_SETLINK bringing link `index` up.
pub(crate) fn set_up_request(index: u32) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message
}

/// RTM_NEWADDR putting `address` (with its prefix) on link `index`.
pub(crate) fn address_request(index: u32, address: Ipv4Net) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.prefix_len = address.prefix_len();
    message.header.index = index;
    let ip = IpAddr::V4(address.addr());
    message.attributes.push(AddressAttribute::Local(ip));
    message.attributes.push(AddressAttribute::Address(ip));
    if address.prefix_len() < 31 {
        message
            .attributes
            .push(AddressAttribute::Broadcast(address.broadcast()));
    }
    message
}

/// RTM_NEWADDR putting the IPv6 `address` on link `index`, with no
/// duplicate address detection.
pub(crate) fn address6_request(index: u32, address: Ipv6Net) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet6;
    message.header.prefix_len = address.prefix_len();
    message.header.index = index;
    message.header.flags = AddressHeaderFlags::Nodad;
    message
        .attributes
        .push(AddressAttribute::Address(IpAddr::V6(address.addr())));
    message
        .attributes
        .push(AddressAttribute::Flags(AddressFlags::Nodad));
    message
}

/// RTM_NEWROUTE for the IPv6 default route via `gateway` in the main table.
pub(crate) fn default_route6_request(gateway: Ipv6Addr) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet6;
    message.header.destination_prefix_length = 0;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::Static;
    message.header.scope = RouteScope::Universe;
    message.header.kind = RouteType::Unicast;
    message
        .attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet6(gateway)));
    message
}

/// RTM_NEWROUTE to `destination` (0.0.0.0/0 for the default) via `gateway`
/// in the main table.
pub(crate) fn route_request(destination: Ipv4Net, gateway: Ipv4Addr) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.destination_prefix_length = destination.prefix_len();
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::Static;
    message.header.scope = RouteScope::Universe;
    message.header.kind = RouteType::Unicast;
    if destination.prefix_len() > 0 {
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                destination.network(),
            )));
    }
    message
        .attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    message
}

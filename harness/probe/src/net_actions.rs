//! What the probe sees of the network: its links and addresses, ICMP echo,
//! a TCP client and a TCP echo server. Addresses are parsed by std only: the
//! probe never resolves a name.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage,
};
use nix::sys::time::TimeVal;
use serde_json::{json, Value};

use crate::args::{Args, UsageError};
use crate::output::{self, Observation};
use crate::ProbeError;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
const PING_PAYLOAD: &[u8] = b"isocheck-ping-01";
const MAX_PINGS: u16 = 1000;
const MAX_CONNECTIONS: u32 = 10_000;

/// The prefix length of a netmask (the number of one bits).
fn prefix_len(netmask: Option<&SockaddrStorage>) -> u32 {
    let Some(mask) = netmask else { return 0 };
    if let Some(v4) = mask.as_sockaddr_in() {
        return v4.ip().to_bits().count_ones();
    }
    if let Some(v6) = mask.as_sockaddr_in6() {
        return v6.ip().to_bits().count_ones();
    }
    0
}

fn address_text(address: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

pub fn links(args: Args) -> Result<Observation, ProbeError> {
    args.finish()?;
    // getifaddrs yields one entry per (link, address), plus an AF_PACKET one
    // per link; gather them per link in the kernel's order.
    let mut links: Vec<(String, bool, Vec<String>)> = Vec::new();
    for entry in getifaddrs().map_err(|e| ProbeError::internal("getifaddrs", e))? {
        let index = match links
            .iter()
            .position(|(name, ..)| *name == entry.interface_name)
        {
            Some(index) => index,
            None => {
                links.push((entry.interface_name.clone(), false, Vec::new()));
                links.len() - 1
            }
        };
        let link = &mut links[index];
        link.1 |= entry.flags.contains(InterfaceFlags::IFF_UP);
        if let Some(ip) = entry.address.as_ref().and_then(address_text) {
            let prefix = prefix_len(entry.netmask.as_ref());
            link.2.push(format!("{ip}/{prefix}"));
        }
    }
    let links: Vec<Value> = links
        .into_iter()
        .map(|(name, up, addrs)| json!({"name": name, "up": up, "addrs": addrs}))
        .collect();
    Ok(Observation::new().with("links", links))
}

/// The internet checksum (RFC 1071) of an ICMP message.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request to `target`'s family. ICMPv6's checksum covers a
/// pseudo-header only the kernel knows, and the kernel fills it in.
fn echo_request(target: IpAddr, id: u16, seq: u16) -> Vec<u8> {
    let kind = if target.is_ipv6() {
        ICMPV6_ECHO_REQUEST
    } else {
        ICMP_ECHO_REQUEST
    };
    let mut packet = vec![kind, 0, 0, 0];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(PING_PAYLOAD);
    if target.is_ipv4() {
        let checksum = internet_checksum(&packet);
        packet[2..4].copy_from_slice(&checksum.to_be_bytes());
    }
    packet
}

/// Which kind of ICMP socket the probe got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IcmpSocket {
    /// An unprivileged "ping socket": the kernel sets the id and strips the
    /// IP header from replies. Needs ping_group_range to cover our gid.
    Datagram,
    /// A raw socket: needs CAP_NET_RAW; sees every ICMP packet, IP header
    /// included.
    Raw,
}

fn open_icmp_socket(target: IpAddr) -> Result<(OwnedFd, IcmpSocket), Errno> {
    let (family, protocol) = match target {
        IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp),
        IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6),
    };
    let open = |ty| socket::socket(family, ty, SockFlag::SOCK_CLOEXEC, protocol);
    match open(SockType::Datagram) {
        Ok(fd) => Ok((fd, IcmpSocket::Datagram)),
        Err(_) => open(SockType::Raw).map(|fd| (fd, IcmpSocket::Raw)),
    }
}

/// The sequence number of `packet` (as received on a socket of `kind`) if
/// it is an echo reply to our `id`. ICMPv6 sockets, raw ones too, never
/// hand over the IP header.
fn reply_seq(packet: &[u8], kind: IcmpSocket, v6: bool, id: u16) -> Option<u16> {
    let icmp = match kind {
        IcmpSocket::Raw if !v6 => {
            let header_len = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
            packet.get(header_len..).unwrap_or_default()
        }
        _ => packet,
    };
    let reply = if v6 {
        ICMPV6_ECHO_REPLY
    } else {
        ICMP_ECHO_REPLY
    };
    if icmp.len() < 8 || icmp[0] != reply {
        return None;
    }
    let reply_id = u16::from_be_bytes([icmp[4], icmp[5]]);
    // A ping socket rewrites the id to its own port: only the sequence is ours.
    (kind == IcmpSocket::Datagram || reply_id == id).then(|| u16::from_be_bytes([icmp[6], icmp[7]]))
}

#[cfg(test)]
fn is_our_reply(packet: &[u8], kind: IcmpSocket, v6: bool, id: u16, seq: u16) -> bool {
    reply_seq(packet, kind, v6, id) == Some(seq)
}

/// How long the probe waits for an echo's reply before it sends the next
/// one; the earlier echo keeps its whole timeout, so the echoes overlap
/// and an unanswered ping costs one timeout, not one per echo.
const PING_INTERVAL: Duration = Duration::from_millis(100);

/// The echoes in flight: when each was sent, and its round trip once
/// answered within its timeout.
/// Slot `seq - 1` is echo `seq`'s (a refused send leaves it unsent).
struct Echoes {
    sent_at: Vec<Option<Instant>>,
    rtt: Vec<Option<Duration>>,
    timeout: Duration,
}

impl Echoes {
    fn outstanding(&self) -> bool {
        self.sent_at
            .iter()
            .zip(&self.rtt)
            .any(|(sent, rtt)| sent.is_some() && rtt.is_none())
    }

    /// Receives replies until `until`, or until echo `wait_for` (or, with
    /// `None`, every echo sent) is answered; a reply counts only within its
    /// echo's own timeout.
    fn collect(
        &mut self,
        fd: &OwnedFd,
        kind: IcmpSocket,
        target: IpAddr,
        id: u16,
        until: Instant,
        wait_for: Option<usize>,
    ) -> Result<(), Errno> {
        let mut buf = [0u8; 1500];
        loop {
            let done = match wait_for {
                Some(i) => self.rtt[i].is_some(),
                None => !self.outstanding(),
            };
            let left = until.saturating_duration_since(Instant::now());
            if done || left.is_zero() {
                return Ok(());
            }
            // A zero SO_RCVTIMEO means "forever": never set less than 1 µs.
            let left = TimeVal::new(left.as_secs() as _, left.subsec_micros().max(1) as _);
            socket::setsockopt(fd, sockopt::ReceiveTimeout, &left)?;
            match socket::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buf) {
                Ok((len, from)) => {
                    if from.as_ref().and_then(address_text) != Some(target) {
                        continue;
                    }
                    let Some(seq) = reply_seq(&buf[..len], kind, target.is_ipv6(), id) else {
                        continue;
                    };
                    let i = usize::from(seq).wrapping_sub(1);
                    if let (Some(Some(sent)), Some(None)) = (self.sent_at.get(i), self.rtt.get(i)) {
                        let rtt = sent.elapsed();
                        if rtt <= self.timeout {
                            self.rtt[i] = Some(rtt);
                        }
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(errno) => return Err(errno),
            }
        }
    }
}

pub fn ping(mut args: Args) -> Result<Observation, ProbeError> {
    let target: IpAddr = args.required("addr")?;
    let count: u16 = args.required("count")?;
    if count > MAX_PINGS {
        return Err(UsageError::Invalid {
            key: "count",
            value: count.to_string(),
            why: format!("must be at most {MAX_PINGS}"),
        }
        .into());
    }
    let timeout = args.millis("timeout-ms")?;
    args.finish()?;

    let mut echoes = Echoes {
        sent_at: vec![None; usize::from(count)],
        rtt: vec![None; usize::from(count)],
        timeout,
    };
    let mut first_errno: Option<Errno> = None;
    let mut socket_kind = Value::Null;
    match open_icmp_socket(target) {
        Err(errno) => first_errno = Some(errno),
        Ok((fd, kind)) => {
            socket_kind = match kind {
                IcmpSocket::Datagram => "dgram",
                IcmpSocket::Raw => "raw",
            }
            .into();
            let id = (std::process::id() & 0xffff) as u16;
            let to = SockaddrStorage::from(SocketAddr::new(target, 0));
            let mut outcome = Ok(());
            for seq in 1..=count {
                // A refused send is recorded and the next echo tried (as
                // before); a failing receive ends the ping.
                if let Err(errno) = socket::sendto(
                    fd.as_raw_fd(),
                    &echo_request(target, id, seq),
                    &to,
                    MsgFlags::empty(),
                ) {
                    first_errno.get_or_insert(errno);
                    continue;
                }
                let slot = usize::from(seq) - 1;
                echoes.sent_at[slot] = Some(Instant::now());
                let until = Instant::now() + PING_INTERVAL.min(timeout);
                outcome = echoes.collect(&fd, kind, target, id, until, Some(slot));
                if outcome.is_err() {
                    break;
                }
            }
            // Every echo keeps its whole timeout, counted from its sending.
            if outcome.is_ok() {
                if let Some(last) = echoes.sent_at.iter().flatten().max() {
                    let until = *last + timeout;
                    outcome = echoes.collect(&fd, kind, target, id, until, None);
                }
            }
            if let Err(errno) = outcome {
                first_errno.get_or_insert(errno);
            }
        }
    }
    let rtt_ms: Vec<f64> = echoes
        .rtt
        .iter()
        .flatten()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    Ok(Observation::new()
        .with("sent", echoes.sent_at.iter().flatten().count())
        .with("received", rtt_ms.len())
        .with("rtt_ms", rtt_ms)
        .with("errno", first_errno.map(output::errno_name))
        .with("socket", socket_kind))
}

/// Reads until `expected` bytes arrived, the peer closed, or the read
/// timeout set on `stream` passed.
fn read_echo(stream: &mut TcpStream, expected: usize) -> (Vec<u8>, io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < expected {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (got, Err(e)),
        }
    }
    (got, Ok(()))
}

pub fn tcp_connect(mut args: Args) -> Result<Observation, ProbeError> {
    let addr: SocketAddr = args.required("addr")?;
    let timeout = args.millis("timeout-ms")?;
    let text: String = args
        .optional("send")?
        .unwrap_or_else(|| "isocheck".to_owned());
    args.finish()?;
    // A zero timeout is refused by std; treat it as the shortest one.
    let timeout = timeout.max(Duration::from_millis(1));
    let mut observation = Observation::new();
    let started = Instant::now();
    let connected = TcpStream::connect_timeout(&addr, timeout);
    // How long the handshake (or its failure) took: the evidence that a
    // timeout is far above what a reachable peer needs.
    observation = observation.with("connect_ms", started.elapsed().as_secs_f64() * 1e3);
    let exchange = connected.map(|mut stream| {
        let local = stream.local_addr().ok().map(|a| a.to_string());
        let talked = stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .and_then(|()| stream.write_all(text.as_bytes()));
        let (echoed, read) = match talked {
            Ok(()) => read_echo(&mut stream, text.len()),
            Err(e) => (Vec::new(), Err(e)),
        };
        (local, String::from_utf8_lossy(&echoed).into_owned(), read)
    });
    observation = match exchange {
        Ok((local, echoed, read)) => observation
            .with("connected", true)
            .io_errno("errno", &read)
            .with("local_addr", local)
            .with("echoed", echoed),
        Err(e) => observation
            .with("connected", false)
            .with("errno", output::errno_name(output::io_errno(&e)))
            .with("local_addr", Value::Null)
            .with("echoed", Value::Null),
    };
    Ok(observation)
}

/// Serves one accepted connection: read once, echo it back, close.
fn echo_once(mut stream: TcpStream, deadline: Instant) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))?;
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf)?;
    stream.write_all(&buf[..n])
}

/// What ended a wait for a connection.
#[derive(Debug, PartialEq, Eq)]
enum Woken {
    /// A connection to accept.
    Connection,
    /// The harness closed stdin: no client is coming any more.
    StdinClosed,
    /// Nothing yet (a signal, or poll's own timeout).
    Nothing,
}

/// Waits until `listener` has a connection to accept, stdin reaches EOF
/// (when `watch_stdin`), or `deadline` passes.
fn wait_readable(
    listener: &TcpListener,
    watch_stdin: bool,
    deadline: Instant,
) -> Result<Woken, Errno> {
    let left = deadline.saturating_duration_since(Instant::now());
    let millis = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
    let stdin = io::stdin();
    let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    if watch_stdin {
        fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
    }
    match poll(&mut fds, PollTimeout::from(millis)) {
        Ok(0) | Err(Errno::EINTR) => Ok(Woken::Nothing),
        Ok(_) if fds[0].any().unwrap_or(false) => Ok(Woken::Connection),
        // stdin readable or hung up: the harness only ever closes it.
        Ok(_) => Ok(Woken::StdinClosed),
        Err(errno) => Err(errno),
    }
}

pub fn tcp_serve(mut args: Args) -> Result<Observation, ProbeError> {
    let port: u16 = args.required("port")?;
    let bind: IpAddr = args
        .optional("bind")?
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let count: u32 = args.required("count")?;
    if count > MAX_CONNECTIONS {
        return Err(UsageError::Invalid {
            key: "count",
            value: count.to_string(),
            why: format!("must be at most {MAX_CONNECTIONS}"),
        }
        .into());
    }
    let timeout = args.millis("timeout-ms")?;
    // `--until stdin-eof`: also stop, before `count`, once the harness
    // closes stdin (its clients are done), instead of waiting out the
    // timeout for a client that cannot come.
    let watch_stdin = match args.optional::<String>("until")?.as_deref() {
        None => false,
        Some("stdin-eof") => true,
        Some(other) => {
            return Err(UsageError::Invalid {
                key: "until",
                value: other.to_owned(),
                why: "must be stdin-eof".into(),
            }
            .into())
        }
    };
    args.finish()?;

    let listener = match TcpListener::bind(SocketAddr::new(bind, port)) {
        Ok(listener) => listener,
        // No ready line: the harness reads this observation instead.
        Err(e) => {
            return Ok(Observation::new()
                .with("accepted", 0)
                .with("peers", Vec::<String>::new())
                .with("errno", output::errno_name(output::io_errno(&e))))
        }
    };
    output::print_ready().map_err(|e| ProbeError::internal("print ready", e))?;
    let deadline = Instant::now() + timeout;
    let mut peers: Vec<String> = Vec::new();
    let mut first_errno: Option<Errno> = None;
    let mut stopped_by_stdin = false;
    listener
        .set_nonblocking(true)
        .map_err(|e| ProbeError::internal("make the listener non-blocking", e))?;
    while (peers.len() as u32) < count {
        if Instant::now() >= deadline {
            first_errno.get_or_insert(Errno::ETIMEDOUT);
            break;
        }
        match wait_readable(&listener, watch_stdin, deadline) {
            Ok(Woken::Connection) => {}
            Ok(Woken::Nothing) => continue,
            Ok(Woken::StdinClosed) => {
                stopped_by_stdin = true;
                break;
            }
            Err(errno) => {
                first_errno.get_or_insert(errno);
                break;
            }
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                peers.push(peer.to_string());
                if let Err(e) = echo_once(stream, deadline) {
                    first_errno.get_or_insert(output::io_errno(&e));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                first_errno.get_or_insert(output::io_errno(&e));
            }
        }
    }
    Ok(Observation::new()
        .with("accepted", peers.len())
        .with("peers", peers)
        .with("errno", first_errno.map(output::errno_name))
        .with("stopped_by_stdin", stopped_by_stdin))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const V6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);

    #[test]
    fn checksum_of_an_echo_request_verifies() {
        let packet = echo_request(V4, 0x1234, 7);
        // A packet carrying its own checksum sums to zero.
        assert_eq!(internet_checksum(&packet), 0);
        assert_eq!(packet[0], ICMP_ECHO_REQUEST);
        // ICMPv6: the kernel fills the checksum in.
        let packet = echo_request(V6, 0x1234, 7);
        assert_eq!(packet[0], ICMPV6_ECHO_REQUEST);
        assert_eq!(&packet[2..4], &[0, 0]);
    }

    #[test]
    fn matches_replies_by_id_and_seq() {
        let mut reply = echo_request(V4, 9, 3);
        reply[0] = ICMP_ECHO_REPLY;
        assert!(is_our_reply(&reply, IcmpSocket::Datagram, false, 1, 3));
        assert!(!is_our_reply(&reply, IcmpSocket::Datagram, false, 1, 4));
        let mut raw = vec![0x45u8];
        raw.resize(20, 0);
        raw.extend_from_slice(&reply);
        assert!(is_our_reply(&raw, IcmpSocket::Raw, false, 9, 3));
        assert!(!is_our_reply(&raw, IcmpSocket::Raw, false, 8, 3));
        // Our own request, seen on a raw socket over loopback, is no reply.
        let request = echo_request(V4, 9, 3);
        assert!(!is_our_reply(&request, IcmpSocket::Datagram, false, 9, 3));
    }

    #[test]
    fn matches_icmpv6_replies_without_an_ip_header_on_raw_sockets() {
        let mut reply = echo_request(V6, 9, 3);
        reply[0] = ICMPV6_ECHO_REPLY;
        assert!(is_our_reply(&reply, IcmpSocket::Raw, true, 9, 3));
        assert!(!is_our_reply(&reply, IcmpSocket::Raw, true, 8, 3));
        assert!(is_our_reply(&reply, IcmpSocket::Datagram, true, 1, 3));
        // A v4 reply type is not a v6 reply, nor the request itself.
        assert!(!is_our_reply(
            &echo_request(V6, 9, 3),
            IcmpSocket::Raw,
            true,
            9,
            3
        ));
        let mut v4_reply = echo_request(V4, 9, 3);
        v4_reply[0] = ICMP_ECHO_REPLY;
        assert!(!is_our_reply(&v4_reply, IcmpSocket::Raw, true, 9, 3));
    }
}

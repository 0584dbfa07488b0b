//! Zones: nodes in network namespaces of our own, grouped on one bridge per
//! zone, with a delay between zones, partitions and cuts.
//!
//! A [`Network`] gives each zone a /24 on a bridge of ours (the host is
//! `.254` on it) and each node a namespace on its zone's bridge by a veth
//! pair (`.1`, `.2`, … in its zone's /24). Nodes of one zone reach each other
//! over their bridge; nodes of different zones through the host, which
//! routes between the bridges (`net.ipv4.ip_forward` is on while a network
//! lives) and holds every packet it routes from one zone to another for the
//! inter-zone delay, counting the bytes ([`Network::bytes_between_zones`]:
//! what crossed, whatever the nodes report). The upstream registry listens
//! on an address of the host outside every zone ([`Network::upstream_ip`]),
//! optionally behind a shaped link, and stays reachable from every node
//! whatever is cut. A
//! containerd runs in the host namespace and reaches its node's mirror at the
//! node's address. It does not run the nodes: [`Network::peerpull_options`]
//! says how a `peerpull run` joins its namespace.
//!
//! [`Network::partition`] cuts a zone from the other zones (not from the
//! host), [`Network::cut`] one node from another, and [`Network::heal`] undoes
//! both. They drop packets where they arrive (`iptables` in the receiving
//! namespace), so a sender sees silence, as on a real network, not an error.
//!
//! The network is a guard: dropping it (also on an error or a panic) deletes
//! its namespaces, bridges, routing rules and delay line, and puts
//! `ip_forward` back. A run of the same pid that was killed is cleaned up
//! when a network starts.
//!
//! # Implementation notes
//!
//! This kernel has no `netem`, so the delay is ours: the host sends what
//! it routes from a zone bridge to another zone into a TUN device (a policy
//! rule per bridge, `ip rule add iif <bridge> lookup <table>`), and a delay
//! line of two threads reads each packet, holds it for the delay and writes
//! it back; the host then routes it on (it came in from the TUN device, so
//! the rule no longer applies). Attaching a TUN device takes an ioctl, which
//! this workspace's `forbid(unsafe_code)` rules out: a `perl` one-liner does
//! it on a copy of our descriptor, which then is ours. Traffic inside a zone
//! is bridged, so it has the kernel's own latency (tens of µs), not an added
//! one. The upstream's link is an `htb` class on each bridge that matches
//! the upstream's address as the source.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};

use crate::{Error, PeerpullOptions};

/// The most packets the delay line holds; more are dropped, as a full queue does.
const DELAY_QUEUE: usize = 65_536;
/// The most zones a network has.
const MAX_ZONES: usize = 8;
/// The most nodes in a zone.
const MAX_NODES_PER_ZONE: usize = 200;

/// How a [`Network`] is laid out: its zones and their delay.
#[derive(Debug, Clone)]
pub struct Builder {
    zones: Vec<(String, usize)>,
    delay: Duration,
    upstream_rate: Option<u64>,
}

/// Zones of nodes, each node in a namespace of its own; see the module docs.
#[derive(Debug)]
pub struct Network {
    tag: u32,
    table: u32,
    bridges: Vec<String>,
    members: Vec<Member>,
    zones: Vec<String>,
    subnets: Vec<Ipv4Addr>,
    upstream_ip: Ipv4Addr,
    tun: String,
    delay_line: Option<DelayLine>,
    forwarding: Option<Forwarding>,
}

/// One node's place in a [`Network`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its namespace, for `ip netns exec`.
    pub netns: String,
    /// Its zone's name.
    pub zone: String,
    /// Its address, where its services listen.
    pub ip: IpAddr,
}

/// The packets routed between zones, held for the delay.
#[derive(Debug)]
struct DelayLine {
    stop: Arc<AtomicBool>,
    /// IP bytes (headers included) passed from one zone to another.
    routed: Arc<AtomicU64>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    wake: SocketAddr,
}

/// `net.ipv4.ip_forward` on while any network of this process lives.
#[derive(Debug)]
struct Forwarding;

/// Networks alive in this process, and `ip_forward` before the first.
static FORWARDING: Mutex<(usize, Option<String>)> = Mutex::new((0, None));

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

impl Builder {
    /// Adds a zone named `name` with `nodes` nodes (nodes are numbered in
    /// the order zones are added).
    pub fn zone(mut self, name: &str, nodes: usize) -> Self {
        self.zones.push((name.to_owned(), nodes));
        self
    }

    /// The one-way delay of a packet from one zone to another (default 5 ms).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Shapes what the upstream sends into each zone to `rate` bytes per
    /// second (default: not shaped).
    pub fn upstream_rate(mut self, rate: u64) -> Self {
        self.upstream_rate = Some(rate);
        self
    }

    /// Creates the network (root only).
    pub fn create(self) -> Result<Network, Error> {
        Network::create(self)
    }
}

impl Network {
    /// A network with no zones yet: add them with [`Builder::zone`].
    pub fn builder() -> Builder {
        Builder { zones: Vec::new(), delay: Duration::from_millis(5), upstream_rate: None }
    }

    fn create(config: Builder) -> Result<Self, Error> {
        if config.zones.is_empty() || config.zones.len() > MAX_ZONES {
            return Err(invalid(format!("{} zones (1 to {MAX_ZONES})", config.zones.len())));
        }
        if let Some((zone, n)) = config.zones.iter().find(|(_, n)| *n == 0 || *n > MAX_NODES_PER_ZONE) {
            return Err(invalid(format!("zone {zone} with {n} nodes (1 to {MAX_NODES_PER_ZONE})")));
        }
        // Names and addresses of their own for each network of this process
        // (one that was dropped may linger a moment while the kernel frees it).
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = std::process::id();
        let tag = (id % 100_000) * 10 + NEXT.fetch_add(1, Ordering::Relaxed) % 10;
        // 10.a.(b + z).0/24 for zone z; 10.a.(b + 9).1 is the upstream's.
        let (a, b) = (100 + (tag % 50) as u8, ((tag / 50) % 24) as u8 * 10);
        let mut network = Self {
            tag,
            table: 1_000_000 + tag,
            bridges: (0..config.zones.len()).map(|z| format!("ppzb{tag}z{z}")).collect(),
            members: Vec::new(),
            zones: config.zones.iter().map(|(name, _)| name.clone()).collect(),
            subnets: (0..config.zones.len()).map(|z| Ipv4Addr::new(10, a, b + z as u8, 0)).collect(),
            upstream_ip: Ipv4Addr::new(10, a, b + 9, 1),
            tun: format!("ppzt{tag}"),
            delay_line: None,
            forwarding: None,
        };
        for (z, (zone, count)) in config.zones.iter().enumerate() {
            for k in 0..*count {
                let ip = IpAddr::V4(Ipv4Addr::new(10, a, b + z as u8, k as u8 + 1));
                let netns = format!("ppz{tag}n{}", network.members.len());
                network.members.push(Member { netns, zone: zone.clone(), ip });
            }
        }
        // Left over from a run of the same pid that was killed: start clean.
        network.cleanup();
        network.forwarding = Some(Forwarding::enable()?);
        network.build(config.delay, config.upstream_rate)?;
        Ok(network)
    }

    fn build(&mut self, delay: Duration, upstream_rate: Option<u64>) -> Result<(), Error> {
        let table = self.table.to_string();
        for (z, bridge) in self.bridges.iter().enumerate() {
            run("ip", &["link", "add", bridge, "type", "bridge"])?;
            run("ip", &["addr", "add", &format!("{}/24", self.gateway(z)), "dev", bridge])?;
            run("ip", &["link", "set", bridge, "up"])?;
            if let Some(rate) = upstream_rate {
                shape_from(bridge, self.upstream_ip, rate)?;
            }
            run("ip", &["rule", "add", "iif", bridge, "lookup", &table, "pref", "5000"])?;
        }
        // The upstream's address is the host's, outside every zone.
        run("ip", &["addr", "add", &format!("{}/32", self.upstream_ip), "dev", &self.bridges[0]])?;
        for (n, member) in self.members.iter().enumerate() {
            let z = self.zone_index(n);
            let (ns, host_if, ns_if) = (&member.netns, self.host_if(n), format!("ppzv{}n{n}", self.tag));
            run("ip", &["netns", "add", ns])?;
            run("ip", &["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if])?;
            run("ip", &["link", "set", &ns_if, "netns", ns])?;
            run("ip", &["link", "set", &host_if, "master", &self.bridges[z]])?;
            run("ip", &["link", "set", &host_if, "up"])?;
            in_ns(ns, "ip", &["addr", "add", &format!("{}/24", member.ip), "dev", &ns_if])?;
            in_ns(ns, "ip", &["link", "set", &ns_if, "up"])?;
            in_ns(ns, "ip", &["link", "set", "lo", "up"])?;
            in_ns(ns, "ip", &["route", "add", "default", "via", &self.gateway(z).to_string()])?;
        }
        let tun = attach_tun(&self.tun)?;
        run("ip", &["link", "set", &self.tun, "up"])?;
        for subnet in &self.subnets {
            run("ip", &["route", "add", &format!("{subnet}/24"), "dev", &self.tun, "table", &table])?;
        }
        // Wakes the delay line's reader when the network is dropped.
        let wake =
            Ipv4Addr::new(self.upstream_ip.octets()[0], self.upstream_ip.octets()[1], self.upstream_ip.octets()[2], 2);
        run("ip", &["route", "add", &format!("{wake}/32"), "dev", &self.tun])?;
        self.delay_line = Some(DelayLine::start(tun, delay, self.subnets.clone(), SocketAddr::new(wake.into(), 9))?);
        Ok(())
    }

    /// Every node, in order: the first zone's, then the next zone's, ….
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Node `n`.
    pub fn member(&self, n: usize) -> &Member {
        &self.members[n]
    }

    /// The nodes (indices) of `zone`.
    pub fn in_zone(&self, zone: &str) -> Vec<usize> {
        (0..self.members.len()).filter(|&n| self.members[n].zone == zone).collect()
    }

    /// Where the upstream registry listens, e.g. `Upstream::start_on(network.upstream_ip())`:
    /// an address of the host that every node reaches, whatever is cut.
    pub fn upstream_ip(&self) -> IpAddr {
        IpAddr::V4(self.upstream_ip)
    }

    /// Options for node `n`'s `peerpull run`: in its namespace, on its
    /// address, with the usual ports. Its containerd, in the host namespace,
    /// comes from the host's address on the zone's bridge: that address may
    /// use the mirror (`--client-cidr`).
    pub fn peerpull_options(&self, n: usize) -> PeerpullOptions {
        let member = &self.members[n];
        let host = format!("{}/32", self.gateway(self.zone_index(n)));
        let extra = vec!["--client-cidr".to_owned(), host];
        PeerpullOptions { netns: Some(member.netns.clone()), extra, ..PeerpullOptions::on(member.ip) }
    }

    /// The IP bytes (headers included) the host has routed from one zone to
    /// another so far: what crossed between zones, whatever the nodes say.
    pub fn bytes_between_zones(&self) -> u64 {
        self.delay_line.as_ref().map_or(0, |line| line.routed.load(Ordering::Relaxed))
    }

    /// Cuts `zone` from every other zone: nothing from a node of one reaches
    /// a node of the other. Both still reach the host, so the upstream.
    pub fn partition(&self, zone: &str) -> Result<(), Error> {
        let z = self.zones.iter().position(|name| name == zone).ok_or_else(|| invalid(format!("no zone {zone}")))?;
        for (n, member) in self.members.iter().enumerate() {
            let others: Vec<usize> = if self.zone_index(n) == z {
                (0..self.zones.len()).filter(|&other| other != z).collect()
            } else {
                vec![z]
            };
            for other in others {
                let source = format!("{}/24", self.subnets[other]);
                in_ns(&member.netns, "iptables", &["-A", "INPUT", "-s", &source, "-j", "DROP"])?;
            }
        }
        Ok(())
    }

    /// Drops everything node `from` sends to node `to` (where it arrives), so
    /// no TCP connection between the two gets through either way.
    pub fn cut(&self, from: usize, to: usize) -> Result<(), Error> {
        let source = format!("{}/32", self.members[from].ip);
        in_ns(&self.members[to].netns, "iptables", &["-A", "INPUT", "-s", &source, "-j", "DROP"])
    }

    /// Undoes every partition and cut.
    pub fn heal(&self) -> Result<(), Error> {
        for member in &self.members {
            in_ns(&member.netns, "iptables", &["-F", "INPUT"])?;
        }
        Ok(())
    }

    /// The round-trip time from node `from` to node `to`: the fastest of
    /// five TCP connection attempts to a closed port (the refusal comes back
    /// after one round trip). An error if one is not refused within a second,
    /// e.g. across a cut.
    pub fn rtt(&self, from: usize, to: usize) -> Result<Duration, Error> {
        const SCRIPT: &str = r#"
            use Socket; use Errno qw(ECONNREFUSED); use Time::HiRes qw(time alarm);
            $SIG{ALRM} = sub { die "no answer from $ARGV[0]\n" };
            my $best = 1e9;
            for (1..5) {
                socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
                my $t = time;
                alarm 1;
                connect($s, pack_sockaddr_in(9, inet_aton($ARGV[0]))) and die "port 9 of $ARGV[0] is open\n";
                alarm 0;
                $! == ECONNREFUSED or die "connecting to $ARGV[0]: $!\n";
                my $d = time - $t;
                $best = $d if $d < $best;
                close $s;
            }
            printf "%.6f\n", $best;
        "#;
        let to = self.members[to].ip.to_string();
        let output = command_output("ip", &["netns", "exec", &self.members[from].netns, "perl", "-e", SCRIPT, &to])?;
        let seconds: f64 = output.trim().parse().map_err(|_| invalid(format!("perl printed {output:?}")))?;
        Ok(Duration::from_secs_f64(seconds))
    }

    fn zone_index(&self, n: usize) -> usize {
        let zone = &self.members[n].zone;
        self.zones.iter().position(|name| name == zone).unwrap_or(0)
    }

    /// Node `n`'s veth end in the host namespace.
    fn host_if(&self, n: usize) -> String {
        format!("ppzh{}n{n}", self.tag)
    }

    /// The host's address on zone `z`'s bridge.
    fn gateway(&self, z: usize) -> Ipv4Addr {
        let [a, b, c, _] = self.subnets[z].octets();
        Ipv4Addr::new(a, b, c, 254)
    }

    fn cleanup(&mut self) {
        if let Some(line) = self.delay_line.take() {
            line.stop();
        }
        for (n, member) in self.members.iter().enumerate() {
            // Deleting our end deletes the pair, also while the namespace lingers.
            let _ = Command::new("ip").args(["link", "del", &self.host_if(n)]).output();
            let _ = Command::new("ip").args(["netns", "del", &member.netns]).output();
        }
        for bridge in &self.bridges {
            let _ = Command::new("ip").args(["link", "del", bridge]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.tun]).output();
        let table = self.table.to_string();
        for _ in 0..=MAX_ZONES {
            let deleted = Command::new("ip").args(["rule", "del", "lookup", &table]).output();
            if !deleted.is_ok_and(|output| output.status.success()) {
                break;
            }
        }
        let _ = Command::new("ip").args(["route", "flush", "table", &table]).output();
        self.forwarding = None;
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.cleanup();
    }
}

impl DelayLine {
    /// Reads packets from `tun`, holds those for one of `subnets` (/24s) for
    /// `delay`, and writes them back.
    fn start(tun: File, delay: Duration, subnets: Vec<Ipv4Addr>, wake: SocketAddr) -> Result<Self, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let routed = Arc::new(AtomicU64::new(0));
        let counted = routed.clone();
        let mut output = tun.try_clone().map_err(Error::io("duplicating the TUN descriptor"))?;
        let (tx, rx) = mpsc::sync_channel::<(Instant, Vec<u8>)>(DELAY_QUEUE);
        let stopping = stop.clone();
        let mut input = tun;
        let reader = std::thread::Builder::new()
            .name("zones-delay-in".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stopping.load(Ordering::Relaxed) {
                    let Ok(len) = input.read(&mut buf) else { return };
                    let packet = &buf[..len];
                    // IPv4 to one of the zones; anything else (the wake-up) goes nowhere.
                    if len < 20 || packet[0] >> 4 != 4 {
                        continue;
                    }
                    let dst = [packet[16], packet[17], packet[18], 0];
                    if !subnets.iter().any(|s| s.octets() == dst) {
                        continue;
                    }
                    // A full queue drops, as a router's does.
                    if tx.try_send((Instant::now() + delay, packet.to_vec())).is_ok() {
                        counted.fetch_add(len as u64, Ordering::Relaxed);
                    }
                }
            })
            .map_err(Error::io("starting the delay line"))?;
        let writer = std::thread::Builder::new()
            .name("zones-delay-out".into())
            .spawn(move || {
                while let Ok((due, packet)) = rx.recv() {
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let _ = output.write(&packet);
                }
            })
            .map_err(Error::io("starting the delay line"))?;
        Ok(Self { stop, routed, reader: Some(reader), writer: Some(writer), wake })
    }

    /// Stops both threads: the reader on the next packet (we send it one),
    /// the writer once the reader's queue is empty.
    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok();
        for _ in 0..100 {
            if self.reader.as_ref().is_none_or(JoinHandle::is_finished) {
                break;
            }
            if let Some(socket) = &socket {
                let _ = socket.send_to(b"wake", self.wake);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for handle in [self.reader.take(), self.writer.take()].into_iter().flatten() {
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }
}

impl Forwarding {
    fn enable() -> Result<Self, Error> {
        let mut state = FORWARDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.0 == 0 {
            let before = std::fs::read_to_string(IP_FORWARD).map_err(Error::io(format!("reading {IP_FORWARD}")))?;
            std::fs::write(IP_FORWARD, "1\n").map_err(Error::io(format!("writing {IP_FORWARD}")))?;
            state.1 = Some(before);
        }
        state.0 += 1;
        Ok(Self)
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        let mut state = FORWARDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.0 = state.0.saturating_sub(1);
        if state.0 == 0 {
            if let Some(before) = state.1.take() {
                let _ = std::fs::write(IP_FORWARD, before);
            }
        }
    }
}

/// Opens a TUN device named `name` (no packet information) and gives its descriptor.
fn attach_tun(name: &str) -> Result<File, Error> {
    // TUNSETIFF with IFF_TUN | IFF_NO_PI on fd 3, a copy of ours.
    const SCRIPT: &str = r#"
        open(my $tun, "+<&=", 3) or die "fd 3: $!";
        my $ifr = pack("Z16 s x22", $ARGV[0], 0x1001);
        ioctl($tun, 0x400454ca, $ifr) or die "TUNSETIFF $ARGV[0]: $!";
    "#;
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(Error::io("opening /dev/net/tun"))?;
    let copy = tun.try_clone().map_err(Error::io("duplicating the TUN descriptor"))?;
    let mut command = Command::new("perl");
    command.args(["-e", SCRIPT, name]);
    command
        .fd_mappings(vec![FdMapping { parent_fd: OwnedFd::from(copy), child_fd: 3 }])
        .map_err(|e| Error::Io { what: "passing the TUN descriptor".into(), source: std::io::Error::other(e) })?;
    let output = command.output().map_err(Error::io("running perl to attach a TUN device"))?;
    check(&command, &output)?;
    Ok(tun)
}

/// Sends what the host sends from `source` out of `dev` through an `htb`
/// class of `rate` bytes per second; everything else is not shaped.
fn shape_from(dev: &str, source: Ipv4Addr, rate: u64) -> Result<(), Error> {
    // The burst must hold a few full-size (GSO) packets and about 10 ms of traffic.
    let burst = (rate / 100).max(256 * 1024).to_string();
    let rate = format!("{}bit", rate * 8);
    run("tc", &["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1"])?;
    run("tc", &["class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", "10gbit"])?;
    let class = ["class", "add", "dev", dev, "parent", "1:", "classid", "1:2", "htb", "rate", &rate];
    run("tc", &[&class[..], &["burst", &burst, "cburst", &burst]].concat())?;
    // A bridge has no transmit queue: give each class a queue of its own.
    for (class, handle) in [("1:1", "10:"), ("1:2", "20:")] {
        run("tc", &["qdisc", "add", "dev", dev, "parent", class, "handle", handle, "pfifo", "limit", "10000"])?;
    }
    let source = format!("{source}/32");
    let filter = ["filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32"];
    run("tc", &[&filter[..], &["match", "ip", "src", &source, "flowid", "1:2"]].concat())
}

/// Runs `program args…` inside namespace `ns`.
fn in_ns(ns: &str, program: &str, args: &[&str]) -> Result<(), Error> {
    run("ip", &[&["netns", "exec", ns, program][..], args].concat())
}

/// Runs `program args…`; fails with its stderr.
fn run(program: &str, args: &[&str]) -> Result<(), Error> {
    command_output(program, args).map(drop)
}

/// Runs `program args…` and gives its stdout; fails with its stderr.
fn command_output(program: &str, args: &[&str]) -> Result<String, Error> {
    let mut command = Command::new(program);
    command.args(args);
    let output = command.output().map_err(Error::io(format!("running {program}")))?;
    check(&command, &output)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn check(command: &Command, output: &std::process::Output) -> Result<(), Error> {
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Command {
        command: format!("{command:?}"),
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

fn invalid(what: String) -> Error {
    Error::Io { what, source: std::io::ErrorKind::InvalidInput.into() }
}

//! Redis replication with lockcheck in the middle: each replica reaches its master through a
//! relay of lockcheck's, which passes the replica's requests at once and holds the master's
//! stream until the model's replication message that carries it is delivered.
//!
//! Real replication streams by itself: a `SET` on the master is on the replica a millisecond
//! later, so the replication lag the failover counterexamples need (a grant the master had not yet
//! streamed when it crashed, catalog #6) would never happen on its own. The relay makes the lag
//! lockcheck's, as the rest of the network is: when the model's master sends its stream (a
//! replication tick), lockcheck reads the real master's `master_repl_offset`; when the model
//! delivers that message to a replica, the relay lets the real stream through up to that offset,
//! and lockcheck waits (bounded) until the replica reports it has processed it. A stream the
//! model loses is never released (a later one carries it, as the real stream is cumulative).
//!
//! What the relay reads of the stream (Redis replication protocol, disk-based sync): the replies
//! of the handshake (`+PONG`, `+OK`, newline keep-alives) pass; `+FULLRESYNC <id> <offset>` is
//! followed by `$<len>\r\n` and the snapshot, held until a release reaches `<offset>`; every
//! later byte is stream, counted in the master's offset.
//!
//! The relay asks every sync to be a full one (`PSYNC ? -1`), as the model's is. Redis would
//! continue a demoted master that wrote nothing since the failover from its own offset
//! (`+CONTINUE`, PSYNC2), replaying what the new master did since, its `PUBLISH`es among them;
//! the model has no partial resync (README, "open").

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::process::Sandbox;
use super::redis::{RedisNode, resp};
use super::{Answer, RealCfg, RealError};
use crate::protocol::replication::{Heard, Link, ReplMsg, Replicated, Role, heard, takes_full_resync};
use crate::protocol::{NodeId, Wire};

/// How often a relay looks for bytes to pass (its sockets' read timeout).
const POLL: Duration = Duration::from_millis(2);

/// The master's offset up to which one replica's stream is released (`None`: nothing yet).
#[derive(Default)]
struct Gate {
    through: Option<u64>,
    /// Acknowledgements (`REPLCONF ACK <offset>`) to hand the master: the replica's own are held,
    /// as the model's `Ack` is a message of its network.
    acks: Vec<u64>,
    /// Bumped to drop the connections of a master that was restarted (its offsets start again).
    generation: u64,
    /// Bumped as the replica connects anew: its earlier connection, kept for the
    /// acknowledgements it sent, is closed.
    connection: u64,
    /// The master answered the replica's `PSYNC` on the current connection: what it streams from
    /// then on is fixed (a full sync's snapshot is forked as `+FULLRESYNC` is sent). It stays
    /// so while the master's side of the connection is open.
    synced: bool,
}

/// A relay from one master to one replica: the replica is told `REPLICAOF 127.0.0.1 <port>`.
pub struct Relay {
    pub port: u16,
    gate: Arc<Mutex<Gate>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Relay {
    pub fn new(master_port: u16) -> Result<Relay, RealError> {
        let addr = Path::new("127.0.0.1:0");
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| RealError::io(addr, e))?;
        listener.set_nonblocking(true).map_err(|e| RealError::io(addr, e))?;
        let port = listener.local_addr().map_err(|e| RealError::io(addr, e))?.port();
        let (gate, stop) = (Arc::new(Mutex::new(Gate::default())), Arc::new(AtomicBool::new(false)));
        let (g, s) = (gate.clone(), stop.clone());
        let accept = std::thread::spawn(move || accept_loop(listener, master_port, g, s));
        Ok(Relay { port, gate, stop, accept: Some(accept) })
    }

    /// Lets the stream through up to the master's offset `through` (never back).
    pub fn release(&self, through: u64) {
        let mut g = self.gate.lock().expect("not poisoned");
        g.through = Some(g.through.map_or(through, |t| t.max(through)));
    }

    /// Hands the master the replica's acknowledgement of offset `through`.
    pub fn acknowledge(&self, through: u64) {
        self.gate.lock().expect("not poisoned").acks.push(through);
    }

    /// The replica is about to connect anew: what was released on an earlier connection does
    /// not let the new one's snapshot through (found by the conformance test: a restarted
    /// replica took the snapshot its `PSYNC` asked for before the model's answer arrived), and
    /// the earlier connection closes.
    pub fn connecting(&self) {
        let mut g = self.gate.lock().expect("not poisoned");
        g.through = None;
        g.connection += 1;
    }

    /// Whether the master has answered the replica's `PSYNC` on the current connection, and
    /// its side of it is open.
    pub fn synced(&self) -> bool {
        self.gate.lock().expect("not poisoned").synced
    }

    /// The master was restarted: its offsets count from its new start, so nothing is released
    /// and the connections to its old process are dropped (the replica connects again).
    pub fn restart(&self) {
        let mut g = self.gate.lock().expect("not poisoned");
        g.through = None;
        g.generation += 1;
        g.synced = false;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, master_port: u16, gate: Arc<Mutex<Gate>>, stop: Arc<AtomicBool>) {
    let mut pumps: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((replica, _)) => {
                let (gate, stop) = (gate.clone(), stop.clone());
                pumps.push(std::thread::spawn(move || {
                    if let Ok(master) = TcpStream::connect(("127.0.0.1", master_port)) {
                        pump(replica, master, &gate, &stop);
                    }
                }));
            }
            Err(_) => std::thread::sleep(POLL),
        }
        pumps.retain(|p| !p.is_finished());
    }
    pumps.into_iter().for_each(|p| {
        let _ = p.join();
    });
}

/// Where the master's side of one connection is.
#[derive(Debug, PartialEq)]
enum Phase {
    /// Replies of the handshake, a line each.
    Handshake,
    /// After `+FULLRESYNC`: the snapshot's `$<len>` line, to be passed once `start` is released.
    SnapshotHeader {
        start: u64,
    },
    Snapshot {
        start: u64,
        left: usize,
    },
    /// The stream; `at` is the master's offset of the next byte passed, minus one.
    Stream {
        at: u64,
    },
}

/// Passes one replica's connection: its requests at once, the master's bytes as far as the gate
/// allows. Ends when the master's side closes, the relay stops, the master's generation changes
/// or the replica connects anew. A replica that leaves (promoted, moved, crashed) sent its
/// acknowledgements before it closed, and TCP hands them to the master first: the master's side
/// stays open for the ones the model has yet to deliver.
fn pump(mut replica: TcpStream, mut master: TcpStream, gate: &Mutex<Gate>, stop: &AtomicBool) {
    let (generation, connection) = {
        let mut g = gate.lock().expect("not poisoned");
        g.synced = false;
        (g.generation, g.connection)
    };
    for s in [&replica, &master] {
        let _ = s.set_read_timeout(Some(POLL));
        let _ = s.set_nodelay(true);
    }
    let (mut held, mut up, mut phase) = (Vec::new(), Vec::new(), Phase::Handshake);
    let mut buf = [0u8; 16 * 1024];
    let (mut master_open, mut replica_open) = (true, true);
    loop {
        let mut g = gate.lock().expect("not poisoned");
        let (through, current, acks) = (g.through, (g.generation, g.connection), std::mem::take(&mut g.acks));
        drop(g);
        if stop.load(Ordering::Relaxed) || current != (generation, connection) {
            break;
        }
        let acks: Vec<u8> = acks.iter().flat_map(|a| ack_frame(*a)).collect();
        if master.write_all(&acks).is_err() {
            break;
        }
        if replica_open {
            match read_some(&mut replica, &mut buf) {
                Some(0) => replica_open = false,
                Some(n) => up.extend_from_slice(&buf[..n]),
                None => {}
            }
        }
        if master.write_all(&requests(&mut up)).is_err() {
            break;
        }
        if master_open {
            match read_some(&mut master, &mut buf) {
                // A master that died leaves what it sent before: still passed as released.
                Some(0) => master_open = false,
                Some(n) => held.extend_from_slice(&buf[..n]),
                None => {}
            }
        }
        let handshake = phase == Phase::Handshake;
        let n = passable(&held, &mut phase, through);
        if handshake && phase != Phase::Handshake {
            gate.lock().expect("not poisoned").synced = true;
        }
        if replica_open && n > 0 && replica.write_all(&held[..n]).is_err() {
            replica_open = false;
        }
        if replica_open {
            held.drain(..n);
        } else {
            held.clear();
        }
        if !master_open && held.is_empty() {
            break;
        }
    }
    let _ = replica.shutdown(Shutdown::Both);
    let _ = master.shutdown(Shutdown::Both);
    let mut g = gate.lock().expect("not poisoned");
    if (g.generation, g.connection) == (generation, connection) {
        g.synced = false;
    }
}

/// The replica's complete requests in `up`, taken from it, without its acknowledgements, and
/// its `PSYNC` made a request for a full sync.
fn requests(up: &mut Vec<u8>) -> Vec<u8> {
    let mut pass = Vec::new();
    while let Some((frame, used)) = resp(up) {
        let word = |i: usize, w: &str| frame.get(i).is_some_and(|f| f.eq_ignore_ascii_case(w));
        if word(0, "PSYNC") {
            pass.extend_from_slice(FULL_SYNC);
        } else if !(word(0, "REPLCONF") && word(1, "ACK")) {
            pass.extend_from_slice(&up[..used]);
        }
        up.drain(..used);
    }
    pass
}

const FULL_SYNC: &[u8] = b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n";

fn ack_frame(offset: u64) -> Vec<u8> {
    let off = offset.to_string();
    format!("*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n${}\r\n{off}\r\n", off.len()).into_bytes()
}

/// Some bytes, `Some(0)` at the end of the stream, `None` when none came within the poll.
fn read_some(s: &mut TcpStream, buf: &mut [u8]) -> Option<usize> {
    match s.read(buf) {
        Ok(n) => Some(n),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => None,
        Err(_) => Some(0),
    }
}

/// How many of the `held` bytes may pass now, moving `phase` along them.
fn passable(held: &[u8], phase: &mut Phase, through: Option<u64>) -> usize {
    let mut n = 0;
    loop {
        let rest = &held[n..];
        let step = match *phase {
            Phase::Handshake => {
                let Some(end) = rest.iter().position(|&b| b == b'\n') else { return n };
                let line = String::from_utf8_lossy(&rest[..end]);
                if let Some(off) = line.strip_prefix("+FULLRESYNC ").and_then(|l| l.split_whitespace().nth(1)) {
                    *phase = Phase::SnapshotHeader { start: off.trim().parse().unwrap_or(0) };
                }
                end + 1
            }
            // A replica that connected after the stream it is given was sent can only take the
            // snapshot of now: it passes with the first release (and `deliver` says so).
            Phase::SnapshotHeader { start } => {
                if through.is_none() {
                    return n;
                }
                if rest.first() == Some(&b'\n') {
                    1
                } else {
                    let Some(end) = rest.iter().position(|&b| b == b'\n') else { return n };
                    let len = String::from_utf8_lossy(&rest[..end]).trim().trim_start_matches('$').parse().unwrap_or(0);
                    *phase = Phase::Snapshot { start, left: len };
                    end + 1
                }
            }
            Phase::Snapshot { start, left } => {
                let k = left.min(rest.len());
                *phase =
                    if k == left { Phase::Stream { at: start } } else { Phase::Snapshot { start, left: left - k } };
                if k == 0 && left > 0 {
                    return n;
                }
                k
            }
            Phase::Stream { at } => {
                let room = through.map_or(0, |t| t.saturating_sub(at)) as usize;
                let k = room.min(rest.len());
                *phase = Phase::Stream { at: at + k as u64 };
                return n + k;
            }
        };
        n += step;
    }
}

/// What a node's `INFO replication` says: its role, whether its link to a master is up, and the
/// replication offset it has processed.
#[derive(Debug, PartialEq)]
pub struct Info {
    pub master: bool,
    pub link_up: bool,
    pub offset: u64,
    /// Changes to the data since the last snapshot (`rdb_changes_since_last_save`).
    pub changes: u64,
    /// Keys expired since the start (`expired_keys`).
    pub expired: u64,
    /// A master's replicas online: each one's port and the offset it acknowledged.
    pub replicas: Vec<(u16, u64)>,
    /// An AOF rewrite runs or is due: after a full sync, a replica's AOF holds its data only
    /// once the rewrite is done (killed before, it comes back with what it had before the sync,
    /// even with `appendfsync always`: seen on Redis 7.0.15).
    pub rewriting: bool,
    /// A snapshot (`BGSAVE`, as for a full sync) is being written: its end resets `changes`.
    pub saving: bool,
}

impl Info {
    pub fn parse(text: &str) -> Info {
        let field = |name: &str| {
            text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':'))).map(str::trim)
        };
        let master = field("role") == Some("master");
        let offset = if master { field("master_repl_offset") } else { field("slave_repl_offset") };
        let replicas = text.lines().filter(|l| l.starts_with("slave") && l.contains("state=online"));
        let replicas = replicas.filter_map(|l| {
            let value = |name: &str| l.split([':', ',']).find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='));
            Some((value("port")?.trim().parse().ok()?, value("offset")?.trim().parse().ok()?))
        });
        Info {
            master,
            link_up: field("master_link_status") == Some("up"),
            offset: offset.and_then(|o| o.parse().ok()).unwrap_or(0),
            changes: field("rdb_changes_since_last_save").and_then(|c| c.parse().ok()).unwrap_or(0),
            expired: field("expired_keys").and_then(|c| c.parse().ok()).unwrap_or(0),
            replicas: replicas.collect(),
            rewriting: field("aof_rewrite_in_progress") == Some("1") || field("aof_rewrite_scheduled") == Some("1"),
            saving: field("rdb_bgsave_in_progress") == Some("1"),
        }
    }
}

/// Waits (bounded) until `ready` says so, polling.
pub fn wait_until(what: &str, server: &str, ready: impl FnMut() -> Result<bool, RealError>) -> Result<(), RealError> {
    wait_within(what, server, super::process::REPLY_BOUND, ready)
}

/// How long a replica's AOF rewrite after a sync may take.
const REWRITE_BOUND: Duration = Duration::from_secs(30);

fn wait_within(
    what: &str,
    server: &str,
    bound: Duration,
    mut ready: impl FnMut() -> Result<bool, RealError>,
) -> Result<(), RealError> {
    let began = Instant::now();
    while !ready()? {
        if began.elapsed() > bound {
            return Err(RealError::Talk { server: server.into(), why: format!("{what}: not within the bound") });
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// lockcheck as Sentinel (and as the network between the nodes): which node replicates which,
/// through which relay, each node's role and epoch, and the model's replication offsets beside
/// the real ones. It follows the model's rules for roles and links ([`heard`], the promotion on
/// `MasterDown`, the role a restarted node had on disk), because Sentinel is lockcheck's here;
/// what each node holds and streams is the real server's.
pub struct Sentinel {
    relays: BTreeMap<(usize, usize), Relay>,
    /// A master that never answers: where a replica that knows no master yet waits, read-only.
    parking: TcpListener,
    pub role: Vec<(Role, u8)>,
    /// Each node's link to its master as the model has it (synced once its snapshot arrived).
    link: Vec<Link>,
    /// The node each real node replicates (`None`: parked, or a master).
    upstream: Vec<Option<usize>>,
    /// The replication offset as the model counts it (the master's changes).
    pub offset: Vec<u32>,
    /// Each node's real offset, count of changes (`rdb_changes_since_last_save`) and of keys
    /// expired after the last step: a master with no replica since its start streams nothing, so
    /// its offset stands, and a key that expires is no change to the count.
    seen: Vec<(u64, u64, u64)>,
    /// The real offset each replication message of the model carries: (master, epoch, offset).
    /// With it, the lock key the master held then (value and expiry instant): what a replica that
    /// takes it holds, though a replica hides a key its own clock has expired from every read.
    sent: BTreeMap<(usize, u8, u32), (u64, Option<(String, i64)>)>,
    /// The role each node last saved (the model saves with every change and every stream).
    disk: Vec<Option<(Role, u8)>>,
    persistence: bool,
}

impl Sentinel {
    /// Node 0 the master, every other its replica, in sync.
    pub fn start(nodes: &mut [RedisNode], persistence: bool) -> Result<Sentinel, RealError> {
        let addr = Path::new("127.0.0.1:0");
        let parking = TcpListener::bind("127.0.0.1:0").map_err(|e| RealError::io(addr, e))?;
        let n = nodes.len();
        let mut s = Sentinel {
            relays: BTreeMap::new(),
            parking,
            role: (0..n).map(|i| (if i == 0 { Role::Master } else { Role::Replica }, 0)).collect(),
            link: (0..n).map(|i| if i == 0 { Link::None } else { Link::Up(0) }).collect(),
            upstream: vec![None; n],
            offset: vec![0; n],
            seen: vec![(0, 0, 0); n],
            sent: BTreeMap::new(),
            disk: vec![None; n],
            persistence,
        };
        let through = info(&mut nodes[0])?.offset;
        for k in 1..n {
            s.follow(nodes, 0, k)?;
            s.deliver(nodes, 0, k, through)?;
        }
        s.mark(nodes)?;
        nodes.iter_mut().for_each(|n| n.wire.clear());
        Ok(s)
    }

    /// `REPLICAOF` the relay from `master` to node `k`.
    fn follow(&mut self, nodes: &mut [RedisNode], master: usize, k: usize) -> Result<(), RealError> {
        let port = nodes[master].port();
        let relay = match self.relays.entry((master, k)) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(Relay::new(port)?),
        };
        relay.connecting();
        let port = relay.port.to_string();
        nodes[k].cmd(&["REPLICAOF", "127.0.0.1", &port])?;
        self.upstream[k] = Some(master);
        Ok(())
    }

    /// Releases `master`'s stream to node `k` through the real offset `through` and waits until
    /// `k` has processed it; the offset `k` is at then.
    fn deliver(&mut self, nodes: &mut [RedisNode], master: usize, k: usize, through: u64) -> Result<u64, RealError> {
        self.relays.get(&(master, k)).expect("a node is delivered to through its relay").release(through);
        let name = nodes[k].process.name.clone();
        let mut last = None;
        let persistence = self.persistence;
        let waited = wait_until(&format!("replication to offset {through}"), &name, || {
            let i = info(&mut nodes[k])?;
            let done = !i.master && i.link_up && i.offset >= through;
            last = Some(i);
            Ok(done)
        });
        if let (Err(RealError::Talk { server, why }), Some(i)) = (&waited, &last) {
            let link = if i.link_up { "up" } else { "down" };
            let why = format!("{why} (its link to the master is {link}, its offset {})", i.offset);
            return Err(RealError::Talk { server: server.clone(), why });
        }
        waited?;
        if persistence {
            // The model's replica saves what it took: the real one has once its AOF is rewritten,
            // which writes and syncs whole files (seconds, on a disk busy with other work).
            let what = format!("the AOF rewrite after the sync to offset {through}");
            wait_within(&what, &name, REWRITE_BOUND, || Ok(!info(&mut nodes[k])?.rewriting))?;
        }
        let at = last.as_ref().map_or(through, |i| i.offset);
        let shown = if at > through {
            // It connected after the stream was sent and took the snapshot of now, or took a later
            // stream first: the real stream is cumulative, the model's messages are not.
            format!("the replica is at offset {at}, past the {through} this stream was sent at")
        } else {
            format!("the replication stream passes through offset {through} (the replica has processed it)")
        };
        nodes[k].wire.push(shown);
        Ok(at)
    }

    /// After a step on `master`: a change the real master made counts one in the model's
    /// offset, and is saved with the role (as the model's `changed`).
    pub fn noticed(&mut self, nodes: &mut [RedisNode], k: usize) -> Result<(), RealError> {
        if self.role[k].0 == Role::Master && nodes[k].process.running() {
            if wrote(self.seen[k], Self::standing(&mut nodes[k])?) {
                self.changed(k);
            }
        }
        self.mark(nodes)
    }

    /// Remembers where every running node stands (a full sync's snapshot resets a master's count
    /// of changes, in another node's step).
    fn mark(&mut self, nodes: &mut [RedisNode]) -> Result<(), RealError> {
        for (k, n) in nodes.iter_mut().enumerate().filter(|(_, n)| n.process.running()) {
            self.seen[k] = Self::standing(n)?;
        }
        Ok(())
    }

    fn changed(&mut self, k: usize) {
        self.offset[k] += 1;
        self.save(k);
    }

    fn save(&mut self, k: usize) {
        if self.persistence {
            self.disk[k] = Some(self.role[k]);
        }
    }

    /// A replication tick on `master`, whose key the family has just read: the epoch and offset
    /// its stream carries (recorded with the real offset and the key, for its delivery).
    pub fn stream(&mut self, nodes: &mut [RedisNode], master: usize) -> Result<(u8, u32), RealError> {
        let real = info(&mut nodes[master])?.offset;
        let (epoch, offset) = (self.role[master].1, self.offset[master]);
        self.sent.insert((master, epoch, offset), (real, nodes[master].key.clone()));
        Ok((epoch, offset))
    }

    /// `PSYNC` of node `k` reaches `master`: if it is a master, `k` connects to it now, so that
    /// the real master forks its snapshot now, holding what the model's `+FULLRESYNC` holds (a
    /// connection made when that answer arrives would take a later write in the snapshot, and
    /// `WAIT` would count the replica for a write the model's replica never got). The relay holds
    /// the snapshot until the answer is delivered. The epoch and offset the answer carries.
    pub fn psync(
        &mut self,
        nodes: &mut [RedisNode],
        (master, k): (usize, usize),
    ) -> Result<Option<(u8, u32)>, RealError> {
        if self.role[master].0 != Role::Master {
            return Ok(None);
        }
        // A node that stopped waiting for this master (promoted, or attached elsewhere) does not
        // connect; the model's master answers all the same, and the node ignores the answer.
        if self.link[k] == Link::Syncing(index(master)) && self.upstream[k] != Some(master) {
            self.follow(nodes, master, k)?;
            let relay = self.relays.get(&(master, k)).expect("follow made it");
            let name = nodes[master].process.name.clone();
            wait_until(&format!("PSYNC of {}", nodes[k].process.name), &name, || Ok(relay.synced()))?;
            wait_until("the snapshot for the sync", &name, || Ok(!info(&mut nodes[master])?.saving))?;
        }
        self.stream(nodes, master).map(Some)
    }

    /// A node's offset, count of changes and of expired keys: how `noticed` tells a change.
    fn standing(node: &mut RedisNode) -> Result<(u64, u64, u64), RealError> {
        let i = info(node)?;
        Ok((i.offset, i.changes, i.expired))
    }

    /// The stream of `from` (epoch, offset) reaches node `k`: as the model's node decides
    /// ([`heard`]), a newer master makes `k` a replica that waits, parked, for its `PSYNC` to be
    /// answered, and `k`'s master's stream passes up to where it was when sent. With `Take`,
    /// whether `k` holds exactly the key sent.
    pub fn replicate(
        &mut self,
        nodes: &mut [RedisNode],
        (from, k): (usize, usize),
        (epoch, offset): (u8, u32),
    ) -> Result<(Heard, bool), RealError> {
        let (role, mine) = self.role[k];
        let heard = heard(role, (mine, self.link[k]), (index(from), index(k)), epoch);
        let mut exact = false;
        match heard {
            Heard::Attach => {
                self.park(nodes, k)?;
                self.role[k] = (Role::Replica, epoch);
                self.link[k] = Link::Syncing(index(from));
                self.save(k);
            }
            Heard::Take => exact = self.take(nodes, (from, k), offset)?,
            Heard::Ignored | Heard::Resync => {}
        }
        Ok((heard, exact))
    }

    /// The answer to `k`'s `PSYNC` from `from` arrives: whether `k` took it (as the model's
    /// `on_full_resync`), and whether it holds exactly the key sent.
    pub fn full_resync(
        &mut self,
        nodes: &mut [RedisNode],
        (from, k): (usize, usize),
        (epoch, offset): (u8, u32),
    ) -> Result<Option<bool>, RealError> {
        let (role, mine) = self.role[k];
        if !takes_full_resync((role, mine, self.link[k]), index(from), epoch) {
            return Ok(None);
        }
        self.take(nodes, (from, k), offset).map(Some)
    }

    /// `k` takes `from`'s stream up to the model's `offset`: the real stream passes up to where
    /// it was when sent. Whether `k` holds exactly the key sent (else it is past that offset, or
    /// got nothing, and its key must be read).
    fn take(&mut self, nodes: &mut [RedisNode], (from, k): (usize, usize), offset: u32) -> Result<bool, RealError> {
        self.offset[k] = offset;
        self.link[k] = Link::Up(index(from));
        self.save(k);
        let epoch = self.role[k].1;
        let Some((through, key)) = self.sent.get(&(from, epoch, offset)).cloned() else {
            nodes[k].wire.push("the stream was sent by a process since restarted: none of it arrives".into());
            return Ok(false);
        };
        let exact = self.deliver(nodes, from, k, through)? == through;
        if exact {
            nodes[k].key = key;
        }
        Ok(exact)
    }

    /// Node `k` becomes a replica of nobody yet (`REPLICAOF` a master that never answers): it
    /// refuses writes and keeps its keys until its `PSYNC` is answered.
    fn park(&mut self, nodes: &mut [RedisNode], k: usize) -> Result<(), RealError> {
        let port = self.parking_port()?.to_string();
        nodes[k].cmd(&["REPLICAOF", "127.0.0.1", &port])?;
        self.upstream[k] = None;
        Ok(())
    }

    fn parking_port(&self) -> Result<u16, RealError> {
        Ok(self.parking.local_addr().map_err(|e| RealError::io(Path::new("parking"), e))?.port())
    }

    /// Replica `k`'s acknowledgement of `master`'s offset `offset` (as the model counts it)
    /// reaches the master: handed to it on the replica's connection while the master's side of
    /// it is open (the replica may have left it since: what it sent before arrives first), and
    /// waited for until the master counts it.
    pub fn ack(&mut self, nodes: &mut [RedisNode], (master, k): (usize, usize), offset: u32) -> Result<(), RealError> {
        let epoch = self.role[master].1;
        let (Some(&(through, _)), Some(relay)) =
            (self.sent.get(&(master, epoch, offset)), self.relays.get(&(master, k)))
        else {
            return Ok(());
        };
        if !relay.synced() {
            return Ok(());
        }
        // The replica's link is up a moment before its master lists it online.
        let (port, name) = (nodes[k].port(), nodes[master].process.name.clone());
        wait_until(&format!("{} online", nodes[k].process.name), &name, || {
            Ok(info(&mut nodes[master])?.replicas.iter().any(|&(p, _)| p == port))
        })?;
        relay.acknowledge(through);
        wait_until(&format!("acknowledgement of offset {through}"), &name, || {
            Ok(info(&mut nodes[master])?.replicas.iter().any(|&(p, o)| p == port && o >= through))
        })?;
        nodes[master].wire.push(format!("REPLCONF ACK {through} from {}", nodes[k].process.name));
        Ok(())
    }

    /// How many of `master`'s replicas acknowledged its offset `woff`: what `WAIT` counts.
    pub fn acked(&mut self, nodes: &mut [RedisNode], master: usize, woff: u64) -> Result<usize, RealError> {
        Ok(info(&mut nodes[master])?.replicas.iter().filter(|&&(_, o)| o >= woff).count())
    }

    /// Sentinel promotes node `k` (`REPLICAOF NO ONE`); whether it did (a master stays one).
    pub fn promote(&mut self, nodes: &mut [RedisNode], k: usize) -> Result<bool, RealError> {
        if self.role[k].0 != Role::Replica {
            return Ok(false);
        }
        nodes[k].cmd(&["REPLICAOF", "NO", "ONE"])?;
        self.role[k] = (Role::Master, self.role[k].1 + 1);
        self.link[k] = Link::None;
        self.upstream[k] = None;
        self.save(k);
        self.mark(nodes)?;
        Ok(true)
    }

    /// Node `k` is about to start again: its relays to replicas drop the old process's
    /// connections, and it takes the role it had on disk (none: a replica waiting for a master's
    /// stream), as Sentinel's rewritten config starts it. A replica starts replicating nobody
    /// yet (the port to pass as `--replicaof`), so it loads its keys as a replica, which expires
    /// none of them.
    pub fn restarting(&mut self, k: usize, wiped: bool) -> Result<Option<u16>, RealError> {
        self.relays.iter().filter(|((m, _), _)| *m == k).for_each(|(_, r)| r.restart());
        self.sent.retain(|&(m, _, _), _| m != k);
        if wiped {
            self.disk[k] = None;
        }
        self.role[k] = self.disk[k].unwrap_or((Role::Replica, 0));
        self.offset[k] = 0;
        self.link[k] = Link::None;
        self.upstream[k] = None;
        if self.role[k].0 == Role::Master {
            return Ok(None);
        }
        self.parking_port().map(Some)
    }
}

/// A client blocked in `WAIT` after its write: the reply it gets once enough replicas
/// acknowledged the master's offset `woff`.
struct Waiting<M> {
    master: usize,
    to: NodeId,
    reply: M,
    woff: u64,
}

/// The Redis nodes behind a family's servers (node 0 first, then the replicas) with lockcheck as
/// their Sentinel: what the `redis` and `redisson` counterparts share of replication. The family
/// runs its own commands on `nodes`; this answers for the stream, the acknowledgements, `WAIT`
/// and the failover, in the family's own messages ([`Replicated::wrap`]).
pub struct Replicas<P: Replicated> {
    pub nodes: Vec<RedisNode>,
    sentinel: Option<Sentinel>,
    /// `WAIT min_acks`: a write answered once that many replicas acknowledged it.
    min_acks: u8,
    waiting: Option<Waiting<P::Msg>>,
    /// The node id of server 0 (clients come first).
    first_server: NodeId,
    persistence: bool,
    /// Whether a node holds the lock key now (read from it, and remembered for its expiry).
    holds: fn(&mut RedisNode) -> Result<bool, RealError>,
}

impl<P: Replicated> Replicas<P> {
    pub fn start(
        p: &P,
        sb: &Sandbox,
        (persistence, holds): (bool, fn(&mut RedisNode) -> Result<bool, RealError>),
        cfg: RealCfg,
    ) -> Result<Replicas<P>, RealError> {
        let replication = p.replication();
        let mut nodes = vec![RedisNode::start(sb, "redis", persistence, cfg)?];
        for i in 1..=replication.map_or(0, |r| r.replicas) {
            nodes.push(RedisNode::start(sb, &format!("replica-{i}"), persistence, cfg)?);
        }
        let sentinel = if nodes.len() > 1 { Some(Sentinel::start(&mut nodes, persistence)?) } else { None };
        let min_acks = replication.map_or(0, |r| r.min_acks);
        let first_server = p.first_server();
        Ok(Replicas { nodes, sentinel, min_acks, waiting: None, first_server, persistence, holds })
    }

    /// Whether node `k` takes writes: it is the master (as lockcheck's Sentinel made it).
    pub fn serves(&self, k: usize) -> bool {
        self.sentinel.as_ref().is_none_or(|s| s.role[k].0 == Role::Master)
    }

    /// The reply to a write on node `k`: now, or after `WAIT min_acks` (the first one of a
    /// client that retries).
    pub fn answer(&mut self, k: usize, to: NodeId, reply: P::Msg, a: &mut Answer<P::Msg>) -> Result<(), RealError> {
        if self.sentinel.is_none() || self.min_acks == 0 {
            a.sends.push((to, Wire::Lock(reply)));
            return Ok(());
        }
        let woff = info(&mut self.nodes[k])?.offset;
        self.nodes[k].wire.push(format!("WAIT {} 0 → blocks until replicas acknowledge offset {woff}", self.min_acks));
        if self.waiting.as_ref().is_none_or(|w| w.to != to) {
            self.waiting = Some(Waiting { master: k, to, reply, woff });
        }
        Ok(())
    }

    /// The lock on node `k` is gone: nobody is told of the write a `WAIT` there waits for.
    pub fn forget(&mut self, k: usize) {
        self.waiting.take_if(|w| w.master == k);
    }

    /// A replication tick of node `k`: if it is the master, what it holds (`snapshot`, read from
    /// the real node) is streamed to every other node.
    pub fn stream(
        &mut self,
        k: usize,
        snapshot: impl FnOnce(&mut RedisNode) -> Result<P::Snapshot, RealError>,
        a: &mut Answer<P::Msg>,
    ) -> Result<(), RealError> {
        let Some(sentinel) = self.sentinel.as_mut().filter(|s| s.role[k].0 == Role::Master) else { return Ok(()) };
        let state = snapshot(&mut self.nodes[k])?;
        let (epoch, offset) = sentinel.stream(&mut self.nodes, k)?;
        for other in (0..self.nodes.len()).filter(|&o| o != k) {
            let msg = P::wrap(ReplMsg::Replicate { epoch, offset, state: state.clone() });
            a.sends.push((self.first_server + other, Wire::Lock(msg)));
        }
        Ok(())
    }

    /// A replication message from node id `from` reaches node `k`; `snapshot` reads what `k`
    /// holds, for its answer to a `PSYNC`. Whether `k` took the state the message carries.
    pub fn on_msg(
        &mut self,
        k: usize,
        (from, msg): (NodeId, &ReplMsg<P::Snapshot>),
        snapshot: impl FnOnce(&mut RedisNode) -> Result<P::Snapshot, RealError>,
        a: &mut Answer<P::Msg>,
    ) -> Result<bool, RealError> {
        let sentinel = self.sentinel.as_mut().expect("only a replicated server hears replication");
        let from_index = from - self.first_server;
        match msg {
            ReplMsg::Replicate { epoch, offset, .. } => {
                match sentinel.replicate(&mut self.nodes, (from_index, k), (*epoch, *offset))? {
                    (Heard::Ignored, _) => {}
                    (Heard::Attach, _) => {
                        self.forget(k);
                        a.sends.push((from, Wire::Lock(P::wrap(ReplMsg::Psync))));
                    }
                    (Heard::Resync, _) => a.sends.push((from, Wire::Lock(P::wrap(ReplMsg::Psync)))),
                    (Heard::Take, exact) => {
                        self.took(k, (from, *offset), exact, a)?;
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            ReplMsg::Psync => {
                if let Some((epoch, offset)) = sentinel.psync(&mut self.nodes, (k, from_index))? {
                    let state = snapshot(&mut self.nodes[k])?;
                    a.sends.push((from, Wire::Lock(P::wrap(ReplMsg::FullResync { epoch, offset, state }))));
                }
                Ok(false)
            }
            ReplMsg::FullResync { epoch, offset, .. } => {
                let Some(exact) = sentinel.full_resync(&mut self.nodes, (from_index, k), (*epoch, *offset))? else {
                    return Ok(false);
                };
                self.took(k, (from, *offset), exact, a)?;
                Ok(true)
            }
            ReplMsg::Ack { offset } => {
                sentinel.ack(&mut self.nodes, (k, from_index), *offset)?;
                let Some(w) = self.waiting.as_ref().filter(|w| w.master == k) else { return Ok(false) };
                let acked = sentinel.acked(&mut self.nodes, k, w.woff)?;
                if acked >= usize::from(self.min_acks) {
                    let w = self.waiting.take().expect("checked above");
                    self.nodes[k].wire.push(format!("WAIT {} 0 → (integer) {acked}", self.min_acks));
                    a.sends.push((w.to, Wire::Lock(w.reply)));
                }
                Ok(false)
            }
            ReplMsg::SwitchMaster | ReplMsg::ReadOnly => Ok(false),
        }
    }

    /// Replica `k` took `from`'s state at the model's `offset`: what it holds is read unless it
    /// is `exact`ly what was sent, and it acknowledges the offset for `WAIT`.
    fn took(
        &mut self,
        k: usize,
        (from, offset): (NodeId, u32),
        exact: bool,
        a: &mut Answer<P::Msg>,
    ) -> Result<(), RealError> {
        if !exact {
            (self.holds)(&mut self.nodes[k])?;
        }
        if self.min_acks > 0 {
            a.sends.push((from, Wire::Lock(P::wrap(ReplMsg::Ack { offset }))));
        }
        Ok(())
    }

    /// Sentinel's failover to node `k`: `REPLICAOF NO ONE`, and `+switch-master` to the
    /// clients. Its key is left untouched: a read would expire it now, where the model's timer
    /// does it.
    pub fn promote(&mut self, k: usize, a: &mut Answer<P::Msg>) -> Result<(), RealError> {
        let Some(sentinel) = self.sentinel.as_mut() else { return Ok(()) };
        if sentinel.promote(&mut self.nodes, k)? {
            a.sends.extend((0..self.first_server).map(|c| (c, Wire::Lock(P::wrap(ReplMsg::SwitchMaster)))));
        }
        Ok(())
    }

    /// The answer of a step on node `k`, with the wire of every node, after Sentinel looked at
    /// its offset.
    pub fn finish(&mut self, k: usize, mut a: Answer<P::Msg>) -> Result<Answer<P::Msg>, RealError> {
        if let Some(s) = self.sentinel.as_mut() {
            s.noticed(&mut self.nodes, k)?;
        }
        a.wire.extend(self.nodes.iter_mut().flat_map(|n| std::mem::take(&mut n.wire)));
        Ok(a)
    }

    pub fn crash(&mut self, k: usize) -> Vec<String> {
        self.forget(k);
        self.nodes[k].crash()
    }

    /// Every node emptied, for a run whose clocks start at `base`: node 0 the master again,
    /// the others its replicas, in sync.
    pub fn fresh(&mut self, base: i64) -> Result<(), RealError> {
        self.sentinel = None;
        self.waiting = None;
        for n in &mut self.nodes {
            n.crash();
            n.process.start_with(&[]);
            n.restart(true, self.persistence, base)?;
            n.base = base;
        }
        if self.nodes.len() > 1 {
            self.sentinel = Some(Sentinel::start(&mut self.nodes, self.persistence)?);
        }
        Ok(())
    }

    /// Node `k` started again, in the role Sentinel gives it.
    pub fn restart(&mut self, k: usize, wiped: bool, now: i64) -> Result<Vec<String>, RealError> {
        let had = self.nodes[k].key.is_some();
        let parked = self.sentinel.as_mut().map(|s| s.restarting(k, wiped)).transpose()?.flatten();
        let replicaof = parked.map(|port| vec!["--replicaof".into(), "127.0.0.1".into(), port.to_string()]);
        self.nodes[k].process.start_with(&replicaof.unwrap_or_default());
        let mut done = self.nodes[k].restart(wiped, self.persistence, now)?;
        if parked.is_some() {
            done.push("as a replica (Sentinel's rewritten config), of no master yet".into());
        }
        if let Some(s) = self.sentinel.as_mut() {
            // A master drops a key whose time passed while it was down as it loads it (or at
            // its first touch, here): before replicas attach, so no change is streamed.
            if had && s.role[k].0 == Role::Master {
                (self.holds)(&mut self.nodes[k])?;
            }
            s.mark(&mut self.nodes)?;
            done.append(&mut self.nodes[k].wire);
        }
        Ok(done)
    }
}

/// Whether a master's standing moved from `seen` to `now` by a change of its keys. A snapshot
/// lowers `rdb_changes_since_last_save` and nothing else, and is no change: the snapshot a
/// replica's full sync forks can end after the `PSYNC` step that asked for it has looked (seen
/// by `confirm sims/redisson_failover.toml --seeds 0..20` beside the other walks of
/// tests/confirm.rs: seed 2 counted the snapshot as a write, and its stream ran one offset ahead
/// of the model's). A write after a snapshot in the same step still moves the offset, since a
/// master that forked a snapshot for a replica keeps a replication backlog.
fn wrote(seen: (u64, u64, u64), now: (u64, u64, u64)) -> bool {
    now.0 > seen.0 || now.1 > seen.1 || now.2 > seen.2
}

fn index(k: usize) -> u8 {
    u8::try_from(k).expect("at most 4 servers")
}

/// `INFO replication persistence stats` of a node, not logged.
fn info(node: &mut RedisNode) -> Result<Info, RealError> {
    let v = node.quiet(&["INFO", "replication", "persistence", "stats"])?;
    let text = match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        _ => String::new(),
    };
    Ok(Info::parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PSYNC: &[u8] = b"*3\r\n$5\r\nPSYNC\r\n$3\r\nabc\r\n$3\r\n101\r\n";

    #[test]
    fn a_full_resync_passes_its_handshake_and_holds_snapshot_and_stream_until_released() {
        let stream = b"+PONG\r\n+OK\r\n+OK\r\n+FULLRESYNC abc 100\r\n\n$3\r\nRDBSELECT";
        let mut phase = Phase::Handshake;
        let n = passable(stream, &mut phase, None);
        assert_eq!(&stream[..n], b"+PONG\r\n+OK\r\n+OK\r\n+FULLRESYNC abc 100\r\n");
        assert_eq!(phase, Phase::SnapshotHeader { start: 100 });
        let rest = &stream[n..];
        let mut late = Phase::SnapshotHeader { start: 100 };
        let k = passable(rest, &mut late, Some(99));
        assert_eq!((&rest[..k], late), (&b"\n$3\r\nRDB"[..], Phase::Stream { at: 100 }), "a snapshot newer than asked");
        let n = passable(rest, &mut phase, Some(102));
        assert_eq!(&rest[..n], b"\n$3\r\nRDBSE");
        assert_eq!(phase, Phase::Stream { at: 102 });
    }

    #[test]
    fn the_replicas_own_acknowledgements_are_held_its_psync_asks_for_a_full_sync_and_the_rest_passes() {
        let mut up = [PSYNC, &ack_frame(120), b"*1\r\n$4\r\nPING\r\n", b"*3\r\n$8\r\nREPL"].concat();
        assert_eq!(requests(&mut up), [FULL_SYNC, b"*1\r\n$4\r\nPING\r\n"].concat());
        assert_eq!(up, b"*3\r\n$8\r\nREPL", "an incomplete request waits for the rest");
    }

    #[test]
    fn a_write_moves_a_masters_standing_and_a_snapshot_that_only_resets_its_count_does_not() {
        assert!(!wrote((546, 8, 0), (546, 8, 0)), "nothing happened");
        assert!(!wrote((546, 8, 0), (546, 0, 0)), "a full sync's snapshot reset the count of changes");
        assert!(wrote((546, 8, 0), (595, 9, 0)), "a renewal: PEXPIREAT streamed and counted");
        assert!(wrote((546, 8, 0), (618, 1, 0)), "a snapshot, then a write in the same step");
        assert!(wrote((0, 0, 0), (0, 1, 0)), "a write on a master that never had a replica streams nothing");
        assert!(wrote((546, 8, 0), (546, 8, 1)), "a key expired at its first touch");
    }

    #[test]
    fn info_reads_role_link_and_offset() {
        let replica = "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nslave_repl_offset:86\r\n\
            aof_rewrite_in_progress:1\r\naof_rewrite_scheduled:0\r\n";
        let info = Info {
            master: false,
            link_up: true,
            offset: 86,
            changes: 0,
            expired: 0,
            replicas: vec![],
            rewriting: true,
            saving: false,
        };
        assert_eq!(Info::parse(replica), info);
        let master = "role:master\r\nconnected_slaves:2\r\nslave0:ip=127.0.0.1,port=7702,state=online,offset=86,lag=0\r\n\
            slave1:ip=127.0.0.1,port=7703,state=wait_bgsave,offset=0,lag=0\r\nmaster_repl_offset:90\r\n\
            rdb_changes_since_last_save:3\r\nexpired_keys:1\r\nrdb_bgsave_in_progress:1\r\n";
        let info = Info {
            master: true,
            link_up: false,
            offset: 90,
            changes: 3,
            expired: 1,
            replicas: vec![(7702, 86)],
            rewriting: false,
            saving: true,
        };
        assert_eq!(Info::parse(master), info);
    }
}

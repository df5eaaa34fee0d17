//! ZooKeeper 3.8 (Debian's `zookeeper`, standalone) behind the `zookeeper` and `curator` families.
//!
//! lockcheck speaks ZooKeeper's wire protocol (jute over TCP) itself rather than through a client
//! library, because a library would play the network on its own: it pings on a timer of its own,
//! reconnects and re-registers watches by itself. Here every packet is one the counterexample sends:
//! `create -e -s` (`EPHEMERAL_SEQUENTIAL`, with Curator's `_c_<guid>-` prefix under protection),
//! `getChildren` and `exists` with a watch, `delete`, a ping, `closeSession`; one session (one TCP
//! connection) per session of the model, opened by its first request, resumed with its id and
//! password after the server restarts, and told `SESSION_EXPIRED` by the server itself.
//!
//! Time: ZooKeeper expires sessions on the JVM's monotonic clock, which no shim may move (its
//! threads wait on it), so a walk here takes real time: tick `t` begins `t × wait_tick_ms` after
//! the walk's first step (or when the step before it ends, if that is later), and a session asks
//! for `session_timeout × wait_tick_ms` plus nine tenths of a tick. A session the model keeps
//! through tick `t` is then alive in the real server however late in that tick a step comes, up to
//! nine tenths of it (steps take milliseconds); one the model expires at tick `t` goes within about
//! a tick of it (ZooKeeper expires sessions in buckets of `tickTime`, a tenth of a tick here), and
//! when the model's session timer fires the counterpart waits (bounded) until the server's own
//! `dump` no longer lists the session, so nothing after it runs early.
//!
//! Sequence numbers: a sequential node's suffix counts the children created under the parent
//! before it (deletions do not count: found by the conformance test, where the model had counted
//! them), from `0000000000`; the model's first node is 1.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::process::{EPOCH_MS, Process, REPLY_BOUND, Sandbox};
use super::queue::{Event, Exchanged, Key, QueueLock, QueueServer};
use super::{RealCfg, RealError};
use crate::protocol::NodeId;
use crate::protocol::zookeeper::{Dialect, Msg, ZooKeeper, child_name, children_shown};

const JAR: &str = "/usr/share/java/zookeeper.jar";
const PARENT: &str = "/lock";

const OP_CREATE: i32 = 1;
const OP_DELETE: i32 = 2;
const OP_EXISTS: i32 = 3;
const OP_GET_CHILDREN: i32 = 8;
const OP_PING: i32 = 11;
const OP_CLOSE: i32 = -11;
const XID_WATCH: i32 = -1;
const XID_PING: i32 = -2;
const NO_NODE: i32 = -101;
const EPHEMERAL_SEQUENTIAL: i32 = 3;
const NODE_DELETED: i32 = 2;
const NODE_CHILDREN_CHANGED: i32 = 4;

/// Jute, ZooKeeper's encoding: big-endian integers, length-prefixed strings and buffers.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn int(mut self, v: i32) -> Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn long(mut self, v: i64) -> Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn bool(mut self, v: bool) -> Self {
        self.0.push(v as u8);
        self
    }
    fn buf(self, b: &[u8]) -> Self {
        let mut o = self.int(b.len() as i32);
        o.0.extend(b);
        o
    }
    fn str(self, s: &str) -> Self {
        self.buf(s.as_bytes())
    }
}

struct In<'a>(&'a [u8]);

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> std::io::Result<&'a [u8]> {
        if self.0.len() < n {
            let why = format!("a reply ends early ({} bytes left, {n} wanted)", self.0.len());
            return Err(std::io::Error::new(ErrorKind::InvalidData, why));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn int(&mut self) -> std::io::Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn long(&mut self) -> std::io::Result<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn buf(&mut self) -> std::io::Result<Vec<u8>> {
        let n = self.int()?;
        if n < 0 {
            return Ok(Vec::new());
        }
        Ok(self.take(n as usize)?.to_vec())
    }
    fn str(&mut self) -> std::io::Result<String> {
        Ok(String::from_utf8_lossy(&self.buf()?).into_owned())
    }
    /// A reply's header: its xid and error code (the zxid is not the model's business).
    fn header(&mut self) -> std::io::Result<(i32, i32)> {
        let xid = self.int()?;
        self.long()?;
        Ok((xid, self.int()?))
    }
    /// A watch notification's body.
    fn notice(&mut self) -> std::io::Result<Notice> {
        let kind = self.int()?;
        self.int()?;
        Ok(Notice { kind, path: self.str()? })
    }
}

/// A watch notification as the server sends it: the event type and the node's path.
#[derive(Debug)]
struct Notice {
    kind: i32,
    path: String,
}

/// One TCP connection to the server, carrying one session.
struct Conn {
    sock: TcpStream,
    id: i64,
    passwd: Vec<u8>,
    xid: i32,
}

/// What opening (or resuming) a session gave.
enum Opened {
    Live(Conn),
    /// The server answered a zero timeout: the session is gone.
    Expired,
}

impl Conn {
    /// Opens a new session (`resume` None) or resumes one after a reconnect.
    fn open(port: u16, timeout_ms: i32, resume: Option<(i64, &[u8])>) -> std::io::Result<Opened> {
        let sock = TcpStream::connect(("127.0.0.1", port))?;
        sock.set_nodelay(true)?;
        sock.set_read_timeout(Some(REPLY_BOUND))?;
        let (id, passwd) = resume.unwrap_or((0, &[0u8; 16]));
        let req = Out::default().int(0).long(0).int(timeout_ms).long(id).buf(passwd).bool(false);
        let mut c = Conn { sock, id, passwd: passwd.to_vec(), xid: 0 };
        c.send(&req.0)?;
        let reply = c.frame()?;
        let mut r = In(&reply);
        r.int()?;
        let (timeout, id, passwd) = (r.int()?, r.long()?, r.buf()?);
        if timeout <= 0 {
            return Ok(Opened::Expired);
        }
        c.id = id;
        c.passwd = passwd;
        Ok(Opened::Live(c))
    }

    fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut framed = (payload.len() as i32).to_be_bytes().to_vec();
        framed.extend(payload);
        self.sock.write_all(&framed)
    }

    fn frame(&mut self) -> std::io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.sock.read_exact(&mut len)?;
        let n = i32::from_be_bytes(len);
        if !(0..=1 << 20).contains(&n) {
            return Err(std::io::Error::new(ErrorKind::InvalidData, format!("a frame of {n} bytes")));
        }
        let mut body = vec![0u8; n as usize];
        self.sock.read_exact(&mut body)?;
        Ok(body)
    }

    /// One request; its reply's error code and body, and the watch events that came before it.
    fn call(&mut self, op: i32, body: Out) -> std::io::Result<(i32, Vec<u8>, Vec<Notice>)> {
        let xid = if op == OP_PING {
            XID_PING
        } else {
            self.xid += 1;
            self.xid
        };
        let mut req = Out::default().int(xid).int(op);
        req.0.extend(body.0);
        self.send(&req.0)?;
        let mut events = Vec::new();
        loop {
            let f = self.frame()?;
            let mut r = In(&f);
            let (got, err) = r.header()?;
            if got == XID_WATCH {
                events.push(r.notice()?);
            } else if got == xid {
                return Ok((err, r.0.to_vec(), events));
            }
        }
    }

    /// The server has closed the connection (it expired the session, or it restarted).
    fn closed(&self) -> bool {
        let mut one = [0u8; 1];
        let _ = self.sock.set_nonblocking(true);
        let seen = self.sock.peek(&mut one);
        let _ = self.sock.set_nonblocking(false);
        match seen {
            Ok(n) => n == 0,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        }
    }

    /// Watch events already sent to this connection, waiting up to `quiet` for the first.
    fn pending(&mut self, quiet: Duration) -> std::io::Result<Vec<Notice>> {
        let mut events = Vec::new();
        loop {
            self.sock.set_read_timeout(Some(quiet))?;
            let mut one = [0u8; 1];
            let ready = self.sock.peek(&mut one);
            self.sock.set_read_timeout(Some(REPLY_BOUND))?;
            match ready {
                Ok(0) => return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "closed by the server")),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(events),
                Err(e) => return Err(e),
            }
            let f = self.frame()?;
            let mut r = In(&f);
            if r.header()?.0 == XID_WATCH {
                events.push(r.notice()?);
            }
        }
    }
}

fn open_acl(o: Out) -> Out {
    o.int(1).int(31).str("world").str("anyone")
}

/// The model's sequence number of a child named `lock-0000000003` (4), and the client its
/// protection prefix `_c_<client>-` names.
fn parse_child(name: &str) -> Option<(u64, Option<NodeId>)> {
    let (prefix, suffix) = name.rsplit_once("lock-")?;
    let seq = suffix.parse::<u64>().ok()? + 1;
    let tag = prefix.strip_prefix("_c_").and_then(|p| p.strip_suffix('-')).and_then(|c| c.parse().ok());
    Some((seq, tag))
}

/// The real session of one model session, the model's `(client, epoch)`.
struct Session {
    conn: Option<Conn>,
    id: i64,
    passwd: Vec<u8>,
    /// The client asked the server to close it.
    closed: bool,
    /// A watch was set on it: events may come.
    watching: bool,
}

/// One real ZooKeeper under the lock queue.
pub(crate) struct ZkServer {
    server: Process,
    /// lockcheck's own session, which lists `/lock` after every input to see who holds the lock.
    admin: Option<Conn>,
    sessions: BTreeMap<Key, Session>,
    pong: bool,
    timeout_ms: i32,
    wire: Vec<String>,
    _sandbox: Sandbox,
}

/// The `zookeeper` and `curator` families on one real ZooKeeper.
pub(crate) type ZkLock = QueueLock<ZkServer>;

fn talk(e: impl std::fmt::Display) -> RealError {
    RealError::Talk { server: "zookeeper".into(), why: e.to_string() }
}

impl ZkServer {
    pub(crate) fn start(p: &ZooKeeper, cfg: RealCfg) -> Result<ZkLock, RealError> {
        assert_eq!(p.dialect, Dialect::ZooKeeper, "only ZooKeeper's dialect is sent here (real::counterpart)");
        if !Path::new(JAR).is_file() {
            return Err(RealError::Missing { binary: JAR.into(), package: "zookeeper".into() });
        }
        let java = super::process::find_binary("java", "default-jre-headless", &[])?;
        let sandbox = Sandbox::new()?;
        let cfg_file = sandbox.root.join("zookeeper.cfg");
        let cfg_arg = cfg_file.display().to_string();
        // A small heap, no JIT tiers beyond the first, no perf-data file left behind by a SIGKILL.
        let args = [
            "-Xmx96m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:-UsePerfData",
            "-cp",
            JAR,
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            cfg_arg.as_str(),
        ];
        let mut server = Process::new(&sandbox, "zookeeper", java, &args, EPOCH_MS)?;
        server.real_clock();
        let tick = cfg.wait_tick_ms;
        let config = format!(
            "tickTime={}\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\nminSessionTimeout=1\n\
             maxSessionTimeout=3600000\nadmin.enableServer=false\n4lw.commands.whitelist=srvr,dump\n\
             maxClientCnxns=0\n",
            (tick / 10).max(1),
            server.data.display(),
            server.port
        );
        std::fs::write(&cfg_file, config).map_err(|e| RealError::io(&cfg_file, e))?;
        let mut zk = ZkServer {
            server,
            admin: None,
            sessions: BTreeMap::new(),
            pong: p.hears_pongs(),
            // Nine tenths of a tick beyond the model's timeout: a step late in a tick still finds
            // alive a session the model keeps through it.
            timeout_ms: (p.timeout() * tick + tick * 9 / 10) as i32,
            wire: Vec::new(),
            _sandbox: sandbox,
        };
        zk.start_serving(true)?;
        let system = zk.four_letters("srvr", REPLY_BOUND).map(|t| version(&t))?;
        Ok(QueueLock::new(zk, system, Duration::from_millis(tick as u64)))
    }

    /// Starts the server and waits until it serves (it accepts connections while it still loads
    /// its log); a fresh one gets its `/lock`.
    fn start_serving(&mut self, fresh: bool) -> Result<(), RealError> {
        self.server.start()?;
        // A connection made while the server still loads its log is never answered: ask `srvr`
        // (with a short timeout) until the server says it serves.
        let began = Instant::now();
        while !self.four_letters("srvr", Duration::from_millis(200)).is_ok_and(|t| t.contains("Mode:")) {
            if began.elapsed() > REPLY_BOUND {
                return Err(RealError::Start { server: "zookeeper".into(), why: "not serving after 5 s".into() });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let Opened::Live(admin) = Conn::open(self.server.port, 3_600_000, None).map_err(talk)? else {
            return Err(talk("refused a new session"));
        };
        self.admin = Some(admin);
        if fresh {
            let body = open_acl(Out::default().str(PARENT).buf(b"")).int(0);
            let (err, ..) = self.admin().call(OP_CREATE, body).map_err(talk)?;
            if err != 0 {
                return Err(talk(format!("create {PARENT}: error {err}")));
            }
        }
        Ok(())
    }

    fn admin(&mut self) -> &mut Conn {
        self.admin.as_mut().expect("the admin session is open while the server runs")
    }

    /// A four-letter command's answer (`srvr`, `dump`).
    fn four_letters(&self, cmd: &str, bound: Duration) -> Result<String, RealError> {
        let mut s = TcpStream::connect(("127.0.0.1", self.server.port)).map_err(talk)?;
        s.set_read_timeout(Some(bound)).map_err(talk)?;
        s.write_all(cmd.as_bytes()).map_err(talk)?;
        let mut text = String::new();
        s.read_to_string(&mut text).map_err(talk)?;
        Ok(text)
    }

    /// The connection of the model's session `(client, epoch)`, opened or resumed as needed;
    /// `None` when the server says the session is gone. A client's newer session closes its older
    /// one first, as the model's server forgets it.
    fn session(&mut self, client: NodeId, epoch: u8) -> Result<Option<&mut Conn>, RealError> {
        let older: Vec<Key> = self.sessions.keys().filter(|(c, e)| *c == client && *e < epoch).copied().collect();
        for key in older {
            let Some(mut old) = self.sessions.remove(&key) else { continue };
            if old.closed {
                continue;
            }
            if let Some(mut conn) = self.resume(&mut old)? {
                conn.call(OP_CLOSE, Out::default()).map_err(talk)?;
                self.wire.push(format!("closeSession 0x{:x} (the client's older session)", old.id));
            }
        }
        if !self.sessions.contains_key(&(client, epoch)) {
            let Opened::Live(conn) = Conn::open(self.server.port, self.timeout_ms, None).map_err(talk)? else {
                return Err(talk("refused a new session"));
            };
            self.wire.push(format!("connect: new session 0x{:x}, timeout {} ms", conn.id, self.timeout_ms));
            let s =
                Session { id: conn.id, passwd: conn.passwd.clone(), conn: Some(conn), closed: false, watching: false };
            self.sessions.insert((client, epoch), s);
        }
        let mut s = self.sessions.remove(&(client, epoch)).expect("made above");
        let conn = if s.closed { None } else { self.resume(&mut s)? };
        if conn.is_none() {
            self.wire.push(format!("session 0x{:x} → SESSION_EXPIRED", s.id));
        }
        s.conn = conn;
        let s = self.sessions.entry((client, epoch)).or_insert(s);
        Ok(s.conn.as_mut())
    }

    /// Session `s`'s connection: its own if the server has not closed it, else a reconnect with
    /// its id and password; `None` if the server expired it.
    fn resume(&self, s: &mut Session) -> Result<Option<Conn>, RealError> {
        if let Some(c) = s.conn.take()
            && !c.closed()
        {
            return Ok(Some(c));
        }
        match Conn::open(self.server.port, self.timeout_ms, Some((s.id, &s.passwd))).map_err(talk)? {
            Opened::Live(c) => Ok(Some(c)),
            Opened::Expired => Ok(None),
        }
    }
}

impl QueueServer for ZkServer {
    fn request(&mut self, from: NodeId, msg: &Msg, node: Option<&str>) -> Result<Option<Exchanged>, RealError> {
        let session = msg.session().expect("a request");
        let path = match (msg, node) {
            (_, Some(name)) => format!("{PARENT}/{name}"),
            (Msg::Exists { seq, .. } | Msg::Delete { seq: Some(seq), .. }, None) => {
                format!("{PARENT}/{}", child_name(*seq, None))
            }
            _ => String::new(),
        };
        let pong = self.pong;
        let Some(conn) = self.session(from, session)? else { return Ok(None) };
        let mut done = exchange(conn, from, msg, &path, pong)?;
        let s = self.sessions.get_mut(&(from, session)).expect("open a moment ago");
        if let Msg::Delete { close: true, .. } = msg {
            s.conn = None;
            s.closed = true;
            done.shown.push(format!("closeSession 0x{:x}", s.id));
        }
        if matches!(msg, Msg::GetChildren { watch: true, .. } | Msg::Exists { .. }) {
            s.watching = true;
        }
        Ok(Some(done))
    }

    fn pending(&mut self) -> Result<Vec<(NodeId, Event)>, RealError> {
        let mut events = Vec::new();
        for (&(client, _), s) in self.sessions.iter_mut().filter(|(_, s)| s.watching) {
            if let Some(conn) = s.conn.as_mut() {
                match conn.pending(Duration::from_millis(10)) {
                    Ok(got) => events.extend(got.into_iter().filter_map(event).map(|e| (client, e))),
                    // Closed by the server: an expired session, whose answer comes with its next use.
                    Err(_) => s.conn = None,
                }
            }
        }
        Ok(events)
    }

    fn list(&mut self) -> Result<Vec<u64>, RealError> {
        let (err, body, _) =
            self.admin().call(OP_GET_CHILDREN, Out::default().str(PARENT).bool(false)).map_err(talk)?;
        Ok(children(err, &body)?.into_iter().map(|(seq, _)| seq).collect())
    }

    fn newest(&self, client: NodeId) -> Option<Key> {
        let (&key, s) = self.sessions.range((client, 0)..=(client, u8::MAX)).next_back()?;
        (!s.closed).then_some(key)
    }

    /// The server's session tracker (`dump`) no longer lists it.
    fn gone(&mut self, key: Key) -> Result<bool, RealError> {
        let hex = self.name(key);
        let dump = self.four_letters("dump", REPLY_BOUND)?;
        let tracked = dump.split("ephemeral nodes dump").next().unwrap_or_default();
        Ok(!tracked.lines().any(|l| l.trim() == hex))
    }

    fn expired(&mut self, key: Key) {
        if let Some(s) = self.sessions.get_mut(&key) {
            s.conn = None;
        }
    }

    fn name(&self, key: Key) -> String {
        self.sessions.get(&key).map(|s| format!("0x{:x}", s.id)).unwrap_or_default()
    }

    fn wire(&mut self) -> Vec<String> {
        std::mem::take(&mut self.wire)
    }

    fn kill(&mut self) -> String {
        self.admin = None;
        for s in self.sessions.values_mut() {
            s.conn = None;
        }
        self.server.kill();
        "kill -9 zookeeper".into()
    }

    fn boot(&mut self, wiped: bool) -> Result<String, RealError> {
        if wiped {
            self.server.wipe()?;
            self.sessions.clear();
        }
        self.start_serving(wiped)?;
        Ok(format!(
            "zookeeper started again from {}",
            if wiped { "an emptied data folder" } else { "its transaction log" }
        ))
    }
}

/// Sends request `msg` of client `from` on its connection (`path`: the node it names) and reads
/// the reply, in the model's words; `pong`: the client hears the answer to a ping.
fn exchange(conn: &mut Conn, from: NodeId, msg: &Msg, path: &str, pong: bool) -> Result<Exchanged, RealError> {
    let mut done = Exchanged::default();
    let mut events = Vec::new();
    match msg {
        Msg::Create { xid, tagged, .. } => {
            let prefix = if *tagged { format!("{PARENT}/_c_{from}-lock-") } else { format!("{PARENT}/lock-") };
            let body = open_acl(Out::default().str(&prefix).buf(b"")).int(EPHEMERAL_SEQUENTIAL);
            let (err, body, before) = conn.call(OP_CREATE, body).map_err(talk)?;
            events = before;
            let made = if err == 0 { In(&body).str().map_err(talk)? } else { String::new() };
            let name = made.rsplit('/').next().unwrap_or_default().to_string();
            let (seq, _) = parse_child(&name).ok_or_else(|| talk(format!("create {prefix}: error {err}")))?;
            done.reply = Some(Msg::Created { xid: *xid, seq });
            done.created = Some((seq, name));
            done.shown.push(format!("create -e -s {prefix} → {made}"));
        }
        Msg::GetChildren { xid, watch, .. } => {
            let (err, body, before) =
                conn.call(OP_GET_CHILDREN, Out::default().str(PARENT).bool(*watch)).map_err(talk)?;
            events = before;
            let kids = children(err, &body)?;
            let w = if *watch { " (watch)" } else { "" };
            done.shown.push(format!("getChildren {PARENT}{w} → {}", children_shown(&kids)));
            done.reply = Some(Msg::Children { xid: *xid, kids });
        }
        Msg::Exists { xid, seq, .. } => {
            let (err, _, before) = conn.call(OP_EXISTS, Out::default().str(path).bool(true)).map_err(talk)?;
            events = before;
            let exists = err == 0;
            done.shown.push(format!("exists {path} (watch) → {}", if exists { "stat" } else { "NoNode" }));
            done.reply = Some(Msg::Stat { xid: *xid, seq: *seq, exists });
        }
        Msg::Delete { seq, close, .. } => {
            if seq.is_some() {
                let (err, _, before) = conn.call(OP_DELETE, Out::default().str(path).int(-1)).map_err(talk)?;
                events.extend(before);
                done.shown.push(format!("delete {path} → {}", if err == NO_NODE { "NoNode" } else { "ok" }));
            }
            if *close {
                let (_, _, before) = conn.call(OP_CLOSE, Out::default()).map_err(talk)?;
                events.extend(before);
            }
        }
        Msg::Ping { .. } => {
            let (_, _, before) = conn.call(OP_PING, Out::default()).map_err(talk)?;
            done.reply = pong.then_some(Msg::Pong);
            events = before;
            done.shown.push("ping → pong".into());
        }
        Msg::Created { .. }
        | Msg::Children { .. }
        | Msg::Stat { .. }
        | Msg::Pong
        | Msg::SessionExpired { .. }
        | Msg::WatchedEvent { .. } => unreachable!("only requests reach the server"),
    }
    done.events = events.into_iter().filter_map(event).collect();
    Ok(done)
}

/// A notification the recipe listens to, in the model's words.
fn event(n: Notice) -> Option<Event> {
    let node = match n.kind {
        NODE_DELETED => node_of(&n.path),
        NODE_CHILDREN_CHANGED => None,
        _ => return None,
    };
    Some(Event { node, shown: format!("watch event {} {}", kind_name(n.kind), n.path) })
}

/// The model's number of the node at `path`.
fn node_of(path: &str) -> Option<u64> {
    path.rsplit('/').next().and_then(parse_child).map(|(seq, _)| seq)
}

fn children(err: i32, body: &[u8]) -> Result<Vec<(u64, Option<NodeId>)>, RealError> {
    if err != 0 {
        return Err(talk(format!("getChildren {PARENT}: error {err}")));
    }
    let mut r = In(body);
    let n = r.int().map_err(talk)?;
    let mut kids = Vec::new();
    for _ in 0..n.max(0) {
        let name = r.str().map_err(talk)?;
        kids.push(parse_child(&name).ok_or_else(|| talk(format!("a child lockcheck did not name: {name}")))?);
    }
    kids.sort();
    Ok(kids)
}

fn kind_name(kind: i32) -> &'static str {
    match kind {
        NODE_DELETED => "NodeDeleted",
        NODE_CHILDREN_CHANGED => "NodeChildrenChanged",
        _ => "(another event)",
    }
}

/// `Zookeeper version: 3.8.0-${mvngit.commit.id}, built on ..` → `ZooKeeper 3.8.0`.
fn version(srvr: &str) -> String {
    let v = srvr
        .lines()
        .find_map(|l| l.strip_prefix("Zookeeper version: "))
        .and_then(|v| v.split(['-', ',']).next())
        .unwrap_or("(unknown version)");
    format!("ZooKeeper {v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ZooKeeper names a sequential child by the parent's child count before it, ten digits from 0;
    /// the model names the nodes it deletes and shows (`child_name`) the way the server does.
    #[test]
    fn a_sequential_name_gives_the_models_number_and_its_protection_owner_and_back() {
        for (name, child) in [("lock-0000000000", (1, None)), ("_c_1-lock-0000000006", (7, Some(1)))] {
            assert_eq!(parse_child(name), Some(child));
            assert_eq!(child_name(child.0, child.1), name);
        }
        assert_eq!(children_shown(&[(1, None), (7, Some(1))]), "[lock-0000000000, _c_1-lock-0000000006]");
        assert_eq!(parse_child("other"), None);
        assert_eq!(version("Zookeeper version: 3.8.0-${mvngit.commit.id}, built on x\n"), "ZooKeeper 3.8.0");
    }
}

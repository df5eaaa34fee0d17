//! etcd 3.4 (Debian's `etcd-server`, one member) behind the `etcd` family.
//!
//! lockcheck speaks etcd's v3 API through the server's own JSON gateway (HTTP/1.1 on the client
//! port) rather than through a client library, for the reason the ZooKeeper counterpart gives: a
//! library keeps leases alive and re-creates watches on its own timers, and here every request is
//! one the counterexample sends. `concurrency.Mutex`'s operations: a lease granted for the
//! session (with an ID lockcheck chooses, so the model's and the real keys have the same names),
//! the transaction `if create_revision(k) == 0 then put k --lease else get k`, a range over the
//! prefix sorted by create revision, a get and a watch from the next revision on the key just
//! below one's own (`waitDeletes`), a delete, keep-alives, lease revoke.
//!
//! Time: etcd's lessor expires leases on Go's monotonic clock (no shim moves it) and looks for
//! expired ones every 500 ms, and a lease's TTL is whole seconds. A tick lasts whole seconds here
//! (`--wait-tick-ms` rounded up; 1 s by default) and a lease asks for one second beyond the model's
//! timeout: a lease the model keeps through tick `t` is alive however late in that tick a step
//! comes, and one the model expires goes within 1.5 s of it (the wait [`super::queue`] does).
//! `--election-timeout 50` makes etcd's shortest TTL 1 s (`3/2 × election ticks × heartbeat`).
//!
//! Revisions: the model's number of a key is its create revision minus one (an empty etcd is at
//! revision 1); like the model's, etcd's revision moves with every put and every delete of a key,
//! a lease's expiry or revoke included.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::process::{EPOCH_MS, Process, REPLY_BOUND, Sandbox};
use super::queue::{Event, Exchanged, Key, QueueLock, QueueServer};
use super::{RealCfg, RealError};
use crate::protocol::NodeId;
use crate::protocol::etcd::{key, lease_id, lease_owner, revision, seq_at};
use crate::protocol::zookeeper::{Dialect, Msg, ZooKeeper};

const PREFIX: &str = "/lock/";

fn talk(e: impl std::fmt::Display) -> RealError {
    RealError::Talk { server: "etcd".into(), why: e.to_string() }
}

/// Standard base64, as the gateway carries keys and values.
fn b64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ABC[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

fn unb64(text: &str) -> Option<Vec<u8>> {
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = text.bytes().take_while(|c| *c != b'=').map(sextet).collect::<Option<_>>()?;
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (*d as u32) << (18 - 6 * i));
        out.extend((0..chunk.len().saturating_sub(1)).map(|i| (n >> (16 - 8 * i)) as u8));
    }
    Some(out)
}

/// An int64 of the gateway's JSON (a string there), absent as zero.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        v => v.as_i64().unwrap_or(0),
    }
}

/// A key's name from the gateway's base64.
fn key_of(kv: &Value) -> String {
    kv["key"].as_str().and_then(unb64).map(|k| String::from_utf8_lossy(&k).into_owned()).unwrap_or_default()
}

/// Splits an HTTP response's head from its body, the body unchunked when it came in chunks.
fn body_of(raw: &[u8]) -> Result<(u16, Vec<u8>), RealError> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| talk("a reply without a body"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = &raw[split + 4..];
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut chunks = Chunks::default();
        chunks.raw.extend_from_slice(body);
        chunks.unchunk();
        return Ok((status, chunks.body));
    }
    Ok((status, body.to_vec()))
}

/// A chunked body as it arrives: `raw` bytes not yet unchunked, `body` the data so far.
#[derive(Default)]
struct Chunks {
    raw: Vec<u8>,
    body: Vec<u8>,
}

impl Chunks {
    /// Moves every complete chunk from `raw` to `body`.
    fn unchunk(&mut self) {
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else { return };
            let size = String::from_utf8_lossy(&self.raw[..eol]);
            let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else { return };
            if n == 0 || self.raw.len() < eol + 2 + n + 2 {
                return;
            }
            self.body.extend_from_slice(&self.raw[eol + 2..eol + 2 + n]);
            self.raw.drain(..eol + 2 + n + 2);
        }
    }

    /// The complete JSON lines of the body so far.
    fn lines(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(end) = self.body.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.body.drain(..=end).collect();
            if let Ok(v) = serde_json::from_slice(&line) {
                out.push(v);
            }
        }
        out
    }
}

fn request_bytes(port: u16, path: &str, body: &str, close: bool) -> Vec<u8> {
    let connection = if close { "close" } else { "keep-alive" };
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One call of the gateway: the HTTP status and the JSON answer.
fn call(port: u16, path: &str, body: &Value) -> Result<(u16, Value), RealError> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(talk)?;
    s.set_read_timeout(Some(REPLY_BOUND)).map_err(talk)?;
    s.write_all(&request_bytes(port, path, &body.to_string(), true)).map_err(talk)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(talk)?;
    let (status, body) = body_of(&raw)?;
    let v = serde_json::from_slice(&body).map_err(|e| talk(format!("{path}: {e}")))?;
    Ok((status, v))
}

/// A watch on one key from a revision on (`waitDeletes`): a request whose answer streams.
struct Watch {
    /// The model's number of the watched key.
    seq: u64,
    sock: TcpStream,
    chunks: Chunks,
    head: bool,
}

impl Watch {
    fn open(port: u16, name: &str, seq: u64, from_rev: i64) -> Result<Watch, RealError> {
        let sock = TcpStream::connect(("127.0.0.1", port)).map_err(talk)?;
        sock.set_nodelay(true).map_err(talk)?;
        let body = json!({"create_request": {"key": b64(name.as_bytes()), "start_revision": from_rev.to_string()}});
        let mut w = Watch { seq, sock, chunks: Chunks::default(), head: false };
        w.sock.write_all(&request_bytes(port, "/v3/watch", &body.to_string(), false)).map_err(talk)?;
        // The watch is in place once etcd says it is created.
        let bound = Instant::now() + REPLY_BOUND;
        loop {
            if w.read(Duration::from_millis(50))?.iter().any(|v| v["result"]["created"].as_bool() == Some(true)) {
                return Ok(w);
            }
            if Instant::now() > bound {
                return Err(talk(format!("watch {name}: not created after 5 s")));
            }
        }
    }

    /// The messages streamed so far, waiting up to `quiet` for more.
    fn read(&mut self, quiet: Duration) -> Result<Vec<Value>, RealError> {
        let mut wait = quiet;
        let mut buf = [0u8; 4096];
        loop {
            self.sock.set_read_timeout(Some(wait)).map_err(talk)?;
            match self.sock.read(&mut buf) {
                Ok(0) => return Err(talk("a watch closed by the server")),
                Ok(n) => self.chunks.raw.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => return Err(talk(e)),
            }
            // More may follow at once; once it stops, the stream is read.
            wait = Duration::from_millis(1);
        }
        if !self.head
            && let Some(end) = self.chunks.raw.windows(4).position(|w| w == b"\r\n\r\n")
        {
            self.chunks.raw.drain(..end + 4);
            self.head = true;
        }
        if self.head {
            self.chunks.unchunk();
        }
        Ok(self.chunks.lines())
    }

    /// Whether the key has been deleted since the watch began.
    fn deleted(&mut self) -> Result<bool, RealError> {
        let msgs = self.read(Duration::from_millis(10))?;
        let events = msgs.iter().filter_map(|v| v["result"]["events"].as_array()).flatten();
        Ok(events.clone().any(|e| e["type"].as_str() == Some("DELETE")))
    }
}

/// The real lease of one model session.
struct Lease {
    id: i64,
    /// Revoked by the client (its unlock, or a newer session of it).
    closed: bool,
}

/// One real etcd under the lock queue.
pub(crate) struct EtcdServer {
    server: Process,
    sessions: BTreeMap<Key, Lease>,
    /// Each client's watches, one per key as the model keeps them.
    watches: BTreeMap<NodeId, Vec<Watch>>,
    /// Watch events read while dropping a client's watches, not yet delivered.
    inbox: Vec<(NodeId, Event)>,
    ttl_s: i64,
    wire: Vec<String>,
    _sandbox: Sandbox,
}

pub(crate) type EtcdLock = QueueLock<EtcdServer>;

impl EtcdServer {
    pub(crate) fn start(p: &ZooKeeper, cfg: RealCfg) -> Result<EtcdLock, RealError> {
        assert_eq!(p.dialect, Dialect::Etcd, "only etcd's dialect is sent here (real::counterpart)");
        let binary = super::process::find_binary("etcd", "etcd-server", &[])?;
        let sandbox = Sandbox::new()?;
        let peer = super::process::free_port()?;
        let peer_url = format!("http://127.0.0.1:{peer}");
        let cluster = format!("lockcheck={peer_url}");
        let args = [
            "--name",
            "lockcheck",
            "--data-dir",
            "{data}",
            "--listen-client-urls",
            "http://127.0.0.1:{port}",
            "--advertise-client-urls",
            "http://127.0.0.1:{port}",
            "--listen-peer-urls",
            peer_url.as_str(),
            "--initial-advertise-peer-urls",
            peer_url.as_str(),
            "--initial-cluster",
            cluster.as_str(),
            "--heartbeat-interval",
            "10",
            "--election-timeout",
            "50",
            "--log-level",
            "error",
        ];
        let mut server = Process::new(&sandbox, "etcd", binary, &args, EPOCH_MS)?;
        server.real_clock();
        let tick_s = (cfg.wait_tick_ms + 999) / 1000;
        let mut etcd = EtcdServer {
            server,
            sessions: BTreeMap::new(),
            watches: BTreeMap::new(),
            inbox: Vec::new(),
            ttl_s: p.timeout() * tick_s + 1,
            wire: Vec::new(),
            _sandbox: sandbox,
        };
        etcd.start_serving()?;
        let mut s = TcpStream::connect(("127.0.0.1", etcd.server.port)).map_err(talk)?;
        s.set_read_timeout(Some(REPLY_BOUND)).map_err(talk)?;
        s.write_all(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").map_err(talk)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(talk)?;
        let v: Value = serde_json::from_slice(&body_of(&raw)?.1).map_err(talk)?;
        let system = format!("etcd {}", v["etcdserver"].as_str().unwrap_or("(unknown version)"));
        Ok(QueueLock::new(etcd, system, Duration::from_secs(tick_s as u64)))
    }

    /// Starts the member and waits until it has elected itself and serves.
    fn start_serving(&mut self) -> Result<(), RealError> {
        self.server.start()?;
        let began = Instant::now();
        while self.call("/v3/kv/range", &json!({"key": b64(b"/"), "limit": "1"})).is_err() {
            if began.elapsed() > REPLY_BOUND {
                return Err(RealError::Start { server: "etcd".into(), why: "not serving after 5 s".into() });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// A gateway call that must succeed.
    fn call(&self, path: &str, body: &Value) -> Result<Value, RealError> {
        match call(self.server.port, path, body)? {
            (200, v) => Ok(v),
            (status, v) => Err(talk(format!("{path}: {status} {}", v["error"].as_str().unwrap_or("")))),
        }
    }

    /// The lease of session `(client, epoch)`, granted on its first request after revoking the
    /// client's older ones (the model's server forgets them); `None` once revoked.
    fn lease(&mut self, client: NodeId, epoch: u8) -> Result<Option<i64>, RealError> {
        let older: Vec<Key> = self.sessions.range((client, 0)..(client, epoch)).map(|(k, _)| *k).collect();
        for k in older {
            let lease = self.sessions.get_mut(&k).expect("listed above");
            if !lease.closed {
                lease.closed = true;
                let id = lease.id;
                self.watches.remove(&client);
                self.revoke(id, "the client's older session")?;
            }
        }
        if self.sessions.range((client, epoch.saturating_add(1))..=(client, u8::MAX)).next().is_some() {
            return Ok(None);
        }
        if !self.sessions.contains_key(&(client, epoch)) {
            let id = lease_id(client, epoch);
            let v = self.call("/v3/lease/grant", &json!({"ID": id.to_string(), "TTL": self.ttl_s.to_string()}))?;
            let (granted, ttl) = (int(&v["ID"]), int(&v["TTL"]));
            if granted != id {
                return Err(talk(format!("lease grant: asked for ID {id:x}, got {granted:x}")));
            }
            self.wire
                .push(format!("lease grant {} (ID {id:x}) → lease {granted:x} granted with TTL({ttl}s)", self.ttl_s));
            self.sessions.insert((client, epoch), Lease { id, closed: false });
        }
        let lease = &self.sessions[&(client, epoch)];
        Ok((!lease.closed).then_some(lease.id))
    }

    fn revoke(&mut self, id: i64, why: &str) -> Result<(), RealError> {
        let (status, _) = call(self.server.port, "/v3/lease/revoke", &json!({"ID": id.to_string()}))?;
        let outcome = if status == 200 { "ok" } else { "lease not found" };
        self.wire.push(format!("lease revoke {id:x} ({why}) → {outcome}"));
        Ok(())
    }

    /// Whether the server still has lease `id` (`lease timetolive`: -1 once it is gone; 0 is a
    /// lease with less than a second left, still alive).
    fn alive(&self, id: i64) -> Result<bool, RealError> {
        Ok(int(&self.call("/v3/lease/timetolive", &json!({"ID": id.to_string()}))?["TTL"]) != -1)
    }

    /// The keys under the prefix by create revision: the model's number and owner of each.
    fn range(&self) -> Result<(Vec<(u64, Option<NodeId>)>, i64), RealError> {
        let body = json!({"key": b64(PREFIX.as_bytes()), "range_end": b64(b"/lock0"),
                          "sort_order": "ASCEND", "sort_target": "CREATE"});
        let v = self.call("/v3/kv/range", &body)?;
        let mut kids = Vec::new();
        for kv in v["kvs"].as_array().into_iter().flatten() {
            let name = key_of(kv);
            let lease = name.strip_prefix(PREFIX).and_then(|l| i64::from_str_radix(l, 16).ok());
            let lease = lease.ok_or_else(|| talk(format!("a key lockcheck did not name: {name}")))?;
            kids.push((seq_at(int(&kv["create_revision"])), Some(lease_owner(lease))));
        }
        Ok((kids, int(&v["header"]["revision"])))
    }

    /// The key `name` if it exists with create revision `seq + 1`; the store's revision.
    fn get(&self, name: &str, seq: u64) -> Result<(bool, i64), RealError> {
        let v = self.call("/v3/kv/range", &json!({"key": b64(name.as_bytes())}))?;
        let there =
            v["kvs"].as_array().into_iter().flatten().any(|kv| int(&kv["create_revision"]) as u64 == revision(seq));
        Ok((there, int(&v["header"]["revision"])))
    }

    /// `Create`: the mutex's transaction; `None` when the lease is gone.
    fn put(&mut self, lease: i64, xid: u8) -> Result<Option<Exchanged>, RealError> {
        let k = key(lease);
        let kb = b64(k.as_bytes());
        let body = json!({
            "compare": [{"key": kb, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": kb, "value": "", "lease": lease.to_string()}}],
            "failure": [{"request_range": {"key": kb}}],
        });
        let (status, v) = call(self.server.port, "/v3/kv/txn", &body)?;
        let shown = format!("txn: if create_revision({k}) == 0 then put {k} \"\" --lease={lease:x} else get {k}");
        if status != 200 {
            self.wire.push(format!("{shown} → {}", v["error"].as_str().unwrap_or("an error")));
            return Ok(None);
        }
        let mut done = Exchanged::default();
        let rev = if v["succeeded"].as_bool() == Some(true) {
            let rev = int(&v["header"]["revision"]);
            done.created = Some((seq_at(rev), k.clone()));
            rev
        } else {
            int(&v["responses"][0]["response_range"]["kvs"][0]["create_revision"])
        };
        done.shown.push(format!("{shown} → create_revision {rev}"));
        done.reply = Some(Msg::Created { xid, seq: seq_at(rev) });
        Ok(Some(done))
    }

    /// `Delete`: the key of node `seq`, if it is still that node.
    fn delete(&mut self, name: &str, seq: u64) -> Result<String, RealError> {
        let kb = b64(name.as_bytes());
        let body = json!({
            "compare": [{"key": kb, "target": "CREATE", "result": "EQUAL", "create_revision": revision(seq).to_string()}],
            "success": [{"request_delete_range": {"key": kb}}],
        });
        let v = self.call("/v3/kv/txn", &body)?;
        let gone = int(&v["responses"][0]["response_delete_range"]["deleted"]);
        Ok(format!("delete {name} (if create_revision {}) → deleted {gone}", revision(seq)))
    }

    /// Drops `client`'s watches, keeping what they had already received.
    fn unwatch(&mut self, client: NodeId) -> Result<(), RealError> {
        for mut w in self.watches.remove(&client).unwrap_or_default() {
            if w.deleted()? {
                self.inbox.push((client, deletion(w.seq, &key_name(w.seq))));
            }
        }
        Ok(())
    }
}

fn key_name(seq: u64) -> String {
    format!("the key at revision {}", revision(seq))
}

fn deletion(seq: u64, name: &str) -> Event {
    Event { node: Some(seq), shown: format!("watch event: DELETE {name}") }
}

impl QueueServer for EtcdServer {
    fn request(&mut self, from: NodeId, msg: &Msg, node: Option<&str>) -> Result<Option<Exchanged>, RealError> {
        let session = msg.session().expect("a request");
        let Some(lease) = self.lease(from, session)? else {
            self.wire.push(format!("lease {:x} revoked", lease_id(from, session)));
            return Ok(None);
        };
        if let Msg::Create { xid, .. } = msg {
            return self.put(lease, *xid);
        }
        if let Msg::Ping { .. } = msg {
            let v = self.call("/v3/lease/keepalive", &json!({"ID": lease.to_string()}))?;
            let ttl = int(&v["result"]["TTL"]);
            self.wire.push(format!("lease keep-alive {lease:x} → TTL {ttl}"));
            return Ok((ttl > 0).then(Exchanged::default));
        }
        // The other requests do not name the lease: the session learns it is gone from the
        // server (`concurrency.Session`'s keep-alive closing its `Done` channel).
        if !self.alive(lease)? {
            self.wire.push(format!("lease timetolive {lease:x} → not found"));
            return Ok(None);
        }
        let mut done = Exchanged::default();
        match msg {
            Msg::GetChildren { xid, watch: false, .. } => {
                let (kids, _) = self.range()?;
                let revs: Vec<String> = kids.iter().map(|(s, _)| revision(*s).to_string()).collect();
                done.shown
                    .push(format!("get {PREFIX} --prefix --sort-by=CREATE → create revisions [{}]", revs.join(", ")));
                done.reply = Some(Msg::Children { xid: *xid, kids });
            }
            Msg::Exists { xid, seq, .. } => {
                let name = node.map(str::to_string).unwrap_or_else(|| key_name(*seq));
                let (exists, rev) = if node.is_some() { self.get(&name, *seq)? } else { (false, 0) };
                done.shown.push(format!("get {name} → {}", if exists { "present" } else { "none" }));
                let watching = self.watches.get(&from).is_some_and(|ws| ws.iter().any(|w| w.seq == *seq));
                if exists && !watching {
                    let w = Watch::open(self.server.port, &name, *seq, rev + 1)?;
                    self.watches.entry(from).or_default().push(w);
                    done.shown.push(format!("watch {name} --rev={} (waitDeletes)", rev + 1));
                }
                done.reply = Some(Msg::Stat { xid: *xid, seq: *seq, exists });
            }
            Msg::Delete { seq, close, .. } => {
                if let (Some(seq), Some(name)) = (seq, node) {
                    done.shown.push(self.delete(name, *seq)?);
                }
                if *close {
                    self.unwatch(from)?;
                    self.sessions.get_mut(&(from, session)).expect("granted above").closed = true;
                    self.revoke(lease, "unlock")?;
                }
            }
            Msg::GetChildren { watch: true, .. } => {
                return Err(RealError::Unsupported("etcd's mutex never watches the whole prefix".into()));
            }
            _ => unreachable!("only requests reach the server"),
        }
        Ok(Some(done))
    }

    fn pending(&mut self) -> Result<Vec<(NodeId, Event)>, RealError> {
        let mut events = std::mem::take(&mut self.inbox);
        for (&client, ws) in self.watches.iter_mut() {
            let mut fired = Vec::new();
            for (i, w) in ws.iter_mut().enumerate() {
                if w.deleted()? {
                    events.push((client, deletion(w.seq, &key_name(w.seq))));
                    fired.push(i);
                }
            }
            // One-shot, as the model's watches: the waiter lists again and watches anew.
            for i in fired.into_iter().rev() {
                ws.remove(i);
            }
        }
        Ok(events)
    }

    fn list(&mut self) -> Result<Vec<u64>, RealError> {
        Ok(self.range()?.0.into_iter().map(|(seq, _)| seq).collect())
    }

    fn newest(&self, client: NodeId) -> Option<Key> {
        let (&key, lease) = self.sessions.range((client, 0)..=(client, u8::MAX)).next_back()?;
        (!lease.closed).then_some(key)
    }

    fn gone(&mut self, key: Key) -> Result<bool, RealError> {
        match self.sessions.get(&key) {
            Some(lease) => Ok(!self.alive(lease.id)?),
            None => Ok(true),
        }
    }

    fn expired(&mut self, key: Key) {
        // The session's watches end with it, as the model's do.
        self.watches.remove(&key.0);
    }

    fn name(&self, key: Key) -> String {
        format!("{:x}", lease_id(key.0, key.1))
    }

    fn wire(&mut self) -> Vec<String> {
        std::mem::take(&mut self.wire)
    }

    fn kill(&mut self) -> String {
        self.watches.clear();
        self.server.kill();
        "kill -9 etcd".into()
    }

    fn boot(&mut self, wiped: bool) -> Result<String, RealError> {
        if wiped {
            self.server.wipe()?;
            self.sessions.clear();
            self.inbox.clear();
        }
        self.start_serving()?;
        Ok(format!("etcd started again from {}", if wiped { "an emptied data folder" } else { "its write-ahead log" }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_both_ways_and_a_chunked_stream_in_lines() {
        for text in ["", "/", "/l", "/lo", "/lock/1a2"] {
            assert_eq!(unb64(&b64(text.as_bytes())).as_deref(), Some(text.as_bytes()));
        }
        assert_eq!(b64(b"/lock/"), "L2xvY2sv");
        let mut c = Chunks::default();
        // The first message's newline comes in a chunk that has not arrived whole.
        c.raw.extend_from_slice(b"7\r\n{\"a\":1}\r\n3\r\n\n{\"");
        c.unchunk();
        assert_eq!(c.lines(), Vec::<Value>::new());
        c.raw.extend_from_slice(b"\r\n6\r\nb\":2}\n\r\n");
        c.unchunk();
        assert_eq!(c.lines(), vec![json!({"a": 1}), json!({"b": 2})]);
    }
}

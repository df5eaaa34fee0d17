//! Redis 7 (Debian's `redis-server`) behind the `redis` and `redlock` families.
//!
//! The commands are the ones the Redis distlock doc and Redisson send: `SET lock <value> NX PX
//! <ttl>`, `INCR fence` for a fencing token, the compare-and-delete script, `DEL`, and for a
//! reentrant lock Redisson's hash (`HINCRBY lock <owner> 1`, `PEXPIRE`) as a Lua script of ours.
//! A value is `c<client>:<asked>`, the model's unique value. Persistence on is `appendonly yes`
//! with `appendfsync always` (nothing acknowledged is lost by a `SIGKILL`); off is no AOF and no
//! RDB snapshot, so a restarted Redis is empty.
//!
//! Expiry: Redis expires a key lazily, when a command touches it after its `PEXPIRETIME`, so with
//! the wall clock standing still between ticks a key lives exactly as long as the clock says. When
//! the model's expiry timer fires, the counterpart reads the real key's expiry instant and moves the
//! clock one millisecond past it, if that instant falls within the current tick; a key that lives
//! on is the real server answering differently.

use std::time::Duration;

use redis::Value;

use super::process::{EPOCH_MS, Process, REPLY_BOUND, Sandbox, find_binary, wall_ms};
use super::replication::Replicas;
use super::{Answer, Counterpart, RealCfg, RealError, owner, value};
use crate::protocol::lease::{Dialect, Hold, Keys, LeaseLock, Msg, Persist, Timer};
use crate::protocol::redlock::{self, Redlock};
use crate::protocol::replication::{ReplMsg, ReplTimer};
use crate::protocol::{NodeId, Observation, Wire};

const REENTRANT_LOCK: &str = "if redis.call('exists', KEYS[1]) == 0 or redis.call('hexists', KEYS[1], ARGV[1]) == 1 then \
local n = redis.call('hincrby', KEYS[1], ARGV[1], 1) \
if ARGV[2] ~= '0' then redis.call('pexpire', KEYS[1], ARGV[2]) end \
return n end return 0";
const REENTRANT_UNLOCK: &str = "if redis.call('hexists', KEYS[1], ARGV[1]) == 0 then return -1 end \
local n = redis.call('hincrby', KEYS[1], ARGV[1], -1) \
if n > 0 then return n end redis.call('del', KEYS[1]) return 0";
const COMPARE_AND_DELETE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// The version `redis-server --version` prints (`v=7.0.15`).
pub(super) fn version(binary: &std::path::Path) -> String {
    let out = std::process::Command::new(binary).arg("--version").output().ok();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
    let v = text.split_whitespace().find_map(|w| w.strip_prefix("v=")).unwrap_or("(unknown version)");
    format!("Redis {v}")
}

/// One real Redis: its process, a connection, and the lock key's value and expiry instant as the
/// server last reported them (to tell which key a lazy expiry removed).
pub struct RedisNode {
    pub(super) process: Process,
    con: Option<redis::Connection>,
    pub(super) tick_ms: i64,
    timed: bool,
    pub(super) key: Option<(String, i64)>,
    pub wire: Vec<String>,
    /// The tick the clocks of the current run start at (a scenario's runs follow each other on
    /// one real clock, which never goes back).
    pub(super) base: i64,
}

impl RedisNode {
    pub(super) fn start(sb: &Sandbox, name: &str, persistence: bool, cfg: RealCfg) -> Result<RedisNode, RealError> {
        let binary = find_binary("redis-server", "redis-server", &[])?;
        let aof = if persistence { "yes" } else { "no" };
        let args = [
            "--port",
            "{port}",
            "--bind",
            "127.0.0.1",
            "--dir",
            "{data}",
            "--save",
            "",
            "--appendonly",
            aof,
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--logfile",
            "",
            // Replication goes through lockcheck's relays ([`super::replication`]): a snapshot
            // with a length, and no pings or timeouts of the link's own.
            "--repl-diskless-sync",
            "no",
            "--repl-ping-replica-period",
            "100000",
            "--repl-timeout",
            "200000",
            // For `DEBUG SET-ACTIVE-EXPIRE 0` (see `connect`), from 127.0.0.1 only.
            "--enable-debug-command",
            "local",
        ];
        let mut process = Process::new(sb, name, binary, &args, EPOCH_MS)?;
        process.start()?;
        let mut node = RedisNode {
            process,
            con: None,
            tick_ms: cfg.tick_ms,
            timed: cfg.timed,
            key: None,
            wire: Vec::new(),
            base: 0,
        };
        node.connect()?;
        Ok(node)
    }

    fn connect(&mut self) -> Result<(), RealError> {
        let talk = |e: redis::RedisError| RealError::Talk { server: self.process.name.clone(), why: e.to_string() };
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.process.port)).map_err(talk)?;
        let mut con = client.get_connection_with_timeout(REPLY_BOUND).map_err(talk)?;
        con.set_read_timeout(Some(REPLY_BOUND)).map_err(talk)?;
        // A restarted Redis accepts connections while it still loads its AOF: wait for PONG.
        let began = std::time::Instant::now();
        loop {
            match redis::cmd("PING").query::<String>(&mut con) {
                Ok(_) => break,
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                        && began.elapsed() < REPLY_BOUND =>
                {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(e) => return Err(talk(e)),
            }
        }
        // A key expires when a command touches it past its instant, never in the background: a
        // promoted replica would otherwise drop an expired key between two steps, where the
        // model's expiry timer does it (found by `confirm sims/redis_failover.toml --seeds`).
        redis::cmd("DEBUG").arg("SET-ACTIVE-EXPIRE").arg("0").query::<()>(&mut con).map_err(talk)?;
        self.con = Some(con);
        Ok(())
    }

    pub(super) fn port(&self) -> u16 {
        self.process.port
    }

    /// The model's tick (of the current run) in which the wall clock reads `ms`.
    pub(super) fn tick_of(&self, ms: i64) -> i64 {
        (ms - EPOCH_MS).div_euclid(self.tick_ms) - self.base
    }

    /// The wall clock at the start of tick `now` (never moved back).
    pub(super) fn at(&mut self, now: i64) -> Result<(), RealError> {
        self.process.clock.set(wall_ms(now, self.tick_ms))
    }

    /// One command; logged with its reply as the real wire carried them.
    pub(super) fn cmd(&mut self, args: &[&str]) -> Result<Value, RealError> {
        let name = self.process.name.clone();
        let v = self.send(args)?.map_err(|e| RealError::Talk { server: name, why: e.to_string() })?;
        self.log(args, &show(&v));
        Ok(v)
    }

    /// One write command, which a replica refuses (`-READONLY`: `None`).
    pub(super) fn write(&mut self, args: &[&str]) -> Result<Option<Value>, RealError> {
        match self.send(args)? {
            Ok(v) => {
                self.log(args, &show(&v));
                Ok(Some(v))
            }
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) => {
                self.log(args, "-READONLY You can't write against a read only replica.");
                Ok(None)
            }
            Err(e) => Err(RealError::Talk { server: self.process.name.clone(), why: e.to_string() }),
        }
    }

    /// One command lockcheck asks for itself (not on the client's wire): not logged.
    pub(super) fn quiet(&mut self, args: &[&str]) -> Result<Value, RealError> {
        let name = self.process.name.clone();
        self.send(args)?.map_err(|e| RealError::Talk { server: name, why: e.to_string() })
    }

    fn send(&mut self, args: &[&str]) -> Result<Result<Value, redis::RedisError>, RealError> {
        let name = self.process.name.clone();
        let con = self.con.as_mut().ok_or_else(|| RealError::Talk { server: name.clone(), why: "down".into() })?;
        let mut c = redis::cmd(args[0]);
        args[1..].iter().for_each(|a| {
            c.arg(*a);
        });
        match c.query(con) {
            Err(e) if e.is_io_error() || e.is_timeout() => Err(RealError::Talk { server: name, why: e.to_string() }),
            r => Ok(r),
        }
    }

    fn log(&mut self, args: &[&str], reply: &str) {
        let shown: Vec<String> =
            args.iter().map(|a| if a.contains(' ') { format!("\"{a}\"") } else { a.to_string() }).collect();
        self.wire.push(format!("{} → {reply}", shown.join(" ")));
    }

    /// `EVAL body`; `None`: a replica refused a write of it (`-READONLY`).
    pub(super) fn script(&mut self, body: &str, keys: &[&str], args: &[&str]) -> Result<Option<Value>, RealError> {
        let n = keys.len().to_string();
        let mut all = vec!["EVAL", body, n.as_str()];
        all.extend(keys);
        all.extend(args);
        self.write(&all)
    }

    /// Reads the key's expiry instant after a grant, for [`Self::lapse`].
    pub(super) fn remember(&mut self, value: String) -> Result<(), RealError> {
        let when = int(&self.cmd(&["PEXPIRETIME", "lock"])?);
        self.key = Some((value, when));
        Ok(())
    }

    /// `SET lock value NX [PX ttl]`: whether it was set; `None`: a replica refused it.
    fn set_nx(&mut self, value: &str, ttl: Option<i64>) -> Result<Option<bool>, RealError> {
        let px = ttl.map(|t| (t * self.tick_ms).to_string());
        let mut args = vec!["SET", "lock", value, "NX"];
        if let Some(px) = &px {
            args.extend(["PX", px.as_str()]);
        }
        let Some(reply) = self.write(&args)? else { return Ok(None) };
        let set = reply == Value::Okay;
        if set {
            self.remember(value.to_string())?;
        }
        Ok(Some(set))
    }

    /// The compare-and-delete script: whether it deleted; `None`: a replica refused it (its
    /// `DEL` only: a value that differs is answered 0 on a replica too).
    fn compare_and_delete(&mut self, value: &str) -> Result<Option<bool>, RealError> {
        let Some(reply) = self.script(COMPARE_AND_DELETE, &["lock"], &[value])? else { return Ok(None) };
        let deleted = int(&reply) == 1;
        if deleted {
            self.key = None;
        }
        Ok(Some(deleted))
    }

    /// What the node holds of the lock key now (after a replica took a stream, or was promoted).
    pub(super) fn reread(&mut self) -> Result<Option<String>, RealError> {
        let held = text(&self.cmd(&["GET", "lock"])?);
        match &held {
            Some(v) => self.remember(v.clone())?,
            None => self.key = None,
        }
        Ok(held)
    }

    /// The lock key's expiry is due: lets the clock run to just past the real key's expiry instant
    /// if it falls within tick `now` (untimed: whenever it falls), and returns the value of the
    /// key that expired, if one did.
    pub(super) fn lapse(&mut self, now: i64) -> Result<Option<String>, RealError> {
        self.at(now)?;
        let Some((value, when)) = self.key.clone() else { return Ok(None) };
        let end_of_tick = self.timed.then(|| wall_ms(now + 1, self.tick_ms));
        if when < 0 || !self.process.clock.pass(when, end_of_tick)? {
            return Ok(None);
        }
        self.wire.push(format!("the wall clock moves to PEXPIRETIME + 1 ms ({})", when + 1));
        if int(&self.cmd(&["EXISTS", "lock"])?) == 1 {
            return Ok(None);
        }
        self.key = None;
        Ok(Some(value))
    }

    pub(super) fn crash(&mut self) -> Vec<String> {
        self.con = None;
        self.process.kill();
        vec![format!("kill -9 {}", self.process.name)]
    }

    pub(super) fn restart(&mut self, wiped: bool, persistence: bool, now: i64) -> Result<Vec<String>, RealError> {
        if wiped {
            self.process.wipe()?;
        }
        self.at(now)?;
        self.process.start()?;
        self.connect()?;
        if wiped || !persistence {
            self.key = None;
        }
        let from = if wiped {
            "an emptied data folder"
        } else if persistence {
            "its AOF"
        } else {
            "nothing (no AOF)"
        };
        Ok(vec![format!("redis-server started again from {from}")])
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Nil => "(nil)".into(),
        Value::Okay => "OK".into(),
        Value::Int(i) => format!("(integer) {i}"),
        Value::BulkString(b) => format!("\"{}\"", String::from_utf8_lossy(b)),
        Value::SimpleString(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(", ")),
        _ => "(a reply of another type)".into(),
    }
}

pub(super) fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::BulkString(b) => String::from_utf8_lossy(b).parse().unwrap_or(0),
        _ => 0,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// One RESP value from the front of `buf`, and the bytes it took; `None` while incomplete.
pub(super) fn resp(buf: &[u8]) -> Option<(Vec<String>, usize)> {
    let line = |at: usize| -> Option<(String, usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((String::from_utf8_lossy(&buf[at..end]).into_owned(), end + 2))
    };
    let (head, mut at) = line(0)?;
    let (kind, rest) = head.split_at(1);
    match kind {
        "*" => {
            let mut items = Vec::new();
            for _ in 0..rest.parse::<usize>().ok()? {
                let (item, used) = resp(&buf[at..])?;
                items.extend(item);
                at += used;
            }
            Some((items, at))
        }
        "$" => {
            let n = rest.parse::<usize>().ok()?;
            (buf.len() >= at + n + 2)
                .then(|| (vec![String::from_utf8_lossy(&buf[at..at + n]).into_owned()], at + n + 2))
        }
        _ => Some((vec![rest.to_string()], at)),
    }
}

/// The node's wire since the last call.
pub(super) fn take_wire(n: &mut RedisNode) -> Vec<String> {
    std::mem::take(&mut n.wire)
}

/// The `redis` family on a real Redis, and with replicas on one real Redis per node, the
/// replication passing through lockcheck's relays and lockcheck playing Sentinel
/// ([`super::replication`]).
pub struct RedisLease {
    r: Replicas<LeaseLock>,
    expires: bool,
    owner_checked: bool,
    tokens: bool,
    reentrant: bool,
    ttl: i64,
    system: String,
    _sandbox: Sandbox,
}

impl RedisLease {
    pub fn start(p: &LeaseLock, cfg: RealCfg) -> Result<RedisLease, RealError> {
        let c = &p.cfg;
        assert_eq!(c.dialect, Dialect::Redis, "only the Redis dialect is sent here (real::counterpart)");
        if c.replication.is_some() && (c.reentrant || !c.expires) {
            return Err(RealError::Unsupported(
                "with replicas is confirmed without reentrancy or a key that never expires only, so far".into(),
            ));
        }
        if c.reentrant && !c.release_checks_owner {
            return Err(RealError::Unsupported("reentrant with release = \"del\" has no real counterpart".into()));
        }
        let system = version(&find_binary("redis-server", "redis-server", &[])?);
        let sandbox = Sandbox::new()?;
        let holds = |n: &mut RedisNode| Ok(n.reread()?.is_some());
        let r = Replicas::start(p, &sandbox, (c.persist == Persist::Everything, holds), cfg)?;
        Ok(RedisLease {
            system,
            r,
            expires: c.expires,
            owner_checked: c.release_checks_owner,
            tokens: c.tokens,
            reentrant: c.reentrant,
            ttl: c.ttl,
            _sandbox: sandbox,
        })
    }

    /// A fencing token for a grant: `INCR fence` (the first hold), `GET fence` (a nested one).
    fn token(&mut self, k: usize, first: bool) -> Result<Option<u64>, RealError> {
        if !self.tokens {
            return Ok(None);
        }
        let n = &mut self.r.nodes[k];
        let v = if first { n.cmd(&["INCR", "fence"])? } else { n.cmd(&["GET", "fence"])? };
        Ok(Some(int(&v) as u64))
    }

    fn acquire(&mut self, k: usize, from: NodeId, asked: i64, a: &mut Answer<Msg>) -> Result<(), RealError> {
        let ttl = self.expires.then_some(self.ttl);
        let n = &mut self.r.nodes[k];
        let held = if self.reentrant {
            let px = ttl.map_or(0, |t| t * n.tick_ms).to_string();
            let field = format!("c{from}");
            let count = n.script(REENTRANT_LOCK, &["lock"], &[&field, &px])?.map(|c| int(&c));
            if count.is_some_and(|c| c > 0) {
                n.remember(field)?;
            }
            count.map(|c| (c > 0).then_some(c == 1))
        } else {
            n.set_nx(&value(from, asked), ttl)?.map(|set| set.then_some(true))
        };
        match held {
            None => a.sends.push((from, Wire::Lock(Msg::Repl(ReplMsg::ReadOnly)))),
            Some(Some(first)) => {
                let token = self.token(k, first)?;
                if first {
                    a.observed.push(Observation::Granted { client: from, token });
                }
                self.r.answer(k, from, Msg::Grant { token, asked }, a)?;
            }
            Some(None) => a.sends.push((from, Wire::Lock(Msg::Busy))),
        }
        Ok(())
    }

    /// A release; whether a replica refused it.
    fn release(&mut self, k: usize, from: NodeId, asked: i64, a: &mut Answer<Msg>) -> Result<bool, RealError> {
        let n = &mut self.r.nodes[k];
        let deleted = if self.reentrant {
            n.script(REENTRANT_UNLOCK, &["lock"], &[&format!("c{from}")])?.map(|left| int(&left) == 0)
        } else if self.owner_checked {
            n.compare_and_delete(&value(from, asked))?
        } else {
            // A plain `DEL`; the `GET` before it only tells whose key it deleted.
            let was = text(&n.cmd(&["GET", "lock"])?);
            let deleted = n.write(&["DEL", "lock"])?.map(|d| int(&d) == 1);
            let theirs = was.as_deref().filter(|v| *v != value(from, asked)).and_then(owner);
            if let (Some(true), Some(owner)) = (deleted, theirs) {
                a.observed.push(Observation::ReleasedOther { by: from, owner });
            }
            deleted
        };
        if deleted == Some(true) {
            n.key = None;
            self.r.forget(k);
        }
        Ok(deleted.is_none())
    }

    /// What the real master holds, as the model's stream carries it.
    fn keys(tokens: bool, n: &mut RedisNode) -> Result<Keys, RealError> {
        let hold = match n.reread()? {
            Some(v) => {
                let (owner, asked) = lease_value(&v).ok_or_else(|| RealError::Talk {
                    server: n.process.name.clone(),
                    why: format!("the lock key holds `{v}`, not a value of lockcheck's"),
                })?;
                let until = n.key.as_ref().map_or(0, |(_, when)| n.tick_of(*when));
                Some(Hold { owner, asked, count: 1, until })
            }
            None => None,
        };
        let counter = if tokens { int(&n.cmd(&["GET", "fence"])?) as u64 } else { 0 };
        Ok(Keys { hold, counter })
    }
}

/// The client and request of a lock value `c<client>:<asked>`.
fn lease_value(v: &str) -> Option<(NodeId, i64)> {
    let (client, asked) = v.strip_prefix('c')?.split_once(':')?;
    Some((client.parse().ok()?, asked.parse().ok()?))
}

impl Counterpart<LeaseLock> for RedisLease {
    fn system(&self) -> String {
        self.system.clone()
    }

    fn on_msg(&mut self, k: usize, from: NodeId, msg: &Msg, now: i64) -> Result<Answer<Msg>, RealError> {
        self.r.nodes[k].at(now)?;
        let mut a = Answer::default();
        match msg {
            Msg::Acquire { asked } => self.acquire(k, from, *asked, &mut a)?,
            Msg::Release { asked } => {
                if self.release(k, from, *asked, &mut a)? {
                    a.sends.push((from, Wire::Lock(Msg::Repl(ReplMsg::ReadOnly))));
                }
            }
            Msg::Repl(m) => {
                self.r.on_msg(k, (from, m), |n| Self::keys(self.tokens, n), &mut a)?;
            }
            Msg::Grant { .. } | Msg::Busy => {}
        }
        self.r.finish(k, a)
    }

    fn on_timer(&mut self, k: usize, timer: &Timer, now: i64) -> Result<Answer<Msg>, RealError> {
        let mut a = Answer::default();
        match timer {
            Timer::Expire(_) => {
                if self.r.serves(k)
                    && let Some(client) = self.r.nodes[k].lapse(now)?.as_deref().and_then(owner)
                {
                    a.observed.push(Observation::Expired { client });
                    self.r.forget(k);
                }
            }
            Timer::Repl(ReplTimer::Heartbeat) => {
                let tokens = self.tokens;
                self.r.stream(k, |n| Self::keys(tokens, n), &mut a)?;
            }
            Timer::Repl(ReplTimer::MasterDown) => {
                self.r.nodes[k].at(now)?;
                self.r.promote(k, &mut a)?;
            }
            Timer::Timeout => {}
        }
        self.r.finish(k, a)
    }

    fn crash(&mut self, k: usize) -> Vec<String> {
        self.r.crash(k)
    }

    fn restart(&mut self, k: usize, wiped: bool, now: i64) -> Result<Vec<String>, RealError> {
        self.r.restart(k, wiped, now)
    }

    fn fresh(&mut self, _servers: usize, base: i64) -> Result<(), RealError> {
        self.r.fresh(base)
    }
}

/// Redlock on N independent real Redis masters.
pub struct RedlockNodes {
    nodes: Vec<RedisNode>,
    expires: bool,
    persistence: bool,
    ttl: i64,
    system: String,
    _sandbox: Sandbox,
}

impl RedlockNodes {
    pub fn start(p: &Redlock, cfg: RealCfg) -> Result<RedlockNodes, RealError> {
        if p.delayed_restart {
            return Err(RealError::Unsupported(
                "with delayed_restart is not confirmed: the delay is an operator's, not the server's".into(),
            ));
        }
        let system = version(&find_binary("redis-server", "redis-server", &[])?);
        let sandbox = Sandbox::new()?;
        let nodes = (0..p.nodes)
            .map(|i| RedisNode::start(&sandbox, &format!("redis-{i}"), p.persistence, cfg))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RedlockNodes {
            system,
            nodes,
            expires: p.expires,
            persistence: p.persistence,
            ttl: p.ttl,
            _sandbox: sandbox,
        })
    }
}

impl Counterpart<Redlock> for RedlockNodes {
    fn system(&self) -> String {
        self.system.clone()
    }

    fn on_msg(
        &mut self,
        server: usize,
        from: NodeId,
        msg: &redlock::Msg,
        now: i64,
    ) -> Result<Answer<redlock::Msg>, RealError> {
        let n = &mut self.nodes[server];
        n.at(now)?;
        let mut a = Answer::default();
        match msg {
            redlock::Msg::Set { asked } => {
                let set = n.set_nx(&value(from, *asked), self.expires.then_some(self.ttl))?.unwrap_or(false);
                let reply =
                    if set { redlock::Msg::Ok { asked: *asked } } else { redlock::Msg::Refused { asked: *asked } };
                a.sends.push((from, Wire::Lock(reply)));
            }
            redlock::Msg::Unlock { asked } => {
                n.compare_and_delete(&value(from, *asked))?;
                a.sends.push((from, Wire::Lock(redlock::Msg::Unlocked { asked: *asked })));
            }
            redlock::Msg::Ok { .. } | redlock::Msg::Refused { .. } | redlock::Msg::Unlocked { .. } => {}
        }
        a.wire = take_wire(n);
        Ok(a)
    }

    fn on_timer(&mut self, server: usize, timer: &redlock::Timer, now: i64) -> Result<Answer<redlock::Msg>, RealError> {
        let n = &mut self.nodes[server];
        let mut a = Answer::default();
        if let redlock::Timer::Expire(_) = timer
            && let Some(client) = n.lapse(now)?.as_deref().and_then(owner)
        {
            a.observed.push(Observation::Expired { client });
        }
        a.wire = take_wire(n);
        Ok(a)
    }

    fn crash(&mut self, server: usize) -> Vec<String> {
        self.nodes[server].crash()
    }

    fn restart(&mut self, server: usize, wiped: bool, now: i64) -> Result<Vec<String>, RealError> {
        let persistence = self.persistence;
        self.nodes[server].restart(wiped, persistence, now)
    }
}

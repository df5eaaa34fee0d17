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
use super::{Answer, Counterpart, RealCfg, RealError, owner, value};
use crate::protocol::lease::{Dialect, LeaseLock, Msg, Persist, Timer};
use crate::protocol::redlock::{self, Redlock};
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
    process: Process,
    con: Option<redis::Connection>,
    pub(super) tick_ms: i64,
    timed: bool,
    pub(super) key: Option<(String, i64)>,
    pub wire: Vec<String>,
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
        ];
        let mut process = Process::new(sb, name, binary, &args, EPOCH_MS)?;
        process.start()?;
        let mut node =
            RedisNode { process, con: None, tick_ms: cfg.tick_ms, timed: cfg.timed, key: None, wire: Vec::new() };
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
        self.con = Some(con);
        Ok(())
    }

    pub(super) fn port(&self) -> u16 {
        self.process.port
    }

    /// The wall clock at the start of tick `now` (never moved back).
    pub(super) fn at(&mut self, now: i64) -> Result<(), RealError> {
        self.process.clock.set(wall_ms(now, self.tick_ms))
    }

    /// One command; logged with its reply as the real wire carried them.
    pub(super) fn cmd(&mut self, args: &[&str]) -> Result<Value, RealError> {
        let name = self.process.name.clone();
        let con = self.con.as_mut().ok_or_else(|| RealError::Talk { server: name.clone(), why: "down".into() })?;
        let mut c = redis::cmd(args[0]);
        args[1..].iter().for_each(|a| {
            c.arg(*a);
        });
        let v: Value = c.query(con).map_err(|e| RealError::Talk { server: name, why: e.to_string() })?;
        let shown: Vec<String> =
            args.iter().map(|a| if a.contains(' ') { format!("\"{a}\"") } else { a.to_string() }).collect();
        self.wire.push(format!("{} → {}", shown.join(" "), show(&v)));
        Ok(v)
    }

    pub(super) fn script(&mut self, body: &str, keys: &[&str], args: &[&str]) -> Result<Value, RealError> {
        let n = keys.len().to_string();
        let mut all = vec!["EVAL", body, n.as_str()];
        all.extend(keys);
        all.extend(args);
        self.cmd(&all)
    }

    /// Reads the key's expiry instant after a grant, for [`Self::lapse`].
    pub(super) fn remember(&mut self, value: String) -> Result<(), RealError> {
        let when = int(&self.cmd(&["PEXPIRETIME", "lock"])?);
        self.key = Some((value, when));
        Ok(())
    }

    /// `SET lock value NX [PX ttl]`: whether it was set.
    fn set_nx(&mut self, value: &str, ttl: Option<i64>) -> Result<bool, RealError> {
        let px = ttl.map(|t| (t * self.tick_ms).to_string());
        let mut args = vec!["SET", "lock", value, "NX"];
        if let Some(px) = &px {
            args.extend(["PX", px.as_str()]);
        }
        let set = self.cmd(&args)? == Value::Okay;
        if set {
            self.remember(value.to_string())?;
        }
        Ok(set)
    }

    /// The compare-and-delete script: whether it deleted.
    fn compare_and_delete(&mut self, value: &str) -> Result<bool, RealError> {
        let deleted = int(&self.script(COMPARE_AND_DELETE, &["lock"], &[value])?) == 1;
        if deleted {
            self.key = None;
        }
        Ok(deleted)
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

/// The client a lock value `c<client>:<asked>` (or a hash field `c<client>`) belongs to.
pub(super) fn take_wire(n: &mut RedisNode) -> Vec<String> {
    std::mem::take(&mut n.wire)
}

/// The `redis` family on one real Redis (no replicas: Redis replication streams by itself, and
/// lockcheck cannot hold or drop what it sends).
pub struct RedisLease {
    node: RedisNode,
    expires: bool,
    owner_checked: bool,
    persistence: bool,
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
        if c.replication.is_some() {
            return Err(RealError::Unsupported(
                "with replicas is not confirmed: real replication streams by itself, lockcheck cannot hold or drop it"
                    .into(),
            ));
        }
        if c.reentrant && !c.release_checks_owner {
            return Err(RealError::Unsupported("reentrant with release = \"del\" has no real counterpart".into()));
        }
        let system = version(&find_binary("redis-server", "redis-server", &[])?);
        let sandbox = Sandbox::new()?;
        let persistence = c.persist == Persist::Everything;
        let node = RedisNode::start(&sandbox, "redis", persistence, cfg)?;
        Ok(RedisLease {
            system,
            node,
            expires: c.expires,
            owner_checked: c.release_checks_owner,
            persistence,
            tokens: c.tokens,
            reentrant: c.reentrant,
            ttl: c.ttl,
            _sandbox: sandbox,
        })
    }

    /// A fencing token for a grant: `INCR fence` (the first hold), `GET fence` (a nested one).
    fn token(&mut self, first: bool) -> Result<Option<u64>, RealError> {
        if !self.tokens {
            return Ok(None);
        }
        let v = if first { self.node.cmd(&["INCR", "fence"])? } else { self.node.cmd(&["GET", "fence"])? };
        Ok(Some(int(&v) as u64))
    }

    fn acquire(&mut self, from: NodeId, asked: i64, a: &mut Answer<Msg>) -> Result<(), RealError> {
        let ttl = self.expires.then_some(self.ttl);
        let held = if self.reentrant {
            let px = ttl.map_or(0, |t| t * self.node.tick_ms).to_string();
            let field = format!("c{from}");
            let n = int(&self.node.script(REENTRANT_LOCK, &["lock"], &[&field, &px])?);
            if n > 0 {
                self.node.remember(field)?;
            }
            (n > 0).then_some(n == 1)
        } else {
            self.node.set_nx(&value(from, asked), ttl)?.then_some(true)
        };
        match held {
            Some(first) => {
                let token = self.token(first)?;
                if first {
                    a.observed.push(Observation::Granted { client: from, token });
                }
                a.sends.push((from, Wire::Lock(Msg::Grant { token, asked })));
            }
            None => a.sends.push((from, Wire::Lock(Msg::Busy))),
        }
        Ok(())
    }

    fn release(&mut self, from: NodeId, asked: i64, a: &mut Answer<Msg>) -> Result<(), RealError> {
        if self.reentrant {
            let left = int(&self.node.script(REENTRANT_UNLOCK, &["lock"], &[&format!("c{from}")])?);
            if left == 0 {
                self.node.key = None;
            }
        } else if self.owner_checked {
            self.node.compare_and_delete(&value(from, asked))?;
        } else {
            // A plain `DEL`; the `GET` before it only tells whose key it deleted.
            let was = text(&self.node.cmd(&["GET", "lock"])?);
            if int(&self.node.cmd(&["DEL", "lock"])?) == 1 {
                self.node.key = None;
                let theirs = was.as_deref().filter(|v| *v != value(from, asked)).and_then(owner);
                if let Some(owner) = theirs {
                    a.observed.push(Observation::ReleasedOther { by: from, owner });
                }
            }
        }
        Ok(())
    }
}

impl Counterpart<LeaseLock> for RedisLease {
    fn system(&self) -> String {
        self.system.clone()
    }

    fn on_msg(&mut self, _server: usize, from: NodeId, msg: &Msg, now: i64) -> Result<Answer<Msg>, RealError> {
        self.node.at(now)?;
        let mut a = Answer::default();
        match msg {
            Msg::Acquire { asked } => self.acquire(from, *asked, &mut a)?,
            Msg::Release { asked } => self.release(from, *asked, &mut a)?,
            Msg::Grant { .. } | Msg::Busy | Msg::Repl(_) => {}
        }
        a.wire = take_wire(&mut self.node);
        Ok(a)
    }

    fn on_timer(&mut self, _server: usize, timer: &Timer, now: i64) -> Result<Answer<Msg>, RealError> {
        let mut a = Answer::default();
        if let Timer::Expire(_) = timer
            && let Some(client) = self.node.lapse(now)?.as_deref().and_then(owner)
        {
            a.observed.push(Observation::Expired { client });
        }
        a.wire = take_wire(&mut self.node);
        Ok(a)
    }

    fn crash(&mut self, _server: usize) -> Vec<String> {
        self.node.crash()
    }

    fn restart(&mut self, _server: usize, wiped: bool, now: i64) -> Result<Vec<String>, RealError> {
        self.node.restart(wiped, self.persistence, now)
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
                let set = n.set_nx(&value(from, *asked), self.expires.then_some(self.ttl))?;
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

//! Redisson's `RLock` on a real Redis 7 (Debian's `redis-server`) behind the `redisson` family.
//!
//! The scripts are Redisson's own (`RedissonLock.tryLockInnerAsync`, `renewExpirationAsync`,
//! `unlockInnerAsync`, 3.x): a hash `lock` with one field per owner (`c<client>:thread-1`) holding
//! its count, `PEXPIRE` for the lease, `PTTL` for a waiter, and at the last unlock `DEL` and
//! `PUBLISH redisson_lock__channel:{lock} 0`. A waiter's subscription is a connection of its own in
//! subscribe mode, as Redisson's pub/sub connection is; `UNSUBSCRIBE` closes it. Published
//! messages are read from every subscriber's connection after each step.
//!
//! Persistence is on (`appendonly yes`, `appendfsync always`), as the model keeps the hash across a
//! restart. The lease runs out on the server's wall clock, which lockcheck moves as for `redis`
//! (a key expires when the clock passes its `PEXPIRETIME`; a key that expires publishes nothing).
//! With replicas, the nodes replicate through lockcheck's relays ([`super::replication`]); a
//! waiter subscribes on the node it asks, as Redisson's pub/sub connection follows the master,
//! a replica too, where the master's `PUBLISH` arrives with the stream.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use redis::Value;

use super::process::{REPLY_BOUND, Sandbox, find_binary};
use super::redis::{RedisNode, int, resp, version};
use super::replication::Replicas;
use super::{Answer, Counterpart, RealCfg, RealError, owner};
use crate::protocol::redisson::{Hash, Msg, Redisson, Streamed, Timer};
use crate::protocol::replication::{ReplMsg, ReplTimer};
use crate::protocol::{NodeId, Observation, Wire};

const CHANNEL: &str = "redisson_lock__channel:{lock}";

const TRY_LOCK: &str = "if ((redis.call('exists', KEYS[1]) == 0) or (redis.call('hexists', KEYS[1], ARGV[2]) == 1)) then \
redis.call('hincrby', KEYS[1], ARGV[2], 1); redis.call('pexpire', KEYS[1], ARGV[1]); return nil; end; \
return redis.call('pttl', KEYS[1]);";
const RENEW: &str = "if (redis.call('hexists', KEYS[1], ARGV[2]) == 1) then \
redis.call('pexpire', KEYS[1], ARGV[1]); return 1; end; return 0;";
const UNLOCK: &str = "if (redis.call('hexists', KEYS[1], ARGV[3]) == 0) then return nil; end; \
local counter = redis.call('hincrby', KEYS[1], ARGV[3], -1); \
if (counter > 0) then redis.call('pexpire', KEYS[1], ARGV[2]); return 0; \
else redis.call('del', KEYS[1]); redis.call('publish', KEYS[2], ARGV[1]); return 1; end; return nil;";

fn field(client: NodeId) -> String {
    format!("c{client}:thread-1")
}

fn talk(e: impl std::fmt::Display) -> RealError {
    RealError::Talk { server: "redis".into(), why: e.to_string() }
}

/// A waiter's pub/sub connection.
struct Subscriber {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Subscriber {
    fn open(port: u16) -> Result<Subscriber, RealError> {
        let sock = TcpStream::connect(("127.0.0.1", port)).map_err(talk)?;
        sock.set_nodelay(true).map_err(talk)?;
        Ok(Subscriber { sock, buf: Vec::new() })
    }

    /// `SUBSCRIBE`, answered once Redis confirms it.
    fn subscribe(&mut self) -> Result<(), RealError> {
        let cmd = format!("*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{CHANNEL}\r\n", CHANNEL.len());
        self.sock.write_all(cmd.as_bytes()).map_err(talk)?;
        let began = std::time::Instant::now();
        loop {
            if self.frames(Duration::from_millis(20))?.iter().any(|f| f.first().is_some_and(|k| k == "subscribe")) {
                return Ok(());
            }
            if began.elapsed() > REPLY_BOUND {
                return Err(talk("SUBSCRIBE: no confirmation after 5 s"));
            }
        }
    }

    /// The frames pushed so far, waiting up to `quiet` for the first bytes.
    fn frames(&mut self, quiet: Duration) -> Result<Vec<Vec<String>>, RealError> {
        let mut wait = quiet;
        let mut chunk = [0u8; 4096];
        loop {
            self.sock.set_read_timeout(Some(wait)).map_err(talk)?;
            match self.sock.read(&mut chunk) {
                Ok(0) => return Err(talk("a subscriber's connection closed by the server")),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => return Err(talk(e)),
            }
            wait = Duration::from_millis(1);
        }
        let mut frames = Vec::new();
        while let Some((frame, used)) = resp(&self.buf) {
            self.buf.drain(..used);
            frames.push(frame);
        }
        Ok(frames)
    }
}

/// The `redisson` family on a real Redis, with replicas through lockcheck's relays and lockcheck as
/// Sentinel ([`super::replication`]).
pub struct RedissonLock {
    r: Replicas<Redisson>,
    /// The lease in milliseconds.
    lease_ms: String,
    /// Each waiter's pub/sub connection, by the node it subscribed on and the client.
    subscribers: BTreeMap<(usize, NodeId), Subscriber>,
    /// Each node's count of unlock messages, as the model's stream carries it
    /// ([`Streamed::published`]): the messages themselves are Redis's.
    published: Vec<u32>,
    system: String,
    _sandbox: Sandbox,
}

impl RedissonLock {
    pub fn start(p: &Redisson, cfg: RealCfg) -> Result<RedissonLock, RealError> {
        let system = version(&find_binary("redis-server", "redis-server", &[])?);
        let sandbox = Sandbox::new()?;
        let r = Replicas::start(p, &sandbox, (true, |n| Ok(hash(n)?.is_some())), cfg)?;
        let lease_ms = (p.lease() * cfg.tick_ms).to_string();
        let published = vec![0; r.nodes.len()];
        Ok(RedissonLock { r, lease_ms, subscribers: BTreeMap::new(), published, system, _sandbox: sandbox })
    }

    fn try_lock(&mut self, k: usize, from: NodeId, a: &mut Answer<Msg>) -> Result<(), RealError> {
        let me = field(from);
        let Some(v) = self.r.nodes[k].script(TRY_LOCK, &["lock"], &[&self.lease_ms, &me])? else {
            a.sends.push((from, Wire::Lock(Msg::Repl(ReplMsg::ReadOnly))));
            return Ok(());
        };
        let n = &mut self.r.nodes[k];
        if v != Value::Nil {
            let pttl = int(&v) / n.tick_ms;
            a.sends.push((from, Wire::Lock(Msg::Held { pttl })));
            return Ok(());
        }
        // The script answers nil to a first and a nested hold alike; the count tells them apart.
        if int(&n.cmd(&["HGET", "lock", &me])?) == 1 {
            a.observed.push(Observation::Granted { client: from, token: None });
        }
        n.remember(me)?;
        self.r.answer(k, from, Msg::Locked, a)
    }

    fn renew(&mut self, k: usize, from: NodeId, a: &mut Answer<Msg>) -> Result<(), RealError> {
        let me = field(from);
        let reply = match self.r.nodes[k].script(RENEW, &["lock"], &[&self.lease_ms, &me])? {
            None => Msg::Repl(ReplMsg::ReadOnly),
            Some(v) => {
                let ok = int(&v) == 1;
                if ok {
                    self.r.nodes[k].remember(me)?;
                }
                Msg::Renewed { ok }
            }
        };
        a.sends.push((from, Wire::Lock(reply)));
        Ok(())
    }

    fn unlock(&mut self, k: usize, from: NodeId, a: &mut Answer<Msg>) -> Result<(), RealError> {
        let me = field(from);
        match self.r.nodes[k].script(UNLOCK, &["lock", CHANNEL], &["0", &self.lease_ms, &me])? {
            None => a.sends.push((from, Wire::Lock(Msg::Repl(ReplMsg::ReadOnly)))),
            Some(Value::Nil) => a.sends.push((from, Wire::Lock(Msg::NotOwner))),
            Some(v) if int(&v) == 1 => {
                self.r.nodes[k].key = None;
                self.r.forget(k);
                self.published[k] += 1;
            }
            Some(_) => self.r.nodes[k].remember(me)?,
        }
        Ok(())
    }

    fn subscribe(&mut self, k: usize, from: NodeId, a: &mut Answer<Msg>) -> Result<(), RealError> {
        let port = self.r.nodes[k].port();
        let sub = match self.subscribers.entry((k, from)) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Subscriber::open(port)?),
        };
        sub.subscribe()?;
        let name = self.r.nodes[k].process.name.clone();
        self.r.nodes[k]
            .wire
            .push(format!("client-{from}'s pub/sub connection to {name}: SUBSCRIBE {CHANNEL} → subscribed"));
        a.sends.push((from, Wire::Lock(Msg::Subscribed)));
        Ok(())
    }

    /// The unlock messages that reached the subscribers.
    fn published(&mut self, k: usize, a: &mut Answer<Msg>) -> Result<(), RealError> {
        for (&(_, client), sub) in self.subscribers.iter_mut() {
            for frame in sub.frames(Duration::from_millis(10))? {
                if frame.first().is_some_and(|k| k == "message") {
                    let got = format!("message on {CHANNEL}: {} → client-{client}", frame[2..].join(" "));
                    self.r.nodes[k].wire.push(got);
                    a.sends.push((client, Wire::Lock(Msg::Published)));
                }
            }
        }
        Ok(())
    }
}

/// What the real master holds, as the model's stream carries it: the hash's one field and count,
/// and the key's expiry instant.
fn hash(n: &mut RedisNode) -> Result<Option<Hash>, RealError> {
    let fields = n.cmd(&["HGETALL", "lock"])?;
    let Value::Array(items) = fields else {
        return Err(RealError::Talk { server: n.process.name.clone(), why: "HGETALL answered no array".into() });
    };
    let [field, count] = items.as_slice() else {
        n.key = None;
        return Ok(None);
    };
    let field = String::from_utf8_lossy(match field {
        Value::BulkString(b) => b,
        _ => &[][..],
    })
    .into_owned();
    let owner = owner(&field).ok_or_else(|| RealError::Talk {
        server: n.process.name.clone(),
        why: format!("the lock hash holds `{field}`, not a field of lockcheck's"),
    })?;
    n.remember(field)?;
    let expires_at = n.key.as_ref().map_or(0, |(_, when)| n.tick_of(*when));
    Ok(Some(Hash { owner, count: int(count) as u8, expires_at }))
}

/// What a node streams: the hash it holds, read from it, and its count of unlock messages.
fn streamed(published: u32) -> impl FnOnce(&mut RedisNode) -> Result<Streamed, RealError> {
    move |n| Ok(Streamed { lock: hash(n)?, published })
}

impl Counterpart<Redisson> for RedissonLock {
    fn system(&self) -> String {
        self.system.clone()
    }

    fn on_msg(&mut self, k: usize, from: NodeId, msg: &Msg, now: i64) -> Result<Answer<Msg>, RealError> {
        self.r.nodes[k].at(now)?;
        let mut a = Answer::default();
        match msg {
            Msg::TryLock => self.try_lock(k, from, &mut a)?,
            Msg::Renew => self.renew(k, from, &mut a)?,
            Msg::Unlock => self.unlock(k, from, &mut a)?,
            Msg::Subscribe => self.subscribe(k, from, &mut a)?,
            Msg::Unsubscribe => {
                if self.subscribers.remove(&(k, from)).is_some() {
                    self.r.nodes[k].wire.push(format!("client-{from}'s pub/sub connection closed (UNSUBSCRIBE)"));
                }
            }
            Msg::Repl(m) => {
                let took = self.r.on_msg(k, (from, m), streamed(self.published[k]), &mut a)?;
                if let (true, ReplMsg::Replicate { state, .. } | ReplMsg::FullResync { state, .. }) = (took, m) {
                    self.published[k] = state.published;
                }
            }
            Msg::Locked | Msg::Held { .. } | Msg::Renewed { .. } | Msg::NotOwner | Msg::Subscribed | Msg::Published => {
            }
        }
        self.published(k, &mut a)?;
        self.r.finish(k, a)
    }

    fn on_timer(&mut self, k: usize, timer: &Timer, now: i64) -> Result<Answer<Msg>, RealError> {
        let mut a = Answer::default();
        match timer {
            Timer::Expire => {
                if self.r.serves(k)
                    && let Some(client) = self.r.nodes[k].lapse(now)?.as_deref().and_then(owner)
                {
                    a.observed.push(Observation::Expired { client });
                    self.r.forget(k);
                }
            }
            Timer::Repl(ReplTimer::Heartbeat) => self.r.stream(k, streamed(self.published[k]), &mut a)?,
            Timer::Repl(ReplTimer::MasterDown) => {
                self.r.nodes[k].at(now)?;
                self.r.promote(k, &mut a)?;
            }
            Timer::Watchdog | Timer::RenewRetry | Timer::Timeout | Timer::Wake => {}
        }
        self.r.finish(k, a)
    }

    fn crash(&mut self, k: usize) -> Vec<String> {
        // Subscriptions live in the server's memory: they go with it.
        self.subscribers.retain(|&(node, _), _| node != k);
        self.r.crash(k)
    }

    fn restart(&mut self, k: usize, wiped: bool, now: i64) -> Result<Vec<String>, RealError> {
        self.published[k] = 0;
        self.r.restart(k, wiped, now)
    }

    fn fresh(&mut self, _servers: usize, base: i64) -> Result<(), RealError> {
        self.subscribers.clear();
        self.published.iter_mut().for_each(|c| *c = 0);
        self.r.fresh(base)
    }
}

#[cfg(test)]
mod tests {
    use super::resp;

    #[test]
    fn a_pushed_message_is_read_whole_or_not_at_all() {
        let frame = b"*3\r\n$7\r\nmessage\r\n$29\r\nredisson_lock__channel:{lock}\r\n$1\r\n0\r\n";
        let (items, used) = resp(frame).expect("complete");
        assert_eq!((items[0].as_str(), items[2].as_str(), used), ("message", "0", frame.len()));
        assert_eq!(resp(&frame[..frame.len() - 3]), None);
        assert_eq!(resp(b":1\r\n"), Some((vec!["1".to_string()], 4)));
    }
}

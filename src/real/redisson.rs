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
//! With replicas the family is not confirmed: real replication streams by itself.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use redis::Value;

use super::process::{REPLY_BOUND, Sandbox, find_binary};
use super::redis::{RedisNode, int, resp, take_wire, version};
use super::{Answer, Counterpart, RealCfg, RealError, owner};
use crate::protocol::redisson::{Msg, Redisson, Timer};
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

/// The `redisson` family on one real Redis.
pub struct RedissonLock {
    node: RedisNode,
    /// The lease in milliseconds.
    lease_ms: String,
    subscribers: std::collections::BTreeMap<NodeId, Subscriber>,
    system: String,
    _sandbox: Sandbox,
}

impl RedissonLock {
    pub fn start(p: &Redisson, cfg: RealCfg) -> Result<RedissonLock, RealError> {
        if p.replicated() {
            return Err(RealError::Unsupported(
                "with replicas is not confirmed: real replication streams by itself, lockcheck cannot hold or drop it"
                    .into(),
            ));
        }
        let system = version(&find_binary("redis-server", "redis-server", &[])?);
        let sandbox = Sandbox::new()?;
        let node = RedisNode::start(&sandbox, "redis", true, cfg)?;
        let lease_ms = (p.lease() * cfg.tick_ms).to_string();
        Ok(RedissonLock { node, lease_ms, subscribers: Default::default(), system, _sandbox: sandbox })
    }

    fn try_lock(&mut self, from: NodeId, a: &mut Answer<Msg>) -> Result<(), RealError> {
        let me = field(from);
        let v = self.node.script(TRY_LOCK, &["lock"], &[&self.lease_ms, &me])?;
        if v != Value::Nil {
            let pttl = int(&v) / self.node.tick_ms;
            a.sends.push((from, Wire::Lock(Msg::Held { pttl })));
            return Ok(());
        }
        // The script answers nil to a first and a nested hold alike; the count tells them apart.
        if int(&self.node.cmd(&["HGET", "lock", &me])?) == 1 {
            a.observed.push(Observation::Granted { client: from, token: None });
        }
        self.node.remember(me)?;
        a.sends.push((from, Wire::Lock(Msg::Locked)));
        Ok(())
    }

    fn unlock(&mut self, from: NodeId, a: &mut Answer<Msg>) -> Result<(), RealError> {
        let me = field(from);
        match self.node.script(UNLOCK, &["lock", CHANNEL], &["0", &self.lease_ms, &me])? {
            Value::Nil => a.sends.push((from, Wire::Lock(Msg::NotOwner))),
            v if int(&v) == 1 => self.node.key = None,
            _ => self.node.remember(me)?,
        }
        Ok(())
    }

    /// The unlock messages that reached the subscribers.
    fn published(&mut self, a: &mut Answer<Msg>) -> Result<(), RealError> {
        for (&client, sub) in self.subscribers.iter_mut() {
            for frame in sub.frames(Duration::from_millis(10))? {
                if frame.first().is_some_and(|k| k == "message") {
                    self.node.wire.push(format!("message on {CHANNEL}: {} → client-{client}", frame[2..].join(" ")));
                    a.sends.push((client, Wire::Lock(Msg::Published)));
                }
            }
        }
        Ok(())
    }
}

impl Counterpart<Redisson> for RedissonLock {
    fn system(&self) -> String {
        self.system.clone()
    }

    fn on_msg(&mut self, _server: usize, from: NodeId, msg: &Msg, now: i64) -> Result<Answer<Msg>, RealError> {
        self.node.at(now)?;
        let mut a = Answer::default();
        match msg {
            Msg::TryLock => self.try_lock(from, &mut a)?,
            Msg::Renew => {
                let me = field(from);
                let ok = int(&self.node.script(RENEW, &["lock"], &[&self.lease_ms, &me])?) == 1;
                if ok {
                    self.node.remember(me)?;
                }
                a.sends.push((from, Wire::Lock(Msg::Renewed { ok })));
            }
            Msg::Unlock => self.unlock(from, &mut a)?,
            Msg::Subscribe => {
                let port = self.node.port();
                let sub = match self.subscribers.entry(from) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => e.insert(Subscriber::open(port)?),
                };
                sub.subscribe()?;
                self.node.wire.push(format!("client-{from}'s pub/sub connection: SUBSCRIBE {CHANNEL} → subscribed"));
                a.sends.push((from, Wire::Lock(Msg::Subscribed)));
            }
            Msg::Unsubscribe => {
                if self.subscribers.remove(&from).is_some() {
                    self.node.wire.push(format!("client-{from}'s pub/sub connection closed (UNSUBSCRIBE)"));
                }
            }
            Msg::Repl(_) => return Err(RealError::Unsupported("replication is not confirmed".into())),
            Msg::Locked | Msg::Held { .. } | Msg::Renewed { .. } | Msg::NotOwner | Msg::Subscribed | Msg::Published => {
            }
        }
        self.published(&mut a)?;
        a.wire = take_wire(&mut self.node);
        Ok(a)
    }

    fn on_timer(&mut self, _server: usize, timer: &Timer, now: i64) -> Result<Answer<Msg>, RealError> {
        let mut a = Answer::default();
        if let Timer::Expire = timer
            && let Some(client) = self.node.lapse(now)?.as_deref().and_then(owner)
        {
            a.observed.push(Observation::Expired { client });
        }
        a.wire = take_wire(&mut self.node);
        Ok(a)
    }

    fn crash(&mut self, _server: usize) -> Vec<String> {
        // Subscriptions live in the server's memory: they go with it.
        self.subscribers.clear();
        self.node.crash()
    }

    fn restart(&mut self, _server: usize, wiped: bool, now: i64) -> Result<Vec<String>, RealError> {
        self.node.restart(wiped, true, now)
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

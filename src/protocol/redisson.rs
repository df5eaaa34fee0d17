//! `redisson`: Redisson's `RLock` on one Redis (`RedissonLock.java`; Redisson docs "Locks and
//! synchronizers"; catalog #19–#22, A.0).
//!
//! The lock is a hash `{owner: count}` changed by Lua scripts: `tryLock` creates it or increments
//! the caller's own field (reentrant per owner, `uuid:threadId` in Redisson, the client here) and
//! sets its TTL, else returns the key's PTTL; `unlock` by a non-owner is refused
//! (`IllegalMonitorStateException`), and at count 0 deletes the key and publishes on
//! `redisson_lock__channel:{lock}`. A waiter subscribes to that channel and then waits for the
//! message or for the PTTL it was told, whichever comes first, and tries again: a lost or late
//! message only delays it (a key that *expires* publishes nothing, so the PTTL wait is what wakes
//! waiters then).
//!
//! Knobs and the failure each exposes:
//! - `lease` (ticks, default unset). Unset: the lease is `lockWatchdogTimeout` (the spec's
//!   `ttl_ticks`, 30 s by default) and a watchdog in the client renews it every `watchdog_every`
//!   while the owner holds the lock. The watchdog is a thread of the owner's process: a GC pause
//!   longer than the lease stops it and the lock expires under the paused owner (catalog #19,
//!   Redisson #2665; `mutual_exclusion`, `no_stale_write`), while an application thread stuck
//!   with the process alive (`hang`) keeps it renewing forever, so nobody else ever gets the lock
//!   (catalog #20, Redisson #3521; `deadlock_free`). Set: no watchdog; the lock expires `lease`
//!   after the last acquire whatever the owner does.
//! - `watchdog_every` (ticks, default a third of the lease: `internalLockLeaseTime / 3`).
//! - `retry_attempts` (default 3, Redisson's `retryAttempts`; each after the response timeout, a
//!   tenth of the lease): a renewal still unanswered after them ends the watchdog for good, because
//!   `renewExpiration` gives up on an error instead of scheduling the next renewal; the key then
//!   expires under an owner that works longer than the lease (catalog #19, Redisson #5698).
//! - `pubsub` (default true). Off: waiters poll every tick instead of subscribing (the `SpinLock`
//!   the docs suggest against pub/sub load): more requests to Redis per acquisition, no lost
//!   wake-ups.
//! - `replicas`, `down_after`, `min_replicas_to_ack`: the Redis behind the lock has asynchronous
//!   replicas and Sentinel fails over ([`super::replication`], as for `redis`). A lock hash the
//!   master had not streamed when it crashed is gone from the promoted replica, and a second client
//!   locks it (catalog #6; the Redisson FAQ and the `RedissonRedLock` deprecation note point at the
//!   same gap). The promoted replica keeps the key's absolute expiry, as Redis 7 replicates
//!   `PEXPIREAT`; pub/sub subscriptions are not replicated, so waiters subscribe again on
//!   `+switch-master`, as Redisson's connection manager does. A replica takes a subscription
//!   too (a waiter that still thinks it the master), and Redis replicates `PUBLISH`: the
//!   replica's subscribers get the unlock messages its stream carries, not those of a full
//!   sync's snapshot.

use serde::{Deserialize, Serialize};

use super::replication::{self, ReplMsg, ReplState, ReplTimer, Replicated, Replication, Role, Sync};
use crate::protocol::{Ids, LockEvent, NodeId, Observation, PCx, Protocol, ResourceHome};
use crate::resource::Fencing;
use crate::spec::Env;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    pub lease: Option<i64>,
    pub watchdog_every: Option<i64>,
    pub pubsub: bool,
    pub retry_attempts: u8,
    pub replicas: usize,
    pub down_after: Option<i64>,
    pub min_replicas_to_ack: u8,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lease: None,
            watchdog_every: None,
            pubsub: true,
            retry_attempts: 3,
            replicas: 0,
            down_after: None,
            min_replicas_to_ack: 0,
        }
    }
}

pub fn build(o: Options, env: &Env) -> Result<Redisson, (String, String)> {
    if !env.timed {
        return Err(("lease".into(), "Redisson's leases and watchdog need time.mode = \"discrete\"".into()));
    }
    let watchdog = match (o.lease, o.watchdog_every) {
        (Some(_), Some(_)) => {
            return Err((
                "watchdog_every".into(),
                "an explicit lease disables the watchdog: leave one of lease and watchdog_every unset".into(),
            ));
        }
        (Some(l), None) if l < 1 => return Err(("lease".into(), format!("must be at least 1 tick, got {l}"))),
        (Some(_), None) => None,
        (None, Some(w)) if w < 1 || w >= env.ttl => {
            return Err((
                "watchdog_every".into(),
                format!("must be 1..ttl_ticks ({}) so a renewal comes before the lease ends, got {w}", env.ttl),
            ));
        }
        (None, Some(w)) => Some(w),
        (None, None) => Some((env.ttl / 3).max(1)),
    };
    Ok(Redisson {
        lease: o.lease.unwrap_or(env.ttl),
        watchdog,
        pubsub: o.pubsub,
        retry_attempts: o.retry_attempts,
        server: env.clients,
        replication: Replication::from_knobs(o.replicas, o.down_after, o.min_replicas_to_ack, env)?,
    })
}

pub struct Redisson {
    /// The TTL every `tryLock`, renewal and nested `unlock` sets.
    lease: i64,
    /// How often the watchdog renews; `None`: no watchdog (explicit lease).
    watchdog: Option<i64>,
    pubsub: bool,
    retry_attempts: u8,
    /// The first server: the master until a failover.
    server: NodeId,
    replication: Option<Replication>,
}

/// The lock key: a hash with one field, its owner's hold count.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hash {
    pub owner: NodeId,
    pub count: u8,
    /// When the key expires, on the server's clock.
    pub expires_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Server {
    pub lock: Option<Hash>,
    /// Connections subscribed to the unlock channel, in id order. They die with the server.
    pub subscribers: Vec<NodeId>,
    /// Unlock messages published by this node's line of masters, as far as its stream reached
    /// it (replicated servers only).
    pub published: u32,
    pub repl: Option<ReplState<Msg>>,
}

/// What the master streams: the lock hash, and its count of unlock messages (a replica's
/// subscribers get the ones published since its last stream).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Streamed {
    pub lock: Option<Hash>,
    pub published: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Durable {
    /// Role and epoch of a replicated server.
    pub role: Option<(Role, u8)>,
    pub lock: Option<Hash>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Msg {
    TryLock,
    /// `nil`: the caller holds the lock (again).
    Locked,
    /// The key's remaining TTL: someone else holds it.
    Held {
        pttl: i64,
    },
    /// The watchdog's `renewExpiration`.
    Renew,
    Renewed {
        ok: bool,
    },
    Unlock,
    /// `unlock` by a client that does not hold the lock (`IllegalMonitorStateException`).
    NotOwner,
    Subscribe,
    Subscribed,
    Unsubscribe,
    /// The unlock message on the channel.
    Published,
    /// Replication and Sentinel: the master streams the lock hash.
    Repl(ReplMsg<Streamed>),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// The key's TTL runs out (server).
    Expire,
    /// The watchdog renews the lease (client, a library thread).
    Watchdog,
    /// A renewal got no answer within `retryInterval`: send it again, or give up.
    RenewRetry,
    /// A `tryLock` or `SUBSCRIBE` got no answer: send it again (client).
    Timeout,
    /// The waiter's latch times out after the PTTL it was told (client).
    Wake,
    Repl(ReplTimer),
}

/// Where the client's lock library is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Step {
    #[default]
    Idle,
    /// A `tryLock` is on its way.
    Trying,
    /// A `SUBSCRIBE` is on its way.
    Subscribing,
    /// Subscribed, waiting for the unlock message or the PTTL.
    Waiting,
    Holding,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Lib {
    pub step: Step,
    /// Nested holds the application has not released yet.
    pub depth: u8,
    pub subscribed: bool,
    /// An unlock message arrived while the waiter was not waiting yet: the latch is a semaphore,
    /// so the permit is kept for the next wait (no lost wake-up).
    pub permit: bool,
    pub renewing: bool,
    /// Retries of the renewal on its way.
    pub renew_tries: u8,
    /// The server the library believes is the master (index among the servers).
    pub master: u8,
}

impl Redisson {
    /// The TTL every `tryLock`, renewal and nested `unlock` sets, in ticks.
    pub(crate) fn lease(&self) -> i64 {
        self.lease
    }

    fn fresh(&self, index: usize, was: Option<Option<(Role, u8)>>, cx: &mut PCx<Self>) -> Server {
        Server { lock: None, subscribers: Vec::new(), published: 0, repl: replication::start(self, index, was, cx) }
    }

    /// The lock hash changed: a new replication offset, and the disk.
    fn changed(&self, s: &mut Server, cx: &mut PCx<Self>) {
        replication::changed::<Self>(s);
        self.save(s, cx);
    }

    /// The key's TTL runs on a master only, to its absolute expiry (`PEXPIREAT`): a promoted
    /// replica's key whose time has passed goes at once.
    fn expire_in_time(&self, h: &Hash, cx: &mut PCx<Self>) {
        cx.set_lock_timer(Timer::Expire, (h.expires_at - cx.now).max(0));
    }

    fn set_lease(&self, h: &mut Hash, cx: &mut PCx<Self>) {
        h.expires_at = cx.now + self.lease;
        cx.set_lock_timer(Timer::Expire, self.lease);
    }

    fn try_lock(&self, s: &mut Server, from: NodeId, cx: &mut PCx<Self>) {
        match &mut s.lock {
            None => {
                let mut h = Hash { owner: from, count: 1, expires_at: 0 };
                self.set_lease(&mut h, cx);
                s.lock = Some(h);
                cx.observe(Observation::Granted { client: from, token: None });
                self.changed(s, cx);
                replication::answer(self, s, from, Msg::Locked, cx);
            }
            Some(h) if h.owner == from => {
                assert!(h.count < u8::MAX, "hold count overflow: a client re-acquired without bound");
                h.count += 1;
                self.set_lease(h, cx);
                self.changed(s, cx);
                replication::answer(self, s, from, Msg::Locked, cx);
            }
            Some(h) => {
                let pttl = h.expires_at - cx.now;
                cx.send_lock(from, Msg::Held { pttl });
            }
        }
    }

    fn unlock(&self, s: &mut Server, from: NodeId, cx: &mut PCx<Self>) {
        let Some(h) = s.lock.as_mut().filter(|h| h.owner == from) else {
            cx.send_lock(from, Msg::NotOwner);
            return;
        };
        h.count -= 1;
        if h.count > 0 {
            self.set_lease(h, cx);
        } else {
            s.lock = None;
            replication::forget_pending::<Self>(s);
            cx.cancel_lock_timer(Timer::Expire);
            publish(s, cx);
            if s.repl.is_some() {
                s.published += 1;
            }
        }
        self.changed(s, cx);
    }

    /// What a replica answers a client: a script that would write is refused (`-READONLY`), one
    /// that only reads answers from what the replica holds, hiding a key its own clock has
    /// expired (found by `lockcheck confirm sims/redisson_failover.toml --seeds`: the model
    /// refused an unlock that the real replica answered with nil, the caller holding nothing).
    fn on_replica(&self, s: &Server, from: NodeId, msg: &Msg, now: i64) -> Msg {
        let held = s.lock.as_ref().filter(|h| h.expires_at >= now);
        let mine = held.is_some_and(|h| h.owner == from);
        match (msg, held) {
            (Msg::TryLock, Some(h)) if !mine => Msg::Held { pttl: h.expires_at - now },
            (Msg::Renew, _) if !mine => Msg::Renewed { ok: false },
            (Msg::Unlock, _) if !mine => Msg::NotOwner,
            _ => Msg::Repl(ReplMsg::ReadOnly),
        }
    }

    /// Redisson's `timeout` (3 s) against the 30 s watchdog: a tenth of the lease, at least a tick.
    /// A `tryLock` retried after a timeout while the first one succeeded counts the hold twice, so
    /// the key outlives the owner's unlock until its TTL: the real cost of too short a timeout.
    /// With `WAIT` it is at least three ticks: the real timeout is far above a `WAIT`'s round trip
    /// (milliseconds), while here the stream goes once a tick and the acknowledgement comes back
    /// the tick after.
    fn response_timeout(&self) -> i64 {
        let wait = self.replication.is_some_and(|r| r.min_acks > 0);
        (self.lease / 10).max(if wait { 3 } else { 1 })
    }

    /// Sends the request of `step` (a `tryLock` or a `SUBSCRIBE`), again after a timeout.
    fn ask(&self, c: &mut Lib, step: Step, cx: &mut PCx<Self>) {
        let msg = match step {
            Step::Trying => Msg::TryLock,
            Step::Subscribing => Msg::Subscribe,
            Step::Idle | Step::Waiting | Step::Holding => unreachable!("only tryLock and SUBSCRIBE are asked"),
        };
        c.step = step;
        cx.send_lock(replication::master_node(self, c.master), msg);
        cx.set_lock_timer(Timer::Timeout, self.response_timeout());
    }

    fn locked(&self, c: &mut Lib, cx: &mut PCx<Self>) -> LockEvent<()> {
        cx.cancel_lock_timer(Timer::Timeout);
        cx.cancel_lock_timer(Timer::Wake);
        c.step = Step::Holding;
        c.depth += 1;
        if c.depth == 1
            && let Some(every) = self.watchdog
        {
            c.renewing = true;
            cx.set_lock_timer(Timer::Watchdog, every);
        }
        c.permit = false;
        if c.subscribed {
            c.subscribed = false;
            cx.send_lock(replication::master_node(self, c.master), Msg::Unsubscribe);
        }
        LockEvent::Granted { hold: (), token: None, valid_for: None }
    }

    fn renew(&self, c: &Lib, cx: &mut PCx<Self>) {
        cx.send_lock(replication::master_node(self, c.master), Msg::Renew);
        cx.set_lock_timer(Timer::RenewRetry, self.response_timeout());
    }

    fn stop_watchdog(&self, c: &mut Lib, cx: &mut PCx<Self>) {
        c.renewing = false;
        c.renew_tries = 0;
        cx.cancel_lock_timer(Timer::Watchdog);
        cx.cancel_lock_timer(Timer::RenewRetry);
    }

    fn held(&self, c: &mut Lib, pttl: i64, cx: &mut PCx<Self>) -> LockEvent<()> {
        cx.cancel_lock_timer(Timer::Timeout);
        c.step = Step::Idle;
        if !self.pubsub {
            return LockEvent::Busy { retry_after: 1 };
        }
        if !c.subscribed {
            self.ask(c, Step::Subscribing, cx);
            return LockEvent::Queued;
        }
        if std::mem::take(&mut c.permit) {
            self.ask(c, Step::Trying, cx);
            return LockEvent::Queued;
        }
        c.step = Step::Waiting;
        cx.set_lock_timer(Timer::Wake, pttl.max(1));
        LockEvent::Queued
    }
}

/// The unlock message reaches every connection subscribed on this server.
fn publish(s: &Server, cx: &mut PCx<Redisson>) {
    for &sub in &s.subscribers {
        cx.send_lock(sub, Msg::Published);
    }
}

impl Protocol for Redisson {
    type Server = Server;
    type Client = Lib;
    type Msg = Msg;
    type Timer = Timer;
    type Durable = Durable;
    /// Redisson names a hold by its owner alone: the client is the hold.
    type Hold = ();

    fn servers(&self) -> Vec<String> {
        let replicas = self.replication.map_or(0, |r| r.replicas);
        std::iter::once("redis".to_string()).chain((1..=replicas).map(|i| format!("replica-{i}"))).collect()
    }

    fn resource(&self) -> ResourceHome {
        ResourceHome::Storage(Fencing::None)
    }

    fn issues_tokens(&self) -> bool {
        false
    }

    fn server_start(&self, index: usize, cx: &mut PCx<Self>) -> Server {
        self.fresh(index, None, cx)
    }

    /// Redis drops keys whose TTL passed while it was down when it loads them.
    fn server_restart(&self, index: usize, durable: Option<&Durable>, cx: &mut PCx<Self>) -> Server {
        let mut s = self.fresh(index, Some(durable.and_then(|d| d.role)), cx);
        let Some(h) = durable.and_then(|d| d.lock.clone()) else { return s };
        let serves = replication::serves::<Self>(&s);
        // One that ends at this very tick stands until its timer fires, as Redis expires a key
        // once its clock has passed the instant (found by `confirm sims/redisson_failover.toml
        // --seeds`, as it was for `redis`).
        if serves && h.expires_at < cx.now {
            cx.observe(Observation::Expired { client: h.owner });
            self.save(&s, cx);
            return s;
        }
        if serves {
            self.expire_in_time(&h, cx);
        }
        s.lock = Some(h);
        s
    }

    fn server_on_msg(&self, s: &mut Server, from: NodeId, msg: Msg, cx: &mut PCx<Self>) {
        match msg {
            Msg::TryLock | Msg::Renew | Msg::Unlock if !replication::serves::<Self>(s) => {
                cx.send_lock(from, self.on_replica(s, from, &msg, cx.now));
            }
            Msg::TryLock => self.try_lock(s, from, cx),
            Msg::Renew => {
                let mine = s.lock.as_mut().filter(|h| h.owner == from);
                let ok = mine.is_some();
                if let Some(h) = mine {
                    self.set_lease(h, cx);
                    self.changed(s, cx);
                }
                cx.send_lock(from, Msg::Renewed { ok });
            }
            Msg::Unlock => self.unlock(s, from, cx),
            Msg::Subscribe => {
                if let Err(i) = s.subscribers.binary_search(&from) {
                    s.subscribers.insert(i, from);
                }
                cx.send_lock(from, Msg::Subscribed);
            }
            Msg::Unsubscribe => s.subscribers.retain(|&c| c != from),
            Msg::Repl(m) => replication::on_msg(self, s, from, m, cx),
            Msg::Locked | Msg::Held { .. } | Msg::Renewed { .. } | Msg::NotOwner | Msg::Subscribed | Msg::Published => {
            }
        }
    }

    fn server_on_timer(&self, s: &mut Server, timer: Timer, cx: &mut PCx<Self>) {
        match timer {
            Timer::Repl(t) => replication::on_timer(self, s, t, cx),
            Timer::Expire if replication::serves::<Self>(s) => {
                if let Some(h) = s.lock.take() {
                    cx.observe(Observation::Expired { client: h.owner });
                    replication::forget_pending::<Self>(s);
                    self.changed(s, cx);
                }
            }
            _ => {}
        }
    }

    fn acquire(&self, c: &mut Lib, cx: &mut PCx<Self>) -> LockEvent<()> {
        self.ask(c, Step::Trying, cx);
        LockEvent::Ignore
    }

    fn release(&self, c: &mut Lib, _: &(), cx: &mut PCx<Self>) {
        assert!(c.depth > 0, "the application released a Redisson lock its library never handed out");
        c.depth -= 1;
        cx.send_lock(replication::master_node(self, c.master), Msg::Unlock);
        if c.depth == 0 {
            c.step = Step::Idle;
            self.stop_watchdog(c, cx);
        }
    }

    fn client_on_msg(&self, c: &mut Lib, from: NodeId, msg: Msg, cx: &mut PCx<Self>) -> LockEvent<()> {
        match (c.step, msg) {
            (Step::Trying, Msg::Locked) => self.locked(c, cx),
            (Step::Trying, Msg::Held { pttl }) => self.held(c, pttl, cx),
            (Step::Subscribing, Msg::Subscribed) => {
                c.subscribed = true;
                self.ask(c, Step::Trying, cx);
                LockEvent::Ignore
            }
            (_, Msg::Subscribed) => {
                c.subscribed = true;
                LockEvent::Ignore
            }
            (Step::Waiting, Msg::Published) => {
                cx.cancel_lock_timer(Timer::Wake);
                self.ask(c, Step::Trying, cx);
                LockEvent::Ignore
            }
            (Step::Trying | Step::Subscribing, Msg::Published) => {
                c.permit = true;
                LockEvent::Ignore
            }
            (Step::Holding, Msg::Renewed { ok: true }) if c.renewing => {
                cx.cancel_lock_timer(Timer::RenewRetry);
                c.renew_tries = 0;
                if let Some(every) = self.watchdog {
                    cx.set_lock_timer(Timer::Watchdog, every);
                }
                LockEvent::Ignore
            }
            (_, Msg::Renewed { ok: false }) => {
                self.stop_watchdog(c, cx);
                LockEvent::Ignore
            }
            (step, Msg::Repl(ReplMsg::ReadOnly)) => {
                replication::next_master(self, &mut c.master);
                if !matches!(step, Step::Trying | Step::Subscribing) {
                    // A refused renewal is sent again by its retry timer, now to the next node.
                    return LockEvent::Ignore;
                }
                cx.cancel_lock_timer(Timer::Timeout);
                c.step = Step::Idle;
                LockEvent::Busy { retry_after: 1 }
            }
            (_, Msg::Repl(ReplMsg::SwitchMaster)) => {
                replication::switch_master(self, &mut c.master, from);
                if c.subscribed {
                    cx.send_lock(from, Msg::Subscribe);
                }
                LockEvent::Ignore
            }
            _ => LockEvent::Ignore,
        }
    }

    fn client_on_timer(&self, c: &mut Lib, timer: Timer, cx: &mut PCx<Self>) -> LockEvent<()> {
        match (c.step, timer) {
            (Step::Holding, Timer::Watchdog) => {
                assert!(c.renewing, "a watchdog timer outlived its watchdog: stop_watchdog cancels it");
                self.renew(c, cx);
            }
            (Step::Holding, Timer::RenewRetry) if c.renewing && c.renew_tries < self.retry_attempts => {
                c.renew_tries += 1;
                replication::next_master(self, &mut c.master);
                self.renew(c, cx);
            }
            (_, Timer::RenewRetry) => self.stop_watchdog(c, cx),
            (step @ (Step::Trying | Step::Subscribing), Timer::Timeout) => {
                replication::next_master(self, &mut c.master);
                self.ask(c, step, cx);
            }
            (Step::Waiting, Timer::Wake) => self.ask(c, Step::Trying, cx),
            _ => {}
        }
        LockEvent::Ignore
    }

    fn dies_with_connection(&self, msg: &Msg) -> bool {
        matches!(msg, Msg::Repl(m) if replication::on_connection(m))
    }

    fn show_msg(&self, from: NodeId, msg: &Msg) -> String {
        let me = format!("c{from}:thread-1");
        let channel = "redisson_lock__channel:{lock}";
        match msg {
            Msg::TryLock => {
                format!(
                    "EVAL tryLock: HINCRBY lock {me} 1 + PEXPIRE lock {} if free or own, else PTTL lock",
                    self.lease
                )
            }
            Msg::Locked => "(nil): locked".into(),
            Msg::Held { pttl } => format!("{pttl}: PTTL of a lock held by another owner"),
            Msg::Renew => format!("EVAL renewExpiration: if HEXISTS lock {me} then PEXPIRE lock {}", self.lease),
            Msg::Renewed { ok: true } => "1: renewed".into(),
            Msg::Renewed { ok: false } => "0: not the owner any more, the watchdog stops".into(),
            Msg::Unlock => {
                format!("EVAL unlock: HINCRBY lock {me} -1; at 0 DEL lock and PUBLISH {channel} 0")
            }
            Msg::NotOwner => {
                "(nil): IllegalMonitorStateException: attempt to unlock lock, not locked by current thread".into()
            }
            Msg::Subscribe => format!("SUBSCRIBE {channel}"),
            Msg::Subscribed => "subscribed".into(),
            Msg::Unsubscribe => format!("UNSUBSCRIBE {channel}"),
            Msg::Published => format!("message on {channel}: 0 (unlocked)"),
            Msg::Repl(m) => replication::show_msg(m, |s: &Streamed| {
                let lock = match &s.lock {
                    Some(h) => format!("lock = {{c{}:thread-1: {}}}, expires at {}", h.owner, h.count, h.expires_at),
                    None => "no lock key".into(),
                };
                match s.published {
                    0 => lock,
                    n => format!("{lock}; PUBLISH {channel} 0 ×{n} in all"),
                }
            }),
        }
    }

    fn show_timer(&self, timer: &Timer) -> String {
        match timer {
            Timer::Expire => "key lock expires (PEXPIRE)".into(),
            Timer::Watchdog => format!("watchdog: renewExpiration every {} ticks", self.watchdog.unwrap_or(0)),
            Timer::RenewRetry => format!("renewal unanswered: retry (retryAttempts {})", self.retry_attempts),
            Timer::Timeout => "response timeout: retry".into(),
            Timer::Wake => "latch tryAcquire(PTTL) times out".into(),
            Timer::Repl(t) => replication::show_timer(*t),
        }
    }
}

impl crate::protocol::Ids for Server {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        self.lock.map_ids(f);
        self.subscribers.iter_mut().for_each(|c| *c = f(*c));
        self.subscribers.sort_unstable();
        self.repl.map_ids(f);
    }
}

impl Replicated for Redisson {
    type Snapshot = Streamed;

    fn save(&self, s: &Server, cx: &mut PCx<Self>) {
        cx.persist(Durable { role: replication::role::<Self>(s), lock: s.lock.clone() });
    }

    fn replication(&self) -> Option<Replication> {
        self.replication
    }

    fn first_server(&self) -> NodeId {
        self.server
    }

    fn repl(s: &Server) -> Option<&ReplState<Msg>> {
        s.repl.as_ref()
    }

    fn repl_mut(s: &mut Server) -> Option<&mut ReplState<Msg>> {
        s.repl.as_mut()
    }

    fn snapshot(s: &Server) -> Streamed {
        Streamed { lock: s.lock.clone(), published: s.published }
    }

    fn install(&self, s: &mut Server, state: Streamed, how: Sync, cx: &mut PCx<Self>) {
        if how == Sync::Stream {
            for _ in s.published..state.published {
                publish(s, cx);
            }
        }
        s.published = state.published;
        s.lock = state.lock;
        self.save(s, cx);
    }

    fn set_master(&self, s: &Server, master: bool, cx: &mut PCx<Self>) {
        match (&s.lock, master) {
            (Some(h), true) => self.expire_in_time(h, cx),
            (Some(_), false) => cx.cancel_lock_timer(Timer::Expire),
            (None, _) => {}
        }
    }

    fn wrap(m: ReplMsg<Streamed>) -> Msg {
        Msg::Repl(m)
    }

    fn wrap_timer(t: ReplTimer) -> Timer {
        Timer::Repl(t)
    }
}

impl Ids for Msg {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        if let Msg::Repl(m) = self {
            m.map_ids(f);
        }
    }
}

impl Ids for Durable {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        self.lock.map_ids(f);
    }
}

impl Ids for Streamed {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        self.lock.map_ids(f);
    }
}

impl crate::protocol::Ids for Hash {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        self.owner = f(self.owner);
    }
}

crate::no_ids!(Timer, Lib);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Effect, Tmr, lock_sends};
    use crate::spec::Workload;

    fn redisson(o: Options) -> Redisson {
        build(o, &Env::test(3, Workload::CriticalWrite, 9, 1)).unwrap()
    }

    fn cx(now: i64) -> PCx<Redisson> {
        PCx::<Redisson>::new(3, now)
    }

    fn timers(c: &PCx<Redisson>) -> Vec<(Timer, i64)> {
        crate::protocol::lock_timers(c)
    }

    fn cancelled(c: &PCx<Redisson>, t: Timer) -> bool {
        c.effects.contains(&Effect::CancelTimer { timer: Tmr::Lock(t) })
    }

    #[test]
    fn the_knobs_need_discrete_time_a_lease_of_a_tick_or_a_watchdog_inside_the_lease() {
        let env = Env::test(3, Workload::CriticalWrite, 9, 1);
        let field = |o: Options| build(o, &env).err().map(|(f, _)| f);
        let untimed = Env { timed: false, ..env.clone() };
        assert_eq!(build(Options::default(), &untimed).err().map(|(f, _)| f).as_deref(), Some("lease"));
        assert_eq!(field(Options { lease: Some(0), ..Options::default() }).as_deref(), Some("lease"));
        assert_eq!(field(Options { watchdog_every: Some(0), ..Options::default() }).as_deref(), Some("watchdog_every"));
        assert_eq!(field(Options { replicas: 4, ..Options::default() }).as_deref(), Some("replicas"));
        let built = |o: Options| build(o, &env).map(|r| (r.lease(), r.watchdog)).ok();
        assert_eq!(built(Options { lease: Some(1), ..Options::default() }), Some((1, None)));
        assert_eq!(built(Options { watchdog_every: Some(1), ..Options::default() }), Some((9, Some(1))));
        assert_eq!(built(Options { watchdog_every: Some(8), ..Options::default() }), Some((9, Some(8))));
        assert_eq!(built(Options::default()), Some((9, Some(3))), "lockWatchdogTimeout / 3");
        let short = Env::test(3, Workload::CriticalWrite, 2, 1);
        assert_eq!(build(Options::default(), &short).map(|r| r.watchdog).ok(), Some(Some(1)), "at least a tick");
    }

    #[test]
    fn the_response_timeout_is_a_tenth_of_the_lease_at_least_a_tick_and_three_with_wait() {
        let timeout = |lease: i64, min_replicas_to_ack: u8| {
            let o = Options { lease: Some(lease), replicas: 1, min_replicas_to_ack, ..Options::default() };
            build(o, &Env::test(3, Workload::CriticalWrite, 9, 1)).map(|r| r.response_timeout()).ok()
        };
        assert_eq!([timeout(30, 0), timeout(9, 0), timeout(9, 1), timeout(40, 1)], [3, 1, 3, 4].map(Some));
    }

    #[test]
    fn a_replica_answers_what_only_reads_from_its_own_keys_and_refuses_every_write() {
        let p = redisson(Options { replicas: 1, ..Options::default() });
        let s = Server { lock: Some(Hash { owner: 0, count: 1, expires_at: 6 }), ..p.server_start(1, &mut cx(0)) };
        let ro = Msg::Repl(ReplMsg::ReadOnly);
        let answers: Vec<Msg> = [
            (Msg::TryLock, 1),
            (Msg::TryLock, 0),
            (Msg::Renew, 1),
            (Msg::Renew, 0),
            (Msg::Unlock, 1),
            (Msg::Unlock, 0),
        ]
        .iter()
        .map(|(m, from)| p.on_replica(&s, *from, m, 4))
        .collect();
        let want =
            [Msg::Held { pttl: 2 }, ro.clone(), Msg::Renewed { ok: false }, ro.clone(), Msg::NotOwner, ro.clone()];
        assert_eq!(answers, want);
        assert_eq!(p.on_replica(&s, 1, &Msg::TryLock, 6), Msg::Held { pttl: 0 }, "the key stands at its very instant");
        assert_eq!(p.on_replica(&s, 1, &Msg::TryLock, 7), ro, "a key past its expiry is hidden");
        assert_eq!(p.on_replica(&s, 0, &Msg::Unlock, 7), Msg::NotOwner, "even from its owner");
        let free = Server { lock: None, ..s };
        assert_eq!(p.on_replica(&free, 1, &Msg::TryLock, 4), ro);
    }

    #[test]
    fn a_refused_waiter_subscribes_then_waits_for_the_message_or_the_pttl_and_a_kept_permit_tries_at_once() {
        let p = redisson(Options::default());
        let held = |lib: &mut Lib, pttl: i64| {
            let mut c = cx(1);
            lib.step = Step::Trying;
            let ev = p.client_on_msg(lib, 3, Msg::Held { pttl }, &mut c);
            (ev, lib.step, lock_sends(&c), timers(&c))
        };
        let mut lib = Lib::default();
        assert_eq!(
            held(&mut lib, 5),
            (LockEvent::Queued, Step::Subscribing, vec![(3, Msg::Subscribe)], vec![(Timer::Timeout, 1)])
        );
        let mut lib = Lib { subscribed: true, ..Lib::default() };
        assert_eq!(held(&mut lib, 5), (LockEvent::Queued, Step::Waiting, vec![], vec![(Timer::Wake, 5)]));
        assert_eq!(held(&mut lib, 0), (LockEvent::Queued, Step::Waiting, vec![], vec![(Timer::Wake, 1)]));
        let mut lib = Lib { subscribed: true, permit: true, ..Lib::default() };
        assert_eq!(
            held(&mut lib, 5),
            (LockEvent::Queued, Step::Trying, vec![(3, Msg::TryLock)], vec![(Timer::Timeout, 1)])
        );
        assert!(!lib.permit, "the permit is used up");
        let spin = redisson(Options { pubsub: false, ..Options::default() });
        let mut lib = Lib { step: Step::Trying, ..Lib::default() };
        let mut c = cx(1);
        assert_eq!(spin.client_on_msg(&mut lib, 3, Msg::Held { pttl: 5 }, &mut c), LockEvent::Busy { retry_after: 1 });
        assert_eq!((lib.step, lock_sends(&c)), (Step::Idle, vec![]));
    }

    #[test]
    fn the_waiter_hears_the_channel_keeps_an_early_message_as_a_permit_and_tries_again_on_its_wake() {
        let p = redisson(Options::default());
        let mut lib = Lib { step: Step::Subscribing, ..Lib::default() };
        let mut c = cx(1);
        p.client_on_msg(&mut lib, 3, Msg::Published, &mut c);
        assert!(lib.permit && lock_sends(&c).is_empty());
        p.client_on_msg(&mut lib, 3, Msg::Subscribed, &mut c);
        assert_eq!((lib.step, lib.subscribed, lock_sends(&c)), (Step::Trying, true, vec![(3, Msg::TryLock)]));
        let mut holding = Lib { step: Step::Holding, ..Lib::default() };
        p.client_on_msg(&mut holding, 3, Msg::Subscribed, &mut cx(1));
        assert_eq!((holding.step, holding.subscribed), (Step::Holding, true), "a late SUBSCRIBE answer asks nothing");
        let waiting = Lib { step: Step::Waiting, subscribed: true, ..Lib::default() };
        let mut lib = waiting.clone();
        let mut c = cx(2);
        p.client_on_msg(&mut lib, 3, Msg::Published, &mut c);
        assert!(cancelled(&c, Timer::Wake));
        assert_eq!((lib.step, lock_sends(&c)), (Step::Trying, vec![(3, Msg::TryLock)]));
        let mut lib = waiting.clone();
        let mut c = cx(2);
        p.client_on_timer(&mut lib, Timer::Wake, &mut c);
        assert_eq!((lib.step, lock_sends(&c)), (Step::Trying, vec![(3, Msg::TryLock)]));
        let mut lib = Lib { step: Step::Trying, ..Lib::default() };
        let mut c = cx(2);
        p.client_on_timer(&mut lib, Timer::Wake, &mut c);
        assert!(c.effects.is_empty(), "a wake-up for a wait that ended");
    }

    #[test]
    fn a_grant_starts_the_watchdog_once_and_unsubscribes_and_the_last_release_stops_it() {
        let p = redisson(Options::default());
        let mut lib = Lib { step: Step::Trying, subscribed: true, permit: true, ..Lib::default() };
        let mut c = cx(1);
        assert_eq!(
            p.client_on_msg(&mut lib, 3, Msg::Locked, &mut c),
            LockEvent::Granted { hold: (), token: None, valid_for: None }
        );
        assert!(cancelled(&c, Timer::Timeout) && cancelled(&c, Timer::Wake));
        assert_eq!((timers(&c), lock_sends(&c)), (vec![(Timer::Watchdog, 3)], vec![(3, Msg::Unsubscribe)]));
        assert_eq!(
            (lib.step, lib.depth, lib.renewing, lib.subscribed, lib.permit),
            (Step::Holding, 1, true, false, false)
        );
        lib.step = Step::Trying;
        let mut c = cx(2);
        p.client_on_msg(&mut lib, 3, Msg::Locked, &mut c);
        assert_eq!(
            (lib.depth, timers(&c), lock_sends(&c)),
            (2, vec![], vec![]),
            "a nested hold arms no second watchdog"
        );
        let mut c = cx(3);
        p.release(&mut lib, &(), &mut c);
        assert_eq!((lib.depth, lib.step, lib.renewing), (1, Step::Holding, true));
        assert_eq!(lock_sends(&c), vec![(3, Msg::Unlock)]);
        let mut c = cx(4);
        lib.renew_tries = 2;
        p.release(&mut lib, &(), &mut c);
        assert_eq!((lib.depth, lib.step, lib.renewing, lib.renew_tries), (0, Step::Idle, false, 0));
        assert!(cancelled(&c, Timer::Watchdog) && cancelled(&c, Timer::RenewRetry));
    }

    #[test]
    fn a_renewal_answered_rearms_the_watchdog_one_refused_stops_it_and_retries_go_to_the_next_node() {
        let p = redisson(Options { replicas: 2, ..Options::default() });
        let renewing = Lib { step: Step::Holding, depth: 1, renewing: true, renew_tries: 1, ..Lib::default() };
        let mut lib = renewing.clone();
        let mut c = cx(3);
        p.client_on_msg(&mut lib, 3, Msg::Renewed { ok: true }, &mut c);
        assert!(cancelled(&c, Timer::RenewRetry));
        assert_eq!((lib.renew_tries, timers(&c)), (0, vec![(Timer::Watchdog, 3)]));
        let mut stopped = Lib { renewing: false, ..renewing.clone() };
        let mut c = cx(3);
        p.client_on_msg(&mut stopped, 3, Msg::Renewed { ok: true }, &mut c);
        assert!(c.effects.is_empty(), "a stopped watchdog is not restarted by a late answer");
        let mut lib = renewing.clone();
        let mut c = cx(3);
        p.client_on_msg(&mut lib, 3, Msg::Renewed { ok: false }, &mut c);
        assert!(!lib.renewing && cancelled(&c, Timer::Watchdog));
        let mut lib = renewing.clone();
        let mut c = cx(4);
        p.client_on_timer(&mut lib, Timer::RenewRetry, &mut c);
        assert_eq!((lib.renew_tries, lib.master), (2, 1));
        assert_eq!((lock_sends(&c), timers(&c)), (vec![(4, Msg::Renew)], vec![(Timer::RenewRetry, 1)]));
        let mut idle = Lib::default();
        let mut c = cx(4);
        p.client_on_timer(&mut idle, Timer::Watchdog, &mut c);
        assert!(lock_sends(&c).is_empty(), "no hold, no renewal");
    }

    #[test]
    fn a_client_refused_by_a_replica_or_timed_out_tries_the_next_node_and_follows_switch_master() {
        let p = redisson(Options { replicas: 2, ..Options::default() });
        let mut lib = Lib { step: Step::Trying, ..Lib::default() };
        let mut c = cx(1);
        assert_eq!(
            p.client_on_msg(&mut lib, 3, Msg::Repl(ReplMsg::ReadOnly), &mut c),
            LockEvent::Busy { retry_after: 1 }
        );
        assert_eq!((lib.step, lib.master), (Step::Idle, 1));
        assert!(cancelled(&c, Timer::Timeout));
        let mut holding = Lib { step: Step::Holding, depth: 1, renewing: true, ..Lib::default() };
        let mut c = cx(1);
        assert_eq!(p.client_on_msg(&mut holding, 3, Msg::Repl(ReplMsg::ReadOnly), &mut c), LockEvent::Ignore);
        assert_eq!((holding.step, holding.master, c.effects.len()), (Step::Holding, 1, 0));
        let mut lib = Lib { step: Step::Subscribing, master: 2, ..Lib::default() };
        let mut c = cx(2);
        p.client_on_timer(&mut lib, Timer::Timeout, &mut c);
        assert_eq!((lib.step, lib.master, lock_sends(&c)), (Step::Subscribing, 0, vec![(3, Msg::Subscribe)]));
        let mut lib = Lib { step: Step::Waiting, subscribed: true, ..Lib::default() };
        let mut c = cx(2);
        p.client_on_msg(&mut lib, 5, Msg::Repl(ReplMsg::SwitchMaster), &mut c);
        assert_eq!((lib.master, lock_sends(&c)), (2, vec![(5, Msg::Subscribe)]), "subscriptions are not replicated");
        let mut lib = Lib::default();
        let mut c = cx(2);
        p.client_on_msg(&mut lib, 4, Msg::Repl(ReplMsg::SwitchMaster), &mut c);
        assert_eq!((lib.master, lock_sends(&c)), (1, vec![]));
    }

    #[test]
    fn the_master_renews_only_its_owners_lease_expires_it_and_keeps_one_subscription_per_connection() {
        let p = redisson(Options::default());
        let mut s = p.server_start(0, &mut cx(0));
        p.server_on_msg(&mut s, 0, Msg::TryLock, &mut cx(0));
        let mut c = cx(4);
        p.server_on_msg(&mut s, 0, Msg::Renew, &mut c);
        assert_eq!(s.lock.as_ref().map(|h| h.expires_at), Some(13));
        assert_eq!((lock_sends(&c), timers(&c)), (vec![(0, Msg::Renewed { ok: true })], vec![(Timer::Expire, 9)]));
        let mut c = cx(5);
        p.server_on_msg(&mut s, 0, Msg::TryLock, &mut c);
        p.server_on_msg(&mut s, 0, Msg::Unlock, &mut c);
        assert_eq!(
            s.lock.as_ref().map(|h| (h.count, h.expires_at)),
            Some((1, 14)),
            "a nested unlock sets the lease again"
        );
        assert_eq!(timers(&c), vec![(Timer::Expire, 9), (Timer::Expire, 9)]);
        let mut c = cx(14);
        p.server_on_timer(&mut s, Timer::Expire, &mut c);
        assert!(s.lock.is_none());
        assert_eq!(c.effects[0], Effect::Observe(Observation::Expired { client: 0 }));
        let mut c = cx(15);
        p.server_on_timer(&mut s, Timer::Expire, &mut c);
        assert!(c.effects.is_empty(), "nothing left to expire");
        for from in [1, 0, 1] {
            p.server_on_msg(&mut s, from, Msg::Subscribe, &mut cx(15));
        }
        assert_eq!(s.subscribers, vec![0, 1]);
        p.server_on_msg(&mut s, 1, Msg::Unsubscribe, &mut cx(15));
        assert_eq!(s.subscribers, vec![0]);
        let mut c = cx(16);
        p.server_on_msg(&mut s, 2, Msg::TryLock, &mut c);
        p.server_on_msg(&mut s, 2, Msg::Unlock, &mut c);
        assert_eq!(lock_sends(&c), vec![(2, Msg::Locked), (0, Msg::Published)]);
        assert_eq!(s.published, 0, "only a replicated master counts its messages for the stream");
    }

    #[test]
    fn a_replica_lets_no_key_expire_and_a_promotion_or_demotion_moves_the_keys_timer() {
        let p = redisson(Options { replicas: 1, ..Options::default() });
        let h = Hash { owner: 0, count: 1, expires_at: 4 };
        let disk = Durable { role: Some((Role::Replica, 0)), lock: Some(h.clone()) };
        let mut c = PCx::<Redisson>::new(4, 9);
        let mut replica = p.server_restart(1, Some(&disk), &mut c);
        assert_eq!(replica.lock, Some(h.clone()), "a replica keeps a key past its time: its master expires it");
        assert!(!timers(&c).iter().any(|(t, _)| *t == Timer::Expire));
        let mut c = PCx::<Redisson>::new(4, 9);
        p.server_on_timer(&mut replica, Timer::Expire, &mut c);
        assert_eq!((replica.lock.is_some(), c.effects.len()), (true, 0));
        let mut c = PCx::<Redisson>::new(4, 9);
        p.set_master(&replica, true, &mut c);
        assert_eq!(timers(&c), vec![(Timer::Expire, 0)], "promoted past its expiry: it goes at once");
        let mut c = PCx::<Redisson>::new(4, 2);
        p.set_master(&replica, true, &mut c);
        assert_eq!(timers(&c), vec![(Timer::Expire, 2)]);
        let mut c = PCx::<Redisson>::new(4, 2);
        p.set_master(&replica, false, &mut c);
        assert!(cancelled(&c, Timer::Expire));
        let mut c = PCx::<Redisson>::new(4, 2);
        p.set_master(&Server { lock: None, ..replica }, true, &mut c);
        assert!(c.effects.is_empty());
        assert_eq!(p.servers(), vec!["redis", "replica-1"]);
    }

    #[test]
    fn the_owner_nests_and_the_last_unlock_deletes_and_publishes_to_subscribers() {
        let p = redisson(Options::default());
        let mut s = p.server_start(0, &mut cx(0));
        p.server_on_msg(&mut s, 0, Msg::TryLock, &mut cx(0));
        p.server_on_msg(&mut s, 0, Msg::TryLock, &mut cx(1));
        let mut c = cx(2);
        p.server_on_msg(&mut s, 1, Msg::Subscribe, &mut c);
        p.server_on_msg(&mut s, 1, Msg::TryLock, &mut c);
        assert_eq!(lock_sends(&c), vec![(1, Msg::Subscribed), (1, Msg::Held { pttl: 8 })], "PTTL from the nested lock");
        let mut c = cx(3);
        p.server_on_msg(&mut s, 0, Msg::Unlock, &mut c);
        assert_eq!(s.lock.as_ref().map(|h| h.count), Some(1));
        assert!(lock_sends(&c).is_empty());
        let mut c = cx(3);
        p.server_on_msg(&mut s, 0, Msg::Unlock, &mut c);
        assert!(s.lock.is_none());
        assert_eq!(lock_sends(&c), vec![(1, Msg::Published)]);
    }

    #[test]
    fn unlock_by_another_client_is_refused_and_leaves_the_lock_alone() {
        let p = redisson(Options::default());
        let mut s = p.server_start(0, &mut cx(0));
        p.server_on_msg(&mut s, 0, Msg::TryLock, &mut cx(0));
        let mut c = cx(1);
        p.server_on_msg(&mut s, 1, Msg::Unlock, &mut c);
        assert_eq!(lock_sends(&c), vec![(1, Msg::NotOwner)]);
        assert_eq!(s.lock.as_ref().map(|h| (h.owner, h.count)), Some((0, 1)));
        let mut c = cx(1);
        p.server_on_msg(&mut s, 1, Msg::Renew, &mut c);
        assert_eq!(lock_sends(&c), vec![(1, Msg::Renewed { ok: false })], "nor may a stranger renew it");
    }

    #[test]
    fn the_watchdog_renews_while_held_and_gives_up_after_its_retries() {
        let p = redisson(Options { retry_attempts: 1, ..Options::default() });
        let mut lib = Lib::default();
        p.acquire(&mut lib, &mut cx(0));
        let mut c = cx(0);
        let ev = p.client_on_msg(&mut lib, 3, Msg::Locked, &mut c);
        assert!(matches!(ev, LockEvent::Granted { .. }));
        assert!(c.effects.contains(&Effect::SetTimer { timer: Tmr::Lock(Timer::Watchdog), after: 3 }));
        for (tick, renews) in [(3, true), (4, true), (5, false)] {
            let timer = if tick == 3 { Timer::Watchdog } else { Timer::RenewRetry };
            let mut c = cx(tick);
            p.client_on_timer(&mut lib, timer, &mut c);
            assert_eq!(lock_sends(&c) == vec![(3, Msg::Renew)], renews, "tick {tick}");
        }
        assert!(!lib.renewing, "an unanswered renewal ends the watchdog");
    }

    #[test]
    fn an_explicit_lease_has_no_watchdog_and_cannot_be_combined_with_one() {
        let p = redisson(Options { lease: Some(4), ..Options::default() });
        let mut lib = Lib::default();
        p.acquire(&mut lib, &mut cx(0));
        let mut c = cx(0);
        p.client_on_msg(&mut lib, 3, Msg::Locked, &mut c);
        assert!(!lib.renewing);
        assert!(!c.effects.iter().any(|e| matches!(e, Effect::SetTimer { timer: Tmr::Lock(Timer::Watchdog), .. })));
        let env = Env::test(3, Workload::CriticalWrite, 9, 1);
        assert!(build(Options { lease: Some(4), watchdog_every: Some(2), ..Options::default() }, &env).is_err());
        assert!(build(Options { watchdog_every: Some(9), ..Options::default() }, &env).is_err());
    }

    #[test]
    fn a_restarted_redis_drops_a_key_whose_ttl_passed_while_it_was_down() {
        let p = redisson(Options::default());
        let h = Hash { owner: 0, count: 1, expires_at: 9 };
        let disk = Durable { role: None, lock: Some(h) };
        assert!(p.server_restart(0, Some(&disk), &mut cx(5)).lock.is_some());
        assert!(p.server_restart(0, Some(&disk), &mut cx(9)).lock.is_some(), "it stands until its timer fires");
        let mut c = cx(10);
        assert!(p.server_restart(0, Some(&disk), &mut c).lock.is_none());
        assert!(c.effects.contains(&Effect::Observe(Observation::Expired { client: 0 })));
    }

    #[test]
    fn a_promoted_replica_keeps_the_hash_it_was_streamed_with_its_absolute_expiry() {
        let o = Options { replicas: 1, down_after: Some(2), ..Options::default() };
        let p = build(o, &Env::test(3, Workload::CriticalWrite, 9, 1)).unwrap();
        let (mut master, mut replica) =
            (p.server_start(0, &mut cx(0)), p.server_start(1, &mut PCx::<Redisson>::new(4, 0)));
        p.server_on_msg(&mut master, 0, Msg::TryLock, &mut cx(0));
        let mut c = PCx::<Redisson>::new(4, 1);
        p.server_on_msg(&mut replica, 1, Msg::TryLock, &mut c);
        assert_eq!(lock_sends(&c), vec![(1, Msg::Repl(ReplMsg::ReadOnly))], "a replica refuses writes");
        let stream = ReplMsg::Replicate { epoch: 0, offset: 1, state: Redisson::snapshot(&master) };
        p.server_on_msg(&mut replica, 3, Msg::Repl(stream), &mut PCx::<Redisson>::new(4, 1));
        let mut c = PCx::<Redisson>::new(4, 4);
        p.server_on_timer(&mut replica, Timer::Repl(ReplTimer::MasterDown), &mut c);
        assert!(
            c.effects.contains(&Effect::SetTimer { timer: Tmr::Lock(Timer::Expire), after: 5 }),
            "PEXPIREAT 9 at 4"
        );
        let mut c = PCx::<Redisson>::new(4, 4);
        p.server_on_msg(&mut replica, 1, Msg::TryLock, &mut c);
        assert_eq!(lock_sends(&c), vec![(1, Msg::Held { pttl: 5 })], "the new master still knows the owner");
    }

    #[test]
    fn a_replica_takes_a_subscription_and_passes_on_the_unlock_messages_its_stream_carries() {
        let o = Options { replicas: 1, ..Options::default() };
        let p = build(o, &Env::test(3, Workload::CriticalWrite, 9, 1)).unwrap();
        let (mut master, mut replica) =
            (p.server_start(0, &mut cx(0)), p.server_start(1, &mut PCx::<Redisson>::new(4, 0)));
        let mut c = PCx::<Redisson>::new(4, 0);
        p.server_on_msg(&mut replica, 1, Msg::Subscribe, &mut c);
        assert_eq!(lock_sends(&c), vec![(1, Msg::Subscribed)], "Redis takes a SUBSCRIBE on a replica");
        for now in 0..2 {
            p.server_on_msg(&mut master, 0, Msg::TryLock, &mut cx(now));
            p.server_on_msg(&mut master, 0, Msg::Unlock, &mut cx(now));
        }
        let stream = |m: &Server| ReplMsg::Replicate { epoch: 0, offset: 4, state: Redisson::snapshot(m) };
        let mut c = PCx::<Redisson>::new(4, 1);
        p.server_on_msg(&mut replica, 3, Msg::Repl(stream(&master)), &mut c);
        assert_eq!(lock_sends(&c), vec![(1, Msg::Published); 2], "one message per PUBLISH the stream replays");
        let mut c = PCx::<Redisson>::new(4, 2);
        p.server_on_msg(&mut replica, 3, Msg::Repl(stream(&master)), &mut c);
        assert!(lock_sends(&c).is_empty(), "a later stream carries no PUBLISH already passed on");

        let mut fresh = p.server_restart(1, None, &mut PCx::<Redisson>::new(4, 3));
        p.server_on_msg(&mut fresh, 1, Msg::Subscribe, &mut PCx::<Redisson>::new(4, 3));
        let mut c = PCx::<Redisson>::new(4, 3);
        p.server_on_msg(
            &mut fresh,
            3,
            Msg::Repl(ReplMsg::Replicate { epoch: 0, offset: 4, state: Redisson::snapshot(&master) }),
            &mut c,
        );
        assert_eq!(lock_sends(&c), vec![(3, Msg::Repl(ReplMsg::Psync))], "a restarted replica syncs first");
        let mut c = PCx::<Redisson>::new(4, 3);
        let resync = ReplMsg::FullResync { epoch: 0, offset: 4, state: Redisson::snapshot(&master) };
        p.server_on_msg(&mut fresh, 3, Msg::Repl(resync), &mut c);
        assert!(lock_sends(&c).is_empty(), "a snapshot replays no PUBLISH");
        assert_eq!(fresh.published, 2);
    }

    #[test]
    fn with_wait_a_retried_try_lock_is_answered_when_the_first_wait_returns() {
        let o = Options { replicas: 1, min_replicas_to_ack: 1, ..Options::default() };
        let p = build(o, &Env::test(3, Workload::CriticalWrite, 9, 1)).unwrap();
        let mut master = p.server_start(0, &mut cx(0));
        let mut c = cx(0);
        p.server_on_msg(&mut master, 0, Msg::TryLock, &mut c);
        p.server_on_msg(&mut master, 0, Msg::TryLock, &mut c);
        assert!(lock_sends(&c).is_empty(), "both wait for the replica");
        assert_eq!(
            master.lock.as_ref().map(|h| h.count),
            Some(2),
            "the retry counts the hold again, as Redisson's does"
        );
        let mut c = cx(1);
        p.server_on_msg(&mut master, 4, Msg::Repl(ReplMsg::Ack { offset: 1 }), &mut c);
        assert_eq!(lock_sends(&c), vec![(0, Msg::Locked)], "the first WAIT's offset is acknowledged");
    }
}

//! One linearizable server holding one lock record: the machine behind the `redis`, `fenced_lease`
//! and `db` families. Each family file turns its own knobs into a [`LeaseCfg`] and documents which
//! real system it models; the behaviour they share is written once, here.
//!
//! Grant: the record is free (or held by the asker and reentrancy is on) → it becomes the asker's,
//! with an expiry timer if leases expire. Otherwise the asker is told `Busy` (it polls) or queued
//! (a blocking `SELECT .. FOR UPDATE`). Release: compare-and-delete (only the owner's release counts)
//! or a plain `DEL` that removes whatever record is there.

use serde::{Deserialize, Serialize};

use crate::protocol::db::DbLock;
use crate::protocol::replication::{self, ReplMsg, ReplState, ReplTimer, Replicated, Replication, Role};
use crate::protocol::{ClientLease, LockEvent, NodeId, Observation, PCx, Protocol, ResourceHome};
use crate::resource::{Fencing, ResReq, Resource};
use crate::spec::Env;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Persist {
    /// Nothing survives a restart.
    Nothing,
    /// Lock record, token counter and data are written through to disk.
    Everything,
    /// Data and token counter survive; lock records die with the process (transaction locks).
    DataOnly,
}

/// Which real system's commands the lease table speaks (for traces).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Redis,
    LeaseService,
    Sql(DbLock),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseCfg {
    pub server: &'static str,
    pub dialect: Dialect,
    /// Durations exist: an unanswered request times out on the client.
    pub timed: bool,
    /// The record expires `ttl` ticks after it was granted (on the server's clock).
    pub expires: bool,
    /// Release deletes only the caller's own record (compare-and-delete / `WHERE owner = me`).
    pub release_checks_owner: bool,
    pub persist: Persist,
    /// Grants carry a strictly increasing token.
    pub tokens: bool,
    pub fencing: Fencing,
    pub reentrant: bool,
    /// Waiters queue on the server instead of polling.
    pub queue: bool,
    /// The stock lives in this server (a database) rather than in a separate storage node.
    pub hosts_resource: bool,
    /// Resource requests count only inside the holder's live transaction, and a write commits it.
    pub txn_bound: bool,
    pub client_margin: Option<i64>,
    /// No lock at all: every acquire is granted at once, locally (the store's version check is
    /// the only guard).
    pub lockless: bool,
    /// Expiry is judged on the asker's clock: a request carries its sender's clock reading and
    /// takes over a record whose holder asked more than `ttl` before that (no server timer).
    pub expiry_on_client_clock: bool,
    /// Asynchronous replicas and Sentinel failover ([`super::replication`]).
    pub replication: Option<Replication>,
    pub ttl: i64,
    pub stock: i64,
    /// The server is the node right after the clients.
    pub server_node: NodeId,
}

impl LeaseCfg {
    /// The settings every family starts from; each family overrides what its knobs say.
    pub fn base(server: &'static str, dialect: Dialect, env: &Env) -> Self {
        LeaseCfg {
            server,
            dialect,
            timed: env.timed,
            expires: true,
            release_checks_owner: true,
            persist: Persist::Everything,
            tokens: false,
            fencing: Fencing::None,
            reentrant: false,
            queue: false,
            hosts_resource: false,
            txn_bound: false,
            client_margin: None,
            lockless: false,
            expiry_on_client_clock: false,
            replication: None,
            ttl: env.ttl,
            stock: env.stock,
            server_node: env.clients,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hold {
    pub owner: NodeId,
    /// The request this hold answers: with the owner, the record's unique value.
    pub asked: i64,
    pub count: u8,
    /// When it expires, on the server's clock: an instant, as Redis's `PXAT` in the AOF and a
    /// database's `expires_at` column keep it, so a restart does not lengthen the lease.
    pub until: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Server {
    pub hold: Option<Hold>,
    pub counter: u64,
    /// Queued `(client, asked)` requests, oldest first.
    pub waiters: Vec<(NodeId, i64)>,
    pub resource: Option<Resource>,
    /// The stock as last committed, while the holder's transaction has written without committing
    /// (a nested critical section's write stays inside the transaction): an abort puts it back,
    /// and only it is on disk. Found by `lockcheck confirm sims/db_for_update_side_effect.toml
    /// --seeds`: a holder re-entered, wrote, and froze past the idle-in-transaction timeout;
    /// PostgreSQL rolled the write back, the model kept it.
    pub committed: Option<Resource>,
    /// Role, epoch and replication offset, when the server is replicated.
    pub repl: Option<ReplState<Msg>>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Durable {
    /// Role and epoch of a replicated server.
    pub role: Option<(Role, u8)>,
    pub hold: Option<Hold>,
    pub counter: u64,
    pub resource: Option<Resource>,
    /// The client whose open transaction had written without committing: a crash rolls it back.
    pub uncommitted: Option<NodeId>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Msg {
    /// `asked`: the client's clock reading at sending; echoed in the grant (0 in untimed runs).
    Acquire {
        asked: i64,
    },
    Grant {
        token: Option<u64>,
        asked: i64,
    },
    Busy,
    Release {
        asked: i64,
    },
    Repl(ReplMsg<Keys>),
}

/// What the master streams to its replicas: the lock key and the token counter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Keys {
    pub hold: Option<Hold>,
    pub counter: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// The lease granted to this client runs out (server).
    Expire(NodeId),
    /// An unanswered request is given up and sent again (client).
    Timeout,
    Repl(ReplTimer),
}

pub struct LeaseLock {
    pub cfg: LeaseCfg,
}

impl LeaseLock {
    pub fn new(cfg: LeaseCfg) -> Self {
        LeaseLock { cfg }
    }

    fn client_lease(&self) -> Option<ClientLease> {
        self.cfg.client_margin.map(|margin| ClientLease { ttl: self.cfg.ttl, margin })
    }

    /// A server with no state yet; `was`: see [`replication::start`].
    fn fresh(&self, index: usize, was: Option<Option<(Role, u8)>>, cx: &mut PCx<Self>) -> Server {
        Server {
            hold: None,
            counter: 0,
            waiters: Vec::new(),
            resource: self.cfg.hosts_resource.then(|| Resource::new(self.cfg.stock, self.cfg.fencing)),
            committed: None,
            repl: replication::start(self, index, was, cx),
        }
    }

    /// The server changed its state: a new replication offset, and the disk.
    fn changed(&self, s: &mut Server, cx: &mut PCx<Self>) {
        replication::changed::<Self>(s);
        self.save(s, cx);
    }

    fn grant(&self, s: &mut Server, to: NodeId, asked: i64, cx: &mut PCx<Self>) {
        let token = if self.cfg.tokens {
            s.counter += 1;
            Some(s.counter)
        } else {
            None
        };
        s.hold = Some(Hold { owner: to, asked, count: 1, until: cx.now + self.cfg.ttl });
        if self.cfg.expires {
            cx.set_lock_timer(Timer::Expire(to), self.cfg.ttl);
        }
        cx.observe(Observation::Granted { client: to, token });
        self.changed(s, cx);
        replication::answer(self, s, to, Msg::Grant { token, asked }, cx);
    }

    /// The holder spoke again: its lease runs a full TTL from now (a reentrant lock's nested
    /// acquire; a statement in a transaction, whose `idle_in_transaction_session_timeout` counts
    /// from its last statement, not from its `BEGIN`: found by `tests/real_servers.rs`).
    fn extend(&self, h: &mut Hold, cx: &mut PCx<Self>) {
        h.until = cx.now + self.cfg.ttl;
        if self.cfg.expires {
            cx.set_lock_timer(Timer::Expire(h.owner), self.cfg.ttl);
        }
    }

    /// The record is gone: hand it to the next queued waiter, if any.
    /// The hold ends; what its transaction wrote stays (a commit: an abort restores first).
    fn vacate(&self, s: &mut Server, cx: &mut PCx<Self>) {
        s.hold = None;
        s.committed = None;
        replication::forget_pending::<Self>(s);
        if !s.waiters.is_empty() {
            let (next, asked) = s.waiters.remove(0);
            self.grant(s, next, asked, cx);
        } else {
            self.changed(s, cx);
        }
    }
}

impl Protocol for LeaseLock {
    type Server = Server;
    type Client = LeaseClient;
    type Msg = Msg;
    type Timer = Timer;
    type Durable = Durable;
    type Hold = i64;

    fn servers(&self) -> Vec<String> {
        let replicas = self.cfg.replication.map_or(0, |r| r.replicas);
        let mut names = vec![self.cfg.server.to_string()];
        names.extend((1..=replicas).map(|i| format!("replica-{i}")));
        names
    }

    fn resource(&self) -> ResourceHome {
        if self.cfg.hosts_resource { ResourceHome::Server } else { ResourceHome::Storage(self.cfg.fencing) }
    }

    fn issues_tokens(&self) -> bool {
        self.cfg.tokens
    }

    fn server_start(&self, index: usize, cx: &mut PCx<Self>) -> Server {
        self.fresh(index, None, cx)
    }

    fn server_restart(&self, index: usize, durable: Option<&Durable>, cx: &mut PCx<Self>) -> Server {
        let mut s = self.fresh(index, Some(durable.and_then(|d| d.role)), cx);
        if let Some(d) = durable {
            s.hold = d.hold.clone();
            s.counter = d.counter;
            if d.resource.is_some() {
                s.resource = d.resource.clone();
            }
            // Recovery keeps what was committed: an open transaction's writes are gone.
            if let (Some(client), Some(r)) = (d.uncommitted, &d.resource) {
                cx.observe(Observation::RolledBack { client, stock: r.stock });
            }
        }
        // A restored lease keeps its expiry instant (found by `tests/real_servers.rs`: a full TTL
        // again let the model refuse a lock real Redis grants). One already past is gone on load;
        // one that ends at this very tick still stands until its timer fires, as in Redis, which
        // expires a key only once its clock has passed the instant (found by `lockcheck confirm`).
        if let (Some(h), true, true) = (s.hold.clone(), self.cfg.expires, replication::serves::<Self>(&s)) {
            if h.until < cx.now {
                cx.observe(Observation::Expired { client: h.owner });
                s.hold = None;
                // Dropped while loading, before any replica is attached: nothing is streamed
                // (as Redisson's restart; `confirm --seeds` on both failover scenarios agrees).
                self.save(&s, cx);
            } else {
                cx.set_lock_timer(Timer::Expire(h.owner), h.until - cx.now);
            }
        }
        s
    }

    fn server_on_msg(&self, s: &mut Server, from: NodeId, msg: Msg, cx: &mut PCx<Self>) {
        match msg {
            // A replica refuses every write, but the compare-and-delete script only reaches its
            // `DEL` when the value is the caller's (a key its own clock expired is hidden).
            Msg::Release { asked } if !replication::serves::<Self>(s) && self.cfg.release_checks_owner => {
                let held = s.hold.as_ref().filter(|h| h.until >= cx.now);
                if held.is_some_and(|h| h.owner == from && (self.cfg.reentrant || h.asked == asked)) {
                    cx.send_lock(from, Msg::Repl(ReplMsg::ReadOnly))
                }
            }
            Msg::Acquire { .. } | Msg::Release { .. } if !replication::serves::<Self>(s) => {
                cx.send_lock(from, Msg::Repl(ReplMsg::ReadOnly))
            }
            Msg::Acquire { asked } => match &mut s.hold {
                None => self.grant(s, from, asked, cx),
                // The asker's own expired row too: an `ON CONFLICT .. WHERE expires_at <= $now`
                // does not look at whose row it is (found by `tests/real_servers.rs`).
                Some(h) if self.cfg.expiry_on_client_clock && h.asked + self.cfg.ttl <= asked => {
                    cx.observe(Observation::Expired { client: h.owner });
                    self.grant(s, from, asked, cx);
                }
                Some(h) if h.owner == from && self.cfg.reentrant => {
                    h.count += 1;
                    self.extend(h, cx);
                    let token = self.cfg.tokens.then_some(s.counter);
                    self.changed(s, cx);
                    replication::answer(self, s, from, Msg::Grant { token, asked }, cx);
                }
                Some(_) if self.cfg.queue => {
                    if !s.waiters.iter().any(|(w, _)| *w == from) {
                        s.waiters.push((from, asked));
                    }
                }
                Some(_) => cx.send_lock(from, Msg::Busy),
            },
            Msg::Release { asked } => {
                let Some(h) = &mut s.hold else { return };
                // Reentrant locks identify the holder by owner (Redisson's `uuid:threadId` field);
                // others by the value of this very grant (a fresh random value per attempt).
                let mine = h.owner == from && (self.cfg.reentrant || h.asked == asked);
                if self.cfg.release_checks_owner && !mine {
                    return;
                }
                if self.cfg.reentrant && h.owner == from && h.count > 1 {
                    h.count -= 1;
                    self.changed(s, cx);
                    return;
                }
                let owner = h.owner;
                if !mine {
                    cx.observe(Observation::ReleasedOther { by: from, owner });
                }
                if self.cfg.expires {
                    cx.cancel_lock_timer(Timer::Expire(owner));
                }
                self.vacate(s, cx);
            }
            Msg::Repl(m) => replication::on_msg(self, s, from, m, cx),
            Msg::Grant { .. } | Msg::Busy => {}
        }
    }

    fn server_on_timer(&self, s: &mut Server, timer: Timer, cx: &mut PCx<Self>) {
        let owner = match timer {
            Timer::Expire(owner) => owner,
            Timer::Repl(t) => return replication::on_timer(self, s, t, cx),
            Timer::Timeout => return,
        };
        if replication::serves::<Self>(s) && s.hold.as_ref().is_some_and(|h| h.owner == owner) {
            cx.observe(Observation::Expired { client: owner });
            // An expired transaction is aborted: its uncommitted writes are undone.
            if let Some(c) = s.committed.take() {
                cx.observe(Observation::RolledBack { client: owner, stock: c.stock });
                s.resource = Some(c);
            }
            self.vacate(s, cx);
        }
    }

    fn server_on_resource(&self, s: &mut Server, from: NodeId, req: ResReq, cx: &mut PCx<Self>) {
        let in_txn = s.hold.as_ref().is_some_and(|h| h.owner == from && Some(h.asked) == req.session());
        if self.cfg.txn_bound && !in_txn {
            Resource::refuse(from, &req, cx);
            return;
        }
        // The write of a nested critical section stays inside the transaction: only the outermost
        // level's write travels with the COMMIT.
        let outermost = s.hold.as_ref().is_some_and(|h| h.count <= 1);
        let commits = self.cfg.txn_bound && outermost && matches!(req, ResReq::Write { .. });
        let before = s.resource.clone();
        if let Some(r) = &mut s.resource {
            r.handle(from, req, cx);
        }
        if self.cfg.txn_bound && !commits && s.committed.is_none() && s.resource != before {
            s.committed = before;
        }
        if commits {
            if self.cfg.expires {
                cx.cancel_lock_timer(Timer::Expire(from));
            }
            self.vacate(s, cx);
        } else {
            if let Some(h) = s.hold.as_mut().filter(|_| self.cfg.txn_bound) {
                self.extend(h, cx);
            }
            self.save(s, cx);
        }
    }

    fn session(&self, asked: &i64) -> i64 {
        *asked
    }

    fn acquire(&self, c: &mut LeaseClient, cx: &mut PCx<Self>) -> LockEvent<i64> {
        let asked = cx.now;
        if self.cfg.lockless {
            cx.observe(Observation::Granted { client: cx.me, token: None });
            return LockEvent::Granted { hold: asked, token: None, valid_for: None };
        }
        cx.send_lock(replication::master_node(self, c.master), Msg::Acquire { asked });
        if self.cfg.timed {
            cx.set_lock_timer(Timer::Timeout, 1);
        }
        LockEvent::Ignore
    }

    fn release(&self, c: &mut LeaseClient, asked: &i64, cx: &mut PCx<Self>) {
        if self.cfg.lockless {
            return;
        }
        cx.send_lock(replication::master_node(self, c.master), Msg::Release { asked: *asked });
    }

    fn client_on_msg(&self, c: &mut LeaseClient, from: NodeId, msg: Msg, cx: &mut PCx<Self>) -> LockEvent<i64> {
        match msg {
            Msg::Grant { token, asked } => {
                cx.cancel_lock_timer(Timer::Timeout);
                let Some(lease) = self.client_lease() else {
                    return LockEvent::Granted { hold: asked, token, valid_for: None };
                };
                let left = lease.left(asked, cx.now);
                if left > 0 {
                    return LockEvent::Granted { hold: asked, token, valid_for: Some(left) };
                }
                // Granted too late to be of use: let it go and ask again.
                cx.send_lock(from, Msg::Release { asked });
                LockEvent::Busy { retry_after: 1 }
            }
            Msg::Busy => {
                cx.cancel_lock_timer(Timer::Timeout);
                LockEvent::Busy { retry_after: 1 }
            }
            Msg::Repl(ReplMsg::ReadOnly) => {
                cx.cancel_lock_timer(Timer::Timeout);
                replication::next_master(self, &mut c.master);
                LockEvent::Busy { retry_after: 1 }
            }
            Msg::Repl(ReplMsg::SwitchMaster) => {
                replication::switch_master(self, &mut c.master, from);
                LockEvent::Ignore
            }
            Msg::Acquire { .. } | Msg::Release { .. } | Msg::Repl(_) => LockEvent::Ignore,
        }
    }

    fn client_on_timer(&self, c: &mut LeaseClient, timer: Timer, _cx: &mut PCx<Self>) -> LockEvent<i64> {
        match timer {
            Timer::Timeout => {
                replication::next_master(self, &mut c.master);
                LockEvent::Busy { retry_after: 0 }
            }
            Timer::Expire(_) | Timer::Repl(_) => LockEvent::Ignore,
        }
    }

    fn dies_with_connection(&self, msg: &Msg) -> bool {
        matches!(msg, Msg::Repl(m) if replication::on_connection(m))
    }

    fn show_msg(&self, from: NodeId, msg: &Msg) -> String {
        let (ttl, tok) =
            (self.cfg.ttl, |t: &Option<u64>| t.map(|t| format!(", fencing token {t}")).unwrap_or_default());
        match (self.cfg.dialect, msg) {
            (Dialect::Redis, Msg::Acquire { asked }) if self.cfg.expires => {
                format!("SET lock c{from}:{asked} NX PX {ttl}")
            }
            (Dialect::Redis, Msg::Acquire { asked }) => format!("SET lock c{from}:{asked} NX"),
            (Dialect::Redis, Msg::Grant { token, .. }) if self.cfg.replication.is_some_and(|r| r.min_acks > 0) => {
                format!("OK{}; WAIT {} answered", tok(token), self.cfg.replication.map_or(0, |r| r.min_acks))
            }
            (Dialect::Redis, Msg::Grant { token, .. }) => format!("OK{}", tok(token)),
            (Dialect::Redis, Msg::Busy) => "(nil): the key exists".into(),
            (Dialect::Redis, Msg::Release { asked }) if self.cfg.release_checks_owner => {
                format!("EVAL \"if GET lock == c{from}:{asked} then DEL lock\" (compare-and-delete)")
            }
            (Dialect::Redis, Msg::Release { .. }) => "DEL lock".into(),
            (_, Msg::Repl(m)) => replication::show_msg(m, |k: &Keys| {
                let key = match &k.hold {
                    Some(h) => format!("lock = c{}:{}", h.owner, h.asked),
                    None => "no lock key".into(),
                };
                let tokens = if self.cfg.tokens { format!(", counter {}", k.counter) } else { String::new() };
                format!("{key}{tokens}")
            }),
            (Dialect::LeaseService, Msg::Acquire { asked }) => format!("acquire lease (request c{from}:{asked})"),
            (Dialect::LeaseService, Msg::Grant { token, .. }) => format!("lease granted{}", tok(token)),
            (Dialect::LeaseService, Msg::Busy) => "lease held by another client".into(),
            (Dialect::LeaseService, Msg::Release { asked }) => format!("release lease c{from}:{asked}"),
            (Dialect::Sql(DbLock::Advisory), Msg::Acquire { .. }) => "SELECT pg_advisory_lock(1)".into(),
            (Dialect::Sql(DbLock::Advisory), Msg::Grant { .. }) => "pg_advisory_lock: acquired (session lock)".into(),
            (Dialect::Sql(DbLock::Advisory), Msg::Release { .. }) => "SELECT pg_advisory_unlock(1)".into(),
            (Dialect::Sql(DbLock::ForUpdate), Msg::Acquire { .. }) => {
                "BEGIN; SELECT stock FROM inventory WHERE sku = 1 FOR UPDATE".into()
            }
            (Dialect::Sql(DbLock::ForUpdate), Msg::Grant { .. }) => "row locked (transaction open)".into(),
            (Dialect::Sql(DbLock::ForUpdate), Msg::Release { .. }) => "ROLLBACK".into(),
            (Dialect::Sql(DbLock::ExpiryColumn), Msg::Acquire { asked }) if self.cfg.expiry_on_client_clock => format!(
                "INSERT INTO locks VALUES ('stock', 'c{from}:{asked}', {}) ON CONFLICT DO UPDATE .. WHERE expires_at < {asked} (the application's clock)",
                asked + ttl
            ),
            (Dialect::Sql(DbLock::ExpiryColumn), Msg::Acquire { asked }) => format!(
                "INSERT INTO locks VALUES ('stock', 'c{from}:{asked}', now() + {ttl}) ON CONFLICT DO UPDATE .. WHERE expires_at < now()"
            ),
            (Dialect::Sql(_), Msg::Acquire { asked }) => {
                format!("INSERT INTO locks VALUES ('stock', 'c{from}:{asked}')")
            }
            (Dialect::Sql(_), Msg::Grant { .. }) => "INSERT 0 1".into(),
            (Dialect::Sql(_), Msg::Busy) => "ERROR: duplicate key value violates unique constraint".into(),
            (Dialect::Sql(_), Msg::Release { asked }) if self.cfg.release_checks_owner => {
                format!("DELETE FROM locks WHERE name = 'stock' AND owner = 'c{from}:{asked}'")
            }
            (Dialect::Sql(_), Msg::Release { .. }) => "DELETE FROM locks WHERE name = 'stock'".into(),
        }
    }

    fn show_timer(&self, timer: &Timer) -> String {
        match (self.cfg.dialect, timer) {
            (Dialect::Redis, Timer::Expire(_)) => "key lock expires (PX)".into(),
            (Dialect::LeaseService, Timer::Expire(_)) => "lease expires".into(),
            (Dialect::Sql(DbLock::ForUpdate), Timer::Expire(_)) => "idle_in_transaction_session_timeout".into(),
            (Dialect::Sql(DbLock::Advisory), Timer::Expire(_)) => {
                "the connection drops (keepalive or proxy idle timeout): its session locks go with it".into()
            }
            (Dialect::Sql(_), Timer::Expire(_)) => "expires_at passes".into(),
            (_, Timer::Timeout) => "request timeout".into(),
            (_, Timer::Repl(t)) => replication::show_timer(*t),
        }
    }
}

impl Replicated for LeaseLock {
    type Snapshot = Keys;

    fn save(&self, s: &Server, cx: &mut PCx<Self>) {
        let role = replication::role::<Self>(s);
        let (counter, resource) = (s.counter, s.committed.clone().or_else(|| s.resource.clone()));
        let uncommitted = s.committed.as_ref().and(s.hold.as_ref()).map(|h| h.owner);
        let durable = match self.cfg.persist {
            Persist::Nothing => return,
            Persist::Everything => Durable { role, hold: s.hold.clone(), counter, resource, uncommitted },
            Persist::DataOnly => Durable { role, hold: None, counter, resource, uncommitted },
        };
        cx.persist(durable);
    }

    fn replication(&self) -> Option<Replication> {
        self.cfg.replication
    }

    fn first_server(&self) -> NodeId {
        self.cfg.server_node
    }

    fn repl(s: &Server) -> Option<&ReplState<Msg>> {
        s.repl.as_ref()
    }

    fn repl_mut(s: &mut Server) -> Option<&mut ReplState<Msg>> {
        s.repl.as_mut()
    }

    fn snapshot(s: &Server) -> Keys {
        Keys { hold: s.hold.clone(), counter: s.counter }
    }

    fn install(&self, s: &mut Server, keys: Keys, _: replication::Sync, cx: &mut PCx<Self>) {
        s.hold = keys.hold;
        s.counter = keys.counter;
        self.save(s, cx);
    }

    /// A promoted key keeps its absolute expiry, as Redis replicates `PEXPIREAT` (it had a full
    /// TTL again, until `lockcheck confirm sims/redis_failover.toml --seeds` saw the real promoted
    /// replica grant a lock the model still held).
    fn set_master(&self, s: &Server, master: bool, cx: &mut PCx<Self>) {
        let Some(h) = s.hold.as_ref().filter(|_| self.cfg.expires) else { return };
        if master {
            cx.set_lock_timer(Timer::Expire(h.owner), (h.until - cx.now).max(0));
        } else {
            cx.cancel_lock_timer(Timer::Expire(h.owner));
        }
    }

    fn wrap(m: ReplMsg<Keys>) -> Msg {
        Msg::Repl(m)
    }

    fn wrap_timer(t: ReplTimer) -> Timer {
        Timer::Repl(t)
    }
}

/// A client's lock library state: which node it believes is the master (index among servers).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeaseClient {
    pub master: u8,
}

crate::no_ids!(LeaseClient);

impl crate::protocol::Ids for Keys {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        self.hold.map_ids(f);
    }
}

impl crate::protocol::Ids for Server {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        self.hold.map_ids(f);
        self.waiters.iter_mut().for_each(|(w, _)| *w = f(*w));
        self.repl.map_ids(f);
    }
}

impl crate::protocol::Ids for Hold {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        self.owner = f(self.owner);
    }
}

impl crate::protocol::Ids for Durable {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        self.hold.map_ids(f);
        if let Some(c) = &mut self.uncommitted {
            *c = f(*c);
        }
    }
}

impl crate::protocol::Ids for Timer {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        if let Timer::Expire(owner) = self {
            *owner = f(*owner);
        }
    }
}

impl crate::protocol::Ids for Msg {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        if let Msg::Repl(m) = self {
            m.map_ids(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Effect, Tmr};
    use crate::spec::Workload;

    fn env() -> Env {
        Env::test(3, Workload::Oversell, 5, 2)
    }

    fn cx() -> PCx<LeaseLock> {
        PCx::<LeaseLock>::new(3, 0)
    }

    fn replies(cx: &PCx<LeaseLock>) -> Vec<(NodeId, Msg)> {
        crate::protocol::lock_sends(cx)
    }

    fn redis(o: super::super::redis::Options) -> LeaseLock {
        super::super::redis::build(o, &env()).unwrap()
    }

    fn timers(cx: &PCx<LeaseLock>) -> Vec<(Timer, i64)> {
        crate::protocol::lock_timers(cx)
    }

    fn at(now: i64) -> PCx<LeaseLock> {
        PCx::<LeaseLock>::new(3, now)
    }

    #[test]
    fn a_grant_holds_a_ttl_from_its_instant_and_a_nested_acquire_or_a_transactions_statement_extends_it() {
        let p = redis(super::super::redis::Options { reentrant: true, ..Default::default() });
        let mut s = p.server_start(0, &mut cx());
        p.server_on_msg(&mut s, 0, Msg::Acquire { asked: 2 }, &mut at(2));
        assert_eq!(s.hold, Some(Hold { owner: 0, asked: 2, count: 1, until: 7 }));
        let mut c = at(4);
        p.server_on_msg(&mut s, 0, Msg::Acquire { asked: 4 }, &mut c);
        assert_eq!(s.hold, Some(Hold { owner: 0, asked: 2, count: 2, until: 9 }));
        assert_eq!(
            (timers(&c), replies(&c)),
            (vec![(Timer::Expire(0), 5)], vec![(0, Msg::Grant { token: None, asked: 4 })])
        );
        let mut c = at(5);
        p.server_on_msg(&mut s, 0, Msg::Release { asked: 4 }, &mut c);
        assert_eq!(s.hold.as_ref().map(|h| (h.count, h.until)), Some((1, 9)), "a nested release only counts down");
        assert!(!c.effects.iter().any(|e| matches!(e, Effect::CancelTimer { .. })));
        let db = super::super::db::build(Default::default(), &env()).unwrap();
        let mut s = db.server_start(0, &mut cx());
        db.server_on_msg(&mut s, 0, Msg::Acquire { asked: 1 }, &mut at(1));
        let mut c = at(3);
        db.server_on_resource(&mut s, 0, ResReq::Read { token: None, session: 1 }, &mut c);
        assert_eq!(s.hold.as_ref().map(|h| h.until), Some(8), "idle_in_transaction counts from the last statement");
        assert_eq!(timers(&c), vec![(Timer::Expire(0), 5)]);
        let mut c = at(3);
        db.server_on_resource(&mut s, 0, ResReq::Read { token: None, session: 0 }, &mut c);
        assert!(c.effects.contains(&Effect::Observe(Observation::WriteRejected { client: 0, token: None })));
        assert_eq!(s.hold.as_ref().map(|h| h.until), Some(8), "a statement of another transaction extends nothing");
    }

    #[test]
    fn a_queued_waiter_is_queued_once_and_gets_the_lock_when_it_is_let_go() {
        let p = super::super::db::build(Default::default(), &env()).unwrap();
        let mut s = p.server_start(0, &mut cx());
        p.server_on_msg(&mut s, 0, Msg::Acquire { asked: 0 }, &mut cx());
        for (from, asked) in [(1, 1), (2, 1), (1, 2)] {
            p.server_on_msg(&mut s, from, Msg::Acquire { asked }, &mut cx());
        }
        assert_eq!(s.waiters, vec![(1, 1), (2, 1)], "a retried SELECT .. FOR UPDATE is the same wait");
        let mut c = at(1);
        p.server_on_msg(&mut s, 0, Msg::Release { asked: 0 }, &mut c);
        assert_eq!(replies(&c), vec![(1, Msg::Grant { token: None, asked: 1 })]);
        assert!(c.effects.contains(&Effect::CancelTimer { timer: Tmr::Lock(Timer::Expire(0)) }));
        assert_eq!((s.waiters.clone(), s.hold.as_ref().map(|h| h.owner)), (vec![(2, 1)], Some(1)));
    }

    #[test]
    fn a_replica_refuses_acquires_and_answers_a_compare_and_delete_only_for_its_own_unexpired_key() {
        let o = super::super::redis::Options { replicas: 1, ..Default::default() };
        let p = redis(o.clone());
        let hold = Hold { owner: 0, asked: 2, count: 1, until: 6 };
        let replica = Server { hold: Some(hold), ..p.server_start(1, &mut PCx::<LeaseLock>::new(4, 0)) };
        let answer = |p: &LeaseLock, from: NodeId, msg: Msg, now: i64| {
            let mut s = replica.clone();
            let mut c = PCx::<LeaseLock>::new(4, now);
            p.server_on_msg(&mut s, from, msg, &mut c);
            assert_eq!(s, replica, "a replica changes nothing");
            replies(&c)
        };
        let ro = |to| vec![(to, Msg::Repl(ReplMsg::ReadOnly))];
        assert_eq!(answer(&p, 1, Msg::Acquire { asked: 3 }, 3), ro(1));
        assert_eq!(answer(&p, 0, Msg::Release { asked: 2 }, 6), ro(0), "its own key, at its very instant");
        assert_eq!(answer(&p, 0, Msg::Release { asked: 2 }, 7), vec![], "past its expiry: hidden, no DEL");
        assert_eq!(answer(&p, 0, Msg::Release { asked: 1 }, 3), vec![], "another attempt's value");
        assert_eq!(answer(&p, 1, Msg::Release { asked: 2 }, 3), vec![], "another client's key");
        let reentrant = redis(super::super::redis::Options { reentrant: true, ..o.clone() });
        assert_eq!(
            answer(&reentrant, 0, Msg::Release { asked: 1 }, 3),
            ro(0),
            "a reentrant lock knows its owner alone"
        );
        let del = redis(super::super::redis::Options { release: super::super::redis::Release::Del, ..o });
        assert_eq!(answer(&del, 1, Msg::Release { asked: 9 }, 9), ro(1), "a plain DEL is a write");
    }

    #[test]
    fn a_restarted_server_keeps_a_lease_until_its_instant_and_a_replica_lets_none_expire() {
        let p = redis(super::super::redis::Options { persistence: true, replicas: 1, ..Default::default() });
        let hold = Hold { owner: 1, asked: 0, count: 1, until: 6 };
        let disk = |role| Durable { role, hold: Some(hold.clone()), counter: 3, resource: None, uncommitted: None };
        for (now, kept) in [(5, true), (6, true), (7, false)] {
            let mut c = at(now);
            let s = p.server_restart(0, Some(&disk(Some((Role::Master, 0)))), &mut c);
            assert_eq!((s.hold.is_some(), s.counter), (kept, 3), "at {now}");
            if kept {
                assert!(timers(&c).contains(&(Timer::Expire(1), 6 - now)));
            } else {
                assert!(c.effects.contains(&Effect::Observe(Observation::Expired { client: 1 })));
            }
        }
        let mut c = PCx::<LeaseLock>::new(4, 9);
        let replica = p.server_restart(1, Some(&disk(Some((Role::Replica, 0)))), &mut c);
        assert_eq!(replica.hold, Some(hold.clone()));
        assert!(!timers(&c).iter().any(|(t, _)| matches!(t, Timer::Expire(_))));
        let mut c = PCx::<LeaseLock>::new(4, 9);
        p.set_master(&replica, true, &mut c);
        assert_eq!(timers(&c), vec![(Timer::Expire(1), 0)]);
        let mut c = PCx::<LeaseLock>::new(4, 4);
        p.set_master(&replica, true, &mut c);
        p.set_master(&replica, false, &mut c);
        assert_eq!(timers(&c), vec![(Timer::Expire(1), 2)]);
        assert!(c.effects.contains(&Effect::CancelTimer { timer: Tmr::Lock(Timer::Expire(1)) }));
        let mut replica = replica;
        let mut c = PCx::<LeaseLock>::new(4, 9);
        p.server_on_timer(&mut replica, Timer::Expire(1), &mut c);
        assert!(replica.hold.is_some() && c.effects.is_empty(), "keys expire on the master only");
        let no_ttl = redis(super::super::redis::Options { ttl: false, replicas: 1, ..Default::default() });
        let mut c = PCx::<LeaseLock>::new(4, 9);
        no_ttl.set_master(&replica, true, &mut c);
        assert!(c.effects.is_empty());
        assert_eq!(p.servers(), vec!["redis", "replica-1"]);
    }

    #[test]
    fn the_client_asks_its_master_once_a_tick_takes_a_grant_within_its_validity_and_moves_on_when_refused() {
        let p = redis(super::super::redis::Options { validity_margin: Some(1), replicas: 2, ..Default::default() });
        let mut lib = LeaseClient { master: 1 };
        let mut c = at(2);
        assert_eq!(p.acquire(&mut lib, &mut c), LockEvent::Ignore);
        assert_eq!((replies(&c), timers(&c)), (vec![(4, Msg::Acquire { asked: 2 })], vec![(Timer::Timeout, 1)]));
        let grant = Msg::Grant { token: None, asked: 2 };
        let mut c = at(5);
        assert_eq!(
            p.client_on_msg(&mut lib, 4, grant.clone(), &mut c),
            LockEvent::Granted { hold: 2, token: None, valid_for: Some(1) }
        );
        assert!(c.effects.contains(&Effect::CancelTimer { timer: Tmr::Lock(Timer::Timeout) }));
        let mut c = at(6);
        assert_eq!(p.client_on_msg(&mut lib, 4, grant, &mut c), LockEvent::Busy { retry_after: 1 });
        assert_eq!(replies(&c), vec![(4, Msg::Release { asked: 2 })], "granted too late: let go");
        let mut c = at(6);
        assert_eq!(p.client_on_msg(&mut lib, 4, Msg::Busy, &mut c), LockEvent::Busy { retry_after: 1 });
        assert!(c.effects.contains(&Effect::CancelTimer { timer: Tmr::Lock(Timer::Timeout) }));
        assert_eq!(
            p.client_on_msg(&mut lib, 4, Msg::Repl(ReplMsg::ReadOnly), &mut at(6)),
            LockEvent::Busy { retry_after: 1 }
        );
        assert_eq!(lib.master, 2);
        assert_eq!(p.client_on_timer(&mut lib, Timer::Timeout, &mut at(7)), LockEvent::Busy { retry_after: 0 });
        assert_eq!(lib.master, 0, "a silent master: the next node");
        assert_eq!(p.client_on_msg(&mut lib, 5, Msg::Repl(ReplMsg::SwitchMaster), &mut at(7)), LockEvent::Ignore);
        assert_eq!(lib.master, 2);
        let mut c = at(8);
        p.release(&mut lib, &2, &mut c);
        assert_eq!(replies(&c), vec![(5, Msg::Release { asked: 2 })]);
        let untimed = super::super::redis::build(Default::default(), &Env { timed: false, ..env() }).unwrap();
        let mut c = at(0);
        untimed.acquire(&mut LeaseClient::default(), &mut c);
        assert!(timers(&c).is_empty(), "no durations, no timeout");
        let plain = redis(Default::default());
        let ev =
            plain.client_on_msg(&mut LeaseClient::default(), 3, Msg::Grant { token: Some(4), asked: 0 }, &mut at(99));
        assert_eq!(ev, LockEvent::Granted { hold: 0, token: Some(4), valid_for: None }, "no margin: no validity check");
    }

    #[test]
    fn set_nx_grants_once_and_compare_and_delete_ignores_strangers() {
        let p = redis(Default::default());
        let mut s = p.server_start(0, &mut cx());
        let mut c = cx();
        p.server_on_msg(&mut s, 0, Msg::Acquire { asked: 0 }, &mut c);
        p.server_on_msg(&mut s, 1, Msg::Acquire { asked: 0 }, &mut c);
        assert_eq!(replies(&c), vec![(0, Msg::Grant { token: None, asked: 0 }), (1, Msg::Busy)]);
        assert!(c.effects.contains(&Effect::SetTimer { timer: Tmr::Lock(Timer::Expire(0)), after: 5 }));
        p.server_on_msg(&mut s, 1, Msg::Release { asked: 0 }, &mut cx());
        assert_eq!(s.hold.as_ref().map(|h| h.owner), Some(0), "a stranger's release deletes nothing");
        p.server_on_msg(&mut s, 0, Msg::Release { asked: 7 }, &mut cx());
        assert!(s.hold.is_some(), "a release for another attempt deletes nothing");
        p.server_on_msg(&mut s, 0, Msg::Release { asked: 0 }, &mut cx());
        assert!(s.hold.is_none());
    }

    #[test]
    fn plain_del_removes_whoever_holds_the_key() {
        let p =
            redis(super::super::redis::Options { release: super::super::redis::Release::Del, ..Default::default() });
        let mut s = p.server_start(0, &mut cx());
        p.server_on_msg(&mut s, 1, Msg::Acquire { asked: 0 }, &mut cx());
        let mut c = cx();
        p.server_on_msg(&mut s, 0, Msg::Release { asked: 0 }, &mut c);
        assert!(s.hold.is_none());
        assert!(
            c.effects.contains(&Effect::Observe(Observation::ReleasedOther { by: 0, owner: 1 })),
            "the trace says whose"
        );
        p.server_on_msg(&mut s, 1, Msg::Acquire { asked: 1 }, &mut cx());
        let mut c = cx();
        p.server_on_msg(&mut s, 1, Msg::Release { asked: 1 }, &mut c);
        assert!(s.hold.is_none());
        let other = c.effects.iter().any(|e| matches!(e, Effect::Observe(Observation::ReleasedOther { .. })));
        assert!(!other, "the owner's own DEL: {:?}", c.effects);
    }

    #[test]
    fn expiry_frees_the_key_only_for_its_own_holder() {
        let p = redis(Default::default());
        let mut s = p.server_start(0, &mut cx());
        p.server_on_msg(&mut s, 0, Msg::Acquire { asked: 0 }, &mut cx());
        p.server_on_timer(&mut s, Timer::Expire(1), &mut cx());
        assert!(s.hold.is_some());
        let mut c = cx();
        p.server_on_timer(&mut s, Timer::Expire(0), &mut c);
        assert!(s.hold.is_none());
        assert!(c.effects.contains(&Effect::Observe(Observation::Expired { client: 0 })));
    }

    #[test]
    fn fencing_tokens_increase_and_survive_a_restart_only_when_persisted() {
        for (persistence, after_restart) in [(true, Some(2)), (false, Some(1))] {
            let p = redis(super::super::redis::Options { fencing: true, persistence, ..Default::default() });
            let mut s = p.server_start(0, &mut cx());
            let mut c = cx();
            p.server_on_msg(&mut s, 0, Msg::Acquire { asked: 0 }, &mut c);
            p.server_on_timer(&mut s, Timer::Expire(0), &mut c);
            let durable = c.effects.iter().rev().find_map(|e| match e {
                Effect::Persist(d) => Some(d.clone()),
                _ => None,
            });
            assert_eq!(durable.is_some(), persistence);
            let mut s = p.server_restart(0, durable.as_ref(), &mut cx());
            let mut c = cx();
            p.server_on_msg(&mut s, 1, Msg::Acquire { asked: 0 }, &mut c);
            let token = replies(&c).into_iter().find_map(|(_, m)| match m {
                Msg::Grant { token, .. } => token,
                _ => None,
            });
            assert_eq!(token, after_restart, "persistence {persistence}");
        }
    }

    #[test]
    fn reentrant_holds_count_down_to_the_last_release() {
        let p = redis(super::super::redis::Options { reentrant: true, ttl: false, ..Default::default() });
        let mut s = p.server_start(0, &mut cx());
        p.server_on_msg(&mut s, 0, Msg::Acquire { asked: 0 }, &mut cx());
        p.server_on_msg(&mut s, 0, Msg::Acquire { asked: 1 }, &mut cx());
        p.server_on_msg(&mut s, 0, Msg::Release { asked: 1 }, &mut cx());
        assert_eq!(s.hold.as_ref().map(|h| h.count), Some(1));
        p.server_on_msg(&mut s, 0, Msg::Release { asked: 0 }, &mut cx());
        assert!(s.hold.is_none());
    }

    fn db(lock: super::super::db::DbLock, expiry_clock: super::super::db::ExpiryClock) -> LeaseLock {
        let o = super::super::db::Options { lock, expiry_clock, ..Default::default() };
        super::super::db::build(o, &env()).unwrap()
    }

    #[test]
    fn postgres_row_and_advisory_locks_are_reentrant_and_still_queue_others() {
        use super::super::db::{DbLock, ExpiryClock};
        for lock in [DbLock::ForUpdate, DbLock::Advisory] {
            let p = db(lock, ExpiryClock::Database);
            let mut s = p.server_start(0, &mut cx());
            p.server_on_msg(&mut s, 0, Msg::Acquire { asked: 0 }, &mut cx());
            let mut c = cx();
            p.server_on_msg(&mut s, 0, Msg::Acquire { asked: 1 }, &mut c);
            p.server_on_msg(&mut s, 1, Msg::Acquire { asked: 1 }, &mut c);
            assert_eq!(
                replies(&c),
                vec![(0, Msg::Grant { token: None, asked: 1 })],
                "{lock:?}: the owner at once, the other waits"
            );
            p.server_on_msg(&mut s, 0, Msg::Release { asked: 1 }, &mut cx());
            assert_eq!(s.hold.as_ref().map(|h| (h.owner, h.count)), Some((0, 1)), "{lock:?}");
            let mut c = cx();
            p.server_on_msg(&mut s, 0, Msg::Release { asked: 0 }, &mut c);
            assert_eq!(replies(&c), vec![(1, Msg::Grant { token: None, asked: 1 })], "{lock:?}");
        }
    }

    #[test]
    fn an_advisory_lock_dies_with_its_connection_but_the_old_holders_write_still_commits() {
        use super::super::db::{DbLock, ExpiryClock};
        let p = db(DbLock::Advisory, ExpiryClock::Database);
        let mut s = p.server_start(0, &mut cx());
        p.server_on_msg(&mut s, 0, Msg::Acquire { asked: 0 }, &mut cx());
        p.server_on_msg(&mut s, 1, Msg::Acquire { asked: 0 }, &mut cx());
        let mut c = cx();
        p.server_on_timer(&mut s, Timer::Expire(0), &mut c);
        assert_eq!(replies(&c), vec![(1, Msg::Grant { token: None, asked: 0 })], "the waiter gets the lock");
        p.server_on_resource(&mut s, 0, ResReq::Write { token: None, session: 0, value: 1, sale: true }, &mut cx());
        assert_eq!(s.resource.as_ref().map(|r| r.stock), Some(1), "no transaction bound the write to the lock");
        assert_eq!(s.hold.as_ref().map(|h| h.owner), Some(1), "and the write did not release anybody's lock");
    }

    #[test]
    fn an_expiry_on_the_clients_clock_is_taken_over_by_a_waiter_whose_clock_runs_ahead() {
        use super::super::db::{DbLock, ExpiryClock};
        for (clock, taken) in [(ExpiryClock::Client, true), (ExpiryClock::Database, false)] {
            let p = db(DbLock::ExpiryColumn, clock);
            let mut s = p.server_start(0, &mut cx());
            p.server_on_msg(&mut s, 0, Msg::Acquire { asked: 10 }, &mut cx());
            p.server_on_msg(&mut s, 1, Msg::Acquire { asked: 14 }, &mut cx());
            assert_eq!(s.hold.as_ref().map(|h| h.owner), Some(0), "{clock:?}: 14 < 10 + ttl 5");
            p.server_on_msg(&mut s, 1, Msg::Acquire { asked: 15 }, &mut cx());
            assert_eq!(s.hold.as_ref().map(|h| h.owner) == Some(1), taken, "{clock:?}");
        }
    }

    #[test]
    fn optimistic_grants_locally_and_versions_the_row() {
        use super::super::db::{DbLock, ExpiryClock};
        let p = db(DbLock::Optimistic, ExpiryClock::Database);
        let mut c = cx();
        assert!(matches!(p.acquire(&mut LeaseClient::default(), &mut c), LockEvent::Granted { .. }));
        assert!(replies(&c).is_empty(), "no lock request leaves the client");
        let mut s = p.server_start(0, &mut cx());
        p.server_on_resource(&mut s, 0, ResReq::CasWrite { version: 0, value: 1 }, &mut cx());
        p.server_on_resource(&mut s, 1, ResReq::CasWrite { version: 0, value: 1 }, &mut cx());
        assert_eq!(s.resource.as_ref().map(|r| (r.stock, r.version)), Some((1, 1)));
    }

    #[test]
    fn for_update_queues_waiters_and_refuses_an_aborted_transactions_statements() {
        let p = super::super::db::build(Default::default(), &env()).unwrap();
        let mut s = p.server_start(0, &mut cx());
        p.server_on_msg(&mut s, 0, Msg::Acquire { asked: 0 }, &mut cx());
        let mut c = cx();
        p.server_on_msg(&mut s, 1, Msg::Acquire { asked: 0 }, &mut c);
        assert!(replies(&c).is_empty(), "the second SELECT .. FOR UPDATE blocks");
        let mut c = cx();
        p.server_on_timer(&mut s, Timer::Expire(0), &mut c);
        assert_eq!(
            replies(&c),
            vec![(1, Msg::Grant { token: None, asked: 0 })],
            "the abort hands the row to the waiter"
        );
        let mut c = cx();
        p.server_on_resource(&mut s, 0, ResReq::Write { token: None, session: 0, value: 1, sale: true }, &mut c);
        assert!(c.effects.contains(&Effect::Observe(Observation::WriteRejected { client: 0, token: None })));
        assert_eq!(s.resource.as_ref().map(|r| r.stock), Some(2));
        p.server_on_resource(&mut s, 1, ResReq::Write { token: None, session: 0, value: 1, sale: true }, &mut cx());
        assert_eq!(s.resource.as_ref().map(|r| r.stock), Some(1));
        assert!(s.hold.is_none(), "the write commits and releases the row");
    }

    #[test]
    fn an_aborted_transactions_uncommitted_write_is_rolled_back() {
        let p = super::super::db::build(Default::default(), &env()).unwrap();
        let mut s = p.server_start(0, &mut cx());
        p.server_on_msg(&mut s, 0, Msg::Acquire { asked: 0 }, &mut cx());
        p.server_on_msg(&mut s, 0, Msg::Acquire { asked: 0 }, &mut cx());
        let mut c = cx();
        p.server_on_resource(&mut s, 0, ResReq::Write { token: None, session: 0, value: 1, sale: true }, &mut c);
        assert_eq!(s.resource.as_ref().map(|r| r.stock), Some(1), "the nested level's write stays in the transaction");
        let disk = c.effects.iter().rev().find_map(|e| match e {
            Effect::Persist(d) => d.resource.as_ref().map(|r| r.stock),
            _ => None,
        });
        assert_eq!(disk, Some(2), "only what was committed is on disk");
        let durable = c.effects.iter().rev().find_map(|e| match e {
            Effect::Persist(d) => Some(d.clone()),
            _ => None,
        });
        let mut r = cx();
        let restarted = p.server_restart(0, durable.as_ref(), &mut r);
        assert_eq!(restarted.resource.as_ref().map(|x| x.stock), Some(2), "a crash loses it too");
        assert!(r.effects.contains(&Effect::Observe(Observation::RolledBack { client: 0, stock: 2 })));
        let mut c = cx();
        p.server_on_timer(&mut s, Timer::Expire(0), &mut c);
        assert_eq!(s.resource.as_ref().map(|r| r.stock), Some(2), "the abort undoes it");
        assert!(c.effects.contains(&Effect::Observe(Observation::RolledBack { client: 0, stock: 2 })));
    }

    /// Symmetry reduction renames clients everywhere a state names one: the holder, the queue, the
    /// client whose transaction is open on disk, a replication stream's key and an expiry timer.
    #[test]
    fn renaming_moves_the_holder_the_waiters_the_open_transaction_the_streamed_key_and_the_timer() {
        use crate::protocol::Ids;
        let f = |id: NodeId| 2 - id;
        let hold = |owner| Some(Hold { owner, asked: 3, count: 1, until: 8 });
        let mut s = Server {
            hold: hold(0),
            counter: 4,
            waiters: vec![(1, 5), (2, 6)],
            resource: None,
            committed: None,
            repl: None,
        };
        s.map_ids(&f);
        assert_eq!((s.hold, s.waiters), (hold(2), vec![(1, 5), (0, 6)]));
        let mut d = Durable { role: None, hold: hold(0), counter: 4, resource: None, uncommitted: Some(0) };
        d.map_ids(&f);
        assert_eq!((d.hold, d.uncommitted), (hold(2), Some(2)));
        let mut m = Msg::Repl(ReplMsg::Replicate { epoch: 1, offset: 2, state: Keys { hold: hold(0), counter: 4 } });
        m.map_ids(&f);
        assert_eq!(m, Msg::Repl(ReplMsg::Replicate { epoch: 1, offset: 2, state: Keys { hold: hold(2), counter: 4 } }));
        let mut t = Timer::Expire(2);
        t.map_ids(&f);
        assert_eq!(t, Timer::Expire(0));
    }
}

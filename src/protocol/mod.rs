//! The sans-IO protocol interface.
//!
//! Two layers:
//! - [`Machine`]: what the engines run. A set of named nodes, each a deterministic state machine fed
//!   `start`, `message`, `timer` and `restart` inputs together with the node's local clock reading,
//!   recording [`Effect`]s into a [`Cx`]. Engines, faults and renderers depend on this trait only.
//! - [`Protocol`]: what a lock family implements (one file per family). [`crate::system::LockSystem`]
//!   turns a protocol plus the shared workload clients and storage into a `Machine`, so a new
//!   protocol only writes its servers and the client side of its wire protocol.

pub mod db;
pub mod etcd;
pub mod fenced_lease;
pub mod lease;
pub mod none;
pub mod redis;
pub mod redisson;
pub mod redlock;
pub mod replication;
pub mod zookeeper;

use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::hash::Hash;

use crate::resource::{Fencing, ResReq};

/// Index of a node in [`Machine::nodes`]. Clients come first, so a client's id is its number.
pub type NodeId = usize;

/// Everything a protocol puts into a world state must be cloneable, ordered, hashable and printable,
/// so that the model checker can deduplicate it and traces can show it.
pub trait Data:
    Clone + Eq + Ord + Hash + Debug + Serialize + serde::de::DeserializeOwned + Send + Sync + Ids + 'static
{
}
impl<T: Clone + Eq + Ord + Hash + Debug + Serialize + serde::de::DeserializeOwned + Send + Sync + Ids + 'static> Data
    for T
{
}

/// Where a value mentions node ids. Clients are interchangeable, so the model checker may rename
/// them (symmetry reduction); every protocol type says which of its fields hold a node id.
pub trait Ids {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId);
}

/// Types that hold no node id.
#[macro_export]
macro_rules! no_ids {
    ($($t:ty),*) => { $(impl $crate::protocol::Ids for $t { fn map_ids(&mut self, _: &dyn Fn($crate::protocol::NodeId) -> $crate::protocol::NodeId) {} })* };
}
no_ids!((), bool, u8, i64, u64);

impl<T: Ids> Ids for Option<T> {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        if let Some(t) = self {
            t.map_ids(f);
        }
    }
}

impl<T: Ids> Ids for Vec<T> {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        self.iter_mut().for_each(|t| t.map_ids(f));
    }
}

impl<M: Ids> Ids for Wire<M> {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        if let Wire::Lock(m) = self {
            m.map_ids(f);
        }
    }
}

impl<H: Ids> Ids for LockEvent<H> {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        if let LockEvent::Granted { hold, .. } | LockEvent::Lost { hold } = self {
            hold.map_ids(f);
        }
    }
}

impl<T: Ids> Ids for Tmr<T> {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        if let Tmr::Lock(t) = self {
            t.map_ids(f);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Client,
    Server,
    Storage,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeInfo {
    pub name: String,
    pub kind: NodeKind,
    /// Its timers run on the wall clock, so a clock jump moves them (Redis's expiry, catalog #7).
    /// A server whose timers run on a monotonic clock is no target of clock jumps in either engine.
    pub wall_clock: bool,
}

/// What properties see. Nothing else of a protocol's state is visible to them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Observation {
    /// A client starts trying to acquire.
    Waiting {
        client: NodeId,
    },
    /// A lock service granted the lock (server side).
    Granted {
        client: NodeId,
        token: Option<u64>,
    },
    /// A release removed a lock that another client held (an unconditional `DEL`).
    ReleasedOther {
        by: NodeId,
        owner: NodeId,
    },
    /// A client learned it holds the lock; `depth` counts nested acquisitions.
    Acquired {
        client: NodeId,
        depth: u8,
    },
    /// The owner's nested acquire was refused.
    NestedDenied {
        client: NodeId,
    },
    /// A client released one level; at depth 0 it no longer believes it holds the lock.
    Released {
        client: NodeId,
        depth: u8,
    },
    /// A client's own lease-validity check ended its belief before it finished.
    LeaseLapsed {
        client: NodeId,
    },
    /// The client's lock library can no longer vouch for its hold; `stops`: the application
    /// stops believing it holds the lock (`on_lost = "stop"`), rather than carrying on.
    Lost {
        client: NodeId,
        stops: bool,
    },
    /// A server let a lease go (TTL, session or transaction timeout).
    Expired {
        client: NodeId,
    },
    Read {
        client: NodeId,
        token: Option<u64>,
        stock: i64,
    },
    WriteAccepted {
        client: NodeId,
        token: Option<u64>,
        value: i64,
        sale: bool,
        /// The stock the write replaced: a sale that writes back what it found lost a sale.
        before: i64,
    },
    WriteRejected {
        client: NodeId,
        token: Option<u64>,
    },
    Decremented {
        client: NodeId,
        stock: i64,
    },
    SoldOut {
        client: NodeId,
    },
    /// A server aborted `client`'s transaction, which had written without committing: the stock
    /// is `stock` again, the uncommitted sales undone.
    RolledBack {
        client: NodeId,
        stock: i64,
    },
    /// The client performed the external side effect of its critical section (charging a card,
    /// shipping) for the item it read: `item` is the stock it read.
    SideEffect {
        client: NodeId,
        item: i64,
    },
    /// The client's workload has finished.
    Done {
        client: NodeId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect<M, T, D> {
    Send { to: NodeId, msg: M },
    SetTimer { timer: T, after: i64 },
    CancelTimer { timer: T },
    Persist(D),
    Observe(Observation),
}

/// The context of one handler call: who runs, its local clock reading, and the effects it records.
pub struct Cx<M, T, D> {
    pub me: NodeId,
    pub now: i64,
    /// The node's application thread is stuck (a `hang`): only its lock library runs.
    pub app_hung: bool,
    pub effects: Vec<Effect<M, T, D>>,
}

impl<M, T, D> Cx<M, T, D> {
    pub fn new(me: NodeId, now: i64) -> Self {
        Cx { me, now, app_hung: false, effects: Vec::new() }
    }
    pub fn send(&mut self, to: NodeId, msg: M) {
        self.effects.push(Effect::Send { to, msg });
    }
    pub fn set_timer(&mut self, timer: T, after: i64) {
        self.effects.push(Effect::SetTimer { timer, after });
    }
    pub fn cancel_timer(&mut self, timer: T) {
        self.effects.push(Effect::CancelTimer { timer });
    }
    pub fn persist(&mut self, durable: D) {
        self.effects.push(Effect::Persist(durable));
    }
    pub fn observe(&mut self, obs: Observation) {
        self.effects.push(Effect::Observe(obs));
    }
}

/// A closed system of nodes, run by both engines.
pub trait Machine: Send + Sync + 'static {
    type State: Data;
    type Msg: Data;
    type Timer: Data;
    type Durable: Data;

    fn nodes(&self) -> &[NodeInfo];
    fn start(&self, cx: &mut MCx<Self>) -> Self::State;
    fn on_message(&self, state: &mut Self::State, from: NodeId, msg: Self::Msg, cx: &mut MCx<Self>);
    fn on_timer(&self, state: &mut Self::State, timer: Self::Timer, cx: &mut MCx<Self>);
    /// Whether the servers are interchangeable (symmetry reduction may rename them).
    fn symmetric_servers(&self) -> bool;
    /// Whether messages between two nodes arrive in the order they were sent (a TCP session, as
    /// ZooKeeper's); otherwise the network may reorder them.
    fn fifo(&self) -> bool;
    /// Whether a message dies with the connection it rides on: one the two processes kept (a
    /// replication stream, `PSYNC` and its answer, acknowledgements). It never reaches a
    /// receiver that crashed or restarted, nor arrives from a sender that restarted (its new
    /// process connects anew; lockcheck's real relay drops a restarted master's held stream). A
    /// client's request to a server that restarts is not: it stands for the same request made
    /// again on a new connection.
    fn dies_with_connection(&self, msg: &Self::Msg) -> bool;
    /// Whether a message or a timer goes to the application thread rather than the lock
    /// library's threads (a `hang` stops only the former).
    fn is_app_msg(&self, msg: &Self::Msg) -> bool;
    fn is_app_timer(&self, timer: &Self::Timer) -> bool;
    /// The application thread runs again after a `hang`: it handles what its library told it
    /// meanwhile.
    fn resume_app(&self, state: &mut Self::State, cx: &mut MCx<Self>);
    /// A message and a timer in the real system's terms, for traces.
    fn show_msg(&self, from: NodeId, msg: &Self::Msg) -> String;
    fn show_timer(&self, timer: &Self::Timer) -> String;
    /// A crashed node comes back, with what it persisted if the disk survived.
    fn restart(&self, durable: Option<&Self::Durable>, cx: &mut MCx<Self>) -> Self::State;
}

pub type MCx<M> = Cx<<M as Machine>::Msg, <M as Machine>::Timer, <M as Machine>::Durable>;

/// Messages on the wire: the protocol's own, or requests to and replies from the protected resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Wire<M> {
    Lock(M),
    Res(ResReq),
    ResReply(crate::resource::ResReply),
}

/// A message in the system's words: the family's own for its lock messages (sent by `from`),
/// the stock's statements and replies for the others.
pub fn show_wire<P: Protocol>(proto: &P, from: NodeId, m: &Wire<P::Msg>) -> String {
    match m {
        Wire::Lock(m) => proto.show_msg(from, m),
        Wire::Res(r) => r.to_string(),
        Wire::ResReply(r) => r.to_string(),
    }
}

/// Timers: the protocol's own, or the workload client's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tmr<T> {
    Lock(T),
    /// A waiting client asks again.
    Retry,
    /// The client's own view of its lease ran out.
    Validity,
    /// The client's work inside the critical section is done.
    Work,
    /// A request to the resource went unanswered.
    Statement,
}

pub type PCx<P> = Cx<Wire<<P as Protocol>::Msg>, Tmr<<P as Protocol>::Timer>, <P as Protocol>::Durable>;

impl<M, T, D> Cx<Wire<M>, Tmr<T>, D> {
    pub fn send_lock(&mut self, to: NodeId, msg: M) {
        self.send(to, Wire::Lock(msg));
    }
    pub fn set_lock_timer(&mut self, timer: T, after: i64) {
        self.set_timer(Tmr::Lock(timer), after);
    }
    pub fn cancel_lock_timer(&mut self, timer: T) {
        self.cancel_timer(Tmr::Lock(timer));
    }
}

/// What a client's lock library reports to the application.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LockEvent<H> {
    /// The application holds the lock. `hold` identifies this hold (handed back to `release`);
    /// `token` is what the resource may check; `valid_for` is how long, on the client's clock, the
    /// library vouches for it (Redlock's validity time), when it says.
    Granted {
        hold: H,
        token: Option<u64>,
        valid_for: Option<i64>,
    },
    /// Queued behind other holders: a notification will come, the application must not retry.
    Queued,
    /// Refused: ask again after `retry_after` ticks (polling locks, and a library's request timeout).
    Busy {
        retry_after: i64,
    },
    /// The library can no longer vouch for the hold (session expired, connection suspended past
    /// its limit, renewal failed).
    Lost {
        hold: H,
    },
    Ignore,
}

/// The protocol messages a handler sent, with their destinations (for unit tests of handlers).
#[cfg(test)]
pub(crate) fn lock_sends<M: Clone, T, D>(cx: &Cx<Wire<M>, T, D>) -> Vec<(NodeId, M)> {
    cx.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, msg: Wire::Lock(m) } => Some((*to, m.clone())),
            _ => None,
        })
        .collect()
}

/// The protocol timers a handler set, with their delays (for unit tests of handlers).
#[cfg(test)]
pub(crate) fn lock_timers<M, T: Clone, D>(cx: &Cx<M, Tmr<T>, D>) -> Vec<(T, i64)> {
    cx.effects
        .iter()
        .filter_map(|e| match e {
            Effect::SetTimer { timer: Tmr::Lock(t), after } => Some((t.clone(), *after)),
            _ => None,
        })
        .collect()
}

/// Where the protected resource lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceHome {
    /// A separate `storage` node, checking fencing tokens as told.
    Storage(Fencing),
    /// Inside server 0 (a database that holds both the lock and the stock).
    Server,
}

/// A client-side lease check (Redlock's validity rule): the client stops believing it holds the lock
/// once `ttl - margin` has passed on its own clock since it sent the acquire request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLease {
    pub ttl: i64,
    pub margin: i64,
}

impl ClientLease {
    /// How long a hold asked for at `asked` is still valid at `now` (≤ 0: granted too late).
    pub fn left(self, asked: i64, now: i64) -> i64 {
        asked + self.ttl - self.margin - now
    }
}

/// A lock protocol family: server handlers and the client side (the lock library), written once.
/// The workload (what the application does while holding the lock) and the protected resource are
/// shared and live elsewhere.
///
/// # The observation contract
///
/// Properties see observations only, so every family must emit, in every configuration:
/// - `Granted { client, token }` exactly once per hold, at the moment the hold begins: by the server
///   where a server decides (a `SET NX` that succeeds), by the library where the client decides (a
///   Redlock majority, the lowest ZooKeeper sequence node). `token` is what the resource checks, if
///   the family fences. A resource that accepts a write from a client with no recorded grant, or an
///   application that believes it holds a lock nobody granted, panics (a broken contract must not
///   pass as a safe protocol).
/// - `Expired { client }` when a server lets a hold go by itself (TTL, session, transaction).
///
/// The workload adds `Waiting`, `Acquired`, `Released`, `LeaseLapsed` and `Done`; the resource adds
/// `Read`, `WriteAccepted`, `WriteRejected`, `Decremented` and `SoldOut`. The conformance suite
/// (`tests/conformance.rs`) runs every registered family under a pause, a holder crash, a lost
/// reply and a server restart, and fails a family whose observations leave a property unjudged.
pub trait Protocol: Sized + Send + Sync + 'static {
    type Server: Data;
    /// What a client's lock library remembers between inputs.
    type Client: Data + Default;
    type Msg: Data;
    type Timer: Data;
    type Durable: Data;
    /// What identifies one hold (a random value, a znode name, a revision).
    type Hold: Data;

    /// Names of the server nodes (`redis`, `db`, `lease-0`, ...).
    fn servers(&self) -> Vec<String>;
    fn resource(&self) -> ResourceHome;
    /// Whether grants carry tokens meant to increase (judged by `token_monotonic`).
    fn issues_tokens(&self) -> bool;
    /// Whether the servers' timers run on the wall clock, which a clock jump moves (Redis expires
    /// keys by `gettimeofday`, catalog #7); `false` for servers that time out on a monotonic
    /// clock, which stepping the wall clock leaves alone.
    fn server_timers_on_wall_clock(&self) -> bool {
        true
    }
    /// Whether the servers are interchangeable: no server is special and none is named in state.
    fn symmetric_servers(&self) -> bool {
        false
    }

    fn server_start(&self, index: usize, cx: &mut PCx<Self>) -> Self::Server;
    fn server_restart(&self, index: usize, durable: Option<&Self::Durable>, cx: &mut PCx<Self>) -> Self::Server;
    fn server_on_msg(&self, s: &mut Self::Server, from: NodeId, msg: Self::Msg, cx: &mut PCx<Self>);
    fn server_on_timer(&self, s: &mut Self::Server, timer: Self::Timer, cx: &mut PCx<Self>);
    /// For [`ResourceHome::Server`]: a resource request reaches the server. The default is for
    /// protocols whose resource is a separate node, where this is never called.
    fn server_on_resource(&self, _s: &mut Self::Server, _from: NodeId, _req: ResReq, _cx: &mut PCx<Self>) {}

    /// The library starts with its process (connects, opens a session).
    fn client_start(&self, _c: &mut Self::Client, _cx: &mut PCx<Self>) {}
    /// Which connection or transaction the application's resource requests under `hold` go
    /// through (a database binds statements to the transaction that holds the row lock).
    fn session(&self, _hold: &Self::Hold) -> i64 {
        0
    }
    /// Start acquiring (also nested and retried acquires). May decide at once.
    fn acquire(&self, c: &mut Self::Client, cx: &mut PCx<Self>) -> LockEvent<Self::Hold>;
    /// Give up `hold` (unlock). The library may keep working afterwards (closing a session).
    fn release(&self, c: &mut Self::Client, hold: &Self::Hold, cx: &mut PCx<Self>);
    fn client_on_msg(
        &self,
        c: &mut Self::Client,
        from: NodeId,
        msg: Self::Msg,
        cx: &mut PCx<Self>,
    ) -> LockEvent<Self::Hold>;
    /// The library's own timers: request timeouts, session pings, keep-alives, watchdogs.
    fn client_on_timer(
        &self,
        _c: &mut Self::Client,
        _timer: Self::Timer,
        _cx: &mut PCx<Self>,
    ) -> LockEvent<Self::Hold> {
        LockEvent::Ignore
    }

    /// Whether the client's connection to the servers delivers in order (see [`Machine::fifo`]).
    fn fifo(&self) -> bool {
        false
    }
    /// See [`Machine::dies_with_connection`].
    fn dies_with_connection(&self, _msg: &Self::Msg) -> bool {
        false
    }
    /// A message as the real system's log or wire would show it (`SET lock c0:3 NX PX 30`);
    /// required, so no trace falls back to Rust's `Debug`.
    fn show_msg(&self, from: NodeId, msg: &Self::Msg) -> String;
    /// A timer as the real system would name it.
    fn show_timer(&self, timer: &Self::Timer) -> String;
}

/// Checks a `validity_margin` knob: it needs expiring leases and must leave some lease to use.
pub(crate) fn check_margin(
    margin: Option<i64>,
    expires: bool,
    env: &crate::spec::Env,
) -> Result<Option<i64>, (String, String)> {
    let Some(m) = margin else { return Ok(None) };
    if !expires {
        return Err(("validity_margin".into(), "needs leases that expire (ttl = true)".into()));
    }
    if !env.timed {
        return Err((
            "validity_margin".into(),
            "needs time.mode = \"discrete\" (untimed runs have no durations)".into(),
        ));
    }
    if m < 0 || m >= env.ttl {
        return Err(("validity_margin".into(), format!("must be 0..ttl_ticks ({}), got {m}", env.ttl)));
    }
    Ok(Some(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Env, Workload};

    /// A value that is one node id, as a protocol's hold or a queue entry is.
    #[derive(Clone, Debug, PartialEq)]
    struct Id(NodeId);

    impl Ids for Id {
        fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
            self.0 = f(self.0);
        }
    }

    #[test]
    fn renaming_reaches_the_ids_inside_options_vectors_messages_lock_events_and_timers() {
        let swap = |id: NodeId| [1, 0, 2][id];
        let renamed = |mut v: Vec<Option<Id>>| {
            v.map_ids(&swap);
            v
        };
        assert_eq!(
            renamed(vec![Some(Id(0)), None, Some(Id(2)), Some(Id(1))]),
            [Some(Id(1)), None, Some(Id(2)), Some(Id(0))]
        );
        let mut wire = Wire::Lock(Id(0));
        wire.map_ids(&swap);
        assert_eq!(wire, Wire::Lock(Id(1)));
        let mut granted = LockEvent::Granted { hold: Id(1), token: Some(4), valid_for: Some(2) };
        granted.map_ids(&swap);
        assert_eq!(granted, LockEvent::Granted { hold: Id(0), token: Some(4), valid_for: Some(2) });
        let mut lost = LockEvent::Lost { hold: Id(0) };
        lost.map_ids(&swap);
        assert_eq!(lost, LockEvent::Lost { hold: Id(1) });
        let mut timer = Tmr::Lock(Id(1));
        timer.map_ids(&swap);
        assert_eq!(timer, Tmr::Lock(Id(0)));
    }

    #[test]
    fn a_validity_margin_needs_expiring_leases_and_durations_and_must_leave_some_lease() {
        let env = Env::test(2, Workload::CriticalWrite, 5, 1);
        let refused =
            |margin, expires, env: &Env| check_margin(Some(margin), expires, env).err().map(|(field, _)| field);
        assert_eq!(check_margin(None, false, &env), Ok(None), "no margin, nothing to check");
        assert_eq!(refused(1, false, &env).as_deref(), Some("validity_margin"));
        assert_eq!(refused(1, true, &Env { timed: false, ..env.clone() }).as_deref(), Some("validity_margin"));
        assert_eq!(refused(-1, true, &env).as_deref(), Some("validity_margin"));
        assert_eq!(refused(5, true, &env).as_deref(), Some("validity_margin"));
        assert_eq!(check_margin(Some(0), true, &env), Ok(Some(0)));
        assert_eq!(check_margin(Some(4), true, &env), Ok(Some(4)));
    }

    #[test]
    fn a_client_lease_runs_from_the_request_for_the_ttl_less_the_margin() {
        let lease = ClientLease { ttl: 10, margin: 2 };
        assert_eq!([lease.left(3, 3), lease.left(3, 10), lease.left(3, 11), lease.left(3, 12)], [8, 1, 0, -1]);
    }
}

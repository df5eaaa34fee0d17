//! Asynchronous master–replica replication with Sentinel-style failover, for any family whose
//! server is a Redis (the `redis` lease machine, [`super::lease`], and [`super::redisson`]; their
//! knobs `replicas`, `down_after`, `min_replicas_to_ack`).
//!
//! Follows the Redis replication and Sentinel docs, reduced to what a lock key needs:
//! - The master streams its state (the lock key, and the token counter where there is one, with a
//!   replication offset) to every replica once a tick, and answers clients without waiting for
//!   them: what it granted in the last tick is on no replica yet (replication lag; catalog #6).
//! - Sentinel promotes a replica once the master has been silent for `down_after` ticks (its
//!   `down-after-milliseconds`; replica `i` waits `i - 1` ticks more, standing for the election of
//!   one). The promoted replica starts a new epoch, serves what was replicated to it, and announces
//!   itself (`+switch-master`); a node that hears a newer epoch becomes its replica, as Sentinel
//!   reconfigures an old master that comes back. Keys expire on the master only, as in Redis.
//! - A node that attaches to a master (an old master demoted, a replica moved to the new master,
//!   a replica that restarted) refuses writes at once but keeps its own keys until it has synced:
//!   it sends `PSYNC`, and the master answers with its state *of then* (`+FULLRESYNC`), not of
//!   when its stream to the node was sent. The master's regular stream reaches only a replica
//!   that synced; a replica still syncing asks again when it hears the master (Redis retries the
//!   connection every second), so a `PSYNC` lost with a master that crashed is not the end.
//! - `min_replicas_to_ack` (`WAIT n`): the grant is answered only once that many replicas
//!   acknowledged an offset that includes it. Caveats of the docs that remain: an acknowledged write
//!   may still be lost if Sentinel promotes a replica that did not acknowledge it (more replicas than
//!   acks), and `WAIT` does not make Redis strongly consistent.
//! - Clients write to the master they know (Sentinel's `+switch-master` tells them); a replica
//!   answers `-READONLY`, and a client whose request times out or is refused tries the next node,
//!   as a Sentinel-aware client re-resolves the master after a connection error.
//!
//! A family plugs in by implementing [`Replicated`]: what its master streams, how a replica takes
//! it, and which of its timers run only on a master.

use serde::{Deserialize, Serialize};

use crate::protocol::{Ids, NodeId, PCx, Protocol};
use crate::spec::Env;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replication {
    pub replicas: usize,
    pub down_after: i64,
    pub min_acks: u8,
}

impl Replication {
    /// The knobs `replicas`, `down_after` (default a third of the TTL) and `min_replicas_to_ack`.
    pub fn from_knobs(
        replicas: usize,
        down_after: Option<i64>,
        min_acks: u8,
        env: &Env,
    ) -> Result<Option<Replication>, (String, String)> {
        let bad = |field: &str, msg: String| Err((field.to_string(), msg));
        if replicas == 0 {
            if down_after.is_some() || min_acks > 0 {
                return bad("replicas", "down_after and min_replicas_to_ack need replicas >= 1".into());
            }
            return Ok(None);
        }
        if replicas > 3 {
            return bad("replicas", format!("must be 0..=3, got {replicas}"));
        }
        if !env.timed {
            return bad("replicas", "replication and failover need time.mode = \"discrete\"".into());
        }
        if usize::from(min_acks) > replicas {
            return bad("min_replicas_to_ack", format!("must be 0..=replicas ({replicas}), got {min_acks}"));
        }
        let down_after = down_after.unwrap_or((env.ttl / 3).max(2));
        if down_after < 2 {
            // One tick of silence is every tick's normal gap between two stream messages.
            return bad("down_after", format!("must be at least 2 ticks, got {down_after}"));
        }
        Ok(Some(Replication { replicas, down_after, min_acks }))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Master,
    Replica,
}

/// A reply waiting for replica acknowledgements (`WAIT`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Pending<M> {
    pub to: NodeId,
    pub reply: M,
    /// The replication offset that includes the write the reply confirms.
    pub offset: u32,
    /// Replicas that acknowledged it (bit = server index).
    pub acked: u8,
}

/// A replica's connection to its master (server index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Link {
    /// A master, or a replica that knows no master yet.
    None,
    /// Sent `PSYNC`, waiting for the master's snapshot.
    Syncing(u8),
    Up(u8),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReplState<M> {
    pub role: Role,
    pub epoch: u8,
    /// Replication offset: bumped by every change the master makes.
    pub offset: u32,
    pub pending: Option<Pending<M>>,
    pub link: Link,
}

/// The messages of replication and Sentinel, carried inside a family's own messages.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ReplMsg<S> {
    /// The master's replication stream: its state at `offset`, in `epoch`.
    Replicate {
        epoch: u8,
        offset: u32,
        state: S,
    },
    Ack {
        offset: u32,
    },
    /// A node attaching to the sender's stream asks for its state (`PSYNC`).
    Psync,
    /// The master's answer to `PSYNC`: its state of then (`+FULLRESYNC` and the snapshot).
    FullResync {
        epoch: u8,
        offset: u32,
        state: S,
    },
    /// Sentinel's `+switch-master`: the sender is the master now.
    SwitchMaster,
    /// A replica refuses a write (`-READONLY`).
    ReadOnly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ReplTimer {
    /// The master streams its state to the replicas.
    Heartbeat,
    /// A replica has heard nothing from the master for `down_after`: Sentinel fails over to it.
    MasterDown,
}

/// A family whose server can be replicated.
pub trait Replicated: Protocol {
    /// What the master streams: the keys it holds.
    type Snapshot: Clone;
    fn replication(&self) -> Option<Replication>;
    /// The node of server 0, the first master; the clients are the nodes below it.
    fn first_server(&self) -> NodeId;
    fn repl(s: &Self::Server) -> Option<&ReplState<Self::Msg>>;
    fn repl_mut(s: &mut Self::Server) -> Option<&mut ReplState<Self::Msg>>;
    fn snapshot(s: &Self::Server) -> Self::Snapshot;
    /// Writes the server's disk, its role with it (Sentinel rewrites a node's config as it
    /// reconfigures it).
    fn save(&self, s: &Self::Server, cx: &mut PCx<Self>);
    /// A replica takes the master's state, and saves it.
    fn install(&self, s: &mut Self::Server, state: Self::Snapshot, how: Sync, cx: &mut PCx<Self>);
    /// The server becomes (`true`) or stops being the master: keys expire on the master only.
    fn set_master(&self, s: &Self::Server, master: bool, cx: &mut PCx<Self>);
    fn wrap(m: ReplMsg<Self::Snapshot>) -> Self::Msg;
    fn wrap_timer(t: ReplTimer) -> Self::Timer;
}

/// How a replica came by its master's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    /// The stream: the master's commands replayed, with what they do besides writing keys (a
    /// `PUBLISH` reaches the replica's own subscribers).
    Stream,
    /// A full sync's snapshot: the keys alone.
    Snapshot,
}

/// Whether this server may serve clients: it is the master, or there is no replication.
pub fn serves<P: Replicated>(s: &P::Server) -> bool {
    P::repl(s).is_none_or(|r| r.role == Role::Master)
}

/// A server starts (`was` is `None`: server 0 is the first master), or restarts in the role and
/// epoch it had on disk, `Some(None)` when nothing was: an old master comes back as master until
/// it hears of a newer epoch, and Sentinel then makes it a replica; a server with no disk comes
/// back as a replica.
pub fn start<P: Replicated>(
    p: &P,
    index: usize,
    was: Option<Option<(Role, u8)>>,
    cx: &mut PCx<P>,
) -> Option<ReplState<P::Msg>> {
    let cfg = p.replication()?;
    let (role, epoch, link) = match was {
        None if index == 0 => (Role::Master, 0, Link::None),
        None => (Role::Replica, 0, Link::Up(0)),
        Some(None) => (Role::Replica, 0, Link::None),
        Some(Some((role, epoch))) => (role, epoch, Link::None),
    };
    match role {
        Role::Master => cx.set_lock_timer(P::wrap_timer(ReplTimer::Heartbeat), 1),
        Role::Replica => cx.set_lock_timer(P::wrap_timer(ReplTimer::MasterDown), down_after(cfg, index)),
    }
    Some(ReplState { role, epoch, offset: 0, pending: None, link })
}

/// What a replicated server keeps on disk of its role.
pub fn role<P: Replicated>(s: &P::Server) -> Option<(Role, u8)> {
    P::repl(s).map(|r| (r.role, r.epoch))
}

/// How long server `index` waits for a silent master before it takes over: replicas in turn,
/// two ticks apart so that the first one's stream reaches the next in time, an old master that
/// came back last.
fn down_after(cfg: Replication, index: usize) -> i64 {
    let turn = if index == 0 { cfg.replicas } else { index - 1 };
    cfg.down_after + 2 * turn as i64
}

/// The master changed its keys.
pub fn changed<P: Replicated>(s: &mut P::Server) {
    if let Some(r) = P::repl_mut(s)
        && r.role == Role::Master
    {
        r.offset += 1;
    }
}

/// Answers a write: now, or with `WAIT` once enough replicas acknowledged it. A client that
/// retries while its first `WAIT` is still waiting is answered when the first one returns (its
/// offset is the lower one): the retry's own `WAIT` answer would only repeat it.
pub fn answer<P: Replicated>(p: &P, s: &mut P::Server, to: NodeId, reply: P::Msg, cx: &mut PCx<P>) {
    match (p.replication(), P::repl_mut(s)) {
        (Some(cfg), Some(r)) if cfg.min_acks > 0 => {
            if r.pending.as_ref().is_none_or(|q| q.to != to) {
                r.pending = Some(Pending { to, reply, offset: r.offset, acked: 0 });
            }
        }
        _ => cx.send_lock(to, reply),
    }
}

/// The write a held-back reply confirms is gone: nobody will be told of it.
pub fn forget_pending<P: Replicated>(s: &mut P::Server) {
    if let Some(r) = P::repl_mut(s) {
        r.pending = None;
    }
}

pub fn on_timer<P: Replicated>(p: &P, s: &mut P::Server, timer: ReplTimer, cx: &mut PCx<P>) {
    let (Some(cfg), Some(&ReplState { role, epoch, offset, .. })) = (p.replication(), P::repl(s)) else { return };
    match (timer, role) {
        (ReplTimer::Heartbeat, Role::Master) => {
            let (state, me) = (P::snapshot(s), cx.me);
            for node in (0..=cfg.replicas).map(|i| p.first_server() + i).filter(|&n| n != me) {
                cx.send_lock(node, P::wrap(ReplMsg::Replicate { epoch, offset, state: state.clone() }));
            }
            cx.set_lock_timer(P::wrap_timer(ReplTimer::Heartbeat), 1);
        }
        (ReplTimer::MasterDown, Role::Replica) => {
            if let Some(r) = P::repl_mut(s) {
                r.role = Role::Master;
                r.epoch += 1;
                r.link = Link::None;
            }
            cx.set_lock_timer(P::wrap_timer(ReplTimer::Heartbeat), 1);
            p.set_master(s, true, cx);
            p.save(s, cx);
            for client in 0..p.first_server() {
                cx.send_lock(client, P::wrap(ReplMsg::SwitchMaster));
            }
        }
        _ => {}
    }
}

/// A server hears the replication stream, `PSYNC` or an acknowledgement; clients' messages are theirs.
pub fn on_msg<P: Replicated>(p: &P, s: &mut P::Server, from: NodeId, msg: ReplMsg<P::Snapshot>, cx: &mut PCx<P>) {
    match msg {
        ReplMsg::Replicate { epoch, offset, state } => on_replicate(p, s, from, (epoch, offset, state), cx),
        ReplMsg::Psync => on_psync::<P>(s, from, cx),
        ReplMsg::FullResync { epoch, offset, state } => on_full_resync(p, s, from, (epoch, offset, state), cx),
        ReplMsg::Ack { offset } => on_ack(p, s, from, offset, cx),
        ReplMsg::SwitchMaster | ReplMsg::ReadOnly => {}
    }
}

/// What a node does with the stream of server `from` (epoch `epoch`).
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// Not its master's, nor newer: nothing.
    Ignored,
    /// A newer master: the node becomes its replica and asks for its state.
    Attach,
    /// Its master, still answering its `PSYNC`: it asks again.
    Resync,
    /// Its master's stream: it takes it.
    Take,
}

/// The decision of [`on_replicate`], shared with the real counterpart, which must mirror it.
pub fn heard(role: Role, (epoch, link): (u8, Link), (from, me): (u8, u8), stream_epoch: u8) -> Heard {
    // Two masters of one epoch (promoted in the same tick): the lower node wins, as the Sentinel
    // election would have picked one.
    let attach = stream_epoch > epoch
        || stream_epoch == epoch
            && match (role, link) {
                (Role::Master, _) => from < me,
                (Role::Replica, Link::None) => true,
                (Role::Replica, Link::Syncing(m) | Link::Up(m)) => from < m,
            };
    match link {
        _ if attach => Heard::Attach,
        Link::Syncing(m) if m == from && stream_epoch == epoch => Heard::Resync,
        Link::Up(m) if m == from && stream_epoch == epoch => Heard::Take,
        _ => Heard::Ignored,
    }
}

fn on_replicate<P: Replicated>(
    p: &P,
    s: &mut P::Server,
    from: NodeId,
    (epoch, offset, state): (u8, u32, P::Snapshot),
    cx: &mut PCx<P>,
) {
    let (Some(cfg), Some(r)) = (p.replication(), P::repl(s)) else { return };
    let (index, me) = (server_index(p, from), server_index(p, cx.me));
    match heard(r.role, (r.epoch, r.link), (index, me), epoch) {
        Heard::Ignored => {}
        Heard::Attach => {
            if r.role == Role::Master {
                cx.cancel_lock_timer(P::wrap_timer(ReplTimer::Heartbeat));
                p.set_master(s, false, cx);
            }
            if let Some(r) = P::repl_mut(s) {
                *r = ReplState {
                    role: Role::Replica,
                    epoch,
                    offset: r.offset,
                    pending: None,
                    link: Link::Syncing(index),
                };
            }
            p.save(s, cx);
            ask_for_state::<P>(cfg, from, me, cx);
        }
        Heard::Resync => ask_for_state::<P>(cfg, from, me, cx),
        Heard::Take => take(p, s, from, (offset, state, Sync::Stream), cx),
    }
}

/// A replica sends `PSYNC` to `from`, which it now counts as its master (its silence starts
/// Sentinel's clock).
fn ask_for_state<P: Replicated>(cfg: Replication, from: NodeId, me: u8, cx: &mut PCx<P>) {
    cx.set_lock_timer(P::wrap_timer(ReplTimer::MasterDown), down_after(cfg, usize::from(me)));
    cx.send_lock(from, P::wrap(ReplMsg::Psync));
}

/// A replica takes its master's state at `offset`, and acknowledges it for `WAIT`.
fn take<P: Replicated>(
    p: &P,
    s: &mut P::Server,
    from: NodeId,
    (offset, state, how): (u32, P::Snapshot, Sync),
    cx: &mut PCx<P>,
) {
    let Some(cfg) = p.replication() else { return };
    let index = server_index(p, from);
    if let Some(r) = P::repl_mut(s) {
        r.offset = offset;
        r.link = Link::Up(index);
    }
    cx.set_lock_timer(P::wrap_timer(ReplTimer::MasterDown), down_after(cfg, cx.me - p.first_server()));
    if cfg.min_acks > 0 {
        cx.send_lock(from, P::wrap(ReplMsg::Ack { offset }));
    }
    p.install(s, state, how, cx);
}

/// A master answers `PSYNC` with its state now; a node that is no master does not answer (the
/// replica asks again, or fails over).
fn on_psync<P: Replicated>(s: &P::Server, from: NodeId, cx: &mut PCx<P>) {
    let Some(&ReplState { role: Role::Master, epoch, offset, .. }) = P::repl(s) else { return };
    cx.send_lock(from, P::wrap(ReplMsg::FullResync { epoch, offset, state: P::snapshot(s) }));
}

fn on_full_resync<P: Replicated>(
    p: &P,
    s: &mut P::Server,
    from: NodeId,
    (epoch, offset, state): (u8, u32, P::Snapshot),
    cx: &mut PCx<P>,
) {
    let Some(r) = P::repl(s) else { return };
    if takes_full_resync((r.role, r.epoch, r.link), server_index(p, from), epoch) {
        take(p, s, from, (offset, state, Sync::Snapshot), cx);
    }
}

/// Whether a node takes a `+FULLRESYNC` from server `from` of `epoch`: it is that master's
/// replica (syncing, or asking again). Shared with the real counterpart, as [`heard`] is.
pub fn takes_full_resync((role, mine, link): (Role, u8, Link), from: u8, epoch: u8) -> bool {
    let master = matches!(link, Link::Syncing(m) | Link::Up(m) if m == from);
    role == Role::Replica && master && epoch == mine
}

fn server_index<P: Replicated>(p: &P, node: NodeId) -> u8 {
    u8::try_from(node - p.first_server()).expect("at most 4 servers")
}

fn on_ack<P: Replicated>(p: &P, s: &mut P::Server, from: NodeId, offset: u32, cx: &mut PCx<P>) {
    let (Some(cfg), Some(r)) = (p.replication(), P::repl_mut(s)) else { return };
    let Some(pending) = r.pending.as_mut().filter(|q| offset >= q.offset) else { return };
    pending.acked |= 1 << (from - p.first_server());
    if pending.acked.count_ones() >= u32::from(cfg.min_acks) {
        let done = r.pending.take().expect("checked above");
        cx.send_lock(done.to, done.reply);
    }
}

/// Whether a replication message rides on the connection between master and replica (the stream,
/// `PSYNC` and its answer, acknowledgements): a process that restarts is connected to again, or
/// connects again and syncs anew, so nothing sent to its old process reaches it.
pub fn on_connection<S>(msg: &ReplMsg<S>) -> bool {
    matches!(msg, ReplMsg::Replicate { .. } | ReplMsg::Psync | ReplMsg::FullResync { .. } | ReplMsg::Ack { .. })
}

/// The node a client's lock library sends to: the master it knows (index among the servers).
pub fn master_node<P: Replicated>(p: &P, master: u8) -> NodeId {
    p.first_server() + usize::from(master)
}

/// The client's guess of the master was wrong or is silent: try the next node.
pub fn next_master<P: Replicated>(p: &P, master: &mut u8) {
    if let Some(r) = p.replication() {
        *master = ((usize::from(*master) + 1) % (r.replicas + 1)) as u8;
    }
}

/// A client heard `+switch-master` from `from`.
pub fn switch_master<P: Replicated>(p: &P, master: &mut u8, from: NodeId) {
    *master = (from - p.first_server()) as u8;
}

/// A replication message as Redis and Sentinel name it; `state` renders what the stream carries.
pub fn show_msg<S>(msg: &ReplMsg<S>, state: impl FnOnce(&S) -> String) -> String {
    match msg {
        ReplMsg::Replicate { epoch, offset, state: s } => {
            format!("replication stream (epoch {epoch}, offset {offset}): {}", state(s))
        }
        ReplMsg::Ack { offset } => format!("REPLCONF ACK {offset}"),
        ReplMsg::Psync => "PSYNC ? -1 (attach as a replica, ask for the master's state)".into(),
        ReplMsg::FullResync { epoch, offset, state: s } => {
            format!("+FULLRESYNC (epoch {epoch}, offset {offset}): snapshot {}", state(s))
        }
        ReplMsg::SwitchMaster => "Sentinel: +switch-master: I am the master now".into(),
        ReplMsg::ReadOnly => "-READONLY You can't write against a read only replica.".into(),
    }
}

pub fn show_timer(timer: ReplTimer) -> String {
    match timer {
        ReplTimer::Heartbeat => "replication tick".into(),
        ReplTimer::MasterDown => {
            "Sentinel: master silent for down-after-milliseconds, fail over to this replica".into()
        }
    }
}

impl<M: Ids> Ids for ReplState<M> {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        if let Some(p) = &mut self.pending {
            p.to = f(p.to);
            p.reply.map_ids(f);
        }
    }
}

impl<S: Ids> Ids for ReplMsg<S> {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        if let ReplMsg::Replicate { state, .. } | ReplMsg::FullResync { state, .. } = self {
            state.map_ids(f);
        }
    }
}

crate::no_ids!(ReplTimer);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::lease::{LeaseLock, Msg, Timer};
    use crate::protocol::{Observation, lock_sends, lock_timers};
    use crate::spec::{Env, Workload};

    fn redis(replicas: usize, min_replicas_to_ack: u8) -> LeaseLock {
        redis_for(2, replicas, min_replicas_to_ack)
    }

    fn redis_for(clients: usize, replicas: usize, min_replicas_to_ack: u8) -> LeaseLock {
        let o = crate::protocol::redis::Options { replicas, min_replicas_to_ack, ..Default::default() };
        crate::protocol::redis::build(o, &Env::test(clients, Workload::CriticalWrite, 6, 1)).unwrap()
    }

    /// Server `index` (node 2 + index) at `now`.
    fn cx(index: usize, now: i64) -> PCx<LeaseLock> {
        PCx::<LeaseLock>::new(2 + index, now)
    }

    #[test]
    fn a_replica_refuses_writes_and_takes_over_with_what_was_replicated_when_the_master_is_silent() {
        let p = redis(1, 0);
        let mut master = p.server_start(0, &mut cx(0, 0));
        let mut replica = p.server_start(1, &mut cx(1, 0));
        let mut c = cx(1, 0);
        p.server_on_msg(&mut replica, 0, Msg::Acquire { asked: 0 }, &mut c);
        assert_eq!(lock_sends(&c), vec![(0, Msg::Repl(ReplMsg::ReadOnly))]);
        p.server_on_msg(&mut master, 0, Msg::Acquire { asked: 0 }, &mut cx(0, 0));
        let mut c = cx(1, 2);
        p.server_on_timer(&mut replica, Timer::Repl(ReplTimer::MasterDown), &mut c);
        assert_eq!(replica.repl.as_ref().map(|r| (r.role, r.epoch)), Some((Role::Master, 1)));
        assert_eq!(lock_sends(&c), vec![(0, Msg::Repl(ReplMsg::SwitchMaster)), (1, Msg::Repl(ReplMsg::SwitchMaster))]);
        let mut c = cx(1, 2);
        p.server_on_msg(&mut replica, 1, Msg::Acquire { asked: 2 }, &mut c);
        assert!(c.effects.contains(&crate::protocol::Effect::Observe(Observation::Granted { client: 1, token: None })));
    }

    #[test]
    fn a_demoted_master_keeps_its_keys_until_the_new_master_answers_its_psync_with_its_state_of_then() {
        let p = redis(1, 0);
        let mut old = p.server_start(0, &mut cx(0, 0));
        p.server_on_msg(&mut old, 0, Msg::Acquire { asked: 0 }, &mut cx(0, 0));
        let mut new = p.server_start(1, &mut cx(1, 0));
        p.server_on_timer(&mut new, Timer::Repl(ReplTimer::MasterDown), &mut cx(1, 2));
        let stream = ReplMsg::Replicate { epoch: 1, offset: 0, state: LeaseLock::snapshot(&new) };
        p.server_on_msg(&mut new, 1, Msg::Acquire { asked: 2 }, &mut cx(1, 2));
        let mut c = cx(0, 2);
        p.server_on_msg(&mut old, 3, Msg::Repl(stream), &mut c);
        let demoted = old.repl.as_ref().map(|r| (r.role, r.epoch, r.link));
        assert_eq!(demoted, Some((Role::Replica, 1, Link::Syncing(1))), "the old master hears the new epoch");
        assert_eq!(old.hold.as_ref().map(|h| h.owner), Some(0), "it keeps its keys while it syncs");
        assert_eq!(lock_sends(&c), vec![(3, Msg::Repl(ReplMsg::Psync))]);
        let mut c = cx(1, 2);
        p.server_on_msg(&mut new, 2, Msg::Repl(ReplMsg::Psync), &mut c);
        let sends = lock_sends(&c);
        let [(2, Msg::Repl(answer @ ReplMsg::FullResync { .. }))] = &sends[..] else {
            panic!("the new master answers PSYNC with its state: {sends:?}");
        };
        let mut c = cx(0, 2);
        p.server_on_msg(&mut old, 3, Msg::Repl(answer.clone()), &mut c);
        let down = (Timer::Repl(ReplTimer::MasterDown), 4);
        assert_eq!(lock_timers(&c), vec![down], "the first server's turn comes last");
        assert_eq!(old.hold.as_ref().map(|h| h.owner), Some(1), "the grant made after the stream was sent");
        assert_eq!(old.repl.as_ref().map(|r| r.link), Some(Link::Up(1)));
    }

    #[test]
    fn the_knobs_need_one_to_three_replicas_discrete_time_and_at_most_one_ack_per_replica() {
        let env = Env::test(2, Workload::CriticalWrite, 9, 1);
        let field = |r: Result<Option<Replication>, (String, String)>| r.err().map(|(f, _)| f);
        assert_eq!(Replication::from_knobs(0, None, 0, &env), Ok(None));
        assert_eq!(field(Replication::from_knobs(0, Some(3), 0, &env)).as_deref(), Some("replicas"));
        assert_eq!(field(Replication::from_knobs(0, None, 1, &env)).as_deref(), Some("replicas"));
        assert_eq!(field(Replication::from_knobs(4, None, 0, &env)).as_deref(), Some("replicas"));
        let untimed = Env { timed: false, ..env.clone() };
        assert_eq!(field(Replication::from_knobs(1, None, 0, &untimed)).as_deref(), Some("replicas"));
        assert_eq!(field(Replication::from_knobs(1, None, 2, &env)).as_deref(), Some("min_replicas_to_ack"));
        assert_eq!(field(Replication::from_knobs(1, Some(1), 0, &env)).as_deref(), Some("down_after"));
        let three = Replication { replicas: 3, down_after: 3, min_acks: 3 };
        assert_eq!(Replication::from_knobs(3, None, 3, &env), Ok(Some(three)), "down_after: a third of the TTL");
        let short = Env::test(2, Workload::CriticalWrite, 5, 1);
        let two = Replication { replicas: 1, down_after: 2, min_acks: 0 };
        assert_eq!(Replication::from_knobs(1, None, 0, &short), Ok(Some(two)), "but at least 2 ticks");
        let given = Replication { replicas: 1, down_after: 2, min_acks: 1 };
        assert_eq!(Replication::from_knobs(1, Some(2), 1, &env), Ok(Some(given)));
    }

    #[test]
    fn replicas_take_over_in_turn_two_ticks_apart_and_an_old_master_that_came_back_last() {
        let cfg = Replication { replicas: 3, down_after: 4, min_acks: 0 };
        assert_eq!((0..=3).map(|i| down_after(cfg, i)).collect::<Vec<_>>(), vec![10, 4, 6, 8]);
    }

    #[test]
    fn a_node_attaches_to_a_newer_master_or_the_lower_of_one_epoch_and_takes_only_its_masters_stream() {
        use Heard::*;
        use Link::{Syncing, Up};
        let (m, r) = (Role::Master, Role::Replica);
        let cases = [
            // (role, epoch, link), (from, me), the stream's epoch: what the node does
            ((r, 1, Up(0)), (0, 1), 1, Take),
            ((r, 1, Up(0)), (0, 1), 2, Attach),
            ((r, 1, Up(0)), (0, 1), 0, Ignored),
            ((r, 2, Up(0)), (0, 1), 1, Ignored),
            ((r, 1, Up(2)), (0, 1), 1, Attach),
            ((r, 1, Up(0)), (2, 1), 1, Ignored),
            ((r, 1, Syncing(0)), (0, 1), 1, Resync),
            ((r, 2, Syncing(0)), (0, 1), 1, Ignored),
            ((r, 1, Syncing(2)), (0, 1), 1, Attach),
            ((r, 1, Syncing(0)), (2, 1), 1, Ignored),
            ((r, 1, Link::None), (2, 1), 1, Attach),
            ((r, 1, Link::None), (2, 1), 0, Ignored),
            ((m, 1, Link::None), (0, 1), 1, Attach),
            ((m, 1, Link::None), (2, 1), 1, Ignored),
            ((m, 1, Link::None), (2, 1), 2, Attach),
            ((m, 2, Link::None), (0, 1), 1, Ignored),
        ];
        for ((role, epoch, link), nodes, stream, want) in cases {
            assert_eq!(heard(role, (epoch, link), nodes, stream), want, "{role:?} {epoch} {link:?} {nodes:?} {stream}");
        }
    }

    #[test]
    fn a_full_resync_is_taken_only_from_the_master_a_replica_attached_to_in_its_epoch() {
        use Link::{Syncing, Up};
        let r = Role::Replica;
        assert!(takes_full_resync((r, 1, Syncing(0)), 0, 1));
        assert!(takes_full_resync((r, 1, Up(0)), 0, 1), "a replica that asked again");
        assert!(!takes_full_resync((r, 1, Syncing(0)), 2, 1));
        assert!(!takes_full_resync((r, 1, Syncing(0)), 0, 2));
        assert!(!takes_full_resync((r, 1, Link::None), 0, 1));
    }

    #[test]
    fn a_server_starts_as_the_first_master_or_a_replica_and_restarts_in_the_role_on_its_disk() {
        let p = redis(2, 0);
        let started = |index: usize, was: Option<Option<(Role, u8)>>| {
            let mut c = cx(index, 0);
            let r = start(&p, index, was, &mut c).map(|r| (r.role, r.epoch, r.link));
            (r, lock_timers(&c))
        };
        let (beat, down) = (Timer::Repl(ReplTimer::Heartbeat), Timer::Repl(ReplTimer::MasterDown));
        assert_eq!(started(0, None), (Some((Role::Master, 0, Link::None)), vec![(beat.clone(), 1)]));
        assert_eq!(started(2, None), (Some((Role::Replica, 0, Link::Up(0))), vec![(down.clone(), 4)]));
        assert_eq!(started(1, Some(None)), (Some((Role::Replica, 0, Link::None)), vec![(down.clone(), 2)]));
        assert_eq!(started(0, Some(Some((Role::Master, 3)))), (Some((Role::Master, 3, Link::None)), vec![(beat, 1)]));
        assert_eq!(started(0, Some(Some((Role::Replica, 2)))), (Some((Role::Replica, 2, Link::None)), vec![(down, 6)]));
        let mut c = cx(0, 0);
        assert_eq!(start(&redis(0, 0), 0, None, &mut c), None);
        assert!(c.effects.is_empty());
    }

    #[test]
    fn the_master_streams_to_every_other_server_each_tick_and_only_it_bumps_its_offset() {
        let p = redis(2, 0);
        let mut master = p.server_start(0, &mut cx(0, 0));
        let mut replica = p.server_start(1, &mut cx(1, 0));
        changed::<LeaseLock>(&mut master);
        changed::<LeaseLock>(&mut replica);
        assert_eq!(
            (master.repl.as_ref().map(|r| r.offset), replica.repl.as_ref().map(|r| r.offset)),
            (Some(1), Some(0))
        );
        let mut c = cx(0, 1);
        on_timer(&p, &mut master, ReplTimer::Heartbeat, &mut c);
        let stream = Msg::Repl(ReplMsg::Replicate { epoch: 0, offset: 1, state: LeaseLock::snapshot(&master) });
        assert_eq!(lock_sends(&c), vec![(3, stream.clone()), (4, stream)]);
        let mut c = cx(0, 1);
        on_timer(&p, &mut master, ReplTimer::MasterDown, &mut c);
        on_timer(&p, &mut replica, ReplTimer::Heartbeat, &mut c);
        assert!(c.effects.is_empty(), "{:?}", c.effects);
    }

    #[test]
    fn a_client_tries_the_next_node_in_turn_and_follows_switch_master() {
        let p = redis(2, 0);
        let mut master = 0;
        let seen: Vec<u8> = (0..4)
            .map(|_| {
                next_master(&p, &mut master);
                master
            })
            .collect();
        assert_eq!(seen, vec![1, 2, 0, 1]);
        switch_master(&p, &mut master, 4);
        assert_eq!((master, master_node(&p, master)), (2, 4));
        let mut alone = 0;
        next_master(&redis(0, 0), &mut alone);
        assert_eq!(alone, 0, "no replication: one server");
    }

    #[test]
    fn wait_keeps_a_retrys_earlier_offset_and_an_ack_of_an_older_offset_does_not_count() {
        let p = redis(2, 1);
        let mut master = p.server_start(0, &mut cx(0, 0));
        p.server_on_msg(&mut master, 0, Msg::Acquire { asked: 0 }, &mut cx(0, 0));
        let first = master.repl.as_ref().and_then(|r| r.pending.clone()).map(|q| q.offset);
        changed::<LeaseLock>(&mut master);
        let mut c = cx(0, 1);
        answer(&p, &mut master, 0, Msg::Grant { token: None, asked: 1 }, &mut c);
        let pending = master.repl.as_ref().and_then(|r| r.pending.clone());
        assert_eq!(
            pending.as_ref().map(|q| (q.offset, &q.reply)),
            first.map(|o| (o, &Msg::Grant { token: None, asked: 0 }))
        );
        let offset = first.unwrap_or_default();
        assert!(offset > 0, "the grant bumped the offset before it was held back");
        p.server_on_msg(&mut master, 3, Msg::Repl(ReplMsg::Ack { offset: offset - 1 }), &mut c);
        assert!(lock_sends(&c).is_empty(), "an older offset does not include the grant");
        p.server_on_msg(&mut master, 3, Msg::Repl(ReplMsg::Ack { offset }), &mut c);
        assert_eq!(lock_sends(&c), vec![(0, Msg::Grant { token: None, asked: 0 })]);
        assert_eq!(master.repl.as_ref().map(|r| r.pending.is_none()), Some(true));
    }

    #[test]
    fn wait_answers_the_grant_only_after_enough_acknowledgements() {
        // Each replica's bit is its place among the servers, which start after the clients: with
        // two clients and with three (where `node / first` and `node - first` part), three
        // replicas are three acknowledgements.
        for clients in [2, 3] {
            let p = redis_for(clients, 3, 3);
            let server = |now| PCx::<LeaseLock>::new(clients, now);
            let mut master = p.server_start(0, &mut server(0));
            let mut c = server(0);
            p.server_on_msg(&mut master, 0, Msg::Acquire { asked: 0 }, &mut c);
            assert!(lock_sends(&c).is_empty(), "held back for WAIT");
            let offset = master.repl.as_ref().expect("a master replicates").offset;
            let mut c = server(1);
            let (first, second, third) = (clients + 1, clients + 2, clients + 3);
            p.server_on_msg(&mut master, first, Msg::Repl(ReplMsg::Ack { offset }), &mut c);
            p.server_on_msg(&mut master, first, Msg::Repl(ReplMsg::Ack { offset }), &mut c);
            p.server_on_msg(&mut master, second, Msg::Repl(ReplMsg::Ack { offset }), &mut c);
            assert!(lock_sends(&c).is_empty(), "one replica twice and another: two acknowledgements");
            p.server_on_msg(&mut master, third, Msg::Repl(ReplMsg::Ack { offset }), &mut c);
            assert_eq!(lock_sends(&c), vec![(0, Msg::Grant { token: None, asked: 0 })], "{clients} clients");
        }
    }
}

//! Asynchronous master–replica replication with Sentinel-style failover, for the lease machine
//! ([`super::lease`]; the `redis` knobs `replicas`, `down_after`, `min_replicas_to_ack`).
//!
//! Follows the Redis replication and Sentinel docs, reduced to what a lock key needs:
//! - The master streams its state (the lock key and the token counter, with a replication offset)
//!   to every replica once a tick, and answers clients without waiting for them: what it granted
//!   in the last tick is on no replica yet (replication lag; catalog #6).
//! - Sentinel promotes a replica once the master has been silent for `down_after` ticks (its
//!   `down-after-milliseconds`; replica `i` waits `i - 1` ticks more, standing for the election of
//!   one). The promoted replica starts a new epoch, serves what was replicated to it, and announces
//!   itself (`+switch-master`); a node that hears a newer epoch becomes its replica, as Sentinel
//!   reconfigures an old master that comes back. A key the new master holds gets a full TTL (the
//!   real one keeps its absolute expiry: this model errs on the side of longer leases, so the
//!   violations it reports are not artefacts of it).
//! - `min_replicas_to_ack` (`WAIT n`): the grant is answered only once that many replicas
//!   acknowledged an offset that includes it. Caveats of the docs that remain: an acknowledged write
//!   may still be lost if Sentinel promotes a replica that did not acknowledge it (more replicas than
//!   acks), and `WAIT` does not make Redis strongly consistent.
//! - Clients write to the master they know (Sentinel's `+switch-master` tells them); a replica
//!   answers `-READONLY`, and a client whose request times out or is refused tries the next node,
//!   as a Sentinel-aware client re-resolves the master after a connection error.

use serde::{Deserialize, Serialize};

use super::lease::{Hold, LeaseLock, Msg, Server, Timer};
use crate::protocol::{NodeId, PCx};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replication {
    pub replicas: usize,
    pub down_after: i64,
    pub min_acks: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Master,
    Replica,
}

/// A grant waiting for replica acknowledgements (`WAIT`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Pending {
    pub to: NodeId,
    pub asked: i64,
    pub token: Option<u64>,
    /// The replication offset that includes the grant.
    pub offset: u32,
    /// Replicas that acknowledged it (bit = server index).
    pub acked: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReplState {
    pub role: Role,
    pub epoch: u8,
    /// Replication offset: bumped by every change the master makes.
    pub offset: u32,
    pub pending: Option<Pending>,
}

impl LeaseLock {
    pub(super) fn repl(&self) -> Option<Replication> {
        self.cfg.replication
    }

    /// Whether this server may serve clients: it is the master, or there is no replication.
    pub(super) fn serves(&self, s: &Server) -> bool {
        s.repl.as_ref().is_none_or(|r| r.role == Role::Master)
    }

    /// A server starts (`was` is `None`: server 0 is the first master), or restarts in the role and
    /// epoch it had on disk, `Some(None)` when nothing was: an old master comes back as master until
    /// it hears of a newer epoch, and Sentinel then makes it a replica; a server with no disk comes
    /// back as a replica.
    pub(super) fn repl_start(
        &self,
        index: usize,
        was: Option<Option<(Role, u8)>>,
        cx: &mut PCx<Self>,
    ) -> Option<ReplState> {
        self.repl()?;
        let (role, epoch) = match was {
            None if index == 0 => (Role::Master, 0),
            None | Some(None) => (Role::Replica, 0),
            Some(Some(disk)) => disk,
        };
        match role {
            Role::Master => cx.set_lock_timer(Timer::Heartbeat, 1),
            Role::Replica => cx.set_lock_timer(Timer::MasterDown, self.down_after(index)),
        }
        Some(ReplState { role, epoch, offset: 0, pending: None })
    }

    /// How long server `index` waits for a silent master before it takes over: replicas in turn,
    /// two ticks apart so that the first one's stream reaches the next in time, an old master that
    /// came back last.
    fn down_after(&self, index: usize) -> i64 {
        let r = self.repl().expect("only replicated servers wait for a master");
        let turn = if index == 0 { r.replicas } else { index - 1 };
        r.down_after + 2 * turn as i64
    }

    /// The master changed the key or the counter.
    pub(super) fn repl_changed(&self, s: &mut Server) {
        if let Some(r) = &mut s.repl
            && r.role == Role::Master
        {
            r.offset += 1;
        }
    }

    /// With `WAIT`, a grant is held back until enough replicas acknowledge it. Returns whether the
    /// grant may be answered now.
    pub(super) fn repl_hold_back(&self, s: &mut Server, to: NodeId, asked: i64, token: Option<u64>) -> bool {
        let (Some(cfg), Some(r)) = (self.repl(), &mut s.repl) else { return false };
        if cfg.min_acks == 0 {
            return false;
        }
        r.pending = Some(Pending { to, asked, token, offset: r.offset, acked: 0 });
        true
    }

    pub(super) fn repl_forget_pending(&self, s: &mut Server) {
        if let Some(r) = &mut s.repl {
            r.pending = None;
        }
    }

    pub(super) fn repl_on_timer(&self, s: &mut Server, timer: &Timer, cx: &mut PCx<Self>) {
        let (Some(cfg), Some(r)) = (self.repl(), &mut s.repl) else { return };
        match timer {
            Timer::Heartbeat if r.role == Role::Master => {
                let (epoch, offset) = (r.epoch, r.offset);
                for i in 0..=cfg.replicas {
                    let node = self.cfg.server_node + i;
                    if node != cx.me {
                        cx.send_lock(node, Msg::Replicate { epoch, offset, hold: s.hold.clone(), counter: s.counter });
                    }
                }
                cx.set_lock_timer(Timer::Heartbeat, 1);
            }
            Timer::MasterDown if r.role == Role::Replica => {
                r.role = Role::Master;
                r.epoch += 1;
                cx.set_lock_timer(Timer::Heartbeat, 1);
                if let (Some(h), true) = (&s.hold, self.cfg.expires) {
                    cx.set_lock_timer(Timer::Expire(h.owner), self.cfg.ttl);
                }
                for client in 0..self.cfg.server_node {
                    cx.send_lock(client, Msg::SwitchMaster);
                }
            }
            _ => {}
        }
    }

    pub(super) fn repl_on_replicate(
        &self,
        s: &mut Server,
        from: NodeId,
        (epoch, offset, hold, counter): (u8, u32, Option<Hold>, u64),
        cx: &mut PCx<Self>,
    ) {
        let (Some(cfg), Some(r)) = (self.repl(), &mut s.repl) else { return };
        // Two masters of one epoch (promoted in the same tick): the lower node stays master, as the
        // Sentinel election would have picked one.
        let newer = epoch > r.epoch || (epoch == r.epoch && (r.role == Role::Replica || from < cx.me));
        if !newer {
            return;
        }
        if r.role == Role::Master {
            cx.cancel_lock_timer(Timer::Heartbeat);
            if let Some(h) = &s.hold {
                cx.cancel_lock_timer(Timer::Expire(h.owner));
            }
        }
        *r = ReplState { role: Role::Replica, epoch, offset, pending: None };
        s.hold = hold;
        s.counter = counter;
        cx.set_lock_timer(Timer::MasterDown, self.down_after(cx.me - self.cfg.server_node));
        if cfg.min_acks > 0 {
            cx.send_lock(from, Msg::ReplAck { offset });
        }
        self.save(s, cx);
    }

    pub(super) fn repl_on_ack(&self, s: &mut Server, from: NodeId, offset: u32, cx: &mut PCx<Self>) {
        let (Some(cfg), Some(r)) = (self.repl(), &mut s.repl) else { return };
        let Some(p) = r.pending.as_mut().filter(|p| offset >= p.offset) else { return };
        p.acked |= 1 << (from - self.cfg.server_node);
        if p.acked.count_ones() >= u32::from(cfg.min_acks) {
            let p = r.pending.take().expect("checked above");
            cx.send_lock(p.to, Msg::Grant { token: p.token, asked: p.asked });
        }
    }

    /// The node a client's lock library sends to: the master it knows.
    pub(super) fn master_of(&self, c: &LeaseClient) -> NodeId {
        self.cfg.server_node + usize::from(c.master)
    }

    /// The client's guess of the master was wrong or is silent: try the next node.
    pub(super) fn next_master(&self, c: &mut LeaseClient) {
        if let Some(r) = self.repl() {
            c.master = ((usize::from(c.master) + 1) % (r.replicas + 1)) as u8;
        }
    }
}

/// A client's lock library state: which node it believes is the master (index among servers).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeaseClient {
    pub master: u8,
}

impl crate::protocol::Ids for ReplState {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        if let Some(p) = &mut self.pending {
            p.to = f(p.to);
        }
    }
}

crate::no_ids!(LeaseClient);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Observation, Protocol, lock_sends};
    use crate::spec::{Env, Workload};

    fn redis(replicas: usize, min_replicas_to_ack: u8) -> LeaseLock {
        let o = crate::protocol::redis::Options { replicas, min_replicas_to_ack, ..Default::default() };
        crate::protocol::redis::build(o, &Env::test(2, Workload::CriticalWrite, 6, 1)).unwrap()
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
        assert_eq!(lock_sends(&c), vec![(0, Msg::ReadOnly)]);
        p.server_on_msg(&mut master, 0, Msg::Acquire { asked: 0 }, &mut cx(0, 0));
        let mut c = cx(1, 2);
        p.server_on_timer(&mut replica, Timer::MasterDown, &mut c);
        assert_eq!(replica.repl.as_ref().map(|r| (r.role, r.epoch)), Some((Role::Master, 1)));
        assert_eq!(lock_sends(&c), vec![(0, Msg::SwitchMaster), (1, Msg::SwitchMaster)]);
        let mut c = cx(1, 2);
        p.server_on_msg(&mut replica, 1, Msg::Acquire { asked: 2 }, &mut c);
        assert!(c.effects.contains(&crate::protocol::Effect::Observe(Observation::Granted { client: 1, token: None })));
        let mut c = cx(0, 3);
        let stream = Msg::Replicate { epoch: 1, offset: 1, hold: replica.hold.clone(), counter: 0 };
        p.server_on_msg(&mut master, 3, stream, &mut c);
        assert_eq!(master.repl.as_ref().map(|r| r.role), Some(Role::Replica), "the old master hears the new epoch");
        assert_eq!(master.hold.as_ref().map(|h| h.owner), Some(1));
    }

    #[test]
    fn wait_answers_the_grant_only_after_enough_acknowledgements() {
        let p = redis(2, 2);
        let mut master = p.server_start(0, &mut cx(0, 0));
        let mut c = cx(0, 0);
        p.server_on_msg(&mut master, 0, Msg::Acquire { asked: 0 }, &mut c);
        assert!(lock_sends(&c).is_empty(), "held back for WAIT");
        let offset = master.repl.as_ref().map_or(0, |r| r.offset);
        let mut c = cx(0, 1);
        p.server_on_msg(&mut master, 3, Msg::ReplAck { offset }, &mut c);
        p.server_on_msg(&mut master, 3, Msg::ReplAck { offset }, &mut c);
        assert!(lock_sends(&c).is_empty(), "one replica twice is one acknowledgement");
        p.server_on_msg(&mut master, 4, Msg::ReplAck { offset }, &mut c);
        assert_eq!(lock_sends(&c), vec![(0, Msg::Grant { token: None, asked: 0 })]);
    }
}

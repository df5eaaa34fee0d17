//! `redlock`: the Redlock algorithm over N independent Redis masters (Redis distlock doc,
//! "The Redlock Algorithm"; Kleppmann 2016; antirez's reply).
//!
//! A client sends `SET key <value> NX PX ttl` to every node and holds the lock when a majority
//! (N/2 + 1) granted it, within its validity time (`validity_margin`, the doc's drift allowance);
//! otherwise it unlocks every node and tries again. A node that does not answer in time (a request
//! timeout, in discrete time) counts as a refusal. Knobs and the failure each exposes:
//! - `nodes` (default 5, 1..=7): the doc's example uses 5.
//! - `ttl` (default true): keys expire. Off: the SPIN peer's `EXPIRY=0`, where only crashes can
//!   break exclusion.
//! - `persistence` (default false): a restarted node keeps its keys (AOF `fsync=always`). Off: it
//!   restarts empty and grants the same key again, so two clients hold majorities
//!   (catalog #9, Kleppmann's "crash-recovery" case; `mutual_exclusion`).
//! - `delayed_restart` (default false): a restarted node refuses every request for one TTL, the
//!   doc's mitigation ("restart a crashed node only after a bit more than the max TTL", catalog S6).
//! - `validity_margin` (ticks): as in `redis`. A clock jump on one node still lets its key lapse
//!   early and a second majority form (catalog #8).
//!
//! Redlock issues no fencing token (catalog #11), so paused holders write stale data as in `redis`.

use serde::{Deserialize, Serialize};

use crate::protocol::{ClientLease, Ids, LockEvent, NodeId, Observation, PCx, Protocol, ResourceHome};
use crate::resource::Fencing;
use crate::spec::Env;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    pub nodes: usize,
    pub ttl: bool,
    pub persistence: bool,
    pub delayed_restart: bool,
    pub validity_margin: Option<i64>,
}

impl Default for Options {
    fn default() -> Self {
        Options { nodes: 5, ttl: true, persistence: false, delayed_restart: false, validity_margin: None }
    }
}

pub struct Redlock {
    pub nodes: usize,
    timed: bool,
    first: NodeId,
    pub expires: bool,
    pub persistence: bool,
    pub delayed_restart: bool,
    pub ttl: i64,
    margin: Option<i64>,
}

pub fn build(o: Options, env: &Env) -> Result<Redlock, (String, String)> {
    if !(1..=7).contains(&o.nodes) {
        return Err(("nodes".into(), format!("must be 1..=7, got {}", o.nodes)));
    }
    if o.delayed_restart && !env.timed {
        return Err(("delayed_restart".into(), "needs time.mode = \"discrete\" (a delay is a duration)".into()));
    }
    let margin = super::check_margin(o.validity_margin, o.ttl, env)?;
    Ok(Redlock {
        nodes: o.nodes,
        timed: env.timed,
        first: env.clients,
        expires: o.ttl,
        persistence: o.persistence,
        delayed_restart: o.delayed_restart,
        ttl: env.ttl,
        margin,
    })
}

/// One Redis node's lock key: the owner and the attempt (the random value) it was set for.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Node {
    pub key: Option<(NodeId, i64)>,
    /// When the key expires, on this node's clock (the AOF keeps it as `PXAT`).
    pub until: i64,
    /// Still refusing requests after a delayed restart.
    pub blocked: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Msg {
    Set {
        asked: i64,
    },
    Ok {
        asked: i64,
    },
    Refused {
        asked: i64,
    },
    Unlock {
        asked: i64,
    },
    /// The unlock script's reply: the client waits for these before trying again.
    Unlocked {
        asked: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Timer {
    Expire(NodeId),
    /// The delayed restart is over.
    Unblock,
    /// The client's per-attempt timeout: decide on the answers so far, or stop awaiting unlocks.
    Timeout,
}

/// The client's current attempt: when it asked, how the nodes answered, and, after a failed
/// attempt, how many unlock replies it still awaits before it may try again.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Attempt {
    pub asked: Option<i64>,
    pub granted: u8,
    pub answered: u8,
    pub unlocking: u8,
}

impl Redlock {
    fn majority(&self) -> u8 {
        (self.nodes / 2 + 1) as u8
    }

    fn everyone(&self, msg: Msg, cx: &mut PCx<Self>) {
        for i in 0..self.nodes {
            cx.send_lock(self.first + i, msg.clone());
        }
    }

    fn save(&self, n: &Node, cx: &mut PCx<Self>) {
        if self.persistence {
            cx.persist(n.key.map(|(owner, asked)| (owner, asked, n.until)));
        }
    }

    fn arm_timeout(&self, cx: &mut PCx<Self>) {
        if self.timed {
            cx.set_lock_timer(Timer::Timeout, 1);
        }
    }

    /// Decides an attempt once every node answered (or, with durations, when its time is up). The
    /// client decides, so the client reports the grant. A failed attempt unlocks every node; the
    /// application is told `Busy` once they all replied.
    fn decide(&self, a: &mut Attempt, cx: &mut PCx<Self>) -> LockEvent<i64> {
        let Some(asked) = a.asked else { return LockEvent::Ignore };
        if a.granted >= self.majority() {
            *a = Attempt::default();
            cx.cancel_lock_timer(Timer::Timeout);
            let valid_for = self.margin.map(|margin| ClientLease { ttl: self.ttl, margin }.left(asked, cx.now));
            if valid_for.is_some_and(|left| left <= 0) {
                // A majority, but too late to be of use: unlock and try again.
                self.everyone(Msg::Unlock { asked }, cx);
                return LockEvent::Busy { retry_after: 1 };
            }
            cx.observe(Observation::Granted { client: cx.me, token: None });
            LockEvent::Granted { hold: asked, token: None, valid_for }
        } else {
            self.everyone(Msg::Unlock { asked }, cx);
            *a = Attempt { asked: Some(asked), granted: 0, answered: 0, unlocking: self.nodes as u8 };
            self.arm_timeout(cx);
            LockEvent::Ignore
        }
    }
}

impl Protocol for Redlock {
    type Server = Node;
    type Client = Attempt;
    type Msg = Msg;
    type Timer = Timer;
    type Durable = Option<(NodeId, i64, i64)>;
    type Hold = i64;

    fn servers(&self) -> Vec<String> {
        (0..self.nodes).map(|i| format!("redis-{i}")).collect()
    }

    fn resource(&self) -> ResourceHome {
        ResourceHome::Storage(Fencing::None)
    }

    fn issues_tokens(&self) -> bool {
        false
    }

    fn symmetric_servers(&self) -> bool {
        true
    }

    fn server_start(&self, _: usize, _: &mut PCx<Self>) -> Node {
        Default::default()
    }

    fn server_restart(&self, _: usize, durable: Option<&Self::Durable>, cx: &mut PCx<Self>) -> Node {
        let mut key = durable.copied().flatten();
        // The key keeps its expiry instant; one already past is gone on load (`tests/real_servers.rs`).
        if let (Some((owner, _, until)), true) = (key, self.expires) {
            if until < cx.now {
                cx.observe(Observation::Expired { client: owner });
                key = None;
                self.save(&Node::default(), cx);
            } else {
                cx.set_lock_timer(Timer::Expire(owner), until - cx.now);
            }
        }
        if self.delayed_restart {
            cx.set_lock_timer(Timer::Unblock, self.ttl + 1);
        }
        let until = key.map_or(0, |(.., until)| until);
        Node { key: key.map(|(owner, asked, _)| (owner, asked)), until, blocked: self.delayed_restart }
    }

    fn server_on_msg(&self, n: &mut Node, from: NodeId, msg: Msg, cx: &mut PCx<Self>) {
        match msg {
            Msg::Set { asked } if n.key.is_none() && !n.blocked => {
                n.key = Some((from, asked));
                n.until = cx.now + self.ttl;
                if self.expires {
                    cx.set_lock_timer(Timer::Expire(from), self.ttl);
                }
                self.save(n, cx);
                cx.send_lock(from, Msg::Ok { asked });
            }
            Msg::Set { asked } => cx.send_lock(from, Msg::Refused { asked }),
            Msg::Unlock { asked } => {
                if n.key == Some((from, asked)) {
                    n.key = None;
                    n.until = 0;
                    if self.expires {
                        cx.cancel_lock_timer(Timer::Expire(from));
                    }
                    self.save(n, cx);
                }
                cx.send_lock(from, Msg::Unlocked { asked });
            }
            Msg::Ok { .. } | Msg::Refused { .. } | Msg::Unlocked { .. } => {}
        }
    }

    fn server_on_timer(&self, n: &mut Node, timer: Timer, cx: &mut PCx<Self>) {
        match timer {
            Timer::Expire(owner) if n.key.is_some_and(|(o, _)| o == owner) => {
                n.key = None;
                n.until = 0;
                cx.observe(Observation::Expired { client: owner });
                self.save(n, cx);
            }
            Timer::Expire(_) | Timer::Timeout => {}
            Timer::Unblock => n.blocked = false,
        }
    }

    fn acquire(&self, a: &mut Attempt, cx: &mut PCx<Self>) -> LockEvent<i64> {
        let asked = cx.now;
        *a = Attempt { asked: Some(asked), granted: 0, answered: 0, unlocking: 0 };
        self.everyone(Msg::Set { asked }, cx);
        self.arm_timeout(cx);
        LockEvent::Ignore
    }

    fn release(&self, _: &mut Attempt, asked: &i64, cx: &mut PCx<Self>) {
        self.everyone(Msg::Unlock { asked: *asked }, cx);
    }

    fn client_on_msg(&self, a: &mut Attempt, _from: NodeId, msg: Msg, cx: &mut PCx<Self>) -> LockEvent<i64> {
        let (asked, ok) = match msg {
            Msg::Ok { asked } => (asked, true),
            Msg::Refused { asked } => (asked, false),
            Msg::Unlocked { asked } if a.asked == Some(asked) && a.unlocking > 0 => {
                a.unlocking -= 1;
                if a.unlocking > 0 {
                    return LockEvent::Ignore;
                }
                *a = Attempt::default();
                cx.cancel_lock_timer(Timer::Timeout);
                return LockEvent::Busy { retry_after: 1 };
            }
            Msg::Set { .. } | Msg::Unlock { .. } | Msg::Unlocked { .. } => return LockEvent::Ignore,
        };
        if a.asked != Some(asked) || a.unlocking > 0 {
            return LockEvent::Ignore;
        }
        a.answered += 1;
        a.granted += u8::from(ok);
        if a.answered as usize == self.nodes { self.decide(a, cx) } else { LockEvent::Ignore }
    }

    /// A node that has not answered in time counts as a refusal; unlock replies that do not come
    /// are not waited for.
    fn client_on_timer(&self, a: &mut Attempt, timer: Timer, cx: &mut PCx<Self>) -> LockEvent<i64> {
        match timer {
            Timer::Timeout if a.asked.is_some() && a.unlocking == 0 => self.decide(a, cx),
            Timer::Timeout => {
                *a = Attempt::default();
                LockEvent::Busy { retry_after: 0 }
            }
            Timer::Expire(_) | Timer::Unblock => LockEvent::Ignore,
        }
    }

    fn show_msg(&self, from: NodeId, msg: &Msg) -> String {
        match msg {
            Msg::Set { asked } if self.expires => format!("SET lock c{from}:{asked} NX PX {}", self.ttl),
            Msg::Set { asked } => format!("SET lock c{from}:{asked} NX"),
            Msg::Ok { .. } => "OK".into(),
            Msg::Refused { .. } if self.delayed_restart => {
                "(nil): the key exists, or the node is still restarting".into()
            }
            Msg::Refused { .. } => "(nil): the key exists".into(),
            Msg::Unlock { asked } => format!("EVAL \"if GET lock == c{from}:{asked} then DEL lock\" (unlock)"),
            Msg::Unlocked { .. } => "(integer) 0|1: unlock done".into(),
        }
    }

    fn show_timer(&self, timer: &Timer) -> String {
        match timer {
            Timer::Expire(_) => "key lock expires (PX)".into(),
            Timer::Unblock => "delayed restart over: serving again".into(),
            Timer::Timeout => "attempt timeout".into(),
        }
    }
}

impl Ids for Node {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        if let Some((owner, _)) = &mut self.key {
            *owner = f(*owner);
        }
    }
}

impl Ids for Timer {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        if let Timer::Expire(owner) = self {
            *owner = f(*owner);
        }
    }
}

impl Ids for (NodeId, i64, i64) {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        self.0 = f(self.0);
    }
}

crate::no_ids!(Msg, Attempt);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Effect, Tmr};
    use crate::spec::Workload;

    type Cx = PCx<Redlock>;

    /// Two clients (nodes 0 and 1), then the Redis nodes from 2; TTL 3 ticks.
    fn redlock(o: Options) -> Redlock {
        build(o, &Env::test(2, Workload::CriticalWrite, 3, 1)).unwrap()
    }

    fn three(margin: Option<i64>) -> Redlock {
        redlock(Options { nodes: 3, validity_margin: margin, ..Options::default() })
    }

    fn sent(cx: &Cx) -> Vec<(NodeId, Msg)> {
        crate::protocol::lock_sends(cx)
    }

    fn timers(cx: &Cx) -> Vec<(Timer, i64)> {
        crate::protocol::lock_timers(cx)
    }

    fn granted(cx: &Cx) -> bool {
        cx.effects.contains(&Effect::Observe(Observation::Granted { client: cx.me, token: None }))
    }

    /// Client 0 asks at tick 0 and hears `answers` (`true`: OK) from nodes 2, 3, ... at tick `now`.
    fn answered(r: &Redlock, answers: &[bool], now: i64) -> (Attempt, Vec<LockEvent<i64>>, Cx) {
        let mut a = Attempt::default();
        let mut cx = Cx::new(0, 0);
        assert_eq!(r.acquire(&mut a, &mut cx), LockEvent::Ignore);
        let mut cx = Cx::new(0, now);
        let events = answers
            .iter()
            .enumerate()
            .map(|(i, &ok)| {
                let msg = if ok { Msg::Ok { asked: 0 } } else { Msg::Refused { asked: 0 } };
                r.client_on_msg(&mut a, 2 + i, msg, &mut cx)
            })
            .collect();
        (a, events, cx)
    }

    #[test]
    fn a_majority_is_more_than_half_of_the_nodes() {
        let majorities: Vec<u8> =
            (1..=7).map(|nodes| redlock(Options { nodes, ..Options::default() }).majority()).collect();
        assert_eq!(majorities, vec![1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn an_attempt_asks_every_node_and_waits_one_tick_for_their_answers() {
        let r = redlock(Options::default());
        let mut a = Attempt::default();
        let mut cx = Cx::new(1, 4);
        r.acquire(&mut a, &mut cx);
        assert_eq!(sent(&cx), (2..7).map(|n| (n, Msg::Set { asked: 4 })).collect::<Vec<_>>());
        assert_eq!(timers(&cx), vec![(Timer::Timeout, 1)]);
        assert_eq!(a, Attempt { asked: Some(4), granted: 0, answered: 0, unlocking: 0 });
    }

    #[test]
    fn the_client_holds_the_lock_once_a_majority_of_five_granted_and_not_with_two() {
        let r = redlock(Options::default());
        let (_, events, cx) = answered(&r, &[true, true, true, false, false], 0);
        assert_eq!(events[4], LockEvent::Granted { hold: 0, token: None, valid_for: None });
        assert!(events[..4].iter().all(|e| *e == LockEvent::Ignore), "{events:?}");
        assert!(granted(&cx), "the client decides, so it reports the grant");
        let (a, events, cx) = answered(&r, &[true, true, false, false, false], 0);
        assert!(events.iter().all(|e| *e == LockEvent::Ignore) && !granted(&cx), "{events:?}");
        assert_eq!(sent(&cx), (2..7).map(|n| (n, Msg::Unlock { asked: 0 })).collect::<Vec<_>>());
        assert_eq!(a, Attempt { asked: Some(0), granted: 0, answered: 0, unlocking: 5 });
    }

    #[test]
    fn a_majority_counts_only_for_its_own_attempt_and_not_while_unlocking() {
        let r = three(None);
        let (mut a, _, _) = answered(&r, &[true], 0);
        let mut cx = Cx::new(0, 0);
        assert_eq!(r.client_on_msg(&mut a, 3, Msg::Ok { asked: 7 }, &mut cx), LockEvent::Ignore);
        assert_eq!(a.answered, 1, "an answer to an older attempt is not counted");
        let (mut a, _, _) = answered(&r, &[false, false, true], 0);
        assert_eq!(a.unlocking, 3);
        assert_eq!(r.client_on_msg(&mut a, 2, Msg::Ok { asked: 0 }, &mut cx), LockEvent::Ignore);
        assert_eq!((a.granted, a.answered), (0, 0), "a late OK while unlocking is not a grant");
    }

    #[test]
    fn a_majority_that_comes_too_late_for_the_validity_time_unlocks_and_tries_again() {
        // TTL 3, margin 1: a hold asked at tick 0 is valid until tick 2 on the client's clock.
        let (_, events, cx) = answered(&three(Some(1)), &[true, true, true], 1);
        assert_eq!(events[2], LockEvent::Granted { hold: 0, token: None, valid_for: Some(1) });
        assert!(granted(&cx));
        let (_, events, cx) = answered(&three(Some(1)), &[true, true, true], 2);
        assert_eq!(events[2], LockEvent::Busy { retry_after: 1 });
        assert!(!granted(&cx));
        assert_eq!(sent(&cx), (2..5).map(|n| (n, Msg::Unlock { asked: 0 })).collect::<Vec<_>>());
    }

    #[test]
    fn a_failed_attempt_waits_for_every_unlock_reply_of_its_own_before_trying_again() {
        let r = three(None);
        let (mut a, _, _) = answered(&r, &[true, false, false], 0);
        let mut cx = Cx::new(0, 1);
        assert_eq!(r.client_on_msg(&mut a, 2, Msg::Unlocked { asked: 9 }, &mut cx), LockEvent::Ignore);
        assert_eq!(a.unlocking, 3, "another attempt's unlock reply does not count");
        assert_eq!(r.client_on_msg(&mut a, 2, Msg::Unlocked { asked: 0 }, &mut cx), LockEvent::Ignore);
        assert_eq!(r.client_on_msg(&mut a, 3, Msg::Unlocked { asked: 0 }, &mut cx), LockEvent::Ignore);
        assert_eq!(a.unlocking, 1);
        assert_eq!(r.client_on_msg(&mut a, 4, Msg::Unlocked { asked: 0 }, &mut cx), LockEvent::Busy { retry_after: 1 });
        assert_eq!(a, Attempt::default());
        assert!(cx.effects.contains(&Effect::CancelTimer { timer: Tmr::Lock(Timer::Timeout) }));
        assert_eq!(r.client_on_msg(&mut a, 4, Msg::Unlocked { asked: 0 }, &mut cx), LockEvent::Ignore);
    }

    /// Without durations every attempt asks at clock 0, so the unlock replies of a released hold
    /// carry the value of the next attempt: they must not count as that attempt's unlocks.
    #[test]
    fn an_unlock_reply_reaching_an_attempt_that_is_not_unlocking_is_ignored() {
        let r = three(None);
        let (mut a, _, _) = answered(&r, &[true], 0);
        let before = a.clone();
        assert_eq!(r.client_on_msg(&mut a, 2, Msg::Unlocked { asked: 0 }, &mut Cx::new(0, 0)), LockEvent::Ignore);
        assert_eq!(a, before);
    }

    #[test]
    fn a_timeout_decides_on_the_answers_so_far_and_a_second_stops_waiting_for_unlocks() {
        let r = three(None);
        let (mut a, _, _) = answered(&r, &[true, true], 0);
        let ev = r.client_on_timer(&mut a, Timer::Timeout, &mut Cx::new(0, 1));
        assert_eq!(ev, LockEvent::Granted { hold: 0, token: None, valid_for: None }, "two of three: a majority");
        let (mut a, _, _) = answered(&r, &[true], 0);
        let mut cx = Cx::new(0, 1);
        assert_eq!(r.client_on_timer(&mut a, Timer::Timeout, &mut cx), LockEvent::Ignore);
        assert_eq!(a.unlocking, 3, "a node that did not answer is unlocked too");
        assert_eq!(timers(&cx), vec![(Timer::Timeout, 1)]);
        assert_eq!(r.client_on_timer(&mut a, Timer::Timeout, &mut cx), LockEvent::Busy { retry_after: 0 });
        assert_eq!(a, Attempt::default());
        assert_eq!(r.client_on_timer(&mut a, Timer::Timeout, &mut cx), LockEvent::Busy { retry_after: 0 });
    }

    #[test]
    fn a_node_sets_the_key_for_one_owner_and_unlocks_or_expires_only_that_owners() {
        let r = redlock(Options { nodes: 3, persistence: true, ..Options::default() });
        let mut n = Node::default();
        let mut cx = Cx::new(2, 5);
        r.server_on_msg(&mut n, 0, Msg::Set { asked: 4 }, &mut cx);
        assert_eq!(n, Node { key: Some((0, 4)), until: 8, blocked: false });
        assert_eq!(timers(&cx), vec![(Timer::Expire(0), 3)]);
        assert!(cx.effects.contains(&Effect::Persist(Some((0, 4, 8)))), "the AOF keeps the key and its PXAT");
        let mut cx = Cx::new(2, 6);
        r.server_on_msg(&mut n, 1, Msg::Set { asked: 6 }, &mut cx);
        r.server_on_msg(&mut n, 1, Msg::Unlock { asked: 4 }, &mut cx);
        r.server_on_msg(&mut n, 0, Msg::Unlock { asked: 3 }, &mut cx);
        r.server_on_timer(&mut n, Timer::Expire(1), &mut cx);
        assert_eq!(n.key, Some((0, 4)), "only the owner's own attempt unlocks");
        let replies =
            vec![(1, Msg::Refused { asked: 6 }), (1, Msg::Unlocked { asked: 4 }), (0, Msg::Unlocked { asked: 3 })];
        assert_eq!(sent(&cx), replies);
        assert!(cx.effects.iter().all(|e| matches!(e, Effect::Send { .. })), "{:?}", cx.effects);
        let mut expired = n.clone();
        r.server_on_msg(&mut n, 0, Msg::Unlock { asked: 4 }, &mut cx);
        assert_eq!(n, Node::default());
        assert!(cx.effects.contains(&Effect::CancelTimer { timer: Tmr::Lock(Timer::Expire(0)) }));
        assert!(cx.effects.contains(&Effect::Persist(None)));
        let mut cx = Cx::new(2, 8);
        r.server_on_timer(&mut expired, Timer::Expire(0), &mut cx);
        assert_eq!(expired, Node::default());
        assert_eq!(cx.effects, vec![Effect::Observe(Observation::Expired { client: 0 }), Effect::Persist(None)]);
    }

    #[test]
    fn without_persistence_or_expiry_a_node_saves_nothing_and_arms_no_expiry() {
        let r = redlock(Options { nodes: 3, ttl: false, ..Options::default() });
        let mut n = Node::default();
        let mut cx = Cx::new(2, 0);
        r.server_on_msg(&mut n, 0, Msg::Set { asked: 0 }, &mut cx);
        r.server_on_msg(&mut n, 0, Msg::Unlock { asked: 0 }, &mut cx);
        assert_eq!(sent(&cx), vec![(0, Msg::Ok { asked: 0 }), (0, Msg::Unlocked { asked: 0 })]);
        assert_eq!(cx.effects.len(), 2, "{:?}", cx.effects);
    }

    #[test]
    fn a_restarted_node_keeps_a_key_until_its_expiry_instant_as_redis_loads_pxat() {
        let r = redlock(Options { nodes: 3, persistence: true, ..Options::default() });
        let key = Some((1, 5, 7));
        for (now, kept) in [(4, true), (7, true), (8, false)] {
            let mut cx = Cx::new(2, now);
            let n = r.server_restart(0, Some(&key), &mut cx);
            if kept {
                assert_eq!(n, Node { key: Some((1, 5)), until: 7, blocked: false });
                assert_eq!(cx.effects, vec![Effect::SetTimer { timer: Tmr::Lock(Timer::Expire(1)), after: 7 - now }]);
            } else {
                assert_eq!(n, Node::default());
                let gone = vec![Effect::Observe(Observation::Expired { client: 1 }), Effect::Persist(None)];
                assert_eq!(cx.effects, gone, "at tick {now}");
            }
        }
        assert_eq!(r.server_restart(0, Some(&None), &mut Cx::new(2, 4)), Node::default());
        assert_eq!(r.server_restart(0, None, &mut Cx::new(2, 4)), Node::default());
    }

    #[test]
    fn a_delayed_restart_refuses_every_request_for_a_bit_more_than_the_ttl() {
        let r = redlock(Options { nodes: 3, delayed_restart: true, ..Options::default() });
        let mut cx = Cx::new(2, 10);
        let mut n = r.server_restart(0, None, &mut cx);
        assert!(n.blocked);
        assert_eq!(timers(&cx), vec![(Timer::Unblock, 4)], "TTL 3 plus one tick (catalog S6)");
        let mut cx = Cx::new(2, 11);
        r.server_on_msg(&mut n, 0, Msg::Set { asked: 11 }, &mut cx);
        assert_eq!(sent(&cx), vec![(0, Msg::Refused { asked: 11 })]);
        r.server_on_timer(&mut n, Timer::Unblock, &mut cx);
        r.server_on_msg(&mut n, 0, Msg::Set { asked: 11 }, &mut cx);
        assert_eq!(n.key, Some((0, 11)));
        let plain = redlock(Options { nodes: 3, ..Options::default() });
        let mut cx = Cx::new(2, 10);
        assert!(!plain.server_restart(0, None, &mut cx).blocked);
        assert!(cx.effects.is_empty());
    }

    #[test]
    fn renaming_moves_a_keys_owner_and_its_expiry_timer() {
        let f = |id: NodeId| 1 - id;
        let mut n = Node { key: Some((0, 3)), until: 6, blocked: false };
        n.map_ids(&f);
        assert_eq!(n.key, Some((1, 3)));
        let mut t = Timer::Expire(1);
        t.map_ids(&f);
        assert_eq!(t, Timer::Expire(0));
        let mut d = (0, 3, 6);
        d.map_ids(&f);
        assert_eq!(d, (1, 3, 6));
    }
}

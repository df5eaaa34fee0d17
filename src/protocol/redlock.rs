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
        Node::default()
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

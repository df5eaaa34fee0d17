//! One simulated run: every node a turmoil host running the very same [`Machine`] in a tokio loop,
//! faults applied from a [`Plan`] between simulation steps, observations judged by the same
//! [`Monitor`] as the model checker.
//!
//! Determinism: turmoil is seeded from the plan, hosts are registered in node order, every
//! `select!` is `biased;`, timers live in a `BTreeMap`, message loss is drawn from a ChaCha8 stream
//! in send order; no wall clock is read.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::plan::{Fault, Plan};
use crate::check::observation_text;
use crate::property::{Monitor, PropertyName};
use crate::protocol::{Cx, Effect, MCx, Machine, NodeId, NodeKind, Observation};
use crate::trace::Step;

const PORT: u16 = 9000;

/// What a run needs besides its plan.
#[derive(Clone, Debug)]
pub struct RunCfg {
    pub tick_ms: u64,
    /// turmoil's step: the resolution of simulated time, and its cost (work is per step and host).
    pub step_ms: u64,
    pub fault_window_ms: u64,
    pub settle_ms: u64,
    pub latency_ms: (u64, u64),
    pub loss: f64,
    pub stock: i64,
    pub properties: Vec<PropertyName>,
    /// Keep simulating to the end of the settle time even when every client is done (benchmarks).
    pub full_duration: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub acquisitions: u64,
    pub messages: u64,
    /// Requests from clients to the lock's servers (not to the protected storage).
    pub store_requests: u64,
    pub rejected_writes: u64,
    /// Simulated milliseconds from a client's first request to its grant, per acquisition.
    pub acquire_latency_ms: Vec<u64>,
    /// Simulated milliseconds from the lock becoming free (a release or an expiry) while some client
    /// waited to the next grant: how quickly a waiter learns of it.
    pub wakeup_latency_ms: Vec<u64>,
    pub simulated_ms: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    pub property: PropertyName,
    pub at_ms: u64,
    /// The run's steps up to and including the one that broke the property.
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    pub seed: u64,
    pub plan: Plan,
    pub violations: Vec<Violation>,
    /// The properties whose `sometimes` partner happened in this run.
    pub witnessed: Vec<PropertyName>,
    pub metrics: Metrics,
}

struct Shared<D> {
    monitor: Monitor,
    steps: Vec<Step>,
    names: Vec<String>,
    kinds: Vec<NodeKind>,
    paused: Vec<bool>,
    /// Application thread stuck; the lock library runs on.
    hung: Vec<bool>,
    /// The application runs again and must first handle what its library reported meanwhile.
    unhung: Vec<bool>,
    dead: Vec<bool>,
    /// How many times each node's process started: a datagram carries its receiver's count at
    /// sending, and one meant for an earlier process is dropped (see [`Datagram`]).
    starts: Vec<u32>,
    durable: Vec<Option<D>>,
    offset_ms: Vec<f64>,
    rate: Vec<f64>,
    loss: f64,
    rng: ChaCha8Rng,
    tick_ms: u64,
    properties: Vec<PropertyName>,
    violations: Vec<Violation>,
    witnessed: Vec<PropertyName>,
    metrics: Metrics,
    asked_at: Vec<Option<u64>>,
    /// When the lock last became free with a client waiting, until the next grant.
    freed_at: Option<u64>,
    stop: bool,
    /// Simulated time as the driver last saw it, for steps recorded between simulation steps.
    driver_ms: u64,
    /// Set only for the real-time comparison run: time then comes from the machine's clock.
    epoch: Option<std::time::Instant>,
}

impl<D> Shared<D> {
    fn new(nodes: &[crate::protocol::NodeInfo], cfg: &RunCfg, plan: &Plan, epoch: Option<std::time::Instant>) -> Self {
        let n = nodes.len();
        let clients = nodes.iter().filter(|x| x.kind == NodeKind::Client).count();
        Shared {
            monitor: Monitor::new(clients, cfg.stock),
            steps: Vec::new(),
            names: nodes.iter().map(|x| x.name.clone()).collect(),
            kinds: nodes.iter().map(|x| x.kind).collect(),
            paused: vec![false; n],
            hung: vec![false; n],
            unhung: vec![false; n],
            dead: vec![false; n],
            starts: vec![0; n],
            durable: (0..n).map(|_| None).collect(),
            offset_ms: vec![0.0; n],
            rate: plan.drift_ppm.iter().map(|p| 1.0 + *p as f64 / 1e6).collect(),
            loss: cfg.loss,
            rng: ChaCha8Rng::seed_from_u64(plan.loss_seed),
            tick_ms: cfg.tick_ms,
            properties: cfg.properties.clone(),
            violations: Vec::new(),
            witnessed: Vec::new(),
            metrics: Metrics::default(),
            asked_at: vec![None; clients],
            freed_at: None,
            stop: false,
            driver_ms: 0,
            epoch,
        }
    }

    fn elapsed(&self) -> Option<Duration> {
        match self.epoch {
            Some(e) => Some(e.elapsed()),
            None => turmoil::sim_elapsed(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.elapsed().map(|d| d.as_millis() as u64).unwrap_or(self.driver_ms)
    }

    fn local_ms(&self, id: NodeId, sim_ms: f64) -> f64 {
        self.offset_ms[id] + sim_ms * self.rate[id]
    }

    /// The node's clock in protocol ticks.
    fn reading(&self, id: NodeId) -> i64 {
        let sim = self.elapsed().unwrap_or_default().as_secs_f64() * 1000.0;
        (self.local_ms(id, sim) / self.tick_ms as f64).floor() as i64
    }

    /// How long, in simulated time, until the node's clock reads `deadline` ticks.
    fn until(&self, id: NodeId, deadline: i64) -> Duration {
        let sim = self.elapsed().unwrap_or_default().as_secs_f64() * 1000.0;
        let target_local = deadline as f64 * self.tick_ms as f64;
        let target_sim = (target_local - self.offset_ms[id]) / self.rate[id];
        Duration::from_secs_f64(((target_sim - sim) / 1000.0).max(0.0))
    }

    fn record(&mut self, node: NodeId, kind: &str, detail: String) {
        let name = self.names[node].clone();
        self.record_as(name, kind, detail, false);
    }

    fn record_as(&mut self, node: String, kind: &str, detail: String, observed: bool) {
        let step = self.steps.len() as u32 + 1;
        let time = Some(self.now_ms() as i64);
        self.steps.push(Step { step, time, node, kind: kind.into(), detail, observed });
    }

    fn observe(&mut self, o: &Observation) {
        let now = self.now_ms();
        match o {
            Observation::Waiting { client } => self.asked_at[*client] = Some(now),
            Observation::Acquired { client, depth: 1 } => {
                self.metrics.acquisitions += 1;
                if let Some(t) = self.asked_at[*client].take() {
                    self.metrics.acquire_latency_ms.push(now - t);
                }
                if let Some(t) = self.freed_at.take() {
                    self.metrics.wakeup_latency_ms.push(now - t);
                }
            }
            Observation::Released { depth: 0, .. } | Observation::Expired { .. }
                if self.asked_at.iter().any(Option::is_some) =>
            {
                self.freed_at = Some(now);
            }
            Observation::WriteRejected { .. } => self.metrics.rejected_writes += 1,
            _ => {}
        }
        self.monitor.observe(o);
    }

    /// After each handled input: record any property that just broke, with the steps so far.
    fn judge(&mut self) {
        for i in 0..self.properties.len() {
            let p = self.properties[i];
            if self.monitor.witness(p) && !self.witnessed.contains(&p) {
                self.witnessed.push(p);
            }
            if !p.is_liveness() && !self.monitor.holds(p) && !self.violations.iter().any(|v| v.property == p) {
                let at_ms = self.now_ms();
                self.violations.push(Violation { property: p, at_ms, steps: self.steps.clone() });
            }
        }
        let safety = self.properties.iter().filter(|p| !p.is_liveness()).count();
        if safety > 0 && self.violations.iter().filter(|v| !v.property.is_liveness()).count() == safety {
            self.stop = true;
        }
    }
}

type Sh<M> = Rc<RefCell<Shared<<M as Machine>::Durable>>>;

/// How a node's loop reaches the others: turmoil's simulated UDP, or real loopback sockets.
trait Link {
    fn send(&self, to: NodeId, bytes: &[u8]) -> impl std::future::Future<Output = std::io::Result<()>>;
    /// A datagram and which node sent it (`None`: not one of ours).
    fn recv(&self, buf: &mut [u8]) -> impl std::future::Future<Output = std::io::Result<(usize, Option<NodeId>)>>;
}

struct TurmoilLink {
    sock: turmoil::net::UdpSocket,
    addrs: Vec<IpAddr>,
}

impl TurmoilLink {
    async fn bind(names: &[String]) -> std::io::Result<Self> {
        let sock = turmoil::net::UdpSocket::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT)).await?;
        Ok(TurmoilLink { sock, addrs: names.iter().map(|n| turmoil::lookup(n.as_str())).collect() })
    }
}

impl Link for TurmoilLink {
    async fn send(&self, to: NodeId, bytes: &[u8]) -> std::io::Result<()> {
        self.sock.send_to(bytes, (self.addrs[to], PORT)).await.map(|_| ())
    }
    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, Option<NodeId>)> {
        let (n, from) = self.sock.recv_from(buf).await?;
        Ok((n, self.addrs.iter().position(|a| *a == from.ip())))
    }
}

/// A message on the simulated wire, with the count of its receiver's and sender's starts when
/// it was sent: a message that dies with its connection ([`Machine::dies_with_connection`]) and
/// was meant for an earlier process of its receiver, or came from an earlier process of its
/// sender, is dropped, as the model checker drops it (`check::world`).
#[derive(Serialize, Deserialize)]
struct Datagram<Msg> {
    incarnation: u32,
    sender: u32,
    msg: Msg,
}

/// Carries out one handler's effects; returns the messages to put on the wire.
fn apply<M: Machine>(
    m: &M,
    sh: &Sh<M>,
    id: NodeId,
    input: (&str, String),
    cx: MCx<M>,
    timers: &mut BTreeMap<M::Timer, i64>,
) -> Vec<(NodeId, Vec<u8>)> {
    let mut s = sh.borrow_mut();
    let mut sends = Vec::new();
    let mut notes = Vec::new();
    for e in cx.effects {
        match e {
            Effect::Send { to, msg } => {
                s.metrics.messages += 1;
                // The seed's "pressure on the store": what clients ask of the lock's servers.
                if s.kinds[id] == NodeKind::Client && s.kinds[to] == NodeKind::Server {
                    s.metrics.store_requests += 1;
                }
                // A lossless run draws too (never true): the generator serves only losses.
                let loss = s.loss;
                let lost = s.rng.random_bool(loss);
                if lost {
                    notes.push(format!("lost on the way: {} → {}: {}", s.names[id], s.names[to], m.show_msg(id, &msg)));
                } else {
                    let datagram = Datagram { incarnation: s.starts[to], sender: s.starts[id], msg };
                    sends.push((to, serde_json::to_vec(&datagram).expect("messages serialize")));
                }
            }
            Effect::SetTimer { timer, after } => {
                timers.insert(timer, cx.now + after);
            }
            Effect::CancelTimer { timer } => {
                timers.remove(&timer);
            }
            Effect::Persist(d) => s.durable[id] = Some(d),
            Effect::Observe(o) => {
                notes.push(observation_text(&o, &|n| s.names[n].clone()));
                s.observe(&o);
            }
        }
    }
    let (kind, mut detail) = input;
    if !notes.is_empty() {
        detail.push_str(&format!(" ⇒ {}", notes.join("; ")));
    }
    let name = s.names[id].clone();
    s.record_as(name, kind, detail, !notes.is_empty());
    s.judge();
    sends
}

async fn turmoil_node<M: Machine>(id: NodeId, m: Arc<M>, sh: Sh<M>) -> turmoil::Result {
    let names = sh.borrow().names.clone();
    let link = TurmoilLink::bind(&names).await?;
    node_loop(id, m, sh, link).await
}

/// How often a paused node looks whether it may go on.
const POLL: Duration = Duration::from_millis(1);
/// The longest an idle node sleeps before it looks at what the driver set (stop, pause, hang) again.
const IDLE: Duration = Duration::from_millis(10);

/// One node: feeds the machine its inputs with the node's clock reading, carries out its effects.
async fn node_loop<M: Machine, L: Link>(id: NodeId, m: Arc<M>, sh: Sh<M>, link: L) -> turmoil::Result {
    let names = sh.borrow().names.clone();
    let mut timers: BTreeMap<M::Timer, i64> = BTreeMap::new();
    let (mut state, sends) = {
        let (restart, durable) = {
            let mut s = sh.borrow_mut();
            let restart = s.starts[id] > 0;
            s.starts[id] += 1;
            (restart, s.durable[id].clone())
        };
        let now = sh.borrow().reading(id);
        let mut cx = Cx::new(id, now);
        let st = if restart { m.restart(durable.as_ref(), &mut cx) } else { m.start(&mut cx) };
        let what = if restart {
            (
                "restart",
                format!("{} starts again{}", names[id], if durable.is_some() { " from its disk" } else { " empty" }),
            )
        } else {
            ("start", format!("{} starts", names[id]))
        };
        let sends = apply::<M>(&m, &sh, id, what, cx, &mut timers);
        (st, sends)
    };
    for (to, bytes) in sends {
        link.send(to, &bytes).await?;
    }
    let mut inbox: VecDeque<(NodeId, M::Msg)> = VecDeque::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        {
            let s = sh.borrow();
            if s.stop || s.dead[id] {
                return Ok(());
            }
            if s.kinds[id] == NodeKind::Client && s.monitor.client_finished(id) {
                return Ok(());
            }
        }
        if sh.borrow().paused[id] {
            tokio::time::sleep(POLL).await;
            continue;
        }
        let now = sh.borrow().reading(id);
        let (hung, unhung) = {
            let mut s = sh.borrow_mut();
            (s.hung[id], std::mem::take(&mut s.unhung[id]))
        };
        let next_msg = inbox.iter().position(|(_, msg)| !(hung && m.is_app_msg(msg)));
        let sends = if unhung {
            let mut cx = Cx::new(id, now);
            m.resume_app(&mut state, &mut cx);
            let detail = format!("{}'s application thread runs again", names[id]);
            apply::<M>(&m, &sh, id, ("resume", detail), cx, &mut timers)
        } else if let Some((from, msg)) = next_msg.and_then(|i| inbox.remove(i)) {
            let detail = format!("{} → {}: {}", names[from], names[id], m.show_msg(from, &msg));
            let mut cx = Cx::new(id, now);
            cx.app_hung = hung;
            m.on_message(&mut state, from, msg, &mut cx);
            apply::<M>(&m, &sh, id, ("receive", detail), cx, &mut timers)
        } else if let Some(t) =
            timers.iter().find(|(t, d)| **d <= now && !(hung && m.is_app_timer(t))).map(|(t, _)| t.clone())
        {
            timers.remove(&t);
            let detail = format!("timer {} fires", m.show_timer(&t));
            let mut cx = Cx::new(id, now);
            cx.app_hung = hung;
            m.on_timer(&mut state, t, &mut cx);
            apply::<M>(&m, &sh, id, ("timer", detail), cx, &mut timers)
        } else {
            let wait = timers.values().min().map(|d| sh.borrow().until(id, *d).min(IDLE)).unwrap_or(IDLE).max(POLL);
            tokio::select! {
                biased;
                r = link.recv(&mut buf) => {
                    let (n, from) = r?;
                    let Some(src) = from else { continue };
                    let d: Datagram<M::Msg> = serde_json::from_slice(&buf[..n])?;
                    let starts = &sh.borrow().starts;
                    if (d.incarnation == starts[id] && d.sender == starts[src]) || !m.dies_with_connection(&d.msg) {
                        inbox.push_back((src, d.msg));
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        };
        for (to, bytes) in sends {
            link.send(to, &bytes).await?;
        }
    }
}

/// The plan as timed events; a fault that lasts ends by the close of the fault window.
enum Ev {
    Start(Fault),
    End(Fault),
    HealAll,
}

/// `(at, order, event)` in time order, a fault's start before its end, and the window's close last.
fn timed_events(plan: &Plan, window: u64) -> VecDeque<(u64, usize, Ev)> {
    let mut events: Vec<(u64, usize, Ev)> = Vec::new();
    for (i, f) in plan.faults.iter().enumerate() {
        events.push((f.at(), i, Ev::Start(f.clone())));
        if let Some(length) = f.length() {
            events.push(((f.at() + length).min(window), i, Ev::End(f.clone())));
        }
    }
    events.push((window, usize::MAX, Ev::HealAll));
    events.sort_by_key(|(at, i, _)| (*at, *i));
    VecDeque::from(events)
}

/// How a link carries messages one way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Open,
    Held,
    Cut,
}

/// The plan's faults in place, counted per node. Two faults of one kind may overlap on one node (a
/// scenario with `pauses = 2` draws both on one client at times): the node is itself again only
/// when the last one ends. A link belongs to two nodes, so its state is derived from the faults of
/// both ends and never set by one fault alone: when one node's partition ends, its link to a node
/// still cut off stays cut, and a hold on one end does not open a link the other end's cut closed.
struct InPlace {
    names: Vec<String>,
    pauses: Vec<u32>,
    hangs: Vec<u32>,
    crashes: Vec<u32>,
    cuts: Vec<u32>,
    one_way_cuts: Vec<u32>,
    holds: Vec<u32>,
}

/// One fault of a count ends: whether it was the last. Every fault starts inside the fault window
/// ([`Plan::validate`]) and ends by its close, before [`InPlace::heal_all`]: one is in place.
fn last_of(count: &mut u32) -> bool {
    assert!(*count > 0, "a fault ends that is not in place");
    *count -= 1;
    *count == 0
}

impl InPlace {
    fn new(names: Vec<String>) -> Self {
        let none = vec![0; names.len()];
        InPlace {
            pauses: none.clone(),
            hangs: none.clone(),
            crashes: none.clone(),
            cuts: none.clone(),
            one_way_cuts: none.clone(),
            holds: none,
            names,
        }
    }

    /// A one-way partition cuts what its node says and leaves what it hears.
    fn way(&self, from: NodeId, to: NodeId) -> Way {
        if self.cuts[from] + self.cuts[to] + self.one_way_cuts[from] > 0 {
            Way::Cut
        } else if self.holds[from] + self.holds[to] > 0 {
            Way::Held
        } else {
            Way::Open
        }
    }

    /// Sets every link of `node` in turmoil to its ways. turmoil's `hold` and `release` set both
    /// ways of a link, so a link is rebuilt from open: `release` opens it and delivers what it held
    /// (held again at once when it stays held), then the hold, then each way that is cut.
    fn relink(&self, sim: &turmoil::Sim, node: NodeId) {
        for other in (0..self.names.len()).filter(|&o| o != node) {
            let ways = [self.way(node, other), self.way(other, node)];
            let (a, b) = (self.names[node].as_str(), self.names[other].as_str());
            sim.release(a, b);
            if ways.contains(&Way::Held) {
                sim.hold(a, b);
            }
            for (from, to, way) in [(a, b, ways[0]), (b, a, ways[1])] {
                if way == Way::Cut {
                    sim.partition_oneway(from, to);
                }
            }
        }
    }

    fn start<D>(&mut self, fault: &Fault, sh: &RefCell<Shared<D>>, sim: &mut turmoil::Sim) {
        let mut s = sh.borrow_mut();
        // A fault that starts while one of its kind stands says when the node is itself again.
        let again = |count: u32, state: &str, until: &str| {
            if count > 1 { format!(" (already {state}: {until} when the last of them ends)") } else { String::new() }
        };
        match *fault {
            Fault::Pause { node, .. } => {
                self.pauses[node] += 1;
                s.paused[node] = true;
                let again = again(self.pauses[node], "stopped", "it resumes");
                s.record(node, "pause", format!("GcPause: {} stops the world{again}", self.names[node]));
            }
            Fault::Hang { node, .. } => {
                self.hangs[node] += 1;
                s.hung[node] = true;
                let again = again(self.hangs[node], "stuck", "it runs again");
                let name = &self.names[node];
                s.record(
                    node,
                    "hang",
                    format!("{name}'s application thread is stuck; its lock library's threads run on{again}"),
                );
            }
            Fault::Crash { node, .. } if s.kinds[node] == NodeKind::Client => {
                if !s.dead[node] {
                    s.record(node, "crash", format!("{} crashes", self.names[node]));
                    s.dead[node] = true;
                    s.monitor.crashed(node);
                }
            }
            Fault::Crash { node, lose_disk, .. } => {
                self.crashes[node] += 1;
                let again = again(self.crashes[node], "down", "it restarts");
                s.record(node, "crash", format!("{} crashes{again}", self.names[node]));
                if lose_disk {
                    s.durable[node] = None;
                }
                drop(s);
                if self.crashes[node] == 1 {
                    sim.crash(self.names[node].as_str());
                }
            }
            Fault::Partition { node, one_way, .. } => {
                *if one_way { &mut self.one_way_cuts[node] } else { &mut self.cuts[node] } += 1;
                let again = again(self.cuts[node] + self.one_way_cuts[node], "cut off", "it is reachable again");
                let hears = if one_way { " (it still hears the others)" } else { "" };
                s.record(node, "partition", format!("{} is cut off{hears}{again}", self.names[node]));
                drop(s);
                self.relink(sim, node);
            }
            Fault::Hold { node, .. } => {
                self.holds[node] += 1;
                let again = again(self.holds[node], "held", "its messages move again");
                let name = &self.names[node];
                s.record(node, "hold", format!("the network holds back every message to and from {name}{again}"));
                drop(s);
                self.relink(sim, node);
            }
            Fault::ClockJump { node, by_ms, .. } => {
                s.offset_ms[node] += by_ms as f64;
                s.record(node, "jump", format!("ClockJump: clock of {} steps {by_ms} ms ahead", self.names[node]));
            }
        }
    }

    fn end<D>(&mut self, fault: &Fault, sh: &RefCell<Shared<D>>, sim: &mut turmoil::Sim) {
        let mut s = sh.borrow_mut();
        let name = &self.names[fault.node()];
        match *fault {
            Fault::Pause { node, .. } => {
                if last_of(&mut self.pauses[node]) {
                    s.paused[node] = false;
                    s.record(node, "resume", format!("{name} resumes, unaware it was paused"));
                }
            }
            Fault::Hang { node, .. } => {
                if last_of(&mut self.hangs[node]) {
                    s.hung[node] = false;
                    s.unhung[node] = true;
                }
            }
            // A client's crash is for good.
            Fault::Crash { node, .. } if s.kinds[node] == NodeKind::Client => {}
            Fault::Crash { node, .. } => {
                if last_of(&mut self.crashes[node]) {
                    drop(s);
                    sim.bounce(name.as_str());
                }
            }
            Fault::Partition { node, one_way, .. } => {
                last_of(if one_way { &mut self.one_way_cuts[node] } else { &mut self.cuts[node] });
                if self.cuts[node] + self.one_way_cuts[node] == 0 {
                    s.record(node, "heal", format!("{name} reachable again"));
                }
                drop(s);
                self.relink(sim, node);
            }
            Fault::Hold { node, .. } => {
                if last_of(&mut self.holds[node]) {
                    s.record(node, "release", format!("the held messages of {name} move again"));
                    drop(s);
                    self.relink(sim, node);
                }
            }
            Fault::ClockJump { .. } => {}
        }
    }

    /// The fault window's close: every fault still in place ends at once.
    fn heal_all<D>(&mut self, sh: &RefCell<Shared<D>>, sim: &mut turmoil::Sim) {
        let mut s = sh.borrow_mut();
        for node in 0..self.names.len() {
            s.paused[node] = false;
            if s.hung[node] {
                s.hung[node] = false;
                s.unhung[node] = true;
            }
        }
        s.record_as(
            "world".into(),
            "heal",
            "fault window over: every paused node resumes, stuck applications run again, partitions heal, held \
             messages go on, crashed servers and storage restart"
                .into(),
            false,
        );
        drop(s);
        let down: Vec<NodeId> = (0..self.names.len()).filter(|&node| self.crashes[node] > 0).collect();
        *self = InPlace::new(std::mem::take(&mut self.names));
        for node in down {
            sim.bounce(self.names[node].as_str());
        }
        for node in 0..self.names.len() {
            self.relink(sim, node);
        }
    }
}

/// Runs seed `seed` under `plan` to the end of the settle time or until every safety property broke.
pub fn run<M: Machine>(m: Arc<M>, cfg: &RunCfg, seed: u64, plan: Plan) -> Result<RunOutcome, String> {
    run_recorded(m, cfg, seed, plan).map(|(outcome, _)| outcome)
}

/// [`run`], with every step of the run.
fn run_recorded<M: Machine>(m: Arc<M>, cfg: &RunCfg, seed: u64, plan: Plan) -> Result<(RunOutcome, Vec<Step>), String> {
    let nodes = m.nodes().to_vec();
    let clients = nodes.iter().filter(|x| x.kind == NodeKind::Client).count();
    let sh: Sh<M> = Rc::new(RefCell::new(Shared::new(&nodes, cfg, &plan, None)));
    let end_ms = cfg.fault_window_ms + cfg.settle_ms;
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_millis(end_ms + 1000))
        .tick_duration(Duration::from_millis(cfg.step_ms))
        .min_message_latency(Duration::from_millis(cfg.latency_ms.0))
        .max_message_latency(Duration::from_millis(cfg.latency_ms.1))
        .udp_capacity(4096)
        .rng_seed(plan.turmoil_seed)
        .build();
    for (id, node) in nodes.iter().enumerate() {
        let (m, sh) = (m.clone(), sh.clone());
        if node.kind == NodeKind::Client {
            sim.client(node.name.as_str(), turmoil_node::<M>(id, m, sh));
        } else {
            sim.host(node.name.as_str(), move || turmoil_node::<M>(id, m.clone(), sh.clone()));
        }
    }

    let window = cfg.fault_window_ms;
    let mut events = timed_events(&plan, window);
    let mut in_place = InPlace::new(sh.borrow().names.clone());
    let mut deadlock_at = None;
    loop {
        let now = sim.elapsed().as_millis() as u64;
        sh.borrow_mut().driver_ms = now;
        while events.front().is_some_and(|(at, ..)| *at <= now) {
            match events.pop_front().expect("checked").2 {
                Ev::Start(f) => in_place.start(&f, &sh, &mut sim),
                Ev::End(f) => in_place.end(&f, &sh, &mut sim),
                Ev::HealAll => in_place.heal_all(&sh, &mut sim),
            }
        }
        {
            let s = sh.borrow();
            if !cfg.full_duration && (s.stop || s.monitor.finished()) {
                break;
            }
        }
        if now >= end_ms {
            deadlock_at = (!sh.borrow().monitor.finished()).then_some(now);
            break;
        }
        sim.step().map_err(|e| format!("seed {seed}: a node failed: {e}"))?;
    }
    let mut s = sh.borrow_mut();
    if let Some(at) = deadlock_at
        && s.properties.contains(&PropertyName::DeadlockFree)
        && !s.monitor.finished()
    {
        let waiting: Vec<String> =
            (0..clients).filter(|&c| !s.monitor.client_finished(c)).map(|c| s.names[c].clone()).collect();
        s.record_as(
            "world".into(),
            "deadline",
            format!("{} ms after the faults stopped, {} still waiting", cfg.settle_ms, waiting.join(", ")),
            false,
        );
        let steps = s.steps.clone();
        s.violations.push(Violation { property: PropertyName::DeadlockFree, at_ms: at, steps });
    }
    s.metrics.simulated_ms = sim.elapsed().as_millis() as u64;
    let outcome = RunOutcome {
        seed,
        plan,
        violations: std::mem::take(&mut s.violations),
        witnessed: std::mem::take(&mut s.witnessed),
        metrics: std::mem::take(&mut s.metrics),
    };
    Ok((outcome, std::mem::take(&mut s.steps)))
}

struct LoopbackLink {
    sock: tokio::net::UdpSocket,
    addrs: Vec<std::net::SocketAddr>,
}

impl Link for LoopbackLink {
    async fn send(&self, to: NodeId, bytes: &[u8]) -> std::io::Result<()> {
        self.sock.send_to(bytes, self.addrs[to]).await.map(|_| ())
    }
    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, Option<NodeId>)> {
        let (n, from) = self.sock.recv_from(buf).await?;
        Ok((n, self.addrs.iter().position(|a| *a == from)))
    }
}

/// The comparison a Jepsen-style harness would make: the same machines and node loops over real
/// UDP sockets on 127.0.0.1 with real timers, for `cfg`'s full duration of wall-clock time. Not
/// deterministic, and not meant to be: it measures what simulation saves.
pub fn run_realtime<M: Machine>(m: Arc<M>, cfg: &RunCfg, plan: &Plan) -> Result<Metrics, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let nodes = m.nodes().to_vec();
        let mut socks = Vec::new();
        for _ in &nodes {
            socks.push(tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.map_err(|e| e.to_string())?);
        }
        let addrs: Vec<std::net::SocketAddr> =
            socks.iter().map(|s| s.local_addr()).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        let sh: Sh<M> = Rc::new(RefCell::new(Shared::new(&nodes, cfg, plan, Some(std::time::Instant::now()))));
        let tasks: Vec<_> = socks
            .into_iter()
            .enumerate()
            .map(|(id, sock)| {
                let link = LoopbackLink { sock, addrs: addrs.clone() };
                tokio::task::spawn_local(node_loop(id, m.clone(), sh.clone(), link))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(cfg.fault_window_ms + cfg.settle_ms)).await;
        sh.borrow_mut().stop = true;
        for t in tasks {
            t.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        }
        let mut s = sh.borrow_mut();
        s.metrics.simulated_ms = cfg.fault_window_ms + cfg.settle_ms;
        Ok(std::mem::take(&mut s.metrics))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{NodeInfo, Protocol};
    use crate::registry::{self, Visit};
    use crate::sim::spec::{self, LoadedSim};
    use crate::system::LockSystem;
    use Observation::*;
    use PropertyName::*;
    use std::time::Instant;

    fn cfg(tick_ms: u64, properties: Vec<PropertyName>) -> RunCfg {
        let latency_ms = (1, 5);
        RunCfg {
            tick_ms,
            step_ms: 1,
            fault_window_ms: 100,
            settle_ms: 100,
            latency_ms,
            loss: 0.0,
            stock: 1,
            properties,
            full_duration: false,
        }
    }

    /// Clients `a` and `b` and a server `s` whose clock is 50 ms ahead and runs 25 % fast, outside
    /// any simulation: time is the driver's unless `epoch` gives a real clock.
    fn shared(tick_ms: u64, properties: Vec<PropertyName>, epoch: Option<Instant>) -> Shared<()> {
        let node = |name: &str, kind| NodeInfo { name: name.into(), kind, wall_clock: true };
        let nodes = [node("a", NodeKind::Client), node("b", NodeKind::Client), node("s", NodeKind::Server)];
        let plan = Plan { drift_ppm: vec![0, 0, 250_000], faults: Vec::new(), turmoil_seed: 0, loss_seed: 0 };
        let mut s = Shared::new(&nodes, &cfg(tick_ms, properties), &plan, epoch);
        s.offset_ms[2] = 50.0;
        s
    }

    #[test]
    fn a_nodes_clock_is_its_offset_plus_simulated_time_at_its_drifting_rate() {
        let mut s = shared(10, Vec::new(), None);
        assert_eq!((s.local_ms(2, 100.0), s.local_ms(0, 100.0)), (175.0, 100.0));
        assert_eq!((s.reading(2), s.reading(0)), (5, 0), "at simulated time 0");
        assert_eq!(s.until(2, 10), Duration::from_millis(40), "(100 - 50) / 1.25 ms");
        assert_eq!((s.until(0, 10), s.until(2, 3)), (Duration::from_millis(100), Duration::ZERO));
        s.driver_ms = 42;
        assert_eq!(s.now_ms(), 42, "between simulation steps, the driver's time");
    }

    #[test]
    fn on_a_real_clock_time_runs_from_the_epoch() {
        let second_ago = Instant::now().checked_sub(Duration::from_secs(1)).expect("up for a second");
        let s = shared(1000, Vec::new(), Some(second_ago));
        assert!((1000..1400).contains(&s.now_ms()), "{}", s.now_ms());
        assert_eq!((s.reading(0), s.reading(2)), (1, 1), "1000 ms and 50 + 1250 ms, in 1000 ms ticks");
        let until = s.until(2, 2).as_secs_f64() * 1000.0;
        assert!(until > 160.0 && until <= 560.0, "(2000 - 50) / 1.25 - 1000 ms, less what has passed: {until}");
    }

    #[test]
    fn steps_are_numbered_from_one_at_the_time_they_happen() {
        let mut s = shared(10, Vec::new(), None);
        s.driver_ms = 7;
        s.record(2, "crash", "s crashes".into());
        s.driver_ms = 9;
        s.record_as("world".into(), "heal", "over".into(), true);
        let brief: Vec<_> =
            s.steps.iter().map(|x| (x.step, x.time, x.node.as_str(), x.kind.as_str(), x.observed)).collect();
        assert_eq!(brief, [(1, Some(7), "s", "crash", false), (2, Some(9), "world", "heal", true)]);
    }

    #[test]
    fn a_handlers_step_says_what_it_caused_after_its_input_and_only_when_it_caused_something() {
        let steps = busy(Vec::new()).1;
        let handled = |s: &&Step| matches!(s.kind.as_str(), "start" | "receive" | "timer");
        let (observed, quiet): (Vec<&Step>, Vec<&Step>) = steps.iter().filter(handled).partition(|s| s.observed);
        assert!(!observed.is_empty() && !quiet.is_empty());
        for s in observed {
            let (input, caused) = s.detail.split_once(" ⇒ ").unwrap_or_else(|| panic!("{s:?}"));
            assert!(!input.is_empty() && !caused.is_empty(), "{s:?}");
        }
        assert!(quiet.iter().all(|s| !s.detail.contains('⇒')), "{:?}", quiet.iter().find(|s| s.detail.contains('⇒')));
        let granted = steps.iter().find(|s| s.detail.contains("lock granted to")).expect("a grant");
        assert!(granted.detail.starts_with("client-") && granted.detail.contains(" → redis: SET "), "{granted:?}");
    }

    #[test]
    fn a_run_that_ends_with_clients_still_waiting_names_every_one_of_them() {
        let (out, steps) = run_plan(&three_clients(25, 100, 300, 0.0), Vec::new(), 1);
        let unfinished: Vec<&str> = ["client-0", "client-1", "client-2"]
            .into_iter()
            .filter(|c| !steps.iter().any(|s| s.detail.contains(&format!("{c} finishes"))))
            .collect();
        assert!(unfinished.contains(&"client-2"), "three clients of 250 ms each cannot all finish in 400 ms");
        let last = steps.last().expect("steps");
        assert_eq!((last.node.as_str(), last.kind.as_str()), ("world", "deadline"));
        assert_eq!(last.detail, format!("300 ms after the faults stopped, {} still waiting", unfinished.join(", ")));
        let deadlock = out.violations.iter().find(|v| v.property == DeadlockFree).expect("deadlock_free broke");
        assert!(deadlock.at_ms >= 400, "{}", deadlock.at_ms);
    }

    #[test]
    fn a_client_that_finished_does_nothing_more() {
        let steps = busy(Vec::new()).1;
        for client in ["client-0", "client-1", "client-2"] {
            let done = steps
                .iter()
                .position(|s| s.node == client && s.detail.contains(&format!("{client} finishes")))
                .unwrap_or_else(|| panic!("{client} finishes"));
            let later: Vec<&Step> = steps[done + 1..].iter().filter(|s| s.node == client).collect();
            assert!(later.is_empty(), "{client} finished at step {} and went on: {later:?}", done + 1);
        }
    }

    #[test]
    fn latencies_run_from_asking_to_the_grant_and_from_the_lock_freed_under_a_waiter_to_the_next_grant() {
        let mut s = shared(10, vec![MutualExclusion], None);
        let at = |s: &mut Shared<()>, ms, o: Observation| {
            s.driver_ms = ms;
            s.observe(&o);
        };
        at(&mut s, 10, Waiting { client: 0 });
        at(&mut s, 15, Waiting { client: 1 });
        at(&mut s, 20, Granted { client: 0, token: None });
        at(&mut s, 20, Acquired { client: 0, depth: 1 });
        at(&mut s, 50, Released { client: 0, depth: 0 });
        at(&mut s, 65, Granted { client: 1, token: None });
        at(&mut s, 65, Acquired { client: 1, depth: 1 });
        at(&mut s, 70, WriteRejected { client: 1, token: None });
        at(&mut s, 80, Released { client: 1, depth: 0 });
        at(&mut s, 90, Granted { client: 0, token: None });
        at(&mut s, 90, Acquired { client: 0, depth: 1 });
        let m = &s.metrics;
        assert_eq!((m.acquisitions, m.rejected_writes), (3, 1));
        assert_eq!(m.acquire_latency_ms, [10, 50], "the third grant came unasked");
        assert_eq!(m.wakeup_latency_ms, [15], "freed at 80 with nobody waiting: no wake-up");
        at(&mut s, 100, Waiting { client: 1 });
        at(&mut s, 130, Expired { client: 0 });
        at(&mut s, 131, Granted { client: 1, token: None });
        at(&mut s, 131, Acquired { client: 1, depth: 2 });
        assert_eq!(s.metrics.acquisitions, 3, "a nested acquisition is no new one");
        assert_eq!(s.metrics.wakeup_latency_ms, [15], "only a first-level grant ends a wait");
    }

    /// Client 0 takes the lock, then client 1 too: mutual exclusion breaks at 30 ms.
    fn two_holders(s: &mut Shared<()>) {
        s.observe(&Granted { client: 0, token: None });
        s.observe(&Acquired { client: 0, depth: 1 });
        s.record(0, "receive", "granted".into());
        s.judge();
        s.judge();
        assert_eq!((s.witnessed.as_slice(), s.violations.len(), s.stop), (&[MutualExclusion][..], 0, false));
        s.driver_ms = 30;
        s.observe(&Granted { client: 1, token: None });
        s.observe(&Acquired { client: 1, depth: 1 });
        s.record(1, "receive", "granted".into());
        s.judge();
        s.judge();
    }

    #[test]
    fn a_broken_property_is_recorded_once_with_the_steps_so_far_and_the_run_stops_when_all_broke() {
        let mut s = shared(10, vec![MutualExclusion, DeadlockFree], None);
        two_holders(&mut s);
        let broke: Vec<_> = s.violations.iter().map(|v| (v.property, v.at_ms, v.steps.len())).collect();
        assert_eq!(broke, [(MutualExclusion, 30, 2)], "a liveness property is judged at the end of a run");
        assert_eq!(s.violations[0].steps, s.steps);
        assert!(s.stop, "nothing left to break");
        let mut more = shared(10, vec![MutualExclusion, NoOversell], None);
        two_holders(&mut more);
        assert_eq!((more.violations.len(), more.stop), (1, false), "no_oversell can still break");
        let mut live = shared(10, vec![DeadlockFree], None);
        live.judge();
        assert!(!live.stop && live.violations.is_empty(), "no safety property: run to the end");
    }

    /// A scenario's machine run for its whole duration under a hand-made plan.
    struct RunUnder<'a>(&'a LoadedSim, Plan);

    impl Visit for RunUnder<'_> {
        type Out = (RunOutcome, Vec<Step>);
        fn visit<P: Protocol>(self, system: LockSystem<P>) -> Self::Out {
            let RunUnder(sim, plan) = self;
            let props = crate::sim::judged(sim, system.proto.issues_tokens()).expect("judged");
            let cfg = RunCfg { full_duration: true, ..crate::sim::run_cfg(sim, props) };
            run_recorded(Arc::new(system), &cfg, 0, plan).expect("runs")
        }
    }

    /// Three clients of one Redis (TTL 300 ms), each holding the lock for `work_ticks` × 10 ms.
    fn three_clients(work_ticks: i64, window_ms: i64, settle_ms: i64, loss: f64) -> LoadedSim {
        let int = toml::Value::Integer;
        let edits = [
            ("setup.clients", int(3)),
            ("setup.stock", int(3)),
            ("setup.work_ticks", int(work_ticks)),
            ("time.ttl_ticks", int(30)),
            ("time.fault_window_ms", int(window_ms)),
            ("time.settle_ms", int(settle_ms)),
            ("network.loss", toml::Value::Float(loss)),
        ];
        spec::test_sim(&edits).expect("a valid scenario")
    }

    /// Three clients each holding the lock for 80 ms: busy for most of the window.
    fn busy_sim(loss: f64) -> LoadedSim {
        three_clients(8, 400, 600, loss)
    }

    fn run_plan(sim: &LoadedSim, faults: Vec<Fault>, loss_seed: u64) -> (RunOutcome, Vec<Step>) {
        let plan = Plan { drift_ppm: vec![0; 5], faults, turmoil_seed: 1, loss_seed };
        registry::build(&sim.as_model(), RunUnder(sim, plan)).expect("builds")
    }

    fn busy_run(loss: f64, faults: Vec<Fault>, loss_seed: u64) -> (RunOutcome, Vec<Step>) {
        run_plan(&busy_sim(loss), faults, loss_seed)
    }

    fn busy(faults: Vec<Fault>) -> (RunOutcome, Vec<Step>) {
        busy_run(0.0, faults, 1)
    }

    /// Node ids of [`busy`]: three clients, then Redis and the storage.
    const REDIS: NodeId = 3;

    fn every_fault() -> Vec<Fault> {
        vec![
            Fault::Pause { node: 1, at_ms: 20, for_ms: 50 },
            Fault::Hang { node: 2, at_ms: 30, for_ms: 40 },
            Fault::Crash { node: 0, at_ms: 40, restart_after_ms: None, lose_disk: false },
            Fault::Partition { node: REDIS, at_ms: 100, for_ms: 40, one_way: false },
            Fault::Hold { node: REDIS, at_ms: 150, for_ms: 30 },
            Fault::ClockJump { node: REDIS, at_ms: 200, by_ms: 50 },
            Fault::Crash { node: REDIS, at_ms: 300, restart_after_ms: Some(40), lose_disk: true },
            Fault::Partition { node: 1, at_ms: 350, for_ms: 10_000, one_way: true },
        ]
    }

    /// The steps at times in `from..to`.
    fn within(steps: &[Step], from: i64, to: i64) -> impl Iterator<Item = &Step> {
        steps.iter().filter(move |s| s.time.is_some_and(|t| (from..to).contains(&t)))
    }

    /// The steps of `node` at times in `from..to`.
    fn during<'a>(steps: &'a [Step], node: &'a str, from: i64, to: i64) -> impl Iterator<Item = &'a Step> {
        within(steps, from, to).filter(move |s| s.node == node)
    }

    fn involves_redis(s: &Step) -> bool {
        involves("redis")(&s)
    }

    #[test]
    fn each_fault_starts_at_its_time_and_ends_after_its_length_or_with_the_fault_window() {
        let (r, steps) = busy(every_fault());
        let seen = fault_steps(&steps);
        let expected = [
            (20, "client-1", "pause"),
            (30, "client-2", "hang"),
            (40, "client-0", "crash"),
            (70, "client-1", "resume"),
            (70, "client-2", "resume"),
            (100, "redis", "partition"),
            (140, "redis", "heal"),
            (150, "redis", "hold"),
            (180, "redis", "release"),
            (200, "redis", "jump"),
            (300, "redis", "crash"),
            (340, "redis", "restart"),
            (350, "client-1", "partition"),
            (400, "client-1", "heal"),
            (400, "world", "heal"),
        ];
        assert_eq!(seen, expected);
        assert!(steps.iter().any(|s| s.kind == "restart" && s.detail == "redis starts again empty"));
        // Pinned: a change here changes what every stored seed replays, so it is a decision.
        assert_eq!((r.metrics.acquisitions, r.metrics.messages, r.metrics.store_requests), (3, 106, 55));
        assert_eq!(
            (r.metrics.acquire_latency_ms.as_slice(), r.metrics.wakeup_latency_ms.as_slice()),
            (&[2, 252, 342][..], &[2, 8][..])
        );
        assert_eq!(r.metrics.simulated_ms, 1000, "run to the end of the settle time");
    }

    /// Kind, node and time of every fault step.
    fn fault_steps(steps: &[Step]) -> Vec<(i64, &str, &str)> {
        let faults = ["pause", "resume", "hang", "crash", "partition", "heal", "hold", "release", "jump", "restart"];
        steps
            .iter()
            .filter(|s| faults.contains(&s.kind.as_str()))
            .map(|s| (s.time.unwrap_or(-1), s.node.as_str(), s.kind.as_str()))
            .collect()
    }

    fn involves(node: &str) -> impl Fn(&&Step) -> bool + '_ {
        move |s| s.kind == "receive" && (s.node == node || s.detail.starts_with(&format!("{node} →")))
    }

    #[test]
    fn faults_of_one_kind_that_overlap_on_a_node_end_with_the_last_of_them() {
        let faults = vec![
            Fault::Pause { node: 1, at_ms: 20, for_ms: 50 },
            Fault::Pause { node: 1, at_ms: 50, for_ms: 100 },
            Fault::Hold { node: 2, at_ms: 100, for_ms: 50 },
            Fault::Hold { node: 2, at_ms: 120, for_ms: 60 },
            Fault::Crash { node: REDIS, at_ms: 200, restart_after_ms: Some(40), lose_disk: false },
            Fault::Crash { node: REDIS, at_ms: 220, restart_after_ms: Some(80), lose_disk: false },
            Fault::Partition { node: 0, at_ms: 250, for_ms: 50, one_way: false },
            Fault::Partition { node: 0, at_ms: 270, for_ms: 80, one_way: true },
            Fault::Crash { node: 2, at_ms: 360, restart_after_ms: Some(10), lose_disk: false },
        ];
        let (_, steps) = busy(faults);
        let expected = [
            (20, "client-1", "pause"),
            (50, "client-1", "pause"),
            (100, "client-2", "hold"),
            (120, "client-2", "hold"),
            (150, "client-1", "resume"),
            (180, "client-2", "release"),
            (200, "redis", "crash"),
            (220, "redis", "crash"),
            (250, "client-0", "partition"),
            (270, "client-0", "partition"),
            (300, "redis", "restart"),
            (350, "client-0", "heal"),
            (360, "client-2", "crash"),
            (400, "world", "heal"),
        ];
        assert_eq!(fault_steps(&steps), expected);
        let acting = |s: &&Step| !matches!(s.kind.as_str(), "pause" | "crash");
        assert_eq!(during(&steps, "client-1", 21, 150).filter(acting).count(), 0, "paused until the second pause ends");
        assert_eq!(within(&steps, 106, 180).filter(involves("client-2")).count(), 0, "held until the second hold ends");
        assert_eq!(
            during(&steps, "redis", 201, 300).filter(acting).count(),
            0,
            "down until the second crash's restart"
        );
        assert_eq!(during(&steps, "client-2", 361, 1000).count(), 0, "a client's crash is for good, restart or not");
        let nested: Vec<i64> =
            steps.iter().filter(|s| s.detail.ends_with("when the last of them ends)")).filter_map(|s| s.time).collect();
        assert_eq!(nested, [50, 120, 220, 270], "a fault that starts while one of its kind is in place says so");
    }

    #[test]
    fn a_link_stays_cut_or_held_while_either_of_its_ends_is_cut_or_held() {
        let cut = |node, at_ms, for_ms| Fault::Partition { node, at_ms, for_ms, one_way: false };
        let (_, steps) = busy(vec![cut(REDIS, 100, 40), cut(2, 120, 80)]);
        assert_eq!(within(&steps, 121, 200).filter(involves("client-2")).count(), 0, "cut off after redis healed");
        assert!(within(&steps, 200, 250).any(|s| involves("client-2")(&s)), "reachable again");
        let (_, steps) = busy(vec![Fault::Hold { node: REDIS, at_ms: 100, for_ms: 100 }, cut(2, 120, 40)]);
        for s in &steps {
            eprintln!("{:?} {} {} {}", s.time, s.node, s.kind, s.detail);
        }
        assert_eq!(
            within(&steps, 106, 200).filter(|s| involves_redis(s)).count(),
            0,
            "held, also after client-2 healed"
        );
        assert!(during(&steps, "redis", 200, 201).any(|s| s.kind == "receive"), "the held messages arrive on release");
    }

    #[test]
    fn the_fault_windows_close_restarts_a_server_down_for_good() {
        let (r, steps) = busy(vec![Fault::Crash { node: REDIS, at_ms: 300, restart_after_ms: None, lose_disk: false }]);
        let restarts: Vec<(i64, &str)> =
            steps.iter().filter(|s| s.kind == "restart").map(|s| (s.time.unwrap_or(-1), s.node.as_str())).collect();
        assert_eq!(restarts, [(400, "redis")]);
        assert_eq!(r.metrics.acquisitions, 3, "every client served after it");
    }

    #[test]
    #[should_panic(expected = "a fault ends that is not in place")]
    fn a_fault_that_ends_while_none_of_its_kind_is_in_place_is_a_bug() {
        last_of(&mut 0);
    }

    #[test]
    fn a_one_way_cut_stops_what_its_node_says_and_a_two_way_cut_or_hold_on_either_end_stops_both_ways() {
        let names = ["a", "b", "c"].map(String::from).to_vec();
        let mut p = InPlace::new(names);
        let ways = |p: &InPlace| [p.way(0, 1), p.way(1, 0)];
        assert_eq!(ways(&p), [Way::Open, Way::Open]);
        p.one_way_cuts[0] = 1;
        assert_eq!(ways(&p), [Way::Cut, Way::Open]);
        p.holds[1] = 1;
        assert_eq!(ways(&p), [Way::Cut, Way::Held]);
        p.one_way_cuts[0] = 0;
        assert_eq!(ways(&p), [Way::Held, Way::Held]);
        p.cuts[1] = 1;
        assert_eq!(ways(&p), [Way::Cut, Way::Cut]);
        p.cuts[0] = 1;
        assert_eq!(ways(&p), [Way::Cut, Way::Cut], "both ends cut off");
        (p.cuts[0], p.one_way_cuts[0]) = (0, 1);
        assert_eq!(ways(&p), [Way::Cut, Way::Cut], "one end cut off, the other one way");
        (p.cuts[1], p.one_way_cuts[0], p.holds[0]) = (0, 0, 1);
        assert_eq!(ways(&p), [Way::Held, Way::Held], "both ends held");
    }

    #[test]
    fn a_paused_hung_crashed_or_cut_off_node_does_nothing_and_hears_nothing() {
        let (_, steps) = busy(every_fault());
        assert_eq!(during(&steps, "client-1", 21, 70).count(), 0, "paused");
        assert_eq!(during(&steps, "client-2", 31, 70).count(), 0, "its application thread stuck: no retry");
        assert_eq!(during(&steps, "client-0", 41, 1000).count(), 0, "crashed for good");
        assert_eq!(during(&steps, "redis", 301, 340).count(), 0, "down");
        assert_eq!(within(&steps, 106, 140).filter(|s| involves_redis(s)).count(), 0, "cut off");
        assert_eq!(within(&steps, 156, 180).filter(|s| involves_redis(s)).count(), 0, "held");
        let timeouts = during(&steps, "client-1", 100, 180).filter(|s| s.detail.contains("request timeout")).count();
        assert!(timeouts >= 6, "the clients kept asking meanwhile: {timeouts} timeouts");
        let released = during(&steps, "redis", 180, 181).filter(|s| s.kind == "receive").count();
        assert!(released >= 4, "the held requests arrive together on release: {released}");
    }

    #[test]
    fn a_clock_jump_brings_a_servers_expiry_forward_by_the_jump() {
        let expiry = |faults| {
            let (_, steps) = busy(faults);
            let expired = steps.iter().find(|s| s.node == "redis" && s.detail.contains("lease of client-0 expires"));
            expired.and_then(|s| s.time).expect("the crashed holder's lease expires")
        };
        let crash = Fault::Crash { node: 0, at_ms: 40, restart_after_ms: None, lose_disk: false };
        let jump = Fault::ClockJump { node: REDIS, at_ms: 200, by_ms: 50 };
        assert_eq!(expiry(vec![crash.clone()]), 300, "granted at tick 0, PX 30 ticks of 10 ms");
        assert_eq!(expiry(vec![crash, jump]), 250);
    }

    #[test]
    fn lost_messages_are_drawn_from_the_loss_seed_in_send_order_and_never_arrive() {
        let (a, steps) = busy_run(0.3, Vec::new(), 1);
        assert_eq!(busy_run(0.3, Vec::new(), 1), (a.clone(), steps.clone()), "the same loss seed, the same run");
        assert_ne!(busy_run(0.3, Vec::new(), 2).1, steps, "another loss seed, other losses");
        let lost: Vec<&Step> = steps.iter().filter(|s| s.detail.contains("lost on the way: ")).collect();
        assert!(lost.len() >= 5, "{} of {} messages lost at 30 %", lost.len(), a.metrics.messages);
        let first = lost[0].detail.split("lost on the way: ").nth(1).expect("a lost message named");
        let (route, msg) = first.split_once(": ").expect("sender → receiver: message");
        let receiver = route.split(" → ").nth(1).expect("a receiver");
        let after = steps.iter().skip_while(|s| s.step <= lost[0].step);
        assert!(
            !after.filter(|s| s.node == receiver).any(|s| s.detail.contains(&format!("{route}: {msg}"))),
            "{first}"
        );
        assert!(busy(Vec::new()).1.iter().all(|s| !s.detail.contains("lost")), "no loss without a loss rate");
    }

    /// The real-time comparison run of [`busy_sim`]: 1 s of wall-clock time.
    struct RealTime;

    impl Visit for RealTime {
        type Out = Metrics;
        fn visit<P: Protocol>(self, system: LockSystem<P>) -> Metrics {
            let sim = busy_sim(0.0);
            let cfg = crate::sim::run_cfg(&sim, vec![MutualExclusion]);
            let plan = Plan { drift_ppm: vec![0; 5], faults: Vec::new(), turmoil_seed: 0, loss_seed: 0 };
            run_realtime(Arc::new(system), &cfg, &plan).expect("runs on loopback")
        }
    }

    #[test]
    fn the_real_time_run_serves_every_client_over_loopback_for_its_whole_duration() {
        let started = Instant::now();
        let m = registry::build(&busy_sim(0.0).as_model(), RealTime).expect("builds");
        let took = started.elapsed().as_secs_f64();
        assert!((1.0..30.0).contains(&took), "1 s of wall-clock time, not {took} s");
        assert_eq!((m.acquisitions, m.simulated_ms), (3, 1000));
        assert!(m.messages >= 12 && m.store_requests >= 6, "{m:?}");
    }
}

//! The world the model checker explores: nodes of one [`Machine`], the network, timers, clocks,
//! faults and the property monitor, as a `stateright::Model`.
//!
//! Network: an unordered multiset of envelopes, nothing duplicated; loss and partitions are fault
//! actions. A partition drops what crosses it, in flight or sent while it lasts (as turmoil's
//! `partition` and an iptables DROP do); a message that arrives late instead is a delay fault.
//! Keeping crossing messages queued until the heal made every retry sent meanwhile a new message
//! whose delivery order after the heal the search had to try in every interleaving. Time, as the spec says:
//! - untimed: any armed timer may fire at any moment, over-approximating every pause and clock error;
//! - discrete: a global tick counter up to a horizon. A node's clock reads `tick + offset`; bounded
//!   drift moves the offset within `±drift` (a fast clock gains a tick, a slow one stands still for
//!   one), a clock jump moves it by `jump_ticks` at once. A timer fires when its node's clock
//!   reaches it. Time advances only when nothing is due: messages take less than a tick and timers
//!   fire on time, so only a fault (a pause, a jump) can make a node late.
//!
//! Faults are budgeted actions; in discrete mode they may happen only before the fault window ends.

use serde::Serialize;
use smallvec::SmallVec;

use crate::property::{Monitor, PropertyName};
use crate::protocol::{Cx, Effect, Ids, Machine, NodeId, NodeKind, Observation};
use crate::spec::{FaultBudget, Loaded, Targets, TimeMode};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Envelope<Msg> {
    pub src: NodeId,
    pub dst: NodeId,
    /// Place in its connection's queue, for machines whose connections are FIFO (0 = next).
    pub pos: u8,
    pub msg: Msg,
    /// Held back by a network delay fault: it may arrive at any later moment, time goes on meanwhile.
    pub late: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Slot<S, T, D> {
    /// `None` while crashed.
    pub state: Option<S>,
    pub paused: bool,
    /// The application thread is stuck; the lock library still runs.
    pub hung: bool,
    pub offset: i16,
    /// Armed timers and their deadlines on this node's clock, sorted by timer.
    pub timers: SmallVec<[(T, i64); 2]>,
    pub durable: Option<D>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Used {
    pub pauses: u8,
    pub hangs: u8,
    pub crashes: u8,
    pub lost_disks: u8,
    pub partitions: u8,
    pub jumps: u8,
    pub losses: u8,
    pub delays: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct WorldState<S, Msg, T, D> {
    pub tick: u16,
    pub nodes: Vec<Slot<S, T, D>>,
    /// In-flight messages, sorted: a multiset.
    pub net: Vec<Envelope<Msg>>,
    /// Nodes cut off from the rest by a partition (bit per node).
    pub cut: u64,
    pub used: Used,
    pub monitor: Monitor,
}

pub type State<M> =
    WorldState<<M as Machine>::State, <M as Machine>::Msg, <M as Machine>::Timer, <M as Machine>::Durable>;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Action<Msg, T> {
    Deliver(Envelope<Msg>),
    Fire(NodeId, T),
    /// Time advances one tick. With drift, one node's clock may advance by 0 (`Slow`) or 2 (`Fast`)
    /// instead: clocks drift at a bounded rate and stay within `±drift` of true time.
    Tick(Option<(NodeId, Drift)>),
    Pause(NodeId),
    Resume(NodeId),
    Hang(NodeId),
    Unhang(NodeId),
    Crash(NodeId),
    Restart {
        node: NodeId,
        keep_disk: bool,
    },
    Partition(NodeId),
    Heal,
    /// The fault window is over: paused nodes resume, stuck applications run again, partitions
    /// heal, crashed servers and storage restart.
    HealAll,
    /// Time passes after the fault window with the faults left in place.
    Linger,
    Lose(Envelope<Msg>),
    /// A network delay: the message will arrive, but not before time has passed.
    Delay(Envelope<Msg>),
    ClockJump(NodeId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Drift {
    Slow,
    Fast,
}

pub type Act<M> = Action<<M as Machine>::Msg, <M as Machine>::Timer>;

/// How an action counts for liveness: faults stop once the world heals; heals are allowed then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Normal,
    Heal,
    Fault,
    /// Time passing with faults left in place (judged by `available` only).
    Linger,
}

impl<Msg, T> Action<Msg, T> {
    pub fn class(&self) -> Class {
        match self {
            // A stop-the-world pause always ends by itself; a stuck application thread (a deadlock in
            // the application, a leaked thread) may not, so `available` leaves it stuck.
            Action::Deliver(_) | Action::Fire(..) | Action::Tick(_) | Action::Resume(_) => Class::Normal,
            Action::Heal | Action::HealAll | Action::Restart { keep_disk: true, .. } | Action::Unhang(_) => Class::Heal,
            Action::Pause(_)
            | Action::Hang(_)
            | Action::Crash(_)
            | Action::Restart { keep_disk: false, .. }
            | Action::Partition(_)
            | Action::Lose(_)
            | Action::Delay(_)
            | Action::ClockJump(_) => Class::Fault,
            Action::Linger => Class::Linger,
        }
    }
}

pub struct World<M: Machine> {
    pub machine: M,
    pub timed: bool,
    pub horizon: u16,
    pub fault_window: u16,
    pub drift: i64,
    pub jump: i64,
    pub budget: FaultBudget,
    pub clients: usize,
    pub stock: i64,
    pub properties: Vec<PropertyName>,
}

impl<M: Machine> World<M> {
    pub fn new(machine: M, spec: &Loaded, properties: Vec<PropertyName>) -> Self {
        let s = &spec.spec;
        World {
            machine,
            timed: s.time.mode == TimeMode::Discrete,
            horizon: spec.horizon(),
            fault_window: spec.fault_window(),
            drift: s.time.drift,
            jump: spec.jump(),
            budget: s.faults.clone(),
            clients: s.setup.clients,
            stock: s.setup.stock,
            properties,
        }
    }

    pub fn node_name(&self, id: NodeId) -> &str {
        &self.machine.nodes()[id].name
    }

    fn kind(&self, id: NodeId) -> NodeKind {
        self.machine.nodes()[id].kind
    }

    fn reading(&self, s: &State<M>, id: NodeId) -> i64 {
        if self.timed { i64::from(s.tick) + i64::from(s.nodes[id].offset) } else { 0 }
    }

    fn targets(&self, t: Targets, id: NodeId) -> bool {
        t.matches(self.kind(id))
    }

    fn in_window(&self, s: &State<M>) -> bool {
        !self.timed || s.tick < self.fault_window
    }

    fn runnable(&self, s: &State<M>, id: NodeId) -> bool {
        let slot = &s.nodes[id];
        slot.state.is_some() && !slot.paused
    }

    /// Whether the partition drops a message from `a` to `b`: it crosses the cut (one-way: leaves
    /// the cut-off node, which still hears the others).
    fn crosses_cut(&self, s: &State<M>, a: NodeId, b: NodeId) -> bool {
        let side = |n: NodeId| (s.cut >> n) & 1 == 1;
        side(a) != side(b) && (!self.budget.one_way || side(a))
    }

    /// A message to a crashed node can still arrive: it is then lost. One to a paused node waits.
    fn deliverable(&self, s: &State<M>, e: &Envelope<M::Msg>) -> bool {
        let dst = &s.nodes[e.dst];
        e.pos == 0 && !dst.paused && !(dst.hung && self.machine.is_app_msg(&e.msg))
    }

    fn due(&self, s: &State<M>, id: NodeId, deadline: i64) -> bool {
        !self.timed || deadline <= self.reading(s, id)
    }

    pub fn init(&self) -> State<M> {
        self.init_logged(None)
    }

    /// The initial state, recording what the nodes observed while starting.
    pub fn init_logged(&self, mut log: Option<&mut Vec<Observation>>) -> State<M> {
        let n = self.machine.nodes().len();
        let mut s = WorldState {
            tick: 0,
            nodes: (0..n)
                .map(|_| Slot {
                    state: None,
                    paused: false,
                    hung: false,
                    offset: 0,
                    timers: SmallVec::new(),
                    durable: None,
                })
                .collect(),
            net: Vec::new(),
            cut: 0,
            used: Used::default(),
            monitor: Monitor::new(self.clients, self.stock),
        };
        let mut pending = Vec::new();
        for id in 0..n {
            let mut cx = Cx::new(id, 0);
            s.nodes[id].state = Some(self.machine.start(&mut cx));
            pending.push(cx);
        }
        for cx in pending {
            self.apply(&mut s, cx, &mut log);
        }
        s
    }

    /// Carries out a handler's effects.
    fn apply(&self, s: &mut State<M>, cx: Cx<M::Msg, M::Timer, M::Durable>, log: &mut Option<&mut Vec<Observation>>) {
        let me = cx.me;
        for e in cx.effects {
            match e {
                // A node that is down refuses the connection, a partition drops: never sent.
                Effect::Send { to, msg } if s.nodes[to].state.is_some() && !self.crosses_cut(s, me, to) => {
                    let pos = if self.machine.fifo() {
                        s.net.iter().filter(|e| e.src == me && e.dst == to).count() as u8
                    } else {
                        0
                    };
                    Self::post(s, Envelope { src: me, dst: to, pos, msg, late: false })
                }
                Effect::Send { .. } => {}
                Effect::SetTimer { timer, after } => {
                    let deadline = if self.timed { cx.now + after } else { 0 };
                    let timers = &mut s.nodes[me].timers;
                    match timers.binary_search_by(|(t, _)| t.cmp(&timer)) {
                        Ok(i) => timers[i].1 = deadline,
                        Err(i) => timers.insert(i, (timer, deadline)),
                    }
                }
                Effect::CancelTimer { timer } => s.nodes[me].timers.retain(|(t, _)| t != &timer),
                Effect::Persist(d) => s.nodes[me].durable = Some(d),
                Effect::Observe(o) => {
                    s.monitor.observe(&o);
                    if let Some(l) = log.as_deref_mut() {
                        l.push(o);
                    }
                }
            }
        }
    }

    /// Takes envelope `i` off the network; on a FIFO connection the ones behind it move up.
    /// A process that dies takes its connections along: what was in flight to it on one, or sent
    /// to it while it was down, never reaches the process that starts again (see
    /// [`Machine::dies_with_connection`]). What it sent before dying may still arrive, until it
    /// `restarts`.
    fn close_connections(&self, s: &mut State<M>, id: NodeId, restarts: bool) {
        let closed = |e: &Envelope<M::Msg>| e.dst == id || (restarts && e.src == id);
        while let Some(i) = s.net.iter().rposition(|e| closed(e) && self.machine.dies_with_connection(&e.msg)) {
            Self::take(s, i);
        }
    }

    fn take(s: &mut State<M>, i: usize) -> Envelope<M::Msg> {
        let e = s.net.remove(i);
        let mut moved = false;
        for x in s.net.iter_mut().filter(|x| x.src == e.src && x.dst == e.dst && x.pos > e.pos) {
            x.pos -= 1;
            moved = true;
        }
        if moved {
            s.net.sort();
        }
        e
    }

    fn post(s: &mut State<M>, env: Envelope<M::Msg>) {
        let at = s.net.partition_point(|x| x <= &env);
        s.net.insert(at, env);
    }

    /// A representative of the states that differ from `s` only by a renaming of clients: clients
    /// sorted by what they are (their slot and what the monitor knows of them), ids rewritten
    /// everywhere. Equal representatives mean the same future up to renaming.
    pub fn canonical(&self, s: &State<M>) -> State<M> {
        // Keys borrow the slots: this runs on every successor, so nothing is cloned to compare.
        let key = |i: NodeId| (&s.nodes[i], s.monitor.client_key(i), (s.cut >> i) & 1);
        let mut order: Vec<NodeId> = (0..s.nodes.len()).collect();
        order[..self.clients].sort_by(|&a, &b| key(a).cmp(&key(b)));
        let t = self.renamed(s, &order);
        if !self.machine.symmetric_servers() {
            return t;
        }
        // Interchangeable servers (Redlock's nodes) are sorted the same way, after the clients.
        let servers: Vec<NodeId> = (0..t.nodes.len()).filter(|&i| self.kind(i) == NodeKind::Server).collect();
        let mut order: Vec<NodeId> = (0..t.nodes.len()).collect();
        let mut sorted = servers.clone();
        sorted.sort_by(|&a, &b| (&t.nodes[a], (t.cut >> a) & 1).cmp(&(&t.nodes[b], (t.cut >> b) & 1)));
        for (slot, old) in servers.iter().zip(sorted) {
            order[*slot] = old;
        }
        self.renamed(&t, &order)
    }

    /// `s` with node `order[i]` renamed to `i`, everywhere a node id appears.
    fn renamed(&self, s: &State<M>, order: &[NodeId]) -> State<M> {
        if order.iter().copied().eq(0..order.len()) {
            return s.clone();
        }
        let mut map: Vec<NodeId> = (0..s.nodes.len()).collect();
        for (new, &old) in order.iter().enumerate() {
            map[old] = new;
        }
        let f = |id: NodeId| map[id];
        let mut t = s.clone();
        for (new, &old) in order.iter().enumerate() {
            t.nodes[new] = s.nodes[old].clone();
        }
        for slot in &mut t.nodes {
            slot.state.map_ids(&f);
            slot.durable.map_ids(&f);
            for (timer, _) in slot.timers.iter_mut() {
                timer.map_ids(&f);
            }
            slot.timers.sort();
        }
        for e in &mut t.net {
            e.src = f(e.src);
            e.dst = f(e.dst);
            e.msg.map_ids(&f);
        }
        t.net.sort();
        // A renaming moves each cut bit to a place of its own, so the bits add up.
        t.cut = (0..s.nodes.len()).filter(|&i| (s.cut >> i) & 1 == 1).map(|i| 1 << f(i)).sum();
        t.monitor.permute(&map[..self.clients]);
        t
    }

    pub fn actions_of(&self, s: &State<M>, out: &mut Vec<Act<M>>) {
        let n = s.nodes.len();
        let mut urgent = false;
        let mut last: Option<&Envelope<M::Msg>> = None;
        for e in &s.net {
            if last == Some(e) {
                continue;
            }
            last = Some(e);
            if self.deliverable(s, e) {
                urgent |= !e.late;
                out.push(Action::Deliver(e.clone()));
            }
        }
        for id in 0..n {
            if !self.runnable(s, id) {
                continue;
            }
            let hung = s.nodes[id].hung;
            for (t, deadline) in &s.nodes[id].timers {
                if self.due(s, id, *deadline) && !(hung && self.machine.is_app_timer(t)) {
                    urgent = true;
                    out.push(Action::Fire(id, t.clone()));
                }
            }
        }
        if self.timed {
            // After the fault window the world heals before time goes on; only the `available`
            // judgement may let time pass with the faults left in place.
            if !self.in_window(s) && self.unhealed(s) {
                out.push(Action::HealAll);
                // A pause always ends; only crashes and partitions may stay while time passes.
                let paused = s.nodes.iter().any(|n| n.paused || n.hung);
                if !urgent && !paused && s.tick < self.horizon {
                    out.push(Action::Linger);
                }
                urgent = true;
            }
            if !urgent && s.tick < self.horizon {
                out.push(Action::Tick(None));
                for id in (0..n).filter(|&id| self.drift > 0 && s.nodes[id].state.is_some()) {
                    let offset = i64::from(s.nodes[id].offset);
                    if offset > -self.drift {
                        out.push(Action::Tick(Some((id, Drift::Slow))));
                    }
                    if offset < self.drift {
                        out.push(Action::Tick(Some((id, Drift::Fast))));
                    }
                }
            }
        }
        self.fault_actions(s, out);
    }

    fn unhealed(&self, s: &State<M>) -> bool {
        s.cut != 0
            || s.nodes
                .iter()
                .enumerate()
                .any(|(id, n)| n.paused || n.hung || (n.state.is_none() && self.kind(id) != NodeKind::Client))
    }

    /// Liveness goals. `healed`: every client finished or crashed. `in_place`: the same, but a
    /// client cut off by a partition is excused (the faults stay, so it cannot be expected to finish).
    pub fn goals(&self, s: &State<M>) -> (bool, bool) {
        let healed = s.monitor.finished();
        let in_place = healed
            || (0..self.clients).all(|c| s.monitor.client_finished(c) || (s.cut >> c) & 1 == 1 || s.nodes[c].hung);
        (healed, in_place)
    }

    fn fault_actions(&self, s: &State<M>, out: &mut Vec<Act<M>>) {
        let (b, u) = (&self.budget, &s.used);
        let window = self.in_window(s);
        for id in 0..s.nodes.len() {
            let slot = &s.nodes[id];
            if slot.paused {
                out.push(Action::Resume(id));
            }
            if slot.hung {
                out.push(Action::Unhang(id));
            }
            if slot.state.is_none() && self.kind(id) != NodeKind::Client {
                out.push(Action::Restart { node: id, keep_disk: true });
                if u.lost_disks < b.restarts_lose_state && window {
                    out.push(Action::Restart { node: id, keep_disk: false });
                }
            }
            if !window || slot.state.is_none() {
                continue;
            }
            if u.pauses < b.pauses && !slot.paused && self.targets(b.pause_targets, id) {
                out.push(Action::Pause(id));
            }
            if u.hangs < b.hangs && !slot.hung && self.kind(id) == NodeKind::Client {
                out.push(Action::Hang(id));
            }
            if u.crashes < b.crashes && self.targets(b.crash_targets, id) {
                out.push(Action::Crash(id));
            }
            if u.jumps < b.clock_jumps && self.targets(b.jump_targets, id) && self.machine.nodes()[id].wall_clock {
                out.push(Action::ClockJump(id));
            }
            if u.partitions < b.partitions && s.cut == 0 && self.targets(Targets::Any, id) {
                out.push(Action::Partition(id));
            }
        }
        if s.cut != 0 {
            out.push(Action::Heal);
        }
        let (lose, delay) = (window && u.losses < b.message_loss, window && u.delays < b.delays);
        if lose || delay {
            let mut last: Option<&Envelope<M::Msg>> = None;
            for e in &s.net {
                if last != Some(e) {
                    if lose {
                        out.push(Action::Lose(e.clone()));
                    }
                    if delay && !e.late {
                        out.push(Action::Delay(e.clone()));
                    }
                }
                last = Some(e);
            }
        }
    }

    /// The successor of `s` under `a`, recording observations into `log` when given.
    pub fn step(&self, s: &State<M>, a: &Act<M>, mut log: Option<&mut Vec<Observation>>) -> Option<State<M>> {
        let mut s = s.clone();
        match a {
            Action::Deliver(e) => {
                let i = s.net.binary_search(e).ok()?;
                let e = Self::take(&mut s, i);
                let now = self.reading(&s, e.dst);
                let mut cx = Cx::new(e.dst, now);
                cx.app_hung = s.nodes[e.dst].hung;
                let Some(mut st) = s.nodes[e.dst].state.take() else {
                    return Some(s);
                };
                self.machine.on_message(&mut st, e.src, e.msg, &mut cx);
                s.nodes[e.dst].state = Some(st);
                self.apply(&mut s, cx, &mut log);
            }
            Action::Fire(id, t) => {
                let now = self.reading(&s, *id);
                s.nodes[*id].timers.retain(|(x, _)| x != t);
                let mut cx = Cx::new(*id, now);
                cx.app_hung = s.nodes[*id].hung;
                let mut st = s.nodes[*id].state.take()?;
                self.machine.on_timer(&mut st, t.clone(), &mut cx);
                s.nodes[*id].state = Some(st);
                self.apply(&mut s, cx, &mut log);
            }
            Action::Linger => s.tick += 1,
            Action::Tick(drift) => {
                s.tick += 1;
                match drift {
                    Some((id, Drift::Slow)) => s.nodes[*id].offset -= 1,
                    Some((id, Drift::Fast)) => s.nodes[*id].offset += 1,
                    None => {}
                }
            }
            Action::Pause(id) => {
                s.used.pauses += 1;
                s.nodes[*id].paused = true;
            }
            Action::Resume(id) => s.nodes[*id].paused = false,
            Action::Hang(id) => {
                s.used.hangs += 1;
                s.nodes[*id].hung = true;
            }
            Action::Unhang(id) => self.unhang(&mut s, *id, &mut log),
            Action::Crash(id) => {
                s.used.crashes += 1;
                let slot = &mut s.nodes[*id];
                slot.state = None;
                slot.paused = false;
                slot.hung = false;
                slot.timers.clear();
                self.close_connections(&mut s, *id, false);
                s.monitor.crashed(*id);
            }
            Action::Restart { node, keep_disk } => {
                if !keep_disk {
                    s.used.lost_disks += 1;
                    s.nodes[*node].durable = None;
                }
                self.close_connections(&mut s, *node, true);
                let now = self.reading(&s, *node);
                let mut cx = Cx::new(*node, now);
                let st = self.machine.restart(s.nodes[*node].durable.as_ref(), &mut cx);
                s.nodes[*node].state = Some(st);
                self.apply(&mut s, cx, &mut log);
            }
            Action::Partition(id) => {
                s.used.partitions += 1;
                s.cut = 1 << id;
                while let Some(i) = s.net.iter().rposition(|e| self.crosses_cut(&s, e.src, e.dst)) {
                    Self::take(&mut s, i);
                }
            }
            Action::Heal => s.cut = 0,
            Action::HealAll => {
                s.cut = 0;
                for id in 0..s.nodes.len() {
                    s.nodes[id].paused = false;
                    if s.nodes[id].hung {
                        self.unhang(&mut s, id, &mut log);
                    }
                    if s.nodes[id].state.is_none() && self.kind(id) != NodeKind::Client {
                        self.close_connections(&mut s, id, true);
                        let mut cx = Cx::new(id, self.reading(&s, id));
                        s.nodes[id].state = Some(self.machine.restart(s.nodes[id].durable.as_ref(), &mut cx));
                        self.apply(&mut s, cx, &mut log);
                    }
                }
            }
            Action::Lose(e) => {
                s.used.losses += 1;
                let i = s.net.binary_search(e).ok()?;
                Self::take(&mut s, i);
            }
            Action::Delay(e) => {
                s.used.delays += 1;
                let i = s.net.binary_search(e).ok()?;
                let mut e = Self::take(&mut s, i);
                e.pos = s.net.iter().filter(|x| x.src == e.src && x.dst == e.dst).count() as u8;
                e.late = true;
                Self::post(&mut s, e);
            }
            Action::ClockJump(id) => {
                s.used.jumps += 1;
                s.nodes[*id].offset += self.jump as i16;
            }
        }
        Some(s)
    }

    /// The application thread of `id` runs again and handles what its library reported meanwhile.
    fn unhang(&self, s: &mut State<M>, id: NodeId, log: &mut Option<&mut Vec<Observation>>) {
        s.nodes[id].hung = false;
        let Some(mut st) = s.nodes[id].state.take() else { return };
        let mut cx = Cx::new(id, self.reading(s, id));
        self.machine.resume_app(&mut st, &mut cx);
        s.nodes[id].state = Some(st);
        self.apply(s, cx, log);
    }

    /// Which node an action happens at, for traces.
    pub fn actor(&self, a: &Act<M>) -> Option<NodeId> {
        match a {
            Action::Deliver(e) | Action::Lose(e) | Action::Delay(e) => Some(e.dst),
            Action::Fire(id, _)
            | Action::Pause(id)
            | Action::Resume(id)
            | Action::Hang(id)
            | Action::Unhang(id)
            | Action::Crash(id)
            | Action::Partition(id)
            | Action::ClockJump(id)
            | Action::Restart { node: id, .. } => Some(*id),
            Action::Tick(drift) => drift.map(|(id, _)| id),
            Action::Heal | Action::HealAll | Action::Linger => None,
        }
    }
}

impl<M: Machine> stateright::Model for World<M> {
    type State = State<M>;
    type Action = Act<M>;

    fn init_states(&self) -> Vec<Self::State> {
        vec![self.init()]
    }

    fn actions(&self, state: &Self::State, actions: &mut Vec<Self::Action>) {
        self.actions_of(state, actions);
    }

    fn next_state(&self, last: &Self::State, action: Self::Action) -> Option<Self::State> {
        self.step(last, &action, None)
    }

    fn properties(&self) -> Vec<stateright::Property<Self>> {
        use stateright::Property;
        fn p<M: Machine>(w: &World<M>, s: &State<M>, p: PropertyName) -> bool {
            !w.properties.contains(&p) || s.monitor.holds(p)
        }
        vec![
            Property::always("mutual_exclusion", |w, s| p(w, s, PropertyName::MutualExclusion)),
            Property::always("no_stale_write", |w, s| p(w, s, PropertyName::NoStaleWrite)),
            Property::always("no_oversell", |w, s| p(w, s, PropertyName::NoOversell)),
            Property::always("reentrant", |w, s| p(w, s, PropertyName::Reentrant)),
            Property::always("token_monotonic", |w, s| p(w, s, PropertyName::TokenMonotonic)),
            Property::always("no_duplicate_effect", |w, s| p(w, s, PropertyName::NoDuplicateEffect)),
            Property::sometimes("every client finishes", |_, s: &State<M>| s.monitor.finished()),
        ]
    }

    fn within_boundary(&self, _: &Self::State) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Wire, redis};
    use crate::system::LockSystem;

    type Redis = LockSystem<crate::protocol::lease::LeaseLock>;

    fn world(one_way: bool) -> World<Redis> {
        let mut spec = crate::spec::load_model(std::path::Path::new("models/redis_partition.toml")).unwrap();
        spec.spec.faults.one_way = one_way;
        let env = spec.env();
        let system = LockSystem::new(redis::build(redis::Options::default(), &env).unwrap(), env);
        World::new(system, &spec, vec![PropertyName::MutualExclusion])
    }

    fn server(w: &World<Redis>) -> NodeId {
        (0..w.machine.nodes().len()).find(|&i| w.kind(i) == NodeKind::Server).unwrap()
    }

    /// The faults and fault ends `w` offers in `s`, by name, in the order offered.
    fn offered(w: &World<Redis>, s: &State<Redis>) -> Vec<String> {
        let mut actions = Vec::new();
        w.actions_of(s, &mut actions);
        let route = |e: &Envelope<_>| format!("{} → {}", w.node_name(e.src), w.node_name(e.dst));
        actions
            .iter()
            .filter_map(|a| {
                Some(match a {
                    Action::Pause(id) => format!("pause {}", w.node_name(*id)),
                    Action::Resume(id) => format!("resume {}", w.node_name(*id)),
                    Action::Hang(id) => format!("hang {}", w.node_name(*id)),
                    Action::Unhang(id) => format!("unhang {}", w.node_name(*id)),
                    Action::Crash(id) => format!("crash {}", w.node_name(*id)),
                    Action::Restart { node, keep_disk } => {
                        format!("restart {} keep_disk={keep_disk}", w.node_name(*node))
                    }
                    Action::Partition(id) => format!("partition {}", w.node_name(*id)),
                    Action::Heal => "heal".into(),
                    Action::ClockJump(id) => format!("jump {}", w.node_name(*id)),
                    Action::Lose(e) => format!("lose {}", route(e)),
                    Action::Delay(e) => format!("delay {}", route(e)),
                    _ => return None,
                })
            })
            .collect()
    }

    #[test]
    fn each_fault_is_offered_on_its_targets_while_its_budget_lasts_and_each_fault_in_place_can_end() {
        let mut spec = crate::spec::load_model(std::path::Path::new("models/redis_partition.toml")).unwrap();
        let f = &mut spec.spec.faults;
        (f.pauses, f.hangs, f.crashes, f.restarts_lose_state, f.clock_jumps, f.message_loss, f.delays) =
            (1, 1, 1, 1, 1, 1, 1);
        (f.pause_targets, f.crash_targets, f.jump_targets) = (Targets::Clients, Targets::Servers, Targets::Any);
        let env = spec.env();
        let w = World::new(LockSystem::new(redis::build(redis::Options::default(), &env).unwrap(), env), &spec, vec![]);
        let s = w.init();
        let every_kind = [
            "pause client-0",
            "hang client-0",
            "jump client-0",
            "partition client-0",
            "pause client-1",
            "hang client-1",
            "jump client-1",
            "partition client-1",
            "crash redis",
            "jump redis",
            "partition redis",
            "lose client-0 → redis",
            "delay client-0 → redis",
            "lose client-1 → redis",
            "delay client-1 → redis",
        ];
        assert_eq!(offered(&w, &s), every_kind, "the storage is no target of \"any\"");
        let after = |a: Act<Redis>| offered(&w, &w.step(&s, &a, None).unwrap());
        let (c0, redis) = (0, server(&w));
        let paused = after(Action::Pause(c0));
        assert!(
            paused.contains(&"resume client-0".into()) && !paused.iter().any(|a| a.starts_with("pause ")),
            "{paused:?}"
        );
        let hung = after(Action::Hang(c0));
        assert!(hung.contains(&"unhang client-0".into()) && !hung.iter().any(|a| a.starts_with("hang ")), "{hung:?}");
        let down = after(Action::Crash(redis));
        let restarts = ["restart redis keep_disk=true", "restart redis keep_disk=false"].map(String::from);
        assert!(restarts.iter().all(|r| down.contains(r)), "{down:?}");
        assert!(
            !down.iter().any(|a| a.starts_with("crash ") || a == "jump redis" || a == "partition redis"),
            "a server down is no target: {down:?}"
        );
        let cut = after(Action::Partition(c0));
        assert!(cut.contains(&"heal".into()) && !cut.iter().any(|a| a.starts_with("partition ")), "{cut:?}");
        let jumped = after(Action::ClockJump(c0));
        assert!(!jumped.iter().any(|a| a.starts_with("jump ")), "{jumped:?}");
    }

    #[test]
    fn a_clock_jump_never_targets_a_server_that_times_out_on_a_monotonic_clock() {
        let mut spec =
            crate::spec::load_model(std::path::Path::new("models/zookeeper_session_expiry_gc_pause.toml")).unwrap();
        spec.spec.faults.clock_jumps = 1;
        spec.spec.faults.jump_targets = crate::spec::Targets::Any;
        let env = spec.env();
        let zk = crate::protocol::zookeeper::build(Default::default(), &env).unwrap();
        let w = World::new(LockSystem::new(zk, env), &spec, vec![PropertyName::MutualExclusion]);
        let mut actions = Vec::new();
        w.actions_of(&w.init(), &mut actions);
        let jumped: Vec<NodeKind> = actions
            .iter()
            .filter_map(|a| if let Action::ClockJump(id) = a { Some(w.kind(*id)) } else { None })
            .collect();
        assert!(jumped.contains(&NodeKind::Client), "clients' clocks still jump: {jumped:?}");
        assert!(!jumped.contains(&NodeKind::Server), "ZooKeeper's sessions run on a monotonic clock");
    }

    #[test]
    fn a_replication_stream_dies_with_either_process_of_its_connection_and_a_clients_request_does_not() {
        use crate::protocol::lease::Msg;
        use crate::protocol::replication::ReplMsg;
        let spec = crate::spec::load_model(std::path::Path::new("models/redis_failover.toml")).unwrap();
        let env = spec.env();
        let o = redis::Options { replicas: 1, down_after: Some(2), ..Default::default() };
        let w = World::new(
            LockSystem::new(redis::build(o, &env).unwrap(), env),
            &spec,
            vec![PropertyName::MutualExclusion],
        );
        let master = server(&w);
        let replica = master + 1;
        let streamed = |s: &State<Redis>| {
            s.net.iter().any(|e| e.dst == replica && matches!(e.msg, Wire::Lock(Msg::Repl(ReplMsg::Replicate { .. }))))
        };
        let crashed = w.step(&w.init(), &Action::Crash(master), None).unwrap();
        assert!(crashed.net.iter().any(|e| e.dst == master), "the clients' first requests stay in flight");
        let mut s = w.init();
        while !streamed(&s) {
            let mut acts = Vec::new();
            w.actions_of(&s, &mut acts);
            let next = acts.iter().find(|a| matches!(a, Action::Deliver(_) | Action::Fire(..) | Action::Tick(None)));
            s = w.step(&s, next.expect("the master streams within a tick"), None).unwrap();
        }
        let down = w.step(&s, &Action::Crash(replica), None).unwrap();
        assert!(!streamed(&down), "the stream to the crashed replica is gone: {:?}", down.net);
        let back = w.step(&down, &Action::Restart { node: replica, keep_disk: true }, None).unwrap();
        assert!(!streamed(&back));
        let dead = w.step(&s, &Action::Crash(master), None).unwrap();
        assert!(streamed(&dead), "what the master sent before it died may still arrive");
        let again = w.step(&dead, &Action::Restart { node: master, keep_disk: true }, None).unwrap();
        assert!(!streamed(&again), "not once it restarted: its connections are gone");
    }

    #[test]
    fn the_explorer_judges_each_claimed_property_by_its_name_and_leaves_the_others_alone() {
        use stateright::{Expectation, Model};
        let mut w = world(false);
        let mut s = w.init();
        for client in [0, 1] {
            s.monitor.observe(&Observation::Granted { client, token: None });
            s.monitor.observe(&Observation::Acquired { client, depth: 1 });
        }
        assert!(!s.monitor.holds(PropertyName::MutualExclusion), "two clients hold the lock at once");
        let judged = |w: &World<Redis>, s: &State<Redis>| -> Vec<(&'static str, bool, bool)> {
            w.properties().iter().map(|p| (p.name, p.expectation == Expectation::Always, (p.condition)(w, s))).collect()
        };
        let names = [
            "mutual_exclusion",
            "no_stale_write",
            "no_oversell",
            "reentrant",
            "token_monotonic",
            "no_duplicate_effect",
        ];
        let mut expected: Vec<_> = names.iter().map(|&n| (n, true, n != "mutual_exclusion")).collect();
        expected.push(("every client finishes", false, false));
        assert_eq!(judged(&w, &s), expected);
        w.properties.clear();
        assert!(judged(&w, &s).iter().take(names.len()).all(|&(_, _, ok)| ok), "a property not claimed is not judged");
    }

    /// `lockcheck explore` serves stateright's Explorer on the world through its `Model`: the
    /// states it walks must be the ones lockcheck's own search judges.
    #[test]
    fn stateright_walks_the_same_states_as_the_search() {
        use stateright::{Checker, Model};
        let mut w = world(false);
        w.properties = vec![PropertyName::DeadlockFree];
        let limits = crate::check::search::Limits { progress: false, ..Default::default() };
        let found = crate::check::search::bfs(&w, &limits);
        assert!(found.complete && found.unique > 1000, "{} states", found.unique);
        let walked = w.checker().spawn_bfs().join();
        assert_eq!(walked.unique_state_count() as u64, found.unique);
    }

    #[test]
    fn liveness_goals_excuse_a_client_cut_off_or_stuck_only_while_the_faults_stay() {
        let w = world(false);
        let mut s = w.init();
        assert_eq!(w.goals(&s), (false, false));
        for client in 1..w.clients {
            s.monitor.observe(&Observation::Done { client });
        }
        assert_eq!(w.goals(&s), (false, false), "client-0 has not finished");
        let with = |f: &dyn Fn(&mut State<Redis>)| {
            let mut t = s.clone();
            f(&mut t);
            w.goals(&t)
        };
        assert_eq!(with(&|t| t.cut = 1), (false, true), "client-0 is cut off");
        assert_eq!(with(&|t| t.cut = 1 << 1), (false, false), "another node is cut off, not client-0");
        assert_eq!(with(&|t| t.nodes[0].hung = true), (false, true), "client-0's application is stuck");
        assert_eq!(with(&|t| t.nodes[1].hung = true), (false, false));
        assert_eq!(with(&|t| t.monitor.crashed(0)), (true, true), "a crashed client is finished");
        s.monitor.observe(&Observation::Done { client: 0 });
        assert_eq!(w.goals(&s), (true, true));
        let mut last = w.init();
        for client in 0..w.clients - 1 {
            last.monitor.observe(&Observation::Done { client });
        }
        last.cut = 1 << (w.clients - 1);
        assert_eq!(w.goals(&last), (false, true), "the last client is cut off, the others finished");
    }

    #[test]
    fn the_world_is_unhealed_while_a_server_is_down_a_node_paused_or_stuck_or_a_partition_stands() {
        let w = world(false);
        let s = w.init();
        let redis = server(&w);
        assert!(!w.unhealed(&s));
        let after = |a: Action<_, _>| w.unhealed(&w.step(&s, &a, None).unwrap());
        assert!(after(Action::Crash(redis)));
        assert!(!after(Action::Crash(0)), "a crashed client stays down: nothing to heal");
        assert!(after(Action::Pause(0)));
        assert!(after(Action::Hang(0)));
        assert!(after(Action::Partition(0)));
    }

    #[test]
    fn after_the_fault_window_no_fault_is_offered_and_the_world_heals_before_time_goes_on() {
        let w = world(false);
        assert!(w.timed && w.fault_window > 0);
        let offered = |s: &State<Redis>| {
            let mut acts = Vec::new();
            w.actions_of(s, &mut acts);
            acts
        };
        let mut s = w.step(&w.init(), &Action::Pause(0), None).unwrap();
        s.tick = w.fault_window - 1;
        let inside = offered(&s);
        assert!(inside.iter().any(|a| a.class() == Class::Fault) && !inside.contains(&Action::HealAll));
        s.tick = w.fault_window;
        let after = offered(&s);
        assert!(after.contains(&Action::HealAll) && after.contains(&Action::Resume(0)), "{after:?}");
        assert!(!after.iter().any(|a| a.class() == Class::Fault), "{after:?}");
        assert!(
            !after.iter().any(|a| matches!(a, Action::Tick(_) | Action::Linger)),
            "a pause always ends: time does not pass with it in place"
        );
        let healthy = w.step(&s, &Action::Resume(0), None).unwrap();
        assert!(!offered(&healthy).contains(&Action::HealAll), "nothing left to heal");
    }

    #[test]
    fn healing_all_resumes_wakes_restarts_servers_and_mends_the_partition_but_no_crashed_client() {
        let w = world(false);
        let redis = server(&w);
        let mut s = w.init();
        for a in [Action::Crash(redis), Action::Pause(1), Action::Hang(1), Action::Partition(1), Action::Crash(0)] {
            s = w.step(&s, &a, None).unwrap();
        }
        let healed = w.step(&s, &Action::HealAll, None).unwrap();
        assert_eq!(healed.cut, 0);
        assert!(healed.nodes.iter().all(|n| !n.paused && !n.hung));
        assert!(healed.nodes[redis].state.is_some(), "the server restarts");
        assert!(healed.nodes[0].state.is_none(), "a crashed client stays down");
        assert!(!w.unhealed(&healed));
    }

    #[test]
    fn on_a_fifo_connection_a_message_queues_behind_those_sent_before_it_and_moves_up_as_they_go() {
        use crate::protocol::zookeeper;
        let spec = crate::spec::load_model(std::path::Path::new("models/zookeeper_not_reentrant.toml")).unwrap();
        let env = spec.env();
        let w = World::new(LockSystem::new(zookeeper::build(Default::default(), &env).unwrap(), env), &spec, vec![]);
        assert!(w.machine.fifo());
        let zk = (0..w.machine.nodes().len()).find(|&i| w.kind(i) == NodeKind::Server).unwrap();
        let ping = |session| Wire::Lock(zookeeper::Msg::Ping { session });
        let mut s = w.init();
        s.net.clear();
        let (mut first, mut second) = (Cx::new(0, 0), Cx::new(1, 0));
        for session in 0..3 {
            first.send(zk, ping(session));
        }
        first.send(1, ping(9));
        second.send(zk, ping(7));
        w.apply(&mut s, first, &mut None);
        w.apply(&mut s, second, &mut None);
        let queues = |s: &State<LockSystem<zookeeper::ZooKeeper>>| {
            s.net.iter().map(|e| (e.src, e.dst, e.pos, e.msg.clone())).collect::<Vec<_>>()
        };
        let sent = vec![
            (0, 1, 0, ping(9)),
            (0, zk, 0, ping(0)),
            (0, zk, 1, ping(1)),
            (0, zk, 2, ping(2)),
            (1, zk, 0, ping(7)),
        ];
        assert_eq!(queues(&s), sent, "each connection numbers its own queue");
        let mut acts = Vec::new();
        w.actions_of(&s, &mut acts);
        let heads: Vec<_> =
            acts.iter().filter_map(|a| if let Action::Deliver(e) = a { Some(e.msg.clone()) } else { None }).collect();
        assert_eq!(heads, vec![ping(9), ping(0), ping(7)], "only the head of a connection arrives next");
        let head = s.net[1].clone();
        let lost = w.step(&s, &Action::Lose(head), None).unwrap();
        let moved_up = vec![(0, 1, 0, ping(9)), (0, zk, 0, ping(1)), (0, zk, 1, ping(2)), (1, zk, 0, ping(7))];
        assert_eq!(queues(&lost), moved_up);
    }

    #[test]
    fn a_partition_drops_what_crosses_it_both_ways() {
        let w = world(false);
        let redis = server(&w);
        let s = w.init();
        assert!(s.net.iter().any(|e| e.dst == redis), "clients ask at start");
        let cut = w.step(&s, &Action::Partition(redis), None).unwrap();
        assert!(cut.net.iter().all(|e| e.src != redis && e.dst != redis), "{:?}", cut.net);
        assert_eq!(cut.cut, 1 << redis);
        let mut acts = Vec::new();
        w.actions_of(&cut, &mut acts);
        assert!(acts.contains(&Action::Heal));
    }

    #[test]
    fn a_one_way_partition_still_delivers_to_the_cut_node_and_drops_what_it_sends() {
        let w = world(true);
        let redis = server(&w);
        let s = w.step(&w.init(), &Action::Partition(redis), None).unwrap();
        let asks: Vec<_> = s.net.iter().filter(|e| e.dst == redis).cloned().collect();
        assert!(!asks.is_empty(), "what the cut node hears stays in flight");
        let after = w.step(&s, &Action::Deliver(asks[0].clone()), None).unwrap();
        assert!(after.net.iter().all(|e| e.src != redis), "its reply is dropped: {:?}", after.net);
        assert!(after.monitor != s.monitor || after.nodes[redis] != s.nodes[redis], "the cut node acted on it");
    }

    /// Every order of `ids`, each written into the identity order of `n` nodes.
    fn orders(n: usize, ids: &[NodeId]) -> Vec<Vec<NodeId>> {
        reordered(vec![(0..n).collect()], ids)
    }

    /// Each of `out` under every order of `ids` (positions it leaves alone).
    fn reordered(mut out: Vec<Vec<NodeId>>, ids: &[NodeId]) -> Vec<Vec<NodeId>> {
        for (k, &slot) in ids.iter().enumerate() {
            out = out
                .into_iter()
                .flat_map(|o| {
                    ids[..=k].iter().map(move |&other| {
                        let mut o = o.clone();
                        o.swap(slot, other);
                        o
                    })
                })
                .collect();
        }
        out
    }

    /// `s` with every subset of `ids` cut off, each under every renaming of `ids`: one
    /// representative per subset size, the same whichever of them are cut and however they are named.
    fn representatives<M: Machine>(w: &World<M>, s: &State<M>, ids: &[NodeId]) -> usize {
        let mut reps = Vec::new();
        for mask in 0..1u64 << ids.len() {
            let mut s = s.clone();
            s.cut = ids.iter().enumerate().filter(|(bit, _)| mask >> bit & 1 == 1).map(|(_, &id)| 1 << id).sum();
            let rep = w.canonical(&s);
            for order in orders(s.nodes.len(), ids) {
                assert_eq!(w.canonical(&w.renamed(&s, &order)), rep, "cut {:#b} renamed by {order:?}", s.cut);
            }
            if !reps.contains(&rep) {
                reps.push(rep);
            }
        }
        reps.len()
    }

    /// `representatives` of the spec's initial state, cutting off its nodes of one kind; with
    /// how many there are and whether the family calls its servers interchangeable.
    struct EveryCut<'a> {
        spec: &'a crate::spec::Loaded,
        of: NodeKind,
    }

    impl crate::registry::Visit for EveryCut<'_> {
        type Out = (usize, usize, bool);
        fn visit<P: crate::protocol::Protocol>(self, system: LockSystem<P>) -> Self::Out {
            let w = World::new(system, self.spec, vec![]);
            let ids: Vec<NodeId> = (0..w.machine.nodes().len()).filter(|&i| w.kind(i) == self.of).collect();
            (ids.len(), representatives(&w, &w.init(), &ids), w.machine.symmetric_servers())
        }
    }

    #[test]
    fn renamings_of_a_state_share_one_representative_whichever_clients_or_redlock_nodes_are_cut_off() {
        assert_eq!(orders(5, &[0, 1, 2]).len(), 6);
        let load = |path: &str| crate::spec::load_model(std::path::Path::new(path)).unwrap();
        let mut spec = load("models/redis_partition.toml");
        spec.spec.setup.clients = 3;
        let cut = |spec, of| crate::registry::build(spec, EveryCut { spec, of }).unwrap();
        assert_eq!(cut(&spec, NodeKind::Client), (3, 4, false), "none, one, two or three clients cut off");
        let redlock = load("models/redlock_crash_restart.toml");
        assert_eq!(cut(&redlock, NodeKind::Server), (3, 4, true), "none, one, two or three Redlock nodes cut off");
    }

    /// The least of `s`'s renamings: of its clients, and of its servers where the family calls them
    /// interchangeable. Unlike `canonical`, which breaks ties between equal clients by their ids,
    /// one value for every state of a class.
    fn least_renaming<M: Machine>(w: &World<M>, s: &State<M>) -> State<M> {
        let of = |kind| (0..s.nodes.len()).filter(|&i| w.kind(i) == kind).collect::<Vec<_>>();
        let servers = if w.machine.symmetric_servers() { of(NodeKind::Server) } else { vec![] };
        reordered(orders(s.nodes.len(), &of(NodeKind::Client)), &servers)
            .iter()
            .map(|order| w.renamed(s, order))
            .min()
            .expect("the identity is one of the orders")
    }

    /// Every successor of `s`, each as the least of its renamings.
    fn future<M: Machine>(w: &World<M>, s: &State<M>) -> std::collections::BTreeSet<State<M>> {
        let mut actions = Vec::new();
        w.actions_of(s, &mut actions);
        actions.iter().filter_map(|a| w.step(s, a, None)).map(|t| least_renaming(w, &t)).collect()
    }

    /// Breadth-first over the spec's first `states` representatives: each successor that is not
    /// its own representative must have the representative's future. Counts those successors.
    struct SameFuture<'a> {
        spec: &'a crate::spec::Loaded,
        states: usize,
    }

    impl crate::registry::Visit for SameFuture<'_> {
        type Out = usize;
        fn visit<P: crate::protocol::Protocol>(self, system: LockSystem<P>) -> usize {
            let w = World::new(system, self.spec, vec![]);
            let mut queue = std::collections::VecDeque::from([w.canonical(&w.init())]);
            let mut seen = std::collections::BTreeSet::new();
            let mut renamed = 0;
            while let Some(s) = queue.pop_front().filter(|_| seen.len() < self.states) {
                if !seen.insert(s.clone()) {
                    continue;
                }
                let mut actions = Vec::new();
                w.actions_of(&s, &mut actions);
                for t in actions.iter().filter_map(|a| w.step(&s, a, None)) {
                    let rep = w.canonical(&t);
                    if rep != t {
                        renamed += 1;
                        assert!(
                            future(&w, &t) == future(&w, &rep),
                            "{t:?}\nhas another future than its representative\n{rep:?}"
                        );
                    }
                    queue.push_back(rep);
                }
            }
            renamed
        }
    }

    /// The search explores a representative in place of the state it stands for, which is sound
    /// only if both have one future up to renaming. Replication tells servers apart by index
    /// (Sentinel's turns, a replica's link, a client's idea of the master), so its servers must
    /// not be sorted; Redlock's are.
    #[test]
    fn a_state_and_its_representative_have_the_same_future() {
        for (model, states) in [
            ("redis_failover_wait_two_replicas", 3000),
            ("redlock_clock_jump", 3000),
            ("redisson_failover", 2000),
            ("zookeeper_lost_create_orphan", 2000),
        ] {
            let spec = crate::spec::load_model(std::path::Path::new(&format!("models/{model}.toml"))).unwrap();
            let renamed = crate::registry::build(&spec, SameFuture { spec: &spec, states }).unwrap();
            assert!(renamed > 100, "{model}: only {renamed} successors were renamed");
        }
    }
}

//! A lock protocol, its workload clients and the protected resource, as one [`Machine`].
//!
//! Node layout: `client-0..client-{n-1}`, then the protocol's servers, then `storage` when the
//! resource is a separate node. The workload client is written here once for every protocol: it
//! drives the protocol's client side (`acquire`, `release`, replies) and talks to the resource.

use serde::{Deserialize, Serialize};

use crate::protocol::{
    Effect, LockEvent, Machine, NodeId, NodeInfo, NodeKind, Observation, PCx, Protocol, ResourceHome, Tmr, Wire,
};
use crate::resource::{ResReply, ResReq, Resource};
use crate::spec::{Env, OnLost, Workload};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    Acquiring,
    /// Holding once, asking again (reentrant workload).
    Nesting,
    /// Holding the lock, busy with its own work before touching the resource.
    Working,
    Reading,
    Writing,
    Decrementing,
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Client<L, H> {
    pub phase: Phase,
    pub token: Option<u64>,
    /// The hold the application is working under, as its lock library named it.
    pub hold: Option<H>,
    /// The stock this client will write (read-modify-write: computed from what it read).
    pub new_stock: i64,
    /// The row version it read, when the store has a version column (optimistic concurrency).
    pub version: Option<u64>,
    /// The protocol's client-side state (the lock library).
    pub lock: L,
    pub depth: u8,
    /// What the library reported while the application thread hung, in order.
    pub deferred: Vec<LockEvent<H>>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NodeState<S, L, H> {
    Client(Client<L, H>),
    Server(S),
    Storage(Resource),
}

pub struct LockSystem<P: Protocol> {
    pub proto: P,
    env: Env,
    nodes: Vec<NodeInfo>,
    resource_node: NodeId,
}

type Cx<P> = PCx<P>;
type Cl<P> = Client<<P as Protocol>::Client, <P as Protocol>::Hold>;

impl<P: Protocol> LockSystem<P> {
    pub fn new(proto: P, env: Env) -> Self {
        let mut nodes: Vec<NodeInfo> = (0..env.clients)
            .map(|i| NodeInfo { name: format!("client-{i}"), kind: NodeKind::Client, wall_clock: true })
            .collect();
        let wall_clock = proto.server_timers_on_wall_clock();
        nodes.extend(proto.servers().into_iter().map(|name| NodeInfo { name, kind: NodeKind::Server, wall_clock }));
        let resource_node = match proto.resource() {
            ResourceHome::Server => env.clients,
            ResourceHome::Storage(_) => {
                nodes.push(NodeInfo { name: "storage".into(), kind: NodeKind::Storage, wall_clock: true });
                nodes.len() - 1
            }
        };
        LockSystem { proto, env, nodes, resource_node }
    }

    fn ask(&self, c: &mut Cl<P>, cx: &mut Cx<P>) {
        let ev = self.proto.acquire(&mut c.lock, cx);
        self.on_lock_event(c, ev, cx);
    }

    /// A request to the resource; with durations, one that gets no answer within a TTL has failed
    /// (a statement timeout), whatever it did.
    fn to_resource(&self, req: ResReq, cx: &mut Cx<P>) {
        cx.send(self.resource_node, Wire::Res(req));
        if self.env.timed {
            cx.set_timer(Tmr::Statement, self.env.ttl);
        }
    }

    /// The client holds the lock. Read-modify-write computes between its read and its write; other
    /// critical sections work first and then write.
    fn work(&self, c: &mut Cl<P>, cx: &mut Cx<P>) {
        if self.env.workload == Workload::Oversell {
            self.touch_resource(c, cx);
        } else {
            self.work_then(c, cx);
        }
    }

    /// Spends `work_ticks` (if any) before the next step, which `on_timer(Work)` takes.
    fn work_then(&self, c: &mut Cl<P>, cx: &mut Cx<P>) {
        if self.env.timed && self.env.work_ticks > 0 {
            c.phase = Phase::Working;
            cx.set_timer(Tmr::Work, self.env.work_ticks);
        } else {
            self.touch_resource(c, cx);
        }
    }

    fn touch_resource(&self, c: &mut Cl<P>, cx: &mut Cx<P>) {
        let token = c.token;
        let session = c.hold.as_ref().map(|h| self.proto.session(h)).unwrap_or(0);
        match self.env.workload {
            Workload::Oversell if c.phase == Phase::Working => {
                c.phase = Phase::Writing;
                let req = match c.version {
                    Some(version) => ResReq::CasWrite { version, value: c.new_stock },
                    None => ResReq::Write { token, session, value: c.new_stock, sale: true },
                };
                self.to_resource(req, cx);
            }
            Workload::Oversell => {
                c.phase = Phase::Reading;
                self.to_resource(ResReq::Read { token, session }, cx);
            }
            Workload::CriticalWrite | Workload::Reentrant => {
                c.phase = Phase::Writing;
                self.to_resource(
                    ResReq::Write {
                        token,
                        session,
                        // Every client writes the same: clients stay interchangeable.
                        value: 1,
                        sale: false,
                    },
                    cx,
                );
            }
            Workload::AtomicDecrement => self.finish(c, cx),
        }
    }

    /// `unlock()` in a `finally` block: the hold is given back whatever happened.
    fn let_go(&self, c: &mut Cl<P>, cx: &mut Cx<P>) {
        if let Some(h) = c.hold.take() {
            self.proto.release(&mut c.lock, &h, cx);
        }
        c.depth = 0;
    }

    fn finish(&self, c: &mut Cl<P>, cx: &mut Cx<P>) {
        if c.depth > 0 {
            self.let_go(c, cx);
            cx.observe(Observation::Released { client: cx.me, depth: 0 });
        }
        cx.cancel_timer(Tmr::Validity);
        c.phase = Phase::Done;
        c.token = None;
        c.new_stock = 0;
        c.version = None;
        cx.observe(Observation::Done { client: cx.me });
    }

    fn holding(phase: Phase) -> bool {
        matches!(phase, Phase::Nesting | Phase::Working | Phase::Reading | Phase::Writing)
    }

    fn on_lock_event(&self, c: &mut Cl<P>, ev: LockEvent<P::Hold>, cx: &mut Cx<P>) {
        if cx.app_hung {
            if ev != LockEvent::Ignore {
                c.deferred.push(ev);
            }
            return;
        }
        let me = cx.me;
        match (c.phase, ev) {
            (Phase::Acquiring, LockEvent::Granted { hold, token, valid_for }) => {
                // `token_monotonic` is judged for families that say they issue tokens: a grant
                // without one would leave it judging nothing.
                assert!(
                    token.is_some() || !self.proto.issues_tokens(),
                    "a family that issues tokens granted without one"
                );
                cx.cancel_timer(Tmr::Retry);
                if let Some(left) = valid_for {
                    assert!(left > 0, "a library must not hand out a hold that is already invalid");
                    cx.set_timer(Tmr::Validity, left);
                }
                c.token = token;
                c.hold = Some(hold);
                c.depth = 1;
                cx.observe(Observation::Acquired { client: me, depth: 1 });
                if self.env.workload == Workload::Reentrant {
                    c.phase = Phase::Nesting;
                    self.ask(c, cx);
                } else {
                    self.work(c, cx);
                }
            }
            (Phase::Acquiring, LockEvent::Busy { retry_after: 0 } | LockEvent::Lost { .. }) => self.ask(c, cx),
            (Phase::Acquiring, LockEvent::Busy { retry_after }) => cx.set_timer(Tmr::Retry, retry_after),
            (Phase::Nesting, LockEvent::Granted { hold, .. }) => {
                cx.observe(Observation::Acquired { client: me, depth: 2 });
                self.proto.release(&mut c.lock, &hold, cx);
                cx.observe(Observation::Released { client: me, depth: 1 });
                c.depth = 1;
                self.work(c, cx);
            }
            (Phase::Nesting, LockEvent::Busy { .. } | LockEvent::Queued) => {
                // A queued nested acquire waits behind the owner's own hold: it never returns.
                cx.observe(Observation::NestedDenied { client: me });
                self.finish(c, cx);
            }
            (phase, LockEvent::Lost { hold }) if Self::holding(phase) && c.hold.as_ref() == Some(&hold) => {
                let stops = self.env.on_lost == OnLost::Stop;
                cx.observe(Observation::Lost { client: me, stops });
                if stops {
                    self.let_go(c, cx);
                    self.finish(c, cx);
                }
            }
            _ => {}
        }
    }

    /// Read-modify-write: an item is left, so sell it (after its external effect, if any).
    fn sell(&self, c: &mut Cl<P>, stock: i64, cx: &mut Cx<P>) {
        if self.env.side_effect {
            cx.observe(Observation::SideEffect { client: cx.me, item: stock });
        }
        c.new_stock = stock - 1;
        c.phase = Phase::Working;
        self.work_then(c, cx);
    }

    fn on_reply(&self, c: &mut Cl<P>, reply: ResReply, cx: &mut Cx<P>) {
        cx.cancel_timer(Tmr::Statement);
        match (c.phase, reply) {
            (Phase::Reading, ResReply::Stock(stock)) if stock >= 1 => self.sell(c, stock, cx),
            (Phase::Reading, ResReply::Row { stock, version }) if stock >= 1 => {
                c.version = Some(version);
                self.sell(c, stock, cx);
            }
            // Somebody wrote since the read: start again from the read.
            (Phase::Writing, ResReply::Conflict) => self.touch_resource(c, cx),
            (Phase::Reading, _) | (Phase::Writing, _) | (Phase::Decrementing, _) => self.finish(c, cx),
            _ => {}
        }
    }

    fn client_start(&self, cx: &mut Cx<P>) -> Cl<P> {
        let mut c = Client {
            phase: Phase::Acquiring,
            token: None,
            hold: None,
            new_stock: 0,
            version: None,
            lock: P::Client::default(),
            depth: 0,
            deferred: Vec::new(),
        };
        if self.env.workload.uses_lock() {
            self.proto.client_start(&mut c.lock, cx);
            cx.observe(Observation::Waiting { client: cx.me });
            self.ask(&mut c, cx);
        } else {
            c.phase = Phase::Decrementing;
            self.to_resource(ResReq::Decrement, cx);
        }
        c
    }

    fn server_index(&self, id: NodeId) -> usize {
        id - self.env.clients
    }
}

/// What a node keeps on disk: a lock server's own durable state, or the storage's data (written
/// before every reply, as a database commits).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Disk<D> {
    Lock(D),
    Store(Resource),
}

impl<D: crate::protocol::Ids> crate::protocol::Ids for Disk<D> {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        if let Disk::Lock(d) = self {
            d.map_ids(f);
        }
    }
}

type SysCx<P> =
    crate::protocol::Cx<Wire<<P as Protocol>::Msg>, Tmr<<P as Protocol>::Timer>, Disk<<P as Protocol>::Durable>>;

impl<P: Protocol> LockSystem<P> {
    /// Runs protocol and workload code, which speak the protocol's own disk, inside a handler of
    /// the whole system, whose disk also holds the storage's.
    fn lifted<R>(cx: &mut SysCx<P>, f: impl FnOnce(&mut Cx<P>) -> R) -> R {
        let mut inner = Cx::<P>::new(cx.me, cx.now);
        inner.app_hung = cx.app_hung;
        let out = f(&mut inner);
        cx.effects.extend(inner.effects.into_iter().map(|e| match e {
            Effect::Send { to, msg } => Effect::Send { to, msg },
            Effect::SetTimer { timer, after } => Effect::SetTimer { timer, after },
            Effect::CancelTimer { timer } => Effect::CancelTimer { timer },
            Effect::Persist(d) => Effect::Persist(Disk::Lock(d)),
            Effect::Observe(o) => Effect::Observe(o),
        }));
        out
    }

    fn store(&self, r: &mut Resource, from: NodeId, req: ResReq, cx: &mut SysCx<P>) {
        r.handle(from, req, cx);
        cx.persist(Disk::Store(r.clone()));
    }

    fn on_message_inner(
        &self,
        state: &mut NodeState<P::Server, P::Client, P::Hold>,
        from: NodeId,
        msg: Wire<P::Msg>,
        cx: &mut Cx<P>,
    ) {
        match (state, msg) {
            (NodeState::Client(c), Wire::Lock(m)) => {
                let ev = self.proto.client_on_msg(&mut c.lock, from, m, cx);
                self.on_lock_event(c, ev, cx);
            }
            (NodeState::Client(c), Wire::ResReply(r)) => self.on_reply(c, r, cx),
            (NodeState::Server(s), Wire::Lock(m)) => self.proto.server_on_msg(s, from, m, cx),
            (NodeState::Server(s), Wire::Res(req)) => self.proto.server_on_resource(s, from, req, cx),
            _ => {}
        }
    }

    fn on_timer_inner(
        &self,
        state: &mut NodeState<P::Server, P::Client, P::Hold>,
        timer: Tmr<P::Timer>,
        cx: &mut Cx<P>,
    ) {
        match (state, timer) {
            (NodeState::Client(c), Tmr::Retry) if c.phase == Phase::Acquiring => self.ask(c, cx),
            (NodeState::Client(c), Tmr::Work) if c.phase == Phase::Working => self.touch_resource(c, cx),
            (NodeState::Client(c), Tmr::Statement)
                if matches!(c.phase, Phase::Reading | Phase::Writing | Phase::Decrementing) =>
            {
                self.finish(c, cx)
            }
            (NodeState::Client(c), Tmr::Validity) if c.depth > 0 => {
                // The work is abandoned, but `unlock()` still runs, as in a `finally` block.
                cx.observe(Observation::LeaseLapsed { client: cx.me });
                self.let_go(c, cx);
                self.finish(c, cx);
            }
            (NodeState::Client(c), Tmr::Lock(t)) => {
                let ev = self.proto.client_on_timer(&mut c.lock, t, cx);
                self.on_lock_event(c, ev, cx);
            }
            (NodeState::Server(s), Tmr::Lock(t)) => self.proto.server_on_timer(s, t, cx),
            _ => {}
        }
    }
}

impl<P: Protocol> Machine for LockSystem<P> {
    type State = NodeState<P::Server, P::Client, P::Hold>;
    type Msg = Wire<P::Msg>;
    type Timer = Tmr<P::Timer>;
    type Durable = Disk<P::Durable>;

    fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    fn start(&self, cx: &mut SysCx<P>) -> Self::State {
        match self.nodes[cx.me].kind {
            NodeKind::Client => NodeState::Client(Self::lifted(cx, |cx| self.client_start(cx))),
            NodeKind::Server => {
                NodeState::Server(Self::lifted(cx, |cx| self.proto.server_start(self.server_index(cx.me), cx)))
            }
            NodeKind::Storage => NodeState::Storage(Resource::new(self.env.stock, self.fencing())),
        }
    }

    fn on_message(&self, state: &mut Self::State, from: NodeId, msg: Self::Msg, cx: &mut SysCx<P>) {
        match (state, msg) {
            (NodeState::Storage(r), Wire::Res(req)) => self.store(r, from, req, cx),
            (state, msg) => Self::lifted(cx, |cx| self.on_message_inner(state, from, msg, cx)),
        }
    }

    fn on_timer(&self, state: &mut Self::State, timer: Self::Timer, cx: &mut SysCx<P>) {
        Self::lifted(cx, |cx| self.on_timer_inner(state, timer, cx));
    }

    fn symmetric_servers(&self) -> bool {
        self.proto.symmetric_servers()
    }

    fn fifo(&self) -> bool {
        self.proto.fifo()
    }

    fn dies_with_connection(&self, msg: &Self::Msg) -> bool {
        matches!(msg, Wire::Lock(m) if self.proto.dies_with_connection(m))
    }

    fn is_app_msg(&self, msg: &Self::Msg) -> bool {
        matches!(msg, Wire::ResReply(_))
    }

    fn is_app_timer(&self, timer: &Self::Timer) -> bool {
        matches!(timer, Tmr::Retry | Tmr::Work | Tmr::Validity | Tmr::Statement)
    }

    fn resume_app(&self, state: &mut Self::State, cx: &mut SysCx<P>) {
        if let NodeState::Client(c) = state {
            Self::lifted(cx, |cx| {
                for ev in std::mem::take(&mut c.deferred) {
                    self.on_lock_event(c, ev, cx);
                }
            });
        }
    }

    fn show_msg(&self, from: NodeId, msg: &Self::Msg) -> String {
        crate::protocol::show_wire(&self.proto, from, msg)
    }

    fn show_timer(&self, timer: &Self::Timer) -> String {
        match timer {
            Tmr::Lock(t) => self.proto.show_timer(t),
            Tmr::Retry => "retry".into(),
            Tmr::Validity => "lock validity".into(),
            Tmr::Work => "work done".into(),
            Tmr::Statement => "statement timeout".into(),
        }
    }

    fn restart(&self, durable: Option<&Self::Durable>, cx: &mut SysCx<P>) -> Self::State {
        match (self.nodes[cx.me].kind, durable) {
            (NodeKind::Server, durable) => {
                let own = match durable {
                    Some(Disk::Lock(d)) => Some(d),
                    _ => None,
                };
                NodeState::Server(Self::lifted(cx, |cx| self.proto.server_restart(self.server_index(cx.me), own, cx)))
            }
            (NodeKind::Storage, Some(Disk::Store(r))) => NodeState::Storage(r.clone()),
            // Clients never come back (a dead process's work is not resumed); a storage that lost
            // its disk starts from the initial stock.
            _ => self.start(cx),
        }
    }
}

impl<P: Protocol> LockSystem<P> {
    fn fencing(&self) -> crate::resource::Fencing {
        match self.proto.resource() {
            ResourceHome::Storage(f) => f,
            ResourceHome::Server => crate::resource::Fencing::None,
        }
    }
}

impl<S: crate::protocol::Ids, L: crate::protocol::Ids, H: crate::protocol::Ids> crate::protocol::Ids
    for NodeState<S, L, H>
{
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        match self {
            NodeState::Server(s) => s.map_ids(f),
            NodeState::Client(c) => {
                c.lock.map_ids(f);
                c.hold.map_ids(f);
                c.deferred.map_ids(f);
            }
            NodeState::Storage(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::lease::{LeaseLock, Msg};
    use crate::protocol::{Effect, Machine};

    type Scx = crate::protocol::MCx<LockSystem<LeaseLock>>;

    fn system(margin: i64) -> LockSystem<LeaseLock> {
        let env = Env::test(2, Workload::CriticalWrite, 5, 1);
        let o = crate::protocol::redis::Options { validity_margin: Some(margin), ..Default::default() };
        LockSystem::new(crate::protocol::redis::build(o, &env).unwrap(), env)
    }

    #[test]
    fn a_grant_arriving_after_its_validity_is_given_back() {
        let sys = system(1);
        let mut st = sys.start(&mut Scx::new(0, 0));
        let mut cx = Scx::new(0, 4);
        sys.on_message(&mut st, 2, Wire::Lock(Msg::Grant { token: None, asked: 0 }), &mut cx);
        assert!(cx.effects.contains(&Effect::Send { to: 2, msg: Wire::Lock(Msg::Release { asked: 0 }) }));
        assert!(!cx.effects.iter().any(|e| matches!(e, Effect::Observe(Observation::Acquired { .. }))));
    }

    #[test]
    fn a_timely_grant_is_trusted_until_ttl_minus_margin_after_asking() {
        let sys = system(1);
        let mut st = sys.start(&mut Scx::new(0, 0));
        let mut cx = Scx::new(0, 1);
        sys.on_message(&mut st, 2, Wire::Lock(Msg::Grant { token: None, asked: 0 }), &mut cx);
        assert!(cx.effects.contains(&Effect::SetTimer { timer: Tmr::Validity, after: 3 }));
        assert!(cx.effects.contains(&Effect::Observe(Observation::Acquired { client: 0, depth: 1 })));
    }

    #[test]
    fn a_grant_that_arrives_while_the_application_hangs_waits_for_it() {
        let sys = system(1);
        let mut st = sys.start(&mut Scx::new(0, 0));
        let mut cx = Scx::new(0, 1);
        cx.app_hung = true;
        sys.on_message(&mut st, 2, Wire::Lock(Msg::Grant { token: None, asked: 0 }), &mut cx);
        let acquired = |cx: &Scx| cx.effects.iter().any(|e| matches!(e, Effect::Observe(Observation::Acquired { .. })));
        assert!(!acquired(&cx), "a stuck application learns nothing");
        assert!(sys.is_app_timer(&Tmr::Work) && !sys.is_app_msg(&Wire::Lock(Msg::Busy)));
        let mut cx = Scx::new(0, 2);
        sys.resume_app(&mut st, &mut cx);
        assert!(acquired(&cx), "once it runs again it takes the grant its library received");
    }
}

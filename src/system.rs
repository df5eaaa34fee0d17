//! A lock protocol, its workload clients and the protected resource, as one [`Machine`].
//!
//! Node layout: `client-0..client-{n-1}`, then the protocol's servers, then `storage` when the
//! resource is a separate node. The workload client is written here once for every protocol: it
//! drives the protocol's client side (`acquire`, `release`, replies) and talks to the resource.

use serde::{Deserialize, Serialize};

use crate::protocol::{
    ClientLease, LockEvent, Machine, NodeId, NodeInfo, NodeKind, Observation, PCx, Protocol, ResourceHome, Tmr, Wire,
};
use crate::resource::{ResReply, ResReq, Resource};
use crate::spec::{Env, Workload};

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
pub struct Client<L> {
    pub phase: Phase,
    pub token: Option<u64>,
    /// When the request that won the current hold was sent (identifies the hold on release).
    pub asked: i64,
    /// The stock this client will write (read-modify-write: computed from what it read).
    pub new_stock: i64,
    /// The protocol's client-side state.
    pub lock: L,
    pub depth: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NodeState<S, L> {
    Client(Client<L>),
    Server(S),
    Storage(Resource),
}

pub struct LockSystem<P: Protocol> {
    pub proto: P,
    env: Env,
    nodes: Vec<NodeInfo>,
    resource_node: NodeId,
    lease: Option<ClientLease>,
}

type Cx<P> = PCx<P>;

impl<P: Protocol> LockSystem<P> {
    pub fn new(proto: P, env: Env) -> Self {
        let mut nodes: Vec<NodeInfo> =
            (0..env.clients).map(|i| NodeInfo { name: format!("client-{i}"), kind: NodeKind::Client }).collect();
        nodes.extend(proto.servers().into_iter().map(|name| NodeInfo { name, kind: NodeKind::Server }));
        let resource_node = match proto.resource() {
            ResourceHome::Server => env.clients,
            ResourceHome::Storage(_) => {
                nodes.push(NodeInfo { name: "storage".into(), kind: NodeKind::Storage });
                nodes.len() - 1
            }
        };
        let lease = proto.client_lease();
        LockSystem { proto, env, nodes, resource_node, lease }
    }

    fn ask(&self, c: &mut Client<P::Client>, cx: &mut Cx<P>) {
        // With durations, an unanswered request times out and is sent again (a lost request or a
        // crashed server must not hang the client). Untimed runs have no durations to wait.
        if self.env.timed && c.phase == Phase::Acquiring {
            cx.set_timer(Tmr::Retry, 1);
        }
        if let Some(ev) = self.proto.acquire(&mut c.lock, cx) {
            self.on_lock_event(c, ev, cx);
        }
    }

    fn to_resource(&self, req: ResReq, cx: &mut Cx<P>) {
        cx.send(self.resource_node, Wire::Res(req));
    }

    /// The client holds the lock. Read-modify-write computes between its read and its write; other
    /// critical sections work first and then write.
    fn work(&self, c: &mut Client<P::Client>, cx: &mut Cx<P>) {
        if self.env.workload == Workload::Oversell {
            self.touch_resource(c, cx);
        } else {
            self.work_then(c, cx);
        }
    }

    /// Spends `work_ticks` (if any) before the next step, which `on_timer(Work)` takes.
    fn work_then(&self, c: &mut Client<P::Client>, cx: &mut Cx<P>) {
        if self.env.timed && self.env.work_ticks > 0 {
            c.phase = Phase::Working;
            cx.set_timer(Tmr::Work, self.env.work_ticks);
        } else {
            self.touch_resource(c, cx);
        }
    }

    fn touch_resource(&self, c: &mut Client<P::Client>, cx: &mut Cx<P>) {
        let (token, session) = (c.token, c.asked);
        match self.env.workload {
            Workload::Oversell if c.phase == Phase::Working => {
                c.phase = Phase::Writing;
                self.to_resource(ResReq::Write { token, session, value: c.new_stock, sale: true }, cx);
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

    fn finish(&self, c: &mut Client<P::Client>, cx: &mut Cx<P>) {
        if c.depth > 0 {
            self.proto.release(&mut c.lock, c.token, c.asked, cx);
            c.depth = 0;
            cx.observe(Observation::Released { client: cx.me, depth: 0 });
        }
        if self.lease.is_some() {
            cx.cancel_timer(Tmr::Validity);
        }
        c.phase = Phase::Done;
        c.token = None;
        c.asked = 0;
        c.new_stock = 0;
        cx.observe(Observation::Done { client: cx.me });
    }

    fn on_lock_event(&self, c: &mut Client<P::Client>, ev: LockEvent, cx: &mut Cx<P>) {
        let me = cx.me;
        match (c.phase, ev) {
            (Phase::Acquiring, LockEvent::Granted { token, asked }) => {
                if self.env.timed {
                    cx.cancel_timer(Tmr::Retry);
                }
                if let Some(l) = self.lease {
                    let left = asked + l.ttl - l.margin - cx.now;
                    if left <= 0 {
                        // Granted too late to be of use: let it go and ask again.
                        self.proto.release(&mut c.lock, token, asked, cx);
                        cx.set_timer(Tmr::Retry, 1);
                        return;
                    }
                    cx.set_timer(Tmr::Validity, left);
                }
                c.token = token;
                c.asked = asked;
                c.depth = 1;
                cx.observe(Observation::Acquired { client: me, depth: 1 });
                if self.env.workload == Workload::Reentrant {
                    c.phase = Phase::Nesting;
                    self.ask(c, cx);
                } else {
                    self.work(c, cx);
                }
            }
            (Phase::Acquiring, LockEvent::Busy) => cx.set_timer(Tmr::Retry, 1),
            (Phase::Nesting, LockEvent::Granted { .. }) => {
                cx.observe(Observation::Acquired { client: me, depth: 2 });
                self.proto.release(&mut c.lock, c.token, c.asked, cx);
                cx.observe(Observation::Released { client: me, depth: 1 });
                c.depth = 1;
                self.work(c, cx);
            }
            (Phase::Nesting, LockEvent::Busy) => {
                cx.observe(Observation::NestedDenied { client: me });
                self.finish(c, cx);
            }
            _ => {}
        }
    }

    fn on_reply(&self, c: &mut Client<P::Client>, reply: ResReply, cx: &mut Cx<P>) {
        match (c.phase, reply) {
            (Phase::Reading, ResReply::Stock(s)) if s >= 1 => {
                c.new_stock = s - 1;
                c.phase = Phase::Working;
                self.work_then(c, cx);
            }
            (Phase::Reading, _) | (Phase::Writing, _) | (Phase::Decrementing, _) => self.finish(c, cx),
            _ => {}
        }
    }

    fn client_start(&self, cx: &mut Cx<P>) -> Client<P::Client> {
        let mut c = Client {
            phase: Phase::Acquiring,
            token: None,
            asked: 0,
            new_stock: 0,
            lock: P::Client::default(),
            depth: 0,
        };
        if self.env.workload.uses_lock() {
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

impl<P: Protocol> Machine for LockSystem<P> {
    type State = NodeState<P::Server, P::Client>;
    type Msg = Wire<P::Msg>;
    type Timer = Tmr<P::Timer>;
    type Durable = P::Durable;

    fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    fn start(&self, cx: &mut Cx<P>) -> Self::State {
        match self.nodes[cx.me].kind {
            NodeKind::Client => NodeState::Client(self.client_start(cx)),
            NodeKind::Server => NodeState::Server(self.proto.server_start(self.server_index(cx.me), cx)),
            NodeKind::Storage => NodeState::Storage(Resource::new(self.env.stock, self.fencing())),
        }
    }

    fn on_message(&self, state: &mut Self::State, from: NodeId, msg: Self::Msg, cx: &mut Cx<P>) {
        match (state, msg) {
            (NodeState::Client(c), Wire::Lock(m)) => {
                let ev = self.proto.client_on_msg(&mut c.lock, from, m, cx);
                self.on_lock_event(c, ev, cx);
            }
            (NodeState::Client(c), Wire::ResReply(r)) => self.on_reply(c, r, cx),
            (NodeState::Server(s), Wire::Lock(m)) => self.proto.server_on_msg(s, from, m, cx),
            (NodeState::Server(s), Wire::Res(req)) => self.proto.server_on_resource(s, from, req, cx),
            (NodeState::Storage(r), Wire::Res(req)) => r.handle(from, req, cx),
            _ => {}
        }
    }

    fn on_timer(&self, state: &mut Self::State, timer: Self::Timer, cx: &mut Cx<P>) {
        match (state, timer) {
            (NodeState::Client(c), Tmr::Retry) if c.phase == Phase::Acquiring => self.ask(c, cx),
            (NodeState::Client(c), Tmr::Work) if c.phase == Phase::Working => self.touch_resource(c, cx),
            (NodeState::Client(c), Tmr::Validity) if c.depth > 0 => {
                // The work is abandoned, but `unlock()` still runs, as in a `finally` block.
                cx.observe(Observation::LeaseLapsed { client: cx.me });
                self.proto.release(&mut c.lock, c.token, c.asked, cx);
                c.depth = 0;
                self.finish(c, cx);
            }
            (NodeState::Server(s), Tmr::Lock(t)) => self.proto.server_on_timer(s, t, cx),
            _ => {}
        }
    }

    fn symmetric_servers(&self) -> bool {
        self.proto.symmetric_servers()
    }

    fn is_store_request(&self, msg: &Self::Msg) -> bool {
        matches!(msg, Wire::Res(_))
    }

    fn restart(&self, durable: Option<&Self::Durable>, cx: &mut Cx<P>) -> Self::State {
        match self.nodes[cx.me].kind {
            NodeKind::Server => NodeState::Server(self.proto.server_restart(self.server_index(cx.me), durable, cx)),
            // Clients never come back (a dead process's work is not resumed); storage never crashes.
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

impl<S: crate::protocol::Ids, L: crate::protocol::Ids> crate::protocol::Ids for NodeState<S, L> {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        match self {
            NodeState::Server(s) => s.map_ids(f),
            NodeState::Client(c) => c.lock.map_ids(f),
            NodeState::Storage(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::lease::{LeaseLock, Msg};
    use crate::protocol::{Effect, Machine};

    fn system(margin: i64) -> LockSystem<LeaseLock> {
        let env = Env { clients: 2, workload: Workload::CriticalWrite, timed: true, ttl: 5, stock: 1, work_ticks: 0 };
        let o = crate::protocol::redis::Options { validity_margin: Some(margin), ..Default::default() };
        LockSystem::new(crate::protocol::redis::build(o, &env).unwrap(), env)
    }

    #[test]
    fn a_grant_arriving_after_its_validity_is_given_back() {
        let sys = system(1);
        let mut st = sys.start(&mut PCx::<LeaseLock>::new(0, 0));
        let mut cx = PCx::<LeaseLock>::new(0, 4);
        sys.on_message(&mut st, 2, Wire::Lock(Msg::Grant { token: None, asked: 0 }), &mut cx);
        assert!(cx.effects.contains(&Effect::Send { to: 2, msg: Wire::Lock(Msg::Release { asked: 0 }) }));
        assert!(!cx.effects.iter().any(|e| matches!(e, Effect::Observe(Observation::Acquired { .. }))));
    }

    #[test]
    fn a_timely_grant_is_trusted_until_ttl_minus_margin_after_asking() {
        let sys = system(1);
        let mut st = sys.start(&mut PCx::<LeaseLock>::new(0, 0));
        let mut cx = PCx::<LeaseLock>::new(0, 1);
        sys.on_message(&mut st, 2, Wire::Lock(Msg::Grant { token: None, asked: 0 }), &mut cx);
        assert!(cx.effects.contains(&Effect::SetTimer { timer: Tmr::Validity, after: 3 }));
        assert!(cx.effects.contains(&Effect::Observe(Observation::Acquired { client: 0, depth: 1 })));
    }
}

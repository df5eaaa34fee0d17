//! Conformance of a model server to its real counterpart: the same requests and the same passing
//! time, fed to both, must get the same answers. This is what keeps `src/protocol/` honest as it
//! grows: a model server that answers otherwise than the real one makes every verdict about it
//! suspect, and a divergence found here names the sequence that shows it.

use crate::protocol::{Cx, Effect, NodeId, PCx, Protocol, Tmr, Wire};
use crate::real::{Answer, Counterpart, RealError, answer_of, same_answer, show_answer};
use crate::resource::ResReq;

/// One input of a sequence. Servers are numbered from 0 (the first server; with replication, the
/// first master and then its replicas).
#[derive(Clone, Debug)]
pub enum Op<M> {
    /// A client's request arrives at `server`.
    Ask { server: usize, from: NodeId, msg: M },
    /// A client's request to the stock arrives (at server 0, which keeps it).
    Use { from: NodeId, req: ResReq },
    /// Time passes, a tick at a time; the model's due timers fire.
    Advance(i64),
    /// The server crashes and starts again, from its disk or (`wiped`) from nothing.
    Restart { server: usize, wiped: bool },
    /// The oldest message another server sent `to` (a replication stream, an acknowledgement)
    /// arrives; nothing when none is in flight.
    Deliver { to: usize },
}

impl<M> Op<M> {
    /// The input in the system's words: `client-0 → SET lock c0:0 NX PX 2000 (to replica-1)`,
    /// `3 ticks pass`, servers named as the protocol names them.
    pub fn show<P: Protocol<Msg = M>>(&self, proto: &P) -> String {
        let names = proto.servers();
        let name = |k: &usize| names.get(*k).cloned().unwrap_or_else(|| format!("server {k}"));
        match self {
            Op::Ask { server, from, msg } => {
                format!("{} → {} (to {})", client(*from), proto.show_msg(*from, msg), name(server))
            }
            Op::Use { from, req } => format!("{} → {req}", client(*from)),
            Op::Advance(ticks) => format!("{ticks} tick(s) pass"),
            Op::Restart { server, wiped: false } => format!("{} restarts from its disk", name(server)),
            Op::Restart { server, wiped: true } => format!("{} restarts with its disk lost", name(server)),
            Op::Deliver { to } => format!("the oldest message in flight to {} arrives", name(to)),
        }
    }
}

/// The first input the two answered differently: its index, and both answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub at: usize,
    pub model: String,
    pub real: String,
}

/// The model servers of `proto` (server `k` is node `first + k`) beside real ones, and what the
/// servers sent each other that has not arrived yet (both sent the same, or the run stopped).
struct Pair<'a, P: Protocol> {
    proto: &'a P,
    first: NodeId,
    states: Vec<P::Server>,
    durable: Vec<Option<P::Durable>>,
    /// Armed timers: server, timer, deadline.
    timers: Vec<(usize, P::Timer, i64)>,
    /// Server-to-server messages in flight, oldest first: from, to (server indices), message.
    flight: Vec<(usize, usize, P::Msg)>,
    /// The model's clock; the real servers' reads `base` more (see [`Counterpart::fresh`]).
    now: i64,
    base: i64,
}

impl<'a, P: Protocol> Pair<'a, P> {
    fn cx(&self, server: usize) -> PCx<P> {
        Cx::new(self.first + server, self.now)
    }

    /// The real servers' reading of the model's clock.
    fn real_now(&self) -> i64 {
        self.base + self.now
    }

    /// A node as the system names it: `client-1`, `redis`, `replica-1`.
    fn name(&self, id: NodeId) -> String {
        match id.checked_sub(self.first) {
            Some(k) => self.proto.servers().get(k).cloned().unwrap_or_else(|| format!("server {k}")),
            None => client(id),
        }
    }

    /// Keeps server `k`'s timers, disk and messages to other servers as the handler left them;
    /// returns what it answered.
    fn absorb(&mut self, k: usize, cx: PCx<P>) -> String {
        let (sends, observed) = answer_of(&cx.effects);
        let answer = show_answer(self.proto, self.first + k, &sends, &observed, &|id| self.name(id));
        let servers = self.states.len();
        for e in cx.effects {
            match e {
                Effect::SetTimer { timer: Tmr::Lock(t), after } => {
                    self.timers.retain(|(s, x, _)| !(*s == k && x == &t));
                    self.timers.push((k, t, self.now + after));
                }
                Effect::CancelTimer { timer: Tmr::Lock(t) } => self.timers.retain(|(s, x, _)| !(*s == k && x == &t)),
                Effect::Persist(d) => self.durable[k] = Some(d),
                Effect::Send { to, msg: Wire::Lock(m) } if (self.first..self.first + servers).contains(&to) => {
                    self.flight.push((k, to - self.first, m));
                }
                _ => {}
            }
        }
        answer
    }
}

fn client(id: NodeId) -> String {
    format!("client-{id}")
}

fn show_real<P: Protocol>(p: &Pair<P>, me: NodeId, a: &Answer<P::Msg>) -> String {
    format!("{} [{}]", show_answer(p.proto, me, &a.sends, &a.observed, &|id| p.name(id)), a.wire.join("; "))
}

/// Runs `ops` on fresh model servers (`servers` of them, the first one node `first`) and on
/// `real` (emptied first); the first input answered differently, if any. `start` is the real
/// servers' first tick (a real clock never goes back, so each sequence starts where the last one
/// ended); the model's start at 0.
pub fn run<P: Protocol>(
    proto: &P,
    (first, servers): (NodeId, usize),
    real: &mut dyn Counterpart<P>,
    ops: &[Op<P::Msg>],
    start: i64,
) -> Result<(Option<Mismatch>, i64), RealError> {
    real.fresh(servers, start)?;
    let mut pair = Pair {
        proto,
        first,
        states: Vec::new(),
        durable: vec![None; servers],
        timers: Vec::new(),
        flight: Vec::new(),
        now: 0,
        base: start,
    };
    for k in 0..servers {
        let mut cx = pair.cx(k);
        pair.states.push(proto.server_start(k, &mut cx));
        pair.absorb(k, cx);
    }
    for (at, op) in ops.iter().enumerate() {
        let differs = match op {
            Op::Ask { server, from, msg } => ask(&mut pair, real, (*server, *from), msg)?,
            Op::Use { from, req } => ask_stock(&mut pair, real, *from, req)?,
            Op::Advance(ticks) => advance(&mut pair, real, *ticks)?,
            Op::Restart { server, wiped } => {
                restart(&mut pair, real, *server, *wiped)?;
                None
            }
            Op::Deliver { to } => deliver(&mut pair, real, *to)?,
        };
        if let Some((model, real)) = differs {
            return Ok((Some(Mismatch { at, model, real }), pair.real_now() + 1));
        }
    }
    Ok((None, pair.real_now() + 1))
}

type Differs = Option<(String, String)>;

fn ask<P: Protocol>(
    p: &mut Pair<P>,
    real: &mut dyn Counterpart<P>,
    (k, from): (usize, NodeId),
    msg: &P::Msg,
) -> Result<Differs, RealError> {
    let mut cx = p.cx(k);
    p.proto.server_on_msg(&mut p.states[k], from, msg.clone(), &mut cx);
    let r = real.on_msg(k, from, msg, p.real_now())?;
    Ok(compare(p, k, cx, &r))
}

fn ask_stock<P: Protocol>(
    p: &mut Pair<P>,
    real: &mut dyn Counterpart<P>,
    from: NodeId,
    req: &ResReq,
) -> Result<Differs, RealError> {
    let mut cx = p.cx(0);
    p.proto.server_on_resource(&mut p.states[0], from, req.clone(), &mut cx);
    let r = real.on_resource(0, from, req, p.real_now())?;
    Ok(compare(p, 0, cx, &r))
}

fn deliver<P: Protocol>(p: &mut Pair<P>, real: &mut dyn Counterpart<P>, to: usize) -> Result<Differs, RealError> {
    let Some(i) = p.flight.iter().position(|(_, t, _)| *t == to) else { return Ok(None) };
    let (from, _, msg) = p.flight.remove(i);
    ask(p, real, (to, p.first + from), &msg)
}

/// Keeps what the model's handler did, and both answers if they differ.
fn compare<P: Protocol>(p: &mut Pair<P>, k: usize, cx: PCx<P>, r: &Answer<P::Msg>) -> Differs {
    let (sends, observed) = answer_of(&cx.effects);
    let model = p.absorb(k, cx);
    (!same_answer((&sends, &observed), (&r.sends, &r.observed))).then(|| (model, show_real(p, p.first + k, r)))
}

fn advance<P: Protocol>(p: &mut Pair<P>, real: &mut dyn Counterpart<P>, ticks: i64) -> Result<Differs, RealError> {
    for _ in 0..ticks {
        p.now += 1;
        while let Some(i) = p.timers.iter().position(|(_, _, at)| *at <= p.now) {
            let (k, t, _) = p.timers.remove(i);
            let mut cx = p.cx(k);
            p.proto.server_on_timer(&mut p.states[k], t.clone(), &mut cx);
            let r = real.on_timer(k, &t, p.real_now())?;
            if let Some((model, real)) = compare(p, k, cx, &r) {
                return Ok(Some((format!("at tick {}: {model}", p.now), real)));
            }
        }
    }
    Ok(None)
}

/// Server `k` crashes and starts again: its timers, and what was in flight to or from it on a connection, go with the
/// process (as in the engines, `Machine::dies_with_connection`).
fn restart<P: Protocol>(
    p: &mut Pair<P>,
    real: &mut dyn Counterpart<P>,
    k: usize,
    wiped: bool,
) -> Result<(), RealError> {
    if wiped {
        p.durable[k] = None;
    }
    p.timers.retain(|(s, _, _)| *s != k);
    let proto = p.proto;
    p.flight.retain(|(from, to, m)| !((*to == k || *from == k) && proto.dies_with_connection(m)));
    let mut cx = p.cx(k);
    p.states[k] = p.proto.server_restart(k, p.durable[k].as_ref(), &mut cx);
    p.absorb(k, cx);
    real.crash(k);
    real.restart(k, wiped, p.real_now())?;
    Ok(())
}

/// The shortest sequence found that still shows a mismatch: drops one input at a time while the
/// mismatch stays (any mismatch), until no single input can go.
pub fn shrink<P: Protocol>(
    proto: &P,
    servers: (NodeId, usize),
    real: &mut dyn Counterpart<P>,
    mut ops: Vec<Op<P::Msg>>,
    mut start: i64,
) -> Result<(Vec<Op<P::Msg>>, Mismatch), RealError> {
    let (first, next) = run(proto, servers, real, &ops, start)?;
    let mut found = first.expect("shrink starts from a mismatch");
    start = next;
    ops.truncate(found.at + 1);
    let mut i = 0;
    while i < ops.len() {
        let mut fewer = ops.clone();
        fewer.remove(i);
        let (m, next) = run(proto, servers, real, &fewer, start)?;
        start = next;
        match m {
            Some(m) => {
                fewer.truncate(m.at + 1);
                ops = fewer;
                found = m;
            }
            None => i += 1,
        }
    }
    Ok((ops, found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::lease::Msg;
    use crate::spec::{Env, Workload};

    #[test]
    fn a_failing_sequence_is_shown_in_the_systems_words() {
        let proto =
            crate::protocol::redis::build(Default::default(), &Env::test(2, Workload::CriticalWrite, 3, 1)).unwrap();
        let shown: Vec<String> = [Op::Ask { server: 0, from: 0, msg: Msg::Acquire { asked: 0 } }, Op::Advance(2)]
            .iter()
            .map(|op| op.show(&proto))
            .collect();
        assert!(shown[0].starts_with("client-0 → SET lock") && shown[0].ends_with("(to redis)"), "{shown:?}");
        assert_eq!(shown[1], "2 tick(s) pass");
    }
}

//! Conformance of a model server to its real counterpart: the same requests and the same passing
//! time, fed to both, must get the same answers. This is what keeps `src/protocol/` honest as it
//! grows: a model server that answers otherwise than the real one makes every verdict about it
//! suspect, and a divergence found here names the sequence that shows it.

use crate::protocol::{Cx, Effect, NodeId, PCx, Protocol, Tmr};
use crate::real::{Answer, Counterpart, RealError, answer_of, same_answer, show_answer};
use crate::resource::ResReq;

/// One input of a sequence, to server 0.
#[derive(Clone, Debug)]
pub enum Op<M> {
    /// A client's request arrives.
    Ask { from: NodeId, msg: M },
    /// A client's request to the stock arrives (at a server that keeps it).
    Use { from: NodeId, req: ResReq },
    /// Time passes, a tick at a time; the model's due timers fire.
    Advance(i64),
    /// The server crashes and starts again, from its disk or (`wiped`) from nothing.
    Restart { wiped: bool },
}

impl<M> Op<M> {
    /// The input in the system's words: `client-0 → SET lock c0:0 NX PX 2000`, `3 ticks pass`.
    pub fn show<P: Protocol<Msg = M>>(&self, proto: &P) -> String {
        match self {
            Op::Ask { from, msg } => format!("{} → {}", client(*from), proto.show_msg(*from, msg)),
            Op::Use { from, req } => format!("{} → {req}", client(*from)),
            Op::Advance(ticks) => format!("{ticks} tick(s) pass"),
            Op::Restart { wiped: false } => "the server restarts from its disk".into(),
            Op::Restart { wiped: true } => "the server restarts with its disk lost".into(),
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

/// The model server of `proto` (server 0, node `server`) beside a real one.
struct Pair<'a, P: Protocol> {
    proto: &'a P,
    server: NodeId,
    state: P::Server,
    durable: Option<P::Durable>,
    timers: Vec<(P::Timer, i64)>,
    now: i64,
}

impl<'a, P: Protocol> Pair<'a, P> {
    fn cx(&self) -> PCx<P> {
        Cx::new(self.server, self.now)
    }

    /// Keeps the model's timers and disk as the handler left them; returns what it answered.
    fn absorb(&mut self, cx: PCx<P>) -> String {
        let answer = show(self.proto, self.server, &cx.effects);
        for e in cx.effects {
            match e {
                Effect::SetTimer { timer: Tmr::Lock(t), after } => {
                    self.timers.retain(|(x, _)| x != &t);
                    self.timers.push((t, self.now + after));
                }
                Effect::CancelTimer { timer: Tmr::Lock(t) } => self.timers.retain(|(x, _)| x != &t),
                Effect::Persist(d) => self.durable = Some(d),
                _ => {}
            }
        }
        answer
    }
}

fn client(id: NodeId) -> String {
    format!("client-{id}")
}

fn show<P: Protocol, T, D>(proto: &P, me: NodeId, effects: &[Effect<crate::protocol::Wire<P::Msg>, T, D>]) -> String {
    let (sends, observed) = answer_of(effects);
    show_answer(proto, me, &sends, &observed, &client)
}

fn show_real<P: Protocol>(proto: &P, me: NodeId, a: &Answer<P::Msg>) -> String {
    format!("{} [{}]", show_answer(proto, me, &a.sends, &a.observed, &client), a.wire.join("; "))
}

/// Runs `ops` on a fresh model server and on `real` (emptied first); the first input answered
/// differently, if any. `start` is the first tick (a real clock never goes back, so each sequence
/// starts where the last one ended; the model's servers do not care).
pub fn run<P: Protocol>(
    proto: &P,
    server: NodeId,
    real: &mut dyn Counterpart<P>,
    ops: &[Op<P::Msg>],
    start: i64,
) -> Result<(Option<Mismatch>, i64), RealError> {
    real.crash(0);
    real.restart(0, true, start)?;
    let mut cx = Cx::new(server, start);
    let state = proto.server_start(0, &mut cx);
    let mut pair = Pair { proto, server, state, durable: None, timers: Vec::new(), now: start };
    pair.absorb(cx);
    for (at, op) in ops.iter().enumerate() {
        let differs = match op {
            Op::Ask { from, msg } => ask(&mut pair, real, *from, msg)?,
            Op::Use { from, req } => ask_stock(&mut pair, real, *from, req)?,
            Op::Advance(ticks) => advance(&mut pair, real, *ticks)?,
            Op::Restart { wiped } => {
                restart(&mut pair, real, *wiped)?;
                None
            }
        };
        if let Some((model, real)) = differs {
            return Ok((Some(Mismatch { at, model, real }), pair.now + 1));
        }
    }
    Ok((None, pair.now + 1))
}

type Differs = Option<(String, String)>;

fn ask<P: Protocol>(
    p: &mut Pair<P>,
    real: &mut dyn Counterpart<P>,
    from: NodeId,
    msg: &P::Msg,
) -> Result<Differs, RealError> {
    let mut cx = p.cx();
    p.proto.server_on_msg(&mut p.state, from, msg.clone(), &mut cx);
    let r = real.on_msg(0, from, msg, p.now)?;
    Ok(compare(p, cx, &r))
}

fn ask_stock<P: Protocol>(
    p: &mut Pair<P>,
    real: &mut dyn Counterpart<P>,
    from: NodeId,
    req: &ResReq,
) -> Result<Differs, RealError> {
    let mut cx = p.cx();
    p.proto.server_on_resource(&mut p.state, from, req.clone(), &mut cx);
    let r = real.on_resource(0, from, req, p.now)?;
    Ok(compare(p, cx, &r))
}

/// Keeps what the model's handler did, and both answers if they differ.
fn compare<P: Protocol>(p: &mut Pair<P>, cx: PCx<P>, r: &Answer<P::Msg>) -> Differs {
    let (sends, observed) = answer_of(&cx.effects);
    let model = p.absorb(cx);
    (!same_answer((&sends, &observed), (&r.sends, &r.observed))).then(|| (model, show_real(p.proto, p.server, r)))
}

fn advance<P: Protocol>(p: &mut Pair<P>, real: &mut dyn Counterpart<P>, ticks: i64) -> Result<Differs, RealError> {
    for _ in 0..ticks {
        p.now += 1;
        while let Some(i) = p.timers.iter().position(|(_, at)| *at <= p.now) {
            let (t, _) = p.timers.remove(i);
            let mut cx = p.cx();
            p.proto.server_on_timer(&mut p.state, t.clone(), &mut cx);
            let r = real.on_timer(0, &t, p.now)?;
            if let Some((model, real)) = compare(p, cx, &r) {
                return Ok(Some((format!("at tick {}: {model}", p.now), real)));
            }
        }
    }
    Ok(None)
}

fn restart<P: Protocol>(p: &mut Pair<P>, real: &mut dyn Counterpart<P>, wiped: bool) -> Result<(), RealError> {
    if wiped {
        p.durable = None;
    }
    p.timers.clear();
    let mut cx = p.cx();
    p.state = p.proto.server_restart(0, p.durable.as_ref(), &mut cx);
    p.absorb(cx);
    real.crash(0);
    real.restart(0, wiped, p.now)?;
    Ok(())
}

/// The shortest sequence found that still shows a mismatch: drops one input at a time while the
/// mismatch stays (any mismatch), until no single input can go.
pub fn shrink<P: Protocol>(
    proto: &P,
    server: NodeId,
    real: &mut dyn Counterpart<P>,
    mut ops: Vec<Op<P::Msg>>,
    mut start: i64,
) -> Result<(Vec<Op<P::Msg>>, Mismatch), RealError> {
    let (first, next) = run(proto, server, real, &ops, start)?;
    let mut found = first.expect("shrink starts from a mismatch");
    start = next;
    ops.truncate(found.at + 1);
    let mut i = 0;
    while i < ops.len() {
        let mut fewer = ops.clone();
        fewer.remove(i);
        let (m, next) = run(proto, server, real, &fewer, start)?;
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
        let shown: Vec<String> = [Op::Ask { from: 0, msg: Msg::Acquire { asked: 0 } }, Op::Advance(2)]
            .iter()
            .map(|op| op.show(&proto))
            .collect();
        assert!(shown[0].starts_with("client-0 → SET lock"), "{shown:?}");
        assert_eq!(shown[1], "2 tick(s) pass");
    }
}

//! The confirm engine: does a model's counterexample happen with the real server?
//!
//! The model checker finds the shortest counterexample; this engine walks it again, step by step,
//! with a real server ([`crate::real`]) answering wherever the model's server node would. The
//! clients, the storage, the network and the faults stay lockcheck's: a request reaches the real
//! server when the counterexample delivers it, a lost message never does, a crash is `SIGKILL`, and
//! the real server's wall clock is the model's clock of that node. At every step the real server's
//! answer (the messages it sends, what the properties observe of it) is compared with the model's.
//!
//! Three outcomes per counterexample: **confirmed** (every answer the same, and the property,
//! judged by the same monitor on the real run's observations, is violated at the end),
//! **diverged at step k** (the real server answered otherwise: both answers are shown), and **not
//! reproduced** (the walk ended and the property held).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::check::search::{self, Limits};
use crate::check::world::{Act, Action, World};
use crate::check::{describe, judged};
use crate::property::PropertyName;
use crate::protocol::{MCx, Machine, NodeId, NodeInfo, NodeKind, Observation, Protocol, ResourceHome, Tmr, Wire};
use crate::real::postgres::PgStock;
use crate::real::{Answer, Counterpart, RealCfg, RealError};
use crate::registry::{self, Visit};
use crate::sim::spec::LoadedSim;
use crate::spec::{Loaded, SpecError, Verdict};
use crate::system::LockSystem;
use crate::trace::{Step, Trace};

/// What became of one counterexample on the real server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Confirmed,
    /// The real server answered step `step` otherwise than the model.
    Diverged {
        step: u32,
        model: String,
        real: String,
    },
    NotReproduced,
    /// Walked, but the real server answered no step of it: the counterexample is about the
    /// network or the clients alone, and the real run is no evidence.
    Untouched,
    /// Not run, and why (a liveness counterexample, a family without a real counterpart).
    NotAttempted(String),
}

impl Outcome {
    pub fn word(&self) -> String {
        match self {
            Outcome::Confirmed => "confirmed".into(),
            Outcome::Diverged { step, .. } => format!("diverged at step {step}"),
            Outcome::NotReproduced => "not reproduced".into(),
            Outcome::Untouched => "no evidence: the real server answered no step of it".into(),
            Outcome::NotAttempted(_) => "not attempted".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Confirmation {
    pub property: PropertyName,
    pub outcome: Outcome,
    /// The walk on the real server, each step the real server answered followed by the commands
    /// and replies on its wire.
    pub trace: Option<Trace>,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub spec: String,
    /// The real system and its version (`Redis 7.0.15`), when one ran.
    pub system: Option<String>,
    pub results: Vec<Confirmation>,
}

impl Report {
    /// A counterexample the real server answered otherwise, or that did not happen with it.
    pub fn failed(&self) -> bool {
        self.results.iter().any(|r| matches!(r.outcome, Outcome::Diverged { .. } | Outcome::NotReproduced))
    }

    pub fn confirmed(&self) -> usize {
        self.results.iter().filter(|r| r.outcome == Outcome::Confirmed).count()
    }
}

/// Confirms every counterexample of a property the spec claims violated.
pub fn confirm(spec: &Loaded, cfg: RealCfg, limits: &Limits) -> Result<Report, SpecError> {
    registry::build(spec, ConfirmVisit { spec, cfg, limits })?
}

struct ConfirmVisit<'a> {
    spec: &'a Loaded,
    cfg: RealCfg,
    limits: &'a Limits,
}

impl Visit for ConfirmVisit<'_> {
    type Out = Result<Report, SpecError>;
    fn visit<P: Protocol>(self, system: LockSystem<P>) -> Self::Out {
        let spec = self.spec;
        let cfg = RealCfg { timed: spec.env().timed, ..self.cfg };
        let limits = Limits { claimed_only: true, ..*self.limits };
        let props = judged(spec, &system.proto, &limits)?;
        let world = World::new(Confirming::new(system), spec, props);
        let found = search::bfs(&world, &limits);
        let mut report = Report { spec: spec.path.display().to_string(), system: None, results: Vec::new() };
        for &(property, end) in &found.violation {
            if spec.spec.expect.get(property) != Some(Verdict::Violated) {
                continue;
            }
            let Some(end) = end else {
                return Err(SpecError::field(
                    &spec.path,
                    format!("expect.{}", property.name()),
                    "claimed violated, but the model finds no counterexample (run `lockcheck check` on it)",
                ));
            };
            let actions: Vec<Act<Confirming<P>>> =
                search::replay_path(&world, &found.path_to(end)).into_iter().map(|(a, ..)| a).collect();
            let result = walk(spec, &world, property, &actions, cfg, &mut report.system)
                .map_err(|e| SpecError::field(&spec.path, "protocol", e.to_string()))?;
            report.results.push(result);
        }
        Ok(report)
    }
}

/// Confirms a trace the model checker wrote (under `spec`, as `check` ran it): its steps are
/// matched one by one to the actions that give them, and those are walked with real servers.
pub fn confirm_trace(spec: &Loaded, trace: &Trace, cfg: RealCfg) -> Result<Report, SpecError> {
    registry::build(spec, TraceVisit { spec, trace, cfg })?
}

struct TraceVisit<'a> {
    spec: &'a Loaded,
    trace: &'a Trace,
    cfg: RealCfg,
}

impl Visit for TraceVisit<'_> {
    type Out = Result<Report, SpecError>;
    fn visit<P: Protocol>(self, system: LockSystem<P>) -> Self::Out {
        let (spec, trace) = (self.spec, self.trace);
        let cfg = RealCfg { timed: spec.env().timed, ..self.cfg };
        let limits = Limits { progress: false, ..Limits::default() };
        let props = judged(spec, &system.proto, &limits)?;
        let property = props.iter().copied().find(|p| p.name() == trace.property).ok_or_else(|| {
            SpecError::field(&spec.path, "property", format!("`{}` is not judged for this spec", trace.property))
        })?;
        let world = World::new(Confirming::new(system), spec, props);
        let actions = actions_of_trace(&world, trace)
            .ok_or_else(|| SpecError::field(&spec.path, "steps", "the trace is not what this spec's model does"))?;
        let mut report = Report { spec: spec.path.display().to_string(), system: None, results: Vec::new() };
        let result = walk(spec, &world, property, &actions, cfg, &mut report.system)
            .map_err(|e| SpecError::field(&spec.path, "protocol", e.to_string()))?;
        report.results.push(result);
        Ok(report)
    }
}

/// What the real servers made of a scenario's runs (`confirm scenario.toml --seeds A..B`): the
/// simulator's fault plans played again with the real servers answering wherever the model's
/// server did, and compared answer by answer as a walk is. A run in which every answer was the
/// same is the real servers' run too, so what its monitor judged holds for them.
#[derive(Clone, Debug)]
pub struct SeedsReport {
    pub spec: String,
    pub system: Option<String>,
    pub runs: u64,
    /// Per property: the runs the simulator found it violated in, and of those the runs the real
    /// servers answered throughout as the model did.
    pub rates: Vec<(PropertyName, u64, u64)>,
    /// The first run the real servers answered otherwise, if any: its seed, the number of the
    /// answer among the real servers' answers, and both answers (of how many runs diverged).
    pub diverged: Option<(u64, usize, String, String)>,
    pub diverged_runs: u64,
    /// Not run, and why.
    pub not_attempted: Option<String>,
}

/// Plays `seeds` of scenario `sim` with the real servers answering.
pub fn confirm_seeds(sim: &LoadedSim, seeds: &[u64], cfg: RealCfg) -> Result<SeedsReport, SpecError> {
    registry::build(&sim.as_model(), SeedsVisit { sim, seeds, cfg })?
}

struct SeedsVisit<'a> {
    sim: &'a LoadedSim,
    seeds: &'a [u64],
    cfg: RealCfg,
}

impl Visit for SeedsVisit<'_> {
    type Out = Result<SeedsReport, SpecError>;
    fn visit<P: Protocol>(self, system: LockSystem<P>) -> Self::Out {
        let sim = self.sim;
        let file = |message: String| SpecError::File { file: sim.path.display().to_string(), message };
        let props = crate::sim::judged(sim, system.proto.issues_tokens())?;
        let mut report = SeedsReport {
            spec: sim.path.display().to_string(),
            system: None,
            runs: 0,
            rates: props.iter().map(|p| (*p, 0, 0)).collect(),
            diverged: None,
            diverged_runs: 0,
            not_attempted: None,
        };
        if !system.proto.server_timers_on_wall_clock() {
            report.not_attempted = Some(format!(
                "{}: the server times out on its own monotonic clock, so a run would take its simulated time in real time",
                sim.spec.protocol
            ));
            return Ok(report);
        }
        // A simulated tick is `--tick-ms` of the server's wall clock, as a model's is: far above
        // the real time a run takes, so no real timer (PostgreSQL's timeouts) fires on its own.
        let cfg = RealCfg { timed: true, ..self.cfg };
        let reals = start_reals(&system.proto, &sim.spec.protocol, sim.spec.setup.stock, cfg)
            .map_err(|e| file(e.to_string()))?;
        let reals = match reals {
            Ok(r) => r,
            Err(why) => {
                report.not_attempted = Some(why);
                return Ok(report);
            }
        };
        report.system = Some(reals.system());
        let m = Arc::new(Confirming { simulated: true, ..Confirming::new(system) });
        m.attach(reals);
        let played = play_seeds(&m, sim, self.seeds, props, &mut report);
        m.detach();
        played.map_err(file)?;
        Ok(report)
    }
}

/// Runs each seed's plan with the real servers attached to `m`, emptied before each run.
fn play_seeds<P: Protocol>(
    m: &Arc<Confirming<P>>,
    sim: &LoadedSim,
    seeds: &[u64],
    props: Vec<PropertyName>,
    report: &mut SeedsReport,
) -> Result<(), String> {
    let cfg = crate::sim::run_cfg(sim, props);
    for &seed in seeds {
        m.reset().map_err(|e| e.to_string())?;
        let plan = crate::sim::plan::draw_plan(sim, m.nodes(), seed);
        let run = crate::sim::driver::run(m.clone(), &cfg, seed, plan)?;
        let answers = m.take_answers().map_err(|e| e.to_string())?;
        let diverged = answers.into_iter().enumerate().find_map(|(i, a)| {
            a.diverged.map(|(model, real)| (i + 1, (model, format!("{real} [{}]", a.wire.join("; ")))))
        });
        report.runs += 1;
        for (p, simulated, real) in report.rates.iter_mut() {
            if run.violations.iter().any(|v| v.property == *p) {
                *simulated += 1;
                *real += u64::from(diverged.is_none());
            }
        }
        if let Some((k, (model, real))) = diverged {
            report.diverged_runs += 1;
            report.diverged.get_or_insert((seed, k, model, real));
        }
        if crate::progress::interrupted() {
            break;
        }
    }
    Ok(())
}

/// The actions that give `trace`'s steps, found by trying each enabled action at each step; `None`
/// when some step is given by none of them.
fn actions_of_trace<M: Machine>(w: &World<M>, trace: &Trace) -> Option<Vec<Act<M>>> {
    if let [only] = trace.steps.as_slice()
        && only.kind == "start"
    {
        return Some(Vec::new());
    }
    let mut s = w.init();
    let mut actions = Vec::new();
    let mut enabled = Vec::new();
    for (i, stored) in trace.steps.iter().enumerate() {
        enabled.clear();
        w.actions_of(&s, &mut enabled);
        let (a, next) = enabled.drain(..).find_map(|a| {
            let mut observed = Vec::new();
            let next = w.step(&s, &a, Some(&mut observed))?;
            (describe(w, i as u32 + 1, &a, &next, &observed) == *stored).then_some((a, next))
        })?;
        actions.push(a);
        s = next;
    }
    Some(actions)
}

/// Walks one counterexample with a fresh set of real servers.
fn walk<P: Protocol>(
    spec: &Loaded,
    w: &World<Confirming<P>>,
    property: PropertyName,
    actions: &[Act<Confirming<P>>],
    cfg: RealCfg,
    system: &mut Option<String>,
) -> Result<Confirmation, RealError> {
    match start_reals(&w.machine.sys.proto, &spec.spec.protocol, spec.env().stock, cfg)? {
        Ok(reals) => walk_with(spec, w, property, actions, reals, system),
        Err(why) => Ok(Confirmation { property, outcome: Outcome::NotAttempted(why), trace: None }),
    }
}

/// The real servers of `proto`: the lock's counterpart and, where the stock lives on lockcheck's
/// storage node, a PostgreSQL table for it; `Err(why)` when the family (or this configuration of
/// it) has no real counterpart.
fn start_reals<P: Protocol>(
    proto: &P,
    protocol: &str,
    stock: i64,
    cfg: RealCfg,
) -> Result<Result<Reals<P>, String>, RealError> {
    // No lock server at all (no lock): the stock alone is real.
    let lock = match crate::real::counterpart(proto, cfg) {
        Ok(real) => Some(real),
        Err(RealError::Unsupported(_)) if proto.servers().is_empty() => None,
        Err(RealError::Unsupported(why)) => return Ok(Err(format!("{protocol} {why}"))),
        Err(e) => return Err(e),
    };
    let stock = match proto.resource() {
        ResourceHome::Storage(fencing) => Some(PgStock::start(stock, fencing, cfg)?),
        ResourceHome::Server => None,
    };
    Ok(Ok(Reals { lock, stock }))
}

fn walk_with<P: Protocol>(
    spec: &Loaded,
    w: &World<Confirming<P>>,
    property: PropertyName,
    actions: &[Act<Confirming<P>>],
    real: Reals<P>,
    system: &mut Option<String>,
) -> Result<Confirmation, RealError> {
    *system = Some(real.system());
    w.machine.attach(real);
    let walked = steps(w, property, actions);
    w.machine.detach();
    let (steps, outcome) = walked?;
    let outcome = outcome.unwrap_or(Outcome::NotReproduced);
    let trace = Trace {
        spec: spec.path.display().to_string(),
        engine: "confirm".into(),
        seed: None,
        property: property.name().into(),
        steps,
        reproduce: format!("lockcheck confirm {}", spec.path.display()),
        plan: None,
        sliced_from: None,
    };
    Ok(Confirmation { property, outcome, trace: Some(trace) })
}

/// The steps walked, and the outcome if the walk decided one before its end (a divergence) or at
/// it (confirmed).
type Walked = (Vec<Step>, Option<Outcome>);

fn steps<P: Protocol>(
    w: &World<Confirming<P>>,
    property: PropertyName,
    actions: &[Act<Confirming<P>>],
) -> Result<Walked, RealError> {
    let m = &w.machine;
    let mut s = w.init();
    m.take_answers()?;
    let mut out = Vec::new();
    let mut enabled = Vec::new();
    let mut asked = 0;
    for (i, a) in actions.iter().enumerate() {
        let step = i as u32 + 1;
        enabled.clear();
        w.actions_of(&s, &mut enabled);
        if !enabled.contains(a) {
            let model = format!("step {step} of the counterexample");
            return Ok((out, Some(Outcome::Diverged { step, model, real: "that step is not possible".into() })));
        }
        let mut crashed = Vec::new();
        if let Action::Crash(id) = a {
            crashed = m.crash(*id);
        }
        let mut observed = Vec::new();
        let next = w.step(&s, a, Some(&mut observed)).expect("an enabled action steps");
        let mut answers = m.take_answers()?;
        asked += answers.iter().filter(|x| x.asked).count();
        answers.insert(0, Answered { wire: crashed, asked: false, diverged: None });
        let mut described = describe(w, step, a, &next, &observed);
        for wire in answers.iter().flat_map(|x| &x.wire) {
            described.detail.push_str(&format!(" · real: {wire}"));
        }
        out.push(described);
        if let Some(d) = answers.into_iter().find_map(|x| x.diverged) {
            return Ok((out, Some(Outcome::Diverged { step, model: d.0, real: d.1 })));
        }
        s = next;
        if crate::progress::interrupted() {
            return Err(RealError::Interrupted);
        }
    }
    // A liveness counterexample ends in a state from which the model finds no way to finish: the
    // real run confirms the way there; "never after" stays the model's word.
    let violated = property.is_liveness() || !s.monitor.holds(property);
    let outcome = match (violated, asked) {
        (false, _) => None,
        (true, 0) => Some(Outcome::Untouched),
        (true, _) => Some(Outcome::Confirmed),
    };
    Ok((out, outcome))
}

/// What the real server did in one handler call, and how it differed from the model, if it did.
struct Answered {
    wire: Vec<String>,
    /// The real server was asked something (not only killed or started).
    asked: bool,
    /// The model's answer and the real one, in the protocol's words.
    diverged: Option<(String, String)>,
}

/// The real servers of one walk: the lock's, and the stock's when it lives on lockcheck's storage
/// node rather than in the lock's server.
pub struct Reals<P: Protocol> {
    lock: Option<Box<dyn Counterpart<P>>>,
    stock: Option<PgStock>,
}

impl<P: Protocol> Reals<P> {
    /// The real systems and their versions: `Redis 7.0.15 (the stock in PostgreSQL 15.18)`.
    fn system(&self) -> String {
        match (&self.lock, &self.stock) {
            (Some(lock), Some(stock)) => format!("{} (the stock in {})", lock.system(), stock.system()),
            (Some(lock), None) => lock.system(),
            (None, Some(stock)) => format!("{} (the stock; no lock server)", stock.system()),
            (None, None) => unreachable!("a walk without a lock server has the stock on the storage node"),
        }
    }
}

/// The protocol's system with its server nodes (and storage node) answered by real servers while
/// they are attached (and by the model alone otherwise, as when it searches for the
/// counterexample).
pub struct Confirming<P: Protocol> {
    pub sys: LockSystem<P>,
    /// The node id of server 0 (clients come first).
    first_server: NodeId,
    storage: Option<NodeId>,
    real: Mutex<Option<Reals<P>>>,
    answers: Mutex<(Vec<Answered>, Option<RealError>)>,
    /// Driven by the simulator, which tells a crash only by the restart that ends it (nothing
    /// reaches a dead node meanwhile): the real server is killed then (the model checker's walk
    /// kills it at the crash).
    simulated: bool,
    /// Added to every clock reading the real servers are given: a real clock never goes back,
    /// and each of a scenario's runs starts its clocks at 0 again.
    base: AtomicI64,
    /// The latest reading given so far (`base` included).
    latest: AtomicI64,
}

impl<P: Protocol> Confirming<P> {
    fn new(sys: LockSystem<P>) -> Self {
        let first_server = sys.nodes().iter().position(|n| n.kind == NodeKind::Server).unwrap_or(0);
        let storage = sys.nodes().iter().position(|n| n.kind == NodeKind::Storage);
        Confirming {
            sys,
            first_server,
            storage,
            real: Mutex::new(None),
            answers: Mutex::new((Vec::new(), None)),
            simulated: false,
            base: AtomicI64::new(0),
            latest: AtomicI64::new(0),
        }
    }

    /// A real server's reading of the model's `now`.
    fn real_now(&self, now: i64) -> i64 {
        let t = now + self.base.load(Ordering::Relaxed);
        self.latest.fetch_max(t, Ordering::Relaxed);
        t
    }

    /// Every real server emptied (killed and started with its disk lost), its clock past every
    /// reading given so far, for a run whose clocks start at 0.
    fn reset(&self) -> Result<(), RealError> {
        // Room below the new 0 for a clock set back by a fault.
        let start = self.latest.load(Ordering::Relaxed) + 1_000;
        self.base.store(start, Ordering::Relaxed);
        let servers = self.sys.proto.servers().len();
        self.with_real(|r| r.fresh(servers, start)).transpose()?;
        self.with_stock(|s| {
            s.crash();
            s.restart(true, start)
        })
        .transpose()?;
        self.take_answers()?;
        Ok(())
    }

    fn attach(&self, real: Reals<P>) {
        *self.real.lock().expect("not poisoned") = Some(real);
    }

    /// Drops the counterpart: its servers are stopped and their folders removed.
    fn detach(&self) {
        *self.real.lock().expect("not poisoned") = None;
    }

    fn with_real<R>(&self, f: impl FnOnce(&mut (dyn Counterpart<P> + 'static)) -> R) -> Option<R> {
        let mut real = self.real.lock().expect("not poisoned");
        real.as_mut().and_then(|r| r.lock.as_mut()).map(|l| f(l.as_mut()))
    }

    fn with_stock<R>(&self, f: impl FnOnce(&mut PgStock) -> R) -> Option<R> {
        let mut real = self.real.lock().expect("not poisoned");
        real.as_mut().and_then(|r| r.stock.as_mut()).map(f)
    }

    fn attached(&self) -> bool {
        self.real.lock().expect("not poisoned").is_some()
    }

    /// What the real server behind node `me` answers to `msg` from `from`, if one is asked.
    fn ask_real(
        &self,
        me: NodeId,
        from: NodeId,
        msg: &<Self as Machine>::Msg,
        now: i64,
    ) -> Option<Result<Answer<P::Msg>, RealError>> {
        let now = self.real_now(now);
        match (self.real_index(me), msg) {
            (Some(index), Wire::Lock(m)) => self.with_real(|r| r.on_msg(index, from, m, now)),
            (Some(index), Wire::Res(req)) => self.with_real(|r| r.on_resource(index, from, req, now)),
            (None, Wire::Res(req)) if Some(me) == self.storage => self.with_stock(|s| s.on_resource(from, req, now)),
            _ => None,
        }
    }

    /// `SIGKILL` to the real server behind node `id`, if there is one; what was done.
    fn crash(&self, id: NodeId) -> Vec<String> {
        let done = match self.real_index(id) {
            Some(index) => self.with_real(|r| r.crash(index)),
            None if Some(id) == self.storage => self.with_stock(|s| s.crash()),
            None => None,
        };
        done.unwrap_or_default()
    }

    /// The server index of node `id`, if it is a server node.
    fn real_index(&self, id: NodeId) -> Option<usize> {
        (self.sys.nodes()[id].kind == NodeKind::Server).then(|| id - self.first_server)
    }

    fn take_answers(&self) -> Result<Vec<Answered>, RealError> {
        let mut a = self.answers.lock().expect("not poisoned");
        match a.1.take() {
            Some(e) => Err(e),
            None => Ok(std::mem::take(&mut a.0)),
        }
    }

    /// Compares what the model's server just did (the effects after `from` in `cx`) with the real
    /// server's answer.
    fn compare(&self, cx: &MCx<Self>, from: usize, real: Result<Answer<P::Msg>, RealError>) {
        let mut log = self.answers.lock().expect("not poisoned");
        let real = match real {
            Ok(r) => r,
            Err(e) => {
                log.1 = Some(e);
                return;
            }
        };
        let (sends, observed) = crate::real::answer_of(&cx.effects[from..]);
        let same = crate::real::same_answer((&sends, &observed), (&real.sends, &real.observed));
        let diverged =
            (!same).then(|| (self.show(cx.me, &sends, &observed), self.show(cx.me, &real.sends, &real.observed)));
        log.0.push(Answered { wire: real.wire, asked: true, diverged });
    }

    fn show(&self, me: NodeId, sends: &[(NodeId, Wire<P::Msg>)], observed: &[Observation]) -> String {
        let name = |id: NodeId| self.sys.nodes()[id].name.clone();
        crate::real::show_answer(&self.sys.proto, me, sends, observed, &name)
    }
}

impl<P: Protocol> Machine for Confirming<P> {
    type State = <LockSystem<P> as Machine>::State;
    type Msg = <LockSystem<P> as Machine>::Msg;
    type Timer = <LockSystem<P> as Machine>::Timer;
    type Durable = <LockSystem<P> as Machine>::Durable;

    fn nodes(&self) -> &[NodeInfo] {
        self.sys.nodes()
    }

    fn start(&self, cx: &mut MCx<Self>) -> Self::State {
        self.sys.start(cx)
    }

    fn on_message(&self, state: &mut Self::State, from: NodeId, msg: Self::Msg, cx: &mut MCx<Self>) {
        let before = cx.effects.len();
        // Only a message a real server will be asked is kept (not while the model is searched).
        let input =
            (self.attached() && (self.real_index(cx.me).is_some() || Some(cx.me) == self.storage)).then(|| msg.clone());
        self.sys.on_message(state, from, msg, cx);
        if let Some(real) = input.and_then(|m| self.ask_real(cx.me, from, &m, cx.now)) {
            self.compare(cx, before, real);
        }
    }

    fn on_timer(&self, state: &mut Self::State, timer: Self::Timer, cx: &mut MCx<Self>) {
        let before = cx.effects.len();
        let asked = match (&timer, self.real_index(cx.me)) {
            (Tmr::Lock(t), Some(index)) if self.attached() => Some((index, t.clone())),
            _ => None,
        };
        self.sys.on_timer(state, timer, cx);
        if let Some((index, t)) = asked
            && let now = self.real_now(cx.now)
            && let Some(real) = self.with_real(|r| r.on_timer(index, &t, now))
        {
            self.compare(cx, before, real);
        }
    }

    fn symmetric_servers(&self) -> bool {
        self.sys.symmetric_servers()
    }

    fn fifo(&self) -> bool {
        self.sys.fifo()
    }

    fn dies_with_connection(&self, msg: &Self::Msg) -> bool {
        self.sys.dies_with_connection(msg)
    }

    fn is_app_msg(&self, msg: &Self::Msg) -> bool {
        self.sys.is_app_msg(msg)
    }

    fn is_app_timer(&self, timer: &Self::Timer) -> bool {
        self.sys.is_app_timer(timer)
    }

    fn resume_app(&self, state: &mut Self::State, cx: &mut MCx<Self>) {
        self.sys.resume_app(state, cx)
    }

    fn show_msg(&self, from: NodeId, msg: &Self::Msg) -> String {
        self.sys.show_msg(from, msg)
    }

    fn show_timer(&self, timer: &Self::Timer) -> String {
        self.sys.show_timer(timer)
    }

    fn restart(&self, durable: Option<&Self::Durable>, cx: &mut MCx<Self>) -> Self::State {
        let wiped = durable.is_none();
        let (crash, now) = (self.simulated, self.real_now(cx.now));
        let done = match self.real_index(cx.me) {
            Some(index) => self.with_real(|r| {
                let killed = if crash { r.crash(index) } else { Vec::new() };
                r.restart(index, wiped, now).map(|started| [killed, started].concat())
            }),
            None if Some(cx.me) == self.storage => self.with_stock(|s| {
                let killed = if crash { s.crash() } else { Vec::new() };
                s.restart(wiped, now).map(|started| [killed, started].concat())
            }),
            None => None,
        };
        if let Some(done) = done {
            let mut log = self.answers.lock().expect("not poisoned");
            match done {
                Ok(wire) => log.0.push(Answered { wire, asked: false, diverged: None }),
                Err(e) => log.1 = Some(e),
            }
        }
        self.sys.restart(durable, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::lease::{LeaseLock, Msg, Timer};
    use crate::protocol::redis;

    /// A "real server" that refuses every lock: the engine must see the model's grant differ.
    struct AlwaysBusy;

    impl Counterpart<LeaseLock> for AlwaysBusy {
        fn system(&self) -> String {
            "a server that refuses everything".into()
        }
        fn on_msg(&mut self, _: usize, from: NodeId, msg: &Msg, _: i64) -> Result<Answer<Msg>, RealError> {
            let sends =
                if matches!(msg, Msg::Acquire { .. }) { vec![(from, Wire::Lock(Msg::Busy))] } else { Vec::new() };
            Ok(Answer { sends, observed: Vec::new(), wire: vec!["SET → (nil)".into()] })
        }
        fn on_timer(&mut self, _: usize, _: &Timer, _: i64) -> Result<Answer<Msg>, RealError> {
            Ok(Answer::default())
        }
        fn crash(&mut self, _: usize) -> Vec<String> {
            Vec::new()
        }
        fn restart(&mut self, _: usize, _: bool, _: i64) -> Result<Vec<String>, RealError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_real_server_that_answers_otherwise_stops_the_walk_at_that_step_with_both_answers() {
        let spec = crate::spec::load_model(std::path::Path::new("models/redis_gc_pause.toml")).unwrap();
        let env = spec.env();
        let sys = LockSystem::new(redis::build(redis::Options::default(), &env).unwrap(), env);
        let limits = Limits { progress: false, claimed_only: true, ..Limits::default() };
        let props = judged(&spec, &sys.proto, &limits).unwrap();
        let world = World::new(Confirming::new(sys), &spec, props);
        let found = search::bfs(&world, &limits);
        let end = found.violation.iter().find_map(|(p, end)| (*p == PropertyName::MutualExclusion).then_some(*end));
        let path = found.path_to(end.flatten().expect("the model violates mutual exclusion"));
        let actions: Vec<_> = search::replay_path(&world, &path).into_iter().map(|(a, ..)| a).collect();
        let mut system = None;
        let real = Reals { lock: Some(Box::new(AlwaysBusy)), stock: None };
        let c = walk_with(&spec, &world, PropertyName::MutualExclusion, &actions, real, &mut system).unwrap();
        let Outcome::Diverged { step, model, real } = c.outcome else { panic!("{:?}", c.outcome) };
        assert_eq!(step, 1, "the first SET is where they part");
        assert_eq!(model, "→ client-0: OK; lock granted to client-0");
        assert_eq!(real, "→ client-0: (nil): the key exists");
        assert!(c.trace.unwrap().steps[0].detail.ends_with(" · real: SET → (nil)"));
        assert_eq!(system.as_deref(), Some("a server that refuses everything"));
    }
}

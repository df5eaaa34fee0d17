//! The exhaustive engine: a spec in, verdicts and shortest counterexample traces out.

pub mod hash;
pub mod search;
pub mod world;

use serde::Serialize;

use crate::property::{PropertyName, Scope};
use crate::protocol::{Machine, NodeId, Observation, Protocol};
use crate::registry::{self, Visit};
use crate::spec::{Loaded, SpecError, Verdict};
use crate::system::LockSystem;
use crate::trace::{Step, Trace};
use search::{Found, Limits};
use world::{Act, Action, State, World};

#[derive(Clone, Debug, Serialize)]
pub struct PropResult {
    pub property: PropertyName,
    pub verdict: Verdict,
    pub expected: Option<Verdict>,
    #[serde(skip)]
    pub trace: Option<Trace>,
}

impl PropResult {
    pub fn ok(&self) -> bool {
        self.expected.is_none_or(|e| e == self.verdict)
    }
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub spec: String,
    pub name: String,
    pub description: String,
    pub results: Vec<PropResult>,
    pub generated: u64,
    pub unique: u64,
    pub max_depth: u32,
    pub seconds: f64,
    /// False when a budget cut the search short: no `holds` can be claimed.
    pub complete: bool,
    /// The budget that did, in words.
    pub stopped: Option<String>,
    pub participants: Vec<String>,
}

impl Outcome {
    /// Every claim re-derived, and nothing violated that is not claimed.
    pub fn ok(&self) -> bool {
        // A budget that stops the search leaves `unknown`, which matches no claim; a violation
        // found before it stays a violation.
        self.results.iter().all(|r| r.ok() && (r.expected.is_some() || r.verdict != Verdict::Violated))
    }
}

/// The properties judged for a spec, after checking its `expect` names only those.
pub fn properties(spec: &Loaded, tokens: bool) -> Result<Vec<PropertyName>, SpecError> {
    let workload = spec.spec.setup.workload;
    let scope = Scope { workload, tokens, side_effect: spec.spec.setup.side_effect };
    for p in PropertyName::ALL {
        if spec.spec.expect.get(p).is_some() && !p.applies(scope) {
            let why = if p == PropertyName::TokenMonotonic && workload.uses_lock() {
                "this protocol configuration issues no tokens".to_string()
            } else if p == PropertyName::NoDuplicateEffect {
                "no side effect to duplicate: set setup.side_effect = true".to_string()
            } else {
                format!("not judged for workload {}", serde_json::to_string(&workload).unwrap_or_default())
            };
            return Err(SpecError::field(&spec.path, format!("expect.{}", p.name()), why));
        }
    }
    Ok(PropertyName::ALL.into_iter().filter(|p| p.applies(scope)).collect())
}

/// The properties a search judges: those that apply, liveness only where the spec's time judges
/// it, and only the claimed ones with `claimed_only`.
pub fn judged<P: Protocol>(spec: &Loaded, proto: &P, limits: &Limits) -> Result<Vec<PropertyName>, SpecError> {
    let mut props = properties(spec, proto.issues_tokens())?;
    if !spec.judges_liveness() {
        props.retain(|p| !p.is_liveness());
    }
    if limits.claimed_only {
        props.retain(|p| spec.spec.expect.get(*p).is_some());
    }
    Ok(props)
}

struct CheckVisit<'a> {
    spec: &'a Loaded,
    limits: &'a Limits,
}

impl Visit for CheckVisit<'_> {
    type Out = Result<Outcome, SpecError>;
    fn visit<P: Protocol>(self, system: LockSystem<P>) -> Self::Out {
        let props = judged(self.spec, &system.proto, self.limits)?;
        let world = World::new(system, self.spec, props);
        let found = search::bfs(&world, self.limits);
        Ok(outcome(self.spec, &world, &found))
    }
}

pub fn check(spec: &Loaded, limits: &Limits) -> Result<Outcome, SpecError> {
    registry::build(spec, CheckVisit { spec, limits })?
}

pub fn reproduce_command(spec: &Loaded) -> String {
    format!("lockcheck check {}", spec.path.display())
}

fn outcome<M: Machine>(spec: &Loaded, w: &World<M>, found: &Found) -> Outcome {
    let results = found
        .violation
        .iter()
        .map(|&(p, v)| {
            let witnessed = found.witnessed.iter().any(|&(q, seen)| q == p && seen);
            PropResult {
                property: p,
                verdict: match v {
                    Some(_) => Verdict::Violated,
                    None if !found.complete => Verdict::Unknown,
                    None if !witnessed => Verdict::Vacuous,
                    None => Verdict::Holds,
                },
                expected: spec.spec.expect.get(p),
                trace: v.map(|state| trace(spec, w, p, &found.path_to(state))),
            }
        })
        .collect();
    Outcome {
        spec: spec.path.display().to_string(),
        name: spec.name.clone(),
        description: spec.spec.description.clone(),
        results,
        generated: found.generated,
        unique: found.unique,
        max_depth: found.max_depth,
        seconds: found.seconds,
        complete: found.complete,
        stopped: found.stopped.map(|b| b.to_string()),
        participants: w.machine.nodes().iter().map(|n| n.name.clone()).collect(),
    }
}

fn trace<M: Machine>(spec: &Loaded, w: &World<M>, p: PropertyName, path: &[u32]) -> Trace {
    let mut steps: Vec<Step> = search::replay_path(w, path)
        .into_iter()
        .enumerate()
        .map(|(i, (a, after, obs))| describe(w, i as u32 + 1, &a, &after, &obs))
        .collect();
    if steps.is_empty() {
        // Broken before anything happened: show what the nodes did as they started.
        let mut obs = Vec::new();
        w.init_logged(Some(&mut obs));
        let name = |id: NodeId| w.node_name(id).to_string();
        let seen: Vec<String> = obs.iter().map(|o| observation_text(o, &name)).collect();
        let detail = format!("every node starts ⇒ {}", seen.join("; "));
        steps.push(Step {
            step: 1,
            time: w.timed.then_some(0),
            node: "world".into(),
            kind: "start".into(),
            detail,
            observed: true,
        });
    }
    Trace {
        spec: spec.path.display().to_string(),
        engine: "check".into(),
        seed: None,
        property: p.name().into(),
        steps,
        reproduce: reproduce_command(spec),
        plan: None,
        sliced_from: None,
    }
}

pub fn observation_text(o: &Observation, name: &dyn Fn(NodeId) -> String) -> String {
    let tok = |t: &Option<u64>| t.map(|t| format!(" (token {t})")).unwrap_or_default();
    match o {
        Observation::Waiting { client } => format!("{} waits for the lock", name(*client)),
        Observation::ReleasedOther { by, owner } => {
            format!("DELETES the lock of {}, not {}'s own", name(*owner), name(*by))
        }
        Observation::Granted { client, token } => {
            format!("lock granted to {}{}", name(*client), tok(token))
        }
        Observation::Acquired { client, depth: 1 } => {
            format!("{} believes it holds the lock", name(*client))
        }
        Observation::Acquired { client, depth } => {
            format!("{} holds the lock {depth} times", name(*client))
        }
        Observation::NestedDenied { client } => {
            format!("{}'s nested acquire is refused", name(*client))
        }
        Observation::Released { client, depth: 0 } => {
            format!("{} releases the lock", name(*client))
        }
        Observation::Released { client, depth } => {
            format!("{} releases once, still holds {depth}", name(*client))
        }
        Observation::LeaseLapsed { client } => {
            format!("{}'s own lease check ends its hold", name(*client))
        }
        Observation::Lost { client, stops: true } => {
            format!("{}'s lock library reports the lock LOST; it stops", name(*client))
        }
        Observation::Lost { client, stops: false } => {
            format!("{}'s lock library reports the lock LOST; the application carries on", name(*client))
        }
        Observation::Expired { client } => format!("lease of {} expires", name(*client)),
        Observation::Read { client, token, stock } => format!("read by {}{}: stock {stock}", name(*client), tok(token)),
        Observation::WriteAccepted { client, token, value, sale, before } => {
            let lost = if *sale && value >= before { ": a sale is lost" } else { "" };
            format!("ACCEPTS write stock {before} → {value} from {}{}{lost}", name(*client), tok(token))
        }
        Observation::WriteRejected { client, token } => {
            format!("REJECTS request from {}{}", name(*client), tok(token))
        }
        Observation::Decremented { client, stock } => {
            format!("decrements stock to {stock} for {}", name(*client))
        }
        Observation::SoldOut { client } => format!("sold out for {}", name(*client)),
        Observation::RolledBack { client, stock } => {
            format!("{}'s transaction rolled back: stock {stock} again", name(*client))
        }
        Observation::SideEffect { client, item } => {
            format!("{} performs the external side effect for item {item}", name(*client))
        }
        Observation::Done { client } => format!("{} finishes", name(*client)),
    }
}

pub(crate) fn describe<M: Machine>(w: &World<M>, step: u32, a: &Act<M>, after: &State<M>, obs: &[Observation]) -> Step {
    let name = |id: NodeId| w.node_name(id).to_string();
    let node = w.actor(a).map(name).unwrap_or_else(|| "world".into());
    let (kind, mut detail) = match a {
        Action::Deliver(e) if after.nodes[e.dst].state.is_none() => (
            "drop",
            format!(
                "{} is down; lost: {} → {}: {}",
                name(e.dst),
                name(e.src),
                name(e.dst),
                w.machine.show_msg(e.src, &e.msg)
            ),
        ),
        Action::Deliver(e) => {
            ("receive", format!("{} → {}: {}", name(e.src), name(e.dst), w.machine.show_msg(e.src, &e.msg)))
        }
        Action::Fire(_, t) => ("timer", format!("timer {} fires", w.machine.show_timer(t))),
        Action::Tick(None) => ("tick", format!("time passes to {}", after.tick)),
        Action::Tick(Some((id, d))) => {
            let how = match d {
                world::Drift::Slow => "stands still",
                world::Drift::Fast => "gains a tick",
            };
            ("tick", format!("time passes to {}; clock of {} {how} (drift)", after.tick, name(*id)))
        }
        Action::Pause(id) => ("pause", format!("GcPause: {} stops the world", name(*id))),
        Action::Resume(id) => ("resume", format!("{} resumes, unaware it was paused", name(*id))),
        Action::Hang(id) => (
            "hang",
            format!("{}'s application thread is stuck; its lock library's threads run on", name(*id)),
        ),
        Action::Unhang(id) => ("resume", format!("{}'s application thread runs again", name(*id))),
        Action::Crash(id) => ("crash", format!("{} crashes", name(*id))),
        Action::Restart { node, keep_disk } => {
            let how = match (keep_disk, after.nodes[*node].durable.is_some()) {
                (true, true) => "from its disk",
                (true, false) => "empty (nothing was persisted)",
                (false, _) => "empty (disk lost)",
            };
            ("restart", format!("{} restarts {how}", name(*node)))
        }
        Action::Partition(id) if w.budget.one_way => (
            "partition",
            format!("{} is cut off one way: it still hears the others, what it sends is dropped", name(*id)),
        ),
        Action::Partition(id) => {
            ("partition", format!("{} is cut off from the others: what crosses the cut is dropped", name(*id)))
        }
        Action::Heal => ("heal", "the partition heals".into()),
        Action::Linger => ("tick", format!("time passes to {} with the faults left in place", after.tick)),
        Action::HealAll => {
            ("heal", "fault window over: every paused node resumes, stuck applications run again, partitions heal, crashed servers and storage restart".into())
        }
        Action::Delay(e) => (
            "delay",
            format!(
                "network delay holds back {} → {}: {}",
                name(e.src),
                name(e.dst),
                w.machine.show_msg(e.src, &e.msg)
            ),
        ),
        Action::Lose(e) => {
            ("loss", format!("message lost: {} → {}: {}", name(e.src), name(e.dst), w.machine.show_msg(e.src, &e.msg)))
        }
        Action::ClockJump(id) => ("jump", format!("ClockJump: clock of {} jumps {} ticks ahead", name(*id), w.jump)),
    };
    if !obs.is_empty() {
        let o: Vec<_> = obs.iter().map(|o| observation_text(o, &name)).collect();
        detail.push_str(&format!(" ⇒ {}", o.join("; ")));
    }
    Step {
        step,
        time: w.timed.then_some(i64::from(after.tick)),
        node,
        kind: kind.into(),
        detail,
        observed: !obs.is_empty(),
    }
}

//! A fault plan: every fault of one run, drawn from the run's seed before it starts. A plan is data:
//! it is printed, stored in traces, replayed as is, and shrunk by dropping or shortening faults.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::spec::{LoadedSim, Range};
use crate::protocol::{NodeId, NodeInfo, NodeKind};
use crate::spec::Targets;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// A stop-the-world pause: the node's loop is frozen, its socket queues, its timers wait.
    Pause { node: NodeId, at_ms: u64, for_ms: u64 },
    /// The client's application thread is stuck; its lock library's threads run on.
    Hang { node: NodeId, at_ms: u64, for_ms: u64 },
    /// The process dies; a server comes back after `restart_after_ms`, with or without its disk.
    Crash { node: NodeId, at_ms: u64, restart_after_ms: Option<u64>, lose_disk: bool },
    /// The node is cut off from every other node (one way: it still hears them).
    Partition { node: NodeId, at_ms: u64, for_ms: u64, one_way: bool },
    /// The node's clock steps forward.
    ClockJump { node: NodeId, at_ms: u64, by_ms: u64 },
    /// The network holds every message to and from the node, then delivers them late (turmoil's
    /// hold/release): a network delay, catalog #2.
    Hold { node: NodeId, at_ms: u64, for_ms: u64 },
}

impl Fault {
    pub fn at(&self) -> u64 {
        match self {
            Fault::Pause { at_ms, .. }
            | Fault::Hang { at_ms, .. }
            | Fault::Crash { at_ms, .. }
            | Fault::Partition { at_ms, .. }
            | Fault::ClockJump { at_ms, .. }
            | Fault::Hold { at_ms, .. } => *at_ms,
        }
    }

    /// How long the fault lasts; `None` for a clock jump (a step: nothing ends) and a crash for good.
    pub fn length(&self) -> Option<u64> {
        match *self {
            Fault::Pause { for_ms, .. }
            | Fault::Hang { for_ms, .. }
            | Fault::Partition { for_ms, .. }
            | Fault::Hold { for_ms, .. } => Some(for_ms),
            Fault::Crash { restart_after_ms, .. } => restart_after_ms,
            Fault::ClockJump { .. } => None,
        }
    }

    pub fn node(&self) -> NodeId {
        match self {
            Fault::Pause { node, .. }
            | Fault::Hang { node, .. }
            | Fault::Crash { node, .. }
            | Fault::Partition { node, .. }
            | Fault::ClockJump { node, .. }
            | Fault::Hold { node, .. } => *node,
        }
    }

    pub fn describe(&self, names: &[String]) -> String {
        match self {
            Fault::Pause { node, at_ms, for_ms } => format!("at {at_ms} ms GcPause {} for {for_ms} ms", names[*node]),
            Fault::Hang { node, at_ms, for_ms } => {
                format!("at {at_ms} ms the application thread of {} hangs for {for_ms} ms", names[*node])
            }
            Fault::Crash { node, at_ms, restart_after_ms, lose_disk } => match restart_after_ms {
                Some(r) => format!(
                    "at {at_ms} ms crash {}, restart {r} ms later{}",
                    names[*node],
                    if *lose_disk { " without its disk" } else { "" }
                ),
                None => format!("at {at_ms} ms crash {} for good", names[*node]),
            },
            Fault::Partition { node, at_ms, for_ms, one_way } => {
                format!(
                    "at {at_ms} ms {}partition {} for {for_ms} ms",
                    if *one_way { "one-way " } else { "" },
                    names[*node]
                )
            }
            Fault::ClockJump { node, at_ms, by_ms } => {
                format!("at {at_ms} ms ClockJump {} +{by_ms} ms", names[*node])
            }
            Fault::Hold { node, at_ms, for_ms } => {
                format!("at {at_ms} ms hold messages of {} for {for_ms} ms", names[*node])
            }
        }
    }

    /// The same fault, shorter (for shrinking); `None` when it cannot get shorter.
    pub fn halved(&self) -> Option<Fault> {
        let half = |x: u64| (x > 1).then_some(x / 2);
        Some(match self.clone() {
            Fault::Pause { node, at_ms, for_ms } => Fault::Pause { node, at_ms, for_ms: half(for_ms)? },
            Fault::Hang { node, at_ms, for_ms } => Fault::Hang { node, at_ms, for_ms: half(for_ms)? },
            Fault::Partition { node, at_ms, for_ms, one_way } => {
                Fault::Partition { node, at_ms, for_ms: half(for_ms)?, one_way }
            }
            Fault::ClockJump { node, at_ms, by_ms } => Fault::ClockJump { node, at_ms, by_ms: half(by_ms)? },
            Fault::Hold { node, at_ms, for_ms } => Fault::Hold { node, at_ms, for_ms: half(for_ms)? },
            Fault::Crash { node, at_ms, restart_after_ms: Some(r), lose_disk } => {
                Fault::Crash { node, at_ms, restart_after_ms: Some(half(r)?), lose_disk }
            }
            Fault::Crash { .. } => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Clock rate of each node, in parts per million off true time.
    pub drift_ppm: Vec<i64>,
    /// Faults in time order.
    pub faults: Vec<Fault>,
    /// Seed handed to turmoil (latencies and its internal choices).
    #[serde(with = "crate::trace::seed_text")]
    pub turmoil_seed: u64,
    /// Seed of the message-loss draws.
    #[serde(with = "crate::trace::seed_text")]
    pub loss_seed: u64,
}

impl Plan {
    /// Checks a plan read from a trace against its scenario, which has `nodes` and a fault window
    /// of `window_ms` inside which every fault starts, as a drawn one does: `Err((field, why))`.
    pub fn validate(&self, nodes: usize, window_ms: u64) -> Result<(), (String, String)> {
        if self.drift_ppm.len() != nodes {
            let why = format!("has {} entries for {nodes} nodes", self.drift_ppm.len());
            return Err(("plan.drift_ppm".into(), why));
        }
        if let Some((i, d)) = self.drift_ppm.iter().enumerate().find(|(_, d)| d.unsigned_abs() >= 1_000_000) {
            return Err((format!("plan.drift_ppm[{i}]"), format!("{d} is not a clock rate (|ppm| < 1000000)")));
        }
        let limit = super::spec::MAX_SIM_MS;
        let window = window_ms.max(1);
        for (i, f) in self.faults.iter().enumerate() {
            let (node, spans): (NodeId, Vec<u64>) = match f {
                Fault::Pause { node, at_ms, for_ms }
                | Fault::Hang { node, at_ms, for_ms }
                | Fault::Partition { node, at_ms, for_ms, .. }
                | Fault::Hold { node, at_ms, for_ms } => (*node, vec![*at_ms, *for_ms]),
                Fault::Crash { node, at_ms, restart_after_ms, .. } => {
                    (*node, vec![*at_ms, restart_after_ms.unwrap_or_default()])
                }
                Fault::ClockJump { node, at_ms, by_ms } => (*node, vec![*at_ms, *by_ms]),
            };
            if node >= nodes {
                return Err((
                    format!("plan.faults[{i}].node"),
                    format!("{node} names no node (the scenario has {nodes})"),
                ));
            }
            if spans.iter().any(|ms| *ms > limit) {
                return Err((format!("plan.faults[{i}]"), format!("a time beyond the {limit} ms limit")));
            }
            if f.at() >= window {
                let why = format!("{} ms is not inside the scenario's fault window of {window} ms", f.at());
                return Err((format!("plan.faults[{i}].at_ms"), why));
            }
        }
        Ok(())
    }

    pub fn describe(&self, names: &[String]) -> Vec<String> {
        let mut out: Vec<String> = self.faults.iter().map(|f| f.describe(names)).collect();
        for (i, d) in self.drift_ppm.iter().enumerate().filter(|(_, d)| **d != 0) {
            out.push(format!("clock of {} runs {d:+} ppm", names[i]));
        }
        out
    }
}

fn draw(rng: &mut ChaCha8Rng, Range(a, b): Range) -> u64 {
    rng.random_range(a..=b)
}

fn candidates(nodes: &[NodeInfo], t: Targets) -> Vec<NodeId> {
    (0..nodes.len()).filter(|&i| t.matches(nodes[i].kind)).collect()
}

/// Everything random about run `seed`, drawn in a fixed order from one ChaCha8 stream.
pub fn draw_plan(sim: &LoadedSim, nodes: &[NodeInfo], seed: u64) -> Plan {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (s, f) = (&sim.spec, &sim.spec.faults);
    let window = s.time.fault_window_ms.max(1);
    let ppm = s.time.drift_ppm as i64;
    let drift_ppm = nodes.iter().map(|_| if ppm == 0 { 0 } else { rng.random_range(-ppm..=ppm) }).collect();
    let mut faults = Vec::new();
    let pick_from = |rng: &mut ChaCha8Rng, c: &[NodeId]| (!c.is_empty()).then(|| c[rng.random_range(0..c.len())]);
    let pick = |rng: &mut ChaCha8Rng, t: Targets| pick_from(rng, &candidates(nodes, t));
    for _ in 0..rng.random_range(0..=f.pauses) {
        if let Some(node) = pick(&mut rng, f.pause_targets) {
            faults.push(Fault::Pause { node, at_ms: rng.random_range(0..window), for_ms: draw(&mut rng, f.pause_ms) });
        }
    }
    for _ in 0..rng.random_range(0..=f.crashes) {
        if let Some(node) = pick(&mut rng, f.crash_targets) {
            let at_ms = rng.random_range(0..window);
            let restart_after_ms = (nodes[node].kind != NodeKind::Client).then(|| draw(&mut rng, f.restart_after_ms));
            faults.push(Fault::Crash { node, at_ms, restart_after_ms, lose_disk: f.restarts_lose_state });
        }
    }
    for _ in 0..rng.random_range(0..=f.partitions) {
        if let Some(node) = pick(&mut rng, Targets::Any) {
            let at_ms = rng.random_range(0..window);
            faults.push(Fault::Partition { node, at_ms, for_ms: draw(&mut rng, f.partition_ms), one_way: f.one_way });
        }
    }
    for _ in 0..rng.random_range(0..=f.holds) {
        if let Some(node) = pick(&mut rng, Targets::Any) {
            faults.push(Fault::Hold { node, at_ms: rng.random_range(0..window), for_ms: draw(&mut rng, f.hold_ms) });
        }
    }
    let jumpable: Vec<NodeId> =
        candidates(nodes, f.jump_targets).into_iter().filter(|&i| nodes[i].wall_clock).collect();
    for _ in 0..rng.random_range(0..=f.clock_jumps) {
        if let Some(node) = pick_from(&mut rng, &jumpable) {
            faults.push(Fault::ClockJump {
                node,
                at_ms: rng.random_range(0..window),
                by_ms: draw(&mut rng, f.jump_ms),
            });
        }
    }
    // Drawn last, and only when asked for, so that plans of scenarios without hangs stay as they were.
    if f.hangs > 0 {
        for _ in 0..rng.random_range(0..=f.hangs) {
            if let Some(node) = pick(&mut rng, Targets::Clients) {
                faults.push(Fault::Hang {
                    node,
                    at_ms: rng.random_range(0..window),
                    for_ms: draw(&mut rng, f.hang_ms),
                });
            }
        }
    }
    faults.sort_by_key(|f| (f.at(), f.clone()));
    Plan { drift_ppm, faults, turmoil_seed: rng.random(), loss_seed: rng.random() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::spec::{MAX_SIM_MS, test_sim};
    use std::collections::BTreeMap;

    /// A server on a wall clock, one on a monotonic clock, the storage and three clients.
    fn nodes() -> Vec<NodeInfo> {
        let node = |name: &str, kind, wall_clock| NodeInfo { name: name.into(), kind, wall_clock };
        vec![
            node("s1", NodeKind::Server, true),
            node("s2", NodeKind::Server, false),
            node("storage", NodeKind::Storage, false),
            node("c1", NodeKind::Client, false),
            node("c2", NodeKind::Client, false),
            node("c3", NodeKind::Client, false),
        ]
    }

    fn sim(edits: &[(&str, toml::Value)]) -> LoadedSim {
        test_sim(edits).expect("a valid test scenario")
    }

    #[test]
    fn halving_a_fault_shortens_it_down_to_one_millisecond() {
        let pause = |for_ms| Fault::Pause { node: 1, at_ms: 7, for_ms };
        assert_eq!(pause(9).halved(), Some(pause(4)));
        assert_eq!(pause(2).halved(), Some(pause(1)));
        assert_eq!(pause(1).halved(), None);
        let hang = |for_ms| Fault::Hang { node: 3, at_ms: 7, for_ms };
        assert_eq!(hang(9).halved(), Some(hang(4)));
        let cut = |for_ms| Fault::Partition { node: 0, at_ms: 7, for_ms, one_way: true };
        assert_eq!(cut(9).halved(), Some(cut(4)));
        let hold = |for_ms| Fault::Hold { node: 0, at_ms: 7, for_ms };
        assert_eq!(hold(9).halved(), Some(hold(4)));
        let jump = |by_ms| Fault::ClockJump { node: 0, at_ms: 7, by_ms };
        assert_eq!(jump(9).halved(), Some(jump(4)));
        let crash = |restart_after_ms| Fault::Crash { node: 0, at_ms: 7, restart_after_ms, lose_disk: true };
        assert_eq!(crash(Some(9)).halved(), Some(crash(Some(4))));
        assert_eq!(crash(Some(1)).halved(), None);
        assert_eq!(crash(None).halved(), None, "a crash for good has no length to shorten");
    }

    #[test]
    fn a_plan_read_from_a_trace_is_checked_against_its_scenarios_nodes_time_limit_and_fault_window() {
        let field = |drift_ppm: Vec<i64>, faults: Vec<Fault>| {
            let plan = Plan { drift_ppm, faults, turmoil_seed: 0, loss_seed: 0 };
            plan.validate(3, MAX_SIM_MS + 1).err().map(|(field, _)| field)
        };
        assert_eq!(field(vec![0; 2], vec![]).as_deref(), Some("plan.drift_ppm"));
        assert_eq!(field(vec![999_999, -999_999, 0], vec![]), None);
        assert_eq!(field(vec![0, -1_000_000, 0], vec![]).as_deref(), Some("plan.drift_ppm[1]"));
        let at_the_limit = vec![
            Fault::Pause { node: 2, at_ms: MAX_SIM_MS, for_ms: MAX_SIM_MS },
            Fault::Crash { node: 0, at_ms: 0, restart_after_ms: Some(MAX_SIM_MS), lose_disk: false },
            Fault::Crash { node: 1, at_ms: 0, restart_after_ms: None, lose_disk: false },
            Fault::ClockJump { node: 1, at_ms: 0, by_ms: MAX_SIM_MS },
        ];
        assert_eq!(field(vec![0; 3], at_the_limit.clone()), None);
        let with = |fault| [at_the_limit.clone(), vec![fault]].concat();
        let no_node = Fault::Hold { node: 3, at_ms: 0, for_ms: 1 };
        assert_eq!(field(vec![0; 3], with(no_node)).as_deref(), Some("plan.faults[4].node"));
        let too_late = Fault::Hang { node: 0, at_ms: MAX_SIM_MS + 1, for_ms: 1 };
        assert_eq!(field(vec![0; 3], with(too_late)).as_deref(), Some("plan.faults[4]"));
        let too_long = Fault::Crash { node: 0, at_ms: 0, restart_after_ms: Some(MAX_SIM_MS + 1), lose_disk: false };
        assert_eq!(field(vec![0; 3], with(too_long)).as_deref(), Some("plan.faults[4]"));
        let at_99 = |window_ms| {
            let plan = Plan {
                drift_ppm: vec![0; 3],
                faults: vec![Fault::Pause { node: 0, at_ms: 99, for_ms: 1 }],
                turmoil_seed: 0,
                loss_seed: 0,
            };
            plan.validate(3, window_ms).err().map(|(field, _)| field)
        };
        assert_eq!(at_99(100), None);
        assert_eq!(at_99(99).as_deref(), Some("plan.faults[0].at_ms"), "a fault starts inside the fault window");
    }

    #[test]
    fn every_clock_drifts_within_the_scenarios_bound_both_ways() {
        let drifts = |sim: &LoadedSim| -> Vec<i64> {
            (0..50).flat_map(|seed| draw_plan(sim, &nodes(), seed).drift_ppm).collect()
        };
        let drifting = drifts(&sim(&[("time.drift_ppm", 100.into())]));
        assert_eq!(drifting.len(), 50 * nodes().len());
        assert!(drifting.iter().all(|d| d.abs() <= 100), "{drifting:?}");
        assert!(drifting.iter().any(|d| *d < 0) && drifting.iter().any(|d| *d > 0), "{drifting:?}");
        assert!(drifts(&sim(&[])).iter().all(|d| *d == 0));
    }

    /// Kind, node, instant and length of a fault.
    fn parts(f: &Fault) -> (&'static str, NodeId, u64, u64) {
        match *f {
            Fault::Pause { node, at_ms, for_ms } => ("pause", node, at_ms, for_ms),
            Fault::Hang { node, at_ms, for_ms } => ("hang", node, at_ms, for_ms),
            Fault::Crash { node, at_ms, restart_after_ms, .. } => ("crash", node, at_ms, restart_after_ms.unwrap_or(0)),
            Fault::Partition { node, at_ms, for_ms, .. } => ("partition", node, at_ms, for_ms),
            Fault::ClockJump { node, at_ms, by_ms } => ("clock jump", node, at_ms, by_ms),
            Fault::Hold { node, at_ms, for_ms } => ("hold", node, at_ms, for_ms),
        }
    }

    #[test]
    fn every_fault_is_drawn_up_to_its_count_on_its_targets_inside_the_window() {
        let edits = ["pauses", "hangs", "crashes", "partitions", "holds", "clock_jumps"].map(|c| format!("faults.{c}"));
        let edits: Vec<(&str, toml::Value)> = edits.iter().map(|f| (f.as_str(), 2.into())).collect();
        let sim = sim(&edits);
        let nodes = nodes();
        let mut most: BTreeMap<&str, usize> = BTreeMap::new();
        for seed in 0..300 {
            let plan = draw_plan(&sim, &nodes, seed);
            let mut count: BTreeMap<&str, usize> = BTreeMap::new();
            let mut last = 0;
            for f in &plan.faults {
                let (kind, node, at_ms, len) = parts(f);
                assert!(f.at() == at_ms && (last..100).contains(&at_ms), "{f:?} at {last}.. of a 100 ms window");
                last = at_ms;
                let (targets, lengths) = match kind {
                    "pause" => (Targets::Clients, 50..=500),
                    "hang" => (Targets::Clients, 50..=500),
                    "crash" if nodes[node].kind == NodeKind::Client => (Targets::Clients, 0..=0),
                    "crash" => (Targets::Servers, 10..=200),
                    "clock jump" => (Targets::Servers, 100..=1000),
                    _ => (Targets::Any, 50..=500),
                };
                assert!(targets.matches(nodes[node].kind) && lengths.contains(&len), "{f:?}");
                assert!(kind != "clock jump" || nodes[node].wall_clock, "{f:?}: a monotonic clock does not jump");
                *count.entry(kind).or_default() += 1;
            }
            for (kind, n) in count {
                assert!(n <= 2, "{n} of {kind} in seed {seed}");
                let m = most.entry(kind).or_default();
                *m = (*m).max(n);
            }
        }
        let every = ["clock jump", "crash", "hang", "hold", "partition", "pause"];
        assert_eq!(most, every.into_iter().map(|k| (k, 2)).collect());
    }

    #[test]
    fn plans_are_pinned_so_a_seed_replays_the_same_run_on_every_machine() {
        // A changed draw order, or a rand_chacha whose stream moved, changes every stored seed's run.
        let edits = [("faults.pauses", 2.into()), ("faults.crashes", 1.into()), ("time.drift_ppm", 100.into())];
        let plan = draw_plan(&sim(&edits), &nodes(), 13);
        let pinned = r#"{"drift_ppm":[-33,-85,-41,-48,54,45],"faults":[{"fault":"pause","node":5,"at_ms":17,"for_ms":357},{"fault":"pause","node":3,"at_ms":77,"for_ms":345},{"fault":"crash","node":4,"at_ms":87,"restart_after_ms":null,"lose_disk":false}],"turmoil_seed":"2423611022947792402","loss_seed":"10574610796646370913"}"#;
        assert_eq!(serde_json::to_string(&plan).unwrap(), pinned);
    }

    #[test]
    fn a_clock_jump_never_targets_a_server_that_times_out_on_a_monotonic_clock() {
        let mut sim =
            crate::sim::spec::load_sim(std::path::Path::new("sims/zookeeper_fenced_session_expiry.toml")).unwrap();
        sim.spec.faults.clock_jumps = 3;
        sim.spec.faults.jump_targets = Targets::Any;
        let env = sim.as_model().env();
        let zk = crate::protocol::zookeeper::build(Default::default(), &env).unwrap();
        let sys = crate::system::LockSystem::new(zk, env);
        let nodes = crate::protocol::Machine::nodes(&sys);
        let jumped: Vec<NodeKind> = (0..200)
            .flat_map(|seed| draw_plan(&sim, nodes, seed).faults)
            .filter_map(|f| if let Fault::ClockJump { node, .. } = f { Some(nodes[node].kind) } else { None })
            .collect();
        assert!(jumped.contains(&NodeKind::Client), "clients' clocks still jump: {jumped:?}");
        assert!(!jumped.contains(&NodeKind::Server), "ZooKeeper's sessions run on a monotonic clock");
    }
}

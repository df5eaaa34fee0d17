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
    /// Checks a plan read from a trace against the `nodes` its scenario has: `Err((field, why))`.
    pub fn validate(&self, nodes: usize) -> Result<(), (String, String)> {
        if self.drift_ppm.len() != nodes {
            let why = format!("has {} entries for {nodes} nodes", self.drift_ppm.len());
            return Err(("plan.drift_ppm".into(), why));
        }
        if let Some((i, d)) = self.drift_ppm.iter().enumerate().find(|(_, d)| d.unsigned_abs() >= 1_000_000) {
            return Err((format!("plan.drift_ppm[{i}]"), format!("{d} is not a clock rate (|ppm| < 1000000)")));
        }
        let limit = super::spec::MAX_SIM_MS;
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

//! Witnesses: evidence that every fault and every verdict matters.
//!
//! A checker whose partitions cut nothing still passes every spec that does not depend on
//! partitions. So each fault kind has a witness spec: its `witness` list names the fault settings
//! its violations depend on, and its *twin* (the same file with one of those settings turned off,
//! derived here, never a second copy) must hold at least one property the spec claims violated,
//! with the property's `sometimes` partner seen, and still hold every property claimed to hold
//! (fewer faults, fewer behaviours). A fault that stops working then breaks the spec's own
//! `violated` claim; a violation that comes from somewhere else breaks the twin.

use std::path::PathBuf;

use crate::check::search::Limits;
use crate::property::PropertyName;
use crate::sim::spec::{LoadedSim, load_sim_without};
use crate::spec::{Expect, Loaded, SpecError, Verdict, load_model_without};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Check,
    Sim,
}

/// Which specs naming a field witness a kind: some kinds share a field and differ by target.
#[derive(Clone, Copy, Debug)]
enum When {
    Always,
    Storage,
    NotStorage,
    TwoWay,
    OneWay,
    /// A crash of a replicated server: Sentinel fails over.
    Replicated,
}

/// A fault kind, as one engine offers it.
#[derive(Clone, Copy, Debug)]
pub struct FaultKind {
    pub engine: Engine,
    pub name: &'static str,
    /// The setting a witness turns off.
    pub field: &'static str,
    when: When,
}

const fn kind(engine: Engine, name: &'static str, field: &'static str, when: When) -> FaultKind {
    FaultKind { engine, name, field, when }
}

/// Every fault either engine can inject. A fault added to an engine belongs here, and then needs
/// a witness (the `witness` test fails until one exists).
pub const KINDS: [FaultKind; 24] = [
    kind(Engine::Check, "pause", "faults.pauses", When::Always),
    kind(Engine::Check, "hang", "faults.hangs", When::Always),
    kind(Engine::Check, "crash and restart", "faults.crashes", When::NotStorage),
    kind(Engine::Check, "failover", "faults.crashes", When::Replicated),
    kind(Engine::Check, "restart losing the disk", "faults.restarts_lose_state", When::NotStorage),
    kind(Engine::Check, "storage crash", "faults.crashes", When::Storage),
    kind(Engine::Check, "storage disk lost", "faults.restarts_lose_state", When::Storage),
    kind(Engine::Check, "partition", "faults.partitions", When::TwoWay),
    kind(Engine::Check, "one-way partition", "faults.partitions", When::OneWay),
    kind(Engine::Check, "message loss", "faults.message_loss", When::Always),
    kind(Engine::Check, "delay", "faults.delays", When::Always),
    kind(Engine::Check, "clock jump", "faults.clock_jumps", When::Always),
    kind(Engine::Check, "clock drift", "time.drift", When::Always),
    kind(Engine::Sim, "pause", "faults.pauses", When::Always),
    kind(Engine::Sim, "hang", "faults.hangs", When::Always),
    kind(Engine::Sim, "crash and restart", "faults.crashes", When::NotStorage),
    kind(Engine::Sim, "failover", "faults.crashes", When::Replicated),
    kind(Engine::Sim, "storage disk lost", "faults.restarts_lose_state", When::Storage),
    kind(Engine::Sim, "partition", "faults.partitions", When::TwoWay),
    kind(Engine::Sim, "one-way partition", "faults.partitions", When::OneWay),
    kind(Engine::Sim, "message loss", "network.loss", When::Always),
    kind(Engine::Sim, "hold (network delay)", "faults.holds", When::Always),
    kind(Engine::Sim, "clock jump", "faults.clock_jumps", When::Always),
    kind(Engine::Sim, "clock drift", "time.drift_ppm", When::Always),
];

/// What a witness test needs of a spec file, whichever engine it is for.
#[derive(Clone, Debug)]
pub struct SpecFacts {
    pub path: PathBuf,
    pub engine: Engine,
    pub witness: Vec<String>,
    pub expect: Expect,
    storage: bool,
    one_way: bool,
    replicated: bool,
}

/// Whether a spec's protocol options run replicas (the `replicas` knob).
fn replicated(options: &toml::Table) -> bool {
    options.get("replicas").and_then(toml::Value::as_integer).is_some_and(|n| n > 0)
}

impl SpecFacts {
    pub fn of_model(l: &Loaded) -> Self {
        let f = &l.spec.faults;
        SpecFacts {
            path: l.path.clone(),
            engine: Engine::Check,
            witness: l.spec.witness.clone(),
            expect: l.spec.expect.clone(),
            storage: f.crash_targets == crate::spec::Targets::Storage,
            one_way: f.one_way,
            replicated: replicated(&l.spec.options),
        }
    }

    pub fn of_sim(l: &LoadedSim) -> Self {
        let f = &l.spec.faults;
        SpecFacts {
            path: l.path.clone(),
            engine: Engine::Sim,
            witness: l.spec.witness.clone(),
            expect: l.spec.expect.clone(),
            storage: f.crash_targets == crate::spec::Targets::Storage,
            one_way: f.one_way,
            replicated: replicated(&l.spec.options),
        }
    }

    pub fn witnesses(&self, k: &FaultKind) -> bool {
        self.engine == k.engine
            && self.witness.iter().any(|w| w == k.field)
            && match k.when {
                When::Always => true,
                When::Storage => self.storage,
                When::NotStorage => !self.storage && !self.replicated,
                When::TwoWay => !self.one_way,
                When::OneWay => self.one_way,
                When::Replicated => self.replicated && !self.storage,
            }
    }
}

/// The twin's verdict on each property its spec makes a claim about, with that claim.
#[derive(Clone, Debug)]
pub struct Twin {
    pub field: String,
    pub verdicts: Vec<(PropertyName, Verdict, Verdict)>,
}

impl Twin {
    pub fn ok(&self) -> bool {
        let fixed = self.verdicts.iter().any(|&(_, claim, v)| claim == Verdict::Violated && v == Verdict::Holds);
        let kept = self.verdicts.iter().all(|&(_, claim, v)| claim == Verdict::Violated || v.passes());
        fixed && kept
    }

    pub fn describe(&self) -> String {
        let v: Vec<String> = self
            .verdicts
            .iter()
            .filter(|(_, claim, _)| *claim == Verdict::Violated)
            .map(|(p, _, v)| format!("{} {v}", p.name()))
            .collect();
        let mark = if self.ok() { "" } else { "  <-- MISMATCH (a claimed violation should go away)" };
        format!("witness {} turned off: {}{mark}", self.field, v.join(", "))
    }
}

fn twin(field: &str, expect: &Expect, judged: impl Fn(PropertyName) -> Option<Verdict>) -> Twin {
    let verdicts = expect.0.iter().map(|(p, claim)| (*p, *claim, judged(*p).unwrap_or(Verdict::Unknown))).collect();
    Twin { field: field.to_string(), verdicts }
}

/// Model-checks each twin of a witness spec.
pub fn model_twins(spec: &Loaded, limits: &Limits) -> Result<Vec<Twin>, SpecError> {
    let mut out = Vec::new();
    for field in &spec.spec.witness {
        let o = crate::check::check(&load_model_without(&spec.path, field)?, limits)?;
        let judged = |p| o.results.iter().find(|r| r.property == p).map(|r| r.verdict);
        out.push(twin(field, &spec.spec.expect, judged));
    }
    Ok(out)
}

/// Simulates each twin of a witness scenario over the scenario's own sweep, or its first
/// `max_seeds` seeds.
pub fn sim_twins(sim: &LoadedSim, opts: &crate::sim::Options, max_seeds: u64) -> Result<Vec<Twin>, SpecError> {
    let mut out = Vec::new();
    for field in &sim.spec.witness {
        let t = load_sim_without(&sim.path, field)?;
        let seeds = crate::sim::Seeds { from: 0, to: t.spec.seeds.min(max_seeds), shard: None };
        let (o, _) = crate::sim::simulate(&t, &seeds, opts, None)?;
        let judged = |p| o.results.iter().find(|r| r.property == p).map(|r| r.verdict);
        out.push(twin(field, &sim.spec.expect, judged));
    }
    Ok(out)
}

/// For `lockcheck list`: per fault kind, the specs that witness it; per property, the specs that
/// claim it violated, holding and vacuous.
pub fn table(specs: &[SpecFacts]) -> Vec<String> {
    let name = |f: &SpecFacts| f.path.display().to_string();
    let mut lines = vec!["faults (each with a spec whose violation goes away when the fault is off):".to_string()];
    for k in &KINDS {
        let by: Vec<String> = specs.iter().filter(|s| s.witnesses(k)).map(name).collect();
        let engine = if k.engine == Engine::Check { "check" } else { "sim" };
        let shown = if by.is_empty() { "NO WITNESS".to_string() } else { by.join(", ") };
        lines.push(format!("  {engine:<5} {:<24} {:<28} {shown}", k.name, k.field));
    }
    lines.push("properties (a spec that violates it, one where it holds non-vacuously, one vacuous):".into());
    for p in PropertyName::ALL {
        let first =
            |v: Verdict| specs.iter().find(|s| s.expect.get(p) == Some(v)).map(name).unwrap_or_else(|| "-".into());
        lines.push(format!(
            "  {:<17} violated: {}  holds: {}  vacuous: {}",
            p.name(),
            first(Verdict::Violated),
            first(Verdict::Holds),
            first(Verdict::Vacuous)
        ));
    }
    lines
}

//! Simulation scenarios (`sims/*.toml`): the same protocol, options, setup and claims as a model
//! spec, plus a network, fault rates and distributions, durations and a seed range.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::spec::{
    Expect, Setup, SpecError, Targets, Verdict, clients, from_table, read_table, servers, validate_witness, without,
};

/// `[a, b]` in the file: a value drawn uniformly from the closed range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Range(pub u64, pub u64);

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimTime {
    /// Simulated milliseconds per protocol tick (the unit of TTLs and retry intervals).
    #[serde(default = "ten")]
    pub tick_ms: u64,
    /// turmoil's step (ms): simulated time advances in these; finer costs proportionally more.
    #[serde(default = "one_ms")]
    pub step_ms: u64,
    pub ttl_ticks: i64,
    /// Faults happen before this instant (ms); then the world heals.
    pub fault_window_ms: u64,
    /// After the fault window every live client must finish within this long, else `deadlock_free`
    /// is violated.
    pub settle_ms: u64,
    /// Every node's clock runs at a rate drawn from 1 ± drift_ppm/10⁶.
    #[serde(default)]
    pub drift_ppm: u64,
}

fn ten() -> u64 {
    10
}
fn one_ms() -> u64 {
    1
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// One-way latency of each message, drawn per message by turmoil (ms).
    #[serde(default = "latency")]
    pub latency_ms: Range,
    /// Probability that any one message is lost.
    #[serde(default)]
    pub loss: f64,
}

/// An absent table means what an empty one means: every field at its default.
fn empty_table<T: serde::de::DeserializeOwned>() -> T {
    toml::Table::new().try_into().expect("every field has a default")
}

impl Default for Network {
    fn default() -> Self {
        empty_table()
    }
}

impl Default for SimFaults {
    fn default() -> Self {
        empty_table()
    }
}

fn latency() -> Range {
    Range(1, 5)
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimFaults {
    /// Up to this many stop-the-world pauses per run (the count is drawn from 0..=n).
    #[serde(default)]
    pub pauses: u8,
    #[serde(default = "pause_len")]
    pub pause_ms: Range,
    #[serde(default = "clients")]
    pub pause_targets: Targets,
    /// Up to this many hangs of a client's application thread (its lock library runs on).
    #[serde(default)]
    pub hangs: u8,
    #[serde(default = "pause_len")]
    pub hang_ms: Range,
    #[serde(default)]
    pub crashes: u8,
    #[serde(default)]
    pub crash_targets: Targets,
    /// A crashed server comes back this long after (clients stay dead).
    #[serde(default = "restart")]
    pub restart_after_ms: Range,
    /// Whether a restart loses what the server persisted.
    #[serde(default)]
    pub restarts_lose_state: bool,
    #[serde(default)]
    pub partitions: u8,
    #[serde(default = "pause_len")]
    pub partition_ms: Range,
    /// One-way partitions: the node hears but is not heard.
    #[serde(default)]
    pub one_way: bool,
    /// Network delays: every message to and from one node held back, then delivered.
    #[serde(default)]
    pub holds: u8,
    #[serde(default = "pause_len")]
    pub hold_ms: Range,
    #[serde(default)]
    pub clock_jumps: u8,
    #[serde(default = "jump")]
    pub jump_ms: Range,
    #[serde(default = "servers")]
    pub jump_targets: Targets,
}

fn pause_len() -> Range {
    Range(50, 500)
}
fn restart() -> Range {
    Range(10, 200)
}
fn jump() -> Range {
    Range(100, 1000)
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimSpec {
    pub description: String,
    pub protocol: String,
    #[serde(default)]
    pub options: toml::Table,
    pub setup: Setup,
    pub time: SimTime,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub faults: SimFaults,
    /// Seeds `0..seeds` are the scenario's default sweep.
    pub seeds: u64,
    #[serde(default)]
    pub expect: Expect,
    /// Fault settings this scenario's violations depend on: with any one of them set to 0 (or
    /// false), some claimed violation holds over the whole sweep, and something exercised it.
    #[serde(default)]
    pub witness: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct LoadedSim {
    pub name: String,
    pub path: PathBuf,
    pub spec: SimSpec,
}

impl LoadedSim {
    /// As a model-check spec, so the registry can build the protocol the same way for both engines.
    pub fn as_model(&self) -> crate::spec::Loaded {
        let s = &self.spec;
        crate::spec::Loaded {
            name: self.name.clone(),
            path: self.path.clone(),
            spec: crate::spec::ModelSpec {
                description: s.description.clone(),
                protocol: s.protocol.clone(),
                options: s.options.clone(),
                setup: s.setup.clone(),
                time: crate::spec::TimeCfg {
                    mode: crate::spec::TimeMode::Discrete,
                    ttl_ticks: Some(s.time.ttl_ticks),
                    horizon_ticks: None,
                    drift: 0,
                    fault_window: None,
                    jump_ticks: None,
                },
                faults: Default::default(),
                expect: s.expect.clone(),
                witness: Vec::new(),
            },
        }
    }

    pub fn claims(&self) -> impl Iterator<Item = (crate::property::PropertyName, Verdict)> + '_ {
        crate::property::PropertyName::ALL.into_iter().filter_map(|p| self.spec.expect.get(p).map(|v| (p, v)))
    }
}

pub const MAX_SEEDS: u64 = 1_000_000;
pub const MAX_SIM_MS: u64 = 600_000;

pub fn load_sim(path: &Path) -> Result<LoadedSim, SpecError> {
    let table = read_table(path)?;
    let l = sim_from_table(path, &table)?;
    validate_witness(path, &table, &l.spec.witness, &l.spec.expect)?;
    Ok(l)
}

/// A scenario from an already parsed table (validated as a file would be), named after `path`.
pub fn sim_from_table(path: &Path, table: &toml::Table) -> Result<LoadedSim, SpecError> {
    let spec: SimSpec = from_table(path, toml::Value::Table(table.clone()))?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("sim").to_string();
    let l = LoadedSim { name, path: path.to_path_buf(), spec };
    validate(&l)?;
    Ok(l)
}

/// The scenario at `path` with the witnessed setting `field` turned off.
pub fn load_sim_without(path: &Path, field: &str) -> Result<LoadedSim, SpecError> {
    let table = without(path, &read_table(path)?, field)?;
    sim_from_table(path, &table)
}

fn validate(l: &LoadedSim) -> Result<(), SpecError> {
    let (s, p) = (&l.spec, l.path.as_path());
    let err = |field: &str, msg: String| Err(SpecError::field(p, field, msg));
    crate::spec::validate_common(p, &s.description, &s.setup, crate::spec::MAX_SIM_CLIENTS)?;
    let t = &s.time;
    if t.tick_ms == 0 || t.tick_ms > 1000 {
        return err("time.tick_ms", format!("must be 1..=1000, got {}", t.tick_ms));
    }
    if t.step_ms == 0 || t.step_ms > t.tick_ms {
        return err("time.step_ms", format!("must be 1..=tick_ms ({}), got {}", t.tick_ms, t.step_ms));
    }
    if t.ttl_ticks < 1 {
        return err("time.ttl_ticks", format!("must be at least 1, got {}", t.ttl_ticks));
    }
    if t.fault_window_ms.saturating_add(t.settle_ms) > MAX_SIM_MS {
        return err("time.settle_ms", format!("fault window plus settle time is over {MAX_SIM_MS} ms"));
    }
    let Some(ttl_ms) =
        u64::try_from(t.ttl_ticks).ok().and_then(|ttl| ttl.checked_mul(t.tick_ms)).filter(|ms| *ms <= MAX_SIM_MS)
    else {
        return err(
            "time.ttl_ticks",
            format!("{} ticks × tick_ms {} is over the {MAX_SIM_MS} ms limit", t.ttl_ticks, t.tick_ms),
        );
    };
    if t.settle_ms < ttl_ms {
        return err(
            "time.settle_ms",
            format!("{} ms is shorter than one TTL ({ttl_ms} ms): no waiter could be judged", t.settle_ms),
        );
    }
    if t.drift_ppm >= 1_000_000 {
        return err("time.drift_ppm", format!("must be below 1000000, got {}", t.drift_ppm));
    }
    if !(0.0..1.0).contains(&s.network.loss) {
        return err("network.loss", format!("must be a probability below 1, got {}", s.network.loss));
    }
    let ranges = [
        ("network.latency_ms", s.network.latency_ms),
        ("faults.pause_ms", s.faults.pause_ms),
        ("faults.restart_after_ms", s.faults.restart_after_ms),
        ("faults.partition_ms", s.faults.partition_ms),
        ("faults.jump_ms", s.faults.jump_ms),
        ("faults.hold_ms", s.faults.hold_ms),
        ("faults.hang_ms", s.faults.hang_ms),
    ];
    for (name, Range(a, b)) in ranges {
        if a > b {
            return err(name, format!("[{a}, {b}] is empty: the first bound must not exceed the second"));
        }
        if b > MAX_SIM_MS {
            return err(name, format!("{b} ms is over the {MAX_SIM_MS} ms limit"));
        }
    }
    for (name, v) in [
        ("pauses", s.faults.pauses),
        ("hangs", s.faults.hangs),
        ("crashes", s.faults.crashes),
        ("partitions", s.faults.partitions),
        ("holds", s.faults.holds),
        ("clock_jumps", s.faults.clock_jumps),
    ] {
        if v > 8 {
            return err(&format!("faults.{name}"), format!("at most 8 per run, got {v}"));
        }
    }
    if s.expect.get(crate::property::PropertyName::Available).is_some() {
        return err(
            "expect.available",
            "the simulator cannot judge `available` (every simulated run heals at the end of its fault window); claim it in a models/ spec".into(),
        );
    }
    if s.seeds == 0 || s.seeds > MAX_SEEDS {
        return err("seeds", format!("must be 1..={MAX_SEEDS}, got {}", s.seeds));
    }
    Ok(())
}

/// A small valid scenario with `edits` (dotted field, value) applied, loaded as a file would be.
#[cfg(test)]
pub(crate) fn test_sim(edits: &[(&str, toml::Value)]) -> Result<LoadedSim, SpecError> {
    let mut table: toml::Table = r#"
        description = "two clients of one Redis"
        protocol = "redis"
        seeds = 1
        [setup]
        clients = 2
        workload = "oversell"
        stock = 2
        [time]
        ttl_ticks = 10
        fault_window_ms = 100
        settle_ms = 100
    "#
    .parse()
    .expect("the test scenario parses");
    for (field, value) in edits {
        let (tables, last) = field.rsplit_once('.').map_or((None, *field), |(t, l)| (Some(t), l));
        let mut at = &mut table;
        for t in tables.into_iter().flat_map(|t| t.split('.')) {
            at = at.entry(t).or_insert_with(|| toml::Table::new().into()).as_table_mut().expect("a table");
        }
        at.insert(last.to_string(), value.clone());
    }
    sim_from_table(Path::new("test.toml"), &table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::property::PropertyName;

    fn int(v: u64) -> toml::Value {
        toml::Value::Integer(i64::try_from(v).expect("a test value fits"))
    }

    fn range(a: u64, b: u64) -> toml::Value {
        toml::Value::Array(vec![int(a), int(b)])
    }

    /// The field a scenario with `edits` is refused for, or `None` when it loads.
    fn refused(edits: &[(&str, toml::Value)]) -> Option<String> {
        match test_sim(edits) {
            Ok(_) => None,
            Err(SpecError::Field { field, .. }) => Some(field),
            Err(e) => panic!("refused without naming a field: {e}"),
        }
    }

    #[track_caller]
    fn assert_edge(field: &str, ok: toml::Value, bad: toml::Value, also: &[(&str, toml::Value)]) {
        let with = |v: toml::Value| refused(&[also, &[(field, v)]].concat());
        assert_eq!(with(ok.clone()), None, "{field} = {ok} is allowed");
        assert_eq!(with(bad.clone()).as_deref(), Some(field), "{field} = {bad} is refused, naming {field}");
    }

    #[test]
    fn a_scenario_without_network_or_faults_tables_takes_the_documented_defaults() {
        let s = test_sim(&[]).unwrap().spec;
        assert_eq!((s.time.tick_ms, s.time.step_ms, s.time.drift_ppm), (10, 1, 0));
        assert_eq!((s.network.latency_ms, s.network.loss), (Range(1, 5), 0.0));
        let f = &s.faults;
        for r in [f.pause_ms, f.hang_ms, f.partition_ms, f.hold_ms] {
            assert_eq!(r, Range(50, 500));
        }
        assert_eq!((f.restart_after_ms, f.jump_ms), (Range(10, 200), Range(100, 1000)));
        assert_eq!(
            (f.pause_targets, f.crash_targets, f.jump_targets),
            (Targets::Clients, Targets::Any, Targets::Servers)
        );
        assert_eq!([f.pauses, f.hangs, f.crashes, f.partitions, f.holds, f.clock_jumps], [0; 6]);
    }

    #[test]
    fn a_scenarios_claims_are_its_expect_table_in_property_order() {
        let expect = toml::Table::from_iter([
            ("deadlock_free".to_string(), toml::Value::from("holds")),
            ("no_oversell".to_string(), toml::Value::from("violated")),
        ]);
        let sim = test_sim(&[("expect", expect.into())]).unwrap();
        let claims: Vec<_> = sim.claims().collect();
        assert_eq!(
            claims,
            [(PropertyName::NoOversell, Verdict::Violated), (PropertyName::DeadlockFree, Verdict::Holds)]
        );
        assert_eq!(sim.as_model().spec.expect.get(PropertyName::NoOversell), Some(Verdict::Violated));
    }

    #[test]
    fn every_time_bound_is_checked_at_its_edge() {
        let slow = [("time.settle_ms", int(10_000))];
        assert_edge("time.tick_ms", int(1), int(0), &[("time.step_ms", int(1))]);
        assert_edge("time.tick_ms", int(1000), int(1001), &slow);
        assert_edge("time.step_ms", int(10), int(11), &[]);
        assert_edge("time.step_ms", int(1), int(0), &[]);
        assert_edge("time.ttl_ticks", int(1), int(0), &[]);
        // One TTL of settle time is the least that can judge a waiter.
        assert_edge("time.settle_ms", int(100), int(99), &[]);
        assert_edge("time.drift_ppm", int(999_999), int(1_000_000), &[]);
        assert_eq!(refused(&[("time.ttl_ticks", toml::Value::Integer(-1))]).as_deref(), Some("time.ttl_ticks"));
    }

    #[test]
    fn a_run_is_at_most_the_simulated_time_limit_long() {
        let window = |ms: u64| [("time.fault_window_ms", int(ms))];
        assert_edge("time.settle_ms", int(100), int(101), &window(MAX_SIM_MS - 100));
        let whole_run = [("time.fault_window_ms", int(0)), ("time.settle_ms", int(MAX_SIM_MS))];
        assert_edge("time.ttl_ticks", int(MAX_SIM_MS / 10), int(MAX_SIM_MS / 10 + 1), &whole_run);
        let huge = [("time.tick_ms", int(1000)), ("time.ttl_ticks", toml::Value::Integer(i64::MAX))];
        assert_eq!(refused(&huge).as_deref(), Some("time.ttl_ticks"), "ticks × tick_ms overflows");
    }

    #[test]
    fn a_message_loss_is_a_probability_below_one() {
        let loss = |p: f64| refused(&[("network.loss", toml::Value::Float(p))]);
        assert_eq!((loss(0.0), loss(0.99)), (None, None));
        assert_eq!((loss(1.0).as_deref(), loss(-0.1).as_deref()), (Some("network.loss"), Some("network.loss")));
    }

    #[test]
    fn every_range_is_checked_for_order_and_the_time_limit() {
        for field in [
            "network.latency_ms",
            "faults.pause_ms",
            "faults.restart_after_ms",
            "faults.partition_ms",
            "faults.jump_ms",
            "faults.hold_ms",
            "faults.hang_ms",
        ] {
            assert_edge(field, range(5, 5), range(6, 5), &[]);
            assert_edge(field, range(0, MAX_SIM_MS), range(0, MAX_SIM_MS + 1), &[]);
        }
    }

    #[test]
    fn every_fault_count_is_at_most_eight_a_run() {
        for field in [
            "faults.pauses",
            "faults.hangs",
            "faults.crashes",
            "faults.partitions",
            "faults.holds",
            "faults.clock_jumps",
        ] {
            assert_edge(field, int(8), int(9), &[]);
        }
    }

    #[test]
    fn a_sweep_has_one_to_a_million_seeds_and_judges_no_availability() {
        assert_edge("seeds", int(1), int(0), &[]);
        assert_edge("seeds", int(MAX_SEEDS), int(MAX_SEEDS + 1), &[]);
        let available = toml::Table::from_iter([("available".to_string(), toml::Value::from("holds"))]);
        assert_eq!(refused(&[("expect", available.into())]).as_deref(), Some("expect.available"));
    }
}

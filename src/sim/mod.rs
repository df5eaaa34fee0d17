//! The simulator: the same protocol machines under a seeded turmoil network with faults.
//!
//! A scenario (`sims/*.toml`) runs once per seed. Each seed draws a fault [`plan::Plan`] from a
//! ChaCha8 stream; [`driver::run`] plays it. A sweep judges each claim over all its seeds: `holds`
//! means no seed violated it, `violated` means at least one did. Seeds run on `--jobs` threads and
//! results are put back in seed order, so the output does not depend on the number of threads.

pub mod driver;
pub mod plan;
pub mod spec;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::property::PropertyName;
use crate::protocol::{Machine, Protocol};
use crate::registry::{self, Visit};
use crate::spec::{SpecError, Verdict};
use crate::system::LockSystem;
use crate::trace::Trace;
use driver::{RunCfg, RunOutcome, Violation};
use plan::Plan;
use spec::LoadedSim;

/// Which seeds to run: a range, optionally every `of`-th starting at `index` (a shard).
#[derive(Clone, Debug)]
pub struct Seeds {
    pub from: u64,
    pub to: u64,
    pub shard: Option<(u64, u64)>,
}

impl Seeds {
    pub fn list(&self) -> Vec<u64> {
        (self.from..self.to).filter(|s| self.shard.is_none_or(|(k, n)| s % n == k)).collect()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PropSummary {
    pub property: PropertyName,
    pub verdict: Verdict,
    pub expected: Option<Verdict>,
    pub violations: u64,
    /// Wilson 95 % interval of the violation rate.
    pub rate: f64,
    pub rate_low: f64,
    pub rate_high: f64,
    pub first_seed: Option<u64>,
    #[serde(skip)]
    pub trace: Option<Trace>,
    #[serde(skip)]
    pub shrunk: Option<Trace>,
}

impl PropSummary {
    pub fn ok(&self) -> bool {
        self.expected.is_none_or(|e| e == self.verdict)
            && (self.expected.is_some() || self.verdict != Verdict::Violated)
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SweepMetrics {
    pub acquisitions: u64,
    pub messages_per_acquisition: f64,
    pub store_requests_per_acquisition: f64,
    pub acquire_latency_p50_ms: u64,
    pub acquire_latency_p99_ms: u64,
    pub wakeup_latency_p50_ms: u64,
    pub wakeup_latency_p99_ms: u64,
    pub critical_sections_per_second: f64,
    pub rejected_writes: u64,
}

#[derive(Clone, Debug)]
pub struct SimOutcome {
    pub spec: String,
    pub name: String,
    pub description: String,
    pub runs: u64,
    pub results: Vec<PropSummary>,
    pub metrics: SweepMetrics,
    pub seconds: f64,
    pub participants: Vec<String>,
    /// Fewer runs than the scenario's own sweep (one `--seed`, a shard).
    pub partial: bool,
    /// The time budget stopped the sweep before every seed ran, in words.
    pub stopped: Option<String>,
}

impl SimOutcome {
    /// Every claim re-derived. A partial sweep cannot show a claimed violation it did not reach,
    /// so it fails only when it broke a `holds` claim;
    pub fn ok(&self) -> bool {
        if self.partial {
            // nor can a few seeds tell a vacuous pass from a real one.
            self.results.iter().all(|r| !r.expected.is_some_and(Verdict::passes) || r.verdict.passes())
        } else {
            self.results.iter().all(PropSummary::ok)
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub jobs: usize,
    pub shrink: bool,
    pub progress: bool,
    /// Simulate every run to its end even when all clients are done (benchmarks).
    pub full_duration: bool,
    /// Start no new seed after this many seconds of wall-clock time: the sweep then answers
    /// `unknown` for whatever it has not seen violated.
    pub max_seconds: Option<f64>,
}

fn wilson(k: u64, n: u64) -> (f64, f64, f64) {
    if n == 0 {
        return (0.0, 0.0, 1.0);
    }
    let (k, n, z) = (k as f64, n as f64, 1.96f64);
    let p = k / n;
    let d = 1.0 + z * z / n;
    let c = (p + z * z / (2.0 * n)) / d;
    let h = z * ((p * (1.0 - p) / n) + z * z / (4.0 * n * n)).sqrt() / d;
    (p, (c - h).max(0.0), (c + h).min(1.0))
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(((sorted.len() - 1) as f64) * q).round() as usize]
}

pub fn reproduce_command(sim: &LoadedSim, seed: u64) -> String {
    format!("lockcheck sim {} --seed {seed}", sim.path.display())
}

/// Builds the trace of a violation, with the plan it ran under.
pub fn trace_of(sim: &LoadedSim, seed: u64, plan: &Plan, v: &Violation, names: &[String]) -> Trace {
    Trace {
        spec: sim.path.display().to_string(),
        engine: "sim".into(),
        seed: Some(seed),
        property: v.property.name().into(),
        steps: v.steps.clone(),
        reproduce: reproduce_command(sim, seed),
        plan: Some(serde_json::json!({ "plan": plan, "described": plan.describe(names) })),
        sliced_from: None,
    }
}

struct SimVisit<'a> {
    sim: &'a LoadedSim,
    seeds: &'a Seeds,
    opts: &'a Options,
    fixed_plan: Option<Plan>,
}

/// The properties a run of `sim` is judged by: the spec's, but `available`, which needs the
/// model checker's "some path exists".
pub fn judged(sim: &LoadedSim, issues_tokens: bool) -> Result<Vec<PropertyName>, SpecError> {
    let all = crate::check::properties(&sim.as_model(), issues_tokens)?;
    Ok(all.into_iter().filter(|p| *p != PropertyName::Available).collect())
}

pub fn run_cfg(sim: &LoadedSim, props: Vec<PropertyName>) -> RunCfg {
    let s = &sim.spec;
    RunCfg {
        tick_ms: s.time.tick_ms,
        step_ms: s.time.step_ms,
        fault_window_ms: s.time.fault_window_ms,
        settle_ms: s.time.settle_ms,
        latency_ms: (s.network.latency_ms.0, s.network.latency_ms.1),
        loss: s.network.loss,
        stock: s.setup.stock,
        properties: props,
        full_duration: false,
    }
}

impl Visit for SimVisit<'_> {
    type Out = Result<(SimOutcome, Vec<RunOutcome>), SpecError>;
    fn visit<P: Protocol>(self, system: LockSystem<P>) -> Self::Out {
        let props = judged(self.sim, system.proto.issues_tokens())?;
        let machine = Arc::new(system);
        let cfg = RunCfg { full_duration: self.opts.full_duration, ..run_cfg(self.sim, props.clone()) };
        let started = Instant::now();
        let seeds = self.seeds.list();
        let runs = sweep(&machine, self.sim, &cfg, &seeds, self.opts, self.fixed_plan.as_ref())?;
        let stopped = (runs.len() < seeds.len()).then(|| {
            let by = match self.opts.max_seconds {
                Some(max) if !crate::progress::interrupted() => format!("the time budget (--max-seconds {max})"),
                _ => "Ctrl-C".into(),
            };
            format!("{by} stopped the sweep after {} of {} seeds", runs.len(), seeds.len())
        });
        let names: Vec<String> = machine.nodes().iter().map(|n| n.name.clone()).collect();
        let mut results = Vec::new();
        for p in props {
            let failing: Vec<&RunOutcome> =
                runs.iter().filter(|r| r.violations.iter().any(|v| v.property == p)).collect();
            let (rate, lo, hi) = wilson(failing.len() as u64, runs.len() as u64);
            let first = failing.first();
            let trace = first.map(|r| {
                let v = r.violations.iter().find(|v| v.property == p).expect("failing");
                trace_of(self.sim, r.seed, &r.plan, v, &names)
            });
            let shrunk = match (first, self.opts.shrink) {
                (Some(r), true) => {
                    shrink(&machine, &cfg, r, p).map(|(plan, v)| trace_of(self.sim, r.seed, &plan, &v, &names))
                }
                _ => None,
            };
            results.push(PropSummary {
                property: p,
                verdict: if !failing.is_empty() {
                    Verdict::Violated
                } else if stopped.is_some() {
                    Verdict::Unknown
                } else if runs.iter().any(|r| r.witnessed.contains(&p)) {
                    Verdict::Holds
                } else {
                    Verdict::Vacuous
                },
                expected: self.sim.spec.expect.get(p),
                violations: failing.len() as u64,
                rate,
                rate_low: lo,
                rate_high: hi,
                first_seed: first.map(|r| r.seed),
                trace,
                shrunk,
            });
        }
        let metrics = aggregate(&runs);
        let outcome = SimOutcome {
            spec: self.sim.path.display().to_string(),
            name: self.sim.name.clone(),
            description: self.sim.spec.description.clone(),
            runs: runs.len() as u64,
            results,
            metrics,
            seconds: started.elapsed().as_secs_f64(),
            participants: names,
            partial: (runs.len() as u64) < self.sim.spec.seeds,
            stopped,
        };
        Ok((outcome, runs))
    }
}

fn aggregate(runs: &[RunOutcome]) -> SweepMetrics {
    let mut lat: Vec<u64> = runs.iter().flat_map(|r| r.metrics.acquire_latency_ms.iter().copied()).collect();
    lat.sort_unstable();
    let mut wake: Vec<u64> = runs.iter().flat_map(|r| r.metrics.wakeup_latency_ms.iter().copied()).collect();
    wake.sort_unstable();
    let acq: u64 = runs.iter().map(|r| r.metrics.acquisitions).sum();
    let msgs: u64 = runs.iter().map(|r| r.metrics.messages).sum();
    let store: u64 = runs.iter().map(|r| r.metrics.store_requests).sum();
    let ms: u64 = runs.iter().map(|r| r.metrics.simulated_ms).sum();
    let per = |x: u64| if acq == 0 { 0.0 } else { x as f64 / acq as f64 };
    SweepMetrics {
        acquisitions: acq,
        messages_per_acquisition: per(msgs),
        store_requests_per_acquisition: per(store),
        acquire_latency_p50_ms: percentile(&lat, 0.5),
        acquire_latency_p99_ms: percentile(&lat, 0.99),
        wakeup_latency_p50_ms: percentile(&wake, 0.5),
        wakeup_latency_p99_ms: percentile(&wake, 0.99),
        critical_sections_per_second: if ms == 0 { 0.0 } else { acq as f64 * 1000.0 / ms as f64 },
        rejected_writes: runs.iter().map(|r| r.metrics.rejected_writes).sum(),
    }
}

fn one<M: Machine>(
    m: &Arc<M>,
    sim: &LoadedSim,
    cfg: &RunCfg,
    seed: u64,
    fixed: Option<&Plan>,
) -> Result<RunOutcome, SpecError> {
    let plan = fixed.cloned().unwrap_or_else(|| plan::draw_plan(sim, m.nodes(), seed));
    driver::run(m.clone(), cfg, seed, plan)
        .map_err(|message| SpecError::File { file: sim.path.display().to_string(), message })
}

fn sweep<M: Machine>(
    m: &Arc<M>,
    sim: &LoadedSim,
    cfg: &RunCfg,
    seeds: &[u64],
    opts: &Options,
    fixed: Option<&Plan>,
) -> Result<Vec<RunOutcome>, SpecError> {
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    let jobs = opts.jobs.max(1).min(seeds.len().max(1));
    let results: Vec<Result<Vec<RunOutcome>, SpecError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..jobs)
            .map(|j| {
                let done = &done;
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for &seed in seeds.iter().skip(j).step_by(jobs) {
                        if opts.max_seconds.is_some_and(|max| started.elapsed().as_secs_f64() >= max)
                            || crate::progress::interrupted()
                        {
                            break;
                        }
                        out.push(one(m, sim, cfg, seed, fixed)?);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(out)
                })
            })
            .collect();
        if opts.progress {
            let bar = crate::progress::bar(&format!("  {}", sim.name), seeds.len() as u64, "seeds");
            while handles.iter().any(|h| !h.is_finished()) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                bar.set_position(done.load(Ordering::Relaxed) as u64);
            }
            bar.finish_and_clear();
        }
        handles.into_iter().map(|h| h.join().expect("a sweep thread panicked")).collect()
    });
    let mut runs = Vec::new();
    for r in results {
        runs.extend(r?);
    }
    runs.sort_by_key(|r| r.seed);
    Ok(runs)
}

/// Looks for a smaller plan under which the same seed still breaks `p`: drop faults one at a time,
/// then shorten the ones left, keeping every change that still fails.
fn shrink<M: Machine>(m: &Arc<M>, cfg: &RunCfg, failing: &RunOutcome, p: PropertyName) -> Option<(Plan, Violation)> {
    let fails = |plan: &Plan| -> Option<Violation> {
        let r = driver::run(m.clone(), cfg, failing.seed, plan.clone()).ok()?;
        r.violations.into_iter().find(|v| v.property == p)
    };
    let mut best = failing.plan.clone();
    let mut best_v = failing.violations.iter().find(|v| v.property == p)?.clone();
    let mut tries = 0;
    let mut changed = true;
    while changed && tries < 64 {
        changed = false;
        for i in 0..best.faults.len() {
            let mut cand = best.clone();
            cand.faults.remove(i);
            tries += 1;
            if let Some(v) = fails(&cand) {
                (best, best_v, changed) = (cand, v, true);
                break;
            }
        }
        if changed {
            continue;
        }
        for i in 0..best.faults.len() {
            let Some(shorter) = best.faults[i].halved() else {
                continue;
            };
            let mut cand = best.clone();
            cand.faults[i] = shorter;
            tries += 1;
            if let Some(v) = fails(&cand) {
                (best, best_v, changed) = (cand, v, true);
                break;
            }
        }
    }
    // An unchanged plan replays the same violation: only a changed plan is a shrink.
    (best != failing.plan).then_some((best, best_v))
}

struct Participants;
impl Visit for Participants {
    type Out = Vec<String>;
    fn visit<P: Protocol>(self, system: LockSystem<P>) -> Vec<String> {
        system.nodes().iter().map(|n| n.name.clone()).collect()
    }
}

/// The names of a scenario's nodes, in id order (what a plan's `node` indexes).
pub fn participants(sim: &LoadedSim) -> Result<Vec<String>, SpecError> {
    registry::build(&sim.as_model(), Participants)
}

/// Runs a scenario over `seeds` (or one seed under a stored plan).
pub fn simulate(
    sim: &LoadedSim,
    seeds: &Seeds,
    opts: &Options,
    fixed_plan: Option<Plan>,
) -> Result<(SimOutcome, Vec<RunOutcome>), SpecError> {
    registry::build(&sim.as_model(), SimVisit { sim, seeds, opts, fixed_plan })?
}

pub fn default_options() -> Options {
    Options { jobs: 1, shrink: true, progress: crate::progress::shown(), full_duration: false, max_seconds: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Protocol;
    use driver::Metrics;
    use std::path::Path;

    #[test]
    fn a_shard_takes_every_nth_seed_of_the_range() {
        let seeds = |shard| Seeds { from: 3, to: 10, shard }.list();
        assert_eq!(seeds(None), [3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(seeds(Some((1, 3))), [4, 7]);
        assert_eq!(seeds(Some((0, 1))), seeds(None));
    }

    fn summary(expected: Option<Verdict>, verdict: Verdict) -> PropSummary {
        let (rate, rate_low, rate_high) = (0.0, 0.0, 0.0);
        let (first_seed, trace, shrunk) = (None, None, None);
        let property = PropertyName::MutualExclusion;
        PropSummary { property, verdict, expected, violations: 0, rate, rate_low, rate_high, first_seed, trace, shrunk }
    }

    #[test]
    fn a_verdict_passes_when_it_is_the_claim_or_unclaimed_and_not_violated() {
        use Verdict::*;
        assert!(summary(Some(Violated), Violated).ok() && summary(Some(Vacuous), Vacuous).ok());
        assert!(!summary(Some(Holds), Vacuous).ok(), "a claimed holds that nothing exercised fails");
        assert!(!summary(Some(Holds), Unknown).ok() && !summary(Some(Violated), Holds).ok());
        assert!(summary(None, Holds).ok() && summary(None, Vacuous).ok() && summary(None, Unknown).ok());
        assert!(!summary(None, Violated).ok(), "an unclaimed violation fails");
    }

    fn outcome(partial: bool, results: Vec<PropSummary>) -> SimOutcome {
        let (spec, name, description) = (String::new(), String::new(), String::new());
        let (metrics, seconds, participants, stopped) = (SweepMetrics::default(), 0.0, Vec::new(), None);
        SimOutcome { spec, name, description, runs: 1, results, metrics, seconds, participants, partial, stopped }
    }

    #[test]
    fn a_partial_sweep_fails_only_by_breaking_or_not_reaching_a_claimed_pass() {
        use Verdict::*;
        let sweep = |partial, expected, verdict| outcome(partial, vec![summary(Some(expected), verdict)]).ok();
        assert!(sweep(true, Violated, Holds), "a few seeds need not reach a claimed violation");
        assert!(!sweep(false, Violated, Holds));
        assert!(sweep(true, Holds, Vacuous), "nor tell a vacuous pass from a real one");
        assert!(!sweep(true, Holds, Violated) && !sweep(true, Holds, Unknown) && !sweep(true, Vacuous, Violated));
        let two = |partial| outcome(partial, vec![summary(Some(Holds), Holds), summary(None, Violated)]).ok();
        assert!(two(true) && !two(false), "a partial sweep does not judge what is unclaimed");
        assert!(outcome(false, vec![summary(Some(Holds), Holds), summary(Some(Violated), Violated)]).ok());
    }

    #[test]
    fn the_violation_rate_has_its_wilson_95_percent_interval() {
        // Published values (Wilson 1927; Newcombe 1998, table I).
        for (k, n, low, high) in
            [(5, 10, 0.2366, 0.7634), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (1, 100, 0.0018, 0.0545)]
        {
            let (rate, lo, hi) = wilson(k, n);
            assert_eq!(rate, k as f64 / n as f64);
            assert!((lo - low).abs() < 1e-4 && (hi - high).abs() < 1e-4, "{k}/{n}: [{lo}, {hi}]");
        }
        assert_eq!(wilson(0, 0), (0.0, 0.0, 1.0), "no runs: nothing is known of the rate");
    }

    fn run(seed: u64, metrics: Metrics) -> RunOutcome {
        let plan = Plan { drift_ppm: Vec::new(), faults: Vec::new(), turmoil_seed: 0, loss_seed: 0 };
        RunOutcome { seed, plan, violations: Vec::new(), witnessed: Vec::new(), metrics }
    }

    #[test]
    fn a_sweeps_metrics_sum_its_runs_and_take_percentiles_over_all_their_latencies() {
        let busy = Metrics {
            acquisitions: 2,
            messages: 10,
            store_requests: 4,
            rejected_writes: 1,
            acquire_latency_ms: vec![30, 10],
            wakeup_latency_ms: vec![5],
            simulated_ms: 1000,
        };
        let calm = Metrics { acquire_latency_ms: vec![40, 20], messages: 6, wakeup_latency_ms: vec![], ..busy.clone() };
        let m = aggregate(&[run(0, busy), run(1, Metrics { rejected_writes: 0, ..calm })]);
        assert_eq!((m.acquisitions, m.rejected_writes), (4, 1));
        assert_eq!((m.messages_per_acquisition, m.store_requests_per_acquisition), (4.0, 2.0));
        assert_eq!((m.acquire_latency_p50_ms, m.acquire_latency_p99_ms), (30, 40));
        assert_eq!((m.wakeup_latency_p50_ms, m.wakeup_latency_p99_ms), (5, 5));
        assert_eq!(m.critical_sections_per_second, 2.0);
        let none = aggregate(&[run(0, Metrics::default())]);
        assert_eq!((none.messages_per_acquisition, none.critical_sections_per_second), (0.0, 0.0));
        assert_eq!(none.acquire_latency_p99_ms, 0);
    }

    #[test]
    fn a_failing_seed_is_reproduced_by_one_command() {
        let sim = spec::test_sim(&[]).unwrap();
        assert_eq!(reproduce_command(&sim, 7), "lockcheck sim test.toml --seed 7");
    }

    #[test]
    fn a_percentile_is_the_nearest_rank() {
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!((percentile(&hundred, 0.5), percentile(&hundred, 0.99)), (51, 99));
        assert_eq!((percentile(&hundred, 0.0), percentile(&hundred, 1.0)), (1, 100));
        assert_eq!((percentile(&[7], 0.99), percentile(&[], 0.5)), (7, 0));
    }

    fn v_steps(r: &RunOutcome, p: PropertyName) -> usize {
        r.violations.iter().find(|v| v.property == p).map_or(0, |v| v.steps.len())
    }

    /// A run that breaks a property with no fault at all has nothing to shrink.
    struct ShrinkFaultless<'a>(&'a LoadedSim);

    impl Visit for ShrinkFaultless<'_> {
        type Out = ();
        fn visit<P: Protocol>(self, system: LockSystem<P>) {
            let cfg = run_cfg(self.0, judged(self.0, system.proto.issues_tokens()).unwrap());
            let m = Arc::new(system);
            let failing = one(&m, self.0, &cfg, 0, None).unwrap();
            assert!(failing.plan.faults.is_empty(), "{:?}", failing.plan.faults);
            let broken = failing.violations.first().expect("work outlasting the TTL breaks a property").property;
            assert!(shrink(&m, &cfg, &failing, broken).is_none());
        }
    }

    #[test]
    fn a_run_failing_without_faults_has_nothing_to_shrink() {
        let sim = spec::test_sim(&[("setup.work_ticks", toml::Value::Integer(25))]).unwrap();
        registry::build(&sim.as_model(), ShrinkFaultless(&sim)).unwrap();
    }

    /// Shrinks the first run of `sim` that breaks `property` under more than one fault, and checks
    /// the result is a failing plan from which no fault can be dropped or halved.
    struct ShrinkFirstFailure<'a>(&'a LoadedSim, PropertyName);

    impl Visit for ShrinkFirstFailure<'_> {
        type Out = ();
        fn visit<P: Protocol>(self, system: LockSystem<P>) {
            let ShrinkFirstFailure(sim, property) = self;
            let cfg = run_cfg(sim, judged(sim, system.proto.issues_tokens()).unwrap());
            let m = Arc::new(system);
            let breaks = |r: &RunOutcome| r.violations.iter().any(|v| v.property == property);
            let failing = (0..sim.spec.seeds)
                .map(|seed| one(&m, sim, &cfg, seed, None).unwrap())
                .find(|r| breaks(r) && r.plan.faults.len() > 1)
                .expect("a seed that fails under several faults");
            let fails = |plan: &Plan| breaks(&driver::run(m.clone(), &cfg, failing.seed, plan.clone()).unwrap());
            let (plan, v) = shrink(&m, &cfg, &failing, property).expect("a plan of several faults shrinks");
            assert!(plan.faults.len() < failing.plan.faults.len(), "{:?} from {:?}", plan.faults, failing.plan.faults);
            assert!(v.property == property && fails(&plan));
            let minimal = driver::run(m.clone(), &cfg, failing.seed, plan.clone()).unwrap();
            let earlier = minimal.violations.iter().filter(|v| v.steps.len() < v_steps(&minimal, property)).count();
            assert!(earlier > 0, "another property broke first: {:?}", minimal.violations);
            assert!(shrink(&m, &cfg, &minimal, property).is_none(), "nothing left to shrink, for this property");
            let mut padded = plan.clone();
            padded.faults.push(plan::Fault::Pause { node: 0, at_ms: v.at_ms + 1, for_ms: 1 });
            let padded = driver::run(m.clone(), &cfg, failing.seed, padded).unwrap();
            assert_eq!(
                v_steps(&padded, property),
                v.steps.len(),
                "a pause after the violation changes nothing before it"
            );
            let (back, _) = shrink(&m, &cfg, &padded, property).expect("a fault that played no part is dropped");
            assert_eq!(back, plan);
            for (i, fault) in plan.faults.iter().enumerate() {
                let mut fewer = plan.clone();
                fewer.faults.remove(i);
                assert!(!fails(&fewer), "{fault:?} could still be dropped");
                let mut shorter = plan.clone();
                if let Some(half) = fault.halved() {
                    shorter.faults[i] = half;
                    assert!(!fails(&shorter), "{fault:?} could still be halved");
                }
            }
        }
    }

    fn quiet(shrink: bool, max_seconds: Option<f64>) -> Options {
        Options { jobs: 2, shrink, progress: false, full_duration: false, max_seconds }
    }

    #[test]
    fn each_verdict_its_count_first_seed_and_traces_are_read_from_the_runs() {
        let sim = spec::load_sim(Path::new("sims/redis_gc_pause.toml")).unwrap();
        let seeds = Seeds { from: 0, to: 12, shard: None };
        let (out, runs) = simulate(&sim, &seeds, &quiet(true, None), None).unwrap();
        assert_eq!((out.runs, runs.len()), (12, 12));
        assert!(out.partial && out.stopped.is_none(), "12 of the scenario's {} seeds", sim.spec.seeds);
        assert_eq!(out.participants, participants(&sim).unwrap());
        assert_eq!(out.participants, ["client-0", "client-1", "client-2", "redis", "storage"]);
        assert_eq!(out.name, "redis_gc_pause");
        let judged = judged(&sim, false).unwrap();
        assert_eq!(out.results.iter().map(|r| r.property).collect::<Vec<_>>(), judged);
        for r in &out.results {
            let failing: Vec<&RunOutcome> =
                runs.iter().filter(|x| x.violations.iter().any(|v| v.property == r.property)).collect();
            assert_eq!(r.violations, failing.len() as u64, "{:?}", r.property);
            assert_eq!(r.first_seed, failing.first().map(|x| x.seed));
            assert_eq!(r.expected, sim.spec.expect.get(r.property));
            assert_eq!(r.trace.is_some() && r.shrunk.is_some(), !failing.is_empty());
            let Some(first) = failing.first() else {
                assert_eq!(r.verdict, Verdict::Holds, "{:?}: every run witnessed it", r.property);
                continue;
            };
            assert_eq!(r.verdict, Verdict::Violated);
            let (trace, shrunk) = (r.trace.as_ref().unwrap(), r.shrunk.as_ref().unwrap());
            let v = first.violations.iter().find(|v| v.property == r.property).unwrap();
            assert_eq!(
                (trace.property.as_str(), trace.seed, &trace.steps),
                (r.property.name(), Some(first.seed), &v.steps)
            );
            assert_eq!((shrunk.property.as_str(), shrunk.seed), (r.property.name(), Some(first.seed)));
            assert!(shrunk.plan != trace.plan, "only a changed plan is a shrink");
        }
        assert!(out.results.iter().any(|r| r.verdict == Verdict::Violated));
        let unshrunk = simulate(&sim, &seeds, &quiet(false, None), None).unwrap().0;
        assert!(unshrunk.results.iter().all(|r| r.shrunk.is_none()));
    }

    #[test]
    fn by_default_a_sweep_runs_one_job_shrinks_and_stops_when_its_clients_are_done() {
        let d = default_options();
        assert_eq!((d.jobs, d.shrink, d.full_duration, d.max_seconds), (1, true, false, None));
    }

    #[test]
    fn a_claim_nothing_exercised_is_vacuous_and_a_whole_sweep_is_not_partial() {
        let sim = spec::test_sim(&[("setup.stock", toml::Value::Integer(0))]).unwrap();
        let seeds = Seeds { from: 0, to: sim.spec.seeds, shard: None };
        let out = simulate(&sim, &seeds, &quiet(true, None), None).unwrap().0;
        assert!(!out.partial && out.stopped.is_none());
        let verdict = |p| out.results.iter().find(|r| r.property == p).map(|r| r.verdict);
        assert_eq!(verdict(PropertyName::NoOversell), Some(Verdict::Vacuous), "nothing to sell: nothing sold");
        assert_eq!(verdict(PropertyName::MutualExclusion), Some(Verdict::Holds));
        assert!(out.metrics.acquisitions > 0);
    }

    #[test]
    fn a_sweep_stopped_by_its_time_budget_knows_nothing_and_says_what_stopped_it() {
        let sim = spec::load_sim(Path::new("sims/redis_gc_pause.toml")).unwrap();
        let seeds = Seeds { from: 0, to: 12, shard: None };
        let (out, runs) = simulate(&sim, &seeds, &quiet(true, Some(0.0)), None).unwrap();
        assert!(runs.is_empty() && out.partial);
        assert_eq!(
            out.stopped.as_deref(),
            Some("the time budget (--max-seconds 0) stopped the sweep after 0 of 12 seeds")
        );
        assert!(out.results.iter().all(|r| r.verdict == Verdict::Unknown && r.first_seed.is_none()));
    }

    #[test]
    fn a_stored_plan_replays_one_seed_as_it_ran() {
        let sim = spec::load_sim(Path::new("sims/redis_gc_pause.toml")).unwrap();
        let seeds = Seeds { from: 0, to: 12, shard: None };
        let (_, runs) = simulate(&sim, &seeds, &quiet(false, None), None).unwrap();
        let failing = runs.iter().find(|r| !r.violations.is_empty()).expect("a failing seed in 0..12");
        let one_seed = Seeds { from: failing.seed, to: failing.seed + 1, shard: None };
        let replay = simulate(&sim, &one_seed, &quiet(false, None), Some(failing.plan.clone())).unwrap().1;
        assert_eq!(replay, std::slice::from_ref(failing));
        let mut calm = failing.plan.clone();
        calm.faults.clear();
        let calm_run = simulate(&sim, &one_seed, &quiet(false, None), Some(calm.clone())).unwrap().1;
        assert_eq!(calm_run[0].plan, calm, "the stored plan, not the seed's draw");
        assert!(calm_run[0].violations.is_empty(), "without its pauses the seed runs clean");
    }

    #[test]
    fn a_shrunk_plan_still_fails_and_none_of_its_faults_can_be_dropped_or_halved() {
        let sim = spec::load_sim(Path::new("sims/redis_gc_pause.toml")).unwrap();
        registry::build(&sim.as_model(), ShrinkFirstFailure(&sim, PropertyName::NoStaleWrite)).unwrap();
    }
}

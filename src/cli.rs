//! What the CLI prints and writes; `main.rs` only parses arguments and maps results to exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::check::Outcome;
use crate::spec::{Loaded, SpecError, Verdict, load_model};
use crate::trace::Trace;
use crate::witness::Twin;

/// Exit codes of the contract.
pub const EXIT_OK: i32 = 0;
pub const EXIT_MISMATCH: i32 = 1;
pub const EXIT_BAD_INPUT: i32 = 2;

/// A spec file, or a folder whose `*.toml` files are taken in name order.
pub fn spec_files(args: &[PathBuf]) -> Result<Vec<PathBuf>, SpecError> {
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            let rd = std::fs::read_dir(a).map_err(|e| SpecError::File {
                file: a.display().to_string(),
                message: format!("cannot read folder: {e}"),
            })?;
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(SpecError::File {
                    file: a.display().to_string(),
                    message: "folder holds no .toml spec".into(),
                });
            }
            out.extend(files);
        } else {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// A name per spec for its trace folder: the file stem, or where two specs of one run share a
/// stem (`a/x.toml`, `b/x.toml`), the path without its extension (`a_x`, `b_x`).
fn unique_names<'a>(paths: impl Iterator<Item = &'a Path> + Clone) -> Vec<String> {
    let stem = |p: &Path| p.file_stem().and_then(|s| s.to_str()).unwrap_or("spec").to_string();
    paths
        .clone()
        .map(|p| {
            let shared = paths.clone().filter(|q| stem(q) == stem(p) && *q != p).count() > 0;
            if !shared {
                return stem(p);
            }
            let parts: Vec<String> = p
                .with_extension("")
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect();
            parts.join("_")
        })
        .collect()
}

/// `--out DIR` must be a folder lockcheck can write, checked before any work is done.
pub fn usable_out(dir: &Path) -> Result<(), SpecError> {
    let bad = |e: std::io::Error| SpecError::File {
        file: dir.display().to_string(),
        message: format!("--out: cannot write traces here: {e}"),
    };
    std::fs::create_dir_all(dir).map_err(bad)?;
    let probe = dir.join(format!(".lockcheck-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(bad)?;
    std::fs::remove_file(&probe).map_err(bad)
}

/// Loads and validates every spec before anything runs, so bad input writes nothing.
pub fn load_all(args: &[PathBuf]) -> Result<Vec<Loaded>, SpecError> {
    let mut specs: Vec<Loaded> = spec_files(args)?.iter().map(|p| load_model(p)).collect::<Result<_, _>>()?;
    let names = unique_names(specs.iter().map(|s| s.path.as_path()));
    for (s, name) in specs.iter_mut().zip(names) {
        s.name = name;
    }
    for s in &specs {
        validate(s)?;
    }
    Ok(specs)
}

/// Builds the protocol with the spec's knobs and judges which properties apply, without
/// exploring anything: what a spec must pass before any engine runs it.
pub fn validate(spec: &Loaded) -> Result<(), SpecError> {
    crate::registry::build(spec, ValidateOnly(spec))?
}

struct ValidateOnly<'a>(&'a Loaded);
impl crate::registry::Visit for ValidateOnly<'_> {
    type Out = Result<(), SpecError>;
    fn visit<P: crate::protocol::Protocol>(self, system: crate::system::LockSystem<P>) -> Self::Out {
        crate::check::properties(self.0, system.proto.issues_tokens()).map(|_| ())
    }
}

/// Writes a file whole or not at all.
pub fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

pub fn trace_path(out: &Path, spec_name: &str, property: &str) -> PathBuf {
    out.join(spec_name).join(format!("{property}.json"))
}

/// Writes `<out>/<spec>/<property>.json` and `.md` for each violation.
pub fn write_traces(o: &Outcome, out: &Path) -> std::io::Result<()> {
    for r in &o.results {
        if let Some(t) = &r.trace {
            let json = trace_path(out, &o.name, r.property.name());
            write_atomic(&json, &t.to_json())?;
            write_atomic(&json.with_extension("md"), &t.to_markdown(&o.participants))?;
            write_atomic(&json.with_extension("html"), &t.to_html(&o.participants))?;
        }
    }
    Ok(())
}

pub fn print_human(o: &Outcome, w: &mut impl Write) -> std::io::Result<()> {
    writeln!(w, "== {}", o.spec)?;
    writeln!(w, "   {}", o.description)?;
    writeln!(
        w,
        "   {:<17} {:<9} {:<19} {:>10} {:>9} {:>6} {:>8}",
        "property", "expected", "verdict", "states", "unique", "depth", "seconds"
    )?;
    for r in &o.results {
        let expected = r.expected.map(|e| e.to_string()).unwrap_or_else(|| "-".into());
        let depth = r.trace.as_ref().map(|t| t.steps.len() as u32).unwrap_or(o.max_depth);
        let mark = match (r.ok(), r.expected, r.verdict) {
            (false, _, _) => "  <-- MISMATCH",
            (true, None, crate::spec::Verdict::Violated) => "  <-- VIOLATED (not claimed)",
            _ => "",
        };
        writeln!(
            w,
            "   {:<17} {:<9} {:<19} {:>10} {:>9} {:>6} {:>8.2}{}",
            r.property.name(),
            expected,
            painted(r.verdict),
            o.generated,
            o.unique,
            depth,
            o.seconds,
            console::style(mark).red().bold(),
        )?;
    }
    if let Some(budget) = &o.stopped {
        writeln!(
            w,
            "   unknown: {budget} stopped the search after {} states; no `holds` is confirmed (try --symmetry, --strategy dfs or a shorter horizon)",
            o.unique
        )?;
    }
    for r in &o.results {
        if let Some(t) = &r.trace {
            writeln!(w, "-- {} violated in {} steps: {}", r.property.name(), t.steps.len(), r.property.sentence().0)?;
            write!(w, "{}", indent(&t.to_text()))?;
            writeln!(w, "   reproduce: {}", t.reproduce)?;
        }
    }
    writeln!(w)
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

pub fn json_value(o: &Outcome, out: Option<&Path>) -> serde_json::Value {
    let results: Vec<serde_json::Value> = o
        .results
        .iter()
        .map(|r| {
            let trace = match (&r.trace, out) {
                (Some(_), Some(dir)) => {
                    serde_json::Value::String(trace_path(dir, &o.name, r.property.name()).display().to_string())
                }
                _ => serde_json::Value::Null,
            };
            serde_json::json!({
                "property": r.property.name(),
                "verdict": r.verdict,
                "expected": r.expected,
                "vacuous": r.verdict == crate::spec::Verdict::Vacuous,
                "depth": r.trace.as_ref().map(|t| t.steps.len()),
                "trace": trace,
            })
        })
        .collect();
    serde_json::json!({
        "spec": o.spec,
        "engine": "check",
        "ok": o.ok(),
        "complete": o.complete,
        "stopped_by": o.stopped,
        "states": o.generated,
        "unique": o.unique,
        "max_depth": o.max_depth,
        "seconds": (o.seconds * 1000.0).round() / 1000.0,
        "peak_memory_mb": peak_memory_mb(),
        "results": results,
    })
}

/// Parses a stored trace, naming the file and field on error.
pub fn read_trace(path: &Path) -> Result<Trace, SpecError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| SpecError::File { file: file.clone(), message: format!("cannot read: {e}") })?;
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let message = e.inner().to_string();
        if field == "." {
            SpecError::File { file, message: format!("not a lockcheck trace: {message}") }
        } else {
            SpecError::Field { file, field, message }
        }
    })
}

/// Protocols, knobs, and each spec in `models` and scenario in `sims` with its claims.
pub fn list(models: &Path, sims: &Path, w: &mut impl Write) -> anyhow::Result<()> {
    // Everything is loaded and validated first: a bad folder or spec is an error, not a line.
    for dir in [models, sims] {
        if !dir.is_dir() {
            return Err(
                SpecError::File { file: dir.display().to_string(), message: "not a folder of specs".into() }.into()
            );
        }
    }
    let (models_loaded, sims_loaded) = (load_all(&[models.to_path_buf()])?, load_all_sims(&[sims.to_path_buf()])?);
    writeln!(w, "protocols:")?;
    for f in crate::registry::FAMILIES {
        writeln!(w, "  {:<13} {}", f.name, f.models)?;
        writeln!(w, "  {:<13} knobs: {}", "", f.knobs)?;
    }
    writeln!(w, "\nproperties:")?;
    for p in crate::property::PropertyName::ALL {
        writeln!(w, "  {:<17} {}", p.name(), p.sentence().0)?;
    }
    let mut facts = Vec::new();
    writeln!(w, "\n{}:", models.display())?;
    for l in &models_loaded {
        let claims: Vec<String> = crate::property::PropertyName::ALL
            .into_iter()
            .filter_map(|p| l.spec.expect.get(p).map(|v| format!("{}={v}", p.name())))
            .collect();
        writeln!(w, "  {:<34} {:<13} {}", l.name, l.spec.protocol, claims.join(" "))?;
        facts.push(crate::witness::SpecFacts::of_model(l));
    }
    writeln!(w, "\n{}:", sims.display())?;
    for l in &sims_loaded {
        let claims: Vec<String> = l.claims().map(|(p, v)| format!("{}={v}", p.name())).collect();
        writeln!(w, "  {:<34} {:<13} {} seeds: {}", l.name, l.spec.protocol, l.spec.seeds, claims.join(" "))?;
        facts.push(crate::witness::SpecFacts::of_sim(l));
    }
    writeln!(w)?;
    for line in crate::witness::table(&facts) {
        writeln!(w, "{line}")?;
    }
    Ok(())
}

/// Re-derives a stored trace: re-checks its spec (or re-runs its seed under its plan) and compares
/// the trace for the same property.
pub fn replay(path: &Path) -> Result<(bool, String), SpecError> {
    let stored = read_trace(path)?;
    match stored.engine.as_str() {
        "check" => {}
        "sim" => return replay_sim(path, &stored),
        other => {
            return Err(SpecError::field(path, "engine", format!("unknown engine `{other}` (check or sim)")));
        }
    }
    let used = spec_of_trace(path, &stored)?;
    let mut specs = load_all(std::slice::from_ref(&used))?;
    specs[0].path = PathBuf::from(&stored.spec);
    let outcome = crate::check::check(&specs[0], &crate::check::search::Limits::default())?;
    let Some(result) = outcome.results.iter().find(|r| r.property.name() == stored.property) else {
        return Err(SpecError::field(
            path,
            "property",
            format!("`{}` is not judged for {}", stored.property, stored.spec),
        ));
    };
    let (same, msg) = compare(result.trace.as_ref(), &stored, || {
        format!("{} now holds: the stored counterexample no longer exists", stored.property)
    });
    Ok((same, format!("{msg} (spec {})", used.display())))
}

struct Explore<'a> {
    spec: &'a Loaded,
    addr: &'a str,
}

impl crate::registry::Visit for Explore<'_> {
    type Out = anyhow::Result<()>;
    fn visit<P: crate::protocol::Protocol>(self, system: crate::system::LockSystem<P>) -> Self::Out {
        use stateright::Model;
        let props = crate::check::properties(self.spec, system.proto.issues_tokens())?;
        let world = crate::check::world::World::new(system, self.spec, props);
        // stateright's server panics on a bad address; find out first.
        std::net::TcpListener::bind(self.addr)
            .map_err(|e| anyhow::anyhow!("--addr {}: cannot listen: {e}", self.addr))?;
        eprintln!("Explorer for {} at http://{}/ (Ctrl-C to stop)", self.spec.path.display(), self.addr);
        world.checker().serve(self.addr);
        Ok(())
    }
}

/// The one spec `explore` serves: a file, or a folder holding exactly one.
pub fn explore_spec(arg: &Path) -> Result<Loaded, SpecError> {
    let mut specs = load_all(&[arg.to_path_buf()])?;
    if specs.len() != 1 {
        return Err(SpecError::File {
            file: arg.display().to_string(),
            message: format!("explore serves one spec; this folder holds {} (name one file)", specs.len()),
        });
    }
    Ok(specs.remove(0))
}

pub fn explore(spec: &Loaded, addr: &str) -> anyhow::Result<()> {
    crate::registry::build(spec, Explore { spec, addr })?
}

/// The process's peak resident memory (Linux `VmHWM`), if the platform tells.
pub fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

/// `--seeds A..B` or `--shard K/N`, checked.
pub fn parse_seeds(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("--seeds {s}: expected A..B"))?;
    let (a, b): (u64, u64) = (
        a.parse().map_err(|_| format!("--seeds {s}: `{a}` is not a number"))?,
        b.parse().map_err(|_| format!("--seeds {s}: `{b}` is not a number"))?,
    );
    if a >= b {
        return Err(format!("--seeds {s}: the range is empty"));
    }
    Ok((a, b))
}

pub fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let (k, n) = s.split_once('/').ok_or_else(|| format!("--shard {s}: expected K/N"))?;
    let (k, n): (u64, u64) = (
        k.parse().map_err(|_| format!("--shard {s}: `{k}` is not a number"))?,
        n.parse().map_err(|_| format!("--shard {s}: `{n}` is not a number"))?,
    );
    if n == 0 || k >= n {
        return Err(format!("--shard {s}: need 0 <= K < N"));
    }
    Ok((k, n))
}

pub fn load_all_sims(args: &[PathBuf]) -> Result<Vec<crate::sim::spec::LoadedSim>, SpecError> {
    let mut sims: Vec<crate::sim::spec::LoadedSim> =
        spec_files(args)?.iter().map(|p| crate::sim::spec::load_sim(p)).collect::<Result<_, _>>()?;
    let names = unique_names(sims.iter().map(|s| s.path.as_path()));
    for (s, name) in sims.iter_mut().zip(names) {
        s.name = name;
    }
    for s in &sims {
        validate(&s.as_model())?;
    }
    Ok(sims)
}

pub fn sim_trace_path(out: &Path, name: &str, property: &str, seed: u64, shrunk: bool) -> PathBuf {
    out.join(name).join(format!("{property}.seed{seed}{}.json", if shrunk { ".shrunk" } else { "" }))
}

pub fn write_sim_traces(o: &crate::sim::SimOutcome, out: &Path) -> std::io::Result<()> {
    for r in &o.results {
        for (t, shrunk) in [(&r.trace, false), (&r.shrunk, true)] {
            if let Some(t) = t {
                let json = sim_trace_path(out, &o.name, r.property.name(), t.seed.unwrap_or(0), shrunk);
                // The pages show the slice; the file keeps every step, for replay.
                write_atomic(&json, &t.to_json())?;
                write_atomic(&json.with_extension("md"), &t.slice().to_markdown(&o.participants))?;
                write_atomic(&json.with_extension("html"), &t.slice().to_html(&o.participants))?;
            }
        }
    }
    Ok(())
}

fn plan_lines(t: &Trace) -> Vec<String> {
    t.plan
        .as_ref()
        .and_then(|p| p.get("described"))
        .and_then(|d| d.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// `plan`: for a single run, its fault plan, printed first.
pub fn print_sim_human(
    o: &crate::sim::SimOutcome,
    seeds: &str,
    plan: Option<Vec<String>>,
    out: Option<&Path>,
    w: &mut impl Write,
) -> std::io::Result<()> {
    writeln!(w, "== {} (seeds {seeds}: {} runs, {:.2} s)", o.spec, o.runs, o.seconds)?;
    writeln!(w, "   {}", o.description)?;
    if let Some(plan) = plan {
        writeln!(w, "   fault plan: {}", if plan.is_empty() { "no faults".to_string() } else { plan.join("; ") })?;
    }
    writeln!(
        w,
        "   {:<17} {:<9} {:<9} {:>10} {:>24} {:>10}",
        "property", "expected", "verdict", "violations", "rate [95% interval]", "first seed"
    )?;
    for r in &o.results {
        let expected = r.expected.map(|e| e.to_string()).unwrap_or_else(|| "-".into());
        let rate = format!("{:.3} [{:.3}, {:.3}]", r.rate, r.rate_low, r.rate_high);
        let first = r.first_seed.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
        let mark = match (r.ok(), r.expected, r.verdict) {
            (false, _, _) => "  <-- MISMATCH",
            (true, None, crate::spec::Verdict::Violated) => "  <-- VIOLATED (not claimed)",
            _ => "",
        };
        writeln!(
            w,
            "   {:<17} {:<9} {:<9} {:>10} {:>24} {:>10}{}",
            r.property.name(),
            expected,
            painted(r.verdict),
            r.violations,
            rate,
            first,
            console::style(mark).red().bold(),
        )?;
    }
    let m = &o.metrics;
    writeln!(
        w,
        "   metrics: {} acquisitions, {:.1} messages and {:.1} store requests per acquisition, acquire latency p50 {} ms p99 {} ms, wake-up after a release p50 {} ms p99 {} ms, {:.1} critical sections per simulated second, {} writes rejected (fencing, aborted transaction or version conflict)",
        m.acquisitions,
        m.messages_per_acquisition,
        m.store_requests_per_acquisition,
        m.acquire_latency_p50_ms,
        m.acquire_latency_p99_ms,
        m.wakeup_latency_p50_ms,
        m.wakeup_latency_p99_ms,
        m.critical_sections_per_second,
        m.rejected_writes
    )?;
    if let Some(budget) = &o.stopped {
        writeln!(w, "   unknown: {budget}; no `holds` is confirmed (give it more time, or fewer seeds with --seeds)")?;
    }
    for r in &o.results {
        let Some(t) = &r.trace else { continue };
        writeln!(
            w,
            "-- {} violated, first at seed {}: {}",
            r.property.name(),
            t.seed.unwrap_or(0),
            r.property.sentence().0
        )?;
        for l in plan_lines(t) {
            writeln!(w, "   plan: {l}")?;
        }
        let slice = t.slice();
        writeln!(
            w,
            "   {} of {} steps: what changed what the properties observe, the faults and the violation{}",
            slice.steps.len(),
            t.steps.len(),
            match out {
                Some(dir) => format!(
                    "; every step is in {}",
                    sim_trace_path(dir, &o.name, r.property.name(), t.seed.unwrap_or(0), false).display()
                ),
                None => " (--out DIR writes every step)".into(),
            }
        )?;
        write!(w, "{}", indent(&slice.to_text()))?;
        if let Some(s) = &r.shrunk {
            let plan = plan_lines(s);
            let plan = if plan.is_empty() {
                "no faults (the seed's latencies and losses suffice)".to_string()
            } else {
                plan.join("; ")
            };
            writeln!(
                w,
                "   shrunk to {} steps ({} in its slice) with plan: {plan}",
                s.steps.len(),
                s.slice().steps.len()
            )?;
        }
        writeln!(w, "   reproduce: {}", t.reproduce)?;
    }
    writeln!(w)
}

/// One scenario's result as a JSON line.
pub fn sim_json_line(o: &crate::sim::SimOutcome, out: Option<&Path>) -> String {
    sim_json_value(o, out).to_string()
}

pub fn sim_json_value(o: &crate::sim::SimOutcome, out: Option<&Path>) -> serde_json::Value {
    let path = |t: &Option<Trace>, r: &crate::sim::PropSummary, shrunk: bool| match (t, out) {
        (Some(t), Some(dir)) => serde_json::Value::String(
            sim_trace_path(dir, &o.name, r.property.name(), t.seed.unwrap_or(0), shrunk).display().to_string(),
        ),
        _ => serde_json::Value::Null,
    };
    let results: Vec<serde_json::Value> = o
        .results
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).expect("serializes");
            v["trace"] = path(&r.trace, r, false);
            v["shrunk_trace"] = path(&r.shrunk, r, true);
            v
        })
        .collect();
    serde_json::json!({
        "spec": o.spec,
        "engine": "sim",
        "ok": o.ok(),
        "runs": o.runs,
        "seconds": (o.seconds * 1000.0).round() / 1000.0,
        "metrics": o.metrics,
        "results": results,
        "stopped_by": o.stopped,
    })
}

/// Replays a simulator trace: the stored seed under the stored plan must give the same steps.
pub fn replay_sim(path: &Path, stored: &Trace) -> Result<(bool, String), SpecError> {
    let seed = stored.seed.ok_or_else(|| SpecError::field(path, "seed", "a simulator trace needs its seed"))?;
    let plan: crate::sim::plan::Plan = stored
        .plan
        .as_ref()
        .and_then(|p| p.get("plan"))
        .ok_or_else(|| SpecError::field(path, "plan", "a simulator trace needs its plan"))
        .and_then(|p| serde_json::from_value(p.clone()).map_err(|e| SpecError::field(path, "plan", e.to_string())))?;
    let used = spec_of_trace(path, stored)?;
    let mut sims = load_all_sims(std::slice::from_ref(&used))?;
    // The trace names its spec as it was given; so does the re-derived one.
    sims[0].path = PathBuf::from(&stored.spec);
    let nodes = crate::sim::participants(&sims[0])?.len();
    plan.validate(nodes, sims[0].spec.time.fault_window_ms)
        .map_err(|(field, why)| SpecError::field(path, field, why))?;
    let seeds = crate::sim::Seeds { from: seed, to: seed.saturating_add(1), shard: None };
    let opts = crate::sim::Options { jobs: 1, shrink: false, progress: false, full_duration: false, max_seconds: None };
    let (o, runs) = crate::sim::simulate(&sims[0], &seeds, &opts, Some(plan.clone()))?;
    let v = runs.first().and_then(|r| r.violations.iter().find(|v| v.property.name() == stored.property));
    let derived = v.map(|v| crate::sim::trace_of(&sims[0], seed, &plan, v, &o.participants));
    let (same, msg) =
        compare(derived.as_ref(), stored, || format!("seed {seed} no longer violates {}", stored.property));
    Ok((same, format!("{msg} (spec {})", used.display())))
}

/// The spec file a trace names: as written (relative to the current folder), or else relative to
/// the folders the trace file sits in, then the folders around the current one, nearest first: a
/// trace under `reports/` replays from anywhere, and any trace from inside the repository.
fn spec_of_trace(trace: &Path, stored: &Trace) -> Result<PathBuf, SpecError> {
    let named = PathBuf::from(&stored.spec);
    if named.is_file() {
        return Ok(named);
    }
    let dir = std::fs::canonicalize(trace).ok().and_then(|p| p.parent().map(Path::to_path_buf));
    let cwd = std::env::current_dir().ok();
    let found = dir.iter().chain(cwd.iter()).flat_map(|d| d.ancestors()).map(|a| a.join(&named)).find(|p| p.is_file());
    found.ok_or_else(|| {
        let why = format!("`{}` is under neither the trace's folders nor the current one's", stored.spec);
        SpecError::field(trace, "spec", why)
    })
}

/// Whether a re-derived trace is the stored one, byte for byte, and a line saying so.
fn compare(derived: Option<&Trace>, stored: &Trace, missing: impl FnOnce() -> String) -> (bool, String) {
    match derived {
        Some(t) if t.to_json() == stored.to_json() => {
            (true, format!("identical: {} steps re-derived for {}", t.steps.len(), stored.property))
        }
        Some(t) => {
            let at = t
                .steps
                .iter()
                .zip(&stored.steps)
                .position(|(a, b)| a != b)
                .unwrap_or(t.steps.len().min(stored.steps.len()));
            (
                false,
                format!(
                    "differs from step {}: re-derived {} steps, stored {}",
                    at + 1,
                    t.steps.len(),
                    stored.steps.len()
                ),
            )
        }
        None => (false, missing()),
    }
}

/// `lockcheck check`: checks every spec (`threads` at a time), prints and writes in spec order.
pub fn check_all(
    specs: &[Loaded],
    limits: &crate::check::search::Limits,
    threads: usize,
    out: Option<&Path>,
    json: bool,
    w: &mut impl Write,
) -> anyhow::Result<bool> {
    let limits = crate::check::search::Limits { progress: limits.progress && threads == 1, ..*limits };
    let mut all_ok = true;
    let mut done = 0;
    for chunk in specs.chunks(threads.max(1)) {
        if crate::progress::interrupted() {
            break;
        }
        done += chunk.len();
        type Checked = Result<(crate::check::Outcome, Vec<Twin>), SpecError>;
        let outcomes: Vec<Checked> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|s| {
                    scope.spawn(|| Ok((crate::check::check(s, &limits)?, crate::witness::model_twins(s, &limits)?)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a checker thread panicked")).collect()
        });
        for outcome in outcomes {
            let (outcome, twins) = outcome?;
            if let Some(dir) = out {
                write_traces(&outcome, dir)?;
            }
            if json {
                writeln!(w, "{}", with_twins(json_value(&outcome, out), &twins))?;
            } else {
                print_human(&outcome, w)?;
                print_twins(&twins, w)?;
            }
            all_ok &= outcome.ok() && twins.iter().all(Twin::ok);
        }
    }
    say_interrupted(done, specs.len(), "specs");
    Ok(all_ok)
}

/// A verdict as printed: green holds, red violated, yellow vacuous or unknown (when colour is on:
/// `--color`, else a terminal without `NO_COLOR`).
fn painted(v: Verdict) -> console::StyledObject<String> {
    let s = console::style(v.to_string());
    match v {
        Verdict::Holds => s.green(),
        Verdict::Violated => s.red(),
        Verdict::Vacuous | Verdict::Unknown => s.yellow(),
    }
}

/// After Ctrl-C: what finished (printed above) and what did not run.
fn say_interrupted(done: usize, total: usize, what: &str) {
    if crate::progress::interrupted() {
        eprintln!(
            "interrupted (Ctrl-C): {done} of {total} {what} ran, their results are above (the last one stopped early: its open verdicts are `unknown`); {} did not run",
            total - done
        );
    }
}

/// `lockcheck sim`: runs every scenario over `range` (default: its own `seeds`), prints and writes.
pub fn sim_all(
    sims: &[crate::sim::spec::LoadedSim],
    range: Option<(u64, u64)>,
    shard: Option<(u64, u64)>,
    opts: &crate::sim::Options,
    out: Option<&Path>,
    json: bool,
    w: &mut impl Write,
) -> anyhow::Result<bool> {
    let mut all_ok = true;
    let mut done = 0;
    for sim in sims {
        if crate::progress::interrupted() {
            break;
        }
        done += 1;
        let (from, to) = range.unwrap_or((0, sim.spec.seeds));
        let seeds = crate::sim::Seeds { from, to, shard };
        let (outcome, runs) = crate::sim::simulate(sim, &seeds, opts, None)?;
        // A twin says something only over the scenario's own sweep.
        let twins = if outcome.partial || range.is_some() {
            Vec::new()
        } else {
            crate::witness::sim_twins(sim, &crate::sim::Options { shrink: false, ..*opts }, sim.spec.seeds)?
        };
        if let Some(dir) = out {
            write_sim_traces(&outcome, dir)?;
        }
        if json {
            writeln!(w, "{}", with_twins(sim_json_value(&outcome, out), &twins))?;
        } else {
            let label = match shard {
                Some((k, n)) => format!("{from}..{to} shard {k}/{n}"),
                None => format!("{from}..{to}"),
            };
            let plan = (runs.len() == 1).then(|| runs[0].plan.describe(&outcome.participants));
            print_sim_human(&outcome, &label, plan, out, w)?;
            print_twins(&twins, w)?;
        }
        all_ok &= outcome.ok() && twins.iter().all(Twin::ok);
    }
    say_interrupted(done, sims.len(), "scenarios");
    Ok(all_ok)
}

fn print_twins(twins: &[Twin], w: &mut impl Write) -> std::io::Result<()> {
    twins.iter().try_for_each(|t| writeln!(w, "   {}", t.describe()))
}

/// A JSON result line with its witness twins added (`"witness": [{"field": .., "verdicts": {..}}]`).
fn with_twins(mut line: serde_json::Value, twins: &[Twin]) -> String {
    if !twins.is_empty() {
        let t: Vec<serde_json::Value> = twins
            .iter()
            .map(|t| {
                let v: serde_json::Map<String, serde_json::Value> =
                    t.verdicts.iter().map(|(p, _, v)| (p.name().to_string(), serde_json::json!(v))).collect();
                serde_json::json!({ "field": t.field, "verdicts": v, "ok": t.ok() })
            })
            .collect();
        line["witness"] = serde_json::Value::Array(t);
    }
    line.to_string()
}

/// What `confirm` runs: a spec (every property it claims violated), or a trace written by `check
/// --out` (its steps matched to the model's actions under its spec, then walked).
pub fn confirm_inputs(args: &[PathBuf]) -> Result<Vec<(Loaded, Option<Trace>)>, SpecError> {
    let mut inputs = Vec::new();
    for arg in args {
        if arg.extension().is_some_and(|e| e == "json") {
            let stored = read_trace(arg)?;
            if stored.engine != "check" {
                let why = format!("`{}`: confirm walks the model checker's traces (engine \"check\")", stored.engine);
                return Err(SpecError::field(arg, "engine", why));
            }
            let mut spec = load_all(&[spec_of_trace(arg, &stored)?])?.remove(0);
            spec.path = PathBuf::from(&stored.spec);
            inputs.push((spec, Some(stored)));
        } else {
            inputs.extend(load_all(std::slice::from_ref(arg))?.into_iter().map(|s| (s, None)));
        }
    }
    Ok(inputs)
}

/// Confirms each input's counterexamples on the real servers; true when at least one was
/// confirmed and none diverged or failed to happen. Those not attempted (no real counterpart, a
/// walk the real server takes no part in) are listed, not failed: no real run could change them.
pub fn confirm_all(
    inputs: &[(Loaded, Option<Trace>)],
    cfg: crate::real::RealCfg,
    out: Option<&Path>,
    w: &mut impl Write,
) -> anyhow::Result<bool> {
    let limits = crate::check::search::Limits::default();
    let (mut failed, mut confirmed) = (false, 0);
    for (spec, stored) in inputs {
        let report = match stored {
            Some(t) => crate::confirm::confirm_trace(spec, t, cfg)?,
            None => crate::confirm::confirm(spec, cfg, &limits)?,
        };
        print_confirmation(&report, w)?;
        if let Some(dir) = out {
            for t in report.results.iter().filter_map(|r| r.trace.as_ref()) {
                let json = trace_path(dir, &spec.name, &format!("{}.confirm", t.property));
                write_atomic(&json, &t.to_json())?;
                write_atomic(&json.with_extension("md"), &t.to_markdown(&participants(spec)?))?;
            }
        }
        failed |= report.failed();
        confirmed += report.confirmed();
        if crate::progress::interrupted() {
            break;
        }
    }
    writeln!(w, "{confirmed} counterexamples confirmed{}", if failed { "; some were NOT (above)" } else { "" })?;
    Ok(!failed && confirmed > 0)
}

/// Plays `seeds` of each scenario with the real servers answering; true when some scenario ran
/// and no run diverged.
pub fn confirm_scenarios(
    args: &[PathBuf],
    seeds: &[u64],
    cfg: crate::real::RealCfg,
    w: &mut impl Write,
) -> anyhow::Result<bool> {
    let sims: Vec<crate::sim::spec::LoadedSim> =
        spec_files(args)?.iter().map(|p| crate::sim::spec::load_sim(p)).collect::<Result<_, _>>()?;
    let (mut diverged, mut ran) = (false, false);
    for sim in &sims {
        let r = crate::confirm::confirm_seeds(sim, seeds, cfg)?;
        print_seeds(&r, w)?;
        diverged |= r.diverged.is_some();
        ran |= r.not_attempted.is_none();
        if crate::progress::interrupted() {
            break;
        }
    }
    Ok(ran && !diverged)
}

fn print_seeds(r: &crate::confirm::SeedsReport, w: &mut impl Write) -> std::io::Result<()> {
    let on = r.system.as_deref().map(|s| format!(" on {s}")).unwrap_or_default();
    writeln!(w, "== {}{on}", r.spec)?;
    if let Some(why) = &r.not_attempted {
        return writeln!(w, "  not attempted: {why}");
    }
    let answered = r.runs - r.diverged_runs;
    for (p, simulated, real) in &r.rates {
        writeln!(
            w,
            "  {:<18} simulator {simulated}/{} runs · real servers {real}/{answered} runs answered as the model did",
            p.name(),
            r.runs
        )?;
    }
    match &r.diverged {
        None => writeln!(w, "  every answer of the real servers in {} runs was the model's", r.runs),
        Some((seed, k, model, real)) => {
            let word = console::style(format!("{} of {} runs diverged", r.diverged_runs, r.runs)).red().bold();
            writeln!(w, "  {word}; the first, seed {seed}, at the real servers' answer {k}:")?;
            writeln!(w, "      the model: {model}")?;
            writeln!(w, "      the real server: {real}")
        }
    }
}

fn participants(spec: &Loaded) -> Result<Vec<String>, SpecError> {
    struct Names;
    impl crate::registry::Visit for Names {
        type Out = Vec<String>;
        fn visit<P: crate::protocol::Protocol>(self, system: crate::system::LockSystem<P>) -> Self::Out {
            use crate::protocol::Machine;
            system.nodes().iter().map(|n| n.name.clone()).collect()
        }
    }
    crate::registry::build(spec, Names)
}

pub fn print_confirmation(r: &crate::confirm::Report, w: &mut impl Write) -> std::io::Result<()> {
    use crate::confirm::Outcome;
    let on = r.system.as_deref().map(|s| format!(" on {s}")).unwrap_or_default();
    writeln!(w, "== {}{on}", r.spec)?;
    if r.results.is_empty() {
        writeln!(w, "  no property is claimed violated: nothing to confirm")?;
    }
    for c in &r.results {
        let steps = c.trace.as_ref().map(|t| t.steps.len()).unwrap_or(0);
        let word = match &c.outcome {
            Outcome::Confirmed => console::style(c.outcome.word()).green().to_string(),
            Outcome::NotAttempted(why) => format!("{}: {why}", c.outcome.word()),
            _ => console::style(c.outcome.word()).red().bold().to_string(),
        };
        let walked = if steps > 0 { format!(" ({steps} steps walked)") } else { String::new() };
        writeln!(w, "  {:<18} {word}{walked}", c.property.name())?;
        if let Outcome::Diverged { model, real, .. } = &c.outcome {
            writeln!(w, "      the model: {model}")?;
            writeln!(w, "      the real server: {real}")?;
        }
        if let Some(t) = &c.trace
            && c.outcome != Outcome::NotReproduced
        {
            for s in t.steps.iter().filter(|s| s.detail.contains(" · real: ")) {
                writeln!(w, "      {:>3}. {}", s.step, s.detail)?;
            }
        }
    }
    Ok(())
}

//! `lockcheck report`: the seed note's comparison of approaches, judged under one standard fault
//! battery in both engines ([`crate::battery`]), the answer drawn from it, and every spec in
//! `models/` and every scenario in `sims/` re-derived, written to `reports/` as Markdown with their
//! traces and as `results.json`. Nothing in `reports/` depends on the machine or the hour: timings
//! go to `timings.txt` beside it, which git ignores.

mod compare;
mod html;
pub mod plots;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::battery::{Battery, Judged};
use crate::check::Outcome;
use crate::property::PropertyName;
use crate::sim::SimOutcome;
use crate::spec::Verdict;

/// One approach (protocol and knobs) and what each engine found about it.
#[derive(Default)]
struct Row {
    /// Per property: (spec or scenario name, verdict, how it was found).
    findings: BTreeMap<PropertyName, Vec<(String, Verdict, String)>>,
    messages_per_acquisition: Option<f64>,
    p99_ms: Option<u64>,
}

fn cell(findings: Option<&Vec<(String, Verdict, String)>>) -> String {
    let Some(f) = findings else { return "·".into() };
    let broken: Vec<&(String, Verdict, String)> = f.iter().filter(|x| x.1 == Verdict::Violated).collect();
    match broken.first() {
        Some((name, _, how)) => format!("**no** ({name}, {how})"),
        None => format!("yes ({})", f.iter().map(|x| x.0.as_str()).collect::<Vec<_>>().join(", ")),
    }
}

const COLUMNS: [(PropertyName, &str); 7] = [
    (PropertyName::MutualExclusion, "exclusive (beliefs)"),
    (PropertyName::NoStaleWrite, "no stale write"),
    (PropertyName::NoOversell, "no oversell"),
    (PropertyName::DeadlockFree, "no deadlock"),
    (PropertyName::Available, "available"),
    (PropertyName::Reentrant, "reentrant"),
    (PropertyName::NoDuplicateEffect, "no duplicate effect"),
];

/// The answer and the comparison table, with what the battery is.
fn battery_section(battery: &[Judged]) -> String {
    let mut md = String::from("## Which lock should I use?\n\n");
    md.push_str("Generated from the verdicts of the table below: every approach was judged under the same standard fault battery ");
    md.push_str("([model checker](../models/battery/standard.toml), [simulator](../sims/battery/standard.toml)), so the rows compare.\n\n");
    md.push_str(&compare::answer(battery));
    md.push_str("## Approaches compared under the standard battery\n\n");
    if let Some(j) = battery.first() {
        let _ = writeln!(md, "Model checker: {}\n\nSimulator: {}\n", j.model.description, j.sim.description);
    }
    md.push_str("Each cell: the verdict of both engines together (**no** if either found a counterexample), then the model checker's evidence and the simulator's. ");
    md.push_str("Reentrancy is checked apart, with nested acquires and no faults ([spec](../models/battery/reentrant.toml)). The last three columns are the seed's pros and cons, measured by the simulator under the battery.\n\n");
    md.push_str("A model counterexample *confirmed on* a real server was walked again, step by step, with that server (from Debian's packages, started by lockcheck on 127.0.0.1) answering wherever the model's server did, while lockcheck played the clients, the network, the faults and the server's wall clock (ZooKeeper's sessions and etcd's leases run on the server's own monotonic clock: there a tick took 500 real ms on ZooKeeper, a second on etcd, whose lease TTLs are whole seconds); it answered every step as the model did, and the property broke (`lockcheck confirm`). Where the stock is not kept by the lock's own server (a database), it is a real PostgreSQL table too, fenced by its `max_token` column: *the stock in PostgreSQL*. *Diverged at step k*: it answered otherwise there. The lease service has no real counterpart and says nothing.\n\n");
    md.push_str(&compare::table(battery));
    md.push('\n');
    md
}

/// Each chart, then its points as a table.
fn plots_section(charts: &[plots::Chart]) -> String {
    let mut md = String::from("## Plots\n\n");
    md.push_str(
        "Simulator sweeps of the battery's approaches over one setting ([what is swept](../sims/plots/plots.toml)); ",
    );
    md.push_str("each point is one sweep, with its 95 % interval.\n\n");
    for c in charts {
        let _ =
            writeln!(md, "### {}: {}\n\n![{}](plots/{})\n\n{}", c.title, c.y_label, c.title, c.file, c.to_markdown());
    }
    md
}

/// Every verdict and figure of the run, for other tools.
fn results_json(
    battery: &[Judged],
    charts: &[plots::Chart],
    models: &[(Outcome, String)],
    sims: &[(SimOutcome, String)],
) -> String {
    use serde_json::json;
    let sim_json = |o: &SimOutcome| {
        json!({
            "name": o.name, "runs": o.runs, "metrics": o.metrics,
            "results": o.results.iter().map(|r| json!({
                "property": r.property.name(), "verdict": r.verdict.to_string(),
                "expected": r.expected.map(|e| e.to_string()), "violations": r.violations,
                "rate": r.rate, "rate_low": r.rate_low, "rate_high": r.rate_high, "first_seed": r.first_seed,
            })).collect::<Vec<_>>(),
        })
    };
    let model_json = |o: &Outcome| {
        json!({
            "name": o.name, "states": o.generated, "unique": o.unique, "complete": o.complete,
            "results": o.results.iter().map(|r| json!({
                "property": r.property.name(), "verdict": r.verdict.to_string(),
                "expected": r.expected.map(|e| e.to_string()),
                "counterexample_steps": r.trace.as_ref().map(|t| t.steps.len()),
            })).collect::<Vec<_>>(),
        })
    };
    let rows: Vec<_> = battery
        .iter()
        .map(|j| {
            let verdicts: serde_json::Map<String, serde_json::Value> = compare::REQUIREMENTS
                .iter()
                .filter_map(|&(p, _)| compare::judge(j, p).map(|x| (p.name().to_string(), json!(x.verdict.to_string()))))
                .collect();
            json!({
                "group": j.approach.group, "approach": j.approach.name, "protocol": j.approach.protocol,
                "options": j.approach.options, "verdicts": verdicts,
                "model": model_json(&j.model), "reentrant": j.reentrant.as_ref().map(model_json), "sim": sim_json(&j.sim),
                "real_server": j.confirmed.iter().map(|(p, w)| (p.name().to_string(), json!(w))).collect::<serde_json::Map<_, _>>(),
                "sim_one_fault_alone": crate::battery::SIM_FAULTS.iter().zip(&j.alone)
                    .map(|((_, field), o)| json!({"fault": field, "outcome": sim_json(o)})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let all = json!({
        "comparison": rows,
        "plots": charts,
        "models": models.iter().map(|(o, a)| json!({"option_set": a, "outcome": model_json(o)})).collect::<Vec<_>>(),
        "sims": sims.iter().map(|(o, a)| json!({"option_set": a, "outcome": sim_json(o)})).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&all).expect("plain values serialize") + "\n"
}

/// The Markdown page; `battery` the rows of the comparison, `models` and `sims` the catalog as the
/// engines returned it. Each catalog outcome comes with its option set (`registry::approach`).
pub fn render(
    battery: &[Judged],
    charts: &[plots::Chart],
    models: &[(Outcome, String)],
    sims: &[(SimOutcome, String)],
) -> String {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for (o, approach) in models {
        let row = rows.entry(approach.clone()).or_default();
        // A `holds` nothing exercised, or one a budget cut short, says nothing about the approach.
        for r in o.results.iter().filter(|r| matches!(r.verdict, Verdict::Holds | Verdict::Violated)) {
            let how = match r.trace.as_ref().map(|t| t.steps.len()) {
                Some(1) => "1 step".to_string(),
                Some(n) => format!("{n} steps"),
                None => "exhaustive".into(),
            };
            row.findings.entry(r.property).or_default().push((o.name.clone(), r.verdict, how));
        }
    }
    for (o, approach) in sims {
        let row = rows.entry(approach.clone()).or_default();
        for r in &o.results {
            let how = match r.first_seed {
                Some(s) => format!("seed {s}, {}/{} runs", r.violations, o.runs),
                None => format!("{} runs", o.runs),
            };
            row.findings.entry(r.property).or_default().push((format!("sim {}", o.name), r.verdict, how));
        }
        if o.metrics.acquisitions > 0 {
            row.messages_per_acquisition = Some(o.metrics.messages_per_acquisition);
            row.p99_ms = Some(o.metrics.acquire_latency_p99_ms);
        }
    }

    let mut md = String::from("# lockcheck report\n\n");
    md.push_str("Regenerated by `lockcheck report`. Every verdict below was derived on this run, by exhaustive model checking and by seeded simulation; ");
    md.push_str("every **no** links the counterexample, every yes says how much was checked. The linked traces are written beside this page by the same command.\n\n");
    md.push_str(&battery_section(battery));
    md.push_str(&plots_section(charts));
    md.push_str("## Catalog by option set\n\n");
    md.push_str("The single scenarios of `models/` and `sims/`, grouped by protocol and knobs: each was judged under its own faults, so rows of this table do not compare; they explain the cells above. `·`: not judged by any spec.\n\n");
    let _ = write!(md, "| approach |");
    for (_, title) in COLUMNS {
        let _ = write!(md, " {title} |");
    }
    md.push_str(" messages / acquisition | acquire p99 |\n|---|");
    md.push_str(&"---|".repeat(COLUMNS.len() + 2));
    md.push('\n');
    for (name, row) in &rows {
        let _ = write!(md, "| `{name}` |");
        for (p, _) in COLUMNS {
            let _ = write!(md, " {} |", cell(row.findings.get(&p)));
        }
        let msgs = row.messages_per_acquisition.map(|m| format!("{m:.1}")).unwrap_or_else(|| "·".into());
        let p99 = row.p99_ms.map(|m| format!("{m} ms")).unwrap_or_else(|| "·".into());
        let _ = writeln!(md, " {msgs} | {p99} |");
    }

    md.push_str("\n## Model checking (`models/`)\n\n| spec | property | expected | verdict | shortest counterexample | states (unique) |\n|---|---|---|---|---|---|\n");
    for (o, _) in models {
        for r in &o.results {
            let expected = r.expected.map(|e| e.to_string()).unwrap_or_else(|| "-".into());
            let trace = match &r.trace {
                Some(t) => format!(
                    "[{} steps](models/{}/{}.md) ([picture](models/{}/{}.html))",
                    t.steps.len(),
                    o.name,
                    r.property.name(),
                    o.name,
                    r.property.name()
                ),
                None => "-".into(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {expected} | {} | {trace} | {} ({}) |",
                o.name,
                r.property.name(),
                r.verdict,
                o.generated,
                o.unique
            );
        }
    }
    md.push_str("\n## Simulation (`sims/`)\n\n| scenario | property | expected | verdict | violating runs | rate [95 %] | first seed | shrunk |\n|---|---|---|---|---|---|---|---|\n");
    for (o, _) in sims {
        for r in &o.results {
            let expected = r.expected.map(|e| e.to_string()).unwrap_or_else(|| "-".into());
            let first = match (&r.trace, r.first_seed) {
                (Some(_), Some(s)) => {
                    let base = format!("sims/{}/{}.seed{s}", o.name, r.property.name());
                    format!("[{s}]({base}.md) ([picture]({base}.html))")
                }
                _ => "-".into(),
            };
            let shrunk = match (&r.shrunk, r.first_seed) {
                (Some(t), Some(s)) => {
                    format!("[{} steps](sims/{}/{}.seed{s}.shrunk.md)", t.steps.len(), o.name, r.property.name())
                }
                _ => "-".into(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {expected} | {} | {}/{} | {:.3} [{:.3}, {:.3}] | {first} | {shrunk} |",
                o.name,
                r.property.name(),
                r.verdict,
                r.violations,
                o.runs,
                r.rate,
                r.rate_low,
                r.rate_high
            );
        }
    }
    md.push_str("\n## Efficiency (simulation)\n\n| scenario | acquisitions | messages / acq. | store requests / acq. | acquire p50 | acquire p99 | wake-up p50 | wake-up p99 | critical sections / s | writes rejected (fencing, aborted transaction, version conflict) |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for (o, _) in sims {
        let m = &o.metrics;
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {} ms | {} ms | {} ms | {} ms | {:.1} | {} |",
            o.name,
            m.acquisitions,
            m.messages_per_acquisition,
            m.store_requests_per_acquisition,
            m.acquire_latency_p50_ms,
            m.acquire_latency_p99_ms,
            m.wakeup_latency_p50_ms,
            m.wakeup_latency_p99_ms,
            m.critical_sections_per_second,
            m.rejected_writes
        );
    }
    md
}

/// Checks every model, simulates every scenario, writes `out/` and returns whether every claim held.
/// Each phase shows a bar on a terminal; Ctrl-C stops at the next spec and writes no page.
pub fn run(models_dir: &Path, sims_dir: &Path, out: &Path, jobs: usize) -> anyhow::Result<bool> {
    let specs = crate::cli::load_all(&[models_dir.to_path_buf()])?;
    let scenarios = crate::cli::load_all_sims(&[sims_dir.to_path_buf()])?;
    let battery = Battery::load(models_dir, sims_dir)?;
    let plot_specs = plots::Plots::load(&sims_dir.join("plots").join("plots.toml"), &battery)?;
    crate::cli::usable_out(out)?;
    let limits = crate::check::search::Limits { progress: false, ..Default::default() };
    let opts = crate::sim::Options { jobs, progress: false, ..crate::sim::default_options() };
    let stop = |phase: &str| -> anyhow::Result<()> {
        if crate::progress::interrupted() {
            anyhow::bail!("interrupted (Ctrl-C) during {phase}: {} was not rewritten", out.join("README.md").display());
        }
        Ok(())
    };
    let mut timings = String::from("seconds per spec on this machine (not part of the report: it varies)\n");
    let mut models = Vec::new();
    // Each witness's twin too: a fault that stopped mattering fails the report.
    let mut witnesses_ok = true;
    // The searches are single-threaded and independent: `jobs` of them at a time.
    let checked = crate::progress::in_parallel("models", "specs", &specs, jobs, |s| {
        Ok::<_, crate::spec::SpecError>((crate::witness::model_twins(s, &limits)?, crate::check::check(s, &limits)?))
    });
    stop("the models")?;
    for (s, c) in specs.iter().zip(checked) {
        let (twins, o) = c?;
        for t in &twins {
            witnesses_ok &= report_twin(&s.path, t);
        }
        let _ = writeln!(timings, "models/{} {:.2}", o.name, o.seconds);
        crate::cli::write_traces(&o, &out.join("models"))?;
        models.push((o, crate::registry::approach(s)?));
    }
    let mut sims = Vec::new();
    let bar = crate::progress::bar("scenarios", scenarios.len() as u64, "scenarios");
    for s in &scenarios {
        bar.set_message(s.name.clone());
        for t in crate::witness::sim_twins(s, &crate::sim::Options { shrink: false, ..opts }, s.spec.seeds)? {
            witnesses_ok &= report_twin(&s.path, &t);
        }
        let seeds = crate::sim::Seeds { from: 0, to: s.spec.seeds, shard: None };
        let (o, _) = crate::sim::simulate(s, &seeds, &opts, None)?;
        let _ = writeln!(timings, "sims/{} {:.2}", o.name, o.seconds);
        crate::cli::write_sim_traces(&o, &out.join("sims"))?;
        sims.push((o, crate::registry::approach(&s.as_model())?));
        bar.inc(1);
        stop("the scenarios")?;
    }
    bar.finish_and_clear();
    let judged = battery.judge(&limits, &crate::sim::Options { shrink: true, ..opts })?;
    stop("the battery")?;
    for j in &judged {
        for (id, kind, from, table) in battery.filled(&j.approach) {
            let text = format!(
                "# The comparison's row \"{}\": {} with the row's protocol and options filled in, as\n\
                 # `lockcheck report` judged it. The traces beside this file name it: it reproduces them.\n\n{}",
                j.approach.name,
                from.display(),
                toml::to_string(&table)?
            );
            crate::cli::write_atomic(&out.join(crate::battery::written_spec(&id, kind)), &text)?;
        }
        crate::cli::write_traces(&j.model, &out.join("battery"))?;
        if let Some(r) = &j.reentrant {
            crate::cli::write_traces(r, &out.join("battery"))?;
        }
        crate::cli::write_sim_traces(&j.sim, &out.join("battery"))?;
        let _ = writeln!(timings, "battery/{} {:.2} + {:.2}", j.approach.id(), j.model.seconds, j.sim.seconds);
    }
    let started = std::time::Instant::now();
    let charts = plot_specs.run(&battery, &opts)?;
    stop("the plots")?;
    let _ = writeln!(timings, "plots {:.2}", started.elapsed().as_secs_f64());
    for c in &charts {
        crate::cli::write_atomic(&out.join("plots").join(&c.file), &c.to_svg())?;
    }
    let page = render(&judged, &charts, &models, &sims);
    crate::cli::write_atomic(&out.join("index.html"), &html::index(&page, &charts, &judged))?;
    crate::cli::write_atomic(&out.join("README.md"), &page)?;
    crate::cli::write_atomic(&out.join("results.json"), &results_json(&judged, &charts, &models, &sims))?;
    crate::cli::write_atomic(&out.join("timings.txt"), &timings)?;
    Ok(witnesses_ok && models.iter().all(|m| m.0.ok()) && sims.iter().all(|s| s.0.ok()))
}

/// A twin that failed is said on stderr (the report page shows verdicts, not witnesses).
fn report_twin(spec: &Path, t: &crate::witness::Twin) -> bool {
    if !t.ok() {
        eprintln!("{}: {}", spec.display(), t.describe());
    }
    t.ok()
}

//! `lockcheck bench`: per spec, unique states, states/s, seconds to verdict and peak memory.
//!
//! Each spec runs in a child process (`lockcheck check --json --claimed-only`, without and with
//! `--symmetry`), so the peak memory is that model's alone and the search stops at the first
//! counterexample of a claimed violation.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::spec_files;
use crate::spec::SpecError;

pub struct Row {
    pub spec: String,
    pub symmetry: bool,
    pub verdicts: String,
    pub unique: u64,
    pub seconds: f64,
    pub peak_mb: Option<f64>,
    pub ok: bool,
}

pub fn run(exe: &Path, dirs: &[PathBuf]) -> Result<Vec<Row>, SpecError> {
    let files = spec_files(dirs)?;
    crate::cli::load_all(&files)?;
    let mut rows = Vec::new();
    for (f, symmetry) in files.iter().flat_map(|f| [(f, false), (f, true)]) {
        let file = f.display().to_string();
        let mut args = vec!["check", "--json", "--claimed-only", &file];
        if symmetry {
            args.push("--symmetry");
        }
        let out = Command::new(exe)
            .args(&args)
            .output()
            .map_err(|e| SpecError::File { file: file.clone(), message: format!("cannot run the checker: {e}") })?;
        let line = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(line.trim())
            .map_err(|e| SpecError::File { file: file.clone(), message: format!("checker output unreadable: {e}") })?;
        let verdicts = v["results"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| {
                        format!("{}={}", r["property"].as_str().unwrap_or("?"), r["verdict"].as_str().unwrap_or("?"))
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        rows.push(Row {
            spec: f.file_stem().and_then(|s| s.to_str()).unwrap_or("?").to_string(),
            symmetry,
            verdicts,
            unique: v["unique"].as_u64().unwrap_or(0),
            seconds: v["seconds"].as_f64().unwrap_or(0.0),
            peak_mb: v["peak_memory_mb"].as_f64(),
            ok: v["ok"].as_bool().unwrap_or(false),
        });
    }
    Ok(rows)
}

pub fn print(rows: &[Row], w: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(
        w,
        "{:<24} {:<4} {:>10} {:>12} {:>9} {:>8} {:>8}  verdicts",
        "spec", "sym", "unique", "states/s", "seconds", "peak MB", "B/state"
    )?;
    for r in rows {
        let rate = if r.seconds > 0.0 { format!("{:.0}", r.unique as f64 / r.seconds) } else { "-".into() };
        let mem = r.peak_mb.map(|m| format!("{m:.1}")).unwrap_or_else(|| "-".into());
        // The whole process's peak over the states it kept: what one more state costs, tables included.
        let per_state = match r.peak_mb {
            Some(m) if r.unique > 0 => format!("{:.0}", m * 1_048_576.0 / r.unique as f64),
            _ => "-".into(),
        };
        let mark = if r.ok { "" } else { "  <-- MISMATCH" };
        let sym = if r.symmetry { "yes" } else { "no" };
        writeln!(
            w,
            "{:<24} {:<4} {:>10} {:>12} {:>9.3} {:>8} {per_state:>8}  {}{mark}",
            r.spec, sym, r.unique, rate, r.seconds, mem, r.verdicts
        )?;
    }
    Ok(())
}

/// Simulator figures for one scenario: seeds/s and simulated time per wall time on 1 and 2 jobs,
/// and the same scenario once in real time over loopback sockets.
pub fn sim(path: &Path, seeds: u64, w: &mut impl std::io::Write) -> anyhow::Result<()> {
    use crate::sim::{Options, Seeds, simulate};
    let mut sim = crate::sim::spec::load_sim(path)?;
    let per_run_ms = sim.spec.time.fault_window_ms + sim.spec.time.settle_ms;
    writeln!(w, "\nsimulator: {} ({seeds} seeds of {per_run_ms} simulated ms)", path.display())?;
    writeln!(w, "{:<28} {:>10} {:>12} {:>16}", "run", "seconds", "seeds/s", "sim time / wall")?;
    let steps = [1, sim.spec.time.step_ms.max(2)];
    for (step, jobs) in steps.iter().flat_map(|s| [(*s, 1), (*s, 2)]) {
        sim.spec.time.step_ms = step;
        let opts = Options { jobs, shrink: false, progress: false, full_duration: true, max_seconds: None };
        let started = std::time::Instant::now();
        let (o, _) = simulate(&sim, &Seeds { from: 0, to: seeds, shard: None }, &opts, None)?;
        let secs = started.elapsed().as_secs_f64();
        let ratio = (o.runs * per_run_ms) as f64 / 1000.0 / secs;
        writeln!(
            w,
            "{:<28} {:>10.2} {:>12.0} {:>15.0}x",
            format!("turmoil step {step} ms, {jobs} job(s)"),
            secs,
            o.runs as f64 / secs,
            ratio
        )?;
    }
    let started = std::time::Instant::now();
    let m = crate::registry::build(&sim.as_model(), RealTime(&sim))??;
    let secs = started.elapsed().as_secs_f64();
    writeln!(
        w,
        "{:<28} {:>10.2} {:>12.2} {:>15.2}x  ({} acquisitions)",
        "real time, loopback UDP",
        secs,
        1.0 / secs,
        per_run_ms as f64 / 1000.0 / secs,
        m.acquisitions
    )?;
    Ok(())
}

struct RealTime<'a>(&'a crate::sim::spec::LoadedSim);

impl crate::registry::Visit for RealTime<'_> {
    type Out = anyhow::Result<crate::sim::driver::Metrics>;
    fn visit<P: crate::protocol::Protocol>(self, system: crate::system::LockSystem<P>) -> Self::Out {
        use crate::protocol::Machine;
        let props = crate::check::properties(&self.0.as_model(), system.proto.issues_tokens())?;
        let cfg = crate::sim::run_cfg(self.0, props);
        let plan = crate::sim::plan::draw_plan(self.0, system.nodes(), 0);
        crate::sim::driver::run_realtime(std::sync::Arc::new(system), &cfg, &plan).map_err(anyhow::Error::msg)
    }
}

/// The approaches `--pressure` measures, as `benches/pressure/approaches.toml` lists them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Approaches {
    clients: Vec<usize>,
    approach: Vec<Approach>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Approach {
    protocol: String,
    #[serde(default)]
    options: toml::Table,
}

/// Blocking and pressure: every approach under one standard contention scenario, from 2 to 8
/// clients: messages and store requests per acquisition, time to acquire, and how long a waiter
/// takes to notice a release. Printed as a Markdown table.
pub fn pressure(standard: &Path, approaches: &Path, w: &mut impl std::io::Write) -> anyhow::Result<()> {
    use crate::sim::{Options, Seeds, simulate};
    let base = crate::spec::read_table(standard)?;
    let list: Approaches =
        crate::spec::from_table(approaches, toml::Value::Table(crate::spec::read_table(approaches)?))?;
    writeln!(
        w,
        "| approach | clients | messages / acq. | store requests / acq. | acquire p50 / p99 | wake-up p50 / p99 |"
    )?;
    writeln!(w, "|---|---|---|---|---|---|")?;
    for a in &list.approach {
        for &clients in &list.clients {
            let mut t = crate::spec::with_protocol(&base, &a.protocol, &a.options);
            if let Some(toml::Value::Table(setup)) = t.get_mut("setup") {
                setup.insert("clients".into(), toml::Value::Integer(clients as i64));
            }
            let sim = crate::sim::spec::sim_from_table(standard, &t)?;
            let name = crate::registry::approach(&sim.as_model())?;
            let opts = Options { jobs: 2, shrink: false, progress: false, full_duration: false, max_seconds: None };
            let (o, _) = simulate(&sim, &Seeds { from: 0, to: sim.spec.seeds, shard: None }, &opts, None)?;
            let m = &o.metrics;
            writeln!(
                w,
                "| {name} | {clients} | {:.1} | {:.1} | {} / {} ms | {} / {} ms |",
                m.messages_per_acquisition,
                m.store_requests_per_acquisition,
                m.acquire_latency_p50_ms,
                m.acquire_latency_p99_ms,
                m.wakeup_latency_p50_ms,
                m.wakeup_latency_p99_ms
            )?;
        }
    }
    Ok(())
}

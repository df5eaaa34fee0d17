//! The `lockcheck` command: parse, dispatch, print, exit code. No logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use lockcheck::check::search::{Bytes, Limits, default_max_memory};
use lockcheck::cli::{self, EXIT_BAD_INPUT, EXIT_MISMATCH, EXIT_OK};
use lockcheck::spec::SpecError;

const EXIT_CODES: &str = "\
Exit codes:
  0    every verdict matches its spec's `expect` (and nothing unclaimed is violated)
  1    some verdict differs from its claim (confirm: a counterexample diverged or did not happen)
  2    bad input or usage (one line on stderr names the file and field; nothing is written)
  130  interrupted by Ctrl-C (what finished is printed; a second Ctrl-C stops at once)

Examples:
  lockcheck report                                 # everything, to reports/ (the main job)
  lockcheck check models/redis_gc_pause.toml       # one spec: verdicts and shortest traces
  lockcheck sim sims/ --jobs 2                     # every scenario over its seeds
  lockcheck confirm models/                        # walk the counterexamples again on real Redis and PostgreSQL
  lockcheck completions bash > ~/.local/share/bash-completion/completions/lockcheck";

#[derive(Parser)]
#[command(
    name = "lockcheck",
    version,
    about = "Is this distributed lock safe? Model-check it and see.",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// No progress bars (they are drawn only on a terminal anyway). Example: --quiet
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Colour verdicts and mismatches: auto (a terminal, unless NO_COLOR is set), always, never.
    /// Example: --color never
    #[arg(long, value_enum, default_value = "auto", global = true)]
    color: Color,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Cmd {
    /// Protocols and their knobs, properties, and the specs in models/ and sims/ (with the witness
    /// spec that shows each fault and property matters).
    #[command(after_help = "Example:\n  lockcheck list --models models --sims sims")]
    List {
        /// Folder of model-check specs. Example: --models models
        #[arg(long, default_value = "models")]
        models: PathBuf,
        /// Folder of simulation scenarios. Example: --sims sims
        #[arg(long, default_value = "sims")]
        sims: PathBuf,
    },
    /// Exhaustively check spec files (or folders of them).
    #[command(
        after_help = "Examples:\n  lockcheck check models/\n  lockcheck check models/redis_gc_pause.toml --out traces\n  lockcheck check models/ --symmetry --json"
    )]
    Check {
        /// Spec files or folders of them. Example: models/redis_gc_pause.toml
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Write each counterexample under DIR: <spec>/<property>.json (the trace, replayable),
        /// .md (Mermaid diagram and steps) and .html (a page with an SVG diagram). Example: --out traces
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Specs checked at once, each on its own thread. Example: --threads 2
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Print one JSON object per spec (JSON Lines) instead of tables. Example: --json | jq .
        #[arg(long)]
        json: bool,
        /// Stop exploring after this many unique states (no `holds` verdict is then claimed).
        /// Example: --max-states 1000000
        #[arg(long, default_value_t = 30_000_000, value_parser = clap::value_parser!(u64).range(1..))]
        max_states: u64,
        /// Stop exploring before the process's memory would pass this (K, M, G); the default is
        /// half of this machine's memory. No `holds` verdict is then claimed. Example: --max-memory 4G
        #[arg(long, default_value_t = Bytes(default_max_memory()))]
        max_memory: Bytes,
        /// Judge only the properties named in each spec's `expect` (stops at the first
        /// counterexample when only violations are claimed). Example: --claimed-only
        #[arg(long)]
        claimed_only: bool,
        /// Search order: bfs gives shortest counterexamples, dfs a smaller frontier. Example: --strategy dfs
        #[arg(long, value_enum, default_value = "bfs")]
        strategy: lockcheck::check::search::Strategy,
        /// Count states that differ only by renaming clients once (symmetry reduction). Example: --symmetry
        #[arg(long)]
        symmetry: bool,
    },
    /// Per spec: unique states, states/s, seconds and peak memory (each in its own process);
    /// then the simulator's seeds/s against the same scenario in real time.
    #[command(after_help = "Examples:\n  lockcheck bench\n  lockcheck bench --pressure")]
    Bench {
        /// Spec files or folders to measure. Example: benches/spin
        #[arg(default_values = ["benches/spin", "benches/scale"])]
        specs: Vec<PathBuf>,
        /// The scenario whose simulated-against-real-time speed is measured.
        /// Example: --sim benches/sim/redis_5hosts.toml
        #[arg(long, default_value = "benches/sim/redis_5hosts.toml")]
        sim: PathBuf,
        /// Seeds per simulator measurement. Example: --sim-seeds 500
        #[arg(long, default_value_t = 200)]
        sim_seeds: u64,
        /// Only the blocking-and-pressure table: every approach in this file under
        /// benches/pressure/standard.toml, from 2 to 8 clients. Example: --pressure
        #[arg(long, num_args = 0..=1, default_missing_value = "benches/pressure/approaches.toml")]
        pressure: Option<PathBuf>,
    },
    /// Simulate scenario files (or folders of them) over seeds.
    #[command(
        after_help = "Examples:\n  lockcheck sim sims/ --jobs 2\n  lockcheck sim sims/redis_gc_pause.toml --seed 4 --out traces\n  lockcheck sim sims/redis_gc_pause.toml --seeds 0..10000 --shard 0/4"
    )]
    Sim {
        /// Scenario files or folders of them. Example: sims/redis_gc_pause.toml
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Run this one seed (and print its fault plan). Example: --seed 4
        #[arg(long, conflicts_with = "seeds")]
        seed: Option<u64>,
        /// Run seeds A..B (default: 0..the scenario's `seeds`). Example: --seeds 0..10000
        #[arg(long)]
        seeds: Option<String>,
        /// Parallel runs; results are identical to --jobs 1. Example: --jobs 2
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Run only every N-th seed starting at K (K/N), to spread a sweep over machines. Example: --shard 0/4
        #[arg(long)]
        shard: Option<String>,
        /// Write the first failing seed's trace per property under DIR:
        /// <scenario>/<property>.seed<N>.{json,md,html}, and its shrunk form (.shrunk.*). Example: --out traces
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print one JSON object per scenario (JSON Lines) instead of tables. Example: --json
        #[arg(long)]
        json: bool,
        /// Do not search for a smaller failing fault plan. Example: --no-shrink
        #[arg(long)]
        no_shrink: bool,
        /// Start no new seed after this many seconds; what no seed violated is then `unknown`.
        /// Example: --max-seconds 60
        #[arg(long, value_parser = positive_seconds)]
        max_seconds: Option<f64>,
    },
    /// Everything in models/ and sims/, re-derived, to reports/ (with the comparison of approaches).
    #[command(after_help = "Example:\n  lockcheck report --jobs 2")]
    Report {
        /// Folder written: README.md (answer, comparison, plots, catalog), index.html (the same as one
        /// self-contained page), results.json, plots/*.svg, the traces of every counterexample, and
        /// timings.txt (the only file that varies). Example: --out reports
        #[arg(long, value_name = "DIR", default_value = "reports")]
        out: PathBuf,
        /// Folder of model-check specs (with battery/ inside). Example: --models models
        #[arg(long, default_value = "models")]
        models: PathBuf,
        /// Folder of scenarios (with battery/ and plots/ inside). Example: --sims sims
        #[arg(long, default_value = "sims")]
        sims: PathBuf,
        /// Threads: battery rows and simulation runs in parallel. Example: --jobs 2
        #[arg(long, default_value_t = 2)]
        jobs: usize,
    },
    /// Re-derive a stored trace; exit 0 only if it comes out identical.
    #[command(after_help = "Example:\n  lockcheck replay traces/redis_gc_pause/no_stale_write.json")]
    Replay {
        /// A trace written by --out. Example: traces/redis_gc_pause/no_stale_write.json
        trace: PathBuf,
    },
    /// Walk each counterexample again with real servers (Debian's redis-server, PostgreSQL 15,
    /// ZooKeeper 3.8, etcd 3.4) answering where the model's server did: confirmed, diverged at
    /// step k (both answers shown), or not reproduced. Exit 0 only when every counterexample is
    /// confirmed. With --seeds, scenarios instead: the simulator's fault plans with the real
    /// servers answering; exit 0 only when no run diverged.
    #[command(
        after_help = "Examples:\n  lockcheck confirm models/redis_gc_pause.toml\n  lockcheck confirm traces/redis_gc_pause/no_stale_write.json --out traces\n  lockcheck confirm sims/redis_gc_pause.toml --seeds 0..50"
    )]
    Confirm {
        /// Spec files, folders of them, or traces written by `check --out`.
        /// Example: models/redis_release_del.toml
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Real milliseconds per model tick where lockcheck sets the server's clock (Redis,
        /// PostgreSQL: this only scales TTLs). Example: --tick-ms 100
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..=3_600_000))]
        tick_ms: i64,
        /// Real milliseconds a tick lasts where the server's timers run on a clock lockcheck cannot
        /// set (ZooKeeper's sessions; etcd's leases, in whole seconds, so rounded up to a second
        /// there): walks there take real time, and a tick must stay well above scheduling noise.
        /// Example: --wait-tick-ms 1000
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(50..=60_000))]
        wait_tick_ms: i64,
        /// Write each walk under DIR: <spec>/<property>.confirm.json and .md. Example: --out traces
        #[arg(long, value_name = "DIR", conflicts_with = "seeds")]
        out: Option<PathBuf>,
        /// The inputs are scenarios (sims/*.toml): run seeds A..B of each with the real servers
        /// answering, and report the violation rates beside the simulator's. Example: --seeds 0..50
        #[arg(long, value_name = "A..B")]
        seeds: Option<String>,
    },
    /// Serve stateright's Explorer on the model of a spec.
    #[command(after_help = "Example:\n  lockcheck explore models/redis_gc_pause.toml --addr 127.0.0.1:3000")]
    Explore {
        /// The spec to explore. Example: models/redis_gc_pause.toml
        spec: PathBuf,
        /// Address to serve on. Example: --addr 127.0.0.1:3000
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: String,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  lockcheck completions bash > ~/.local/share/bash-completion/completions/lockcheck\n  lockcheck completions zsh > ~/.zfunc/_lockcheck"
    )]
    Completions {
        /// The shell. Example: bash
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    // `lockcheck ... | head`: end quietly when the reader goes away, as Unix tools do, rather than
    // fail a write with "Broken pipe". Rust ignores SIGPIPE by default; restore the default action.
    // SAFETY: called before any thread starts; SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    lockcheck::progress::set_quiet(cli.quiet);
    match cli.color {
        Color::Always => console::set_colors_enabled(true),
        Color::Never => console::set_colors_enabled(false),
        Color::Auto => {}
    }
    lockcheck::progress::catch_ctrl_c();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(spec) = e.downcast_ref::<SpecError>() {
                eprintln!("error: {spec}");
                EXIT_BAD_INPUT
            } else {
                eprintln!("error: {e:#}");
                EXIT_BAD_INPUT
            }
        }
    };
    if lockcheck::progress::interrupted() {
        return ExitCode::from(130);
    }
    ExitCode::from(code as u8)
}

fn run(cli: Cli) -> Result<i32> {
    match cli.cmd {
        Cmd::List { models, sims } => lockcheck::cli::list(&models, &sims, &mut std::io::stdout()).map(|_| EXIT_OK),
        Cmd::Check { specs, out, threads, json, max_states, max_memory, claimed_only, strategy, symmetry } => {
            if threads == 0 {
                anyhow::bail!("--threads must be at least 1");
            }
            let loaded = cli::load_all(&specs)?;
            if let Some(dir) = &out {
                cli::usable_out(dir)?;
            }
            let limits =
                Limits { max_states, max_memory: max_memory.0, claimed_only, strategy, symmetry, ..Limits::default() };
            let ok = cli::check_all(&loaded, &limits, threads, out.as_deref(), json, &mut std::io::stdout())?;
            Ok(if ok { EXIT_OK } else { EXIT_MISMATCH })
        }
        Cmd::Bench { pressure: Some(approaches), .. } => {
            let standard = approaches.with_file_name("standard.toml");
            lockcheck::bench::pressure(&standard, &approaches, &mut std::io::stdout())?;
            Ok(EXIT_OK)
        }
        Cmd::Bench { specs, sim, sim_seeds, pressure: None } => {
            let rows = lockcheck::bench::run(&std::env::current_exe()?, &specs)?;
            lockcheck::bench::print(&rows, &mut std::io::stdout())?;
            lockcheck::bench::sim(&sim, sim_seeds, &mut std::io::stdout())?;
            Ok(if rows.iter().all(|r| r.ok) { EXIT_OK } else { EXIT_MISMATCH })
        }
        Cmd::Sim { specs, seed, seeds, jobs, shard, out, json, no_shrink, max_seconds } => {
            if jobs == 0 {
                anyhow::bail!("--jobs must be at least 1");
            }
            let range = match (seed, seeds.as_deref()) {
                (Some(s), _) => Some((
                    s,
                    s.checked_add(1)
                        .ok_or_else(|| anyhow::anyhow!("--seed {s}: the largest seed is {}", u64::MAX - 1))?,
                )),
                (None, Some(r)) => Some(cli::parse_seeds(r).map_err(anyhow::Error::msg)?),
                (None, None) => None,
            };
            let shard = shard.as_deref().map(cli::parse_shard).transpose().map_err(anyhow::Error::msg)?;
            let sims = cli::load_all_sims(&specs)?;
            if let Some(dir) = &out {
                cli::usable_out(dir)?;
            }
            let opts =
                lockcheck::sim::Options { jobs, shrink: !no_shrink, max_seconds, ..lockcheck::sim::default_options() };
            let ok = cli::sim_all(&sims, range, shard, &opts, out.as_deref(), json, &mut std::io::stdout())?;
            Ok(if ok { EXIT_OK } else { EXIT_MISMATCH })
        }
        Cmd::Report { out, models, sims, jobs } => {
            let ok = lockcheck::report::run(&models, &sims, &out, jobs.max(1))?;
            println!("wrote {}", out.join("README.md").display());
            Ok(if ok { EXIT_OK } else { EXIT_MISMATCH })
        }
        Cmd::Replay { trace } => {
            let (same, msg) = cli::replay(&trace)?;
            println!("{msg}");
            Ok(if same { EXIT_OK } else { EXIT_MISMATCH })
        }
        Cmd::Confirm { inputs, tick_ms, wait_tick_ms, out: _, seeds: Some(seeds) } => {
            let (from, to) = cli::parse_seeds(&seeds).map_err(anyhow::Error::msg)?;
            let cfg = lockcheck::real::RealCfg { tick_ms, wait_tick_ms, ..Default::default() };
            let ok = cli::confirm_scenarios(&inputs, &(from..to).collect::<Vec<_>>(), cfg, &mut std::io::stdout())?;
            Ok(if ok { EXIT_OK } else { EXIT_MISMATCH })
        }
        Cmd::Confirm { inputs, tick_ms, wait_tick_ms, out, seeds: None } => {
            let inputs = cli::confirm_inputs(&inputs)?;
            if let Some(dir) = &out {
                cli::usable_out(dir)?;
            }
            let cfg = lockcheck::real::RealCfg { tick_ms, wait_tick_ms, ..Default::default() };
            let ok = cli::confirm_all(&inputs, cfg, out.as_deref(), &mut std::io::stdout())?;
            Ok(if ok { EXIT_OK } else { EXIT_MISMATCH })
        }
        Cmd::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "lockcheck",
                &mut std::io::stdout(),
            );
            Ok(EXIT_OK)
        }
        Cmd::Explore { spec, addr } => {
            cli::explore(&cli::explore_spec(&spec)?, &addr)?;
            Ok(EXIT_OK)
        }
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

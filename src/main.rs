//! The `lockcheck` command: parse, dispatch, print, exit code. No logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use lockcheck::check::search::{Bytes, Limits, default_max_memory};
use lockcheck::cli::{self, EXIT_BAD_INPUT, EXIT_MISMATCH, EXIT_OK};
use lockcheck::spec::SpecError;

#[derive(Parser)]
#[command(name = "lockcheck", version, about = "Is this distributed lock safe? Model-check it and see.")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Protocols and their knobs, and the specs in models/.
    List {
        #[arg(long, default_value = "models")]
        models: PathBuf,
        #[arg(long, default_value = "sims")]
        sims: PathBuf,
    },
    /// Exhaustively check spec files (or folders of them).
    Check {
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Write each counterexample to DIR/<spec>/<property>.{json,md}.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Worker threads (the exact shortest-counterexample search runs on one; kept for the contract).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Print one JSON object per spec (JSON Lines) instead of tables.
        #[arg(long)]
        json: bool,
        /// Stop exploring after this many unique states (no `holds` verdict is then claimed).
        #[arg(long, default_value_t = 30_000_000, value_parser = clap::value_parser!(u64).range(1..))]
        max_states: u64,
        /// Stop exploring before the process's memory would pass this (K, M, G); the default is
        /// half of this machine's memory. No `holds` verdict is then claimed.
        #[arg(long, default_value_t = Bytes(default_max_memory()))]
        max_memory: Bytes,
        /// Judge only the properties named in each spec's `expect`.
        #[arg(long)]
        claimed_only: bool,
        /// Search order: bfs gives shortest counterexamples, dfs a smaller frontier.
        #[arg(long, value_enum, default_value = "bfs")]
        strategy: lockcheck::check::search::Strategy,
        /// Count states that differ only by renaming clients once (symmetry reduction).
        #[arg(long)]
        symmetry: bool,
    },
    /// Per spec: unique states, states/s, seconds and peak memory (each in its own process);
    /// then the simulator's seeds/s against the same scenario in real time.
    Bench {
        #[arg(default_values = ["benches/spin", "benches/scale"])]
        specs: Vec<PathBuf>,
        #[arg(long, default_value = "benches/sim/redis_5hosts.toml")]
        sim: PathBuf,
        /// Seeds per simulator measurement.
        #[arg(long, default_value_t = 200)]
        sim_seeds: u64,
        /// Only the blocking-and-pressure table: every approach in this file under
        /// benches/pressure/standard.toml, from 2 to 8 clients.
        #[arg(long, num_args = 0..=1, default_missing_value = "benches/pressure/approaches.toml")]
        pressure: Option<PathBuf>,
    },
    /// Simulate scenario files (or folders of them) over seeds.
    Sim {
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Run this one seed.
        #[arg(long, conflicts_with = "seeds")]
        seed: Option<u64>,
        /// Run seeds A..B (default: 0..the scenario's `seeds`).
        #[arg(long)]
        seeds: Option<String>,
        /// Parallel runs; results are identical to --jobs 1.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Run only every N-th seed starting at K (K/N), to spread a sweep over machines.
        #[arg(long)]
        shard: Option<String>,
        /// Write the first failing seed's trace (and its shrunk form) per property under DIR.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Do not search for a smaller failing fault plan.
        #[arg(long)]
        no_shrink: bool,
        /// Start no new seed after this many seconds; what no seed violated is then `unknown`.
        #[arg(long, value_parser = positive_seconds)]
        max_seconds: Option<f64>,
    },
    /// Everything in models/ and sims/, re-derived, to reports/ (with the comparison of approaches).
    Report {
        #[arg(long, default_value = "reports")]
        out: PathBuf,
        #[arg(long, default_value = "models")]
        models: PathBuf,
        #[arg(long, default_value = "sims")]
        sims: PathBuf,
        /// Parallel simulation runs.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
    },
    /// Re-derive a stored trace; exit 0 only if it comes out identical.
    Replay { trace: PathBuf },
    /// Serve stateright's Explorer on the model of a spec.
    Explore {
        spec: PathBuf,
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: String,
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

//! Every run ends with an answer: a budget that stops a search or a sweep leaves `unknown` (a
//! violation already found stays one), says so in one line, exits 1, and keeps the process inside
//! the memory budget. Its own test binary: `getrusage(RUSAGE_CHILDREN)` must see only its children.

use std::process::Command;

fn lockcheck(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lockcheck")).args(args).output().unwrap()
}

/// Peak resident memory of the largest child this process has waited for, in bytes.
fn children_peak_bytes() -> u64 {
    // SAFETY: getrusage writes into the struct we pass and has no other preconditions.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0);
    usage.ru_maxrss as u64 * 1024
}

#[test]
fn a_spec_too_big_for_its_memory_budget_answers_unknown_inside_the_budget() {
    // 12.5 million states and 1.8 GB unbounded (README, Performance).
    let out = lockcheck(&["check", "benches/scale/redis_gc_pause_c5.toml", "--max-memory", "200M"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let line = |p: &str| text.lines().find(|l| l.trim_start().starts_with(p)).unwrap_or_default().to_string();
    assert!(line("deadlock_free").contains("unknown"), "{text}");
    assert!(line("mutual_exclusion").contains("violated  violated"), "a violation found stays one: {text}");
    assert!(text.contains("unknown: the memory budget (--max-memory 200M) stopped the search after"), "{text}");
    let peak = children_peak_bytes();
    assert!(peak <= 200 << 20, "peak {} MiB", peak >> 20);
}

#[test]
fn a_sweep_stopped_by_its_time_budget_confirms_no_holds() {
    let out = lockcheck(&["sim", "sims/redis_clock_drift.toml", "--max-seconds", "0.05", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["stopped_by"].as_str().unwrap().starts_with("the time budget (--max-seconds 0.05) stopped the sweep after")
    );
    assert!(v["runs"].as_u64().unwrap() < 1000);
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["verdict"], "unknown", "{r}");
    }
}

#[test]
fn zero_budgets_are_usage_errors() {
    for args in [
        &["check", "models/redis_gc_pause.toml", "--max-states", "0"][..],
        &["check", "models/redis_gc_pause.toml", "--max-memory", "0"],
        &["check", "models/redis_gc_pause.toml", "--max-memory", "12Q"],
        &["sim", "sims/redis_gc_pause.toml", "--max-seconds", "0"],
    ] {
        let out = lockcheck(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
    }
}

//! `lockcheck confirm` end to end against Debian's real `redis-server` and PostgreSQL 15 (`.ci/run`
//! installs them): every violated claim in models/ whose family has a real counterpart happens
//! with the real server, and a run leaves no server running and nothing on disk, however it ends.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn lockcheck(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lockcheck"));
    c.args(args);
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The scratch folders a lockcheck process with this pid made for its real servers.
fn sandboxes(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("lockcheck-real-{pid}-");
    let entries = std::fs::read_dir(std::env::temp_dir()).expect("temp dir readable");
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
        .collect()
}

/// Processes whose command line or working folder names one of those folders (the real servers
/// of that run; PostgreSQL's backends rewrite their command line, but work in its data folder).
fn servers_of(pid: u32) -> Vec<u32> {
    let needle = format!("lockcheck-real-{pid}-");
    let procs = std::fs::read_dir("/proc").expect("/proc");
    let names = |p: u32| {
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).map(|c| text(&c)).unwrap_or_default();
        let cwd = std::fs::read_link(format!("/proc/{p}/cwd")).unwrap_or_default();
        let zombie = std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| s.contains(") Z "));
        !zombie && (cmdline.contains(&needle) || cwd.to_string_lossy().contains(&needle))
    };
    procs.flatten().filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok()).filter(|&p| names(p)).collect()
}

fn wait_until(what: &str, bound: Duration, mut done: impl FnMut() -> bool) {
    let began = Instant::now();
    while !done() {
        assert!(began.elapsed() < bound, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs to the end, then checks that it left nothing behind.
fn run_clean(args: &[&str]) -> Output {
    let child = lockcheck(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("runs");
    let pid = child.id();
    let out = child.wait_with_output().expect("ends");
    assert_eq!(servers_of(pid), Vec::<u32>::new(), "servers left running after `{}`", args.join(" "));
    assert_eq!(sandboxes(pid), Vec::<PathBuf>::new(), "folders left after `{}`", args.join(" "));
    out
}

#[test]
fn every_violated_claim_with_a_real_counterpart_happens_with_the_real_server() {
    let out = run_clean(&["confirm", "models/"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains("diverged") && !stdout.contains("not reproduced"), "{stdout}");
    assert!(stdout.contains("== models/redis_gc_pause.toml on Redis 7."), "{stdout}");
    assert!(stdout.contains("== models/db_for_update_faults.toml on PostgreSQL 15."), "{stdout}");
    assert!(stdout.contains("== models/zookeeper_session_expiry_gc_pause.toml on ZooKeeper 3.8."), "{stdout}");
    assert!(stdout.contains("== models/etcd_session_expiry_gc_pause.toml on etcd 3.4."), "{stdout}");
    assert!(stdout.contains("== models/redisson_lost_renewal.toml on Redis 7."), "{stdout}");
    // Pinned: a change in what is confirmed is a decision (a new counterpart, a model change).
    assert!(stdout.ends_with("76 counterexamples confirmed\n"), "{}", stdout.lines().last().unwrap_or(""));
    // The failover's lost grant, the replication held by lockcheck's relay and Sentinel played by it.
    let failover = stdout.split("== ").find(|s| s.starts_with("models/redis_failover.toml on Redis 7.")).unwrap();
    assert!(failover.contains("mutual_exclusion   confirmed"), "{failover}");
    assert!(failover.contains("Sentinel: master silent for down-after-milliseconds, fail over to this replica fires · real: REPLICAOF NO ONE → OK"), "{failover}");
    // WAIT's caveat: one replica acknowledged the grant, Sentinel promoted the other.
    let wait = stdout.split("== ").find(|s| s.starts_with("models/redis_failover_wait_two_replicas.toml on Redis 7."));
    let wait = wait.unwrap();
    assert!(wait.contains("mutual_exclusion   confirmed"), "{wait}");
    assert!(wait.contains("real: REPLCONF ACK 86 from replica-2 · real: WAIT 1 0 → (integer) 1"), "{wait}");
    let gc = stdout.split("== ").find(|s| s.starts_with("models/redis_gc_pause.toml")).unwrap();
    for p in ["mutual_exclusion", "no_stale_write", "no_oversell"] {
        assert!(gc.lines().any(|l| l.trim_start().starts_with(p) && l.contains("confirmed")), "{p}: {gc}");
    }
    assert!(gc.contains("real: SET lock c0:0 NX PX 2000 → OK"), "the real wire is shown: {gc}");
}

#[test]
fn a_stored_trace_confirms_its_own_property_and_writes_the_walk() {
    let dir = common::scratch("confirm");
    let d = dir.to_string_lossy().to_string();
    let checked = lockcheck(&["check", "models/redis_release_del.toml", "--out", &d]).output().unwrap();
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked.stderr));
    let trace = dir.join("redis_release_del/mutual_exclusion.json");
    let out = run_clean(&["confirm", &trace.to_string_lossy(), "--out", &d]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("mutual_exclusion   confirmed") && !stdout.contains("no_stale_write"), "{stdout}");
    assert!(stdout.contains("DELETES the lock of client-1"), "{stdout}");
    let walk = std::fs::read_to_string(dir.join("redis_release_del/mutual_exclusion.confirm.json")).unwrap();
    assert!(walk.contains("\"engine\": \"confirm\"") && walk.contains("real: DEL lock → (integer) 1"), "{walk}");
}

#[test]
fn a_missing_server_binary_is_one_line_naming_the_debian_package() {
    for (spec, package) in [
        ("models/redis_gc_pause.toml", "redis-server"),
        ("models/zookeeper_not_reentrant.toml", "default-jre-headless"),
        ("models/etcd_fenced_session_expiry.toml", "etcd-server"),
    ] {
        let out = lockcheck(&["confirm", spec]).env("PATH", "/nonexistent").output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&format!("apt-get install {package}")), "{stderr}");
    }
}

/// Five real Redis nodes, a PostgreSQL with its backends, a ZooKeeper (a JVM), an etcd.
const SERVERS: [&str; 4] = [
    "models/redlock_crash_restart.toml",
    "models/db_for_update_side_effect.toml",
    "models/zookeeper_session_expiry_gc_pause.toml",
    "models/etcd_fenced_session_expiry.toml",
];

/// Starts a confirm of `spec` and waits until its real servers run.
fn running(spec: &str) -> (std::process::Child, u32) {
    let child = lockcheck(&["confirm", spec]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("runs");
    let pid = child.id();
    wait_until("the real servers start", Duration::from_secs(60), || !servers_of(pid).is_empty());
    (child, pid)
}

#[test]
fn ctrl_c_stops_the_walk_and_removes_the_servers_and_their_folders() {
    for spec in SERVERS {
        let (mut child, pid) = running(spec);
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
        let status = child.wait().unwrap();
        assert!(matches!(status.code(), Some(130) | Some(0)), "{spec}: {status}");
        assert_eq!(servers_of(pid), Vec::<u32>::new(), "{spec}");
        assert_eq!(sandboxes(pid), Vec::<PathBuf>::new(), "{spec}");
    }
}

#[test]
fn a_killed_lockcheck_takes_its_servers_with_it() {
    for spec in SERVERS {
        let (mut child, pid) = running(spec);
        child.kill().unwrap();
        child.wait().unwrap();
        wait_until(&format!("{spec}: the servers die with lockcheck"), Duration::from_secs(5), || {
            servers_of(pid).is_empty()
        });
        // SIGKILL leaves no chance to clean up the folders: the test does.
        sandboxes(pid).into_iter().for_each(|d| std::fs::remove_dir_all(d).unwrap());
    }
}

#[test]
fn a_trace_whose_steps_the_model_does_not_take_is_bad_input() {
    let dir = common::scratch("confirm-bad");
    let d = dir.to_string_lossy().to_string();
    lockcheck(&["check", "models/redis_gc_pause.toml", "--out", &d]).output().unwrap();
    let path = dir.join("redis_gc_pause/no_stale_write.json");
    let edited = std::fs::read_to_string(&path).unwrap().replacen("SET lock c0:0 NX PX 2", "SET lock c0:0 NX PX 9", 1);
    std::fs::write(&path, edited).unwrap();
    let out = lockcheck(&["confirm", &path.to_string_lossy()]).output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("steps: the trace is not what this spec's model does"), "{stderr}");
}

/// How many of `runs` seeds the simulator alone finds `property` violated in.
fn simulated_violations(scenario: &str, seeds: &str, property: &str) -> u64 {
    let out = lockcheck(&["sim", scenario, "--seeds", seeds, "--json", "--no-shrink"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    let r = v["results"].as_array().unwrap().iter().find(|r| r["property"] == property).unwrap();
    r["violations"].as_u64().unwrap()
}

/// Redis and Redisson with the stock in PostgreSQL, and PostgreSQL's row lock, whose waiters
/// lockcheck lets into the server's queue one at a time (PostgreSQL does not keep their order once
/// the holder updated the row: `sims/db_for_update_side_effect.toml` diverged in 4 of 30 runs on a
/// loaded machine before).
#[test]
fn a_scenarios_fault_plans_break_the_real_servers_as_often_as_the_simulated_ones() {
    for (scenario, property, system) in [
        ("sims/redis_gc_pause.toml", "no_stale_write", "Redis 7."),
        ("sims/redisson_gc_pause.toml", "mutual_exclusion", "Redis 7."),
        ("sims/db_for_update_side_effect.toml", "no_duplicate_effect", "PostgreSQL 15."),
    ] {
        let out = run_clean(&["confirm", scenario, "--seeds", "0..20"]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
        assert!(stdout.contains(&format!("== {scenario} on {system}")), "{stdout}");
        // The simulator alone on the same seeds: the rate the real servers must show.
        let k = simulated_violations(scenario, "0..20", property);
        assert!(k > 0, "{scenario}: seeds 0..20 must show violations of {property}");
        let line = format!("{property:<18} simulator {k}/20 runs · real servers {k}/20 runs answered as the model did");
        assert!(stdout.contains(&line), "{line}\n{stdout}");
        assert!(stdout.contains("every answer of the real servers in 20 runs was the model's"), "{stdout}");
    }
}

/// Replication through lockcheck's relays, Sentinel played by lockcheck: the failovers' runs
/// answer as the model's, the lost grant among them.
#[test]
fn failover_runs_on_real_replicas_answer_as_the_model() {
    for (scenario, seeds, runs) in
        [("sims/redis_failover.toml", "0..50", 50), ("sims/redisson_failover.toml", "0..20", 20)]
    {
        let out = run_clean(&["confirm", scenario, "--seeds", seeds]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
        let k = simulated_violations(scenario, seeds, "mutual_exclusion");
        let line = format!("mutual_exclusion   simulator {k}/{runs} runs · real servers {k}/{runs} runs answered");
        assert!(stdout.contains(&line), "{line}\n{stdout}");
        assert!(
            stdout.contains(&format!("every answer of the real servers in {runs} runs was the model's")),
            "{stdout}"
        );
    }
    assert!(simulated_violations("sims/redis_failover.toml", "0..50", "mutual_exclusion") > 0);
}

#[test]
fn a_scenario_on_a_server_that_keeps_its_own_time_is_not_attempted() {
    let out = run_clean(&["confirm", "sims/zookeeper_hang_keeps_session.toml", "--seeds", "0..2"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("not attempted: zookeeper: the server times out on its own monotonic clock"), "{stdout}");
}

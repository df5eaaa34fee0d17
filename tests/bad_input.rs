//! The bad inputs that once hung, panicked or slipped through: each is one line on stderr naming
//! the file or field, exit code 2, no work done and nothing written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs lockcheck from `dir`, killed after 30 s: a hang is a failure, not a stuck test run.
fn lockcheck_in(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockcheck"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("lockcheck {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn lockcheck(args: &[&str]) -> Output {
    lockcheck_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

fn scratch() -> common::Scratch {
    common::scratch("bad")
}

fn bad(o: &Output, names: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(names), "`{names}` not in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(o.stdout.is_empty(), "no work done before the error: {}", String::from_utf8_lossy(&o.stdout));
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

#[test]
fn an_unusable_out_is_refused_before_any_work() {
    let d = scratch();
    let file = d.join("a_file");
    std::fs::write(&file, "x").unwrap();
    let child = file.join("child");
    for out in [file.to_str().unwrap(), "/proc/lockcheck-out", child.to_str().unwrap()] {
        bad(&lockcheck(&["check", "models/redis_gc_pause.toml", "--out", out]), out);
        bad(&lockcheck(&["sim", "sims/redis_gc_pause.toml", "--out", out]), out);
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn a_fifo_named_like_a_spec_is_refused_not_read() {
    let d = scratch();
    let fifo = d.join("pipe.toml");
    mkfifo(&fifo);
    let f = fifo.to_str().unwrap();
    let folder = d.to_str().unwrap();
    for args in
        [vec!["check", f], vec!["check", folder], vec!["sim", f], vec!["explore", f], vec!["list", "--models", folder]]
    {
        bad(&lockcheck(&args), "pipe.toml: not a regular file");
    }
}

/// A failing seed's trace with `edit` applied, in the folder that holds it.
fn tampered_trace(edit: impl Fn(&mut serde_json::Value)) -> (common::Scratch, PathBuf) {
    let d = scratch();
    let o = lockcheck(&[
        "sim",
        "sims/redis_gc_pause.toml",
        "--seeds",
        "0..20",
        "--no-shrink",
        "--out",
        d.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let trace = std::fs::read_dir(d.join("redis_gc_pause"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"));
    let trace = trace.expect("seeds 0..20 hold a failing seed");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    edit(&mut v);
    let out = d.join("tampered.json");
    std::fs::write(&out, v.to_string()).unwrap();
    (d, out)
}

#[test]
fn a_replayed_plan_naming_no_node_a_broken_clock_or_a_fault_after_the_window_is_refused() {
    let (_d, t) = tampered_trace(|v| v["plan"]["plan"]["faults"][0]["node"] = 99.into());
    bad(&lockcheck(&["replay", t.to_str().unwrap()]), "plan.faults[0].node: 99 names no node");
    let (_d, t) = tampered_trace(|v| v["plan"]["plan"]["drift_ppm"] = serde_json::json!([1, 2]));
    bad(&lockcheck(&["replay", t.to_str().unwrap()]), "plan.drift_ppm");
    let (_d, t) = tampered_trace(|v| v["plan"]["plan"]["drift_ppm"] = serde_json::json!("fast"));
    bad(&lockcheck(&["replay", t.to_str().unwrap()]), "plan");
    let (_d, t) = tampered_trace(|v| v["plan"]["plan"]["drift_ppm"][0] = 5_000_000.into());
    bad(&lockcheck(&["replay", t.to_str().unwrap()]), "plan.drift_ppm[0]");
    let (_d, t) = tampered_trace(|v| v["plan"]["plan"]["faults"][0]["at_ms"] = 5_000.into());
    bad(&lockcheck(&["replay", t.to_str().unwrap()]), "plan.faults[0].at_ms: 5000 ms is not inside");
}

#[test]
fn the_largest_seed_is_refused_not_wrapped() {
    bad(&lockcheck(&["sim", "sims/redis_gc_pause.toml", "--seed", "18446744073709551615"]), "--seed");
}

#[test]
fn list_of_a_missing_folder_a_file_or_bad_specs_fails() {
    let d = scratch();
    std::fs::write(
        d.join("x.toml"),
        "description = \"x\"\nprotocol = \"nosuch\"\n[setup]\nclients = 1\nworkload = \"critical_write\"\n",
    )
    .unwrap();
    bad(&lockcheck(&["list", "--models", "/nonexistent-lockcheck"]), "/nonexistent-lockcheck: not a folder");
    bad(&lockcheck(&["list", "--sims", "README.md"]), "README.md: not a folder");
    bad(&lockcheck(&["list", "--models", d.to_str().unwrap()]), "x.toml: protocol");
}

#[test]
fn two_specs_with_one_name_keep_their_traces_apart() {
    let d = scratch();
    for (dir, spec) in [("a", "models/redis_gc_pause.toml"), ("b", "models/redis_release_del.toml")] {
        std::fs::create_dir_all(d.join(dir)).unwrap();
        std::fs::copy(spec, d.join(dir).join("same.toml")).unwrap();
    }
    let out = d.join("out");
    let (a, b) = (d.join("a"), d.join("b"));
    let o = lockcheck(&["check", a.to_str().unwrap(), b.to_str().unwrap(), "--json", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let path_of = |i: usize| {
        let r = lines[i]["results"].as_array().unwrap().iter().find(|r| r["property"] == "mutual_exclusion").unwrap();
        PathBuf::from(r["trace"].as_str().unwrap())
    };
    let (pa, pb) = (path_of(0), path_of(1));
    assert_ne!(pa, pb);
    for (p, spec) in [(&pa, &a), (&pb, &b)] {
        let t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        assert_eq!(t["spec"], spec.join("same.toml").to_str().unwrap(), "{}", p.display());
    }
}

#[test]
fn explore_of_a_folder_needs_exactly_one_spec() {
    bad(&lockcheck(&["explore", "models"]), "models: explore serves one spec");
}

#[test]
fn a_trace_replays_from_any_folder() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target").join(format!("replay-anywhere-{}", std::process::id()));
    let o = lockcheck(&["check", "models/redis_gc_pause.toml", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let trace = out.join("redis_gc_pause").join("no_stale_write.json");
    for dir in [Path::new("/"), &out] {
        let o = lockcheck_in(dir, &["replay", trace.to_str().unwrap()]);
        let said = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "from {}: {said}{}", dir.display(), String::from_utf8_lossy(&o.stderr));
        assert!(said.contains("identical") && said.contains("models/redis_gc_pause.toml"), "{said}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

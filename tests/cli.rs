//! The `lockcheck` command end to end: exit codes, output files, bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lockcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockcheck")).args(args).output().expect("runs")
}

fn scratch() -> common::Scratch {
    common::scratch("cli")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const GOOD: &str = r#"
description = "test spec"
protocol = "redis"
[setup]
clients = 2
workload = "critical_write"
[faults]
crashes = 1
crash_targets = "clients"
[expect]
deadlock_free = "holds"
mutual_exclusion = "violated"
no_stale_write = "violated"
available = "holds"
"#;

/// A folder stands for every `.toml` in it, in name order, each with its verdicts and the command
/// that reproduces them. (The whole of `models/` is re-derived by tests/models.rs and again by the
/// report: a third time here would cost CI two minutes.)
#[test]
fn check_of_a_folder_exits_0_and_prints_every_verdict_with_a_reproduce_line() {
    let d = scratch();
    let names = ["redis_gc_pause", "redis_release_cad", "zookeeper_not_reentrant"];
    for name in names {
        std::fs::copy(format!("models/{name}.toml"), d.join(format!("{name}.toml"))).unwrap();
    }
    std::fs::write(d.join("notes.txt"), "not a spec").unwrap();
    let o = lockcheck(&["check", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let at: Vec<usize> = names
        .iter()
        .map(|name| {
            let header = format!("== {}", d.join(format!("{name}.toml")).display());
            out.find(&header).unwrap_or_else(|| panic!("{header} missing:\n{out}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "not in name order:\n{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("== ")).count(), names.len(), "{out}");
    assert!(out.contains(&format!("reproduce: lockcheck check {}", d.join("redis_gc_pause.toml").display())), "{out}");
}

#[test]
fn a_verdict_that_differs_from_expect_exits_1() {
    let d = scratch();
    let p = d.join("wrong.toml");
    std::fs::write(&p, GOOD.replace("deadlock_free = \"holds\"", "deadlock_free = \"violated\"")).unwrap();
    let o = lockcheck(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("MISMATCH"));
}

#[test]
fn json_lines_and_traces_on_disk_and_replay() {
    let d = scratch();
    let out = d.join("out");
    let o = lockcheck(&[
        "check",
        "models/redis_gc_pause.toml",
        "models/redis_ttl_crash.toml",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["spec"], "models/redis_gc_pause.toml");
    assert_eq!(lines[0]["engine"], "check");
    let stale = lines[0]["results"].as_array().unwrap().iter().find(|r| r["property"] == "no_stale_write").unwrap();
    assert_eq!(stale["verdict"], "violated");
    let trace = PathBuf::from(stale["trace"].as_str().unwrap());
    assert!(trace.exists());
    assert!(trace.with_extension("md").exists());
    let md = std::fs::read_to_string(trace.with_extension("md")).unwrap();
    assert!(md.contains("sequenceDiagram") && md.contains("client_0->>storage"));

    let again = lockcheck(&["replay", trace.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(0), "{}{}", stdout(&again), stderr(&again));

    let mut t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    t["steps"][3]["detail"] = "something else".into();
    let tampered = d.join("tampered.json");
    std::fs::write(&tampered, serde_json::to_string(&t).unwrap()).unwrap();
    let o = lockcheck(&["replay", tampered.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("differs from step 4"), "{}", stdout(&o));

    let corrupt = d.join("corrupt.json");
    std::fs::write(&corrupt, "{\"spec\": 3}").unwrap();
    let o = lockcheck(&["replay", corrupt.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("corrupt.json: spec:"), "{}", stderr(&o));
}

#[test]
fn the_same_check_twice_writes_identical_files() {
    let (a, b) = (scratch(), scratch());
    for dir in [&a, &b] {
        let o = lockcheck(&["check", "models/redis_release_del.toml", "--out", dir.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0));
    }
    for f in ["mutual_exclusion.json", "mutual_exclusion.md", "no_stale_write.json"] {
        let read = |d: &Path| std::fs::read(d.join("redis_release_del").join(f)).unwrap();
        assert_eq!(read(&a), read(&b), "{f}");
    }
}

/// Each bad input: exit 2, one line naming the file and the field, and nothing written.
#[test]
fn bad_input_names_file_and_field_and_writes_nothing() {
    let cases: &[(&str, String, &str)] = &[
        ("unknown_protocol", GOOD.replace("\"redis\"", "\"zookeeper9\""), "protocol: unknown protocol `zookeeper9`"),
        ("unknown_knob", GOOD.replace("[setup]", "[options]\nttll = true\n[setup]"), "options.ttll: unknown field"),
        ("wrong_type", GOOD.replace("[setup]", "[options]\nttl = \"yes\"\n[setup]"), "options.ttl: invalid type"),
        ("zero_clients", GOOD.replace("clients = 2", "clients = 0"), "setup.clients: must be 1..=6"),
        ("budget", GOOD.replace("crashes = 1", "crashes = 9"), "faults.crashes: at most 3"),
        ("unknown_field", GOOD.replace("[setup]", "colour = 1\n[setup]"), "unknown field `colour`"),
        (
            "bad_expect",
            GOOD.replace("deadlock_free = \"holds\"", "deadlock_free = \"maybe\""),
            "expect.deadlock_free: unknown variant",
        ),
        (
            "wrong_property",
            GOOD.replace("[expect]", "[expect]\nno_oversell = \"holds\""),
            "expect.no_oversell: not judged for workload",
        ),
        (
            "unknown_property",
            GOOD.replace("[expect]", "[expect]\nmeteor_safety = \"holds\""),
            "expect: unknown property `meteor_safety` (known: mutual_exclusion,",
        ),
        (
            "short_horizon",
            GOOD.replace("[faults]", "[time]\nmode = \"discrete\"\nttl_ticks = 5\nhorizon_ticks = 4\n[faults]"),
            "time.horizon_ticks: 4 is not longer than time.ttl_ticks = 5",
        ),
        (
            "no_settle_time",
            GOOD.replace("[faults]", "[time]\nmode = \"discrete\"\nttl_ticks = 3\nhorizon_ticks = 6\n[faults]"),
            "it must exceed ttl_ticks + clients × (work_ticks + 1) + 1 = 6 (needed because the spec judges deadlock_free or available)",
        ),
        ("untimed_pause", GOOD.replace("crashes = 1", "pauses = 1"), "faults.pauses: untimed mode"),
        ("malformed", "description = \"x\nprotocol = ".into(), "malformed TOML"),
    ];
    for (name, text, needle) in cases {
        let d = scratch();
        let spec = d.join(format!("{name}.toml"));
        std::fs::write(&spec, text).unwrap();
        let out = d.join("out");
        let o =
            lockcheck(&["check", "models/redis_gc_pause.toml", spec.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line, got {err}");
        assert!(err.contains(&format!("{name}.toml: ")), "{name}: names the file: {err}");
        assert!(err.contains(needle), "{name}: expected `{needle}` in {err}");
        assert!(!out.exists(), "{name}: nothing may be written");
        assert!(stdout(&o).is_empty(), "{name}: no verdicts before input is known good");
    }
}

#[test]
fn unreadable_file_and_usage_errors_exit_2() {
    let o = lockcheck(&["check", "models/no_such_spec.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("models/no_such_spec.toml: cannot read"));
    assert_eq!(lockcheck(&["check"]).status.code(), Some(2));
    assert_eq!(lockcheck(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn list_shows_protocols_knobs_and_model_claims() {
    let o = lockcheck(&["list"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for needle in ["redis", "fenced_lease", "db", "release=", "redis_gc_pause", "no_stale_write=violated"] {
        assert!(out.contains(needle), "missing {needle}");
    }
}

const SIM: &str = r#"
description = "test scenario"
protocol = "redis"
seeds = 20
[setup]
clients = 2
workload = "critical_write"
[time]
ttl_ticks = 30
fault_window_ms = 500
settle_ms = 800
[faults]
pauses = 1
[expect]
deadlock_free = "holds"
"#;

#[test]
fn sim_bad_input_names_file_and_field_and_writes_nothing() {
    let cases: &[(&str, String, &str)] = &[
        ("sim_unknown_protocol", SIM.replace("\"redis\"", "\"etcd3\""), "protocol: unknown protocol"),
        (
            "sim_empty_range",
            SIM.replace("pauses = 1", "pauses = 1\npause_ms = [500, 100]"),
            "faults.pause_ms: [500, 100] is empty",
        ),
        ("sim_loss", SIM.replace("[faults]", "[network]\nloss = 1.5\n[faults]"), "network.loss: must be a probability"),
        (
            "sim_settle",
            SIM.replace("settle_ms = 800", "settle_ms = 100"),
            "time.settle_ms: 100 ms is shorter than one TTL",
        ),
        ("sim_seeds", SIM.replace("seeds = 20", "seeds = 0"), "seeds: must be 1..="),
        ("sim_stock", SIM.replace("clients = 2", "clients = 2\nstock = -3"), "setup.stock: must be 0..=100"),
        ("sim_unknown_field", SIM.replace("[faults]", "[faults]\nmeteors = 2"), "faults.meteors: unknown field"),
        (
            "sim_available",
            SIM.replace("[expect]", "[expect]\navailable = \"violated\""),
            "expect.available: the simulator cannot judge `available`",
        ),
        (
            "sim_ttl_overflow",
            SIM.replace("ttl_ticks = 30", "ttl_ticks = 9223372036854775807\ntick_ms = 1000"),
            "time.ttl_ticks: 9223372036854775807 ticks × tick_ms 1000 is over",
        ),
    ];
    for (name, text, needle) in cases {
        let d = scratch();
        let spec = d.join(format!("{name}.toml"));
        std::fs::write(&spec, text).unwrap();
        let out = d.join("out");
        let o = lockcheck(&["sim", "sims/redis_gc_pause.toml", spec.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert!(
            err.contains(&format!("{name}.toml: ")) && err.contains(needle),
            "{name}: expected `{needle}` in {err}"
        );
        assert!(!out.exists(), "{name}: nothing may be written");
    }
    for args in [["--shard", "3/2"], ["--seeds", "9..3"], ["--jobs", "0"], ["--seed", "18446744073709551615"]] {
        let o = lockcheck(&["sim", "sims/redis_gc_pause.toml", args[0], args[1]]);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&o).trim_end().lines().count(), 1);
    }
}

#[test]
fn sim_json_reports_rates_metrics_and_trace_paths() {
    let d = scratch();
    let o = lockcheck(&[
        "sim",
        "sims/redis_gc_pause.toml",
        "--seeds",
        "0..100",
        "--jobs",
        "2",
        "--json",
        "--out",
        d.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["engine"], "sim");
    assert_eq!(v["runs"], 100);
    assert!(v["metrics"]["acquisitions"].as_u64().unwrap() > 0);
    assert!(v["metrics"]["messages_per_acquisition"].as_f64().unwrap() > 1.0);
    let stale = v["results"].as_array().unwrap().iter().find(|r| r["property"] == "no_stale_write").unwrap();
    assert_eq!(stale["verdict"], "violated");
    assert!(stale["rate_low"].as_f64().unwrap() <= stale["rate"].as_f64().unwrap());
    assert!(Path::new(stale["trace"].as_str().unwrap()).exists());
    assert!(Path::new(stale["shrunk_trace"].as_str().unwrap()).exists());
}

#[test]
fn explore_serves_stateright_explorer_on_the_given_address() {
    use std::io::{Read, Write};
    let port = 20000 + (std::process::id() % 20000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockcheck"))
        .args(["explore", "models/redis_ttl_crash.toml", "--addr", &addr])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            s.write_all(b"GET /.states HTTP/1.0\r\n\r\n").unwrap();
            s.read_to_string(&mut body).unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(body.contains("200 OK"), "{body}");
    assert!(body.contains("client-0") || body.contains("monitor"), "the initial state is served: {body}");
}

#[test]
fn explore_on_a_busy_address_is_a_usage_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let o = lockcheck(&["explore", "models/redis_ttl_crash.toml", "--addr", &addr]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot listen"));
}

/// A stopped search confirms no `holds`: the verdict is `unknown`, said in one line, and exit 1.
#[test]
fn a_search_stopped_by_its_state_budget_answers_unknown_not_holds() {
    let o = lockcheck(&["check", "models/redis_fenced_gc_pause.toml", "--max-states", "50", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(v["complete"], false);
    let verdicts: Vec<&str> = v["results"].as_array().unwrap().iter().map(|r| r["verdict"].as_str().unwrap()).collect();
    assert!(!verdicts.contains(&"holds"), "{verdicts:?}");
    assert!(verdicts.contains(&"unknown"), "{verdicts:?}");
    let human = stdout(&lockcheck(&["check", "models/redis_fenced_gc_pause.toml", "--max-states", "50"]));
    assert!(
        human.contains("unknown: the state budget (--max-states 50) stopped the search after 50 states"),
        "{human}"
    );
}

/// A violation nobody claimed fails the run and says so on its row.
#[test]
fn an_unclaimed_violation_is_marked_on_its_row() {
    let d = scratch();
    let spec = d.join("unclaimed.toml");
    std::fs::write(
        &spec,
        std::fs::read_to_string("models/redlock_crash_restart.toml")
            .unwrap()
            .replace("no_stale_write = \"violated\"", ""),
    )
    .unwrap();
    let o = lockcheck(&["check", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let row = stdout(&o).lines().find(|l| l.trim_start().starts_with("no_stale_write")).unwrap().to_string();
    assert!(row.contains("VIOLATED (not claimed)"), "{row}");
}

/// `jq .` turns every JSON number into a double; seeds are strings so a trace survives it.
#[test]
fn a_trace_passed_through_a_float_json_tool_still_replays() {
    fn as_floats(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Number(n) => {
                let f = n.as_f64().unwrap();
                *v = if f.fract() == 0.0 { serde_json::json!(f as i64) } else { serde_json::json!(f) };
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(as_floats),
            serde_json::Value::Object(o) => o.values_mut().for_each(as_floats),
            _ => {}
        }
    }
    let d = scratch();
    let o = lockcheck(&[
        "sim",
        "sims/redis_gc_pause.toml",
        "--seeds",
        "0..20",
        "--out",
        d.to_str().unwrap(),
        "--no-shrink",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let trace = std::fs::read_dir(d.join("redis_gc_pause"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    assert!(v["plan"]["plan"]["loss_seed"].is_string(), "{}", v["plan"]);
    as_floats(&mut v);
    std::fs::write(&trace, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let again = lockcheck(&["replay", trace.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(0), "{}{}", stdout(&again), stderr(&again));
}

/// `lockcheck list | head -1`: the reader goes away; lockcheck ends without an error message.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockcheck"))
        .args(["check", "models/"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_ne!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!stderr(&o).contains("Broken pipe"), "{}", stderr(&o));
}

/// Every entry under Options/Arguments of `lockcheck <sub> --help` (but -h/-V).
fn help_entries(help: &str) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        let flag =
            t.starts_with("--") || (t.starts_with('-') && t.chars().nth(1).is_some_and(|c| c.is_ascii_alphabetic()));
        if line.starts_with("  ") && (flag || t.starts_with('<')) {
            entries.push(t.to_string());
        } else if let Some(e) = entries.last_mut().filter(|_| line.starts_with("    ")) {
            e.push(' ');
            e.push_str(t);
        } else if !line.is_empty() && !line.starts_with(' ') {
            // A heading (`Options:`) ends the entry before it.
            entries.push(String::new());
        }
    }
    entries.retain(|e| !e.is_empty() && !e.starts_with("-h, --help") && !e.starts_with("-V, --version"));
    entries
}

#[test]
fn help_gives_exit_codes_and_an_example_for_every_argument() {
    let top = stdout(&lockcheck(&["--help"]));
    assert!(top.contains("Exit codes:") && top.contains("130") && top.contains("completions"), "{top}");
    for sub in ["list", "check", "sim", "report", "bench", "replay", "explore", "completions"] {
        let help = stdout(&lockcheck(&[sub, "--help"]));
        let entries = help_entries(&help);
        assert!(!entries.is_empty(), "{sub}: {help}");
        for e in entries {
            assert!(e.contains("Example"), "`lockcheck {sub} --help`: no example for `{e}`");
        }
        assert!(help.contains("Example"), "{sub}");
    }
    let report = stdout(&lockcheck(&["report", "--help"]));
    assert!(report.contains("index.html") && report.contains("results.json"), "--out says what is written: {report}");
}

#[test]
fn completions_are_printed_for_each_shell() {
    let bash = lockcheck(&["completions", "bash"]);
    assert_eq!(bash.status.code(), Some(0));
    assert!(stdout(&bash).contains("_lockcheck()") && stdout(&bash).contains("--max-states"), "{}", stdout(&bash));
    assert!(stdout(&lockcheck(&["completions", "zsh"])).contains("#compdef lockcheck"));
    assert_eq!(lockcheck(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn colour_follows_the_flag_and_no_color() {
    let spec = "models/redis_gc_pause.toml";
    let always = Command::new(env!("CARGO_BIN_EXE_lockcheck"))
        .args(["check", spec, "--color", "always"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(stdout(&always).contains("\u{1b}[31mviolated"), "the flag wins over NO_COLOR: {}", stdout(&always));
    let never = lockcheck(&["check", spec, "--color", "never"]);
    let auto =
        Command::new(env!("CARGO_BIN_EXE_lockcheck")).args(["check", spec]).env("NO_COLOR", "1").output().unwrap();
    for o in [never, auto] {
        assert!(!stdout(&o).contains('\u{1b}'), "{}", stdout(&o));
        assert_eq!(o.status.code(), Some(0));
    }
}

#[test]
fn a_simulator_counterexample_is_shown_as_its_slice_and_every_step_is_in_the_file() {
    let out = scratch();
    let o = lockcheck(&["sim", "sims/redis_gc_pause.toml", "--seed", "4", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let line = text.lines().find(|l| l.contains("steps: what changed what the properties observe")).expect(&text);
    let (shown, total): (usize, usize) = {
        let w: Vec<&str> = line.split_whitespace().collect();
        (w[0].parse().unwrap(), w[2].parse().unwrap())
    };
    assert!(shown * 5 < total, "the slice should leave most retries out: {line}");
    let file = out.join("redis_gc_pause/no_stale_write.seed4.json");
    assert!(line.contains("every step is in") && file.exists(), "{line}");
    let trace: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(trace["steps"].as_array().unwrap().len() > shown);
    let page = std::fs::read_to_string(file.with_extension("md")).unwrap();
    assert!(page.contains(" of ") && page.contains("are in the full trace"), "{page}");
}

#[test]
fn ctrl_c_stops_a_sweep_says_what_finished_and_exits_130() {
    let child = Command::new(env!("CARGO_BIN_EXE_lockcheck"))
        .args(["sim", "sims/redis_gc_pause.toml", "--seeds", "0..1000000", "--jobs", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: signals our own child, still running (a million seeds take many minutes).
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stdout(&o).contains("Ctrl-C stopped the sweep after"), "{}", stdout(&o));
    assert!(stderr(&o).contains("interrupted (Ctrl-C): 1 of 1 scenarios ran"), "{}", stderr(&o));
}

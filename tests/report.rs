//! `lockcheck report`, the main job: it exits 0 only when every claim holds, and what it writes to
//! `reports/` depends on nothing but the specs and the code. The committed report is regenerated
//! into a scratch folder and must come out byte for byte the same, so a change that moves a
//! verdict, a figure or a trace length shows in the diff of the commit that made it.

mod common;

use std::process::Command;

#[test]
fn the_committed_report_is_what_the_engines_derive_today() {
    if std::env::var_os("LOCKCHECK_FAST").is_some() {
        // Mutation testing: the full report takes minutes per mutant; the catalog's claims are
        // re-derived by tests/models.rs and tests/sims.rs.
        eprintln!("LOCKCHECK_FAST: the report is not regenerated");
        return;
    }
    let out = common::scratch("report");
    let o = Command::new(env!("CARGO_BIN_EXE_lockcheck"))
        .args(["report", "--jobs", "2", "--out"])
        .arg(&out)
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    for file in ["README.md", "results.json"] {
        let fresh = std::fs::read_to_string(out.join(file)).unwrap();
        let committed = std::fs::read_to_string(format!("reports/{file}")).unwrap();
        if fresh != committed {
            let (n, (a, b)) = fresh
                .lines()
                .zip(committed.lines())
                .enumerate()
                .find(|(_, (a, b))| a != b)
                .unwrap_or((fresh.lines().count().min(committed.lines().count()), ("(end)", "(end)")));
            panic!(
                "reports/{file} differs from a fresh `lockcheck report` at line {}:\n  fresh:     {a}\n  committed: {b}\nrun `cargo run --release -- report` and commit the result",
                n + 1
            );
        }
    }
    assert!(out.join("timings.txt").exists(), "timings go beside the report, not into it");
    std::fs::remove_dir_all(&out).unwrap();
}

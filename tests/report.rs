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
    // `reports/` under a scratch root, as in the repository: the traces name their specs from there.
    let root = common::scratch("report");
    let out = root.join("reports");
    let o = Command::new(env!("CARGO_BIN_EXE_lockcheck"))
        .args(["report", "--jobs", "2", "--out"])
        .arg(&out)
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let mut files: Vec<String> = ["README.md", "results.json", "index.html"].map(String::from).to_vec();
    let mut plots: Vec<String> = std::fs::read_dir(out.join("plots"))
        .expect("the report draws plots")
        .map(|e| format!("plots/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    plots.sort();
    let committed_plots = std::fs::read_dir("reports/plots").map(|d| d.count()).unwrap_or(0);
    assert_eq!(plots.len(), committed_plots, "reports/plots/ holds other plots than a fresh report draws: {plots:?}");
    files.extend(plots);
    for file in &files {
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
    every_drawing_renders_in_a_browser(&out);
    a_rows_traces_are_reproduced_from_the_specs_written_beside_them(&root);
}

/// The comparison's traces name the row's spec as the report wrote it (not the battery's
/// template, which `lockcheck check` cannot run as it stands): `confirm` walks the model's
/// counterexample with real servers from it and `replay` re-runs the simulator's seed from it.
fn a_rows_traces_are_reproduced_from_the_specs_written_beside_them(root: &std::path::Path) {
    let row = "reports/battery/database_select_for_update";
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_lockcheck")).args(args).current_dir(root).output().expect("runs");
        let shown = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.status.code(), Some(0), "lockcheck {}: {shown}", args.join(" "));
        shown
    };
    let confirmed = run(&["confirm", &format!("{row}/mutual_exclusion.json")]);
    assert!(confirmed.contains(&format!("== {row}/model.toml on PostgreSQL 15.")), "{confirmed}");
    assert!(confirmed.contains("mutual_exclusion   confirmed"), "{confirmed}");
    let seeded = std::fs::read_dir(root.join(row))
        .expect("the row's traces")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("mutual_exclusion.seed") && !n.contains("shrunk") && n.ends_with(".json"))
        .expect("the simulator's counterexample of the row");
    let replayed = run(&["replay", &format!("{row}/{seeded}")]);
    assert!(replayed.contains(&format!("{row}/sim.toml")), "{replayed}");
}

/// Opens the fresh `index.html` in headless Chromium and reads what the page's own script counted
/// after layout: every `<svg>` in the page (plots and sequence diagrams) must have a non-empty box.
fn every_drawing_renders_in_a_browser(out: &std::path::Path) {
    let Some(browser) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
    else {
        eprintln!("SKIPPED: no headless browser (install Debian's `chromium`); reports/index.html was not rendered");
        return;
    };
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    let in_file = page.matches("<svg").count();
    let profile = common::scratch("chromium-profile");
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", out.join("index.html").canonicalize().unwrap().display()))
        .output()
        .expect("the browser runs");
    let dom = String::from_utf8_lossy(&o.stdout);
    let attr = |name: &str| -> usize {
        let at = dom.find(&format!("{name}=\"")).unwrap_or_else(|| {
            panic!(
                "the page's script did not run ({name} missing); browser stderr:\n{}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
        let rest = &dom[at + name.len() + 2..];
        rest[..rest.find('"').unwrap()].parse().unwrap()
    };
    let (svgs, drawn) = (attr("data-svgs"), attr("data-drawn"));
    assert_eq!(svgs, in_file, "the browser saw {svgs} drawings, the file has {in_file}");
    assert!(svgs >= 6, "the page should hold the plots and the comparison's diagrams, found {svgs}");
    assert_eq!(drawn, svgs, "{} of {svgs} drawings rendered empty", svgs - drawn);
}

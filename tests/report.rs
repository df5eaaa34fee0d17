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
    std::fs::remove_dir_all(&out).unwrap();
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
    std::fs::remove_dir_all(&profile).unwrap();
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

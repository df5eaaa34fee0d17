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
            .map_err(|e| SpecError::File {
                file: file.clone(),
                message: format!("cannot run the checker: {e}"),
            })?;
        let line = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value =
            serde_json::from_str(line.trim()).map_err(|e| SpecError::File {
                file: file.clone(),
                message: format!("checker output unreadable: {e}"),
            })?;
        let verdicts = v["results"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| {
                        format!(
                            "{}={}",
                            r["property"].as_str().unwrap_or("?"),
                            r["verdict"].as_str().unwrap_or("?")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        rows.push(Row {
            spec: f
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("?")
                .to_string(),
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
        "{:<24} {:<4} {:>10} {:>12} {:>9} {:>8}  verdicts",
        "spec", "sym", "unique", "states/s", "seconds", "peak MB"
    )?;
    for r in rows {
        let rate = if r.seconds > 0.0 {
            format!("{:.0}", r.unique as f64 / r.seconds)
        } else {
            "-".into()
        };
        let mem = r
            .peak_mb
            .map(|m| format!("{m:.1}"))
            .unwrap_or_else(|| "-".into());
        let mark = if r.ok { "" } else { "  <-- MISMATCH" };
        let sym = if r.symmetry { "yes" } else { "no" };
        writeln!(
            w,
            "{:<24} {:<4} {:>10} {:>12} {:>9.3} {:>8}  {}{mark}",
            r.spec, sym, r.unique, rate, r.seconds, mem, r.verdicts
        )?;
    }
    Ok(())
}

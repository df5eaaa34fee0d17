//! Every fault kind and every verdict is shown to matter: each fault has a witness spec whose
//! violation goes away when that fault is turned off, and each property is seen violated, holding
//! and (for the vacuity flag) holding vacuously.

use std::path::{Path, PathBuf};

mod common;

use lockcheck::check::search::Limits;
use lockcheck::property::PropertyName;
use lockcheck::sim::Options;
use lockcheck::sim::spec::load_sim;
use lockcheck::spec::{Verdict, load_model};
use lockcheck::witness::{KINDS, SpecFacts, model_twins, sim_twins};

/// `LOCKCHECK_FAST=1` (mutation testing) cuts simulator sweeps to their first 100 seeds, where
/// every claimed violation must already show; model-checker specs always run in full.
fn fast_seeds(seeds: u64) -> u64 {
    if std::env::var_os("LOCKCHECK_FAST").is_some() { seeds.min(100) } else { seeds }
}

fn files(dir: &str) -> Vec<PathBuf> {
    lockcheck::cli::spec_files(&[PathBuf::from(dir)]).unwrap()
}

fn facts() -> Vec<SpecFacts> {
    let mut out: Vec<SpecFacts> =
        files("models").iter().map(|p| SpecFacts::of_model(&load_model(p).unwrap())).collect();
    out.extend(files("sims").iter().map(|p| SpecFacts::of_sim(&load_sim(p).unwrap())));
    out
}

#[test]
fn every_fault_kind_of_each_engine_has_a_witness() {
    let facts = facts();
    let missing: Vec<String> = KINDS
        .iter()
        .filter(|k| !facts.iter().any(|f| f.witnesses(k)))
        .map(|k| format!("{:?} {} ({})", k.engine, k.name, k.field))
        .collect();
    assert!(missing.is_empty(), "fault kinds no spec shows to matter: {missing:?}");
}

/// Runs every twin of every spec in `dir` and asserts each loses a claimed violation.
fn assert_twins(dir: &str, min_pairs: usize, twins: impl Fn(&Path) -> Vec<lockcheck::witness::Twin>) {
    let mut failures = Vec::new();
    let mut pairs = 0;
    for p in files(dir) {
        for t in twins(&p) {
            pairs += 1;
            if !t.ok() {
                failures.push(format!("{}: {}", p.display(), t.describe()));
            }
        }
    }
    assert!(pairs >= min_pairs, "{dir}: {pairs} witness pairs");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_model_witness_loses_its_violation_without_its_fault() {
    let limits = Limits { progress: false, ..Limits::default() };
    assert_twins("models", 12, |p| model_twins(&load_model(p).unwrap(), &limits).unwrap());
}

#[test]
fn every_sim_witness_loses_its_violation_without_its_fault() {
    let opts = Options { jobs: 2, shrink: false, progress: false, full_duration: false, max_seconds: None };
    assert_twins("sims", 10, |p| {
        let sim = load_sim(p).unwrap();
        sim_twins(&sim, &opts, fast_seeds(sim.spec.seeds)).unwrap()
    });
}

/// The claims themselves are re-derived by `models.rs` and `sims.rs`; here, that the catalogue
/// holds a claim of each kind for every property the engines judge.
#[test]
fn every_property_is_claimed_violated_and_holding_and_the_vacuity_flag_is_claimed() {
    let facts = facts();
    for p in PropertyName::ALL {
        for v in [Verdict::Violated, Verdict::Holds] {
            assert!(facts.iter().any(|f| f.expect.get(p) == Some(v)), "no spec claims {} {v}", p.name());
        }
    }
    assert!(facts.iter().any(|f| f.expect.0.values().any(|v| *v == Verdict::Vacuous)));
}

fn temp(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A violation that another fault also causes is no witness: the twin must say so.
#[test]
fn a_witness_whose_violation_has_another_cause_fails() {
    let text = std::fs::read_to_string("models/redis_no_ttl_crash.toml")
        .unwrap()
        .replace("crashes = 1\n", "crashes = 1\nmessage_loss = 1\n");
    assert!(text.contains("witness = [\"faults.crashes\"]"));
    let dir = common::scratch("witness");
    let spec = load_model(&temp(&dir, "lossy_crash.toml", &text)).unwrap();
    let twins = model_twins(&spec, &Limits { progress: false, ..Limits::default() }).unwrap();
    assert_eq!(twins.len(), 1);
    assert!(!twins[0].ok(), "{}", twins[0].describe());
}

/// `vacuous` is a verdict the engine re-derives, not a label: claiming it where something exercised
/// the property fails, and so does claiming `holds` where nothing did.
#[test]
fn a_vacuous_claim_is_re_derived() {
    let limits = Limits { progress: false, ..Limits::default() };
    let sold_out = std::fs::read_to_string("models/vacuous_sold_out.toml").unwrap();
    let dir = common::scratch("witness");
    let check = |name: &str, text: &str| {
        lockcheck::check::check(&load_model(&temp(&dir, name, text)).unwrap(), &limits).unwrap()
    };
    assert!(check("as_is.toml", &sold_out).ok());
    assert!(!check("holds.toml", &sold_out.replace("no_oversell = \"vacuous\"", "no_oversell = \"holds\"")).ok());
    let in_stock = sold_out.replace("stock = 0", "stock = 1");
    let o = check("in_stock.toml", &in_stock);
    let v = o.results.iter().find(|r| r.property == PropertyName::NoOversell).unwrap().verdict;
    assert_eq!(v, Verdict::Holds);
    assert!(!o.ok());
}

#[test]
fn a_witness_must_name_a_fault_the_spec_turns_on() {
    let base = std::fs::read_to_string("models/redis_gc_pause.toml").unwrap();
    let dir = common::scratch("witness");
    for (witness, says) in [
        ("faults.partitions", "`faults.partitions` is not set in this spec"),
        ("setup.clients", "`setup.clients` is not a fault setting"),
        ("faults.pause_targets", "`faults.pause_targets` is not set in this spec"),
    ] {
        let text = base.replace("witness = [\"faults.pauses\"]", &format!("witness = [\"{witness}\"]"));
        let err = load_model(&temp(&dir, "bad_witness.toml", &text)).unwrap_err().to_string();
        assert!(err.contains(says) && err.contains("witness"), "{err}");
    }
    let p = Path::new("models/redis_gc_pause.toml");
    assert_eq!(lockcheck::spec::load_model_without(p, "faults.pauses").unwrap().spec.faults.pauses, 0);
}

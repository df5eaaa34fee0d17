//! Every spec in `models/` is a test case: the engine must re-derive each `expect` claim.

use std::path::Path;

use lockcheck::check::{check, search::Limits};
use lockcheck::spec::load_model;

fn quiet() -> Limits {
    Limits { progress: false, ..Limits::default() }
}

/// The two specs of millions of states (62 s and 13 s of the 93 s all take here), each in a test
/// of its own: a runner of several threads (cargo nextest, which mutation testing uses) checks
/// them beside the others instead of after them.
const LARGE: [&str; 2] = ["models/redis_failover_wait_two_replicas.toml", "models/redlock_delayed_restart.toml"];

fn is_large(f: &Path) -> bool {
    LARGE.iter().any(|l| f == Path::new(l))
}

#[test]
fn every_model_spec_matches_its_expectations() {
    let mut files: Vec<_> = lockcheck::cli::spec_files(&["models".into()]).unwrap();
    files.sort();
    assert!(files.len() >= 15, "models/ should hold the catalogue of specs");
    assert_eq!(files.iter().filter(|f| is_large(f)).count(), LARGE.len(), "a file of LARGE is not in models/");
    specs_match_their_expectations(files.iter().map(|f| f.as_path()).filter(|f| !is_large(f)));
}

#[test]
fn the_failover_spec_waiting_for_two_replicas_matches_its_expectations() {
    specs_match_their_expectations([Path::new(LARGE[0])]);
}

#[test]
fn the_redlock_spec_of_a_delayed_restart_matches_its_expectations() {
    specs_match_their_expectations([Path::new(LARGE[1])]);
}

fn specs_match_their_expectations<'a>(files: impl IntoIterator<Item = &'a Path>) {
    let mut failures = Vec::new();
    for f in files {
        let spec = load_model(f).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            lockcheck::property::PropertyName::ALL.iter().any(|p| spec.spec.expect.get(*p).is_some()),
            "{}: a spec must claim something",
            f.display()
        );
        let o = check(&spec, &quiet()).unwrap();
        for r in o
            .results
            .iter()
            .filter(|r| !r.ok() || (r.expected.is_none() && r.verdict == lockcheck::spec::Verdict::Violated))
        {
            failures.push(format!(
                "{}: {} expected {:?} got {}",
                f.display(),
                r.property.name(),
                r.expected,
                r.verdict
            ));
        }
        assert!(o.complete, "{} hit the state limit", f.display());
        // What `lockcheck check` turns into its exit code.
        assert!(o.ok() || !failures.is_empty(), "{}: outcome not ok", f.display());
        for r in o.results.iter().filter_map(|r| r.trace.as_ref()) {
            assert_eq!(r.reproduce, format!("lockcheck check {}", f.display()));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The expectation is re-derived, not copied: flipping a claim must make the check fail.
#[test]
fn a_wrong_claim_is_caught() {
    let text = std::fs::read_to_string("models/redis_gc_pause.toml")
        .unwrap()
        .replace("no_stale_write = \"violated\"", "no_stale_write = \"holds\"");
    let dir = std::env::temp_dir().join(format!("lockcheck-claim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("flipped.toml");
    std::fs::write(&p, text).unwrap();
    let o = check(&load_model(&p).unwrap(), &quiet()).unwrap();
    assert!(!o.ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_fenced_variant_rejects_the_write_the_unfenced_one_accepts() {
    let verdict = |file: &str, prop: &str| {
        let o = check(&load_model(Path::new(file)).unwrap(), &quiet()).unwrap();
        o.results.iter().find(|r| r.property.name() == prop).unwrap().verdict
    };
    use lockcheck::spec::Verdict::*;
    assert_eq!(verdict("models/redis_gc_pause.toml", "no_stale_write"), Violated);
    assert_eq!(verdict("models/redis_fenced_gc_pause.toml", "no_stale_write"), Holds);
    assert_eq!(verdict("models/fenced_lease_gc_pause.toml", "no_stale_write"), Holds);
    assert_eq!(verdict("models/fenced_lease_counter_lost.toml", "no_stale_write"), Violated);
    assert_eq!(verdict("models/redis_release_del.toml", "mutual_exclusion"), Violated);
    assert_eq!(verdict("models/redis_release_cad.toml", "mutual_exclusion"), Holds);
    assert_eq!(verdict("models/redis_no_ttl_crash.toml", "deadlock_free"), Violated);
    assert_eq!(verdict("models/redis_ttl_crash.toml", "deadlock_free"), Holds);
    assert_eq!(verdict("models/db_for_update_faults.toml", "no_oversell"), Holds);
    assert_eq!(verdict("models/db_expiry_column_gc_pause.toml", "no_oversell"), Violated);
}

/// Symmetry reduction must not change any verdict nor the length of any shortest counterexample,
/// and must explore fewer states wherever clients can be told apart only by name.
///
/// It compares the specs of at most a million states: the two larger ones (`LARGE`) took two
/// thirds of this binary's time, and their own tests still check them in full (without it).
#[test]
fn symmetry_reduction_keeps_verdicts_and_shortest_lengths() {
    let mut files: Vec<_> = lockcheck::cli::spec_files(&["models".into()]).unwrap();
    files.sort();
    let limits = Limits { max_states: 1_000_000, ..quiet() };
    let mut reduced_somewhere = false;
    for f in files.iter().filter(|f| !is_large(f)) {
        let spec = load_model(f).unwrap();
        let plain = check(&spec, &limits).unwrap();
        assert!(plain.complete, "{} is larger than a million states: add it to LARGE", f.display());
        let sym = check(&spec, &Limits { symmetry: true, ..quiet() }).unwrap();
        assert!(sym.unique <= plain.unique, "{}", f.display());
        reduced_somewhere |= sym.unique < plain.unique;
        for (a, b) in plain.results.iter().zip(&sym.results) {
            assert_eq!(a.verdict, b.verdict, "{} {}", f.display(), a.property.name());
            let len = |r: &lockcheck::check::PropResult| r.trace.as_ref().map(|t| t.steps.len());
            assert_eq!(len(a), len(b), "{} {}", f.display(), a.property.name());
        }
    }
    assert!(reduced_somewhere);
}

/// A budget that stops the search leaves `unknown` where it would have said `holds`, keeps the
/// violations it found, and the outcome fails.
#[test]
fn a_state_budget_leaves_unknown_not_holds() {
    let spec = load_model(Path::new("models/redis_gc_pause.toml")).unwrap();
    let o = check(&spec, &Limits { max_states: 200, ..quiet() }).unwrap();
    assert!(!o.complete && o.stopped.as_deref().is_some_and(|s| s.contains("--max-states 200")));
    let v = |p: &str| o.results.iter().find(|r| r.property.name() == p).unwrap().verdict;
    assert_eq!(v("deadlock_free"), lockcheck::spec::Verdict::Unknown);
    assert!(!o.ok());
}

/// A claim a spec cannot make is refused with the reason that applies.
#[test]
fn a_claim_the_engine_cannot_judge_names_why() {
    let dir = std::env::temp_dir().join(format!("lockcheck-claims-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string("models/redis_gc_pause.toml").unwrap();
    let tokens = dir.join("tokens.toml");
    std::fs::write(&tokens, text.replace("[expect]\n", "[expect]\ntoken_monotonic = \"holds\"\n")).unwrap();
    let err = check(&load_model(&tokens).unwrap(), &quiet()).unwrap_err().to_string();
    assert!(err.contains("expect.token_monotonic: this protocol configuration issues no tokens"), "{err}");
    let nested = dir.join("nested.toml");
    std::fs::write(&nested, text.replace("[expect]\n", "[expect]\nreentrant = \"holds\"\n")).unwrap();
    let err = check(&load_model(&nested).unwrap(), &quiet()).unwrap_err().to_string();
    assert!(err.contains("expect.reentrant: not judged for workload \"oversell\""), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Unique states of small models, one or more per family. A change to a protocol, the workload or
/// the world that changes a model's size must change this table too, on purpose.
#[test]
fn small_models_keep_their_state_counts() {
    const PINS: [(&str, u64); 21] = [
        ("atomic_decrement", 38),
        ("curator_reentrant", 155),
        // PostgreSQL's advisory and row locks are reentrant: an owner's next acquire that overtakes
        // its own release on the network now nests instead of queueing behind itself, and only the
        // outermost level's write carries the COMMIT.
        ("db_advisory_crash", 577),
        ("db_expiry_column_client_clock", 825),
        // idle_in_transaction_session_timeout counts from the transaction's last statement (a
        // read re-arms it), as tests/real_servers.rs found PostgreSQL does: 7868 before.
        ("db_for_update_side_effect", 6872),
        ("db_optimistic_side_effect", 74),
        ("db_unique_row_crash", 139),
        ("fenced_lease_counter_lost", 1543),
        // A restarted Redis keeps its keys' expiry instants (the AOF's PXAT), as
        // tests/real_servers.rs found the real one does: fewer states than a full TTL again
        // (37592 -> 33454, 1669 -> 1397; a key ending at the restart's tick stands until it fires).
        // A promoted replica keeps a key's absolute expiry (PEXPIREAT) and a replica answers a
        // compare-and-delete of another's value with 0, as `lockcheck confirm
        // sims/redis_failover.toml --seeds` found the real ones do: 33454 before. A stream sent
        // to a replica's process that then crashed never reaches the one that restarts (it
        // connects again and syncs from the master's state of then): 29218 before.
        ("redis_failover", 33032),
        // The faults no other pin exercises: bounded clock drift, a stop-the-world pause and a
        // network delay.
        ("redis_clock_drift", 17489),
        ("redis_gc_pause", 4282),
        ("redis_hang", 1757),
        ("redis_one_way_partition_no_ttl", 245),
        ("redis_partition", 4767),
        ("redis_persistent_disk_lost", 1397),
        ("redis_release_cad", 33718),
        // A replica answers the scripts that only read (found as for redis_failover): 30442 before;
        // no stream to a restarted replica's old process (as redis_failover): 29638 before; the
        // PSYNC round trip and the saved role (as redis_failover): 29592 before. A replica takes a
        // subscription and passes on the unlock messages its stream carries, as
        // tests/real_servers.rs found Redis does: 34514 before.
        ("redisson_failover", 38548),
        ("redisson_hang_watchdog", 4266),
        ("redisson_lost_renewal", 5206),
        ("zookeeper_lost_create_orphan", 2581),
        ("zookeeper_not_reentrant", 111),
    ];
    assert_state_counts(&PINS, &quiet());
}

/// Each pinned model's unique states under `limits`, compared as one table so a failure shows
/// every count that moved.
fn assert_state_counts(pins: &[(&str, u64)], limits: &Limits) {
    let got: Vec<(&str, u64)> = pins
        .iter()
        .map(|(name, _)| {
            let spec = load_model(Path::new(&format!("models/{name}.toml"))).unwrap();
            (*name, check(&spec, limits).unwrap().unique)
        })
        .collect();
    assert_eq!(got, pins.to_vec());
}

/// Unique states under symmetry reduction of the replicated models and of Redlock (whose
/// interchangeable servers are sorted too): every client id a state holds must be renamed with the
/// clients, the lock's owner inside a replication stream in flight too (a stream left with its old
/// names made `redisson_failover` 19424: a mutant that kept its verdicts and shortest lengths).
#[test]
fn symmetry_reduction_keeps_the_state_counts_of_replicated_and_redlock_models() {
    const PINS: [(&str, u64); 3] =
        [("redis_failover", 16640), ("redisson_failover", 19398), ("redlock_clock_jump", 13814)];
    assert_state_counts(&PINS, &Limits { symmetry: true, ..quiet() });
}

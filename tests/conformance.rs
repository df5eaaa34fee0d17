//! The conformance suite: every registered family, in its default configuration, under the same
//! small set of faults. A family that forgets an observation of the contract (see
//! `lockcheck::protocol::Protocol`) leaves a property unjudged; this suite turns that into a
//! failure instead of a quiet `holds`.

use std::path::PathBuf;

use lockcheck::check::{check, search::Limits};
use lockcheck::property::PropertyName;
use lockcheck::protocol::{Protocol, ResourceHome};
use lockcheck::registry::{self, FAMILIES, Visit};
use lockcheck::resource::Fencing;
use lockcheck::spec::{Verdict, load_model};
use lockcheck::system::LockSystem;

/// Knobs a family needs to fit the suite's budget (Redlock's default of 5 nodes does not).
fn options(family: &str) -> &'static str {
    match family {
        "redlock" => "nodes = 3",
        _ => "",
    }
}

const SCENARIOS: &[(&str, &str, &str)] = &[
    ("gc_pause", "oversell", "pauses = 1"),
    ("holder_crash", "critical_write", "crashes = 1\ncrash_targets = \"clients\""),
    ("lost_reply", "critical_write", "message_loss = 1"),
    ("server_restart", "critical_write", "crashes = 1\ncrash_targets = \"servers\""),
];

fn spec(family: &str, workload: &str, faults: &str) -> String {
    format!(
        "description = \"conformance\"\nprotocol = \"{family}\"\n[options]\n{}\n[setup]\nclients = 2\nworkload = \"{workload}\"\nstock = 2\n[time]\nmode = \"discrete\"\nttl_ticks = 3\nhorizon_ticks = 10\n[faults]\n{faults}\n",
        options(family)
    )
}

struct Unguarded;
impl Visit for Unguarded {
    type Out = bool;
    fn visit<P: Protocol>(self, system: LockSystem<P>) -> bool {
        system.proto.resource() == ResourceHome::Storage(Fencing::None)
    }
}

#[test]
fn every_family_is_judged_on_every_property_under_every_fault() {
    let dir = std::env::temp_dir().join(format!("lockcheck-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for family in FAMILIES.iter().map(|f| f.name) {
        for (scenario, workload, faults) in SCENARIOS {
            let path: PathBuf = dir.join(format!("{family}_{scenario}.toml"));
            std::fs::write(&path, spec(family, workload, faults)).unwrap();
            let loaded = load_model(&path).unwrap_or_else(|e| panic!("{e}"));
            let o = check(&loaded, &Limits { progress: false, ..Limits::default() }).unwrap();
            assert!(o.complete, "{family} {scenario}: over the state budget");
            let verdict = |p| o.results.iter().find(|r| r.property == p).map(|r| r.verdict);
            for r in o.results.iter().filter(|r| r.verdict == Verdict::Vacuous) {
                failures.push(format!("{family} {scenario}: {} holds only vacuously", r.property.name()));
            }
            let unguarded = registry::build(&loaded, Unguarded).unwrap();
            if *scenario == "gc_pause"
                && unguarded
                && verdict(PropertyName::MutualExclusion) == Some(Verdict::Violated)
                && verdict(PropertyName::NoStaleWrite) != Some(Verdict::Violated)
            {
                failures.push(format!(
                    "{family}: two clients believe they hold the lock over an unfenced resource, yet no stale write is ever seen: a grant is not observed"
                ));
            }
            let row: Vec<String> = o.results.iter().map(|r| format!("{}={}", r.property.name(), r.verdict)).collect();
            table.push(format!("{family:<12} {scenario:<15} {:>8} states  {}", o.unique, row.join(" ")));
        }
    }
    println!("{}", table.join("\n"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

//! The standard fault battery: every approach of the report's comparison judged under the same
//! faults, clients and workload, in both engines, so that two rows of the table compare.
//!
//! `models/battery/approaches.toml` lists the approaches (the seed note's rows and the ones a
//! reader asks about next); `models/battery/standard.toml` and `sims/battery/standard.toml` are
//! the battery for each engine, and `models/battery/reentrant.toml` the nested-acquire check. An
//! approach fills in `protocol`, `[options]` and, for the seed's Case 2, `setup.workload`; nothing
//! else differs between rows. The specs in `models/` and `sims/` stay the catalog of single
//! scenarios.

use std::path::{Path, PathBuf};

use crate::check::Outcome;
use crate::sim::SimOutcome;
use crate::spec::{Loaded, SpecError, read_table};

/// The model checker's state budget per row: the largest rows (Redlock, ZooKeeper, Curator, etcd
/// under every fault) stop there in under a minute each; what they found violated by then stands,
/// and their `holds` come from the simulator alone, which the cell says.
pub const MAX_STATES: u64 = 4_000_000;

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approach {
    /// The row's name, as a reader knows the approach.
    pub name: String,
    /// The seed note's family the row belongs to (Database, Redis, ...).
    pub group: String,
    pub protocol: String,
    #[serde(default)]
    pub options: toml::Table,
    /// Replaces the battery's workload (the seed's Case 2 sells by a conditional decrement).
    #[serde(default)]
    pub workload: Option<String>,
}

impl Approach {
    /// A file-name-safe id for the row's traces: `Redlock, 3 nodes` → `redlock_3_nodes`.
    pub fn id(&self) -> String {
        let mut id = String::new();
        for c in format!("{} {}", self.group, self.name).chars() {
            if c.is_ascii_alphanumeric() {
                id.push(c.to_ascii_lowercase());
            } else if !id.ends_with('_') && !id.is_empty() {
                id.push('_');
            }
        }
        id.trim_end_matches('_').to_string()
    }

    /// Whether the approach takes a lock at all (the seed's two oversell cases do not).
    pub fn locks(&self) -> bool {
        self.protocol != "none"
    }

    /// `template` with this approach's protocol, options and workload.
    fn fill(&self, template: &toml::Table) -> toml::Table {
        let mut t = crate::spec::with_protocol(template, &self.protocol, &self.options);
        if let (Some(w), Some(toml::Value::Table(setup))) = (&self.workload, t.get_mut("setup")) {
            setup.insert("workload".into(), toml::Value::String(w.clone()));
        }
        t
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Approaches {
    approach: Vec<Approach>,
}

/// The battery's files, read once.
pub struct Battery {
    pub approaches: Vec<Approach>,
    model: (PathBuf, toml::Table),
    reentrant: (PathBuf, toml::Table),
    sim: (PathBuf, toml::Table),
}

/// Where `lockcheck report` writes the spec of row `id` (`kind`: `model` or `sim`), in its output
/// folder.
pub fn written_spec(id: &str, kind: &str) -> PathBuf {
    Path::new("battery").join(id).join(format!("{kind}.toml"))
}

/// The name the row's traces give that spec: where the report writes it by default (`reports/`),
/// so that `check`, `sim`, `replay` and `confirm` reproduce them from that file.
fn named_spec(id: &str, kind: &str) -> PathBuf {
    Path::new("reports").join(written_spec(id, kind))
}

/// The simulator battery's faults, each as the reader names it and the setting that turns it on.
pub const SIM_FAULTS: [(&str, &str); 6] = [
    ("a process pause", "faults.pauses"),
    ("a crash", "faults.crashes"),
    ("a partition", "faults.partitions"),
    ("a network delay", "faults.holds"),
    ("a clock jump", "faults.clock_jumps"),
    ("message loss", "network.loss"),
];

/// One approach and what each engine found about it under the battery.
pub struct Judged {
    pub approach: Approach,
    pub model: Outcome,
    /// The nested-acquire check; `None` for the approaches that take no lock.
    pub reentrant: Option<Outcome>,
    pub sim: SimOutcome,
    /// Each model counterexample walked again with the real server, where the family has one:
    /// what became of it, in the words of its cell (`confirmed on Redis 7.0`: the server's release
    /// line, [`release_line`]).
    pub confirmed: Vec<(crate::property::PropertyName, String)>,
    /// The simulator battery with one fault alone, per entry of [`SIM_FAULTS`]: which faults
    /// break a property on their own, and so which assumption an approach's safety rests on.
    pub alone: Vec<SimOutcome>,
}

impl Battery {
    pub fn load(models_dir: &Path, sims_dir: &Path) -> Result<Battery, SpecError> {
        let file = |dir: &Path, name: &str| -> Result<(PathBuf, toml::Table), SpecError> {
            let path = dir.join("battery").join(name);
            Ok((path.clone(), read_table(&path)?))
        };
        let (list_path, list) = file(models_dir, "approaches.toml")?;
        let approaches: Approaches = crate::spec::from_table(&list_path, toml::Value::Table(list))?;
        let battery = Battery {
            approaches: approaches.approach,
            model: file(models_dir, "standard.toml")?,
            reentrant: file(models_dir, "reentrant.toml")?,
            sim: file(sims_dir, "standard.toml")?,
        };
        let mut ids = std::collections::BTreeSet::new();
        for a in &battery.approaches {
            if !ids.insert(a.id()) {
                return Err(SpecError::field(&list_path, "approach.name", format!("`{}` is listed twice", a.name)));
            }
            // Every row must build in every engine before anything runs.
            battery.model_spec(a)?;
            battery.sim_spec(a)?;
        }
        Ok(battery)
    }

    /// The model-check spec of one row, named after it (its traces go to `battery/<id>/`).
    pub fn model_spec(&self, a: &Approach) -> Result<Loaded, SpecError> {
        self.loaded(a, &self.model, a.id())
    }

    fn reentrant_spec(&self, a: &Approach) -> Result<Option<Loaded>, SpecError> {
        if !a.locks() {
            return Ok(None);
        }
        self.loaded(a, &self.reentrant, format!("{}_reentrant", a.id())).map(Some)
    }

    fn loaded(
        &self,
        a: &Approach,
        (path, template): &(PathBuf, toml::Table),
        name: String,
    ) -> Result<Loaded, SpecError> {
        let mut l = crate::spec::model_from_table(path, &a.fill(template))?;
        crate::cli::validate(&l)?;
        l.path = named_spec(&name, "model");
        l.name = name;
        Ok(l)
    }

    /// Each spec of a row as `lockcheck report` writes it beside the row's traces: the row's id,
    /// `model` or `sim`, and the battery's file filled in for it.
    pub fn filled(&self, a: &Approach) -> Vec<(String, &'static str, &Path, toml::Table)> {
        let mut specs = vec![(a.id(), "model", self.model.0.as_path(), a.fill(&self.model.1))];
        if a.locks() {
            specs.push((format!("{}_reentrant", a.id()), "model", &self.reentrant.0, a.fill(&self.reentrant.1)));
        }
        specs.push((a.id(), "sim", &self.sim.0, a.fill(&self.sim.1)));
        specs
    }

    /// The simulator battery's file, and its table filled in for `a`.
    pub fn sim_table(&self, a: &Approach) -> (&Path, toml::Table) {
        (&self.sim.0, a.fill(&self.sim.1))
    }

    pub fn sim_spec(&self, a: &Approach) -> Result<crate::sim::spec::LoadedSim, SpecError> {
        self.sim_spec_with(a, None)
    }

    /// The simulator's row with every fault of [`SIM_FAULTS`] off but `only` (all on if `None`).
    fn sim_spec_with(&self, a: &Approach, only: Option<&str>) -> Result<crate::sim::spec::LoadedSim, SpecError> {
        let (path, mut table) = self.sim_table(a);
        if let Some(only) = only {
            for (_, field) in SIM_FAULTS.iter().filter(|(_, f)| *f != only) {
                table = crate::spec::without(path, &table, field)?;
            }
        }
        let mut l = crate::sim::spec::sim_from_table(path, &table)?;
        crate::cli::validate(&l.as_model())?;
        if only.is_none() {
            l.path = named_spec(&a.id(), "sim");
        }
        l.name = a.id();
        Ok(l)
    }

    /// Runs every row in both engines, `opts.jobs` rows at a time (rows come back in file order).
    /// The model checker uses symmetry reduction (exact: the verdicts do not depend on which client
    /// is which) within `limits`' budgets and at most [`MAX_STATES`] a row.
    pub fn judge(
        &self,
        limits: &crate::check::search::Limits,
        opts: &crate::sim::Options,
    ) -> Result<Vec<Judged>, SpecError> {
        let limits = crate::check::search::Limits {
            symmetry: true,
            max_states: limits.max_states.min(MAX_STATES),
            progress: false,
            ..limits.clone()
        };
        // Each row's sweeps run on one thread: the rows themselves are the parallel work.
        let one = crate::sim::Options { jobs: 1, progress: false, ..*opts };
        crate::progress::in_parallel("battery", "approaches", &self.approaches, opts.jobs, |a| {
            self.judge_one(a, &limits, &one)
        })
        .into_iter()
        .collect()
    }

    fn judge_one(
        &self,
        a: &Approach,
        limits: &crate::check::search::Limits,
        opts: &crate::sim::Options,
    ) -> Result<Judged, SpecError> {
        let spec = self.model_spec(a)?;
        let model = crate::check::check(&spec, limits)?;
        let mut confirmed = confirm(&spec, &model);
        let reentrant = match self.reentrant_spec(a)? {
            Some(spec) => {
                let o = crate::check::check(&spec, limits)?;
                confirmed.extend(confirm(&spec, &o));
                Some(o)
            }
            None => None,
        };
        let sweep = |spec: &crate::sim::spec::LoadedSim, opts: &crate::sim::Options| {
            let seeds = crate::sim::Seeds { from: 0, to: spec.spec.seeds, shard: None };
            crate::sim::simulate(spec, &seeds, opts, None).map(|(o, _)| o)
        };
        let sim = sweep(&self.sim_spec(a)?, opts)?;
        let quick = crate::sim::Options { shrink: false, ..*opts };
        let alone = SIM_FAULTS
            .iter()
            .map(|(_, field)| sweep(&self.sim_spec_with(a, Some(field))?, &quick))
            .collect::<Result<_, _>>()?;
        Ok(Judged { approach: a.clone(), model, reentrant, sim, alone, confirmed })
    }
}

/// Walks each counterexample of `o` with the real server of its family; nothing for a family
/// without one, or a walk the real server took no part in.
fn confirm(spec: &Loaded, o: &Outcome) -> Vec<(crate::property::PropertyName, String)> {
    use crate::confirm::Outcome as Real;
    let walk = |t: &crate::trace::Trace| match crate::confirm::confirm_trace(spec, t, Default::default()) {
        Ok(r) => match r.results.first().map(|c| &c.outcome) {
            None | Some(Real::NotAttempted(_)) | Some(Real::Untouched) => None,
            Some(outcome) => Some(format!("{} on {}", outcome.word(), release_line(&r.system.unwrap_or_default()))),
        },
        Err(e) => Some(format!("not confirmed: {e}")),
    };
    o.results.iter().filter_map(|r| Some((r.property, walk(r.trace.as_ref()?)?))).collect()
}

/// A server's versions cut to their release lines (`Redis 7.0.15` → `Redis 7.0`, `PostgreSQL
/// 15.18` → `PostgreSQL 15`): the committed report depends on the specs and the code alone, and
/// Debian's point releases move under it (PostgreSQL 15.18 became 15.20 between two CI runs).
/// `lockcheck confirm` names the exact version.
fn release_line(system: &str) -> String {
    let cut = |word: &str| {
        let end = word.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(word.len());
        let (version, rest) = word.split_at(end);
        match version.rsplit_once('.') {
            Some((line, point)) if !line.is_empty() && !point.is_empty() => format!("{line}{rest}"),
            _ => word.to_string(),
        }
    };
    system.split(' ').map(cut).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_a_servers_release_line_not_its_point_release() {
        assert_eq!(
            release_line("Redis 7.0.15 (the stock in PostgreSQL 15.18)"),
            "Redis 7.0 (the stock in PostgreSQL 15)"
        );
        assert_eq!(
            release_line("PostgreSQL 15.20 (the stock; no lock server)"),
            "PostgreSQL 15 (the stock; no lock server)"
        );
        assert_eq!(release_line("ZooKeeper 3.8.0"), "ZooKeeper 3.8");
        assert_eq!(release_line("etcd 3.4.23"), "etcd 3.4");
        assert_eq!(release_line("a server of no version"), "a server of no version");
    }

    #[test]
    fn row_ids_are_file_names_made_of_group_and_name() {
        let a = Approach {
            name: "SET NX PX, compare-and-delete".into(),
            group: "Redis".into(),
            protocol: "redis".into(),
            options: toml::Table::new(),
            workload: None,
        };
        assert_eq!(a.id(), "redis_set_nx_px_compare_and_delete");
    }

    #[test]
    fn every_row_of_the_committed_battery_builds_in_both_engines() {
        let b = Battery::load(Path::new("models"), Path::new("sims")).unwrap();
        assert!(b.approaches.len() >= 10);
        let case2 = b.approaches.iter().find(|a| a.workload.is_some()).unwrap();
        assert_eq!(b.model_spec(case2).unwrap().spec.setup.workload, crate::spec::Workload::AtomicDecrement);
    }
}

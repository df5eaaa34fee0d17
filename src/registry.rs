//! Protocol families by name: how a spec's `protocol` and `[options]` become a [`LockSystem`].
//! Adding a family: write `src/protocol/<family>.rs` with its `Options` and `build`, and add one
//! entry to [`FAMILIES`] and one arm to [`build`].

use std::path::Path;

use crate::protocol::{Protocol, db, fenced_lease, none, redis, redlock};
use crate::spec::{Loaded, SpecError, from_table};
use crate::system::LockSystem;

pub struct Family {
    pub name: &'static str,
    pub models: &'static str,
    pub knobs: &'static str,
}

pub const FAMILIES: &[Family] = &[
    Family {
        name: "redis",
        models: "single Redis, SET key value NX PX ttl (Redis distlock doc)",
        knobs: "ttl=true|false, release=\"del\"|\"compare_and_delete\", persistence=true|false, fencing=true|false, reentrant=true|false, validity_margin=<ticks>",
    },
    Family {
        name: "redlock",
        models: "Redlock: SET NX PX on N independent Redis masters, majority quorum (Redis distlock doc)",
        knobs: "nodes=1..7, ttl=true|false, persistence=true|false, delayed_restart=true|false, validity_margin=<ticks>",
    },
    Family {
        name: "fenced_lease",
        models: "lease service with fencing tokens checked by the storage (Chubby sequencer, Kleppmann 2016)",
        knobs: "durable_counter=true|false, fence_reads=true|false, validity_margin=<ticks>",
    },
    Family {
        name: "db",
        models: "lock in one SQL database that also holds the stock",
        knobs: "lock=\"unique_row\"|\"expiry_column\"|\"for_update\", owner_check=true|false",
    },
    Family { name: "none", models: "no lock at all (baseline)", knobs: "(none)" },
];

/// Something to do with a built system, whatever its protocol type.
pub trait Visit {
    type Out;
    fn visit<P: Protocol>(self, system: LockSystem<P>) -> Self::Out;
}

fn options<O: serde::de::DeserializeOwned>(spec: &Loaded) -> Result<O, SpecError> {
    from_table(&spec.path, toml::Value::Table(spec.spec.options.clone())).map_err(|e| match e {
        SpecError::Field { file, field, message } => {
            SpecError::Field { file, field: format!("options.{field}"), message }
        }
        SpecError::File { file, message } => SpecError::Field { file, field: "options".into(), message },
    })
}

fn knob_error(path: &Path) -> impl Fn((String, String)) -> SpecError + '_ {
    move |(field, message)| SpecError::field(path, format!("options.{field}"), message)
}

pub fn build<V: Visit>(spec: &Loaded, v: V) -> Result<V::Out, SpecError> {
    let env = spec.env();
    let err = knob_error(&spec.path);
    Ok(match spec.spec.protocol.as_str() {
        "redis" => v.visit(LockSystem::new(redis::build(options(spec)?, &env).map_err(err)?, env)),
        "redlock" => v.visit(LockSystem::new(redlock::build(options(spec)?, &env).map_err(err)?, env)),
        "fenced_lease" => v.visit(LockSystem::new(fenced_lease::build(options(spec)?, &env).map_err(err)?, env)),
        "db" => v.visit(LockSystem::new(db::build(options(spec)?, &env).map_err(err)?, env)),
        "none" => v.visit(LockSystem::new(none::build(options(spec)?, &env).map_err(err)?, env)),
        other => {
            let known: Vec<_> = FAMILIES.iter().map(|f| f.name).collect();
            return Err(SpecError::field(
                &spec.path,
                "protocol",
                format!("unknown protocol `{other}` (known: {})", known.join(", ")),
            ));
        }
    })
}

/// The spec's knobs that differ from the family's defaults, as `protocol (knob=value, ...)`: one
/// name for one configuration however a spec spells it.
pub fn approach(spec: &Loaded) -> Result<String, SpecError> {
    fn diff<O: serde::de::DeserializeOwned + serde::Serialize + Default>(
        spec: &Loaded,
    ) -> Result<Vec<String>, SpecError> {
        let o: O = options(spec)?;
        let as_table = |x: &O| toml::Table::try_from(x).unwrap_or_default();
        let (set, default) = (as_table(&o), as_table(&O::default()));
        Ok(set.iter().filter(|(k, v)| default.get(*k) != Some(*v)).map(|(k, v)| format!("{k}={v}")).collect())
    }
    let knobs = match spec.spec.protocol.as_str() {
        "redis" => diff::<redis::Options>(spec)?,
        "redlock" => diff::<redlock::Options>(spec)?,
        "fenced_lease" => diff::<fenced_lease::Options>(spec)?,
        "db" => diff::<db::Options>(spec)?,
        _ => Vec::new(),
    };
    Ok(if knobs.is_empty() {
        spec.spec.protocol.clone()
    } else {
        format!("{} ({})", spec.spec.protocol, knobs.join(", "))
    })
}

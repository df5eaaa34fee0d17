//! Protocol families by name: how a spec's `protocol` and `[options]` become a [`LockSystem`].
//! Adding a family: write `src/protocol/<family>.rs` with its `Options` and `build`, and add one
//! line to the `families!` list below.

use std::path::Path;

use crate::protocol::{Protocol, db, etcd, fenced_lease, none, redis, redisson, redlock, zookeeper};
use crate::spec::{Loaded, SpecError, from_table};
use crate::system::LockSystem;

pub struct Family {
    pub name: &'static str,
    pub models: &'static str,
    pub knobs: &'static str,
}

/// The one list of families: name, what it models, its knobs, and how its options build it.
macro_rules! families {
    ($($name:literal => $build:path, $opts:ty, $models:literal, $knobs:literal;)*) => {
        pub const FAMILIES: &[Family] = &[$(Family { name: $name, models: $models, knobs: $knobs }),*];

        pub fn build<V: Visit>(spec: &Loaded, v: V) -> Result<V::Out, SpecError> {
            let env = spec.env();
            let err = knob_error(&spec.path);
            Ok(match spec.spec.protocol.as_str() {
                $($name => v.visit(LockSystem::new($build(options::<$opts>(spec)?, &env).map_err(err)?, env)),)*
                other => return Err(unknown(spec, other)),
            })
        }

        /// The spec's knobs that differ from the family's defaults, as `protocol (knob=value, ...)`:
        /// one name for one configuration however a spec spells it.
        pub fn approach(spec: &Loaded) -> Result<String, SpecError> {
            let knobs = match spec.spec.protocol.as_str() {
                $($name => diff::<$opts>(spec)?,)*
                other => return Err(unknown(spec, other)),
            };
            Ok(if knobs.is_empty() {
                spec.spec.protocol.clone()
            } else {
                format!("{} ({})", spec.spec.protocol, knobs.join(", "))
            })
        }
    };
}

families! {
    "redis" => redis::build, redis::Options,
        "single Redis, SET key value NX PX ttl (Redis distlock doc)",
        "ttl=true|false, release=\"del\"|\"compare_and_delete\", persistence=true|false, fencing=true|false, reentrant=true|false, validity_margin=<ticks>, replicas=0..3, down_after=<ticks>, min_replicas_to_ack=0..replicas";
    "redisson" => redisson::build, redisson::Options,
        "Redisson RLock on one Redis: reentrant hash, watchdog renewal, pub/sub wake-up (RedissonLock.java)",
        "lease=<ticks> (unset: watchdog), watchdog_every=<ticks>, pubsub=true|false, retry_attempts=0..255, replicas=0..3, down_after=<ticks>, min_replicas_to_ack=0..replicas";
    "redlock" => redlock::build, redlock::Options,
        "Redlock: SET NX PX on N independent Redis masters, majority quorum (Redis distlock doc)",
        "nodes=1..7, ttl=true|false, persistence=true|false, delayed_restart=true|false, validity_margin=<ticks>";
    "fenced_lease" => fenced_lease::build, fenced_lease::Options,
        "lease service with fencing tokens checked by the storage (Chubby sequencer, Kleppmann 2016)",
        "durable_counter=true|false, fence_reads=true|false, validity_margin=<ticks>";
    "db" => db::build, db::Options,
        "lock in one SQL database that also holds the stock",
        "lock=\"unique_row\"|\"expiry_column\"|\"for_update\"|\"advisory\"|\"optimistic\", owner_check=true|false, expiry_clock=\"database\"|\"client\", validity_margin=<ticks>";
    "zookeeper" => zookeeper::build, zookeeper::Options,
        "ZooKeeper lock recipe: ephemeral-sequential nodes, sessions, watches (ZooKeeper recipes)",
        "watch=\"predecessor\"|\"all\", protection=true|false, fencing=true|false, session_timeout=<ticks>";
    "curator" => zookeeper::build_curator, zookeeper::CuratorOptions,
        "Curator InterProcessMutex: the recipe, reentrant, protected, SUSPENDED/LOST (Apache Curator)",
        "fencing=true|false, session_timeout=<ticks>, connection_timeout=<ticks>, base_sleep=<ticks>, max_retries=0..29";
    "etcd" => etcd::build, etcd::Options,
        "etcd v3 concurrency mutex: lease-bound keys, create-revision queue, watches (etcd client v3)",
        "ttl=<ticks>, fencing=true|false";
    "none" => none::build, none::Options, "no lock at all (baseline)", "(none)";
}

fn unknown(spec: &Loaded, other: &str) -> SpecError {
    let known: Vec<_> = FAMILIES.iter().map(|f| f.name).collect();
    SpecError::field(&spec.path, "protocol", format!("unknown protocol `{other}` (known: {})", known.join(", ")))
}

fn diff<O: serde::de::DeserializeOwned + serde::Serialize + Default>(spec: &Loaded) -> Result<Vec<String>, SpecError> {
    let o: O = options(spec)?;
    let as_table = |x: &O| toml::Table::try_from(x).unwrap_or_default();
    let (set, default) = (as_table(&o), as_table(&O::default()));
    Ok(set.iter().filter(|(k, v)| default.get(*k) != Some(*v)).map(|(k, v)| format!("{k}={v}")).collect())
}

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

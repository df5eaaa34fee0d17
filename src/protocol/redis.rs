//! `redis`: the single-instance Redis lock, `SET key <unique value> NX PX <ttl>`.
//!
//! Models one Redis server holding one key, as in the Redis distributed-lock doc ("Correct
//! Implementation with a Single Instance"). Knobs and the failure each exposes:
//! - `ttl` (default true): `PX` set. Off: a holder that crashes keeps the key forever, so nobody
//!   acquires again (catalog #5, `deadlock_free`).
//! - `release` (default `compare_and_delete`): `"del"` is a plain `DEL`, which removes the lock of
//!   whoever holds it now when the caller's own lease has already expired (catalog #4, Redis doc:
//!   "Using just DEL is not safe"; `mutual_exclusion`).
//! - `persistence` (default true): the key survives a restart. Off (or AOF `everysec` losing the last
//!   second, catalog A.0): a restarted Redis grants the lock again while the first holder works
//!   (catalog #6/#9, `mutual_exclusion`).
//! - `fencing` (default false): the server counts grants (`INCR`) and the storage rejects lower
//!   tokens (Kleppmann 2016, catalog S1). Without it a holder paused past its TTL (Kleppmann's GC
//!   pause, catalog #1) writes stale data: `no_stale_write`, `no_oversell`.
//! - `reentrant` (default false): a Redisson-style hold counter (`HINCRBY`, catalog #21). Off: the
//!   owner's nested `SET NX` is refused (`reentrant`).
//! - `validity_margin` (ticks, default unset): the client stops trusting its lock `ttl - margin` after
//!   it asked, measured on its own clock (the Redlock validity rule, catalog A.0). Protects beliefs
//!   against bounded clock drift; a clock jump on the server still breaks them (catalog #7).
//! - `replicas` (default 0): asynchronous replicas with Sentinel failover
//!   ([`super::replication`]). A grant the master had not yet streamed when it crashed is gone from
//!   the promoted replica, which grants the lock again (catalog #6, Redis distlock doc;
//!   `mutual_exclusion`). `down_after` (ticks, default a third of the TTL) is Sentinel's
//!   `down-after-milliseconds`.
//! - `min_replicas_to_ack` (default 0): the grant waits for that many replica acknowledgements
//!   (`WAIT`). With as many acks as replicas the failover above keeps the key; with fewer, Sentinel
//!   may promote the replica that did not acknowledge (the docs' caveat).
//!
//! The key's unique random value is modelled as the owner's identity: each client is granted at
//! most once per run, so the two are equally unique.

use serde::{Deserialize, Serialize};

use super::lease::{Dialect, LeaseCfg, LeaseLock, Persist};
use super::replication::Replication;
use crate::resource::Fencing;
use crate::spec::Env;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Release {
    Del,
    #[default]
    CompareAndDelete,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    pub ttl: bool,
    pub release: Release,
    pub persistence: bool,
    pub fencing: bool,
    pub reentrant: bool,
    pub validity_margin: Option<i64>,
    pub replicas: usize,
    pub down_after: Option<i64>,
    pub min_replicas_to_ack: u8,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ttl: true,
            release: Release::CompareAndDelete,
            persistence: true,
            fencing: false,
            reentrant: false,
            validity_margin: None,
            replicas: 0,
            down_after: None,
            min_replicas_to_ack: 0,
        }
    }
}

pub fn build(o: Options, env: &Env) -> Result<LeaseLock, (String, String)> {
    let client_margin = super::check_margin(o.validity_margin, o.ttl, env)?;
    let mut cfg = LeaseCfg::base("redis", Dialect::Redis, env);
    cfg.expires = o.ttl;
    cfg.release_checks_owner = o.release == Release::CompareAndDelete;
    cfg.persist = if o.persistence { Persist::Everything } else { Persist::Nothing };
    cfg.tokens = o.fencing;
    cfg.fencing = if o.fencing { Fencing::ReadsAndWrites } else { Fencing::None };
    cfg.reentrant = o.reentrant;
    cfg.client_margin = client_margin;
    cfg.replication = Replication::from_knobs(o.replicas, o.down_after, o.min_replicas_to_ack, env)?;
    Ok(LeaseLock::new(cfg))
}

//! `fenced_lease`: a lease service that numbers its grants, and a resource that checks the numbers.
//!
//! Models Chubby's sequencer and the fencing token of Kleppmann 2016 ("How to do distributed
//! locking"), as offered by ZooKeeper (zxid / znode version), etcd (revision), Hazelcast FencedLock
//! and Redisson RFencedLock (catalog S1). Leases expire; every grant carries a token one higher than
//! the last; the storage rejects any token lower than the highest it has seen. Knobs:
//! - `durable_counter` (default true): the lease table and token counter survive a server crash (as
//!   a replicated log makes them). Off: a restarted service hands out token 1 again and the storage
//!   takes both holders' writes (catalog S1(b); `no_stale_write`, `token_monotonic`).
//! - `fence_reads` (default true): reads register their token too. Off: the classic write-only check,
//!   where a late write can land between the next holder's read and write (catalog S1(c); in a
//!   read-modify-write workload `no_oversell`).
//! - `validity_margin` (ticks, default unset): as in `redis`, the client's own lease check.
//!
//! Fencing protects the resource, not beliefs: a paused holder still believes it holds the lock
//! while the next one works (`mutual_exclusion` is violated, `no_stale_write` holds).

use serde::{Deserialize, Serialize};

use super::lease::{Dialect, LeaseCfg, LeaseLock, Persist};
use crate::resource::Fencing;
use crate::spec::Env;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    pub durable_counter: bool,
    pub fence_reads: bool,
    pub validity_margin: Option<i64>,
}

impl Default for Options {
    fn default() -> Self {
        Options { durable_counter: true, fence_reads: true, validity_margin: None }
    }
}

pub fn build(o: Options, env: &Env) -> Result<LeaseLock, (String, String)> {
    let client_margin = super::check_margin(o.validity_margin, true, env)?;
    let mut cfg = LeaseCfg::base("lease", Dialect::LeaseService, env);
    cfg.persist = if o.durable_counter { Persist::Everything } else { Persist::Nothing };
    cfg.tokens = true;
    cfg.fencing = if o.fence_reads { Fencing::ReadsAndWrites } else { Fencing::Writes };
    cfg.client_margin = client_margin;
    Ok(LeaseLock::new(cfg))
}

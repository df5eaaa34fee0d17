//! `db`: a lock kept in one linearizable SQL database that also holds the stock.
//!
//! The three recipes of the seed note's "Database" row (catalog #24, #27, S2). Knobs:
//! - `lock = "unique_row"`: `INSERT INTO locks(name, owner)`; a duplicate-key error means busy, the
//!   owner `DELETE`s the row. No expiry: a holder that crashes leaves its row forever
//!   (`deadlock_free`).
//! - `lock = "expiry_column"`: the row also has `expires_at`, and a waiter may take over an expired
//!   row (database clock). A holder paused past `expires_at` writes stale data (catalog #24(b); with
//!   the stock updated in a separate statement: `no_stale_write`, `no_oversell`).
//! - `lock = "for_update"` (default): `BEGIN; SELECT stock .. FOR UPDATE; UPDATE stock ..; COMMIT`.
//!   Waiters block in the database's queue; the row lock lives exactly as long as the transaction;
//!   a dropped connection or an idle-in-transaction timeout (the TTL here) aborts it, and the
//!   aborted transaction's statements fail (catalog S2). The stock stays right (`no_oversell` holds)
//!   even though a paused client may still *believe* it holds the lock (catalog #27). The final
//!   `UPDATE` and `COMMIT` travel together, as drivers pipeline them.
//! - `owner_check` (default true): release is `DELETE .. WHERE owner = me`. Off: a late release
//!   deletes the next holder's row (catalog #24(c)).
//!
//! The database writes its data (and lock rows, which are ordinary rows) to disk before replying;
//! row locks of open transactions die with the process.

use serde::{Deserialize, Serialize};

use super::lease::{Dialect, LeaseCfg, LeaseLock, Persist};
use crate::spec::Env;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DbLock {
    UniqueRow,
    ExpiryColumn,
    #[default]
    ForUpdate,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    pub lock: DbLock,
    pub owner_check: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { lock: DbLock::ForUpdate, owner_check: true }
    }
}

pub fn build(o: Options, env: &Env) -> Result<LeaseLock, (String, String)> {
    let mut cfg = LeaseCfg::base("db", Dialect::Sql(o.lock), env);
    cfg.hosts_resource = true;
    cfg.release_checks_owner = o.owner_check;
    match o.lock {
        DbLock::UniqueRow => cfg.expires = false,
        DbLock::ExpiryColumn => {}
        DbLock::ForUpdate => {
            cfg.queue = true;
            cfg.txn_bound = true;
            cfg.persist = Persist::DataOnly;
        }
    }
    Ok(LeaseLock::new(cfg))
}

//! `db`: a lock kept in one linearizable SQL database that also holds the stock.
//!
//! The recipes of the seed note's "Database" row and what PostgreSQL users reach for (catalog #24,
//! #27, S2, S4). Knobs:
//! - `lock = "unique_row"`: `INSERT INTO locks(name, owner)`; a duplicate-key error means busy, the
//!   owner `DELETE`s the row. No expiry: a holder that crashes leaves its row forever
//!   (`deadlock_free`).
//! - `lock = "expiry_column"`: the row also has `expires_at`, and a waiter may take over an expired
//!   row. A holder paused past `expires_at` writes stale data (catalog #24(b); with the stock updated
//!   in a separate statement: `no_stale_write`, `no_oversell`).
//!   - `expiry_clock = "database"` (default): `expires_at` and the takeover test use the database's
//!     `now()`. `"client"`: the application computes `expires_at` and the takeover's `now` from its
//!     own clock, so a waiter whose clock runs ahead takes a live lock (catalog #24(a);
//!     `mutual_exclusion` under a clock jump or drift on a client).
//! - `lock = "for_update"` (default): `BEGIN; SELECT stock .. FOR UPDATE; UPDATE stock ..; COMMIT`.
//!   Waiters block in the database's queue; the row lock lives exactly as long as the transaction;
//!   a dropped connection or an idle-in-transaction timeout (the TTL here) aborts it, and the
//!   aborted transaction's statements fail (catalog S2). The stock stays right (`no_oversell` holds)
//!   even though a paused client may still *believe* it holds the lock (catalog #27). The final
//!   `UPDATE` and `COMMIT` travel together, as drivers pipeline them. A nested `SELECT .. FOR
//!   UPDATE` in the same transaction returns at once (the transaction already holds the row lock):
//!   reentrant, and the lock ends with the outermost `COMMIT`.
//! - `lock = "advisory"`: `pg_advisory_lock(1)`, a session-level lock bound to one connection:
//!   waiters block in the database's queue and the server releases it when the connection closes
//!   (the TTL here: a frozen client's connection dropped by TCP keepalive or a pooler's idle
//!   timeout). Unlike `for_update` the data statements are not in a transaction the lock guards:
//!   a paused holder whose connection was dropped reconnects and its stale write commits
//!   (`no_oversell`). PostgreSQL counts a session's advisory locks: a nested `pg_advisory_lock(1)`
//!   succeeds at once and takes as many `pg_advisory_unlock(1)` (PostgreSQL manual, "Advisory
//!   Locks"): reentrant.
//! - `lock = "optimistic"`: no lock at all; the row has a version column, the write is
//!   `UPDATE .. SET stock = B, version = v + 1 WHERE version = v`, and a client that loses retries
//!   from the read (catalog S4). Nothing to expire, nothing to deadlock: `no_oversell` and
//!   `deadlock_free` hold under every fault, paid for in retries. With no lock there is no
//!   exclusion to speak of (`mutual_exclusion` and `no_stale_write` are violated by definition).
//! - `validity_margin` (ticks, `expiry_column` only): the client stops trusting its row
//!   `ttl - margin` after it asked, on its own clock (as `redis`'s knob).
//! - `owner_check` (default true): release is `DELETE .. WHERE owner = me`. Off: a late release
//!   deletes the next holder's row (catalog #24(c)).
//!
//! The database writes its data (and lock rows, which are ordinary rows) to disk before replying;
//! row locks of open transactions and session locks die with the process.

use serde::{Deserialize, Serialize};

use super::lease::{Dialect, LeaseCfg, LeaseLock, Persist};
use crate::resource::Fencing;
use crate::spec::Env;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DbLock {
    UniqueRow,
    ExpiryColumn,
    #[default]
    ForUpdate,
    Advisory,
    Optimistic,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryClock {
    #[default]
    Database,
    Client,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    pub lock: DbLock,
    pub owner_check: bool,
    pub expiry_clock: ExpiryClock,
    pub validity_margin: Option<i64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lock: DbLock::ForUpdate,
            owner_check: true,
            expiry_clock: ExpiryClock::Database,
            validity_margin: None,
        }
    }
}

pub fn build(o: Options, env: &Env) -> Result<LeaseLock, (String, String)> {
    if o.expiry_clock == ExpiryClock::Client && o.lock != DbLock::ExpiryColumn {
        return Err(("expiry_clock".into(), "only lock = \"expiry_column\" stores an expiry time".into()));
    }
    let expires = o.lock == DbLock::ExpiryColumn;
    if o.validity_margin.is_some() && !expires {
        return Err(("validity_margin".into(), "only lock = \"expiry_column\" has an expiry to trust".into()));
    }
    let mut cfg = LeaseCfg::base("db", Dialect::Sql(o.lock), env);
    cfg.client_margin = super::check_margin(o.validity_margin, expires, env)?;
    cfg.hosts_resource = true;
    cfg.release_checks_owner = o.owner_check;
    match o.lock {
        DbLock::UniqueRow => cfg.expires = false,
        DbLock::ExpiryColumn if o.expiry_clock == ExpiryClock::Client => {
            cfg.expires = false;
            cfg.expiry_on_client_clock = true;
        }
        DbLock::ExpiryColumn => {}
        DbLock::ForUpdate => {
            cfg.queue = true;
            cfg.txn_bound = true;
            cfg.persist = Persist::DataOnly;
            cfg.reentrant = true;
        }
        DbLock::Advisory => {
            cfg.queue = true;
            cfg.persist = Persist::DataOnly;
            cfg.reentrant = true;
        }
        DbLock::Optimistic => {
            cfg.lockless = true;
            cfg.expires = false;
            cfg.fencing = Fencing::Version;
        }
    }
    Ok(LeaseLock::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Workload;

    #[test]
    fn only_an_expiry_column_takes_an_expiry_clock_or_a_validity_margin_and_each_kind_sets_its_knobs() {
        let env = Env::test(2, Workload::Oversell, 5, 1);
        let field = |o: Options| build(o, &env).err().map(|(f, _)| f);
        for lock in [DbLock::UniqueRow, DbLock::ForUpdate, DbLock::Advisory, DbLock::Optimistic] {
            let client = Options { lock, expiry_clock: ExpiryClock::Client, ..Options::default() };
            assert_eq!(field(client).as_deref(), Some("expiry_clock"), "{lock:?}");
            assert_eq!(
                field(Options { lock, validity_margin: Some(1), ..Options::default() }).as_deref(),
                Some("validity_margin")
            );
        }
        let cfg = |o: Options| build(o, &env).map(|p| p.cfg).ok();
        let column = |expiry_clock| Options {
            lock: DbLock::ExpiryColumn,
            expiry_clock,
            validity_margin: Some(1),
            ..Options::default()
        };
        let on_client =
            cfg(column(ExpiryClock::Client)).map(|c| (c.expires, c.expiry_on_client_clock, c.client_margin));
        assert_eq!(on_client, Some((false, true, Some(1))));
        let on_db = cfg(column(ExpiryClock::Database)).map(|c| (c.expires, c.expiry_on_client_clock, c.client_margin));
        assert_eq!(on_db, Some((true, false, Some(1))));
        let kind = |lock| {
            cfg(Options { lock, ..Options::default() })
                .map(|c| (c.expires, c.queue, c.txn_bound, c.reentrant, c.lockless, c.persist, c.hosts_resource))
        };
        assert_eq!(kind(DbLock::UniqueRow), Some((false, false, false, false, false, Persist::Everything, true)));
        assert_eq!(kind(DbLock::ForUpdate), Some((true, true, true, true, false, Persist::DataOnly, true)));
        assert_eq!(kind(DbLock::Advisory), Some((true, true, false, true, false, Persist::DataOnly, true)));
        assert_eq!(kind(DbLock::Optimistic), Some((false, false, false, false, true, Persist::Everything, true)));
        let no_owner = cfg(Options { owner_check: false, ..Options::default() }).map(|c| c.release_checks_owner);
        assert_eq!(no_owner, Some(false));
    }
}

//! `etcd`: the v3 concurrency mutex (`go.etcd.io/etcd/client/v3/concurrency`, `Session` and
//! `Mutex`; etcd blog "etcd lock"; catalog #18, S7).
//!
//! A session is a lease with a TTL that the client keeps alive (`LeaseKeepAlive` every third of the
//! TTL; only a keep-alive renews it, a put bound to it does not); when the lease expires, every key
//! attached to it is deleted. `Lock` puts
//! `/lock/<lease-id>` bound to the lease (in a transaction that reuses the key if it already
//! exists), reads the prefix sorted by create revision, holds the lock when its key has the lowest,
//! and otherwise watches the key with the next lower create revision until it is deleted. `Unlock`
//! deletes the key; the process then revokes its lease. The key's create revision is the fencing
//! token. The queue, sessions and watches are the machine of the ZooKeeper recipe
//! ([`super::zookeeper`]), speaking etcd's operations here.
//!
//! Knobs and the failure each exposes:
//! - `ttl` (ticks, default the spec's `ttl_ticks`; etcd's `defaultSessionTTL` is 60 s, catalog
//!   A.0): a holder paused past it loses its lease and its key while it still believes it holds
//!   the lock (catalog #1, #18; `mutual_exclusion`, and `no_stale_write` without fencing).
//! - `fencing` (default false): the storage checks the create revision (catalog S1; etcd's own
//!   `contrib/lock` demo). etcd says its lock is only safe with such a revision check (S7).

use serde::{Deserialize, Serialize};

use super::zookeeper::{Msg, Timer, ZooKeeper};
use crate::protocol::NodeId;
use crate::spec::Env;

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    pub ttl: Option<i64>,
    pub fencing: bool,
}

pub fn build(o: Options, env: &Env) -> Result<ZooKeeper, (String, String)> {
    let ttl = super::zookeeper::session_timeout(o.ttl, env).map_err(|(_, m)| ("ttl".to_string(), m))?;
    Ok(super::zookeeper::etcd(ttl, o.fencing, env))
}

/// The lease of client `from`'s `session`-th session. A client may ask etcd for a lease ID of its
/// choosing; a counterexample's leases (and so its keys) are named alike in the model and the real
/// etcd.
pub(crate) fn lease_id(from: NodeId, session: u8) -> i64 {
    ((from as i64 + 1) << 8) + session as i64
}

/// The client whose session holds `lease`.
pub(crate) fn lease_owner(lease: i64) -> NodeId {
    ((lease >> 8) - 1) as NodeId
}

/// The mutex's key under the lease: `/lock/<lease ID in hex>`, as `concurrency.Mutex` names it.
pub(crate) fn key(lease: i64) -> String {
    format!("/lock/{lease:x}")
}

/// The create revision of the model's key `seq`: an empty etcd is at revision 1, and the model
/// counts the same writes from 0.
pub(crate) fn revision(seq: u64) -> u64 {
    seq + 1
}

/// The model's number of the key created at `revision`.
pub(crate) fn seq_at(revision: i64) -> u64 {
    revision.saturating_sub(1).max(0) as u64
}

pub(crate) fn show_msg(from: NodeId, msg: &Msg) -> String {
    let rev = |seq: &u64| revision(*seq);
    match msg {
        Msg::Create { session, .. } => format!(
            "txn: if create_revision({k}) == 0 then put {k} \"\" --lease={lease:x} else get {k}",
            k = key(lease_id(from, *session)),
            lease = lease_id(from, *session)
        ),
        Msg::Created { seq, .. } => format!("succeeded, create_revision {}", rev(seq)),
        Msg::GetChildren { .. } => "get /lock --prefix --sort-by=CREATE".into(),
        Msg::Children { kids, .. } => {
            let revs: Vec<String> = kids.iter().map(|(seq, _)| format!("rev {}", rev(seq))).collect();
            format!("[{}]", revs.join(", "))
        }
        Msg::Exists { seq, .. } => format!("watch the key with create_revision {} (waitDeletes)", rev(seq)),
        Msg::Stat { seq, exists: true, .. } => format!("key at revision {} present: watching", rev(seq)),
        Msg::Stat { seq, exists: false, .. } => format!("key at revision {} already deleted", rev(seq)),
        Msg::Delete { seq: Some(seq), close: false, .. } => format!("delete the key at revision {}", rev(seq)),
        Msg::Delete { seq: Some(seq), close: true, session } => {
            format!("delete the key at revision {}; lease revoke {:x}", rev(seq), lease_id(from, *session))
        }
        Msg::Delete { seq: None, session, .. } => format!("lease revoke {:x}", lease_id(from, *session)),
        Msg::Ping { session } => format!("lease keep-alive {:x}", lease_id(from, *session)),
        Msg::Pong => "keep-alive ok".into(),
        Msg::SessionExpired { .. } => "etcdserver: requested lease not found".into(),
        Msg::WatchedEvent { node: Some(seq) } => format!("watch event: DELETE key at revision {}", rev(seq)),
        Msg::WatchedEvent { node: None } => "watch event on /lock".into(),
    }
}

pub(crate) fn show_timer(ttl: i64, timer: &Timer) -> String {
    match timer {
        Timer::Session(_) => format!("lease TTL ({ttl} ticks) runs out: its keys are deleted"),
        Timer::Ping => "keep-alive interval".into(),
        Timer::Timeout => "request timeout / watch re-check".into(),
        Timer::Silence | Timer::Suspended => "connection check".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_id_names_its_client_and_session_and_is_read_back_from_the_key() {
        assert_eq!([lease_id(0, 0), lease_id(0, 3), lease_id(2, 1)], [0x100, 0x103, 0x301]);
        assert_eq!([lease_owner(0x100), lease_owner(0x103), lease_owner(0x301)], [0, 0, 2]);
        assert_eq!(key(lease_id(2, 1)), "/lock/301");
    }

    #[test]
    fn the_models_sequence_is_etcds_create_revision_less_one() {
        assert_eq!([revision(0), revision(1), revision(7)], [1, 2, 8]);
        assert_eq!([seq_at(1), seq_at(2), seq_at(8)], [0, 1, 7]);
        assert_eq!([seq_at(0), seq_at(-1)], [0, 0], "no revision before the first");
    }
}

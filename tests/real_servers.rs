//! The model servers against the real ones (Debian's `redis-server`, PostgreSQL 15): seeded random
//! sequences of requests, passing time and restarts, the same to both; the first answer that
//! differs fails the test with the shortest sequence found that shows it. Needs `redis-server` and
//! `postgresql-15` (`.ci/run` installs them) and a C compiler for the clock shim.

use lockcheck::protocol::Protocol;
use lockcheck::protocol::db::{self, DbLock, ExpiryClock};
use lockcheck::protocol::etcd;
use lockcheck::protocol::lease::{LeaseLock, Msg};
use lockcheck::protocol::redis::{self, Options, Release};
use lockcheck::protocol::redisson::{self, Redisson};
use lockcheck::protocol::redlock::{self, Redlock};
use lockcheck::protocol::zookeeper::{self, ZooKeeper};
use lockcheck::real::conformance::{Op, run, shrink};
use lockcheck::real::{Counterpart, RealCfg, counterpart};
use lockcheck::resource::ResReq;
use lockcheck::spec::{Env, OnLost, Workload};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CLIENTS: usize = 3;
const TTL: i64 = 3;

fn env() -> Env {
    Env {
        clients: CLIENTS,
        workload: Workload::CriticalWrite,
        timed: true,
        ttl: TTL,
        stock: 2,
        work_ticks: 0,
        on_lost: OnLost::Stop,
        side_effect: false,
    }
}

/// How a family's clients speak: its acquire and release messages, and (for a server that keeps
/// the stock) a request to the stock made under one of the client's acquires.
struct Speech<M> {
    acquire: fn(i64) -> M,
    release: fn(i64) -> M,
    stock: Option<fn(&mut ChaCha8Rng, i64) -> ResReq>,
    /// No lock requests at all (`optimistic`): only the stock is asked.
    lockless: bool,
}

/// A sequence as clients would produce it: each acquire carries its sender's clock reading, each
/// release (and request to the stock) one of that client's earlier acquires (mostly its last).
fn sequence<M>(rng: &mut ChaCha8Rng, speech: &Speech<M>) -> Vec<Op<M>> {
    let mut asked: Vec<Vec<i64>> = vec![Vec::new(); CLIENTS];
    let mut now = 0;
    let len = rng.random_range(6..20);
    let mut ops = Vec::new();
    for _ in 0..len {
        let from = rng.random_range(0..CLIENTS);
        let earlier = |rng: &mut ChaCha8Rng, mine: &[i64]| {
            if rng.random_bool(0.8) { mine[mine.len() - 1] } else { mine[rng.random_range(0..mine.len())] }
        };
        let kinds = match (speech.lockless, speech.stock.is_some()) {
            (true, _) => 13..24,
            (false, true) => 0..24,
            (false, false) => 0..20,
        };
        let op = match rng.random_range(kinds) {
            0..=7 => {
                asked[from].push(now);
                Op::Ask { server: 0, from, msg: (speech.acquire)(now) }
            }
            8..=12 if !asked[from].is_empty() => {
                Op::Ask { server: 0, from, msg: (speech.release)(earlier(rng, &asked[from])) }
            }
            20..=23 => {
                let session = if asked[from].is_empty() { now } else { earlier(rng, &asked[from]) };
                Op::Use { from, req: (speech.stock.expect("only with a stock"))(rng, session) }
            }
            13..=17 => {
                let d = rng.random_range(1..=TTL + 1);
                now += d;
                Op::Advance(d)
            }
            18 | 19 => Op::Restart { server: 0, wiped: rng.random_bool(0.3) },
            _ => Op::Advance(1),
        };
        ops.push(op);
    }
    ops
}

/// `sequences` random sequences against one real server playing `proto`'s first server.
fn conforms<P: Protocol>(name: &str, proto: P, sequences: u64, speech: &Speech<P::Msg>) {
    conforms_with(name, proto, sequences, RealCfg::default(), |rng| sequence(rng, speech));
}

fn conforms_with<P: Protocol>(
    name: &str,
    proto: P,
    sequences: u64,
    cfg: RealCfg,
    sequence: impl Fn(&mut ChaCha8Rng) -> Vec<Op<P::Msg>>,
) {
    let mut real: Box<dyn Counterpart<P>> = counterpart(&proto, cfg).unwrap_or_else(|e| panic!("{e}"));
    let servers = (CLIENTS, proto.servers().len());
    let shown = |ops: &[Op<P::Msg>]| -> Vec<String> {
        ops.iter().enumerate().map(|(i, op)| format!("  {i}. {}", op.show(&proto))).collect()
    };
    let mut start = 0;
    for seed in 0..sequences {
        let ops = sequence(&mut ChaCha8Rng::seed_from_u64(seed));
        let (mismatch, next) = run(&proto, servers, real.as_mut(), &ops, start)
            .unwrap_or_else(|e| panic!("{name}, seed {seed}: {e}, in\n{}", shown(&ops).join("\n")));
        start = next;
        if mismatch.is_some() {
            let (ops, m) = shrink(&proto, servers, real.as_mut(), ops, start).unwrap_or_else(|e| panic!("{e}"));
            panic!(
                "{name}, seed {seed}: the model and {} answer input {} differently\n{}\n  model: {}\n  real:  {}",
                real.system(),
                m.at,
                shown(&ops).join("\n"),
                m.model,
                m.real
            );
        }
    }
}

fn redis_lease(name: &str, o: Options, sequences: u64) {
    let proto: LeaseLock = redis::build(o, &env()).expect("valid knobs");
    conforms(name, proto, sequences, &LEASE);
}

const LEASE: Speech<Msg> = Speech {
    acquire: |asked| Msg::Acquire { asked },
    release: |asked| Msg::Release { asked },
    stock: None,
    lockless: false,
};

#[test]
fn set_nx_px_with_compare_and_delete_and_an_aof() {
    redis_lease("default", Options::default(), 300);
}

#[test]
fn plain_del_without_persistence_and_with_fencing_tokens() {
    let o = Options { release: Release::Del, persistence: false, fencing: true, ..Options::default() };
    redis_lease("del, no AOF, INCR tokens", o, 200);
}

#[test]
fn a_reentrant_hash_lock_and_a_key_without_ttl() {
    redis_lease("reentrant", Options { reentrant: true, ..Options::default() }, 200);
    redis_lease("no ttl", Options { ttl: false, ..Options::default() }, 100);
}

/// A single-server sequence spread over a master and its replicas: some requests go to a replica
/// (a client whose idea of the master is stale), a restart hits any server, and what the servers
/// send each other (the stream, `PSYNC` and its answer, acknowledgements) arrives a few messages
/// after each input, so that replication lags, Sentinel fails over and two masters meet.
fn replicated<M>(rng: &mut ChaCha8Rng, ops: Vec<Op<M>>, servers: usize) -> Vec<Op<M>> {
    let mut out = Vec::new();
    for op in ops {
        out.push(match op {
            Op::Ask { from, msg, .. } if rng.random_bool(0.25) => {
                Op::Ask { server: rng.random_range(1..servers), from, msg }
            }
            Op::Restart { wiped, .. } => Op::Restart { server: rng.random_range(0..servers), wiped },
            op => op,
        });
        for _ in 0..rng.random_range(0..2 * servers + 1) {
            out.push(Op::Deliver { to: rng.random_range(0..servers) });
        }
    }
    out
}

#[test]
fn a_master_and_its_replica_with_sentinel_and_wait() {
    for acks in [0, 1] {
        let o = Options { replicas: 1, min_replicas_to_ack: acks, ..Options::default() };
        let proto: LeaseLock = redis::build(o, &env()).expect("valid knobs");
        let name = format!("redis, a replica, WAIT {acks}");
        conforms_with(&name, proto, 100, RealCfg::default(), |rng| {
            let ops = sequence(rng, &LEASE);
            replicated(rng, ops, 2)
        });
    }
}

#[test]
fn one_redlock_node_with_and_without_its_aof() {
    for persistence in [true, false] {
        let o = redlock::Options { nodes: 1, persistence, ..redlock::Options::default() };
        let proto: Redlock = redlock::build(o, &env()).expect("valid knobs");
        let name = format!("redlock node, persistence {persistence}");
        let speech = Speech {
            acquire: |asked| redlock::Msg::Set { asked },
            release: |asked| redlock::Msg::Unlock { asked },
            stock: None,
            lockless: false,
        };
        conforms(&name, proto, 150, &speech);
    }
}

/// Redisson's clients: lock (again), renew, unlock (their own or not), subscribe and unsubscribe,
/// as time passes past leases and the server restarts from its AOF. Half the `tryLock`s are
/// followed, a few inputs later, by their client's unlock, so that locks are released (and
/// unlock messages published) as an owner's would be.
fn redisson_sequence(rng: &mut ChaCha8Rng) -> Vec<Op<redisson::Msg>> {
    use redisson::Msg;
    let mut ops = Vec::new();
    let mut owners = Vec::new();
    for _ in 0..rng.random_range(6..20) {
        if !owners.is_empty() && rng.random_bool(0.3) {
            ops.push(Op::Ask { server: 0, from: owners.remove(0), msg: Msg::Unlock });
            continue;
        }
        let from = rng.random_range(0..CLIENTS);
        let msg = match rng.random_range(0..20) {
            0..=5 => {
                if rng.random_bool(0.5) {
                    owners.push(from);
                }
                Msg::TryLock
            }
            6 | 7 => Msg::Renew,
            8..=10 => Msg::Unlock,
            11 | 12 => Msg::Subscribe,
            13 => Msg::Unsubscribe,
            14..=16 => {
                ops.push(Op::Advance(rng.random_range(1..=TTL + 1)));
                continue;
            }
            17 => {
                ops.push(Op::Restart { server: 0, wiped: rng.random_bool(0.3) });
                continue;
            }
            _ => {
                ops.push(Op::Advance(1));
                continue;
            }
        };
        ops.push(Op::Ask { server: 0, from, msg });
    }
    ops
}

/// Subscriptions on a replica too (a demoted master's, a stale client's): Redis streams the
/// master's `PUBLISH` to them.
#[test]
fn redisson_on_a_master_and_its_replica() {
    let o = redisson::Options { replicas: 1, ..redisson::Options::default() };
    let proto: Redisson = redisson::build(o, &env()).expect("valid knobs");
    conforms_with("redisson, a replica", proto, 100, RealCfg::default(), |rng| {
        let ops = redisson_sequence(rng);
        replicated(rng, ops, 2)
    });
}

#[test]
fn redisson_hash_locks_renewals_and_unlock_messages() {
    for lease in [None, Some(2)] {
        let o = redisson::Options { lease, ..redisson::Options::default() };
        let proto: Redisson = redisson::build(o, &env()).expect("valid knobs");
        conforms_with(&format!("redisson, lease {lease:?}"), proto, 150, RealCfg::default(), redisson_sequence);
    }
}

/// Under a lock: a read, a write of a small stock or an atomic decrement, under `session`.
fn locked_stock(rng: &mut ChaCha8Rng, session: i64) -> ResReq {
    match rng.random_range(0..3) {
        0 => ResReq::Read { token: None, session },
        1 => ResReq::Write { token: None, session, value: rng.random_range(0..3), sale: true },
        _ => ResReq::Decrement,
    }
}

/// Without one (`optimistic`): a read of the row and its version, or a versioned write.
fn versioned_stock(rng: &mut ChaCha8Rng, session: i64) -> ResReq {
    match rng.random_range(0..2) {
        0 => ResReq::Read { token: None, session },
        _ => ResReq::CasWrite { version: rng.random_range(0..3), value: rng.random_range(0..3) },
    }
}

fn database(name: &str, o: db::Options, sequences: u64) {
    let proto: LeaseLock = db::build(o.clone(), &env()).expect("valid knobs");
    let lockless = o.lock == DbLock::Optimistic;
    let stock: fn(&mut ChaCha8Rng, i64) -> ResReq = if lockless { versioned_stock } else { locked_stock };
    let speech = Speech { stock: Some(stock), lockless, ..LEASE };
    conforms(name, proto, sequences, &speech);
}

#[test]
fn postgres_select_for_update_and_its_idle_in_transaction_timeout() {
    database("for_update", db::Options::default(), 150);
}

#[test]
fn postgres_advisory_locks_and_dropped_connections() {
    database("advisory", db::Options { lock: DbLock::Advisory, ..db::Options::default() }, 150);
}

#[test]
fn postgres_lock_rows_with_and_without_expiry() {
    database("unique_row", db::Options { lock: DbLock::UniqueRow, ..db::Options::default() }, 80);
    for (expiry_clock, owner_check) in [(ExpiryClock::Database, true), (ExpiryClock::Client, false)] {
        let o = db::Options { lock: DbLock::ExpiryColumn, expiry_clock, owner_check, ..db::Options::default() };
        database(&format!("expiry_column, {expiry_clock:?} clock, owner check {owner_check}"), o, 80);
    }
    database("optimistic", db::Options { lock: DbLock::Optimistic, ..db::Options::default() }, 60);
}

/// lockcheck's storage node (`Resource`) against the PostgreSQL table that answers for it in
/// confirm walks, under each fencing: reads and writes with tokens, decrements, versioned writes.
#[test]
fn the_stock_table_answers_as_the_storage_node_under_each_fencing() {
    use lockcheck::protocol::none::NoLock;
    use lockcheck::protocol::{Cx, Wire};
    use lockcheck::real::postgres::PgStock;
    use lockcheck::real::{answer_of, show_answer};
    let client = |id: usize| format!("client-{id}");
    use lockcheck::resource::{Fencing, Resource};
    for fencing in [Fencing::None, Fencing::Writes, Fencing::ReadsAndWrites, Fencing::Version] {
        let mut real = PgStock::start(2, fencing, RealCfg::default()).unwrap_or_else(|e| panic!("{e}"));
        for seed in 0..40 {
            let rng = &mut ChaCha8Rng::seed_from_u64(seed);
            let mut model = Resource::new(2, fencing);
            real.crash();
            real.restart(true, 0).unwrap_or_else(|e| panic!("{e}"));
            let mut asked = Vec::new();
            for _ in 0..rng.random_range(4..12) {
                let from = rng.random_range(0..CLIENTS);
                let token = rng.random_bool(0.8).then(|| rng.random_range(1..5));
                let req = match (rng.random_range(0..3), fencing) {
                    (0, _) => ResReq::Read { token, session: 0 },
                    (1, Fencing::Version) => {
                        ResReq::CasWrite { version: rng.random_range(0..3), value: rng.random_range(0..3) }
                    }
                    (1, _) => ResReq::Write { token, session: 0, value: rng.random_range(0..3), sale: true },
                    _ => ResReq::Decrement,
                };
                let mut cx = Cx::<Wire<()>, (), ()>::new(CLIENTS, 0);
                model.handle(from, req.clone(), &mut cx);
                let (sends, observed) = answer_of(&cx.effects);
                let a = real.on_resource::<()>(from, &req, 0).unwrap_or_else(|e| panic!("{e}"));
                asked.push(format!("client-{from}: {req}"));
                let said = |sends: &[_], observed: &[_]| show_answer(&NoLock, CLIENTS, sends, observed, &client);
                assert!(
                    a.sends == sends && a.observed == observed,
                    "{fencing:?}, seed {seed}: {}\n  model: {}\n  real:  {} [{}]",
                    asked.join("; "),
                    said(&sends, &observed),
                    said(&a.sends, &a.observed),
                    a.wire.join("; ")
                );
            }
        }
    }
}

/// The lock queue's clients (ZooKeeper's, Curator's, etcd's): each speaks on its current session
/// (now and then a new one, as after an expiry or Curator's LOST), under fresh xids; `exists` and
/// `delete` name nodes made so far or not (yet); time passes past session timeouts; the server
/// restarts from its log. `tagged`: nodes carry their owner; `watch_all`: listings may watch.
fn queue_sequence(rng: &mut ChaCha8Rng, tagged: bool, watch_all: bool) -> Vec<Op<zookeeper::Msg>> {
    use zookeeper::Msg;
    let mut epoch = [0u8; CLIENTS];
    let mut xid = 0u8;
    let mut made = 0u64;
    let mut ops = Vec::new();
    for _ in 0..rng.random_range(6..16) {
        let from = rng.random_range(0..CLIENTS);
        let session = epoch[from];
        xid = xid.wrapping_add(1);
        let node = |rng: &mut ChaCha8Rng| rng.random_range(1..=2 * made + 2);
        let msg = match rng.random_range(0..20) {
            0..=4 => {
                made += 1;
                Msg::Create { session, xid, tagged }
            }
            5..=7 => Msg::GetChildren { session, xid, watch: watch_all && rng.random_bool(0.5) },
            8 | 9 => Msg::Exists { session, xid, seq: node(rng) },
            10 => Msg::Delete { session, seq: Some(node(rng)), close: false },
            11 => Msg::Delete { session, seq: rng.random_bool(0.5).then(|| node(rng)), close: true },
            12 | 13 => Msg::Ping { session },
            14 => {
                epoch[from] += 1;
                Msg::Ping { session: epoch[from] }
            }
            15..=17 => {
                ops.push(Op::Advance(rng.random_range(1..=TTL + 1)));
                continue;
            }
            18 => {
                ops.push(Op::Restart { server: 0, wiped: false });
                continue;
            }
            _ => {
                ops.push(Op::Advance(1));
                continue;
            }
        };
        ops.push(Op::Ask { server: 0, from, msg });
    }
    ops
}

/// Real time passes here (ZooKeeper's sessions expire on its own clock): a quarter second a tick.
#[test]
fn zookeeper_sessions_sequential_nodes_watches_and_expiry() {
    let cfg = RealCfg { wait_tick_ms: 250, ..RealCfg::default() };
    let bare: ZooKeeper = zookeeper::build(zookeeper::Options::default(), &env()).expect("valid knobs");
    conforms_with("zookeeper", bare, 20, cfg, |rng| queue_sequence(rng, false, true));
    let curator: ZooKeeper =
        zookeeper::build_curator(zookeeper::CuratorOptions::default(), &env()).expect("valid knobs");
    conforms_with("curator", curator, 12, cfg, |rng| queue_sequence(rng, true, true));
}

/// etcd's leases run out on its own clock and in whole seconds: a second a tick, and a lease asks
/// for a second more than the model's TTL. A TTL of 5 ticks lets a put a few ticks after the last
/// keep-alive show whether it renewed the lease (a lease expiring 2 ticks early is seen by the next
/// request; with the spec TTL of 3 the session is gone before such a put can come).
#[test]
fn etcd_leases_revisions_watches_and_expiry() {
    let o = etcd::Options { ttl: Some(5), ..etcd::Options::default() };
    let mutex: ZooKeeper = etcd::build(o, &env()).expect("valid knobs");
    conforms_with("etcd", mutex, 12, RealCfg::default(), |rng| queue_sequence(rng, true, false));
}

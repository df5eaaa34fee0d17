//! The Redis model server against Debian's real `redis-server`: seeded random sequences of
//! requests, passing time and restarts, the same to both; the first answer that differs fails the
//! test with the shortest sequence found that shows it. Needs `redis-server` (`.ci/run` installs
//! it) and a C compiler for the clock shim.

use lockcheck::protocol::Protocol;
use lockcheck::protocol::lease::{LeaseLock, Msg};
use lockcheck::protocol::redis::{self, Options, Release};
use lockcheck::protocol::redlock::{self, Redlock};
use lockcheck::real::conformance::{Op, run, shrink};
use lockcheck::real::{Counterpart, RealCfg, counterpart};
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

/// A sequence as clients would produce it: each acquire carries its sender's clock reading, each
/// release one of that client's earlier acquires (mostly its last). `acquire` and `release` build
/// the family's messages.
fn sequence<M>(rng: &mut ChaCha8Rng, acquire: fn(i64) -> M, release: fn(i64) -> M) -> Vec<Op<M>> {
    let mut asked: Vec<Vec<i64>> = vec![Vec::new(); CLIENTS];
    let mut now = 0;
    let len = rng.random_range(6..20);
    let mut ops = Vec::new();
    for _ in 0..len {
        let from = rng.random_range(0..CLIENTS);
        let op = match rng.random_range(0..20) {
            0..=7 => {
                asked[from].push(now);
                Op::Ask { from, msg: acquire(now) }
            }
            8..=12 if !asked[from].is_empty() => {
                let mine = &asked[from];
                let a = if rng.random_bool(0.8) { mine[mine.len() - 1] } else { mine[rng.random_range(0..mine.len())] };
                Op::Ask { from, msg: release(a) }
            }
            13..=17 => {
                let d = rng.random_range(1..=TTL + 1);
                now += d;
                Op::Advance(d)
            }
            18 | 19 => Op::Restart { wiped: rng.random_bool(0.3) },
            _ => Op::Advance(1),
        };
        ops.push(op);
    }
    ops
}

/// `sequences` random sequences against one real Redis playing `proto`'s first server.
fn conforms<P: Protocol>(name: &str, proto: P, sequences: u64, acquire: fn(i64) -> P::Msg, release: fn(i64) -> P::Msg) {
    let mut real: Box<dyn Counterpart<P>> =
        counterpart(&proto, RealCfg { tick_ms: 1000, timed: true }).unwrap_or_else(|e| panic!("{e}"));
    let mut start = 0;
    for seed in 0..sequences {
        let ops = sequence(&mut ChaCha8Rng::seed_from_u64(seed), acquire, release);
        let (mismatch, next) = run(&proto, CLIENTS, real.as_mut(), &ops, start).unwrap_or_else(|e| panic!("{e}"));
        start = next;
        if mismatch.is_some() {
            let (ops, m) = shrink(&proto, CLIENTS, real.as_mut(), ops, start).unwrap_or_else(|e| panic!("{e}"));
            let shown: Vec<String> = ops.iter().enumerate().map(|(i, op)| format!("  {i}. {op:?}")).collect();
            panic!(
                "{name}, seed {seed}: the model and {} answer input {} differently\n{}\n  model: {}\n  real:  {}",
                real.system(),
                m.at,
                shown.join("\n"),
                m.model,
                m.real
            );
        }
    }
}

fn redis_lease(name: &str, o: Options, sequences: u64) {
    let proto: LeaseLock = redis::build(o, &env()).expect("valid knobs");
    conforms(name, proto, sequences, |asked| Msg::Acquire { asked }, |asked| Msg::Release { asked });
}

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

#[test]
fn one_redlock_node_with_and_without_its_aof() {
    for persistence in [true, false] {
        let o = redlock::Options { nodes: 1, persistence, ..redlock::Options::default() };
        let proto: Redlock = redlock::build(o, &env()).expect("valid knobs");
        let name = format!("redlock node, persistence {persistence}");
        conforms(&name, proto, 150, |asked| redlock::Msg::Set { asked }, |asked| redlock::Msg::Unlock { asked });
    }
}

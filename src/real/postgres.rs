//! PostgreSQL 15 (Debian's `postgresql-15`) behind the `db` family; it keeps the stock too, so a
//! lost sale is lost in a real table.
//!
//! Each client has its own connection, as an application's pool gives each request one: the lock
//! statements and the stock's statements of a client travel on it. `for_update` opens a
//! connection per transaction (`BEGIN; SELECT stock FROM inventory WHERE sku = 1 FOR UPDATE`), so
//! a statement of a transaction the server aborted fails on its dead connection, as it would in
//! the application. A statement that blocks (a waiter in the server's lock queue) stays pending on
//! its connection's thread; after every input lockcheck waits until each pending statement has
//! either returned or waits for a lock in `pg_locks`, so a hand-over is seen in the same step.
//!
//! Time: the server's wall clock is lockcheck's (see [`super::process`]). The TTL of `for_update`
//! is `idle_in_transaction_session_timeout`: when the model's timer fires, lockcheck moves the
//! clock and delivers the server's own `SIGALRM` early; the server then checks its own deadline
//! and ends the session only if it has passed. The TTL of `advisory` is the connection dropping
//! (keepalive, a proxy's idle timeout): lockcheck, which plays the network, closes it. An
//! `expires_at` row expires when the database's `now()` passes it: lockcheck moves the clock one
//! millisecond past it, within the tick, as for a Redis key.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::process::{Account, EPOCH_MS, Process, REPLY_BOUND, Sandbox, find_binary, wall_ms};
use super::{Answer, Counterpart, RealCfg, RealError, owner, value};
use crate::protocol::db::DbLock;
use crate::protocol::lease::{LeaseLock, Msg, Timer};
use crate::protocol::{NodeId, Observation, Wire};
use crate::resource::{Fencing, ResReply, ResReq};

const BIN: &str = "/usr/lib/postgresql/15/bin";
const PACKAGE: &str = "postgresql-15";
/// How long a session the server ends (a timeout, a dropped connection) may take to go.
const END_BOUND: Duration = Duration::from_secs(2);
/// Durability across a process crash needs no fsync (the kernel keeps what was written); no
/// server-side timeout runs but the one a spec's TTL turns on.
const ARGS: [&str; 12] = [
    "-D",
    "{data}",
    "-p",
    "{port}",
    "-c",
    "listen_addresses=127.0.0.1",
    "-c",
    "unix_socket_directories=",
    "-c",
    "fsync=off",
    "-c",
    "autovacuum=off",
];

/// What one statement (or `;`-separated batch) returned: its rows, as text, or the server's error.
#[derive(Clone, Debug, Default)]
struct Reply {
    rows: Vec<Vec<Option<String>>>,
    /// Rows affected by the last command.
    count: u64,
}

type Outcome = Result<Reply, String>;

impl Reply {
    fn int(&self, col: usize) -> Option<i64> {
        self.rows.first().and_then(|r| r.get(col)).and_then(|v| v.as_deref()).and_then(|v| v.parse().ok())
    }

    fn text(&self, col: usize) -> Option<String> {
        self.rows.first().and_then(|r| r.get(col)).cloned().flatten()
    }
}

fn shown(o: &Outcome) -> String {
    match o {
        Ok(r) => shown_reply(r),
        Err(e) => e.clone(),
    }
}

/// Rows as `psql -A` prints them (`2 | 0`), or how many the command touched.
fn shown_reply(r: &Reply) -> String {
    if r.rows.is_empty() {
        return format!("{} row(s)", r.count);
    }
    let row =
        |r: &Vec<Option<String>>| r.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect::<Vec<_>>().join(" | ");
    r.rows.iter().map(row).collect::<Vec<_>>().join("; ")
}

/// One connection, served by a thread of its own so that a statement blocked in the server's lock
/// queue blocks only that thread. Dropped: the connection is closed.
struct Session {
    pid: i32,
    jobs: mpsc::Sender<String>,
    done: mpsc::Receiver<Outcome>,
    /// The statement sent and not answered yet.
    sent: Option<String>,
}

/// A connection as lockcheck's user, and its backend's pid.
fn connect(port: u16) -> Result<(postgres::Client, i32), String> {
    let mut config = postgres::Config::new();
    config.host("127.0.0.1").port(port).user("lockcheck").dbname("postgres").connect_timeout(REPLY_BOUND);
    // A server in crash recovery refuses connections for a moment ("starting up"), and one
    // attempt on a loaded machine can take the whole reply bound: retry for a few of them.
    let began = Instant::now();
    let mut client = loop {
        match config.connect(postgres::NoTls) {
            Ok(c) => break c,
            Err(_) if began.elapsed() < 3 * REPLY_BOUND => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(with_causes(&e)),
        }
    };
    let pid = client.query_one("SELECT pg_backend_pid()", &[]).map_err(|e| with_causes(&e))?.get::<_, i32>(0);
    Ok((client, pid))
}

/// The client's error with what caused it: its own text stops at "error connecting to server".
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

impl Session {
    /// The connection is made on its thread too: the blocking client runs a runtime of its own,
    /// which may not start on a thread that drives one (the simulator's).
    fn open(server: &str, port: u16) -> Result<Session, RealError> {
        let talk = |why: String| RealError::Talk { server: server.into(), why };
        let (jobs, inbox) = mpsc::channel::<String>();
        let (outbox, done) = mpsc::channel();
        let (opened, pid) = mpsc::channel();
        std::thread::spawn(move || {
            let mut client = match connect(port) {
                Ok((client, pid)) => {
                    let _ = opened.send(Ok(pid));
                    client
                }
                Err(why) => {
                    let _ = opened.send(Err(why));
                    return;
                }
            };
            for sql in inbox {
                if outbox.send(run(&mut client, &sql)).is_err() {
                    break;
                }
            }
        });
        let pid = pid.recv().map_err(|e| talk(e.to_string()))?.map_err(talk)?;
        Ok(Session { pid, jobs, done, sent: None })
    }

    fn send(&mut self, sql: String) {
        assert!(self.sent.is_none(), "one statement at a time on a connection");
        // A closed connection's thread is gone: the statement fails when its answer is taken.
        let _ = self.jobs.send(sql.clone());
        self.sent = Some(sql);
    }

    /// One statement of client `client`, answered within the reply bound; logged on `wire`.
    fn exec(&mut self, client: NodeId, sql: String, wire: &mut Vec<String>) -> Result<Outcome, RealError> {
        self.send(sql);
        let Some((sql, r)) = self.take(REPLY_BOUND) else {
            return Err(RealError::Talk {
                server: "postgres".into(),
                why: format!("c{client}: no answer within {} s and not waiting for a lock", REPLY_BOUND.as_secs()),
            });
        };
        wire.push(format!("c{client}: {sql} → {}", shown(&r)));
        Ok(r)
    }

    /// The answer to the statement sent, if it came within `bound`.
    fn take(&mut self, bound: Duration) -> Option<(String, Outcome)> {
        let sql = self.sent.clone()?;
        let outcome = match self.done.recv_timeout(bound) {
            Ok(o) => o,
            Err(mpsc::RecvTimeoutError::Timeout) => return None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("the connection is closed".into()),
        };
        self.sent = None;
        Some((sql, outcome))
    }
}

fn run(client: &mut postgres::Client, sql: &str) -> Outcome {
    let messages = client.simple_query(sql).map_err(|e| match e.as_db_error() {
        Some(db) => format!("ERROR: {} ({})", db.message(), db.code().code()),
        None => with_causes(&e),
    })?;
    let mut reply = Reply::default();
    for m in messages {
        match m {
            postgres::SimpleQueryMessage::Row(row) => {
                reply.rows.push((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect())
            }
            postgres::SimpleQueryMessage::CommandComplete(n) => reply.count = n,
            _ => {}
        }
    }
    Ok(reply)
}

/// The version `postgres --version` prints (`postgres (PostgreSQL) 15.18 (Debian …)`).
fn version(binary: &Path) -> String {
    let out = Command::new(binary).arg("--version").output().ok();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
    let v = text.split_whitespace().nth(2).unwrap_or("(unknown version)");
    format!("PostgreSQL {v}")
}

/// One real PostgreSQL: its process, and lockcheck's own connection (schema, lock waits,
/// sessions' ends).
struct PgServer {
    process: Process,
    admin: Option<Session>,
    stock: i64,
    tick_ms: i64,
    wire: Vec<String>,
}

impl PgServer {
    fn start(sb: &Sandbox, stock: i64, cfg: RealCfg) -> Result<PgServer, RealError> {
        let binary = find_binary("postgres", PACKAGE, &[BIN])?;
        let initdb = find_binary("initdb", PACKAGE, &[BIN])?;
        let account = Account::for_root("postgres")?;
        let mut process = Process::new(sb, "postgres", binary, &ARGS, EPOCH_MS)?;
        process.run_as(account)?;
        let mut cmd = Command::new(initdb);
        cmd.arg("-D").arg(&process.data).args([
            "--auth=trust",
            "--no-sync",
            "-U",
            "lockcheck",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        Account::apply(account, &mut cmd);
        let out = cmd.output().map_err(|e| RealError::Start { server: "initdb".into(), why: e.to_string() })?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("failed").to_string();
            return Err(RealError::Start { server: "initdb".into(), why });
        }
        let mut server = PgServer { process, admin: None, stock, tick_ms: cfg.tick_ms, wire: Vec::new() };
        server.boot(true)?;
        Ok(server)
    }

    /// Starts the server (recovering from its folder); `fresh`: with the tables made anew, as on
    /// a new disk. A lost disk keeps the cluster's catalogs (a new `initdb` costs a second a
    /// restart): only lockcheck's two tables are dropped.
    fn boot(&mut self, fresh: bool) -> Result<(), RealError> {
        self.process.start()?;
        let mut admin = Session::open(&self.process.name, self.process.port)?;
        let drop = if fresh { "DROP TABLE IF EXISTS inventory, locks; " } else { "" };
        let schema = format!(
            "{drop}CREATE TABLE IF NOT EXISTS inventory (sku int PRIMARY KEY, stock bigint NOT NULL, version bigint NOT NULL, max_token bigint); \
             INSERT INTO inventory VALUES (1, {}, 0, NULL) ON CONFLICT DO NOTHING; \
             CREATE TABLE IF NOT EXISTS locks (name text PRIMARY KEY, owner text NOT NULL, expires_at timestamptz)",
            self.stock
        );
        admin.send(schema);
        match admin.take(REPLY_BOUND) {
            Some((_, Ok(_))) => {}
            Some((_, Err(why))) => return Err(RealError::Start { server: "postgres".into(), why }),
            None => return Err(RealError::Start { server: "postgres".into(), why: "the schema was not made".into() }),
        }
        self.admin = Some(admin);
        Ok(())
    }

    /// The wall clock at the start of tick `now` (never moved back).
    fn at(&mut self, now: i64) -> Result<(), RealError> {
        self.process.clock.set(wall_ms(now, self.tick_ms))
    }

    /// A statement on lockcheck's own connection (not logged: it is not the application's).
    fn admin(&mut self, sql: &str) -> Result<Reply, RealError> {
        let talk = |why: String| RealError::Talk { server: "postgres".into(), why };
        let admin = self.admin.as_mut().ok_or_else(|| talk("down".into()))?;
        admin.send(sql.into());
        match admin.take(REPLY_BOUND) {
            Some((_, r)) => r.map_err(talk),
            None => Err(talk(format!("no answer to `{sql}` within {} s", REPLY_BOUND.as_secs()))),
        }
    }

    /// Backends waiting for a lock they have not been granted.
    fn lock_waiters(&mut self) -> Result<Vec<i32>, RealError> {
        let r = self.admin("SELECT DISTINCT pid FROM pg_locks WHERE NOT granted AND pid IS NOT NULL")?;
        Ok(r.rows.iter().filter_map(|row| row[0].as_deref().and_then(|p| p.parse().ok())).collect())
    }

    /// Waits (bounded) until backend `pid` is gone and holds no lock any more.
    fn gone(&mut self, pid: i32) -> Result<bool, RealError> {
        let began = Instant::now();
        let sql = format!(
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}) + (SELECT count(*) FROM pg_locks WHERE pid = {pid})"
        );
        loop {
            if self.admin(&sql)?.int(0) == Some(0) {
                return Ok(true);
            }
            if began.elapsed() > END_BOUND {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A client's connection and what lockcheck knows of it.
struct Conn {
    client: NodeId,
    /// The request that opened it: for `for_update`, the transaction's session.
    asked: i64,
    session: Session,
    /// Lock levels granted on it (a reentrant lock's depth).
    depth: u8,
    /// Its transaction (`for_update`) or its connection is still open as far as lockcheck saw.
    open: bool,
    /// An acquire waiting in the server's lock queue: its `asked`.
    queued: Option<i64>,
    /// A queued `SELECT .. FOR UPDATE` lockcheck has not sent yet (see [`PgLock::enqueue`]), with
    /// its place in line.
    held: Option<(u64, String)>,
    /// Its transaction wrote without committing (a nested level's write).
    dirty: bool,
}

impl Conn {
    /// Its acquire was sent and has not returned: it waits in PostgreSQL's lock queue.
    fn waits_in_server(&self) -> bool {
        self.queued.is_some() && self.held.is_none()
    }
}

/// The `db` family on a real PostgreSQL.
pub struct PgLock {
    server: PgServer,
    lock: DbLock,
    client_clock: bool,
    owner_checked: bool,
    versioned: bool,
    ttl: i64,
    timed: bool,
    conns: Vec<Conn>,
    /// The last place in line given to a held statement.
    tickets: u64,
    system: String,
    _sandbox: Sandbox,
}

impl PgLock {
    pub fn start(p: &LeaseLock, lock: DbLock, cfg: RealCfg) -> Result<PgLock, RealError> {
        let c = &p.cfg;
        if matches!(c.fencing, Fencing::Writes | Fencing::ReadsAndWrites) {
            return Err(RealError::Unsupported("with fencing tokens has no real counterpart yet".into()));
        }
        let system = version(&find_binary("postgres", PACKAGE, &[BIN])?);
        let sandbox = Sandbox::new()?;
        let server = PgServer::start(&sandbox, c.stock, cfg)?;
        Ok(PgLock {
            server,
            lock,
            client_clock: c.expiry_on_client_clock,
            owner_checked: c.release_checks_owner,
            versioned: c.fencing == Fencing::Version,
            ttl: c.ttl,
            timed: cfg.timed,
            conns: Vec::new(),
            tickets: 0,
            system,
            _sandbox: sandbox,
        })
    }

    /// The client's open connection its lock lives on (or waits on), else any open one.
    fn current(&self, client: NodeId) -> Option<usize> {
        let mine = |c: &&Conn| c.client == client && c.open;
        let locking = self.conns.iter().rposition(|c| mine(&c) && (c.depth > 0 || c.queued.is_some()));
        locking.or_else(|| self.conns.iter().rposition(|c| mine(&c)))
    }

    /// The client's connection for its lock statements: [`Self::current`], or a new one.
    fn connect(&mut self, client: NodeId, asked: i64) -> Result<usize, RealError> {
        match self.current(client) {
            Some(i) => Ok(i),
            None => self.open(client, asked),
        }
    }

    /// A new connection of the client (`SET`ting the session's timeout first).
    fn open(&mut self, client: NodeId, asked: i64) -> Result<usize, RealError> {
        let mut session = Session::open(&self.server.process.name, self.server.process.port)?;
        if self.lock == DbLock::ForUpdate {
            let ms = self.ttl * self.server.tick_ms;
            let sql = format!("SET idle_in_transaction_session_timeout = {ms}");
            session.send(sql);
            if let Some((sql, r)) = session.take(REPLY_BOUND) {
                self.server.wire.push(format!("c{client}: {sql} → {}", shown(&r)));
            }
        }
        self.conns.push(Conn { client, asked, session, depth: 0, open: true, queued: None, held: None, dirty: false });
        Ok(self.conns.len() - 1)
    }

    /// One statement on connection `i`, answered within the reply bound; logged on the wire.
    fn exec(&mut self, i: usize, sql: String) -> Result<Outcome, RealError> {
        let c = &mut self.conns[i];
        c.session.exec(c.client, sql, &mut self.server.wire)
    }

    /// Sends an acquire that may wait in the server's queue, then settles. A transaction's
    /// `SELECT .. FOR UPDATE` behind another waiter is held back by lockcheck (it plays the
    /// network) until that waiter has the row: PostgreSQL does not keep its waiters' order once
    /// the holder updated the row (every waiter wakes, follows the update chain and races for the
    /// new version; on a loaded machine the later one often wins), and the model's queue is first
    /// come, first served.
    fn enqueue(&mut self, i: usize, asked: i64, sql: String, a: &mut Answer<Msg>) -> Result<(), RealError> {
        let behind = self.lock == DbLock::ForUpdate
            && self.conns[i].depth == 0
            && self.conns.iter().enumerate().any(|(j, c)| j != i && c.queued.is_some());
        let c = &mut self.conns[i];
        c.queued = Some(asked);
        if behind {
            self.tickets += 1;
            c.held = Some((self.tickets, sql.clone()));
            let line = format!("c{}: {sql} … held by lockcheck behind the waiter before it", c.client);
            self.server.wire.push(line);
            return Ok(());
        }
        c.session.send(sql.clone());
        self.settle(a)?;
        let c = &self.conns[i];
        if c.queued.is_some() {
            self.server.wire.push(format!("c{}: {sql} … waits in the server's lock queue", c.client));
        }
        Ok(())
    }

    /// Waits until every pending statement has returned or waits for a lock, and grants the
    /// returned acquires in the order their connections were opened (the queue's order).
    fn settle(&mut self, a: &mut Answer<Msg>) -> Result<(), RealError> {
        let began = Instant::now();
        loop {
            for i in 0..self.conns.len() {
                if self.conns[i].queued.is_some()
                    && let Some((sql, r)) = self.conns[i].session.take(Duration::ZERO)
                {
                    self.granted(i, sql, r, a);
                }
            }
            self.send_held();
            let pending: Vec<i32> = self.conns.iter().filter(|c| c.waits_in_server()).map(|c| c.session.pid).collect();
            if pending.is_empty() {
                return Ok(());
            }
            let waiting = self.server.lock_waiters()?;
            if pending.iter().all(|p| waiting.contains(p)) {
                return Ok(());
            }
            if began.elapsed() > REPLY_BOUND {
                return Err(RealError::Talk {
                    server: "postgres".into(),
                    why: format!(
                        "a statement neither returned nor waited for a lock within {} s",
                        REPLY_BOUND.as_secs()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Sends the first held statement once no other waits in the server.
    fn send_held(&mut self) {
        if self.conns.iter().any(Conn::waits_in_server) {
            return;
        }
        let first = self.conns.iter_mut().filter(|c| c.held.is_some()).min_by_key(|c| c.held.as_ref().map(|h| h.0));
        let Some(c) = first else { return };
        let (_, sql) = c.held.take().expect("filtered");
        self.server.wire.push(format!("c{}: {sql} (sent now, the first in line)", c.client));
        c.session.send(sql);
    }

    fn granted(&mut self, i: usize, sql: String, r: Outcome, a: &mut Answer<Msg>) {
        let c = &mut self.conns[i];
        let asked = c.queued.take().expect("a queued acquire returned");
        self.server.wire.push(format!("c{}: {sql} → {}", c.client, shown(&r)));
        if r.is_err() {
            c.open = false;
            return;
        }
        c.depth += 1;
        if c.depth == 1 {
            a.observed.push(Observation::Granted { client: c.client, token: None });
        }
        a.sends.push((c.client, Wire::Lock(Msg::Grant { token: None, asked })));
    }

    fn acquire(&mut self, from: NodeId, asked: i64, a: &mut Answer<Msg>) -> Result<(), RealError> {
        match self.lock {
            DbLock::ForUpdate => {
                let i = self.connect(from, asked)?;
                match (self.conns[i].queued, self.conns[i].depth) {
                    (Some(_), _) => Ok(()),
                    (None, 0) => {
                        self.conns[i].asked = asked;
                        let sql = "BEGIN; SELECT stock FROM inventory WHERE sku = 1 FOR UPDATE".into();
                        self.enqueue(i, asked, sql, a)
                    }
                    (None, _) => {
                        let sql = "SELECT stock FROM inventory WHERE sku = 1 FOR UPDATE".into();
                        self.enqueue(i, asked, sql, a)
                    }
                }
            }
            DbLock::Advisory => {
                let i = self.connect(from, asked)?;
                if self.conns[i].queued.is_some() {
                    return Ok(());
                }
                self.enqueue(i, asked, "SELECT pg_advisory_lock(1)".into(), a)
            }
            DbLock::UniqueRow | DbLock::ExpiryColumn => self.insert_row(from, asked, a),
            DbLock::Optimistic => Ok(()),
        }
    }

    /// The lock row: a plain `INSERT` (a duplicate key is busy), or with an expiry, an `INSERT`
    /// that takes over an expired row.
    fn insert_row(&mut self, from: NodeId, asked: i64, a: &mut Answer<Msg>) -> Result<(), RealError> {
        let i = self.connect(from, asked)?;
        let me = value(from, asked);
        let sql = match (self.lock, self.client_clock) {
            (DbLock::UniqueRow, _) => format!("INSERT INTO locks (name, owner) VALUES ('stock', '{me}')"),
            (_, false) => format!(
                "WITH old AS (SELECT owner FROM locks WHERE name = 'stock') \
                 INSERT INTO locks VALUES ('stock', '{me}', now() + interval '{} milliseconds') \
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
                 WHERE locks.expires_at < now() RETURNING (SELECT owner FROM old)",
                self.ttl * self.server.tick_ms
            ),
            (_, true) => {
                let tick_ms = self.server.tick_ms;
                let (now, until) = (wall_ms(asked, tick_ms), wall_ms(asked + self.ttl, tick_ms));
                format!(
                    "WITH old AS (SELECT owner FROM locks WHERE name = 'stock') \
                     INSERT INTO locks VALUES ('stock', '{me}', to_timestamp({until} / 1000.0)) \
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
                     WHERE locks.expires_at <= to_timestamp({now} / 1000.0) RETURNING (SELECT owner FROM old)"
                )
            }
        };
        match self.exec(i, sql)? {
            Ok(r) if r.count == 1 => {
                // On the application's clock the takeover is where the old holder's lease ends.
                if self.client_clock
                    && let Some(old) = r.text(0).as_deref().and_then(owner)
                {
                    a.observed.push(Observation::Expired { client: old });
                }
                a.observed.push(Observation::Granted { client: from, token: None });
                a.sends.push((from, Wire::Lock(Msg::Grant { token: None, asked })));
            }
            Ok(_) => a.sends.push((from, Wire::Lock(Msg::Busy))),
            Err(e) if e.contains("23505") => a.sends.push((from, Wire::Lock(Msg::Busy))),
            Err(e) => return Err(RealError::Talk { server: "postgres".into(), why: e }),
        }
        Ok(())
    }

    fn release(&mut self, from: NodeId, asked: i64, a: &mut Answer<Msg>) -> Result<(), RealError> {
        match self.lock {
            DbLock::ForUpdate | DbLock::Advisory => {
                let Some(i) = self.current(from).filter(|&i| self.conns[i].depth > 0) else { return Ok(()) };
                if self.lock == DbLock::ForUpdate && self.conns[i].depth > 1 {
                    // A nested level ends; the transaction, and with it the row lock, stays.
                    self.conns[i].depth -= 1;
                    return Ok(());
                }
                let sql = if self.lock == DbLock::ForUpdate { "ROLLBACK" } else { "SELECT pg_advisory_unlock(1)" };
                match self.exec(i, sql.into())? {
                    Ok(_) if self.lock == DbLock::ForUpdate => {
                        self.conns[i].depth = 0;
                        self.conns[i].open = false;
                    }
                    Ok(r) if r.text(0).as_deref() == Some("t") => self.conns[i].depth -= 1,
                    Ok(_) => {}
                    Err(_) => self.conns[i].open = false,
                }
                self.settle(a)
            }
            DbLock::UniqueRow | DbLock::ExpiryColumn => self.delete_row(from, asked, a),
            DbLock::Optimistic => Ok(()),
        }
    }

    /// `DELETE` of the lock row: the owner's own, or (no owner check) whatever row is there; then
    /// whether it was another client's live row.
    fn delete_row(&mut self, from: NodeId, asked: i64, a: &mut Answer<Msg>) -> Result<(), RealError> {
        let i = self.connect(from, asked)?;
        let me = value(from, asked);
        let sql = if self.owner_checked {
            format!("DELETE FROM locks WHERE name = 'stock' AND owner = '{me}'")
        } else {
            // A row past `expires_at` is no lock any more (by the database's clock; on the
            // application's, only a takeover ends it).
            let live =
                if self.lock == DbLock::ExpiryColumn && !self.client_clock { "expires_at >= now()" } else { "true" };
            format!("DELETE FROM locks WHERE name = 'stock' RETURNING owner, {live}")
        };
        let r = self.exec(i, sql)?.map_err(|why| RealError::Talk { server: "postgres".into(), why })?;
        if let (Some(was), Some("t")) = (r.text(0), r.text(1).as_deref())
            && was != me
            && let Some(owner) = owner(&was)
        {
            a.observed.push(Observation::ReleasedOther { by: from, owner });
        }
        Ok(())
    }

    /// A statement on the stock, on the connection the request travels on.
    fn stock(&mut self, from: NodeId, req: &ResReq, a: &mut Answer<Msg>) -> Result<(), RealError> {
        let Some(i) = self.stock_conn(from, req)? else {
            return Ok(refused(from, req, a));
        };
        let mut sql = stock_sql(req, Fencing::None);
        // The write of the outermost level travels with the COMMIT, as drivers pipeline them.
        let commits = self.lock == DbLock::ForUpdate && self.conns[i].depth <= 1 && matches!(req, ResReq::Write { .. });
        if commits {
            sql.push_str("; COMMIT");
        }
        let outcome = self.exec(i, sql)?;
        if commits && outcome.is_ok() {
            self.conns[i].depth = 0;
            self.conns[i].open = false;
        }
        let writes = matches!(req, ResReq::Write { .. } | ResReq::Decrement | ResReq::CasWrite { .. });
        if self.lock == DbLock::ForUpdate && !commits && writes && outcome.is_ok() {
            self.conns[i].dirty = true;
        }
        match stock_answer(from, req, self.versioned, &outcome) {
            Some((reply, seen)) => {
                a.observed.push(seen);
                a.sends.push((from, Wire::ResReply(reply)));
            }
            None => refused(from, req, a),
        }
        self.settle(a)
    }

    /// The connection a request to the stock travels on: `for_update`'s statements belong to
    /// the transaction of their session (none open: refused, as a statement on a dead
    /// connection is); others use a free connection of the client (the pool's: one waiting in
    /// the lock queue is busy), opened again if it was dropped.
    fn stock_conn(&mut self, from: NodeId, req: &ResReq) -> Result<Option<usize>, RealError> {
        if self.lock != DbLock::ForUpdate {
            let free = self.conns.iter().rposition(|c| c.client == from && c.open && c.queued.is_none());
            return free.map_or_else(|| self.open(from, 0), Ok).map(Some);
        }
        let Some(session) = req.session() else { return Ok(None) };
        let found = self.conns.iter().rposition(|c| c.client == from && c.asked == session && c.depth > 0);
        if found.is_none() {
            self.server.wire.push(format!("c{from}: no transaction of session c{from}:{session} is open"));
        }
        Ok(found)
    }

    /// The model's lease timer is due: the real server's own timeout, or the dropped connection.
    fn expire(&mut self, owner: NodeId, now: i64, a: &mut Answer<Msg>) -> Result<(), RealError> {
        match self.lock {
            DbLock::ForUpdate | DbLock::Advisory => {
                let Some(i) = self.current(owner).filter(|&i| self.conns[i].depth > 0) else { return Ok(()) };
                let pid = self.conns[i].session.pid;
                let dropped = self.lock == DbLock::Advisory;
                if !dropped {
                    self.server.at(now)?;
                    // SAFETY: kill has no memory effects; `pid` is a backend of our own server.
                    unsafe {
                        libc::kill(pid, libc::SIGALRM);
                    }
                    self.server.wire.push(format!("SIGALRM to c{owner}'s backend (pid {pid}): it checks its timeout"));
                } else {
                    drop(self.conns.remove(i));
                    self.server.wire.push(format!("c{owner}'s connection is closed (the network drops it)"));
                }
                if !self.server.gone(pid)? {
                    self.server.wire.push(format!("c{owner}'s backend (pid {pid}) is still there"));
                    return Ok(());
                }
                self.server.wire.push(format!("c{owner}'s session ended (pid {pid} gone)"));
                a.observed.push(Observation::Expired { client: owner });
                if !dropped {
                    let c = &mut self.conns[i];
                    c.open = false;
                    c.depth = 0;
                    if std::mem::take(&mut c.dirty) {
                        let stock = self.server.admin("SELECT stock FROM inventory WHERE sku = 1")?.int(0).unwrap_or(0);
                        self.server.wire.push(format!("c{owner}'s transaction rolled back: stock {stock}"));
                        a.observed.push(Observation::RolledBack { client: owner, stock });
                    }
                }
                self.settle(a)
            }
            DbLock::ExpiryColumn => self.lapse(now, a),
            DbLock::UniqueRow | DbLock::Optimistic => Ok(()),
        }
    }

    /// Moves the database's clock one millisecond past the row's `expires_at`, if that falls in
    /// this tick, and reports the row's owner if the database now sees it expired.
    fn lapse(&mut self, now: i64, a: &mut Answer<Msg>) -> Result<(), RealError> {
        self.server.at(now)?;
        let r = self
            .server
            .admin("SELECT owner, (extract(epoch FROM expires_at) * 1000)::bigint FROM locks WHERE name = 'stock'")?;
        let (Some(was), Some(when)) = (r.text(0), r.int(1)) else { return Ok(()) };
        let end_of_tick = self.timed.then(|| wall_ms(now + 1, self.server.tick_ms));
        if !self.server.process.clock.pass(when, end_of_tick)? {
            return Ok(());
        }
        self.server.wire.push(format!("the wall clock moves to expires_at + 1 ms ({})", when + 1));
        let r = self.server.admin("SELECT owner FROM locks WHERE name = 'stock' AND expires_at < now()")?;
        self.server.wire.push(format!("SELECT owner FROM locks WHERE expires_at < now() → {}", shown_reply(&r)));
        if r.text(0) == Some(was.clone())
            && let Some(client) = owner(&was)
        {
            a.observed.push(Observation::Expired { client });
        }
        Ok(())
    }
}

/// A request to the stock as one statement on the `inventory` row. With fencing, a token lower
/// than the row's `max_token` finds no row (refused); a write (and, fencing reads too, a read)
/// registers its token. Every statement returns a row exactly when it did what was asked.
fn stock_sql(req: &ResReq, fencing: Fencing) -> String {
    const ROW: &str = "FROM inventory WHERE sku = 1";
    let fenced = |t: &Option<u64>| match (t, fencing) {
        (Some(t), Fencing::Writes | Fencing::ReadsAndWrites) => Some(*t),
        _ => None,
    };
    let admits = |t: u64| format!("sku = 1 AND (max_token IS NULL OR max_token <= {t})");
    match req {
        ResReq::Read { token, .. } => match fenced(token) {
            Some(t) if fencing == Fencing::ReadsAndWrites => {
                format!("UPDATE inventory SET max_token = {t} WHERE {} RETURNING stock, version", admits(t))
            }
            Some(t) => format!("SELECT stock, version FROM inventory WHERE {}", admits(t)),
            None => format!("SELECT stock, version {ROW}"),
        },
        ResReq::Write { token, value, .. } => {
            let (set, cond) = match fenced(token) {
                Some(t) => (format!(", max_token = {t}"), admits(t)),
                None => (String::new(), "sku = 1".into()),
            };
            format!(
                "WITH old AS (SELECT stock {ROW}) UPDATE inventory SET stock = {value}{set} WHERE {cond} \
                 RETURNING (SELECT stock FROM old)"
            )
        }
        ResReq::Decrement => {
            "UPDATE inventory SET stock = stock - 1 WHERE sku = 1 AND stock >= 1 RETURNING stock".into()
        }
        ResReq::CasWrite { version, value } => format!(
            "WITH old AS (SELECT stock {ROW}) UPDATE inventory SET stock = {value}, version = version + 1 \
             WHERE sku = 1 AND version = {version} RETURNING (SELECT stock FROM old)"
        ),
    }
}

/// What the stock statement's outcome means: the reply and what the properties observe; `None`
/// when the statement failed (its connection or transaction is gone).
fn stock_answer(from: NodeId, req: &ResReq, versioned: bool, outcome: &Outcome) -> Option<(ResReply, Observation)> {
    let r = outcome.as_ref().ok()?;
    let done = !r.rows.is_empty();
    let first = r.int(0).unwrap_or(i64::MIN);
    let rejected = |token| (ResReply::Rejected, Observation::WriteRejected { client: from, token });
    Some(match *req {
        ResReq::Read { token, .. } if done => {
            let version = r.int(1).unwrap_or(0) as u64;
            let reply = if versioned { ResReply::Row { stock: first, version } } else { ResReply::Stock(first) };
            (reply, Observation::Read { client: from, token, stock: first })
        }
        ResReq::Write { token, value, sale, .. } if done => {
            (ResReply::WriteOk, Observation::WriteAccepted { client: from, token, value, sale, before: first })
        }
        ResReq::Read { token, .. } | ResReq::Write { token, .. } => rejected(token),
        ResReq::Decrement if done => (ResReply::Decremented, Observation::Decremented { client: from, stock: first }),
        ResReq::Decrement => (ResReply::SoldOut, Observation::SoldOut { client: from }),
        ResReq::CasWrite { value, .. } if done => (
            ResReply::WriteOk,
            Observation::WriteAccepted { client: from, token: None, value, sale: true, before: first },
        ),
        ResReq::CasWrite { .. } => (ResReply::Conflict, Observation::WriteRejected { client: from, token: None }),
    })
}

/// A statement that never reached the data: its transaction, and its connection, are gone.
fn refused<M>(from: NodeId, req: &ResReq, a: &mut Answer<M>) {
    a.observed.push(Observation::WriteRejected { client: from, token: req.token() });
    a.sends.push((from, Wire::ResReply(ResReply::Rejected)));
}

impl Counterpart<LeaseLock> for PgLock {
    fn system(&self) -> String {
        self.system.clone()
    }

    fn on_msg(&mut self, _server: usize, from: NodeId, msg: &Msg, now: i64) -> Result<Answer<Msg>, RealError> {
        self.server.at(now)?;
        let mut a = Answer::default();
        match msg {
            Msg::Acquire { asked } => self.acquire(from, *asked, &mut a)?,
            Msg::Release { asked } => self.release(from, *asked, &mut a)?,
            Msg::Grant { .. } | Msg::Busy | Msg::Repl(_) => {}
        }
        a.wire = std::mem::take(&mut self.server.wire);
        Ok(a)
    }

    fn on_timer(&mut self, _server: usize, timer: &Timer, now: i64) -> Result<Answer<Msg>, RealError> {
        let mut a = Answer::default();
        if let Timer::Expire(owner) = timer {
            self.expire(*owner, now, &mut a)?;
        }
        a.wire = std::mem::take(&mut self.server.wire);
        Ok(a)
    }

    fn on_resource(&mut self, _server: usize, from: NodeId, req: &ResReq, now: i64) -> Result<Answer<Msg>, RealError> {
        self.server.at(now)?;
        let mut a = Answer::default();
        self.stock(from, req, &mut a)?;
        a.wire = std::mem::take(&mut self.server.wire);
        Ok(a)
    }

    fn crash(&mut self, _server: usize) -> Vec<String> {
        self.server.admin = None;
        self.server.process.kill();
        self.conns.clear();
        vec!["SIGKILL to postgres and all its backends: sessions, transactions and their locks are gone".into()]
    }

    fn restart(&mut self, _server: usize, wiped: bool, now: i64) -> Result<Vec<String>, RealError> {
        self.server.at(now)?;
        self.server.boot(wiped)?;
        let from = if wiped { "a fresh cluster (the disk was lost)" } else { "its data folder (crash recovery)" };
        Ok(vec![format!("postgres started again from {from}")])
    }
}

/// The stock of a family whose lock lives elsewhere (Redis, Redlock): lockcheck's storage node
/// answered by a real PostgreSQL table, fenced as the spec fences the storage (the highest token
/// seen is the row's `max_token`). A request is one autocommitted statement on its client's
/// connection.
pub struct PgStock {
    server: PgServer,
    fencing: Fencing,
    conns: BTreeMap<NodeId, Session>,
    system: String,
    _sandbox: Sandbox,
}

impl PgStock {
    pub fn start(stock: i64, fencing: Fencing, cfg: RealCfg) -> Result<PgStock, RealError> {
        let system = version(&find_binary("postgres", PACKAGE, &[BIN])?);
        let sandbox = Sandbox::new()?;
        let server = PgServer::start(&sandbox, stock, cfg)?;
        Ok(PgStock { server, fencing, conns: BTreeMap::new(), system, _sandbox: sandbox })
    }

    pub fn system(&self) -> String {
        self.system.clone()
    }

    pub fn on_resource<M>(&mut self, from: NodeId, req: &ResReq, now: i64) -> Result<Answer<M>, RealError> {
        self.server.at(now)?;
        if !self.conns.contains_key(&from) {
            let session = Session::open(&self.server.process.name, self.server.process.port)?;
            self.conns.insert(from, session);
        }
        let session = self.conns.get_mut(&from).expect("opened above");
        let outcome = session.exec(from, stock_sql(req, self.fencing), &mut self.server.wire)?;
        let mut a = Answer::default();
        match stock_answer(from, req, self.fencing == Fencing::Version, &outcome) {
            Some((reply, seen)) => {
                a.observed.push(seen);
                a.sends.push((from, Wire::ResReply(reply)));
            }
            None => {
                // Its connection is gone: the next request opens another, as a pool would.
                self.conns.remove(&from);
                refused(from, req, &mut a);
            }
        }
        a.wire = std::mem::take(&mut self.server.wire);
        Ok(a)
    }

    pub fn crash(&mut self) -> Vec<String> {
        self.server.admin = None;
        self.server.process.kill();
        self.conns.clear();
        vec!["SIGKILL to the stock's postgres and all its backends".into()]
    }

    pub fn restart(&mut self, wiped: bool, now: i64) -> Result<Vec<String>, RealError> {
        self.server.at(now)?;
        self.server.boot(wiped)?;
        let from = if wiped { "a fresh table (the disk was lost)" } else { "its data folder (crash recovery)" };
        Ok(vec![format!("the stock's postgres started again from {from}")])
    }
}

#[cfg(test)]
mod tests {
    use super::with_causes;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn an_error_is_told_with_every_cause_under_it() {
        let timed_out = Layer("connection timed out", None);
        let e = Layer("error connecting to server", Some(Box::new(Layer("io", Some(Box::new(timed_out))))));
        assert_eq!(with_causes(&e), "error connecting to server: io: connection timed out");
        assert_eq!(with_causes(&Layer("db error", None)), "db error");
    }
}

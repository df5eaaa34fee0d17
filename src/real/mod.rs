//! Real servers behind the protocols' server nodes: the same client code, the same network and
//! faults (lockcheck's), and a real Redis answering where the model's server would.
//!
//! A [`Counterpart`] is the server side of one family spoken to a real server: it turns a request
//! the model's server would have handled into the real commands, and the real replies back into the
//! protocol's messages and the observations the properties judge. The confirm engine
//! ([`crate::confirm`]) runs it beside the model's server and stops at the first answer that
//! differs. Counterparts depend on the protocols, never the reverse.

pub mod conformance;
pub mod etcd;
pub mod postgres;
pub mod process;
pub mod queue;
pub mod redis;
pub mod redisson;
pub mod replication;
pub mod zookeeper;

use std::any::Any;
use std::path::Path;

use crate::protocol::lease::Dialect;
use crate::protocol::{Effect, NodeId, Observation, Protocol, Wire};
use crate::resource::ResReq;

#[derive(Debug, thiserror::Error)]
pub enum RealError {
    #[error("`{binary}` not found: install the Debian package `{package}` (apt-get install {package})")]
    Missing { binary: String, package: String },
    #[error("{server} did not start: {why}")]
    Start { server: String, why: String },
    #[error("{server}: {why}")]
    Talk { server: String, why: String },
    #[error("{file}: {why}")]
    Io { file: String, why: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("interrupted (Ctrl-C)")]
    Interrupted,
}

impl RealError {
    pub fn io(file: &Path, e: std::io::Error) -> RealError {
        RealError::Io { file: file.display().to_string(), why: e.to_string() }
    }
}

/// What a real server did with one input: the protocol messages it answered, what the properties
/// observe of it, and the commands and replies on the real wire.
#[derive(Debug)]
pub struct Answer<M> {
    /// Lock messages and, where the server also keeps the stock (a database), resource replies.
    pub sends: Vec<(NodeId, Wire<M>)>,
    pub observed: Vec<Observation>,
    pub wire: Vec<String>,
}

impl<M> Default for Answer<M> {
    fn default() -> Self {
        Answer { sends: Vec::new(), observed: Vec::new(), wire: Vec::new() }
    }
}

/// What a model server's handler answered, in the shape of an [`Answer`]: the messages it sent
/// and what it made the properties observe.
pub fn answer_of<M: Clone, T, D>(effects: &[Effect<Wire<M>, T, D>]) -> (Vec<(NodeId, Wire<M>)>, Vec<Observation>) {
    let mut sends = Vec::new();
    let mut observed = Vec::new();
    for e in effects {
        match e {
            Effect::Send { to, msg } => sends.push((*to, msg.clone())),
            Effect::Observe(o) => observed.push(o.clone()),
            _ => {}
        }
    }
    (sends, observed)
}

/// Whether a model's answer and a real one are the same: the same observations in order, and
/// the same messages on each connection in order (messages to different nodes have no order
/// between them).
pub fn same_answer<M: Clone + PartialEq>(
    model: (&[(NodeId, Wire<M>)], &[Observation]),
    real: (&[(NodeId, Wire<M>)], &[Observation]),
) -> bool {
    let by_recipient = |sends: &[(NodeId, Wire<M>)]| {
        let mut sorted = sends.to_vec();
        sorted.sort_by_key(|(to, _)| *to);
        sorted
    };
    model.1 == real.1 && by_recipient(model.0) == by_recipient(real.0)
}

/// An answer in the system's words: `→ client-1: OK; lock granted to client-1`. `name` names nodes.
pub fn show_answer<P: Protocol>(
    proto: &P,
    me: NodeId,
    sends: &[(NodeId, Wire<P::Msg>)],
    observed: &[Observation],
    name: &dyn Fn(NodeId) -> String,
) -> String {
    let mut parts: Vec<String> =
        sends.iter().map(|(to, m)| format!("→ {}: {}", name(*to), crate::protocol::show_wire(proto, me, m))).collect();
    parts.extend(observed.iter().map(|o| crate::check::observation_text(o, name)));
    if parts.is_empty() { "nothing".into() } else { parts.join("; ") }
}

/// The unique value a real lock record carries for request `asked` of client `from` (the
/// model's `c<client>:<asked>`), and the client it names.
pub(crate) fn value(from: NodeId, asked: i64) -> String {
    format!("c{from}:{asked}")
}

pub(crate) fn owner(value: &str) -> Option<NodeId> {
    value.strip_prefix('c')?.split(':').next()?.parse().ok()
}

/// Settings of a run against real servers.
#[derive(Clone, Copy, Debug)]
pub struct RealCfg {
    /// Real milliseconds per model tick.
    pub tick_ms: i64,
    /// The spec's time is discrete. Untimed, a model timer may fire at any moment, meaning "as
    /// much time passed as it takes": the real server's clock then runs to the moment the real
    /// server acts, however far.
    pub timed: bool,
    /// Real milliseconds a tick lasts with a server whose timers run on a clock lockcheck cannot
    /// move (ZooKeeper expires sessions on the JVM's monotonic clock): a walk there takes real time.
    pub wait_tick_ms: i64,
}

impl Default for RealCfg {
    fn default() -> Self {
        RealCfg { tick_ms: 1000, timed: true, wait_tick_ms: 500 }
    }
}

/// The real server side of a protocol. `now` is the server's clock reading in ticks (the model's
/// `tick + offset`): the counterpart moves the real server's wall clock there first.
pub trait Counterpart<P: Protocol>: Send {
    /// The real system and its version, as its own `--version` says (`Redis 7.0.15`).
    fn system(&self) -> String;
    fn on_msg(&mut self, server: usize, from: NodeId, msg: &P::Msg, now: i64) -> Result<Answer<P::Msg>, RealError>;
    /// A server timer of the model is due (a key's expiry): the real server does it on its own;
    /// the counterpart lets the real clock run to the moment it does, within this tick.
    fn on_timer(&mut self, server: usize, timer: &P::Timer, now: i64) -> Result<Answer<P::Msg>, RealError>;
    /// A request to the stock, for a server that keeps it (a database's table). Servers that keep
    /// none are never asked: the stock then lives on lockcheck's storage node.
    fn on_resource(
        &mut self,
        server: usize,
        from: NodeId,
        req: &ResReq,
        now: i64,
    ) -> Result<Answer<P::Msg>, RealError> {
        let _ = (server, from, now);
        Err(RealError::Unsupported(format!("{} keeps no stock, yet was asked `{req}`", self.system())))
    }
    /// `SIGKILL`; what was done, for the trace.
    fn crash(&mut self, server: usize) -> Vec<String>;
    /// Started again, from its disk or, `wiped`, from nothing; what was done, for the trace.
    fn restart(&mut self, server: usize, wiped: bool, now: i64) -> Result<Vec<String>, RealError>;
    /// Every one of the `servers` emptied (killed, started with its disk lost) for a new run whose
    /// clocks start at tick `base`, as the model's servers start.
    fn fresh(&mut self, servers: usize, base: i64) -> Result<(), RealError> {
        for index in 0..servers {
            self.crash(index);
            self.restart(index, true, base)?;
        }
        Ok(())
    }
}

fn none_yet() -> RealError {
    RealError::Unsupported(
        "has no real counterpart yet (so far: redis, redlock, redisson, db, zookeeper, curator, etcd)".into(),
    )
}

/// The counterpart of `proto`, its servers started; an error when the family (or this
/// configuration of it) has no real counterpart, or a server does not start.
pub fn counterpart<P: Protocol>(proto: &P, cfg: RealCfg) -> Result<Box<dyn Counterpart<P>>, RealError> {
    let any: &dyn Any = proto;
    let boxed: Box<dyn Any> = if let Some(p) = any.downcast_ref::<crate::protocol::lease::LeaseLock>() {
        let c: Box<dyn Counterpart<crate::protocol::lease::LeaseLock>> = match p.cfg.dialect {
            Dialect::Sql(lock) => Box::new(postgres::PgLock::start(p, lock, cfg)?),
            Dialect::Redis => Box::new(redis::RedisLease::start(p, cfg)?),
            Dialect::LeaseService => return Err(none_yet()),
        };
        Box::new(c)
    } else if let Some(p) = any.downcast_ref::<crate::protocol::redlock::Redlock>() {
        let c: Box<dyn Counterpart<crate::protocol::redlock::Redlock>> = Box::new(redis::RedlockNodes::start(p, cfg)?);
        Box::new(c)
    } else if let Some(p) = any.downcast_ref::<crate::protocol::redisson::Redisson>() {
        let c: Box<dyn Counterpart<crate::protocol::redisson::Redisson>> =
            Box::new(redisson::RedissonLock::start(p, cfg)?);
        Box::new(c)
    } else if let Some(p) = any.downcast_ref::<crate::protocol::zookeeper::ZooKeeper>() {
        let c: Box<dyn Counterpart<crate::protocol::zookeeper::ZooKeeper>> = match p.dialect {
            crate::protocol::zookeeper::Dialect::ZooKeeper => Box::new(zookeeper::ZkServer::start(p, cfg)?),
            crate::protocol::zookeeper::Dialect::Etcd => Box::new(etcd::EtcdServer::start(p, cfg)?),
        };
        Box::new(c)
    } else {
        return Err(none_yet());
    };
    Ok(*boxed.downcast::<Box<dyn Counterpart<P>>>().expect("the counterpart was built for P"))
}

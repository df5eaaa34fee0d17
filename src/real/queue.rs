//! The lock queue of ZooKeeper's recipe and etcd's mutex (one protocol machine,
//! [`crate::protocol::zookeeper`]) on a real server: what both real counterparts share.
//!
//! A [`QueueServer`] speaks one system's wire: it opens, resumes and closes the real sessions
//! (ZooKeeper sessions, etcd leases) behind the model's, sends each request and reads the watch
//! events. [`QueueLock`] does the rest the same for both: real time (the sessions of both expire
//! on a clock no shim may move), who holds the lock (the lowest node after every step), waiting
//! for an expiry the model fires until the server has done it, and telling apart the deletions of
//! one expiry from another's.
//!
//! Time: tick `t` begins `t × tick` after the walk's first step (or when the step before it ends,
//! if that is later). A server session asks for more than the model's timeout, so a session the
//! model keeps through tick `t` is alive in the real server however late in that tick a step comes;
//! when the model's session timer fires, the counterpart waits (bounded) until the server has
//! expired it, so nothing after it runs early.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::process::REPLY_BOUND;
use super::{Answer, Counterpart, RealError};
use crate::protocol::zookeeper::{Msg, Timer, ZooKeeper};
use crate::protocol::{NodeId, Observation, Wire};

/// A watch notification that reached a client: the node deleted (`None`: the children of the
/// lock's parent changed), in the system's words.
#[derive(Debug)]
pub(crate) struct Event {
    pub node: Option<u64>,
    pub shown: String,
}

/// What one request did on the real wire.
#[derive(Default)]
pub(crate) struct Exchanged {
    pub reply: Option<Msg>,
    /// Watch events that reached the asker's connection before the reply.
    pub events: Vec<Event>,
    /// A node made: its model number and name.
    pub created: Option<(u64, String)>,
    pub shown: Vec<String>,
}

/// A session of the model, `(client, epoch)`.
pub(crate) type Key = (NodeId, u8);

/// One system's wire under the queue.
pub(crate) trait QueueServer: Send {
    /// Request `msg` of client `from` on its session `(from, msg.session())`, opened (after
    /// closing the client's older ones, as the model's server forgets them) or resumed as needed;
    /// `node` names the node the request names. `None`: the server says the session is gone.
    fn request(&mut self, from: NodeId, msg: &Msg, node: Option<&str>) -> Result<Option<Exchanged>, RealError>;
    /// Watch events sent to the clients since the last call.
    fn pending(&mut self) -> Result<Vec<(NodeId, Event)>, RealError>;
    /// The nodes under the lock, by model number, as the server lists them now.
    fn list(&mut self) -> Result<Vec<u64>, RealError>;
    /// The client's newest session that it has not closed.
    fn newest(&self, client: NodeId) -> Option<Key>;
    /// Whether the server no longer knows session `key` (its own tracker, not the model's word).
    fn gone(&mut self, key: Key) -> Result<bool, RealError>;
    /// Session `key` expired: its connections and watches are dropped.
    fn expired(&mut self, key: Key);
    /// The server's name for session `key` (`0x1c2`), for the trace.
    fn name(&self, key: Key) -> String;
    /// What the wire said since the last call.
    fn wire(&mut self) -> Vec<String>;
    /// `SIGKILL`; what was done, for the trace.
    fn kill(&mut self) -> String;
    /// Starts the server again, from its disk or (`wiped`) from nothing; what was done.
    fn boot(&mut self, wiped: bool) -> Result<String, RealError>;
}

/// The `zookeeper`, `curator` and `etcd` families on one real server.
pub(crate) struct QueueLock<S: QueueServer> {
    server: S,
    /// The system and its version (`etcd 3.4.23`).
    system: String,
    /// Real time a tick lasts.
    tick: Duration,
    /// Every node created: its name and the model session that created it, by model number.
    nodes: BTreeMap<u64, (String, Key)>,
    /// The nodes as of the last step, lowest (the holder) first.
    children: Vec<u64>,
    /// Watch events received but caused by an expiry the model has not fired yet.
    stash: Vec<(NodeId, Event)>,
    /// The real instant of tick 0, set at the walk's first step.
    origin: Option<Instant>,
    wire: Vec<String>,
}

impl<S: QueueServer> QueueLock<S> {
    pub(crate) fn new(server: S, system: String, tick: Duration) -> QueueLock<S> {
        QueueLock {
            server,
            system,
            tick,
            nodes: BTreeMap::new(),
            children: Vec::new(),
            stash: Vec::new(),
            origin: None,
            wire: Vec::new(),
        }
    }

    /// Waits until tick `now` has begun in real time (the first call fixes tick 0).
    fn at(&mut self, now: i64) {
        let back = self.tick * now.max(0) as u32;
        let origin = *self.origin.get_or_insert_with(|| Instant::now().checked_sub(back).unwrap_or_else(Instant::now));
        let due = origin + back;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }

    fn made_by(&self, seq: u64) -> Option<Key> {
        self.nodes.get(&seq).map(|(_, key)| *key)
    }

    /// One request of client `from`, answered as the model's server would (the reply, or that
    /// the session is gone).
    fn request(&mut self, from: NodeId, msg: &Msg, a: &mut Answer<Msg>) -> Result<(), RealError> {
        let Some(session) = msg.session() else { return Ok(()) };
        let node = match msg {
            Msg::Exists { seq, .. } | Msg::Delete { seq: Some(seq), .. } => Some(*seq),
            _ => None,
        };
        let name = node.and_then(|seq| self.nodes.get(&seq)).map(|(name, _)| name.clone());
        let done = self.server.request(from, msg, name.as_deref())?;
        self.wire.extend(self.server.wire());
        let Some(done) = done else {
            a.sends.push((from, Wire::Lock(Msg::SessionExpired { session })));
            return Ok(());
        };
        if let Some((seq, name)) = done.created {
            self.nodes.insert(seq, (name, (from, session)));
        }
        if !done.shown.is_empty() {
            self.wire.push(done.shown.join("; "));
        }
        self.deliver(from, done.events, a);
        if let Some(reply) = done.reply {
            a.sends.push((from, Wire::Lock(reply)));
        }
        Ok(())
    }

    /// Watch events that reached `client`, as the model's messages.
    fn deliver(&mut self, client: NodeId, events: Vec<Event>, a: &mut Answer<Msg>) {
        for e in events {
            self.wire.push(format!("{} → client-{client}", e.shown));
            a.sends.push((client, Wire::Lock(Msg::WatchedEvent { node: e.node })));
        }
    }

    /// What the server did besides answering: watch events sent to other clients, and a new
    /// lowest node (the lock changing hands). After a request the server's listing is the truth.
    /// After the expiry of session `expired`, only what that expiry did is this step's: both
    /// servers expire the sessions due together in one pass, where the model expires them one
    /// timer at a time, so the events and deletions of another session expired in the same pass
    /// wait for the model's timer of that session (or show as an expired session when a request
    /// comes first).
    fn aftermath(&mut self, a: &mut Answer<Msg>, expired: Option<Key>) -> Result<(), RealError> {
        let events = self.server.pending()?;
        self.stash.extend(events);
        let of_this_step = |e: &Event| match expired {
            None => true,
            Some(key) => e.node.is_none_or(|seq| self.nodes.get(&seq).is_some_and(|(_, k)| *k == key)),
        };
        let (now, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.stash).into_iter().partition(|(_, e)| of_this_step(e));
        self.stash = later;
        for (client, e) in now {
            self.deliver(client, vec![e], a);
        }
        let before = std::mem::take(&mut self.children);
        let after: Vec<u64> = match expired {
            None => self.server.list()?,
            Some(key) => before.iter().copied().filter(|seq| self.made_by(*seq) != Some(key)).collect(),
        };
        let lowest = after.first().copied();
        if lowest != before.first().copied()
            && let Some(seq) = lowest
        {
            let owner = self.made_by(seq).ok_or_else(|| RealError::Talk {
                server: self.system.clone(),
                why: format!("a node lockcheck did not create holds the lock (model number {seq})"),
            })?;
            a.observed.push(Observation::Granted { client: owner.0, token: Some(seq) });
        }
        self.children = after;
        Ok(())
    }

    /// Waits (bounded) until the server has expired session `key`: it no longer knows it, and
    /// its nodes are gone from a listing.
    fn wait_expired(&mut self, key: Key) -> Result<bool, RealError> {
        let bound = Instant::now() + self.tick * 2 + REPLY_BOUND;
        loop {
            if self.server.gone(key)? && !self.server.list()?.iter().any(|seq| self.made_by(*seq) == Some(key)) {
                return Ok(true);
            }
            if Instant::now() > bound {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn answer(&mut self, mut a: Answer<Msg>) -> Answer<Msg> {
        a.wire = std::mem::take(&mut self.wire);
        a
    }
}

impl<S: QueueServer> Counterpart<ZooKeeper> for QueueLock<S> {
    fn system(&self) -> String {
        self.system.clone()
    }

    fn on_msg(&mut self, _server: usize, from: NodeId, msg: &Msg, now: i64) -> Result<Answer<Msg>, RealError> {
        self.at(now);
        let mut a = Answer::default();
        self.request(from, msg, &mut a)?;
        self.aftermath(&mut a, None)?;
        Ok(self.answer(a))
    }

    fn on_timer(&mut self, _server: usize, timer: &Timer, now: i64) -> Result<Answer<Msg>, RealError> {
        self.at(now);
        let mut a = Answer::default();
        let mut expired = None;
        if let Timer::Session(client) = *timer
            && let Some(key) = self.server.newest(client)
            && self.wait_expired(key)?
        {
            self.wire.push(format!(
                "session {} expired (the server no longer knows it, its nodes gone)",
                self.server.name(key)
            ));
            a.observed.push(Observation::Expired { client });
            self.server.expired(key);
            expired = Some(key);
        }
        self.aftermath(&mut a, expired)?;
        Ok(self.answer(a))
    }

    fn crash(&mut self, _server: usize) -> Vec<String> {
        vec![self.server.kill()]
    }

    fn restart(&mut self, _server: usize, wiped: bool, now: i64) -> Result<Vec<String>, RealError> {
        self.at(now);
        if wiped {
            // The server forgets every session and node, as the model's does.
            self.nodes.clear();
            self.children.clear();
            self.stash.clear();
        }
        Ok(vec![self.server.boot(wiped)?])
    }
}

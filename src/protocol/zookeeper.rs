//! `zookeeper` and `curator`: the lock recipe on ZooKeeper (ZooKeeper "Recipes and Solutions",
//! Locks; Apache Curator's `InterProcessMutex`).
//!
//! The ensemble is one linearizable node (`zookeeper`; its unavailability is a crash fault). A client
//! opens a session with its first request and keeps it alive with pings every third of the session
//! timeout; any request counts as a heartbeat. A session the server has not heard from for
//! `session_timeout` expires: its ephemeral nodes are deleted and their watches fire. The client
//! learns of the expiry only when the server next answers it (`SESSION_EXPIRED`) and then opens a
//! new session. The recipe: `create -e -s /lock/lock-`, list the children; the lowest holds the
//! lock; otherwise watch and wait, then list again. Release deletes the node and closes the session.
//!
//! Knobs (`zookeeper`) and the failure each exposes:
//! - `watch = "predecessor"` (default) | `"all"`: with `all` every waiter watches the children and
//!   every change wakes every waiter (the herd effect, catalog #16: messages per acquisition grow
//!   with the clients); `predecessor` watches only the next lower node.
//! - `protection` (default false): the node name carries a GUID prefix (`_c_<guid>-lock-`), so a
//!   client whose create reply was lost finds its node by listing. Off: it creates a second node
//!   and its first, orphaned, blocks everyone while its session lives (catalog #15, ZOOKEEPER-1262;
//!   `deadlock_free`).
//! - `fencing` (default false): the node's creation zxid is the fencing token and the storage checks
//!   it (catalog S1, Kleppmann 2016). Off: a holder paused past its session timeout writes after the
//!   next holder (catalog #13; `no_stale_write`, `no_oversell`).
//! - `session_timeout` (ticks, default the spec's `ttl_ticks`): ZooKeeper negotiates 2..20 ×
//!   tickTime (4 s .. 40 s with the common 2 s tickTime, catalog A.0).
//!
//! `curator` is the same recipe as Curator runs it: reentrant per owner (a nested acquire counts,
//! it creates no node), protection always on, and the connection states Curator documents: the
//! client is SUSPENDED when it has heard nothing from the server for 2/3 of the session timeout
//! (ZooKeeper's read timeout) and reports LOST when the session timeout has passed while suspended
//! (Curator 3.x, TN12; catalog A.0). Knobs: `session_timeout`, `connection_timeout` (ticks, how
//! long a request waits for its reply), `base_sleep` and `max_retries` (the retry policy: a request
//! that timed out is sent again up to `max_retries` times, then the acquire fails and the
//! application retries after `base_sleep`). Defaults follow Curator's 60 s / 15 s scaled to ticks
//! by the spec's `ttl_ticks`.
//!
//! Session expiry protects the next holder only at the lock service: beliefs overlap during the
//! window between expiry and the old holder hearing of it, whatever the flavour (catalog #13).

use serde::{Deserialize, Serialize};

use crate::protocol::{Ids, LockEvent, NodeId, Observation, PCx, Protocol, ResourceHome};
use crate::resource::Fencing;
use crate::spec::Env;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Watch {
    #[default]
    Predecessor,
    All,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    pub watch: Watch,
    pub protection: bool,
    pub fencing: bool,
    pub session_timeout: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CuratorOptions {
    pub fencing: bool,
    pub session_timeout: Option<i64>,
    pub connection_timeout: Option<i64>,
    pub base_sleep: Option<i64>,
    pub max_retries: Option<u8>,
}

/// What Curator adds to the bare recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Curator {
    /// How long a request waits for its reply before it counts as a connection loss.
    pub connection_timeout: i64,
    pub base_sleep: i64,
    pub max_retries: u8,
}

/// Whose names the session-and-queue machine speaks in traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    ZooKeeper,
    Etcd,
}

pub struct ZooKeeper {
    pub(crate) dialect: Dialect,
    watch: Watch,
    protection: bool,
    fencing: bool,
    session_timeout: i64,
    curator: Option<Curator>,
    server: NodeId,
}

pub(crate) fn session_timeout(st: Option<i64>, env: &Env) -> Result<i64, (String, String)> {
    if !env.timed {
        return Err(("session_timeout".into(), "sessions need time.mode = \"discrete\"".into()));
    }
    let st = st.unwrap_or(env.ttl);
    if !(1..=1000).contains(&st) {
        return Err(("session_timeout".into(), format!("must be 1..=1000 ticks, got {st}")));
    }
    Ok(st)
}

pub fn build(o: Options, env: &Env) -> Result<ZooKeeper, (String, String)> {
    Ok(ZooKeeper {
        dialect: Dialect::ZooKeeper,
        watch: o.watch,
        protection: o.protection,
        fencing: o.fencing,
        session_timeout: session_timeout(o.session_timeout, env)?,
        curator: None,
        server: env.clients,
    })
}

pub fn build_curator(o: CuratorOptions, env: &Env) -> Result<ZooKeeper, (String, String)> {
    let st = session_timeout(o.session_timeout, env)?;
    // Curator's defaults are a 60 s session and a 15 s connection timeout: a quarter.
    let connection_timeout = o.connection_timeout.unwrap_or((st / 4).max(1));
    if !(1..=st).contains(&connection_timeout) {
        return Err((
            "connection_timeout".into(),
            format!("must be 1..=session_timeout ({st}), got {connection_timeout}"),
        ));
    }
    let base_sleep = o.base_sleep.unwrap_or(1);
    if !(1..=1000).contains(&base_sleep) {
        return Err(("base_sleep".into(), format!("must be 1..=1000 ticks, got {base_sleep}")));
    }
    let max_retries = o.max_retries.unwrap_or(3);
    if max_retries > 29 {
        return Err(("max_retries".into(), format!("must be 0..=29 (Curator's limit), got {max_retries}")));
    }
    Ok(ZooKeeper {
        dialect: Dialect::ZooKeeper,
        watch: Watch::Predecessor,
        protection: true,
        fencing: o.fencing,
        session_timeout: st,
        curator: Some(Curator { connection_timeout, base_sleep, max_retries }),
        server: env.clients,
    })
}

/// etcd's mutex is the same queue: keys bound to a lease instead of ephemeral nodes, a key named
/// by the lease (so a retried put finds its own key: protection is built in), a watch on the key
/// just before one's own.
pub(crate) fn etcd(ttl: i64, fencing: bool, env: &Env) -> ZooKeeper {
    ZooKeeper {
        dialect: Dialect::Etcd,
        watch: Watch::Predecessor,
        protection: true,
        fencing,
        session_timeout: ttl,
        curator: None,
        server: env.clients,
    }
}

/// A child's name as ZooKeeper gives it: the suffix counts the children created before it, from
/// 0, one behind the model's sequence number; protection prefixes the creator's GUID.
pub(crate) fn child_name(seq: u64, tag: Option<NodeId>) -> String {
    match tag {
        Some(c) => format!("_c_{c}-lock-{:010}", seq - 1),
        None => format!("lock-{:010}", seq - 1),
    }
}

/// Children as `ls /lock` shows them.
pub(crate) fn children_shown(kids: &[(u64, Option<NodeId>)]) -> String {
    let names: Vec<String> = kids.iter().map(|(seq, tag)| child_name(*seq, *tag)).collect();
    format!("[{}]", names.join(", "))
}

/// One child of `/lock`: `lock-<seq - 1>`, its sequence number also its fencing token (ZooKeeper's
/// creation zxid orders nodes the same way).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Znode {
    pub seq: u64,
    pub owner: NodeId,
    pub session: u8,
    /// Created with Curator-style protection: the name shows the creator's GUID.
    pub tagged: bool,
}

/// A session the server knows: the client's `epoch`-th, alive or expired.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Session {
    pub client: NodeId,
    pub epoch: u8,
    pub live: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ensemble {
    /// The last sequence number given. ZooKeeper's counts the children created under `/lock`
    /// (`lock-0000000000` is the first; a deletion does not move it), etcd's revision every write,
    /// deletions too.
    pub counter: u64,
    /// Children of `/lock`, by sequence number.
    pub children: Vec<Znode>,
    pub sessions: Vec<Session>,
    /// One-shot watches: `(watcher, Some(seq))` on a node, `(watcher, None)` on the children.
    pub watches: Vec<(NodeId, Option<u64>)>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Msg {
    Create {
        session: u8,
        xid: u8,
        tagged: bool,
    },
    Created {
        xid: u8,
        seq: u64,
    },
    GetChildren {
        session: u8,
        xid: u8,
        watch: bool,
    },
    Children {
        xid: u8,
        kids: Vec<(u64, Option<NodeId>)>,
    },
    Exists {
        session: u8,
        xid: u8,
        seq: u64,
    },
    Stat {
        xid: u8,
        seq: u64,
        exists: bool,
    },
    /// `delete` the node; `close`: and close the session (the recipe's unlock, as the process ends).
    Delete {
        session: u8,
        seq: Option<u64>,
        close: bool,
    },
    Ping {
        session: u8,
    },
    /// Only Curator's connection-state tracking needs to hear the answer to a ping.
    Pong,
    /// The answer to any request on an expired (or closed) session.
    SessionExpired {
        session: u8,
    },
    /// `NodeDeleted` on a node (`Some`) or `NodeChildrenChanged` on `/lock` (`None`).
    WatchedEvent {
        node: Option<u64>,
    },
}

impl Msg {
    /// The session a request is made on; `None` for the server's answers.
    pub fn session(&self) -> Option<u8> {
        match self {
            Msg::Create { session, .. }
            | Msg::GetChildren { session, .. }
            | Msg::Exists { session, .. }
            | Msg::Delete { session, .. }
            | Msg::Ping { session } => Some(*session),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// Server: the client's session expires unless it is heard from first.
    Session(NodeId),
    /// Client: send a heartbeat.
    Ping,
    /// Client: the outstanding request has had no reply (ConnectionLoss); while waiting on a
    /// watch, re-check after a reconnect.
    Timeout,
    /// Client (Curator): nothing heard for the read timeout: SUSPENDED.
    Silence,
    /// Client (Curator): suspended for the whole session timeout: LOST.
    Suspended,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Step {
    #[default]
    Idle,
    Creating,
    /// The create reply was lost; listing to find the node by its GUID (protection).
    Finding,
    Listing,
    Checking,
    Waiting,
    Holding,
}

/// The client's lock library.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Lib {
    /// The session in use (a new one after each expiry).
    pub session: u8,
    /// The outstanding request's id: a reply to an older request is stale and ignored, as
    /// ZooKeeper's client matches replies to requests by xid.
    pub xid: u8,
    pub step: Step,
    pub mine: Option<u64>,
    /// Curator's reentrancy count for the owner.
    pub count: u8,
    /// Curator's retries of the outstanding request.
    pub retries: u8,
    pub suspended: bool,
    /// Curator's guaranteed delete: a node given up while the server was unreachable is deleted
    /// again until a listing shows it gone.
    pub doomed: Option<u64>,
}

impl ZooKeeper {
    /// The session timeout, in ticks (a real counterpart asks the server for it).
    pub(crate) fn timeout(&self) -> i64 {
        self.session_timeout
    }

    /// Curator's client hears the answer to a ping; the bare recipe's library keeps it to itself.
    pub(crate) fn hears_pongs(&self) -> bool {
        self.curator.is_some()
    }

    fn ping_every(&self) -> i64 {
        (self.session_timeout / 3).max(1)
    }

    fn request_timeout(&self) -> i64 {
        // ZooKeeper's client declares ConnectionLoss after its read timeout, 2/3 of the session's.
        self.curator.map(|c| c.connection_timeout).unwrap_or(((self.session_timeout * 2) + 2) / 3)
    }

    fn save(&self, e: &Ensemble, cx: &mut PCx<Self>) {
        cx.persist(e.clone());
    }

    /// A request from `client` on session `epoch`: is the session alive (opening it if new)?
    /// `heartbeat`: the request is a ping. Any request keeps a ZooKeeper session alive; an etcd
    /// lease lives on keep-alives alone (a put bound to it does not renew it).
    fn admit(&self, e: &mut Ensemble, client: NodeId, epoch: u8, heartbeat: bool, cx: &mut PCx<Self>) -> bool {
        let renews = heartbeat || self.dialect == Dialect::ZooKeeper;
        let opened = match e.sessions.iter_mut().find(|s| s.client == client) {
            Some(s) if s.epoch == epoch && s.live => false,
            Some(s) if s.epoch < epoch => {
                // The client gave up its old session (it expired, or Curator declared it LOST). One
                // record per client: the old session's nodes go now rather than at its timeout.
                let old = std::mem::replace(s, Session { client, epoch, live: true });
                // Watches belong to a session: the old one's go with it.
                e.watches.retain(|(w, _)| *w != client);
                self.delete_where(e, |z| z.owner == client && z.session == old.epoch, cx);
                true
            }
            Some(_) => {
                cx.send_lock(client, Msg::SessionExpired { session: epoch });
                return false;
            }
            None => {
                e.sessions.push(Session { client, epoch, live: true });
                e.sessions.sort();
                true
            }
        };
        if opened || renews {
            cx.set_lock_timer(Timer::Session(client), self.session_timeout);
        }
        true
    }

    /// Fires the watches a change to node `seq` triggers: its own and every children watch.
    fn changed(&self, e: &mut Ensemble, seq: u64, deleted: bool, cx: &mut PCx<Self>) {
        let (fire, keep): (Vec<_>, Vec<_>) =
            e.watches.drain(..).partition(|(_, on)| on.is_none() || (deleted && *on == Some(seq)));
        e.watches = keep;
        for (watcher, on) in fire {
            cx.send_lock(watcher, Msg::WatchedEvent { node: on });
        }
    }

    fn delete_where(&self, e: &mut Ensemble, doomed: impl Fn(&Znode) -> bool, cx: &mut PCx<Self>) {
        let gone: Vec<u64> = e.children.iter().filter(|z| doomed(z)).map(|z| z.seq).collect();
        e.children.retain(|z| !doomed(z));
        for seq in gone {
            if self.dialect == Dialect::Etcd {
                e.counter += 1;
            }
            self.changed(e, seq, true, cx);
        }
    }

    fn watch(e: &mut Ensemble, w: (NodeId, Option<u64>)) {
        if let Err(i) = e.watches.binary_search(&w) {
            e.watches.insert(i, w);
        }
    }

    /// Sends the library's one outstanding request, under a fresh xid.
    fn request(&self, lib: &mut Lib, cx: &mut PCx<Self>, make: impl FnOnce(u8, u8) -> Msg) {
        lib.xid = lib.xid.wrapping_add(1);
        cx.send_lock(self.server, make(lib.session, lib.xid));
        cx.set_lock_timer(Timer::Timeout, self.request_timeout());
    }

    fn list(&self, lib: &mut Lib, cx: &mut PCx<Self>) {
        lib.step = Step::Listing;
        let watch = self.watch == Watch::All;
        self.request(lib, cx, |session, xid| Msg::GetChildren { session, xid, watch });
    }

    fn create(&self, lib: &mut Lib, cx: &mut PCx<Self>) {
        lib.step = Step::Creating;
        lib.mine = None;
        let tagged = self.protection;
        self.request(lib, cx, |session, xid| Msg::Create { session, xid, tagged });
    }

    /// The session is gone: a new one will be opened by the next request.
    fn expired(&self, lib: &mut Lib, cx: &mut PCx<Self>) -> LockEvent<u64> {
        let (step, mine) = (lib.step, lib.mine);
        *lib = Lib { session: lib.session.wrapping_add(1), ..Lib::default() };
        for t in [Timer::Ping, Timer::Timeout, Timer::Silence, Timer::Suspended] {
            cx.cancel_lock_timer(t);
        }
        match (step, mine) {
            (Step::Holding, Some(seq)) => LockEvent::Lost { hold: seq },
            (Step::Idle, _) => LockEvent::Ignore,
            _ => LockEvent::Busy { retry_after: 0 },
        }
    }

    /// Curator: something was heard from the server, so the connection is fine.
    fn heard(&self, lib: &mut Lib, cx: &mut PCx<Self>) {
        if self.curator.is_some() && lib.step != Step::Idle {
            lib.suspended = false;
            cx.cancel_lock_timer(Timer::Suspended);
            cx.set_lock_timer(Timer::Silence, self.session_timeout * 2 / 3);
        }
    }

    fn on_children(&self, lib: &mut Lib, kids: Vec<(u64, Option<NodeId>)>, cx: &mut PCx<Self>) -> LockEvent<u64> {
        if lib.step == Step::Finding {
            match kids.iter().find(|(s, tag)| *tag == Some(cx.me) && Some(*s) != lib.doomed) {
                Some((seq, _)) => lib.mine = Some(*seq),
                None => {
                    self.create(lib, cx);
                    return LockEvent::Ignore;
                }
            }
        } else if lib.step != Step::Listing {
            return LockEvent::Ignore;
        }
        cx.cancel_lock_timer(Timer::Timeout);
        if let Some(doomed) = lib.doomed {
            if kids.iter().any(|(s, _)| *s == doomed) {
                cx.send_lock(self.server, Msg::Delete { session: lib.session, seq: Some(doomed), close: false });
            } else {
                lib.doomed = None;
            }
        }
        let Some(mine) = lib.mine else { return LockEvent::Ignore };
        if !kids.iter().any(|(s, _)| *s == mine) {
            // Our node is gone (the session expired under us): start over.
            self.create(lib, cx);
            return LockEvent::Ignore;
        }
        match kids.iter().map(|(s, _)| *s).filter(|s| *s < mine).max() {
            None => {
                lib.step = Step::Holding;
                lib.count = 1;
                LockEvent::Granted { hold: mine, token: Some(mine), valid_for: None }
            }
            Some(_) if self.watch == Watch::All => self.wait(lib, cx),
            Some(pred) => {
                lib.step = Step::Checking;
                self.request(lib, cx, |session, xid| Msg::Exists { session, xid, seq: pred });
                LockEvent::Ignore
            }
        }
    }

    /// Waits for a watch; after a read timeout without news, lists again (a reconnect re-registers
    /// watches, and a lost notification must not strand the waiter).
    fn wait(&self, lib: &mut Lib, cx: &mut PCx<Self>) -> LockEvent<u64> {
        lib.step = Step::Waiting;
        cx.set_lock_timer(Timer::Timeout, self.session_timeout);
        LockEvent::Queued
    }

    fn on_timeout(&self, lib: &mut Lib, cx: &mut PCx<Self>) -> LockEvent<u64> {
        if let Some(c) = self.curator
            && lib.step != Step::Waiting
        {
            if lib.retries >= c.max_retries {
                // The retry policy gives up: the acquire fails with ConnectionLoss.
                let mine = lib.mine;
                lib.step = Step::Idle;
                lib.retries = 0;
                if mine.is_some() {
                    lib.doomed = mine;
                    cx.send_lock(self.server, Msg::Delete { session: lib.session, seq: mine, close: false });
                }
                return LockEvent::Busy { retry_after: c.base_sleep };
            }
            lib.retries += 1;
        }
        match lib.step {
            Step::Creating if self.protection => {
                lib.step = Step::Finding;
                self.request(lib, cx, |session, xid| Msg::GetChildren { session, xid, watch: false });
            }
            Step::Creating => self.create(lib, cx),
            Step::Finding => self.request(lib, cx, |session, xid| Msg::GetChildren { session, xid, watch: false }),
            Step::Listing | Step::Checking | Step::Waiting => self.list(lib, cx),
            Step::Idle | Step::Holding => {}
        }
        LockEvent::Ignore
    }

    /// The lock is whoever owns the lowest child: when that changes, the server has granted it
    /// (the recipe's clients learn it later, from a listing).
    fn granted_since(&self, e: &Ensemble, lowest: Option<u64>, cx: &mut PCx<Self>) {
        if let Some(z) = e.children.first()
            && Some(z.seq) != lowest
        {
            cx.observe(Observation::Granted { client: z.owner, token: Some(z.seq) });
        }
    }

    fn serve(&self, e: &mut Ensemble, from: NodeId, msg: Msg, cx: &mut PCx<Self>) {
        let Some(session) = msg.session() else { return };
        if !self.admit(e, from, session, matches!(msg, Msg::Ping { .. }), cx) {
            return;
        }
        match msg {
            Msg::Create { xid, .. }
                if let Some(z) = e
                    .children
                    .iter()
                    .find(|z| self.dialect == Dialect::Etcd && z.owner == from && z.session == session) =>
            {
                // etcd's mutex puts its key in a transaction that only reads it when it exists.
                cx.send_lock(from, Msg::Created { xid, seq: z.seq });
            }
            Msg::Create { tagged, xid, .. } => {
                e.counter += 1;
                let seq = e.counter;
                e.children.push(Znode { seq, owner: from, session, tagged });
                // ZooKeeper queues the watch events of a change before the reply to it: a client
                // sees the event before the new state.
                self.changed(e, seq, false, cx);
                cx.send_lock(from, Msg::Created { xid, seq });
            }
            Msg::GetChildren { watch, xid, .. } => {
                let kids = e.children.iter().map(|z| (z.seq, z.tagged.then_some(z.owner))).collect();
                cx.send_lock(from, Msg::Children { xid, kids });
                if watch {
                    Self::watch(e, (from, None));
                }
            }
            Msg::Exists { seq, xid, .. } => {
                let exists = e.children.iter().any(|z| z.seq == seq);
                cx.send_lock(from, Msg::Stat { xid, seq, exists });
                if exists {
                    Self::watch(e, (from, Some(seq)));
                }
            }
            Msg::Delete { seq, close: false, .. } => self.delete_where(e, |z| Some(z.seq) == seq, cx),
            Msg::Delete { seq, close: true, .. } => {
                self.delete_where(e, |z| Some(z.seq) == seq, cx);
                // Closed, not forgotten: a late ping of this session must not reopen it.
                e.sessions.iter_mut().filter(|s| s.client == from).for_each(|s| s.live = false);
                e.watches.retain(|(w, _)| *w != from);
                cx.cancel_lock_timer(Timer::Session(from));
                self.delete_where(e, |z| z.owner == from && z.session == session, cx);
            }
            Msg::Ping { .. } if self.hears_pongs() => cx.send_lock(from, Msg::Pong),
            _ => {}
        }
        self.save(e, cx);
    }

    fn expire(&self, e: &mut Ensemble, timer: Timer, cx: &mut PCx<Self>) {
        let Timer::Session(client) = timer else { return };
        let Some(s) = e.sessions.iter_mut().find(|s| s.client == client && s.live) else { return };
        s.live = false;
        let epoch = s.epoch;
        e.watches.retain(|(w, _)| *w != client);
        cx.observe(Observation::Expired { client });
        self.delete_where(e, |z| z.owner == client && z.session == epoch, cx);
        self.save(e, cx);
    }

    fn node(seq: u64) -> String {
        format!("/lock/{}", child_name(seq, None))
    }
}

impl Protocol for ZooKeeper {
    type Server = Ensemble;
    type Client = Lib;
    type Msg = Msg;
    type Timer = Timer;
    type Durable = Ensemble;
    type Hold = u64;

    fn servers(&self) -> Vec<String> {
        vec![match self.dialect {
            Dialect::ZooKeeper => "zookeeper".into(),
            Dialect::Etcd => "etcd".into(),
        }]
    }

    fn resource(&self) -> ResourceHome {
        ResourceHome::Storage(if self.fencing { Fencing::ReadsAndWrites } else { Fencing::None })
    }

    fn issues_tokens(&self) -> bool {
        self.fencing
    }

    /// ZooKeeper (3.5 on, `Time.currentElapsedTime`) expires sessions on the JVM's monotonic clock,
    /// and etcd's lessor on Go's monotonic reading: a step of the server's wall clock expires
    /// nothing. (Found by confirming the comparison's battery on ZooKeeper 3.8: the model expired
    /// sessions at a jump of the server's clock, which a real ZooKeeper does not even read.)
    fn server_timers_on_wall_clock(&self) -> bool {
        false
    }

    /// A ZooKeeper session is one TCP connection: replies and watch events arrive in order.
    fn fifo(&self) -> bool {
        true
    }

    fn server_start(&self, _: usize, _: &mut PCx<Self>) -> Ensemble {
        Default::default()
    }

    /// The ensemble's transaction log keeps everything; live sessions get a full timeout again, as
    /// a new leader gives them.
    fn server_restart(&self, _: usize, durable: Option<&Ensemble>, cx: &mut PCx<Self>) -> Ensemble {
        let e = durable.cloned().unwrap_or_default();
        for s in e.sessions.iter().filter(|s| s.live) {
            cx.set_lock_timer(Timer::Session(s.client), self.session_timeout);
        }
        Ensemble { watches: Vec::new(), ..e }
    }

    fn server_on_msg(&self, e: &mut Ensemble, from: NodeId, msg: Msg, cx: &mut PCx<Self>) {
        let lowest = e.children.first().map(|z| z.seq);
        self.serve(e, from, msg, cx);
        self.granted_since(e, lowest, cx);
    }

    fn server_on_timer(&self, e: &mut Ensemble, timer: Timer, cx: &mut PCx<Self>) {
        let lowest = e.children.first().map(|z| z.seq);
        self.expire(e, timer, cx);
        self.granted_since(e, lowest, cx);
    }

    fn acquire(&self, lib: &mut Lib, cx: &mut PCx<Self>) -> LockEvent<u64> {
        if let (Step::Holding, Some(seq)) = (lib.step, lib.mine) {
            if self.curator.is_none() {
                // The bare recipe would create a second node and wait behind its own first one.
                return LockEvent::Queued;
            }
            lib.count += 1;
            return LockEvent::Granted { hold: seq, token: Some(seq), valid_for: None };
        }
        lib.retries = 0;
        self.create(lib, cx);
        cx.set_lock_timer(Timer::Ping, self.ping_every());
        self.heard(lib, cx);
        LockEvent::Ignore
    }

    fn release(&self, lib: &mut Lib, seq: &u64, cx: &mut PCx<Self>) {
        if lib.count > 1 {
            lib.count -= 1;
            return;
        }
        if lib.step != Step::Idle {
            let seq = (lib.mine == Some(*seq)).then_some(*seq);
            cx.send_lock(self.server, Msg::Delete { session: lib.session, seq, close: true });
        }
        *lib = Lib { session: lib.session, ..Lib::default() };
        for t in [Timer::Ping, Timer::Timeout, Timer::Silence, Timer::Suspended] {
            cx.cancel_lock_timer(t);
        }
    }

    fn client_on_msg(&self, lib: &mut Lib, _from: NodeId, msg: Msg, cx: &mut PCx<Self>) -> LockEvent<u64> {
        if lib.step == Step::Idle {
            return LockEvent::Ignore;
        }
        self.heard(lib, cx);
        match msg {
            Msg::SessionExpired { session } if session == lib.session => self.expired(lib, cx),
            Msg::Created { xid, .. } | Msg::Children { xid, .. } | Msg::Stat { xid, .. } if xid != lib.xid => {
                LockEvent::Ignore
            }
            Msg::Created { seq, .. } if lib.step == Step::Creating => {
                lib.mine = Some(seq);
                lib.retries = 0;
                self.list(lib, cx);
                LockEvent::Ignore
            }
            Msg::Children { kids, .. } => {
                lib.retries = 0;
                self.on_children(lib, kids, cx)
            }
            Msg::Stat { exists: true, .. } if lib.step == Step::Checking => self.wait(lib, cx),
            Msg::Stat { exists: false, .. } if lib.step == Step::Checking => {
                self.list(lib, cx);
                LockEvent::Ignore
            }
            Msg::WatchedEvent { .. } if lib.step == Step::Waiting => {
                self.list(lib, cx);
                LockEvent::Ignore
            }
            _ => LockEvent::Ignore,
        }
    }

    fn client_on_timer(&self, lib: &mut Lib, timer: Timer, cx: &mut PCx<Self>) -> LockEvent<u64> {
        match timer {
            Timer::Ping if lib.step != Step::Idle => {
                cx.send_lock(self.server, Msg::Ping { session: lib.session });
                cx.set_lock_timer(Timer::Ping, self.ping_every());
                LockEvent::Ignore
            }
            Timer::Timeout => self.on_timeout(lib, cx),
            Timer::Silence if lib.step != Step::Idle => {
                lib.suspended = true;
                cx.set_lock_timer(Timer::Suspended, self.session_timeout);
                LockEvent::Ignore
            }
            Timer::Suspended if lib.suspended => self.expired(lib, cx),
            _ => LockEvent::Ignore,
        }
    }

    fn show_msg(&self, from: NodeId, msg: &Msg) -> String {
        if self.dialect == Dialect::Etcd {
            return super::etcd::show_msg(from, msg);
        }
        let sid = |s: &u8| format!("0x{from}{s:02x}");
        match msg {
            Msg::Create { session, tagged: true, .. } => {
                format!("create -e -s /lock/_c_{from}-lock- (session {})", sid(session))
            }
            Msg::Create { session, .. } => format!("create -e -s /lock/lock- (session {})", sid(session)),
            Msg::Created { seq, .. } => format!("Created {}", Self::node(*seq)),
            Msg::GetChildren { watch: true, .. } => "ls -w /lock".into(),
            Msg::GetChildren { .. } => "ls /lock".into(),
            Msg::Children { kids, .. } => children_shown(kids),
            Msg::Exists { seq, .. } => format!("stat -w {}", Self::node(*seq)),
            Msg::Stat { seq, exists: true, .. } => format!("{} exists (watch set)", Self::node(*seq)),
            Msg::Stat { seq, exists: false, .. } => format!("Node does not exist: {}", Self::node(*seq)),
            Msg::Delete { seq: Some(seq), close: false, .. } => format!("delete {}", Self::node(*seq)),
            Msg::Delete { seq: Some(seq), close: true, session } => {
                format!("delete {}; close session {}", Self::node(*seq), sid(session))
            }
            Msg::Delete { seq: None, session, .. } => format!("close session {}", sid(session)),
            Msg::Ping { .. } => "ping".into(),
            Msg::Pong => "pong".into(),
            Msg::SessionExpired { .. } => "KeeperErrorCode = Session expired".into(),
            Msg::WatchedEvent { node: Some(seq) } => format!("WatchedEvent NodeDeleted {}", Self::node(*seq)),
            Msg::WatchedEvent { node: None } => "WatchedEvent NodeChildrenChanged /lock".into(),
        }
    }

    fn show_timer(&self, timer: &Timer) -> String {
        if self.dialect == Dialect::Etcd {
            return super::etcd::show_timer(self.session_timeout, timer);
        }
        match timer {
            Timer::Session(_) => format!("session timeout ({} ticks without a heartbeat)", self.session_timeout),
            Timer::Ping => "ping interval".into(),
            Timer::Timeout => "request timeout (ConnectionLoss) / watch re-check".into(),
            Timer::Silence => "read timeout: connection SUSPENDED".into(),
            Timer::Suspended => "suspended for the session timeout: connection LOST".into(),
        }
    }
}

impl Ids for Ensemble {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        for z in &mut self.children {
            z.owner = f(z.owner);
        }
        for s in &mut self.sessions {
            s.client = f(s.client);
        }
        self.sessions.sort();
        for w in &mut self.watches {
            w.0 = f(w.0);
        }
        self.watches.sort();
    }
}

impl Ids for Msg {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        if let Msg::Children { kids, .. } = self {
            for (_, tag) in kids {
                *tag = tag.map(f);
            }
        }
    }
}

impl Ids for Timer {
    fn map_ids(&mut self, f: &dyn Fn(NodeId) -> NodeId) {
        if let Timer::Session(c) = self {
            *c = f(*c);
        }
    }
}

crate::no_ids!(Lib);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Effect;
    use crate::spec::Workload;

    fn env() -> Env {
        Env::test(2, Workload::Oversell, 3, 1)
    }

    fn sent(cx: &PCx<ZooKeeper>) -> Vec<(NodeId, Msg)> {
        crate::protocol::lock_sends(cx)
    }

    fn timers(cx: &PCx<ZooKeeper>) -> Vec<(Timer, i64)> {
        crate::protocol::lock_timers(cx)
    }

    fn cancelled(cx: &PCx<ZooKeeper>, t: Timer) -> bool {
        cx.effects.contains(&Effect::CancelTimer { timer: crate::protocol::Tmr::Lock(t) })
    }

    fn observed(cx: &PCx<ZooKeeper>) -> Vec<Observation> {
        cx.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Observe(o) => Some(o.clone()),
                _ => None,
            })
            .collect()
    }

    /// The bare recipe with a session timeout of 9 ticks: pings every 3, requests time out after 6.
    fn zk9(o: Options) -> ZooKeeper {
        build(Options { session_timeout: Some(9), ..o }, &env()).unwrap()
    }

    fn curator9(o: CuratorOptions) -> ZooKeeper {
        build_curator(CuratorOptions { session_timeout: Some(9), ..o }, &env()).unwrap()
    }

    /// Client `from` sends `msg` to the ensemble at `now`.
    fn serve(zk: &ZooKeeper, e: &mut Ensemble, from: NodeId, msg: Msg, now: i64) -> PCx<ZooKeeper> {
        let mut cx = PCx::<ZooKeeper>::new(2, now);
        zk.server_on_msg(e, from, msg, &mut cx);
        cx
    }

    fn create(session: u8) -> Msg {
        Msg::Create { session, xid: 1, tagged: false }
    }

    fn seqs(e: &Ensemble) -> Vec<(u64, NodeId)> {
        e.children.iter().map(|z| (z.seq, z.owner)).collect()
    }

    #[test]
    fn the_session_timeout_is_one_to_a_thousand_ticks_and_curators_knobs_are_bounded_as_curator_does() {
        let err = |r: Result<ZooKeeper, (String, String)>| r.err().map(|(field, _)| field);
        let st = |session_timeout| Options { session_timeout, ..Options::default() };
        assert_eq!(err(build(st(Some(0)), &env())).as_deref(), Some("session_timeout"));
        assert_eq!(err(build(st(Some(1001)), &env())).as_deref(), Some("session_timeout"));
        assert_eq!(build(st(Some(1000)), &env()).map(|z| z.timeout()).ok(), Some(1000));
        assert_eq!(build(st(None), &env()).map(|z| z.timeout()).ok(), Some(3), "the spec's TTL");
        let untimed = Env { timed: false, ..env() };
        assert_eq!(err(build(st(None), &untimed)).as_deref(), Some("session_timeout"));
        let c = |o: CuratorOptions| build_curator(CuratorOptions { session_timeout: Some(9), ..o }, &env());
        let field = |o| err(c(o));
        assert_eq!(
            field(CuratorOptions { connection_timeout: Some(0), ..Default::default() }).as_deref(),
            Some("connection_timeout")
        );
        assert_eq!(
            field(CuratorOptions { connection_timeout: Some(10), ..Default::default() }).as_deref(),
            Some("connection_timeout")
        );
        assert_eq!(field(CuratorOptions { base_sleep: Some(0), ..Default::default() }).as_deref(), Some("base_sleep"));
        assert_eq!(
            field(CuratorOptions { base_sleep: Some(1001), ..Default::default() }).as_deref(),
            Some("base_sleep")
        );
        assert_eq!(
            field(CuratorOptions { max_retries: Some(30), ..Default::default() }).as_deref(),
            Some("max_retries")
        );
        let edges = CuratorOptions {
            connection_timeout: Some(9),
            base_sleep: Some(1000),
            max_retries: Some(29),
            ..Default::default()
        };
        let curator = c(edges).ok().and_then(|z| z.curator);
        assert_eq!(curator, Some(Curator { connection_timeout: 9, base_sleep: 1000, max_retries: 29 }));
        let defaults = c(CuratorOptions::default()).ok().and_then(|z| z.curator);
        assert_eq!(
            defaults,
            Some(Curator { connection_timeout: 2, base_sleep: 1, max_retries: 3 }),
            "60 s / 15 s: a quarter"
        );
        let short = build_curator(CuratorOptions { session_timeout: Some(3), ..Default::default() }, &env());
        assert_eq!(short.ok().and_then(|z| z.curator).map(|c| c.connection_timeout), Some(1));
    }

    /// The trace names the server and its nodes as `zkCli.sh` and etcd do; the sequence number is
    /// a fencing token only where the spec fences with it (then `token_monotonic` is judged).
    #[test]
    fn the_server_and_its_nodes_have_their_systems_names_and_tokens_fence_only_when_asked() {
        let unfenced = [
            (zk9(Options::default()), "zookeeper"),
            (curator9(CuratorOptions::default()), "zookeeper"),
            (etcd(9, false, &env()), "etcd"),
        ];
        for (p, name) in unfenced {
            assert_eq!((p.servers(), p.issues_tokens()), (vec![name.to_string()], false));
        }
        assert!(zk9(Options { fencing: true, ..Options::default() }).issues_tokens());
        assert!(curator9(CuratorOptions { fencing: true, ..Default::default() }).issues_tokens());
        assert!(etcd(9, true, &env()).issues_tokens());
        let delete = Msg::Delete { session: 0, seq: Some(3), close: false };
        assert_eq!(zk9(Options::default()).show_msg(0, &delete), "delete /lock/lock-0000000002");
    }

    #[test]
    fn a_client_pings_every_third_of_the_session_and_a_request_times_out_after_two_thirds() {
        let ticks = |z: &ZooKeeper| (z.ping_every(), z.request_timeout());
        assert_eq!(ticks(&zk9(Options::default())), (3, 6));
        assert_eq!(ticks(&build(Options { session_timeout: Some(10), ..Options::default() }, &env()).unwrap()), (3, 7));
        assert_eq!(ticks(&build(Options { session_timeout: Some(2), ..Options::default() }, &env()).unwrap()), (1, 2));
        assert_eq!(ticks(&curator9(CuratorOptions { connection_timeout: Some(4), ..Default::default() })), (3, 4));
        assert!(curator9(CuratorOptions::default()).hears_pongs() && !zk9(Options::default()).hears_pongs());
    }

    #[test]
    fn a_session_opens_with_its_first_request_and_any_request_renews_it_but_on_etcd_only_keep_alives() {
        let zk = zk9(Options::default());
        let mut e = Ensemble::default();
        let cx = serve(&zk, &mut e, 0, create(0), 0);
        assert_eq!(e.sessions, vec![Session { client: 0, epoch: 0, live: true }]);
        assert_eq!(timers(&cx), vec![(Timer::Session(0), 9)]);
        let cx = serve(&zk, &mut e, 0, Msg::GetChildren { session: 0, xid: 2, watch: false }, 4);
        assert_eq!(timers(&cx), vec![(Timer::Session(0), 9)], "any request is a heartbeat");
        let etcd = etcd(9, false, &env());
        let mut e = Ensemble::default();
        let cx = serve(&etcd, &mut e, 1, create(0), 0);
        assert_eq!(timers(&cx), vec![(Timer::Session(1), 9)], "granting the lease");
        let cx = serve(&etcd, &mut e, 1, Msg::GetChildren { session: 0, xid: 2, watch: false }, 4);
        assert!(timers(&cx).is_empty(), "a range read does not renew a lease");
        let cx = serve(&etcd, &mut e, 1, Msg::Ping { session: 0 }, 5);
        assert_eq!(timers(&cx), vec![(Timer::Session(1), 9)]);
        assert!(sent(&cx).is_empty(), "no LeaseKeepAlive answer is modelled for the bare library");
    }

    #[test]
    fn an_expired_session_is_told_so_and_a_newer_one_replaces_it_taking_the_old_ones_nodes_and_watches() {
        let zk = zk9(Options::default());
        let mut e = Ensemble::default();
        serve(&zk, &mut e, 0, create(0), 0);
        serve(&zk, &mut e, 1, create(0), 0);
        serve(&zk, &mut e, 1, Msg::Exists { session: 0, xid: 2, seq: 1 }, 0);
        let mut cx = PCx::<ZooKeeper>::new(2, 9);
        zk.server_on_timer(&mut e, Timer::Session(0), &mut cx);
        assert_eq!(
            observed(&cx),
            vec![Observation::Expired { client: 0 }, Observation::Granted { client: 1, token: Some(2) }]
        );
        assert_eq!(seqs(&e), vec![(2, 1)]);
        let mut again = PCx::<ZooKeeper>::new(2, 10);
        zk.server_on_timer(&mut e, Timer::Session(0), &mut again);
        assert!(again.effects.is_empty(), "a session expires once");
        let before = e.clone();
        let cx = serve(&zk, &mut e, 0, Msg::Ping { session: 0 }, 10);
        assert_eq!(sent(&cx), vec![(0, Msg::SessionExpired { session: 0 })]);
        assert_eq!(e, before, "a request on an expired session changes nothing");
        serve(&zk, &mut e, 0, create(1), 11);
        assert_eq!(e.sessions[0], Session { client: 0, epoch: 1, live: true });
        assert_eq!(seqs(&e), vec![(2, 1), (3, 0)]);
        // Curator declared session 0 of client 1 LOST and opened session 1 while 0 still lived.
        serve(&zk, &mut e, 0, Msg::Exists { session: 1, xid: 2, seq: 2 }, 11);
        serve(&zk, &mut e, 1, Msg::GetChildren { session: 0, xid: 3, watch: true }, 11);
        let cx = serve(&zk, &mut e, 1, create(1), 12);
        assert_eq!(seqs(&e), vec![(3, 0), (4, 1)], "the old session's node goes at once");
        assert_eq!(e.watches, vec![], "and its watches with it");
        let events: Vec<_> = sent(&cx).into_iter().filter(|(_, m)| matches!(m, Msg::WatchedEvent { .. })).collect();
        assert_eq!(events, vec![(0, Msg::WatchedEvent { node: Some(2) })], "another client's watch stays and fires");
        assert_eq!(observed(&cx), vec![Observation::Granted { client: 0, token: Some(3) }]);
        let cx = serve(&zk, &mut e, 1, Msg::Ping { session: 0 }, 12);
        assert_eq!(sent(&cx), vec![(1, Msg::SessionExpired { session: 0 })], "an older session than the client's");
    }

    #[test]
    fn a_node_watch_fires_on_its_deletion_a_children_watch_on_any_change_and_each_only_once() {
        let zk = zk9(Options::default());
        let mut e = Ensemble::default();
        serve(&zk, &mut e, 0, create(0), 0);
        let cx = serve(&zk, &mut e, 1, Msg::Exists { session: 0, xid: 1, seq: 1 }, 0);
        assert_eq!(sent(&cx), vec![(1, Msg::Stat { xid: 1, seq: 1, exists: true })]);
        let cx = serve(&zk, &mut e, 1, Msg::Exists { session: 0, xid: 2, seq: 7 }, 0);
        assert_eq!(sent(&cx), vec![(1, Msg::Stat { xid: 2, seq: 7, exists: false })]);
        assert_eq!(e.watches, vec![(1, Some(1))], "no watch on a node that does not exist");
        let cx = serve(&zk, &mut e, 1, Msg::GetChildren { session: 0, xid: 3, watch: true }, 0);
        assert_eq!(sent(&cx), vec![(1, Msg::Children { xid: 3, kids: vec![(1, None)] })]);
        assert_eq!(e.watches, vec![(1, None), (1, Some(1))]);
        let cx = serve(&zk, &mut e, 0, Msg::Create { session: 0, xid: 2, tagged: true }, 1);
        assert_eq!(sent(&cx), vec![(1, Msg::WatchedEvent { node: None }), (0, Msg::Created { xid: 2, seq: 2 })]);
        assert_eq!(e.watches, vec![(1, Some(1))], "a creation fires only the children watch");
        let cx = serve(&zk, &mut e, 1, Msg::GetChildren { session: 0, xid: 4, watch: false }, 1);
        assert_eq!(
            sent(&cx),
            vec![(1, Msg::Children { xid: 4, kids: vec![(1, None), (2, Some(0))] })],
            "a tagged node shows its creator"
        );
        assert_eq!(e.watches, vec![(1, Some(1))]);
        let cx = serve(&zk, &mut e, 0, Msg::Delete { session: 0, seq: Some(2), close: false }, 2);
        assert!(sent(&cx).is_empty(), "a watch on another node stays");
        let cx = serve(&zk, &mut e, 0, Msg::Delete { session: 0, seq: Some(1), close: false }, 2);
        assert_eq!(sent(&cx), vec![(1, Msg::WatchedEvent { node: Some(1) })]);
        assert!(e.watches.is_empty() && e.children.is_empty());
        assert_eq!(e.counter, 2, "a deletion does not move ZooKeeper's sequence");
    }

    #[test]
    fn closing_a_session_deletes_its_nodes_forgets_its_watches_and_a_late_ping_does_not_reopen_it() {
        let zk = curator9(CuratorOptions::default());
        let mut e = Ensemble::default();
        serve(&zk, &mut e, 0, create(0), 0);
        serve(&zk, &mut e, 0, create(0), 0);
        serve(&zk, &mut e, 0, Msg::GetChildren { session: 0, xid: 2, watch: true }, 0);
        serve(&zk, &mut e, 1, create(0), 0);
        let cx = serve(&zk, &mut e, 0, Msg::Ping { session: 0 }, 1);
        assert_eq!(sent(&cx), vec![(0, Msg::Pong)], "Curator's client hears pongs");
        let cx = serve(&zk, &mut e, 0, Msg::Delete { session: 0, seq: Some(1), close: true }, 1);
        assert_eq!(seqs(&e), vec![(3, 1)], "the node named and every other of the session");
        assert!(e.watches.is_empty());
        assert_eq!(e.sessions[0], Session { client: 0, epoch: 0, live: false });
        assert!(cancelled(&cx, Timer::Session(0)));
        assert_eq!(observed(&cx), vec![Observation::Granted { client: 1, token: Some(3) }]);
        let cx = serve(&zk, &mut e, 0, Msg::Ping { session: 0 }, 2);
        assert_eq!(sent(&cx), vec![(0, Msg::SessionExpired { session: 0 })]);
        let cx = serve(&zk, &mut e, 1, Msg::Delete { session: 0, seq: None, close: true }, 2);
        assert!(e.children.is_empty(), "closing with no node named still deletes the session's");
        assert_eq!(observed(&cx), vec![]);
        let bare = zk9(Options::default());
        let cx = serve(&bare, &mut Ensemble::default(), 0, Msg::Ping { session: 0 }, 0);
        assert!(sent(&cx).is_empty());
    }

    #[test]
    fn an_etcd_put_finds_its_own_key_again_and_every_deletion_is_a_revision() {
        let etcd = etcd(9, true, &env());
        let mut e = Ensemble::default();
        let cx = serve(&etcd, &mut e, 0, Msg::Create { session: 0, xid: 1, tagged: true }, 0);
        assert_eq!(sent(&cx), vec![(0, Msg::Created { xid: 1, seq: 1 })]);
        let cx = serve(&etcd, &mut e, 0, Msg::Create { session: 0, xid: 2, tagged: true }, 1);
        assert_eq!(sent(&cx), vec![(0, Msg::Created { xid: 2, seq: 1 })], "the key is named by the lease");
        serve(&etcd, &mut e, 1, Msg::Create { session: 0, xid: 1, tagged: true }, 1);
        assert_eq!(seqs(&e), vec![(1, 0), (2, 1)]);
        serve(&etcd, &mut e, 0, Msg::Delete { session: 0, seq: Some(1), close: false }, 2);
        assert_eq!(e.counter, 3);
        serve(&etcd, &mut e, 0, Msg::Create { session: 1, xid: 3, tagged: true }, 3);
        assert_eq!(seqs(&e), vec![(2, 1), (4, 0)]);
        let zk = zk9(Options::default());
        let mut e = Ensemble::default();
        serve(&zk, &mut e, 0, create(0), 0);
        serve(&zk, &mut e, 0, create(0), 0);
        assert_eq!(seqs(&e), vec![(1, 0), (2, 0)], "ZooKeeper creates a second node");
    }

    #[test]
    fn a_restarted_ensemble_keeps_its_log_gives_live_sessions_a_full_timeout_and_forgets_watches() {
        let zk = zk9(Options::default());
        let mut e = Ensemble::default();
        serve(&zk, &mut e, 0, create(0), 0);
        serve(&zk, &mut e, 1, create(0), 0);
        let cx = serve(&zk, &mut e, 0, Msg::Exists { session: 0, xid: 2, seq: 1 }, 0);
        assert_eq!(cx.effects.last(), Some(&Effect::Persist(e.clone())), "every request is logged");
        let mut cx = PCx::<ZooKeeper>::new(2, 3);
        zk.server_on_timer(&mut e, Timer::Session(1), &mut cx);
        assert_eq!(cx.effects.last(), Some(&Effect::Persist(e.clone())), "and every expiry");
        assert_eq!(e.watches, vec![(0, Some(1))], "a live session's watch at the crash");
        let mut cx = PCx::<ZooKeeper>::new(2, 5);
        let back = zk.server_restart(0, Some(&e), &mut cx);
        assert_eq!(timers(&cx), vec![(Timer::Session(0), 9)], "the expired session gets none");
        assert_eq!(
            (back.children.clone(), back.sessions.clone(), back.counter),
            (e.children.clone(), e.sessions.clone(), 2)
        );
        assert!(back.watches.is_empty());
        assert_eq!(zk.server_restart(0, None, &mut PCx::<ZooKeeper>::new(2, 5)), Ensemble::default());
    }

    fn listing(mine: u64) -> Lib {
        Lib { step: Step::Listing, mine: Some(mine), xid: 5, ..Lib::default() }
    }

    fn kids(seqs: &[u64]) -> Msg {
        Msg::Children { xid: 5, kids: seqs.iter().map(|&s| (s, None)).collect() }
    }

    #[test]
    fn acquiring_creates_a_node_arms_the_request_timeout_and_starts_pinging() {
        let zk = zk9(Options { protection: true, ..Options::default() });
        let mut lib = Lib { session: 2, xid: 7, ..Lib::default() };
        let mut cx = PCx::<ZooKeeper>::new(0, 0);
        assert_eq!(zk.acquire(&mut lib, &mut cx), LockEvent::Ignore);
        assert_eq!(sent(&cx), vec![(2, Msg::Create { session: 2, xid: 8, tagged: true })]);
        assert_eq!(timers(&cx), vec![(Timer::Timeout, 6), (Timer::Ping, 3)]);
        assert_eq!((lib.step, lib.mine), (Step::Creating, None));
        let curator = curator9(CuratorOptions::default());
        let mut lib = Lib { retries: 2, ..Lib::default() };
        let mut cx = PCx::<ZooKeeper>::new(0, 0);
        curator.acquire(&mut lib, &mut cx);
        assert_eq!(timers(&cx), vec![(Timer::Timeout, 2), (Timer::Ping, 3), (Timer::Silence, 6)]);
        assert_eq!(lib.retries, 0, "a new acquire starts its retries afresh");
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        zk.client_on_timer(&mut lib, Timer::Ping, &mut cx);
        assert_eq!((sent(&cx), timers(&cx)), (vec![(2, Msg::Ping { session: 0 })], vec![(Timer::Ping, 3)]));
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        zk.client_on_timer(&mut Lib::default(), Timer::Ping, &mut cx);
        assert!(cx.effects.is_empty(), "an idle library does not ping");
    }

    #[test]
    fn the_lowest_child_holds_the_lock_and_any_other_checks_the_next_lower_one_or_with_watch_all_waits() {
        let zk = zk9(Options::default());
        let mut lib = listing(3);
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        assert_eq!(zk.client_on_msg(&mut lib, 2, kids(&[1, 2, 3, 5]), &mut cx), LockEvent::Ignore);
        assert_eq!(sent(&cx), vec![(2, Msg::Exists { session: 0, xid: 6, seq: 2 })]);
        assert_eq!(lib.step, Step::Checking);
        assert!(cancelled(&cx, Timer::Timeout));
        let mut lib = listing(3);
        let ev = zk.client_on_msg(&mut lib, 2, kids(&[3, 5]), &mut PCx::<ZooKeeper>::new(0, 1));
        assert_eq!(ev, LockEvent::Granted { hold: 3, token: Some(3), valid_for: None });
        assert_eq!((lib.step, lib.count), (Step::Holding, 1));
        let all = zk9(Options { watch: Watch::All, ..Options::default() });
        let mut lib = listing(3);
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        assert_eq!(all.client_on_msg(&mut lib, 2, kids(&[1, 3]), &mut cx), LockEvent::Queued);
        assert_eq!((lib.step, timers(&cx)), (Step::Waiting, vec![(Timer::Timeout, 9)]));
        assert!(sent(&cx).is_empty(), "the listing's watch is set: nothing more to ask");
        let mut lib = listing(3);
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        zk.client_on_msg(&mut lib, 2, kids(&[1, 4]), &mut cx);
        assert_eq!(
            sent(&cx),
            vec![(2, Msg::Create { session: 0, xid: 6, tagged: false })],
            "its node is gone: start over"
        );
        let mut lib = listing(3);
        let stale = Msg::Children { xid: 4, kids: vec![(3, None)] };
        assert_eq!(zk.client_on_msg(&mut lib, 2, stale, &mut PCx::<ZooKeeper>::new(0, 1)), LockEvent::Ignore);
        assert_eq!(lib, listing(3), "a reply to an older request is ignored");
        let mut lib = Lib { step: Step::Checking, ..listing(3) };
        assert_eq!(zk.client_on_msg(&mut lib, 2, kids(&[3]), &mut PCx::<ZooKeeper>::new(0, 1)), LockEvent::Ignore);
        assert_eq!(lib.step, Step::Checking, "a listing is taken only while listing or finding");
    }

    #[test]
    fn a_waiter_moves_on_when_its_predecessor_is_gone_or_deleted_and_lists_again() {
        let zk = zk9(Options { watch: Watch::All, ..Options::default() });
        let mut lib = Lib { step: Step::Creating, xid: 5, ..Lib::default() };
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        zk.client_on_msg(&mut lib, 2, Msg::Created { xid: 5, seq: 4 }, &mut cx);
        assert_eq!(sent(&cx), vec![(2, Msg::GetChildren { session: 0, xid: 6, watch: true })]);
        assert_eq!((lib.step, lib.mine), (Step::Listing, Some(4)));
        let zk = zk9(Options::default());
        let checking = Lib { step: Step::Checking, mine: Some(4), xid: 5, ..Lib::default() };
        let mut lib = checking.clone();
        let ev =
            zk.client_on_msg(&mut lib, 2, Msg::Stat { xid: 5, seq: 3, exists: true }, &mut PCx::<ZooKeeper>::new(0, 1));
        assert_eq!((ev, lib.step), (LockEvent::Queued, Step::Waiting));
        let mut lib = checking.clone();
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        zk.client_on_msg(&mut lib, 2, Msg::Stat { xid: 5, seq: 3, exists: false }, &mut cx);
        assert_eq!(sent(&cx), vec![(2, Msg::GetChildren { session: 0, xid: 6, watch: false })]);
        let mut lib = Lib { step: Step::Waiting, ..checking.clone() };
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        zk.client_on_msg(&mut lib, 2, Msg::WatchedEvent { node: Some(3) }, &mut cx);
        assert_eq!((lib.step, sent(&cx).len()), (Step::Listing, 1));
        let mut lib = checking.clone();
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        zk.client_on_msg(&mut lib, 2, Msg::WatchedEvent { node: Some(3) }, &mut cx);
        zk.client_on_msg(&mut lib, 2, Msg::Created { xid: 5, seq: 9 }, &mut cx);
        assert_eq!((lib, sent(&cx)), (checking, vec![]), "events for another step are ignored");
        let mut idle = Lib::default();
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        zk.client_on_msg(&mut idle, 2, Msg::SessionExpired { session: 0 }, &mut cx);
        assert_eq!((idle, cx.effects.len()), (Lib::default(), 0), "an idle library hears nothing");
    }

    #[test]
    fn a_session_expiry_loses_a_hold_fails_an_acquire_and_opens_the_next_session() {
        let zk = zk9(Options::default());
        let holding = Lib { step: Step::Holding, mine: Some(4), count: 1, session: 3, xid: 9, ..Lib::default() };
        let mut lib = holding.clone();
        let mut cx = PCx::<ZooKeeper>::new(0, 5);
        assert_eq!(
            zk.client_on_msg(&mut lib, 2, Msg::SessionExpired { session: 3 }, &mut cx),
            LockEvent::Lost { hold: 4 }
        );
        assert_eq!(lib, Lib { session: 4, ..Lib::default() });
        for t in [Timer::Ping, Timer::Timeout, Timer::Silence, Timer::Suspended] {
            assert!(cancelled(&cx, t.clone()), "{t:?}");
        }
        let mut lib = holding.clone();
        let ev = zk.client_on_msg(&mut lib, 2, Msg::SessionExpired { session: 2 }, &mut PCx::<ZooKeeper>::new(0, 5));
        assert_eq!((ev, lib), (LockEvent::Ignore, holding.clone()), "an older session's expiry is old news");
        let mut lib = Lib { step: Step::Creating, ..holding };
        let ev = zk.client_on_msg(&mut lib, 2, Msg::SessionExpired { session: 3 }, &mut PCx::<ZooKeeper>::new(0, 5));
        assert_eq!((ev, lib.session), (LockEvent::Busy { retry_after: 0 }, 4));
    }

    #[test]
    fn a_request_timeout_asks_again_for_what_the_step_needs() {
        let zk = zk9(Options::default());
        let protected = zk9(Options { protection: true, ..Options::default() });
        let asked = |z: &ZooKeeper, step: Step| {
            let mut lib = Lib { step, mine: Some(4), xid: 5, ..Lib::default() };
            let mut cx = PCx::<ZooKeeper>::new(0, 6);
            assert_eq!(z.client_on_timer(&mut lib, Timer::Timeout, &mut cx), LockEvent::Ignore);
            (lib.step, sent(&cx))
        };
        let ls = |watch| vec![(2, Msg::GetChildren { session: 0, xid: 6, watch })];
        assert_eq!(
            asked(&zk, Step::Creating),
            (Step::Creating, vec![(2, Msg::Create { session: 0, xid: 6, tagged: false })])
        );
        assert_eq!(asked(&protected, Step::Creating), (Step::Finding, ls(false)), "protection: find the node first");
        assert_eq!(asked(&protected, Step::Finding), (Step::Finding, ls(false)));
        for step in [Step::Listing, Step::Checking, Step::Waiting] {
            assert_eq!(asked(&zk, step), (Step::Listing, ls(false)), "{step:?}");
        }
        assert_eq!(asked(&zk, Step::Holding), (Step::Holding, vec![]));
        assert_eq!(asked(&zk, Step::Idle), (Step::Idle, vec![]));
    }

    #[test]
    fn curator_retries_a_request_max_retries_times_then_fails_the_acquire_and_deletes_its_node_for_sure() {
        let zk = curator9(CuratorOptions { max_retries: Some(2), base_sleep: Some(5), ..Default::default() });
        let mut lib = Lib { step: Step::Listing, mine: Some(4), xid: 5, session: 1, suspended: true, ..Lib::default() };
        let mut cx = PCx::<ZooKeeper>::new(0, 6);
        for retries in 1..=2 {
            assert_eq!(zk.client_on_timer(&mut lib, Timer::Timeout, &mut cx), LockEvent::Ignore);
            assert_eq!(lib.retries, retries);
        }
        let mut cx = PCx::<ZooKeeper>::new(0, 8);
        assert_eq!(zk.client_on_timer(&mut lib, Timer::Timeout, &mut cx), LockEvent::Busy { retry_after: 5 });
        assert_eq!((lib.step, lib.retries, lib.doomed), (Step::Idle, 0, Some(4)));
        assert_eq!(sent(&cx), vec![(2, Msg::Delete { session: 1, seq: Some(4), close: false })]);
        // Suspended all along, the session is LOST while the failed acquire sleeps before its retry:
        // no hold or request to fail, and the next request opens a new session.
        let ev = zk.client_on_timer(&mut lib, Timer::Suspended, &mut PCx::<ZooKeeper>::new(0, 9));
        assert_eq!((ev, lib), (LockEvent::Ignore, Lib { session: 2, ..Lib::default() }));
        let mut waiting = Lib { step: Step::Waiting, retries: 2, mine: Some(4), ..Lib::default() };
        assert_eq!(
            zk.client_on_timer(&mut waiting, Timer::Timeout, &mut PCx::<ZooKeeper>::new(0, 8)),
            LockEvent::Ignore
        );
        assert_eq!((waiting.step, waiting.retries), (Step::Listing, 2), "waiting on a watch is no failed request");
        let mut creating = Lib { step: Step::Creating, retries: 2, ..Lib::default() };
        let mut cx = PCx::<ZooKeeper>::new(0, 8);
        assert_eq!(zk.client_on_timer(&mut creating, Timer::Timeout, &mut cx), LockEvent::Busy { retry_after: 5 });
        assert!(sent(&cx).is_empty() && creating.doomed.is_none(), "no node known: nothing to delete");
        let mut lib = Lib { step: Step::Listing, mine: Some(6), xid: 5, retries: 1, ..Lib::default() };
        zk.client_on_msg(&mut lib, 2, kids(&[6]), &mut PCx::<ZooKeeper>::new(0, 9));
        assert_eq!(lib.retries, 0, "an answer resets the retries");
    }

    #[test]
    fn a_doomed_node_is_deleted_again_until_a_listing_shows_it_gone_and_finding_skips_it() {
        let zk = curator9(CuratorOptions::default());
        let mut lib = Lib { doomed: Some(2), ..listing(4) };
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        zk.client_on_msg(&mut lib, 2, kids(&[2, 4]), &mut cx);
        assert_eq!(sent(&cx)[0], (2, Msg::Delete { session: 0, seq: Some(2), close: false }));
        assert_eq!(lib.doomed, Some(2));
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        let mut lib = Lib { doomed: Some(2), ..listing(4) };
        let ev = zk.client_on_msg(&mut lib, 2, kids(&[4]), &mut cx);
        assert_eq!((ev, lib.doomed), (LockEvent::Granted { hold: 4, token: Some(4), valid_for: None }, None));
        let finding = Lib { step: Step::Finding, doomed: Some(2), xid: 5, ..Lib::default() };
        let mine = Msg::Children { xid: 5, kids: vec![(2, Some(0)), (3, Some(1)), (5, Some(0))] };
        let mut lib = finding.clone();
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        zk.client_on_msg(&mut lib, 2, mine, &mut cx);
        assert_eq!(lib.mine, Some(5), "its own GUID, not the node it gave up");
        assert_eq!(sent(&cx)[1], (2, Msg::Exists { session: 0, xid: 6, seq: 3 }));
        let mut lib = finding;
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        zk.client_on_msg(&mut lib, 2, Msg::Children { xid: 5, kids: vec![(2, Some(0)), (3, Some(1))] }, &mut cx);
        assert_eq!(sent(&cx), vec![(2, Msg::Create { session: 0, xid: 6, tagged: true })], "not found: create it");
    }

    #[test]
    fn curator_suspends_after_two_thirds_of_the_session_in_silence_and_loses_the_hold_after_the_whole() {
        let zk = curator9(CuratorOptions::default());
        let holding = Lib { step: Step::Holding, mine: Some(4), count: 1, ..Lib::default() };
        let mut lib = holding.clone();
        let mut cx = PCx::<ZooKeeper>::new(0, 6);
        assert_eq!(zk.client_on_timer(&mut lib, Timer::Silence, &mut cx), LockEvent::Ignore);
        assert!(lib.suspended);
        assert_eq!(timers(&cx), vec![(Timer::Suspended, 9)]);
        let mut heard = lib.clone();
        let mut cx = PCx::<ZooKeeper>::new(0, 7);
        zk.client_on_msg(&mut heard, 2, Msg::Pong, &mut cx);
        assert!(!heard.suspended && cancelled(&cx, Timer::Suspended));
        assert_eq!(timers(&cx), vec![(Timer::Silence, 6)]);
        assert_eq!(zk.client_on_timer(&mut heard, Timer::Suspended, &mut cx), LockEvent::Ignore, "reconnected in time");
        assert_eq!(zk.client_on_timer(&mut lib, Timer::Suspended, &mut cx), LockEvent::Lost { hold: 4 });
        let mut idle = Lib::default();
        let mut cx = PCx::<ZooKeeper>::new(0, 6);
        zk.client_on_timer(&mut idle, Timer::Silence, &mut cx);
        zk.client_on_msg(&mut idle, 2, Msg::Pong, &mut cx);
        assert!(!idle.suspended && cx.effects.is_empty(), "an idle library tracks no connection");
        let bare = zk9(Options::default());
        let mut lib = holding;
        let mut cx = PCx::<ZooKeeper>::new(0, 7);
        bare.client_on_msg(&mut lib, 2, Msg::Pong, &mut cx);
        assert!(cx.effects.is_empty(), "the bare recipe tracks no connection state");
    }

    #[test]
    fn a_release_deletes_the_node_and_closes_the_session_once_the_last_nested_hold_ends() {
        let zk = curator9(CuratorOptions::default());
        let mut lib = Lib { step: Step::Holding, mine: Some(4), count: 2, session: 3, xid: 7, ..Lib::default() };
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        zk.release(&mut lib, &4, &mut cx);
        assert_eq!((lib.count, cx.effects.len()), (1, 0));
        zk.release(&mut lib, &4, &mut cx);
        assert_eq!(sent(&cx), vec![(2, Msg::Delete { session: 3, seq: Some(4), close: true })]);
        assert_eq!(lib, Lib { session: 3, ..Lib::default() });
        for t in [Timer::Ping, Timer::Timeout, Timer::Silence, Timer::Suspended] {
            assert!(cancelled(&cx, t.clone()), "{t:?}");
        }
        let mut lib = Lib { step: Step::Holding, mine: Some(5), count: 1, ..Lib::default() };
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        zk.release(&mut lib, &4, &mut cx);
        assert_eq!(
            sent(&cx),
            vec![(2, Msg::Delete { session: 0, seq: None, close: true })],
            "not its node: only close"
        );
        let mut cx = PCx::<ZooKeeper>::new(0, 1);
        zk.release(&mut Lib::default(), &4, &mut cx);
        assert!(sent(&cx).is_empty(), "an idle library has no session to close");
    }

    #[test]
    fn renaming_moves_owners_sessions_watches_tags_and_session_timers() {
        let f = |id: NodeId| 1 - id;
        let mut e = Ensemble {
            counter: 2,
            children: vec![Znode { seq: 1, owner: 0, session: 0, tagged: true }],
            sessions: vec![Session { client: 0, epoch: 1, live: true }, Session { client: 1, epoch: 0, live: true }],
            watches: vec![(0, None), (1, Some(1))],
        };
        e.map_ids(&f);
        assert_eq!(e.children[0].owner, 1);
        assert_eq!(
            e.sessions,
            vec![Session { client: 0, epoch: 0, live: true }, Session { client: 1, epoch: 1, live: true }]
        );
        assert_eq!(e.watches, vec![(0, Some(1)), (1, None)]);
        let mut m = Msg::Children { xid: 1, kids: vec![(1, Some(0)), (2, None)] };
        m.map_ids(&f);
        assert_eq!(m, Msg::Children { xid: 1, kids: vec![(1, Some(1)), (2, None)] });
        let mut t = Timer::Session(0);
        t.map_ids(&f);
        assert_eq!(t, Timer::Session(1));
    }

    #[test]
    fn an_expired_session_loses_its_node_and_wakes_the_predecessor_watcher() {
        let zk = build(Options::default(), &env()).unwrap();
        let mut e = Ensemble::default();
        let mut cx = PCx::<ZooKeeper>::new(2, 0);
        zk.server_on_msg(&mut e, 0, Msg::Create { session: 0, xid: 1, tagged: false }, &mut cx);
        zk.server_on_msg(&mut e, 1, Msg::Create { session: 0, xid: 1, tagged: false }, &mut cx);
        zk.server_on_msg(&mut e, 1, Msg::Exists { session: 0, xid: 2, seq: 1 }, &mut cx);
        let mut cx = PCx::<ZooKeeper>::new(2, 3);
        zk.server_on_timer(&mut e, Timer::Session(0), &mut cx);
        assert_eq!(e.children.iter().map(|z| z.seq).collect::<Vec<_>>(), vec![2]);
        assert!(sent(&cx).contains(&(1, Msg::WatchedEvent { node: Some(1) })));
        assert!(cx.effects.contains(&Effect::Observe(Observation::Expired { client: 0 })));
        let mut cx = PCx::<ZooKeeper>::new(2, 3);
        zk.server_on_msg(&mut e, 0, Msg::Ping { session: 0 }, &mut cx);
        assert_eq!(sent(&cx), vec![(0, Msg::SessionExpired { session: 0 })], "the old session is told it expired");
    }

    #[test]
    fn a_lost_create_reply_is_found_again_only_with_protection() {
        for protection in [false, true] {
            let zk = build(Options { protection, ..Default::default() }, &env()).unwrap();
            let mut lib = Lib::default();
            let mut cx = PCx::<ZooKeeper>::new(0, 0);
            zk.acquire(&mut lib, &mut cx);
            let mut cx = PCx::<ZooKeeper>::new(0, 1);
            zk.client_on_timer(&mut lib, Timer::Timeout, &mut cx);
            let again = sent(&cx);
            if protection {
                assert_eq!(again, vec![(2, Msg::GetChildren { session: 0, xid: 2, watch: false })]);
                let kids = vec![(1, Some(0))];
                let stale = zk.client_on_msg(&mut lib, 2, Msg::Children { xid: 1, kids: kids.clone() }, &mut cx);
                assert_eq!(stale, LockEvent::Ignore, "a reply to an older request is ignored");
                let ev = zk.client_on_msg(&mut lib, 2, Msg::Children { xid: 2, kids }, &mut cx);
                assert_eq!(ev, LockEvent::Granted { hold: 1, token: Some(1), valid_for: None });
            } else {
                assert_eq!(
                    again,
                    vec![(2, Msg::Create { session: 0, xid: 2, tagged: false })],
                    "a second node: the orphan stays"
                );
            }
        }
    }

    #[test]
    fn curator_counts_nested_acquires_and_the_bare_recipe_queues_behind_itself() {
        let env = env();
        let mut lib = Lib { step: Step::Holding, mine: Some(4), count: 1, ..Lib::default() };
        let bare = build(Options::default(), &env).unwrap();
        assert_eq!(bare.acquire(&mut lib.clone(), &mut PCx::<ZooKeeper>::new(0, 0)), LockEvent::Queued);
        let curator = build_curator(CuratorOptions::default(), &env).unwrap();
        let ev = curator.acquire(&mut lib, &mut PCx::<ZooKeeper>::new(0, 0));
        assert_eq!(ev, LockEvent::Granted { hold: 4, token: Some(4), valid_for: None });
        let mut cx = PCx::<ZooKeeper>::new(0, 0);
        curator.release(&mut lib, &4, &mut cx);
        assert!(sent(&cx).is_empty(), "the first release only counts down");
        curator.release(&mut lib, &4, &mut cx);
        assert!(sent(&cx).contains(&(2, Msg::Delete { session: 0, seq: Some(4), close: true })));
    }
}

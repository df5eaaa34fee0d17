//! Spec files (`models/*.toml`): parsing and validation.
//!
//! Every error names the file and the field (`models/x.toml: time.horizon_ticks: ...`) on one line.
//! Limits, chosen so that every accepted spec finishes on a laptop: at most [`MAX_CLIENTS`] clients,
//! at most [`MAX_BUDGET`] of each fault, a horizon of at most [`MAX_HORIZON`] ticks.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::property::PropertyName;

pub const MAX_CLIENTS: usize = 6;
/// The simulator runs more clients than the model checker can explore (the herd effect needs 8).
pub const MAX_SIM_CLIENTS: usize = 8;
pub const MAX_BUDGET: u8 = 3;
pub const MAX_HORIZON: u16 = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("{file}: {field}: {message}")]
    Field { file: String, field: String, message: String },
}

impl SpecError {
    pub fn field(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError::Field { file: file.display().to_string(), field: field.into(), message: message.into() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Acquire, write your name to the storage, release.
    CriticalWrite,
    /// The seed's Case 1: acquire, read the stock, write stock - 1, release.
    Oversell,
    /// The seed's Case 2: no lock, one conditional decrement in the database.
    AtomicDecrement,
    /// Acquire, acquire again (nested), release once, write, release.
    Reentrant,
}

impl Workload {
    pub fn uses_lock(self) -> bool {
        self != Workload::AtomicDecrement
    }
}

/// What the application does when its lock library says the hold is lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLost {
    /// The careful user: stop touching the resource (Curator's advice for LOST).
    #[default]
    Stop,
    /// The careless user: finish the critical section anyway.
    Continue,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    pub clients: usize,
    pub workload: Workload,
    #[serde(default = "one")]
    pub stock: i64,
    /// Ticks a holder spends in its critical section before touching the resource (discrete time).
    #[serde(default)]
    pub work_ticks: i64,
    #[serde(default)]
    pub on_lost: OnLost,
    /// The critical section performs an external side effect (charge a card, ship the item) for
    /// the item it read, before writing the new stock (oversell workload).
    #[serde(default)]
    pub side_effect: bool,
}

fn one() -> i64 {
    1
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeMode {
    #[default]
    Untimed,
    Discrete,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimeCfg {
    #[serde(default)]
    pub mode: TimeMode,
    pub ttl_ticks: Option<i64>,
    pub horizon_ticks: Option<u16>,
    /// Bound on how far a node's clock may wander from true time, in ticks.
    #[serde(default)]
    pub drift: i64,
    /// Faults happen only before this tick; afterwards the world heals (default: the horizon).
    pub fault_window: Option<u16>,
    /// How far one clock jump moves a clock forward (default: the TTL).
    pub jump_ticks: Option<i64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Targets {
    Clients,
    Servers,
    /// The node holding the protected resource (where it is a node of its own).
    Storage,
    #[default]
    Any,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultBudget {
    #[serde(default)]
    pub pauses: u8,
    /// The application thread of a client is stuck while its lock library's threads run on.
    #[serde(default)]
    pub hangs: u8,
    #[serde(default)]
    pub crashes: u8,
    #[serde(default)]
    pub restarts_lose_state: u8,
    /// A partition cuts one node off from the others; it drops what crosses the cut.
    #[serde(default)]
    pub partitions: u8,
    /// One-way partitions: the cut-off node still hears the others but is not heard.
    #[serde(default)]
    pub one_way: bool,
    #[serde(default)]
    pub clock_jumps: u8,
    #[serde(default)]
    pub message_loss: u8,
    /// Messages held back past the tick they were sent in (discrete time; untimed delays anything).
    #[serde(default)]
    pub delays: u8,
    #[serde(default = "clients")]
    pub pause_targets: Targets,
    #[serde(default)]
    pub crash_targets: Targets,
    #[serde(default = "servers")]
    pub jump_targets: Targets,
}

impl Targets {
    /// Whether a fault aimed at these targets may hit a node of this kind. The storage fails only
    /// when named (`"storage"`): `"any"` means the lock's own processes.
    pub fn matches(self, kind: crate::protocol::NodeKind) -> bool {
        use crate::protocol::NodeKind;
        match (self, kind) {
            (Targets::Storage, k) => k == NodeKind::Storage,
            (_, NodeKind::Storage) => false,
            (Targets::Any, _) => true,
            (Targets::Clients, k) => k == NodeKind::Client,
            (Targets::Servers, k) => k == NodeKind::Server,
        }
    }
}

pub(crate) fn clients() -> Targets {
    Targets::Clients
}
pub(crate) fn servers() -> Targets {
    Targets::Servers
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Holds,
    Violated,
    /// Holds, but only because its `sometimes` partner never happened: nothing exercised it. As a
    /// claim it says the spec is built so that nothing can (a spec showing the flag works).
    Vacuous,
    /// A budget (states, memory, time) stopped the search before it could tell. Never a claim.
    #[serde(skip_deserializing)]
    Unknown,
}

impl Verdict {
    /// Nothing broke the property (whether or not anything exercised it).
    pub fn passes(self) -> bool {
        matches!(self, Verdict::Holds | Verdict::Vacuous)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Holds => "holds",
            Verdict::Violated => "violated",
            Verdict::Vacuous => "vacuous",
            Verdict::Unknown => "unknown",
        })
    }
}

/// `[expect]`: a claim per property, by the property's name. Read through a map of strings so
/// that an error names the claim (`expect.deadlock_free`), not an anonymous map key.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(try_from = "BTreeMap<String, Verdict>", into = "BTreeMap<String, Verdict>")]
pub struct Expect(pub BTreeMap<PropertyName, Verdict>);

impl TryFrom<BTreeMap<String, Verdict>> for Expect {
    type Error = String;
    fn try_from(m: BTreeMap<String, Verdict>) -> Result<Self, String> {
        m.into_iter()
            .map(|(k, v)| match PropertyName::parse(&k) {
                Some(p) => Ok((p, v)),
                None => {
                    let known: Vec<&str> = PropertyName::ALL.iter().map(|p| p.name()).collect();
                    Err(format!("unknown property `{k}` (known: {})", known.join(", ")))
                }
            })
            .collect::<Result<_, _>>()
            .map(Expect)
    }
}

impl From<Expect> for BTreeMap<String, Verdict> {
    fn from(e: Expect) -> Self {
        e.0.into_iter().map(|(p, v)| (p.name().to_string(), v)).collect()
    }
}

impl Expect {
    pub fn get(&self, p: PropertyName) -> Option<Verdict> {
        self.0.get(&p).copied()
    }
}

/// A model-check spec as written in `models/`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub description: String,
    pub protocol: String,
    #[serde(default)]
    pub options: toml::Table,
    pub setup: Setup,
    #[serde(default)]
    pub time: TimeCfg,
    #[serde(default)]
    pub faults: FaultBudget,
    #[serde(default)]
    pub expect: Expect,
    /// Fault settings this spec's violations depend on (`faults.partitions`, `time.drift`): with any
    /// one of them set to 0 (or false), some claimed violation must hold, non-vacuously.
    #[serde(default)]
    pub witness: Vec<String>,
}

/// What a protocol learns of the spec when it is built.
#[derive(Clone, Debug)]
pub struct Env {
    pub clients: usize,
    pub workload: Workload,
    pub timed: bool,
    /// Lease length in ticks (1 in untimed mode, where only the order of events matters).
    pub ttl: i64,
    pub stock: i64,
    pub work_ticks: i64,
    pub on_lost: OnLost,
    pub side_effect: bool,
}

#[cfg(test)]
impl Env {
    /// A discrete-time environment for unit tests of protocol handlers.
    pub(crate) fn test(clients: usize, workload: Workload, ttl: i64, stock: i64) -> Env {
        Env { clients, workload, timed: true, ttl, stock, work_ticks: 0, on_lost: OnLost::Stop, side_effect: false }
    }
}

/// A parsed, validated spec with its name (the file stem) and path.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub name: String,
    pub path: PathBuf,
    pub spec: ModelSpec,
}

impl Loaded {
    pub fn env(&self) -> Env {
        let t = &self.spec.time;
        Env {
            clients: self.spec.setup.clients,
            workload: self.spec.setup.workload,
            timed: t.mode == TimeMode::Discrete,
            ttl: t.ttl_ticks.unwrap_or(1),
            stock: self.spec.setup.stock,
            work_ticks: self.spec.setup.work_ticks,
            on_lost: self.spec.setup.on_lost,
            side_effect: self.spec.setup.side_effect,
        }
    }
    pub fn horizon(&self) -> u16 {
        self.spec.time.horizon_ticks.unwrap_or(0)
    }
    /// Whether `deadlock_free` and `available` are judged: when the spec claims one of them, or
    /// claims nothing. They need heal-and-settle ticks at the end of the horizon; a spec that claims
    /// only safety lets faults happen until the horizon instead.
    pub fn judges_liveness(&self) -> bool {
        let e = &self.spec.expect;
        PropertyName::ALL.iter().all(|p| e.get(*p).is_none())
            || PropertyName::ALL.iter().any(|p| p.is_liveness() && e.get(*p).is_some())
    }
    /// Faults stop here, leaving `ttl + clients × (work + 1) + 1` ticks for every client to get its
    /// turn when liveness is judged; otherwise at the horizon.
    pub fn fault_window(&self) -> u16 {
        let settle = if self.judges_liveness() { self.settle_ticks() } else { 0 };
        self.spec.time.fault_window.unwrap_or_else(|| self.horizon().saturating_sub(settle))
    }
    fn settle_ticks(&self) -> u16 {
        let per_client = self.spec.setup.work_ticks as u16 + 1;
        (self.env().ttl as u16).saturating_add(self.spec.setup.clients as u16 * per_client + 1)
    }
    pub fn jump(&self) -> i64 {
        self.spec.time.jump_ticks.unwrap_or(self.env().ttl)
    }
}

/// Reads a TOML file as a table, naming the line of a syntax error.
pub fn read_table(path: &Path) -> Result<toml::Table, SpecError> {
    let file = path.display().to_string();
    // Reading a FIFO or a device would block or never end.
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => {
            return Err(SpecError::File { file, message: "not a regular file: a spec must be a .toml file".into() });
        }
        Err(e) => return Err(SpecError::File { file, message: format!("cannot read: {e}") }),
        Ok(_) => {}
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| SpecError::File { file: file.clone(), message: format!("cannot read: {e}") })?;
    text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map(|s| text[..s.start].lines().count().max(1));
        let msg = e.message().replace('\n', " ");
        SpecError::File {
            file: file.clone(),
            message: match line {
                Some(l) => format!("line {l}: malformed TOML: {msg}"),
                None => format!("malformed TOML: {msg}"),
            },
        }
    })
}

/// Reads and parses a TOML file into `T`, naming the offending field on error.
pub fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, SpecError> {
    from_table(path, toml::Value::Table(read_table(path)?))
}

/// A spec `template` (a table) made for another protocol: its `protocol` and `[options]` replaced.
/// The benches and the report's battery judge many approaches under one file this way.
pub fn with_protocol(template: &toml::Table, protocol: &str, options: &toml::Table) -> toml::Table {
    let mut t = template.clone();
    t.insert("protocol".into(), toml::Value::String(protocol.to_string()));
    t.insert("options".into(), toml::Value::Table(options.clone()));
    t
}

/// `table` with the setting at the dotted path `field` (such as `faults.pause_ms`) replaced by
/// what `f` makes of its present value; the error is `f`'s, or says the path crosses a non-table.
pub fn edit_field(
    table: &toml::Table,
    field: &str,
    f: impl FnOnce(Option<&toml::Value>) -> Result<toml::Value, String>,
) -> Result<toml::Table, String> {
    let mut out = table.clone();
    let mut at = &mut out;
    let mut parts: Vec<&str> = field.split('.').collect();
    let leaf = parts.pop().unwrap_or_default();
    for key in parts {
        at = match at.entry(key).or_insert_with(|| toml::Value::Table(toml::Table::new())) {
            toml::Value::Table(t) => t,
            _ => return Err(format!("`{key}` is not a table")),
        };
    }
    let value = f(at.get(leaf))?;
    at.insert(leaf.to_string(), value);
    Ok(out)
}

/// `table` with the fault setting `field` (a dotted path such as `faults.partitions`) turned off:
/// the zero-budget twin of a witness spec. The setting must be there and on, or the spec could not
/// witness it.
pub fn without(path: &Path, table: &toml::Table, field: &str) -> Result<toml::Table, SpecError> {
    edit_field(table, field, |v| match v {
        Some(toml::Value::Integer(0)) | Some(toml::Value::Boolean(false)) => Err("is already off in this spec".into()),
        Some(toml::Value::Integer(_)) => Ok(toml::Value::Integer(0)),
        Some(toml::Value::Boolean(true)) => Ok(toml::Value::Boolean(false)),
        Some(toml::Value::Float(f)) if *f == 0.0 => Err("is already off in this spec".into()),
        Some(toml::Value::Float(_)) => Ok(toml::Value::Float(0.0)),
        Some(_) => Err("is not a count, a rate or a switch".into()),
        None => Err("is not set in this spec".into()),
    })
    .map_err(|why| SpecError::field(path, "witness", format!("`{field}` {why}")))
}

/// Checks a witness list against the file it came from: every entry names a setting that is on,
/// and the spec claims a violation for it to take away.
pub(crate) fn validate_witness(
    path: &Path,
    table: &toml::Table,
    witness: &[String],
    expect: &Expect,
) -> Result<(), SpecError> {
    for field in witness {
        if !(field.starts_with("faults.") || field.starts_with("time.") || field.starts_with("network.")) {
            return Err(SpecError::field(path, "witness", format!("`{field}` is not a fault setting")));
        }
        without(path, table, field)?;
    }
    if !witness.is_empty() && !expect.0.values().any(|v| *v == Verdict::Violated) {
        return Err(SpecError::field(path, "witness", "a witness spec must claim a violation for its fault to cause"));
    }
    Ok(())
}

/// Deserializes a TOML value, turning serde's error into one naming the field path.
pub fn from_table<T: serde::de::DeserializeOwned>(path: &Path, value: toml::Value) -> Result<T, SpecError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let message = e.inner().to_string().replace('\n', " ").trim().to_string();
        if field == "." {
            SpecError::File { file: path.display().to_string(), message }
        } else {
            SpecError::field(path, field, message)
        }
    })
}

pub fn load_model(path: &Path) -> Result<Loaded, SpecError> {
    let table = read_table(path)?;
    let loaded = model_from_table(path, &table)?;
    validate_witness(path, &table, &loaded.spec.witness, &loaded.spec.expect)?;
    Ok(loaded)
}

pub(crate) fn model_from_table(path: &Path, table: &toml::Table) -> Result<Loaded, SpecError> {
    let spec: ModelSpec = from_table(path, toml::Value::Table(table.clone()))?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("spec").to_string();
    let loaded = Loaded { name, path: path.to_path_buf(), spec };
    validate(&loaded)?;
    Ok(loaded)
}

/// The spec at `path` with the witnessed setting `field` turned off.
pub fn load_model_without(path: &Path, field: &str) -> Result<Loaded, SpecError> {
    let table = without(path, &read_table(path)?, field)?;
    model_from_table(path, &table)
}

/// What model specs and simulation scenarios share: a description and a setup within limits.
pub(crate) fn validate_common(
    path: &Path,
    description: &str,
    setup: &Setup,
    max_clients: usize,
) -> Result<(), SpecError> {
    if description.trim().is_empty() {
        return Err(SpecError::field(path, "description", "must say what the spec shows"));
    }
    if setup.clients == 0 || setup.clients > max_clients {
        return Err(SpecError::field(
            path,
            "setup.clients",
            format!("must be 1..={max_clients}, got {}", setup.clients),
        ));
    }
    if !(0..=100).contains(&setup.stock) {
        return Err(SpecError::field(path, "setup.stock", format!("must be 0..=100, got {}", setup.stock)));
    }
    if setup.side_effect && setup.workload != Workload::Oversell {
        return Err(SpecError::field(
            path,
            "setup.side_effect",
            "needs workload = \"oversell\" (an effect per item sold)",
        ));
    }
    if setup.side_effect && setup.stock > 63 {
        return Err(SpecError::field(
            path,
            "setup.stock",
            format!("must be 0..=63 with side_effect, got {}", setup.stock),
        ));
    }
    Ok(())
}

fn validate(l: &Loaded) -> Result<(), SpecError> {
    let (s, p) = (&l.spec, l.path.as_path());
    let err = |field: &str, msg: String| Err(SpecError::field(p, field, msg));
    validate_common(p, &s.description, &s.setup, MAX_CLIENTS)?;
    let t = &s.time;
    if s.setup.work_ticks != 0 && t.mode != TimeMode::Discrete {
        return err("setup.work_ticks", "only meaningful with time.mode = \"discrete\"".into());
    }
    if !(0..=i64::from(MAX_HORIZON)).contains(&s.setup.work_ticks) {
        return err("setup.work_ticks", format!("must be 0..={MAX_HORIZON}, got {}", s.setup.work_ticks));
    }
    let f = &s.faults;
    for (name, v) in [
        ("pauses", f.pauses),
        ("hangs", f.hangs),
        ("crashes", f.crashes),
        ("restarts_lose_state", f.restarts_lose_state),
        ("partitions", f.partitions),
        ("clock_jumps", f.clock_jumps),
        ("message_loss", f.message_loss),
        ("delays", f.delays),
    ] {
        if v > MAX_BUDGET {
            return err(&format!("faults.{name}"), format!("at most {MAX_BUDGET} per spec, got {v}"));
        }
    }
    if f.restarts_lose_state > f.crashes {
        return err("faults.restarts_lose_state", "cannot exceed faults.crashes (a restart follows a crash)".into());
    }
    let t = &s.time;
    match t.mode {
        TimeMode::Untimed => {
            for (name, set) in [
                ("ttl_ticks", t.ttl_ticks.is_some()),
                ("horizon_ticks", t.horizon_ticks.is_some()),
                ("fault_window", t.fault_window.is_some()),
                ("jump_ticks", t.jump_ticks.is_some()),
                ("drift", t.drift != 0),
            ] {
                if set {
                    return err(&format!("time.{name}"), "only meaningful with mode = \"discrete\"".into());
                }
            }
            if f.pauses > 0 {
                return err(
                    "faults.pauses",
                    "untimed mode already lets any timer fire at any moment, which covers every pause; use time.mode = \"discrete\" to see one".into(),
                );
            }
            if f.hangs > 0 {
                return err(
                    "faults.hangs",
                    "untimed mode already lets the library's timers run ahead of the application; use time.mode = \"discrete\" to see a hang".into(),
                );
            }
            if f.delays > 0 {
                return err(
                    "faults.delays",
                    "untimed mode already delays every message arbitrarily; use time.mode = \"discrete\"".into(),
                );
            }
            if f.clock_jumps > 0 {
                return err("faults.clock_jumps", "clocks exist only with time.mode = \"discrete\"".into());
            }
        }
        TimeMode::Discrete => {
            let Some(ttl) = t.ttl_ticks else {
                return err("time.ttl_ticks", "required with mode = \"discrete\"".into());
            };
            let Some(h) = t.horizon_ticks else {
                return err("time.horizon_ticks", "required with mode = \"discrete\"".into());
            };
            if ttl < 1 {
                return err("time.ttl_ticks", format!("must be at least 1, got {ttl}"));
            }
            if h > MAX_HORIZON {
                return err("time.horizon_ticks", format!("at most {MAX_HORIZON}, got {h}"));
            }
            if i64::from(h) <= ttl {
                return err(
                    "time.horizon_ticks",
                    format!("{h} is not longer than time.ttl_ticks = {ttl}: no lease could ever expire"),
                );
            }
            if t.drift < 0 || t.drift >= ttl {
                return err("time.drift", format!("must be 0..ttl_ticks ({ttl}), got {}", t.drift));
            }
            let settle = l.settle_ticks();
            match t.fault_window {
                Some(w) if l.judges_liveness() && u32::from(w) + u32::from(settle) > u32::from(h) => {
                    return err(
                        "time.fault_window",
                        format!(
                            "{w} leaves less than ttl_ticks + clients × (work_ticks + 1) + 1 = {settle} ticks before the horizon {h} for clients to finish"
                        ),
                    );
                }
                Some(w) if w > h => {
                    return err("time.fault_window", format!("{w} is beyond the horizon {h}"));
                }
                None if l.judges_liveness() && h <= settle => {
                    return err(
                        "time.horizon_ticks",
                        format!(
                            "{h} leaves no fault window: it must exceed ttl_ticks + clients × (work_ticks + 1) + 1 = {settle} (needed because the spec judges deadlock_free or available)"
                        ),
                    );
                }
                _ => {}
            }
            if let Some(j) = t.jump_ticks
                && !(1..=i64::from(h)).contains(&j)
            {
                return err("time.jump_ticks", format!("must be 1..=horizon_ticks, got {j}"));
            }
        }
    }
    Ok(())
}

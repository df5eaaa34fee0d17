//! Exhaustive breadth-first search over a [`World`], keeping the whole state graph.
//!
//! Why not stateright's own BFS: it keeps the *last* discovery of a property, so its paths are not
//! always shortest, and it judges `eventually` only at terminal states. Here a state is numbered in
//! the order BFS discovers it, which is also the order of its distance from the start, so the first
//! violating state found ends a shortest counterexample. The graph (edges with their [`Class`]) is
//! kept so that liveness can be judged exactly: a state is dead when no path of allowed steps leads
//! from it to a state where every live client has finished.

use std::collections::VecDeque;
use std::time::Instant;

use indicatif::ProgressBar;

use super::hash::{FingerprintMap, fingerprint};
use super::world::{Act, Class, State, World};
use crate::property::PropertyName;
use crate::protocol::Machine;

/// What one search found.
pub struct Found {
    /// Per property: the state ending the shortest counterexample, if any.
    pub violation: Vec<(PropertyName, Option<u32>)>,
    /// Per property: whether its `sometimes` partner was seen.
    pub witnessed: Vec<(PropertyName, bool)>,
    pub generated: u64,
    pub unique: u64,
    pub max_depth: u32,
    pub seconds: f64,
    pub complete: bool,
    /// Which budget cut the search short, if one did.
    pub stopped: Option<Budget>,
    parent: Vec<(u32, u32)>,
}

/// A budget that stopped a search before it could answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    States(u64),
    /// Bytes: the process's resident memory plus the next growth of the search's tables would pass it.
    Memory(u64),
    /// Ctrl-C.
    Interrupted,
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Budget::States(n) => write!(f, "the state budget (--max-states {n})"),
            Budget::Memory(b) => write!(f, "the memory budget (--max-memory {})", mib(*b)),
            Budget::Interrupted => write!(f, "Ctrl-C"),
        }
    }
}

/// A byte count as the command line takes it back (`512M`, `2G`).
pub fn mib(bytes: u64) -> String {
    const G: u64 = 1 << 30;
    const M: u64 = 1 << 20;
    if bytes.is_multiple_of(G) { format!("{}G", bytes / G) } else { format!("{}M", bytes.div_ceil(M)) }
}

/// Parses `4G`, `512M`, `100K` or a plain number of bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits.parse().map_err(|_| format!("`{s}` is not a size (e.g. 4G, 512M)"))?;
    let scale: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (K, M or G)")),
    };
    match n.checked_mul(scale) {
        Some(b) if b >= 16 << 20 => Ok(b),
        Some(_) => Err(format!("`{s}` is below the 16M a search needs to start")),
        None => Err(format!("`{s}` is too large")),
    }
}

/// A size on the command line (`--max-memory 2G`), shown back the same way in `--help`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl std::str::FromStr for Bytes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_bytes(s).map(Bytes)
    }
}

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&mib(self.0))
    }
}

/// Half of the machine's memory (MemTotal in /proc/meminfo), or 4 GiB where that cannot be read.
pub fn default_max_memory() -> u64 {
    half_of_machine(std::fs::read_to_string("/proc/meminfo").ok().as_deref())
}

fn half_of_machine(meminfo: Option<&str>) -> u64 {
    let total = meminfo.and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    });
    total.map(|kib| kib * 1024 / 2).unwrap_or(4 << 30)
}

/// Whether the process, at `resident` bytes and about to take `growth` more, would pass `max`:
/// 5% stays free for the states between checks and for building the traces afterwards.
fn over_budget(resident: u64, growth: u64, max: u64) -> bool {
    resident + growth > max / 20 * 19
}

/// What storing one more state takes at once, if it takes anything: the search's tables grow by
/// doubling, so each table (length, capacity, bytes a row) that is full asks for its size again.
fn doubling(tables: &[(usize, usize, usize)]) -> Option<u64> {
    let bytes: u64 = tables.iter().filter(|(len, cap, _)| len == cap).map(|&(_, cap, row)| (cap * row) as u64).sum();
    (bytes > 0).then_some(bytes)
}

/// A discovered state's row across the parent, depth and goal tables, which grow together.
const STATE_ROW: usize =
    std::mem::size_of::<(u32, u32)>() + std::mem::size_of::<u32>() + std::mem::size_of::<(bool, bool)>();
/// A fingerprint's entry in the index, with the hash table's own overhead.
const INDEX_ROW: usize = 40;

/// The process's resident memory in bytes (Linux `/proc/self/statm`; 0 where it cannot be read).
pub fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

impl Found {
    /// Action positions (index into `actions_of`) from the initial state to `state`.
    pub fn path_to(&self, state: u32) -> Vec<u32> {
        let mut path = Vec::new();
        let mut at = state;
        while at != 0 {
            let (p, a) = self.parent[at as usize];
            path.push(a);
            at = p;
        }
        path.reverse();
        path
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Breadth first: every counterexample is a shortest one.
    Bfs,
    /// Depth first: a smaller frontier; counterexamples are valid but not always shortest.
    Dfs,
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub strategy: Strategy,
    pub max_states: u64,
    /// Bytes of resident memory the process may reach.
    pub max_memory: u64,
    pub progress: bool,
    /// Judge only the properties the spec makes claims about (lets a search stop at the first
    /// counterexample, as SPIN's BFS does).
    pub claimed_only: bool,
    /// Treat states that differ only by a renaming of clients as one (exact: properties do not
    /// care which client is which, and paths are still walked on real states).
    pub symmetry: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            strategy: Strategy::Bfs,
            max_states: 30_000_000,
            max_memory: default_max_memory(),
            progress: crate::progress::shown(),
            claimed_only: false,
            symmetry: false,
        }
    }
}

pub fn bfs<M: Machine>(w: &World<M>, limits: &Limits) -> Found {
    let started = Instant::now();
    let props = &w.properties;
    let liveness = props.iter().any(|p| p.is_liveness());
    let mut index: FingerprintMap<u32> = FingerprintMap::default();
    let mut parent: Vec<(u32, u32)> = Vec::new();
    let mut depth: Vec<u32> = Vec::new();
    let mut goal: Vec<(bool, bool)> = Vec::new();
    let mut edges: Vec<(u32, u32, Class)> = Vec::new();
    let mut violation: Vec<(PropertyName, Option<u32>)> = props.iter().map(|p| (*p, None)).collect();
    let mut witnessed: Vec<(PropertyName, bool)> = props.iter().map(|p| (*p, false)).collect();
    let mut queue: VecDeque<(u32, State<M>)> = VecDeque::new();
    let mut generated = 0u64;
    let mut stopped: Option<Budget> = None;
    let mut last_report = Instant::now();
    let bar = if limits.progress { crate::progress::counter("  search", "states") } else { ProgressBar::hidden() };

    let mut visit = |s: &State<M>, idx: u32, violation: &mut Vec<(PropertyName, Option<u32>)>| {
        for (p, v) in violation.iter_mut() {
            if v.is_none() && !s.monitor.holds(*p) {
                *v = Some(idx);
            }
        }
        for (p, seen) in witnessed.iter_mut() {
            *seen |= s.monitor.witness(*p);
        }
    };

    let key = |s: &State<M>| {
        if limits.symmetry { fingerprint(&w.canonical(s)) } else { fingerprint(s) }
    };
    let init = w.init();
    index.insert(key(&init), 0);
    parent.push((0, 0));
    depth.push(0);
    goal.push(w.goals(&init));
    visit(&init, 0, &mut violation);
    queue.push_back((0, init));

    let mut actions = Vec::new();
    let next_job = |q: &mut VecDeque<(u32, State<M>)>| match limits.strategy {
        Strategy::Bfs => q.pop_front(),
        Strategy::Dfs => q.pop_back(),
    };
    while let Some((from, s)) = next_job(&mut queue) {
        if !liveness && violation.iter().all(|(_, v)| v.is_some()) {
            break;
        }
        if stopped.is_some() {
            break;
        }
        if from.is_multiple_of(1024) && over_budget(resident_bytes(), 0, limits.max_memory) {
            stopped = Some(Budget::Memory(limits.max_memory));
            break;
        }
        if from.is_multiple_of(1024) && crate::progress::interrupted() {
            stopped = Some(Budget::Interrupted);
            break;
        }
        actions.clear();
        w.actions_of(&s, &mut actions);
        for (pos, a) in actions.drain(..).enumerate() {
            let class = a.class();
            let Some(next) = w.step(&s, &a, None) else {
                continue;
            };
            generated += 1;
            let fp = key(&next);
            let to = match index.get(&fp) {
                Some(&i) => i,
                None => {
                    if parent.len() as u64 >= limits.max_states {
                        stopped = Some(Budget::States(limits.max_states));
                        continue;
                    }
                    // Stop before a doubling would pass the budget.
                    let growth = doubling(&[
                        (parent.len(), parent.capacity(), STATE_ROW),
                        (index.len(), index.capacity(), INDEX_ROW),
                        (queue.len(), queue.capacity(), std::mem::size_of::<(u32, State<M>)>()),
                        (edges.len(), edges.capacity(), std::mem::size_of::<(u32, u32, Class)>()),
                    ]);
                    if let Some(growth) = growth
                        && over_budget(resident_bytes(), growth, limits.max_memory)
                    {
                        stopped = Some(Budget::Memory(limits.max_memory));
                        continue;
                    }
                    let i = parent.len() as u32;
                    index.insert(fp, i);
                    parent.push((from, pos as u32));
                    depth.push(depth[from as usize] + 1);
                    goal.push(w.goals(&next));
                    visit(&next, i, &mut violation);
                    queue.push_back((i, next));
                    i
                }
            };
            if liveness {
                edges.push((from, to, class));
            }
        }
        if limits.progress && last_report.elapsed().as_millis() >= 200 {
            last_report = Instant::now();
            bar.set_position(parent.len() as u64);
            bar.set_message(format!("depth {}", depth[from as usize]));
        }
    }
    bar.finish_and_clear();

    let complete = stopped.is_none();
    if liveness && complete {
        for (p, v) in violation.iter_mut().filter(|(p, _)| p.is_liveness()) {
            // Each judgement has its own world: deadlock_free's heals after the fault window,
            // available's leaves the faults in place while time passes.
            let (allowed, reach, goal): (fn(Class) -> bool, fn(Class) -> bool, Vec<bool>) = match p {
                PropertyName::DeadlockFree => (
                    |c| matches!(c, Class::Normal | Class::Heal),
                    |c| c != Class::Linger,
                    goal.iter().map(|g| g.0).collect(),
                ),
                _ => (
                    |c| matches!(c, Class::Normal | Class::Linger),
                    |c| !matches!(c, Class::Heal),
                    goal.iter().map(|g| g.1).collect(),
                ),
            };
            *v = first_dead(parent.len(), &edges, &goal, allowed, reach);
        }
    }

    Found {
        violation,
        witnessed,
        generated,
        unique: parent.len() as u64,
        max_depth: depth.iter().copied().max().unwrap_or(0),
        seconds: started.elapsed().as_secs_f64(),
        complete,
        stopped,
        parent,
    }
}

/// The first state (in BFS order, hence nearest to the start) among those reachable by `reach`
/// steps, from which no path of `allowed` steps reaches a goal state.
fn first_dead(
    n: usize,
    edges: &[(u32, u32, Class)],
    goal: &[bool],
    allowed: fn(Class) -> bool,
    reach: fn(Class) -> bool,
) -> Option<u32> {
    let judged = closure(n, edges, reach, Direction::Forward, |i| i == 0);
    let alive = closure(n, edges, allowed, Direction::Backward, |i| goal[i]);
    (0..n).find(|&i| judged[i] && !alive[i]).map(|i| i as u32)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

/// The states reachable from (`Forward`) or reaching (`Backward`) the `seed` states along edges
/// whose class `keep` accepts.
fn closure(
    n: usize,
    edges: &[(u32, u32, Class)],
    keep: fn(Class) -> bool,
    dir: Direction,
    seed: impl Fn(usize) -> bool,
) -> Vec<bool> {
    let ends = |&(from, to, _): &(u32, u32, Class)| if dir == Direction::Forward { (from, to) } else { (to, from) };
    let mut start = vec![0u32; n + 1];
    for e in edges.iter().filter(|e| keep(e.2)) {
        start[ends(e).0 as usize + 1] += 1;
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut next = vec![0u32; start[n] as usize];
    for e in edges.iter().filter(|e| keep(e.2)) {
        let (a, b) = ends(e);
        next[fill[a as usize] as usize] = b;
        fill[a as usize] += 1;
    }
    let mut seen: Vec<bool> = (0..n).map(seed).collect();
    let mut stack: Vec<u32> = (0..n as u32).filter(|&i| seen[i as usize]).collect();
    while let Some(x) = stack.pop() {
        for &y in &next[start[x as usize] as usize..start[x as usize + 1] as usize] {
            if !seen[y as usize] {
                seen[y as usize] = true;
                stack.push(y);
            }
        }
    }
    seen
}

/// Re-walks a path, returning every action taken and the observations each one produced.
pub fn replay_path<M: Machine>(
    w: &World<M>,
    path: &[u32],
) -> Vec<(Act<M>, State<M>, Vec<crate::protocol::Observation>)> {
    let mut s = w.init();
    let mut out = Vec::new();
    let mut actions = Vec::new();
    for &pos in path {
        actions.clear();
        w.actions_of(&s, &mut actions);
        let a = actions.swap_remove(pos as usize);
        let mut log = Vec::new();
        let next = w.step(&s, &a, Some(&mut log)).expect("a recorded path replays");
        out.push((a, next.clone(), log));
        s = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{self, Visit};
    use crate::spec::{Loaded, load_model};
    use crate::system::LockSystem;

    fn gc_pause() -> Loaded {
        load_model(std::path::Path::new("models/redis_gc_pause.toml")).unwrap()
    }

    fn quiet() -> Limits {
        Limits { progress: false, ..Limits::default() }
    }

    /// A search of `redis_gc_pause` judging `props`, and per property its counterexample's length
    /// after checking that the path replays into a state that breaks it.
    struct Search<'a> {
        spec: &'a Loaded,
        props: Vec<PropertyName>,
        limits: Limits,
    }

    struct Searched {
        found: Found,
        lengths: Vec<Option<usize>>,
    }

    impl Visit for Search<'_> {
        type Out = Searched;
        fn visit<P: crate::protocol::Protocol>(self, system: LockSystem<P>) -> Searched {
            let w = World::new(system, self.spec, self.props);
            let found = bfs(&w, &self.limits);
            let lengths = found
                .violation
                .iter()
                .map(|&(p, v)| {
                    let path = found.path_to(v?);
                    let walked = replay_path(&w, &path);
                    let end = walked.last().map(|(_, s, _)| s.clone()).unwrap_or_else(|| w.init());
                    assert!(!end.monitor.holds(p), "the path to {p:?}'s violation ends where it holds");
                    Some(path.len())
                })
                .collect();
            Searched { found, lengths }
        }
    }

    fn search(props: &[PropertyName], limits: Limits) -> Searched {
        let spec = gc_pause();
        registry::build(&spec, Search { spec: &spec, props: props.to_vec(), limits }).unwrap()
    }

    const SAFETY: [PropertyName; 3] =
        [PropertyName::MutualExclusion, PropertyName::NoStaleWrite, PropertyName::NoOversell];

    #[test]
    fn a_whole_search_counts_what_it_generated_found_and_how_deep_it_went() {
        let all = [SAFETY.as_slice(), &[PropertyName::DeadlockFree]].concat();
        let s = search(&all, quiet());
        let f = &s.found;
        assert_eq!((f.generated, f.unique, f.max_depth, f.complete, f.stopped), (8888, 4282, 44, true, None));
        assert_eq!(s.lengths, [Some(15), Some(19), Some(21), None], "shortest counterexamples, deadlock_free holds");
        assert!(f.witnessed.iter().all(|&(_, seen)| seen), "{:?}", f.witnessed);
        assert_eq!(f.path_to(0), Vec::<u32>::new(), "the initial state is reached by no step");
    }

    #[test]
    fn without_liveness_a_search_stops_once_every_property_is_broken_with_paths_as_short() {
        let s = search(&SAFETY, quiet());
        assert!(s.found.unique < 4282, "{} states: the search went on after the last violation", s.found.unique);
        assert!(s.found.complete, "stopping early is not a budget");
        assert_eq!(s.lengths, [Some(15), Some(19), Some(21)]);
        let one = search(&SAFETY[..1], quiet());
        assert!(one.found.unique < s.found.unique, "one property breaks first: {}", one.found.unique);
    }

    #[test]
    fn depth_first_visits_the_same_states_and_finds_counterexamples_that_replay() {
        let all = [SAFETY.as_slice(), &[PropertyName::DeadlockFree]].concat();
        let s = search(&all, Limits { strategy: Strategy::Dfs, ..quiet() });
        assert_eq!((s.found.unique, s.found.generated), (4282, 8888));
        for (len, shortest) in s.lengths.iter().zip([15, 19, 21]) {
            assert!(len.is_some_and(|l| l >= shortest), "{:?}", s.lengths);
        }
        assert!(s.lengths.iter().zip([15, 19, 21]).any(|(l, b)| l.is_some_and(|l| l > b)), "DFS went breadth first");
        assert_eq!(s.lengths[3], None);
    }

    #[test]
    fn a_state_budget_stops_at_exactly_that_many_states_and_leaves_the_rest_unjudged() {
        let all = [SAFETY.as_slice(), &[PropertyName::DeadlockFree]].concat();
        let s = search(&all, Limits { max_states: 100, ..quiet() });
        assert_eq!((s.found.unique, s.found.complete, s.found.stopped), (100, false, Some(Budget::States(100))));
        assert_eq!(s.lengths, [None; 4], "no violation within the first 100 states, and liveness not judged on a part");
    }

    #[test]
    fn a_memory_budget_already_spent_stops_the_search_at_its_start() {
        let max = resident_bytes();
        let s = search(&SAFETY, Limits { max_memory: max, ..quiet() });
        assert_eq!((s.found.unique, s.found.complete, s.found.stopped), (1, false, Some(Budget::Memory(max))));
        let roomy = search(&SAFETY, Limits { max_memory: max + (1 << 30), ..quiet() });
        assert_eq!(roomy.found.stopped, None, "a gigabyte more is room enough");
    }

    #[test]
    fn the_default_limits_search_breadth_first_over_every_property_on_real_states() {
        let d = Limits::default();
        assert_eq!((d.strategy, d.max_states, d.claimed_only, d.symmetry), (Strategy::Bfs, 30_000_000, false, false));
        assert_eq!(d.max_memory, default_max_memory());
    }

    #[test]
    fn the_default_memory_budget_is_half_the_machine() {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .trim()
            .parse()
            .unwrap();
        assert_eq!(default_max_memory(), kib * 1024 / 2);
        assert_eq!(half_of_machine(Some("MemFree: 8 kB\nMemTotal:       24000 kB\n")), 12000 * 1024);
        assert_eq!(half_of_machine(None), 4 << 30, "4 GiB where /proc/meminfo cannot be read");
        assert_eq!(half_of_machine(Some("MemTotal: lots")), 4 << 30);
    }

    #[test]
    fn the_memory_budget_keeps_a_twentieth_free_and_counts_only_tables_about_to_double() {
        assert!(!over_budget(90, 5, 100), "95 of 100 bytes is the most a search may reach");
        assert!(over_budget(90, 6, 100));
        assert!(over_budget(96, 0, 100));
        assert!(!over_budget(0, 0, 0) && over_budget(1, 0, 0));
        assert_eq!(doubling(&[(3, 8, 40), (7, 16, 14)]), None, "no table is full");
        assert_eq!(doubling(&[(4, 4, 14), (3, 8, 40), (16, 16, 100)]), Some(4 * 14 + 16 * 100));
        assert_eq!(doubling(&[(0, 0, 14)]), None, "an empty table's first row is not a doubling worth a check");
        assert_eq!(STATE_ROW, 14);
    }

    #[test]
    fn resident_memory_grows_with_what_the_process_touches() {
        let before = resident_bytes();
        assert!(before > 1 << 20, "{before} bytes resident");
        let touched = vec![1u8; 64 << 20];
        let after = resident_bytes();
        assert!(after >= before + (48 << 20), "{before} -> {after} after touching 64 MiB");
        assert_eq!(touched.iter().map(|&b| u64::from(b)).sum::<u64>(), 64 << 20);
    }

    #[test]
    fn sizes_read_in_their_units_and_are_shown_back_the_same_way() {
        assert_eq!(parse_bytes("4G"), Ok(4 << 30));
        assert_eq!(parse_bytes(" 512m "), Ok(512 << 20));
        assert_eq!(parse_bytes("20000KiB"), Ok(20000 << 10));
        assert_eq!(parse_bytes("16777216"), Ok(16 << 20));
        assert_eq!(parse_bytes("16M"), Ok(16 << 20), "16M is the smallest budget");
        assert!(parse_bytes("16777215").unwrap_err().contains("below the 16M"));
        assert!(parse_bytes("100K").unwrap_err().contains("below the 16M"));
        assert_eq!(parse_bytes("2T"), Err("`2T`: unknown unit `T` (K, M or G)".to_string()));
        assert_eq!(parse_bytes("G"), Err("`G` is not a size (e.g. 4G, 512M)".to_string()));
        assert_eq!(parse_bytes("99999999999G"), Err("`99999999999G` is too large".to_string()));
        assert_eq!((mib(2 << 30), mib(512 << 20), mib((1 << 30) + 1)), ("2G".into(), "512M".into(), "1025M".into()));
        assert_eq!(mib((1 << 20) + 1), "2M", "a part of a MiB rounds up");
        assert_eq!("1536M".parse::<Bytes>().map(|b| b.to_string()), Ok("1536M".to_string()));
        assert_eq!(Budget::Memory(3 << 30).to_string(), "the memory budget (--max-memory 3G)");
        assert_eq!(Budget::States(7).to_string(), "the state budget (--max-states 7)");
        assert_eq!(Budget::Interrupted.to_string(), "Ctrl-C");
    }

    #[test]
    fn first_dead_finds_a_state_that_cannot_reach_the_goal() {
        // 0 -> 1 -> 2 (goal); 0 -> 3 (stuck); 1 -> 3 only by a fault.
        let edges = [(0, 1, Class::Normal), (1, 2, Class::Normal), (0, 3, Class::Normal), (1, 3, Class::Fault)];
        let goal = [false, false, true, false];
        let all = |_| true;
        assert_eq!(first_dead(4, &edges, &goal, |c| c != Class::Fault, all), Some(3));
        let healed = [(0, 1, Class::Normal), (1, 2, Class::Normal), (0, 3, Class::Normal), (3, 2, Class::Heal)];
        assert_eq!(first_dead(4, &healed, &goal, |c| c != Class::Fault, all), None);
        assert_eq!(first_dead(4, &healed, &goal, |c| c == Class::Normal, all), Some(3));
        // A stuck state that only lingering reaches is not judged by a heal-after-the-window property.
        let lingering = [(0, 1, Class::Normal), (1, 2, Class::Normal), (0, 3, Class::Linger)];
        assert_eq!(first_dead(4, &lingering, &goal, |c| c != Class::Fault, |c| c != Class::Linger), None);
    }
}

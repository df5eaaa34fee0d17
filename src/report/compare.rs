//! The report's head: every approach judged under the standard battery ([`crate::battery`]), as
//! one table whose cells link their evidence, and the answer to the seed note's question drawn
//! from those verdicts only. No sentence here names an approach or a verdict by hand: when a
//! verdict changes, the text changes.

use std::fmt::Write as _;

use crate::battery::Judged;
use crate::property::PropertyName;
use crate::spec::Verdict;
use crate::trace::Trace;

/// The seed note's requirements, in its order, with the reader's words for them.
pub const REQUIREMENTS: [(PropertyName, &str); 6] = [
    (PropertyName::MutualExclusion, "exclusive (as believed)"),
    (PropertyName::NoStaleWrite, "exclusive at the resource"),
    (PropertyName::NoOversell, "no oversell"),
    (PropertyName::DeadlockFree, "avoids deadlock (all finish in time)"),
    (PropertyName::Available, "highly available"),
    (PropertyName::Reentrant, "reentrant"),
];

/// What both engines say about one property of one approach.
pub struct Judgement {
    pub verdict: Verdict,
    /// Markdown fragments, model checker first.
    pub evidence: Vec<String>,
    /// The faults the shortest counterexample needed, in the order they happened.
    pub faults: Vec<&'static str>,
    /// The counterexample page to link, when there is one.
    pub link: Option<String>,
    /// A budget stopped the model checker: a `yes` rests on the simulator alone.
    pub simulated_only: bool,
}

impl Judgement {
    /// The verdict word of a cell.
    fn word(&self) -> &'static str {
        match self.verdict {
            Verdict::Holds if self.simulated_only => "yes, simulated only",
            Verdict::Holds => "yes",
            Verdict::Violated => "**no**",
            Verdict::Vacuous => "not exercised",
            Verdict::Unknown => "unknown",
        }
    }

    pub fn cell(&self) -> String {
        format!("{} ({})", self.word(), self.evidence.join("; "))
    }

    /// "a crash and a process pause", or "no fault at all".
    pub fn fault_words(&self) -> String {
        match self.faults.as_slice() {
            [] => "no fault at all".into(),
            [one] => (*one).into(),
            [init @ .., last] => format!("{} and {last}", init.join(", ")),
        }
    }
}

fn steps(t: &Trace) -> String {
    match t.steps.len() {
        1 => "1 step".into(),
        n => format!("{n} steps"),
    }
}

fn faults_of(t: &Trace) -> Vec<&'static str> {
    let mut out = Vec::new();
    for s in &t.steps {
        if let Some((_, words)) = crate::trace::FAULT_STEPS.iter().find(|(k, _)| *k == s.kind)
            && !out.contains(words)
        {
            out.push(*words);
        }
    }
    out
}

/// Both engines' verdicts on `p` for one row; `None` when neither judged it.
pub fn judge(j: &Judged, p: PropertyName) -> Option<Judgement> {
    let id = j.approach.id();
    let model = if p == PropertyName::Reentrant { j.reentrant.as_ref() } else { Some(&j.model) };
    let model = model.and_then(|o| o.results.iter().find(|r| r.property == p).map(|r| (o, r)));
    let sim = if p == PropertyName::Reentrant { None } else { j.sim.results.iter().find(|r| r.property == p) };
    if model.is_none() && sim.is_none() {
        return None;
    }
    let mut evidence = Vec::new();
    let (mut faults, mut link) = (Vec::new(), None);
    if let Some((o, r)) = model {
        match (&r.trace, r.verdict) {
            (Some(t), _) => {
                let page = format!("battery/{}/{}.md", o.name, p.name());
                let real = j.confirmed.iter().find(|(q, _)| *q == p).map(|(_, w)| format!(", {w}")).unwrap_or_default();
                evidence.push(format!("[model: {}]({page}){real}", steps(t)));
                faults = faults_of(t);
                link = Some(page);
            }
            (None, Verdict::Holds) => evidence.push(format!("model: all {} states", o.unique)),
            (None, Verdict::Vacuous) => evidence.push("model: never exercised".into()),
            (None, _) => evidence.push(format!("model: stopped after {} states", o.unique)),
        }
    }
    if let Some(r) = sim {
        match (&r.trace, r.first_seed) {
            (Some(t), Some(seed)) => {
                let page = format!("battery/{id}/{}.seed{seed}.md", p.name());
                evidence.push(format!("[sim: {}/{} runs]({page})", r.violations, j.sim.runs));
                if link.is_none() {
                    faults = faults_of(r.shrunk.as_ref().unwrap_or(t));
                    link = Some(page);
                }
            }
            _ if r.verdict == Verdict::Vacuous => evidence.push(format!("sim: never exercised in {} runs", j.sim.runs)),
            _ => evidence.push(format!("sim: 0/{} runs", j.sim.runs)),
        }
    }
    let verdicts: Vec<Verdict> = model.map(|m| m.1.verdict).into_iter().chain(sim.map(|s| s.verdict)).collect();
    let verdict = if verdicts.contains(&Verdict::Violated) {
        Verdict::Violated
    } else if verdicts.contains(&Verdict::Holds) {
        Verdict::Holds
    } else if verdicts.contains(&Verdict::Vacuous) {
        Verdict::Vacuous
    } else {
        Verdict::Unknown
    };
    let simulated_only = model.is_some_and(|m| m.1.verdict == Verdict::Unknown);
    Some(Judgement { verdict, evidence, faults, link, simulated_only })
}

fn row_name(j: &Judged) -> String {
    format!("{}: {}", j.approach.group, j.approach.name)
}

/// The comparison table: one row per approach, the seed's requirements, then its pros and cons
/// measured by the simulator under the same battery.
pub fn table(judged: &[Judged]) -> String {
    let mut md = String::from("| approach |");
    for (_, title) in REQUIREMENTS {
        let _ = write!(md, " {title} |");
    }
    md.push_str(
        " store requests / acquisition | messages / acquisition | wake-up after a release (p50 / p99) |\n|---|",
    );
    md.push_str(&"---|".repeat(REQUIREMENTS.len() + 3));
    md.push('\n');
    for j in judged {
        let _ = write!(md, "| {} |", row_name(j));
        for (p, _) in REQUIREMENTS {
            let cell = judge(j, p).map(|x| x.cell()).unwrap_or_else(|| "·".into());
            let _ = write!(md, " {cell} |");
        }
        let m = &j.sim.metrics;
        if m.acquisitions == 0 {
            md.push_str(" · | · | · |\n");
        } else {
            let store = if j.approach.locks() {
                format!("{:.1}", m.store_requests_per_acquisition)
            } else {
                "no lock".to_string()
            };
            let _ = writeln!(
                md,
                " {store} | {:.1} | {} / {} ms |",
                m.messages_per_acquisition, m.wakeup_latency_p50_ms, m.wakeup_latency_p99_ms
            );
        }
    }
    md
}

/// Names with their evidence links: "A, B and C".
fn list(items: &[String]) -> String {
    match items {
        [] => "none".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The first of `props` an approach breaks, with its judgement.
fn first_broken(j: &Judged, props: &[PropertyName]) -> Option<(PropertyName, Judgement)> {
    props.iter().find_map(|&p| judge(j, p).filter(|x| x.verdict == Verdict::Violated).map(|x| (p, x)))
}

/// Whether every one of `props` that applies to the approach holds, in both engines, and at least
/// one applies (a property no engine judged does not apply: the seed's Case 2 takes no lock, so
/// nobody believes they hold one).
fn keeps(j: &Judged, props: &[PropertyName]) -> bool {
    let judged: Vec<Judgement> = props.iter().filter_map(|&p| judge(j, p)).collect();
    !judged.is_empty() && judged.iter().all(|x| x.verdict == Verdict::Holds && !x.simulated_only)
}

/// The simulator's faults that break `p` on their own, with their violation counts.
fn alone_breaking(j: &Judged, p: PropertyName) -> Vec<String> {
    crate::battery::SIM_FAULTS
        .iter()
        .zip(&j.alone)
        .filter_map(|((words, _), o)| {
            let r = o.results.iter().find(|r| r.property == p && r.verdict == Verdict::Violated)?;
            Some(format!("{words} ({}/{} runs)", r.violations, o.runs))
        })
        .collect()
}

fn broken_line(j: &Judged, p: PropertyName, x: &Judgement) -> String {
    let what = REQUIREMENTS.iter().find(|(q, _)| *q == p).map_or(p.name(), |(_, t)| t);
    let shown = match &x.link {
        Some(page) => format!("[counterexample]({page})"),
        None => "counterexample".into(),
    };
    if x.faults.is_empty() {
        return format!("- {}: fails \"{what}\" with no fault at all ({shown}).\n", row_name(j));
    }
    let alone = alone_breaking(j, p);
    let alone = if alone.is_empty() {
        "no single fault of the simulator's battery breaks it alone".to_string()
    } else {
        format!("each alone breaks it in the simulator: {}", list(&alone))
    };
    format!("- {}: fails \"{what}\". Shortest counterexample: {} ({shown}); {alone}.\n", row_name(j), x.fault_words())
}

/// One use case of the seed note: the approaches that keep `needs` under the whole battery, and
/// for each of the others the first requirement it breaks and what broke it.
fn use_case(md: &mut String, judged: &[Judged], title: &str, why: &str, needs: &[PropertyName]) {
    let words: Vec<&str> =
        needs.iter().map(|p| REQUIREMENTS.iter().find(|(q, _)| q == p).map_or(p.name(), |(_, t)| t)).collect();
    let _ = writeln!(md, "### {title}\n\n{why} It needs: {}.\n", words.join(", "));
    let safe: Vec<String> = judged.iter().filter(|j| keeps(j, needs)).map(row_name).collect();
    let _ = writeln!(md, "**Safe under the whole battery:** {}.\n", list(&safe));
    let mut broken = String::new();
    for j in judged {
        if let Some((p, x)) = first_broken(j, needs) {
            broken.push_str(&broken_line(j, p, &x));
        }
    }
    if !broken.is_empty() {
        let _ = writeln!(md, "**Not safe:**\n\n{broken}");
    }
    let open: Vec<String> =
        judged.iter().filter(|j| !keeps(j, needs) && first_broken(j, needs).is_none()).map(row_name).collect();
    if !open.is_empty() {
        let _ = writeln!(
            md,
            "**Not decided** (the model checker's budget stopped before it could tell, or nothing exercised the property; the simulator found no violation): {}.\n",
            list(&open)
        );
    }
}

/// The answer to the seed note's question, per use case, from the battery's verdicts.
pub fn answer(judged: &[Judged]) -> String {
    use PropertyName::*;
    let mut md = String::new();
    use_case(
        &mut md,
        judged,
        "Correctness: inventory, money",
        "Every sale must be counted once and every buyer served: what matters is the stock, not who believed they held the lock.",
        &[NoOversell, DeadlockFree],
    );
    use_case(
        &mut md,
        judged,
        "Efficiency: a duplicate is a small cost",
        "Two holders now and then only repeat work; what hurts is a lock nobody can take again.",
        &[DeadlockFree, Available],
    );
    md
}

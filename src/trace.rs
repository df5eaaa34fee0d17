//! Counterexample traces: one JSON schema for both engines, and renderers for people.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub step: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub time: Option<i64>,
    pub node: String,
    pub kind: String,
    pub detail: String,
    /// The step changed what the properties observe (a grant, a belief, a read, a write, an
    /// expiry): the steps a violation can depend on, with the faults.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub observed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    pub spec: String,
    pub engine: String,
    #[serde(skip_serializing_if = "Option::is_none", default, with = "seed_text::opt")]
    pub seed: Option<u64>,
    pub property: String,
    pub steps: Vec<Step>,
    pub reproduce: String,
    /// The simulator's fault plan (what was drawn from the seed), so a trace replays as it ran.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub plan: Option<serde_json::Value>,
    /// Set on a [`Trace::slice`]: how many steps the full trace has.
    #[serde(skip)]
    pub sliced_from: Option<usize>,
}

/// The step kinds that are faults, as both engines record them, with what a reader calls each.
pub const FAULT_STEPS: [(&str, &str); 8] = [
    ("pause", "a process pause"),
    ("hang", "a stuck application thread"),
    ("crash", "a crash"),
    ("partition", "a partition"),
    ("loss", "a lost message"),
    ("delay", "a delayed message"),
    ("hold", "a network delay"),
    ("jump", "a clock jump"),
];

impl Trace {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a trace serializes");
        s.push('\n');
        s
    }

    /// The steps the violation can depend on: those that changed what the properties observe, the
    /// faults, and the violating step; the rest (retries refused, replies that changed nothing,
    /// time passing) are left out. Steps keep their numbers in the full trace.
    pub fn slice(&self) -> Trace {
        let last = self.steps.len().saturating_sub(1);
        let steps = self
            .steps
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                s.observed
                    || FAULT_STEPS.iter().any(|(k, _)| *k == s.kind)
                    || SPANS.iter().any(|(_, ends, ..)| ends.contains(&s.kind.as_str()))
                    || *i == last
            })
            .map(|(_, s)| s.clone())
            .collect();
        Trace { steps, sliced_from: Some(self.steps.len()), ..self.clone() }
    }

    /// What a slice left out, in a sentence; empty for a full trace.
    fn slice_note(&self) -> String {
        match self.sliced_from {
            Some(n) => format!(
                "{} of {n} steps: those that changed what the properties observe, the faults and the violation; the {} others (refused retries, replies that changed nothing, time passing) are in the full trace (`.json`).",
                self.steps.len(),
                n - self.steps.len()
            ),
            None => String::new(),
        }
    }

    /// Numbered steps, one a line.
    pub fn to_text(&self) -> String {
        let width = self.steps.iter().map(|s| s.node.len()).max().unwrap_or(0);
        let mut out = String::new();
        for s in &self.steps {
            let time = s.time.map(|t| format!("t={t:<3} ")).unwrap_or_default();
            out.push_str(&format!("{:>4}. {time}{:<width$}  {:<8} {}\n", s.step, s.node, s.kind, s.detail));
        }
        out
    }

    /// A Markdown page: a Mermaid sequence diagram, then the numbered steps.
    pub fn to_markdown(&self, participants: &[String]) -> String {
        let mut m = format!("# {}: `{}` violated ({})\n\n", self.spec, self.property, self.engine);
        if self.sliced_from.is_some() {
            m.push_str(&format!("{}\n\n", self.slice_note()));
        }
        m.push_str("```mermaid\nsequenceDiagram\n");
        // Mermaid ids cannot hold `-`; the alias shows the name the steps use.
        for p in participants {
            m.push_str(&format!("    participant {} as {p}\n", mermaid_id(p)));
        }
        for s in &self.steps {
            let label = s.detail.replace([';', '#'], ",");
            match s.kind.as_str() {
                "receive" => {
                    let (route, msg) = label.split_once(": ").unwrap_or(("", &label));
                    let from = route.split(" → ").next().unwrap_or(&s.node);
                    m.push_str(&format!("    {}->>{}: {}. {}\n", mermaid_id(from), mermaid_id(&s.node), s.step, msg));
                }
                _ if participants.contains(&s.node) => {
                    m.push_str(&format!("    Note over {}: {}. {}\n", mermaid_id(&s.node), s.step, label));
                }
                _ => m.push_str(&format!("    Note over {}: {}. {}\n", mermaid_id(&participants[0]), s.step, label)),
            }
        }
        m.push_str("```\n\n```\n");
        m.push_str(&self.to_text());
        m.push_str(&format!("```\n\nReproduce: `{}`\n", self.reproduce));
        m
    }
}

/// A fault that lasts, drawn as a span on the node's lifeline: the step kind that opens it, the
/// kinds that close it, its colour and what it is called.
const SPANS: [(&str, &[&str], &str, &str); 5] = [
    ("pause", &["resume"], "#f0a030", "paused (GC)"),
    ("hang", &["resume"], "#d0a0f0", "application stuck"),
    ("crash", &["restart"], "#777777", "down"),
    ("partition", &["heal"], "#40a0e0", "cut off"),
    ("hold", &["release"], "#60c060", "messages held"),
];

/// What one step draws, with its label wrapped to fit.
enum Shape {
    Arrow { x1: usize, x2: usize },
    Note { cx: usize },
    Band,
}

impl Trace {
    /// A sequence diagram: one lifeline per node, an arrow per delivered message, a note per other
    /// step (timers, faults), pauses, crashes, partitions and held traffic as spans on the lifeline,
    /// and the step that broke the property last, on a red band. Labels wrap; nothing is cut.
    pub fn to_svg(&self, participants: &[String]) -> String {
        const LEFT: usize = 70;
        const COL: usize = 220;
        const LINE: usize = 14;
        const TOP: usize = 50;
        // Characters per pixel of the 11 px sans-serif font, generously: a wrapped line must fit.
        let chars = |px: usize| (px * 10 / 68).max(12);
        let width = LEFT + COL * participants.len().max(1);
        let x = |name: &str| participants.iter().position(|p| p == name).map(|i| LEFT + COL / 2 + i * COL);
        let rows: Vec<(Shape, Vec<String>)> = self
            .steps
            .iter()
            .map(|st| {
                let (route, label) = st.detail.split_once(": ").unwrap_or(("", st.detail.as_str()));
                let from = route.split(" → ").next().unwrap_or("");
                match (st.kind.as_str(), x(from), x(&st.node)) {
                    ("receive", Some(x1), Some(x2)) if x1 != x2 => {
                        (Shape::Arrow { x1, x2 }, wrap(label, chars(x1.abs_diff(x2).max(COL) - 16)))
                    }
                    (_, _, Some(cx)) => (Shape::Note { cx }, wrap(&st.detail, chars(COL - 16))),
                    // World steps (time passing, healing) concern every node: a band across.
                    (_, _, None) => (Shape::Band, wrap(&st.detail, chars(width - LEFT - 12))),
                }
            })
            .collect();
        let mut ys = Vec::with_capacity(rows.len() + 1);
        let mut y = TOP;
        for (_, lines) in &rows {
            ys.push(y);
            y += lines.len() * LINE + 12;
        }
        ys.push(y);
        let height = y + 10;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n\
             <defs><marker id=\"arrow\" markerWidth=\"8\" markerHeight=\"8\" refX=\"8\" refY=\"4\" orient=\"auto\"><path d=\"M0,0 L8,4 L0,8 z\"/></marker></defs>\n"
        );
        let last = rows.len().saturating_sub(1);
        if !rows.is_empty() {
            svg.push_str(&format!(
                "<rect x=\"0\" y=\"{}\" width=\"{width}\" height=\"{}\" fill=\"#fde4e4\"/>\n",
                ys[last],
                ys[last + 1] - ys[last]
            ));
        }
        for (i, p) in participants.iter().enumerate() {
            let cx = LEFT + COL / 2 + i * COL;
            svg.push_str(&format!(
                "<rect x=\"{}\" y=\"10\" width=\"{}\" height=\"26\" rx=\"4\" fill=\"#eef\" stroke=\"#447\"/><text x=\"{cx}\" y=\"27\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\n\
                 <line x1=\"{cx}\" y1=\"36\" x2=\"{cx}\" y2=\"{height}\" stroke=\"#aab\" stroke-dasharray=\"4 3\"/>\n",
                cx - COL / 2 + 10,
                COL - 20,
                xml(p)
            ));
        }
        svg.push_str(&self.spans_svg(&x, &ys));
        for (i, ((shape, lines), st)) in rows.iter().zip(&self.steps).enumerate() {
            let (top, bottom) = (ys[i], ys[i + 1]);
            let (color, weight) = if i == last { ("#c00", "bold") } else { ("#222", "normal") };
            let time = st.time.map(|t| format!("t={t}")).unwrap_or_default();
            svg.push_str(&format!("<text x=\"4\" y=\"{}\" fill=\"#666\">{} {time}</text>\n", top + LINE, st.step));
            let text = |cx: usize, first: usize| -> String {
                let tspans: String = lines
                    .iter()
                    .enumerate()
                    .map(|(k, l)| format!("<tspan x=\"{cx}\" y=\"{}\">{}</tspan>", first + k * LINE, xml(l)))
                    .collect();
                format!("<text text-anchor=\"middle\" fill=\"{color}\" font-weight=\"{weight}\">{tspans}</text>\n")
            };
            match shape {
                Shape::Arrow { x1, x2 } => {
                    let ay = bottom - 6;
                    svg.push_str(&format!(
                        "<line x1=\"{x1}\" y1=\"{ay}\" x2=\"{x2}\" y2=\"{ay}\" stroke=\"{color}\" marker-end=\"url(#arrow)\"/>\n"
                    ));
                    svg.push_str(&text((x1 + x2) / 2, top + LINE - 2));
                }
                Shape::Note { cx } => {
                    svg.push_str(&format!(
                        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#ffd\" stroke=\"{color}\"/>\n",
                        cx - COL / 2 + 6,
                        top + 2,
                        COL - 12,
                        bottom - top - 6
                    ));
                    svg.push_str(&text(*cx, top + LINE));
                }
                Shape::Band => {
                    svg.push_str(&format!(
                        "<rect x=\"{LEFT}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#eee\" stroke=\"#999\"/>\n",
                        top + 2,
                        width - LEFT - 4,
                        bottom - top - 6
                    ));
                    svg.push_str(&text((LEFT + width) / 2, top + LINE));
                }
            }
        }
        svg.push_str("</svg>\n");
        svg
    }

    /// The lasting faults of [`SPANS`] as bars on the lifelines, from the step that opens one to
    /// the step that closes it (a `world` heal closes every open span; an open one runs to the end).
    fn spans_svg(&self, x: &impl Fn(&str) -> Option<usize>, ys: &[usize]) -> String {
        let mut open: Vec<(usize, usize, usize)> = Vec::new();
        let mut bars = Vec::new();
        for (i, st) in self.steps.iter().enumerate() {
            let node_x = x(&st.node);
            open.retain(|&(kind, cx, from)| {
                let closes = SPANS[kind].1.contains(&st.kind.as_str())
                    && (node_x == Some(cx) || (node_x.is_none() && st.kind == "heal"));
                if closes {
                    bars.push((kind, cx, from, i + 1));
                }
                !closes
            });
            if let (Some(kind), Some(cx)) = (SPANS.iter().position(|s| s.0 == st.kind), node_x) {
                open.push((kind, cx, i));
            }
        }
        let end = ys.len() - 1;
        bars.extend(open.into_iter().map(|(kind, cx, from)| (kind, cx, from, end)));
        bars.iter()
            .map(|&(kind, cx, from, to)| {
                let (_, _, color, name) = SPANS[kind];
                format!(
                    "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"{}\" fill=\"{color}\" fill-opacity=\"0.45\"><title>{name}</title></rect>\n\
                     <text x=\"{}\" y=\"{}\" font-size=\"9\" fill=\"{color}\" transform=\"rotate(90 {} {})\">{name}</text>\n",
                    cx - 6,
                    ys[from],
                    ys[to] - ys[from],
                    cx + 8,
                    ys[from] + 4,
                    cx + 8,
                    ys[from] + 4
                )
            })
            .collect()
    }

    /// A page a person can open: the diagram, every step in full, and how to reproduce it.
    pub fn to_html(&self, participants: &[String]) -> String {
        let rows: String = self
            .steps
            .iter()
            .map(|s| {
                let t = s.time.map(|t| t.to_string()).unwrap_or_default();
                format!(
                    "<tr><td>{}</td><td>{t}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                    s.step,
                    xml(&s.node),
                    xml(&s.kind),
                    xml(&s.detail)
                )
            })
            .collect();
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{spec}: {prop}</title>\n\
             <style>body{{font-family:sans-serif;margin:2em}} td{{padding:2px 8px;vertical-align:top}} tr:nth-child(even){{background:#f4f4f8}} code{{background:#eee;padding:2px}}</style></head><body>\n\
             <h1><code>{prop}</code> violated</h1>\n<p>{spec} ({engine}{seed})</p>\n<p>{note}</p>\n{svg}\n<table><tr><th>step</th><th>time</th><th>node</th><th>kind</th><th>detail</th></tr>\n{rows}</table>\n\
             <p>Reproduce: <code>{repro}</code></p>\n</body></html>\n",
            spec = xml(&self.spec),
            prop = xml(&self.property),
            engine = xml(&self.engine),
            seed = self.seed.map(|s| format!(", seed {s}")).unwrap_or_default(),
            svg = self.to_svg(participants),
            note = xml(&self.slice_note()),
            repro = xml(&self.reproduce),
        )
    }
}

pub(crate) fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `s` in lines of at most `n` characters, broken at spaces (a longer word is broken where it must).
fn wrap(s: &str, n: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in s.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        while line.chars().count() + usize::from(!line.is_empty()) + word.len() > n {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            let rest = word.split_off(n.min(word.len()));
            lines.push(word.into_iter().collect());
            word = rest;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.extend(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn mermaid_id(name: &str) -> String {
    name.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_wrap_at_spaces_and_lose_nothing() {
        let text = "redis → client-0: EVAL compare-and-delete 1 lock c0:0 ⇒ the write ACCEPTS stock=1";
        let lines = wrap(text, 20);
        assert!(lines.iter().all(|l| l.chars().count() <= 20), "{lines:?}");
        assert_eq!(lines.join(" "), text);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), [""]);
    }

    fn step(step: u32, node: &str, kind: &str, detail: &str) -> Step {
        Step { step, time: None, node: node.into(), kind: kind.into(), detail: detail.into(), observed: false }
    }

    #[test]
    fn lasting_faults_are_spans_and_the_violation_is_marked() {
        let long = "client-0 → storage: UPDATE SET stock = 1 ⇒ the storage ACCEPTS write stock 1 → 1 from client-0: a sale is lost";
        let t = Trace {
            spec: "x".into(),
            engine: "check".into(),
            seed: None,
            property: "no_stale_write".into(),
            steps: vec![
                step(1, "client-0", "pause", "GcPause: client-0 stops the world"),
                step(2, "redis", "crash", "redis crashes"),
                step(3, "client-0", "resume", "client-0 resumes"),
                step(4, "storage", "receive", long),
            ],
            reproduce: String::new(),
            plan: None,
            sliced_from: None,
        };
        let svg = t.to_svg(&["client-0".into(), "redis".into(), "storage".into()]);
        assert!(svg.contains("<title>paused (GC)</title>") && svg.contains("<title>down</title>"), "{svg}");
        assert!(svg.contains("ACCEPTS") && svg.contains("lost</tspan>"), "no word may be cut: {svg}");
        assert!(svg.contains("#fde4e4") && svg.contains("font-weight=\"bold\""), "{svg}");
    }

    #[test]
    fn a_slice_keeps_observed_steps_faults_and_the_violation_with_their_numbers() {
        let mut granted = step(2, "redis", "receive", "client-1 → redis: SET ⇒ lock granted to client-1");
        granted.observed = true;
        let t = Trace {
            spec: "x".into(),
            engine: "sim".into(),
            seed: Some(1),
            property: "mutual_exclusion".into(),
            steps: vec![
                step(1, "redis", "receive", "client-1 → redis: SET (refused)"),
                granted,
                step(3, "client-0", "pause", "GcPause"),
                step(4, "client-1", "timer", "timer retry fires"),
                step(5, "client-1", "receive", "redis → client-1: OK"),
            ],
            reproduce: String::new(),
            plan: None,
            sliced_from: None,
        };
        let s = t.slice();
        assert_eq!(s.steps.iter().map(|s| s.step).collect::<Vec<_>>(), [2, 3, 5]);
        assert!(s.to_markdown(&["redis".into()]).contains("3 of 5 steps"));
        assert_eq!(t.slice_note(), "");
    }

    #[test]
    fn a_trace_round_trips_through_json() {
        let t = Trace {
            spec: "models/x.toml".into(),
            engine: "check".into(),
            seed: None,
            property: "mutual_exclusion".into(),
            steps: vec![Step {
                step: 1,
                time: Some(0),
                node: "redis".into(),
                kind: "receive".into(),
                detail: "client-0 → redis: Acquire".into(),
                observed: false,
            }],
            reproduce: "lockcheck check models/x.toml".into(),
            plan: None,
            sliced_from: None,
        };
        let back: Trace = serde_json::from_str(&t.to_json()).unwrap();
        assert_eq!(back, t);
        let md = t.to_markdown(&["client-0".into(), "redis".into()]);
        assert!(md.contains("client_0->>redis: 1. Acquire") && md.contains("participant client_0 as client-0"), "{md}");
        let html = t.to_html(&["client-0".into(), "redis".into()]);
        assert!(
            html.contains("<svg") && html.contains("marker-end") && html.contains("client-0 → redis: Acquire"),
            "{html}"
        );
    }
}

/// 64-bit seeds travel as JSON strings: a JSON number above 2^53 is rounded by JavaScript tools
/// (`jq`), and a rounded seed replays another run. Numbers are still read, for older traces.
pub mod seed_text {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Number(u64),
    }

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(n),
            Either::Text(t) => t.parse().map_err(|_| serde::de::Error::custom(format!("`{t}` is not a 64-bit seed"))),
        }
    }

    pub mod opt {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => super::serialize(v, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(deserialize_with = "super::deserialize")] u64);
            Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
        }
    }
}

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
}

impl Trace {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a trace serializes");
        s.push('\n');
        s
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
        let mut m =
            format!("# {}: `{}` violated ({})\n\n```mermaid\nsequenceDiagram\n", self.spec, self.property, self.engine);
        for p in participants {
            m.push_str(&format!("    participant {}\n", mermaid_id(p)));
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

impl Trace {
    /// A sequence diagram: one lifeline per node, an arrow per delivered message, a note per other
    /// step (timers, faults), the step that broke the property last and in red.
    pub fn to_svg(&self, participants: &[String]) -> String {
        const LEFT: usize = 70;
        const COL: usize = 190;
        const ROW: usize = 26;
        const TOP: usize = 60;
        let width = LEFT + COL * participants.len().max(1);
        let height = TOP + ROW * (self.steps.len() + 1);
        let x = |name: &str| participants.iter().position(|p| p == name).map(|i| LEFT + COL / 2 + i * COL);
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n\
             <defs><marker id=\"arrow\" markerWidth=\"8\" markerHeight=\"8\" refX=\"8\" refY=\"4\" orient=\"auto\"><path d=\"M0,0 L8,4 L0,8 z\"/></marker></defs>\n"
        );
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
        let last = self.steps.len();
        for (i, st) in self.steps.iter().enumerate() {
            let y = TOP + ROW * i + ROW / 2;
            let color = if i + 1 == last { "#c00" } else { "#222" };
            let time = st.time.map(|t| format!("t={t}")).unwrap_or_default();
            svg.push_str(&format!("<text x=\"4\" y=\"{}\" fill=\"#666\">{} {}</text>\n", y + 4, st.step, time));
            let (route, label) = st.detail.split_once(": ").unwrap_or(("", st.detail.as_str()));
            let from = route.split(" → ").next().unwrap_or("");
            match (st.kind.as_str(), x(from), x(&st.node)) {
                ("receive", Some(x1), Some(x2)) if x1 != x2 => {
                    let mid = (x1 + x2) / 2;
                    svg.push_str(&format!(
                        "<line x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"{color}\" marker-end=\"url(#arrow)\"/>\n\
                         <text x=\"{mid}\" y=\"{}\" text-anchor=\"middle\" fill=\"{color}\">{}</text>\n",
                        y - 3,
                        xml(&clip(label, 60))
                    ));
                }
                (_, _, Some(cx)) => {
                    svg.push_str(&format!(
                        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"18\" fill=\"#ffd\" stroke=\"{color}\"/>\n\
                         <text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" fill=\"{color}\">{}</text>\n",
                        cx - COL / 2 + 6,
                        y - 10,
                        COL - 12,
                        y + 3,
                        xml(&clip(&st.detail, 34))
                    ));
                }
                // World steps (time passing, healing) concern every node: a band across the diagram.
                (_, _, None) => {
                    svg.push_str(&format!(
                        "<rect x=\"{LEFT}\" y=\"{}\" width=\"{}\" height=\"18\" fill=\"#eee\" stroke=\"#999\"/>\n\
                         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{color}\">{}</text>\n",
                        y - 10,
                        width - LEFT - 4,
                        (LEFT + width) / 2,
                        y + 3,
                        xml(&clip(&st.detail, 120))
                    ));
                }
            }
        }
        svg.push_str("</svg>\n");
        svg
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
             <h1><code>{prop}</code> violated</h1>\n<p>{spec} ({engine}{seed})</p>\n{svg}\n<table><tr><th>step</th><th>time</th><th>node</th><th>kind</th><th>detail</th></tr>\n{rows}</table>\n\
             <p>Reproduce: <code>{repro}</code></p>\n</body></html>\n",
            spec = xml(&self.spec),
            prop = xml(&self.property),
            engine = xml(&self.engine),
            seed = self.seed.map(|s| format!(", seed {s}")).unwrap_or_default(),
            svg = self.to_svg(participants),
            repro = xml(&self.reproduce),
        )
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}

fn mermaid_id(name: &str) -> String {
    name.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

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
            }],
            reproduce: "lockcheck check models/x.toml".into(),
            plan: None,
        };
        let back: Trace = serde_json::from_str(&t.to_json()).unwrap();
        assert_eq!(back, t);
        let md = t.to_markdown(&["client-0".into(), "redis".into()]);
        assert!(md.contains("client_0->>redis: 1. Acquire"), "{md}");
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

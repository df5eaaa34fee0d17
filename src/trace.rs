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
    #[serde(skip_serializing_if = "Option::is_none", default)]
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
    }
}

//! `reports/index.html`: the report page as one self-contained file (no network, no script from
//! elsewhere): the Markdown page rendered, every plot inline, and the comparison's counterexamples
//! drawn as sequence diagrams. A small script marks on `<body>` how many SVG drawings the browser
//! laid out with a non-empty box, which the headless-browser test reads.

use crate::battery::Judged;
use crate::report::plots::Chart;
use crate::trace::{Trace, xml};

const STYLE: &str = "body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;line-height:1.4}\
table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccd;padding:3px 6px;vertical-align:top}\
th{background:#eef}tr:nth-child(even){background:#f7f7fb}code{background:#eee;padding:1px 3px}\
figure{margin:1em 0;overflow-x:auto}figcaption{font-weight:bold;margin:.5em 0}";

/// Counts the drawings the browser laid out: an SVG with children and a non-empty bounding box.
const CHECK: &str = "<script>addEventListener('load',function(){var all=document.querySelectorAll('body svg');\
var drawn=0;all.forEach(function(s){var b=s.getBBox();if(s.childElementCount>0&&b.width>0&&b.height>0)drawn++;});\
document.body.setAttribute('data-svgs',all.length);document.body.setAttribute('data-drawn',drawn);});</script>";

/// The page. `markdown` is `reports/README.md`; its links to trace pages (`.md`) go to their
/// pictures (`.html`), and each plot image is replaced by the chart itself.
pub fn index(markdown: &str, charts: &[Chart], battery: &[Judged]) -> String {
    use pulldown_cmark::{Options, Parser, html};
    let mut body = String::new();
    html::push_html(&mut body, Parser::new_ext(markdown, Options::ENABLE_TABLES));
    let mut body = body.replace(".md\"", ".html\"");
    for c in charts {
        let start = body.find(&format!("<img src=\"plots/{}\"", c.file));
        if let Some((start, len)) = start.and_then(|s| body[s..].find("/>").map(|l| (s, l + 2))) {
            body.replace_range(start..start + len, &format!("<figure>{}</figure>", strip_prolog(&c.to_svg())));
        }
    }
    let mut diagrams = String::from("<h2>The comparison's counterexamples, drawn</h2>\n");
    diagrams.push_str("<p>The model checker's shortest counterexample for each <b>no</b> of the comparison.</p>\n");
    for j in battery {
        for r in &j.model.results {
            if let Some(t) = &r.trace {
                diagrams.push_str(&figure(&j.approach.name, t, &j.model.participants));
            }
        }
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>lockcheck report</title>\
         <style>{STYLE}</style>{CHECK}</head><body>\n{body}{diagrams}</body></html>\n"
    )
}

fn figure(approach: &str, t: &Trace, participants: &[String]) -> String {
    format!(
        "<figure><figcaption>{}: <code>{}</code> violated in {} steps</figcaption>{}</figure>\n",
        xml(approach),
        xml(&t.property),
        t.steps.len(),
        t.to_svg(participants)
    )
}

/// plotters writes an XML declaration, which is not allowed inside an HTML body.
fn strip_prolog(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

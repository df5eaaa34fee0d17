//! The report's plots: simulator sweeps over one setting of the standard battery, each point with
//! its 95 % interval, drawn as SVG by `plotters`.
//!
//! `sims/plots/plots.toml` says what to sweep: which approaches of the battery (a series each,
//! optionally with other knobs), which of the battery's faults stay on, which setting moves along
//! the x axis and what is measured on y (a property's violation rate or a cost metric).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::battery::{Approach, Battery, SIM_FAULTS};
use crate::property::PropertyName;
use crate::sim::driver::RunOutcome;
use crate::sim::{Options, Seeds, SimOutcome};
use crate::spec::{SpecError, edit_field, from_table, read_table};

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlotFile {
    plot: Vec<PlotSpec>,
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlotSpec {
    /// File name of the chart(s): `plots/<id>_<y>.svg`.
    pub id: String,
    pub title: String,
    /// The battery's setting moved along the x axis (a range such as `faults.pause_ms` is set to
    /// `[x, x]`).
    pub x: String,
    pub x_label: String,
    /// The x values are multiples of the scenario's TTL (`time.ttl_ticks` × `time.tick_ms`).
    #[serde(default)]
    pub x_per_ttl: bool,
    pub values: Vec<f64>,
    /// What each chart measures: a property (its violation rate), `messages_per_acquisition`,
    /// `store_requests_per_acquisition` or `wakeup_latency_ms`.
    pub y: Vec<String>,
    pub seeds: u64,
    /// The battery's faults (entries of the battery's fault list, such as `faults.pauses`) that
    /// stay on; the others are off.
    #[serde(default)]
    pub faults: Vec<String>,
    /// Other settings changed for every point (dotted paths).
    #[serde(default)]
    pub set: toml::Table,
    pub series: Vec<SeriesSpec>,
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesSpec {
    /// A row of `models/battery/approaches.toml`, by its name.
    pub approach: String,
    #[serde(default)]
    pub label: Option<String>,
    /// Knobs added to the row's own.
    #[serde(default)]
    pub options: toml::Table,
}

/// What a chart measures.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Measure {
    Rate(PropertyName),
    MessagesPerAcquisition,
    StoreRequestsPerAcquisition,
    WakeupLatency,
}

impl Measure {
    fn parse(s: &str) -> Option<Measure> {
        match s {
            "messages_per_acquisition" => Some(Measure::MessagesPerAcquisition),
            "store_requests_per_acquisition" => Some(Measure::StoreRequestsPerAcquisition),
            "wakeup_latency_ms" => Some(Measure::WakeupLatency),
            _ => PropertyName::parse(s).map(Measure::Rate),
        }
    }

    fn label(self) -> String {
        match self {
            Measure::Rate(p) => format!("runs violating {} (rate)", p.name()),
            Measure::MessagesPerAcquisition => "messages per acquisition".into(),
            Measure::StoreRequestsPerAcquisition => "requests to the lock's servers per acquisition".into(),
            Measure::WakeupLatency => "wake-up latency after a release, median (ms)".into(),
        }
    }

    /// The measure over one sweep: (value, low, high) of a 95 % interval, or `None` when the sweep
    /// has nothing to measure (a property not judged or never exercised, no acquisition, no waiter).
    fn of(self, o: &SimOutcome, runs: &[RunOutcome]) -> Option<(f64, f64, f64)> {
        match self {
            // A rate of 0 over runs that never exercised the property would be a vacuous point.
            Measure::Rate(p) => o
                .results
                .iter()
                .find(|r| r.property == p && r.verdict != crate::spec::Verdict::Vacuous)
                .map(|r| (r.rate, r.rate_low, r.rate_high)),
            Measure::MessagesPerAcquisition => {
                ratio_interval(runs.iter().map(|r| (r.metrics.messages as f64, r.metrics.acquisitions as f64)))
            }
            Measure::StoreRequestsPerAcquisition => {
                ratio_interval(runs.iter().map(|r| (r.metrics.store_requests as f64, r.metrics.acquisitions as f64)))
            }
            Measure::WakeupLatency => {
                let mut all: Vec<u64> = runs.iter().flat_map(|r| r.metrics.wakeup_latency_ms.iter().copied()).collect();
                all.sort_unstable();
                median_interval(&all)
            }
        }
    }
}

/// Σy/Σx over the seeds with the ratio estimator's standard error (seeds are the independent
/// units, acquisitions within a seed are not).
fn ratio_interval(pairs: impl Iterator<Item = (f64, f64)>) -> Option<(f64, f64, f64)> {
    let pairs: Vec<(f64, f64)> = pairs.collect();
    let n = pairs.len() as f64;
    let (sy, sx) = pairs.iter().fold((0.0, 0.0), |(a, b), (y, x)| (a + y, b + x));
    if sx == 0.0 || pairs.len() < 2 {
        return None;
    }
    let r = sy / sx;
    let var = pairs.iter().map(|(y, x)| (y - r * x).powi(2)).sum::<f64>() / (n - 1.0);
    let se = (var / n).sqrt() / (sx / n);
    Some((r, (r - 1.96 * se).max(0.0), r + 1.96 * se))
}

/// The median with its distribution-free 95 % interval (order statistics n/2 ± 0.98 √n).
fn median_interval(sorted: &[u64]) -> Option<(f64, f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let half = 0.98 * (n as f64).sqrt();
    let at = |i: f64| sorted[(i.round().max(0.0) as usize).min(n - 1)] as f64;
    Some((at((n - 1) as f64 / 2.0), at(n as f64 / 2.0 - half - 1.0), at(n as f64 / 2.0 + half)))
}

#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub low: f64,
    pub high: f64,
    pub runs: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Series {
    pub label: String,
    pub points: Vec<Point>,
}

/// One chart: what was measured, and its series.
#[derive(Clone, Debug, Serialize)]
pub struct Chart {
    pub file: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// The plot file, read and checked against the battery before anything runs.
pub struct Plots {
    path: PathBuf,
    specs: Vec<PlotSpec>,
}

impl Plots {
    pub fn load(path: &Path, battery: &Battery) -> Result<Plots, SpecError> {
        let file: PlotFile = from_table(path, toml::Value::Table(read_table(path)?))?;
        let plots = Plots { path: path.to_path_buf(), specs: file.plot };
        for (i, p) in plots.specs.iter().enumerate() {
            let field = |f: &str| format!("plot[{i}].{f}");
            for y in &p.y {
                Measure::parse(y).ok_or_else(|| {
                    SpecError::field(path, field("y"), format!("`{y}` is neither a property nor a metric"))
                })?;
            }
            if p.values.is_empty() || p.series.is_empty() || p.y.is_empty() {
                return Err(SpecError::field(path, field("values"), "a plot needs values, series and y"));
            }
            if p.seeds == 0 || p.seeds > 10_000 {
                return Err(SpecError::field(path, field("seeds"), format!("must be 1..=10000, got {}", p.seeds)));
            }
            for f in &p.faults {
                if !SIM_FAULTS.iter().any(|(_, s)| s == f) {
                    return Err(SpecError::field(
                        path,
                        field("faults"),
                        format!("`{f}` is not a fault of the battery"),
                    ));
                }
            }
            // Every point must build before anything runs.
            for s in &p.series {
                for &x in &p.values {
                    plots.scenario(battery, p, s, x)?;
                }
            }
        }
        Ok(plots)
    }

    /// The battery's scenario for one approach, at one x.
    fn scenario(
        &self,
        battery: &Battery,
        p: &PlotSpec,
        s: &SeriesSpec,
        x: f64,
    ) -> Result<crate::sim::spec::LoadedSim, SpecError> {
        let path = &self.path;
        let at = |f: &str, why: String| SpecError::field(path, format!("plot `{}`: {f}", p.id), why);
        let approach: &Approach = battery
            .approaches
            .iter()
            .find(|a| a.name == s.approach)
            .ok_or_else(|| at("series.approach", format!("`{}` is not a row of the battery", s.approach)))?;
        let (template_path, mut table) = battery.sim_table(approach);
        let mut options = approach.options.clone();
        options.extend(s.options.clone());
        table.insert("options".into(), toml::Value::Table(options));
        for (_, fault) in SIM_FAULTS.iter().filter(|(_, f)| !p.faults.iter().any(|k| k == f)) {
            table = edit_field(&table, fault, |v| Ok(zero_like(v))).map_err(|why| at("faults", why))?;
        }
        for (key, value) in &p.set {
            table = edit_field(&table, key, |_| Ok(value.clone())).map_err(|why| at(&format!("set.{key}"), why))?;
        }
        let ttl_ms = |t: &toml::Table| -> Option<f64> {
            let time = t.get("time")?.as_table()?;
            Some((time.get("ttl_ticks")?.as_integer()? * time.get("tick_ms")?.as_integer()?) as f64)
        };
        let value = if p.x_per_ttl {
            x * ttl_ms(&table).ok_or_else(|| at("x_per_ttl", "the battery sets no time.ttl_ticks".into()))?
        } else {
            x
        };
        table = edit_field(&table, &p.x, |v| set_like(v, value)).map_err(|why| at("x", why))?;
        table.insert("seeds".into(), toml::Value::Integer(p.seeds as i64));
        let mut l = crate::sim::spec::sim_from_table(template_path, &table)?;
        crate::cli::validate(&l.as_model())?;
        l.name = format!("plot {} {} x={x}", p.id, approach.id());
        Ok(l)
    }

    /// Runs every point and returns the charts, in the file's order.
    pub fn run(&self, battery: &Battery, opts: &Options) -> Result<Vec<Chart>, SpecError> {
        let opts = Options { shrink: false, progress: false, ..*opts };
        let points = self.specs.iter().map(|p| p.series.len() * p.values.len()).sum::<usize>();
        let bar = crate::progress::bar("plots", points as u64, "points");
        let mut charts = Vec::new();
        for p in &self.specs {
            let measures: Vec<Measure> = p.y.iter().filter_map(|y| Measure::parse(y)).collect();
            let mut per_measure: Vec<Vec<Series>> = vec![Vec::new(); measures.len()];
            for s in &p.series {
                let label = s.label.clone().unwrap_or_else(|| s.approach.clone());
                let mut points: Vec<Vec<Point>> = vec![Vec::new(); measures.len()];
                for &x in &p.values {
                    bar.set_message(format!("{} {label} x={x}", p.id));
                    let sim = self.scenario(battery, p, s, x)?;
                    let seeds = Seeds { from: 0, to: p.seeds, shard: None };
                    let (o, runs) = crate::sim::simulate(&sim, &seeds, &opts, None)?;
                    for ((m, y), pts) in measures.iter().zip(&p.y).zip(&mut points) {
                        // A point with nothing measured must not vanish from the chart unnoticed.
                        let (y, low, high) = m.of(&o, &runs).ok_or_else(|| {
                            SpecError::field(
                                &self.path,
                                format!("plot `{}`: y", p.id),
                                format!("`{y}` measured nothing for `{label}` at x = {x} (not judged, never exercised, or no acquisition)"),
                            )
                        })?;
                        pts.push(Point { x, y, low, high, runs: o.runs });
                    }
                    bar.inc(1);
                }
                for (series, pts) in per_measure.iter_mut().zip(points) {
                    series.push(Series { label: label.clone(), points: pts });
                }
            }
            for ((m, y), series) in measures.iter().zip(&p.y).zip(per_measure) {
                charts.push(Chart {
                    file: format!("{}_{y}.svg", p.id),
                    title: p.title.clone(),
                    x_label: p.x_label.clone(),
                    y_label: m.label(),
                    series,
                });
            }
        }
        bar.finish_and_clear();
        Ok(charts)
    }
}

/// A fault setting turned off, whatever its type (absent stays absent).
fn zero_like(v: Option<&toml::Value>) -> toml::Value {
    match v {
        Some(toml::Value::Float(_)) => toml::Value::Float(0.0),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(false),
        _ => toml::Value::Integer(0),
    }
}

/// `value` in the shape of the setting it replaces: `[v, v]` for a range, an integer for a count.
fn set_like(v: Option<&toml::Value>, value: f64) -> Result<toml::Value, String> {
    let int = || {
        if value.fract() == 0.0 {
            Ok(toml::Value::Integer(value as i64))
        } else {
            Err(format!("takes whole numbers, got {value}"))
        }
    };
    match v {
        Some(toml::Value::Array(a)) if a.len() == 2 => Ok(toml::Value::Array(vec![int()?, int()?])),
        Some(toml::Value::Float(_)) => Ok(toml::Value::Float(value)),
        _ => int(),
    }
}

/// Tableau's ten colours: distinct on white, none too pale to read as a line.
const TABLEAU: [plotters::style::RGBColor; 10] = {
    use plotters::style::RGBColor as C;
    [
        C(31, 119, 180),
        C(255, 127, 14),
        C(44, 160, 44),
        C(214, 39, 40),
        C(148, 103, 189),
        C(140, 86, 75),
        C(227, 119, 194),
        C(127, 127, 127),
        C(188, 189, 34),
        C(23, 190, 207),
    ]
};

impl Chart {
    /// The chart as a self-contained SVG document: a line per series, each point with its interval.
    pub fn to_svg(&self) -> String {
        use plotters::prelude::*;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (760, 440)).into_drawing_area();
            let points = self.series.iter().flat_map(|s| &s.points);
            let (x_lo, x_hi) = points.clone().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.x), b.max(p.x)));
            let y_hi = points.fold(0.0f64, |a, p| a.max(p.high));
            let (x_lo, x_hi) = if x_lo > x_hi { (0.0, 1.0) } else { (x_lo, x_hi) };
            let pad = (x_hi - x_lo).max(1e-9) * 0.04;
            let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
                root.fill(&WHITE)?;
                let mut chart = ChartBuilder::on(&root)
                    .caption(&self.title, ("sans-serif", 17))
                    .margin(12)
                    .x_label_area_size(40)
                    .y_label_area_size(56)
                    .build_cartesian_2d((x_lo - pad)..(x_hi + pad), 0.0..(y_hi * 1.08).max(1e-6))?;
                chart
                    .configure_mesh()
                    .x_desc(self.x_label.as_str())
                    .y_desc(self.y_label.as_str())
                    .light_line_style(WHITE.mix(0.0))
                    .draw()?;
                for (i, s) in self.series.iter().enumerate() {
                    let color = TABLEAU[i % TABLEAU.len()].to_rgba();
                    let line: Vec<(f64, f64)> = s.points.iter().map(|p| (p.x, p.y)).collect();
                    chart
                        .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
                        .label(s.label.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                    chart.draw_series(line.iter().map(|&(x, y)| Circle::new((x, y), 3, color.filled())))?;
                    chart.draw_series(
                        s.points
                            .iter()
                            .map(|p| ErrorBar::new_vertical(p.x, p.low, p.y, p.high, color.stroke_width(1), 6)),
                    )?;
                }
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK.mix(0.3))
                    .draw()?;
                root.present()?;
                Ok(())
            };
            draw().expect("drawing into a string cannot fail");
        }
        svg.push('\n');
        svg
    }

    /// The points as a Markdown table (x down, one column per series), for readers of the text.
    pub fn to_markdown(&self) -> String {
        let mut md = format!("| {} |", self.x_label);
        for s in &self.series {
            md.push_str(&format!(" {} |", s.label));
        }
        md.push_str(&format!("\n|---|{}\n", "---|".repeat(self.series.len())));
        let mut xs: Vec<f64> = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.x)).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let rate = self.y_label.contains("rate");
        for x in xs {
            md.push_str(&format!("| {x} |"));
            for s in &self.series {
                let cell = match s.points.iter().find(|p| p.x == x) {
                    Some(p) if rate => format!(" {:.2} [{:.2}, {:.2}] |", p.y, p.low, p.high),
                    Some(p) => format!(" {:.1} [{:.1}, {:.1}] |", p.y, p.low, p.high),
                    None => " · |".into(),
                };
                md.push_str(&cell);
            }
            md.push('\n');
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_plots_build_and_a_wrong_row_is_named() {
        let b = Battery::load(Path::new("models"), Path::new("sims")).unwrap();
        let p = Plots::load(Path::new("sims/plots/plots.toml"), &b).unwrap();
        assert!(p.specs.iter().any(|p| p.x_per_ttl));
        let text = std::fs::read_to_string("sims/plots/plots.toml").unwrap().replace("Redis SET NX PX\"", "x\"");
        let wrong = text.replacen("approach = \"SET NX PX, compare-and-delete\"", "approach = \"Memcached\"", 1);
        let path = std::env::temp_dir().join(format!("lockcheck-plots-{}.toml", std::process::id()));
        std::fs::write(&path, wrong).unwrap();
        let e = Plots::load(&path, &b).err().unwrap().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(e.contains("series.approach") && e.contains("`Memcached` is not a row of the battery"), "{e}");
    }

    #[test]
    fn a_ratio_over_identical_seeds_has_no_spread() {
        let (r, lo, hi) = ratio_interval([(10.0, 2.0), (10.0, 2.0), (10.0, 2.0)].into_iter()).unwrap();
        assert_eq!((r, lo, hi), (5.0, 5.0, 5.0));
        let (r, lo, hi) = ratio_interval([(10.0, 2.0), (30.0, 2.0), (20.0, 2.0)].into_iter()).unwrap();
        assert!(lo < r && r < hi && (r - 10.0).abs() < 1e-9, "{lo} {r} {hi}");
        assert_eq!(ratio_interval([(1.0, 0.0), (2.0, 0.0)].into_iter()), None);
    }

    #[test]
    fn the_median_interval_brackets_the_median() {
        let v: Vec<u64> = (0..100).collect();
        let (m, lo, hi) = median_interval(&v).unwrap();
        assert!((39.0..m).contains(&lo) && (m..=60.0).contains(&hi) && hi - lo <= 21.0, "{lo} {m} {hi}");
        assert_eq!(median_interval(&[]), None);
        assert_eq!(median_interval(&[7]), Some((7.0, 7.0, 7.0)));
    }

    #[test]
    fn settings_keep_their_shape() {
        let range = toml::Value::Array(vec![toml::Value::Integer(1), toml::Value::Integer(2)]);
        assert_eq!(set_like(Some(&range), 300.0).unwrap().to_string(), "[300, 300]");
        assert_eq!(set_like(Some(&toml::Value::Float(0.1)), 0.5).unwrap(), toml::Value::Float(0.5));
        assert!(set_like(None, 1.5).is_err());
    }

    #[test]
    fn a_chart_draws_every_series_with_its_label() {
        let c = Chart {
            file: "x.svg".into(),
            title: "t".into(),
            x_label: "pause ÷ TTL".into(),
            y_label: "runs violating no_stale_write (rate)".into(),
            series: vec![Series {
                label: "Redis & co".into(),
                points: vec![Point { x: 0.5, y: 0.1, low: 0.05, high: 0.2, runs: 10 }],
            }],
        };
        let svg = c.to_svg();
        assert!(svg.starts_with("<svg") && svg.contains("Redis &amp; co") && svg.contains("<circle"), "{svg}");
        assert!(c.to_markdown().contains("| 0.5 | 0.10 [0.05, 0.20] |"), "{}", c.to_markdown());
    }
}

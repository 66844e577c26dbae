//! Results: a text table, JSON, and an SVG chart.

use std::fmt::Write as _;

use crate::figures::{Figure, Target, Unit};
use crate::stats::Summary;

/// One figure's outcome.
pub(crate) struct FigureResult {
    pub(crate) figure: &'static Figure,
    pub(crate) imps: Vec<String>,
    pub(crate) summaries: Vec<Summary>,
    /// Second implementation over the first, per repetition.
    pub(crate) ratio: Option<Summary>,
    pub(crate) met: Option<bool>,
    /// CPU time (µs, both processes) per operation, per implementation, where measured.
    pub(crate) cpu: Vec<Option<Summary>>,
}

impl FigureResult {
    pub(crate) fn new(figure: &'static Figure, imps: &[&str], samples: &[Vec<f64>]) -> Self {
        let summaries: Vec<Summary> = samples.iter().map(|s| Summary::of(s)).collect();
        let ratio = (samples.len() >= 2 && !samples[0].is_empty()).then(|| {
            let ratios: Vec<f64> = samples[0]
                .iter()
                .zip(&samples[1])
                .map(|(base, ours)| ours / base)
                .collect();
            Summary::of(&ratios)
        });
        let ours = summaries.get(1).or(summaries.first()).map(|s| s.median);
        let met = match figure.target {
            Target::RatioAtMost(limit) => ratio.map(|r| r.median <= limit),
            Target::RatioAtLeast(limit) => ratio.map(|r| r.median >= limit),
            Target::AtLeast(limit) => ours.map(|v| v >= limit),
            Target::AtMost(limit) => ours.map(|v| v <= limit),
            Target::AtMostAndRatioAtMost(limit, ratio_limit) => ours
                .zip(ratio)
                .map(|(v, r)| v <= limit && r.median <= ratio_limit),
            Target::Report => None,
        };
        Self {
            figure,
            imps: imps.iter().map(|s| (*s).to_owned()).collect(),
            summaries,
            ratio,
            met,
            cpu: Vec::new(),
        }
    }

    /// Adds the CPU time per operation of each implementation (empty where not measured).
    pub(crate) fn add_cpu(&mut self, samples: &[Vec<f64>]) {
        self.cpu = samples
            .iter()
            .map(|s| (!s.is_empty()).then(|| Summary::of(s)))
            .collect();
    }

    /// ", CPU x µs/op" (or ns/op) for implementation `i`, if measured.
    fn cpu_text(&self, i: usize) -> String {
        self.cpu
            .get(i)
            .copied()
            .flatten()
            .map_or(String::new(), |c| {
                format!(", CPU {}/op", cpu_time(c.median))
            })
    }

    pub(crate) fn line(&self) -> String {
        let values: Vec<String> = self
            .imps
            .iter()
            .zip(&self.summaries)
            .enumerate()
            .map(|(i, (imp, s))| {
                let value = format_value(self.figure.unit, s.median);
                format!("{imp} {value}{}", self.cpu_text(i))
            })
            .collect();
        let ratio = self.ratio.map_or(String::new(), |r| {
            format!("; ratio {:.2} ({:.2}–{:.2})", r.median, r.min, r.max)
        });
        format!(
            "{}: {}{ratio} {}",
            self.figure.key,
            values.join(", "),
            self.verdict()
        )
    }

    fn target_text(&self) -> String {
        match self.figure.target {
            Target::RatioAtMost(x) => format!("≤ {x}× {}", self.imps[0]),
            Target::RatioAtLeast(x) => format!("≥ {x}× {}", self.imps[0]),
            Target::AtLeast(x) => format!("≥ {}", format_value(self.figure.unit, x)),
            Target::AtMost(x) => format!("≤ {}", format_value(self.figure.unit, x)),
            Target::AtMostAndRatioAtMost(x, r) => format!(
                "≤ {} and ≤ {r}× {}",
                format_value(self.figure.unit, x),
                self.imps[0]
            ),
            Target::Report => "report".into(),
        }
    }

    fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "",
        }
    }
}

/// CPU time per operation, given in µs: in ns below a microsecond, where a tenth of a
/// microsecond would hide the differences that matter.
fn cpu_time(micros: f64) -> String {
    if micros < 1.0 {
        format!("{:.0} ns", micros * 1e3)
    } else {
        format!("{micros:.1} µs")
    }
}

pub(crate) fn format_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Micros => format!("{v:.1} µs"),
        Unit::PerSec if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        Unit::PerSec if v >= 1e4 => format!("{:.0} k/s", v / 1e3),
        Unit::PerSec => format!("{v:.0} /s"),
        Unit::BytesPerSec => format!("{:.2} GB/s", v / 1e9),
        Unit::KiB => format!("{v:.0} KiB"),
    }
}

/// What the run ran on.
pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{cpus} CPUs, {model}, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// The header row of a results table: only tables under it are rewritten by `--update`.
const TABLE_HEADER: &str = "| figure | implementations | ratio | target | |";

pub(crate) fn table(machine: &str, results: &[FigureResult]) -> String {
    let mut out = format!("coproq-bench on {machine}; medians of repetitions (min–max)\n\n");
    let _ = writeln!(out, "{TABLE_HEADER}");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for r in results {
        let _ = writeln!(out, "{}", row(r));
    }
    out
}

/// The table row of one figure.
pub(crate) fn row(r: &FigureResult) -> String {
    let values: Vec<String> = r
        .imps
        .iter()
        .zip(&r.summaries)
        .enumerate()
        .map(|(i, (imp, s))| {
            let unit = r.figure.unit;
            format!(
                "{imp} {} ({}–{}){}",
                format_value(unit, s.median),
                format_value(unit, s.min),
                format_value(unit, s.max),
                r.cpu_text(i)
            )
        })
        .collect();
    let ratio = r.ratio.map_or("–".into(), |x| {
        format!("{:.2}× ({:.2}–{:.2})", x.median, x.min, x.max)
    });
    format!(
        "| {} | {} | {ratio} | {} | {} |",
        r.figure.title,
        values.join("; "),
        r.target_text(),
        r.verdict()
    )
}

/// Rewrites, in the Markdown text `text`, the table row of every figure in `results`
/// (found by its title) in the file's first table of results (under [`TABLE_HEADER`]:
/// later tables are records of earlier runs, and tables of other columns records of
/// experiments, which keep their rows), leaving the other rows as they are; how many it
/// rewrote.
pub(crate) fn update_rows(text: &str, results: &[FigureResult]) -> (String, usize) {
    let mut rewritten = 0;
    let mut out = String::with_capacity(text.len());
    let (mut in_results, mut seen) = (false, false);
    for line in text.split_inclusive('\n') {
        if !line.starts_with('|') {
            in_results = false;
        } else if line.trim_end() == TABLE_HEADER && !seen {
            (in_results, seen) = (true, true);
        }
        let found = results
            .iter()
            .filter(|_| in_results)
            .find(|r| line.starts_with(&format!("| {} |", r.figure.title)));
        match found {
            Some(r) => {
                out.push_str(&row(r));
                out.push('\n');
                rewritten += 1;
            }
            None => out.push_str(line),
        }
    }
    (out, rewritten)
}

pub(crate) fn json(machine: &str, results: &[FigureResult]) -> String {
    let summary = |s: &Summary| {
        format!(
            "{{\"median\":{},\"min\":{},\"max\":{}}}",
            num(s.median),
            num(s.min),
            num(s.max)
        )
    };
    let figures: Vec<String> = results
        .iter()
        .map(|r| {
            let imps: Vec<String> = r.imps.iter().zip(&r.summaries).map(|(i, s)| format!("\"{i}\":{}", summary(s))).collect();
            format!(
                "{{\"key\":\"{}\",\"title\":\"{}\",\"unit\":\"{:?}\",\"impls\":{{{}}},\"ratio\":{},\"target\":\"{}\",\"met\":{}}}",
                r.figure.key,
                r.figure.title,
                r.figure.unit,
                imps.join(","),
                r.ratio.as_ref().map_or("null".into(), summary),
                r.target_text(),
                r.met.map_or("null".into(), |m| m.to_string()),
            )
        })
        .collect();
    format!(
        "{{\"machine\":\"{machine}\",\"figures\":[{}]}}",
        figures.join(",")
    )
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

/// Text made safe inside SVG.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('`', "")
}

/// A horizontal bar chart: one group per latency or throughput figure, bars scaled to the
/// group's largest value, each labelled with its median.
pub(crate) fn svg(machine: &str, results: &[FigureResult]) -> String {
    let colors = [
        "#888888", "#d9480f", "#1971c2", "#2f9e44", "#ae3ec9", "#f08c00",
    ];
    let shown: Vec<&FigureResult> = results
        .iter()
        .filter(|r| {
            matches!(
                r.figure.unit,
                Unit::Micros | Unit::PerSec | Unit::BytesPerSec
            )
        })
        .collect();
    let (width, label_w, bar_max, row_h) = (900.0, 300.0, 420.0, 20.0);
    let height = 60.0
        + shown
            .iter()
            .map(|r| 28.0 + row_h * r.imps.len() as f64)
            .sum::<f64>();
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"16\" font-weight=\"bold\">coproq, the raw pipe and the peers: medians (shorter is better for µs, longer for /s)</text>\n\
         <text x=\"10\" y=\"40\" fill=\"#555\">{machine}</text>\n"
    );
    let mut y = 60.0;
    for r in shown {
        let better = if r.figure.unit == Unit::Micros {
            "lower is better"
        } else {
            "higher is better"
        };
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"{}\" font-weight=\"bold\">{} ({better})</text>",
            y + 12.0,
            xml(r.figure.title)
        );
        y += 18.0;
        let max = r
            .summaries
            .iter()
            .map(|s| s.median)
            .fold(0.0_f64, f64::max)
            .max(f64::MIN_POSITIVE);
        for (i, (imp, s)) in r.imps.iter().zip(&r.summaries).enumerate() {
            let len = (s.median / max * bar_max).max(1.0);
            let color = colors[i % colors.len()];
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{imp}</text><rect x=\"{label_w}\" y=\"{}\" width=\"{len:.1}\" height=\"{}\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{}</text>",
                label_w - 8.0,
                y + 13.0,
                y + 2.0,
                row_h - 4.0,
                label_w + len + 6.0,
                y + 13.0,
                format_value(r.figure.unit, s.median)
            );
            y += row_h;
        }
        y += 10.0;
    }
    out.push_str("</svg>\n");
    out
}

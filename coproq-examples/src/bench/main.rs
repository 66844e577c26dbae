//! `coproq-bench`: coproq against the raw pipe (and, with `--features peers`, the crates
//! people would pick instead), figure by figure, interleaved in one run so that every
//! ratio compares measurements taken side by side.
//!
//! ```text
//! cargo run --release -p coproq-examples --bin coproq-bench -- [--quick] [--reps N] [--only KEY]
//!     [--peers] [--markdown | --json] [--update FILE]... [--chart FILE.svg]
//! ```
//!
//! `--markdown` (the default) prints the table as the README and `docs/performance.md`
//! carry it, `--json` the data; `--update FILE` rewrites, in FILE's tables, the rows of
//! the figures just measured (found by title), so the documents are regenerated, not
//! edited by hand. Each figure names its implementations with the code that measures
//! them (`figures::FIGURES`).
//!
//! Every measurement runs in a fresh process (`--measure FIGURE --impl NAME`), pinned to
//! one CPU where the figure says so, and prints one number.

// Counts and sizes here stay far below 2^52: converting them to f64 loses nothing.
#![allow(clippy::cast_precision_loss)]

mod async_link;
mod ceiling;
mod concurrent;
mod figures;
mod link;
#[cfg(feature = "peers")]
mod peers;
mod pool;
mod raw;
mod report;
mod shared;
mod ssh;
mod stats;
mod sys;

use std::process::Command;

use figures::{FIGURES, Figure};

fn main() {
    // procspawn runs its workers through this binary's `main`; it must look first.
    #[cfg(feature = "peers")]
    procspawn::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    #[cfg(feature = "peers")]
    if peers::worker(&args) {
        return;
    }
    let flag = |name: &str| args.iter().any(|a| a == name);
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };

    if flag("--stdio-worker") {
        if let Err(e) = ssh::stdio_worker() {
            eprintln!("stdio worker: {e}");
            std::process::exit(1);
        }
        return;
    }
    if flag("--raw-worker") {
        sys::pin_worker();
        if let Err(e) = raw::worker() {
            eprintln!("raw worker: {e}");
            std::process::exit(1);
        }
        return;
    }
    let quick = flag("--quick");
    if let (Some(figure), Some(imp)) = (value("--measure"), value("--impl")) {
        let figure = FIGURES
            .iter()
            .find(|f| f.key == figure)
            .unwrap_or_else(|| panic!("unknown figure {figure}"));
        if let Some(cpu) = figure.pin {
            sys::pin_to_cpu(cpu);
        }
        if let Some(cpu) = figure.worker_pin {
            // Workers pin themselves to this CPU when they start.
            // SAFETY: set before any thread of this process starts.
            unsafe { std::env::set_var(sys::WORKER_CPU, cpu.to_string()) };
        }
        match figures::measure(figure, &imp, quick) {
            Ok((value, None)) => println!("{value}"),
            Ok((value, Some(cpu))) => println!("{value} {cpu}"),
            Err(e) => {
                eprintln!("{} / {imp}: {e}", figure.key);
                std::process::exit(1);
            }
        }
        return;
    }

    let reps: usize = value("--reps")
        .and_then(|r| r.parse().ok())
        .unwrap_or(if quick { 3 } else { 5 });
    let peers = flag("--peers");
    let only = value("--only");
    let mut results = Vec::new();
    for figure in FIGURES
        .iter()
        .filter(|f| only.as_deref().is_none_or(|o| f.key.contains(o)))
    {
        let imps: Vec<&str> = figure
            .impls
            .iter()
            .chain(if peers { figure.peers } else { &[] })
            .map(|imp| imp.name)
            .collect();
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); imps.len()];
        let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); imps.len()];
        for _ in 0..reps {
            // Interleaved: one sample of each implementation per repetition.
            for (i, imp) in imps.iter().enumerate() {
                match run_measurement(figure, imp, quick) {
                    Some((v, c)) => {
                        samples[i].push(v);
                        cpu[i].extend(c);
                    }
                    None => eprintln!("{} / {imp}: measurement failed", figure.key),
                }
            }
        }
        let mut result = report::FigureResult::new(figure, &imps, &samples);
        result.add_cpu(&cpu);
        eprintln!("{}", result.line());
        results.push(result);
    }
    write_results(&args, &results);
}

/// Prints the results (`--json`, or the Markdown table, `--markdown`, the default),
/// rewrites the rows of `--update FILE`s and draws `--chart FILE`.
fn write_results(args: &[String], results: &[report::FigureResult]) {
    let machine = report::machine();
    if args.iter().any(|a| a == "--json") {
        println!("{}", report::json(&machine, results));
    } else {
        println!("{}", report::table(&machine, results));
    }
    update_files(args, results);
    let chart = args
        .iter()
        .position(|a| a == "--chart")
        .and_then(|i| args.get(i + 1));
    if let Some(path) = chart {
        match std::fs::write(path, report::svg(&machine, results)) {
            Ok(()) => eprintln!("chart written to {path}"),
            Err(e) => eprintln!("cannot write {path}: {e}"),
        }
    }
    if results.iter().any(|r| r.met == Some(false)) {
        eprintln!("some targets were not met");
    }
}

/// Runs one measurement in a fresh process: its value, and the CPU time per operation
/// where the figure reports it.
fn run_measurement(figure: &Figure, imp: &str, quick: bool) -> Option<(f64, Option<f64>)> {
    let exe = std::env::current_exe().ok()?;
    let mut cmd = Command::new(exe);
    cmd.args(["--measure", figure.key, "--impl", imp]);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().ok()?;
    if !out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let out = String::from_utf8_lossy(&out.stdout);
    let mut numbers = out.split_whitespace().map(str::parse::<f64>);
    let value = numbers.next()?.ok()?;
    let cpu = numbers.next().and_then(Result::ok);
    Some((value, cpu))
}

/// `--update FILE` (repeatable): the rows of the figures just measured, rewritten in place
/// in FILE's tables (the README's, docs/performance.md's), the other rows left alone.
fn update_files(args: &[String], results: &[report::FigureResult]) {
    for (i, arg) in args.iter().enumerate() {
        if arg != "--update" {
            continue;
        }
        let Some(path) = args.get(i + 1) else {
            eprintln!("--update needs a file");
            continue;
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let (text, rows) = report::update_rows(&text, results);
                match std::fs::write(path, text) {
                    Ok(()) => eprintln!("{rows} rows rewritten in {path}"),
                    Err(e) => eprintln!("cannot write {path}: {e}"),
                }
            }
            Err(e) => eprintln!("cannot read {path}: {e}"),
        }
    }
}

//! A separate worker binary for spawn tests: serves a few methods and calls its parent.

use coproq::Coprocess;

/// Recurses until the stack overflows (which Rust's runtime reports in a worker binary).
fn overflow(n: u64) -> u64 {
    if std::hint::black_box(n) == u64::MAX {
        return 0;
    }
    let frame = [n; 64];
    std::hint::black_box(&frame);
    overflow(n + 1) + std::hint::black_box(frame[1])
}

fn main() -> coproq::Result<()> {
    let parent = Coprocess::parent()?;
    let back = parent.downgrade();
    parent
        .handle("echo", |x: u32| x)
        .handle("add", |(a, b): (i32, i32)| a + b)
        .handle("upper", |s: String| s.to_uppercase())
        .handle("pid", |(): ()| std::process::id())
        .handle("ask_parent", move |x: i64| -> coproq::Result<i64> {
            let parent = back.upgrade().ok_or(coproq::Error::NotConnected)?;
            parent.call::<i64>("double", x)
        })
        .handle("chatty", |n: u32| {
            for i in 0..n {
                println!("line {i} of worker output, which must not reach the link");
                eprintln!("stderr line {i}");
            }
            n
        })
        .handle("overflow", |n: u64| overflow(n))
        .handle("read_fd", |file: coproq::Fd| -> Result<String, String> {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::fs::File::from(file), &mut text)
                .map_err(|e| e.to_string())?;
            Ok(text)
        })
        .on("note", |line: String| println!("worker got note: {line}"));
    parent.serve();
    Ok(())
}

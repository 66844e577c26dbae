//! A separate worker binary for spawn tests: serves a few methods and calls its parent.

use coproq::Coprocess;

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
        .on("note", |line: String| println!("worker got note: {line}"));
    parent.serve();
    Ok(())
}

//! A separate worker program: `Coprocess::spawn` starts it, and its `main` calls
//! `Coprocess::parent()` and `serve()`.
//!
//! To stay one file, this example is both programs: run without arguments it is the
//! parent and spawns itself with `--worker`; any binary written like the `--worker`
//! branch works the same way.

use std::process::Command;

use coproq::Coprocess;

fn worker_main() -> coproq::Result<()> {
    let parent = Coprocess::parent()?;
    parent
        .handle("word_count", |text: String| {
            text.split_whitespace().count() as u64
        })
        .handle("shout", |text: String| text.to_uppercase());
    parent.serve();
    Ok(())
}

fn main() -> coproq::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--worker") {
        return worker_main();
    }
    let exe = std::env::current_exe().expect("the path of this example");
    let mut cmd = Command::new(exe);
    cmd.arg("--worker");
    let worker = Coprocess::spawn(cmd)?;

    let text = "the quick brown fox jumps over the lazy dog";
    let words: u64 = worker.call("word_count", text)?;
    let loud: String = worker.call("shout", text)?;
    println!("{words} words; shouted: {loud}");
    println!(
        "worker {} exited: {:?}",
        worker.pid().unwrap_or(0),
        worker.close()
    );
    Ok(())
}

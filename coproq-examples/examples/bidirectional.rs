//! Ping/pong both ways: the parent calls the worker, the worker calls the parent back
//! from inside that call, and both send events.

use std::time::Duration;

fn main() -> coproq::Result<()> {
    let worker = coproq::Coprocess::builder()
        // The parent's handlers exist before the worker starts.
        .handle("pong", |n: u32| {
            println!("parent: pong({n})");
            n + 1
        })
        .on("status", |line: String| {
            println!("parent: worker says {line:?}");
        })
        .fork(|parent| {
            // A weak handle: a handler must not keep its own link alive.
            let back = parent.downgrade();
            parent.handle("ping", move |n: u32| -> coproq::Result<u32> {
                let parent = back.upgrade().ok_or(coproq::Error::NotConnected)?;
                println!("worker: ping({n}), calling the parent back");
                parent.emit("status", format!("handling ping {n}"))?;
                let answer: u32 = parent.call("pong", n + 1)?;
                Ok(answer + 1)
            });
        })?;

    let answer: u32 = worker
        .call_async("ping", 1u32)
        .wait_timeout(Duration::from_secs(10))?;
    println!("parent: ping(1) came back as {answer}");
    assert_eq!(answer, 4);
    worker.close();
    Ok(())
}

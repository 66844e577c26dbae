//! The seed's echo: fork a worker that runs a function of this program, call it, close it.

fn main() -> coproq::Result<()> {
    // The worker is this executable started again; it runs the closure, then serves.
    let worker = coproq::fork(|parent| {
        parent.handle("echo", |x: u32| x);
    })?;

    let echoed: u32 = worker.call("echo", 1234u32)?;
    println!(
        "echo(1234) = {echoed}, answered by worker process {}",
        worker.pid().unwrap_or(0)
    );

    if let Some(status) = worker.close() {
        println!("worker closed: {status}");
    }
    Ok(())
}

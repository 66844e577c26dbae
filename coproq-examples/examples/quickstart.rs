//! The seed's echo: fork a worker, call it, close it.

fn main() -> coproq::Result<()> {
    let worker = coproq::fork(|parent| {
        parent.handle("echo", |x: u32| x);
    })?;
    let echoed: u32 = worker.call("echo", 1234u32)?;
    println!("echo(1234) = {echoed} from worker {}", worker.pid().unwrap_or(0));
    let status = worker.close();
    println!("worker exited: {status:?}");
    Ok(())
}

//! A separate worker binary that serves 8 calls at once, by its own builder's choice.

fn main() -> coproq::Result<()> {
    let parent = coproq::Builder::new()
        .concurrency(8)
        .handle("sleep_ms", |ms: u64| {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            ms
        })
        .parent()?;
    parent.serve();
    Ok(())
}

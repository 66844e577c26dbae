//! A separate worker binary that sets its handlers and a 4 KiB frame limit with
//! `Builder::parent`.

fn main() -> coproq::Result<()> {
    let parent = coproq::Builder::new()
        .max_frame_len(4096)
        .handle("whoami", |(): ()| "builder_worker".to_string())
        .handle("len", |b: serde_bytes::ByteBuf| b.len() as u64)
        .handle("zeros", |n: usize| serde_bytes::ByteBuf::from(vec![0u8; n]))
        .parent()?;
    parent.serve();
    Ok(())
}

//! A worker whose link runs over its stdin and stdout, for `Builder::spawn_stdio` tests:
//! it prints to stdout freely, reads stdin, hangs on request, and calls its parent back.

use std::io::BufRead;
use std::time::Duration;

fn main() -> coproq::Result<()> {
    let parent = coproq::Coprocess::stdio()?;
    let back = parent.downgrade();
    parent
        .handle("echo", |x: u64| x)
        .handle("bytes", |b: Vec<u8>| b)
        // A descriptor cannot cross stdio: the reply fails to serialize, saying so.
        .handle("pipe_fd", |()| -> coproq::Fd {
            let (read, _write) = std::io::pipe().expect("a pipe");
            coproq::Fd::from(read)
        })
        .handle("chatty", |n: u32| {
            for i in 0..n {
                println!("a line on stdout, number {i}, which must not reach the link");
            }
            n
        })
        .handle("read_stdin", |()| {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).unwrap_or(0)
        })
        .handle("hang", |()| -> () {
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        })
        .handle("ask_parent", move |x: i64| -> coproq::Result<i64> {
            let parent = back.upgrade().ok_or(coproq::Error::NotConnected)?;
            parent.call::<i64>("double", x)
        })
        .listen(coproq_tests::services::CalcServer::new(
            coproq_tests::services::Calculator::default(),
        ));
    println!("printed before serving: stdout is stderr now");
    parent.serve();
    Ok(())
}

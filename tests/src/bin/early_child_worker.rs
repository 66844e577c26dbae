//! A spawned worker that starts processes of its own: one before `Coprocess::parent()`
//! takes the link (as a program's own start-up code might), and, on request, one that
//! is handed every descriptor the worker has, the link's included.

use std::process::Command;
use std::time::Duration;

use coproq::Coprocess;

fn sleeper() -> Command {
    let mut sleep = Command::new("sleep");
    sleep.arg("100");
    sleep
}

/// Starts `sleep 100` with every descriptor of this process, close-on-exec or not: by
/// hand, since `Command` relies on a close-on-exec pipe of its own to see the exec.
fn holding_every_descriptor() -> u32 {
    let program = c"/bin/sleep";
    let argv = [program.as_ptr(), c"100".as_ptr(), std::ptr::null()];
    // SAFETY: between fork and exec the child calls only fcntl, execv and _exit, which
    // are async-signal-safe; argv was built before the fork.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            for fd in 3..1024 {
                libc::fcntl(fd, libc::F_SETFD, 0);
            }
            libc::execv(program.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
        assert!(pid > 0, "fork failed");
        pid as u32
    }
}

fn main() -> coproq::Result<()> {
    let early = sleeper().spawn().expect("sleep starts").id();
    let parent = Coprocess::parent()?;
    parent
        .handle("early_child", move |(): ()| early)
        .handle("child_holding_every_descriptor", |(): ()| {
            holding_every_descriptor()
        })
        .handle("hang", |(): ()| -> () {
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    parent.serve();
    Ok(())
}

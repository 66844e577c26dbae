//! A program that links coproq and says, from its own `main`, who it runs as: the
//! secure-execution test runs a set-user-ID copy of it with a worker marker set, which
//! must be ignored.

fn main() {
    // SAFETY: getuid and geteuid cannot fail.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    println!("main ran: uid {uid} euid {euid}");
    // Something of coproq's is used, so that its start-up hook is linked in, as in any
    // program that uses coproq.
    assert!(coproq::deadline().is_none());
    // A worker marker that reached `main` is still in the environment.
    println!(
        "marker seen by main: {}",
        std::env::var_os("COPROQ_WORKER").is_some()
    );
}

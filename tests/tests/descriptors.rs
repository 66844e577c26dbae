//! Tests for resource hygiene: forking and closing 200 workers leaks no descriptor and
//! leaves no zombie. Alone in its test binary, so no other test moves the counts.

use coproq_tests::{call, open_fds, process_exists};

#[test]
fn two_hundred_fork_close_cycles_leak_nothing() {
    // One cycle first, so that lazily created process-wide state (the launcher thread)
    // is not counted as a leak.
    coproq::fork(|_| {}).unwrap().close();
    let before = open_fds();
    let mut pids = Vec::new();
    for i in 0..200u32 {
        let w = coproq::fork(|parent| {
            parent.handle("echo", |x: u32| x);
        })
        .unwrap();
        assert_eq!(call::<u32>(&w, "echo", i).unwrap(), i);
        pids.push(w.pid().unwrap());
        assert!(w.close().is_some_and(|s| s.success()));
    }
    assert_eq!(open_fds(), before, "descriptors leaked");
    let zombies: Vec<_> = pids
        .into_iter()
        .filter(|&pid| process_exists(pid))
        .collect();
    assert!(zombies.is_empty(), "not reaped: {zombies:?}");
}

//! Operating-system code, one backend per platform family, each exporting the same names.
//!
//! - `unix`: pipes handed to the child on their own descriptors, the start-up hook that
//!   recognises a worker before `main`, parent-death signal, signal dispositions.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;

#[cfg(not(unix))]
compile_error!(
    "coproq supports Unix (Linux and macOS) only: its workers talk over inherited pipe \
     descriptors and start through re-exec, which this platform lacks"
);

pub(crate) use imp::{
    ChildStdio, LinkFds, Reaped, die_with_parent, ensure_start_hook_linked, ignore_sigpipe, kill,
    link_fds, parent_pid, reap, spawn_command, spawn_self, take_link_fds, wait_exit,
};

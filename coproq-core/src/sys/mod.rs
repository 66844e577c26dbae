//! Operating-system code, one backend per platform family, each exporting the same names.
//!
//! - `unix`: pipes handed to the child on their own descriptors (or its stdio), waiting
//!   for input or a hang-up, the start-up hook that recognises a worker before `main`,
//!   starting, reaping and killing processes, parent-death signal, signal dispositions.
//!
//! It knows nothing of coproq's own types: links and launchers above it call in.

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
    ChildStdio, LinkFds, Reaped, before_main, coarse_now, die_with_parent, ignore_sigpipe, kill,
    link_fds, parent_death_signalled, parent_pid, reap, self_exe, set_nonblocking, spawn_command,
    spawn_piped, spawn_self, take_link_fds, take_stdio, wait_exit, wait_hangup, wait_readable,
};

//! Operating-system code, one backend per platform family, each exporting the same names.
//!
//! - `unix`: pipes handed to the child on their own descriptors (or its stdio), waiting
//!   for input, room or a hang-up with a limit and beside a watch on a process's exit,
//!   the start-up hook that recognises a worker before `main`, starting, reaping and
//!   killing processes, parent-death signal, signal dispositions, secure execution.
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
    ChildStdio, DescriptorRecvError, DescriptorSendError, Direction, LinkFds, MAX_DESCRIPTORS,
    Mapping, OomCounter, Reaped, Waited, before_main, close_on_exec, coarse_now, create_sealed,
    die_with_parent, exit_signal, ignore_sigpipe, is_sigkill, kill, limit_memory, link_fds,
    may_run_elsewhere, monotonic_micros, on_exit, oom_kills, open_sealed, parent_death_signalled,
    parent_pid, reap, recv_group, resident_bytes, secure_execution, self_exe, send_group,
    set_nonblocking, signal_name, spawn_command, spawn_piped, spawn_self, take_descriptor_socket,
    take_link_fds, take_stdio, wait_exit, wait_fd, wait_hangup, wait_readable, watch_exit,
};

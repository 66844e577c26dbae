//! The calls rustix does not wrap: `posix_spawn` (fork workers start through it: no copy
//! of the parent's page tables), setting a signal disposition, and the secure-execution
//! flag.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

/// Ignores SIGPIPE, so that writing to a vanished peer is an error, not death. Rust's
/// runtime does this before `main`, but a fork worker runs before `main`.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// `posix_spawn(path)` with argv `[arg0]`, environment `env`, and `inherit` kept open;
/// its stderr on `stderr` where given; in a new process group if `own_group`.
pub(crate) fn posix_spawn(
    path: &CString,
    arg0: &CString,
    env: &[CString],
    inherit: [RawFd; 3],
    stderr: Option<RawFd>,
    own_group: bool,
) -> io::Result<u32> {
    let arg_vector = [arg0.as_ptr().cast_mut(), std::ptr::null_mut()];
    let mut envp: Vec<*mut libc::c_char> = env.iter().map(|e| e.as_ptr().cast_mut()).collect();
    envp.push(std::ptr::null_mut());
    let check = |code: libc::c_int| {
        if code == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(code))
        }
    };
    // SAFETY: the file actions and attributes are initialised before use and destroyed
    // on every path; every pointer handed to posix_spawn outlives the call (argv and envp
    // point into CStrings owned by the caller, and both arrays end with a null pointer).
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&raw mut actions))?;
        if let Err(e) = check(libc::posix_spawnattr_init(&raw mut attr)) {
            libc::posix_spawn_file_actions_destroy(&raw mut actions);
            return Err(e);
        }
        let result = (|| {
            for fd in inherit {
                keep_open(&raw mut actions, fd)?;
            }
            if let Some(fd) = stderr {
                check(libc::posix_spawn_file_actions_adddup2(
                    &raw mut actions,
                    fd,
                    libc::STDERR_FILENO,
                ))?;
            }
            // A clean signal state, as std gives its children: no blocked signals, and
            // SIGPIPE back to its default (the worker then sets what it needs).
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut empty);
            check(libc::posix_spawnattr_setsigmask(
                &raw mut attr,
                &raw const empty,
            ))?;
            let mut pipe: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut pipe);
            libc::sigaddset(&raw mut pipe, libc::SIGPIPE);
            check(libc::posix_spawnattr_setsigdefault(
                &raw mut attr,
                &raw const pipe,
            ))?;
            let mut flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
            if own_group {
                // Group 0: a new group whose id is the child's pid.
                check(libc::posix_spawnattr_setpgroup(&raw mut attr, 0))?;
                flags |= libc::POSIX_SPAWN_SETPGROUP;
            }
            check(libc::posix_spawnattr_setflags(&raw mut attr, flags as _))?;
            let mut pid: libc::pid_t = 0;
            check(libc::posix_spawn(
                &raw mut pid,
                path.as_ptr(),
                &raw const actions,
                &raw const attr,
                arg_vector.as_ptr(),
                envp.as_ptr(),
            ))?;
            Ok(pid as u32)
        })();
        libc::posix_spawnattr_destroy(&raw mut attr);
        libc::posix_spawn_file_actions_destroy(&raw mut actions);
        result
    }
}

/// A file action that keeps `fd` open across exec under its own number.
///
/// # Safety
///
/// `actions` must be initialised.
unsafe fn keep_open(actions: *mut libc::posix_spawn_file_actions_t, fd: RawFd) -> io::Result<()> {
    #[cfg(target_vendor = "apple")]
    // SAFETY: per this function's contract.
    let code = unsafe { libc::posix_spawn_file_actions_addinherit_np(actions, fd) };
    // `dup2(fd, fd)` clears close-on-exec (Austin Group issue 411; glibc ≥ 2.29, musl).
    #[cfg(not(target_vendor = "apple"))]
    // SAFETY: per this function's contract.
    let code = unsafe { libc::posix_spawn_file_actions_adddup2(actions, fd, fd) };
    if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(code))
    }
}

/// Whether this process runs in secure-execution mode: started setuid or setgid, or with
/// file capabilities, so that its environment is its caller's and must not be trusted.
pub(crate) fn secure_execution() -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: `getauxval` reads the auxiliary vector the kernel handed this process;
        // it has no preconditions.
        unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        // SAFETY: `issetugid` has no preconditions.
        unsafe { libc::issetugid() != 0 }
    }
}

/// The resident size of process `pid` (`proc_pidinfo`'s task info), in bytes.
#[cfg(target_vendor = "apple")]
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    let mut info: libc::proc_taskinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_taskinfo>() as libc::c_int;
    // SAFETY: `info` is a writable `proc_taskinfo` of `size` bytes, as PROC_PIDTASKINFO
    // fills.
    let written = unsafe {
        libc::proc_pidinfo(
            pid as libc::c_int,
            libc::PROC_PIDTASKINFO,
            0,
            (&raw mut info).cast(),
            size,
        )
    };
    (written == size).then_some(info.pti_resident_size)
}

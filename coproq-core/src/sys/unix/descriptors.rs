//! Descriptors passed between the two processes of a link: a Unix socket pair beside the
//! link's pipes, over which each message's descriptors travel as one `SCM_RIGHTS`
//! message of four data bytes, their count.
//!
//! The pipes stay the link's byte streams (their throughput and wake-ups are what the
//! rest of coproq is tuned to); the socket carries nothing but descriptors, so that a
//! group can be sent before the frame that announces it and found waiting when that
//! frame is read.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType, recvmsg,
    sendmsg, socketpair,
};

use super::wait::{Direction, Waited, wait_fd};

/// The most descriptors one message carries: what one `sendmsg` may pass on Linux
/// (`SCM_MAX_FD`).
pub(crate) const MAX_DESCRIPTORS: usize = 253;

/// A connected pair of Unix stream sockets, both close-on-exec: one end for each process.
pub(crate) fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(not(target_vendor = "apple"))]
    let flags = SocketFlags::CLOEXEC;
    #[cfg(target_vendor = "apple")]
    let flags = SocketFlags::empty();
    let (a, b) = socketpair(AddressFamily::UNIX, SocketType::STREAM, flags, None)?;
    #[cfg(target_vendor = "apple")]
    for fd in [&a, &b] {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    }
    Ok((a, b))
}

/// Checks that `fd` is a Unix socket (a worker adopting the descriptor its marker names).
pub(crate) fn is_socket(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|stat| {
        rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Socket
    })
}

/// Why a group was not sent.
#[derive(Debug)]
pub(crate) enum SendError {
    /// `deadline` passed with no room in the socket; nothing was sent.
    TimedOut,
    /// The socket failed (the peer is gone), or the kernel refused the descriptors.
    Failed(io::Error),
}

/// Sends `fds` (at most [`MAX_DESCRIPTORS`]) as one message, waiting for room in the
/// socket at most until `deadline` (`None`: as long as it takes).
pub(crate) fn send_group(
    socket: BorrowedFd<'_>,
    fds: &[OwnedFd],
    deadline: Option<Instant>,
) -> Result<(), SendError> {
    let count = u32::try_from(fds.len()).unwrap_or(u32::MAX).to_le_bytes();
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    loop {
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
            return Err(SendError::Failed(io::Error::other(
                "too many descriptors for one message",
            )));
        }
        match sendmsg(
            socket,
            &[IoSlice::new(&count)],
            &mut control,
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        ) {
            // Four bytes go whole or not at all on a stream socket with this much room.
            Ok(4) => return Ok(()),
            Ok(_) => {
                return Err(SendError::Failed(io::Error::other(
                    "the descriptor socket took part of a message",
                )));
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                let limit = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if limit.is_some_and(|l| l.is_zero()) {
                    return Err(SendError::TimedOut);
                }
                if wait_fd(socket, Direction::Write, None, limit) == Waited::TimedOut {
                    return Err(SendError::TimedOut);
                }
            }
            Err(e) => return Err(SendError::Failed(e.into())),
        }
    }
}

/// Why no group was received.
#[derive(Debug)]
pub(crate) enum RecvError {
    /// Nothing is waiting in the socket.
    Nothing,
    /// What came is not one group of the size announced (its descriptors are closed).
    Malformed(String),
    /// The socket failed.
    Failed(io::Error),
}

/// Receives the group the peer sent before announcing `expected` descriptors, without
/// waiting: it must be there already. Every descriptor received is close-on-exec; any
/// beyond what the message announced, or a message that is not exactly one group of
/// `expected`, is closed and refused.
pub(crate) fn recv_group(
    socket: BorrowedFd<'_>,
    expected: usize,
) -> Result<Vec<OwnedFd>, RecvError> {
    if expected == 0 || expected > MAX_DESCRIPTORS {
        return Err(RecvError::Malformed(format!(
            "{expected} descriptors announced for one message (at most {MAX_DESCRIPTORS})"
        )));
    }
    let mut count = [0u8; 4];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_DESCRIPTORS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = RecvFlags::DONTWAIT;
    let received = loop {
        match recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut count)],
            &mut control,
            flags,
        ) {
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => return Err(RecvError::Nothing),
            Err(e) => return Err(RecvError::Failed(e.into())),
            Ok(received) => break received,
        }
    };
    // Taken before any check, so that whatever came is closed if refused.
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    for fd in &fds {
        // No atomic flag here: set at once (a `fork` on another thread in between could
        // still inherit it).
        let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
    }
    if received.bytes == 0 {
        return Err(RecvError::Failed(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the descriptor socket was closed",
        )));
    }
    if received.flags.contains(ReturnFlags::CTRUNC) {
        return Err(RecvError::Malformed(format!(
            "more than {MAX_DESCRIPTORS} descriptors in one message"
        )));
    }
    let declared = u32::from_le_bytes(count) as usize;
    if received.bytes != 4 || declared != expected || fds.len() != expected {
        return Err(RecvError::Malformed(format!(
            "{expected} descriptors announced, {} received (their message says {declared})",
            fds.len()
        )));
    }
    Ok(fds)
}

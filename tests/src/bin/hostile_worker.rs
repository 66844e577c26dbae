//! A worker that breaks the protocol on purpose. It does not use coproq: it finds its
//! pipes in `COPROQ_WORKER` as a real worker would, then misbehaves as `argv[1]` says
//! (`argv[2]` is the protocol version to speak):
//!
//! - `garbage`: writes bytes that are not a frame, instead of a hello.
//! - `version`: a well-formed hello of protocol version 99.
//! - `oversize`: a good hello; then, once the parent calls, a frame header of 4 GiB - 1.
//! - `bad-message`: a good hello; then a frame whose payload is not a message.
//! - `truncated`: a good hello; then half a frame, and exit with status 3.
//! - `stalled`: a good hello; then half a frame, and stay alive sending nothing more.
//! - `half-gib`: a good hello; then a frame header of 1 GiB and 1000 MiB of it, and stay
//!   alive sending nothing more.
//! - `bad-reply`: a good hello; then, once the parent calls, three well-formed replies to
//!   calls nobody made, and right behind them (in the same write) a reply cut short.
//! - `fd-without-socket`: a hello without the descriptor socket; then, once the parent
//!   calls, descriptors announced for the reply.
//! - `fd-none-sent`: a hello with the socket; then two descriptors announced, none sent.
//! - `fd-too-many`: the same, with one announced and 200 sent in one message.
//! - `fd-count-huge`: the same, with 10 000 announced.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};

/// The protocol version coproq speaks, from the test that started this worker (argument
/// 2: `coproq::PROTOCOL_VERSION`; this binary must not link coproq, whose start-up hook
/// would take the marker).
fn protocol_version() -> u32 {
    std::env::args()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .expect("the protocol version as argument 2")
}

fn hello(version: u32) -> Vec<u8> {
    hello_with(version, false)
}

/// A worker's `Hello`, saying whether it holds its end of the descriptor socket.
fn hello_with(version: u32, descriptors: bool) -> Vec<u8> {
    let mut payload = b"\0coproq\0".to_vec();
    payload.extend_from_slice(&version.to_le_bytes());
    payload.extend_from_slice(&(1u32 << 30).to_le_bytes()); // max_frame
    payload.push(0); // entry: None
    payload.push(0); // parent: false
    payload.extend_from_slice(&0u32.to_le_bytes()); // heartbeat_ms: none
    payload.extend_from_slice(&0u32.to_le_bytes()); // spin_us: never
    payload.extend_from_slice(&(4u32 << 20).to_le_bytes()); // window
    payload.extend_from_slice(&1u32.to_le_bytes()); // concurrency: one call at a time
    payload.push(0); // report_starts: no
    payload.extend_from_slice(&0u64.to_le_bytes()); // memory_limit: none
    payload.extend_from_slice(&0u64.to_le_bytes()); // clock_us: not offered
    payload.push(u8::from(descriptors));
    payload.extend_from_slice(&std::process::id().to_le_bytes()); // pid
    frame(&payload)
}

/// A reply to call `id` with an empty value (its header only: kind, id, outcome `Value`,
/// an empty shape).
fn stray_reply(id: u64) -> Vec<u8> {
    let mut payload = 2u32.to_le_bytes().to_vec();
    payload.extend_from_slice(&id.to_le_bytes());
    payload.extend_from_slice(&0u32.to_le_bytes());
    payload.extend_from_slice(&0u64.to_le_bytes());
    frame(&payload)
}

/// A `Descriptors` frame's payload: kind 9 and the count it announces.
fn descriptors_announcement(count: u32) -> Vec<u8> {
    let mut payload = 9u32.to_le_bytes().to_vec();
    payload.extend_from_slice(&count.to_le_bytes());
    payload
}

/// Sends `fds` over the descriptor socket as one message whose data says `count`.
fn send_fds(socket: i32, count: u32, fds: &[i32]) {
    let data = count.to_le_bytes();
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let payload = std::mem::size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the sendmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer holds one header of CMSG_SPACE(payload) bytes, whose
    // data is written with exactly `payload` bytes.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&raw const msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(payload) as _;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr().cast::<u8>(),
            libc::CMSG_DATA(header),
            payload as usize,
        );
        assert!(
            libc::sendmsg(socket, &raw const msg, 0) >= 0,
            "sendmsg failed"
        );
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Reads one frame from the parent (its hello, then its first call).
fn read_frame(input: &mut File) {
    let mut len = [0u8; 4];
    input
        .read_exact(&mut len)
        .expect("a frame header from the parent");
    let mut payload = vec![0u8; u32::from_le_bytes(len) as usize];
    input
        .read_exact(&mut payload)
        .expect("a frame from the parent");
}

fn main() {
    let marker = std::env::var("COPROQ_WORKER").expect("started by a coproq parent");
    let mut fds = marker
        .split(':')
        .skip(1)
        .map(|fd| fd.parse::<i32>().expect("a descriptor number"));
    let (read_fd, write_fd) = (fds.next().unwrap(), fds.next().unwrap());
    // parent pid, max frame, then the descriptor socket.
    let socket_fd = fds.nth(2).unwrap_or(-1);
    // SAFETY: the parent handed these two descriptors to this process.
    let (mut input, mut output) =
        unsafe { (File::from_raw_fd(read_fd), File::from_raw_fd(write_fd)) };
    let mode = std::env::args().nth(1).unwrap_or_default();
    match mode.as_str() {
        "garbage" => output
            .write_all(b"\xde\xad\xbe\xef this is not a coproq frame")
            .unwrap(),
        "version" => output.write_all(&hello(99)).unwrap(),
        "oversize" | "bad-message" | "truncated" | "stalled" | "half-gib" | "bad-reply" => {
            output.write_all(&hello(protocol_version())).unwrap();
            read_frame(&mut input); // the parent's hello
            read_frame(&mut input); // the parent's first call
            match mode.as_str() {
                "oversize" => output.write_all(&(u32::MAX - 1).to_le_bytes()).unwrap(),
                "bad-message" => output
                    .write_all(&frame(b"\xff\xff\xff\xff not a message"))
                    .unwrap(),
                "bad-reply" => {
                    let mut bytes: Vec<u8> =
                        (1..=3).flat_map(|i| stray_reply(1 << 40 | i)).collect();
                    bytes.extend_from_slice(&frame(&2u32.to_le_bytes()));
                    output.write_all(&bytes).unwrap();
                }
                "half-gib" => {
                    output.write_all(&(1u32 << 30).to_le_bytes()).unwrap();
                    let chunk = vec![0u8; 1 << 20];
                    for _ in 0..1000 {
                        output.write_all(&chunk).unwrap();
                    }
                }
                _ => output.write_all(&frame(&[0u8; 100])[..50]).unwrap(),
            }
            if mode == "truncated" {
                std::process::exit(3);
            }
        }
        "fd-without-socket" | "fd-none-sent" | "fd-too-many" | "fd-count-huge" => {
            output
                .write_all(&hello_with(protocol_version(), mode != "fd-without-socket"))
                .unwrap();
            read_frame(&mut input); // the parent's hello
            read_frame(&mut input); // the parent's first call
            let announced = match mode.as_str() {
                "fd-count-huge" => 10_000,
                "fd-none-sent" => 2,
                _ => 1,
            };
            if mode == "fd-too-many" {
                // 200 descriptors where the announcement says 1.
                let null = File::open("/dev/null").unwrap();
                send_fds(socket_fd, 1, &vec![null.as_raw_fd(); 200]);
            }
            let mut bytes = frame(&descriptors_announcement(announced));
            bytes.extend_from_slice(&stray_reply(1));
            output.write_all(&bytes).unwrap();
        }
        other => panic!("unknown mode {other:?}"),
    }
    // Stay alive (until the parent closes the link or kills us) so that the parent's
    // error comes from what it read, not from our exit.
    let mut rest = Vec::new();
    let _ = input.read_to_end(&mut rest);
}

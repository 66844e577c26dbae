//! Descriptors as values (`coproq::Fd`): handed to local workers and back in arguments,
//! replies and events, closed when their message is refused, leaked nowhere, refused
//! with a clear error where they cannot travel, and a hostile peer's descriptors
//! refused and closed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc};
use std::time::Duration;

use coproq::{Coprocess, Error, Fd, RemoteErrorKind};
use coproq_tests::{CALL_LIMIT, call, open_fds, wait_until, within};
use serde::{Deserialize, Serialize};

/// The tests of this file, one at a time: they count the descriptors this process holds,
/// which another test running beside them would change.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A job that carries descriptors at depth.
#[derive(Debug, Serialize, Deserialize)]
struct Job {
    name: String,
    input: Fd,
    outputs: Vec<Fd>,
}

fn worker() -> Coprocess {
    coproq::Builder::new()
        .startup_timeout(CALL_LIMIT)
        .fork(|parent| {
            let back = parent.downgrade();
            parent
                .handle("read_all", |file: Fd| -> Result<String, String> {
                    let mut text = String::new();
                    std::fs::File::from(file)
                        .read_to_string(&mut text)
                        .map_err(|e| e.to_string())?;
                    Ok(text)
                })
                .handle("shout", |socket: Fd| -> Result<usize, String> {
                    let socket = UnixStream::from(socket);
                    let mut line = String::new();
                    BufReader::new(&socket)
                        .read_line(&mut line)
                        .map_err(|e| e.to_string())?;
                    (&socket)
                        .write_all(line.to_uppercase().as_bytes())
                        .map_err(|e| e.to_string())?;
                    Ok(line.len())
                })
                .handle("serve_one", |listener: Fd| -> Result<String, String> {
                    let listener = TcpListener::from(listener);
                    let (mut conn, _) = listener.accept().map_err(|e| e.to_string())?;
                    let mut text = String::new();
                    conn.read_to_string(&mut text).map_err(|e| e.to_string())?;
                    Ok(text)
                })
                .handle("job", |job: Job| -> Result<String, String> {
                    let mut text = String::new();
                    std::fs::File::from(job.input)
                        .read_to_string(&mut text)
                        .map_err(|e| e.to_string())?;
                    for out in job.outputs {
                        std::fs::File::from(out)
                            .write_all(format!("{}: {text}", job.name).as_bytes())
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(text)
                })
                .handle("make_pipe", |text: String| -> Result<Fd, String> {
                    let (read, mut write) = std::io::pipe().map_err(|e| e.to_string())?;
                    write
                        .write_all(text.as_bytes())
                        .map_err(|e| e.to_string())?;
                    Ok(Fd::from(read))
                })
                .handle("emit_pipe", move |text: String| -> coproq::Result<()> {
                    let parent = back.upgrade().ok_or(Error::NotConnected)?;
                    let (read, mut write) = std::io::pipe().map_err(|_| Error::NotConnected)?;
                    write
                        .write_all(text.as_bytes())
                        .map_err(|_| Error::NotConnected)?;
                    parent.emit("handed", Fd::from(read))
                })
                .handle("drop", |_: Fd| ())
                .handle("drop_all", |_: Vec<Fd>| ())
                .handle("want_u32", |n: u32| n)
                .handle("fds", |()| open_fds());
        })
        .unwrap()
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("coproq-fd-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_file_the_parent_opened_is_read_by_a_fork_worker() {
    let _one = one_at_a_time();
    let w = worker();
    let path = temp_file("read", "opened by the parent\n");
    let file = std::fs::File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    // The file is gone from the directory: only the descriptor reaches it.
    let text: String = call(&w, "read_all", Fd::from(file)).unwrap();
    assert_eq!(text, "opened by the parent\n");
}

#[test]
fn a_worker_binary_reads_a_file_it_is_handed() {
    let _one = one_at_a_time();
    let w = Coprocess::builder()
        .startup_timeout(CALL_LIMIT)
        .spawn(Command::new(env!("CARGO_BIN_EXE_echo_worker")))
        .unwrap();
    let path = temp_file("binary", "for a worker binary");
    let text: String = call(&w, "read_fd", Fd::from(std::fs::File::open(&path).unwrap())).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(text, "for a worker binary");
}

#[test]
fn a_unix_socket_handed_over_carries_traffic() {
    let _one = one_at_a_time();
    let w = worker();
    let (mut mine, theirs) = UnixStream::pair().unwrap();
    mine.set_read_timeout(Some(CALL_LIMIT)).unwrap();
    mine.write_all(b"hello from the parent\n").unwrap();
    let read: usize = call(&w, "shout", Fd::from(theirs)).unwrap();
    assert_eq!(read, 22);
    let mut line = String::new();
    BufReader::new(&mine).read_line(&mut line).unwrap();
    assert_eq!(line, "HELLO FROM THE PARENT\n");
}

#[test]
fn a_listening_socket_handed_over_accepts_in_the_worker() {
    let _one = one_at_a_time();
    let w = worker();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let served = w.call_async::<String>("serve_one", Fd::from(listener));
    let mut conn = TcpStream::connect(address).unwrap();
    conn.write_all(b"through a listener the worker never opened")
        .unwrap();
    drop(conn);
    assert_eq!(
        served.wait_timeout(CALL_LIMIT).unwrap(),
        "through a listener the worker never opened"
    );
}

#[test]
fn descriptors_travel_at_any_depth_and_back_in_replies_and_events() {
    let _one = one_at_a_time();
    let w = worker();
    // At depth, in a struct and a Vec.
    let path = temp_file("job", "the input");
    let (first_read, first_write) = std::io::pipe().unwrap();
    let (second_read, second_write) = std::io::pipe().unwrap();
    let job = Job {
        name: "job 1".into(),
        input: Fd::from(std::fs::File::open(&path).unwrap()),
        outputs: vec![Fd::from(first_write), Fd::from(second_write)],
    };
    assert_eq!(call::<String>(&w, "job", &job).unwrap(), "the input");
    // Ours close here: the worker's copies are closed already, so the pipes end.
    drop(job);
    std::fs::remove_file(&path).unwrap();
    for mut out in [first_read, second_read] {
        let text = within(CALL_LIMIT, move || {
            let mut text = String::new();
            out.read_to_string(&mut text).unwrap();
            text
        });
        assert_eq!(text, "job 1: the input");
    }
    // In a reply.
    let fd: Fd = call(&w, "make_pipe", "made by the worker").unwrap();
    let mut text = String::new();
    std::io::PipeReader::from(fd)
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "made by the worker");
    // In an event.
    let (tx, rx) = mpsc::channel();
    w.on("handed", move |fd: Fd| {
        let mut text = String::new();
        std::io::PipeReader::from(fd)
            .read_to_string(&mut text)
            .unwrap();
        let _ = tx.send(text);
    });
    call::<()>(&w, "emit_pipe", "sent in an event").unwrap();
    assert_eq!(rx.recv_timeout(CALL_LIMIT).unwrap(), "sent in an event");
}

/// Reads `pipe` to its end within the deadline: every write end is closed.
fn ends(mut pipe: std::io::PipeReader) -> bool {
    within(CALL_LIMIT, move || {
        let mut rest = Vec::new();
        pipe.read_to_end(&mut rest).is_ok()
    })
}

#[test]
fn the_descriptors_of_a_refused_message_are_closed() {
    let _one = one_at_a_time();
    let w = worker();
    // An unknown method, and arguments the handler cannot decode: each refused, and the
    // pipe's write end the message carried closed with it.
    for method in ["no_such_method", "want_u32"] {
        let (read, write) = std::io::pipe().unwrap();
        let err = call::<u32>(&w, method, Fd::from(write)).unwrap_err();
        let refused = match &err {
            Error::MethodNotFound(name) => name == "no_such_method",
            Error::Remote(e) => e.kind() == RemoteErrorKind::InvalidArguments,
            _ => false,
        };
        assert!(refused, "{method}: {err:?}");
        assert!(ends(read), "{method}: the worker kept the descriptor");
    }
    // A reply whose type the caller did not ask for: its descriptor closes too.
    let err = call::<u32>(&w, "make_pipe", "unwanted").unwrap_err();
    assert!(
        matches!(&err, Error::Decode { reason, .. } if reason.contains("got struct")),
        "{err:?}"
    );
    assert_eq!(call::<u32>(&w, "want_u32", 5u32).unwrap(), 5);
}

#[test]
fn ten_thousand_descriptors_passed_leak_on_neither_side() {
    let _one = one_at_a_time();
    let w = worker();
    let null = std::fs::File::open("/dev/null").unwrap();
    // Warm up: threads, buffers and the socket exist before counting.
    call::<()>(&w, "drop", Fd::from(null.try_clone().unwrap())).unwrap();
    let (ours, theirs) = (open_fds(), call::<usize>(&w, "fds", ()).unwrap());
    for _ in 0..10_000 {
        call::<()>(&w, "drop", Fd::from(null.try_clone().unwrap())).unwrap();
    }
    // Pipelined too, a thousand in flight at a time.
    for _ in 0..5 {
        let pending: Vec<_> = (0..1000)
            .map(|_| w.call_async::<()>("drop", Fd::from(null.try_clone().unwrap())))
            .collect();
        for p in pending {
            p.wait_timeout(CALL_LIMIT).unwrap();
        }
    }
    assert_eq!(open_fds(), ours, "the parent leaked descriptors");
    assert_eq!(
        call::<usize>(&w, "fds", ()).unwrap(),
        theirs,
        "the worker leaked descriptors"
    );
}

#[test]
fn more_descriptors_than_one_message_carries_fail_that_call_only() {
    let _one = one_at_a_time();
    let w = worker();
    let null = std::fs::File::open("/dev/null").unwrap();
    let many: Vec<Fd> = (0..254)
        .map(|_| Fd::from(null.try_clone().unwrap()))
        .collect();
    let before = open_fds();
    let err = call::<()>(&w, "drop_all", &many).unwrap_err();
    assert!(
        matches!(&err, Error::Encode { reason, .. } if reason.contains("more than 253 descriptors")),
        "{err:?}"
    );
    assert_eq!(open_fds(), before, "the duplicates were not closed");
    assert_eq!(call::<u32>(&w, "want_u32", 6u32).unwrap(), 6);
}

#[test]
fn over_stdio_a_descriptor_fails_at_its_sender_and_the_link_goes_on() {
    let _one = one_at_a_time();
    let w = Coprocess::builder()
        .startup_timeout(CALL_LIMIT)
        .spawn_stdio(Command::new(env!("CARGO_BIN_EXE_stdio_worker")))
        .unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let err = call::<u64>(&w, "echo", Fd::from(null)).unwrap_err();
    assert!(
        matches!(&err, Error::Encode { reason, .. } if reason.contains("travels only") && reason.contains("spawn_stdio")),
        "{err:?}"
    );
    assert_eq!(call::<u64>(&w, "echo", 7u64).unwrap(), 7);
    // The worker's reply with a descriptor fails there, and says why.
    let err = call::<Fd>(&w, "pipe_fd", ()).unwrap_err();
    assert!(
        matches!(&err, Error::Remote(e) if e.message().contains("travels only")),
        "{err:?}"
    );
    assert_eq!(call::<u64>(&w, "echo", 8u64).unwrap(), 8);
}

#[test]
fn through_a_pool_a_descriptor_argument_fails_at_its_sender_and_a_reply_arrives() {
    let _one = one_at_a_time();
    // A pool's call may run again on another worker, so its arguments are plain bytes;
    // the reply comes from one worker over its link, where descriptors travel.
    let pool = coproq::Pool::builder()
        .size(1)
        .call_timeout(CALL_LIMIT)
        .fork(|parent| {
            parent.handle("ping", |n: u64| n);
            parent.handle("null", |()| -> Result<Fd, String> {
                let file = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?;
                Ok(Fd::from(file))
            });
        })
        .unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let err = pool.call::<u64>("ping", Fd::from(null)).unwrap_err();
    assert!(
        matches!(&err, Error::Encode { reason, .. } if reason.contains("travels only") && reason.contains("Pool")),
        "{err:?}"
    );
    assert_eq!(pool.call::<u64>("ping", 3u64).unwrap(), 3);
    let fd: Fd = pool.call("null", ()).unwrap();
    let mut bytes = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut bytes).unwrap();
    assert!(bytes.is_empty(), "/dev/null reads as nothing");
}

#[test]
fn an_fd_outside_a_link_fails_to_serialize_and_says_why() {
    let _one = one_at_a_time();
    let null = std::fs::File::open("/dev/null").unwrap();
    let err = serde_json::to_string(&Fd::from(null)).unwrap_err();
    assert!(err.to_string().contains("travels only"), "{err}");
}

mod hostile {
    //! A worker that misuses descriptors: each is a protocol error that ends the link,
    //! and whatever it sent is closed.

    use super::*;

    fn hostile(mode: &str) -> Coprocess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hostile_worker"));
        cmd.arg(mode).arg(coproq::PROTOCOL_VERSION.to_string());
        Coprocess::builder()
            .close_grace(Duration::from_millis(100))
            .startup_timeout(CALL_LIMIT)
            .spawn(cmd)
            .unwrap()
    }

    fn refused(mode: &str, expect: &str) {
        let before = open_fds();
        let w = hostile(mode);
        let err = call::<u32>(&w, "echo", 1u32).unwrap_err();
        assert!(
            matches!(&err, Error::Protocol(m) if m.contains(expect)),
            "{mode}: {err:?}"
        );
        assert!(matches!(
            call::<u32>(&w, "echo", 1u32),
            Err(Error::NotConnected)
        ));
        drop(w);
        // Nothing the worker sent is left open here.
        assert!(
            wait_until(CALL_LIMIT, || open_fds() <= before),
            "{mode}: {} descriptors open, {before} before",
            open_fds()
        );
    }

    #[test]
    fn descriptors_announced_on_a_link_without_the_socket() {
        let _one = one_at_a_time();
        refused("fd-without-socket", "passes none");
    }

    #[test]
    fn descriptors_announced_and_never_sent() {
        let _one = one_at_a_time();
        refused("fd-none-sent", "2 descriptors announced, and none sent");
    }

    #[test]
    fn two_hundred_descriptors_where_one_was_announced() {
        let _one = one_at_a_time();
        refused("fd-too-many", "1 descriptors announced, 200 received");
    }

    #[test]
    fn ten_thousand_descriptors_announced_for_one_message() {
        let _one = one_at_a_time();
        refused(
            "fd-count-huge",
            "10000 descriptors announced for one message",
        );
    }
}

//! A `Link` between two ends in one process, over two `std::io::pipe()`s: the read-token
//! hand-offs, nested calls and the end of the stream, without forking. Every wait has a
//! deadline, so a broken hand-off fails instead of hanging.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Connect, Flush, Handlers, Link, LinkOptions, PipeInput, PipeOutput, dispatch};
use crate::error::{Error, RemoteErrorKind, Result};
use crate::handler::Registry;
use crate::pending::{self, Pending};

const LIMIT: Duration = Duration::from_secs(20);

fn options(parent: bool) -> Connect {
    Connect {
        options: LinkOptions {
            max_frame: 1 << 20,
            report_protocol_errors: false,
            spin: None,
            concurrency: None,
            report_starts: false,
            memory_limit: None,
        },
        entry: None,
        parent,
        heartbeat: None,
        offer_clock: true,
        peer_hello_max: 1 << 20,
        timeout: LIMIT,
        descriptors: None,
    }
}

/// Two connected links, `a` and `b`, with these handlers on each side.
fn pair(a_handlers: Handlers, b_handlers: Handlers) -> (Arc<Link>, Arc<Link>) {
    let (a_in, b_out) = std::io::pipe().unwrap();
    let (b_in, a_out) = std::io::pipe().unwrap();
    let file = |end: OwnedFd| File::from(end);
    let b = thread::spawn(move || {
        let (input, output) = (file(b_in.into()), file(b_out.into()));
        Link::connect(
            PipeInput::boxed(input),
            PipeOutput::boxed(output, None),
            options(false),
            Arc::new(b_handlers),
            None,
        )
    });
    let (input, output) = (file(a_in.into()), file(a_out.into()));
    let (a, _) = Link::connect(
        PipeInput::boxed(input),
        PipeOutput::boxed(output, None),
        options(true),
        Arc::new(a_handlers),
        None,
    )
    .unwrap();
    let (b, _) = b.join().unwrap().unwrap();
    (a, b)
}

fn handlers(register: impl FnOnce(&mut Registry<'_>)) -> Handlers {
    let handlers = Handlers::default();
    register(&mut Registry::new(&handlers));
    handlers
}

/// Serves `link` on a thread of its own, reading and answering as a worker does.
fn serve(link: &Arc<Link>) {
    let link = Arc::clone(link);
    thread::spawn(move || {
        assert!(link.claim_serving());
        dispatch::serve(&link);
    });
}

fn call<R: DeserializeOwned>(link: &Arc<Link>, name: &str, args: impl Serialize) -> Result<R> {
    let started = link.start_call(name, &args, Flush::Now, None);
    Pending::new(link, name, started, None, pending::decode_reply::<R>).wait_timeout(LIMIT)
}

#[test]
fn a_caller_reads_its_own_reply() {
    // Nobody reads on `a` but the caller itself: no background reader, no dispatcher.
    let (a, b) = pair(
        Handlers::default(),
        handlers(|r| {
            r.handle("double", |x: u64| x * 2);
        }),
    );
    serve(&b);
    for i in 0..100u64 {
        assert_eq!(call::<u64>(&a, "double", i).unwrap(), i * 2);
    }
}

#[test]
fn a_queued_caller_is_handed_the_token() {
    let (a, b) = pair(
        Handlers::default(),
        handlers(|r| {
            r.handle("slow", |ms: u64| {
                thread::sleep(Duration::from_millis(ms));
                ms
            });
        }),
    );
    serve(&b);
    // The first caller takes the token and waits 200 ms; the second queues for the token
    // meanwhile, and its reply is read either by the first (then handed over in its slot)
    // or by itself once the token is passed on. No other thread reads on `a`.
    let first = {
        let a = Arc::clone(&a);
        thread::spawn(move || call::<u64>(&a, "slow", 200u64))
    };
    thread::sleep(Duration::from_millis(50));
    let seconds: Vec<_> = (0..4)
        .map(|_| {
            let a = Arc::clone(&a);
            thread::spawn(move || call::<u64>(&a, "slow", 1u64))
        })
        .collect();
    assert_eq!(first.join().unwrap().unwrap(), 200);
    for second in seconds {
        assert_eq!(second.join().unwrap().unwrap(), 1);
    }
}

/// A waker that counts wake-ups.
struct Flag(Mutex<bool>, std::sync::Condvar);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        *self.0.lock().unwrap() = true;
        self.1.notify_all();
    }
}

#[test]
fn the_background_reader_delivers_replies_nobody_waits_for_on_a_thread() {
    let (a, b) = pair(
        Handlers::default(),
        handlers(|r| {
            r.handle("double", |x: u64| x * 2);
        }),
    );
    serve(&b);
    {
        let a = Arc::clone(&a);
        thread::spawn(move || dispatch::read_in_background(&a));
    }
    // A future: polled, never blocked on, so only the background reader can read.
    let started = a.start_call("double", &21u64, Flush::Now, None);
    let mut pending = Pending::new(&a, "double", started, None, pending::decode_reply::<u64>);
    let flag = Arc::new(Flag(Mutex::new(false), std::sync::Condvar::new()));
    let waker = Waker::from(Arc::clone(&flag));
    let deadline = Instant::now() + LIMIT;
    loop {
        let polled = std::pin::Pin::new(&mut pending).poll(&mut Context::from_waker(&waker));
        if let Poll::Ready(value) = polled {
            assert_eq!(value.unwrap(), 42);
            break;
        }
        let woken = flag.0.lock().unwrap();
        let (mut woken, _) = flag
            .1
            .wait_timeout_while(woken, Duration::from_millis(100), |w| !*w)
            .unwrap();
        *woken = false;
        assert!(
            Instant::now() < deadline,
            "the background reader never delivered"
        );
    }
}

#[test]
fn nested_calls_are_served_while_waiting_in_both_directions() {
    // a calls b's "relay", which calls a's "base", which calls b's "leaf": each handler
    // waits for the next on its end's serving thread, which keeps serving meanwhile.
    let a_link: Arc<OnceLock<Weak<Link>>> = Arc::default();
    let b_link: Arc<OnceLock<Weak<Link>>> = Arc::default();
    let (a_for, b_for) = (Arc::clone(&a_link), Arc::clone(&b_link));
    let (a, b) = pair(
        handlers(move |r| {
            r.handle("base", move |x: u64| -> Result<u64> {
                let b = a_for
                    .get()
                    .and_then(Weak::upgrade)
                    .ok_or(Error::NotConnected)?;
                Ok(call::<u64>(&b, "leaf", x)? + 1)
            });
        }),
        handlers(move |r| {
            r.handle("relay", move |x: u64| -> Result<u64> {
                let a = b_for
                    .get()
                    .and_then(Weak::upgrade)
                    .ok_or(Error::NotConnected)?;
                Ok(call::<u64>(&a, "base", x)? * 10)
            })
            .handle("leaf", |x: u64| x + 100);
        }),
    );
    b_link.set(Arc::downgrade(&b)).unwrap();
    a_link.set(Arc::downgrade(&a)).unwrap();
    serve(&a);
    serve(&b);
    // ((5 + 100) + 1) * 10
    assert_eq!(call::<u64>(&a, "relay", 5u64).unwrap(), 1060);
    let err = call::<u64>(&b, "relay", 5u64).unwrap_err();
    assert_eq!(err.to_string(), "relay: method not found");
}

#[test]
fn the_end_of_the_stream_fails_calls_in_flight() {
    let (a, b) = pair(
        Handlers::default(),
        handlers(|r| {
            // Answered never: the reply is kept, and dropped only with the handlers.
            let kept = Mutex::new(Vec::new());
            r.handle_deferred("never", move |(): (), reply: crate::Reply<u8>| {
                kept.lock().unwrap().push(reply);
            });
        }),
    );
    serve(&b);
    let waiting = {
        let a = Arc::clone(&a);
        thread::spawn(move || call::<u8>(&a, "never", ()))
    };
    thread::sleep(Duration::from_millis(100));
    // `b` says goodbye and closes its sending half: `a` reads the end of the stream.
    b.shutdown();
    let err = waiting.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    assert!(a.is_ended());
    assert!(matches!(
        call::<u8>(&a, "never", ()),
        Err(Error::NotConnected)
    ));
}

#[test]
fn a_panic_in_a_deferred_handler_answers_the_caller() {
    let (a, b) = pair(
        Handlers::default(),
        handlers(|r| {
            r.handle_deferred("boom", |x: u8, _reply: crate::Reply<u8>| {
                assert!(x == 0, "deferred handler failed on {x}");
            })
            .handle_deferred("later", |x: u8, reply: crate::Reply<u8>| {
                thread::spawn(move || reply.send(x + 1));
            });
        }),
    );
    serve(&b);
    let err = call::<u8>(&a, "boom", 7u8).unwrap_err();
    let Error::Remote(remote) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(remote.kind(), RemoteErrorKind::Panicked);
    assert!(
        remote.message().contains("deferred handler failed on 7"),
        "{err}"
    );
    // The link goes on.
    assert_eq!(call::<u8>(&a, "later", 1u8).unwrap(), 2);
}

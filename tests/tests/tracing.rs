//! The `tracing` feature: what a program's subscriber learns of a worker's life, a pool's
//! restarts, calls, a lost heartbeat and a protocol error, from real processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coproq::{Coprocess, Error, Pool};
use coproq_tests::{CALL_LIMIT, call, wait_until};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber, span};

/// One event: its level, message and fields.
#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    target: String,
    message: String,
    fields: HashMap<String, String>,
}

/// A subscriber that keeps every event.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        self.0.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message,
            fields,
        });
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

impl Collect {
    /// Events whose message is `message`.
    fn with(&self, message: &str) -> Vec<Seen> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|e| e.message == message)
            .cloned()
            .collect()
    }

    /// Waits until an event with `message` has come.
    fn wait_for(&self, message: &str) -> Vec<Seen> {
        assert!(
            wait_until(CALL_LIMIT, || !self.with(message).is_empty()),
            "no `{message}` event in {:?}",
            self.0.lock().unwrap()
        );
        self.with(message)
    }
}

fn serve(parent: &Coprocess) {
    parent.handle("echo", |x: u64| x);
    parent.handle("sleep", |ms: u64| {
        std::thread::sleep(Duration::from_millis(ms));
    });
    parent.handle("abort", |()| -> () { std::process::abort() });
}

// One test: the subscriber is the process's global one.
#[test]
fn a_subscriber_sees_workers_pools_calls_and_link_failures() {
    let events = Collect::default();
    tracing::subscriber::set_global_default(events.clone()).expect("the first subscriber");

    // A pool's life: starts, calls, a crash, its restart.
    let pool = Pool::builder()
        .size(1)
        .startup_timeout(CALL_LIMIT)
        .call_timeout(CALL_LIMIT)
        .fork(serve)
        .unwrap();
    let started = events.wait_for("worker started");
    assert!(started[0].fields.contains_key("pid"), "{started:?}");
    assert!(
        started
            .iter()
            .all(|e| e.target == "coproq" && e.level == Level::INFO)
    );
    events.wait_for("pool worker started");
    assert_eq!(pool.call::<u64>("echo", 7u64).unwrap(), 7);
    let calls = events.wait_for("call");
    assert!(
        calls.iter().any(|e| e.level == Level::TRACE
            && e.fields["method"] == "echo"
            && e.fields.contains_key("id")
            && e.fields["outcome"] == "ok"),
        "{calls:?}"
    );
    pool.call::<()>("sleep", 150u64).unwrap();
    let slow = events.wait_for("slow call");
    assert_eq!(
        (slow[0].level, slow[0].fields["method"].as_str()),
        (Level::DEBUG, "sleep")
    );
    assert!(matches!(
        pool.call::<()>("abort", ()),
        Err(Error::Disconnected { .. })
    ));
    let died = events.wait_for("pool worker died; restarting it");
    assert_eq!(died[0].level, Level::WARN);
    assert!(died[0].fields["status"].contains("SIGABRT"), "{died:?}");
    let restart = events.wait_for("pool restarts a worker");
    assert!(restart[0].fields.contains_key("backoff"), "{restart:?}");
    events.wait_for("worker died");
    pool.close();

    // A stopped worker: its heartbeat is lost.
    let worker = coproq::Builder::new()
        .heartbeat(Duration::from_millis(100))
        .startup_timeout(CALL_LIMIT)
        .fork(serve)
        .unwrap();
    let pid = worker.pid().unwrap();
    coproq_tests::signal(pid, libc::SIGSTOP);
    let outcome = call::<()>(&worker, "sleep", 1u64);
    coproq_tests::signal(pid, libc::SIGKILL);
    assert!(
        matches!(outcome, Err(Error::Disconnected { .. })),
        "{outcome:?}"
    );
    let lost = events.wait_for("heartbeat lost: the peer fell silent");
    assert_eq!(lost[0].level, Level::WARN);

    // A worker that breaks the protocol.
    let mut hostile = std::process::Command::new(env!("CARGO_BIN_EXE_hostile_worker"));
    hostile
        .arg("bad-message")
        .arg(coproq::PROTOCOL_VERSION.to_string());
    let worker = coproq::Builder::new()
        .startup_timeout(CALL_LIMIT)
        .spawn(hostile)
        .unwrap();
    assert!(matches!(
        call::<u64>(&worker, "echo", 1u64),
        Err(Error::Protocol(_))
    ));
    let broken = events.wait_for("protocol error: the link is closed");
    assert_eq!(broken[0].level, Level::WARN);
}

//! Tests for typed services: every generated method against a forked worker and a
//! spawned binary, both directions, dynamic and typed callers mixed, fingerprints.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;

use coproq::{Coprocess, Error, WeakCoprocess};
use coproq_tests::services::{
    CalcClient, CalcError, CalcServer, Calculator, Registry, RegistryClient, RegistryServer, Relay,
    RelayClient, RelayServer, stale,
};
use coproq_tests::{CALL_LIMIT, call};

fn forked() -> Coprocess {
    coproq::fork(|parent| {
        parent.listen(CalcServer::new(Calculator::default()));
    })
    .unwrap()
}

fn spawned() -> Coprocess {
    Coprocess::spawn(Command::new(env!("CARGO_BIN_EXE_typed_worker"))).unwrap()
}

fn exercise_every_method(worker: &Coprocess) {
    let calc = CalcClient::new(worker);
    assert_eq!(calc.add(2, 3).unwrap(), 5);
    assert_eq!(calc.div(7, 2).unwrap(), Ok(3));
    assert_eq!(calc.div(1, 0).unwrap(), Err(CalcError::DivisionByZero));
    assert_eq!(
        calc.div(i64::MIN, -1).unwrap(),
        Err(CalcError::Overflow { a: i64::MIN, b: -1 })
    );
    assert_eq!(calc.checked(true).unwrap(), 1);
    let err = calc.checked(false).unwrap_err();
    assert_eq!(err.to_string(), "inner: method not found");
    assert_eq!(calc.count().unwrap(), 4);
    calc.reset().unwrap();
    assert_eq!(calc.count().unwrap(), 0);
    let name = String::from("typed world");
    assert_eq!(calc.greet(&name).unwrap(), "hello, typed world");
    assert_eq!(calc.checksum(&[1, 2, 3, 250]).unwrap(), 256);
    assert_eq!(calc.r#type().unwrap(), "calculator");
    assert!(calc.configured().unwrap());
    calc.note("first".into()).unwrap();
    calc.note("second".into()).unwrap();
    assert_eq!(calc.notes().unwrap(), ["first", "second"]);

    let pending: Vec<_> = (0..1000).map(|i| calc.add_async(i, 1)).collect();
    for (i, p) in (0..).zip(pending) {
        assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), i + 1);
    }
    assert_eq!(
        calc.div_async(9, 3).wait_timeout(CALL_LIMIT).unwrap(),
        Ok(3)
    );
    let clone = calc.clone();
    assert_eq!(
        std::thread::spawn(move || clone.add(1, 1).unwrap())
            .join()
            .unwrap(),
        2
    );
}

#[test]
fn every_generated_method_against_a_forked_worker() {
    exercise_every_method(&forked());
}

#[test]
fn every_generated_method_against_a_spawned_binary() {
    exercise_every_method(&spawned());
}

#[test]
fn dynamic_calls_reach_typed_methods() {
    let w = forked();
    assert_eq!(call::<i64>(&w, "add", (1i64, 2i64)).unwrap(), 3);
    assert_eq!(call::<String>(&w, "greet", "dyn").unwrap(), "hello, dyn");
    assert_eq!(call::<String>(&w, "type", ()).unwrap(), "calculator");
    // A typed application error is, for a dynamic caller, a remote error with its text.
    let err = call::<i64>(&w, "div", (1i64, 0i64)).unwrap_err();
    assert!(
        matches!(&err, Error::Remote(r) if r.message() == "DivisionByZero"),
        "{err:?}"
    );
    // Integers cross to any integer type that holds them, for scripting.
    assert_eq!(call::<i64>(&w, "add", (1i32, 2u8)).unwrap(), 3);
    // And the shape check still guards typed handlers, at every depth.
    let err = call::<i64>(&w, "add", ("1", "2")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "add: invalid arguments: element 0: expected i64, got string"
    );
    assert!(
        call::<bool>(&w, "never", ())
            .unwrap_err()
            .to_string()
            .contains("method not found")
    );
}

#[test]
fn typed_clients_reach_dynamic_handlers_of_matching_types() {
    let w = coproq::fork(|parent| {
        parent
            .handle("add", |(a, b): (i64, i64)| a * 100 + b)
            .handle("div", |(a, b): (i64, i64)| {
                if b == 0 {
                    Err("no".to_string())
                } else {
                    Ok(a / b)
                }
            })
            .handle("greet", |name: String| format!("dyn {name}"));
    })
    .unwrap();
    let calc = CalcClient::new(&w);
    assert_eq!(calc.add(1, 2).unwrap(), 102);
    assert_eq!(calc.greet("x").unwrap(), "dyn x");
    assert_eq!(calc.div(8, 2).unwrap(), Ok(4));
    // A `String` error does not decode as `CalcError`: it stays a remote error.
    let err = calc.div(1, 0).unwrap_err();
    assert!(
        matches!(&err, Error::Remote(r) if r.message() == "no"),
        "{err:?}"
    );
    assert!(matches!(calc.count(), Err(Error::MethodNotFound(_))));
}

#[test]
fn a_stale_worker_gets_a_clear_error_not_misdecoded_values() {
    let w = forked();
    let old = stale::CalcClient::new(&w);
    let err = old.add(1, 2).unwrap_err();
    let Error::ServiceMismatch { service, detail } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(service, "Calc");
    assert!(
        detail.contains("fn add(i32, i32) -> i32") && detail.contains("fn add(i64, i64) -> i64"),
        "{detail}"
    );
    assert!(
        err.to_string().starts_with("service `Calc` differs"),
        "{err}"
    );
    // Cached: the second call fails the same way, and the link is fine.
    assert!(matches!(
        old.add_async(1, 2).wait_timeout(CALL_LIMIT),
        Err(Error::ServiceMismatch { .. })
    ));
    assert_eq!(CalcClient::new(&w).add(1, 2).unwrap(), 3);
    // Dynamic calls are not blocked.
    assert_eq!(call::<i64>(&w, "add", (1i64, 2i64)).unwrap(), 3);
}

#[derive(Default)]
struct MemoryRegistry(Mutex<HashMap<String, u64>>);

impl Registry for MemoryRegistry {
    fn put(&self, key: String, value: u64) -> Option<u64> {
        self.0.lock().unwrap().insert(key, value)
    }

    fn get(&self, key: String) -> Option<u64> {
        self.0.lock().unwrap().get(&key).copied()
    }
}

struct ParentRelay(WeakCoprocess);

impl Relay for ParentRelay {
    fn store_in_parent(&self, key: String, value: u64) -> coproq::Result<Option<u64>> {
        let parent = self.0.upgrade().ok_or(Error::NotConnected)?;
        let registry = RegistryClient::new(&parent);
        registry.put(key.clone(), value)?;
        registry.get(key)
    }
}

#[test]
fn the_parent_serves_a_trait_and_a_worker_method_calls_it_through_a_client() {
    let w = Coprocess::builder()
        .listen(RegistryServer::new(MemoryRegistry::default()))
        .fork(|parent| {
            parent.listen(RelayServer::new(ParentRelay(parent.downgrade())));
        })
        .unwrap();
    let relay = RelayClient::new(&w);
    assert_eq!(
        relay.store_in_parent("answer".into(), 42).unwrap(),
        Some(42)
    );
    let registry_seen_by_parent: Option<u64> = call(&w, "store_in_parent", ("k", 7u64)).unwrap();
    assert_eq!(registry_seen_by_parent, Some(7));
}

#[test]
fn large_byte_arguments_of_typed_methods() {
    let w = forked();
    let calc = CalcClient::new(&w);
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 7) as u8).collect();
    let expected: u64 = data.iter().map(|&b| u64::from(b)).sum();
    assert_eq!(calc.checksum(&data).unwrap(), expected);
}

/// A pool worker that serves `Calc` and sleeps on request.
fn serve_calc_and_sleep(parent: &Coprocess) {
    parent
        .handle("sleep", |ms: u64| {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        })
        .listen(CalcServer::new(Calculator::default()));
}

#[test]
fn a_typed_clients_ready_waits_for_room_as_its_peers_does() {
    let pool = coproq::Pool::builder()
        .size(1)
        .startup_timeout(CALL_LIMIT)
        .max_in_flight(1)
        .queue_capacity(1)
        .fork(serve_calc_and_sleep)
        .unwrap();
    let calc = CalcClient::new(&pool);
    // The first typed call fetches the service's fingerprint; later ones go at once.
    assert_eq!(calc.add(0, 0).unwrap(), 0);
    let busy = pool.call_async::<()>("sleep", 300u64);
    let queued = calc.add_async(1, 2);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    // Full now: the client's `ready` suspends the task until the pool's queue moves.
    let waited = runtime.block_on(async { tokio::time::timeout(CALL_LIMIT, calc.ready()).await });
    assert!(waited.is_ok(), "ready never resolved");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(200),
        "ready resolved with the queue full: {:?}",
        started.elapsed()
    );
    // And through a link, with room, at once; calls then go on without blocking.
    let w = forked();
    let linked = CalcClient::new(&w);
    let sums = runtime.block_on(async {
        tokio::time::timeout(CALL_LIMIT, async {
            let mut pending = Vec::new();
            for i in 0..1000 {
                linked.ready().await;
                pending.push(linked.add_async(i, 1));
            }
            let mut sums = Vec::new();
            for p in pending {
                sums.push(p.await.unwrap());
            }
            sums
        })
        .await
    });
    assert_eq!(sums.unwrap(), (1..=1000).collect::<Vec<i64>>());
    busy.wait_timeout(CALL_LIMIT).unwrap();
    assert_eq!(queued.wait_timeout(CALL_LIMIT).unwrap(), 3);
    w.close().unwrap();
}

//! Spinning before blocking with many threads on one link, and switched off in a pool.

use std::time::Duration;

use coproq::{Coprocess, Pool};
use coproq_tests::{CALL_LIMIT, call, within};

fn serve(parent: &Coprocess) {
    parent.handle("echo", |x: u64| x);
}

#[test]
fn sixteen_threads_share_one_spinning_link() {
    within(CALL_LIMIT * 2, || {
        let w = coproq::fork(serve).expect("fork");
        std::thread::scope(|scope| {
            for t in 0..16u64 {
                let w = &w;
                scope.spawn(move || {
                    for i in 0..2_000u64 {
                        let x = t << 32 | i;
                        assert_eq!(call::<u64>(w, "echo", x).unwrap(), x, "a reply went astray");
                    }
                });
            }
        });
        w.close();
    });
}

#[test]
fn a_pool_with_spinning_off_answers() {
    within(CALL_LIMIT, || {
        let pool = Pool::builder()
            .size(2)
            .spin(Duration::ZERO)
            .fork(serve)
            .expect("pool");
        let results: Vec<u64> = pool
            .map::<u64, _, _>("echo", 0..1_000u64)
            .collect::<coproq::Result<_>>()
            .unwrap();
        assert_eq!(results, (0..1_000).collect::<Vec<u64>>());
        pool.close();
    });
}

//! The pool's promise on real work gone wrong: 193 compression jobs with 5 poison jobs
//! (each kills its worker its own way), a panic and a hang among them, through a pool of
//! 4 with the default `max_in_flight` and `retries(1)`. Every good job succeeds, each bad
//! one fails with its own cause, and the pool stays whole.

use std::time::Duration;

use coproq::{Blame, DeathReason, Error};
use coproq_tests::story::{self, Job};

/// Small jobs: the test builds in debug, where compression is slow.
const LEN: usize = 16 << 10;

fn story_pool() -> coproq::Pool {
    coproq::Pool::builder()
        .size(4)
        .retries(1)
        .run_timeout(Duration::from_secs(3))
        .kill_on_timeout(true)
        .memory_limit(2 << 30)
        .call_timeout(coproq_tests::CALL_LIMIT * 4)
        .fork(|parent| {
            parent.handle("compress", story::run);
        })
        .expect("the pool starts")
}

#[test]
#[cfg_attr(
    target_vendor = "apple",
    ignore = "the 64 GiB job relies on memory_limit, which macOS does not enforce for mmap"
)]
fn every_good_job_succeeds_and_each_bad_one_fails_with_its_own_cause() {
    let pool = story_pool();
    let jobs = story::jobs(193, LEN);
    assert_eq!(jobs.len(), 200);
    let results: Vec<coproq::Result<serde_bytes::ByteBuf>> =
        pool.map("compress", jobs.clone()).collect();
    let mut good = 0;
    for (job, result) in jobs.iter().zip(&results) {
        match (job, result) {
            (Job::Compress { seed, len }, Ok(bytes)) => {
                assert!(story::is_right(*seed, *len, bytes), "job {seed} is wrong");
                good += 1;
            }
            (Job::Compress { seed, .. }, Err(e)) => panic!("good job {seed} failed: {e}"),
            (Job::Panic, Err(Error::Remote(e))) => assert!(e.message().contains("job refused")),
            (Job::Hang, Err(Error::Timeout { after, .. })) => {
                assert_eq!(*after, Duration::from_secs(3));
            }
            (
                poison,
                Err(
                    e @ Error::Disconnected {
                        status,
                        postmortem,
                        blame,
                        ..
                    },
                ),
            ) if poison.is_poison() => {
                assert_eq!(*blame, Some(Blame::Poison), "{poison:?}: {e}");
                assert!(e.to_string().contains("poison call"), "{e}");
                let status = status.expect("the worker was reaped");
                let signal = postmortem.as_ref().and_then(|p| p.signal);
                let reason = postmortem.as_ref().and_then(|p| p.reason);
                match poison {
                    Job::Abort => assert_eq!(signal, Some("SIGABRT"), "{e}"),
                    // A fork worker runs before `main`, where Rust's runtime has not set
                    // up its stack overflow report: the guard page's SIGSEGV is all there
                    // is of an overflow.
                    Job::NullWrite | Job::StackOverflow => {
                        assert_eq!(signal, Some("SIGSEGV"), "{e}");
                    }
                    Job::HugeAllocation => {
                        assert_eq!(
                            reason,
                            Some(DeathReason::OutOfMemory {
                                bytes: Some(story::HUGE as u64),
                                limit: Some(2 << 30),
                            }),
                            "{e}"
                        );
                        assert!(e.to_string().contains("out of memory"), "{e}");
                    }
                    Job::Exit3 => assert_eq!(status.code(), Some(3), "{e}"),
                    _ => unreachable!("poison jobs only"),
                }
            }
            (job, result) => panic!("{job:?}: unexpected {result:?}"),
        }
    }
    assert_eq!(good, 193);
    let stats = pool.stats();
    assert_eq!(stats.poison, 5, "{stats:?}");
    // Each poison job costs two restarts at most (its first worker, and the one that ran
    // it alone), the hang one (its worker killed).
    assert!(stats.restarts <= 11, "{stats:?}");
    // Not broken: it still takes calls.
    let again: serde_bytes::ByteBuf = pool
        .call("compress", Job::Compress { seed: 1, len: LEN })
        .expect("the pool is whole");
    assert!(story::is_right(1, LEN, &again));
    pool.close();
}

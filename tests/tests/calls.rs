//! Tests for calls: argument shapes, pipelining, many threads, big payloads, futures.

use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use coproq::Coprocess;
use coproq_tests::{CALL_LIMIT, call};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: i32,
    y: i32,
    label: String,
}

fn worker() -> Coprocess {
    coproq::fork(|parent| {
        parent
            .handle("echo", |x: u32| x)
            .handle("add", |(a, b): (i32, i32)| a + b)
            .handle("answer", |(): ()| 42u64)
            .handle("concat", |(a, b, c): (String, String, String)| a + &b + &c)
            .handle("mirror", |p: Point| Point {
                x: -p.x,
                y: -p.y,
                label: p.label,
            })
            .handle("bytes", |b: serde_bytes::ByteBuf| b)
            .handle("sum_u64", |xs: Vec<u64>| xs.iter().sum::<u64>())
            .handle("reverse_u64", |mut xs: Vec<u64>| {
                xs.reverse();
                xs
            })
            .handle("negate_i16", |xs: Vec<i16>| {
                xs.into_iter().map(i16::wrapping_neg).collect::<Vec<_>>()
            })
            .handle("halve_f32", |xs: Vec<f32>| {
                xs.into_iter().map(|x| x / 2.0).collect::<Vec<_>>()
            })
            .handle("len", |b: serde_bytes::ByteBuf| b.len() as u64)
            .handle("sleep_then", |(ms, x): (u64, u32)| {
                std::thread::sleep(Duration::from_millis(ms));
                x
            });
    })
    .unwrap()
}

#[test]
fn one_bare_argument_several_as_a_tuple_none_as_unit() {
    let w = worker();
    assert_eq!(call::<u32>(&w, "echo", 1234u32).unwrap(), 1234);
    assert_eq!(call::<i32>(&w, "add", (1, 2)).unwrap(), 3);
    assert_eq!(call::<u64>(&w, "answer", ()).unwrap(), 42);
    assert_eq!(
        call::<String>(&w, "concat", ("a", "b".to_string(), "c")).unwrap(),
        "abc"
    );
}

#[test]
fn structs_round_trip() {
    let w = worker();
    let p = Point {
        x: 3,
        y: -4,
        label: "p".into(),
    };
    let m: Point = call(&w, "mirror", &p).unwrap();
    assert_eq!(
        m,
        Point {
            x: -3,
            y: 4,
            label: "p".into()
        }
    );
}

#[test]
fn vectors_of_numbers_round_trip_in_every_form_a_caller_holds_them() {
    let w = worker();
    let xs: Vec<u64> = (0..10_000).map(|i| i * 0x9e37_79b9).collect();
    let reversed: Vec<u64> = xs.iter().rev().copied().collect();
    assert_eq!(call::<Vec<u64>>(&w, "reverse_u64", &xs).unwrap(), reversed);
    assert_eq!(
        call::<Vec<u64>>(&w, "reverse_u64", xs.as_slice()).unwrap(),
        reversed
    );
    assert_eq!(
        call::<Vec<u64>>(&w, "reverse_u64", xs.clone().into_boxed_slice()).unwrap(),
        reversed
    );
    assert_eq!(
        call::<u64>(&w, "sum_u64", &xs).unwrap(),
        xs.iter().sum::<u64>()
    );
    assert_eq!(
        call::<Vec<u64>>(&w, "reverse_u64", Vec::<u64>::new()).unwrap(),
        []
    );
    assert_eq!(
        call::<Vec<i16>>(&w, "negate_i16", vec![1i16, -2, i16::MIN]).unwrap(),
        [-1, 2, i16::MIN]
    );
    let halves = call::<Vec<f32>>(&w, "halve_f32", vec![1.0f32, -3.0, f32::INFINITY]).unwrap();
    assert_eq!(halves, [0.5, -1.5, f32::INFINITY]);
}

#[test]
fn vectors_of_other_number_types_are_converted_or_refused_as_single_numbers_are() {
    let w = worker();
    // Narrower integers that fit are accepted, as a single `u32` is by a `u64`.
    assert_eq!(call::<u64>(&w, "sum_u64", vec![1u32, 2, 3]).unwrap(), 6);
    assert_eq!(call::<u64>(&w, "sum_u64", vec![4i8, 5]).unwrap(), 9);
    // Reading the reply as a wider type works the same way.
    assert_eq!(
        call::<Vec<i64>>(&w, "negate_i16", vec![7i16]).unwrap(),
        [-7]
    );
    // A number that does not fit, a float, or a vector of another kind is refused by
    // name, and the link stays up.
    for (err, expected) in [
        (
            call::<u64>(&w, "sum_u64", vec![1i64, -1]).unwrap_err(),
            "element 1",
        ),
        (call::<u64>(&w, "sum_u64", vec![1.0f64]).unwrap_err(), "f64"),
        (call::<u64>(&w, "sum_u64", vec!["1"]).unwrap_err(), "string"),
        (
            call::<Vec<f32>>(&w, "halve_f32", vec![1.0f64]).unwrap_err(),
            "f64",
        ),
    ] {
        let text = err.to_string();
        assert!(text.contains("invalid arguments"), "{text}");
        assert!(text.contains(expected), "{text}");
    }
    assert_eq!(call::<u64>(&w, "sum_u64", vec![2u64, 3]).unwrap(), 5);
}

#[test]
fn pipelined_calls_all_complete_in_order() {
    let w = worker();
    let pending: Vec<_> = (0..10_000u32)
        .map(|i| w.call_async::<u32>("echo", i))
        .collect();
    for (i, p) in pending.into_iter().enumerate() {
        assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), i as u32);
    }
}

/// Replies to pipelined calls come back to back, many to a write; replies of other types,
/// errors, and calls nobody waits for any more among them must not disturb which caller
/// gets which reply.
#[test]
fn pipelined_replies_of_mixed_shapes_and_errors_reach_their_own_callers() {
    enum Sent {
        Echo(coproq::Pending<u32>),
        Text(coproq::Pending<String>),
        OddFails(coproq::Pending<u32>),
        Dropped,
    }
    let w = coproq::fork(|parent| {
        parent
            .handle("echo", |x: u32| x)
            .handle("text", |x: u32| format!("#{x}"))
            .handle("odd_fails", |x: u32| {
                if x % 2 == 1 {
                    Err(format!("{x} is odd"))
                } else {
                    Ok(x)
                }
            });
    })
    .unwrap();
    let sent: Vec<(u32, Sent)> = (0..6_000u32)
        .map(|i| {
            let sent = match i % 7 {
                0..=2 => Sent::Echo(w.call_async("echo", i)),
                3 | 4 => Sent::Text(w.call_async("text", i)),
                5 => Sent::OddFails(w.call_async("odd_fails", i)),
                _ => {
                    drop(w.call_async::<u32>("echo", i));
                    Sent::Dropped
                }
            };
            (i, sent)
        })
        .collect();
    for (i, sent) in sent {
        match sent {
            Sent::Echo(p) => assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), i),
            Sent::Text(p) => assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), format!("#{i}")),
            Sent::OddFails(p) => match p.wait_timeout(CALL_LIMIT) {
                Ok(x) => assert!(x == i && i % 2 == 0, "{i} gave {x}"),
                Err(coproq::Error::Remote(e)) => {
                    assert!(
                        i % 2 == 1 && e.to_string().contains(&format!("{i} is odd")),
                        "{e}"
                    );
                }
                Err(e) => panic!("{i}: {e}"),
            },
            Sent::Dropped => {}
        }
    }
    // The link is still in step: a plain call after all of it.
    assert_eq!(call::<u32>(&w, "echo", 77u32).unwrap(), 77);
}

#[test]
fn eight_threads_share_one_link() {
    let w = worker();
    let threads: Vec<_> = (0..8i32)
        .map(|t| {
            let w = w.clone();
            std::thread::spawn(move || {
                for i in 0..500i32 {
                    assert_eq!(call::<i32>(&w, "add", (t * 1000, i)).unwrap(), t * 1000 + i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_64_mib_payload_round_trips() {
    let w = worker();
    let data: Vec<u8> = (0..64 << 20).map(|i: u32| (i % 251) as u8).collect();
    let back: serde_bytes::ByteBuf = call(&w, "bytes", serde_bytes::Bytes::new(&data)).unwrap();
    assert!(
        back.as_slice() == data.as_slice(),
        "payload changed on the way"
    );
}

#[test]
fn replies_may_complete_out_of_order() {
    let w = coproq::Coprocess::builder()
        .fork(|parent| {
            parent.handle_deferred("after", |(ms, x): (u64, u32), reply: coproq::Reply<u32>| {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(ms));
                    reply.send(x);
                });
            });
        })
        .unwrap();
    let slow = w.call_async::<u32>("after", (300u64, 1u32));
    let fast = w.call_async::<u32>("after", (0u64, 2u32));
    assert_eq!(fast.wait_timeout(CALL_LIMIT).unwrap(), 2);
    assert_eq!(slow.wait_timeout(CALL_LIMIT).unwrap(), 1);
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

#[test]
fn pending_is_a_future_without_a_runtime() {
    let w = worker();
    let mut pending = std::pin::pin!(w.call_async::<u32>("sleep_then", (50u64, 9u32)));
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let deadline = std::time::Instant::now() + CALL_LIMIT;
    let value = loop {
        match pending.as_mut().poll(&mut cx) {
            Poll::Ready(v) => break v.unwrap(),
            Poll::Pending => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "future never completed"
                );
                std::thread::park_timeout(Duration::from_millis(100));
            }
        }
    };
    assert_eq!(value, 9);
}

#[test]
fn the_handler_reads_borrowed_arguments_as_owned() {
    let w = worker();
    let text = String::from("borrowed");
    let out: String = call(&w, "concat", (&text, text.as_str(), "!")).unwrap();
    assert_eq!(out, "borrowedborrowed!");
    let n: u64 = call(&w, "len", serde_bytes::Bytes::new(b"12345")).unwrap();
    assert_eq!(n, 5);
}

#[test]
fn large_byte_strings_travel_direct_and_respect_frame_limits() {
    // The parent accepts frames of at most 1 MiB; the worker, the default.
    let w = coproq::Coprocess::builder()
        .max_frame_len(1 << 20)
        .fork(|parent| {
            parent
                .handle("len", |b: serde_bytes::ByteBuf| b.len() as u64)
                .handle("pattern", |n: usize| {
                    serde_bytes::ByteBuf::from((0..n).map(|i| (i % 253) as u8).collect::<Vec<u8>>())
                });
        })
        .unwrap();
    let big: Vec<u8> = (0..(768 << 10)).map(|i: u32| (i % 251) as u8).collect();
    assert_eq!(
        call::<u64>(&w, "len", serde_bytes::Bytes::new(&big)).unwrap(),
        big.len() as u64
    );
    let back: serde_bytes::ByteBuf = call(&w, "pattern", 700_000usize).unwrap();
    assert!(
        back.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8),
        "payload changed on the way"
    );
    assert_eq!(back.len(), 700_000);
    // A reply over the parent's limit is refused by the worker, not sent.
    let err = call::<serde_bytes::ByteBuf>(&w, "pattern", 2usize << 20).unwrap_err();
    assert!(err.to_string().contains("exceeds limit"), "{err}");
    // And the link is fine.
    assert_eq!(
        call::<u64>(&w, "len", serde_bytes::Bytes::new(&big[..10])).unwrap(),
        10
    );
}

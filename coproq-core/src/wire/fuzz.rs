//! Stable fuzzing (in every test run) of the frame reader and the message decoder: random
//! and mutated frames must end in a value or an error, never a panic. `cargo fuzz` can
//! drive the same entry point longer (`decode_stream`).

use std::io::BufReader;

use super::message::{self, Message};
use super::{frame, run};
use crate::bytes::ByteBuf;

/// Feeds `bytes` to the reader as one stream, decoding every frame and every body as a
/// few types; returns how many frames decoded as messages.
pub(crate) fn decode_stream(bytes: &[u8], max: u32) -> usize {
    let mut reader = BufReader::with_capacity(64, bytes);
    let mut decoded = 0;
    let _ = message::decode_hello(bytes.get(4..).unwrap_or_default());
    loop {
        let Ok(Some(payload)) = frame::next_frame(&mut reader, max, None, message::byte_string_at)
        else {
            return decoded;
        };
        let messages = if run::is_run(payload.as_slice()) {
            // Both ways a run is read: in place, and kept whole as one message.
            let _ = run::push_requests(payload.as_slice(), 0, &mut Vec::new(), drop);
            match run::decode(payload, None) {
                Ok(run) => vec![run],
                Err(_) => continue,
            }
        } else {
            match message::decode_pooled(payload, None) {
                Ok(message) => vec![message],
                Err(_) => continue,
            }
        };
        for message in messages {
            decoded += 1;
            if let Some(body) = body_of(message) {
                decode_as_a_few_types(body);
            }
        }
    }
}

fn body_of(message: Message) -> Option<message::Body> {
    match message {
        Message::Run { body, .. } => {
            for mut event in crate::wire::run::events(&body) {
                let _ = event.decode::<u32>();
                let _ = event.decode::<String>();
            }
            None
        }
        Message::Call { body, .. } | Message::Event { body } | Message::Reply { body, .. } => {
            Some(body)
        }
        Message::Bye
        | Message::Cancel { .. }
        | Message::Ping
        | Message::Credit { .. }
        | Message::Started { .. } => None,
    }
}

fn decode_as_a_few_types(mut body: message::Body) {
    let _ = body.name();
    let _ = body.decode::<u32>();
    let _ = body.decode::<String>();
    // Element by element is slow on the large byte-string seed, whose point is the
    // split frame and the buffer hand-over below; hostile lengths come in small frames.
    if body.contiguous().len() <= 1 << 16 {
        let _ = body.decode::<Vec<u64>>();
        let _ = body.decode::<Vec<f32>>();
        let _ = body.decode::<(i32, String, Option<bool>)>();
    }
    let _ = body.decode::<ByteBuf>();
}

/// A small, seeded generator: the same cases every run.
#[cfg(test)]
struct Rng(u64);

#[cfg(test)]
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Well-formed frames to mutate.
#[cfg(test)]
fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let mut buf = Vec::new();
    message::encode_hello(
        &mut buf,
        &message::Hello {
            max_frame: 1 << 20,
            entry: Some(message::ForkEntry {
                run: 3,
                function: 4,
                data: ByteBuf(vec![5; 9]),
            }),
            parent: true,
            heartbeat_ms: 0,
            spin_us: 0,
            window: 1 << 22,
            concurrency: 0,
            report_starts: false,
            memory_limit: 0,
            clock_us: 5,
            descriptors: true,
            pid: 1,
        },
    );
    seeds.push(std::mem::take(&mut buf));
    let head = |id, name| message::CallHead {
        id,
        name,
        deadline: 3_000_000,
    };
    message::encode_call(
        &mut buf,
        head(7, "add"),
        &(1i32, String::from("two"), Some(true)),
        u32::MAX,
    )
    .unwrap();
    seeds.push(std::mem::take(&mut buf));
    message::encode_event(&mut buf, "tick", &vec![1u64, 2, 3], u32::MAX).unwrap();
    seeds.push(std::mem::take(&mut buf));
    let mut open = None;
    for value in [vec![1u64], vec![2, 3], vec![]] {
        run::encode_event(&mut buf, &mut open, "tick", &value, u32::MAX).unwrap();
    }
    seeds.push(std::mem::take(&mut buf));
    message::encode_reply(&mut buf, 9, &Ok::<u32, String>(5), u32::MAX).unwrap();
    seeds.push(std::mem::take(&mut buf));
    message::encode_reply(&mut buf, 10, &Err::<u32, String>("no".into()), u32::MAX).unwrap();
    seeds.push(std::mem::take(&mut buf));
    message::encode_failure(&mut buf, 11, super::OutcomeKind::Panicked, "boom".into());
    seeds.push(std::mem::take(&mut buf));
    message::encode_bye(&mut buf);
    seeds.push(std::mem::take(&mut buf));
    message::encode_cancel(&mut buf, 7);
    seeds.push(std::mem::take(&mut buf));
    message::encode_ping(&mut buf);
    seeds.push(std::mem::take(&mut buf));
    message::encode_credit(&mut buf, 1 << 20);
    seeds.push(std::mem::take(&mut buf));
    message::encode_call(
        &mut buf,
        head(12, "bytes"),
        &crate::bytes::Bytes(&vec![7; 300_000]),
        u32::MAX,
    )
    .unwrap();
    seeds.push(buf);
    seeds
}

#[cfg(test)]
fn mutate(rng: &mut Rng, frame: &mut Vec<u8>) {
    match rng.below(7) {
        // Flip a few bits.
        0 => {
            for _ in 0..=rng.below(4) {
                let at = rng.below(frame.len());
                frame[at] ^= 1 << rng.below(8);
            }
        }
        // Cut it short.
        1 => frame.truncate(rng.below(frame.len())),
        // Claim another length, up to the largest.
        2 if frame.len() >= 4 => {
            let claim = [rng.next() as u32, u32::MAX, 0, (frame.len() * 2) as u32][rng.below(4)];
            frame[..4].copy_from_slice(&claim.to_le_bytes());
        }
        // Trailing bytes inside the frame.
        3 if frame.len() >= 4 => {
            frame.extend((0..=rng.below(9)).map(|_| rng.next() as u8));
            let len = (frame.len() - 4) as u32;
            frame[..4].copy_from_slice(&len.to_le_bytes());
        }
        // An unknown message kind or outcome, or a hostile string length.
        4 if frame.len() >= 16 => {
            let at = [4, 8, 12, 16.min(frame.len() - 4)][rng.below(4)];
            frame[at..at + 4].copy_from_slice(&(rng.next() as u32).to_le_bytes());
        }
        // Invalid UTF-8 in a name.
        5 if frame.len() > 24 => frame[24] = 0xff,
        // Random bytes.
        _ => *frame = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
    }
}

#[test]
fn a_hundred_thousand_random_and_mutated_frames_never_panic() {
    let seeds = seeds();
    let mut rng = Rng(0x5eed_c0de_1234_5678);
    let mut decoded = 0;
    for case in 0..100_000 {
        let mut stream = Vec::new();
        for _ in 0..=rng.below(3) {
            let mut frame = seeds[rng.below(seeds.len())].clone();
            if case % 8 != 0 {
                mutate(&mut rng, &mut frame);
            }
            stream.extend(frame);
        }
        decoded += decode_stream(&stream, if rng.below(2) == 0 { u32::MAX } else { 1 << 20 });
    }
    // The unmutated cases do decode: the harness exercises the decoder, not only errors.
    assert!(decoded > 10_000, "only {decoded} frames decoded");
}

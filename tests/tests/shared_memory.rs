//! `SharedBytes`: immutable bytes in sealed shared memory, handed to local workers and
//! back as a descriptor in every position (argument, reply, event, typed service, pool),
//! from 0 bytes to 1 GiB; unchangeable by the receiver; refused when a peer forges one;
//! and as plain bytes where descriptors cannot travel.

use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc};

use coproq::{Coprocess, Error, Fd, SharedBytes};
use coproq_tests::{CALL_LIMIT, call, open_fds};
use serde::{Deserialize, Serialize};

/// The tests of this file, one at a time: some count the descriptors this process
/// holds, which another test running beside them would change.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the worker can learn of a `SharedBytes` it was handed: its length, a checksum,
/// and whether it travelled as shared memory.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Seen {
    len: usize,
    sum: u64,
    shared: bool,
}

fn seen(data: &SharedBytes) -> Seen {
    Seen {
        len: data.len(),
        sum: checksum(data),
        shared: data.is_shared(),
    }
}

/// A checksum that notices a byte out of place.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().enumerate().fold(0u64, |sum, (i, &b)| {
        sum.wrapping_mul(31)
            .wrapping_add(u64::from(b) ^ (i as u64 & 0xff))
    })
}

/// The same bytes, filled in place: `len` of them.
fn pattern(len: usize) -> SharedBytes {
    SharedBytes::filled(len, |bytes| {
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
    })
}

/// A forged `SharedBytes`, as a hostile peer would send it: any descriptor, any length.
#[derive(Serialize)]
struct Forged {
    memory: Fd,
    len: u64,
}

/// What a worker found when it tried to change a memory object it was handed.
#[derive(Debug, Serialize, Deserialize)]
struct Attempts {
    write: bool,
    truncate: bool,
    map_writable: bool,
}

/// Receives a `SharedBytes` as its parts (the descriptor itself) and tries to change it.
#[derive(Deserialize)]
struct Parts {
    memory: Fd,
    #[allow(dead_code)]
    len: u64,
}

#[coproq::service]
trait Blobs {
    /// A digest of the bytes handed over.
    fn digest(&self, data: SharedBytes) -> Seen;
    /// `len` bytes of the pattern, made by the worker.
    fn pattern_of(&self, len: usize) -> SharedBytes;
}

struct BlobStore;

impl Blobs for BlobStore {
    fn digest(&self, data: SharedBytes) -> Seen {
        seen(&data)
    }
    fn pattern_of(&self, len: usize) -> SharedBytes {
        pattern(len)
    }
}

fn worker() -> Coprocess {
    coproq::Builder::new()
        .startup_timeout(CALL_LIMIT)
        .fork(|parent| {
            let back = parent.downgrade();
            parent.listen(BlobsServer::new(BlobStore));
            parent
                .handle("seen", |data: SharedBytes| seen(&data))
                .handle("sample", |data: SharedBytes| {
                    let pages: u64 = data.chunks(4096).map(|page| u64::from(page[0])).sum();
                    (
                        data.len(),
                        pages + u64::from(data[data.len() - 1]),
                        data.is_shared(),
                    )
                })
                .handle("make", |len: usize| pattern(len))
                .handle("echo", |data: SharedBytes| data)
                .handle("emit", move |len: usize| -> coproq::Result<()> {
                    let parent = back.upgrade().ok_or(Error::NotConnected)?;
                    parent.emit("blob", pattern(len))
                })
                .handle("try_to_change", |parts: Parts| try_to_change(&parts.memory))
                .handle("forge", |how: String| -> Result<Forged, String> {
                    forge(&how)
                })
                .handle("fds", |()| open_fds());
        })
        .unwrap()
}

/// Tries to write, truncate and map writable the memory object `fd`.
fn try_to_change(fd: &Fd) -> Attempts {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    // SAFETY: plain system calls on a descriptor this process owns, with valid buffers;
    // a mapping, if one were made, is unmapped at once.
    unsafe {
        let write = libc::pwrite(raw, b"x".as_ptr().cast(), 1, 0) == 1;
        let truncate = libc::ftruncate(raw, 1) == 0;
        let ptr = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            raw,
            0,
        );
        let map_writable = ptr != libc::MAP_FAILED;
        if map_writable {
            libc::munmap(ptr, 4096);
        }
        Attempts {
            write,
            truncate,
            map_writable,
        }
    }
}

/// A forged `SharedBytes` of the kind `how` names.
fn forge(how: &str) -> Result<Forged, String> {
    use std::io::Write;
    use std::os::fd::{FromRawFd, OwnedFd};
    let memfd = |seal: bool, size: i64| -> Result<Fd, String> {
        // SAFETY: memfd_create with a valid name; the descriptor is owned from here on.
        let fd = unsafe {
            let raw = libc::memfd_create(c"forged".as_ptr(), libc::MFD_ALLOW_SEALING);
            if raw < 0 {
                return Err("memfd_create failed".into());
            }
            OwnedFd::from_raw_fd(raw)
        };
        let mut file = std::fs::File::from(fd);
        file.write_all(&vec![7u8; size as usize])
            .map_err(|e| e.to_string())?;
        if seal {
            use std::os::fd::AsRawFd;
            let seals = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
            // SAFETY: fcntl on a descriptor this process owns.
            if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
                return Err("sealing failed".into());
            }
        }
        Ok(Fd::from(file))
    };
    Ok(match how {
        "unsealed" => Forged {
            memory: memfd(false, 4096)?,
            len: 4096,
        },
        "smaller" => Forged {
            memory: memfd(true, 4096)?,
            len: 1 << 20,
        },
        "pipe" => {
            let (read, _write) = std::io::pipe().map_err(|e| e.to_string())?;
            Forged {
                memory: Fd::from(read),
                len: 0,
            }
        }
        _ => return Err(format!("no forgery {how:?}")),
    })
}

#[test]
fn shared_bytes_travel_in_arguments_replies_and_events() {
    let _one = one_at_a_time();
    let w = worker();
    let data = pattern(1 << 20);
    assert!(data.is_shared());
    // An argument: the worker sees the same bytes, as shared memory.
    assert_eq!(call::<Seen>(&w, "seen", &data).unwrap(), seen(&data));
    assert!(call::<Seen>(&w, "seen", &data).unwrap().shared);
    // A reply.
    let made: SharedBytes = call(&w, "make", 3usize << 20).unwrap();
    assert!(made.is_shared());
    assert_eq!(seen(&made), seen(&pattern(3 << 20)));
    // Both ways: what comes back is the same memory's bytes.
    let back: SharedBytes = call(&w, "echo", &data).unwrap();
    assert_eq!(back, data);
    // An event.
    let (tx, rx) = mpsc::channel();
    w.on("blob", move |blob: SharedBytes| {
        let _ = tx.send(seen(&blob));
    });
    call::<()>(&w, "emit", 12_345usize).unwrap();
    let got = rx.recv_timeout(CALL_LIMIT).unwrap();
    assert_eq!(got, seen(&pattern(12_345)));
    assert!(got.shared);
}

#[test]
fn shared_bytes_travel_through_a_typed_service() {
    let _one = one_at_a_time();
    let w = worker();
    let blobs = BlobsClient::new(&w);
    let data = pattern(777_777);
    assert_eq!(blobs.digest(data.clone()).unwrap(), seen(&data));
    let made = blobs.pattern_of(1 << 16).unwrap();
    assert!(made.is_shared());
    assert_eq!(made, pattern(1 << 16));
}

#[test]
fn shared_bytes_of_every_size_from_zero_to_sixty_four_mebibytes() {
    let _one = one_at_a_time();
    let w = worker();
    for len in [0, 1, 4095, 4096, 4097, 1 << 20, 64 << 20] {
        let data = pattern(len);
        assert_eq!(
            call::<Seen>(&w, "seen", &data).unwrap(),
            seen(&data),
            "{len}"
        );
        let made: SharedBytes = call(&w, "make", len).unwrap();
        assert_eq!(made.len(), len);
        assert_eq!(checksum(&made), checksum(&data), "{len}");
    }
}

#[test]
#[cfg_attr(
    coproq_small_memory,
    ignore = "this machine has under 8 GiB of memory, and 1 GiB of shared bytes needs room"
)]
fn a_gibibyte_of_shared_bytes_is_handed_over_and_back() {
    let _one = one_at_a_time();
    let w = worker();
    let len = 1 << 30;
    let data = SharedBytes::filled(len, |bytes| {
        for page in bytes.chunks_mut(4096) {
            page[0] = 3;
        }
        bytes[len - 1] = 9;
    });
    // A byte of every page, in this debug build (a full checksum would take a while).
    let sampled: (usize, u64, bool) = call(&w, "sample", &data).unwrap();
    assert_eq!(sampled, (len, 3 * (len as u64 / 4096) + 9, true));
    let back: SharedBytes = call(&w, "echo", &data).unwrap();
    assert!(back.is_shared());
    assert_eq!((back.len(), back[0], back[len - 1]), (len, 3, 9));
}

#[test]
fn a_worker_cannot_change_the_memory_it_was_handed() {
    let _one = one_at_a_time();
    let w = worker();
    let data = pattern(1 << 16);
    let tried: Attempts = call(&w, "try_to_change", &data).unwrap();
    assert!(
        !tried.write && !tried.truncate && !tried.map_writable,
        "{tried:?}"
    );
    assert_eq!(checksum(&data), checksum(&pattern(1 << 16)));
}

#[test]
fn a_forged_shared_bytes_is_refused_and_its_descriptor_closed() {
    let _one = one_at_a_time();
    let w = worker();
    let before = open_fds();
    for (how, expect) in [
        ("unsealed", "not sealed against change"),
        (
            "smaller",
            "holds 4096 bytes, and its sender declared 1048576",
        ),
        ("pipe", "not a sealable memory object"),
    ] {
        let err = call::<SharedBytes>(&w, "forge", how).unwrap_err();
        assert!(
            matches!(&err, Error::Decode { reason, .. } if reason.contains(expect)),
            "{how}: {err:?}"
        );
    }
    // Refused as values: the link goes on, and nothing is left open here.
    assert_eq!(call::<Seen>(&w, "seen", &pattern(10)).unwrap().len, 10);
    assert_eq!(open_fds(), before);
}

#[test]
fn a_thousand_shared_bytes_leak_no_descriptor_on_either_side() {
    let _one = one_at_a_time();
    let w = worker();
    let data = pattern(4096);
    call::<Seen>(&w, "seen", &data).unwrap();
    let (ours, theirs) = (open_fds(), call::<usize>(&w, "fds", ()).unwrap());
    for _ in 0..1000 {
        call::<Seen>(&w, "seen", &data).unwrap();
        let made: SharedBytes = call(&w, "make", 100usize).unwrap();
        drop(made);
    }
    assert_eq!(open_fds(), ours);
    assert_eq!(call::<usize>(&w, "fds", ()).unwrap(), theirs);
}

#[test]
fn through_a_pool_and_over_stdio_shared_bytes_travel_as_bytes() {
    let _one = one_at_a_time();
    let data = pattern(100_000);
    // A pool: the call may run again elsewhere, so its arguments are bytes; a reply from
    // its worker is shared memory.
    let pool = coproq::Pool::builder()
        .size(1)
        .fork(|parent| {
            parent.handle("seen", |data: SharedBytes| seen(&data));
            parent.handle("make", |len: usize| pattern(len));
        })
        .unwrap();
    let there: Seen = pool.call("seen", &data).unwrap();
    assert_eq!(
        (there.len, there.sum, there.shared),
        (data.len(), checksum(&data), false)
    );
    let made: SharedBytes = pool.call("make", 5000usize).unwrap();
    assert!(made.is_shared());
    assert_eq!(made, pattern(5000));
    // Over stdio: bytes both ways, read by a handler that takes a `Vec<u8>`.
    let w = Coprocess::builder()
        .startup_timeout(CALL_LIMIT)
        .spawn_stdio(Command::new(env!("CARGO_BIN_EXE_stdio_worker")))
        .unwrap();
    let back: SharedBytes = call(&w, "bytes", &data).unwrap();
    assert!(!back.is_shared());
    assert_eq!(back, data);
}

#[test]
fn outside_a_link_shared_bytes_serialize_as_bytes() {
    let _one = one_at_a_time();
    let data = SharedBytes::copy_from(b"abc");
    let json = serde_json::to_string(&data).unwrap();
    assert_eq!(json, "[97,98,99]");
    let back: SharedBytes = serde_json::from_str(&json).unwrap();
    assert_eq!(&*back, b"abc");
}

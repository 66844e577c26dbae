//! Fork workers through a command prefix (`Builder::via`), here `sh -c` on this machine:
//! the executable is shipped to the far side's cache once, checked, and found there after.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use coproq::{Coprocess, Error};
use coproq_tests::call;

/// A fresh cache home for one test.
fn cache_home(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coproq-via-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `sh -c`, with the far side's cache in `home`.
fn prefix(home: &Path) -> Command {
    let mut sh = Command::new("sh");
    sh.env("XDG_CACHE_HOME", home).arg("-c");
    sh
}

fn start(home: &Path) -> coproq::Result<Coprocess> {
    Coprocess::builder()
        .handle("double", |x: u64| x * 2)
        .startup_timeout(Duration::from_mins(1))
        .via(prefix(home))
        .fork(|parent| {
            let p = parent.clone();
            parent.handle("pid", |()| std::process::id());
            parent.handle("ask_parent", move |x: u64| {
                p.call::<u64>("double", x).unwrap()
            });
        })
}

/// The files in the cache directory.
fn cached(home: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(home.join("coproq")) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn the_executable_is_shipped_once_then_found_in_the_cache() {
    let home = cache_home("once");
    let w = start(&home).unwrap();
    assert_ne!(call::<u32>(&w, "pid", ()).unwrap(), std::process::id());
    assert_eq!(call::<u64>(&w, "ask_parent", 21u64).unwrap(), 42);
    w.close();
    let files = cached(&home);
    assert_eq!(files.len(), 1, "{files:?}");
    let shipped = std::fs::metadata(&files[0]).unwrap();
    assert_eq!(
        shipped.mode() & 0o077,
        0,
        "readable by others: {:o}",
        shipped.mode()
    );
    let dir_mode = std::fs::metadata(home.join("coproq")).unwrap().mode();
    assert_eq!(dir_mode & 0o077, 0, "{dir_mode:o}");
    let exe = std::fs::read("/proc/self/exe").unwrap();
    assert_eq!(std::fs::read(&files[0]).unwrap(), exe);

    // The second start sends nothing: the cached file is the very same one.
    let w = start(&home).unwrap();
    assert_eq!(call::<u64>(&w, "ask_parent", 1u64).unwrap(), 2);
    w.close();
    let again = std::fs::metadata(&files[0]).unwrap();
    assert_eq!(
        (again.ino(), again.mtime_nsec(), again.mtime()),
        (shipped.ino(), shipped.mtime_nsec(), shipped.mtime())
    );
    assert_eq!(cached(&home).len(), 1);
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_damaged_cached_copy_is_replaced() {
    let home = cache_home("damaged");
    start(&home).unwrap().close();
    let file = cached(&home).pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let w = start(&home).unwrap();
    assert_eq!(call::<u64>(&w, "ask_parent", 4u64).unwrap(), 8);
    w.close();
    assert_eq!(
        std::fs::read(&file).unwrap(),
        std::fs::read("/proc/self/exe").unwrap()
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn two_parents_ship_the_same_executable_at_once() {
    let home = cache_home("race");
    let starts: Vec<_> = (0..2)
        .map(|_| {
            let home = home.clone();
            std::thread::spawn(move || {
                let w = start(&home).unwrap();
                let v = call::<u64>(&w, "ask_parent", 3u64).unwrap();
                w.close();
                v
            })
        })
        .collect();
    for s in starts {
        assert_eq!(s.join().unwrap(), 6);
    }
    let files = cached(&home);
    assert_eq!(files.len(), 1, "temporary files left behind: {files:?}");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn another_platform_on_the_far_side_is_refused_before_anything_is_sent() {
    let home = cache_home("platform");
    // A far side whose `uname` reports another system.
    let bin = home.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let uname = bin.join("uname");
    std::fs::write(
        &uname,
        "#!/bin/sh\ncase \"$1\" in -s) echo Plan9 ;; *) echo mips ;; esac\n",
    )
    .unwrap();
    std::fs::set_permissions(&uname, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut sh = prefix(&home);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    sh.env("PATH", path);
    let err = Coprocess::builder().via(sh).fork(|_| {}).unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("the far side runs Plan9 mips"), "{text}");
    assert!(text.contains(std::env::consts::ARCH), "{text}");
    assert!(cached(&home).is_empty(), "something was sent");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_pool_of_fork_workers_via_a_prefix() {
    let home = cache_home("pool");
    let pool = coproq::Pool::builder()
        .size(2)
        .startup_timeout(Duration::from_mins(1))
        .via(prefix(&home))
        .fork(|parent| {
            parent.handle("pid", |()| std::process::id());
        })
        .unwrap();
    let pids: std::collections::HashSet<u32> = (0..20)
        .map(|_| pool.call::<u32>("pid", ()).unwrap())
        .collect();
    assert!(!pids.contains(&std::process::id()));
    assert_eq!(cached(&home).len(), 1);
    pool.close();
    let _ = std::fs::remove_dir_all(&home);
}

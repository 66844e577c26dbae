//! Following a worker's stderr: forwarded to the parent's own stderr as it comes, line by
//! line, with the last lines kept to quote when the worker fails to start or dies.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::EXIT_STATUS_WAIT;

/// How many lines a start-up error quotes, at least.
pub(super) const START_LINES: usize = 8;

/// The longest line kept (a worker that writes megabytes without a newline costs the
/// parent no more than this).
const LINE_MAX: usize = 4096;

/// What Rust's runtime says as a program dies of an allocation failure or a stack
/// overflow.
pub(crate) const LAST_WORDS: [&str; 2] = ["memory allocation of ", "has overflowed its stack"];

/// The last lines a worker printed on stderr, which is forwarded to ours as it comes.
#[derive(Debug)]
pub(crate) struct StderrTail {
    lines: Mutex<VecDeque<String>>,
    keep: usize,
    /// The last line that says how a Rust program dies (an allocation failed, a stack
    /// overflowed), however many lines (a backtrace) came after it.
    last_words: Mutex<Option<String>>,
    /// The worker's stderr has ended (it exited, or closed it).
    ended: AtomicBool,
}

impl StderrTail {
    /// Forwards `stderr` to ours line by line on a thread of its own, keeping the last
    /// `keep` lines.
    pub(crate) fn follow(stderr: impl Read + Send + 'static, keep: usize) -> Arc<Self> {
        let tail = Arc::new(Self {
            lines: Mutex::new(VecDeque::with_capacity(keep)),
            keep,
            last_words: Mutex::new(None),
            ended: AtomicBool::new(false),
        });
        let mine = Arc::clone(&tail);
        let forward = move || {
            let mut reader = io::BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader
                    .by_ref()
                    .take(LINE_MAX as u64)
                    .read_until(b'\n', &mut line)
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let _ = io::stderr().write_all(&line);
                let text = String::from_utf8_lossy(&line);
                mine.push(text.trim_end_matches(['\n', '\r']).to_owned());
            }
            mine.ended.store(true, Ordering::Release);
        };
        // Without a thread, the lines are simply not quoted.
        if std::thread::Builder::new()
            .name("coproq-stderr".into())
            .spawn(forward)
            .is_err()
        {
            tail.ended.store(true, Ordering::Release);
        }
        tail
    }

    fn push(&self, line: String) {
        if LAST_WORDS.iter().any(|words| line.contains(words)) {
            *self
                .last_words
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(line.clone());
        }
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == self.keep {
            lines.pop_front();
        }
        if self.keep > 0 {
            lines.push_back(line);
        }
    }

    /// The last `count` lines, after waiting a little for the worker's last words.
    pub(crate) fn last(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + EXIT_STATUS_WAIT;
        while !self.ended.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = lines.len().saturating_sub(count);
        lines.iter().skip(skip).cloned().collect()
    }

    /// The last line that said how the worker dies, if any (call after [`last`](Self::last),
    /// which waits for the worker's last words).
    pub(crate) fn last_words(&self) -> Option<String> {
        self.last_words
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The lines so far, as a start-up error quotes them.
    pub(super) fn quote(&self) -> String {
        let lines = self.last(START_LINES);
        if lines.is_empty() {
            return String::new();
        }
        let quoted: Vec<String> = lines.iter().map(|l| format!("  | {l}")).collect();
        format!("; its stderr said:\n{}", quoted.join("\n"))
    }
}

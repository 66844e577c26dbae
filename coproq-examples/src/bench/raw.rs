//! The baseline: the same frame shape over two plain pipes, no coproq. A worker process
//! (this binary with `--raw-worker`) echoes frames; the first payload byte says what to do.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys;

/// Payload tags.
const ECHO: u8 = 0;
const ONE_WAY: u8 = 1;
const COUNT: u8 = 2;
const CPU: u8 = 3;

/// The worker: echo `ECHO` frames, count `ONE_WAY` frames, answer `COUNT` with the count
/// and `CPU` with the CPU time it used so far (µs).
pub(crate) fn worker() -> io::Result<()> {
    let stdin = io::stdin().lock();
    let stdout = io::stdout().lock();
    sys::enlarge_pipe(&stdin);
    sys::enlarge_pipe(&stdout);
    let mut input = BufReader::with_capacity(64 * 1024, stdin);
    let mut output = BufWriter::with_capacity(64 * 1024, stdout);
    let mut frame = Vec::new();
    let mut count: u64 = 0;
    while read_frame(&mut input, &mut frame)? {
        match frame.first() {
            Some(&ONE_WAY) => count += 1,
            Some(&COUNT) => {
                write_frame(&mut output, &count.to_le_bytes())?;
            }
            Some(&CPU) => {
                write_frame(&mut output, &sys::cpu_micros().to_le_bytes())?;
            }
            _ => write_frame(&mut output, &frame)?,
        }
        // Flush only when no more input is already buffered: coalesce like coproq does.
        if input.buffer().is_empty() {
            output.flush()?;
        }
    }
    Ok(())
}

fn read_frame(input: &mut impl Read, frame: &mut Vec<u8>) -> io::Result<bool> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    frame.resize(u32::from_le_bytes(len) as usize, 0);
    input.read_exact(frame)?;
    Ok(true)
}

fn write_frame(output: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    output.write_all(&(payload.len() as u32).to_le_bytes())?;
    output.write_all(payload)
}

/// What carries the raw frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Two pipes (the worker's stdin and stdout), 1 MiB each.
    Pipe,
    /// One Unix stream socket pair (the worker's stdin and stdout are its end).
    Socket,
}

/// A running raw worker.
pub(crate) struct Raw {
    child: Child,
    input: BufReader<File>,
    output: BufWriter<File>,
    frame: Vec<u8>,
}

impl Raw {
    pub(crate) fn start() -> io::Result<Self> {
        Self::start_over(Transport::Pipe)
    }

    pub(crate) fn start_over(transport: Transport) -> io::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("--raw-worker");
        let (child, input, output) = match transport {
            Transport::Pipe => {
                let mut child = command
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()?;
                let stdin = child.stdin.take().expect("piped stdin");
                let stdout = child.stdout.take().expect("piped stdout");
                sys::enlarge_pipe(&stdin);
                sys::enlarge_pipe(&stdout);
                let input = File::from(OwnedFd::from(stdout));
                let output = File::from(OwnedFd::from(stdin));
                (child, input, output)
            }
            Transport::Socket => {
                let (ours, theirs) = UnixStream::pair()?;
                let theirs = OwnedFd::from(theirs);
                let child = command
                    .stdin(Stdio::from(theirs.try_clone()?))
                    .stdout(Stdio::from(theirs))
                    .spawn()?;
                let output = File::from(OwnedFd::from(ours.try_clone()?));
                (child, File::from(OwnedFd::from(ours)), output)
            }
        };
        Ok(Self {
            child,
            input: BufReader::with_capacity(64 * 1024, input),
            output: BufWriter::with_capacity(64 * 1024, output),
            frame: Vec::new(),
        })
    }

    fn round_trip(&mut self, payload: &[u8]) -> io::Result<()> {
        write_frame(&mut self.output, payload)?;
        self.output.flush()?;
        read_frame(&mut self.input, &mut self.frame)?;
        Ok(())
    }

    pub(crate) fn close(mut self) -> io::Result<()> {
        let output = self
            .output
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        // A socket's reading half stays open with `input`: end the stream for the
        // worker (for a pipe, closing it does).
        // SAFETY: shutdown on an open descriptor; a pipe refuses it harmlessly.
        let _ = unsafe { libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&output), libc::SHUT_WR) };
        drop(output);
        self.child.wait()?;
        Ok(())
    }

    /// The CPU time (µs) this process and the worker have used so far, together.
    fn both_cpu(&mut self) -> io::Result<u64> {
        let parent = sys::cpu_micros();
        self.round_trip(&[CPU])?;
        let bytes = self.frame.as_slice().try_into().map_err(io::Error::other)?;
        Ok(parent + u64::from_le_bytes(bytes))
    }
}

/// Mean round trip of `n` sequential 8-byte echoes, and the CPU time (µs) both processes
/// used per round trip.
pub(crate) fn latency(n: u32) -> io::Result<(Duration, f64)> {
    latency_over(n, Transport::Pipe)
}

/// [`latency`] over `transport`.
pub(crate) fn latency_over(n: u32, transport: Transport) -> io::Result<(Duration, f64)> {
    let mut raw = Raw::start_over(transport)?;
    let mut payload = [0u8; 9];
    for i in 0..n.min(1000) {
        payload[1..].copy_from_slice(&u64::from(i).to_le_bytes());
        raw.round_trip(&payload)?;
    }
    let cpu = raw.both_cpu()?;
    let start = Instant::now();
    for i in 0..n {
        payload[1..].copy_from_slice(&u64::from(i).to_le_bytes());
        raw.round_trip(&payload)?;
    }
    let elapsed = start.elapsed();
    let used = raw.both_cpu()? - cpu;
    raw.close()?;
    Ok((elapsed / n, used as f64 / f64::from(n)))
}

/// Echoes per second with `n` sent by one thread while another reads the replies, and
/// the CPU time (µs) both processes used per echo.
pub(crate) fn pipelined(n: u32) -> io::Result<(f64, f64)> {
    let mut raw = Raw::start()?;
    // The first burst warms memory up; the second is measured (steady state).
    let mut elapsed = Duration::ZERO;
    let mut used = 0;
    for _ in 0..2 {
        let cpu = raw.both_cpu()?;
        let start = Instant::now();
        let Raw {
            child,
            input,
            output,
            frame,
        } = &mut raw;
        std::thread::scope(|scope| -> io::Result<()> {
            let writer = scope.spawn(move || -> io::Result<()> {
                let mut payload = [0u8; 9];
                for i in 0..n {
                    payload[1..].copy_from_slice(&u64::from(i).to_le_bytes());
                    write_frame(output, &payload)?;
                }
                output.flush()
            });
            let read = (0..n).try_for_each(|_| {
                read_frame(input, frame)?
                    .then_some(())
                    .ok_or_else(|| io::Error::other("the raw worker ended before its replies"))
            });
            if read.is_err() {
                // The writer may be blocked on a full pipe: ending the worker ends its write.
                let _ = child.kill();
            }
            let written = writer.join().expect("writer thread");
            read.and(written)
        })?;
        elapsed = start.elapsed();
        used = raw.both_cpu()? - cpu;
    }
    raw.close()?;
    Ok((
        f64::from(n) / elapsed.as_secs_f64(),
        used as f64 / f64::from(n),
    ))
}

/// One-way frames per second, confirmed by a final round trip, and the CPU time (µs) both
/// processes used per frame.
pub(crate) fn events(n: u32) -> io::Result<(f64, f64)> {
    let mut raw = Raw::start()?;
    let cpu = raw.both_cpu()?;
    let start = Instant::now();
    let mut payload = [ONE_WAY, 0, 0, 0, 0, 0, 0, 0, 0];
    for i in 0..n {
        payload[1..].copy_from_slice(&u64::from(i).to_le_bytes());
        write_frame(&mut raw.output, &payload)?;
    }
    raw.round_trip(&[COUNT])?;
    let elapsed = start.elapsed();
    assert_eq!(
        raw.frame,
        u64::from(n).to_le_bytes(),
        "raw worker lost events"
    );
    let used = raw.both_cpu()? - cpu;
    raw.close()?;
    Ok((
        f64::from(n) / elapsed.as_secs_f64(),
        used as f64 / f64::from(n),
    ))
}

/// Bytes per second echoing a `size`-byte payload `n` times (counted one way).
pub(crate) fn bulk(size: usize, n: u32) -> io::Result<f64> {
    bulk_over(size, n, Transport::Pipe)
}

/// [`bulk`] over `transport`.
pub(crate) fn bulk_over(size: usize, n: u32, transport: Transport) -> io::Result<f64> {
    let mut raw = Raw::start_over(transport)?;
    let mut payload = vec![7u8; size];
    payload[0] = ECHO;
    raw.round_trip(&payload)?;
    let start = Instant::now();
    for _ in 0..n {
        raw.round_trip(&payload)?;
    }
    let elapsed = start.elapsed();
    raw.close()?;
    Ok(size as f64 * f64::from(n) / elapsed.as_secs_f64())
}

/// Start a worker (re-exec of this binary), one round trip, close: the mean over `n`.
pub(crate) fn startup(n: u32) -> io::Result<Duration> {
    let start = Instant::now();
    for _ in 0..n {
        let mut raw = Raw::start()?;
        raw.round_trip(&[ECHO, 1])?;
        raw.close()?;
    }
    Ok(start.elapsed() / n)
}

/// RSS of an idle raw worker, in KiB.
pub(crate) fn idle_rss() -> io::Result<u64> {
    let mut raw = Raw::start()?;
    raw.round_trip(&[ECHO])?;
    std::thread::sleep(Duration::from_millis(50));
    let rss = sys::rss_kib(raw.child.id());
    raw.close()?;
    Ok(rss)
}

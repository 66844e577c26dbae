//! `Builder`, which starts workers with handlers and options set first, and the `fork`
//! and `fork_with` shorthands.

use std::fmt;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::coprocess::Coprocess;
use crate::error::Result;
use crate::handler::{Registry, Reply, Service};
use crate::launch::{self, Launch, fork, spawn};
use crate::link::Handlers;
use crate::link::calls::Slot;
use crate::link::{ENTRY_ID, dispatch};
use crate::options::Options;
use crate::pending;
use crate::process::WorkerProcess;

/// Starts the current executable again as a worker that runs `entry` with its link to
/// this process, and returns the worker's handle once `entry` has returned there.
///
/// `entry` is a function or a non-capturing closure (to hand it data, use
/// [`fork_with`]). The worker dispatches calls from the parent once `entry` returns, so
/// handlers that `entry` registers are in place for the first call; it exits when the
/// parent closes the link or dies. No setup is needed in `main`: this works from any
/// binary, test, example or bench that links coproq.
///
/// # The worker runs before `main`
///
/// A fork worker runs its entry from a start-up hook, before the program's `main`, so
/// that no init call is needed there. What follows from that:
///
/// - `std::env::args()` holds only the program name: pass data with [`fork_with`].
/// - Static constructors (`.init_array`, `#[ctor]`) of crates linked after coproq may not
///   have run yet when the entry runs.
/// - Rust's "has overflowed its stack" message is not printed: a worker that overflows
///   its stack dies of SIGSEGV, and its callers see `Disconnected` with that signal.
/// - The entry must be a function of the executable itself, not of a shared library
///   (`dlopen`ed plugin) that may load at another place in the worker.
/// - The worker is this executable started again: on Linux through `/proc/self/exe`,
///   the very file this process runs; elsewhere by its path, so do not replace the
///   executable (a rebuild) while a parent that forks workers runs.
///
/// # Examples
///
/// ```no_run
/// let worker = coproq::fork(|parent| {
///     parent.handle("echo", |x: u32| x);
/// })?;
/// assert_eq!(worker.call::<u32>("echo", 1234u32)?, 1234);
/// # Ok::<(), coproq::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Spawn`](crate::Error::Spawn) if the worker cannot be started, or `entry`
/// panics, or the worker exits before `entry` returns, or `entry` takes longer than the
/// start-up timeout ([`Builder::startup_timeout`]); [`Error::Protocol`](crate::Error::Protocol)
/// if the handshake fails.
pub fn fork(entry: fn(&Coprocess)) -> Result<Coprocess> {
    Builder::new().fork(entry)
}

/// Like [`fork`], handing the worker's `entry` a value: configuration, a path, anything
/// that a `fn` pointer cannot capture. `data` travels serialized in the first message.
///
/// # Examples
///
/// ```no_run
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Config {
///     scale: u32,
/// }
///
/// let worker = coproq::fork_with(Config { scale: 3 }, |parent, config| {
///     parent.handle("scale", move |x: u32| x * config.scale);
/// })?;
/// assert_eq!(worker.call::<u32>("scale", 5u32)?, 15);
/// # Ok::<(), coproq::Error>(())
/// ```
///
/// # Errors
///
/// As [`fork`], and [`Error::Encode`](crate::Error::Encode) if `data` does not serialize
/// or exceeds the frame limit.
pub fn fork_with<D>(data: D, entry: fn(&Coprocess, D)) -> Result<Coprocess>
where
    D: Serialize + DeserializeOwned,
{
    Builder::new().fork_with(data, entry)
}

impl Coprocess {
    /// A [`Builder`], to register the parent's handlers and set options before the
    /// worker starts.
    #[must_use]
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Starts `cmd` as a worker: a separate program whose `main` calls
    /// [`Coprocess::parent`] and then [`serve`](Self::serve).
    ///
    /// The worker's stdin, stdout and stderr are those `cmd` sets (inherited by default);
    /// the link uses two pipes of its own.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let worker = coproq::Coprocess::spawn(std::process::Command::new("./my-worker"))?;
    /// let n: u64 = worker.call("count", "words in here")?;
    /// # Ok::<(), coproq::Error>(())
    /// ```
    pub fn spawn(cmd: Command) -> Result<Coprocess> {
        Builder::new().spawn(cmd)
    }

    /// In a program started by [`Coprocess::spawn`]: the link to the parent. Register
    /// handlers on it, then call [`serve`](Self::serve).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn main() -> coproq::Result<()> {
    ///     let parent = coproq::Coprocess::parent()?;
    ///     parent.handle("count", |text: String| text.split_whitespace().count() as u64);
    ///     parent.serve();
    ///     Ok(())
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NotAWorker`](crate::Error::NotAWorker) if no coproq parent started this
    /// process (or the link was taken already), [`Error::Protocol`](crate::Error::Protocol)
    /// if the handshake fails.
    pub fn parent() -> Result<Coprocess> {
        spawn::parent(&Options::default(), Arc::default())
    }

    /// Worker side of [`Builder::spawn_stdio`]: takes this process's stdin and stdout as
    /// the link to the parent. Descriptor 1 is pointed at stderr first, so `println!`
    /// cannot corrupt the link, and descriptor 0 at `/dev/null`. Register handlers, then
    /// [`serve`](Coprocess::serve). When the parent's end hangs up (the parent closed,
    /// died, or the connection under it broke), the process exits within a second, even
    /// while a handler is stuck: no parent-death signal crosses machines.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`](crate::Error::Protocol) when stdin and stdout do not carry a
    /// coproq parent's handshake, or were taken already.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn main() -> coproq::Result<()> {
    ///     let parent = coproq::Coprocess::stdio()?;
    ///     parent.handle("count", |text: String| text.split_whitespace().count() as u64);
    ///     parent.serve();
    ///     Ok(())
    /// }
    /// ```
    pub fn stdio() -> Result<Coprocess> {
        crate::launch::stdio::connect(&Options::default(), Arc::default())
    }
}

/// Starts a worker with handlers and options set first.
///
/// The parent's handlers are in place before the worker runs, so the worker may call the
/// parent from its very first line.
///
/// # Examples
///
/// ```no_run
/// let worker = coproq::Coprocess::builder()
///     .handle("config", |(): ()| "verbose".to_string())
///     .on("progress", |pct: u8| println!("{pct}%"))
///     .close_grace(std::time::Duration::from_millis(500))
///     .fork(|parent| {
///         let mode: String = parent.call("config", ()).unwrap();
///         parent.emit("progress", 100u8).unwrap();
///     })?;
/// # Ok::<(), coproq::Error>(())
/// ```
pub struct Builder {
    handlers: Arc<Handlers>,
    options: Options,
    on_exit: Option<OnExit>,
    /// Where `fork` runs its worker, if not here.
    via: Option<crate::launch::ship::Prefix>,
}

/// What [`Builder::on_exit`] runs.
type OnExit = Box<dyn FnOnce(Option<ExitStatus>) + Send>;

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// A builder with no handlers and default options.
    #[must_use]
    pub fn new() -> Self {
        Self::from_parts(Arc::default(), Options::default())
    }

    /// A builder over a handler table and options made elsewhere (a pool's, shared by
    /// its workers).
    pub(crate) fn from_parts(handlers: Arc<Handlers>, options: Options) -> Self {
        Self {
            handlers,
            options,
            on_exit: None,
            via: None,
        }
    }

    /// See [`Coprocess::handle`].
    #[must_use]
    pub fn handle<A, R, F>(self, method: impl Into<String>, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        Registry::new(&self.handlers).handle(method, f);
        self
    }

    /// See [`Coprocess::handle_deferred`].
    #[must_use]
    pub fn handle_deferred<A, T, F>(self, method: impl Into<String>, f: F) -> Self
    where
        A: DeserializeOwned,
        T: Serialize,
        F: Fn(A, Reply<T>) + Send + Sync + 'static,
    {
        Registry::new(&self.handlers).handle_deferred(method, f);
        self
    }

    /// See [`Coprocess::handle_async`].
    #[must_use]
    pub fn handle_async<A, R, Fut, F>(self, method: impl Into<String>, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize + 'static,
        Fut: Future<Output = R> + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
    {
        Registry::new(&self.handlers).handle_async(method, f);
        self
    }

    /// See [`Coprocess::on_async`].
    #[must_use]
    pub fn on_async<A, Fut, F>(self, name: impl Into<String>, f: F) -> Self
    where
        A: DeserializeOwned,
        Fut: Future<Output = ()> + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
    {
        Registry::new(&self.handlers).on_async(name, f);
        self
    }

    /// See [`Coprocess::tokio`]: the parent's async handlers run on `runtime`.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    #[must_use]
    pub fn tokio(self, runtime: tokio::runtime::Handle) -> Self {
        self.handlers.set_tokio(runtime);
        self
    }

    /// See [`Coprocess::tokio_runtime`]: the parent's async handlers run on `runtime`,
    /// which the link keeps.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    #[must_use]
    pub fn tokio_runtime(self, runtime: tokio::runtime::Runtime) -> Self {
        self.handlers.keep_tokio(runtime);
        self
    }

    /// Runs up to `n` of the peer's calls at once on each end of the link (default 1: one
    /// after another), each on a thread of its own, for blocking handlers that wait (on
    /// I/O, a lock, a sleep) rather than compute.
    ///
    /// Calls are launched in the order they arrive and complete in any order. Events run
    /// one at a time in arrival order, each after the calls that arrived before it were
    /// launched. With `n` calls running, what arrives next waits until one ends; a call
    /// that waits for the peer meanwhile serves the peer's calls back, as at
    /// `concurrency(1)`, so nested callbacks work at any depth. Cancels and deadlines
    /// reach each running call (`coproq::cancelled()`, `coproq::deadline()`), and
    /// `close()` still lets running calls answer. A small call costs what it costs at
    /// `concurrency(1)`: a call runs on the thread that read it, and another thread takes
    /// over reading only once it has run for a millisecond, or when more calls are
    /// waiting already.
    ///
    /// A fork worker gets `n` from its parent. A worker binary chooses for itself, with
    /// this method on the builder of its [`Coprocess::parent`] (its choice wins over its
    /// parent's). Async handlers are not bounded by `n`: see [`Coprocess::handle_async`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let worker = coproq::Builder::new().concurrency(16).fork(|parent| {
    ///     parent.handle("fetch", |ms: u64| std::thread::sleep(std::time::Duration::from_millis(ms)));
    /// })?;
    /// // 16 threads calling `fetch(50)` at once take about 50 ms, not 800.
    /// # Ok::<(), coproq::Error>(())
    /// ```
    #[must_use]
    pub fn concurrency(mut self, n: u32) -> Self {
        self.options.link.concurrency = Some(n.max(1));
        self
    }

    /// See [`Coprocess::on`].
    #[must_use]
    pub fn on<A, F>(self, name: impl Into<String>, f: F) -> Self
    where
        A: DeserializeOwned,
        F: Fn(A) + Send + Sync + 'static,
    {
        Registry::new(&self.handlers).on(name, f);
        self
    }

    /// See [`Coprocess::listen`].
    #[must_use]
    pub fn listen(self, service: impl Service) -> Self {
        Registry::listen(&self.handlers, service);
        self
    }

    /// The largest frame accepted from the peer (default 1 GiB, at most `u32::MAX`
    /// bytes). A larger incoming frame is a protocol error that closes the link; a call
    /// whose frame exceeds the peer's limit fails with `Encode` before it is sent.
    #[must_use]
    pub fn max_frame_len(mut self, bytes: u32) -> Self {
        self.options.link.max_frame = bytes;
        self
    }

    /// How long [`Coprocess::close`] waits for the worker to exit before killing it
    /// (default 2 s).
    #[must_use]
    pub fn close_grace(mut self, grace: Duration) -> Self {
        self.options.close_grace = grace;
        self
    }

    /// How long to wait for a new worker's handshake, and for a fork worker's entry to
    /// return, before giving up (default 30 s).
    #[must_use]
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.options.startup_timeout = timeout;
        self
    }

    /// Starts the worker in a process group of its own (default: the parent's).
    ///
    /// By default a worker shares its parent's process group, so Ctrl-C in a terminal
    /// (SIGINT to the foreground group) reaches the workers too, and a worker dies in the
    /// middle of its work while the parent may be winding down gracefully. With
    /// `process_group(true)` a terminal's signals reach only the parent, which stays in
    /// charge: it can finish or cancel in-flight calls, then `close` its workers. Workers
    /// still exit when the parent dies.
    #[must_use]
    pub fn process_group(mut self, own: bool) -> Self {
        self.options.process_group = own;
        self
    }

    /// Follows the worker's stderr and keeps its last `lines` lines, which
    /// [`Error::Disconnected`](crate::Error::Disconnected) quotes in its
    /// [`Postmortem`](crate::Postmortem) when the worker dies (default: 0, not followed;
    /// a pool's default is 8). The worker's stderr then comes through a pipe to the
    /// parent, which forwards each line to its own stderr as it comes, so nothing is lost
    /// or delayed by more than a line; a [`spawn`](Self::spawn) command's own `stderr`
    /// setting gives way to it. The tail is also where coproq reads a worker's last words
    /// for the cause of death: "memory allocation of N bytes failed" (out of memory),
    /// "has overflowed its stack".
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let worker = coproq::Builder::new().stderr_tail(8).fork(|parent| {
    ///     parent.handle("die", |()| -> () {
    ///         eprintln!("about to abort");
    ///         std::process::abort()
    ///     });
    /// })?;
    /// let err = worker.call::<()>("die", ()).unwrap_err();
    /// // "peer disconnected (worker signal: 6 (SIGABRT) (core dumped)); its stderr ended with: ..."
    /// assert!(err.to_string().contains("about to abort"));
    /// # Ok::<(), coproq::Error>(())
    /// ```
    #[must_use]
    pub fn stderr_tail(mut self, lines: usize) -> Self {
        self.options.stderr_tail = lines;
        self
    }

    /// Limits the worker's data (heap and private writable mappings) to `bytes`
    /// (default: no limit): the worker sets the limit on itself right after the
    /// handshake, before it runs any call, so it works for fork workers, worker binaries
    /// and workers on other hosts alike. An allocation past it fails, and Rust's
    /// allocator aborts the worker: its calls fail with
    /// [`Error::Disconnected`](crate::Error::Disconnected), whose
    /// [`DeathReason::OutOfMemory`](crate::DeathReason::OutOfMemory) names the limit
    /// where the worker's stderr is followed ([`stderr_tail`](Self::stderr_tail)).
    ///
    /// It is `RLIMIT_DATA`, which Linux enforces for every private writable mapping
    /// (since Linux 4.7), so thread stacks count and address space merely reserved does
    /// not. macOS accepts the limit but does not enforce it for `mmap`, which large
    /// allocations use: there it is advisory.
    #[must_use]
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.options.link.memory_limit = Some(bytes);
        self
    }

    /// The default deadline of every call made through the handle (default: none). A
    /// call still unanswered then fails with [`Error::Timeout`](crate::Error::Timeout),
    /// and the worker is told: a call it has not started never runs, and a running
    /// handler sees [`coproq::cancelled`](crate::cancelled). The handler also sees the
    /// deadline ([`coproq::deadline`](crate::deadline)), and calls it makes back inherit
    /// what remains of it. [`Pending::wait_timeout`](crate::Pending::wait_timeout) can
    /// only shorten it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// let worker = coproq::Coprocess::builder()
    ///     .call_timeout(Duration::from_secs(5))
    ///     .fork(|parent| {
    ///         parent.handle("slow", |()| std::thread::sleep(Duration::from_secs(60)));
    ///     })?;
    /// assert!(matches!(worker.call::<()>("slow", ()), Err(coproq::Error::Timeout { .. })));
    /// # Ok::<(), coproq::Error>(())
    /// ```
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.options.call_timeout = Some(timeout);
        self
    }

    /// Both ends send a ping every `interval` (default: never), and an end that hears
    /// nothing from the other for three intervals ends the link: the parent's pending
    /// calls fail with [`Error::Disconnected`](crate::Error::Disconnected), and the worker
    /// exits a second later. This catches what the end of a stream cannot, such as a
    /// half-open TCP connection under ssh or a stopped relay. A busy worker still counts
    /// as heard while calls wait in its pipe.
    #[must_use]
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.options.heartbeat = Some(interval.max(Duration::from_millis(1)));
        self
    }

    /// How long a thread waiting for the other end spins before it sleeps (default
    /// 50 µs; `Duration::ZERO` switches spinning off).
    ///
    /// A blocking wait between processes on different CPUs costs a sleep and a wake-up
    /// on each side, tens of microseconds; an answer polled for arrives in a few. So a
    /// caller waiting for its reply, a serving thread waiting for the next call and the
    /// background reader poll the pipe for up to `budget` first, yielding the CPU between
    /// polls to whatever else is ready to run. Spinning backs off where
    /// it does not pay: never in a process that may use one CPU only, at most one thread
    /// fewer than the CPUs at once, and a place whose recent spins ran out without an
    /// answer (a slow handler, a busy machine) skips up to a thousand waits before it
    /// tries again. An idle link uses no CPU once the budget is spent.
    ///
    /// Set on the parent, it also applies to the worker (which may choose for itself
    /// with its own builder). Workers started through a command
    /// ([`spawn_stdio`](Self::spawn_stdio), [`via`](Self::via)) do not spin unless this
    /// is set: every message is relayed by other processes (ssh, a container's exec), a
    /// round trip takes far longer than a budget, and spinning would only take CPU from
    /// the relays.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// // Calls that take milliseconds gain nothing from spinning.
    /// let worker = coproq::Coprocess::builder()
    ///     .spin(std::time::Duration::ZERO)
    ///     .fork(|parent| {
    ///         parent.handle("render", |page: u32| page);
    ///     })?;
    /// # Ok::<(), coproq::Error>(())
    /// ```
    #[must_use]
    pub fn spin(mut self, budget: Duration) -> Self {
        self.options.link.spin = Some(budget);
        self
    }

    /// Runs `f` once when the worker is gone, with its exit status (`None` where it could
    /// not be learned), on a thread of its own: after a crash, a kill, an exit, or
    /// [`close`](crate::Coprocess::close).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let worker = coproq::Coprocess::builder()
    ///     .on_exit(move |status| tx.send(status).unwrap())
    ///     .fork(|_| {})?;
    /// worker.close();
    /// let status = rx.recv().unwrap();
    /// # Ok::<(), coproq::Error>(())
    /// ```
    #[must_use]
    pub fn on_exit(mut self, f: impl FnOnce(Option<ExitStatus>) + Send + 'static) -> Self {
        self.on_exit = Some(Box::new(f));
        self
    }

    /// Starts the current executable again as a worker running `entry`; see
    /// [`fork`](crate::fork).
    pub fn fork(self, entry: fn(&Coprocess)) -> Result<Coprocess> {
        let launch = self.fork_launch(fork::plain_entry(entry));
        self.start_worker(launch)
    }

    /// A fork of `entry`: here, or through the `via` prefix.
    fn fork_launch(&self, entry: crate::wire::ForkEntry) -> Launch {
        match &self.via {
            Some(prefix) => Launch::Remote(prefix.clone(), entry),
            None => Launch::Fork(entry),
        }
    }

    /// Runs [`fork`](Self::fork) and [`fork_with`](Self::fork_with) workers through a
    /// command prefix that runs its last argument as a shell command: `ssh host` for
    /// another machine, `sh -c` for this one. On first use this executable is sent over
    /// the prefix's stdin and cached on the far side under
    /// `${XDG_CACHE_HOME:-$HOME/.cache}/coproq/`, named by its SHA-256: written to a file
    /// created exclusively (never through a planted name or link), checked, made
    /// readable by the user alone and renamed into place; a damaged copy is replaced, and
    /// a failed transfer leaves nothing behind. Later starts find it and send nothing. A
    /// cached copy runs only if it is the user's own regular file (not a link), in a
    /// directory chain that nobody else can write, with the digest its name says;
    /// otherwise it is sent again. The far side needs a POSIX `sh` with `head -c` and
    /// `uname`, and `sha256sum` or `shasum` to cache: without either, the executable is
    /// sent at every start and runs from a private temporary file. The worker runs with
    /// the user's own umask. The whole start, sending included, is bounded by
    /// [`startup_timeout`](Self::startup_timeout). Another OS or CPU architecture there
    /// is a clear [`Error::Spawn`](crate::Error::Spawn) naming both, before anything is
    /// sent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::process::Command;
    ///
    /// let mut ssh = Command::new("ssh");
    /// ssh.args(["-o", "BatchMode=yes", "build-host"]);
    /// let worker = coproq::Coprocess::builder().via(ssh).fork(|parent| {
    ///     parent.handle("host", |()| std::env::var("HOSTNAME").unwrap_or_default());
    /// })?;
    /// # Ok::<(), coproq::Error>(())
    /// ```
    #[must_use]
    #[allow(
        clippy::needless_pass_by_value,
        reason = "the prefix is the builder's, as `spawn` takes its command"
    )]
    pub fn via(mut self, prefix: Command) -> Self {
        self.via = Some(crate::launch::ship::Prefix::new(&prefix));
        self
    }

    /// Like [`fork`](Self::fork), handing `entry` the value `data` (which a `fn` pointer
    /// cannot capture); see [`fork_with`](crate::fork_with).
    #[allow(
        clippy::needless_pass_by_value,
        reason = "the data is the worker's, as `thread::spawn` takes its closure"
    )]
    pub fn fork_with<D>(self, data: D, entry: fn(&Coprocess, D)) -> Result<Coprocess>
    where
        D: Serialize + DeserializeOwned,
    {
        let entry = fork::entry_with(&data, entry).map_err(|reason| crate::Error::Encode {
            method: "fork_with".into(),
            reason,
        })?;
        // The data travels in the first frame, which the worker reads under this limit.
        let size = entry.data.0.len() as u64 + 64;
        if size > u64::from(self.options.link.max_frame) {
            return Err(crate::Error::Encode {
                method: "fork_with".into(),
                reason: format!(
                    "the data takes {size} bytes, over the frame limit of {} (see `max_frame_len`)",
                    self.options.link.max_frame
                ),
            });
        }
        let launch = self.fork_launch(entry);
        self.start_worker(launch)
    }

    /// Starts `cmd` as a worker; see [`Coprocess::spawn`].
    pub fn spawn(self, cmd: Command) -> Result<Coprocess> {
        self.start_worker(Launch::Command(cmd))
    }

    /// Starts `cmd` as a worker whose link runs over its stdin and stdout: the worker
    /// binary itself, or any command that ends in one and passes its stdio through, such
    /// as `ssh host path/to/worker`, `docker exec -i container worker` or `sudo -u user
    /// worker`. The worker's `main` calls [`Coprocess::stdio`]. Its stderr is forwarded
    /// to ours, and its last lines are quoted in a start-up error, with what the exit
    /// status says: 255 is ssh failing to connect or log in, 127 a command not found on
    /// the far side.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`](crate::Error::Spawn) when the command cannot start or does not
    /// complete the handshake, saying why.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::process::Command;
    ///
    /// let mut ssh = Command::new("ssh");
    /// ssh.args(["-o", "BatchMode=yes", "build-host", "/opt/bin/my-worker"]);
    /// let worker = coproq::Coprocess::builder().spawn_stdio(ssh)?;
    /// let n: u64 = worker.call("count", "some words")?;
    /// # Ok::<(), coproq::Error>(())
    /// ```
    pub fn spawn_stdio(self, cmd: Command) -> Result<Coprocess> {
        self.start_worker(Launch::Stdio(cmd))
    }

    /// Worker side of [`spawn_stdio`](Self::spawn_stdio): the link to the parent over
    /// this process's stdin and stdout, with this builder's handlers in place first. See
    /// [`Coprocess::stdio`].
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`](crate::Error::Protocol) when stdin and stdout do not carry a
    /// coproq parent's handshake, or were taken already.
    pub fn stdio(self) -> Result<Coprocess> {
        crate::launch::stdio::connect(&self.options, self.handlers)
    }

    /// In a spawned worker: connects to the parent with these handlers and options; see
    /// [`Coprocess::parent`].
    pub fn parent(self) -> Result<Coprocess> {
        spawn::parent(&self.options, self.handlers)
    }

    pub(crate) fn start_worker(self, launch: Launch) -> Result<Coprocess> {
        let fork = matches!(launch, Launch::Fork(_) | Launch::Remote(..));
        #[cfg(feature = "tracing")]
        let (started, program) = (std::time::Instant::now(), launch.program());
        let spawned = launch::spawn_worker(launch, &self.options, self.handlers);
        #[cfg(feature = "tracing")]
        if let Err(e) = &spawned {
            crate::trace::event!(WARN, program, error = %e, "worker failed to start");
        }
        let (link, process) = spawned?;
        crate::trace::event!(
            INFO,
            program,
            pid = process.pid(),
            took = ?started.elapsed(),
            "worker started"
        );
        if let Some(interval) = self.options.heartbeat {
            link.start_heartbeat(interval, || {});
        }
        if let Some(on_exit) = self.on_exit {
            let process = Arc::clone(&process);
            link.set_on_end(Box::new(move || report_exit(process, on_exit)));
        }
        // Registered before anyone reads, so that the report cannot arrive unexpected.
        let entry_report = if fork {
            Some(link.expect_entry_report()?)
        } else {
            None
        };
        let coproc = Coprocess::new(Arc::clone(&link), Some(process), self.options);
        let dispatcher = Arc::clone(&link);
        spawn_thread("coproq-dispatch", move || {
            if dispatcher.claim_serving() {
                dispatch::dispatch_queued(&dispatcher);
            }
        })?;
        let reader = Arc::clone(&link);
        spawn_thread("coproq-reader", move || {
            dispatch::read_in_background(&reader);
        })?;
        if let Some(slot) = entry_report {
            wait_for_entry(&coproc, &slot, self.options.startup_timeout)?;
        }
        Ok(coproc)
    }
}

/// Waits for a fork worker's report that its entry returned (the reply to call
/// `ENTRY_ID`, read by this thread like any reply); fails with `Spawn`, the worker closed
/// and reaped, if the entry panicked, the worker exited, or `timeout` passed.
/// Runs `on_exit` with the worker's status once it has exited, on a thread of its own
/// (the link may end before the process does, and whoever ended it must not wait).
fn report_exit(process: Arc<WorkerProcess>, on_exit: OnExit) {
    let task = Arc::new(std::sync::Mutex::new(Some((process, on_exit))));
    let run = |task: &std::sync::Mutex<Option<(Arc<WorkerProcess>, OnExit)>>| {
        let taken = task.lock().ok().and_then(|mut task| task.take());
        if let Some((process, on_exit)) = taken {
            on_exit(process.wait());
        }
    };
    let theirs = Arc::clone(&task);
    let spawned = std::thread::Builder::new()
        .name("coproq-on-exit".into())
        .spawn(move || run(&theirs));
    if spawned.is_err() {
        // No thread to be had: wait here rather than never report.
        run(&task);
    }
}

fn wait_for_entry(coproc: &Coprocess, slot: &Arc<Slot>, timeout: Duration) -> Result<()> {
    let link = coproc.link();
    // A timeout too long to add (`Duration::MAX`) is no deadline.
    let deadline = std::time::Instant::now().checked_add(timeout);
    let Ok(delivery) = dispatch::wait_reply(link, ENTRY_ID, slot, deadline) else {
        link.forget_call(ENTRY_ID);
        coproc.close();
        return Err(entry_failed(format!(
            "the worker's entry did not return within {timeout:?} (see `startup_timeout`)"
        )));
    };
    let failure = match pending::decode_reply::<()>("entry", delivery) {
        Ok(()) => return Ok(()),
        Err(crate::Error::Remote(remote)) => format!("the worker's entry {remote}"),
        Err(crate::Error::Disconnected { .. }) => {
            let status = coproc.close();
            let status = status.map_or_else(String::new, |s| format!(" ({s})"));
            format!("the worker exited before its entry returned{status}")
        }
        Err(e) => format!("the worker's entry did not report back: {e}"),
    };
    coproc.close();
    Err(entry_failed(failure))
}

fn entry_failed(reason: String) -> crate::Error {
    crate::Error::Spawn {
        program: "fork worker".into(),
        source: std::io::Error::other(reason),
    }
}

/// Starts a named helper thread of a link.
pub(crate) fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map(drop)
        .map_err(|source| crate::Error::Thread {
            name: name.into(),
            source,
        })
}

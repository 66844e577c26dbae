//! `Coprocess`, the handle on one end of a link, and `Builder`, which starts workers.

use std::fmt;
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::handler::{Handlers, METHODS_METHOD, Registry, Reply, Responder, Service};
use crate::launch::{self, Launch, WorkerProcess, fork, spawn};
use crate::link::calls::Slot;
use crate::link::dispatch;
use crate::link::{ENTRY_ID, Flush, Link, LinkOptions};
use crate::pending::{self, Pending};
use crate::wire::OutcomeKind;

/// One end of a link between two processes.
///
/// On the parent, it is the worker's handle: made by [`fork`](crate::fork),
/// [`Coprocess::spawn`] or a [`Builder`]. In the worker, it is the link to the parent:
/// the `&Coprocess` a fork entry receives, or [`Coprocess::parent`].
///
/// Both ends are alike: either may [`call`](Self::call) the other and
/// [`emit`](Self::emit) events to it, and register handlers for both. `Coprocess` is a
/// cheap [`Clone`] handle, `Send` and `Sync`: any number of threads may call through one
/// link at once. On the parent, dropping the last handle closes the link like
/// [`close`](Self::close).
///
/// # Examples
///
/// ```no_run
/// let worker = coproq::fork(|parent| {
///     parent.handle("add", |(a, b): (i32, i32)| a + b);
/// })?;
/// assert_eq!(worker.call::<i32>("add", (2, 3))?, 5);
/// worker.close();
/// # Ok::<(), coproq::Error>(())
/// ```
#[derive(Clone)]
pub struct Coprocess {
    inner: Arc<Inner>,
}

/// A handle that does not keep the link open; see [`Coprocess::downgrade`].
#[derive(Clone, Default)]
pub struct WeakCoprocess {
    inner: Weak<Inner>,
}

struct Inner {
    link: Arc<Link>,
    /// The worker process, on the parent end.
    process: Option<Arc<WorkerProcess>>,
    options: Options,
    closed: AtomicBool,
    status: Mutex<Option<ExitStatus>>,
}

/// Settings shared by both ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub(crate) link: LinkOptions,
    pub(crate) close_grace: Duration,
    pub(crate) startup_timeout: Duration,
    /// Start the worker in a process group of its own.
    pub(crate) process_group: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            link: LinkOptions { max_frame: 1 << 30 },
            close_grace: Duration::from_secs(2),
            startup_timeout: Duration::from_secs(30),
            process_group: false,
        }
    }
}

impl fmt::Debug for Coprocess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coprocess")
            .field("pid", &self.pid())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl fmt::Debug for WeakCoprocess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakCoprocess")
            .field("alive", &(self.inner.strong_count() > 0))
            .finish()
    }
}

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

    pub(crate) fn from_parent_link(link: Arc<Link>, options: Options) -> Self {
        Self::new(link, None, options)
    }

    fn new(link: Arc<Link>, process: Option<Arc<WorkerProcess>>, options: Options) -> Self {
        Self {
            inner: Arc::new(Inner {
                link,
                process,
                options,
                closed: AtomicBool::new(false),
                status: Mutex::new(None),
            }),
        }
    }

    /// Calls `method` on the peer with `args` and waits for the reply.
    ///
    /// Several arguments go as a tuple, one may go bare, none as `()`. The reply is
    /// decoded as `R`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(worker: &coproq::Coprocess) -> coproq::Result<()> {
    /// let sum: i32 = worker.call("add", (1, 2))?;
    /// let echoed = worker.call::<u32>("echo", 1234u32)?;
    /// let pid = worker.call::<u32>("pid", ())?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::MethodNotFound`](crate::Error::MethodNotFound),
    /// [`Error::Remote`](crate::Error::Remote) (the handler failed),
    /// [`Error::Decode`](crate::Error::Decode) (the reply is not an `R`),
    /// [`Error::NotConnected`](crate::Error::NotConnected) /
    /// [`Error::Disconnected`](crate::Error::Disconnected) (the peer is gone),
    /// [`Error::Encode`](crate::Error::Encode), [`Error::Protocol`](crate::Error::Protocol).
    pub fn call<R: DeserializeOwned>(&self, method: &str, args: impl Serialize) -> Result<R> {
        self.start(method, &args, Flush::Now, pending::finish::<R>)
            .wait()
    }

    /// Sends a call and returns at once; the reply is collected from the [`Pending`].
    /// Calls are sent in order and may complete in any order.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(worker: &coproq::Coprocess) -> coproq::Result<()> {
    /// let pending: Vec<_> = (0..100u32).map(|i| worker.call_async::<u32>("echo", i)).collect();
    /// for (i, p) in pending.into_iter().enumerate() {
    ///     assert_eq!(p.wait()?, i as u32);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn call_async<R: DeserializeOwned>(
        &self,
        method: &str,
        args: impl Serialize,
    ) -> Pending<R> {
        self.start(method, &args, Flush::Soon, pending::finish::<R>)
    }

    /// Sends a call; the reply becomes the caller's result through `finish`. `Flush::Now`
    /// for a caller about to wait, `Flush::Soon` to let pipelined calls share writes.
    pub(crate) fn start<R, A: Serialize + ?Sized>(
        &self,
        method: &str,
        args: &A,
        flush: Flush,
        finish: pending::Finish<R>,
    ) -> Pending<R> {
        let link = &self.inner.link;
        Pending::with_finish(link, method, link.start_call(method, args, flush), finish)
    }

    /// Sends the one-way event `name` with `args`. Blocks while the peer is far behind
    /// (back-pressure); events and calls from one thread are handled in the order sent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(worker: &coproq::Coprocess) -> coproq::Result<()> {
    /// worker.emit("log", ("info", "started"))?;
    /// # Ok(()) }
    /// ```
    pub fn emit(&self, name: &str, args: impl Serialize) -> Result<()> {
        self.inner.link.emit(name, &args)
    }

    /// Answers the peer's calls of `method` with what `f` returns.
    ///
    /// `f` takes the arguments as one value (a tuple for several) and returns any
    /// `Serialize` type. A returned `Result` is the error channel: `Ok(v)` replies `v`,
    /// `Err(e)` fails the call with `e`'s text. A panic in `f` fails that call with
    /// "panicked: ..." and the link goes on. Replaces an earlier handler of that name.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(c: &coproq::Coprocess) {
    /// c.handle("add", |(a, b): (i32, i32)| a + b);
    /// c.handle("read", |path: String| std::fs::read(path).map_err(|e| e.to_string()));
    /// # }
    /// ```
    pub fn handle<A, R, F>(&self, method: impl Into<String>, f: F) -> &Self
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        self.registry().handle(method, f);
        self
    }

    /// Answers the peer's calls of `method` later: `f` receives a [`Reply`] to complete
    /// from any thread with [`Reply::send`] or [`Reply::fail`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(c: &coproq::Coprocess) {
    /// c.handle_deferred("slow_square", |x: u64, reply: coproq::Reply<u64>| {
    ///     std::thread::spawn(move || reply.send(x * x));
    /// });
    /// # }
    /// ```
    pub fn handle_deferred<A, T, F>(&self, method: impl Into<String>, f: F) -> &Self
    where
        A: DeserializeOwned,
        T: Serialize,
        F: Fn(A, Reply<T>) + Send + Sync + 'static,
    {
        self.registry().handle_deferred(method, f);
        self
    }

    /// Runs `f` for each event `name` from the peer. Events nobody listens to are
    /// discarded.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(c: &coproq::Coprocess) {
    /// c.on("log", |(level, line): (String, String)| eprintln!("[{level}] {line}"));
    /// # }
    /// ```
    pub fn on<A, F>(&self, name: impl Into<String>, f: F) -> &Self
    where
        A: DeserializeOwned,
        F: Fn(A) + Send + Sync + 'static,
    {
        self.registry().on(name, f);
        self
    }

    /// Stops listening to event `name`; returns whether there was a listener.
    pub fn off(&self, name: &str) -> bool {
        self.inner.link.handlers.remove_event(name)
    }

    /// Registers a set of handlers, such as a generated `<Trait>Server`.
    ///
    /// # Panics
    ///
    /// If a name the service registers is taken already on this end (by another service
    /// or a plain handler), naming the method and both registrations: calls would
    /// otherwise silently reach the wrong code. In a fork worker's entry, the panic makes
    /// `fork` fail. Likewise, `handle` and `on` panic on a name a service registered.
    pub fn listen(&self, service: impl Service) -> &Self {
        Registry::listen(&self.inner.link.handlers, service);
        self
    }

    fn registry(&self) -> Registry<'_> {
        Registry::new(&self.inner.link.handlers)
    }

    /// Dispatches the peer's calls and events on this thread until the peer goes away.
    ///
    /// A spawned worker's `main` ends with this. A fork worker serves by itself once its
    /// entry returns. If another thread serves the link already, this just waits for the
    /// link to end.
    pub fn serve(&self) {
        let link = &self.inner.link;
        if link.claim_serving() {
            dispatch::serve(link);
        } else {
            link.wait_ended(Duration::MAX);
        }
        // Replies to the last calls may still be buffered: the process may exit next.
        link.drain_output();
    }

    /// Waits until everything sent so far is written (before this process exits).
    pub(crate) fn drain_output(&self) {
        self.inner.link.drain_output();
    }

    /// In a fork worker: tells the parent's `fork` that the entry returned (`None`) or
    /// why it failed, as the reply to call `ENTRY_ID`, written at once.
    pub(crate) fn report_entry(&self, failure: Option<String>) {
        let responder = Responder::new(Arc::clone(&self.inner.link), ENTRY_ID, Flush::Now);
        match failure {
            None => responder.send(&()),
            Some(reason) => responder.fail(OutcomeKind::Failed, reason),
        }
    }

    /// The names of the peer's call handlers and event listeners, sorted: what it offers,
    /// for discovery and scripting.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let worker = coproq::fork(|parent| {
    ///     parent.handle("add", |(a, b): (i32, i32)| a + b).on("log", |line: String| ());
    /// })?;
    /// assert_eq!(worker.methods()?, ["add", "log"]);
    /// # Ok::<(), coproq::Error>(())
    /// ```
    pub fn methods(&self) -> Result<Vec<String>> {
        self.call(METHODS_METHOD, ())
    }

    /// The parent's end of the worker's stdin, if its `Command` set it to
    /// [`Stdio::piped()`](std::process::Stdio::piped); once. `None` in the worker and for
    /// fork workers, whose stdio is this process's.
    pub fn take_stdin(&self) -> Option<ChildStdin> {
        self.inner.process.as_ref()?.stdio().stdin.take()
    }

    /// The parent's end of the worker's stdout, if piped; once. See
    /// [`take_stdin`](Self::take_stdin).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::io::{BufRead, BufReader};
    /// use std::process::{Command, Stdio};
    ///
    /// let mut cmd = Command::new("./my-worker");
    /// cmd.stdout(Stdio::piped());
    /// let worker = coproq::Coprocess::spawn(cmd)?;
    /// let output = BufReader::new(worker.take_stdout().expect("piped"));
    /// std::thread::spawn(move || output.lines().for_each(|line| println!("worker: {line:?}")));
    /// # Ok::<(), coproq::Error>(())
    /// ```
    pub fn take_stdout(&self) -> Option<ChildStdout> {
        self.inner.process.as_ref()?.stdio().stdout.take()
    }

    /// The parent's end of the worker's stderr, if piped; once. See
    /// [`take_stdin`](Self::take_stdin).
    pub fn take_stderr(&self) -> Option<ChildStderr> {
        self.inner.process.as_ref()?.stdio().stderr.take()
    }

    /// Closes the link: tells the peer goodbye, waits up to the grace period
    /// ([`Builder::close_grace`]) for the worker to exit, kills it if it has not, and
    /// reaps it. Returns the worker's exit status where known.
    ///
    /// Calls still in flight fail with `Disconnected` unless answered first; later calls
    /// fail with `NotConnected`. Idempotent. In a worker, this disconnects from the parent.
    pub fn close(&self) -> Option<ExitStatus> {
        self.inner.close()
    }

    /// The worker's process id, on the parent end; `None` in the worker.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.inner.process.as_ref().map(|p| p.pid())
    }

    /// A handle that does not keep the link open, for handlers that call the peer back:
    /// a handler that captured a strong `Coprocess` would keep its own link alive.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let worker = coproq::fork(|parent| {
    ///     parent.handle("ping", |n: u32| n + 1);
    /// })?;
    /// let weak = worker.downgrade();
    /// worker.handle("relay", move |n: u32| match weak.upgrade() {
    ///     Some(worker) => worker.call::<u32>("ping", n),
    ///     None => Err(coproq::Error::NotConnected),
    /// });
    /// # Ok::<(), coproq::Error>(())
    /// ```
    #[must_use]
    pub fn downgrade(&self) -> WeakCoprocess {
        WeakCoprocess {
            inner: Arc::downgrade(&self.inner),
        }
    }
}

impl WeakCoprocess {
    /// The handle, if the link is still open.
    #[must_use]
    pub fn upgrade(&self) -> Option<Coprocess> {
        self.inner
            .upgrade()
            .filter(|inner| !inner.closed.load(Ordering::Acquire))
            .map(|inner| Coprocess { inner })
    }
}

impl Inner {
    fn close(&self) -> Option<ExitStatus> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return self.known_status();
        }
        self.link.shutdown();
        let status = if let Some(process) = &self.process {
            let status = process
                .wait_timeout(self.options.close_grace)
                .or_else(|| process.kill());
            *self.status.lock().unwrap_or_else(PoisonError::into_inner) = status;
            // The worker is gone: take in its last words, up to the end of its stream, so
            // that calls it answered complete and the others fail `Disconnected`.
            self.link.drain_to_end(Duration::from_secs(1), status);
            status
        } else {
            self.link.end(&crate::Error::Disconnected { status: None });
            None
        };
        // Handlers may hold handles of this link: dropping them breaks such cycles.
        self.link.handlers.clear();
        status
    }

    fn known_status(&self) -> Option<ExitStatus> {
        let status = *self.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.or_else(|| self.process.as_ref().and_then(|p| p.try_status()))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.process.is_some() {
            self.close();
        }
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
}

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
        Self {
            handlers: Arc::default(),
            options: Options::default(),
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

    /// Starts the current executable again as a worker running `entry`; see
    /// [`fork`](crate::fork).
    pub fn fork(self, entry: fn(&Coprocess)) -> Result<Coprocess> {
        self.start(Launch::Fork(fork::plain_entry(entry)))
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
        self.start(Launch::Fork(entry))
    }

    /// Starts `cmd` as a worker; see [`Coprocess::spawn`].
    pub fn spawn(self, cmd: Command) -> Result<Coprocess> {
        self.start(Launch::Command(cmd))
    }

    /// In a spawned worker: connects to the parent with these handlers and options; see
    /// [`Coprocess::parent`].
    pub fn parent(self) -> Result<Coprocess> {
        spawn::parent(&self.options, self.handlers)
    }

    fn start(self, launch: Launch) -> Result<Coprocess> {
        let fork = matches!(launch, Launch::Fork(_));
        let (link, process) = launch::start(launch, &self.options, self.handlers)?;
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
                dispatch::run_queued(&dispatcher);
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
fn wait_for_entry(coproc: &Coprocess, slot: &Arc<Slot>, timeout: Duration) -> Result<()> {
    let link = &coproc.inner.link;
    let deadline = std::time::Instant::now() + timeout;
    let Ok(delivery) = dispatch::wait_reply(link, ENTRY_ID, slot, Some(deadline)) else {
        link.forget_call(ENTRY_ID);
        coproc.close();
        return Err(entry_failed(format!(
            "the worker's entry did not return within {timeout:?} (see `startup_timeout`)"
        )));
    };
    let failure = match pending::finish::<()>("entry", delivery) {
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
fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map(drop)
        .map_err(|source| crate::Error::Spawn {
            program: format!("{name} thread"),
            source,
        })
}

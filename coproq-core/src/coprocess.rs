//! `Coprocess`, the handle on one end of a link.

use std::fmt;
use std::process::{ChildStderr, ChildStdin, ChildStdout, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::handler::{Registry, Reply, Service};
use crate::link::dispatch;
use crate::link::{ENTRY_ID, Flush, Link};
use crate::link::{EVENTS_METHOD, METHODS_METHOD, Responder};
use crate::options::Options;
use crate::pending::{self, Deadline, Pending};
use crate::process::WorkerProcess;
use crate::ready::{Ready, Room};
use crate::wire::OutcomeKind;
use crate::wire::map_run::{self, RunArgs};

/// One end of a link between two processes.
///
/// On the parent, it is the worker's handle: made by [`fork`](crate::fork),
/// [`Coprocess::spawn`] or a [`Builder`](crate::Builder). In the worker, it is the link to the parent:
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

impl Coprocess {
    pub(crate) fn from_parent_link(link: Arc<Link>, options: Options) -> Self {
        Self::new(link, None, options)
    }

    pub(crate) fn new(
        link: Arc<Link>,
        process: Option<Arc<WorkerProcess>>,
        options: Options,
    ) -> Self {
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
    /// A handler's `Result` is the error channel: its `Ok(v)` arrives as `v`, its
    /// `Err(e)` as [`Error::Remote`](crate::Error::Remote). Ask for `R = Result<T, E>` to
    /// have it back as a `Result`: `Ok(Ok(v))`, or `Ok(Err(e))` where `E` decodes the
    /// handler's error; a panic, a missing method or a dead peer stay errors of the
    /// call, and so does an error that `E` does not decode (`Error::Remote`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(worker: &coproq::Coprocess) -> coproq::Result<()> {
    /// let sum: i32 = worker.call("add", (1, 2))?;
    /// let echoed = worker.call::<u32>("echo", 1234u32)?;
    /// let pid = worker.call::<u32>("pid", ())?;
    /// // The handler returns `Result<u64, String>`.
    /// match worker.call::<Result<u64, String>>("parse", "12x")? {
    ///     Ok(n) => println!("{n}"),
    ///     Err(why) => println!("the handler said: {why}"),
    /// }
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
        self.send_call(method, &args, Flush::Now, pending::decode_reply::<R>)
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
    #[inline]
    pub fn call_async<R: DeserializeOwned>(
        &self,
        method: &str,
        args: impl Serialize,
    ) -> Pending<R> {
        self.send_call(method, &args, Flush::Soon, pending::decode_reply::<R>)
    }

    /// Sends a call; the reply becomes the caller's result through `decode`. `Flush::Now`
    /// for a caller about to wait, `Flush::Soon` to let pipelined calls share writes.
    #[inline]
    pub(crate) fn send_call<R, A: Serialize + ?Sized>(
        &self,
        method: &str,
        args: &A,
        flush: Flush,
        decode: pending::ReplyDecoder<R>,
    ) -> Pending<R> {
        let link = &self.inner.link;
        let deadline = Deadline::for_new_call(self.inner.options.call_timeout);
        let started = link.start_call(method, args, flush, deadline);
        Pending::new(link, method, started, deadline, decode)
    }

    /// Sends the run of calls of `method` that `run` holds (see `wire::map_run`), under
    /// the link's call timeout: its reply decodes into each item's result.
    pub(crate) fn send_run<R: DeserializeOwned>(
        &self,
        method: &str,
        run: &RunArgs,
    ) -> Pending<Vec<Result<R>>> {
        let link = &self.inner.link;
        let deadline = Deadline::for_new_call(self.inner.options.call_timeout);
        let args = crate::bytes::Bytes(run.bytes());
        let started = link.start_call(map_run::MAP_METHOD, &args, Flush::Soon, deadline);
        Pending::new(link, method, started, deadline, pending::decode_run::<R>)
    }

    /// Resolves when the link can take a call or event without blocking the sending
    /// thread: await it before [`call_async`](Self::call_async) or [`emit`](Self::emit)
    /// in async code, so that a peer slower than its caller suspends the task instead of
    /// blocking the runtime's thread. It resolves at once on a closed link (the next call
    /// then fails with [`Error::NotConnected`](crate::Error::NotConnected)).
    ///
    /// One `ready` makes room for frames of moderate size (up to about 190 KiB in all);
    /// await it again before each call.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(worker: coproq::Coprocess) -> coproq::Result<()> {
    /// let mut pending = Vec::new();
    /// for n in 0..10_000u32 {
    ///     worker.ready().await;
    ///     pending.push(worker.call_async::<u32>("echo", n));
    /// }
    /// for p in pending {
    ///     p.await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn ready(&self) -> Ready {
        Ready::new(Arc::clone(&self.inner.link) as Arc<dyn Room>)
    }

    /// Whether the peer is still there: the link has not ended and (on the parent end)
    /// the worker process has not exited.
    #[must_use]
    pub fn is_alive(&self) -> bool {
        if self.inner.link.is_ended() || self.inner.closed.load(Ordering::Acquire) {
            return false;
        }
        self.inner
            .process
            .as_ref()
            .is_none_or(|p| p.try_status().is_none())
    }

    /// The worker's exit status, once it has exited and been reaped (`None` while it
    /// runs, and on the worker's end of the link).
    #[must_use]
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.inner.known_status()
    }

    /// Kills the worker now (SIGKILL), without the grace period of [`close`](Self::close):
    /// its calls in flight fail with `Disconnected`. For a worker that holds a call past
    /// its deadline.
    pub(crate) fn kill(&self) {
        if let Some(process) = &self.inner.process {
            process.kill();
        }
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
    #[inline]
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

    /// Answers the peer's calls of `method` with the value of the future that `f`
    /// returns, as [`handle`](Self::handle) answers with `f`'s value (a `Result` is the
    /// error channel).
    ///
    /// The serving thread only starts the future and goes on: calls are launched in the
    /// order they arrive and complete in any order, as many at once as the peer sends.
    /// Futures run on the tokio runtime given with [`tokio`](Self::tokio) (the `tokio`
    /// feature). Otherwise coproq drives them: their first poll runs on the serving
    /// thread (a future ready at once answers there, with no hand-over), later ones on a
    /// thread of this link's that polls whichever future was woken. That drives futures
    /// that need no runtime (channels, [`Pending`](crate::Pending) calls to the peer); a
    /// future that blocks its thread holds up the link, as a blocking handler does.
    ///
    /// While its future is polled, [`cancelled`](crate::cancelled) and
    /// [`deadline`](crate::deadline) answer for its call, and calls it makes to the peer
    /// inherit the deadline. When the caller cancels the call (or its deadline passes, or
    /// the peer dies), the future is dropped at its next wake-up, that is, at the `await`
    /// where it waits. A panic in it fails that call with "panicked: ..." and the link goes
    /// on. When the peer closes the link, futures in flight finish and answer first.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(parent: &coproq::Coprocess) {
    /// let weak = parent.downgrade();
    /// parent.handle_async("relay", move |n: u32| {
    ///     let parent = weak.upgrade();
    ///     async move {
    ///         // Awaits the peer's answer without holding up the link.
    ///         match parent {
    ///             Some(parent) => parent.call_async::<u32>("double", n).await,
    ///             None => Err(coproq::Error::NotConnected),
    ///         }
    ///     }
    /// });
    /// # }
    /// ```
    pub fn handle_async<A, R, Fut, F>(&self, method: impl Into<String>, f: F) -> &Self
    where
        A: DeserializeOwned,
        R: Serialize + 'static,
        Fut: Future<Output = R> + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
    {
        self.registry().handle_async(method, f);
        self
    }

    /// Runs the future that `f` returns for each event `name` from the peer, as
    /// [`handle_async`](Self::handle_async) runs a call's: listeners start in the order
    /// their events arrive, after the calls sent before them were launched, and may
    /// finish in any order.
    pub fn on_async<A, Fut, F>(&self, name: impl Into<String>, f: F) -> &Self
    where
        A: DeserializeOwned,
        Fut: Future<Output = ()> + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
    {
        self.registry().on_async(name, f);
        self
    }

    /// Runs this end's async handlers ([`handle_async`](Self::handle_async),
    /// [`on_async`](Self::on_async), `async fn` methods of services) on the runtime of
    /// `runtime`, so that their futures may use tokio's timers, sockets and `spawn`. The
    /// runtime must be kept alive, and driven, while the link serves: a multi-thread
    /// runtime is driven by its own threads, a current-thread one only while some thread
    /// runs its `block_on`. A fork worker's entry returns before the worker serves, so it
    /// hands its runtime over with [`tokio_runtime`](Self::tokio_runtime) instead.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn tokio(&self, runtime: tokio::runtime::Handle) -> &Self {
        self.inner.link.handlers.set_tokio(runtime);
        self
    }

    /// Like [`tokio`](Self::tokio), handing `runtime` over: this end keeps it as long as
    /// its handlers, then shuts it down without waiting. What a fork worker's entry does.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let worker = coproq::fork(|parent| {
    ///     parent.tokio_runtime(tokio::runtime::Runtime::new().expect("a tokio runtime"));
    ///     parent.handle_async("nap", |ms: u64| async move {
    ///         tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    ///         ms
    ///     });
    /// })?;
    /// assert_eq!(worker.call::<u64>("nap", 50)?, 50);
    /// # Ok::<(), coproq::Error>(())
    /// ```
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn tokio_runtime(&self, runtime: tokio::runtime::Runtime) -> &Self {
        self.inner.link.handlers.keep_tokio(runtime);
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
    /// link to end. When the peer says goodbye, async handlers still running finish and
    /// answer before this returns.
    pub fn serve(&self) {
        let link = &self.inner.link;
        if link.claim_serving() {
            dispatch::serve(link);
        } else {
            link.wait_ended(Duration::MAX);
        }
        // A peer that said goodbye still reads until it is gone: calls running on other
        // threads (a crew's, async ones) finish and answer (a peer that vanished has the
        // async ones dropped).
        if let Some(crew) = link.crew() {
            crew.wait_calls(Instant::now() + Duration::from_hours(1));
        }
        while !link
            .tasks
            .wait_idle(Instant::now() + Duration::from_millis(100))
        {
            if link.abandoned() {
                break;
            }
        }
        // Replies to the last calls may still be buffered: the process may exit next.
        link.drain_output();
    }

    /// The link this handle is an end of.
    pub(crate) fn link(&self) -> &Arc<Link> {
        &self.inner.link
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

    /// The names of the peer's call handlers (typed services' methods among them),
    /// sorted: what it answers with [`call`](Self::call), for discovery and scripting.
    /// Its event listeners are [`events`](Self::events).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let worker = coproq::fork(|parent| {
    ///     parent.handle("add", |(a, b): (i32, i32)| a + b).on("log", |line: String| ());
    /// })?;
    /// assert_eq!(worker.methods()?, ["add"]);
    /// assert_eq!(worker.events()?, ["log"]);
    /// # Ok::<(), coproq::Error>(())
    /// ```
    pub fn methods(&self) -> Result<Vec<String>> {
        self.call(METHODS_METHOD, ())
    }

    /// The names of the peer's event listeners, sorted: what it takes with
    /// [`emit`](Self::emit). Its call handlers are [`methods`](Self::methods).
    pub fn events(&self) -> Result<Vec<String>> {
        self.call(EVENTS_METHOD, ())
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
    /// ([`Builder::close_grace`](crate::Builder::close_grace)) for the worker to exit, kills it if it has not, and
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
            self.link.end(crate::Error::stream_ended);
            None
        };
        // Handlers may hold handles of this link: dropping them breaks such cycles.
        if !self.options.shared_handlers {
            self.link.handlers.clear();
        }
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

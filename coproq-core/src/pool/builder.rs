//! `PoolBuilder`: a pool's settings and parent handlers, and its first start.

use std::fmt;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::events::OnEvent;
use super::shared::Shared;
use super::{Config, Launcher, Pool, PoolEvent};
use crate::coprocess::Coprocess;
use crate::error::{Error, Result};
use crate::handler::{Registry, Reply, Service};
use crate::launch::ship::Prefix;
use crate::launch::{Launch, fork};
use crate::link::Handlers;
use crate::options::Options;
use crate::wire::ForkEntry;

/// How many lines of a worker's stderr a pool keeps by default.
const DEFAULT_STDERR_TAIL: usize = 8;

/// A command prefix for [`PoolBuilder::via`]: one `Command` for every seat, or a closure
/// `Fn(usize) -> Command` making each seat's. Sealed.
pub trait SeatPrefix: sealed::Sealed {
    /// The prefix of each seat.
    #[doc(hidden)]
    fn into_prefixes(self) -> SeatPrefixes;
}

/// Each seat's prefix, as [`SeatPrefix`] makes it.
#[doc(hidden)]
#[allow(missing_debug_implementations, reason = "hidden, and holds a closure")]
pub struct SeatPrefixes(Arc<dyn Fn(usize) -> Prefix + Send + Sync>);

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::process::Command {}
    impl<F: Fn(usize) -> std::process::Command + Send + Sync + 'static> Sealed for F {}
}

impl SeatPrefix for Command {
    fn into_prefixes(self) -> SeatPrefixes {
        let prefix = Prefix::new(&self);
        SeatPrefixes(Arc::new(move |_| prefix.clone()))
    }
}

impl<F: Fn(usize) -> Command + Send + Sync + 'static> SeatPrefix for F {
    fn into_prefixes(self) -> SeatPrefixes {
        SeatPrefixes(Arc::new(move |seat| Prefix::new(&self(seat))))
    }
}

/// Sets up a [`Pool`]: its size and policies, and the parent's handlers that every worker
/// may call; then starts it. From [`Pool::builder`].
///
/// Every worker starts before `fork`, `fork_with` or `spawn` returns: a pool whose
/// workers cannot start fails there, with the first worker's error, not later.
pub struct PoolBuilder {
    config: Config,
    handlers: Arc<Handlers>,
    options: Options,
    /// Where each seat's fork worker runs, if not here.
    via: Option<Arc<dyn Fn(usize) -> Prefix + Send + Sync>>,
    on_event: Option<OnEvent>,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PoolBuilder {
    pub(super) fn new() -> Self {
        let size = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let options = Options {
            shared_handlers: true,
            stderr_tail: DEFAULT_STDERR_TAIL,
            ..Options::default()
        };
        Self {
            config: Config {
                size,
                in_flight: 4,
                queue_capacity: 1024,
                call_timeout: None,
                run_timeout: None,
                kill_on_timeout: false,
                restart_limit: (10, Duration::from_mins(1)),
                max_calls_per_worker: None,
                max_rss: None,
                retries: 0,
            },
            handlers: Arc::default(),
            options,
            via: None,
            on_event: None,
        }
    }

    /// How many workers (default: the available parallelism). At least 1.
    #[must_use]
    pub fn size(mut self, workers: usize) -> Self {
        self.config.size = workers.max(1);
        self
    }

    /// How many calls each worker holds at once (default 4); more wait in the parent's
    /// queue. At least 1. A higher number pipelines small calls better; a lower one
    /// balances long calls better and loses fewer calls when a worker dies.
    #[must_use]
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.config.in_flight = calls.max(1);
        self
    }

    /// How many calls may wait in the parent's queue (default 1024); beyond that, callers
    /// block (back-pressure) until there is room or their deadline passes. At least 1.
    #[must_use]
    pub fn queue_capacity(mut self, calls: usize) -> Self {
        self.config.queue_capacity = calls.max(1);
        self
    }

    /// The default deadline of every call, queue and run (default: none). See
    /// [`Builder::call_timeout`](crate::Builder::call_timeout).
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = Some(timeout);
        self
    }

    /// The longest a call may run in a worker, counted from when the worker starts it
    /// (the worker says so), however long it waited before (default: no limit). A call
    /// past it fails with [`Error::Timeout`]; with
    /// [`kill_on_timeout`](Self::kill_on_timeout), its worker is killed and replaced.
    /// [`call_timeout`](Self::call_timeout) stays the caller's whole deadline, queue and
    /// run.
    #[must_use]
    pub fn run_timeout(mut self, timeout: Duration) -> Self {
        self.config.run_timeout = Some(timeout);
        self
    }

    /// Kill (and replace) a worker that is running a call past its deadline (default: no;
    /// the worker is told the call is cancelled and may finish it). Only a worker that has
    /// started the call is killed (the worker says when it starts each call): a call still
    /// waiting behind others in a worker, when its `call_timeout` passes, is cancelled
    /// there and never runs, and the healthy worker lives on. With a
    /// [`run_timeout`](Self::run_timeout), the kill comes when a call has run that long.
    #[must_use]
    pub fn kill_on_timeout(mut self, kill: bool) -> Self {
        self.config.kill_on_timeout = kill;
        self
    }

    /// More than `restarts` restarts within `window` break the pool (default: 10 within
    /// a minute): every queued and new call then fails with [`Error::PoolBroken`],
    /// instead of workers crashing in a loop.
    #[must_use]
    pub fn restart_limit(mut self, restarts: u32, window: Duration) -> Self {
        self.config.restart_limit = (restarts, window);
        self
    }

    /// Replaces a worker once it has taken this many calls (default: never), for workers
    /// that leak. Its calls in flight finish first; none fails.
    #[must_use]
    pub fn max_calls_per_worker(mut self, calls: u64) -> Self {
        self.config.max_calls_per_worker = Some(calls.max(1));
        self
    }

    /// Replaces a worker whose resident size (RSS) has grown past `bytes` (default:
    /// never), for workers that leak or fragment: it is measured after each call the
    /// worker answers, and a worker past it takes no more calls, finishes those it holds
    /// (none fails) and is replaced, as with
    /// [`max_calls_per_worker`](Self::max_calls_per_worker); this is not a restart.
    /// Measured by the parent (`/proc/<pid>/statm` on Linux, `proc_pidinfo` on macOS),
    /// for workers on this machine: workers over a command prefix or `spawn_stdio` are
    /// not measured. A hard ceiling is [`memory_limit`](Self::memory_limit).
    #[must_use]
    pub fn max_rss(mut self, bytes: u64) -> Self {
        self.config.max_rss = Some(bytes);
        self
    }

    /// Limits each worker's data (heap and private mappings) to `bytes` (see
    /// [`Builder::memory_limit`](crate::Builder::memory_limit)): a call that allocates
    /// past it fails with [`Error::Disconnected`], whose postmortem says
    /// [`DeathReason::OutOfMemory`](crate::DeathReason::OutOfMemory) with the limit, and
    /// the worker is replaced.
    #[must_use]
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.options.link.memory_limit = Some(bytes);
        self
    }

    /// How many of the last lines of each worker's stderr a `Disconnected` error and a
    /// [`PoolEvent::Died`] quote (default 8; 0 leaves the workers' stderr alone). See
    /// [`Builder::stderr_tail`](crate::Builder::stderr_tail): the lines are forwarded to
    /// the parent's stderr as they come.
    #[must_use]
    pub fn stderr_tail(mut self, lines: usize) -> Self {
        self.options.stderr_tail = lines;
        self
    }

    /// Calls `callback` with each [`PoolEvent`]: a worker started, died (with its exit
    /// status and [`Postmortem`](crate::Postmortem)), was retired, or the pool broke. It
    /// runs on the pool's supervisor thread, which waits for it: log and return.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let pool = coproq::Pool::builder()
    ///     .on_event(|event| {
    ///         if let coproq::PoolEvent::Died { seat, status, postmortem, .. } = event {
    ///             eprintln!("worker {seat} died ({status:?}): {postmortem:?}");
    ///         }
    ///     })
    ///     .fork(|parent| {
    ///         parent.handle("work", |n: u64| n + 1);
    ///     })?;
    /// # Ok::<(), coproq::Error>(())
    /// ```
    #[must_use]
    pub fn on_event(mut self, callback: impl Fn(&PoolEvent) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Arc::new(callback));
        self
    }

    /// How many times a call whose worker died is sent to another worker (default 0: at
    /// most once, as a call may have side effects). Calls never written to a worker are
    /// always re-sent.
    ///
    /// A worker that dies takes the blame off no call it held: each is a suspect. With a
    /// retry left, a suspect runs again on a worker by itself; if that worker dies too,
    /// the call is the culprit and fails as a poison call
    /// ([`Blame::Poison`](crate::Blame::Poison)), never sent again, while the innocent
    /// suspects complete. Confirming a poison call costs one more restart, which does not
    /// count against the [`restart_limit`](Self::restart_limit). Without retries, each
    /// call of a dead worker fails, its error saying how many other calls the worker was
    /// running ([`Blame::Shared`](crate::Blame::Shared)).
    #[must_use]
    pub fn retries(mut self, times: u32) -> Self {
        self.config.retries = times;
        self
    }

    /// The largest frame accepted, on both ends of every worker (see
    /// [`Builder::max_frame_len`](crate::Builder::max_frame_len)).
    #[must_use]
    pub fn max_frame_len(mut self, bytes: u32) -> Self {
        self.options.link.max_frame = bytes;
        self
    }

    /// How long a worker's start may take (see
    /// [`Builder::startup_timeout`](crate::Builder::startup_timeout)).
    #[must_use]
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.options.startup_timeout = timeout;
        self
    }

    /// Heartbeats on every worker's link (see
    /// [`Builder::heartbeat`](crate::Builder::heartbeat)): a worker whose link falls
    /// silent is treated as dead and replaced.
    #[must_use]
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.options.heartbeat = Some(interval.max(Duration::from_millis(1)));
        self
    }

    /// How long a thread waiting for a worker spins before it sleeps, on every worker's
    /// link (see [`Builder::spin`](crate::Builder::spin)).
    #[must_use]
    pub fn spin(mut self, budget: Duration) -> Self {
        self.options.link.spin = Some(budget);
        self
    }

    /// How long [`Pool::close`] waits for workers to exit before killing them.
    #[must_use]
    pub fn close_grace(mut self, grace: Duration) -> Self {
        self.options.close_grace = grace;
        self
    }

    /// A parent handler that every worker may call; see [`crate::Builder::handle`].
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

    /// A deferred parent handler; see [`crate::Builder::handle_deferred`].
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

    /// An async parent handler that every worker may call; see
    /// [`crate::Coprocess::handle_async`].
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

    /// An async parent listener for every worker's events; see
    /// [`crate::Coprocess::on_async`].
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

    /// Runs the parent's async handlers on `runtime`; see [`crate::Coprocess::tokio`].
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    #[must_use]
    pub fn tokio(self, runtime: tokio::runtime::Handle) -> Self {
        self.handlers.set_tokio(runtime);
        self
    }

    /// Runs up to `n` calls at once in each worker (and of each worker's calls in the
    /// parent); see [`crate::Builder::concurrency`]. `max_in_flight` should then be at
    /// least `n`, so that a worker is sent that many calls.
    #[must_use]
    pub fn concurrency(mut self, n: u32) -> Self {
        self.options.link.concurrency = Some(n.max(1));
        self
    }

    /// A parent event listener for every worker's events; see [`crate::Builder::on`].
    #[must_use]
    pub fn on<A, F>(self, name: impl Into<String>, f: F) -> Self
    where
        A: DeserializeOwned,
        F: Fn(A) + Send + Sync + 'static,
    {
        Registry::new(&self.handlers).on(name, f);
        self
    }

    /// A service that every worker may call; see [`crate::Builder::listen`].
    #[must_use]
    pub fn listen(self, service: impl Service) -> Self {
        Registry::listen(&self.handlers, service);
        self
    }

    /// Starts the pool's workers as fork workers running `entry` (see [`crate::fork`]).
    ///
    /// # Errors
    ///
    /// The first worker's start error; no worker is left running then.
    pub fn fork(self, entry: fn(&Coprocess)) -> Result<Pool> {
        let entry = fork::plain_entry(entry);
        let launcher = self.fork_launcher(entry);
        self.start(launcher)
    }

    /// Starts `entry` here, or through the seat's `via` prefix.
    fn fork_launcher(&self, entry: ForkEntry) -> Launcher {
        match self.via.clone() {
            Some(prefix) => Box::new(move |index| Launch::Remote(prefix(index), entry.clone())),
            None => Box::new(move |_| Launch::Fork(entry.clone())),
        }
    }

    /// Runs the fork workers through a command prefix, such as `ssh host` (see
    /// [`Builder::via`](crate::Builder::via)): this executable is shipped to each far
    /// side's cache once. One `Command` serves every seat; a closure `|seat| Command`
    /// gives each seat its own, so one pool spans several hosts (a replacement gets its
    /// seat's prefix again).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::process::Command;
    ///
    /// let hosts = ["build1", "build2"];
    /// let pool = coproq::Pool::builder()
    ///     .size(4)
    ///     .via(move |seat: usize| {
    ///         let mut ssh = Command::new("ssh");
    ///         ssh.args(["-o", "BatchMode=yes", hosts[seat % hosts.len()]]);
    ///         ssh
    ///     })
    ///     .fork(|parent| {
    ///         parent.handle("host", |()| std::env::var("HOSTNAME").unwrap_or_default());
    ///     })?;
    /// # Ok::<(), coproq::Error>(())
    /// ```
    #[must_use]
    pub fn via(mut self, prefix: impl SeatPrefix) -> Self {
        self.via = Some(prefix.into_prefixes().0);
        self
    }

    /// Starts the pool's workers as fork workers running `entry` with `data` (see
    /// [`crate::fork_with`]); each worker gets its own copy.
    ///
    /// # Errors
    ///
    /// As [`fork`](Self::fork), and [`Error::Encode`] if `data` does not serialize.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "the data is the workers', as `thread::spawn` takes its closure"
    )]
    pub fn fork_with<D>(self, data: D, entry: fn(&Coprocess, D)) -> Result<Pool>
    where
        D: Serialize + DeserializeOwned,
    {
        let entry = fork::entry_with(&data, entry).map_err(|reason| Error::Encode {
            method: "fork_with".into(),
            reason,
        })?;
        let launcher = self.fork_launcher(entry);
        self.start(launcher)
    }

    /// Starts the pool's workers from the commands that `command` makes, one per seat
    /// index (`0..size`, and again for a replacement): separate worker binaries, as
    /// [`Coprocess::spawn`](crate::Coprocess::spawn) starts them. The workers start side
    /// by side, so `command` is called from several threads at once, in no set order.
    /// With [`stderr_tail`](Self::stderr_tail) on (the default), each worker's stderr
    /// comes through the parent, which forwards it to its own: set `stderr_tail(0)` to
    /// keep the command's own `stderr` setting.
    ///
    /// # Errors
    ///
    /// The first worker's start error; no worker is left running then.
    pub fn spawn(self, command: impl Fn(usize) -> Command + Send + Sync + 'static) -> Result<Pool> {
        self.start(Box::new(move |index| Launch::Command(command(index))))
    }

    /// Starts the pool's workers from the commands that `command` makes, one per seat
    /// index, each with the link on its stdin and stdout (see
    /// [`Builder::spawn_stdio`](crate::Builder::spawn_stdio)): one pool can span several
    /// hosts, `ssh` to each.
    ///
    /// # Errors
    ///
    /// The first worker's start error; no worker is left running then.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::process::Command;
    ///
    /// let hosts = ["alpha", "beta"];
    /// let pool = coproq::Pool::builder()
    ///     .size(4)
    ///     .heartbeat(std::time::Duration::from_secs(5))
    ///     .spawn_stdio(move |i| {
    ///         let mut ssh = Command::new("ssh");
    ///         ssh.args(["-o", "BatchMode=yes", hosts[i % hosts.len()], "/opt/bin/my-worker"]);
    ///         ssh
    ///     })?;
    /// # Ok::<(), coproq::Error>(())
    /// ```
    pub fn spawn_stdio(
        self,
        command: impl Fn(usize) -> Command + Send + Sync + 'static,
    ) -> Result<Pool> {
        self.start(Box::new(move |index| Launch::Stdio(command(index))))
    }

    fn start(mut self, launcher: Launcher) -> Result<Pool> {
        // Workers say when each call starts where time limits count running time.
        self.options.link.report_starts =
            self.config.kill_on_timeout || self.config.run_timeout.is_some();
        let shared = Shared::new(
            self.config,
            launcher,
            self.handlers,
            self.options,
            self.on_event,
        );
        Pool::start(Arc::new(shared))
    }
}

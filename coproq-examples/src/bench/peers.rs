//! The crates people would pick instead, on the same figures (`--features peers`):
//! ipc-channel (a channel pair over OS IPC), tarpc (async RPC over a Unix socket) and
//! procspawn (a pool of one worker process). Each runs the same echo of a `u64`.

use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};

use crate::sys;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs a peer's worker if this process was started as one; false otherwise.
pub(crate) fn worker(args: &[String]) -> bool {
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    if let Some(name) = value("--peer-ipc-worker") {
        sys::pin_worker();
        ipc_worker(name).expect("ipc-channel worker");
        return true;
    }
    if let Some(path) = value("--peer-tarpc-worker") {
        sys::pin_worker();
        tarpc_worker(path).expect("tarpc worker");
        return true;
    }
    false
}

// ipc-channel ----------------------------------------------------------------------

type IpcPair = (IpcSender<u64>, IpcReceiver<u64>);

fn ipc_worker(name: &str) -> Result<(), Error> {
    let bootstrap = IpcSender::<IpcPair>::connect(name.to_owned())?;
    let (req_tx, req_rx) = ipc::channel::<u64>()?;
    let (resp_tx, resp_rx) = ipc::channel::<u64>()?;
    bootstrap.send((req_tx, resp_rx))?;
    while let Ok(x) = req_rx.recv() {
        resp_tx.send(x)?;
    }
    Ok(())
}

fn ipc_start() -> Result<(Child, IpcSender<u64>, IpcReceiver<u64>), Error> {
    let (server, name) = IpcOneShotServer::<IpcPair>::new()?;
    let child = Command::new(std::env::current_exe()?)
        .args(["--peer-ipc-worker", &name])
        .spawn()?;
    let (_, (tx, rx)) = server.accept()?;
    Ok((child, tx, rx))
}

pub(crate) fn ipc_latency(n: u32) -> Result<Duration, Error> {
    let (mut child, tx, rx) = ipc_start()?;
    for i in 0..1000 {
        tx.send(i)?;
        rx.recv()?;
    }
    let start = Instant::now();
    for i in 0..u64::from(n) {
        tx.send(i)?;
        assert_eq!(rx.recv()?, i);
    }
    let elapsed = start.elapsed();
    drop(tx);
    child.wait()?;
    Ok(elapsed / n)
}

pub(crate) fn ipc_pipelined(n: u32) -> Result<f64, Error> {
    let (mut child, tx, rx) = ipc_start()?;
    let tx = std::sync::Arc::new(tx);
    // The first burst warms memory up; the second is measured, as for coproq.
    let mut elapsed = Duration::ZERO;
    for _ in 0..2 {
        let start = Instant::now();
        let sending = std::sync::Arc::clone(&tx);
        let sender = std::thread::spawn(move || -> Result<(), String> {
            for i in 0..u64::from(n) {
                sending.send(i).map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        for _ in 0..n {
            rx.recv()?;
        }
        elapsed = start.elapsed();
        sender.join().map_err(|_| "sender panicked")??;
    }
    drop(tx);
    child.wait()?;
    Ok(f64::from(n) / elapsed.as_secs_f64())
}

pub(crate) fn ipc_startup(n: u32) -> Result<Duration, Error> {
    let start = Instant::now();
    for _ in 0..n {
        let (mut child, tx, rx) = ipc_start()?;
        tx.send(1)?;
        rx.recv()?;
        drop(tx);
        child.wait()?;
    }
    Ok(start.elapsed() / n)
}

// tarpc --------------------------------------------------------------------------

#[tarpc::service]
trait PeerEcho {
    async fn echo(x: u64) -> u64;
}

#[derive(Clone)]
struct PeerEchoServer;

impl PeerEcho for PeerEchoServer {
    async fn echo(self, _: tarpc::context::Context, x: u64) -> u64 {
        x
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn tarpc_worker(path: &str) -> Result<(), Error> {
    use tarpc::server::Channel;
    runtime()?.block_on(async {
        let mut listener = tarpc::serde_transport::unix::listen(
            path,
            tarpc::tokio_serde::formats::Bincode::default,
        )
        .await?;
        if let Some(transport) = listener.next().await {
            tarpc::server::BaseChannel::with_defaults(transport?)
                .execute(PeerEchoServer.serve())
                .for_each(|response| async move {
                    tokio::spawn(response);
                })
                .await;
        }
        Ok(())
    })
}

struct Tarpc {
    child: Child,
    client: PeerEchoClient,
    runtime: tokio::runtime::Runtime,
    path: std::path::PathBuf,
}

fn tarpc_start() -> Result<Tarpc, Error> {
    static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "coproq-bench-tarpc-{}-{n}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let child = Command::new(std::env::current_exe()?)
        .args([
            "--peer-tarpc-worker",
            path.to_str().ok_or("non-UTF-8 temp dir")?,
        ])
        .spawn()?;
    let runtime = runtime()?;
    let client = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        let transport = loop {
            match tarpc::serde_transport::unix::connect(
                &path,
                tarpc::tokio_serde::formats::Bincode::default,
            )
            .await
            {
                Ok(transport) => break transport,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_micros(100)).await;
                }
                Err(e) => return Err(e),
            }
        };
        Ok(PeerEchoClient::new(tarpc::client::Config::default(), transport).spawn())
    })?;
    Ok(Tarpc {
        child,
        client,
        runtime,
        path,
    })
}

impl Tarpc {
    fn stop(mut self) -> Result<(), Error> {
        drop(self.client);
        self.child.kill()?;
        self.child.wait()?;
        let _ = std::fs::remove_file(&self.path);
        Ok(())
    }
}

pub(crate) fn tarpc_latency(n: u32) -> Result<Duration, Error> {
    let t = tarpc_start()?;
    let elapsed = t.runtime.block_on(async {
        for i in 0..1000 {
            t.client.echo(tarpc::context::current(), i).await?;
        }
        let start = Instant::now();
        for i in 0..u64::from(n) {
            assert_eq!(t.client.echo(tarpc::context::current(), i).await?, i);
        }
        Ok::<_, Error>(start.elapsed())
    })?;
    t.stop()?;
    Ok(elapsed / n)
}

pub(crate) fn tarpc_pipelined(n: u32) -> Result<f64, Error> {
    let t = tarpc_start()?;
    let elapsed = t.runtime.block_on(async {
        // The first burst warms memory up; the second is measured, as for coproq.
        let mut elapsed = Duration::ZERO;
        for _ in 0..2 {
            let start = Instant::now();
            let done = futures::stream::iter(0..u64::from(n))
                .map(|i| t.client.echo(tarpc::context::current(), i))
                // tarpc's client admits 1000 requests in flight by default.
                .buffer_unordered(1000)
                .filter(|r| futures::future::ready(r.is_ok()))
                .count()
                .await;
            assert_eq!(done, n as usize);
            elapsed = start.elapsed();
        }
        elapsed
    });
    t.stop()?;
    Ok(f64::from(n) / elapsed.as_secs_f64())
}

pub(crate) fn tarpc_startup(n: u32) -> Result<Duration, Error> {
    let start = Instant::now();
    for _ in 0..n {
        let t = tarpc_start()?;
        t.runtime
            .block_on(t.client.echo(tarpc::context::current(), 1))?;
        t.stop()?;
    }
    Ok(start.elapsed() / n)
}

// procspawn ----------------------------------------------------------------------

/// In a procspawn worker: pins it once, where the measurement asked.
fn echo_pinned(x: u64) -> u64 {
    static PINNED: OnceLock<()> = OnceLock::new();
    PINNED.get_or_init(sys::pin_worker);
    x
}

pub(crate) fn procspawn_latency(n: u32) -> Result<Duration, Error> {
    let pool = procspawn::Pool::new(1)?;
    for i in 0..100u64 {
        pool.spawn(i, echo_pinned).join()?;
    }
    let start = Instant::now();
    for i in 0..u64::from(n) {
        assert_eq!(pool.spawn(i, echo_pinned).join()?, i);
    }
    let elapsed = start.elapsed();
    pool.shutdown();
    Ok(elapsed / n)
}

pub(crate) fn procspawn_pipelined(n: u32) -> Result<f64, Error> {
    procspawn_pool_of(1, n)
}

pub(crate) fn procspawn_pool_pipelined(n: u32) -> Result<f64, Error> {
    procspawn_pool_of(2, n)
}

/// Pipelined echo calls through a procspawn pool of `size`: calls per second.
fn procspawn_pool_of(size: usize, n: u32) -> Result<f64, Error> {
    let pool = procspawn::Pool::new(size)?;
    pool.spawn(0u64, echo_pinned).join()?;
    // The first burst warms memory up; the second is measured, as for coproq.
    let mut elapsed = Duration::ZERO;
    for _ in 0..2 {
        let start = Instant::now();
        let handles: Vec<_> = (0..u64::from(n))
            .map(|i| pool.spawn(i, echo_pinned))
            .collect();
        for handle in handles {
            handle.join()?;
        }
        elapsed = start.elapsed();
    }
    pool.shutdown();
    Ok(f64::from(n) / elapsed.as_secs_f64())
}

/// The compression jobs of `pool::compress` through a procspawn pool over every core:
/// jobs per second.
pub(crate) fn procspawn_compress(jobs: u32) -> Result<f64, Error> {
    let pool = procspawn::Pool::new(crate::pool::cores())?;
    let all = crate::pool::compress_jobs(jobs);
    for job in &all[..crate::pool::cores() * 2] {
        pool.spawn(*job, coproq_tests::story::run).join()?;
    }
    let start = Instant::now();
    let handles: Vec<_> = all
        .into_iter()
        .map(|job| pool.spawn(job, coproq_tests::story::run))
        .collect();
    for handle in handles {
        handle.join()?;
    }
    let elapsed = start.elapsed();
    pool.shutdown();
    Ok(f64::from(jobs) / elapsed.as_secs_f64())
}

pub(crate) fn procspawn_startup(n: u32) -> Result<Duration, Error> {
    let start = Instant::now();
    for _ in 0..n {
        procspawn::spawn(1u64, echo_pinned).join()?;
    }
    Ok(start.elapsed() / n)
}

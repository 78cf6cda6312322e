//! What every start path borrows, whatever it starts: the owner's loan, the
//! owned task a start runs on, the image check, the control line and the TLS
//! material written on it, and the clock of a start's phases.

use std::path::PathBuf;

use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use super::config::WorkerConfig;
use super::lifeline::Lifeline;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::feed::{Feed, Relay};
use crate::labels;
use crate::registry::Registry;
use crate::values::Pull;

/// How long a connection to a worker that just said it serves may take.
const REACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Check that this process connects to `address`, where worker `name` is
/// about to be advertised (`published`: at a port its Engine publishes):
/// better a start that says why than a pool that waits for wool's timeout.
pub(super) async fn check_reachable(name: &str, address: &str, published: bool) -> Result<()> {
    let detail =
        match tokio::time::timeout(REACH_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer in {} s", REACH_TIMEOUT.as_secs()),
        };
    let fix = if published {
        "the Engine publishes its port on a host this process cannot reach (an Engine \
         in another network namespace, or a firewall): run the owner where that port \
         is reachable, or where it routes to the worker network and pass publish=False"
    } else {
        "this process cannot route to the worker network (the Engine is in a VM or \
         another namespace): pass publish=True to reach it at a port the Engine publishes"
    };
    Err(Error::Unreachable {
        id: name.to_owned(),
        address: address.to_owned(),
        detail,
        fix: fix.to_owned(),
    })
}

/// What a worker's owner lends it: the record of the containers it owns, and
/// its worker feed when the worker gets one.
#[derive(Clone)]
pub struct Owner {
    /// The owner's containers; the worker records its own there.
    pub registry: Registry,
    /// How the owner's feed reaches the worker, when `engine_access` is the feed.
    pub feed: Option<FeedAccess>,
    /// The owner's lifeline listener, which a Swarm worker's task connects to.
    pub lifeline: Option<Lifeline>,
}

/// How the owner's worker feed reaches its containers.
#[derive(Clone)]
pub enum FeedAccess {
    /// The feed's socket on this machine, bind-mounted: the Engine shares
    /// this process's files.
    Mount(PathBuf),
    /// A relay the owner runs in each container (see `feed::relay`): the
    /// Engine shares no files with this process.
    Relay(Feed),
}

impl FeedAccess {
    /// Start the relay in container `id`, if the feed goes through one.
    pub(super) async fn start_relay(&self, engine: &Engine, id: &str) -> Result<Option<Relay>> {
        match self {
            FeedAccess::Mount(_) => Ok(None),
            FeedAccess::Relay(feed) => feed.relay(engine, id).await.map(Some),
        }
    }
}

/// Run `work` on a task of its own, handing it a receiver that resolves when
/// the caller stops waiting: the work then cleans up before it ends, even
/// though nobody awaits it any more.
pub(super) async fn owned_task<T, F>(
    what: &str,
    work: impl FnOnce(oneshot::Receiver<()>) -> F,
) -> Result<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T>> + Send + 'static,
{
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(work(cancel_rx));
    let result = task.await;
    drop(cancel_tx);
    match result {
        Ok(r) => r,
        // Only the runtime's shutdown (interpreter exit) cancels the task.
        Err(join) if join.is_cancelled() => Err(Error::Cancelled(what.to_owned())),
        Err(join) => Err(Error::Internal(format!("{what} failed: {join}"))),
    }
}

/// `work`, unless the caller stops waiting first (`cancelled`, from
/// [`owned_task`]): then an error naming `what`, and the caller removes what
/// it created.
pub(super) async fn unless_cancelled<T>(
    work: impl std::future::Future<Output = Result<T>>,
    cancelled: &mut oneshot::Receiver<()>,
    what: impl FnOnce() -> String,
) -> Result<T> {
    tokio::select! {
        r = work => r,
        _ = cancelled => Err(Error::Cancelled(what())),
    }
}

/// The worker image, pulled as `pull` says, can serve this process: its
/// Python and wool versions (labels) are checked on the image the Engine has.
pub(super) async fn check_image(engine: &Engine, cfg: &WorkerConfig, pull: Pull) -> Result<()> {
    let image = engine.ensure_image(cfg.image.as_str(), pull).await?;
    let mismatch = |detail: String| Error::ImageMismatch {
        image: cfg.image.0.clone(),
        detail,
    };
    if let Some(python) = image.labels.get("wool.docker.python") {
        if python != &cfg.python {
            return Err(mismatch(format!("it runs Python {python} and this process runs Python {}; cloudpickle needs the same minor version on both sides", cfg.python)));
        }
    }
    if let Some(version) = image.labels.get(labels::VERSION) {
        crate::version::check_wool(version, &cfg.wool_version).map_err(mismatch)?;
    }
    Ok(())
}

/// Write `message` as one JSON line to worker `name`'s control stream (its
/// stdin, or a Swarm worker's lifeline); a stream already closed means the
/// worker is gone.
pub(super) async fn send_line(
    writer: &mut (impl tokio::io::AsyncWrite + Unpin),
    message: &impl serde::Serialize,
    name: &str,
    what: &str,
) -> Result<()> {
    let mut line = serde_json::to_vec(message)
        .map_err(|e| Error::Internal(format!("cannot encode {what}: {e}")))?;
    line.push(b'\n');
    let written = match writer.write_all(&line).await {
        Ok(()) => writer.flush().await,
        Err(e) => Err(e),
    };
    written.map_err(|e| Error::ContainerExited {
        id: name.to_owned(),
        code: None,
        log_tail: format!("could not hand it {what}: {e}"),
    })
}

/// Measures the phases of a start.
pub(super) struct Clock {
    last: std::time::Instant,
    pub(super) laps: Vec<(&'static str, f64)>,
}

impl Clock {
    pub(super) fn new() -> Self {
        Clock {
            last: std::time::Instant::now(),
            laps: Vec::new(),
        }
    }

    pub(super) fn lap(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        self.laps.push((phase, (now - self.last).as_secs_f64()));
        self.last = now;
    }
}

/// TLS material as the entry point reads it from stdin (one JSON line).
#[derive(serde::Serialize)]
pub(super) struct TlsFiles<'a> {
    ca: &'a str,
    cert: &'a str,
    key: &'a str,
}

impl<'a> TlsFiles<'a> {
    pub(super) fn of(tls: &'a super::config::Tls) -> Self {
        TlsFiles {
            ca: &tls.ca,
            cert: &tls.cert,
            key: &tls.key,
        }
    }
}

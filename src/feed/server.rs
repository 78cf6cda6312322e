//! The feed's server, in the owner: the scopes it serves, the containers it
//! admits, its private directory and socket, and one task per connection.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::wire::{authorize, describe, encode, MAX_REQUEST, REQUEST_TIMEOUT};
use crate::backoff::Policy;
use crate::discovery;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::lines::{self, LineError};
use crate::registry::{Registry, FEED_SLOTS_PER_CONTAINER};
use crate::rundir;
use crate::scope::Scope;

/// How long one batch may take to be read by its client before it is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once, in all.
const MAX_CONNECTIONS: usize = 512;
/// Name of the socket inside its directory.
const SOCKET_NAME: &str = "feed.sock";
/// Bytes of batches queued for one connection behind the one being written
/// (a batch larger than this is queued alone). A client further behind is
/// dropped: the owner never buffers for a reader without bound.
pub const QUEUE_BYTES: usize = 1 << 20;
/// Batches queued for one connection, whatever their size.
const QUEUE_LINES: usize = 256;

// ---------------------------------------------------------------------------
// What the owner serves: its scopes and its containers.

/// A served scope: the Engine to discover it on, how many of the owner's own
/// subscriptions of it are open, and the signal ending its connections (they
/// hold receivers; dropping the sender ends them).
struct Served<E> {
    engine: E,
    subscribers: usize,
    ended: watch::Sender<()>,
}

type ServedScopes<E> = HashMap<Scope, Served<E>>;

/// The owner's feed: the scopes it serves, its socket, its directories, and
/// the registry whose containers it admits. A handle: clones share one feed.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    scopes: StdMutex<ServedScopes<Engine>>,
    /// The socket being served, once started.
    socket: tokio::sync::Mutex<Option<PathBuf>>,
}

impl Feed {
    /// A feed admitting the containers recorded in `registry`; nothing is
    /// served until the first `ensure`.
    pub fn new(registry: Registry) -> Self {
        Feed {
            inner: Arc::new(Inner {
                registry,
                scopes: Default::default(),
                socket: Default::default(),
            }),
        }
    }
}

/// Count one more subscription of `scope` (served from now on, on `engine`).
fn add_subscriber<E>(served: &mut ServedScopes<E>, scope: &Scope, engine: E) {
    match served.get_mut(scope) {
        Some(entry) => {
            entry.subscribers += 1;
            // The latest subscription's Engine, as before.
            entry.engine = engine;
        }
        None => {
            served.insert(
                scope.clone(),
                Served {
                    engine,
                    subscribers: 1,
                    ended: watch::channel(()).0,
                },
            );
        }
    }
}

/// Count one subscription of `scope` fewer; at none the scope is no longer
/// served and its connections end. Whether it was the last.
fn remove_subscriber<E>(served: &mut ServedScopes<E>, scope: &Scope) -> bool {
    let Some(entry) = served.get_mut(scope) else {
        return false;
    };
    entry.subscribers = entry.subscribers.saturating_sub(1);
    if entry.subscribers > 0 {
        return false;
    }
    // Dropping the sender wakes every connection serving the scope.
    served.remove(scope);
    true
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Feed {
    /// Serve `scope` to this process's containers while the returned grant
    /// lives: the owner holds one per open subscription of it.
    #[must_use = "the scope is served only while the grant lives"]
    pub fn allow(&self, engine: &Engine, scope: &Scope) -> Grant {
        add_subscriber(&mut lock(&self.inner.scopes), scope, engine.clone());
        Grant {
            feed: self.clone(),
            scope: scope.clone(),
        }
    }
}

/// One open subscription of the owner's, serving its scope to its containers.
pub struct Grant {
    feed: Feed,
    scope: Scope,
}

impl Drop for Grant {
    fn drop(&mut self) {
        if remove_subscriber(&mut lock(&self.feed.inner.scopes), &self.scope) {
            tracing::debug!(
                scope = %describe(&self.scope),
                "worker feed: the owner's last subscription of a scope closed; no longer served"
            );
        }
    }
}

/// The container a cgroup file names, if any: the last 64-hex-digit segment
/// (`/docker/<id>`, `/system.slice/docker-<id>.scope`, cgroup v1 or v2).
pub fn container_in_cgroup(cgroup: &str) -> Option<String> {
    let mut found = None;
    for line in cgroup.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or_default();
        for part in path.split(['/', '-', '.']) {
            if part.len() == 64 && part.bytes().all(|b| b.is_ascii_hexdigit()) {
                found = Some(part.to_ascii_lowercase());
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------
// The server.

/// Start (once per process) the feed and return its socket's host path, to be
/// bind-mounted into containers. Should the socket have vanished since (a temp
/// directory cleaner, say), a new one is started: a container never gets a dead
/// feed. The old listener keeps serving the containers that have it mounted.
impl Feed {
    pub async fn ensure(&self) -> Result<PathBuf> {
        let mut feed = self.inner.socket.lock().await;
        match &*feed {
            Some(path) if is_live(path) => return Ok(path.clone()),
            Some(path) => tracing::warn!(
                path = %path.display(),
                "worker feed: its socket vanished; serving new containers on a new one"
            ),
            None => {}
        }
        let fail = |at: &Path, e: io::Error| {
            Error::Internal(format!(
                "cannot start the worker feed in {}: {e}; set XDG_RUNTIME_DIR or TMPDIR \
             to a directory this user owns, or pass engine_access=\"none\"",
                at.display()
            ))
        };
        let dir = rundir::FEED
            .create()
            .map_err(|e| fail(&std::env::temp_dir(), e))?;
        let socket = dir.join(SOCKET_NAME);
        let listener = UnixListener::bind(&socket).map_err(|e| fail(&dir, e))?;
        // Worker images run as any user; the directory is the gate on the host, and
        // the peer check below is the gate for containers.
        rundir::set_mode(&socket, 0o666).map_err(|e| fail(&dir, e))?;
        tokio::spawn(accept_loop(listener, self.clone(), Policy::ACCEPT));
        *feed = Some(socket.clone());
        Ok(socket)
    }
}

/// Whether the feed's socket is still where it was made, in its private directory.
fn is_live(socket: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let socket_there = std::fs::symlink_metadata(socket).is_ok_and(|m| m.file_type().is_socket());
    socket_there
        && socket
            .parent()
            .is_some_and(|d| rundir::is_private(d).unwrap_or(false))
}

async fn accept_loop(listener: UnixListener, feed: Feed, policy: Policy) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = policy.start();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff.reset();
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    // Full: hang up at once rather than queue without bound.
                    continue;
                };
                let feed = feed.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    serve(stream, &feed).await;
                });
            }
            Err(e) => {
                // EMFILE and the like persist until connections close: back off
                // instead of spinning on accept.
                tracing::warn!(error = %e, "worker feed: accept failed; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Who is on the other end of a connection.
struct Peer {
    /// One of this process's containers; `None` for a process in no container
    /// (it passed the directory's permissions).
    container: Option<String>,
    /// The container's connection slot, held while the connection lives.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Peer {
    fn name(&self) -> &str {
        self.container
            .as_deref()
            .map_or("a host process", |id| short(id))
    }
}

fn identify(stream: &UnixStream, registry: &Registry) -> std::result::Result<Peer, String> {
    let cred = stream
        .peer_cred()
        .map_err(|e| format!("cannot identify the connecting process: {e}"))?;
    let pid = match cred.pid() {
        Some(pid) if pid > 0 => pid,
        // Another pid namespace than ours: it cannot be one of our containers'
        // processes as we see them.
        _ => return Err("cannot identify the connecting process".to_owned()),
    };
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| format!("cannot identify the connecting process: {e}"))?;
    match container_in_cgroup(&cgroup) {
        Some(id) => admit(id, registry),
        None if rundir::own_uid().is_ok_and(|u| cred.uid() == u || cred.uid() == 0) => Ok(Peer {
            container: None,
            _slot: None,
        }),
        None => Err("this user may not use the worker feed".to_owned()),
    }
}

/// Container `id` as a peer, if it is one of this owner's and has a
/// connection slot left.
fn admit(id: String, registry: &Registry) -> std::result::Result<Peer, String> {
    let Some(slots) = registry.feed_slots(&id) else {
        return Err(format!(
            "container {} was not started by this owner",
            short(&id)
        ));
    };
    let permit = slots.try_acquire_owned().map_err(|_| {
        format!(
            "container {} has {FEED_SLOTS_PER_CONTAINER} feed connections open already",
            short(&id)
        )
    })?;
    Ok(Peer {
        container: Some(id),
        _slot: Some(permit),
    })
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Serve a connection to the feed's socket, from whoever it turns out to be.
async fn serve(mut stream: UnixStream, feed: &Feed) {
    match identify(&stream, &feed.inner.registry) {
        Ok(peer) => serve_peer(stream, peer, feed).await,
        Err(reason) => {
            tracing::warn!(%reason, "worker feed: connection refused");
            refuse(&mut stream, &reason).await;
        }
    }
}

/// Serve a connection that container `id` made through its relay (the
/// owner knows who is at the other end: it started the relay there).
pub(super) async fn serve_container<S>(mut stream: S, id: String, feed: &Feed)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match admit(id, &feed.inner.registry) {
        Ok(peer) => serve_peer(stream, peer, feed).await,
        Err(reason) => {
            tracing::warn!(%reason, "worker feed: connection refused");
            refuse(&mut stream, &reason).await;
        }
    }
}

/// Serve an identified peer: its request, then its scope's changes.
async fn serve_peer<S>(mut stream: S, peer: Peer, feed: &Feed)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let registry = &feed.inner.registry;
    let line = match read_request(&mut stream).await {
        Ok(line) => line,
        Err(reason) => {
            tracing::debug!(%reason, peer = peer.name(), "worker feed: request refused");
            refuse(&mut stream, &reason).await;
            return;
        }
    };
    let authorized = {
        let served = lock(&feed.inner.scopes);
        authorize(&line, &served)
            .map(|(scope, entry)| (scope, entry.engine.clone(), entry.ended.subscribe()))
    };
    let (scope, engine, mut ended) = match authorized {
        Ok(found) => found,
        Err(reason) => {
            tracing::debug!(%reason, peer = peer.name(), "worker feed: request refused");
            refuse(&mut stream, &reason).await;
            return;
        }
    };
    let mut subscription = discovery::subscribe(&engine, scope.clone(), registry);
    if stream.write_all(b"{\"ok\":true}\n").await.is_err() {
        return;
    }
    let (mut from_client, to_client) = tokio::io::split(stream);
    // Batches are taken from the subscription as they come and queued here,
    // bounded; a writer task hands them to the client at its pace.
    let (queue, queued) = mpsc::channel(QUEUE_LINES);
    let budget = Arc::new(Semaphore::new(QUEUE_BYTES));
    let mut writer = AbortOnDrop(tokio::spawn(write_lines(to_client, queued)));
    let mut sink = [0u8; 64];
    loop {
        tokio::select! {
            batch = subscription.next_batch(1024) => {
                if batch.is_empty() {
                    return;
                }
                let Some(line) = encode(&batch) else { continue };
                let bytes = u32::try_from(line.len().min(QUEUE_BYTES)).unwrap_or(u32::MAX);
                let queued = budget
                    .clone()
                    .try_acquire_many_owned(bytes)
                    .ok()
                    .and_then(|permit| queue.try_send(Queued { line, _permit: Some(permit) }).ok());
                if queued.is_none() {
                    tracing::warn!(
                        peer = peer.name(),
                        limit = QUEUE_BYTES,
                        "worker feed: client reads too slowly for its scope's changes; dropped"
                    );
                    return;
                }
            }
            written = &mut writer.0 => {
                if let Ok(Err(reason)) = written {
                    tracing::warn!(%reason, peer = peer.name(), "worker feed: client dropped");
                }
                return;
            }
            // Its scope's last subscription in the owner closed: no longer served.
            _ = ended.changed() => {
                drop(subscription);
                let reason = format!(
                    "the owner no longer subscribes to {}, so the feed no longer serves it",
                    describe(&scope)
                );
                tracing::debug!(peer = peer.name(), "worker feed: {reason}");
                let line = serde_json::json!({ "error": reason }).to_string() + "\n";
                // Behind what is queued; a client too slow to take it in a second
                // just sees the hang-up.
                if queue.try_send(Queued { line, _permit: None }).is_ok() {
                    drop(queue);
                    let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer.0).await;
                }
                return;
            }
            // The client sends nothing after its request: any read ends it.
            _ = from_client.read(&mut sink) => return,
        }
    }
}

/// A line for a client, holding its share of the connection's queue budget
/// until the writer takes it.
struct Queued {
    line: String,
    _permit: Option<OwnedSemaphorePermit>,
}

/// Aborts the writer (closing the connection) when the connection ends.
pub(super) struct AbortOnDrop<T>(pub(super) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Write queued lines to the client, each within [`WRITE_TIMEOUT`]; ends when
/// the queue closes or a write fails.
async fn write_lines<S: AsyncWrite>(
    mut to_client: WriteHalf<S>,
    mut queued: mpsc::Receiver<Queued>,
) -> std::result::Result<(), String> {
    while let Some(Queued { line, _permit }) = queued.recv().await {
        // Taken off the queue: its bytes no longer count against the budget.
        drop(_permit);
        match tokio::time::timeout(WRITE_TIMEOUT, to_client.write_all(line.as_bytes())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("writing failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "a batch was not read within {} s",
                    WRITE_TIMEOUT.as_secs()
                ))
            }
        }
    }
    let _ = to_client.shutdown().await;
    Ok(())
}

/// Read the request line: at most [`MAX_REQUEST`] bytes within [`REQUEST_TIMEOUT`],
/// ending in `\n` with nothing after it.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> std::result::Result<Vec<u8>, String> {
    let mut lines = lines::reader(stream, MAX_REQUEST);
    let read = async {
        match lines.next().await {
            Some(Ok(line)) if lines.read_buffer().is_empty() => Ok(line.into_bytes()),
            Some(Ok(_)) => Err("bytes follow the request; send one request line".to_owned()),
            Some(Err(LineError::TooLong(_))) => {
                Err(format!("the request is longer than {MAX_REQUEST} bytes"))
            }
            Some(Err(LineError::Io(e))) => Err(format!("reading the request failed: {e}")),
            Some(Err(LineError::CutShort)) | None => {
                Err("the connection closed before a request".to_owned())
            }
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Ok(result) => result,
        Err(_) => Err(format!("no request within {} s", REQUEST_TIMEOUT.as_secs())),
    }
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, reason: &str) {
    let line = serde_json::json!({ "error": reason }).to_string() + "\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(line.as_bytes())).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn container_ids_are_found_in_cgroup_v1_and_v2_paths() {
        let id = "3f".repeat(32);
        for text in [
            format!("0::/system.slice/docker-{id}.scope\n"),
            format!("12:memory:/docker/{id}\n11:cpu:/docker/{id}\n"),
            format!("0::/docker/{id}\n"),
        ] {
            assert_eq!(
                container_in_cgroup(&text).as_deref(),
                Some(id.as_str()),
                "{text}"
            );
        }
        assert_eq!(
            container_in_cgroup("0::/user.slice/user-0.slice/session-1.scope\n"),
            None
        );
        assert_eq!(container_in_cgroup("0::/init.scope\n"), None);
    }

    fn scope(value: &str) -> Scope {
        Scope {
            selector: BTreeMap::from([("wool.worker".to_owned(), value.to_owned())]),
            network: None,
            owner: None,
        }
    }

    #[test]
    fn a_scope_is_served_until_its_last_subscriber_closes() {
        let mut served: ServedScopes<()> = HashMap::new();
        let (a, b) = (scope("a"), scope("b"));
        add_subscriber(&mut served, &a, ());
        add_subscriber(&mut served, &a, ());
        add_subscriber(&mut served, &b, ());
        let line = br#"{"selector":{"wool.worker":"a"},"network":null}"#;
        let connection = served[&a].ended.subscribe();

        assert!(!remove_subscriber(&mut served, &a));
        assert!(authorize(line, &served).is_ok());
        assert!(
            connection.has_changed().is_ok(),
            "ended with a subscriber left"
        );

        assert!(remove_subscriber(&mut served, &a));
        assert!(authorize(line, &served).is_err());
        assert!(
            connection.has_changed().is_err(),
            "its connections must end"
        );
        assert!(served.contains_key(&b));
        assert!(!remove_subscriber(&mut served, &a), "no count below zero");

        add_subscriber(&mut served, &a, ());
        assert!(
            authorize(line, &served).is_ok(),
            "a new subscription re-allows it"
        );
    }
}

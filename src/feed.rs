//! The owner's worker feed: how routines inside its containers discover workers.
//!
//! A routine that awaits another routine dispatches from inside its worker
//! container, through the `DockerDiscovery` subscriber shipped with it. Any view
//! of the Engine's API, even a filtered one, hands untrusted code an HTTP parser
//! to attack and the host's containers, environments and logs to read. So the
//! Engine is not reachable from containers at all: the owning process serves its
//! own discovery state instead. A container sends one line naming a scope the
//! owner itself subscribes to and receives that scope's worker records and their
//! changes, one JSON object per line. Nothing a client sends reaches the Engine,
//! and every container shares the owner's one Engine stream per scope.
//!
//! Who may connect: the socket lives in a directory only the owner may enter
//! (0700; `$XDG_RUNTIME_DIR` where set), and is bind-mounted, as a file, into the
//! owner's containers only. Each connection is identified by its peer's pid →
//! cgroup → container id, and served only when that container is one this
//! process started, or when the peer runs in no container at all (then it passed
//! the directory's permissions: it is the owner's user or root).
//!
//! Protocol, version 1. Client: `{"selector": {"k": "v", ...}, "network": "n" | null,
//! "owner": "token"}\n` (`owner` optional: the scope's owner filter),
//! at most [`MAX_REQUEST`] bytes within [`REQUEST_TIMEOUT`], nothing after it. Owner:
//! `{"ok": true}`, then lines of `{"changes": [{"kind": "added" | "updated" |
//! "dropped", "record": {...}, "at": ns}, ...]}`; or one `{"error": "..."}` line
//! before it hangs up.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::discovery::{self, Change, Scope};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::labels::WorkerRecord;

/// Where the feed socket is mounted inside a container.
pub const CONTAINER_PATH: &str = "/run/wool-docker/feed.sock";
/// The variable telling a container's subscribers where the feed is.
pub const ENV: &str = "WOOL_DOCKER_FEED";
/// Largest request line; a scope is a few hundred bytes.
pub const MAX_REQUEST: usize = 4096;
/// How long a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one batch may take to be read by its client before it is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once, in all.
const MAX_CONNECTIONS: usize = 512;
/// Connections served at once for one container (a pool opens one per scope).
const MAX_PER_CONTAINER: usize = 16;
/// Largest line a client accepts: a batch of 1024 records with room to spare.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// Name of the socket inside its directory.
const SOCKET_NAME: &str = "feed.sock";
/// Directory name prefix (then the owner's pid).
const DIR_PREFIX: &str = "wool-docker-feed-";

// ---------------------------------------------------------------------------
// What the owner serves: its scopes and its containers.

fn scopes() -> &'static StdMutex<HashMap<Scope, Engine>> {
    static SCOPES: OnceLock<StdMutex<HashMap<Scope, Engine>>> = OnceLock::new();
    SCOPES.get_or_init(Default::default)
}

fn containers() -> &'static StdMutex<HashMap<String, Arc<Semaphore>>> {
    static CONTAINERS: OnceLock<StdMutex<HashMap<String, Arc<Semaphore>>>> = OnceLock::new();
    CONTAINERS.get_or_init(Default::default)
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serve `scope` to this process's containers: the owner subscribes to it.
pub fn allow(engine: &Engine, scope: &Scope) {
    lock(scopes()).insert(scope.clone(), engine.clone());
}

/// Let container `id` (created by this process) connect.
pub fn admit(id: &str) {
    lock(containers())
        .entry(id.to_owned())
        .or_insert_with(|| Arc::new(Semaphore::new(MAX_PER_CONTAINER)));
}

/// Container `id` is gone; its connections are no longer accepted.
pub fn revoke(id: &str) {
    lock(containers()).remove(id);
}

// ---------------------------------------------------------------------------
// The request: parsed, then authorized. Pure, so it can be tested exhaustively.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    selector: BTreeMap<String, String>,
    network: Option<String>,
    /// The scope's owner filter; absent or null: none.
    #[serde(default)]
    owner: Option<String>,
}

/// Parse one request line (`line` ends at its `\n`, which is not included).
pub fn parse_request(line: &[u8]) -> std::result::Result<Scope, String> {
    let text = std::str::from_utf8(line).map_err(|_| "the request is not UTF-8".to_owned())?;
    let request: Request =
        serde_json::from_str(text).map_err(|e| format!("not a wool-docker feed request ({e})"))?;
    let bad = |s: &str| s.is_empty() || s.chars().any(char::is_control);
    if request.selector.is_empty() || request.selector.keys().any(|k| bad(k)) {
        return Err("the selector must name at least one label".to_owned());
    }
    if request
        .selector
        .values()
        .any(|v| v.chars().any(char::is_control))
        || request.network.as_deref().is_some_and(bad)
        || request.owner.as_deref().is_some_and(bad)
    {
        return Err(
            "the scope holds control characters, an empty network or an empty owner".to_owned(),
        );
    }
    Ok(Scope {
        selector: request.selector,
        network: request.network,
        owner: request.owner,
    })
}

/// The scope a request asks for, if the owner serves it.
pub fn authorize<'a, E>(
    line: &[u8],
    served: &'a HashMap<Scope, E>,
) -> std::result::Result<(Scope, &'a E), String> {
    let scope = parse_request(line)?;
    match served.get(&scope) {
        Some(engine) => Ok((scope, engine)),
        None => Err(format!(
            "this owner serves only the scopes it subscribes to, and not {}; \
             nested routines see the pool's own DockerDiscovery",
            describe(&scope)
        )),
    }
}

fn describe(scope: &Scope) -> String {
    let labels: Vec<String> = scope
        .selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut text = labels.join(",");
    if let Some(n) = &scope.network {
        text.push_str(&format!(" on network {n}"));
    }
    if let Some(owner) = &scope.owner {
        text.push_str(&format!(" of owner {owner}"));
    }
    text
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
/// bind-mounted into containers.
pub async fn ensure() -> Result<PathBuf> {
    static FEED: OnceLock<tokio::sync::Mutex<Option<PathBuf>>> = OnceLock::new();
    let mut feed = FEED.get_or_init(Default::default).lock().await;
    if let Some(path) = &*feed {
        return Ok(path.clone());
    }
    remove_stale_dirs();
    let dir = base_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
    let fail = |e: io::Error| {
        Error::InvalidArgument(format!(
            "cannot start the worker feed in {}: {e}; set XDG_RUNTIME_DIR or TMPDIR \
             to a directory this user owns, or pass engine_access=\"none\"",
            dir.display()
        ))
    };
    private_dir(&dir).map_err(fail)?;
    let socket = dir.join(SOCKET_NAME);
    let listener = UnixListener::bind(&socket).map_err(fail)?;
    // Worker images run as any user; the directory is the gate on the host, and
    // the peer check below is the gate for containers.
    set_mode(&socket, 0o666).map_err(fail)?;
    tokio::spawn(accept_loop(listener));
    *feed = Some(socket.clone());
    Ok(socket)
}

/// `$XDG_RUNTIME_DIR` when it is a directory of ours that only we may enter, else
/// the temp directory.
fn base_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if is_private(&xdg).unwrap_or(false) {
            return xdg;
        }
    }
    std::env::temp_dir()
}

fn own_uid() -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata("/proc/self")?.uid())
}

fn is_private(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    Ok(meta.is_dir() && meta.uid() == own_uid()? && meta.mode() & 0o077 == 0)
}

/// Create `dir` as a fresh 0700 directory, refusing anything already there that
/// is not ours alone (a directory planted in a shared temp directory).
fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Ours from an earlier process with this pid, or someone else's.
            if !is_private(dir)? {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "it exists and is not a directory only this user may enter",
                ));
            }
            let _ = std::fs::remove_file(dir.join(SOCKET_NAME));
        }
        Err(e) => return Err(e),
    }
    // The umask may only have narrowed the mode; make it exact.
    set_mode(dir, 0o700)?;
    if !is_private(dir)? {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "it is not a directory only this user may enter",
        ));
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Remove this process's feed directory (at exit: nothing serves it then).
pub fn remove_own_dirs() {
    remove_dirs(|pid| pid == std::process::id());
}

fn remove_stale_dirs() {
    remove_dirs(|pid| !Path::new(&format!("/proc/{pid}")).exists());
}

fn remove_dirs(owned_by: impl Fn(u32) -> bool) {
    let Ok(entries) = std::fs::read_dir(base_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        // Only directories of ours; remove_dir_all does not follow symlinks.
        if owned_by(pid) && is_private(&entry.path()).unwrap_or(false) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

async fn accept_loop(listener: UnixListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(10);
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    // Full: hang up at once rather than queue without bound.
                    continue;
                };
                tokio::spawn(async move {
                    let _slot = slot;
                    serve(stream).await;
                });
            }
            Err(e) => {
                // EMFILE and the like persist until connections close: back off
                // instead of spinning on accept.
                tracing::warn!(error = %e, "worker feed: accept failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
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
            .map_or("a host process", |id| &id[..12])
    }
}

fn identify(stream: &UnixStream) -> std::result::Result<Peer, String> {
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
        Some(id) => {
            let slots = lock(containers()).get(&id).cloned();
            let Some(slots) = slots else {
                return Err(format!(
                    "container {} was not started by this owner",
                    &id[..12]
                ));
            };
            let permit = slots.try_acquire_owned().map_err(|_| {
                format!(
                    "container {} has {MAX_PER_CONTAINER} feed connections open already",
                    &id[..12]
                )
            })?;
            Ok(Peer {
                container: Some(id),
                _slot: Some(permit),
            })
        }
        None if own_uid().is_ok_and(|u| cred.uid() == u || cred.uid() == 0) => Ok(Peer {
            container: None,
            _slot: None,
        }),
        None => Err("this user may not use the worker feed".to_owned()),
    }
}

async fn serve(mut stream: UnixStream) {
    let peer = match identify(&stream) {
        Ok(peer) => peer,
        Err(reason) => {
            tracing::warn!(%reason, "worker feed: connection refused");
            refuse(&mut stream, &reason).await;
            return;
        }
    };
    let line = match read_request(&mut stream).await {
        Ok(line) => line,
        Err(reason) => {
            tracing::debug!(%reason, peer = peer.name(), "worker feed: request refused");
            refuse(&mut stream, &reason).await;
            return;
        }
    };
    let authorized = {
        let served = lock(scopes());
        authorize(&line, &served).map(|(scope, engine)| (scope, engine.clone()))
    };
    let (scope, engine) = match authorized {
        Ok(found) => found,
        Err(reason) => {
            tracing::debug!(%reason, peer = peer.name(), "worker feed: request refused");
            refuse(&mut stream, &reason).await;
            return;
        }
    };
    let mut subscription = discovery::subscribe(&engine, scope);
    if stream.write_all(b"{\"ok\":true}\n").await.is_err() {
        return;
    }
    let (mut from_client, mut to_client) = stream.split();
    let mut sink = [0u8; 64];
    loop {
        tokio::select! {
            batch = subscription.next_batch(1024) => {
                if batch.is_empty() {
                    return;
                }
                let Some(line) = encode(&batch) else { continue };
                let write = to_client.write_all(line.as_bytes());
                if !matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(()))) {
                    return;
                }
            }
            // The client sends nothing after its request: any read ends it.
            _ = from_client.read(&mut sink) => return,
        }
    }
}

/// Read the request line: at most [`MAX_REQUEST`] bytes within [`REQUEST_TIMEOUT`],
/// ending in `\n` with nothing after it.
async fn read_request(stream: &mut UnixStream) -> std::result::Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(256);
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("reading the request failed: {e}"))?;
            if n == 0 {
                return Err("the connection closed before a request".to_owned());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                if end + 1 != buf.len() {
                    return Err("bytes follow the request; send one request line".to_owned());
                }
                buf.truncate(end);
                return Ok(());
            }
            if buf.len() > MAX_REQUEST {
                return Err(format!("the request is longer than {MAX_REQUEST} bytes"));
            }
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Ok(Ok(())) => Ok(buf),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err(format!("no request within {} s", REQUEST_TIMEOUT.as_secs())),
    }
}

async fn refuse(stream: &mut UnixStream, reason: &str) {
    let line = serde_json::json!({ "error": reason }).to_string() + "\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(line.as_bytes())).await;
    let _ = stream.shutdown().await;
}

#[derive(Serialize, Deserialize)]
struct Batch {
    changes: Vec<Wire>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    kind: Kind,
    record: WorkerRecord,
    at: i64,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Added,
    Updated,
    Dropped,
}

/// One batch as a line; warnings stay with the owner (they name containers
/// outside the scope's records).
fn encode(batch: &[Change]) -> Option<String> {
    let changes: Vec<Wire> = batch
        .iter()
        .filter_map(|change| {
            let (kind, record, at) = match change {
                Change::Added(r, at) => (Kind::Added, r, *at),
                Change::Updated(r, at) => (Kind::Updated, r, *at),
                Change::Dropped(r, at) => (Kind::Dropped, r, *at),
                Change::Warning(_) => return None,
            };
            Some(Wire {
                kind,
                record: record.clone(),
                at,
            })
        })
        .collect();
    if changes.is_empty() {
        return None;
    }
    serde_json::to_string(&Batch { changes })
        .ok()
        .map(|s| s + "\n")
}

// ---------------------------------------------------------------------------
// The client, inside a container.

/// The feed this process should use, if it runs in an owner's container.
pub fn from_env() -> Option<String> {
    std::env::var(ENV).ok().filter(|p| !p.is_empty())
}

/// One subscription to the owner's feed.
pub struct Client {
    path: String,
    lines: BufReader<UnixStream>,
}

/// Subscribe to `scope` on the feed at `path`; the owner answers at once, so a
/// refused scope fails here.
pub async fn subscribe(path: &str, scope: &Scope) -> Result<Client> {
    let failed = |reason: String| Error::Feed {
        path: path.to_owned(),
        reason,
    };
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|e| failed(format!("cannot connect: {e}")))?;
    let mut request = serde_json::json!({ "selector": scope.selector, "network": scope.network });
    if let Some(owner) = &scope.owner {
        request["owner"] = serde_json::Value::from(owner.as_str());
    }
    stream
        .write_all(format!("{request}\n").as_bytes())
        .await
        .map_err(|e| failed(format!("cannot send the request: {e}")))?;
    let mut client = Client {
        path: path.to_owned(),
        lines: BufReader::new(stream),
    };
    // The owner accepts or refuses at once: a refused scope fails here, not at
    // the first change.
    match client.read_line().await? {
        Some(v) if v.get("ok").and_then(|ok| ok.as_bool()) == Some(true) => Ok(client),
        Some(v) => Err(client.failed(
            v.get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("unexpected answer")
                .to_owned(),
        )),
        None => Err(client.failed("the owner hung up".to_owned())),
    }
}

impl Client {
    /// The next batch; empty once the owner hung up (it is shutting down).
    pub async fn next_batch(&mut self) -> Result<Vec<Change>> {
        loop {
            let Some(value) = self.read_line().await? else {
                return Ok(Vec::new());
            };
            if let Some(reason) = value.get("error").and_then(|e| e.as_str()) {
                return Err(self.failed(reason.to_owned()));
            }
            let batch: Batch = serde_json::from_value(value)
                .map_err(|e| self.failed(format!("unreadable batch: {e}")))?;
            let changes: Vec<Change> = batch
                .changes
                .into_iter()
                .map(|w| match w.kind {
                    Kind::Added => Change::Added(w.record, w.at),
                    Kind::Updated => Change::Updated(w.record, w.at),
                    Kind::Dropped => Change::Dropped(w.record, w.at),
                })
                .collect();
            if !changes.is_empty() {
                return Ok(changes);
            }
        }
    }

    /// One line as JSON; `None` at the end of the stream.
    async fn read_line(&mut self) -> Result<Option<serde_json::Value>> {
        let mut line = Vec::new();
        let n = (&mut self.lines)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| self.failed(format!("reading failed: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        if line.last() != Some(&b'\n') {
            return Err(self.failed("a line was cut short or too long".to_owned()));
        }
        serde_json::from_slice(&line)
            .map(Some)
            .map_err(|e| self.failed(format!("unreadable line: {e}")))
    }

    fn failed(&self, reason: String) -> Error {
        Error::Feed {
            path: self.path.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> HashMap<Scope, ()> {
        HashMap::from([(
            Scope {
                selector: BTreeMap::from([("wool.worker".to_owned(), "true".to_owned())]),
                network: Some("wool".to_owned()),
                owner: None,
            },
            (),
        )])
    }

    #[test]
    fn a_served_scope_is_authorized() {
        let line = br#"{"selector":{"wool.worker":"true"},"network":"wool"}"#;
        assert!(authorize(line, &served()).is_ok());
    }

    #[test]
    fn the_owner_is_part_of_the_scope() {
        let mine = Scope {
            owner: Some("1000/m.b.1/42/7".to_owned()),
            ..served().into_keys().next().unwrap()
        };
        let served = HashMap::from([(mine.clone(), ())]);
        let line =
            br#"{"selector":{"wool.worker":"true"},"network":"wool","owner":"1000/m.b.1/42/7"}"#;
        assert_eq!(authorize(line, &served).map(|(s, _)| s), Ok(mine));
        for line in [
            // Another owner's, no owner's, and a malformed owner.
            &br#"{"selector":{"wool.worker":"true"},"network":"wool","owner":"1000/m.b.1/43/7"}"#[..],
            br#"{"selector":{"wool.worker":"true"},"network":"wool"}"#,
            br#"{"selector":{"wool.worker":"true"},"network":"wool","owner":null}"#,
            br#"{"selector":{"wool.worker":"true"},"network":"wool","owner":""}"#,
            br#"{"selector":{"wool.worker":"true"},"network":"wool","owner":"a\nb"}"#,
            br#"{"selector":{"wool.worker":"true"},"network":"wool","owner":7}"#,
        ] {
            assert!(authorize(line, &served).is_err(), "{line:?}");
        }
    }

    #[test]
    fn other_scopes_and_http_are_refused() {
        for line in [
            &br#"{"selector":{"wool.worker":"true"},"network":null}"#[..],
            br#"{"selector":{"wool.worker":""},"network":"wool"}"#,
            br#"{"selector":{"wool.worker":"true"},"network":"wool","x":1}"#,
            br#"{"selector":{},"network":"wool"}"#,
            b"GET /_ping HTTP/1.1",
            b"GET /v1.41/containers/json HTTP/1.1\r",
            b"",
            b"\xff\xfe",
        ] {
            assert!(authorize(line, &served()).is_err(), "{line:?}");
        }
    }

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

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn scope() -> impl Strategy<Value = Scope> {
            (
                prop::collection::btree_map("[a-z.]{1,12}", "[a-z0-9]{0,6}", 1..4),
                prop::option::of("[a-z0-9-]{1,10}"),
                prop::option::of("[0-9]{1,4}/[a-z0-9.]{1,12}/[0-9]{1,5}/[0-9]{1,6}"),
            )
                .prop_map(|(selector, network, owner)| Scope {
                    selector,
                    network,
                    owner,
                })
        }

        fn request(scope: &Scope) -> Vec<u8> {
            serde_json::json!({
                "selector": scope.selector,
                "network": scope.network,
                "owner": scope.owner,
            })
            .to_string()
            .into_bytes()
        }

        /// HTTP-shaped input: request lines, headers and bodies glued with any
        /// line ending, as a smuggler would send them.
        fn http() -> impl Strategy<Value = Vec<u8>> {
            let part = prop_oneof![
                Just(b"GET /_ping HTTP/1.1".to_vec()),
                Just(b"POST /v1.41/containers/create HTTP/1.1".to_vec()),
                Just(b"Host: x".to_vec()),
                Just(b"Content-Length: 5".to_vec()),
                Just(b"Transfer-Encoding: chunked".to_vec()),
                Just(b" folded".to_vec()),
                Just(b"{\"Image\":\"x\"}".to_vec()),
                "[ -~]{0,20}".prop_map(String::into_bytes),
            ];
            let eol = prop_oneof![
                Just(b"\r\n".to_vec()),
                Just(b"\n".to_vec()),
                Just(b"\r".to_vec()),
                Just(Vec::new())
            ];
            prop::collection::vec((part, eol), 1..8).prop_map(|parts| {
                parts
                    .into_iter()
                    .flat_map(|(p, e)| p.into_iter().chain(e))
                    .collect()
            })
        }

        proptest! {
            /// Whatever the bytes, the only thing that gets through is a scope
            /// the owner serves.
            #[test]
            fn nothing_but_a_served_scope_gets_through(
                served in prop::collection::vec(scope(), 0..4),
                line in prop::collection::vec(any::<u8>(), 0..256),
            ) {
                let served: HashMap<Scope, ()> = served.into_iter().map(|s| (s, ())).collect();
                if let Ok((scope, _)) = authorize(&line, &served) {
                    prop_assert!(served.contains_key(&scope));
                }
            }

            /// HTTP, however it is glued together, is never a feed request.
            #[test]
            fn http_is_never_a_request(
                served in prop::collection::vec(scope(), 0..4),
                line in http(),
            ) {
                let served: HashMap<Scope, ()> = served.into_iter().map(|s| (s, ())).collect();
                prop_assert!(authorize(&line, &served).is_err());
            }

            /// A served scope's own request always gets through, and one byte
            /// changed anywhere yields the same scope or a refusal.
            #[test]
            fn a_changed_request_is_the_same_scope_or_refused(
                scope in scope(),
                at in any::<prop::sample::Index>(),
                byte in any::<u8>(),
            ) {
                let served = HashMap::from([(scope.clone(), ())]);
                let line = request(&scope);
                prop_assert_eq!(authorize(&line, &served).map(|(s, _)| s), Ok(scope.clone()));
                let mut changed = line.clone();
                let i = at.index(changed.len());
                changed[i] = byte;
                if let Ok((got, _)) = authorize(&changed, &served) {
                    prop_assert_eq!(got, scope);
                }
            }
        }
    }
}

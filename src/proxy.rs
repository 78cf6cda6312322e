//! A read-only view of the Docker Engine for worker containers.
//!
//! A routine that awaits another routine dispatches from inside its worker
//! container, through the discovery subscriber it was shipped with, so workers
//! need to list containers and follow events. Mounting the Engine socket would
//! hand every routine root on the host; instead the owning process serves a unix
//! socket that forwards only the few read-only requests discovery makes and
//! answers 403 to everything else. One request per connection (`Connection:
//! close` is forced), so a permitted first request cannot smuggle others.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

use crate::error::{Error, Result};

/// Largest request head accepted; discovery's are a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;
/// File name of the proxy socket inside its directory.
pub const SOCKET_NAME: &str = "engine.sock";

/// Start (once per process and upstream) the proxy for a local Engine socket and
/// return the directory holding its socket, to be bind-mounted into containers.
pub async fn ensure(upstream: &str) -> Result<PathBuf> {
    static PROXIES: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let mut proxies = PROXIES.get_or_init(Default::default).lock().await;
    if let Some((_, dir)) = proxies.iter().find(|(u, _)| u == upstream) {
        return Ok(dir.clone());
    }
    let path = upstream.strip_prefix("unix://").ok_or_else(|| {
        Error::InvalidArgument(format!(
            "the read-only Engine proxy needs a local unix-socket Engine, not {upstream}; \
             pass engine_access=\"socket\" or \"none\""
        ))
    })?;
    remove_stale_dirs();
    let dir = std::env::temp_dir().join(format!(
        "wool-docker-{}-{}",
        std::process::id(),
        proxies.len()
    ));
    let io = |e: std::io::Error| {
        Error::InvalidArgument(format!(
            "cannot start the Engine proxy in {}: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    set_mode(&dir, 0o755).map_err(io)?;
    let socket = dir.join(SOCKET_NAME);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(io)?;
    // Worker images may run as any user.
    set_mode(&socket, 0o666).map_err(io)?;
    let upstream_path = PathBuf::from(path);
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((client, _)) => {
                    let upstream = upstream_path.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve(client, &upstream).await {
                            tracing::debug!(error = %e, "engine proxy connection ended");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "engine proxy accept failed"),
            }
        }
    });
    proxies.push((upstream.to_owned(), dir.clone()));
    Ok(dir)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Remove this process's proxy directories (at exit: nothing serves them then).
pub fn remove_own_dirs() {
    remove_dirs(|pid| pid == std::process::id());
}

/// Remove proxy directories left by processes that are gone.
fn remove_stale_dirs() {
    remove_dirs(|pid| !Path::new(&format!("/proc/{pid}")).exists());
}

fn remove_dirs(owned_by: impl Fn(u32) -> bool) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("wool-docker-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if owned_by(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

async fn serve(mut client: UnixStream, upstream: &Path) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > MAX_HEAD {
            return refuse(&mut client, 431, "request head too large").await;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if !allowed(method, target) {
        return refuse(
            &mut client,
            403,
            &format!("wool-docker's Engine proxy is read-only; {method} {target} is not allowed"),
        )
        .await;
    }
    let mut rewritten = format!("{request_line}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if !matches!(
            name.as_str(),
            "connection" | "upgrade" | "keep-alive" | "content-length" | "transfer-encoding"
        ) {
            rewritten.push_str(line);
            rewritten.push_str("\r\n");
        }
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    let mut engine = UnixStream::connect(upstream).await?;
    engine.write_all(rewritten.as_bytes()).await?;
    // GET requests carry no body; whatever followed the head is dropped.
    let (mut from_engine, mut to_engine) = engine.split();
    let (mut from_client, mut to_client) = client.split();
    tokio::select! {
        r = tokio::io::copy(&mut from_engine, &mut to_client) => { r?; }
        // The client hanging up ends a streaming request (events, logs).
        _ = drain(&mut from_client) => {}
    }
    let _ = to_client.shutdown().await;
    let _ = to_engine.shutdown().await;
    Ok(())
}

/// Read and discard until EOF.
async fn drain(r: &mut (impl AsyncReadExt + Unpin)) {
    let mut sink = [0u8; 1024];
    while matches!(r.read(&mut sink).await, Ok(n) if n > 0) {}
}

async fn refuse(client: &mut UnixStream, status: u16, message: &str) -> std::io::Result<()> {
    let body = serde_json::json!({ "message": message }).to_string();
    let reason = if status == 403 {
        "Forbidden"
    } else {
        "Request Header Fields Too Large"
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await?;
    // Let the client finish sending its body before the socket closes, so it
    // reads our answer instead of a broken pipe.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain(client)).await;
    Ok(())
}

/// The requests discovery makes: ping, version, container list/inspect/logs,
/// events and network inspect — reads only.
pub fn allowed(method: &str, target: &str) -> bool {
    if method != "GET" && method != "HEAD" {
        return false;
    }
    let path = target.split('?').next().unwrap_or_default();
    // Strip an API version prefix such as /v1.41.
    let path = match path.strip_prefix("/v") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => match rest.find('/') {
            Some(i) => &rest[i..],
            None => return false,
        },
        _ => path,
    };
    if path.contains("..") || path.contains("//") {
        return false;
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["_ping"]
            | ["version"]
            | ["events"]
            | ["containers", "json"]
            | ["containers", _, "json"]
            | ["containers", _, "logs"]
            | ["networks", _]
    )
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn reads_that_discovery_needs_are_allowed() {
        for target in [
            "/_ping",
            "/v1.41/version",
            "/v1.41/containers/json?filters=%7B%7D",
            "/v1.41/containers/abc/json",
            "/v1.41/containers/abc/logs?follow=true",
            "/v1.41/events?since=1.0",
            "/v1.41/networks/wool",
        ] {
            assert!(allowed("GET", target), "{target}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        assert!(!allowed("POST", "/v1.41/containers/create"));
        assert!(!allowed("POST", "/v1.41/containers/abc/kill"));
        assert!(!allowed("DELETE", "/v1.41/containers/abc"));
        assert!(!allowed("GET", "/v1.41/containers/abc/export"));
        assert!(!allowed("GET", "/v1.41/containers/abc/archive?path=/etc"));
        assert!(!allowed("GET", "/v1.41/images/json"));
        assert!(!allowed("GET", "/v1.41/containers/../secrets"));
        assert!(!allowed("GET", "/v1.41"));
        assert!(!allowed("GET", "/v1.41/exec/abc/json"));
    }
}

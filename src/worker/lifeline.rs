//! The lifeline: what ties a Swarm worker, on any node, to its owner's life.
//!
//! A service's task has no stdin its owner could hold. Instead the owner
//! listens on TCP, and each task it starts connects to it over the overlay and
//! presents a one-time token; that connection then serves as the task's stdin
//! (the entry point makes it so), with the same protocol: the TLS line, stop
//! commands, and end of file when the owner dies. The task writes its ready
//! line on it too, so its owner learns that it serves without a log reader.
//!
//! A connection that does not present a token the owner is waiting for, in
//! time and within a few bytes, is closed: the listener is reachable by
//! whatever shares the overlay.

use std::collections::HashMap;
use std::io::Cursor;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, Chain};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::codec::FramedRead;

use crate::backoff::Policy;
use crate::error::{Error, Result};
use crate::lines::{self, LineCodec, MAX_LINE};

/// The variable that tells the entry point where to connect (`ip:port`).
pub const ADDRESS_ENV: &str = "WOOL_DOCKER_LIFELINE";
/// The variable that carries the one-time token.
pub const TOKEN_ENV: &str = "WOOL_DOCKER_LIFELINE_TOKEN";
/// The variable that carries the feed relay's one-time token: its connection
/// is the relay's stdio (see `feed::relay`).
pub const FEED_TOKEN_ENV: &str = "WOOL_DOCKER_FEED_TOKEN";
/// Longest token line read (a token is 32 hex digits).
const MAX_TOKEN_LINE: usize = 128;
/// How long a new connection may take to present its token (a task sends
/// it as soon as it has connected).
const TOKEN_WAIT: Duration = Duration::from_secs(5);
/// Connections from one address that have not presented a token yet, at
/// once; past it, new ones from that address are closed at once. A task
/// makes one from its own overlay address (many share one only behind a
/// NAT, with `lifeline_host`), so an address holding this many is not tasks
/// starting.
const HANDSHAKES_PER_PEER: usize = 64;
/// Such connections from all addresses together.
const HANDSHAKES: usize = 1024;
/// TCP keepalive of a paired connection: idle time, probe interval and
/// probes, so a task whose node vanished is noticed within about 25 s.
const KEEPALIVE: (Duration, Duration, u32) = (Duration::from_secs(10), Duration::from_secs(5), 3);

/// Tokens this process waits for, each with where its connection goes.
type Expecting = Arc<Mutex<HashMap<String, oneshot::Sender<Paired>>>>;

/// A task's connection once it presented its token.
pub struct Paired {
    /// What the task sends after its token (its ready line first), as lines
    /// of at most `MAX_LINE` bytes.
    pub lines: TaskLines,
    /// The task's stdin.
    pub input: OwnedWriteHalf,
}

/// The task's lines: what the token's reader had read past the token (the
/// task may send its ready line in the same write), then the connection.
pub type TaskLines = FramedRead<Chain<Cursor<BytesMut>, OwnedReadHalf>, LineCodec>;

/// The owner's lifeline listener; clones share it.
#[derive(Clone)]
pub struct Lifeline {
    port: u16,
    expected: Expecting,
}

/// A connection the owner waits for; dropping it forgets the token.
pub struct Expected {
    token: String,
    connection: oneshot::Receiver<Paired>,
    expected: Expecting,
}

impl Lifeline {
    /// Listen on every address of this machine (or container), IPv6 and
    /// IPv4 where the kernel has IPv6, on `port` (0: any free one), and pair
    /// connections with the tokens expected.
    pub async fn serve(port: u16) -> Result<Lifeline> {
        let listener = match TcpListener::bind(("::", port)).await {
            Ok(listener) => listener,
            // No IPv6 in this network namespace.
            Err(_) => TcpListener::bind(("0.0.0.0", port))
                .await
                .map_err(|e| Error::Internal(format!("cannot listen for worker lifelines: {e}")))?,
        };
        let port = listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("the lifeline listener has no address: {e}")))?
            .port();
        let lifeline = Lifeline {
            port,
            expected: Arc::default(),
        };
        tokio::spawn(accept(listener, lifeline.expected.clone(), Policy::ACCEPT));
        Ok(lifeline)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Expect one connection, which will present the returned token.
    pub fn expect(&self) -> Result<Expected> {
        let token = random_token()?;
        let (tx, rx) = oneshot::channel();
        lock(&self.expected).insert(token.clone(), tx);
        Ok(Expected {
            token,
            connection: rx,
            expected: self.expected.clone(),
        })
    }
}

/// 128 random bits as hex: a token nobody else on the overlay can guess.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness for a lifeline token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Expected {
    /// The token the connection must present.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The connection, once it has presented the token.
    pub async fn connection(&mut self) -> Option<Paired> {
        (&mut self.connection).await.ok()
    }
}

impl Drop for Expected {
    fn drop(&mut self) {
        lock(&self.expected).remove(&self.token);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not stop every pairing.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Accept every connection at once, and give each a bounded handshake of
/// its own: no peer, however many connections it holds open, keeps a task's
/// connection from being read.
async fn accept(listener: TcpListener, expected: Expecting, policy: Policy) {
    let pending: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let mut backoff = policy.start();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(e) => {
                // Out of descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "cannot accept a worker lifeline");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        let ip = peer.ip().to_canonical();
        {
            let mut pending = lock(&pending);
            let total: usize = pending.values().sum();
            let from_peer = pending.entry(ip).or_default();
            if *from_peer >= HANDSHAKES_PER_PEER || total >= HANDSHAKES {
                tracing::debug!(%peer, "too many lifeline handshakes from this address; closed");
                continue;
            }
            *from_peer += 1;
        }
        let (expected, pending) = (expected.clone(), pending.clone());
        tokio::spawn(async move {
            let token = tokio::time::timeout(TOKEN_WAIT, read_token(stream)).await;
            {
                let mut pending = lock(&pending);
                if let Some(count) = pending.get_mut(&ip) {
                    *count -= 1;
                    if *count == 0 {
                        pending.remove(&ip);
                    }
                }
            }
            let Ok(Some((token, paired))) = token else {
                tracing::debug!(%peer, "a lifeline connection sent no token in time; closed");
                return;
            };
            let waiting = lock(&expected).remove(&token);
            match waiting {
                Some(tx) => {
                    keepalive(paired.input.as_ref());
                    let _ = tx.send(paired);
                }
                // Debug, not a warning: any overlay peer can cause it, as often as it likes.
                None => {
                    tracing::debug!(%peer, "a lifeline connection presented no token this process waits for; closed")
                }
            }
        });
    }
}

/// The first line of `stream`, if it is a short one, and the connection,
/// with what was read past that line kept for its lines.
async fn read_token(stream: TcpStream) -> Option<(String, Paired)> {
    let mut token_line = lines::reader(stream, MAX_TOKEN_LINE);
    let token = token_line.next().await?.ok()?;
    let early = token_line.read_buffer_mut().split();
    let (read, input) = token_line.into_inner().into_split();
    let lines = lines::reader(Cursor::new(early).chain(read), MAX_LINE);
    Some((token.trim().to_owned(), Paired { lines, input }))
}

/// Probe a paired connection when idle, so that a task whose node vanished
/// (no FIN, no RST) ends it, and with it the worker's exit watcher.
fn keepalive(stream: &TcpStream) {
    let (idle, interval, retries) = KEEPALIVE;
    let settings = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(interval)
        .with_retries(retries);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&settings) {
        tracing::debug!(error = %e, "cannot set keepalive on a lifeline");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn idle_connections_do_not_keep_a_task_from_pairing() {
        let lifeline = Lifeline::serve(0).await.unwrap_or_else(|e| panic!("{e}"));
        let address = ("127.0.0.1", lifeline.port());
        // One peer holds far more idle connections than it may.
        let mut idle = Vec::new();
        for _ in 0..200 {
            idle.push(
                TcpStream::connect(address)
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        let mut expected = lifeline.expect().unwrap_or_else(|e| panic!("{e}"));
        // The task, from an address of its own.
        let socket = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| panic!("{e}"));
        socket
            .bind("127.0.0.2:0".parse().unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut task = socket
            .connect(
                format!("127.0.0.1:{}", lifeline.port())
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The token and the ready line in one write: nothing may be lost.
        let hello = format!("{}\nwool-docker ready {{}}\n", expected.token());
        task.write_all(hello.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let paired = tokio::time::timeout(Duration::from_secs(5), expected.connection())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no connection"));
        let mut lines = paired.lines;
        let rest = lines.next().await.and_then(|line| line.ok());
        assert_eq!(rest.as_deref(), Some("wool-docker ready {}"));
        drop(idle);
    }

    #[tokio::test]
    async fn a_connection_with_the_token_is_handed_over_and_others_are_closed() {
        let lifeline = Lifeline::serve(0).await.unwrap_or_else(|e| panic!("{e}"));
        let mut expected = lifeline.expect().unwrap_or_else(|e| panic!("{e}"));
        let address = ("127.0.0.1", lifeline.port());
        // A stranger with a wrong token is closed.
        let mut stranger = TcpStream::connect(address)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        stranger
            .write_all(b"0123\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stranger.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.unwrap_or(1), 0);
        // A flood without a newline is cut off too.
        let mut flood = TcpStream::connect(address)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = flood.write_all(&[b'a'; 4096]).await;
        let read = tokio::time::timeout(Duration::from_secs(5), flood.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the flooding connection stayed open");
        // The worker's own connection arrives, once.
        let mut worker = TcpStream::connect(address)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let line = format!("{}\n", expected.token());
        worker
            .write_all(line.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut paired = tokio::time::timeout(Duration::from_secs(5), expected.connection())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no connection"));
        paired
            .input
            .write_all(b"stop 0\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut got = [0u8; 7];
        worker
            .read_exact(&mut got)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&got, b"stop 0\n");
        // The token was used up: presenting it again is refused.
        let mut again = TcpStream::connect(address)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        again
            .write_all(line.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let read = tokio::time::timeout(Duration::from_secs(5), again.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.unwrap_or(1), 0);
    }
}

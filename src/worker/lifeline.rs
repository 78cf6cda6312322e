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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};

use crate::error::{Error, Result};

/// The variable that tells the entry point where to connect (`ip:port`).
pub const ADDRESS_ENV: &str = "WOOL_DOCKER_LIFELINE";
/// The variable that carries the one-time token.
pub const TOKEN_ENV: &str = "WOOL_DOCKER_LIFELINE_TOKEN";
/// Longest token line read (a token is 32 hex digits).
const MAX_TOKEN_LINE: u64 = 128;
/// How long a new connection may take to present its token.
const TOKEN_WAIT: Duration = Duration::from_secs(10);
/// Connections that have not presented a token yet, at once.
const HANDSHAKES: usize = 64;

/// The owner's lifeline listener; clones share it.
#[derive(Clone)]
pub struct Lifeline {
    port: u16,
    expected: Arc<Mutex<HashMap<String, oneshot::Sender<TcpStream>>>>,
    /// When this process last looked for dead owners' services (see
    /// [`Lifeline::prune_due`]).
    pruned: Arc<Mutex<Option<std::time::Instant>>>,
}

/// A connection the owner waits for; dropping it forgets the token.
pub struct Expected {
    token: String,
    connection: oneshot::Receiver<TcpStream>,
    expected: Arc<Mutex<HashMap<String, oneshot::Sender<TcpStream>>>>,
}

impl Lifeline {
    /// Listen on every address of this machine (or container), on `port`
    /// (0: any free one), and pair connections with the tokens expected.
    pub async fn serve(port: u16) -> Result<Lifeline> {
        let listener = TcpListener::bind(("0.0.0.0", port))
            .await
            .map_err(|e| Error::Internal(format!("cannot listen for worker lifelines: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("the lifeline listener has no address: {e}")))?
            .port();
        let lifeline = Lifeline {
            port,
            expected: Arc::default(),
            pruned: Arc::default(),
        };
        tokio::spawn(accept(listener, lifeline.expected.clone()));
        Ok(lifeline)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this process's Swarm workers should look for dead owners'
    /// services now: at its first start, then at most once per `every`, so
    /// that a pool's many starts do not each list every service.
    pub fn prune_due(&self, every: Duration) -> bool {
        let mut last = lock(&self.pruned);
        let now = std::time::Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < every) {
            return false;
        }
        *last = Some(now);
        true
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
    pub async fn connection(&mut self) -> Option<TcpStream> {
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

async fn accept(
    listener: TcpListener,
    expected: Arc<Mutex<HashMap<String, oneshot::Sender<TcpStream>>>>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "cannot accept a worker lifeline");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Past the bound, new connections wait their turn (and may time out).
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let expected = expected.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(TOKEN_WAIT, read_token(stream)).await {
                Ok(Some((token, stream))) => {
                    let waiting = lock(&expected).remove(&token);
                    match waiting {
                        Some(tx) => {
                            let _ = tx.send(stream);
                        }
                        None => {
                            tracing::warn!(%peer, "a lifeline connection presented no token this process waits for; closed");
                        }
                    }
                }
                _ => tracing::debug!(%peer, "a lifeline connection sent no token in time; closed"),
            }
        });
    }
}

/// The first line of `stream`, if it is a short line; the stream is handed
/// back with nothing read past that line.
async fn read_token(stream: TcpStream) -> Option<(String, TcpStream)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    (&mut reader)
        .take(MAX_TOKEN_LINE)
        .read_line(&mut line)
        .await
        .ok()?;
    if !line.ends_with('\n') {
        return None;
    }
    // The task writes nothing before its owner's first line (TLS, if any)
    // has arrived, so nothing is left buffered.
    if !reader.buffer().is_empty() {
        return None;
    }
    Some((line.trim().to_owned(), reader.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn leftovers_are_looked_for_at_first_then_at_most_once_a_period() {
        let lifeline = Lifeline::serve(0).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(lifeline.prune_due(Duration::from_secs(60)));
        assert!(!lifeline.clone().prune_due(Duration::from_secs(60)));
        assert!(lifeline.prune_due(Duration::ZERO));
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

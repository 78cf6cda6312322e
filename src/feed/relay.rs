//! The feed carried through a relay, for containers the owner shares no files
//! with (a remote or `ssh://` Engine, an owner in a container, Docker Desktop,
//! rootless Docker, a Swarm task on any node): `wool_docker/_relay.py` runs in
//! the container over a stream the owner holds (an exec's stdio, or a Swarm
//! task's second lifeline connection), listens on the feed's path there, and
//! each connection to it arrives here as a numbered channel.
//! Each channel is served as a connection from that container, with the
//! feed's own limits; nothing here needs the container's cgroup or pid.
//!
//! Relay lines (`relay -> owner`): `ready`, `open N`, `data N <line>`,
//! `close N`; owner lines: `data N <line>`, `close N`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::io::StreamReader;

use super::server::{serve_container, AbortOnDrop, Feed};
use super::wire::{MAX_BATCH, MAX_REQUEST};
use crate::engine::{Engine, Output, OutputStream};
use crate::error::{Error, Result};
use crate::lines::{self, LineError};
use crate::registry::FEED_SLOTS_PER_CONTAINER;

/// The relay's program: sent with the exec, so the image needs only `python3`.
const SOURCE: &str = include_str!("../../python/wool_docker/_relay.py");
/// Where the relay listens in a container: a tmpfs of its own (the root
/// filesystem is read-only).
pub const RELAY_DIR: &str = "/run/wool-docker/feed";
/// The socket inside [`RELAY_DIR`].
pub const RELAY_PATH: &str = "/run/wool-docker/feed/feed.sock";
/// Bytes a channel's connection buffers between the server and the relay.
const CHANNEL_BUFFER: usize = 64 * 1024;
/// Lines queued for the relay's stdin, from all channels.
const OUTBOX_LINES: usize = 16;
/// Bytes of the relay's stderr kept to explain a relay that failed.
const STDERR_TAIL: usize = 2048;

/// A relay running in a container, until the container or its owner ends.
pub struct Relay {
    ready: oneshot::Receiver<std::result::Result<(), String>>,
    _carrier: AbortOnDrop<()>,
}

impl Feed {
    /// Start the feed's relay in running container `id` (one of the owner's:
    /// see `Registry::admit`).
    pub async fn relay(&self, engine: &Engine, id: &str) -> Result<Relay> {
        let failed = |reason: String| Error::RelayFailed {
            id: id.get(..12).unwrap_or(id).to_owned(),
            reason,
        };
        let (output, input) = engine
            .exec(id, &["python3", "-I", "-S", "-c", SOURCE, RELAY_PATH])
            .await
            .map_err(|e| failed(e.to_string()))?;
        let stderr = Arc::new(StdMutex::new(Vec::new()));
        let lines = lines_of(output, stderr.clone());
        Ok(self.relay_over(id, lines, input, Some(stderr)))
    }

    /// Carry the relay at the other end of `lines` and `input` in container
    /// `id` (one of the owner's), e.g. a Swarm task's feed connection.
    pub fn relay_over<L, W>(
        &self,
        id: &str,
        lines: L,
        input: W,
        stderr: Option<Arc<StdMutex<Vec<u8>>>>,
    ) -> Relay
    where
        L: Stream<Item = std::result::Result<String, LineError>> + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (ready, ready_rx) = oneshot::channel();
        let carrier = tokio::spawn(carry(
            self.clone(),
            id.to_owned(),
            lines,
            input,
            stderr,
            ready,
        ));
        Relay {
            ready: ready_rx,
            _carrier: AbortOnDrop(carrier),
        }
    }
}

/// An exec's stdout as relay lines, keeping the tail of its stderr in `stderr`.
fn lines_of(
    output: OutputStream,
    stderr: Arc<StdMutex<Vec<u8>>>,
) -> impl Stream<Item = std::result::Result<String, LineError>> + Unpin + Send + 'static {
    let stdout = output.filter_map(move |chunk| {
        let kept = stderr.clone();
        async move {
            match chunk {
                Ok(Output::Stdout(bytes)) => Some(Ok(Bytes::from(bytes))),
                Ok(Output::Stderr(bytes)) => {
                    keep_tail(&mut kept.lock().unwrap_or_else(|p| p.into_inner()), &bytes);
                    None
                }
                Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
            }
        }
    });
    lines::reader(StreamReader::new(Box::pin(stdout)), MAX_REQUEST + 32)
}

impl Relay {
    /// Wait until the relay listens, for at most `timeout`.
    pub async fn ready(&mut self, id: &str, timeout: Duration) -> Result<()> {
        let reason = match tokio::time::timeout(timeout, &mut self.ready).await {
            Ok(Ok(Ok(()))) => return Ok(()),
            Ok(Ok(Err(reason))) => reason,
            Ok(Err(_)) => "it ended".to_owned(),
            Err(_) => format!("it did not listen within {} s", timeout.as_secs_f64()),
        };
        Err(Error::RelayFailed {
            id: id.to_owned(),
            reason,
        })
    }
}

/// One line from the relay.
#[derive(Debug, PartialEq)]
enum FromRelay<'a> {
    Ready,
    Open(u32),
    Data(u32, &'a str),
    Close(u32),
}

fn parse(line: &str) -> Option<FromRelay<'_>> {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    let (tag, payload) = rest.split_once(' ').unwrap_or((rest, ""));
    let n = || tag.parse::<u32>().ok();
    match verb {
        "ready" if rest.is_empty() => Some(FromRelay::Ready),
        "open" => n().map(FromRelay::Open),
        "data" => n().map(|n| FromRelay::Data(n, payload)),
        "close" => n().map(FromRelay::Close),
        _ => None,
    }
}

/// A channel's end on the owner's side.
struct Channel {
    to_server: WriteHalf<DuplexStream>,
    /// The request was delivered: a client sends nothing after it.
    requested: bool,
}

impl Channel {
    /// The client hung up: the server reads end of file. (Dropping this half
    /// alone would not tell it: the other half, the forwarder's, keeps the
    /// stream open.)
    async fn close(mut self) {
        let _ = self.to_server.shutdown().await;
    }
}

/// Carry the relay's channels until its output ends (the container ended,
/// or the relay broke the protocol).
async fn carry<L, W>(
    feed: Feed,
    id: String,
    mut lines: L,
    input: W,
    stderr: Option<Arc<StdMutex<Vec<u8>>>>,
    ready: oneshot::Sender<std::result::Result<(), String>>,
) where
    L: Stream<Item = std::result::Result<String, LineError>> + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (outbox, queued) = mpsc::channel::<String>(OUTBOX_LINES);
    let mut writer = AbortOnDrop(tokio::spawn(write_to_relay(input, queued)));
    let mut channels: HashMap<u32, Channel> = HashMap::new();
    // Channels whose server ended (the relay is told, and does not answer).
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<u32>();
    let mut ready = Some(ready);
    let ended = loop {
        let line = tokio::select! {
            line = lines.next() => line,
            Some(n) = ended_rx.recv() => {
                channels.remove(&n);
                continue;
            }
            _ = &mut writer.0 => break "its input closed".to_owned(),
        };
        let line = match line {
            Some(Ok(line)) => line,
            Some(Err(e)) => break format!("its output failed: {e}"),
            None => break "it ended".to_owned(),
        };
        match parse(&line) {
            Some(FromRelay::Ready) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(()));
                }
            }
            Some(FromRelay::Open(n)) => {
                let ended = ended_tx.clone();
                open(&feed, &id, n, &mut channels, &outbox, ended).await
            }
            Some(FromRelay::Data(n, payload)) => deliver(n, payload, &mut channels, &outbox).await,
            Some(FromRelay::Close(n)) => {
                if let Some(channel) = channels.remove(&n) {
                    channel.close().await;
                }
            }
            None => break "it broke the relay protocol".to_owned(),
        }
    };
    let tail = stderr
        .map(|s| String::from_utf8_lossy(&s.lock().unwrap_or_else(|p| p.into_inner())).into_owned())
        .unwrap_or_default();
    let reason = match tail.trim() {
        "" => ended,
        tail => format!("{ended}: {tail}"),
    };
    match ready {
        Some(ready) => {
            let _ = ready.send(Err(reason));
        }
        None => {
            tracing::debug!(container = %id.get(..12).unwrap_or(&id), %reason, "worker feed: relay ended")
        }
    }
}

/// A client connected in the container: serve it as that container's
/// connection, and carry what the server writes back to the relay.
async fn open(
    feed: &Feed,
    id: &str,
    n: u32,
    channels: &mut HashMap<u32, Channel>,
    outbox: &mpsc::Sender<String>,
    ended: mpsc::UnboundedSender<u32>,
) {
    if channels.len() >= FEED_SLOTS_PER_CONTAINER || channels.contains_key(&n) {
        let _ = outbox.send(format!("close {n}")).await;
        return;
    }
    let (ours, theirs) = tokio::io::duplex(CHANNEL_BUFFER);
    let (from_server, to_server) = tokio::io::split(ours);
    channels.insert(
        n,
        Channel {
            to_server,
            requested: false,
        },
    );
    let (feed, id) = (feed.clone(), id.to_owned());
    tokio::spawn(async move { serve_container(theirs, id, &feed).await });
    let outbox = outbox.clone();
    tokio::spawn(async move {
        let mut lines = lines::reader(from_server, MAX_BATCH);
        while let Some(Ok(line)) = lines.next().await {
            if outbox.send(format!("data {n} {line}")).await.is_err() {
                return;
            }
        }
        let _ = outbox.send(format!("close {n}")).await;
        let _ = ended.send(n);
    });
}

/// The client's request line, to the server; a client sends one and nothing
/// after it, so a second line ends its channel.
async fn deliver(
    n: u32,
    payload: &str,
    channels: &mut HashMap<u32, Channel>,
    outbox: &mpsc::Sender<String>,
) {
    let Some(channel) = channels.get_mut(&n) else {
        return;
    };
    // One request fits the channel's buffer: this write never waits on the
    // server.
    let line = format!("{payload}\n");
    if channel.requested || channel.to_server.write_all(line.as_bytes()).await.is_err() {
        if let Some(channel) = channels.remove(&n) {
            channel.close().await;
        }
        let _ = outbox.send(format!("close {n}")).await;
        return;
    }
    channel.requested = true;
}

/// Write queued lines to the relay's stdin until the queue or the stdin closes.
async fn write_to_relay<W: AsyncWrite + Unpin>(mut input: W, mut queued: mpsc::Receiver<String>) {
    while let Some(mut line) = queued.recv().await {
        line.push('\n');
        if input.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Keep the last [`STDERR_TAIL`] bytes of `tail` + `more` in `tail`.
fn keep_tail(tail: &mut Vec<u8>, more: &[u8]) {
    tail.extend_from_slice(more);
    let excess = tail.len().saturating_sub(STDERR_TAIL);
    tail.drain(..excess);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_lines_are_parsed_strictly() {
        assert_eq!(parse("ready"), Some(FromRelay::Ready));
        assert_eq!(parse("open 3"), Some(FromRelay::Open(3)));
        assert_eq!(
            parse(r#"data 3 {"selector": {}}"#),
            Some(FromRelay::Data(3, r#"{"selector": {}}"#))
        );
        assert_eq!(parse("data 3 "), Some(FromRelay::Data(3, "")));
        assert_eq!(parse("close 4294967295"), Some(FromRelay::Close(u32::MAX)));
        for bad in [
            "",
            "ready now",
            "open",
            "open x",
            "open -1",
            "close 4294967296",
            "hello 1",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    /// Carry a fake relay's `stdout` lines (then `stderr`); what `ready` says.
    async fn carried(stdout: &str, stderr: &str) -> std::result::Result<(), String> {
        let chunks = vec![
            Ok(Output::Stdout(stdout.as_bytes().to_vec())),
            Ok(Output::Stderr(stderr.as_bytes().to_vec())),
        ];
        let output: OutputStream = Box::pin(futures_util::stream::iter(chunks));
        let feed = Feed::new(crate::registry::Registry::default());
        let (ready, ready_rx) = oneshot::channel();
        let stderr = Arc::new(StdMutex::new(Vec::new()));
        let lines = lines_of(output, stderr.clone());
        let id = "c".repeat(64);
        carry(feed, id, lines, tokio::io::sink(), Some(stderr), ready).await;
        ready_rx.await.expect("the carrier always answers")
    }

    #[tokio::test]
    async fn a_relay_is_ready_when_it_says_so_and_failed_otherwise() {
        assert_eq!(carried("ready\n", "").await, Ok(()));
        let failed = carried("", "python3: not found\n").await.unwrap_err();
        assert!(failed.contains("it ended: python3: not found"), "{failed}");
        let broken = carried("hello\nready\n", "").await.unwrap_err();
        assert!(broken.contains("broke the relay protocol"), "{broken}");
        let long = format!("open {}\n", "1".repeat(MAX_REQUEST + 64));
        let too_long = carried(&long, "").await.unwrap_err();
        assert!(too_long.contains("longer than"), "{too_long}");
    }

    /// A fake relay: lines it writes reach the carrier, lines the carrier
    /// writes are read back; the carrier runs until the relay's end drops.
    struct FakeRelay {
        to_owner: tokio::io::DuplexStream,
        from_owner: tokio_util::codec::FramedRead<tokio::io::DuplexStream, lines::LineCodec>,
    }

    impl FakeRelay {
        fn start(registry: crate::registry::Registry, id: &str) -> FakeRelay {
            let (to_owner, owner_reads) = tokio::io::duplex(1 << 16);
            let (owner_writes, from_owner) = tokio::io::duplex(1 << 16);
            let lines = lines::reader(owner_reads, MAX_REQUEST + 32);
            let (ready, _) = oneshot::channel();
            let feed = Feed::new(registry);
            tokio::spawn(carry(feed, id.to_owned(), lines, owner_writes, None, ready));
            FakeRelay {
                to_owner,
                from_owner: lines::reader(from_owner, MAX_BATCH),
            }
        }

        async fn send(&mut self, line: &str) {
            self.to_owner
                .write_all(format!("{line}\n").as_bytes())
                .await
                .expect("the carrier reads");
        }

        async fn read(&mut self) -> String {
            let line = tokio::time::timeout(Duration::from_secs(30), self.from_owner.next());
            match line.await {
                Ok(Some(Ok(line))) => line,
                other => panic!("no line from the carrier: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn every_channel_is_answered_and_ended_however_many_come_and_go() {
        let id = "a".repeat(64);
        let registry = crate::registry::Registry::default();
        registry.admit(&id);
        let mut relay = FakeRelay::start(registry, &id);
        relay.send("ready").await;
        // More channels than a container may hold at once: each must be
        // forgotten once its server ended, or the later ones are refused
        // without a word.
        for n in 0..(3 * FEED_SLOTS_PER_CONTAINER) {
            relay.send(&format!("open {n}")).await;
            relay.send(&format!("data {n} not json")).await;
            let answer = relay.read().await;
            assert!(
                answer.starts_with(&format!("data {n} {{\"error\"")),
                "{answer}"
            );
            assert_eq!(relay.read().await, format!("close {n}"));
        }
    }

    #[tokio::test]
    async fn a_client_that_hangs_up_ends_its_connection_at_once() {
        let id = "b".repeat(64);
        let registry = crate::registry::Registry::default();
        registry.admit(&id);
        let mut relay = FakeRelay::start(registry, &id);
        relay.send("ready").await;
        relay.send("open 0").await;
        relay.send("close 0").await;
        // The server hears the hang-up (not its request timeout).
        let answer = relay.read().await;
        assert!(answer.contains("closed before a request"), "{answer}");
        assert_eq!(relay.read().await, "close 0");
    }

    #[test]
    fn the_stderr_tail_is_bounded() {
        let mut tail = Vec::new();
        keep_tail(&mut tail, &[b'a'; 3000]);
        keep_tail(&mut tail, b"end");
        assert_eq!(tail.len(), STDERR_TAIL);
        assert!(tail.ends_with(b"aend"));
    }
}

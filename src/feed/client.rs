//! The feed's client, in a container: one subscription per scope.

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_util::codec::FramedRead;

use super::wire::{Batch, Kind, ENV, MAX_BATCH};
use crate::error::{Error, Result};
use crate::lines::{self, LineCodec};
use crate::scope::{Change, Scope};

// ---------------------------------------------------------------------------
// The client, inside a container.

/// The feed this process should use, if it runs in an owner's container.
pub fn from_env() -> Option<String> {
    std::env::var(ENV).ok().filter(|p| !p.is_empty())
}

/// One subscription to the owner's feed.
pub struct Client {
    path: String,
    lines: FramedRead<UnixStream, LineCodec>,
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
        lines: lines::reader(stream, MAX_BATCH),
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
        let line = match self.lines.next().await {
            None => return Ok(None),
            Some(Ok(line)) => line,
            Some(Err(e)) => return Err(self.failed(e.to_string())),
        };
        serde_json::from_str(&line)
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

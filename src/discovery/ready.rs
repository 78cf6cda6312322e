//! Reading ready lines from containers' output: the current run's, for a
//! listing (bounded) and in the background after it.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

use super::source::Source;
use crate::engine::{rfc3339_nanos, ContainerInfo, Output, OutputStream};
use crate::lines::{LineCodec, MAX_LINE};
use crate::ready::Ready;

/// How long before its run's `StartedAt` a line of the run may be stamped.
/// The Engine stamps each line as it copies it, but records `StartedAt` (and
/// sends the start event) only once the process already runs: a worker that
/// prints at once, or any under load, prints "before" it started.
pub(super) const START_SLACK_NS: i64 = 1_000_000_000;

/// How long a listing waits for the logs of the containers it found, so their
/// readiness arrives in the listing's batch; those still unknown are followed.
const LIST_READY_BOUND: Duration = Duration::from_secs(2);
/// Containers whose logs a listing reads at once.
const LIST_READY_CONCURRENCY: usize = 32;

/// The earliest stamp of a line of `c`'s current run, as an inspect describes
/// it (Unix nanoseconds; 0: unknown): `START_SLACK_NS` before its start, but
/// after its previous run ended, so that run's ready line proves nothing.
pub(super) fn output_from(c: &ContainerInfo) -> i64 {
    let Some(started) = c.started_at_ns else {
        return 0;
    };
    let previous_end = c.finished_at_ns.filter(|end| *end <= started);
    (started - START_SLACK_NS)
        .max(previous_end.unwrap_or(0))
        .max(0)
}

/// Read the logs of containers that already run, all at once and for at most
/// `LIST_READY_BOUND`: id → (when its run started, the earliest stamp of its
/// output, what its ready line said).
/// Containers missing from the answer (the bound passed) are unknown.
pub(super) async fn read_ready_all(
    engine: &impl Source,
    ids: Vec<String>,
) -> HashMap<String, (i64, i64, Option<Ready>)> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return out;
    }
    let mut reads = futures_util::stream::iter(ids)
        .map(|id| read_ready(engine.clone(), id))
        .buffer_unordered(LIST_READY_CONCURRENCY);
    let deadline = tokio::time::sleep(LIST_READY_BOUND);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            read = reads.next() => match read {
                Some((id, started_ns, from_ns, ready)) => {
                    out.insert(id, (started_ns, from_ns, ready));
                }
                None => break,
            },
            _ = &mut deadline => break,
        }
    }
    out
}

/// Read these containers' current runs (`read_run`), a few at a time, and send
/// each as it is read; containers gone meanwhile are left to their events.
pub(super) async fn reread(
    engine: impl Source,
    ids: Vec<String>,
    tx: mpsc::UnboundedSender<(ContainerInfo, Option<Ready>)>,
) {
    let mut reads = futures_util::stream::iter(ids)
        .map(|id| read_run(engine.clone(), id))
        .buffer_unordered(LIST_READY_CONCURRENCY);
    while let Some(read) = reads.next().await {
        if let Some(read) = read {
            if tx.send(read).is_err() {
                return; // the tracker is gone
            }
        }
    }
}

/// One container as an inspect describes it, and its current run's ready
/// line if its output already holds one.
async fn read_run(engine: impl Source, id: String) -> Option<(ContainerInfo, Option<Ready>)> {
    let c = engine.inspect(&id).await.ok().flatten()?;
    let ready = ready_since(&engine, &id, output_from(&c)).await;
    Some((c, ready))
}

/// The ready line a container's output holds, stamped at or after `from_ns`.
async fn ready_since(engine: &impl Source, id: &str, from_ns: i64) -> Option<Ready> {
    let logs = engine.logs(id, false, from_ns / 1_000_000_000);
    scan_ready(id, logs, from_ns).await
}

/// One container's current run: when it started, the earliest stamp of its
/// output, and its ready line if its output already holds one (a previous
/// run's line does not count).
async fn read_ready(engine: impl Source, id: String) -> (String, i64, i64, Option<Ready>) {
    let (started_ns, from_ns) = match engine.inspect(&id).await {
        Ok(Some(c)) => (c.started_at_ns.unwrap_or_default(), output_from(&c)),
        _ => (0, 0),
    };
    let ready = ready_since(&engine, &id, from_ns).await;
    (id, started_ns, from_ns, ready)
}

/// Read timestamped output until a ready line stamped at or after `from_ns`.
pub(super) async fn scan_ready(id: &str, mut logs: OutputStream, from_ns: i64) -> Option<Ready> {
    // The codec over the chunks as they come (not `lines::reader`): a line
    // too long or not UTF-8 cannot be a ready line, so it is skipped and the
    // lines after it read on.
    let mut codec = LineCodec::new(MAX_LINE);
    let mut buf = BytesMut::new();
    while let Some(Ok(chunk)) = logs.next().await {
        let Output::Stdout(bytes) = chunk else {
            continue;
        };
        buf.extend_from_slice(&bytes);
        loop {
            let line = match codec.decode(&mut buf) {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(_) => continue,
            };
            let (stamp, text) = line.trim_end().split_once(' ').unwrap_or(("", &line));
            let at_ns = rfc3339_nanos(stamp).unwrap_or_default();
            if at_ns < from_ns {
                continue;
            }
            if let Some(ready) = Ready::parse(id, at_ns, text) {
                return Some(ready);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ready::READY_PREFIX;

    #[test]
    fn a_ready_line_reports_version_and_pid() {
        let line = format!("{}{{\"version\": \"0.15.7\", \"pid\": 12}}", READY_PREFIX);
        let ready = Ready::parse("c", 5, &line).unwrap();
        assert_eq!(ready.version.as_deref(), Some("0.15.7"));
        assert_eq!(ready.pid, Some(12));
        assert!(Ready::parse("c", 5, "something else").is_none());
    }
}

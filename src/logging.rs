//! Rust diagnostics and container output, handed to Python `logging` in batches.
//!
//! `tracing` events of this crate and every line a worker container prints are
//! queued without the GIL. One task on the runtime hands whatever is queued to
//! `wool_docker._logging.emit` in one call, so a chatty container costs one GIL
//! acquisition per burst rather than per line, and never stalls discovery or a
//! stop. The exit hook hands over what is left on the main thread.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use pyo3::prelude::*;
use tokio::sync::Notify;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};

/// Records kept while Python is busy; past this the oldest are dropped (and the
/// number dropped is logged), so a flood cannot grow memory without bound.
const MAX_QUEUED: usize = 10_000;
/// Bytes of queued records kept while Python is busy, by the same rule: many
/// long lines must not grow memory either.
const MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;

/// Python's numeric logging levels.
const DEBUG: u8 = 10;
const INFO: u8 = 20;
const WARNING: u8 = 30;
const ERROR: u8 = 40;

/// One record for Python: logger name, level, message, and for container output
/// the container's name and whether the line came from stderr.
struct Record {
    logger: String,
    level: u8,
    message: String,
    container: Option<(String, bool)>,
}

impl Record {
    /// The bytes it holds, as counted against `MAX_QUEUED_BYTES`.
    fn size(&self) -> usize {
        self.logger.len()
            + self.message.len()
            + self.container.as_ref().map_or(0, |(name, _)| name.len())
    }
}

/// A record as `wool_docker._logging.emit` takes it.
type PyRecord = (String, u8, String, Option<(String, bool)>);

struct Queue {
    records: VecDeque<Record>,
    /// Sum of the queued records' sizes.
    bytes: usize,
    dropped: usize,
}

impl Queue {
    /// Queue `record`, dropping the oldest past either bound.
    fn push(&mut self, record: Record) {
        self.bytes += record.size();
        self.records.push_back(record);
        while self.records.len() > MAX_QUEUED || self.bytes > MAX_QUEUED_BYTES {
            match self.records.pop_front() {
                Some(old) => {
                    self.bytes -= old.size();
                    self.dropped += 1;
                }
                None => break,
            }
        }
    }

    /// Everything queued and the number dropped, leaving the queue empty.
    fn take(&mut self) -> (VecDeque<Record>, usize) {
        self.bytes = 0;
        (
            std::mem::take(&mut self.records),
            std::mem::take(&mut self.dropped),
        )
    }
}

// Statics: a tracing subscriber is global (`Bridge::install`), so what it
// feeds is too. Records waiting for Python, bounded.
static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    records: VecDeque::new(),
    bytes: 0,
    dropped: 0,
});
/// Wakes the flusher when a record arrives.
static WAKE: Notify = Notify::const_new();
/// The flusher task, started with the first record.
static FLUSHER: OnceLock<()> = OnceLock::new();

fn push(record: Record) {
    QUEUE.lock().unwrap_or_else(|p| p.into_inner()).push(record);
    FLUSHER.get_or_init(|| {
        crate::runtime::handle().spawn(async {
            loop {
                WAKE.notified().await;
                if !crate::runtime::open() {
                    return;
                }
                let _ = crate::runtime::attach(|py| {
                    flush(py);
                    Ok(())
                });
            }
        });
    });
    WAKE.notify_one();
}

/// One line of a worker container's output, for the `wool_docker.worker` logger.
pub fn container_line(container: &str, stderr: bool, line: &str) {
    push(Record {
        logger: "wool_docker.worker".to_owned(),
        level: INFO,
        message: format!("[{container}] {line}"),
        container: Some((container.to_owned(), stderr)),
    });
}

/// Hand every queued record to Python logging (with the GIL held).
pub fn flush(py: Python<'_>) {
    let (records, dropped) = QUEUE.lock().unwrap_or_else(|p| p.into_inner()).take();
    if records.is_empty() && dropped == 0 {
        return;
    }
    let result = (|| -> PyResult<()> {
        let emit = py.import("wool_docker._logging")?.getattr("emit")?;
        let mut batch: Vec<PyRecord> = records
            .into_iter()
            .map(|r| (r.logger, r.level, r.message, r.container))
            .collect();
        if dropped > 0 {
            batch.push((
                "wool_docker".to_owned(),
                WARNING,
                format!("{dropped} log records were dropped: Python did not keep up"),
                None,
            ));
        }
        emit.call1((batch,))?;
        Ok(())
    })();
    if let Err(e) = result {
        e.write_unraisable(py, None);
    }
}

/// The `tracing` subscriber installed when the module loads: this crate's events
/// at DEBUG and above become records; Python's logger levels filter them there.
pub struct Bridge;

impl Bridge {
    /// Install as the process-wide subscriber (once; later calls do nothing).
    pub fn install() {
        let _ = tracing::subscriber::set_global_default(Bridge);
    }
}

/// Our crate's module paths start with the library name.
const CRATE: &str = "_native";

impl Subscriber for Bridge {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::DEBUG && metadata.target().starts_with(CRATE)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::DEBUG)
    }

    // No spans are used; they all share one id that is never looked up.
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut text = Fields::default();
        event.record(&mut text);
        // Named after the component (the crate's top-level module), not the
        // file: splitting a module must not rename the logger users configure.
        let module = metadata
            .target()
            .strip_prefix(CRATE)
            .and_then(|rest| rest.trim_start_matches(':').split("::").next())
            .unwrap_or_default();
        let logger = if module.is_empty() {
            "wool_docker".to_owned()
        } else {
            format!("wool_docker.{module}")
        };
        push(Record {
            logger,
            level: python_level(*metadata.level()),
            message: text.finish(),
            container: None,
        });
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

fn python_level(level: Level) -> u8 {
    match level {
        Level::ERROR => ERROR,
        Level::WARN => WARNING,
        Level::INFO => INFO,
        Level::DEBUG | Level::TRACE => DEBUG,
    }
}

/// `message key=value key=value`, as a line.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Fields {
    fn finish(self) -> String {
        if self.rest.is_empty() {
            self.message
        } else {
            format!("{} ({})", self.message, self.rest.trim_start())
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_python_numbers() {
        assert_eq!(python_level(Level::ERROR), 40);
        assert_eq!(python_level(Level::WARN), 30);
        assert_eq!(python_level(Level::INFO), 20);
        assert_eq!(python_level(Level::DEBUG), 10);
    }

    fn line(bytes: usize) -> Record {
        Record {
            logger: "wool_docker.worker".to_owned(),
            level: INFO,
            message: "x".repeat(bytes),
            container: Some(("c".to_owned(), true)),
        }
    }

    #[test]
    fn queue_is_bounded_in_records_and_bytes() {
        let mut q = Queue {
            records: VecDeque::new(),
            bytes: 0,
            dropped: 0,
        };
        for _ in 0..(MAX_QUEUED + 5) {
            q.push(line(1));
        }
        assert_eq!((q.records.len(), q.dropped), (MAX_QUEUED, 5));
        let (records, dropped) = q.take();
        assert_eq!((records.len(), dropped, q.bytes), (MAX_QUEUED, 5, 0));

        // 256 lines of 64 KiB (the longest a container line gets) is 16 MiB.
        for _ in 0..256 {
            q.push(line(64 * 1024));
        }
        assert!(q.bytes <= MAX_QUEUED_BYTES);
        assert_eq!(q.bytes, q.records.iter().map(Record::size).sum::<usize>());
        assert!(q.records.len() < 256 && q.dropped == 256 - q.records.len());
    }

    #[test]
    fn fields_read_as_message_then_key_values() {
        let mut f = Fields::default();
        f.message.push_str("docker list failed");
        f.rest.push_str(" error=boom delay_ms=100");
        assert_eq!(f.finish(), "docker list failed (error=boom delay_ms=100)");
        let mut f = Fields::default();
        f.message.push_str("plain");
        assert_eq!(f.finish(), "plain");
    }
}

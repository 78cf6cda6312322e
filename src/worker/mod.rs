//! Container lifecycle of one worker: check, create, attach, start, wait until it
//! serves, stop, remove.
//!
//! The owner keeps the container's stdin attached for the container's whole life.
//! The worker image's entry point reads stop commands from it and treats EOF as the
//! owner's death, so a SIGKILLed owner still takes its containers with it (they are
//! created with auto-remove). No privileged helper is involved. A Swarm worker's
//! task, on any node, has a lifeline to its owner instead (`lifeline`,
//! `service`).

mod config;
mod lifecycle;
mod lifeline;
mod service;
mod spec;
mod standby;

pub use crate::output::LogSink;
pub use config::{EngineAccess, Sandbox, SwarmPlacement, Tls, WorkerConfig};
pub use lifecycle::{Owner, Running};
pub use lifeline::Lifeline;
pub use service::prune as prune_services;
pub use standby::{Plan, Refill, Standby};

use std::time::Duration;

use crate::engine::Engine;
use crate::error::Result;

/// Start a worker and wait until it serves: a container on `engine`, or, for
/// a config with a Swarm placement, a one-task service the Swarm places.
///
/// Runs on its own task: if the caller stops waiting (the asyncio task was
/// cancelled), what was created is still removed before the task ends.
pub async fn start(
    engine: Engine,
    owner: Owner,
    cfg: WorkerConfig,
    timeout: Duration,
    sink: Option<LogSink>,
) -> Result<Running> {
    lifecycle::owned_task("the worker start", move |cancelled| async move {
        if cfg.swarm.is_some() {
            service::start_owned(engine, owner, cfg, timeout, sink, cancelled).await
        } else {
            lifecycle::start_owned(engine, owner, cfg, timeout, sink, cancelled).await
        }
    })
    .await
}

//! Container lifecycle of one worker: check, create, attach, start, wait until it
//! serves, stop, remove.
//!
//! The owner keeps the container's stdin attached for the container's whole life.
//! The worker image's entry point reads stop commands from it and treats EOF as the
//! owner's death, so a SIGKILLed owner still takes its containers with it (they are
//! created with auto-remove). No privileged helper is involved. A Swarm worker's
//! task, on any node, has a lifeline to its owner instead (`lifeline`,
//! `service`).
//!
//! Three start paths, each read top-down, use the parts below them and never
//! each other: `lifecycle` (a plain container), `service` (a Swarm worker) and
//! `standby` (parked containers and their claims). Below them: `container` (a
//! plain container's checks, Engine access, and the container attached and
//! started), `running` (the handle every path hands over, and its stop),
//! `toolkit` (the owner's loan, the owned task, the image check, the control
//! line, the start's clock), and `config`, `spec`, `lifeline`.

mod config;
mod container;
mod lifecycle;
mod lifeline;
mod running;
mod service;
mod spec;
mod standby;
mod toolkit;

pub use crate::output::LogSink;
pub use config::{
    EngineAccess, Refill, Sandbox, StandbyKeywords, SwarmPlacement, Tls, WorkerConfig,
};
pub use lifeline::Lifeline;
pub use running::Running;
pub use service::prune as prune_services;
pub use standby::{Plan, Standby};
pub use toolkit::{FeedAccess, Owner};

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
    toolkit::owned_task("the worker start", move |cancelled| async move {
        if cfg.swarm.is_some() {
            service::start_owned(engine, owner, cfg, timeout, sink, cancelled).await
        } else {
            lifecycle::start_owned(engine, owner, cfg, timeout, sink, cancelled).await
        }
    })
    .await
}

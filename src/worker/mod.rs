//! Container lifecycle of one worker: check, create, attach, start, wait until it
//! serves, stop, remove.
//!
//! The owner keeps the container's stdin attached for the container's whole life.
//! The worker image's entry point reads stop commands from it and treats EOF as the
//! owner's death, so a SIGKILLed owner still takes its containers with it (they are
//! created with auto-remove). No privileged helper is involved.

mod config;
mod lifecycle;
mod spec;
mod standby;

pub use crate::output::LogSink;
pub use config::{EngineAccess, Sandbox, Tls, WorkerConfig};
pub use lifecycle::{start, Owner, Running};
pub use standby::{Plan, Refill, Standby};

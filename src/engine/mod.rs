//! The only module that talks to bollard: connect, negotiate, one method per Engine
//! call. Methods return this crate's own small structs so a bollard upgrade touches
//! this module alone, and every Engine model field is treated as optional.
//!
//! `model` holds those structs, `client` the [`Engine`] handle and its calls,
//! `service` its Swarm service calls, `exec` a process run in a container with its stdio held here, `ssh` the forward to an `ssh://` Engine,
//! `pull` the pulls and pushes of images with the credentials `auth` finds,
//! `convert` the pure translation between bollard's models and ours, `reach`
//! where this process reaches a worker's port (`host` its `Engine` methods), `transport`
//! the one request read through hyper directly.

mod auth;
mod client;
mod convert;
mod exec;
mod host;
mod model;
mod pull;
mod reach;
mod service;
mod ssh;
mod transport;

pub use auth::registry_of;
pub use client::Engine;
pub use convert::{now_nanos, rfc3339_nanos};
pub use model::{
    BindMount, Confinement, ContainerEvent, ContainerInfo, CreateSpec, Endpoint, EventStream,
    ImageInfo, InputWriter, NetworkInfo, Output, OutputStream, SwarmRole, TaskInfo,
};
pub use service::{Placement, ServiceCreate, ServiceInfo};

//! The owner's worker feed: how routines inside its containers discover workers.
//!
//! A routine that awaits another routine dispatches from inside its worker
//! container, through the `DockerDiscovery` subscriber shipped with it. Any view
//! of the Engine's API, even a filtered one, hands untrusted code an HTTP parser
//! to attack and the host's containers, environments and logs to read. So the
//! Engine is not reachable from containers at all: the owning process serves its
//! own discovery state instead. A container sends one line naming a scope the
//! owner itself subscribes to and receives that scope's worker records and their
//! changes, one JSON object per line. Nothing a client sends reaches the Engine,
//! and every container shares the owner's one Engine stream per scope.
//!
//! How it reaches a container, and who may connect. Where the Engine shares
//! this process's files, the socket lives in a directory only the owner may
//! enter (0700; `$XDG_RUNTIME_DIR` where set), and is bind-mounted, as a file,
//! into the owner's containers only. Each connection is identified by its
//! peer's pid → cgroup → container id, and served only when that container is
//! one this process started, or when the peer runs in no container at all (then
//! it passed the directory's permissions: it is the owner's user or root).
//! Elsewhere (`relay`) the owner runs a relay in each container over a stream
//! it holds, and each of the relay's channels is served as a connection from
//! that container: the owner knows who is there, because it started it.
//!
//! What is served is what is live: a scope while at least one of the owner's own
//! subscriptions of it is open (a [`Grant`] each). When the last one closes, the
//! connections serving it get an error line and are closed, and new ones are
//! refused until the owner subscribes again. A connection's queue is bounded
//! ([`QUEUE_BYTES`]): a client that reads slower than its scope changes is
//! dropped, not buffered for.
//!
//! Protocol, version 1. Client: `{"selector": {"k": "v", ...}, "network": "n" | null,
//! "owner": "token"}\n` (`owner` optional: the scope's owner filter),
//! at most [`MAX_REQUEST`] bytes within [`REQUEST_TIMEOUT`], nothing after it. Owner:
//! `{"ok": true}`, then lines of `{"changes": [{"kind": "added" | "updated" |
//! "dropped", "record": {...}, "at": ns}, ...]}`; or one `{"error": "..."}` line
//! before it hangs up.
//!
//! Layout, by the process that runs the code: `wire` is what both ends share
//! (the request and the wire format, pure); `server` runs in the owner, and
//! `relay` carries it into containers it cannot be mounted in; `client` runs
//! in a container.

mod client;
mod relay;
mod server;
pub mod wire;

pub use client::{from_env, subscribe, Client};
pub use relay::{Relay, RELAY_DIR, RELAY_PATH};
pub use server::{container_in_cgroup, Feed, Grant, QUEUE_BYTES};
pub use wire::{CONTAINER_PATH, ENV, OWNER_ENV};

//! What discovery reads from an Engine, as a trait: the tracker runs against
//! [`Engine`] in a process, and against a fake in unit tests, which then run
//! in milliseconds without a daemon.

use std::future::Future;

use crate::engine::{ContainerInfo, Engine, EventStream, OutputStream, SwarmRole};
use crate::error::Result;
use crate::scope::Scope;
use crate::swarm::Tasks;

/// The target of discovery's diagnostics, whichever file logs them: the
/// `wool_docker.discovery` logger, as before discovery was split into files.
pub(super) const LOG: &str = "_native::discovery";

/// The Engine reads of discovery (the Swarm poller's are [`Tasks`]).
pub trait Source: Tasks + Clone + Send + Sync + 'static {
    /// Where the Engine is: equal scopes on one Engine share one hub.
    fn host(&self) -> &str;

    /// The Engine's clock, Unix nanoseconds (`None`: it does not say); read
    /// afresh if `fresh`, else it may be derived from ours.
    fn now_ns(&self, fresh: bool) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// A network's exact name, from a name, an id or a unique id prefix.
    fn network_name(&self, reference: &str) -> impl Future<Output = Result<String>> + Send;

    /// The running containers carrying all of `labels` (`key` or `key=value`).
    fn running(&self, labels: &[String])
        -> impl Future<Output = Result<Vec<ContainerInfo>>> + Send;

    /// One container; `None` when it does not exist.
    fn inspect(&self, id: &str) -> impl Future<Output = Result<Option<ContainerInfo>>> + Send;

    /// Container events of containers carrying all of `labels`, from `since_ns`.
    fn container_events(&self, labels: &[String], since_ns: Option<i64>) -> EventStream;

    /// Connect and disconnect events of one network (or all), from `since_ns`.
    fn network_events(&self, network: Option<&str>, since_ns: Option<i64>) -> EventStream;

    /// A container's output, each line stamped (RFC 3339), from `since_secs`;
    /// followed if `follow`.
    fn logs(&self, id: &str, follow: bool, since_secs: i64) -> OutputStream;

    /// This Engine's place in a Swarm.
    fn swarm_role(&self) -> impl Future<Output = Result<SwarmRole>> + Send;

    /// Service and node events (a Swarm manager's).
    fn swarm_events(&self) -> EventStream;
}

impl Source for Engine {
    fn host(&self) -> &str {
        Engine::host(self)
    }

    fn now_ns(&self, fresh: bool) -> impl Future<Output = Result<Option<i64>>> + Send {
        Engine::now_ns(self, fresh)
    }

    async fn network_name(&self, reference: &str) -> Result<String> {
        Ok(self.network(reference).await?.name)
    }

    fn running(
        &self,
        labels: &[String],
    ) -> impl Future<Output = Result<Vec<ContainerInfo>>> + Send {
        self.list(labels, false)
    }

    fn inspect(&self, id: &str) -> impl Future<Output = Result<Option<ContainerInfo>>> + Send {
        Engine::inspect(self, id)
    }

    fn container_events(&self, labels: &[String], since_ns: Option<i64>) -> EventStream {
        Engine::container_events(self, labels, since_ns)
    }

    fn network_events(&self, network: Option<&str>, since_ns: Option<i64>) -> EventStream {
        Engine::network_events(self, network, since_ns)
    }

    fn logs(&self, id: &str, follow: bool, since_secs: i64) -> OutputStream {
        Engine::logs(self, id, follow, since_secs, true)
    }

    fn swarm_role(&self) -> impl Future<Output = Result<SwarmRole>> + Send {
        Engine::swarm_role(self)
    }

    fn swarm_events(&self) -> EventStream {
        Engine::swarm_events(self, None)
    }
}

/// The scoped network's exact name, resolved by the Engine like the docker CLI
/// resolves it (a name, a full id, or a unique id prefix). Resolved again at every
/// listing: a network re-created under the same name gets a new id.
pub(super) async fn resolve_network(engine: &impl Source, scope: &Scope) -> Result<Option<String>> {
    match &scope.network {
        Some(reference) => Ok(Some(engine.network_name(reference).await?)),
        None => Ok(None),
    }
}

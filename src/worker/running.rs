//! The running worker every start path hands over: its handle ([`Running`]),
//! what the owner holds of it ([`Control`]), and its stop.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Mutex};

use crate::engine::{Engine, InputWriter};
use crate::error::{Error, Result};
use crate::feed::Relay;
use crate::ready::Ready;
use crate::registry::Registry;

/// Extra time past the drain grace for the server to exit before it is killed.
const STOP_MARGIN: Duration = Duration::from_secs(5);
/// How long a `grace=None` stop (cancel at once) may take before a kill.
const STOP_NOW: Duration = Duration::from_secs(10);

/// A serving worker container.
pub struct Running {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// `ip:port` on the worker's network.
    pub address: String,
    /// wool protocol version the server reports.
    pub version: String,
    /// The server's pid inside the container.
    pub pid: i64,
    /// Where the start went, in seconds per phase, in order.
    pub timings: Vec<(&'static str, f64)>,
    /// The Swarm node it runs on, for a Swarm worker.
    pub node: Option<String>,
    /// What a stop removes.
    target: Target,
    engine: Engine,
    registry: Registry,
    /// The container's stdin; `None` once a stop has begun.
    control: Mutex<Option<InputWriter>>,
    exit: watch::Receiver<Option<i64>>,
    /// The worker feed's relay in the container, where it has one.
    _relay: Option<Relay>,
    /// Where a dropped handle's stop runs.
    runtime: tokio::runtime::Handle,
}

/// What a worker is to the Engine: a container, or a Swarm service whose
/// one task's container serves.
#[derive(Clone)]
pub(super) enum Target {
    Container,
    /// The service's id, and the task that forwards its output (which a
    /// followed service log never ends by itself).
    Service(String, Option<tokio::task::AbortHandle>),
}

/// What the owner holds of a worker that serves: its control stream, its
/// exit, and what a stop removes.
pub(super) struct Control {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) input: InputWriter,
    pub(super) exit: watch::Receiver<Option<i64>>,
    pub(super) target: Target,
    pub(super) node: Option<String>,
    pub(super) relay: Option<Relay>,
}

impl Running {
    /// Worker `control` serves at `address`, as `ready` says: announce it to
    /// this process's discovery and hand over the running worker.
    pub(super) fn serving(
        control: Control,
        engine: &Engine,
        registry: &Registry,
        address: String,
        ready: Ready,
        timings: Vec<(&'static str, f64)>,
    ) -> Running {
        registry.mark_serving(ready.clone());
        Running {
            id: control.id,
            name: control.name,
            address,
            version: ready.version.unwrap_or_default(),
            pid: ready.pid.unwrap_or_default(),
            timings,
            node: control.node,
            target: control.target,
            engine: engine.clone(),
            registry: registry.clone(),
            control: Mutex::new(Some(control.input)),
            exit: control.exit,
            _relay: control.relay,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Drain and remove the container. `grace`: `None` cancels in-flight work at
    /// once, negative waits for the drain indefinitely, positive bounds it. Past the
    /// bound the container is killed. Safe after the container already died.
    pub async fn stop(&self, grace: Option<f64>) -> Result<()> {
        let control = self.control.lock().await.take();
        // Own task: an asyncio cancellation of the caller must not skip the removal.
        let task = tokio::spawn(shut_down(
            self.engine.clone(),
            self.registry.clone(),
            (self.id.clone(), self.target.clone()),
            self.exit.clone(),
            control,
            grace,
        ));
        match task.await {
            Ok(result) => result,
            Err(join) if join.is_cancelled() => Err(Error::Cancelled(format!(
                "the stop of worker {}",
                self.name
            ))),
            Err(join) => Err(Error::Internal(format!(
                "the worker stop task failed: {join}"
            ))),
        }
    }

    /// Whether the container has exited.
    pub fn exited(&self) -> bool {
        self.exit.borrow().is_some()
    }
}

impl Drop for Running {
    /// A handle dropped without `stop()` (a cancelled start that had already
    /// succeeded, a `DockerWorker` collected while running) must not leave a
    /// serving container behind: stop it at once, as the owner's death would.
    fn drop(&mut self) {
        let Some(control) = self.control.get_mut().take() else {
            return;
        };
        let (engine, registry, id) = (self.engine.clone(), self.registry.clone(), self.id.clone());
        let (exit, target) = (self.exit.clone(), self.target.clone());
        // After the runtime shut down (interpreter exit) this does nothing; the
        // process's exit then closes the container's stdin, which stops it.
        self.runtime.spawn(async move {
            if let Err(e) = shut_down(engine, registry, (id.clone(), target), exit, Some(control), None).await {
                tracing::warn!(id = %id, error = %e, "could not remove a dropped worker's container");
            }
        });
    }
}

/// Send the stop command, wait for the server per `grace`, kill past the bound,
/// and remove the container (or the service, whose removal kills its task).
pub(super) async fn shut_down(
    engine: Engine,
    registry: Registry,
    (id, target): (String, Target),
    mut exit: watch::Receiver<Option<i64>>,
    control: Option<InputWriter>,
    grace: Option<f64>,
) -> Result<()> {
    registry.stopping(&id);
    // NaN bounds nothing and means nothing: treat it as no grace.
    let grace = grace.filter(|g| !g.is_nan());
    let command = format!("stop {}\n", grace.unwrap_or(0.0));
    // Past this the server is killed; `None` waits for the drain forever.
    let bound = match grace {
        None => Some(STOP_NOW),
        Some(g) if g < 0.0 => None,
        Some(g) => Some(
            Duration::try_from_secs_f64(g)
                .unwrap_or(Duration::MAX)
                .saturating_add(STOP_MARGIN),
        ),
    };
    let mut exited = false;
    if let Some(mut writer) = control {
        let sent =
            writer.write_all(command.as_bytes()).await.is_ok() && writer.flush().await.is_ok();
        // Keep stdin open until the server exits: EOF would mean "stop now".
        if sent {
            let wait = exit.wait_for(Option::is_some);
            exited = match bound {
                Some(b) => matches!(tokio::time::timeout(b, wait).await, Ok(Ok(_))),
                None => wait.await.is_ok(),
            };
        }
        drop(writer);
    }
    match target {
        Target::Container => {
            if !exited {
                engine.kill(&id, "SIGKILL").await?;
            }
            engine.remove(&id).await
        }
        Target::Service(service, output) => {
            let removed = engine.remove_service(&service).await;
            if let Some(output) = output {
                output.abort();
            }
            removed
        }
    }
}

//! A worker placed by the Swarm: a one-task service on an overlay network,
//! whose task may run on any node.
//!
//! The container is the one `DockerWorker` creates (the same labels, the
//! same environment and the confinement Swarm can express), run by a
//! replicated service of one task that is never restarted, with no virtual
//! IP and no published port. Its task connects back to the owner's
//! [`Lifeline`] and takes that connection as its stdin; the owner learns it
//! serves from its ready line there, and takes its address from the task's
//! network attachment as the manager reports it. Until then the manager's
//! task list tells why a task does not run (no such image on its node, no
//! node that fits), and its output is read through the manager.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{oneshot, watch};

use super::config::{EngineAccess, SwarmPlacement, WorkerConfig};
use super::lifeline;
use super::running::{Control, Running, Target};
use super::spec::create_spec;
use super::toolkit::{
    check_image, send_line, unless_cancelled, Clock, FeedAccess, Owner, TlsFiles,
};
use crate::engine::{now_nanos, Engine, Placement, ServiceCreate, SwarmRole, TaskInfo};
use crate::error::{Error, Result};
use crate::feed::{Feed, Relay};
use crate::labels;
use crate::output::{Lines, LogSink, TAIL_LINES};
use crate::ready::{Ready, READY_PREFIX};
use crate::registry::Registry;

/// The label on a worker's service object (not its container): which kind of
/// wool-docker service it is, so `prune` finds it.
pub const SERVICE_KIND: &str = "wool.docker.service";
/// [`SERVICE_KIND`]'s value for a worker.
pub const SERVICE_KIND_WORKER: &str = "worker";
/// How often the manager is asked about a starting task.
const TASK_POLL: Duration = Duration::from_millis(250);
/// How long a failed task's last output may take to arrive.
const TAIL_WAIT: Duration = Duration::from_secs(5);
/// A service whose tasks have all ended this long ago is an owner's leftover
/// (a stopped worker's service is removed by its owner at once).
const LEFTOVER_AFTER: Duration = Duration::from_secs(10);
/// How often this process's starts look for leftovers, at most.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Whether a start should look for dead owners' services now: at this
/// process's first, then at most once per `PRUNE_EVERY`, so that a pool's
/// many starts do not each list every service.
fn prune_due() -> bool {
    // Process-wide: leftovers are the manager's, whichever pool starts next.
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let now = std::time::Instant::now();
    if last.is_some_and(|at| now.duration_since(at) < PRUNE_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

/// Start a Swarm worker and wait until it serves (on a task of its own: see
/// [`super::start`]).
pub(super) async fn start_owned(
    engine: Engine,
    owner: Owner,
    mut cfg: WorkerConfig,
    timeout: Duration,
    sink: Option<LogSink>,
    mut cancelled: oneshot::Receiver<()>,
) -> Result<Running> {
    let mut clock = Clock::new();
    let placement = cfg.swarm.clone().unwrap_or_default();
    let lifeline = owner
        .lifeline
        .clone()
        .ok_or_else(|| Error::Internal("the lifeline listener is not being served".into()))?;
    let manager = check_swarm(&engine, &mut cfg).await?;
    let host = match &placement.lifeline_host {
        Some(host) => host.clone(),
        None => own_address(&engine, cfg.network.as_deref().unwrap_or_default()).await?,
    };
    // This user's leftovers of owners that died are removed by the next start.
    if prune_due() {
        if let Err(e) = prune(&engine, false, &[]).await {
            tracing::warn!(error = %e, "could not remove the services of workers whose owner is gone");
        }
    }
    clock.lap("check");
    let mut expected = lifeline.expect()?;
    // The worker feed through a relay on a second lifeline connection: the
    // task may run on any node.
    let mut feed = match (cfg.engine_access, &owner.feed) {
        (EngineAccess::Feed, Some(FeedAccess::Relay(feed))) => {
            Some((feed.clone(), lifeline.expect()?))
        }
        (EngineAccess::Feed, _) => {
            return Err(Error::Internal(
                "a Swarm worker's feed goes through a relay".into(),
            ))
        }
        _ => None,
    };
    let spec = service_spec(
        &cfg,
        &placement,
        &lifeline_address(&host, lifeline.port()),
        expected.token(),
        feed.as_ref().map(|(_, expected)| expected.token()),
    );
    let service = engine.create_service(&spec).await?;
    clock.lap("create");
    let up = bring_up(
        &engine,
        &owner.registry,
        (&service, &manager),
        &cfg,
        (&mut expected, feed.as_mut()),
        timeout,
        sink,
        &mut clock,
    );
    let result = unless_cancelled(up, &mut cancelled, || {
        format!("the start of worker {}", cfg.name)
    })
    .await;
    match result {
        Ok((control, address, ready)) => Ok(Running::serving(
            control,
            &engine,
            &owner.registry,
            address,
            ready,
            clock.laps,
        )),
        Err(e) => {
            if let Err(removal) = engine.remove_service(&service).await {
                tracing::warn!(service = %cfg.name, error = %removal, "could not remove a worker service that did not serve");
            }
            Err(e)
        }
    }
}

/// Check what a Swarm worker needs before anything is created: a manager, an
/// attachable overlay, and (where the manager has it) an image that can serve
/// this process. An image only the nodes have is checked when a task runs.
/// Returns the manager's node id.
async fn check_swarm(engine: &Engine, cfg: &mut WorkerConfig) -> Result<String> {
    if cfg.engine_access == EngineAccess::Socket {
        return Err(Error::InvalidArgument(
            "a SwarmWorker's task may run on another node, where this process's \
             Engine socket is not: pass engine_access=\"feed\" or \"none\""
                .into(),
        ));
    }
    // What a service cannot carry was refused when the config was read
    // (`WorkerConfig::check`), never dropped without a word.
    let manager = match engine.swarm_role().await? {
        SwarmRole::Manager { node_id } => node_id,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "a SwarmWorker needs a Swarm manager's Engine, and {} is not one; pass \
                 docker_host= a manager's",
                engine.host()
            )))
        }
    };
    let network = cfg.network.clone().ok_or_else(|| {
        Error::InvalidArgument("a SwarmWorker needs network=, an attachable overlay".into())
    })?;
    let info = engine.network(&network).await?;
    if info.driver != "overlay" {
        return Err(Error::NetworkNotOverlay {
            network,
            driver: info.driver,
        });
    }
    if !info.attachable {
        return Err(Error::NetworkNotAttachable { network });
    }
    cfg.network = Some(info.name);
    // Each node pulls the image itself (with the credentials the service
    // carries); the manager only checks the image when it has it.
    match check_image(engine, cfg, crate::values::Pull::Never).await {
        Ok(()) | Err(Error::ImageNotFound { .. }) => Ok(manager),
        Err(e) => Err(e),
    }
}

/// This process's address on `network`: the container it runs in, as the
/// Engine reports it. The task connects there.
async fn own_address(engine: &Engine, network: &str) -> Result<String> {
    let not_there = || {
        Error::InvalidArgument(format!(
            "a SwarmWorker's task connects back to its owner over network {network:?}, and \
             this process is not in a container attached to it on this Engine: run the pool \
             in a container on that network (`docker run --network {network} ...`), or pass \
             lifeline_host= an address of this process that the network reaches"
        ))
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .map_err(|_| not_there())?;
    let info = engine.inspect(&hostname).await?.ok_or_else(not_there)?;
    match labels::endpoint(&info, Some(network)) {
        Some((_, endpoint)) if !endpoint.ip.is_empty() => Ok(endpoint.ip.clone()),
        _ => Err(not_there()),
    }
}

/// `host:port`, with an IPv6 host in brackets.
fn lifeline_address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The service: the worker's container, plus the lifeline's address and token
/// (and the feed relay's token, where it gets the feed), and the owner's marks
/// on the service object itself.
fn service_spec(
    cfg: &WorkerConfig,
    placement: &SwarmPlacement,
    lifeline: &str,
    token: &str,
    feed_token: Option<&str>,
) -> ServiceCreate {
    let mut container = create_spec(cfg);
    container
        .env
        .push(format!("{}={lifeline}", lifeline::ADDRESS_ENV));
    container
        .env
        .push(format!("{}={token}", lifeline::TOKEN_ENV));
    if let Some(feed_token) = feed_token {
        container
            .env
            .push(format!("{}={feed_token}", lifeline::FEED_TOKEN_ENV));
        container
            .env
            .push(format!("{}={}", crate::feed::ENV, crate::feed::RELAY_PATH));
        container.env.push(format!(
            "{}={}",
            crate::feed::OWNER_ENV,
            crate::owner::token()
        ));
        container.confinement.tmpfs.insert(
            crate::feed::RELAY_DIR.to_owned(),
            "size=64k,mode=1777".to_owned(),
        );
    }
    let labels = [
        (labels::MANAGED, "true".to_owned()),
        (labels::OWNER, crate::owner::token()),
        (SERVICE_KIND, SERVICE_KIND_WORKER.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    ServiceCreate {
        container,
        labels,
        placement: Placement {
            constraints: placement.constraints.0.clone(),
            reserve_nano_cpus: placement.reserve_nano_cpus.map(|c| c.0),
            reserve_memory: placement.reserve_memory.map(|m| m.0),
        },
    }
}

/// Wait for the task's lifeline, hand it the TLS material, read its ready
/// line and its address; meanwhile, a task the Swarm gives up on is an error
/// saying why.
#[allow(clippy::too_many_arguments)]
async fn bring_up(
    engine: &Engine,
    registry: &Registry,
    (service, manager): (&str, &str),
    cfg: &WorkerConfig,
    (expected, feed): (
        &mut lifeline::Expected,
        Option<&mut (Feed, lifeline::Expected)>,
    ),
    timeout: Duration,
    sink: Option<LogSink>,
    clock: &mut Clock,
) -> Result<(Control, String, Ready)> {
    let name = cfg.name.as_str();
    let watch = watch_task(engine, service, name, cfg.image.as_str(), timeout);
    tokio::pin!(watch);
    let paired = tokio::select! {
        paired = expected.connection() => paired
            .ok_or_else(|| Error::Internal("the lifeline listener stopped".into()))?,
        failed = &mut watch => return Err(failed),
    };
    clock.lap("placed, started, connected");
    let lifeline::Paired {
        lines: mut reader,
        input: mut write,
    } = paired;
    if let Some(tls) = &cfg.tls {
        send_line(&mut write, &TlsFiles::of(tls), name, "its TLS material").await?;
        clock.lap("hand over TLS material");
    }
    let line = tokio::select! {
        line = ready_line(&mut reader) => line,
        failed = &mut watch => return Err(failed),
    };
    let Some(line) = line else {
        // It hung up before serving: its task is ending; the manager tells
        // its code and output once it has.
        return Err(tokio::time::timeout(TAIL_WAIT * 2, &mut watch)
            .await
            .unwrap_or_else(|_| Error::ContainerExited {
                id: name.to_owned(),
                code: None,
                log_tail: String::new(),
            }));
    };
    clock.lap("interpreter, wool import, bind");
    let task = tokio::select! {
        task = started_task(engine, service) => task?,
        failed = &mut watch => return Err(failed),
    };
    let container = task.container_id.clone().unwrap_or_default();
    let network = cfg.network.as_deref().unwrap_or_default();
    let ip = task
        .networks
        .get(network)
        .map(|ep| ep.ip.clone())
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| Error::ContainerRejected {
            id: name.to_owned(),
            message: format!("its task has no address on network {network:?}"),
        })?;
    let mut ready = Ready::parse(&container, now_nanos(), &line)
        .ok_or_else(|| Error::Internal(format!("worker {name} sent an unreadable ready line")))?;
    if task.node_id != manager {
        // No listing of this Engine shows it: this process's discovery is told
        // what a poll of the manager would find.
        let image = engine.image(cfg.image.as_str()).await.map(|i| i.labels);
        ready.remote = Some(Box::new(crate::ready::Remote {
            manager: engine.host().to_owned(),
            container: crate::swarm::as_container(
                &task,
                &container,
                name,
                &image.unwrap_or_default(),
            ),
        }));
    }
    clock.lap("inspect address");
    registry.admit(&container);
    let relay = match feed {
        Some((feed, expected)) => {
            let relay = tokio::select! {
                relay = feed_relay(feed, expected, &container, name, timeout) => relay?,
                failed = &mut watch => return Err(failed),
            };
            clock.lap("the feed's relay");
            Some(relay)
        }
        None => None,
    };
    let exit = watch_exit(
        engine.clone(),
        registry.clone(),
        service.to_owned(),
        container.clone(),
        reader,
    );
    let output = sink.map(|sink| {
        // From its first line, as a container's output is forwarded.
        let output = engine.service_logs(service, true, None);
        tokio::spawn(Lines::new(name.to_owned(), output, Some(sink)).pump()).abort_handle()
    });
    let control = Control {
        id: container,
        name: name.to_owned(),
        input: Box::pin(write),
        exit,
        target: Target::Service(service.to_owned(), output),
        node: Some(task.node_id),
        relay,
    };
    Ok((control, format!("{ip}:{}", cfg.publication.port), ready))
}

/// The feed's relay in task container `id`, once it connected to the
/// lifeline and listens.
async fn feed_relay(
    feed: &Feed,
    expected: &mut lifeline::Expected,
    id: &str,
    name: &str,
    timeout: Duration,
) -> Result<Relay> {
    let failed = |reason: &str| Error::RelayFailed {
        id: name.to_owned(),
        reason: reason.to_owned(),
    };
    let paired = tokio::time::timeout(timeout, expected.connection())
        .await
        .map_err(|_| failed("it did not connect to this process's lifeline"))?
        .ok_or_else(|| failed("the lifeline listener stopped"))?;
    let mut relay = feed.relay_over(id, paired.lines, paired.input, None);
    relay.ready(name, timeout).await?;
    Ok(relay)
}

/// The service's task once the manager reports it started, with its
/// container and addresses. (Its node reports it in batches, so the manager
/// can learn it a moment after the task said it serves; a task whose image
/// has a healthcheck is `starting` until that passes, serving already.)
async fn started_task(engine: &Engine, service: &str) -> Result<TaskInfo> {
    loop {
        let tasks = engine.service_tasks(&[service]).await?;
        let started = tasks.into_iter().find(|t| {
            t.container_id.is_some() && matches!(t.state.as_str(), "starting" | "running")
        });
        if let Some(task) = started {
            return Ok(task);
        }
        // The task watch, polled beside this, ends the wait if it ended.
        tokio::time::sleep(TASK_POLL).await;
    }
}

/// The first ready line on a lifeline; `None` if it ends first. Other lines
/// are skipped, and a line past `MAX_LINE` (an output line's cap) ends the wait.
async fn ready_line(reader: &mut lifeline::TaskLines) -> Option<String> {
    loop {
        let line = reader.next().await?.ok()?;
        if line.starts_with(READY_PREFIX) {
            return Some(line.trim_end().to_owned());
        }
    }
}

/// Watch service `service`'s task until the Swarm gives up on it or the
/// deadline passes; returns the error that says which.
async fn watch_task(
    engine: &Engine,
    service: &str,
    name: &str,
    image: &str,
    timeout: Duration,
) -> Error {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(TASK_POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Error::NotServing {
                    id: name.to_owned(),
                    waited: timeout,
                    log_tail: last_output(engine, service).await,
                };
            }
        }
        let tasks = match engine.service_tasks(&[service]).await {
            Ok(tasks) => tasks,
            Err(e) if e.is_unreachable() => return e,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read a starting worker's task");
                continue;
            }
        };
        if let Some(failed) = given_up(&tasks, name, image) {
            return match failed {
                Error::ContainerExited { id, code, .. } => Error::ContainerExited {
                    id,
                    code,
                    log_tail: last_output(engine, service).await,
                },
                other => other,
            };
        }
    }
}

/// Why the Swarm gave up on a worker's task, if it did: a task that ended
/// (its code and Swarm's words), was rejected for want of the image, or
/// waits for a node that fits.
fn given_up(tasks: &[TaskInfo], name: &str, image: &str) -> Option<Error> {
    // Restarts are off: the service has one task.
    let task = tasks
        .iter()
        .max_by_key(|t| t.changed_ns.unwrap_or_default())?;
    let message = task.message.as_str();
    match task.state.as_str() {
        "pending" if message.contains("no suitable node") => Some(Error::NoSuitableNode {
            id: name.to_owned(),
            message: message.to_owned(),
        }),
        "rejected" if message.contains("No such image") => Some(Error::ImageNotOnNode {
            id: name.to_owned(),
            image: image.to_owned(),
            node: task.node_id.clone(),
        }),
        "rejected" | "failed" | "complete" | "shutdown" | "orphaned" | "remove" => {
            Some(Error::ContainerExited {
                id: name.to_owned(),
                code: task.exit_code,
                log_tail: message.to_owned(),
            })
        }
        _ => None,
    }
}

/// A service's last lines of output, through the manager; empty if they do
/// not come in time.
async fn last_output(engine: &Engine, service: &str) -> String {
    let output = engine.service_logs(service, false, Some(TAIL_LINES));
    let mut lines = Lines::new(service.to_owned(), output, None);
    lines.drain_for(TAIL_WAIT).await;
    lines.tail()
}

/// Read a serving task's lifeline to its end (its server exited, or its node
/// went away), discarding what comes; then its exit code, as the manager
/// reports it. The container is forgotten then.
fn watch_exit(
    engine: Engine,
    registry: Registry,
    service: String,
    container: String,
    reader: lifeline::TaskLines,
) -> watch::Receiver<Option<i64>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        // Bytes, not lines: whatever the task sends now, only the end counts.
        let mut read = reader.into_inner();
        let mut sink = tokio::io::sink();
        let _ = tokio::io::copy(&mut read, &mut sink).await;
        registry.forget(&container);
        let _ = tx.send(Some(exit_code(&engine, &service).await.unwrap_or(-1)));
    });
    rx
}

/// A service's task's exit code, once the manager has recorded its end (a
/// running task reports 0), waiting for that a few seconds at most.
async fn exit_code(engine: &Engine, service: &str) -> Option<i64> {
    let waited = tokio::time::timeout(TAIL_WAIT, async {
        loop {
            if let Ok(tasks) = engine.service_tasks(&[service]).await {
                if let Some(code) = tasks.iter().filter(|t| ended(t)).find_map(|t| t.exit_code) {
                    return code;
                }
            }
            tokio::time::sleep(TASK_POLL).await;
        }
    });
    waited.await.ok()
}

/// Whether a task has ended, for good.
fn ended(task: &TaskInfo) -> bool {
    matches!(
        task.state.as_str(),
        "complete" | "failed" | "shutdown" | "rejected" | "orphaned" | "remove"
    )
}

/// Remove this user's (`any_user`: anyone's) worker services whose tasks
/// have all ended at least `LEFTOVER_AFTER` ago, among those whose container
/// carries every `key=value` of `only`: their owner is gone (its lifeline's
/// end stopped them) or never removed them. Returns the names removed. (A
/// task still pending when its owner died runs once a node fits, finds no
/// owner within its connect timeout, and ends: then its service goes too.)
pub async fn prune(engine: &Engine, any_user: bool, only: &[String]) -> Result<Vec<String>> {
    let terms = [
        format!("{}=true", labels::MANAGED),
        format!("{SERVICE_KIND}={SERVICE_KIND_WORKER}"),
    ];
    let mut removed = Vec::new();
    let services = engine.list_services(&terms).await?;
    if services.is_empty() {
        return Ok(removed);
    }
    // One task list for them all.
    let ids: Vec<&str> = services.iter().map(|s| s.id.as_str()).collect();
    let mut tasks: std::collections::HashMap<String, Vec<TaskInfo>> = Default::default();
    for task in engine.service_tasks(&ids).await? {
        tasks.entry(task.service_id.clone()).or_default().push(task);
    }
    // The manager's clock stamps the tasks: judge their age by it.
    let now = engine
        .now_ns(false)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(now_nanos);
    for service in services {
        let owner = service.labels.get(labels::OWNER).map(String::as_str);
        let selected = only.iter().all(|term| {
            let (key, value) = term.split_once('=').unwrap_or((term, ""));
            service
                .container_labels
                .get(key)
                .is_some_and(|v| value.is_empty() || v == value)
        });
        if !selected || !crate::owner::same_user(owner, any_user) {
            continue;
        }
        let tasks = tasks.remove(&service.id).unwrap_or_default();
        if is_leftover(&tasks, now) {
            engine.remove_service(&service.id).await?;
            removed.push(service.name);
        }
    }
    Ok(removed)
}

/// Whether a worker service's tasks say nobody needs it any more.
fn is_leftover(tasks: &[TaskInfo], now_ns: i64) -> bool {
    let after = i64::try_from(LEFTOVER_AFTER.as_nanos()).unwrap_or(i64::MAX);
    let long_ended = |t: &TaskInfo| ended(t) && t.changed_ns.is_some_and(|at| now_ns - at >= after);
    !tasks.is_empty() && tasks.iter().all(long_ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(state: &str, message: &str, changed_ns: i64) -> TaskInfo {
        TaskInfo {
            id: "t".into(),
            service_id: "s".into(),
            node_id: "n2".into(),
            slot: Some(1),
            state: state.into(),
            desired_state: "running".into(),
            container_id: None,
            image: "img".into(),
            labels: Default::default(),
            networks: Default::default(),
            message: message.into(),
            exit_code: Some(3),
            changed_ns: Some(changed_ns),
        }
    }

    #[test]
    fn the_swarm_giving_up_is_told_apart() {
        let failed = |t| given_up(&[t], "w", "img").map(|e| e.to_string());
        assert!(failed(task("running", "", 1)).is_none());
        assert!(failed(task("pending", "", 1)).is_none());
        let no_node = failed(task(
            "pending",
            "no suitable node (scheduling constraints)",
            1,
        ));
        assert!(no_node.is_some_and(|m| m.contains("no Swarm node can run worker w")));
        let no_image = failed(task("rejected", "No such image: img", 1));
        assert!(no_image.is_some_and(|m| m.contains("not on Swarm node n2")));
        let exited = failed(task("failed", "task: non-zero exit (3)", 1));
        assert!(exited.is_some_and(|m| m.contains("exited with code 3")));
    }

    #[test]
    fn an_ipv6_lifeline_host_is_bracketed() {
        assert_eq!(lifeline_address("10.0.1.2", 7), "10.0.1.2:7");
        assert_eq!(lifeline_address("fd00::1", 7), "[fd00::1]:7");
        assert_eq!(lifeline_address("[fd00::1]", 7), "[fd00::1]:7");
    }

    #[test]
    fn only_services_whose_tasks_all_ended_a_while_ago_are_leftovers() {
        let s = 1_000_000_000;
        let now = 100 * s;
        assert!(is_leftover(&[task("complete", "", now - 11 * s)], now));
        assert!(!is_leftover(&[task("complete", "", now - 2 * s)], now));
        assert!(!is_leftover(&[task("running", "", 0)], now));
        assert!(!is_leftover(&[], now));
        assert!(!is_leftover(
            &[task("failed", "", 0), task("running", "", 0)],
            now
        ));
    }
}

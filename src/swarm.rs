//! Swarm tasks on other nodes, seen through a manager.
//!
//! An Engine lists and reports events only for its own node's containers, so
//! on a Swarm of several nodes the container path sees one node. A manager also
//! lists every task of the Swarm (`GET /tasks`), with its node, state,
//! container id, container-spec labels and its addresses on each network; it
//! sends no task events (Engine 20.10), only service and node events. So the
//! tasks of other nodes are polled: on every service or node event and on a
//! period ([`interval`]), and the difference is announced exactly, as for
//! containers. The local node's tasks stay on the event-driven container path.
//!
//! A remote task is described as the container Swarm created for it (the
//! container-spec labels, the labels Swarm adds, the image's labels), so the
//! selector, the address rule and the uid are the container path's: a task
//! is one worker whichever path sees it. It is announced once its gRPC port
//! accepts a connection from this process: the Engine says nothing about a
//! remote server being bound (a task turns `running` only once the image's
//! healthcheck passes, seconds after the server serves), and a pool that
//! cannot connect cannot use it anyway. Started tasks not serving yet are
//! probed every [`PENDING_PROBE`]. A task is dropped as soon as the Swarm no
//! longer wants it running, it leaves `starting`/`running`, its node is not
//! `ready`, or its port refuses two probes in a row.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures_util::{stream, StreamExt};

use crate::engine::{ContainerInfo, Engine, TaskInfo};
use crate::error::Result;
use crate::labels;

/// Default period of the task poll (`WOOL_DOCKER_SWARM_INTERVAL`).
pub const INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// How long a probe of a task's port may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Probes run at once.
const PROBE_CONCURRENCY: usize = 32;
/// How often tasks that do not serve yet are probed between polls.
pub const PENDING_PROBE: Duration = Duration::from_millis(100);

/// The task poll period: `WOOL_DOCKER_SWARM_INTERVAL` seconds, else 1 s.
pub fn interval() -> Duration {
    crate::env::seconds_from_env("WOOL_DOCKER_SWARM_INTERVAL", INTERVAL_DEFAULT)
}

/// The container a task's Swarm created, as a listing would describe it: the
/// image's labels, then the container-spec labels, then Swarm's own.
pub fn as_container(
    task: &TaskInfo,
    container_id: &str,
    service: &str,
    image_labels: &BTreeMap<String, String>,
) -> ContainerInfo {
    // Swarm names a task's container `<service>.<slot>.<task>` (a global
    // service's: `<service>.<node>.<task>`).
    let slot = task
        .slot
        .filter(|s| *s > 0)
        .map_or_else(|| task.node_id.clone(), |s| s.to_string());
    let name = format!("{service}.{slot}.{}", task.id);
    let mut labels = image_labels.clone();
    labels.extend(task.labels.clone());
    for (key, value) in [
        ("com.docker.swarm.node.id", task.node_id.as_str()),
        ("com.docker.swarm.service.id", task.service_id.as_str()),
        ("com.docker.swarm.service.name", service),
        ("com.docker.swarm.task", ""),
        ("com.docker.swarm.task.id", task.id.as_str()),
        ("com.docker.swarm.task.name", name.as_str()),
    ] {
        labels.insert(key.to_owned(), value.to_owned());
    }
    ContainerInfo {
        id: container_id.to_owned(),
        name,
        image: task.image.clone(),
        labels,
        state: "running".to_owned(),
        health: None,
        networks: task.networks.clone(),
        ..Default::default()
    }
}

/// The Engine reads of a poll (a manager's), as a trait: unit tests of
/// discovery run against a fake Engine.
pub trait Tasks {
    /// Every task the Swarm wants running, on every node.
    fn tasks(&self) -> impl Future<Output = Result<Vec<TaskInfo>>> + Send;
    /// Node id → whether it is up (`ready`).
    fn nodes(&self) -> impl Future<Output = Result<HashMap<String, bool>>> + Send;
    /// Service id → name.
    fn services(&self) -> impl Future<Output = Result<HashMap<String, String>>> + Send;
    /// An image's labels.
    fn image_labels(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, String>>> + Send;
}

impl Tasks for Engine {
    fn tasks(&self) -> impl Future<Output = Result<Vec<TaskInfo>>> + Send {
        Engine::tasks(self)
    }

    fn nodes(&self) -> impl Future<Output = Result<HashMap<String, bool>>> + Send {
        Engine::nodes(self)
    }

    fn services(&self) -> impl Future<Output = Result<HashMap<String, String>>> + Send {
        Engine::services(self)
    }

    async fn image_labels(&self, image: &str) -> Result<BTreeMap<String, String>> {
        Ok(self.image(image).await?.labels)
    }
}

/// What a poll keeps between polls.
#[derive(Default)]
pub struct Poller {
    /// Service id → name; read again when a task names an unknown service.
    services: HashMap<String, String>,
    /// Image reference → its labels (empty: not on this Engine).
    images: HashMap<String, BTreeMap<String, String>>,
    /// The last poll's matching remote tasks, as containers, with the address
    /// each is probed at.
    candidates: Vec<(ContainerInfo, String)>,
    /// Candidates whose port accepted a connection.
    serving: HashSet<String>,
    /// Serving candidates' failed probes in a row.
    misses: HashMap<String, u32>,
    /// Node id → up (`ready`); read again after a swarm event, and every
    /// [`NODES_EVERY`] polls in case an event was missed.
    nodes: Option<HashMap<String, bool>>,
    /// Polls since the nodes were read.
    nodes_age: u32,
}

/// Polls between two readings of the node list without a node event.
const NODES_EVERY: u32 = 10;

/// Failed probes in a row that drop a serving task: its node may be gone
/// long before the Swarm says so (a stopped Engine is marked down after
/// 13–15 s).
const MISSES_TO_DROP: u32 = 2;

impl Poller {
    /// A service or node event: read the services and nodes again.
    pub fn swarm_changed(&mut self) {
        self.services.clear();
        self.nodes = None;
    }

    /// Read the remote tasks that match `selector` from the manager, then probe
    /// them all. `network` is the scoped network's exact name.
    pub async fn poll(
        &mut self,
        engine: &impl Tasks,
        selector: &BTreeMap<String, String>,
        network: Option<&str>,
        local_node: &str,
    ) -> Result<()> {
        if self.nodes_age >= NODES_EVERY {
            self.nodes = None;
        }
        let tasks = match &self.nodes {
            Some(_) => engine.tasks().await?,
            None => {
                let (tasks, nodes) = tokio::join!(engine.tasks(), engine.nodes());
                self.nodes = Some(nodes?);
                self.nodes_age = 0;
                tasks?
            }
        };
        self.nodes_age += 1;
        let nodes = self.nodes.clone().unwrap_or_default();
        // `running` waits for the image's healthcheck (10 s for the worker
        // image), while its server serves 0.2 s after the start: a started
        // task is a candidate, and the probe decides.
        let wanted: Vec<&TaskInfo> = tasks
            .iter()
            .filter(|t| {
                t.node_id != local_node
                    && matches!(t.state.as_str(), "starting" | "running")
                    && t.desired_state == "running"
                    && nodes.get(&t.node_id).copied().unwrap_or(false)
                    && t.container_id.is_some()
            })
            .collect();
        if wanted
            .iter()
            .any(|t| !self.services.contains_key(&t.service_id))
        {
            self.services = engine.services().await?;
        }
        let mut candidates = Vec::new();
        for task in wanted {
            let (Some(id), Some(service)) = (
                task.container_id.as_deref(),
                self.services.get(&task.service_id).cloned(),
            ) else {
                continue;
            };
            let image_labels = self.image_labels(engine, &task.image).await;
            let container = as_container(task, id, &service, &image_labels);
            if !labels::selects(selector, &container.labels) {
                continue;
            }
            if let Ok(Ok(record)) = labels::parse(&container, network) {
                candidates.push((container, record.address));
            }
        }
        let present: HashSet<&str> = candidates.iter().map(|(c, _)| c.id.as_str()).collect();
        self.serving.retain(|id| present.contains(id.as_str()));
        self.misses.retain(|id, _| present.contains(id.as_str()));
        self.candidates = candidates;
        self.probe(false).await;
        Ok(())
    }

    /// Probe the candidates not yet serving again; `true` if one now serves.
    pub async fn probe_pending(&mut self) -> bool {
        self.probe(true).await
    }

    /// Every candidate of the last poll, serving or not, as containers.
    pub fn candidates(&self) -> Vec<ContainerInfo> {
        self.candidates.iter().map(|(c, _)| c.clone()).collect()
    }

    /// The candidates that serve, as containers.
    pub fn serving(&self) -> Vec<ContainerInfo> {
        self.candidates
            .iter()
            .filter(|(c, _)| self.serving.contains(&c.id))
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// How many candidates have not accepted a connection from this process
    /// (yet): re-probed until they do.
    pub fn pending(&self) -> usize {
        self.candidates
            .iter()
            .filter(|(c, _)| !self.serving.contains(&c.id))
            .count()
    }

    async fn probe(&mut self, pending_only: bool) -> bool {
        let targets: Vec<(String, String)> = self
            .candidates
            .iter()
            .filter(|(c, _)| !pending_only || !self.serving.contains(&c.id))
            .map(|(c, address)| (c.id.clone(), address.clone()))
            .collect();
        let probed: Vec<(String, bool)> = stream::iter(targets)
            .map(|(id, address)| async move { (id, accepts(&address).await) })
            .buffer_unordered(PROBE_CONCURRENCY)
            .collect()
            .await;
        let mut added = false;
        for (id, accepted) in probed {
            if accepted {
                self.misses.remove(&id);
                added |= self.serving.insert(id);
            } else if self.serving.contains(&id) {
                let misses = self.misses.entry(id.clone()).or_default();
                *misses += 1;
                if *misses >= MISSES_TO_DROP {
                    tracing::info!(container = %id, "a remote task stopped accepting connections; dropped");
                    self.serving.remove(&id);
                    self.misses.remove(&id);
                }
            }
        }
        added
    }

    async fn image_labels(&mut self, engine: &impl Tasks, image: &str) -> BTreeMap<String, String> {
        if let Some(known) = self.images.get(image) {
            return known.clone();
        }
        // Swarm pins `name:tag@sha256:…`; the manager may hold the image by
        // either part.
        let mut labels = BTreeMap::new();
        let untagged = image.split('@').next().unwrap_or(image);
        for reference in [image, untagged] {
            if let Ok(found) = engine.image_labels(reference).await {
                labels = found;
                break;
            }
        }
        self.images.insert(image.to_owned(), labels.clone());
        labels
    }
}

/// Whether `address` (`ip:port`) accepts a TCP connection.
async fn accepts(address: &str) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Endpoint;

    fn task() -> TaskInfo {
        TaskInfo {
            id: "t1".to_owned(),
            service_id: "s1".to_owned(),
            node_id: "n2".to_owned(),
            slot: Some(3),
            state: "running".to_owned(),
            desired_state: "running".to_owned(),
            container_id: Some("ab".repeat(32)),
            image: "wool-worker:dev@sha256:00".to_owned(),
            labels: BTreeMap::from([("wool.worker".to_owned(), "true".to_owned())]),
            networks: BTreeMap::from([(
                "wool".to_owned(),
                Endpoint {
                    network_id: "netid".to_owned(),
                    ip: "10.0.1.7".to_owned(),
                },
            )]),
            message: String::new(),
            exit_code: None,
            changed_ns: None,
        }
    }

    #[test]
    fn a_task_reads_as_the_container_swarm_made_for_it() {
        let image = BTreeMap::from([
            ("wool.port".to_owned(), "50051".to_owned()),
            ("wool.worker".to_owned(), "image".to_owned()),
        ]);
        let c = as_container(&task(), &"ab".repeat(32), "svc", &image);
        assert_eq!(c.name, "svc.3.t1");
        // Container-spec labels win over the image's; Swarm's are added.
        assert_eq!(c.labels["wool.worker"], "true");
        assert_eq!(c.labels["com.docker.swarm.service.name"], "svc");
        assert_eq!(c.labels["com.docker.swarm.task.name"], "svc.3.t1");
        let record = labels::parse(&c, Some("wool")).ok().and_then(Result::ok);
        let record = record.map(|r| (r.uid, r.address));
        // The uid a local listing of that container would give it.
        let uid = labels::uid_from_container_id(&"ab".repeat(32));
        assert_eq!(
            record,
            Some((uid.unwrap_or_default(), "10.0.1.7:50051".to_owned()))
        );
    }

    #[test]
    fn selectors_match_like_label_filters() {
        let labels = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
        let select = |pairs: &[(&str, &str)]| {
            let s: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            labels::selects(&s, &labels)
        };
        assert!(select(&[("a", "1")]));
        assert!(select(&[("a", "")]));
        assert!(!select(&[("a", "2")]));
        assert!(!select(&[("a", "1"), ("b", "")]));
    }

    #[test]
    fn task_json_tolerates_missing_fields() {
        let full = serde_json::json!({
            "ID": "t1", "ServiceID": "s1", "NodeID": "n2", "Slot": 3,
            "Status": {"State": "running", "ContainerStatus": {"ContainerID": "c1"}},
            "DesiredState": "running",
            "Spec": {"ContainerSpec": {"Image": "img", "Labels": {"k": "v"}}},
            "NetworksAttachments": [
                {"Network": {"ID": "nid", "Spec": {"Name": "wool"}}, "Addresses": ["10.0.1.7/24"]}
            ]
        });
        let t = TaskInfo::from_json(&full);
        assert_eq!(t.container_id.as_deref(), Some("c1"));
        assert_eq!(t.networks["wool"].ip, "10.0.1.7");
        assert_eq!(t.labels["k"], "v");
        assert_eq!(
            TaskInfo::from_json(&serde_json::json!({})),
            TaskInfo::default()
        );
    }
}

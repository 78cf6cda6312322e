//! Swarm services, for workers placed by the Swarm (a manager only): create a
//! one-task service from a container's [`CreateSpec`], read its tasks and
//! output, list and remove services by label.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, Limit, Mount, MountTmpfsOptions, MountType,
    NetworkAttachmentConfig, ResourceObject, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec, TaskSpecLogDriver,
    TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{ListServicesOptionsBuilder, LogsOptionsBuilder};
use futures_util::StreamExt;

use super::auth::registry_of;
use super::client::Engine;
use super::convert::{convert_output, message_of, status_of, ulimits};
use super::model::{CreateSpec, OutputStream, TaskInfo};
use crate::error::{Error, Result};

/// How long Swarm waits for a removed service's task to exit before it kills
/// it. The owner stops a worker through its lifeline first and removes the
/// service once the server has exited (or is past its bound), so this only
/// bounds a worker that ignores both.
const STOP_GRACE_NS: i64 = 2_000_000_000;

/// Where the Swarm may place a service's task, and what it reserves there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Constraints, as `docker service create --constraint` takes them.
    pub constraints: Vec<String>,
    /// CPUs reserved, in billionths.
    pub reserve_nano_cpus: Option<i64>,
    /// Memory reserved, in bytes.
    pub reserve_memory: Option<i64>,
}

/// A service of one task that runs the container `container` describes.
#[derive(Debug, Clone)]
pub struct ServiceCreate {
    /// The task's container: name (the service's), image, its labels, env,
    /// network, mounts, limits and confinement.
    pub container: CreateSpec,
    /// The service object's own labels.
    pub labels: BTreeMap<String, String>,
    /// Where it may run.
    pub placement: Placement,
}

/// A service as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Service id.
    pub id: String,
    /// Service name.
    pub name: String,
    /// The service object's labels.
    pub labels: BTreeMap<String, String>,
    /// Its task's container labels.
    pub container_labels: BTreeMap<String, String>,
}

impl Engine {
    /// Create the service; returns its id. A name in use is refused.
    pub async fn create_service(&self, spec: &ServiceCreate) -> Result<String> {
        let body = service_body(spec)?;
        // The nodes pull the image themselves: the service carries this
        // process's credentials for its registry (the CLI's
        // `--with-registry-auth`). Unreadable ones are left out, not fatal:
        // the nodes may have the image already.
        let registry = registry_of(&spec.container.image);
        let credentials = super::pull::credentials(registry)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(registry = %registry, error = %e, "creating the service without registry credentials");
                None
            });
        match self.docker.create_service(body, credentials).await {
            Ok(created) => created.id.ok_or_else(|| {
                Error::Internal("the Engine created a service without an id".into())
            }),
            Err(e) => match status_of(&e) {
                Some(404) if message_of(&e).contains("network") => Err(Error::NetworkNotFound {
                    network: spec.container.network.clone().unwrap_or_default(),
                }),
                Some(400 | 409) => Err(Error::ContainerRejected {
                    id: spec.container.name.clone(),
                    message: message_of(&e),
                }),
                _ => Err(self.err("create service", e)),
            },
        }
    }

    /// Remove a service (its task is stopped by the Swarm); one already gone
    /// is not an error.
    pub async fn remove_service(&self, id: &str) -> Result<()> {
        match self.docker.delete_service(id).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.err("remove service", e)),
        }
    }

    /// Every task of the services `ids`, whatever its state.
    pub async fn service_tasks(&self, ids: &[&str]) -> Result<Vec<TaskInfo>> {
        let filters = serde_json::json!({ "service": ids }).to_string();
        self.tasks_where(&filters).await
    }

    /// Services carrying every `key=value` (or `key`) of `labels`.
    pub async fn list_services(&self, labels: &[String]) -> Result<Vec<ServiceInfo>> {
        let filters = HashMap::from([("label".to_owned(), labels.to_vec())]);
        let options = ListServicesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let services = self
            .docker
            .list_services(Some(options))
            .await
            .map_err(|e| self.err("list services", e))?;
        Ok(services
            .into_iter()
            .filter_map(|s| {
                let spec = s.spec?;
                let container_labels = spec
                    .task_template
                    .and_then(|t| t.container_spec)
                    .and_then(|c| c.labels)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                Some(ServiceInfo {
                    id: s.id?,
                    name: spec.name.unwrap_or_default(),
                    labels: spec.labels.unwrap_or_default().into_iter().collect(),
                    container_labels,
                })
            })
            .collect())
    }

    /// A service's output through the manager, from every node its tasks ran
    /// on: the last `tail` lines, then (`follow`) what comes.
    pub fn service_logs(&self, id: &str, follow: bool, tail: Option<usize>) -> OutputStream {
        let tail = tail.map_or_else(|| "all".to_owned(), |n| n.to_string());
        let options = LogsOptionsBuilder::default()
            .follow(follow)
            .stdout(true)
            .stderr(true)
            .tail(&tail)
            .build();
        let host = self.host.clone();
        Box::pin(
            self.docker
                .service_logs(id, Some(options))
                .filter_map(move |item| {
                    let host = host.clone();
                    async move { convert_output(item, &host) }
                }),
        )
    }
}

/// The Engine's body for `spec`: replicated ×1, never restarted, no virtual
/// IP or published port, on the worker's network.
fn service_body(spec: &ServiceCreate) -> Result<ServiceSpec> {
    let c = &spec.container;
    let k = &c.confinement;
    let mut mounts = Vec::new();
    for (target, options) in &k.tmpfs {
        mounts.push(tmpfs_mount(target, options)?);
    }
    for bind in &c.binds {
        mounts.push(bind_mount(bind)?);
    }
    for bind in &c.mounts {
        mounts.push(Mount {
            target: Some(bind.target.clone()),
            source: Some(bind.source.clone()),
            typ: Some(MountType::BIND),
            read_only: Some(bind.read_only),
            ..Default::default()
        });
    }
    let container = TaskSpecContainerSpec {
        image: Some(c.image.clone()),
        labels: Some(c.labels.clone().into_iter().collect()),
        env: Some(c.env.clone()),
        user: k.user.clone(),
        groups: (!k.group_add.is_empty()).then(|| k.group_add.clone()),
        read_only: Some(k.read_only),
        mounts: (!mounts.is_empty()).then_some(mounts),
        stop_grace_period: Some(STOP_GRACE_NS),
        // An init reaps what routines' children leave, as for a container.
        init: Some(true),
        capability_drop: (!k.cap_drop.is_empty()).then(|| k.cap_drop.clone()),
        capability_add: (!k.cap_add.is_empty()).then(|| k.cap_add.clone()),
        ulimits: ulimits(k),
        ..Default::default()
    };
    let p = &spec.placement;
    let task = TaskSpec {
        container_spec: Some(container),
        resources: Some(TaskSpecResources {
            limits: Some(Limit {
                nano_cpus: c.nano_cpus,
                memory_bytes: c.memory,
                pids: k.pids_limit,
            }),
            reservations: Some(ResourceObject {
                nano_cpus: p.reserve_nano_cpus,
                memory_bytes: p.reserve_memory,
                ..Default::default()
            }),
            ..Default::default()
        }),
        restart_policy: Some(TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
            ..Default::default()
        }),
        placement: Some(TaskSpecPlacement {
            constraints: (!p.constraints.is_empty()).then(|| p.constraints.clone()),
            ..Default::default()
        }),
        networks: c.network.as_ref().map(|network| {
            vec![NetworkAttachmentConfig {
                target: Some(network.clone()),
                ..Default::default()
            }]
        }),
        log_driver: k.log.as_ref().map(|(name, options)| TaskSpecLogDriver {
            name: Some(name.clone()),
            options: Some(options.clone().into_iter().collect()),
        }),
        ..Default::default()
    };
    Ok(ServiceSpec {
        name: Some(c.name.clone()),
        labels: Some(spec.labels.clone().into_iter().collect()),
        task_template: Some(task),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A tmpfs mount from `docker run --tmpfs` options. A service's tmpfs takes a
/// size and a mode only: flags (`noexec`, …) and an owner (`uid=`) have no
/// place there and are left out. Without its owner a private tmpfs (0700 for
/// the worker's uid) would be root's alone, so it becomes sticky and
/// world-writable (1777), as `/tmp` is: the worker's user can write it.
fn tmpfs_mount(target: &str, options: &str) -> Result<Mount> {
    let mut tmpfs = MountTmpfsOptions::default();
    let owned = options.split(',').any(|o| o.trim().starts_with("uid="));
    for option in options.split(',').map(str::trim) {
        if let Some(size) = option.strip_prefix("size=") {
            tmpfs.size_bytes = Some(parse_size(size).ok_or_else(|| {
                Error::InvalidArgument(format!("tmpfs {target}: bad size {size:?}"))
            })?);
        } else if let Some(mode) = option.strip_prefix("mode=") {
            tmpfs.mode = Some(i64::from_str_radix(mode, 8).map_err(|_| {
                Error::InvalidArgument(format!("tmpfs {target}: bad mode {mode:?}"))
            })?);
        }
    }
    if owned {
        tmpfs.mode = Some(0o1777);
    }
    Ok(Mount {
        target: Some(target.to_owned()),
        typ: Some(MountType::TMPFS),
        tmpfs_options: Some(tmpfs),
        ..Default::default()
    })
}

/// `src:dst[:mode]`: a bind mount of a node's path, or a named volume.
fn bind_mount(bind: &str) -> Result<Mount> {
    let parts: Vec<&str> = bind.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => {
            return Err(Error::InvalidArgument(format!(
                "volume {bind:?} is not src:dst[:mode]"
            )))
        }
    };
    let typ = if source.starts_with('/') {
        MountType::BIND
    } else {
        MountType::VOLUME
    };
    Ok(Mount {
        target: Some(target.to_owned()),
        source: Some(source.to_owned()),
        typ: Some(typ),
        read_only: Some(mode.split(',').any(|m| m == "ro")),
        ..Default::default()
    })
}

/// `64m`, `1g`, `4096` (bytes) as bytes.
fn parse_size(text: &str) -> Option<i64> {
    let text = text.trim().to_ascii_lowercase();
    let (digits, unit) = match text.char_indices().find(|(_, ch)| !ch.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text.as_str(), ""),
    };
    let unit: i64 = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    digits.parse::<i64>().ok()?.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Confinement;

    fn spec() -> ServiceCreate {
        ServiceCreate {
            container: CreateSpec {
                name: "w-1".into(),
                image: "img".into(),
                labels: BTreeMap::from([("wool.worker".into(), "true".into())]),
                env: vec!["A=1".into()],
                network: Some("ov".into()),
                publish: None,
                binds: vec!["data:/data:ro".into()],
                mounts: Vec::new(),
                nano_cpus: Some(500_000_000),
                memory: None,
                gpus: None,
                auto_remove: true,
                stdin_once: true,
                no_healthcheck: false,
                confinement: Confinement {
                    user: Some("65532:65532".into()),
                    read_only: true,
                    tmpfs: BTreeMap::from([(
                        "/tmp".into(),
                        "rw,noexec,size=256m,mode=1777".into(),
                    )]),
                    cap_drop: vec!["ALL".into()],
                    pids_limit: Some(512),
                    ulimits: vec![("nofile".into(), 1024, 2048)],
                    ..Default::default()
                },
            },
            labels: BTreeMap::from([("wool.docker.managed".into(), "true".into())]),
            placement: Placement {
                constraints: vec!["node.role==worker".into()],
                reserve_nano_cpus: Some(100_000_000),
                reserve_memory: None,
            },
        }
    }

    #[test]
    fn a_worker_service_is_one_task_never_restarted_without_vip() {
        let body = service_body(&spec()).unwrap_or_else(|e| panic!("{e}"));
        let json = serde_json::to_value(&body).unwrap_or_default();
        assert_eq!(json["Mode"]["Replicated"]["Replicas"], 1);
        assert_eq!(json["EndpointSpec"]["Mode"], "dnsrr");
        assert!(json["EndpointSpec"]["Ports"].is_null());
        let task = &json["TaskTemplate"];
        assert_eq!(task["RestartPolicy"]["Condition"], "none");
        assert_eq!(task["Networks"][0]["Target"], "ov");
        assert_eq!(task["Placement"]["Constraints"][0], "node.role==worker");
        assert_eq!(task["Resources"]["Limits"]["Pids"], 512);
        assert_eq!(task["Resources"]["Limits"]["NanoCPUs"], 500_000_000);
        assert_eq!(task["Resources"]["Reservations"]["NanoCPUs"], 100_000_000);
        let c = &task["ContainerSpec"];
        assert_eq!(c["User"], "65532:65532");
        assert_eq!(c["ReadOnly"], true);
        assert_eq!(c["Init"], true);
        assert_eq!(c["CapabilityDrop"][0], "ALL");
        assert_eq!(c["Ulimits"][0]["Soft"], 1024);
        assert_eq!(c["Labels"]["wool.worker"], "true");
        let mounts = c["Mounts"].as_array().cloned().unwrap_or_default();
        assert_eq!(mounts[0]["Type"], "tmpfs");
        assert_eq!(mounts[0]["TmpfsOptions"]["SizeBytes"], 256 << 20);
        assert_eq!(mounts[0]["TmpfsOptions"]["Mode"], 0o1777);
        assert_eq!(mounts[1]["Type"], "volume");
        assert_eq!(mounts[1]["ReadOnly"], true);
        assert_eq!(json["Labels"]["wool.docker.managed"], "true");
    }

    #[test]
    fn sizes_and_bad_mounts() {
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("3x"), None);
        assert!(bind_mount("nocolon").is_err());
        assert!(tmpfs_mount("/t", "size=lots").is_err());
        assert!(tmpfs_mount("/t", "mode=9").is_err());
        let private = tmpfs_mount("/t", "size=1m,mode=0700,uid=7,gid=7").ok();
        let mode = private.and_then(|m| m.tmpfs_options).and_then(|t| t.mode);
        assert_eq!(mode, Some(0o1777));
    }
}

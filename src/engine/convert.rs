//! Bollard's models to ours and back: pure functions, every Engine field optional.

use std::collections::{BTreeMap, HashMap};

use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, DeviceRequest,
    EndpointSettings, EventMessage, HostConfig, HostConfigLogConfig, NetworkingConfig, PortBinding,
    ResourcesUlimits,
};

use super::model::{
    Confinement, ContainerEvent, ContainerInfo, CreateSpec, Endpoint, Output, SwarmRole, TaskInfo,
};
use crate::error::{Error, Result};

impl TaskInfo {
    /// Read one entry of `GET /tasks`, tolerating any missing field.
    pub fn from_json(v: &serde_json::Value) -> TaskInfo {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        let spec = &v["Spec"]["ContainerSpec"];
        let labels = spec["Labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let mut networks = BTreeMap::new();
        for attachment in v["NetworksAttachments"].as_array().into_iter().flatten() {
            let name = text(&attachment["Network"]["Spec"]["Name"]);
            let ip = attachment["Addresses"]
                .as_array()
                .and_then(|a| a.first())
                .and_then(|a| a.as_str())
                .and_then(|a| a.split('/').next())
                .unwrap_or_default()
                .to_owned();
            if !name.is_empty() {
                let network_id = text(&attachment["Network"]["ID"]);
                networks.insert(name, Endpoint { network_id, ip });
            }
        }
        TaskInfo {
            id: text(&v["ID"]),
            service_id: text(&v["ServiceID"]),
            node_id: text(&v["NodeID"]),
            slot: v["Slot"].as_i64(),
            state: text(&v["Status"]["State"]),
            desired_state: text(&v["DesiredState"]),
            container_id: v["Status"]["ContainerStatus"]["ContainerID"]
                .as_str()
                .filter(|id| !id.is_empty())
                .map(str::to_owned),
            // Swarm pins images by digest: `name:tag@sha256:…`.
            image: text(&spec["Image"]),
            labels,
            networks,
            message: [&v["Status"]["Err"], &v["Status"]["Message"]]
                .into_iter()
                .filter_map(|m| m.as_str())
                .find(|m| !m.is_empty())
                .unwrap_or_default()
                .to_owned(),
            exit_code: v["Status"]["ContainerStatus"]["ExitCode"].as_i64(),
            changed_ns: v["Status"]["Timestamp"].as_str().and_then(rfc3339_nanos),
        }
    }
}

/// A Swarm role from `GET /info`'s `Swarm` part.
pub(super) fn role_of(swarm: Option<bollard::models::SwarmInfo>) -> SwarmRole {
    let Some(swarm) = swarm else {
        return SwarmRole::Standalone;
    };
    let active = swarm.local_node_state.map(|s| s.to_string()).as_deref() == Some("active");
    let node_id = swarm.node_id.unwrap_or_default();
    match (active, swarm.control_available) {
        (false, _) => SwarmRole::Standalone,
        (true, Some(true)) => SwarmRole::Manager { node_id },
        (true, _) => SwarmRole::Worker { node_id },
    }
}

/// Our clock, Unix nanoseconds.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

pub(super) fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub(super) fn message_of(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

pub(super) fn convert_output(
    item: std::result::Result<LogOutput, bollard::errors::Error>,
    host: &str,
) -> Option<Result<Output>> {
    match item {
        Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
            Some(Ok(Output::Stdout(message.to_vec())))
        }
        Ok(LogOutput::StdErr { message }) => Some(Ok(Output::Stderr(message.to_vec()))),
        Ok(LogOutput::StdIn { .. }) => None,
        Err(e) => Some(Err(Error::engine("read container output", host, e))),
    }
}

/// The Engine's ulimits of confinement `c`; `None` leaves the daemon's.
pub(super) fn ulimits(c: &Confinement) -> Option<Vec<ResourcesUlimits>> {
    (!c.ulimits.is_empty()).then(|| {
        c.ulimits
            .iter()
            .map(|(name, soft, hard)| ResourcesUlimits {
                name: Some(name.clone()),
                soft: Some(*soft),
                hard: Some(*hard),
            })
            .collect()
    })
}

/// The last `n` lines of `lines`, joined.
pub(super) fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn endpoints(networks: Option<HashMap<String, EndpointSettings>>) -> BTreeMap<String, Endpoint> {
    networks
        .unwrap_or_default()
        .into_iter()
        .map(|(name, ep)| {
            (
                name,
                Endpoint {
                    network_id: ep.network_id.unwrap_or_default(),
                    ip: ep.ip_address.unwrap_or_default(),
                },
            )
        })
        .collect()
}

/// The TCP ports of `bindings` (container port, host address, host port)
/// as this process reaches them: an IPv4 binding before an IPv6 one.
fn published(
    bindings: impl Iterator<Item = (u16, String, u16)>,
    host: &str,
) -> BTreeMap<u16, String> {
    let mut bindings: Vec<_> = bindings.filter(|(_, _, public)| *public != 0).collect();
    bindings.sort_by_key(|(private, ip, _)| (*private, ip.contains(':')));
    let mut out = BTreeMap::new();
    for (private, ip, public) in bindings {
        out.entry(private)
            .or_insert_with(|| super::reach::published_address(host, &ip, public));
    }
    out
}

/// `50051/tcp` → 50051; `None` for another protocol.
fn tcp_port(key: &str) -> Option<u16> {
    let (port, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
    (protocol == "tcp").then(|| port.parse().ok()).flatten()
}

/// `host` is where this process reaches the Engine's published ports.
pub(super) fn from_summary(c: ContainerSummary, host: &str) -> ContainerInfo {
    let status = c.status.unwrap_or_default();
    // The list endpoint reports health only inside the human status text on API 1.41.
    let health = c
        .health
        .and_then(|h| h.status)
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty() && s != "none")
        .or_else(|| health_from_status(&status));
    ContainerInfo {
        id: c.id.unwrap_or_default(),
        name: c
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_default(),
        image: c.image.unwrap_or_default(),
        labels: c.labels.unwrap_or_default().into_iter().collect(),
        state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        health,
        networks: endpoints(c.network_settings.and_then(|n| n.networks)),
        started_at_ns: None,
        finished_at_ns: None,
        published: published(
            c.ports
                .unwrap_or_default()
                .into_iter()
                .filter(|p| {
                    p.typ
                        .map(|t| t.to_string())
                        .is_none_or(|t| t.is_empty() || t == "tcp")
                })
                .filter_map(|p| Some((p.private_port, p.ip.unwrap_or_default(), p.public_port?))),
            host,
        ),
    }
}

/// `host` is where this process reaches the Engine's published ports.
pub(super) fn from_inspect(c: ContainerInspectResponse, host: &str) -> ContainerInfo {
    let state = c.state.unwrap_or_default();
    let settings = c.network_settings.unwrap_or_default();
    let bindings = settings
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(key, bindings)| Some((tcp_port(&key)?, bindings?)))
        .flat_map(|(private, bindings)| {
            bindings.into_iter().filter_map(move |b| {
                let public = b.host_port?.parse().ok()?;
                Some((private, b.host_ip.unwrap_or_default(), public))
            })
        });
    let published = published(bindings, host);
    ContainerInfo {
        id: c.id.unwrap_or_default(),
        name: c
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        image: c
            .config
            .as_ref()
            .and_then(|cfg| cfg.image.clone())
            .unwrap_or_default(),
        labels: c
            .config
            .and_then(|cfg| cfg.labels)
            .unwrap_or_default()
            .into_iter()
            .collect(),
        state: state.status.map(|s| s.to_string()).unwrap_or_default(),
        health: state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none"),
        networks: endpoints(settings.networks),
        started_at_ns: state.started_at.as_deref().and_then(rfc3339_nanos),
        finished_at_ns: state.finished_at.as_deref().and_then(rfc3339_nanos),
        published,
    }
}

/// `2026-11-29T16:45:01.123456789Z` (or with a `+01:00` offset: the Engine's
/// SystemTime is local) → Unix nanoseconds; `None` if unreadable or outside
/// `i64` nanoseconds (the Engine's zero time, year 1, for a container never started).
pub fn rfc3339_nanos(stamp: &str) -> Option<i64> {
    let at =
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos()).ok()
}

/// `Up 3 minutes (healthy)` → `healthy`; `(health: starting)` → `starting`.
fn health_from_status(status: &str) -> Option<String> {
    let inner = status.rsplit_once('(')?.1.strip_suffix(')')?;
    let inner = inner.strip_prefix("health: ").unwrap_or(inner);
    matches!(inner, "healthy" | "unhealthy" | "starting").then(|| inner.to_owned())
}

/// Our container spec as the Engine's create body; a published port is bound
/// to host address `bind` (empty: every one).
pub(super) fn container_create_body(spec: &CreateSpec, bind: &str) -> ContainerCreateBody {
    let device_requests = spec.gpus.map(|count| {
        vec![DeviceRequest {
            count: Some(count),
            capabilities: Some(vec![vec!["gpu".to_owned()]]),
            ..Default::default()
        }]
    });
    let c = &spec.confinement;
    let host_config = HostConfig {
        auto_remove: Some(spec.auto_remove),
        network_mode: spec.network.clone(),
        binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
        mounts: (!spec.mounts.is_empty()).then(|| {
            spec.mounts
                .iter()
                .map(|m| bollard::models::Mount {
                    typ: Some(bollard::models::MountType::BIND),
                    source: Some(m.source.clone()),
                    target: Some(m.target.clone()),
                    read_only: Some(m.read_only),
                    ..Default::default()
                })
                .collect()
        }),
        nano_cpus: spec.nano_cpus,
        memory: spec.memory,
        device_requests,
        // tini reaps zombies from routines that spawn processes.
        init: Some(true),
        readonly_rootfs: Some(c.read_only),
        tmpfs: (!c.tmpfs.is_empty()).then(|| {
            c.tmpfs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
        cap_drop: (!c.cap_drop.is_empty()).then(|| c.cap_drop.clone()),
        cap_add: (!c.cap_add.is_empty()).then(|| c.cap_add.clone()),
        security_opt: (!c.security_opt.is_empty()).then(|| c.security_opt.clone()),
        pids_limit: c.pids_limit,
        oom_score_adj: c.oom_score_adj,
        ulimits: ulimits(c),
        log_config: c.log.as_ref().map(|(driver, options)| HostConfigLogConfig {
            typ: Some(driver.clone()),
            config: Some(
                options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        }),
        runtime: c.runtime.clone(),
        group_add: (!c.group_add.is_empty()).then(|| c.group_add.clone()),
        // An empty host port: the Engine picks a free one.
        port_bindings: spec.publish.map(|port| {
            HashMap::from([(
                format!("{port}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some(bind.to_owned()),
                    host_port: Some(String::new()),
                }]),
            )])
        }),
        ..Default::default()
    };
    let networking_config = spec.network.as_ref().map(|n| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(n.clone(), EndpointSettings::default())])),
    });
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        user: c.user.clone(),
        labels: Some(spec.labels.clone().into_iter().collect()),
        env: Some(spec.env.clone()),
        attach_stdin: Some(spec.stdin_once),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(spec.stdin_once),
        stdin_once: Some(spec.stdin_once),
        tty: Some(false),
        host_config: Some(host_config),
        networking_config,
        exposed_ports: spec.publish.map(|port| vec![format!("{port}/tcp")]),
        healthcheck: spec.no_healthcheck.then(|| bollard::models::HealthConfig {
            test: Some(vec!["NONE".to_owned()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One event of the Engine's stream as ours; `None` for one that names no container.
pub(super) fn event_of(msg: EventMessage) -> Option<ContainerEvent> {
    let actor = msg.actor?;
    let attributes = actor.attributes.unwrap_or_default();
    let network_event = msg.typ.map(|t| t.to_string()) == Some("network".to_owned());
    // Network events name the network as actor, the container in attributes.
    let id = if network_event {
        attributes.get("container").cloned()?
    } else {
        actor.id?
    };
    Some(ContainerEvent {
        id,
        action: msg.action.unwrap_or_default(),
        time_nano: msg.time_nano.unwrap_or_default(),
        signal: attributes.get("signal").cloned(),
        network: network_event
            .then(|| attributes.get("name").cloned())
            .flatten(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_parse_to_unix_nanos() {
        assert_eq!(rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_nanos("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(
            rfc3339_nanos("2026-11-29T16:45:01.123456789Z"),
            Some(1_795_970_701_123_456_789)
        );
        assert_eq!(
            rfc3339_nanos("2000-03-01T00:00:00Z"),
            Some(951_868_800_000_000_000)
        );
        assert_eq!(rfc3339_nanos("garbage"), None);
        assert_eq!(
            rfc3339_nanos("1970-01-01T01:00:00.5+01:00"),
            Some(500_000_000)
        );
        assert_eq!(rfc3339_nanos("1969-12-31T23:30:00-00:30"), Some(0));
        assert_eq!(rfc3339_nanos("0001-01-01T00:00:00Z"), None);
    }

    #[test]
    fn health_is_read_from_the_status_text() {
        assert_eq!(
            health_from_status("Up 3 minutes (healthy)").as_deref(),
            Some("healthy")
        );
        assert_eq!(
            health_from_status("Up 1 second (health: starting)").as_deref(),
            Some("starting")
        );
        assert_eq!(
            health_from_status("Up 2 hours (unhealthy)").as_deref(),
            Some("unhealthy")
        );
        assert_eq!(health_from_status("Up 2 hours (Paused)"), None);
        assert_eq!(health_from_status("Up 2 hours"), None);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let lines: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        assert_eq!(tail(&lines, 2), "3\n4");
        assert_eq!(tail(&lines, 10), "0\n1\n2\n3\n4");
    }
}

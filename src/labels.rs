//! The label schema: a worker's metadata as container labels, and back.
//!
//! Docker labels cannot change after a container is created, so a container's labels
//! *are* its publication. Compose users write these by hand; the README documents
//! them. Every key sits under the `wool.` prefix. The worker image carries
//! `wool.version` and `wool.port` too, and containers inherit image labels, so a
//! container labelled only with the selector still yields a complete record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::ContainerInfo;
use crate::error::{Error, Result};

/// Default selector: `wool.worker=true` (key; the value is [`SELECTOR_VALUE`]).
pub const SELECTOR: &str = "wool.worker";
/// The default selector's value.
pub const SELECTOR_VALUE: &str = "true";
/// Worker uid (a UUID). Default: derived from the container id.
pub const UID: &str = "wool.uid";
/// gRPC port inside the container. Default: the image's, else [`DEFAULT_PORT`].
pub const PORT: &str = "wool.port";
/// Comma-separated capability tags.
pub const TAGS: &str = "wool.tags";
/// JSON object of extra metadata.
pub const EXTRA: &str = "wool.extra";
/// wool protocol version the worker speaks (set by the worker image).
pub const VERSION: &str = "wool.version";
/// `true` when the worker serves TLS.
pub const SECURE: &str = "wool.secure";
/// The workload identity the worker's certificate proves.
pub const IDENTITY: &str = "wool.identity";
/// JSON object of wool `ChannelOptions` fields.
pub const OPTIONS: &str = "wool.options";
/// Network whose address to advertise when the container is on several.
pub const NETWORK: &str = "wool.network";
/// Full `host:port` to advertise, overriding everything else.
pub const ADDRESS: &str = "wool.address";
/// `true`: the worker is reached at the port its Engine publishes for
/// `wool.port`, on the Engine's host as each reader reaches that host (the
/// owner cannot route to the container's own address).
pub const PUBLISH: &str = "wool.publish";
/// Marks a container parked by a `Standby`: its labels were fixed before it
/// had a worker, so its uid, tags, extra, security, identity and options are
/// what its ready line says once claimed, and it is a worker only from then.
pub const STANDBY: &str = "wool.docker.standby";
/// Marks containers created by `DockerWorker` (for `wool-docker prune --all`).
pub const MANAGED: &str = "wool.docker.managed";
/// The owning process, `uid/host/pid/start-time` (see `owner::token`): whose
/// pool it serves (discovery's owner filter) and whether `wool-docker prune` may
/// remove it.
pub const OWNER: &str = "wool.docker.owner";
/// Port wool-docker's worker image serves on.
pub const DEFAULT_PORT: u16 = 50051;

/// What a worker advertises, as wool's `WorkerMetadata` needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Worker uid, UUID text.
    pub uid: String,
    /// `ip:port` reachable on the chosen network.
    pub address: String,
    /// wool protocol version; empty when unknown.
    pub version: String,
    /// Capability tags.
    pub tags: Vec<String>,
    /// JSON object text.
    pub extra: String,
    /// Serves TLS.
    pub secure: bool,
    /// Workload identity.
    pub identity: Option<String>,
    /// JSON object text of channel options, when given.
    pub options: Option<String>,
    /// The container behind it.
    pub container_id: String,
    /// Its name.
    pub container_name: String,
    /// The network the address is on.
    pub network: String,
    /// The server's pid in the container, once its ready line was read.
    pub pid: i64,
    /// Its `ip:port` on `network` when `address` is a published port: where
    /// the containers on that network (nested routines, fed by the owner's
    /// worker feed) reach it. Not on the wire as such: the feed sends it as
    /// the address (see [`WorkerRecord::on_network`]).
    #[serde(skip)]
    pub network_address: Option<String>,
    /// A parked standby container's labels: the fields above that labels
    /// carry for a worker (uid, tags, extra, secure, identity, options) come
    /// from its ready line instead, and without one it is no worker. Never
    /// on the wire: an announced record is already complete.
    #[serde(skip)]
    pub standby: bool,
}

#[cfg(test)]
impl WorkerRecord {
    /// A plain, serving worker for tests: wool 0.15.7, no tags or extra, on
    /// network `w`.
    pub fn for_test(uid: &str, address: &str, container_id: &str, container_name: &str) -> Self {
        WorkerRecord {
            uid: uid.into(),
            address: address.into(),
            version: "0.15.7".into(),
            tags: vec![],
            extra: "{}".into(),
            secure: false,
            identity: None,
            options: None,
            container_id: container_id.into(),
            container_name: container_name.into(),
            network: "w".into(),
            pid: 0,
            network_address: None,
            standby: false,
        }
    }
}

impl WorkerRecord {
    /// The record as a container on its network sees it: at its address
    /// there, where this process reaches it at a published port.
    pub fn on_network(&self) -> WorkerRecord {
        let mut record = self.clone();
        if let Some(address) = record.network_address.take() {
            record.address = address;
        }
        record
    }
}

/// The fields a `DockerWorker` publishes at creation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publication {
    /// Worker uid.
    pub uid: String,
    /// Port inside the container.
    pub port: Port,
    /// Capability tags (no commas).
    pub tags: Vec<String>,
    /// Extra metadata.
    pub extra: Extra,
    /// Serves TLS.
    pub secure: bool,
    /// Workload identity.
    pub identity: Option<String>,
    /// wool `ChannelOptions` fields (their types are checked by the Python
    /// side, which owns the dataclass).
    pub options: Option<Options>,
    /// Network to advertise on.
    pub network: Option<String>,
    /// Reached at a port published on the Engine's host (`true`) or at the
    /// container's address (`false`); `None`: whichever this process can
    /// reach, decided at start.
    pub publish: Option<crate::values::Flag>,
}

impl Publication {
    /// Whether it is reached at a published port (once decided).
    pub fn published(&self) -> bool {
        self.publish.is_some_and(|p| p.0)
    }
}

/// A JSON object's fields, in key order (so its text is canonical).
pub type Options = BTreeMap<String, serde_json::Value>;

/// A TCP port a worker serves on: 1-65535. The one rule for a port, wherever
/// it comes from (a label, the worker config, the command line, the image).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Port(pub u16);

impl Default for Port {
    fn default() -> Self {
        Port(DEFAULT_PORT)
    }
}

impl Port {
    /// Check a port number.
    pub fn new(number: i64) -> std::result::Result<Port, String> {
        u16::try_from(number)
            .ok()
            .filter(|p| *p > 0)
            .map(Port)
            .ok_or_else(|| format!("port must be 1-65535, got {number}"))
    }

    /// Read a port from text (surrounding blanks ignored).
    pub fn parse(text: &str) -> std::result::Result<Port, String> {
        let trimmed = text.trim();
        let number = trimmed
            .parse::<i64>()
            .map_err(|_| format!("port must be an integer in 1-65535, got {text:?}"))?;
        Port::new(number)
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Port::new(i64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A worker's extra metadata: strings to strings, as wool carries it
/// (`map<string, string>`). The one rule for `extra`, wherever it comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Extra(pub BTreeMap<String, String>);

impl Extra {
    /// Read the JSON object text of a label or an environment variable.
    pub fn parse(text: &str) -> std::result::Result<Extra, String> {
        serde_json::from_str(text).map_err(|e| {
            // serde_json appends " at line L column C"; keep the reason only.
            let e = e.to_string();
            match e.rsplit_once(" at line ") {
                Some((reason, _)) => reason.to_owned(),
                None => e,
            }
        })
    }

    /// Read `extra` as a user gave it (a label, a variable, the command line):
    /// the error says the rule whatever serde found wrong.
    pub fn read(text: &str) -> std::result::Result<Extra, String> {
        Extra::parse(text).map_err(Extra::rule)
    }

    /// A problem with `extra`, said with its rule.
    pub fn rule(problem: String) -> String {
        if problem.starts_with("extra metadata") {
            problem
        } else {
            format!(
                "extra metadata must map strings to strings (wool sends it as \
                 map<string, string>): {problem}"
            )
        }
    }

    /// The canonical JSON text (compact, keys sorted) of labels and the
    /// worker's environment.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_owned())
    }
}

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Extra;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("extra metadata: an object of strings to strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Extra, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((key, value)) =
                    map.next_entry::<serde_json::Value, serde_json::Value>()?
                {
                    match (key, value) {
                        (serde_json::Value::String(k), serde_json::Value::String(v)) => {
                            out.insert(k, v);
                        }
                        (k, v) => {
                            return Err(serde::de::Error::custom(format!(
                                "extra metadata must map strings to strings (wool sends \
                                 it as map<string, string>); got {k}: {v}"
                            )))
                        }
                    }
                }
                Ok(Extra(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Labels for a worker container; `selector` is merged in so discovery matches it.
pub fn to_labels(p: &Publication, selector: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = selector.clone();
    labels.insert(UID.to_owned(), p.uid.clone());
    labels.insert(PORT.to_owned(), p.port.to_string());
    labels.insert(TAGS.to_owned(), p.tags.join(","));
    labels.insert(EXTRA.to_owned(), p.extra.to_json());
    labels.insert(SECURE.to_owned(), p.secure.to_string());
    if let Some(identity) = &p.identity {
        labels.insert(IDENTITY.to_owned(), identity.clone());
    }
    if let Some(options) = &p.options {
        labels.insert(OPTIONS.to_owned(), options_json(options));
    }
    if let Some(network) = &p.network {
        labels.insert(NETWORK.to_owned(), network.clone());
    }
    if p.published() {
        labels.insert(PUBLISH.to_owned(), "true".to_owned());
    }
    labels
}

/// The canonical JSON text of channel options (compact, keys sorted).
pub fn options_json(options: &Options) -> String {
    serde_json::to_string(options).unwrap_or_else(|_| "{}".to_owned())
}

/// Read the JSON object text of channel options (`wool.options`,
/// `WOOL_OPTIONS`): an object; its fields are wool's to check.
pub fn parse_options(text: &str) -> std::result::Result<Options, String> {
    serde_json::from_str(text).map_err(|_| format!("is not a JSON object: {text:?}"))
}

/// Why a container yields no record, short of a malformed label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Not on the scoped network (or on no network with an address).
    NoAddress,
}

/// Read a container's labels into a record. `network` scopes the address: without it
/// the address follows [`pick_network`]. Malformed labels are an
/// [`Error::InvalidLabel`] naming the container and key.
pub fn parse(
    c: &ContainerInfo,
    network: Option<&str>,
) -> Result<std::result::Result<WorkerRecord, Skip>> {
    let label = |key: &str| {
        c.labels
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    };
    let invalid = |key: &str, reason: String| Error::InvalidLabel {
        container: c.name.clone(),
        key: key.to_owned(),
        reason,
    };

    let uid = match label(UID) {
        Some(v) if is_uuid(v) => v.to_ascii_lowercase(),
        Some(v) => return Err(invalid(UID, format!("is not a UUID: {v:?}"))),
        None => uid_from_container_id(&c.id)
            .ok_or_else(|| invalid(UID, "is missing and the container id is not hex".to_owned()))?,
    };
    let port = match label(PORT) {
        Some(v) => {
            Port::parse(v)
                .map_err(|_| invalid(PORT, format!("is not a port number: {v:?}")))?
                .0
        }
        None => DEFAULT_PORT,
    };
    let tags = label(TAGS)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let extra = match label(EXTRA) {
        Some(v) => match Extra::parse(v) {
            Ok(_) => v.to_owned(),
            Err(_) => {
                return Err(invalid(
                    EXTRA,
                    format!("is not a JSON object of strings to strings: {v:?}"),
                ))
            }
        },
        None => "{}".to_owned(),
    };
    let options = match label(OPTIONS) {
        Some(v) => match parse_options(v) {
            Ok(_) => Some(v.to_owned()),
            Err(e) => return Err(invalid(OPTIONS, e)),
        },
        None => None,
    };
    let flag = |key: &str| match label(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if matches!(v.as_str(), "true" | "1" | "yes") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "0" | "no") => Ok(false),
        Some(v) => Err(invalid(key, format!("is not true or false: {v:?}"))),
    };
    let secure = flag(SECURE)?;
    let publish = flag(PUBLISH)?;
    let version = label(VERSION).unwrap_or_default().trim().to_owned();
    let identity = label(IDENTITY).map(|v| v.trim().to_owned());

    let mut network_address = None;
    let (address, chosen) = if let Some(address) = label(ADDRESS) {
        if address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(invalid(ADDRESS, format!("is not host:port: {address:?}")));
        }
        (
            address.to_owned(),
            network.map(str::to_owned).unwrap_or_default(),
        )
    } else {
        let wanted = network.or(label(NETWORK));
        match (endpoint(c, wanted), c.published.get(&port)) {
            // Still on its network, so a scoped reader finds it where it looks.
            (Some((name, ep)), Some(address)) if publish => {
                network_address = (!ep.ip.is_empty()).then(|| format!("{}:{port}", ep.ip));
                (address.clone(), name.clone())
            }
            (None, Some(address)) if publish && wanted.is_none() => {
                (address.clone(), String::new())
            }
            (Some((name, ep)), _) if !publish && !ep.ip.is_empty() => {
                (format!("{}:{port}", ep.ip), name.clone())
            }
            _ => return Ok(Err(Skip::NoAddress)),
        }
    };
    Ok(Ok(WorkerRecord {
        uid,
        address,
        version,
        tags,
        extra,
        secure,
        identity,
        options,
        container_id: c.id.clone(),
        container_name: c.name.clone(),
        network: chosen,
        pid: 0,
        network_address,
        standby: c.labels.get(STANDBY).is_some_and(|v| v == "true"),
    }))
}

/// The container's endpoint on the network named (by exact name or full id), or, with
/// none named, the one [`pick_network`] chooses.
pub fn endpoint<'a>(
    c: &'a ContainerInfo,
    network: Option<&str>,
) -> Option<(&'a String, &'a crate::engine::Endpoint)> {
    match network {
        // Exactly that name, or exactly that full id: never an id prefix, which
        // could name some other network (resolve a user's reference against
        // the Engine first, as the docker CLI does).
        Some(wanted) => c.networks.get_key_value(wanted).or_else(|| {
            c.networks
                .iter()
                .find(|(_, ep)| !ep.network_id.is_empty() && ep.network_id == wanted)
        }),
        None => pick_network(c),
    }
}

/// With no network named, the address comes from the container's only network; with
/// several, from the first user-defined network in name order (the default `bridge`
/// only when there is no other). Deterministic, unlike a map's iteration order.
pub fn pick_network(c: &ContainerInfo) -> Option<(&String, &crate::engine::Endpoint)> {
    let usable = || {
        c.networks
            .iter()
            .filter(|(n, ep)| !ep.ip.is_empty() && n.as_str() != "host" && n.as_str() != "none")
    };
    usable()
        .find(|(n, _)| n.as_str() != "bridge")
        .or_else(|| usable().next())
}

/// A container id's first 32 hex digits as a UUID: stable for the container's life,
/// and what the worker image's entry point uses when no uid is given.
pub fn uid_from_container_id(id: &str) -> Option<String> {
    let hex = id.get(..32)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// Whether `v` is a UUID's text (hyphenated or not).
pub fn is_uuid(v: &str) -> bool {
    let v = v.trim();
    let hex: String = v.chars().filter(|c| *c != '-').collect();
    hex.len() == 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && (v.len() == 32 || v.len() == 36)
}

/// Whether a container's labels pass a discovery's owner filter: with none
/// (`None`: explicit labels, or a pool shared on purpose) every container does;
/// with one, a container no `DockerWorker` manages (Compose, Swarm, `docker run`)
/// does, and a managed one only if `owner` created it. So a pool uses its own
/// workers and never another process's, like a `LocalWorker` pool.
pub fn owner_admits(owner: Option<&str>, labels: &BTreeMap<String, String>) -> bool {
    let Some(owner) = owner else {
        return true;
    };
    let managed = labels.get(MANAGED).is_some_and(|v| v == "true");
    !managed || labels.get(OWNER).is_some_and(|o| o == owner)
}

/// The selector as the Engine's `label` filter wants it: `key=value` each.
pub fn filter_terms(selector: &BTreeMap<String, String>) -> Vec<String> {
    selector
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect()
}

/// Whether `labels` carry the selector (an empty value matches any value), as
/// the Engine's label filter decides for containers.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.get(k).is_some_and(|have| v.is_empty() || have == v))
}

#[cfg(test)]
#[path = "labels_tests.rs"]
mod tests;

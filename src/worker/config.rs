//! The worker's configuration, as `DockerWorker` decides it: the boundary
//! between the Python layer and the core, declared once. `bindings` reads it
//! from the dict `worker.py` builds; every struct rejects unknown keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::labels::{self, Publication};
use crate::values::{
    AbsolutePath, Binds, Bytes, ContainerName, Count, Flag, Gpus, LogConfig, NanoCpus, OomScoreAdj,
    Pull, Quantity, Seconds, Ulimit, Word, Words,
};

/// TLS material for a secure worker, PEM text. Serialized without its PEM
/// text: a configuration may be shown to the user.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// CA certificate(s) that client certificates must chain to.
    #[serde(skip_serializing)]
    pub ca: String,
    /// The worker's certificate chain.
    #[serde(skip_serializing)]
    pub cert: String,
    /// The worker's private key.
    #[serde(skip_serializing)]
    pub key: String,
    /// Require client certificates.
    pub mutual: bool,
}

impl std::fmt::Debug for Tls {
    /// Never the key: a configuration may end up in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("mutual", &self.mutual)
            .finish_non_exhaustive()
    }
}

/// Everything `DockerWorker` decides about its container: the one schema of
/// what crosses from Python. `worker.py` passes the user's keywords as they
/// were given (each key below is the keyword's name); every value's type is
/// its own rule, and [`WorkerConfig::check`] holds the rules that span keys.
/// Every key is required unless its type is an `Option`, and an unknown key is
/// an error, so a key renamed on one side fails loudly instead of becoming a
/// default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Worker image.
    pub image: Word,
    /// When the image is pulled from its registry.
    pub pull: Pull,
    /// Container name, `{name_prefix}-{uid prefix}`.
    pub name: ContainerName,
    /// Network to attach; `None` is the default bridge.
    pub network: Option<String>,
    /// The worker's metadata as published in labels.
    pub publication: Publication,
    /// The discovery selector (default `wool.worker=true`), added to the labels.
    pub selector: BTreeMap<String, String>,
    /// The user's extra labels.
    pub labels: BTreeMap<String, String>,
    /// The user's extra environment.
    #[serde(rename = "environment")]
    pub env: BTreeMap<String, String>,
    /// Binds and volumes, `src:dst[:mode]`.
    #[serde(rename = "volumes")]
    pub binds: Binds,
    /// CPU limit.
    #[serde(rename = "cpus")]
    pub nano_cpus: Option<NanoCpus>,
    /// Memory limit.
    #[serde(rename = "mem_limit")]
    pub memory: Option<Bytes>,
    /// GPUs.
    pub gpus: Option<Gpus>,
    /// The caller's Python `major.minor`; the image's must match.
    pub python: String,
    /// The caller's wool version; the image's must be one it admits.
    pub wool_version: String,
    /// TLS material when the worker serves securely; `None` until the
    /// worker starts (the credentials provider is awaited then).
    pub tls: Option<Tls>,
    /// Seconds a start waits when the pool gives no timeout.
    pub start_timeout: Seconds,
    /// The server's own shutdown grace (wool's `shutdown_grace_period`).
    #[serde(rename = "shutdown_grace_period")]
    pub shutdown_grace: Seconds,
    /// How the container reaches the Engine for nested routines.
    pub engine_access: EngineAccess,
    /// wool's server-side `WorkerOptions` fields (all but `channel`).
    pub server_options: labels::Options,
    /// Seconds the server keeps an idle proxy (wool's `proxy_pool_ttl`).
    pub proxy_pool_ttl: Seconds,
    /// The admission hook, cloudpickled.
    pub backpressure: Option<Pickle>,
    /// How the container is confined.
    pub sandbox: Sandbox,
    /// A `SwarmWorker`'s placement: its container runs as a one-task Swarm
    /// service. `None`: a container on the Engine itself.
    pub swarm: Option<SwarmPlacement>,
}

impl WorkerConfig {
    /// Read a configuration and check it whole: the error names the keyword
    /// at fault as the user wrote it (`pids_limit: must be a positive count,
    /// got 0`), wherever in the schema it sits.
    pub fn read<'de, D: serde::Deserializer<'de>>(d: D) -> Result<WorkerConfig, String> {
        let cfg: WorkerConfig = read_keywords(d, "worker configuration")?;
        cfg.check()
            .map_err(|e| format!("invalid worker configuration: {e}"))?;
        Ok(cfg)
    }

    /// The rules that span keys; each value's own rule is its type's.
    pub fn check(&self) -> Result<(), String> {
        for tag in &self.publication.tags {
            if tag.contains(',') {
                return Err(format!(
                    "tag {tag:?} contains a comma; labels join tags with commas"
                ));
            }
        }
        if self.publication.identity.is_some() && !self.publication.secure {
            return Err(
                "identity requires credentials: it is proven by a name in the \
                        worker's certificate"
                    .to_owned(),
            );
        }
        if self.tls.is_some() && !self.publication.secure {
            return Err("tls is given but the publication is not secure".to_owned());
        }
        if self.swarm.is_some() && self.pull != Pull::Missing {
            return Err(
                "a SwarmWorker takes only pull='missing': each node pulls the image \
                        when it lacks it, with this process's registry credentials"
                    .to_owned(),
            );
        }
        if self.swarm.is_some() {
            let refused = self.swarm_refusals();
            if !refused.is_empty() {
                return Err(format!(
                    "a SwarmWorker cannot take {}: Swarm services have no place for it \
                     (engine_access must be 'feed' or 'none')",
                    refused.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The settings given that a Swarm service has no place for.
    fn swarm_refusals(&self) -> Vec<&'static str> {
        let sandbox = &self.sandbox;
        [
            // A task may run on another node, where this process's Engine
            // socket is not.
            ("engine_access", self.engine_access == EngineAccess::Socket),
            ("publish", self.publication.published()),
            ("security_opt", !sandbox.security_opt.is_empty()),
            ("oom_score_adj", sandbox.oom_score_adj.is_some()),
            ("gpus", self.gpus.is_some()),
            ("runtime", sandbox.runtime.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }
}

/// Read keywords as the user gave them into `T`: an error names the keyword
/// at fault as the user wrote it (`pids_limit: must be a positive count, got
/// 0`), wherever in the schema it sits, after `invalid {what}: `.
pub(super) fn read_keywords<'de, T, D>(d: D, what: &str) -> Result<T, String>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde_path_to_error::deserialize(d).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // An unknown key's path ends in the key itself: name where it was.
        let (path, inner) = match (inner.starts_with("unknown field"), path.rsplit_once('.')) {
            (true, Some((parent, _))) => (parent.to_owned(), inner),
            (true, None) => (String::new(), inner),
            (false, _) => (path, inner),
        };
        // Keywords sit at the top or in one of these groups; users know no groups.
        let keyword = ["publication.", "sandbox.", "swarm."]
            .iter()
            .find_map(|group| path.strip_prefix(group))
            .unwrap_or(&path);
        match keyword {
            "." | "" => format!("invalid {what}: {inner}"),
            keyword => format!("invalid {what}: {keyword}: {inner}"),
        }
    })
}

/// A `Standby`'s own keywords, as the user gave them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyKeywords {
    /// Containers to keep parked.
    pub size: Quantity,
    /// When a claimed container's place is filled again.
    pub refill: Refill,
    /// How long a container may take to park.
    pub park_timeout: Seconds,
}

impl StandbyKeywords {
    /// Read a standby's keywords; errors name the keyword.
    pub fn read<'de, D: serde::Deserializer<'de>>(d: D) -> Result<StandbyKeywords, String> {
        read_keywords(d, "standby")
    }
}

/// When a claimed container's place in the standby is filled again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Refill {
    /// Once the claimed worker's container is gone (its pool stopped it): a
    /// pool's first burst never shares the machine with new containers.
    Release,
    /// At once: the standby is full again sooner, at the cost of the burst.
    Claim,
}

/// Where the Swarm may place a `SwarmWorker`'s task, and how the task
/// reaches its owner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmPlacement {
    /// Placement constraints (`node.labels.gpu==true`).
    pub constraints: Words,
    /// CPUs reserved.
    #[serde(rename = "reserve_cpus")]
    pub reserve_nano_cpus: Option<NanoCpus>,
    /// Memory reserved.
    pub reserve_memory: Option<Bytes>,
    /// The owner's address the task connects to; `None`: this process's
    /// address on the worker's network, read from the Engine.
    pub lifeline_host: Option<String>,
}

/// Opaque bytes (a cloudpickle) that only the container's Python reads.
#[derive(Clone, PartialEq, Eq)]
pub struct Pickle(pub Vec<u8>);

impl std::fmt::Debug for Pickle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pickle({} bytes)", self.0.len())
    }
}

impl Serialize for Pickle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Pickle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Pickle;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<Pickle, E> {
                Ok(Pickle(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(
                self,
                v: Vec<u8>,
            ) -> std::result::Result<Pickle, E> {
                Ok(Pickle(v))
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}

/// The user's confinement choices, each already resolved by the caller (its
/// default is `DockerWorker`'s keyword default). The tmpfs mounts a read-only
/// root needs, and the TLS directory, are added by `create_spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sandbox {
    /// `user[:group]`; `None` is the image's `USER`.
    pub user: Option<Word>,
    /// Read-only root filesystem, with tmpfs for `/tmp` and the home directory.
    pub read_only: Flag,
    /// The user's own tmpfs mounts: path to options.
    #[serde(deserialize_with = "tmpfs")]
    pub tmpfs: BTreeMap<String, String>,
    /// Capabilities added back (every one is dropped first).
    pub cap_add: Words,
    /// `--security-opt` values.
    pub security_opt: Words,
    /// Most processes and threads at once; `None` is unlimited.
    pub pids_limit: Option<Count>,
    /// OOM-kill preference; positive so the kernel kills a worker before its owner.
    pub oom_score_adj: Option<OomScoreAdj>,
    /// Resource limits by name; `None` given is none set.
    #[serde(deserialize_with = "ulimits")]
    pub ulimits: BTreeMap<String, Ulimit>,
    /// Log driver and its options; `None` is the daemon's default.
    #[serde(rename = "log_config")]
    pub log: Option<LogConfig>,
    /// OCI runtime; `None` is the daemon's default.
    pub runtime: Option<Word>,
}

/// tmpfs mounts: absolute paths to options; `None` is none.
fn tmpfs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let given = Option::<BTreeMap<AbsolutePath, String>>::deserialize(d)?;
    Ok(given
        .unwrap_or_default()
        .into_iter()
        .map(|(path, options)| (path.0, options))
        .collect())
}

/// Resource limits; `None` is none.
fn ulimits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Ulimit>, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_default())
}

/// What a worker container reaches of discovery (its subscriber needs it when a
/// routine awaits another routine).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum EngineAccess {
    /// The owner's worker feed: records of the owner's scopes, no Engine API.
    #[default]
    Feed,
    /// The Engine socket itself: full control of the host's Docker.
    Socket,
    /// No Engine access: nested routines cannot discover workers.
    None,
}

/// A complete config, as JSON (serde's rules are the same from a dict), for
/// the tests of `worker`'s modules.
#[cfg(test)]
pub(super) fn complete() -> serde_json::Value {
    serde_json::json!({
        "image": "img", "pull": "missing", "name": "w", "network": null,
        "publication": {
            "uid": "6f0c1a52-3a70-4a36-9a4b-0b7f3d2a9c11", "port": 50051,
            "tags": [], "extra": {"a": "b"}, "secure": false, "identity": null,
            "options": {"compression": 0}, "network": null
        },
        "selector": {"wool.worker": "true"}, "labels": {}, "environment": {},
        "volumes": [], "cpus": null, "mem_limit": null, "gpus": null,
        "python": "3.11", "wool_version": "0.15.7", "tls": null,
        "start_timeout": 60.0, "shutdown_grace_period": 60.0, "engine_access": "feed",
        "server_options": {"proxy_pool_ttl": 60.0}, "proxy_pool_ttl": 60.0,
        "backpressure": null,
        "sandbox": {
            "user": null, "read_only": true, "tmpfs": {}, "cap_add": [],
            "security_opt": [], "pids_limit": null, "oom_score_adj": null,
            "ulimits": {"nofile": [1, 2]}, "log_config": null, "runtime": null
        },
        "swarm": null
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: serde_json::Value) -> Result<WorkerConfig, String> {
        WorkerConfig::read(value)
    }

    #[test]
    fn a_complete_config_is_read_with_its_nested_values() {
        let cfg = parse(complete()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.publication.port, labels::Port(50051));
        assert_eq!(cfg.publication.extra.0["a"], "b");
        assert_eq!(cfg.server_options["proxy_pool_ttl"], 60.0);
        assert_eq!(cfg.engine_access, EngineAccess::Feed);
        assert_eq!(cfg.sandbox.ulimits["nofile"], Ulimit { soft: 1, hard: 2 });
    }

    #[test]
    fn an_unknown_key_fails_at_every_level() {
        for pointer in ["", "/publication", "/sandbox", "/tls"] {
            let mut value = complete();
            value["tls"] = serde_json::json!({"ca": "", "cert": "", "key": "", "mutual": true});
            let Some(serde_json::Value::Object(target)) = value.pointer_mut(pointer) else {
                panic!("no object at {pointer:?}");
            };
            target.insert("bogus".to_owned(), serde_json::json!(1));
            let err = parse(value).err().unwrap_or_default();
            assert!(err.contains("unknown field `bogus`"), "{pointer}: {err}");
        }
    }

    #[test]
    fn a_missing_required_key_fails() {
        for key in [
            "labels",
            "environment",
            "volumes",
            "shutdown_grace_period",
            "server_options",
        ] {
            let mut value = complete();
            value.as_object_mut().map(|o| o.remove(key));
            let err = parse(value).err().unwrap_or_default();
            assert!(
                err.contains(&format!("missing field `{key}`")),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn an_error_names_the_keyword_as_the_user_wrote_it() {
        for (pointer, value, want) in [
            (
                "/sandbox/pids_limit",
                serde_json::json!(0),
                "pids_limit: must be a positive count",
            ),
            (
                "/mem_limit",
                serde_json::json!("lots"),
                "mem_limit: \"lots\" is not a size",
            ),
            (
                "/sandbox/ulimits/nofile",
                serde_json::json!([2, 1]),
                "ulimits.nofile: must be",
            ),
            (
                "/shutdown_grace_period",
                serde_json::json!(0),
                "shutdown_grace_period: must be a positive number of seconds",
            ),
            (
                "/engine_access",
                serde_json::json!("all"),
                "engine_access: unknown variant",
            ),
            (
                "/pull",
                serde_json::json!("sometimes"),
                "pull: unknown variant `sometimes`, expected one of `missing`, `always`, `never`",
            ),
        ] {
            let mut config = complete();
            if let Some(slot) = config.pointer_mut(pointer) {
                *slot = value;
            }
            let err = parse(config).err().unwrap_or_default();
            let err = err.trim_start_matches("invalid worker configuration: ");
            assert!(err.starts_with(want), "{pointer}: {err}");
        }
    }

    #[test]
    fn rules_across_keys_hold() {
        let mut tagged = complete();
        tagged["publication"]["tags"] = serde_json::json!(["a,b"]);
        assert!(parse(tagged).err().unwrap_or_default().contains("comma"));
        let mut anonymous = complete();
        anonymous["publication"]["identity"] = serde_json::json!("w.example");
        assert!(parse(anonymous)
            .err()
            .unwrap_or_default()
            .contains(": identity requires credentials"));
        let mut swarm = complete();
        swarm["swarm"] = serde_json::json!({"constraints": [], "reserve_cpus": null,
            "reserve_memory": null, "lifeline_host": null});
        assert!(parse(swarm.clone()).is_ok(), "the feed, by default");
        swarm["engine_access"] = serde_json::json!("socket");
        let err = parse(swarm.clone()).err().unwrap_or_default();
        assert!(err.contains("cannot take engine_access"), "{err}");
        swarm["engine_access"] = serde_json::json!("none");
        swarm["gpus"] = serde_json::json!("all");
        swarm["sandbox"]["runtime"] = serde_json::json!("runsc");
        let err = parse(swarm.clone()).err().unwrap_or_default();
        assert!(err.contains("cannot take gpus, runtime"), "{err}");
        swarm["gpus"] = serde_json::Value::Null;
        swarm["sandbox"]["runtime"] = serde_json::Value::Null;
        assert!(parse(swarm.clone()).is_ok());
        swarm["pull"] = serde_json::json!("always");
        let err = parse(swarm).err().unwrap_or_default();
        assert!(err.contains("takes only pull='missing'"), "{err}");
    }

    #[test]
    fn the_hook_is_bytes_and_never_printed() {
        // Text (the old base64 boundary) is refused.
        assert!(serde_json::from_value::<Pickle>(serde_json::json!("gAU=")).is_err());
        let hook: Pickle =
            serde::de::Deserialize::deserialize(serde::de::value::BytesDeserializer::<
                serde_json::Error,
            >::new(&[128, 5]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hook.0, [128, 5]);
        assert_eq!(format!("{hook:?}"), "Pickle(2 bytes)");
    }

    #[test]
    fn tls_debug_output_leaves_the_key_out() {
        let tls = Tls {
            ca: "CA".into(),
            cert: "CERT".into(),
            key: "SECRET".into(),
            mutual: true,
        };
        assert!(!format!("{tls:?}").contains("SECRET"));
    }
}

//! What a worker's container is created with: labels, environment, and the
//! confinement its sandbox settings imply. Pure.

use std::collections::BTreeMap;

use super::config::{Sandbox, WorkerConfig};
use crate::engine::{Confinement, CreateSpec};
use crate::labels;
use crate::serving::{self, Document};
use crate::values::Word;

/// Where TLS material lands in the container: a tmpfs of its own, filled over
/// stdin (never env, labels, layers or disk).
const TLS_DIR: &str = "/run/wool-docker/tls";
/// tmpfs options of the TLS directory (PEM files are a few KiB).
const TLS_OPTIONS: &str = "rw,noexec,nosuid,nodev,size=1m";
/// The worker's home directory under a read-only root (the image's `HOME`).
const HOME: &str = "/home/wool";
/// tmpfs options of the home directory.
const HOME_OPTIONS: &str = "rw,noexec,nosuid,nodev,size=64m";
/// tmpfs options of `/tmp` under a read-only root.
const TMP_OPTIONS: &str = "rw,noexec,nosuid,nodev,size=256m,mode=1777";

pub(super) fn create_spec(cfg: &WorkerConfig) -> CreateSpec {
    let mut labels = labels::to_labels(&cfg.publication, &cfg.selector);
    labels.extend(cfg.labels.clone());
    let mut env = worker_env(cfg);
    if cfg.tls.is_some() {
        env.insert("WOOL_DOCKER_TLS_STDIN".to_owned(), "1".to_owned());
    }
    container_spec(cfg, cfg.name.0.clone(), labels, env, cfg.tls.is_some())
}

/// A standby container parked for workers shaped like `cfg`, named `name`: the
/// same container, but labelled without the worker's metadata (it has none
/// yet) and marked standby, with the TLS directory always mounted (a claim
/// may bring TLS material) and no healthcheck (it serves nothing until then).
pub(super) fn park_spec(cfg: &WorkerConfig, name: String) -> CreateSpec {
    let mut labels = cfg.selector.clone();
    labels.insert(labels::PORT.to_owned(), cfg.publication.port.to_string());
    if let Some(network) = &cfg.publication.network {
        labels.insert(labels::NETWORK.to_owned(), network.clone());
    }
    if cfg.publication.published() {
        labels.insert(labels::PUBLISH.to_owned(), "true".to_owned());
    }
    labels.extend(cfg.labels.clone());
    labels.insert(labels::STANDBY.to_owned(), "true".to_owned());
    let env = BTreeMap::from([
        ("WOOL_DOCKER_STANDBY".to_owned(), "1".to_owned()),
        ("WOOL_PORT".to_owned(), cfg.publication.port.to_string()),
    ]);
    let mut spec = container_spec(cfg, name, labels, env, true);
    spec.no_healthcheck = true;
    spec
}

/// What a parked container is told when claimed: the environment that makes
/// its server the worker `cfg` describes, except what the user set for the
/// container (the user's environment wins, as at create).
pub(super) fn claim_env(cfg: &WorkerConfig) -> BTreeMap<String, String> {
    let mut env = worker_env(cfg);
    env.retain(|k, _| !cfg.env.contains_key(k));
    env
}

/// The environment that makes a container's server the worker `cfg`
/// describes: the one document of its uid, metadata, server settings and
/// hook (less what the user's own variables set), and the TLS paths.
fn worker_env(cfg: &WorkerConfig) -> BTreeMap<String, String> {
    let p = &cfg.publication;
    let document = Document {
        uid: Some(p.uid.clone()),
        port: Some(p.port),
        tags: Some(p.tags.clone()),
        extra: Some(p.extra.clone()),
        options: p.options.clone(),
        identity: p.identity.clone(),
        shutdown_grace: Some(cfg.shutdown_grace),
        server_options: Some(cfg.server_options.clone()),
        proxy_pool_ttl: Some(cfg.proxy_pool_ttl),
        // JSON has no bytes; the reader decodes base64.
        backpressure: cfg.backpressure.as_ref().map(|hook| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(&hook.0)
        }),
    }
    .without(&cfg.env);
    let mut env = BTreeMap::from([(serving::DOCUMENT.to_owned(), document.to_json())]);
    if let Some(tls) = &cfg.tls {
        // Paths only: the material itself arrives over stdin into a tmpfs.
        env.insert("WOOL_TLS_CA".to_owned(), format!("{TLS_DIR}/ca.pem"));
        env.insert("WOOL_TLS_CERT".to_owned(), format!("{TLS_DIR}/cert.pem"));
        env.insert("WOOL_TLS_KEY".to_owned(), format!("{TLS_DIR}/key.pem"));
        env.insert("WOOL_TLS_MUTUAL".to_owned(), tls.mutual.to_string());
    }
    env
}

/// The container both kinds share: the owner's marks, stdin control, the
/// sandbox and what it implies, and the user's environment over `env`.
fn container_spec(
    cfg: &WorkerConfig,
    name: String,
    mut labels: BTreeMap<String, String>,
    mut env: BTreeMap<String, String>,
    tls_dir: bool,
) -> CreateSpec {
    labels.insert(labels::MANAGED.to_owned(), "true".to_owned());
    labels.insert(labels::OWNER.to_owned(), crate::owner::token());
    env.insert("WOOL_DOCKER_STDIN_CONTROL".to_owned(), "1".to_owned());
    let confinement = confinement(&cfg.sandbox, tls_dir);
    if confinement.tmpfs.contains_key(HOME) {
        env.insert("HOME".to_owned(), HOME.to_owned());
    }
    if cfg
        .sandbox
        .user
        .as_ref()
        .map(Word::as_str)
        .is_some_and(is_root)
    {
        // Asked for explicitly: the entry point refuses root otherwise.
        env.insert("WOOL_ALLOW_ROOT".to_owned(), "1".to_owned());
    }
    env.extend(cfg.env.clone());
    CreateSpec {
        name,
        image: cfg.image.0.clone(),
        labels,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        network: cfg.network.clone(),
        publish: cfg
            .publication
            .published()
            .then_some(cfg.publication.port.0),
        binds: cfg.binds.0.clone(),
        mounts: Vec::new(),
        nano_cpus: cfg.nano_cpus.map(|c| c.0),
        memory: cfg.memory.map(|m| m.0),
        gpus: cfg.gpus.map(|g| g.0),
        auto_remove: true,
        stdin_once: true,
        no_healthcheck: false,
        confinement,
    }
}

/// The container's confinement: the user's choices plus what they imply.
/// Every capability is dropped; a read-only root gets size-bounded tmpfs for
/// `/tmp` and the home directory; TLS material gets a tmpfs of its own that
/// only the worker's user may enter.
fn confinement(sandbox: &Sandbox, tls: bool) -> Confinement {
    // tmpfs belongs to root unless told otherwise: give the private ones to the
    // worker's user when its uid is known (a name is resolved only in the image).
    let owner = sandbox
        .user
        .as_ref()
        .map(Word::as_str)
        .and_then(numeric_ids)
        .map(|(uid, gid)| format!(",uid={uid},gid={gid}"));
    let private = match &owner {
        Some(ids) => format!("mode=0700{ids}"),
        None => "mode=1777".to_owned(),
    };
    let mut tmpfs = BTreeMap::new();
    if sandbox.read_only.0 {
        tmpfs.insert("/tmp".to_owned(), TMP_OPTIONS.to_owned());
        tmpfs.insert(HOME.to_owned(), format!("{HOME_OPTIONS},{private}"));
    }
    if tls {
        tmpfs.insert(TLS_DIR.to_owned(), format!("{TLS_OPTIONS},{private}"));
    }
    tmpfs.extend(sandbox.tmpfs.clone());
    Confinement {
        user: sandbox.user.as_ref().map(|u| u.0.clone()),
        read_only: sandbox.read_only.0,
        tmpfs,
        cap_drop: vec!["ALL".to_owned()],
        cap_add: sandbox.cap_add.0.clone(),
        security_opt: sandbox.security_opt.0.clone(),
        pids_limit: sandbox.pids_limit.map(|c| c.0),
        oom_score_adj: sandbox.oom_score_adj.map(|o| o.0),
        ulimits: sandbox
            .ulimits
            .iter()
            .map(|(name, limit)| (name.clone(), limit.soft, limit.hard))
            .collect(),
        log: sandbox
            .log
            .as_ref()
            .map(|log| (log.driver.0.clone(), log.config.clone())),
        runtime: sandbox.runtime.as_ref().map(|r| r.0.clone()),
        group_add: Vec::new(),
    }
}

/// `uid[:gid]` when both are numbers (gid defaults to uid).
fn numeric_ids(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

/// Whether `user[:group]` names root.
fn is_root(user: &str) -> bool {
    matches!(user.split(':').next(), Some("0" | "root"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serving::ServerConfig;
    use crate::values::Flag;

    #[test]
    fn a_default_sandbox_drops_everything_and_mounts_private_tmpfs() {
        let sandbox = Sandbox {
            user: Some(Word("65532:65532".into())),
            read_only: Flag(true),
            ..Default::default()
        };
        let c = confinement(&sandbox, true);
        assert_eq!(c.cap_drop, ["ALL"]);
        assert!(c.read_only);
        assert!(c.tmpfs["/tmp"].contains("size="));
        assert!(c.tmpfs[HOME].contains("mode=0700,uid=65532,gid=65532"));
        assert!(c.tmpfs[TLS_DIR].contains("mode=0700,uid=65532,gid=65532"));
        let open = confinement(&Sandbox::default(), false);
        assert!(open.tmpfs.is_empty() && !open.read_only);
        let named = confinement(
            &Sandbox {
                user: Some(Word("wool".into())),
                ..Default::default()
            },
            true,
        );
        assert!(named.tmpfs[TLS_DIR].ends_with("mode=1777"));
    }

    #[test]
    fn what_the_owner_writes_the_container_reads_back() {
        let mut given = crate::worker::config::complete();
        given["publication"]["tags"] = serde_json::json!(["gpu", "fast"]);
        given["publication"]["identity"] = serde_json::json!("w.example");
        given["publication"]["secure"] = serde_json::json!(true);
        given["backpressure"] = serde_json::Value::Null;
        given["shutdown_grace_period"] = serde_json::json!(2.5);
        let cfg = WorkerConfig::read(given).unwrap_or_else(|e| panic!("{e}"));
        let mut env = worker_env(&cfg);
        // TLS paths name files the container has; the reader checks they exist.
        for variable in ["WOOL_TLS_CA", "WOOL_TLS_CERT", "WOOL_TLS_KEY"] {
            env.insert(variable.to_owned(), "/proc/self/status".to_owned());
        }
        env.insert("WOOL_IDENTITY".to_owned(), "w.example".to_owned());
        let read = ServerConfig::from_env(&env).unwrap_or_else(|e| panic!("{e}"));
        let p = &cfg.publication;
        assert_eq!(read.uid.as_deref(), Some(p.uid.as_str()));
        assert_eq!(read.port, p.port);
        assert_eq!(read.tags, ["fast", "gpu"]);
        assert_eq!(read.extra, p.extra);
        assert_eq!(Some(&read.options), p.options.as_ref());
        assert_eq!(read.shutdown_grace, 2.5);
        assert_eq!(read.server_options, cfg.server_options);
        assert_eq!(read.proxy_pool_ttl, Some(cfg.proxy_pool_ttl.get()));
    }

    #[test]
    fn root_is_recognised_by_name_and_number() {
        assert!(is_root("0") && is_root("root:root") && is_root("0:1000"));
        assert!(!is_root("65532") && !is_root("1000:0") && !is_root("rooty"));
        assert_eq!(numeric_ids("7"), Some((7, 7)));
        assert_eq!(numeric_ids("7:8"), Some((7, 8)));
        assert_eq!(numeric_ids("wool"), None);
    }
}

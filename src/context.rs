//! Which Docker Engine to talk to, chosen the way the docker CLI chooses it.
//!
//! In order: an address the caller gives; `DOCKER_HOST`; the context named by
//! `DOCKER_CONTEXT`; the CLI's current context (`currentContext` in
//! `config.json`); the default socket. Contexts are how Docker Desktop, rootless
//! Docker, Colima and remote Engines are usually selected: each is a
//! `meta.json` under `<config>/contexts/meta/<sha256 of its name>/` naming the
//! Engine's address, with TLS material, if any, under
//! `<config>/contexts/tls/<same>/docker/`. `<config>` is `DOCKER_CONFIG`, else
//! `~/.docker`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The Engine's socket when nothing else is chosen.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Where an Engine is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `unix://…`, `tcp://…`, `http://…`, `https://…` or `ssh://…`.
    pub host: String,
    /// A directory with `ca.pem`, `cert.pem` and `key.pem` for TLS, if TLS is used.
    pub tls_dir: Option<PathBuf>,
    /// Where the choice came from, for messages (`DOCKER_HOST`, `context "x"`, …).
    pub source: String,
}

/// What the process environment says (a seam for tests).
pub trait Environment {
    /// An environment variable, if set and not empty.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

#[derive(Deserialize)]
struct Config {
    #[serde(rename = "currentContext")]
    current_context: Option<String>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "Endpoints")]
    endpoints: Option<Endpoints>,
}

#[derive(Deserialize)]
struct Endpoints {
    docker: Option<DockerEndpoint>,
}

#[derive(Deserialize)]
struct DockerEndpoint {
    #[serde(rename = "Host")]
    host: Option<String>,
    #[serde(rename = "SkipTLSVerify")]
    skip_tls_verify: Option<bool>,
}

/// Choose the Engine as the docker CLI would.
pub fn resolve(explicit: Option<&str>, env: &dyn Environment) -> Result<Endpoint> {
    let endpoint = if let Some(host) = explicit.filter(|h| !h.is_empty()) {
        from_host(host, "docker_host", env)
    } else if let Some(host) = env.var("DOCKER_HOST") {
        from_host(&host, "DOCKER_HOST", env)
    } else {
        let config = config_dir(env);
        let named = env
            .var("DOCKER_CONTEXT")
            .or_else(|| current_context(&config));
        match named.filter(|n| n != "default") {
            Some(name) => from_context(&name, &config)?,
            None => from_host(DEFAULT_HOST, "the default socket", env),
        }
    };
    Ok(endpoint)
}

/// An address given directly; TLS from `DOCKER_TLS_VERIFY` / `DOCKER_CERT_PATH`.
fn from_host(host: &str, source: &str, env: &dyn Environment) -> Endpoint {
    let verify = env.var("DOCKER_TLS_VERIFY").is_some_and(|v| v != "0");
    let tls = host.starts_with("https://") || (verify && host.starts_with("tcp://"));
    let tls_dir = tls.then(|| {
        env.var("DOCKER_CERT_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| config_dir(env))
    });
    Endpoint {
        host: host.to_owned(),
        tls_dir,
        source: source.to_owned(),
    }
}

fn config_dir(env: &dyn Environment) -> PathBuf {
    env.var("DOCKER_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            env.var("HOME")
                .map(|h| Path::new(&h).join(".docker"))
                .unwrap_or_else(|| PathBuf::from(".docker"))
        })
}

fn current_context(config: &Path) -> Option<String> {
    let text = std::fs::read_to_string(config.join("config.json")).ok()?;
    let config: Config = serde_json::from_str(&text).ok()?;
    config.current_context.filter(|c| !c.is_empty())
}

/// The context's directory name: the hex SHA-256 of its name, as the CLI stores it.
fn context_key(name: &str) -> String {
    Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn from_context(name: &str, config: &Path) -> Result<Endpoint> {
    let key = context_key(name);
    let path = config
        .join("contexts")
        .join("meta")
        .join(&key)
        .join("meta.json");
    let source = format!("docker context {name:?}");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::InvalidArgument(format!(
            "{source} is selected but cannot be read ({}: {e}); create it with \
             `docker context create`, or select another with DOCKER_CONTEXT or DOCKER_HOST",
            path.display()
        ))
    })?;
    let meta: Meta = serde_json::from_str(&text).map_err(|e| {
        Error::InvalidArgument(format!("{source}: {} is not valid: {e}", path.display()))
    })?;
    let docker = meta.endpoints.and_then(|e| e.docker);
    let host = docker
        .as_ref()
        .and_then(|d| d.host.clone())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{source} names no Docker Engine address (Endpoints.docker.Host in {})",
                path.display()
            ))
        })?;
    let tls = config
        .join("contexts")
        .join("tls")
        .join(&key)
        .join("docker");
    let skip_verify = docker.and_then(|d| d.skip_tls_verify).unwrap_or(false);
    let tls_dir = (tls.join("ca.pem").exists() || host.starts_with("https://")) && !skip_verify;
    Ok(Endpoint {
        host,
        tls_dir: tls_dir.then_some(tls),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Env(HashMap<&'static str, String>);

    impl Environment for Env {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn env(pairs: &[(&'static str, &str)]) -> Env {
        Env(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect())
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wool-docker-context-test-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_context(config: &Path, name: &str, host: &str) {
        let dir = config.join("contexts/meta").join(context_key(name));
        std::fs::create_dir_all(&dir).unwrap();
        let meta = format!(
            r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
        );
        std::fs::write(dir.join("meta.json"), meta).unwrap();
    }

    #[test]
    fn precedence_is_explicit_then_docker_host_then_contexts_then_default() {
        let config = scratch("precedence");
        write_context(&config, "other", "unix:///run/other.sock");
        write_context(&config, "current", "tcp://10.0.0.1:2375");
        std::fs::write(
            config.join("config.json"),
            r#"{"currentContext":"current"}"#,
        )
        .unwrap();
        let cfg = config.to_str().unwrap();
        let all = env(&[
            ("DOCKER_CONFIG", cfg),
            ("DOCKER_HOST", "unix:///run/host.sock"),
            ("DOCKER_CONTEXT", "other"),
        ]);
        assert_eq!(
            resolve(Some("unix:///x.sock"), &all).unwrap().host,
            "unix:///x.sock"
        );
        assert_eq!(resolve(None, &all).unwrap().host, "unix:///run/host.sock");
        let no_host = env(&[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "other")]);
        assert_eq!(
            resolve(None, &no_host).unwrap().host,
            "unix:///run/other.sock"
        );
        let current = env(&[("DOCKER_CONFIG", cfg)]);
        assert_eq!(resolve(None, &current).unwrap().host, "tcp://10.0.0.1:2375");
        let default = env(&[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "default")]);
        assert_eq!(resolve(None, &default).unwrap().host, DEFAULT_HOST);
        let _ = std::fs::remove_dir_all(&config);
    }

    #[test]
    fn a_missing_context_is_a_clear_error_and_ssh_contexts_are_read() {
        let config = scratch("errors");
        write_context(&config, "remote", "ssh://me@host");
        let cfg = config.to_str().unwrap();
        let missing = env(&[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "nope")]);
        let e = resolve(None, &missing).unwrap_err().to_string();
        assert!(e.contains("docker context \"nope\""), "{e}");
        let ssh = env(&[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "remote")]);
        let endpoint = resolve(None, &ssh).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(endpoint.host, "ssh://me@host");
        let _ = std::fs::remove_dir_all(&config);
    }

    #[test]
    fn context_keys_are_the_sha256_of_the_name() {
        // `printf default | sha256sum`
        assert_eq!(
            context_key("default"),
            "37a8eec1ce19687d132fe29051dca629d164e2c4958ba141d5f4133a33f0688f"
        );
    }

    #[test]
    fn tls_comes_from_the_context_or_the_environment() {
        let config = scratch("tls");
        write_context(&config, "secure", "tcp://10.0.0.2:2376");
        let tls = config
            .join("contexts/tls")
            .join(context_key("secure"))
            .join("docker");
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::write(tls.join("ca.pem"), "x").unwrap();
        let cfg = config.to_str().unwrap();
        let e = env(&[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "secure")]);
        assert_eq!(resolve(None, &e).unwrap().tls_dir, Some(tls));
        let e = env(&[
            ("DOCKER_HOST", "tcp://h:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", "/certs"),
        ]);
        assert_eq!(
            resolve(None, &e).unwrap().tls_dir,
            Some(PathBuf::from("/certs"))
        );
        let e = env(&[("DOCKER_HOST", "tcp://h:2375")]);
        assert_eq!(resolve(None, &e).unwrap().tls_dir, None);
        let _ = std::fs::remove_dir_all(&config);
    }
}

//! What a worker container serves with, and its one reader. The owner hands
//! a container one document, [`Document`] in `WOOL_DOCKER_WORKER` (at create,
//! and in a standby claim); a user's `docker run`, Compose file or Swarm
//! service gives the documented `WOOL_*` variables. A field the document has
//! wins over its variable (the owner's decision over the image's `ENV`); one it
//! leaves out (the user set that variable in `environment=`) is the
//! variable's. The entry point calls this through `_native`, so the container
//! checks its configuration with the same types as the owner that wrote it.
//! Pure, but for the TLS files' check.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::labels::{self, Extra, Options, Port};
use crate::values::Seconds;

/// Host bound when `WOOL_BIND_HOST` is unset: every interface, so a published
/// port reaches the server.
pub const DEFAULT_BIND_HOST: &str = "0.0.0.0";
/// Seconds the server gives open calls at shutdown (wool's own default).
pub const DEFAULT_SHUTDOWN_GRACE: f64 = 60.0;
/// Seconds between SIGTERM and the drain: ample for discovery to drop the
/// worker and for calls already routed to it to arrive.
pub const DEFAULT_DEREGISTER_DELAY: f64 = 1.0;
/// The variable that holds the owner's document.
pub const DOCUMENT: &str = "WOOL_DOCKER_WORKER";
/// The TLS file variables: all set or none.
const TLS_VARIABLES: [&str; 3] = ["WOOL_TLS_CA", "WOOL_TLS_CERT", "WOOL_TLS_KEY"];

/// A bad variable: its name and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarError {
    pub variable: String,
    pub problem: String,
}

impl std::fmt::Display for VarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.variable, self.problem)
    }
}

fn bad(variable: &str, problem: impl Into<String>) -> VarError {
    VarError {
        variable: variable.to_owned(),
        problem: problem.into(),
    }
}

/// The worker's configuration, read from its environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    pub host: String,
    pub port: Port,
    /// `None`: derived from the container id by the entry point.
    pub uid: Option<String>,
    pub tags: Vec<String>,
    pub extra: Extra,
    pub options: Options,
    pub identity: Option<String>,
    /// CA, certificate and key paths.
    pub tls: Option<(String, String, String)>,
    pub tls_mutual: bool,
    pub shutdown_grace: f64,
    pub stdin_control: bool,
    pub deregister_delay: f64,
    pub server_options: Options,
    pub proxy_pool_ttl: Option<f64>,
    #[serde(serialize_with = "as_bytes")]
    pub backpressure: Option<Vec<u8>>,
}

fn as_bytes<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(bytes) => s.serialize_bytes(bytes),
        None => s.serialize_none(),
    }
}

/// The worker's own settings as its owner decided them: one typed document.
/// Every field is optional: one left out is read from its variable (named
/// beside it), then its default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Document {
    /// `WOOL_UID`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// `WOOL_PORT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// `WOOL_TAGS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// `WOOL_EXTRA`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<Extra>,
    /// `WOOL_OPTIONS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
    /// `WOOL_IDENTITY`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// `WOOL_SHUTDOWN_GRACE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace: Option<Seconds>,
    /// `WOOL_SERVER_OPTIONS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_options: Option<Options>,
    /// `WOOL_PROXY_POOL_TTL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_pool_ttl: Option<Seconds>,
    /// `WOOL_BACKPRESSURE`: the cloudpickled hook, base64 as JSON has no bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backpressure: Option<String>,
}

impl Document {
    /// Leave out what the user's own variables set (the user's environment
    /// wins over the owner's decision, as it always did).
    pub fn without(mut self, user: &BTreeMap<String, String>) -> Document {
        fn unless_set<T>(user: &BTreeMap<String, String>, variable: &str, field: &mut Option<T>) {
            if user.contains_key(variable) {
                *field = None;
            }
        }
        unless_set(user, "WOOL_UID", &mut self.uid);
        unless_set(user, "WOOL_PORT", &mut self.port);
        unless_set(user, "WOOL_TAGS", &mut self.tags);
        unless_set(user, "WOOL_EXTRA", &mut self.extra);
        unless_set(user, "WOOL_OPTIONS", &mut self.options);
        unless_set(user, "WOOL_IDENTITY", &mut self.identity);
        unless_set(user, "WOOL_SHUTDOWN_GRACE", &mut self.shutdown_grace);
        unless_set(user, "WOOL_SERVER_OPTIONS", &mut self.server_options);
        unless_set(user, "WOOL_PROXY_POOL_TTL", &mut self.proxy_pool_ttl);
        unless_set(user, "WOOL_BACKPRESSURE", &mut self.backpressure);
        self
    }

    /// The document as the text of its variable.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The document in `env`, checked; none there is the empty one.
    fn read(env: &Env) -> Result<Document, VarError> {
        let Some(raw) = var(env, DOCUMENT) else {
            return Ok(Document::default());
        };
        let mut de = serde_json::Deserializer::from_str(raw);
        let doc: Document = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            bad(DOCUMENT, format!("{path}: {}", e.into_inner()))
        })?;
        if let Some(uid) = doc.uid.as_deref().filter(|u| !labels::is_uuid(u)) {
            return Err(bad(DOCUMENT, format!("uid: not a UUID: {uid:?}")));
        }
        if let Some(tag) = doc.tags.iter().flatten().find(|t| t.contains(',')) {
            return Err(bad(DOCUMENT, format!("tags: {tag:?} contains a comma")));
        }
        Ok(doc)
    }
}

/// The environment a reader looks at.
pub type Env = BTreeMap<String, String>;

/// A variable's value, trimmed; `None` when unset or blank.
fn var<'a>(env: &'a Env, name: &str) -> Option<&'a str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// A boolean variable (`1/true/yes/on`, `0/false/no/off`, any case); `default`
/// when unset or blank.
pub fn flag(env: &Env, variable: &str, default: bool) -> Result<bool, VarError> {
    let Some(raw) = var(env, variable) else {
        return Ok(default);
    };
    match raw.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(bad(variable, format!("not a boolean: {:?}", env[variable]))),
    }
}

/// The port: the document's, else `WOOL_PORT`, else the default port.
pub fn port(env: &Env) -> Result<Port, VarError> {
    if let Some(port) = Document::read(env)?.port {
        return Ok(port);
    }
    var_port(env)
}

fn var_port(env: &Env) -> Result<Port, VarError> {
    parsed(env, "WOOL_PORT", Port::parse)
}

/// A number of seconds; `check` says which numbers are allowed.
fn seconds(
    env: &Env,
    variable: &str,
    check: impl Fn(f64) -> Result<f64, String>,
) -> Result<Option<f64>, VarError> {
    let Some(raw) = var(env, variable) else {
        return Ok(None);
    };
    let value: f64 = raw
        .parse()
        .map_err(|_| bad(variable, format!("not a number: {raw:?}")))?;
    check(value).map(Some).map_err(|e| bad(variable, e))
}

/// A JSON object variable; unset or blank is `{}`.
fn json_object(env: &Env, variable: &str) -> Result<Options, VarError> {
    let Some(raw) = var(env, variable) else {
        return Ok(Options::new());
    };
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(map)) => Ok(map.into_iter().collect()),
        Ok(other) => Err(bad(
            variable,
            format!("must be a JSON object, not {}", json_kind(&other)),
        )),
        Err(e) => Err(bad(variable, format!("not valid JSON: {e}"))),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The TLS paths: all three or none, each an existing file.
fn tls(env: &Env) -> Result<Option<(String, String, String)>, VarError> {
    let paths = TLS_VARIABLES.map(|v| var(env, v));
    if paths.iter().all(Option::is_none) {
        return Ok(None);
    }
    if let Some(i) = paths.iter().position(Option::is_none) {
        return Err(bad(
            TLS_VARIABLES[i],
            format!(
                "unset, but TLS needs all of {} or none",
                TLS_VARIABLES.join(", ")
            ),
        ));
    }
    for (variable, path) in TLS_VARIABLES.into_iter().zip(paths.iter().flatten()) {
        if !Path::new(path).is_file() {
            return Err(bad(variable, format!("no such file: {path}")));
        }
    }
    let [ca, cert, key] = paths.map(|p| p.unwrap_or_default().to_owned());
    Ok(Some((ca, cert, key)))
}

/// The document's value when it has one, else what `read` makes of the
/// field's variable: the owner's decision over the image's `ENV`.
fn either<T>(given: Option<T>, read: impl FnOnce() -> Result<T, VarError>) -> Result<T, VarError> {
    given.map_or_else(read, Ok)
}

/// A variable parsed by `parse`; unset or blank is the default.
fn parsed<T: Default, E: std::fmt::Display>(
    env: &Env,
    variable: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, VarError> {
    var(env, variable).map_or(Ok(T::default()), |raw| {
        parse(raw).map_err(|e| bad(variable, e.to_string()))
    })
}

/// A variable's trimmed text, owned.
fn var_owned(env: &Env, name: &str) -> Option<String> {
    var(env, name).map(str::to_owned)
}

/// `WOOL_UID`: a UUID, or unset.
fn var_uid(env: &Env) -> Result<Option<String>, VarError> {
    match var(env, "WOOL_UID") {
        Some(uid) if labels::is_uuid(uid) => Ok(Some(uid.to_owned())),
        Some(uid) => Err(bad("WOOL_UID", format!("not a UUID: {uid:?}"))),
        None => Ok(None),
    }
}

/// `WOOL_TAGS`: comma-separated, blanks dropped.
fn var_tags(env: &Env) -> Vec<String> {
    var(env, "WOOL_TAGS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `WOOL_DEREGISTER_DELAY`'s rule: zero waits not at all.
fn non_negative(v: f64) -> Result<f64, String> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("must be a non-negative number of seconds, got {v}"))
    }
}

/// `WOOL_BACKPRESSURE`: the hook, or unset.
fn var_hook(env: &Env) -> Result<Option<Vec<u8>>, VarError> {
    let raw = var(env, "WOOL_BACKPRESSURE");
    raw.map(|raw| decode_hook("WOOL_BACKPRESSURE", raw))
        .transpose()
}

/// The cloudpickled backpressure hook from its base64 text in `variable`.
fn decode_hook(variable: &str, raw: &str) -> Result<Vec<u8>, VarError> {
    base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|_| bad(variable, "the backpressure hook is not base64 text"))
}

impl ServerConfig {
    /// Read and check the document and every variable the worker reads; the
    /// first bad one is the error.
    pub fn from_env(env: &Env) -> Result<ServerConfig, VarError> {
        let doc = Document::read(env)?;
        let positive = |v: f64| Seconds::new(v).map(Seconds::get);
        let host = var(env, "WOOL_BIND_HOST").unwrap_or(DEFAULT_BIND_HOST);
        let uid = either(doc.uid.map(Some), || var_uid(env))?;
        let mut tags = either(doc.tags, || Ok(var_tags(env)))?;
        tags.sort();
        tags.dedup();
        let extra = either(doc.extra, || parsed(env, "WOOL_EXTRA", Extra::read))?;
        let identity = either(doc.identity.map(Some), || {
            Ok(var_owned(env, "WOOL_IDENTITY"))
        })?;
        let tls = tls(env)?;
        if identity.is_some() && tls.is_none() {
            return Err(bad(
                "WOOL_IDENTITY",
                "requires TLS (WOOL_TLS_CA, WOOL_TLS_CERT, WOOL_TLS_KEY): an identity \
                 is proven by the worker's certificate",
            ));
        }
        let grace = doc.shutdown_grace.map(|g| Some(g.get()));
        let shutdown_grace = either(grace, || seconds(env, "WOOL_SHUTDOWN_GRACE", positive))?;
        let port = either(doc.port, || var_port(env))?;
        let options = either(doc.options, || json_object(env, "WOOL_OPTIONS"))?;
        let tls_mutual = flag(env, "WOOL_TLS_MUTUAL", true)?;
        let stdin_control = flag(env, "WOOL_DOCKER_STDIN_CONTROL", false)?;
        let deregister_delay = seconds(env, "WOOL_DEREGISTER_DELAY", non_negative)?;
        let server_options = either(doc.server_options, || {
            json_object(env, "WOOL_SERVER_OPTIONS")
        })?;
        let ttl = doc.proxy_pool_ttl.map(|t| Some(t.get()));
        let proxy_pool_ttl = either(ttl, || seconds(env, "WOOL_PROXY_POOL_TTL", positive))?;
        let hook = doc.backpressure.map(|h| decode_hook(DOCUMENT, &h));
        let backpressure = either(hook.transpose()?.map(Some), || var_hook(env))?;
        Ok(ServerConfig {
            host: host.to_owned(),
            port,
            uid,
            tags,
            extra,
            options,
            identity,
            tls,
            tls_mutual,
            shutdown_grace: shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            stdin_control,
            deregister_delay: deregister_delay.unwrap_or(DEFAULT_DEREGISTER_DELAY),
            server_options,
            proxy_pool_ttl,
            backpressure,
        })
    }
}

#[cfg(test)]
#[path = "serving_tests.rs"]
mod tests;

//! The [`Engine`] handle: connect, negotiate the API version, one method per
//! Engine call, each returning this crate's own types (see `model`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CreateContainerOptionsBuilder,
    EventsOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::convert::{
    container_create_body, convert_output, event_of, from_inspect, from_summary, message_of,
    now_nanos, rfc3339_nanos, role_of, status_of, tail,
};
use super::model::{
    ContainerInfo, CreateSpec, EventStream, Flights, ImageInfo, InputWriter, NetworkInfo,
    OutputStream, SwarmRole, TaskInfo,
};
use super::ssh::Tunnel;
use super::transport::Transport;
use crate::backoff::Policy;
use crate::context;
use crate::error::{Error, Result};

/// Deadline for one request (not for streams, whose headers arrive at once).
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// Removals retried after a conflict other than a removal in progress.
const REMOVE_RETRIES: u32 = 6;
/// Their delays: 50 ms doubling, about 3 s in all.
const REMOVE_BACKOFF: Policy = Policy::new(Duration::from_millis(50), Duration::from_millis(1600));
/// What a query value keeps unencoded: RFC 3986's unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The User-Agent of every request.
const USER_AGENT: &str = concat!("wool-docker/", env!("CARGO_PKG_VERSION"));

/// A connected, version-negotiated Docker Engine client. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(super) docker: Docker,
    pub(super) host: Arc<str>,
    pub(super) api_version: Arc<str>,
    /// The Engine's clock minus ours, in nanoseconds, once read
    /// (`i64::MIN`: not yet).
    clock_offset: Arc<std::sync::atomic::AtomicI64>,
    /// The endpoint, for `transport`.
    endpoint: Arc<context::Endpoint>,
    /// The same endpoint through hyper, for the answer bollard cannot model;
    /// made on first use (only Swarm managers are asked for it).
    pub(super) transport: Arc<OnceLock<std::result::Result<Transport, String>>>,
    /// An `ssh://` Engine's forward, which `endpoint` leads through; it ends
    /// with the last clone.
    _tunnel: Option<Arc<Tunnel>>,
    /// The image pulls under way, which later callers join.
    pub(super) pulls: Flights,
}

impl Engine {
    /// Connect the way the docker CLI does (see `context`): `host`, else
    /// `DOCKER_HOST`, else the selected docker context, else the default socket.
    /// Then negotiate the API version with the daemon (never pinned).
    pub async fn connect(host: Option<&str>) -> Result<Engine> {
        Engine::connect_to(&context::resolve(host, &context::ProcessEnvironment)?).await
    }

    /// Connect to a resolved endpoint and negotiate the API version. An
    /// `ssh://` Engine is reached through a socket `ssh` forwards (see `ssh`);
    /// messages still name its address.
    pub async fn connect_to(endpoint: &context::Endpoint) -> Result<Engine> {
        let host = endpoint.host.clone();
        let (endpoint, tunnel) = if host.starts_with("ssh://") {
            let tunnel = Tunnel::open(&host).await?;
            let local = context::Endpoint {
                host: format!("unix://{}", tunnel.socket().display()),
                tls_dir: None,
                source: endpoint.source.clone(),
            };
            (local, Some(Arc::new(tunnel)))
        } else {
            (endpoint.clone(), None)
        };
        let docker = open(&endpoint)?;
        let version: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
        let prefix = version.clone();
        // bollard 0.21 joins the request path with a leading slash, which drops its
        // own `/vX.Y` prefix (bollard issue 736); put the negotiated version back so
        // the daemon answers in the version we negotiated, not its own default.
        let docker = docker.with_request_modifier(move |mut req| {
            req.headers_mut().insert(
                http::header::USER_AGENT,
                http::HeaderValue::from_static(USER_AGENT),
            );
            if let Some(v) = prefix.get() {
                if let Some(uri) = versioned_uri(req.uri(), v) {
                    *req.uri_mut() = uri;
                }
            }
            req
        });
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| Error::engine("negotiate API version", &host, e))?;
        let negotiated = docker.client_version().to_string();
        let _ = version.set(negotiated.clone());
        Ok(Engine {
            docker,
            host: host.into(),
            api_version: negotiated.into(),
            clock_offset: Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN)),
            endpoint: Arc::new(endpoint),
            transport: Arc::new(OnceLock::new()),
            _tunnel: tunnel,
            pulls: Flights::default(),
        })
    }

    /// The Engine address in use.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The negotiated API version, e.g. `1.41`.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    pub(super) fn err(&self, op: &'static str, e: bollard::errors::Error) -> Error {
        Error::engine(op, &self.host, e)
    }

    /// The Engine's own clock, Unix nanoseconds (`None` if it does not say).
    /// Event filters (`since`) are applied by that clock, which may differ from
    /// ours (Docker Desktop's VM, a remote Engine). `GET /info` is slow (tens of
    /// ms), so it is kept as an offset to ours and read again only when `fresh`
    /// (after a gap: the daemon may have restarted, or either clock jumped).
    pub async fn now_ns(&self, fresh: bool) -> Result<Option<i64>> {
        use std::sync::atomic::Ordering;
        let offset = self.clock_offset.load(Ordering::Relaxed);
        if offset != i64::MIN && !fresh {
            return Ok(Some(now_nanos() + offset));
        }
        let asked = now_nanos();
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| self.err("read the Engine's system information", e))?;
        let answered = now_nanos();
        let Some(engine) = info.system_time.as_deref().and_then(rfc3339_nanos) else {
            return Ok(None);
        };
        // The Engine read its clock somewhere between; the midpoint errs by half
        // the round trip at most, well inside the margin callers keep.
        let offset = engine - (asked + (answered - asked) / 2);
        self.clock_offset.store(offset, Ordering::Relaxed);
        Ok(Some(engine))
    }

    /// Check that the daemon answers.
    pub async fn ping(&self) -> Result<()> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| self.err("ping", e))
    }

    /// Inspect an image; a 404 is [`Error::ImageNotFound`].
    pub async fn image(&self, image: &str) -> Result<ImageInfo> {
        match self.docker.inspect_image(image).await {
            Ok(inspect) => Ok(ImageInfo {
                id: inspect.id.unwrap_or_default(),
                labels: inspect
                    .config
                    .and_then(|c| c.labels)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            }),
            Err(e) if status_of(&e) == Some(404) => Err(Error::ImageNotFound {
                image: image.to_owned(),
            }),
            Err(e) => Err(self.err("inspect image", e)),
        }
    }

    /// Build an image from an uncompressed tar context with the classic builder.
    /// Returns the image id; the output's last lines ride along on failure.
    pub async fn build_image(&self, context: Vec<u8>, tag: &str) -> Result<String> {
        let options = BuildImageOptionsBuilder::default()
            .t(tag)
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_full(context.into())));
        let mut log: Vec<String> = Vec::new();
        let mut image_id = None;
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(Error::BuildFailed {
                        tag: tag.to_owned(),
                        message: error,
                        log_tail: tail(&log, 30),
                    })
                }
                Err(e) => {
                    let e = self.err("build image", e);
                    if e.is_unreachable() {
                        return Err(e);
                    }
                    return Err(Error::BuildFailed {
                        tag: tag.to_owned(),
                        message: e.to_string(),
                        log_tail: tail(&log, 30),
                    });
                }
            };
            if let Some(text) = info.stream {
                log.extend(text.lines().map(str::to_owned));
            }
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                return Err(Error::BuildFailed {
                    tag: tag.to_owned(),
                    message: error,
                    log_tail: tail(&log, 30),
                });
            }
            if let Some(id) = info.aux.and_then(|a| a.id) {
                image_id = Some(id);
            }
        }
        match image_id {
            Some(id) => Ok(id),
            None => Ok(self.image(tag).await?.id),
        }
    }

    /// Remove an image (tests and benchmarks clean up what they tag).
    pub async fn remove_image(&self, image: &str) -> Result<()> {
        let options = bollard::query_parameters::RemoveImageOptionsBuilder::default()
            .force(true)
            .build();
        match self.docker.remove_image(image, Some(options), None).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.err("remove image", e)),
        }
    }

    /// Inspect a network; a 404 is [`Error::NetworkNotFound`].
    pub async fn network(&self, network: &str) -> Result<NetworkInfo> {
        let options = bollard::query_parameters::InspectNetworkOptionsBuilder::default().build();
        match self.docker.inspect_network(network, Some(options)).await {
            Ok(n) => Ok(NetworkInfo {
                id: n.id.unwrap_or_default(),
                name: n.name.unwrap_or_else(|| network.to_owned()),
                scope: n.scope.unwrap_or_default(),
                driver: n.driver.unwrap_or_default(),
                attachable: n.attachable.unwrap_or(false),
                subnets: n
                    .ipam
                    .and_then(|ipam| ipam.config)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.subnet)
                    .collect(),
            }),
            Err(e) if status_of(&e) == Some(404) => Err(Error::NetworkNotFound {
                network: network.to_owned(),
            }),
            Err(e) => Err(self.err("inspect network", e)),
        }
    }

    /// Create a container; returns its id.
    pub async fn create_container(&self, spec: &CreateSpec) -> Result<String> {
        let body = container_create_body(spec, super::reach::bind_address(&self.host));
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        match self.docker.create_container(Some(options), body).await {
            Ok(created) => Ok(created.id),
            Err(e) => match status_of(&e) {
                Some(404) if message_of(&e).contains("network") => Err(Error::NetworkNotFound {
                    network: spec.network.clone().unwrap_or_default(),
                }),
                Some(404) => Err(Error::ImageNotFound {
                    image: spec.image.clone(),
                }),
                Some(400 | 409) => Err(Error::ContainerRejected {
                    id: spec.name.clone(),
                    message: message_of(&e),
                }),
                _ => Err(self.err("create container", e)),
            },
        }
    }

    /// Attach to a container's stdio (before start, so no output is missed).
    pub async fn attach(&self, id: &str, stdin: bool) -> Result<(OutputStream, InputWriter)> {
        let options = AttachContainerOptionsBuilder::default()
            .stdin(stdin)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .logs(true)
            .build();
        let attached = self
            .docker
            .attach_container(id, Some(options))
            .await
            .map_err(|e| self.err("attach to container", e))?;
        let host = self.host.clone();
        let output = attached.output.filter_map(move |item| {
            let host = host.clone();
            async move { convert_output(item, &host) }
        });
        Ok((Box::pin(output), attached.input))
    }

    /// Follow (or read) a container's output from `since_secs` (Unix seconds; 0: all).
    pub fn logs(&self, id: &str, follow: bool, since_secs: i64, timestamps: bool) -> OutputStream {
        let options = LogsOptionsBuilder::default()
            .follow(follow)
            .timestamps(timestamps)
            .since(i32::try_from(since_secs).unwrap_or(0))
            .stdout(true)
            .stderr(true)
            .build();
        let host = self.host.clone();
        Box::pin(self.docker.logs(id, Some(options)).filter_map(move |item| {
            let host = host.clone();
            async move { convert_output(item, &host) }
        }))
    }

    /// Start a created container.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(()),
            Err(e) => match status_of(&e) {
                Some(404) if message_of(&e).contains("network") => Err(Error::ContainerRejected {
                    id: id.to_owned(),
                    message: message_of(&e),
                }),
                Some(400 | 404 | 500) => Err(Error::ContainerRejected {
                    id: id.to_owned(),
                    message: message_of(&e),
                }),
                _ => Err(self.err("start container", e)),
            },
        }
    }

    /// Wait for the container's next exit; returns the exit code. Call before start
    /// to see the exit of a container that removes itself.
    pub async fn wait_exit(&self, id: &str) -> Result<i64> {
        let options = WaitContainerOptionsBuilder::default()
            .condition("next-exit")
            .build();
        let mut stream = self.docker.wait_container(id, Some(options));
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) if status_of(&e) == Some(404) => Ok(-1),
            Some(Err(e)) => Err(self.err("wait for container", e)),
            None => Ok(-1),
        }
    }

    /// Wait until a container (that removes itself) is gone.
    pub async fn wait_removed(&self, id: &str) -> Result<()> {
        let options = WaitContainerOptionsBuilder::default()
            .condition("removed")
            .build();
        let mut stream = self.docker.wait_container(id, Some(options));
        match stream.next().await {
            // bollard reports a non-zero exit code as an error; the container is
            // gone all the same. A 404 means it was gone before we asked.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { .. })) => Ok(()),
            Some(Err(e)) if status_of(&e).is_none() => Err(self.err("wait for removal", e)),
            _ => Ok(()),
        }
    }

    /// Send a signal; a container that is gone or not running is not an error.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let options = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        match self.docker.kill_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(self.err("kill container", e)),
        }
    }

    /// Stop with Docker's own escalation (SIGTERM, then SIGKILL after `timeout`).
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        let secs = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let options = bollard::query_parameters::StopContainerOptionsBuilder::default()
            .t(secs)
            .build();
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(304 | 404 | 409)) => Ok(()),
            Err(e) => Err(self.err("stop container", e)),
        }
    }

    /// Remove a container and its anonymous volumes. Gone already is success; a
    /// removal the daemon already has in progress is awaited.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let mut backoff = REMOVE_BACKOFF.start();
        for attempt in 0.. {
            match self
                .docker
                .remove_container(id, Some(options.clone()))
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if status_of(&e) == Some(404) => return Ok(()),
                // Someone (auto-remove) is removing it already: wait for that.
                Err(e) if status_of(&e) == Some(409) && message_of(&e).contains("in progress") => {
                    return self.wait_removed(id).await
                }
                // Any other conflict (e.g. a start still under way, as when a
                // start is cancelled) passes: try again, a few times.
                Err(e) if status_of(&e) == Some(409) && attempt < REMOVE_RETRIES => {
                    tracing::debug!(id = %id, attempt, error = %e, "remove conflicted; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(self.err("remove container", e)),
            }
        }
        Ok(())
    }

    /// Pause a container (tests use it; discovery treats paused as not serving).
    pub async fn pause(&self, id: &str) -> Result<()> {
        self.docker
            .pause_container(id)
            .await
            .map_err(|e| self.err("pause container", e))
    }

    /// Unpause a container.
    pub async fn unpause(&self, id: &str) -> Result<()> {
        self.docker
            .unpause_container(id)
            .await
            .map_err(|e| self.err("unpause container", e))
    }

    /// Inspect one container; `None` when it does not exist.
    pub async fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Ok(Some(from_inspect(c, &self.published_host()))),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.err("inspect container", e)),
        }
    }

    /// List containers carrying all of `labels` (`key` or `key=value`).
    pub async fn list(&self, labels: &[String], all: bool) -> Result<Vec<ContainerInfo>> {
        let filters = HashMap::from([("label".to_owned(), labels.to_vec())]);
        let options = ListContainersOptionsBuilder::default()
            .all(all)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.err("list containers", e))?;
        let host = self.published_host();
        Ok(list.into_iter().map(|c| from_summary(c, &host)).collect())
    }

    /// Container events for containers carrying all of `labels`, from `since_nanos`
    /// (Unix time in nanoseconds) on. The stream ends on any error; reconnect.
    pub fn container_events(&self, labels: &[String], since_nanos: Option<i64>) -> EventStream {
        let mut filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            // Only lifecycle actions: healthchecks alone would otherwise send three
            // exec events per probe. `health_status` matches its `: healthy` forms.
            (
                "event".to_owned(),
                [
                    "start",
                    "die",
                    "kill",
                    "stop",
                    "pause",
                    "unpause",
                    "oom",
                    "destroy",
                    "rename",
                    "health_status",
                ]
                .map(str::to_owned)
                .to_vec(),
            ),
        ]);
        if !labels.is_empty() {
            filters.insert("label".to_owned(), labels.to_vec());
        }
        self.events(filters, since_nanos)
    }

    /// Connect and disconnect events of one network (or all); `id` is the
    /// container's. (A `network` filter on container events drops them all, so
    /// this is a stream of its own.)
    pub fn network_events(&self, network: Option<&str>, since_nanos: Option<i64>) -> EventStream {
        let mut filters = HashMap::from([("type".to_owned(), vec!["network".to_owned()])]);
        if let Some(network) = network {
            filters.insert("network".to_owned(), vec![network.to_owned()]);
        }
        self.events(filters, since_nanos)
    }

    fn events(
        &self,
        filters: HashMap<String, Vec<String>>,
        since_nanos: Option<i64>,
    ) -> EventStream {
        let mut builder = EventsOptionsBuilder::default().filters(&filters);
        // Unix seconds with fractional nanoseconds: 20.10 answers 500 to other forms.
        let since = since_nanos.map(|n| format!("{}.{:09}", n / 1_000_000_000, n % 1_000_000_000));
        if let Some(since) = &since {
            builder = builder.since(since);
        }
        let host = self.host.clone();
        Box::pin(
            self.docker
                .events(Some(builder.build()))
                .filter_map(move |item| {
                    let host = host.clone();
                    async move {
                        match item {
                            Ok(msg) => event_of(msg).map(Ok),
                            Err(e) => Some(Err(Error::engine("stream events", &host, e))),
                        }
                    }
                }),
        )
    }

    /// Service and node events, which a Swarm manager sends (tasks have none
    /// on Engine 20.10): a sign to re-read the task list. `id` is the service's
    /// or node's.
    pub fn swarm_events(&self, since_nanos: Option<i64>) -> EventStream {
        let filters = HashMap::from([(
            "type".to_owned(),
            vec!["service".to_owned(), "node".to_owned()],
        )]);
        self.events(filters, since_nanos)
    }

    /// This Engine's place in a Swarm. `GET /info` costs tens of ms: callers
    /// keep it off a listing's path.
    pub async fn swarm_role(&self) -> Result<SwarmRole> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| self.err("read the Engine's system information", e))?;
        Ok(role_of(info.swarm))
    }

    /// Every task the Swarm wants running, on every node (a manager only).
    /// Read as JSON (see `transport`): bollard's `Task` model has no
    /// `NetworksAttachments`, which is where a task's addresses are.
    pub async fn tasks(&self) -> Result<Vec<TaskInfo>> {
        self.tasks_where(r#"{"desired-state":["running"]}"#).await
    }

    /// The tasks that `filters` (the Engine's JSON filter text) selects.
    pub(super) async fn tasks_where(&self, filters: &str) -> Result<Vec<TaskInfo>> {
        let path = tasks_path(&self.api_version, filters);
        let transport = self
            .transport
            .get_or_init(|| Transport::new(&self.endpoint))
            .as_ref()
            .map_err(|reason| Error::SwarmUnreadable {
                host: self.host.to_string(),
                reason: reason.clone(),
            })?;
        let body = transport
            .get(&path, USER_AGENT, Duration::from_secs(REQUEST_TIMEOUT_SECS))
            .await
            .map_err(|e| Error::SwarmUnreadable {
                host: self.host.to_string(),
                reason: e,
            })?;
        let tasks: Vec<serde_json::Value> =
            serde_json::from_slice(&body).map_err(|e| Error::SwarmUnreadable {
                host: self.host.to_string(),
                reason: format!("unreadable task list: {e}"),
            })?;
        Ok(tasks.iter().map(TaskInfo::from_json).collect())
    }

    /// Service id → name (a manager only).
    pub async fn services(&self) -> Result<HashMap<String, String>> {
        let services = self
            .docker
            .list_services(None::<bollard::query_parameters::ListServicesOptions>)
            .await
            .map_err(|e| self.err("list services", e))?;
        Ok(services
            .into_iter()
            .filter_map(|s| Some((s.id?, s.spec?.name?)))
            .collect())
    }

    /// Node id → whether it is up (`ready`), for every node (a manager only).
    pub async fn nodes(&self) -> Result<HashMap<String, bool>> {
        let nodes = self
            .docker
            .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
            .await
            .map_err(|e| self.err("list nodes", e))?;
        Ok(nodes
            .into_iter()
            .filter_map(|n| {
                let ready = n.status?.state.map(|s| s.to_string()).as_deref() == Some("ready");
                Some((n.id?, ready))
            })
            .collect())
    }

    /// Create a network (tests and the demo).
    pub async fn create_network(
        &self,
        name: &str,
        driver: &str,
        attachable: bool,
    ) -> Result<String> {
        let body = bollard::models::NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some(driver.to_owned()),
            attachable: Some(attachable),
            ..Default::default()
        };
        self.docker
            .create_network(body)
            .await
            .map(|r| r.id)
            .map_err(|e| self.err("create network", e))
    }

    /// Remove a network; gone already is success.
    pub async fn remove_network(&self, name: &str) -> Result<()> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.err("remove network", e)),
        }
    }

    /// Connect a running container to another network.
    pub async fn connect_network(&self, network: &str, id: &str) -> Result<()> {
        let body = bollard::models::NetworkConnectRequest {
            container: id.to_owned(),
            ..Default::default()
        };
        self.docker
            .connect_network(network, body)
            .await
            .map_err(|e| self.err("connect network", e))
    }

    /// Disconnect a container from a network.
    pub async fn disconnect_network(&self, network: &str, id: &str) -> Result<()> {
        let body = bollard::models::NetworkDisconnectRequest {
            container: id.to_owned(),
            force: Some(true),
        };
        self.docker
            .disconnect_network(network, body)
            .await
            .map_err(|e| self.err("disconnect network", e))
    }
}

fn open(endpoint: &context::Endpoint) -> Result<Docker> {
    let timeout = REQUEST_TIMEOUT_SECS;
    let version = bollard::API_DEFAULT_VERSION;
    let host = endpoint.host.as_str();
    let result = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, timeout, version)
    } else if let Some(dir) = &endpoint.tls_dir {
        Docker::connect_with_ssl(
            host,
            &dir.join("key.pem"),
            &dir.join("cert.pem"),
            &dir.join("ca.pem"),
            timeout,
            version,
        )
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, timeout, version)
    } else {
        return Err(Error::InvalidArgument(format!(
            "unsupported Docker Engine address '{host}'; use unix:///path, tcp://host:port or https://host:port"
        )));
    };
    result.map_err(|e| Error::engine("connect", host, e))
}

/// `GET /tasks` of the tasks the Swarm wants running, in API `version`.
fn tasks_path(version: &str, filters: &str) -> String {
    format!(
        "/v{version}/tasks?filters={}",
        utf8_percent_encode(filters, QUERY_VALUE)
    )
}

/// The request URI with `/v{version}` in front of its path, unless it has one.
fn versioned_uri(uri: &http::Uri, version: &str) -> Option<http::Uri> {
    let path_and_query = uri.path_and_query()?;
    if path_and_query.path().starts_with("/v1.") {
        return None;
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = format!("/v{version}{path_and_query}").parse().ok();
    http::Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_uri_adds_the_negotiated_version_once() {
        let uri: http::Uri = "unix://2f7661722f72756e/containers/json?all=true"
            .parse()
            .unwrap();
        let v = versioned_uri(&uri, "1.41").unwrap();
        assert_eq!(v.path(), "/v1.41/containers/json");
        assert_eq!(v.query(), Some("all=true"));
        assert!(versioned_uri(&v, "1.41").is_none());
    }

    #[test]
    fn the_task_filter_is_percent_encoded() {
        assert_eq!(
            tasks_path("1.41", r#"{"desired-state":["running"]}"#),
            "/v1.41/tasks?filters=%7B%22desired-state%22%3A%5B%22running%22%5D%7D"
        );
    }
}

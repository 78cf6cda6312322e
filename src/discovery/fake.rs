//! A fake Engine for unit tests of discovery: containers, their ready lines
//! and event streams held in memory and changed by the test, failures on
//! demand, and a record of what discovery asked.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::source::Source;
use crate::engine::{
    ContainerEvent, ContainerInfo, Endpoint, EventStream, Output, OutputStream, SwarmRole, TaskInfo,
};
use crate::error::{Error, Result};
use crate::labels;
use crate::swarm::Tasks;

/// The fake Engine's clock: 2030-01-01T00:00:00Z, Unix nanoseconds.
pub const T0_NS: i64 = 1_893_456_000_000_000_000;
/// The network every fake container is on.
pub const NETWORK: &str = "wool-fake";

/// A fake Engine; clones share one world.
#[derive(Clone)]
pub struct Fake {
    host: String,
    world: Arc<Mutex<World>>,
}

#[derive(Default)]
struct World {
    containers: BTreeMap<String, ContainerInfo>,
    /// Container id → its ready line's stamp (milliseconds after `T0_NS`).
    ready: HashMap<String, i64>,
    /// Listings still to fail.
    list_failures: u32,
    /// Container id → inspects still to fail.
    inspect_failures: HashMap<String, u32>,
    /// When each listing was asked.
    listings: Vec<Instant>,
    /// Container id → inspects asked.
    inspects: HashMap<String, u32>,
    /// The open container event streams.
    streams: Vec<mpsc::UnboundedSender<Result<ContainerEvent>>>,
    /// Container event streams opened so far.
    opened: u32,
    /// Followed log streams, by container id.
    followers: HashMap<String, Vec<mpsc::UnboundedSender<Result<Output>>>>,
}

/// A container id for `n`: 64 hex digits, as the Engine's.
pub fn id(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn failure() -> Error {
    Error::SocketMissing {
        host: "unix:///fake".to_owned(),
        socket: "/fake".to_owned(),
    }
}

/// A stream of what the test sends on the other end, ending when it is dropped.
fn channel_stream<T: Send + 'static>(
    rx: mpsc::UnboundedReceiver<T>,
) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = T> + Send>> {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Unix nanoseconds of `ms` milliseconds after `T0_NS`.
fn at_ms(ms: i64) -> i64 {
    T0_NS + ms * 1_000_000
}

fn ready_line(ms: i64) -> Vec<u8> {
    let secs = ms / 1000;
    format!(
        "2030-01-01T{:02}:{:02}:{:02}.{:03}000000Z {}{{\"version\": \"9.9.9\", \"pid\": 7}}\n",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms % 1000,
        crate::ready::READY_PREFIX
    )
    .into_bytes()
}

impl Fake {
    pub fn new() -> Fake {
        // Each fake its own host: hubs are shared by host and scope.
        static HOSTS: AtomicU32 = AtomicU32::new(0);
        Fake {
            host: format!("fake://{}", HOSTS.fetch_add(1, Ordering::Relaxed)),
            world: Arc::default(),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run worker container `n` (started at `T0_NS`), with this health; the
    /// caller says when its ready line is printed (`print_ready`).
    pub fn run(&self, n: u8, health: Option<&str>) -> String {
        let id = id(n);
        let c = ContainerInfo {
            id: id.clone(),
            name: format!("worker-{n}"),
            image: "wool-worker:fake".to_owned(),
            labels: BTreeMap::from([(labels::SELECTOR.to_owned(), "true".to_owned())]),
            state: "running".to_owned(),
            health: health.map(str::to_owned),
            networks: BTreeMap::from([(
                NETWORK.to_owned(),
                Endpoint {
                    network_id: "fakenet".to_owned(),
                    ip: format!("10.0.0.{n}"),
                },
            )]),
            started_at_ns: Some(T0_NS),
            finished_at_ns: None,
            published: BTreeMap::new(),
        };
        self.world().containers.insert(id.clone(), c);
        id
    }

    /// Remove a container (as `docker rm -f` without its events).
    pub fn remove(&self, n: u8) {
        let id = id(n);
        let mut world = self.world();
        world.containers.remove(&id);
        world.ready.remove(&id);
    }

    /// Container `n` prints its ready line, stamped `at_secs` after `T0_NS`.
    pub fn print_ready(&self, n: u8, at_secs: u32) {
        self.print_ready_ms(n, i64::from(at_secs) * 1000);
    }

    /// Container `n` prints its ready line, stamped `ms` milliseconds after `T0_NS`.
    pub fn print_ready_ms(&self, n: u8, ms: i64) {
        let id = id(n);
        let mut world = self.world();
        world.ready.insert(id.clone(), ms);
        if let Some(followers) = world.followers.get_mut(&id) {
            followers.retain(|tx| tx.send(Ok(Output::Stdout(ready_line(ms)))).is_ok());
        }
    }

    /// Container `n`'s current run started `started_ms` after `T0_NS`, its
    /// previous one (if any) having ended `ended_ms` after it.
    pub fn start_run(&self, n: u8, started_ms: i64, ended_ms: Option<i64>) {
        if let Some(c) = self.world().containers.get_mut(&id(n)) {
            c.started_at_ns = Some(at_ms(started_ms));
            c.finished_at_ns = ended_ms.map(at_ms);
        }
    }

    /// The next `n` listings fail.
    pub fn fail_listings(&self, n: u32) {
        self.world().list_failures = n;
    }

    /// The next `times` inspects of container `n` fail.
    pub fn fail_inspects(&self, n: u8, times: u32) {
        self.world().inspect_failures.insert(id(n), times);
    }

    /// Send an event about container `n` on every open container stream.
    pub fn event(&self, n: u8, action: &str, at_secs: i64) {
        let event = ContainerEvent {
            id: id(n),
            action: action.to_owned(),
            time_nano: T0_NS + at_secs * 1_000_000_000,
            signal: None,
            network: None,
        };
        self.world()
            .streams
            .retain(|tx| tx.send(Ok(event.clone())).is_ok());
    }

    /// Every open container stream fails.
    pub fn break_streams(&self) {
        for tx in self.world().streams.drain(..) {
            let _ = tx.send(Err(failure()));
        }
    }

    /// Every open container stream ends.
    pub fn end_streams(&self) {
        self.world().streams.clear();
    }

    /// When each listing so far was asked.
    pub fn listings(&self) -> Vec<Instant> {
        self.world().listings.clone()
    }

    /// Inspects of container `n` so far.
    pub fn inspects(&self, n: u8) -> u32 {
        self.world().inspects.get(&id(n)).copied().unwrap_or(0)
    }

    /// Container event streams opened so far.
    pub fn opened(&self) -> u32 {
        self.world().opened
    }

    /// Container event streams open now.
    pub fn open_streams(&self) -> usize {
        let mut world = self.world();
        world.streams.retain(|tx| !tx.is_closed());
        world.streams.len()
    }
}

impl Tasks for Fake {
    async fn tasks(&self) -> Result<Vec<TaskInfo>> {
        Err(failure())
    }

    async fn nodes(&self) -> Result<HashMap<String, bool>> {
        Err(failure())
    }

    async fn services(&self) -> Result<HashMap<String, String>> {
        Err(failure())
    }

    async fn image_labels(&self, _image: &str) -> Result<BTreeMap<String, String>> {
        Err(failure())
    }
}

impl Source for Fake {
    fn host(&self) -> &str {
        &self.host
    }

    async fn now_ns(&self, _fresh: bool) -> Result<Option<i64>> {
        Ok(Some(T0_NS))
    }

    async fn network_name(&self, reference: &str) -> Result<String> {
        Ok(reference.to_owned())
    }

    fn running(
        &self,
        _labels: &[String],
    ) -> impl Future<Output = Result<Vec<ContainerInfo>>> + Send {
        let answer = {
            let mut world = self.world();
            world.listings.push(Instant::now());
            if world.list_failures > 0 {
                world.list_failures -= 1;
                Err(failure())
            } else {
                Ok(world
                    .containers
                    .values()
                    .filter(|c| c.state == "running")
                    // A listing does not tell when a run started or ended.
                    .map(|c| ContainerInfo {
                        started_at_ns: None,
                        finished_at_ns: None,
                        published: BTreeMap::new(),
                        ..c.clone()
                    })
                    .collect())
            }
        };
        async move { answer }
    }

    fn inspect(&self, id: &str) -> impl Future<Output = Result<Option<ContainerInfo>>> + Send {
        let answer = {
            let mut world = self.world();
            *world.inspects.entry(id.to_owned()).or_default() += 1;
            match world.inspect_failures.get_mut(id) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    Err(failure())
                }
                _ => Ok(world.containers.get(id).cloned()),
            }
        };
        async move { answer }
    }

    fn container_events(&self, _labels: &[String], _since_ns: Option<i64>) -> EventStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut world = self.world();
        world.streams.push(tx);
        world.opened += 1;
        channel_stream(rx)
    }

    fn network_events(&self, _network: Option<&str>, _since_ns: Option<i64>) -> EventStream {
        Box::pin(futures_util::stream::pending())
    }

    fn logs(&self, id: &str, follow: bool, since_secs: i64) -> OutputStream {
        let mut world = self.world();
        // The Engine's own filter: nothing stamped before `since_secs`.
        let printed = world
            .ready
            .get(id)
            .filter(|ms| at_ms(**ms) >= since_secs * 1_000_000_000)
            .map(|ms| Ok(Output::Stdout(ready_line(*ms))));
        let printed = futures_util::stream::iter(printed);
        if !follow {
            return Box::pin(printed);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        world.followers.entry(id.to_owned()).or_default().push(tx);
        Box::pin(printed.chain(channel_stream(rx)))
    }

    async fn swarm_role(&self) -> Result<SwarmRole> {
        Ok(SwarmRole::Standalone)
    }

    fn swarm_events(&self) -> EventStream {
        Box::pin(futures_util::stream::pending())
    }
}

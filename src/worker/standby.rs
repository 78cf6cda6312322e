//! Warm standby: worker containers parked ahead of the pools that claim them.
//!
//! A parked container is a worker container of the standby's shape, started with
//! `WOOL_DOCKER_STANDBY=1`: its interpreter is up and wool imported, but no
//! server is bound; it prints the parked line and waits for one line on stdin,
//! its claim (the worker's environment, and TLS material when it serves TLS).
//! Its labels carry no worker metadata (`labels::STANDBY` marks it), so no
//! discovery announces it until its ready line states the worker it became.
//!
//! Parked containers hold the owner's stdin like every worker, so the owner's
//! death takes them along. A claimed container is never parked again: it ran
//! someone's routines.
//!
//! The pool of parked containers, the ones being parked, and the claims waiting
//! for them are one [`Pool`] behind one lock; every change wakes the waiters.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::config::{Refill, WorkerConfig};
use super::container::{check_container, discard, with_engine_access, Launched};
use super::running::Running;
use super::spec::{claim_env, park_spec};
use super::toolkit::{check_reachable, owned_task, unless_cancelled, Clock, Owner, TlsFiles};
use crate::engine::{now_nanos, Engine};
use crate::error::{Error, Result};
use crate::output::LogSink;
use crate::ready::{Ready, PARKED_PREFIX};

/// What a standby parks: the shape of its containers and how to refill.
pub struct Plan {
    /// A worker config of the shape to park; its per-worker values are unused.
    pub shape: WorkerConfig,
    /// Containers to keep parked.
    pub size: usize,
    /// Parked containers are named `{name_prefix}-{12 hex}`.
    pub name_prefix: String,
    pub refill: Refill,
    /// How long a container may take to park.
    pub timeout: Duration,
}

/// Containers parked for claims; clones share them.
#[derive(Clone)]
pub struct Standby {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    owner: Owner,
    /// The shape as given (claims are compared with it).
    given: WorkerConfig,
    /// The shape with its references resolved (what is created).
    shape: WorkerConfig,
    size: usize,
    name_prefix: String,
    refill: Refill,
    timeout: Duration,
    sink: Option<LogSink>,
    pool: Mutex<Pool>,
    /// Bumped on every change of `pool`.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct Pool {
    parked: VecDeque<Parked>,
    /// Containers being parked.
    parking: usize,
    /// Claims waiting for one of those.
    waiting: usize,
    /// Claimed containers whose end refills the standby (`Refill::Release`).
    claimed: HashSet<String>,
    /// The first failure to park since `filled` last looked.
    failure: Option<Error>,
    closed: bool,
}

/// A container waiting for its claim, and its address on the worker network.
struct Parked {
    launched: Launched,
    address: String,
}

impl Standby {
    /// Check the shape's image and network, then start parking `size`
    /// containers in the background.
    pub async fn open(
        engine: Engine,
        owner: Owner,
        plan: Plan,
        sink: Option<LogSink>,
    ) -> Result<Standby> {
        let given = plan.shape;
        let mut shape = given.clone();
        check_container(&engine, &mut shape).await?;
        // Fail now on what no container of this shape could get.
        with_engine_access(&engine, &owner, &shape, park_spec(&shape, String::new()))?;
        let standby = Standby {
            inner: Arc::new(Inner {
                engine,
                owner,
                given,
                shape,
                size: plan.size,
                name_prefix: plan.name_prefix,
                refill: plan.refill,
                timeout: plan.timeout,
                sink,
                pool: Mutex::new(Pool::default()),
                changed: watch::channel(0).0,
            }),
        };
        standby.top_up();
        Ok(standby)
    }

    /// Containers parked now.
    pub fn parked(&self) -> usize {
        self.inner.pool().parked.len()
    }

    /// Park containers until `size` are parked or being parked, then wait until
    /// `size` are parked. A failure to park (a container that exits first, the
    /// Engine refusing) is raised; the next call tries again.
    pub async fn filled(&self) -> Result<()> {
        {
            let mut pool = self.inner.pool();
            pool.failure = None;
        }
        self.top_up();
        let mut changed = self.inner.changed.subscribe();
        loop {
            {
                let mut pool = self.inner.pool();
                if pool.closed {
                    return Err(Error::Cancelled("the standby was closed".to_owned()));
                }
                if pool.parked.len() >= self.inner.size {
                    return Ok(());
                }
                if let Some(failure) = pool.failure.take() {
                    return Err(failure);
                }
            }
            if changed.changed().await.is_err() {
                return Err(Error::Cancelled("the standby was closed".to_owned()));
            }
        }
    }

    /// Claim a parked container for the worker `cfg` describes and wait until
    /// it serves; `None` when none is parked or about to be (start a fresh
    /// one), or when `cfg` shapes its container otherwise than this standby.
    ///
    /// A claim waits for a container being parked rather than start one of its
    /// own: that one is further along. If the wait ends without one, `None`.
    pub async fn claim(&self, cfg: &WorkerConfig, timeout: Duration) -> Option<Result<Running>> {
        if !same_container(&self.inner.given, cfg) {
            return None;
        }
        loop {
            let parked = self.next_parked().await?;
            let inner = self.inner.clone();
            let cfg = cfg.clone();
            let claimed = owned_task("the worker claim", move |cancelled| {
                claim_owned(inner, parked, cfg, timeout, cancelled)
            })
            .await;
            match claimed {
                Ok(Some(running)) => return Some(Ok(running)),
                // Its death was not seen before the claim: take the next one.
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Remove every parked container and stop parking; waits until every
    /// container it parked or was parking is gone. Claimed ones are their
    /// workers' to stop.
    pub async fn close(&self) {
        let parked: Vec<Parked> = {
            let mut pool = self.inner.pool();
            pool.closed = true;
            pool.claimed.clear();
            pool.parked.drain(..).collect()
        };
        self.inner.changed.send_modify(|n| *n += 1);
        let registry = &self.inner.owner.registry;
        futures_util::future::join_all(
            parked
                .into_iter()
                .map(|p| p.launched.retire(&self.inner.engine, registry)),
        )
        .await;
        // Parks in flight see `closed` and remove their own containers.
        let mut changed = self.inner.changed.subscribe();
        while self.inner.pool().parking > 0 {
            if changed.changed().await.is_err() {
                break;
            }
        }
    }

    /// Start parking as many containers as the standby lacks.
    fn top_up(&self) {
        let missing = {
            let mut pool = self.inner.pool();
            if pool.closed {
                return;
            }
            let have = pool.parked.len() + pool.parking;
            let missing = self.inner.size.saturating_sub(have);
            pool.parking += missing;
            missing
        };
        for _ in 0..missing {
            tokio::spawn(park(self.inner.clone()));
        }
    }

    /// Take the next parked container that still runs, waiting for one being
    /// parked when no other claim waits for it already.
    async fn next_parked(&self) -> Option<Parked> {
        let mut changed = self.inner.changed.subscribe();
        loop {
            let _waiting = {
                let mut pool = self.inner.pool();
                // A dead one stays for its watcher, which replaces it.
                if let Some(at) = pool.parked.iter().position(|p| !p.launched.exited()) {
                    let parked = pool.parked.remove(at)?;
                    pool.claimed.insert(parked.launched.id.clone());
                    drop(pool);
                    self.inner.notify();
                    if self.inner.refill == Refill::Claim {
                        self.top_up();
                    }
                    return Some(parked);
                }
                if pool.closed || pool.parking <= pool.waiting {
                    return None;
                }
                pool.waiting += 1;
                Waiting(&self.inner)
            };
            changed.changed().await.ok()?;
        }
    }
}

/// A claim counted among those waiting for a container being parked, until
/// it is dropped (woken, or its caller gave up).
struct Waiting<'a>(&'a Inner);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.pool().waiting -= 1;
    }
}

impl Inner {
    fn pool(&self) -> MutexGuard<'_, Pool> {
        // A panic elsewhere must not take the standby down with it.
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// Park one container (counted in `parking` by the caller): create, start, wait
/// for its parked line, learn its address; then watch it until it ends.
async fn park(inner: Arc<Inner>) {
    let result = park_one(&inner).await;
    let (watch, unwanted) = {
        let mut pool = inner.pool();
        match result {
            // Still counted as parking until it is gone: `close` waits for it.
            Ok(parked) if pool.closed => (None, Some(parked)),
            Ok(parked) => {
                pool.parking -= 1;
                let watch = (parked.launched.id.clone(), parked.launched.exit.clone());
                pool.parked.push_back(parked);
                (Some(watch), None)
            }
            Err(e) => {
                pool.parking -= 1;
                if !pool.closed {
                    tracing::warn!(error = %e, "could not park a standby container");
                    pool.failure.get_or_insert(e);
                }
                (None, None)
            }
        }
    };
    if let Some(parked) = unwanted {
        parked
            .launched
            .retire(&inner.engine, &inner.owner.registry)
            .await;
        inner.pool().parking -= 1;
    }
    inner.notify();
    let Some((id, mut exit)) = watch else {
        return;
    };
    // Until it ends: parked, it is replaced; claimed, its release refills.
    let _ = exit.wait_for(Option::is_some).await;
    let refill = {
        let mut pool = inner.pool();
        let was_parked = pool.parked.iter().position(|p| p.launched.id == id);
        if let Some(at) = was_parked {
            pool.parked.remove(at);
        }
        let released = pool.claimed.remove(&id) && inner.refill == Refill::Release;
        !pool.closed && (was_parked.is_some() || released)
    };
    inner.notify();
    if refill {
        Standby { inner }.top_up();
    }
}

async fn park_one(inner: &Inner) -> Result<Parked> {
    let name = format!("{}-{}", inner.name_prefix, random_suffix()?);
    let spec = with_engine_access(
        &inner.engine,
        &inner.owner,
        &inner.shape,
        park_spec(&inner.shape, name.clone()),
    )?;
    let engine = &inner.engine;
    let registry = &inner.owner.registry;
    let id = engine.create_container(&spec).await?;
    // Admitted now: once claimed, its routines use the feed from their first moment.
    registry.admit(&id);
    let closed = || async {
        let mut changed = inner.changed.subscribe();
        let _ = changed.wait_for(|_| inner.pool().closed).await;
    };
    let cancelled = || Error::Cancelled("the standby was closed".to_owned());
    let mut clock = Clock::new();
    let launching = Launched::launch(
        engine,
        registry,
        inner.owner.feed.as_ref(),
        &id,
        &name,
        inner.sink.clone(),
        &mut clock,
    );
    let launched = tokio::select! {
        r = launching => r,
        _ = closed() => Err(cancelled()),
    };
    let mut launched = match launched {
        Ok(launched) => launched,
        Err(e) => {
            discard(engine, registry, &id).await;
            return Err(e);
        }
    };
    let parked = async {
        launched
            .wait_for(inner.timeout, |line| {
                line.starts_with(PARKED_PREFIX).then_some(())
            })
            .await?;
        launched.relay_ready(inner.timeout).await
    };
    let waited = tokio::select! {
        r = parked => r,
        _ = closed() => Err(cancelled()),
    };
    let address = match waited {
        Ok(()) => launched.address(engine, &inner.shape).await,
        Err(e) => Err(e),
    };
    match address {
        Ok(address) => Ok(Parked { launched, address }),
        // Closed while it parked: stopped as a worker is, not force-removed.
        Err(e @ Error::Cancelled(_)) => {
            launched.retire(engine, registry).await;
            Err(e)
        }
        Err(e) => {
            discard(engine, registry, &id).await;
            Err(e)
        }
    }
}

/// The claim line: what makes a parked container's server the worker.
#[derive(serde::Serialize)]
struct Claim<'a> {
    env: std::collections::BTreeMap<String, String>,
    tls: Option<TlsFiles<'a>>,
}

/// Claim `parked` for `cfg` and wait until it serves; `None` when it died
/// parked (killed, out of memory) before the claim reached it, or without a
/// word after it: no fault of the claim, so the caller claims another.
async fn claim_owned(
    inner: Arc<Inner>,
    mut parked: Parked,
    cfg: WorkerConfig,
    timeout: Duration,
    mut cancelled: oneshot::Receiver<()>,
) -> Result<Option<Running>> {
    let id = parked.launched.id.clone();
    // What it printed while parked; a claim it acted on adds to it.
    let parked_tail = parked.launched.lines.tail();
    let mut clock = Clock::new();
    let name = parked.launched.name.clone();
    let claiming = async {
        let claim = Claim {
            env: claim_env(&cfg),
            tls: cfg.tls.as_ref().map(TlsFiles::of),
        };
        parked.launched.send(&claim, "its claim").await?;
        clock.lap("claim");
        let ready = parked
            .launched
            .wait_for(timeout, |line| Ready::parse(&id, now_nanos(), line))
            .await?;
        clock.lap("bind");
        let published = inner.shape.publication.published();
        check_reachable(&name, &parked.address, published).await?;
        clock.lap("reach");
        Ok(ready)
    };
    let result =
        unless_cancelled(claiming, &mut cancelled, || format!("the claim of {name}")).await;
    match result {
        Ok(ready) => Ok(Some(Running::serving(
            parked.launched.into_control(),
            &inner.engine,
            &inner.owner.registry,
            parked.address,
            ready,
            clock.laps,
        ))),
        Err(e) => {
            let died_parked = matches!(e, Error::ContainerExited { .. })
                && parked.launched.lines.tail() == parked_tail;
            // Never parked again, whatever it was told.
            discard(&inner.engine, &inner.owner.registry, &id).await;
            if died_parked {
                tracing::info!(container = %parked.launched.name, "a parked container died as it was claimed; claiming another");
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Whether `cfg` makes the same container as `shape`: everything but the
/// worker's own values (uid, tags, extra, security, identity, options, server
/// settings, hook, TLS material, name).
fn same_container(shape: &WorkerConfig, cfg: &WorkerConfig) -> bool {
    shape.image == cfg.image
        && shape.network == cfg.network
        && shape.publication.port == cfg.publication.port
        && shape.publication.network == cfg.publication.network
        && shape.publication.publish == cfg.publication.publish
        && shape.selector == cfg.selector
        && shape.labels == cfg.labels
        && shape.env == cfg.env
        && shape.binds == cfg.binds
        && shape.nano_cpus == cfg.nano_cpus
        && shape.memory == cfg.memory
        && shape.gpus == cfg.gpus
        && shape.python == cfg.python
        && shape.wool_version == cfg.wool_version
        && shape.engine_access == cfg.engine_access
        && shape.sandbox == cfg.sandbox
}

/// 48 random bits as hex: parked containers' names must not collide.
fn random_suffix() -> Result<String> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness for a container name: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

//! The start of a plain worker container: check, create, attach, start, wait
//! until it serves. Its parts are [`super::container`]'s; the handle it gives
//! is [`super::running`]'s.

use std::time::Duration;

use tokio::sync::oneshot;

use super::config::WorkerConfig;
use super::container::{check_container, discard, with_engine_access, Launched};
use super::running::Running;
use super::spec::create_spec;
use super::toolkit::{check_reachable, unless_cancelled, Clock, FeedAccess, Owner, TlsFiles};
use crate::engine::{now_nanos, Engine};
use crate::error::Result;
use crate::output::LogSink;
use crate::ready::Ready;
use crate::registry::Registry;

/// Start a worker container and wait until it serves (on a task of its own:
/// see [`super::start`]).
pub(super) async fn start_owned(
    engine: Engine,
    owner: Owner,
    mut cfg: WorkerConfig,
    timeout: Duration,
    sink: Option<LogSink>,
    mut cancelled: oneshot::Receiver<()>,
) -> Result<Running> {
    let mut clock = Clock::new();
    check_container(&engine, &mut cfg).await?;
    let spec = with_engine_access(&engine, &owner, &cfg, create_spec(&cfg))?;
    clock.lap("check");
    let id = engine.create_container(&spec).await?;
    // Before it starts: its routines may use the feed from their first moment.
    let registry = &owner.registry;
    registry.admit(&id);
    clock.lap("create");
    let up = bring_up(
        &engine,
        registry,
        owner.feed.as_ref(),
        &id,
        &cfg,
        timeout,
        sink,
        clock,
    );
    let result = unless_cancelled(up, &mut cancelled, || {
        format!("the start of worker {}", cfg.name)
    })
    .await;
    if result.is_err() {
        discard(&engine, registry, &id).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn bring_up(
    engine: &Engine,
    registry: &Registry,
    feed: Option<&FeedAccess>,
    id: &str,
    cfg: &WorkerConfig,
    timeout: Duration,
    sink: Option<LogSink>,
    mut clock: Clock,
) -> Result<Running> {
    let mut launched = Launched::launch(
        engine,
        registry,
        feed,
        id,
        cfg.name.as_str(),
        sink,
        &mut clock,
    )
    .await?;
    if let Some(tls) = &cfg.tls {
        // The entry point reads this one line before anything else on stdin.
        launched
            .send(&TlsFiles::of(tls), "its TLS material")
            .await?;
        clock.lap("hand over TLS material");
    }
    let ready = launched
        .wait_for(timeout, |line| Ready::parse(id, now_nanos(), line))
        .await?;
    clock.lap("interpreter, wool import, bind");
    // A routine may await another as soon as the worker is advertised.
    launched.relay_ready(timeout).await?;
    let address = launched.address(engine, cfg).await?;
    clock.lap("inspect address");
    check_reachable(cfg.name.as_str(), &address, cfg.publication.published()).await?;
    clock.lap("reach");
    let control = launched.into_control();
    Ok(Running::serving(
        control, engine, registry, address, ready, clock.laps,
    ))
}

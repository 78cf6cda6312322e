//! Native core of wool-docker: Docker Engine I/O and state for wool workers and
//! discovery. Modules form layers; each uses only those below it:
//!
//! 1. `error`, `env`, `runtime` (the tokio runtime), `logging` (to Python's),
//!    `values` (self-validating values: seconds, sizes, counts, names),
//!    `backoff` (the one retry policy), `lines` (the one line codec), `rundir`
//!    (private directories for the owner's sockets);
//! 2. `context` (which Engine), `engine` (the client and our models of its objects);
//! 3. contracts, pure: `labels` (the schema and the selector match), `ready`
//!    (the ready and parked lines), `scope` (what a discovery follows), `output` (a
//!    container's lines), `owner` (owner tokens), `version` (which wool serves ours),
//!    `serving` (the one reader of a worker container's `WOOL_*` variables);
//! 4. `registry`: the containers this process owns;
//! 5. `worker` (three start paths, `lifecycle`, `service` and `standby`, over
//!    its shared parts `container`, `running` and `toolkit`),
//!    `swarm` (remote tasks), `discovery`,
//!    `feed` (`wire`; `server` in the owner and `relay` its carrier, `client` in a container);
//! 6. `bindings`: the Python functions; the only module that wires the others
//!    together, and the owner of the exit sequence.

pub mod backoff;
pub mod bindings;
pub mod context;
pub mod discovery;
pub mod engine;
pub mod env;
pub mod error;
pub mod feed;
pub mod labels;
pub mod lines;
pub mod logging;
pub mod output;
pub mod owner;
pub mod ready;
pub mod registry;
pub mod rundir;
pub mod runtime;
pub mod scope;
pub mod serving;
pub mod swarm;
pub mod values;
pub mod version;
pub mod worker;

use pyo3::prelude::*;

/// The native module, `wool_docker._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The schema's constants are defined once, here in the core; Python reads them.
    m.add("READY_PREFIX", ready::READY_PREFIX)?;
    m.add("PARKED_PREFIX", ready::PARKED_PREFIX)?;
    m.add("STANDBY_LABEL", labels::STANDBY)?;
    m.add("DEFAULT_PORT", labels::DEFAULT_PORT)?;
    m.add("DEFAULT_BIND_HOST", serving::DEFAULT_BIND_HOST)?;
    m.add("DEFAULT_SHUTDOWN_GRACE", serving::DEFAULT_SHUTDOWN_GRACE)?;
    m.add(
        "DEFAULT_DEREGISTER_DELAY",
        serving::DEFAULT_DEREGISTER_DELAY,
    )?;
    m.add(
        "DEFAULT_SELECTOR",
        (labels::SELECTOR, labels::SELECTOR_VALUE),
    )?;
    m.add_class::<bindings::WorkerHandle>()?;
    m.add_class::<bindings::Subscription>()?;
    m.add_class::<bindings::StandbyHandle>()?;
    m.add_function(wrap_pyfunction!(bindings::engine_info, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::inspect_image, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::build_image, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::remove_image, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::pull_image, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::push_image, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::start_worker, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::open_standby, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::check_standby, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::check_worker_config, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::check_port, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::check_extra, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::read_server_env, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::env_flag, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::read_port, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::prune, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::owner_token, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::discovery_owner, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::subscribe, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::list_workers, m)?)?;
    logging::Bridge::install();
    // atexit runs before the interpreter finalizes: the last moment runtime
    // threads may still enter Python (see `runtime`).
    let shutdown = wrap_pyfunction!(bindings::shutdown, m)?;
    m.py()
        .import("atexit")?
        .call_method1("register", (shutdown,))?;
    Ok(())
}

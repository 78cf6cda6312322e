//! Native core of wool-docker: Docker Engine I/O and state for wool workers and
//! discovery. `engine` talks to the daemon; `labels` is the label schema; `worker`
//! is a container's lifecycle and `output` what its container prints; `discovery`
//! follows containers; `bindings` exposes them to Python through the runtime
//! `runtime` owns; `logging` carries diagnostics to Python logging.

pub mod bindings;
pub mod context;
pub mod discovery;
pub mod engine;
pub mod error;
pub mod feed;
pub mod labels;
pub mod logging;
pub mod output;
pub mod owner;
pub mod runtime;
pub mod swarm;
pub mod worker;

use pyo3::prelude::*;

/// The native module, `wool_docker._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The schema's constants are defined once, here in the core; Python reads them.
    m.add("READY_PREFIX", worker::READY_PREFIX)?;
    m.add("DEFAULT_PORT", labels::DEFAULT_PORT)?;
    m.add(
        "DEFAULT_SELECTOR",
        (labels::SELECTOR, labels::SELECTOR_VALUE),
    )?;
    m.add_class::<bindings::WorkerHandle>()?;
    m.add_class::<bindings::Subscription>()?;
    m.add_function(wrap_pyfunction!(bindings::engine_info, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::inspect_image, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::build_image, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::remove_image, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::start_worker, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::prune, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::owner_token, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::subscribe, m)?)?;
    m.add_function(wrap_pyfunction!(bindings::list_workers, m)?)?;
    logging::Bridge::install();
    // atexit runs before the interpreter finalizes: the last moment runtime
    // threads may still enter Python (see `runtime`).
    let shutdown = wrap_pyfunction!(runtime::shutdown, m)?;
    m.py()
        .import("atexit")?
        .call_method1("register", (shutdown,))?;
    Ok(())
}

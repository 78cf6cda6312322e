//! The Tokio runtime this module owns, and the one gate between its threads and
//! Python.
//!
//! pyo3-async-runtimes completes every asyncio future from a runtime thread that
//! enters Python. Its own runtime is a static that outlives `asyncio.run`, so a
//! completion could land while the interpreter finalizes and crash the process
//! (and `Python::try_attach` cannot tell, in an abi3-py311 build). Here the
//! runtime is ours: every entry into Python from a runtime thread passes the gate,
//! and an `atexit` hook (atexit runs before finalization) flushes logs, closes the
//! gate, and shuts the runtime down with a bound. After that no runtime thread
//! enters Python again; a Python reference a dropped task still held is released
//! through PyO3's deferred reference pool, which does not touch the interpreter.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{self, ContextExt, JoinError, Runtime};
use pyo3_async_runtimes::TaskLocals;
use tokio::runtime::Handle;

/// How long the exit hook waits for runtime threads to finish what they do.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(2);

// Statics: pyo3-async-runtimes finds its runtime through a type, not a value,
// so the runtime and its gate are process-wide.
/// The owned runtime, until the exit hook takes it.
static RUNTIME: Mutex<Option<tokio::runtime::Runtime>> = Mutex::new(None);
/// A handle to it; spawning through it after shutdown drops the task.
static HANDLE: OnceLock<Handle> = OnceLock::new();
/// Open (`true`) until the exit hook closes it. Held for reading while a runtime
/// thread is inside Python, so closing it waits for those to leave.
static GATE: RwLock<bool> = RwLock::new(true);

/// The runtime's handle, building the runtime on first use.
pub fn handle() -> &'static Handle {
    HANDLE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("wool-docker")
            .build();
        match runtime {
            Ok(runtime) => {
                let handle = runtime.handle().clone();
                *RUNTIME.lock().unwrap_or_else(|p| p.into_inner()) = Some(runtime);
                handle
            }
            // Without threads nothing can run; a current-thread runtime that is
            // never driven at least lets every call fail instead of aborting.
            Err(e) => {
                tracing::error!(error = %e, "cannot start the Tokio runtime");
                match tokio::runtime::Builder::new_current_thread().build() {
                    Ok(rt) => {
                        let handle = rt.handle().clone();
                        *RUNTIME.lock().unwrap_or_else(|p| p.into_inner()) = Some(rt);
                        handle
                    }
                    Err(_) => std::process::abort(),
                }
            }
        }
    })
}

/// Run `f` with the GIL from any thread, unless the interpreter is shutting down
/// (then `f` does not run and the error says so).
pub fn attach<R>(f: impl for<'py> FnOnce(Python<'py>) -> PyResult<R>) -> PyResult<R> {
    let open = GATE.read().unwrap_or_else(|p| p.into_inner());
    if !*open {
        return Err(PyRuntimeError::new_err(
            "the wool_docker native runtime has shut down (interpreter exit)",
        ));
    }
    Python::attach(f)
}

/// Whether runtime threads may still enter Python.
pub fn open() -> bool {
    *GATE.read().unwrap_or_else(|p| p.into_inner())
}

/// Whether a release of dropped Python references is already on its way.
static RELEASING: AtomicBool = AtomicBool::new(false);

/// pyo3-async-runtimes' tasks drop their last references to the asyncio future
/// (which holds the result, e.g. a `WorkerHandle`) and to the event loop on an
/// async thread without the GIL, so PyO3 defers those decrefs until some thread
/// next attaches. Were none to, a result nobody awaits any more — a started
/// worker's handle, whose drop stops its container — would live on. Attach once,
/// off the async threads, to release them now; requests coalesce.
fn release_dropped() {
    if RELEASING.swap(true, Ordering::AcqRel) {
        return;
    }
    handle().spawn_blocking(|| {
        RELEASING.store(false, Ordering::Release);
        let _ = attach(|_| Ok(()));
    });
}

/// pyo3-async-runtimes' view of our runtime.
pub struct Rt;

/// A task that could not run, or panicked.
pub struct TaskError(tokio::task::JoinError);

impl JoinError for TaskError {
    fn is_panic(&self) -> bool {
        self.0.is_panic()
    }

    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        self.0.into_panic()
    }
}

/// A spawned task's completion.
pub struct Joined(tokio::task::JoinHandle<()>);

impl Future for Joined {
    type Output = Result<(), TaskError>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map_err(TaskError)
    }
}

impl Runtime for Rt {
    type JoinError = TaskError;
    type JoinHandle = Joined;

    /// The task ends by releasing the Python references it dropped (see
    /// `release_dropped`).
    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Joined(handle().spawn(async move {
            fut.await;
            release_dropped();
        }))
    }

    /// pyo3-async-runtimes sets each asyncio future's result here, with the GIL:
    /// the gate decides whether it still may.
    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        Joined(handle().spawn_blocking(move || {
            let open = GATE.read().unwrap_or_else(|p| p.into_inner());
            if *open {
                f();
            }
        }))
    }
}

tokio::task_local! {
    static LOCALS: TaskLocals;
}

impl ContextExt for Rt {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        Box::pin(LOCALS.scope(locals, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        LOCALS.try_with(Clone::clone).ok()
    }
}

/// An asyncio awaitable for a future run on our runtime. Cancelling the asyncio
/// future drops the Rust future.
pub fn future_into_py<F, T>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    generic::future_into_py::<Rt, F, T>(py, fut)
}

/// Close the gate (runtime threads no longer enter Python), stop every task and
/// shut the runtime down, waiting a bounded time. The exit sequence around it is
/// the bindings' (`bindings::shutdown`).
pub fn stop(py: Python<'_>) {
    py.detach(|| {
        // Waits for runtime threads inside Python; they need the GIL we released.
        *GATE.write().unwrap_or_else(|p| p.into_inner()) = false;
        let runtime = RUNTIME.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(runtime) = runtime {
            runtime.shutdown_timeout(SHUTDOWN_BOUND);
        }
    });
}

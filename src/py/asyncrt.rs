//! Async twins: Rust futures on kitaru's per-process runtime (see `runtime.rs`), awaited
//! from asyncio through pyo3-async-runtimes' generic bridge. The crate's own tokio runtime
//! is a process global that cannot be rebuilt after fork, so we plug ours in instead.

use std::future::Future;
use std::pin::Pin;

use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{self, ContextExt, JoinError, Runtime};
use pyo3_async_runtimes::TaskLocals;
use tokio::task;

use crate::runtime;

pub struct KitaruRuntime;

pub struct Join(task::JoinError);

impl JoinError for Join {
    fn is_panic(&self) -> bool {
        self.0.is_panic()
    }
    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        self.0.into_panic()
    }
}

tokio::task_local! {
    static LOCALS: TaskLocals;
}

type BoxJoin = Pin<Box<dyn Future<Output = Result<(), Join>> + Send>>;

fn join(handle: Option<task::JoinHandle<()>>) -> BoxJoin {
    Box::pin(async move {
        match handle {
            Some(h) => h.await.map_err(Join),
            None => Ok(()),
        }
    })
}

impl Runtime for KitaruRuntime {
    type JoinError = Join;
    type JoinHandle = BoxJoin;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // If the runtime cannot start, the error surfaces from the awaited future instead.
        join(runtime::get().ok().map(|rt| rt.spawn(fut)))
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        join(runtime::get().ok().map(|rt| rt.spawn_blocking(f)))
    }
}

impl ContextExt for KitaruRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        Box::pin(LOCALS.scope(locals, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        LOCALS.try_with(|l| l.clone()).ok()
    }
}

/// A Python awaitable that runs `fut` on kitaru's runtime.
pub fn into_py<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    runtime::get()?;
    generic::future_into_py::<KitaruRuntime, F, T>(py, fut)
}

/// The awaitable of a value that is already there: `await` returns it without a trip
/// through the event loop (what a core call that finished on its first poll gives).
#[pyclass(frozen, name = "Ready", module = "kitaru._kitaru")]
pub struct Ready {
    value: Py<PyAny>,
}

#[pymethods]
impl Ready {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<()> {
        Err(pyo3::exceptions::PyStopIteration::new_err((self
            .value
            .clone_ref(py),)))
    }
}

/// `fut` as an awaitable, polled once here first: a core call that needs no waiting (most
/// calls on a local store: an append, a lookup in memory) is done now and its awaitable
/// is `Ready`, so an async flow does not pay an event-loop round trip per checkpoint.
/// Otherwise the partly run future continues on kitaru's runtime.
pub fn poll_then_await<'py, F, T>(
    py: Python<'py>,
    fut: F,
    convert: fn(Python<'_>, T) -> PyResult<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = crate::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let mut fut = Box::pin(fut);
    let first = py.detach(|| {
        let rt = runtime::get()?;
        let _in_runtime = rt.enter();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        Ok::<_, crate::Error>(fut.as_mut().poll(&mut cx))
    })?;
    match first {
        std::task::Poll::Ready(result) => {
            let value = convert(py, result?)?;
            Ok(Bound::new(py, Ready { value })?.into_any())
        }
        std::task::Poll::Pending => into_py(py, async move {
            let value = fut.await?;
            Python::attach(|py| convert(py, value))
        }),
    }
}

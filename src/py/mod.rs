//! Python bindings (`kitaru._kitaru`), conversion only: every I/O method takes owned
//! arguments, runs one core call with the GIL released (or, with `awaitable=True`, hands
//! Python an awaitable of it on kitaru's runtime), and converts the result. Records
//! crossing in are read by `#[derive(FromPyObject)]` from the frozen classes of
//! `kitaru._types` (`records.rs`); views leave as dicts and lists (typed as `TypedDict`s
//! in `kitaru/_views.py`, which the stub names).
//!
//! - `store.rs`: `Store`, what any process may do to the executions of a store.
//! - `runner.rs`: `Runner` (the lease holder while this process runs a flow) and
//!   `CallDecision`.
//! - `records.rs`: the records Python hands over, and the bytes of values.
//! - `asyncrt.rs`: core futures as asyncio awaitables; `errors.rs`: core errors as the
//!   `kitaru.errors` classes.

mod asyncrt;
mod errors;
mod records;
mod runner;
mod store;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::IntoPyObjectExt;

use crate::error::Error;
use crate::journal::record;
use crate::{ids, runtime};

/// What an I/O binding returns: its value, or an awaitable of it.
type Awaitable<'py> = PyResult<Bound<'py, PyAny>>;

/// Runs a core future to completion with the GIL released.
fn run<T: Send, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: std::future::Future<Output = crate::Result<T>> + Send,
{
    Ok(py.detach(|| runtime::block_on(fut).and_then(|r| r))?)
}

/// `finish` for a small call on a quick store (`Store::is_quick`): the core future is
/// first polled with the GIL held, so a call that needs no waiting (a small create on a
/// local disk) is done at once, without releasing the GIL and waiting to get it back —
/// which, when another Python thread is busy, costs far more than the call (LangGraph
/// calls its checkpointer from background threads). Otherwise as `finish`.
fn finish_quick<'py, T, F>(
    py: Python<'py>,
    quick: bool,
    awaitable: bool,
    fut: F,
    convert: fn(Python<'_>, T) -> PyResult<Py<PyAny>>,
) -> Awaitable<'py>
where
    F: std::future::Future<Output = crate::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    if !quick || awaitable {
        return finish(py, awaitable, fut, convert);
    }
    let mut fut = Box::pin(fut);
    let rt = runtime::get()?;
    let first = {
        let _in_runtime = rt.enter();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        fut.as_mut().poll(&mut cx)
    };
    let value = match first {
        std::task::Poll::Ready(result) => result?,
        std::task::Poll::Pending => py.detach(|| runtime::block_on(fut))??,
    };
    convert(py, value).map(|v| v.into_bound(py))
}

/// The one shape of an I/O binding: the core future runs blocking with the GIL released,
/// or (`awaitable`) becomes an awaitable: done at once when the future needs no waiting,
/// else on kitaru's runtime, so async flows never block their event loop on the store.
/// `convert` makes the Python value either way.
fn finish<'py, T, F>(
    py: Python<'py>,
    awaitable: bool,
    fut: F,
    convert: fn(Python<'_>, T) -> PyResult<Py<PyAny>>,
) -> Awaitable<'py>
where
    F: std::future::Future<Output = crate::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    if awaitable {
        asyncrt::poll_then_await(py, fut, convert)
    } else {
        let value = run(py, fut)?;
        convert(py, value).map(|v| v.into_bound(py))
    }
}

fn none(py: Python<'_>, _: ()) -> PyResult<Py<PyAny>> {
    Ok(py.None())
}

/// A value PyO3 converts itself (numbers, strings, tuples, lists, options).
fn plain<T: for<'py> IntoPyObject<'py>>(py: Python<'_>, v: T) -> PyResult<Py<PyAny>> {
    v.into_py_any(py)
}

/// A serde view as plain Python data (dicts, lists, strings, numbers, None).
fn to_py<T: serde::Serialize>(py: Python<'_>, v: T) -> PyResult<Py<PyAny>> {
    Ok(pythonize::pythonize(py, &v)?.unbind())
}

#[pyfunction]
fn new_exec_id() -> String {
    ids::new_exec_id()
}

#[pyfunction]
fn now_us() -> u64 {
    ids::now_us()
}

/// blake3 digest of `data` (32 bytes), computed with the GIL released for large inputs.
#[pyfunction]
fn blake3_digest<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    let hash = if data.len() > 64 * 1024 {
        py.detach(|| blake3::hash(data))
    } else {
        blake3::hash(data)
    };
    PyBytes::new(py, hash.as_bytes())
}

/// Any record's bytes as plain data.
#[pyfunction]
fn record_to_json(py: Python<'_>, data: &[u8]) -> PyResult<Py<PyAny>> {
    let v = record::to_json(data).map_err(|e| Error::corrupt_record("<bytes>", None, e))?;
    to_py(py, v)
}

/// What stored bytes hold with zstd undone (`record::plain`): for searching a store's
/// files, e.g. to check that no secret reached them.
#[pyfunction]
fn stored_plain<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &record::plain(data))
}

/// `text` with the query string and user info of every URL in it removed (for showing
/// store locations and settings that may carry credentials).
#[pyfunction]
fn redact_urls(text: &str) -> String {
    crate::store::redact_urls(text)
}

/// What kind of store `location` names ("local", "memory" or "object"), or the error that
/// opening it would raise (an unsupported scheme, a malformed URL), without opening it.
#[pyfunction]
fn store_kind(location: &str) -> PyResult<&'static str> {
    Ok(crate::store::StoreUrl::parse(location)?.kind())
}

#[pymodule]
fn _kitaru(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<store::PyStore>()?;
    m.add_class::<store::PyProgress>()?;
    m.add_class::<runner::PyRunner>()?;
    m.add_class::<runner::PyDecision>()?;
    m.add_class::<asyncrt::Ready>()?;
    m.add_function(wrap_pyfunction!(new_exec_id, m)?)?;
    m.add_function(wrap_pyfunction!(now_us, m)?)?;
    m.add_function(wrap_pyfunction!(blake3_digest, m)?)?;
    m.add_function(wrap_pyfunction!(record_to_json, m)?)?;
    m.add_function(wrap_pyfunction!(stored_plain, m)?)?;
    m.add_function(wrap_pyfunction!(redact_urls, m)?)?;
    m.add_function(wrap_pyfunction!(store_kind, m)?)?;
    m.add("VERSION", env!("CARGO_PKG_VERSION"))?;
    m.add("RECORD_FORMAT_VERSION", record::COMPRESSED_VERSION)?;
    m.add("LAYOUT_VERSION", crate::store::layout::LAYOUT_VERSION)?;
    m.add("INLINE_LIMIT", crate::store::layout::INLINE_LIMIT)?;
    Ok(())
}

//! Python bindings (`kitaru._kitaru`). Every method has one shape: take owned arguments,
//! run the core call with the GIL released, convert the result. Logic lives in the core.

mod asyncrt;
mod errors;

use std::sync::Arc;

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::Error;
use crate::execution::{self, FinishedCall, Intent, RawValue, Runner};
use crate::journal::record;
use crate::journal::types::{AnswerRecord, EntryPoint, Failure, StartInfo, WaitRecord};
use crate::store::{Store, StoreOptions};
use crate::view::{self, ListFilter};
use crate::{ids, runtime};

/// Runs a core future to completion with the GIL released.
fn run<T: Send, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: std::future::Future<Output = crate::Result<T>> + Send,
{
    Ok(py.detach(|| runtime::block_on(fut).and_then(|r| r))?)
}

/// The one shape of an I/O binding: the core future runs blocking with the GIL released,
/// or (`awaitable`) becomes an asyncio awaitable on kitaru's runtime, so async flows never
/// block their event loop on the store. `convert` makes the Python value either way.
fn finish<'py, T, F>(
    py: Python<'py>,
    awaitable: bool,
    fut: F,
    convert: fn(Python<'_>, T) -> PyResult<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>>
where
    F: std::future::Future<Output = crate::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    if awaitable {
        asyncrt::into_py(py, async move {
            let value = fut.await?;
            Python::attach(|py| convert(py, value))
        })
    } else {
        let value = run(py, fut)?;
        convert(py, value).map(|v| v.into_bound(py))
    }
}

fn none(py: Python<'_>, _: ()) -> PyResult<Py<PyAny>> {
    Ok(py.None())
}

fn answer_value(py: Python<'_>, a: Option<AnswerRecord>) -> PyResult<Py<PyAny>> {
    Ok(a.map(|a| (a.aborted, a.value_json))
        .into_pyobject(py)?
        .into_any()
        .unbind())
}

fn json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

fn digest(d: Option<&[u8]>) -> PyResult<Option<[u8; 32]>> {
    d.map(|b| {
        <[u8; 32]>::try_from(b)
            .map_err(|_| pyo3::exceptions::PyValueError::new_err("a digest must be 32 bytes"))
    })
    .transpose()
}

fn failure(
    origin: String,
    message: String,
    exception_type: Option<String>,
    traceback: Option<String>,
) -> Failure {
    Failure {
        origin,
        message,
        exception_type,
        traceback,
    }
}

/// The bytes of an immutable Python `bytes` object, kept alive by a reference: large
/// values reach the store without a copy.
struct PyBytesOwner {
    _obj: Py<PyBytes>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the pointer is into the buffer of an immutable `bytes` object that `_obj` keeps
// alive; reading it needs no GIL, and dropping `_obj` off the GIL defers the decref.
unsafe impl Send for PyBytesOwner {}

impl AsRef<[u8]> for PyBytesOwner {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see above; `len` is the object's size and it never changes.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Below this a copy is cheaper than keeping a reference.
const BORROW_FROM: usize = 64 * 1024;

fn raw(serializer: String, data: &Bound<'_, PyBytes>) -> RawValue {
    let slice = data.as_bytes();
    let bytes = if slice.len() < BORROW_FROM {
        Bytes::copy_from_slice(slice)
    } else {
        Bytes::from_owner(PyBytesOwner {
            ptr: slice.as_ptr(),
            len: slice.len(),
            _obj: data.clone().unbind(),
        })
    };
    RawValue { serializer, bytes }
}

/// A finished checkpoint call as Python hands it over (`kitaru._types.CallRecord`, a
/// frozen dataclass read attribute by attribute).
#[derive(FromPyObject)]
struct CallRecord<'py> {
    call_id: String,
    name: String,
    explicit_id: bool,
    checkpoint_type: Option<String>,
    input_digest: Option<Vec<u8>>,
    serializer: String,
    data: Bound<'py, PyBytes>,
    started_us: u64,
    ended_us: u64,
    metadata_json: Option<String>,
}

impl CallRecord<'_> {
    fn into_core(self) -> PyResult<FinishedCall> {
        Ok(FinishedCall {
            input_digest: digest(self.input_digest.as_deref())?,
            output: raw(self.serializer, &self.data),
            call_id: self.call_id,
            name: self.name,
            explicit_id: self.explicit_id,
            checkpoint_type: self.checkpoint_type,
            started_us: self.started_us,
            ended_us: self.ended_us,
            metadata_json: self.metadata_json,
        })
    }
}

/// A failed attempt of a checkpoint call (`kitaru._types.AttemptRecord`).
#[derive(FromPyObject)]
struct AttemptRecord {
    call_id: String,
    name: String,
    checkpoint_type: Option<String>,
    input_digest: Option<Vec<u8>>,
    started_us: u64,
    ended_us: u64,
    origin: String,
    message: String,
    exception_type: Option<String>,
    traceback: Option<String>,
}

fn value_tuple<'py>(py: Python<'py>, v: RawValue) -> (String, Bound<'py, PyBytes>) {
    (v.serializer, PyBytes::new(py, &v.bytes))
}

/// A store root (local directory or memory://).
#[pyclass(frozen, name = "Store", module = "kitaru._kitaru")]
pub struct PyStore {
    inner: Arc<Store>,
}

#[pymethods]
impl PyStore {
    /// `options`: object-store configuration (`object_store` key names such as `region`,
    /// `endpoint`, `allow_http`, `access_key_id`), winning over the environment.
    #[new]
    #[pyo3(signature = (location, *, fsync = false, options = None))]
    fn new(
        py: Python<'_>,
        location: String,
        fsync: bool,
        options: Option<std::collections::BTreeMap<String, String>>,
    ) -> PyResult<Self> {
        let options = StoreOptions {
            fsync,
            options: options.unwrap_or_default(),
        };
        let inner = run(py, async move { Store::open(&location, options).await })?;
        Ok(PyStore { inner })
    }

    #[getter]
    fn url(&self) -> String {
        self.inner.url().to_string()
    }

    /// Requests sent to the backend by this handle since it was opened (or last reset),
    /// by kind: put, get, head, list, delete.
    fn request_counts(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.inner.request_counts().snapshot().into_iter().collect()
    }

    fn reset_request_counts(&self) {
        self.inner.request_counts().reset();
    }

    /// (objects, bytes) stored under `prefix` ("" for the whole store).
    #[pyo3(signature = (prefix = String::new()))]
    fn usage(&self, py: Python<'_>, prefix: String) -> PyResult<(u64, u64)> {
        let store = self.inner.clone();
        run(py, async move { store.usage(&prefix).await })
    }

    /// Creates an execution and returns the runner that holds its lease.
    #[pyo3(signature = (*, flow_name, module, qualname, script, cwd, args_serializer, args, kitaru_version, options_json, ttl_ms))]
    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        py: Python<'_>,
        flow_name: String,
        module: String,
        qualname: String,
        script: Option<String>,
        cwd: String,
        args_serializer: String,
        args: &Bound<'_, PyBytes>,
        kitaru_version: String,
        options_json: String,
        ttl_ms: u64,
    ) -> PyResult<PyRunner> {
        let store = self.inner.clone();
        let args = raw(args_serializer, args);
        let runner = run(py, async move {
            let args = execution::store_value(&store, args).await?;
            let start = StartInfo {
                flow_name,
                entry: EntryPoint {
                    module,
                    qualname,
                    script,
                    cwd,
                },
                args,
                kitaru_version,
                options_json,
            };
            Runner::start(store, start, ttl_ms).await
        })?;
        PyRunner::new(runner)
    }

    /// Takes over an execution (`intent` is "retry" or "resume").
    fn claim(
        &self,
        py: Python<'_>,
        exec_id: String,
        intent: &str,
        ttl_ms: u64,
    ) -> PyResult<PyRunner> {
        let intent = match intent {
            "retry" => Intent::Retry,
            "resume" => Intent::Resume,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "intent must be 'retry' or 'resume', not {other:?}"
                )))
            }
        };
        let store = self.inner.clone();
        let runner = run(py, async move {
            Runner::claim(store, &exec_id, intent, ttl_ms).await
        })?;
        PyRunner::new(runner)
    }

    /// The execution as JSON (`full` adds checkpoints).
    #[pyo3(signature = (exec_id, *, full = true))]
    fn inspect(&self, py: Python<'_>, exec_id: String, full: bool) -> PyResult<String> {
        let store = self.inner.clone();
        let v = run(
            py,
            async move { view::inspect(&store, &exec_id, full).await },
        )?;
        json(&v)
    }

    /// Execution summaries, newest first, as a JSON list.
    #[pyo3(signature = (*, flow = None, status = None, limit = None))]
    fn list(
        &self,
        py: Python<'_>,
        flow: Option<String>,
        status: Option<String>,
        limit: Option<usize>,
    ) -> PyResult<String> {
        let store = self.inner.clone();
        let filter = ListFilter {
            flow,
            status,
            limit,
        };
        let v = run(py, async move { view::list(&store, &filter).await })?;
        json(&v)
    }

    /// The arguments the execution was started with: (serializer, bytes).
    fn start_args<'py>(
        &self,
        py: Python<'py>,
        exec_id: String,
    ) -> PyResult<(String, Bound<'py, PyBytes>)> {
        let (_, tag, data) = self.start_record(py, exec_id)?;
        Ok((tag, data))
    }

    /// (entry point as JSON, arguments' serializer, arguments) of an execution, from one
    /// read of its first state event.
    fn start_record<'py>(
        &self,
        py: Python<'py>,
        exec_id: String,
    ) -> PyResult<(String, String, Bound<'py, PyBytes>)> {
        let store = self.inner.clone();
        let (entry, v) = run(py, async move {
            let start = execution::start_info(&store, &exec_id).await?;
            let args = execution::load_value(&store, &start.args, &exec_id, None).await?;
            Ok((start.entry, args))
        })?;
        let (tag, data) = value_tuple(py, v);
        Ok((json(&entry)?, tag, data))
    }

    /// The flow's return value, or None when the execution has not completed.
    fn result<'py>(
        &self,
        py: Python<'py>,
        exec_id: String,
    ) -> PyResult<Option<(String, Bound<'py, PyBytes>)>> {
        let store = self.inner.clone();
        let v = run(py, async move { execution::result(&store, &exec_id).await })?;
        Ok(v.map(|v| value_tuple(py, v)))
    }

    /// The stored output of one checkpoint call: (serializer, bytes), or None.
    fn checkpoint_output<'py>(
        &self,
        py: Python<'py>,
        exec_id: String,
        call_id: String,
    ) -> PyResult<Option<(String, Bound<'py, PyBytes>)>> {
        let store = self.inner.clone();
        let v = run(py, async move {
            let journal =
                crate::journal::Journal::load(&store, &exec_id, crate::journal::Scope::Full)
                    .await?;
            match journal.checkpoints.get(&call_id) {
                Some((_, rec)) => {
                    let mut cache = std::collections::HashMap::new();
                    let bytes =
                        crate::delta::resolve(&store, &journal, &call_id, &rec.output, &mut cache)
                            .await?;
                    Ok(Some(RawValue {
                        serializer: rec.output.serializer.clone(),
                        bytes,
                    }))
                }
                None => Ok(None),
            }
        })?;
        Ok(v.map(|v| value_tuple(py, v)))
    }

    #[pyo3(signature = (exec_id, reason = String::new()))]
    fn cancel(&self, py: Python<'_>, exec_id: String, reason: String) -> PyResult<()> {
        let store = self.inner.clone();
        run(py, async move {
            execution::cancel(&store, &exec_id, &reason).await
        })
    }

    /// Answers (or aborts) a pending wait; the value is JSON, already validated.
    #[pyo3(signature = (exec_id, name, value_json, *, aborted = false))]
    fn answer(
        &self,
        py: Python<'_>,
        exec_id: String,
        name: String,
        value_json: Option<String>,
        aborted: bool,
    ) -> PyResult<()> {
        let store = self.inner.clone();
        run(py, async move {
            execution::answer(&store, &exec_id, &name, value_json, aborted).await
        })
    }

    /// The captured output of an execution as JSON lines, oldest first.
    fn logs(&self, py: Python<'_>, exec_id: String) -> PyResult<String> {
        let store = self.inner.clone();
        let records = run(py, async move {
            crate::journal::load_logs(&store, &exec_id).await
        })?;
        Ok(records
            .into_iter()
            .map(|r| r.entries_jsonl)
            .collect::<Vec<_>>()
            .join(""))
    }

    /// The record stored at `key` as JSON, or None when the key does not exist.
    fn dump_key(&self, py: Python<'_>, key: String) -> PyResult<Option<String>> {
        let store = self.inner.clone();
        let bytes = run(py, async move { store.get(&key).await.map(|b| (b, key)) })?;
        match bytes {
            (None, _) => Ok(None),
            (Some(b), key) => {
                let v = if crate::store::layout::is_segment_key(&key) {
                    record::segment_to_json(&b)
                } else {
                    record::to_json(&b)
                };
                let v = v.map_err(|e| Error::corrupt_record(&key, None, e))?;
                json(&v).map(Some)
            }
        }
    }

    /// Reads every record and blob; a JSON report of what is corrupt, dangling or out of sequence.
    fn verify(&self, py: Python<'_>) -> PyResult<String> {
        let store = self.inner.clone();
        let report = run(py, async move { crate::verify::verify(&store).await })?;
        json(&report)
    }

    /// Every key under `prefix`, sorted.
    fn keys(&self, py: Python<'_>, prefix: String) -> PyResult<Vec<String>> {
        let store = self.inner.clone();
        run(py, async move { store.list(&prefix).await })
    }
}

/// (serializer, output bytes, input digest) of a finished call.
type StoredCall<'py> = (String, Bound<'py, PyBytes>, Option<Bound<'py, PyBytes>>);

/// The lease holder of one execution while this process runs it.
#[pyclass(frozen, name = "Runner", module = "kitaru._kitaru")]
pub struct PyRunner {
    inner: Arc<Runner>,
}

impl PyRunner {
    fn new(runner: Runner) -> PyResult<Self> {
        let rt = runtime::get()?;
        runner.spawn_heartbeat(&rt);
        Ok(PyRunner {
            inner: Arc::new(runner),
        })
    }
}

#[pymethods]
impl PyRunner {
    #[getter]
    fn exec_id(&self) -> String {
        self.inner.exec_id().to_string()
    }

    #[getter]
    fn claim_seq(&self) -> u64 {
        self.inner.claim_seq()
    }

    /// Every finished call in the journal loaded when the lease was taken:
    /// (call id, checkpoint name, explicit id?, input digest).
    fn stored_calls<'py>(
        &self,
        py: Python<'py>,
    ) -> Vec<(String, String, bool, Option<Bound<'py, PyBytes>>)> {
        self.inner
            .journal()
            .checkpoints
            .iter()
            .map(|(id, (_, rec))| {
                let digest = rec.input_digest.map(|d| PyBytes::new(py, &d.0));
                (id.clone(), rec.name.clone(), rec.explicit_id, digest)
            })
            .collect()
    }

    /// The stored result of `call_id`: (serializer, bytes, input digest), or None.
    fn lookup<'py>(&self, py: Python<'py>, call_id: &str) -> PyResult<Option<StoredCall<'py>>> {
        let Some((_, rec)) = self.inner.journal().checkpoints.get(call_id) else {
            return Ok(None);
        };
        let digest = rec.input_digest.map(|d| PyBytes::new(py, &d.0));
        if let crate::journal::types::Body::Inline(b) = &rec.output.body {
            // Already in memory: no trip through the runtime.
            return Ok(Some((
                rec.output.serializer.clone(),
                PyBytes::new(py, &b.0),
                digest,
            )));
        }
        let runner = self.inner.clone();
        let call = call_id.to_string();
        let found = run(py, async move { runner.lookup_output(&call).await })?;
        Ok(found.map(|(v, _)| (v.serializer, PyBytes::new(py, &v.bytes), digest)))
    }

    /// The metadata recorded with `call_id`'s stored result (JSON), if any.
    fn call_metadata(&self, call_id: &str) -> Option<String> {
        let (_, rec) = self.inner.journal().checkpoints.get(call_id)?;
        rec.metadata_json.clone()
    }

    /// The execution metadata (`kitaru.log()` on the flow body) of earlier runs, oldest
    /// first, as loaded when the lease was taken: one JSON object per record.
    fn execution_metadata(&self) -> Vec<String> {
        self.inner
            .journal()
            .meta
            .iter()
            .map(|m| m.json.clone())
            .collect()
    }

    fn failed_attempts(&self, call_id: &str) -> u32 {
        self.inner.failed_attempts(call_id)
    }

    /// Fails if the execution was cancelled or taken over; see `Runner::check_lease_now`.
    fn check_lease(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(done) = self.inner.check_lease_quick() {
            return Ok(done?);
        }
        let r = self.inner.clone();
        run(py, async move { r.check_lease_now().await })
    }

    /// Records a finished call (blocking, or an awaitable with `awaitable=True`).
    #[pyo3(signature = (call, *, awaitable = false))]
    fn record_checkpoint<'py>(
        &self,
        py: Python<'py>,
        call: CallRecord<'_>,
        awaitable: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let done = call.into_core()?;
        let r = self.inner.clone();
        finish(
            py,
            awaitable,
            async move { r.record_checkpoint(done).await },
            none,
        )
    }

    /// Records a failed attempt; returns its attempt number (1-based).
    fn record_failed_attempt(&self, py: Python<'_>, attempt: AttemptRecord) -> PyResult<u32> {
        let a = attempt;
        let digest = digest(a.input_digest.as_deref())?;
        let f = failure(a.origin, a.message, a.exception_type, a.traceback);
        let r = self.inner.clone();
        run(py, async move {
            r.record_failed_attempt(
                &a.call_id,
                &a.name,
                a.checkpoint_type,
                digest,
                a.started_us,
                a.ended_us,
                f,
            )
            .await
        })
    }

    #[pyo3(signature = (call_id, stored, new, policy))]
    fn record_divergence(
        &self,
        py: Python<'_>,
        call_id: String,
        stored: Option<&[u8]>,
        new: Option<&[u8]>,
        policy: String,
    ) -> PyResult<()> {
        let (stored, new) = (digest(stored)?, digest(new)?);
        let r = self.inner.clone();
        run(py, async move {
            r.record_divergence(&call_id, stored, new, &policy).await
        })
    }

    /// Records that the flow reached a wait; its answer as (aborted, value JSON) if given.
    #[pyo3(signature = (name, question, schema_json, schema_type, metadata_json, *, awaitable = false))]
    #[allow(clippy::too_many_arguments)]
    fn open_wait<'py>(
        &self,
        py: Python<'py>,
        name: String,
        question: Option<String>,
        schema_json: Option<String>,
        schema_type: Option<String>,
        metadata_json: String,
        awaitable: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let r = self.inner.clone();
        let wait = WaitRecord {
            name,
            question,
            schema_json,
            schema_type,
            metadata_json,
            created_us: ids::now_us(),
            claim_seq: r.claim_seq(),
        };
        finish(
            py,
            awaitable,
            async move { r.open_wait(wait).await },
            answer_value,
        )
    }

    /// The answer to wait `name` as (aborted, value JSON), if someone gave it.
    #[pyo3(signature = (name, *, awaitable = false))]
    fn poll_answer<'py>(
        &self,
        py: Python<'py>,
        name: String,
        awaitable: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let r = self.inner.clone();
        finish(
            py,
            awaitable,
            async move { r.poll_answer(&name).await },
            answer_value,
        )
    }

    /// Stores a batch of captured output (JSON lines).
    fn write_logs(&self, py: Python<'_>, entries_jsonl: String) -> PyResult<()> {
        let r = self.inner.clone();
        run(py, async move { r.write_logs(entries_jsonl).await })
    }

    fn log_metadata(&self, py: Python<'_>, json: String) -> PyResult<()> {
        let r = self.inner.clone();
        run(py, async move { r.log_metadata(json).await })
    }

    fn complete(
        &self,
        py: Python<'_>,
        serializer: String,
        data: &Bound<'_, PyBytes>,
    ) -> PyResult<()> {
        let v = raw(serializer, data);
        let r = self.inner.clone();
        run(py, async move { r.complete(v).await })
    }

    #[pyo3(signature = (origin, message, exception_type, traceback))]
    fn fail(
        &self,
        py: Python<'_>,
        origin: String,
        message: String,
        exception_type: Option<String>,
        traceback: Option<String>,
    ) -> PyResult<()> {
        let f = failure(origin, message, exception_type, traceback);
        let r = self.inner.clone();
        run(py, async move { r.fail(f).await })
    }

    #[pyo3(signature = (attempt, origin, message, exception_type, traceback))]
    fn flow_attempt_failed(
        &self,
        py: Python<'_>,
        attempt: u32,
        origin: String,
        message: String,
        exception_type: Option<String>,
        traceback: Option<String>,
    ) -> PyResult<()> {
        let f = failure(origin, message, exception_type, traceback);
        let r = self.inner.clone();
        run(py, async move { r.flow_attempt_failed(attempt, f).await })
    }

    fn suspend(&self, py: Python<'_>, reason: String) -> PyResult<()> {
        let r = self.inner.clone();
        run(py, async move { r.suspend(reason).await })
    }

    /// Stops renewing the lease without writing a state event (the process is exiting).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let r = self.inner.clone();
        run(py, async move {
            r.stop_heartbeat().await;
            Ok(())
        })
    }
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

/// Any record's bytes as JSON.
#[pyfunction]
fn record_to_json(data: &[u8]) -> PyResult<String> {
    let v = record::to_json(data).map_err(|e| Error::corrupt_record("<bytes>", None, e))?;
    json(&v)
}

/// `text` with the query string and user info of every URL in it removed (for showing
/// store locations and settings that may carry credentials).
#[pyfunction]
fn redact_urls(text: &str) -> String {
    crate::store::redact_urls(text)
}

#[pymodule]
fn _kitaru(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStore>()?;
    m.add_class::<PyRunner>()?;
    m.add_function(wrap_pyfunction!(new_exec_id, m)?)?;
    m.add_function(wrap_pyfunction!(now_us, m)?)?;
    m.add_function(wrap_pyfunction!(blake3_digest, m)?)?;
    m.add_function(wrap_pyfunction!(record_to_json, m)?)?;
    m.add_function(wrap_pyfunction!(redact_urls, m)?)?;
    m.add("RECORD_FORMAT_VERSION", record::FORMAT_VERSION)?;
    m.add("LAYOUT_VERSION", crate::store::layout::LAYOUT_VERSION)?;
    m.add("INLINE_LIMIT", crate::store::layout::INLINE_LIMIT)?;
    Ok(())
}

//! `kitaru._kitaru.Store`: a store root, and what any process may do to its executions.

use std::collections::BTreeMap;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::IntoPyObjectExt;

use super::records::{raw, value_tuple, StartRecord};
use super::runner::PyRunner;
use super::{finish, finish_quick, none, plain, run, to_py, Awaitable};
use crate::execution::{self, Intent, RawValue, Runner};
use crate::graph;
use crate::memory;
use crate::store::{layout, Store, StoreOptions};
use crate::view::{self, ListFilter};

/// A LangGraph write as Python gets it: (task id, index, bytes).
type PyWrite<'py> = (String, i64, Bound<'py, PyBytes>);

/// A store root (local directory, memory://, or a bucket).
#[pyclass(frozen, name = "Store", module = "kitaru._kitaru")]
pub struct PyStore {
    inner: Arc<Store>,
}

fn raw_value(py: Python<'_>, v: Option<RawValue>) -> PyResult<Py<PyAny>> {
    Ok(v.map(|v| value_tuple(py, v))
        .into_pyobject(py)?
        .into_any()
        .unbind())
}

fn raw_values(py: Python<'_>, found: Vec<Option<RawValue>>) -> PyResult<Py<PyAny>> {
    let values: Vec<_> = found
        .into_iter()
        .map(|v| v.map(|v| value_tuple(py, v)))
        .collect();
    values.into_py_any(py)
}

fn runner(py: Python<'_>, r: Runner) -> PyResult<Py<PyAny>> {
    Ok(Py::new(py, PyRunner::new(r)?)?.into_any())
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
        options: Option<BTreeMap<String, String>>,
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
    fn request_counts(&self) -> BTreeMap<&'static str, u64> {
        self.inner.request_counts().snapshot().into_iter().collect()
    }

    fn reset_request_counts(&self) {
        self.inner.request_counts().reset();
    }

    /// (objects, bytes) stored under `prefix` ("" for the whole store).
    #[pyo3(signature = (prefix = String::new(), *, awaitable = false))]
    fn usage<'py>(&self, py: Python<'py>, prefix: String, awaitable: bool) -> Awaitable<'py> {
        let store = self.inner.clone();
        finish(
            py,
            awaitable,
            async move { store.usage(&prefix).await },
            plain,
        )
    }

    /// Creates an execution and returns the runner that holds its lease.
    #[pyo3(signature = (start, ttl_ms, *, awaitable = false))]
    fn start<'py>(
        &self,
        py: Python<'py>,
        start: StartRecord<'_>,
        ttl_ms: u64,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let (store, start) = (self.inner.clone(), start.into());
        let fut = async move { Runner::start_new(store, start, ttl_ms).await };
        finish(py, awaitable, fut, runner)
    }

    /// Takes over an execution to run it again (`intent`: "retry" or "resume").
    #[pyo3(signature = (exec_id, intent, ttl_ms, *, awaitable = false))]
    fn claim<'py>(
        &self,
        py: Python<'py>,
        exec_id: String,
        intent: &str,
        ttl_ms: u64,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let intent: Intent = intent.parse()?;
        let store = self.inner.clone();
        let fut = async move { Runner::claim(store, &exec_id, intent, ttl_ms).await };
        finish(py, awaitable, fut, runner)
    }

    /// The execution's view (`full` adds checkpoints, divergences and metadata).
    #[pyo3(signature = (exec_id, *, full = true, awaitable = false))]
    fn inspect<'py>(
        &self,
        py: Python<'py>,
        exec_id: String,
        full: bool,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move { view::inspect(&store, &exec_id, full).await };
        finish(py, awaitable, fut, to_py)
    }

    /// Execution summaries, newest first (`recoverable`: only those recorded as running
    /// or waiting, what a recovery pass looks at).
    #[pyo3(signature = (*, flow = None, status = None, limit = None, progress = None, recoverable = false, awaitable = false))]
    #[allow(clippy::too_many_arguments)]
    fn list<'py>(
        &self,
        py: Python<'py>,
        flow: Option<String>,
        status: Option<String>,
        limit: Option<usize>,
        progress: Option<PyRef<'py, PyProgress>>,
        recoverable: bool,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let filter = ListFilter {
            flow,
            status,
            limit,
            recoverable,
        };
        let progress = progress.map(|p| p.inner.clone());
        finish(
            py,
            awaitable,
            async move { view::list_with(&store, &filter, progress.as_deref()).await },
            to_py,
        )
    }

    /// (entry point, arguments' serializer, arguments) of an execution, from one read of
    /// its first state event.
    #[pyo3(signature = (exec_id, *, awaitable = false))]
    fn start_record<'py>(
        &self,
        py: Python<'py>,
        exec_id: String,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move { execution::start_args(&store, &exec_id).await };
        finish(py, awaitable, fut, |py, (entry, args)| {
            let entry = to_py(py, entry)?;
            let (tag, data) = value_tuple(py, args);
            Ok((entry, tag, data).into_pyobject(py)?.into_any().unbind())
        })
    }

    /// The flow's return value (serializer, bytes), or None when it has not completed.
    #[pyo3(signature = (exec_id, *, awaitable = false))]
    fn result<'py>(&self, py: Python<'py>, exec_id: String, awaitable: bool) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move { execution::result(&store, &exec_id).await };
        finish(py, awaitable, fut, raw_value)
    }

    /// The pending wait `name` (or wait id), or the only one when `name` is None.
    #[pyo3(signature = (exec_id, name = None, *, awaitable = false))]
    fn pending_wait<'py>(
        &self,
        py: Python<'py>,
        exec_id: String,
        name: Option<String>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move { view::pending_wait(&store, &exec_id, name.as_deref()).await };
        finish(py, awaitable, fut, to_py)
    }

    /// A memory version (the latest when `version` is None): (entry, (serializer, bytes)
    /// or None for a tombstone), or None when the key has no such version.
    #[pyo3(signature = (scope_type, scope, key, version = None, *, awaitable = false))]
    fn memory_get<'py>(
        &self,
        py: Python<'py>,
        scope_type: String,
        scope: String,
        key: String,
        version: Option<u64>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move {
            let addr = memory::Address::new(&scope_type, &scope, &key)?;
            memory::get(&store, &addr, version).await
        };
        finish(py, awaitable, fut, |py, found| match found {
            None => Ok(py.None()),
            Some((entry, value)) => {
                let entry = to_py(py, entry)?;
                (entry, raw_value(py, value)?).into_py_any(py)
            }
        })
    }

    /// Writes a new version (`value` (serializer, bytes), or a tombstone when None); the
    /// entry written (or the one this call wrote in an earlier run, `dedupe_since`).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (scope_type, scope, key, value, value_type, *, execution_id = None,
                        call_id = None, flow_id = None, flow_name = None, dedupe_since = None,
                        awaitable = false))]
    fn memory_write<'py>(
        &self,
        py: Python<'py>,
        scope_type: String,
        scope: String,
        key: String,
        value: Option<(String, Bound<'_, PyBytes>)>,
        value_type: String,
        execution_id: Option<String>,
        call_id: Option<String>,
        flow_id: Option<String>,
        flow_name: Option<String>,
        dedupe_since: Option<u64>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let value = value.map(|(tag, data)| raw(tag, &data));
        let writer = memory::Writer {
            execution_id,
            call_id,
            flow_id,
            flow_name,
            dedupe_since,
        };
        let fut = async move {
            let addr = memory::Address::new(&scope_type, &scope, &key)?;
            memory::write(&store, &addr, value, &value_type, &writer).await
        };
        finish(py, awaitable, fut, to_py)
    }

    /// Every version of a key, newest first.
    #[pyo3(signature = (scope_type, scope, key, *, awaitable = false))]
    fn memory_history<'py>(
        &self,
        py: Python<'py>,
        scope_type: String,
        scope: String,
        key: String,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move {
            let addr = memory::Address::new(&scope_type, &scope, &key)?;
            memory::history(&store, &addr).await
        };
        finish(py, awaitable, fut, to_py)
    }

    /// The live keys of a scope (latest versions, not deleted), by key.
    #[pyo3(signature = (scope_type, scope, *, awaitable = false))]
    fn memory_list<'py>(
        &self,
        py: Python<'py>,
        scope_type: String,
        scope: String,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move { memory::list(&store, &scope_type, &scope).await };
        finish(py, awaitable, fut, to_py)
    }

    /// The keys of a scope (with `include_deleted`, those whose latest is a tombstone too).
    #[pyo3(signature = (scope_type, scope, include_deleted = false, *, awaitable = false))]
    fn memory_keys<'py>(
        &self,
        py: Python<'py>,
        scope_type: String,
        scope: String,
        include_deleted: bool,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move { memory::keys(&store, &scope_type, &scope, include_deleted).await };
        finish(py, awaitable, fut, to_py)
    }

    /// LangGraph (`KitaruSaver`): stores a checkpoint create-only; False when one with
    /// this id is stored already.
    #[pyo3(signature = (thread, ns, checkpoint_id, data, *, awaitable = false))]
    fn graph_put_checkpoint<'py>(
        &self,
        py: Python<'py>,
        thread: String,
        ns: String,
        checkpoint_id: String,
        data: &Bound<'_, PyBytes>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let (store, data) = (self.inner.clone(), data.as_bytes().to_vec());
        let quick = store.is_quick();
        let fut =
            async move { graph::put_checkpoint(&store, &thread, &ns, &checkpoint_id, data).await };
        finish_quick(py, quick, awaitable, fut, plain)
    }

    /// LangGraph: a namespace's checkpoint ids, oldest first.
    #[pyo3(signature = (thread, ns, *, awaitable = false))]
    fn graph_checkpoint_ids<'py>(
        &self,
        py: Python<'py>,
        thread: String,
        ns: String,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let quick = store.is_quick();
        let fut = async move { graph::checkpoint_ids(&store, &thread, &ns).await };
        finish_quick(py, quick, awaitable, fut, plain)
    }

    /// LangGraph: the stored bytes of each checkpoint id (None where there is none).
    #[pyo3(signature = (thread, ns, ids, *, awaitable = false))]
    fn graph_get_checkpoints<'py>(
        &self,
        py: Python<'py>,
        thread: String,
        ns: String,
        ids: Vec<String>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let quick = store.is_quick();
        let fut = async move { graph::get_checkpoints(&store, &thread, &ns, &ids).await };
        finish_quick(
            py,
            quick,
            awaitable,
            fut,
            |py, found: Vec<Option<Vec<u8>>>| {
                let out: Vec<Option<Bound<'_, PyBytes>>> = found
                    .iter()
                    .map(|b| b.as_ref().map(|b| PyBytes::new(py, b)))
                    .collect();
                out.into_py_any(py)
            },
        )
    }

    /// LangGraph: stores a task's writes (index, bytes) pending on a checkpoint.
    #[pyo3(signature = (thread, ns, checkpoint_id, task_id, writes, *, awaitable = false))]
    #[allow(clippy::too_many_arguments)]
    fn graph_put_writes<'py>(
        &self,
        py: Python<'py>,
        thread: String,
        ns: String,
        checkpoint_id: String,
        task_id: String,
        writes: Vec<(i64, Bound<'_, PyBytes>)>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let quick = store.is_quick();
        // Bytes are copied out as slices (extracting `Vec<u8>` would go byte by byte).
        let writes: Vec<(i64, Vec<u8>)> = writes
            .iter()
            .map(|(i, b)| (*i, b.as_bytes().to_vec()))
            .collect();
        let fut = async move {
            graph::put_writes(&store, &thread, &ns, &checkpoint_id, &task_id, writes).await
        };
        finish_quick(py, quick, awaitable, fut, none)
    }

    /// LangGraph: the writes pending on `ids` (every checkpoint's when None):
    /// [(checkpoint id, [(task id, index, bytes)])].
    #[pyo3(signature = (thread, ns, ids = None, *, awaitable = false))]
    fn graph_writes<'py>(
        &self,
        py: Python<'py>,
        thread: String,
        ns: String,
        ids: Option<Vec<String>>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let quick = store.is_quick();
        let fut = async move { graph::writes(&store, &thread, &ns, ids.as_deref()).await };
        finish_quick(
            py,
            quick,
            awaitable,
            fut,
            |py, found: Vec<(String, Vec<graph::Write>)>| {
                let out: Vec<(String, Vec<PyWrite<'_>>)> = found
                    .into_iter()
                    .map(|(cid, ws)| {
                        let ws = ws
                            .into_iter()
                            .map(|(t, i, b)| (t, i, PyBytes::new(py, &b)))
                            .collect();
                        (cid, ws)
                    })
                    .collect();
                out.into_py_any(py)
            },
        )
    }

    /// LangGraph: the threads with checkpoints (`ns` None), or a thread's namespaces.
    #[pyo3(signature = (thread = None, *, awaitable = false))]
    fn graph_threads<'py>(
        &self,
        py: Python<'py>,
        thread: Option<String>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let quick = store.is_quick();
        let fut = async move {
            match thread {
                None => graph::threads(&store).await,
                Some(t) => graph::namespaces(&store, &t).await,
            }
        };
        finish_quick(py, quick, awaitable, fut, plain)
    }

    /// LangGraph: deletes a thread, a namespace of it, or checkpoints of a namespace (with
    /// their writes); how many records.
    #[pyo3(signature = (thread, ns = None, ids = None, *, awaitable = false))]
    fn graph_delete<'py>(
        &self,
        py: Python<'py>,
        thread: String,
        ns: Option<String>,
        ids: Option<Vec<String>>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let quick = store.is_quick();
        let fut =
            async move { graph::delete(&store, &thread, ns.as_deref(), ids.as_deref()).await };
        finish_quick(py, quick, awaitable, fut, plain)
    }

    /// Every scope holding keys, with its number of live keys.
    #[pyo3(signature = (*, awaitable = false))]
    fn memory_scopes<'py>(&self, py: Python<'py>, awaitable: bool) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move { memory::scopes(&store).await };
        finish(py, awaitable, fut, to_py)
    }

    /// Deletes a key's versions beyond the newest `keep`; how many.
    #[pyo3(signature = (scope_type, scope, key, keep, *, awaitable = false))]
    fn memory_purge<'py>(
        &self,
        py: Python<'py>,
        scope_type: String,
        scope: String,
        key: String,
        keep: u64,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move {
            let addr = memory::Address::new(&scope_type, &scope, &key)?;
            memory::purge(&store, &addr, keep).await
        };
        finish(py, awaitable, fut, to_py)
    }

    /// The cross-execution cache's entries (of `flow`, or all), oldest first.
    #[pyo3(signature = (flow = None, *, awaitable = false))]
    fn cache_entries<'py>(
        &self,
        py: Python<'py>,
        flow: Option<String>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move { crate::cache::list(&store, flow.as_deref()).await };
        finish(py, awaitable, fut, to_py)
    }

    /// Deletes the cache entries of `flow` (or all); how many.
    #[pyo3(signature = (flow = None, *, awaitable = false))]
    fn clear_cache<'py>(
        &self,
        py: Python<'py>,
        flow: Option<String>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move { crate::cache::clear(&store, flow.as_deref()).await };
        finish(py, awaitable, fut, to_py)
    }

    /// What a replay of `exec_id` from `from_` with `override_keys` takes over.
    #[pyo3(signature = (exec_id, from_, override_keys, *, awaitable = false))]
    fn replay_plan<'py>(
        &self,
        py: Python<'py>,
        exec_id: String,
        from_: String,
        override_keys: Vec<String>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut =
            async move { crate::replay::plan(&store, &exec_id, &from_, &override_keys).await };
        finish(py, awaitable, fut, to_py)
    }

    /// Executions `a` and `b` compared checkpoint by checkpoint.
    #[pyo3(signature = (a, b, *, awaitable = false))]
    fn diff<'py>(&self, py: Python<'py>, a: String, b: String, awaitable: bool) -> Awaitable<'py> {
        let store = self.inner.clone();
        finish(
            py,
            awaitable,
            async move { crate::diff::diff(&store, &a, &b).await },
            to_py,
        )
    }

    /// The stored output of one checkpoint call: (serializer, bytes), or None.
    #[pyo3(signature = (exec_id, call_id, *, awaitable = false))]
    fn checkpoint_output<'py>(
        &self,
        py: Python<'py>,
        exec_id: String,
        call_id: String,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move { execution::checkpoint_output(&store, &exec_id, &call_id).await };
        finish(py, awaitable, fut, raw_value)
    }

    /// The stored outputs of several calls, from one read of the execution's journal.
    #[pyo3(signature = (exec_id, call_ids, *, awaitable = false))]
    fn checkpoint_outputs<'py>(
        &self,
        py: Python<'py>,
        exec_id: String,
        call_ids: Vec<String>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move { execution::checkpoint_outputs(&store, &exec_id, &call_ids).await };
        finish(py, awaitable, fut, raw_values)
    }

    #[pyo3(signature = (exec_id, reason = String::new(), *, awaitable = false))]
    fn cancel<'py>(
        &self,
        py: Python<'py>,
        exec_id: String,
        reason: String,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move { execution::cancel(&store, &exec_id, &reason).await };
        finish(py, awaitable, fut, none)
    }

    /// Answers (or aborts) a pending wait; the value is JSON, already validated.
    #[pyo3(signature = (exec_id, name, value_json, *, aborted = false, awaitable = false))]
    fn answer<'py>(
        &self,
        py: Python<'py>,
        exec_id: String,
        name: String,
        value_json: Option<String>,
        aborted: bool,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut =
            async move { execution::answer(&store, &exec_id, &name, value_json, aborted).await };
        finish(py, awaitable, fut, none)
    }

    /// The captured output of an execution as JSON lines, oldest first.
    #[pyo3(signature = (exec_id, *, awaitable = false))]
    fn logs<'py>(&self, py: Python<'py>, exec_id: String, awaitable: bool) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move { crate::journal::load_logs_jsonl(&store, &exec_id).await };
        finish(py, awaitable, fut, plain)
    }

    /// The record stored at `key` as plain data, or None when the key does not exist.
    #[pyo3(signature = (key, *, awaitable = false))]
    fn dump_key<'py>(&self, py: Python<'py>, key: String, awaitable: bool) -> Awaitable<'py> {
        let store = self.inner.clone();
        finish(
            py,
            awaitable,
            async move { crate::journal::dump_key(&store, &key).await },
            to_py,
        )
    }

    /// Stores `data` as a content-addressed blob (deduplicated); its blake3 hash, hex.
    #[pyo3(signature = (data, *, awaitable = false))]
    fn put_blob<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'_, PyBytes>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let (store, bytes) = (self.inner.clone(), raw(String::new(), data).bytes);
        let quick = store.is_quick();
        let fut = async move { Ok(layout::hex(&store.put_blob(bytes).await?)) };
        finish_quick(py, quick, awaitable, fut, plain)
    }

    /// The blob with blake3 hash `hash` (hex), verified against it; `exec_id` names the
    /// execution that refers to it in an error.
    #[pyo3(signature = (hash, exec_id = None, *, awaitable = false))]
    fn get_blob<'py>(
        &self,
        py: Python<'py>,
        hash: String,
        exec_id: Option<String>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let fut = async move { store.get_blob_hex(&hash, exec_id.as_deref()).await };
        finish(py, awaitable, fut, |py, b: bytes::Bytes| {
            Ok(PyBytes::new(py, &b).into_any().unbind())
        })
    }

    /// Reads every record and blob: what is corrupt, dangling or out of sequence.
    /// `progress` counts the work done, for a display on another thread.
    #[pyo3(signature = (*, progress = None, awaitable = false))]
    fn verify<'py>(
        &self,
        py: Python<'py>,
        progress: Option<PyRef<'py, PyProgress>>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let progress = progress.map(|p| p.inner.clone());
        finish(
            py,
            awaitable,
            async move { crate::verify::verify_with(&store, progress.as_deref()).await },
            to_py,
        )
    }

    /// Writes the execution index entries that are missing and drops stale ones (every
    /// execution read once); marks the index complete.
    #[pyo3(signature = (*, progress = None, awaitable = false))]
    fn reindex<'py>(
        &self,
        py: Python<'py>,
        progress: Option<PyRef<'py, PyProgress>>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let store = self.inner.clone();
        let progress = progress.map(|p| p.inner.clone());
        finish(
            py,
            awaitable,
            async move { crate::index::reindex(&store, progress.as_deref()).await },
            to_py,
        )
    }

    /// Every key under `prefix`, sorted.
    #[pyo3(signature = (prefix, *, awaitable = false))]
    fn keys<'py>(&self, py: Python<'py>, prefix: String, awaitable: bool) -> Awaitable<'py> {
        let store = self.inner.clone();
        finish(
            py,
            awaitable,
            async move { store.list(&prefix).await },
            plain,
        )
    }
}

/// How far a `verify` or `list` has come: read it from another thread while the call runs.
#[pyclass(frozen, name = "Progress", module = "kitaru._kitaru")]
#[derive(Default)]
pub struct PyProgress {
    inner: Arc<crate::progress::Progress>,
}

#[pymethods]
impl PyProgress {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// (phase, done, total, phase number); total 0: not known yet.
    fn read(&self) -> (&'static str, u64, u64, usize) {
        self.inner.read()
    }
}

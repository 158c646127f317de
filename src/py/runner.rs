//! `kitaru._kitaru.Runner`: the lease holder of one execution while this process runs it,
//! and `CallDecision`, the core's answer to "does a stored result answer this call?".

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::records::{
    digest, raw, value_tuple, AttemptRecord, CallRecord, FailureRecord, WaitRecord,
};
use super::{finish, none, plain, Awaitable};
use crate::execution::{CallRequest, Decision, Policy, Runner};
use crate::journal::types::AnswerRecord;
use crate::runtime;

#[pyclass(frozen, name = "Runner", module = "kitaru._kitaru")]
pub struct PyRunner {
    inner: Arc<Runner>,
}

impl PyRunner {
    pub(super) fn new(runner: Runner) -> PyResult<Self> {
        let rt = runtime::get()?;
        runner.spawn_heartbeat(&rt);
        Ok(PyRunner {
            inner: Arc::new(runner),
        })
    }
}

/// An answer to a wait as (aborted, value JSON), or None.
fn answer(py: Python<'_>, a: Option<AnswerRecord>) -> PyResult<Py<PyAny>> {
    plain(py, a.map(|a| (a.aborted, a.value_json)))
}

fn decision(py: Python<'_>, d: Decision, runner: Arc<Runner>) -> PyResult<Py<PyAny>> {
    Ok(Py::new(py, PyDecision { inner: d, runner })?.into_any())
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

    /// The options recorded when the execution started (JSON), as the run sees them.
    #[getter]
    fn options_json(&self) -> Option<String> {
        self.inner.start_options().map(str::to_string)
    }

    /// Starts a pass over the flow body (the first, or a flow-level retry); its number.
    fn new_pass(&self) -> u32 {
        self.inner.new_pass()
    }

    /// The id of the next call of checkpoint `name` in this pass, or `explicit_id`.
    #[pyo3(signature = (name, explicit_id = None))]
    fn allocate_call(&self, name: &str, explicit_id: Option<&str>) -> PyResult<String> {
        Ok(self.inner.allocate_call(name, explicit_id)?)
    }

    /// Whether a stored result answers the call; no I/O (see `settle_call`).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (call_id, name, digest, *, ordered, explicit, policy, code = None, cache = None))]
    fn begin_call(
        &self,
        call_id: String,
        name: String,
        digest: Option<&[u8]>,
        ordered: bool,
        explicit: bool,
        policy: &str,
        code: Option<&[u8]>,
        cache: Option<bool>,
    ) -> PyResult<PyDecision> {
        let req = CallRequest {
            call_id,
            name,
            digest: self::digest(digest)?,
            ordered,
            explicit,
            policy: policy.parse::<Policy>()?,
            code: self::digest(code)?,
            cache,
        };
        Ok(PyDecision {
            inner: self.inner.begin_call(&req),
            runner: self.inner.clone(),
        })
    }

    /// The final decision of a pending one: its divergence recorded, its output read.
    #[pyo3(signature = (decision, *, awaitable = false))]
    fn settle_call<'py>(
        &self,
        py: Python<'py>,
        decision: &PyDecision,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let (r, d) = (self.inner.clone(), decision.inner.clone());
        let fut = async move {
            let settled = r.settle_call(d).await?;
            Ok((settled, r))
        };
        finish(py, awaitable, fut, |py, (d, r)| self::decision(py, d, r))
    }

    /// The metadata recorded with `call_id`'s stored result (JSON), if any.
    fn call_metadata(&self, call_id: &str) -> Option<String> {
        self.inner.call_metadata(call_id)
    }

    /// The execution metadata (`kitaru.log()` on the flow body) of earlier runs, oldest
    /// first, as loaded when the lease was taken: one JSON object per record.
    fn execution_metadata(&self) -> Vec<String> {
        self.inner
            .execution_metadata()
            .map(str::to_string)
            .collect()
    }

    /// True when the lease holds as far as known without asking the store, False when the
    /// store must be asked (`check_lease`); raises when it is known cancelled or lost.
    fn lease_ok(&self) -> PyResult<bool> {
        match self.inner.check_lease_quick() {
            Some(done) => done.map(|()| true).map_err(Into::into),
            None => Ok(false),
        }
    }

    /// Fails if the execution was cancelled or taken over (`Runner::check_lease_now`).
    #[pyo3(signature = (*, awaitable = false))]
    fn check_lease<'py>(&self, py: Python<'py>, awaitable: bool) -> Awaitable<'py> {
        let r = self.inner.clone();
        finish(
            py,
            awaitable,
            async move { r.check_lease_now().await },
            none,
        )
    }

    /// Records a finished call.
    #[pyo3(signature = (call, *, awaitable = false))]
    fn record_checkpoint<'py>(
        &self,
        py: Python<'py>,
        call: CallRecord<'_>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let (r, done) = (self.inner.clone(), call.into_core()?);
        finish(
            py,
            awaitable,
            async move { r.record_checkpoint(done).await },
            none,
        )
    }

    /// Takes over the results of `calls` from execution `source`, and records each of
    /// `overrides` (call id, serializer, bytes) in place of its call's output (a replay).
    #[pyo3(signature = (source, calls, overrides, *, awaitable = false))]
    fn seed_from<'py>(
        &self,
        py: Python<'py>,
        source: String,
        calls: Vec<String>,
        overrides: Vec<(String, String, Bound<'_, PyBytes>)>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let overrides = overrides
            .into_iter()
            .map(|(id, tag, data)| (id, raw(tag, &data)))
            .collect();
        let r = self.inner.clone();
        let fut = async move { r.seed_from(&source, &calls, overrides).await };
        finish(py, awaitable, fut, plain)
    }

    /// Records a failed attempt; returns its attempt number (1-based).
    #[pyo3(signature = (attempt, *, awaitable = false))]
    fn record_failed_attempt<'py>(
        &self,
        py: Python<'py>,
        attempt: AttemptRecord,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let (r, failed) = (self.inner.clone(), attempt.into_core()?);
        finish(
            py,
            awaitable,
            async move { r.record_failed_attempt(failed).await },
            plain,
        )
    }

    /// Records that the flow reached a wait; its answer as (aborted, value JSON) if given.
    #[pyo3(signature = (wait, *, awaitable = false))]
    fn open_wait<'py>(&self, py: Python<'py>, wait: WaitRecord, awaitable: bool) -> Awaitable<'py> {
        let r = self.inner.clone();
        finish(
            py,
            awaitable,
            async move { r.open_wait(wait.into()).await },
            answer,
        )
    }

    /// The answer to wait `name` as (aborted, value JSON), if someone gave it.
    #[pyo3(signature = (name, *, awaitable = false))]
    fn poll_answer<'py>(&self, py: Python<'py>, name: String, awaitable: bool) -> Awaitable<'py> {
        let r = self.inner.clone();
        finish(
            py,
            awaitable,
            async move { r.poll_answer(&name).await },
            answer,
        )
    }

    /// Stores a batch of captured output (JSON lines).
    #[pyo3(signature = (entries_jsonl, *, awaitable = false))]
    fn write_logs<'py>(
        &self,
        py: Python<'py>,
        entries_jsonl: String,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let r = self.inner.clone();
        finish(
            py,
            awaitable,
            async move { r.write_logs(entries_jsonl).await },
            none,
        )
    }

    /// `kitaru.log()` on the flow body (a JSON object).
    #[pyo3(signature = (json, *, awaitable = false))]
    fn log_metadata<'py>(&self, py: Python<'py>, json: String, awaitable: bool) -> Awaitable<'py> {
        let r = self.inner.clone();
        finish(
            py,
            awaitable,
            async move { r.log_metadata(json).await },
            none,
        )
    }

    /// Ends the run: the execution completed with this return value.
    #[pyo3(signature = (serializer, data, *, awaitable = false))]
    fn complete<'py>(
        &self,
        py: Python<'py>,
        serializer: String,
        data: &Bound<'_, PyBytes>,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let (r, v) = (self.inner.clone(), raw(serializer, data));
        finish(py, awaitable, async move { r.complete(v).await }, none)
    }

    /// Ends the run: the execution failed.
    #[pyo3(signature = (failure, *, awaitable = false))]
    fn fail<'py>(
        &self,
        py: Python<'py>,
        failure: FailureRecord,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let r = self.inner.clone();
        finish(
            py,
            awaitable,
            async move { r.fail(failure.into()).await },
            none,
        )
    }

    /// A pass over the flow body failed; the flow runs it again (a flow-level retry).
    #[pyo3(signature = (attempt, failure, *, awaitable = false))]
    fn flow_attempt_failed<'py>(
        &self,
        py: Python<'py>,
        attempt: u32,
        failure: FailureRecord,
        awaitable: bool,
    ) -> Awaitable<'py> {
        let r = self.inner.clone();
        let fut = async move { r.flow_attempt_failed(attempt, failure.into()).await };
        finish(py, awaitable, fut, none)
    }

    /// Ends the run: the execution waits for input.
    #[pyo3(signature = (reason, *, awaitable = false))]
    fn suspend<'py>(&self, py: Python<'py>, reason: String, awaitable: bool) -> Awaitable<'py> {
        let r = self.inner.clone();
        finish(py, awaitable, async move { r.suspend(reason).await }, none)
    }

    /// Stops renewing the lease without writing a state event (the process is exiting).
    #[pyo3(signature = (*, awaitable = false))]
    fn release<'py>(&self, py: Python<'py>, awaitable: bool) -> Awaitable<'py> {
        let r = self.inner.clone();
        let fut = async move {
            r.stop_heartbeat().await;
            Ok(())
        };
        finish(py, awaitable, fut, none)
    }
}

/// The core's decision for one call (`Runner::begin_call` / `settle_call`).
#[pyclass(frozen, name = "CallDecision", module = "kitaru._kitaru")]
pub struct PyDecision {
    inner: Decision,
    /// The runner that decided (the execution a notice names).
    runner: Arc<Runner>,
}

#[pymethods]
impl PyDecision {
    /// The id the call runs or is answered under.
    #[getter]
    fn call_id(&self) -> &str {
        &self.inner.call_id
    }

    /// A stored result answers the call.
    #[getter]
    fn reuse(&self) -> bool {
        self.inner.reuse
    }

    /// The decision needs the store first (`Runner.settle_call`).
    #[getter]
    fn pending(&self) -> bool {
        self.inner.pending()
    }

    /// The reused result was stored by an earlier run of the execution.
    #[getter]
    fn earlier_run(&self) -> bool {
        self.inner.earlier_run
    }

    /// Where a result from the cross-execution cache came from: (execution id, call id).
    #[getter]
    fn cached_from(&self) -> Option<(String, String)> {
        let c = self.inner.cached_from.as_ref()?;
        Some((c.exec_id.clone(), c.call_id.clone()))
    }

    /// The metadata recorded with a result from the cache (JSON), if any.
    #[getter]
    fn cached_metadata(&self) -> Option<String> {
        self.inner.cached_from.as_ref()?.metadata_json.clone()
    }

    /// The reused output as (serializer, bytes), when `reuse` and not `pending`.
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> Option<(String, Bound<'py, PyBytes>)> {
        self.inner.value.clone().map(|v| value_tuple(py, v))
    }

    /// What to tell the user about this decision (a sentence), if anything.
    #[getter]
    fn notice(&self) -> Option<String> {
        self.inner.notice_text(self.runner.exec_id())
    }

    /// The kind of notice: "diverged" (a stored output reused for other inputs) or
    /// "damaged" (the stored output could not be read, the call runs again).
    #[getter]
    fn notice_kind(&self) -> Option<&'static str> {
        self.inner.notice.as_ref().map(|n| n.kind())
    }

    fn __repr__(&self) -> String {
        let d = &self.inner;
        let what = if d.pending() {
            "pending"
        } else if d.reuse {
            "reuse"
        } else {
            "run"
        };
        format!("<CallDecision {:?}: {what}>", d.call_id)
    }
}

//! The records Python hands to the core, read attribute by attribute from the frozen
//! classes of `kitaru._types` (`#[derive(FromPyObject)]`), and the bytes of values.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::execution::{FailedCall, FinishedCall, RawValue, StartRequest, WaitRequest};
use crate::journal::types::{EntryPoint, Failure};

/// A 32-byte digest from Python bytes.
pub(super) fn digest(d: Option<&[u8]>) -> PyResult<Option<[u8; 32]>> {
    d.map(|b| {
        <[u8; 32]>::try_from(b)
            .map_err(|_| pyo3::exceptions::PyValueError::new_err("a digest must be 32 bytes"))
    })
    .transpose()
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

pub(super) fn raw(serializer: String, data: &Bound<'_, PyBytes>) -> RawValue {
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

/// A stored value as Python sees it: (serializer, bytes).
pub(super) fn value_tuple(py: Python<'_>, v: RawValue) -> (String, Bound<'_, PyBytes>) {
    (v.serializer, PyBytes::new(py, &v.bytes))
}

/// `kitaru._types.CallRecord`: a finished checkpoint call.
#[derive(FromPyObject)]
pub(super) struct CallRecord<'py> {
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
    pub(super) fn into_core(self) -> PyResult<FinishedCall> {
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

/// `kitaru._types.FailureRecord`: what went wrong (origin, message, type, traceback).
#[derive(FromPyObject)]
pub(super) struct FailureRecord {
    origin: String,
    message: String,
    exception_type: Option<String>,
    traceback: Option<String>,
}

impl From<FailureRecord> for Failure {
    fn from(f: FailureRecord) -> Failure {
        Failure {
            origin: f.origin,
            message: f.message,
            exception_type: f.exception_type,
            traceback: f.traceback,
        }
    }
}

/// `kitaru._types.AttemptRecord`: a failed attempt of a checkpoint call.
#[derive(FromPyObject)]
pub(super) struct AttemptRecord {
    call_id: String,
    name: String,
    checkpoint_type: Option<String>,
    input_digest: Option<Vec<u8>>,
    started_us: u64,
    ended_us: u64,
    failure: FailureRecord,
}

impl AttemptRecord {
    pub(super) fn into_core(self) -> PyResult<FailedCall> {
        Ok(FailedCall {
            input_digest: digest(self.input_digest.as_deref())?,
            call_id: self.call_id,
            name: self.name,
            checkpoint_type: self.checkpoint_type,
            started_us: self.started_us,
            ended_us: self.ended_us,
            failure: self.failure.into(),
        })
    }
}

/// `kitaru._types.WaitRequest`: a wait the flow reached.
#[derive(FromPyObject)]
pub(super) struct WaitRecord {
    name: String,
    question: Option<String>,
    schema_json: Option<String>,
    schema_type: Option<String>,
    metadata_json: String,
}

impl From<WaitRecord> for WaitRequest {
    fn from(w: WaitRecord) -> WaitRequest {
        WaitRequest {
            name: w.name,
            question: w.question,
            schema_json: w.schema_json,
            schema_type: w.schema_type,
            metadata_json: w.metadata_json,
        }
    }
}

/// `kitaru._types.StartRecord`: what a new execution starts with.
#[derive(FromPyObject)]
pub(super) struct StartRecord<'py> {
    flow_name: String,
    module: String,
    qualname: String,
    script: Option<String>,
    cwd: String,
    args_serializer: String,
    args: Bound<'py, PyBytes>,
    kitaru_version: String,
    options_json: String,
}

impl From<StartRecord<'_>> for StartRequest {
    fn from(s: StartRecord<'_>) -> StartRequest {
        StartRequest {
            args: raw(s.args_serializer, &s.args),
            flow_name: s.flow_name,
            entry: EntryPoint {
                module: s.module,
                qualname: s.qualname,
                script: s.script,
                cwd: s.cwd,
            },
            kitaru_version: s.kitaru_version,
            options_json: s.options_json,
        }
    }
}

//! Every core error becomes one of the `kitaru.errors` classes (defined in Python so users
//! can catch them by the names Kitaru 0.4 uses).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::error::Error;
use crate::store::StoreError;

macro_rules! class {
    ($py:expr, $name:literal) => {{
        static CELL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        CELL.import($py, "kitaru.errors", $name).map(|t| t.clone())
    }};
}

fn class_for<'py>(py: Python<'py>, err: &Error) -> PyResult<Bound<'py, PyType>> {
    match err {
        Error::InvalidName { .. } | Error::IdTaken { .. } => class!(py, "KitaruUsageError"),
        Error::Diverged { .. } => class!(py, "KitaruDivergenceError"),
        Error::Store(StoreError::InvalidUrl { .. })
        | Error::Store(StoreError::UnsupportedScheme { .. }) => {
            class!(py, "KitaruUsageError")
        }
        Error::Store(StoreError::LocalDir { .. })
        | Error::Store(StoreError::LocalIo { .. })
        | Error::Store(StoreError::Backend { .. })
        | Error::Store(StoreError::ConditionalWritesUnsupported { .. })
        | Error::Store(StoreError::LayoutTooNew { .. })
        | Error::RuntimeStart(_) => class!(py, "KitaruBackendError"),
        Error::Corrupt { .. } => class!(py, "KitaruCorruptionError"),
        Error::ExecutionNotFound { .. } => class!(py, "KitaruExecutionNotFoundError"),
        Error::Cancelled { .. } => class!(py, "KitaruCancelledError"),
        Error::RecordedTwice { .. } => class!(py, "KitaruRuntimeError"),
        Error::Transition { .. }
        | Error::WaitNotFound { .. }
        | Error::WaitAmbiguous { .. }
        | Error::StillRunning { .. }
        | Error::NothingToReplay { .. }
        | Error::UnknownCheckpoint { .. }
        | Error::AmbiguousCheckpoint { .. }
        | Error::WaitAnswered { .. }
        | Error::WaitsPending { .. } => class!(py, "KitaruStateError"),
        Error::LeaseHeld { .. } | Error::LeaseLost { .. } | Error::Contention { .. } => {
            class!(py, "KitaruLeaseError")
        }
        Error::Encode { .. } => class!(py, "KitaruRuntimeError"),
    }
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        Python::attach(|py| {
            let message = err.to_string();
            match class_for(py, &err) {
                Ok(cls) => match &err {
                    // An execution error names its execution and how it failed.
                    Error::Diverged { exec_id, .. } => {
                        execution_error(py, &cls, message, exec_id, "divergence")
                    }
                    _ => PyErr::from_type(cls, (message,)),
                },
                // kitaru.errors failed to import: still raise something that names the problem.
                Err(import_err) => {
                    let e = pyo3::exceptions::PyRuntimeError::new_err(message);
                    e.set_cause(py, Some(import_err));
                    e
                }
            }
        })
    }
}

/// `cls(message, exec_id=..., status="failed", failure_origin=...)`.
fn execution_error(
    py: Python<'_>,
    cls: &Bound<'_, PyType>,
    message: String,
    exec_id: &str,
    origin: &str,
) -> PyErr {
    let made = (|| {
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("exec_id", exec_id)?;
        kwargs.set_item("status", "failed")?;
        let origins = class!(py, "FailureOrigin")?;
        kwargs.set_item("failure_origin", origins.call1((origin,))?)?;
        cls.call((message,), Some(&kwargs))
    })();
    match made {
        Ok(instance) => PyErr::from_value(instance),
        Err(e) => e,
    }
}

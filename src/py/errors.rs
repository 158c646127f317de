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
        Error::InvalidName { .. } => class!(py, "KitaruUsageError"),
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
                Ok(cls) => PyErr::from_type(cls, (message,)),
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

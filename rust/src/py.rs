//! The PyO3 module `llmkit._rust`: a thin layer that converts arguments, releases the GIL for the
//! byte work, and maps Rust errors to Python exceptions.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::error::Error;

/// The Python exception of a core error: `ValueError` for bad input, `OSError` for a file.
pub(crate) fn py_err(e: Error) -> PyErr {
    match e {
        Error::Invalid(m) => PyValueError::new_err(m),
        Error::Io(m) => PyOSError::new_err(m),
    }
}

#[pymodule]
fn _rust(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    crate::py_bpe::register(m)?;
    crate::py_wordpiece::register(m)?;
    Ok(())
}

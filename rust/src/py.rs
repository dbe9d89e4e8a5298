//! The PyO3 module `llmkit._rust`: a thin layer that converts arguments, releases the GIL for the
//! byte work, and maps Rust errors to Python exceptions.

use pyo3::prelude::*;

#[pymodule]
fn _rust(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    crate::py_bpe::register(m)?;
    crate::py_wordpiece::register(m)?;
    Ok(())
}

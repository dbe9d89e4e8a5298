"""Type stub of the Rust extension `llmkit._rust` (kept in step with rust/src/py*.rs)."""

__version__: str

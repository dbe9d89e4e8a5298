"""llmkit.metrics."""

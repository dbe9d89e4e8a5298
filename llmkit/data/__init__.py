"""llmkit.data."""

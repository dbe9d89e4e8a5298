"""llmkit.nn."""

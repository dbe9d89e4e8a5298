"""An example llmkit plugin: a metric, an optimizer, an attention variant and a CLI command."""

"""An example llmkit plugin: a metric, an optimizer, an attention variant, a norm, an objective
and a CLI command."""

"""An example llmkit plugin: a metric, an optimizer and a CLI command."""

"""llmkit.evaluation: evaluate models and predictions with the metric plugins."""

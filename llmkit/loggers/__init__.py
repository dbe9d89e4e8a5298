"""Loggers (component kind `logger`): where a run's scalars go: metrics.jsonl, TensorBoard, CSV.

The trainer hands every logged scalar of a log step to every logger of the run
(`train.loggers: [jsonl, tensorboard]`), so each sees the same values; a plugin adds W&B, MLflow
or anything else through the `register_loggers` hook.
"""

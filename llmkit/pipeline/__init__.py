"""Pipelines: a validated YAML file composes registry components into tokenizer/data/train/eval stages."""

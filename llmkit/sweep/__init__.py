"""Sweeps: a pipeline run over a grid of settings, then one table and one picture of the runs."""

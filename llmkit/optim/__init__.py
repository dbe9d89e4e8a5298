"""Optimizers and learning-rate schedules (torch's own where they exist, LAMB written out)."""

"""Objectives: the ways of training a model, each a component of kind `objective`."""

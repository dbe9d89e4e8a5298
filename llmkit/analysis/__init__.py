"""Looking inside models: per-layer parameters, FLOPs and activation memory; attention maps."""

"""Training losses: token cross-entropy and KL divergence (for distillation)."""

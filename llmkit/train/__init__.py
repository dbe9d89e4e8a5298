"""Training: the loop, objectives, resumable training state and torch.distributed set-up."""

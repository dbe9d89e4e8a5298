"""Built-in optimizers and schedulers, registered through the same hooks as third-party plugins."""

from __future__ import annotations

from llmkit.hookspecs import Register, hookimpl


@hookimpl
def register_optimizers(register: Register) -> None:
    """Adam, AdamW, SGD from torch (fused kernels where available) and LAMB."""
    register("adam", "llmkit.optim.factories:adam", summary="Adam (torch, fused when available)")
    register("adamw", "llmkit.optim.factories:adamw", summary="AdamW, decoupled weight decay")
    register("sgd", "llmkit.optim.factories:sgd", summary="SGD with momentum / Nesterov")
    register("lamb", "llmkit.optim.lamb:LAMB", summary="LAMB: Adam with layer-wise trust ratio")


@hookimpl
def register_schedulers(register: Register) -> None:
    """Warm-up followed by cosine, linear or constant learning rate."""
    register("cosine", "llmkit.optim.schedules:cosine", summary="Linear warm-up, cosine decay")
    register("linear", "llmkit.optim.schedules:linear", summary="Linear warm-up, linear decay")
    register("constant", "llmkit.optim.schedules:constant", summary="Linear warm-up, then constant")

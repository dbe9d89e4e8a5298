"""The `tensorboard` logger: event files under RUN/tensorboard, through torch's SummaryWriter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmkit.errors import UsageError
from llmkit.loggers.base import Logger, Scalars


class TensorBoardLogger(Logger):
    """Each scalar as a TensorBoard scalar of the same name at the step (`tensorboard --logdir
    RUN/tensorboard`); the eval stage's metrics at the run's last step."""

    name = "tensorboard"

    def __init__(self, run_dir: Path, subdir: str = "tensorboard", flush_secs: int = 30) -> None:
        super().__init__(run_dir)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError(
                "train.loggers: tensorboard needs the tensorboard package: "
                "pip install 'llmkit[tensorboard]'"
            ) from None
        self.log_dir = self.run_dir / subdir
        self.writer: Any = SummaryWriter(log_dir=str(self.log_dir), flush_secs=flush_secs)

    def log(self, step: int, scalars: Scalars) -> None:
        """Add every scalar at `step`."""
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, global_step=step)

    def close(self) -> None:
        """Flush the event file and close it."""
        self.writer.close()

"""The training loop: epochs of shuffled mini-batches, one update per batch.

The per-epoch error is the mean of the batch errors seen during the epoch
(the lecture's "Average Error in epoch N"). It is summed on the device and
read once per epoch, so the loop does not wait on the device inside an epoch;
tests/test_trainer.py counts the host reads to keep it so.
"""

import logging
import math
from typing import Callable, List

import torch

from src.model import IntroModel
from src.task import TaskData

log = logging.getLogger(__name__)


class DivergenceError(RuntimeError):
    """The error became inf or nan; training stopped at that epoch."""

    def __init__(self, epoch: int, error: float, lr: float, lr_bound: float) -> None:
        self.epoch = epoch
        self.error = error
        self.lr = lr
        self.lr_bound = lr_bound
        super().__init__(
            f"Training diverged: the error is {error} in epoch {epoch} with learning rate "
            f"{lr}. Every step shrinks the error on this data at this batch size when "
            f"lr < {lr_bound:.4g}; rerun with a smaller optimizer.lr."
        )

    def __reduce__(self):
        # Rebuilt from its fields when a parallel launcher pickles it.
        return type(self), (self.epoch, self.error, self.lr, self.lr_bound)


def full_data_error(model: IntroModel, data: TaskData) -> float:
    """Return the error of the model on all the data, without an update."""
    with torch.no_grad():
        return torch.mean((data.targets - model(data.inputs)) ** 2).item()


def effective_batch_size(batch_size: int, n_samples: int) -> int:
    """Clamp the batch size to the data size, saying so once."""
    if batch_size > n_samples:
        log.info(
            "trainer.batch_size=%d is larger than the %d samples; using one batch of %d.",
            batch_size, n_samples, n_samples,
        )
        return n_samples
    return batch_size


def train_epochs(
    model: IntroModel,
    step: Callable[[], None],
    data: TaskData,
    epochs: int,
    batch_size: int,
    shuffle: bool,
    drop_last: bool,
    generator: torch.Generator,
    on_epoch: Callable[[int, float], None],
    lr: float,
    lr_bound: float,
) -> List[float]:
    """Train for `epochs` epochs and return the per-epoch errors.

    `step` applies one update after error.backward(). `on_epoch(epoch, error)`
    runs after each epoch with the error as a Python float. A non-finite
    error raises DivergenceError before it reaches on_epoch.
    """
    n_samples = data.inputs.shape[0]
    batch_size = effective_batch_size(batch_size, n_samples)
    n_full = n_samples // batch_size
    n_batches = n_full if drop_last or n_samples % batch_size == 0 else n_full + 1
    if drop_last and n_samples % batch_size:
        log.info(
            "Each epoch uses %d batches of %d and leaves %d of the %d samples out, "
            "as the lecture does (trainer.drop_last=false keeps them).",
            n_full, batch_size, n_samples % batch_size, n_samples,
        )

    history: List[float] = []
    for epoch in range(epochs):
        if shuffle:
            order = torch.randperm(n_samples, generator=generator, device=generator.device)
            # index_select rather than inputs[order]. With torch 2.13 on a 2-core
            # CPU, advanced indexing splits this copy across threads and took
            # 8 ms for 10 000 rows while the other core was busy, index_select
            # 0.03 ms.
            inputs = data.inputs.index_select(0, order)
            targets = data.targets.index_select(0, order)
        else:
            inputs, targets = data.inputs, data.targets

        error_sum = torch.zeros((), dtype=inputs.dtype, device=inputs.device)
        for index in range(n_batches):
            start = index * batch_size
            input_batch = inputs[start:start + batch_size]
            target_batch = targets[start:start + batch_size]

            prediction = model(input_batch)
            error = torch.mean((target_batch - prediction) ** 2)
            error.backward()
            step()

            error_sum += error.detach()

        # The one host sync of the epoch.
        epoch_error = error_sum.item() / n_batches
        if not math.isfinite(epoch_error):
            raise DivergenceError(epoch, epoch_error, lr, lr_bound)
        history.append(epoch_error)
        on_epoch(epoch, epoch_error)
    return history

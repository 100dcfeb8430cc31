"""The training loop without MLflow or Hydra: it reads the error from the
device once per epoch, never once per batch."""

from typing import List

import pytest
import torch

from src.model import IntroModel
from src.task import TaskData
from src.trainer import train_epochs
from src.updates import STYLE_CLASSES, make_update

# Tensor methods that copy a value to the host. On a GPU each one waits for
# every queued kernel, so one of them per batch serialises the loop.
HOST_READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")

EPOCHS = 3
BATCHES_PER_EPOCH = 60


@pytest.fixture
def host_reads(monkeypatch) -> List[str]:
    """Record the name of every host read of a tensor while the test runs."""
    calls: List[str] = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


def _sum_data(n_samples: int) -> TaskData:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(n_samples, 2, generator=generator)
    weight = torch.tensor([[1.0, 1.0]])
    bias = torch.tensor([0.0])
    return TaskData(inputs, inputs @ weight.T + bias, weight, bias)


def _train(step_name: str, read_per_batch: bool = False) -> List[float]:
    batch_size = 10
    data = _sum_data(BATCHES_PER_EPOCH * batch_size)
    torch.manual_seed(0)
    model = IntroModel(2, 1)
    update = make_update(step_name, model, lr=0.01)

    def step() -> None:
        update.step()
        if read_per_batch:
            float(model.weight.detach()[0, 0])

    return train_epochs(
        model, step, data, EPOCHS, batch_size, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(0), on_epoch=lambda epoch, error: None,
        lr=0.01, lr_bound=1.0,
    )


@pytest.mark.parametrize("style", sorted(STYLE_CLASSES))
def test_train_epochs_reads_host_once_per_epoch(host_reads, style):
    history = _train(style)
    assert len(history) == EPOCHS
    assert host_reads == ["item"] * EPOCHS


def test_host_read_counter_sees_per_batch_float(host_reads):
    # The lecture's loop calls float(error) after every batch; a loop like
    # that must fail the test above.
    _train("inplace", read_per_batch=True)
    assert host_reads.count("__float__") == EPOCHS * BATCHES_PER_EPOCH

"""Task data: inputs drawn once, targets y = x @ weight.T + bias (plus optional
Gaussian noise) computed once, both placed on the training device before the
first epoch."""

from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class TaskData:
    inputs: torch.Tensor  # n_samples x in
    targets: torch.Tensor  # n_samples x out
    true_weight: torch.Tensor  # out x in
    true_bias: torch.Tensor  # out


def make_task_data(task: DictConfig, seed: int, device: torch.device, dtype: str = "float32") -> TaskData:
    """Build the task's data set for one seed.

    Inputs and targets are made by a seeded CPU generator and moved to the
    device in one copy each, so a seed gives the same data on every device.
    """
    torch_dtype = DTYPES[dtype]
    true_weight = torch.tensor(OmegaConf.to_container(task.weight), dtype=torch_dtype)
    true_bias = torch.tensor(OmegaConf.to_container(task.bias), dtype=torch_dtype)

    if task.inputs is not None:
        inputs = torch.tensor(OmegaConf.to_container(task.inputs), dtype=torch_dtype)
    else:
        generator = torch.Generator().manual_seed(seed)
        shape = (task.n_samples, true_weight.shape[1])
        if task.input_distribution == "uniform":
            inputs = torch.rand(shape, generator=generator, dtype=torch_dtype) * 2 - 1
        else:
            inputs = torch.randn(shape, generator=generator, dtype=torch_dtype)

    targets = inputs @ true_weight.T + true_bias
    if task.noise_std > 0:
        # Seeded apart from the inputs, so noise leaves the inputs unchanged.
        noise_generator = torch.Generator().manual_seed(seed + 1_000_003)
        targets = targets + task.noise_std * torch.randn(
            targets.shape, generator=noise_generator, dtype=torch_dtype)

    inputs = inputs.to(device)
    targets = targets.to(device)
    true_weight = true_weight.to(device)
    true_bias = true_bias.to(device)
    return TaskData(inputs, targets, true_weight, true_bias)

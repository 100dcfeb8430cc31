"""The lecture's model: one torch.nn.Linear layer, kept under the lecture's
attribute name `linear_mapping`."""

import torch


class IntroModel(torch.nn.Module):
    def __init__(self, input_size: int, output_size: int) -> None:
        super().__init__()
        self.linear_mapping = torch.nn.Linear(input_size, output_size)

    def forward(self, input_: torch.Tensor) -> torch.Tensor:
        return self.linear_mapping(input_)

    @property
    def weight(self) -> torch.Tensor:
        return self.linear_mapping.weight

    @property
    def bias(self) -> torch.Tensor:
        return self.linear_mapping.bias

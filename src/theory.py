"""Theory for linear least squares trained by gradient descent.

The error is the mean over the batch and the m outputs of the squared
residual. Its Hessian for each output's weight row (with the bias as an extra
column of ones) is (2 / m) * S, where S is the second moment matrix of the
inputs with the bias column. Gradient descent on the full data is stable for
lr < m / lambda_max(S).
"""

import torch


def second_moment(inputs: torch.Tensor) -> torch.Tensor:
    """S = mean of [x, 1] [x, 1]^T over the samples, in float64."""
    ones = torch.ones(inputs.shape[0], 1, dtype=torch.float64, device=inputs.device)
    augmented = torch.cat([inputs.to(torch.float64), ones], dim=1)
    return augmented.T @ augmented / inputs.shape[0]


def lr_stability_bound(inputs: torch.Tensor, n_outputs: int) -> float:
    """The largest stable learning rate of full-batch gradient descent."""
    largest = torch.linalg.eigvalsh(second_moment(inputs)).max().item()
    return n_outputs / largest

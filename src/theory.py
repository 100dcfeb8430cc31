"""Theory for linear least squares trained by gradient descent.

The error is the mean over the batch and the m outputs of the squared
residual. Its Hessian for each output's weight row (with the bias as an extra
column of ones) is (2 / m) * S, where S is the second moment matrix of the
inputs with the bias column. Gradient descent on the full data is stable for
lr < m / lambda_max(S).

Each update moves every output's coefficient error e (its weight row and bias
minus the least-squares optimum) to (I - eta S_B) e, with eta = 2 lr / m and
S_B the batch's second moment. Take S_B at its mean S, and let lambda_i be the
eigenvalues of S and p_i the squared components of the start's coefficient
error along its eigenvectors. Then the error at step t exceeds the optimum's
by sum_i lambda_i (1 - eta lambda_i)^(2t) p_i / m. The per-epoch error, the
mean of an epoch's batch errors, is that sum averaged over the epoch's steps.
`compare_with_theory` predicts this curve from the start values and sets it
beside the observed one.

All theory runs on the CPU in float64, whatever the training device and dtype.
"""

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

# Eigenvalues below this fraction of the largest are taken as zero: directions
# the data leave undetermined, which gradient descent never moves.
_ZERO_EIGENVALUE = 1e-12


def augmented_inputs(inputs: torch.Tensor) -> torch.Tensor:
    """Append a column of ones to the inputs: [x, 1] per sample, in float64 on the CPU."""
    inputs = inputs.detach().to(device="cpu", dtype=torch.float64)
    ones = torch.ones(inputs.shape[0], 1, dtype=torch.float64)
    return torch.cat([inputs, ones], dim=1)


def second_moment(inputs: torch.Tensor) -> torch.Tensor:
    """S = mean of [x, 1] [x, 1]^T over the samples, in float64."""
    ones = torch.ones(inputs.shape[0], 1, dtype=torch.float64, device=inputs.device)
    augmented = torch.cat([inputs.to(torch.float64), ones], dim=1)
    return augmented.T @ augmented / inputs.shape[0]


def lr_stability_bound(inputs: torch.Tensor, n_outputs: int,
                       batch_size: Optional[int] = None) -> float:
    """Return the largest learning rate at which every update shrinks the
    coefficient error: m / lambda_max of the batch's second moment.

    Full batch (batch_size None or at least the sample count): m / lambda_max(S).
    Mini-batches: the smallest of m / lambda_max(S_B) over the batches, and
    of the full-batch bound. A batch of one sample a has lambda_max = |a|^2,
    so small batches overshoot at rates well under the full-batch bound.
    """
    design = augmented_inputs(inputs)
    n_samples = design.shape[0]
    largest = torch.linalg.eigvalsh(design.T @ design / n_samples).max().item()
    if batch_size is None or batch_size >= n_samples:
        return n_outputs / largest

    if batch_size == 1:
        largest = max(largest, (design ** 2).sum(dim=1).max().item())
        return n_outputs / largest

    # NOTE: an estimate. The batches of one seeded shuffle (at most 4 million
    # rows of them) stand in for all the batches training will draw.
    n_batches = min(n_samples // batch_size, max(1, 4_000_000 // batch_size))
    order = torch.randperm(n_samples, generator=torch.Generator().manual_seed(0))
    rows = design[order[: n_batches * batch_size]].reshape(n_batches, batch_size, -1)
    batch_moments = torch.einsum("kbi,kbj->kij", rows, rows) / batch_size
    largest = max(largest, torch.linalg.eigvalsh(batch_moments).max().item())
    return n_outputs / largest


def stack_coefficients(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Stack weight and bias into the (in + 1) x out matrix [W b]^T, one column
    per output, in float64 on the CPU."""
    weight = weight.detach().to(device="cpu", dtype=torch.float64)
    bias = bias.detach().to(device="cpu", dtype=torch.float64)
    return torch.cat([weight, bias[:, None]], dim=1).T


@dataclass
class Optimum:
    """The least-squares solution on one data set."""

    weight: torch.Tensor  # out x in, float64
    bias: torch.Tensor  # out, float64
    error: float  # the mean squared residual at the optimum


def least_squares_optimum(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    start_weight: Optional[torch.Tensor] = None,
    start_bias: Optional[torch.Tensor] = None,
) -> Optimum:
    """Solve min ||[x, 1] [W b]^T - y||^2 on the data with torch.linalg.lstsq.

    When the data leave some coefficients undetermined (the samples [x, 1]
    span fewer than in + 1 dimensions, as the lecture's single points do),
    this returns the solution nearest to the start values. That is where
    gradient descent from them converges, because every update lies in the
    span of the samples.
    Without start values it returns the minimum-norm solution.
    """
    design = augmented_inputs(inputs)
    targets = targets.detach().to(device="cpu", dtype=torch.float64)
    n_outputs = targets.shape[1]
    if start_weight is None or start_bias is None:
        start = torch.zeros(design.shape[1], n_outputs, dtype=torch.float64)
    else:
        start = stack_coefficients(start_weight, start_bias)

    # gelsd (SVD) gives the minimum-norm correction, also for rank-deficient data.
    correction = torch.linalg.lstsq(design, targets - design @ start, driver="gelsd").solution
    solution = start + correction
    error = torch.mean((design @ solution - targets) ** 2).item()
    return Optimum(weight=solution[:-1].T, bias=solution[-1], error=error)


def batches_per_epoch(n_samples: int, batch_size: int, drop_last: bool) -> int:
    """Count the updates per epoch as the training loop does."""
    batch_size = min(batch_size, n_samples)
    if drop_last:
        return n_samples // batch_size
    return math.ceil(n_samples / batch_size)


def predict_errors(
    inputs: torch.Tensor,
    optimum: Optimum,
    start_weight: torch.Tensor,
    start_bias: torch.Tensor,
    lr: float,
    batch_size: int,
    drop_last: bool,
    epochs: int,
) -> Tuple[List[float], float]:
    """Predict the per-epoch error from the start values, with every batch's
    second moment taken at its mean S.

    Return the predicted errors (the optimum's error included) and the
    asymptotic per-epoch contraction: the largest factor among the modes the
    data determine, which below the stability bound is the slowest mode's.
    Above the stability bound the predicted errors grow, and values past the
    float64 range come back as inf.

    NOTE: small batches add a noise term, of order lr * (in + 1) / batch_size
    of the drift per step (an estimate), which this leaves out. On the
    lecture's 100-point task with batch size 1 the predicted contraction is
    within about 2 % of the observed one (seeds 0-3). With batches of 1000 the
    two agree to 0.01 %.
    """
    n_outputs = start_weight.shape[0]
    moment = second_moment(inputs.detach().cpu())
    eigenvalues, eigenvectors = torch.linalg.eigh(moment)
    start_error = stack_coefficients(start_weight, start_bias) - stack_coefficients(
        optimum.weight, optimum.bias)
    # p_i: the start's squared coefficient error along eigenvector i, summed over outputs.
    components = ((eigenvectors.T @ start_error) ** 2).sum(dim=1)

    step_size = 2 * lr / n_outputs
    n_batches = batches_per_epoch(inputs.shape[0], batch_size, drop_last)
    # Per step, mode i's share of the error shrinks by the factor g_i.
    factors = (1 - step_size * eigenvalues) ** 2
    # The mean of g_i^j over the epoch's steps j = 0 .. n_batches - 1.
    near_one = (1 - factors).abs() < 1e-12
    epoch_means = torch.where(
        near_one,
        torch.ones_like(factors),
        (1 - factors ** n_batches) / (n_batches * torch.where(near_one, 1.0, 1 - factors)),
    )

    epoch_factors = factors ** n_batches
    weights = eigenvalues.clamp_min(0) * components * epoch_means / n_outputs
    epoch_numbers = torch.arange(epochs, dtype=torch.float64)[:, None]
    shares = weights * epoch_factors ** epoch_numbers
    # A mode the start leaves unexcited adds nothing, even where its factor
    # has grown past the float64 range (0 * inf would be nan).
    shares = torch.where(weights == 0, 0.0, shares)
    errors = (optimum.error + shares.sum(dim=1)).tolist()

    determined = eigenvalues > _ZERO_EIGENVALUE * eigenvalues.max().clamp_min(1e-300)
    asymptotic = epoch_factors[determined].max().item()
    return errors, asymptotic


def rounding_floor(optimum: Optimum, lr: float, dtype: torch.dtype) -> float:
    """Estimate the error below which rounding stalls training.

    An update smaller than half a unit in the last place of a coefficient is
    rounded away, so the residual stops shrinking near
    eps * |coefficient| / (2 lr / m). This is an order-of-magnitude estimate:
    float32 runs of the lecture's 100-point task (seeds 0-4, and the notebook's
    own run) settle 35-250 times below it.
    """
    n_outputs = optimum.weight.shape[0]
    largest = max(1.0, optimum.weight.abs().max().item(), optimum.bias.abs().max().item())
    residual = torch.finfo(dtype).eps * largest / (2 * lr / n_outputs)
    return residual ** 2


def compared_epochs(predicted: List[float], observed: List[float], floor: float) -> int:
    """Count the leading epochs whose predicted and observed errors both lie
    above the floor, so that their ratio measures the contraction and not the
    floor."""
    count = 0
    for expected, seen in zip(predicted, observed):
        if expected <= floor or seen <= floor:
            break
        count += 1
    return count


def geometric_mean_ratio(values: List[float]) -> float:
    """Return the mean per-epoch factor from the first value to the last."""
    return (values[-1] / values[0]) ** (1 / (len(values) - 1))


@dataclass
class TheoryReport:
    """The theory of one run beside what the run did."""

    optimum: Optimum
    optimum_distance: float  # |learned [W b] - optimum [W b]|, Frobenius
    true_map_distance: float  # |learned [W b] - true [W b]|, Frobenius
    predicted_errors: List[float]  # per epoch, the optimum's error included
    contraction_asymptotic: float  # per epoch, of the slowest mode
    # Per-epoch ratios of the error above the optimum's, as geometric means over
    # the first `compared_epochs` epochs (at least 2); None for runs of fewer
    # than 2 epochs, or when the error is not above the optimum's.
    contraction_predicted: Optional[float]
    contraction_observed: Optional[float]
    compared_epochs: int  # the leading epochs whose error lies above the floor

    def metrics(self) -> List[Tuple[str, float, int]]:
        """List (key, value, step) for MLflow, leaving out inf and nan."""
        values = [
            ("optimum_error", self.optimum.error, 0),
            ("optimum_distance", self.optimum_distance, 0),
            ("true_map_distance", self.true_map_distance, 0),
            ("contraction_asymptotic", self.contraction_asymptotic, 0),
            ("contraction_epochs", float(self.compared_epochs), 0),
        ]
        if self.contraction_predicted is not None:
            values.append(("contraction_predicted", self.contraction_predicted, 0))
        if self.contraction_observed is not None:
            values.append(("contraction_observed", self.contraction_observed, 0))
        values += [("error_predicted", error, epoch)
                   for epoch, error in enumerate(self.predicted_errors)]
        return [(key, value, step) for key, value, step in values if math.isfinite(value)]

    def summary(self) -> str:
        """Describe the optimum, the distances and the contraction in one log line."""
        text = (f"Theory: the least-squares optimum of this data has error {self.optimum.error:.3g}; "
                f"the learned coefficients are {self.optimum_distance:.3g} from it and "
                f"{self.true_map_distance:.3g} from the true map.")
        if self.contraction_observed is None:
            change = "contraction" if self.contraction_asymptotic <= 1 else "growth"
            return text + (f" Predicted {change} of the error per epoch: "
                           f"{self.contraction_asymptotic:.5g} (slowest mode); "
                           f"too few epochs to observe it.")
        span = max(self.compared_epochs, 2)
        text += (f" Error ratio per epoch over epochs 0-{span - 1}: observed "
                 f"{self.contraction_observed:.5g}, predicted {self.contraction_predicted:.5g} "
                 f"(slowest mode {self.contraction_asymptotic:.5g}).")
        if self.compared_epochs < 2:
            text += " The error is at its floor by then, so the ratios measure the floor."
        return text


def compare_with_theory(
    data,
    start: Tuple[torch.Tensor, torch.Tensor],
    model,
    history: List[float],
    lr: float,
    batch_size: int,
    drop_last: bool,
) -> TheoryReport:
    """Set the least-squares optimum and the predicted error curve of the
    run's own data beside what training reached.

    data: the run's TaskData. start: the (weight, bias) training began from.
    model: the trained IntroModel. history: the observed per-epoch errors.
    """
    start_weight, start_bias = start
    optimum = least_squares_optimum(data.inputs, data.targets, start_weight, start_bias)
    learned = stack_coefficients(model.weight, model.bias)
    optimum_distance = torch.linalg.norm(
        learned - stack_coefficients(optimum.weight, optimum.bias)).item()
    true_map_distance = torch.linalg.norm(
        learned - stack_coefficients(data.true_weight, data.true_bias)).item()

    predicted, asymptotic = predict_errors(
        data.inputs, optimum, start_weight, start_bias, lr, batch_size, drop_last, len(history))

    # The contraction is measured on the error above the optimum's, over the
    # epochs whose error lies above both the rounding floor and the optimum's error.
    floor = max(rounding_floor(optimum, lr, data.inputs.dtype), optimum.error)
    predicted_excess = [error - optimum.error for error in predicted]
    observed_excess = [error - optimum.error for error in history]
    count = compared_epochs(predicted_excess, observed_excess, floor)
    # A run at its floor within the first epoch still gets both ratios, over
    # its first two epochs. Then compared_epochs is below 2, which marks them
    # as ratios of the floor.
    span = min(len(history), max(count, 2))
    contraction_predicted = contraction_observed = None
    if span >= 2:
        ends = (predicted_excess[0], predicted_excess[span - 1],
                observed_excess[0], observed_excess[span - 1])
        if all(value > 0 for value in ends):
            contraction_predicted = geometric_mean_ratio(predicted_excess[:span])
            contraction_observed = geometric_mean_ratio(observed_excess[:span])

    return TheoryReport(
        optimum=optimum,
        optimum_distance=optimum_distance,
        true_map_distance=true_map_distance,
        predicted_errors=predicted,
        contraction_asymptotic=asymptotic,
        contraction_predicted=contraction_predicted,
        contraction_observed=contraction_observed,
        compared_epochs=count,
    )

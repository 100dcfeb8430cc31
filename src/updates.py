"""The three update styles. Each object has `step()`, called after
`error.backward()`, and applies one gradient-descent step with rate lr.

With the same seed, `reassign` and `inplace` compute p - lr * grad with the
same float32 operations, so their numbers are identical. `sgd` adds
-lr * grad in one fused call and agrees to float32 rounding.
"""

import torch

from src.model import IntroModel


class Reassign:
    """The lecture's update: new torch.nn.Parameters built from p - lr * p.grad.

    The new parameters start without gradients, so nothing has to be cleared.
    """

    def __init__(self, model: IntroModel, lr: float) -> None:
        self.model = model
        self.lr = lr

    def step(self) -> None:
        linear = self.model.linear_mapping
        new_weight = linear.weight - self.lr * linear.weight.grad
        new_bias = linear.bias - self.lr * linear.bias.grad
        linear.weight = torch.nn.Parameter(new_weight)
        linear.bias = torch.nn.Parameter(new_bias)


class InPlace:
    """Update the parameters in place under torch.no_grad(), then clear the
    gradients so the next backward() does not add to them."""

    def __init__(self, model: IntroModel, lr: float) -> None:
        self.parameters = list(model.parameters())
        self.lr = lr

    def step(self) -> None:
        with torch.no_grad():
            for parameter in self.parameters:
                parameter -= self.lr * parameter.grad
                parameter.grad = None


class Sgd:
    """torch.optim.SGD, the library reference."""

    def __init__(self, model: IntroModel, lr: float) -> None:
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


STYLE_CLASSES = {"reassign": Reassign, "inplace": InPlace, "sgd": Sgd}


def make_update(name: str, model: IntroModel, lr: float):
    return STYLE_CLASSES[name](model, lr)

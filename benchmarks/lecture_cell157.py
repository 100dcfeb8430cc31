"""The lecture's cell 157 as a plain script: the reference that the whole-process
benchmark compares `python -m src.train task=sum` against.

Torch and numpy only, as in the notebook: 10 000 standard-normal samples of 2
features, targets x1 + x2, batches of 1000, 50 epochs, lr 0.01, the
reassigning update and one float(error) per batch.

    python benchmarks/lecture_cell157.py [cpu|cuda|mps]
"""

import sys

import numpy as np
import torch

device = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cpu")


class IntroModel(torch.nn.Module):
    def __init__(self, input_size, output_size):
        super().__init__()
        self.linear_mapping = torch.nn.Linear(input_size, output_size)

    def forward(self, input_, *args):
        output = self.linear_mapping(input_)
        return output


intro_model2 = IntroModel(2, 1).to(device)

xxs = np.array(np.random.normal(size=(10000, 2)), dtype=np.float32)
xxs_tensor = torch.from_numpy(xxs).to(device)
batch_size = 1000
num_batches = len(xxs_tensor) // batch_size
for epoch in range(50):
    xxs_tensor = xxs_tensor[torch.randperm(len(xxs_tensor))]
    errors = list()
    for i in range(num_batches):
        batch_start = i * batch_size
        batch_end = (i + 1) * batch_size
        xx_batch = xxs_tensor[batch_start:batch_end]
        yy_true_batch = xx_batch.sum(dim=1, keepdim=True)
        yy_batch = intro_model2.forward(xx_batch)
        error_batch = torch.mean((yy_true_batch - yy_batch) ** 2)
        error_batch.backward()
        learning_rate = 0.01
        new_weights = intro_model2.linear_mapping.weight - learning_rate * intro_model2.linear_mapping.weight.grad
        new_biases = intro_model2.linear_mapping.bias - learning_rate * intro_model2.linear_mapping.bias.grad

        intro_model2.linear_mapping.weight = torch.nn.Parameter(new_weights)
        intro_model2.linear_mapping.bias = torch.nn.Parameter(new_biases)
        errors.append(float(error_batch))
    print(f"Average Error in epoch {epoch} is: {np.mean(errors)}")

print(intro_model2.linear_mapping.weight)
print(intro_model2.linear_mapping.bias)

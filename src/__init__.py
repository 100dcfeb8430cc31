"""descent-lab: the lecture's gradient descent on torch.nn.Linear, composed by
Hydra and tracked in MLflow."""

from pathlib import Path

# The project root anchors the default store and Hydra's working folders, so
# runs land in one place whatever the working directory. This holds for the
# editable install the README uses, where `src` stays inside the checkout.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

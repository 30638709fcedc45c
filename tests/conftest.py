"""Test-wide settings: tiny models run fastest (and least noisily) on one torch thread."""

import torch

torch.set_num_threads(1)

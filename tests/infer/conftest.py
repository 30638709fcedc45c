"""What the decoder tests share: a tiny random model (lc-tiny, seeded) and a stream reader."""

import pytest

from lightcoder.model.config import get_preset
from lightcoder.model.llama import Transformer


@pytest.fixture(scope="module")
def model():
    m = Transformer(get_preset("lc-tiny", init_std=0.2))
    m.init_weights(0)
    return m.eval()


@pytest.fixture
def drain():
    """drain(stream) -> the ids a generator yields (its return value, the stop reason, dropped)."""
    def read(stream):
        return list(stream)
    return read

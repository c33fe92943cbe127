import numpy as np
import pytest
import warp as wp

wp.config.log_level = wp.LOG_ERROR


def observed_order(hs, errors) -> float:
    """Least-squares slope of log(error) against log(h)."""
    return float(np.polyfit(np.log(hs), np.log(errors), 1)[0])


@pytest.fixture
def rng():
    return np.random.default_rng(0)

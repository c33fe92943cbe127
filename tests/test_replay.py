"""A recorded launch replayed through its prebuilt argument structure runs the same kernel on the
same arrays as ``wp.launch``, and follows an argument changed with ``set``."""

import copy

import numpy as np
import torch
import warp as wp

from physml.solvers import BurgersSolver1D, Grid
from physml.solvers.replay import Replay


@wp.kernel
def _scaled_sum(x: wp.array(dtype=wp.float64), a: wp.float64, y: wp.array(dtype=wp.float64)):
    i = wp.tid()
    y[i] = y[i] + a * x[i]


def test_a_replay_runs_the_recorded_launch_and_follows_changed_arguments():
    x = wp.array(np.arange(5.0), dtype=wp.float64, device="cpu")
    other = wp.array(np.full(5, 10.0), dtype=wp.float64, device="cpu")
    y = wp.zeros(5, dtype=wp.float64, device="cpu")
    replay = Replay(wp.launch(_scaled_sum, dim=5, inputs=[x, 2.0], outputs=[y], device="cpu",
                              record_cmd=True))
    np.testing.assert_array_equal(y.numpy(), 0.0)  # recorded, not run
    replay()
    replay()
    np.testing.assert_array_equal(y.numpy(), 4.0 * np.arange(5.0))
    replay.set(0, other)  # y += a * other
    replay.set(1, 0.5)  # y += 0.5 * other
    replay()
    np.testing.assert_array_equal(y.numpy(), 4.0 * np.arange(5.0) + 5.0)


def test_a_deep_copy_has_its_own_settings_and_shares_the_warp_buffers():
    """``copy.deepcopy`` of a module holding a solver failed on the Warp arrays' pointers."""
    grid = Grid((16,), (0.0,), (1.0,))
    solver = BurgersSolver1D(grid, nu=0.01, dt=1e-3)
    u0 = np.sin(np.pi * grid.mesh()[0])
    before = solver.rollout(u0, 5)
    holder = torch.nn.Module()
    holder.solver = solver
    clone = copy.deepcopy(holder).solver
    assert clone is not solver and clone.stages is solver.stages
    clone.nu = 0.05
    np.testing.assert_array_equal(solver.rollout(u0, 5), before)
    np.testing.assert_array_equal(clone.rollout(u0, 5),
                                  BurgersSolver1D(grid, nu=0.05, dt=1e-3).rollout(u0, 5))

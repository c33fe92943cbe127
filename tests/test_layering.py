"""The numerics layer imports without PyTorch and without side effects."""

import subprocess
import sys

BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked")
sys.meta_path.insert(0, Block())
import physml.solvers, physml.datasets
import physml.solvers.exact
import warp
assert warp._src.context.runtime is None, "importing the solvers initialised Warp"
print("ok")
"""


def test_solvers_import_without_torch_and_without_initialising_warp():
    result = subprocess.run([sys.executable, "-c", BLOCK_TORCH], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"

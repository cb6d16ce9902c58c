"""A CLI that starts at once: heavy libraries load only in the commands that use them.

Checked by what a command leaves in sys.modules, not by timing it (the machines are noisy):
torch alone takes about 2 s to import here, scipy.stats and matplotlib.pyplot most of a
second each."""

import pytest

from helpers import loaded_modules


@pytest.mark.parametrize("args", [["--help"], ["classes"], ["evaluate", "--help"]])
def test_help_and_classes_load_no_torch_numpy_stack(tmp_path, args):
    result, modules = loaded_modules(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    heavy = {"torch", "torchvision", "timm", "faiss", "scipy", "sklearn", "matplotlib", "h5py", "numba"}
    assert heavy.isdisjoint(modules), sorted(heavy & modules)

"""The allocator setting the network processes run with: freed activations are reused, not
faulted in again (counted in page faults, which do not depend on the machine's load)."""

import subprocess
import sys

# a batch's pattern: several 16 MiB activations alive at once, then all freed; 10 batches after
# a first one; print the minor page faults the 10 cost
PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from patchcore.backbones.allocator import keep_freed_memory
    assert keep_freed_memory()

def batch():
    return [np.ones(1 << 22, dtype=np.float32) for _ in range(4)]

batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    batch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, timeout=120)
    return int(out.stdout)


def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    pages = (16 << 20) // 4096
    assert faults("default") >= 2 * pages  # glibc's defaults: the freed heap top goes back, and comes back faulted
    assert faults("tuned") < pages  # the same pages every batch

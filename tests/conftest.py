import os
import sys
from pathlib import Path

import pytest

# The CI machine has 2 cores; one intra-op thread per test process keeps timings predictable
# and leaves room for the 2-process DDP tests.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Shared test helpers (train_helpers.py) are imported by module name, whatever pytest's import mode.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
pytest.register_assert_rewrite("train_helpers")  # detailed messages for its asserts too

import torch  # noqa: E402

torch.set_num_threads(1)

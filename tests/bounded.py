"""A call that may never return (compiled code in a loop) run where a time limit can stop it.

pytest-timeout's thread method can only end the whole run once a compiled kernel spins (numba
holds no Python frame to interrupt), after 900 s; a forked child is killed after its own bound,
and the test fails with its name in a minute or two.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any


def bounded(fn: Callable[..., Any], *args: Any, timeout: float = 60.0, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a forked process; its result, or AssertionError after ``timeout`` seconds."""
    with multiprocessing.get_context("fork").Pool(1) as pool:
        pending = pool.apply_async(fn, args, kwargs)
        try:
            return pending.get(timeout)
        except multiprocessing.TimeoutError:
            raise AssertionError(
                f"{getattr(fn, '__name__', fn)} did not return within {timeout:g} s: a loop that never ends?"
            ) from None

"""lbsim: a local emulator of an Azure-style cloud load balancer.

As a library: ``lbsim.serve(...)`` (an async context manager, under trio) and
``lbsim.run_in_thread(...)`` (for synchronous code) run a load balancer and give its handle
(see :mod:`lbsim.api.library`). They are imported on first use, so that the command line's
start stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "run_in_thread", "serve"]

if TYPE_CHECKING:
    from lbsim.api.library import run_in_thread, serve


def __getattr__(name: str) -> Any:
    if name in ("serve", "run_in_thread"):
        from lbsim.api import library  # noqa: PLC0415  (on first use: see the docstring)

        return getattr(library, name)
    raise AttributeError(f"module 'lbsim' has no attribute {name!r}")

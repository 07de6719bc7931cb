"""The ``lbsim`` command's entry point: a Ctrl-C while lbsim's modules are still loading
(half a second at start) ends it quietly, as a Ctrl-C at any later point does."""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130


def main() -> int:
    try:
        from lbsim.cli import main as run  # noqa: PLC0415  (inside the try, on purpose)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return run()


if __name__ == "__main__":
    sys.exit(main())

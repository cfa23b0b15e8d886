"""``fieldloop`` and ``python -m fieldloop``: the stop signals are taken before anything heavy is
imported, so Ctrl-C or SIGTERM ends the process cleanly at any moment (fieldloop.stopping)."""

from __future__ import annotations

import sys

from fieldloop.stopping import SERVICES, STOP


def main() -> int:
    STOP.install()
    try:
        try:
            from fieldloop.cli import main as run
        except KeyboardInterrupt:  # stopped while starting up
            print("fieldloop: stopped", file=sys.stderr)
            return 0 if sys.argv[1:2] and sys.argv[1] in SERVICES else STOP.exit_code
        return run()
    finally:
        if STOP.requested:
            _forget_interrupt()


def _forget_interrupt() -> None:
    """CPython 3.11 remembers a KeyboardInterrupt that escaped code run by ``exec`` of a string
    (dataclasses and pydantic build methods that way while modules import) even after it was
    caught, and at exit kills the process with SIGINT instead of returning our status. Running
    any string through ``exec`` clears that."""
    exec("None")


if __name__ == "__main__":
    sys.exit(main())

"""``python -m tidings``: the ``tidings`` command line (needs ``tidings[outbox]``)."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the ``tidings`` command line, or say which extra it needs."""
    try:
        from tidings.outbox._cli import main as cli
    except ImportError as exc:
        print(
            f'the tidings command line needs its extra: pip install "tidings[outbox]" ({exc})',
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    cli(prog_name="tidings")


if __name__ == "__main__":
    main()

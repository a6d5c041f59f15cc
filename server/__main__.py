"""``segformer-serve`` / ``python -m server``: parse settings once, configure logging (``logs``), serve."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from server import logs
from server.memory import tune_malloc
from server.settings import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(argv)
    tune_malloc()  # before any big buffer: freed images and masks go back to the OS (server/memory.py)
    logs.configure(settings.log_level, settings.log_format)
    from server.app import serve

    return asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())

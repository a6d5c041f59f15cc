"""``segformer-serve`` / ``python -m server``: parse settings once, configure logging (``logs``), serve."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from server import logs
from server.flags import load_settings
from server.memory import MiB, cache_image_memory, tune_malloc


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(argv)
    tune_malloc()  # before any big buffer: freed images and masks go back to the OS (server/memory.py)
    cache_image_memory(settings.image_cache_mib * MiB)  # but a few image blocks are kept while busy
    logs.configure(settings.log_level, settings.log_format)
    # the server never forks a process that uses gRPC (the export runs in a fresh interpreter): without
    # this, gRPC's fork handlers log "Other threads are currently calling into gRPC, skipping fork()
    # handlers" whenever a library forks (read when grpc is imported, so before server.app)
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    from server.app import serve

    return asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())

"""``python -m export``: the same as ``segformer-export``."""

from export.cli import main

raise SystemExit(main())

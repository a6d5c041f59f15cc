"""``segformer-serve``'s command line: one flag per ``Settings`` field, over the ``SEGFORMER_*``
environment, over the defaults (``server/settings.py``); a bad value exits 2 naming its flag and variable.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from server.settings import Settings


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """An argparse parser with one flag per settings field (defaults left to ``Settings``)."""
    parser = argparse.ArgumentParser(
        prog="segformer-serve",
        description="Serve a SegFormer model over REST and gRPC (settings also via SEGFORMER_* env vars).",
    )
    for name, field in Settings.model_fields.items():
        env = "SEGFORMER_" + name.upper()
        default = field.default if field.default_factory is None else field.default_factory()
        help_text = f"{field.description} (env {env}, default {default})".replace("%", "%%")  # argparse
        if field.annotation is bool:
            parser.add_argument(
                _flag(name), action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
        elif name == "model":  # repeatable
            parser.add_argument(
                _flag(name),
                metavar="[NAME=]SOURCE",
                action="append",
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            parser.add_argument(_flag(name), metavar=name.upper(), default=argparse.SUPPRESS, help=help_text)
    return parser


def load_settings(argv: Sequence[str] | None = None) -> Settings:
    """Settings from CLI flags over ``SEGFORMER_*`` environment variables over defaults."""
    parser = build_parser()
    parsed: dict[str, Any] = vars(parser.parse_args(argv))
    try:
        return Settings(**parsed)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_flag(str(e['loc'][0]))} (SEGFORMER_{str(e['loc'][0]).upper()}): {e['msg']}"
            if e["loc"]
            else e["msg"]
            for e in exc.errors()
        )
        parser.error(problems)  # exits 2 with the usage line

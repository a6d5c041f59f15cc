"""Turn ``--model`` into a contract ``.onnx`` to serve.

- a contract ``.onnx`` (has ``segformer.format``): served as is;
- a foreign SegFormer ``.onnx``: wrapped into the contract (``contract.foreign``, no torch), cached;
- anything ``segformer-export`` accepts (HF folder, hub id, ``.pth``, ``random:bN``): exported once, in a
  **subprocess** (torch never enters the server process), into the cache, keyed by the source, the hash
  of its files and the export options.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from contract.foreign import wrap_foreign_file
from contract.metadata import PREFIX, read_metadata
from server.settings import MiB, Settings

log = logging.getLogger("segformer.source")
CACHE_VERSION = "1"


def _file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def content_hash(source: str) -> str:
    """sha256 of a local file or of every file of a local folder; the empty string for other sources."""
    path = Path(source)
    if path.is_file():
        return _file_digest(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(path)}\0{_file_digest(file)}\0".encode())
        return digest.hexdigest()
    return ""


def cache_key(source: str, export_args: str) -> str:
    parts = [CACHE_VERSION, source, content_hash(source), export_args]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _slug(source: str) -> str:
    name = Path(source.rstrip("/")).name or source
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: what a model repository holds: a graph or checkpoint file, or a folder (Hugging Face layout)
REPOSITORY_SUFFIXES = (".onnx", ".pth", ".pt", ".bin", ".safetensors")


def check_name(name: str) -> str:
    """``name`` if it is a valid model name (a URL path segment); else ValueError."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' (at most 128)")
    return name


def default_name(source: str) -> str:
    """A model's name when ``--model`` gives none: the file's stem, the folder's or hub id's last part,
    ``random-b0`` for ``random:b0``."""
    base = Path(source.rstrip("/")).name or source
    if Path(base).suffix.lower() in REPOSITORY_SUFFIXES:
        base = Path(base).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "model"


def parse_model_arg(entry: str) -> tuple[str, str]:
    """``NAME=SOURCE`` or ``SOURCE`` → (name, source). A ``=`` inside a path is kept when the part before
    it is not a valid name (``./a=b.onnx`` is a source)."""
    name, sep, source = entry.partition("=")
    if sep and NAME_PATTERN.match(name) and source:
        return name, source
    return default_name(entry), entry


def scan_repository(folder: Path) -> dict[str, str]:
    """Models in a repository folder: every graph/checkpoint file or sub-folder, named by its stem."""
    if not folder.is_dir():
        raise FileNotFoundError(f"model repository {folder}: no such folder")
    found: dict[str, str] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() or entry.suffix.lower() in REPOSITORY_SUFFIXES:
            name = default_name(str(entry))
            if NAME_PATTERN.match(name):
                found.setdefault(name, str(entry))
    return found


def export_to_cache(
    source: str, cache_dir: Path, export_args: str, cancel: threading.Event | None = None
) -> Path:
    """Export ``source`` with ``segformer-export`` in a subprocess, once per cache key.

    Setting ``cancel`` terminates the export (a SIGTERM during start-up must not wait for it).
    """
    if source.startswith("-"):  # an option to segformer-export, not a source
        raise ValueError(f"model source {source!r} is not a file, folder, hub id or random:bN")
    out = cache_dir / f"{_slug(source)}-{cache_key(source, export_args)}.onnx"
    if out.is_file():
        log.info("using cached export %s", out)
        return out
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("export") is None:
        raise RuntimeError(
            f"--model {source!r} needs exporting, but this install has no torch (the `export` extra); "
            "run `segformer-export SOURCE -o model.onnx` elsewhere and pass the .onnx"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{time.time_ns()}.onnx")
    command = [
        sys.executable,
        "-m",
        "export",
        source,
        "-o",
        str(tmp),
        *shlex.split(export_args),
    ]
    log.info("exporting %s -> %s (once; cached)", source, out)
    start = time.monotonic()
    process = subprocess.Popen(command)
    try:
        while process.poll() is None:
            if cancel is not None and cancel.wait(0.2):
                process.terminate()
                process.wait()
                raise RuntimeError(f"export of {source!r} cancelled")
        if process.returncode != 0:
            raise RuntimeError(f"segformer-export failed for {source!r} (exit {process.returncode})")
        tmp.replace(out)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for leftover in tmp.parent.glob(tmp.name + "*"):
            leftover.unlink(missing_ok=True)
    log.info("exported %s in %.1fs", source, time.monotonic() - start)
    return out


def check_size(path: Path, limit: int) -> None:
    """ValueError when the graph at ``path`` is larger than ``limit`` bytes (``--max-model-bytes``):
    checked before anything reads it (the wrapper, ONNX Runtime and OpenVINO read a graph whole)."""
    size = path.stat().st_size
    if size > limit:
        raise ValueError(
            f"{path.name} has {size / MiB:.0f} MiB, "
            f"above the limit of {limit / MiB:.0f} MiB (--max-model-bytes)"
        )


def resolve_model(source: str, settings: Settings, cancel: threading.Event | None = None) -> Path:
    """The contract ``.onnx`` to serve for ``source`` (wrapping or exporting into the cache)."""
    path = Path(source)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise FileNotFoundError(f"{source}: no such file")
        check_size(path, settings.max_model_bytes)
        if PREFIX + "format" in read_metadata(path):  # read without the graph (contract.metadata)
            return path
        out = settings.cache_dir / f"{_slug(source)}-foreign-{cache_key(source, '')}.onnx"
        if not out.is_file():
            log.info("%s is a foreign SegFormer graph: wrapping it into the serving contract", source)
            wrap_foreign_file(path, out)
        return out
    out = export_to_cache(source, settings.cache_dir, settings.export_args, cancel)
    check_size(out, settings.max_model_bytes)
    return out

"""Triton's ``perf_analyzer`` (PyPI ``perf-analyzer``) against our Open Inference Protocol endpoints.

    python -m bench.perf_analyzer --install                      # fetch it into .cache/perf_analyzer/
    python -m bench.perf_analyzer --url 127.0.0.1:8001 --protocol grpc --model NAME photo.jpg ...

PyPI has it only as a ``manylinux_2_38`` wheel (glibc 2.38, libstdc++ of GCC 13), newer than Debian 12's
glibc 2.36, so pip will not install it here (it falls back to an empty 0.1.0 placeholder). ``install``
downloads the wheel for that platform and unpacks it; when the binary cannot start on this system it
also unpacks Debian 13's ``libc6``, ``libstdc++6`` and ``libgcc-s1`` (``apt-get download`` with a private
package list; nothing is installed system-wide) and runs the binary through that glibc's loader.
``perf_analyzer`` needs no GPU and no CUDA library.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / ".cache" / "perf_analyzer"
VERSION = "2.60.0"
WHEEL_PLATFORM = "manylinux_2_38_x86_64"
RUNTIME_SUITE = "trixie"  # Debian 13: glibc 2.41, GCC 14's libstdc++
RUNTIME_PACKAGES = ("libc6", "libstdc++6", "libgcc-s1")
LIB = "usr/lib/x86_64-linux-gnu"
SOURCES = (
    "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {suite}\nComponents: main\n"
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
)


def _binary(dest: Path) -> Path:
    return dest / "pkg" / "perf_analyzer" / "bin" / "perf_analyzer"


def command(dest: Path = DEFAULT_DIR) -> list[str] | None:
    """The argv prefix that runs perf_analyzer from ``dest``, or None when it is not installed there."""
    binary = _binary(dest)
    if not binary.exists():
        return None
    loader = dest / "runtime" / LIB / "ld-linux-x86-64.so.2"
    if not loader.exists():
        return [str(binary)]
    paths = [str(dest / "runtime" / LIB), "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"]
    return [str(loader), "--library-path", ":".join(paths), str(binary)]


def _starts(argv: list[str]) -> bool:
    done = subprocess.run([*argv, "--version"], capture_output=True, text=True, check=False)
    return "Perf Analyzer Version" in done.stdout + done.stderr


def _fetch_wheel(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
        pip += ["--platform", WHEEL_PLATFORM, f"perf-analyzer=={VERSION}", "-d", tmp]
        subprocess.run(pip, check=True)
        (wheel,) = Path(tmp).glob("perf_analyzer-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(dest / "pkg")
    _binary(dest).chmod(0o755)


def _fetch_runtime(dest: Path) -> None:
    """Debian 13's C and C++ runtime, unpacked under ``dest/runtime`` (apt with a private state dir)."""
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        (state / "sources").mkdir()
        (state / "sources" / "runtime.sources").write_text(SOURCES.format(suite=RUNTIME_SUITE))
        (state / "lists" / "partial").mkdir(parents=True)
        (state / "debs").mkdir()
        options = [
            "-oDir::Etc::SourceList=/dev/null",
            f"-oDir::Etc::SourceParts={state / 'sources'}",
            f"-oDir::State::Lists={state / 'lists'}",
            f"-oDir::Cache={state / 'cache'}",
            "-oDebug::NoLocking=1",
            "-oAPT::Sandbox::User=root",
            "-qq",
        ]
        subprocess.run(["apt-get", *options, "update"], check=True)
        download = ["apt-get", *options, "download", *RUNTIME_PACKAGES]
        subprocess.run(download, check=True, cwd=state / "debs")
        for deb in sorted((state / "debs").glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(dest / "runtime")], check=True)


def install(dest: Path = DEFAULT_DIR) -> list[str]:
    """perf_analyzer under ``dest`` (fetched once); the argv prefix that runs it."""
    if not _binary(dest).exists():
        _fetch_wheel(dest)
    argv = command(dest)
    assert argv is not None
    if not _starts(argv):
        _fetch_runtime(dest)
        argv = command(dest)
        assert argv is not None
        if not _starts(argv):
            raise RuntimeError(f"perf_analyzer under {dest} does not start, even with Debian 13's glibc")
    return argv


def input_data(images: list[bytes], path: Path, name: str = "image") -> Path:
    """perf_analyzer's ``--input-data`` file: one request per image, input ``name`` BYTES ``[1]``.

    A ``b64`` content is the tensor's raw bytes, so each holds the serialized BYTES element (4-byte
    little-endian length, then the encoded image).
    """
    rows = [
        {
            name: {
                "content": {"b64": base64.b64encode(struct.pack("<I", len(i)) + i).decode()},
                "shape": [1],
            }
        }
        for i in images
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": rows}))
    return path


def run(
    argv: list[str],
    url: str,
    protocol: str,
    model: str,
    data: Path,
    concurrency: int = 1,
    requests: int = 8,
    streaming: bool = False,
    timeout_s: float = 300.0,
    input_name: str = "image",
    system: str | None = None,
    headers: list[str] | None = None,
) -> dict[str, Any]:
    """One perf_analyzer run at ``concurrency`` over ``requests`` requests; a bench result row."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.csv"
        cmd = [*argv, "-m", model, "-u", url, "-i", protocol, "--input-data", str(data)]
        cmd += ["--shape", f"{input_name}:1", "--concurrency-range", f"{concurrency}:{concurrency}"]
        cmd += ["--request-count", str(requests), "--warmup-request-count", str(concurrency)]
        cmd += ["-f", str(report), *(["--streaming"] if streaming else [])]
        cmd += [arg for header in headers or [] for arg in ("-H", header)]  # HTTP only
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0 or not report.exists():
            raise RuntimeError(
                f"perf_analyzer failed ({done.returncode}): {(done.stdout + done.stderr)[-1500:]}"
            )
        with report.open() as sheet:
            row = next(csv.DictReader(sheet))
    kind = "grpc-stream" if streaming else protocol
    return {
        "system": system or f"perf_analyzer-{kind}",
        "concurrency": concurrency,
        "images_per_s": float(row["Inferences/Second"]),
        "p50_ms": float(row["p50 latency"]) / 1000,
        "p95_ms": float(row["p95 latency"]) / 1000,
        "p99_ms": float(row["p99 latency"]) / 1000,
        "requests": requests,
        "errors": 0,
        "extra": {"stdout_tail": done.stdout[-600:]},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf_analyzer", description=__doc__)
    p.add_argument("--install", action="store_true", help="fetch perf_analyzer and exit")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    p.add_argument("--url", help="host:port of our REST (http) or gRPC port")
    p.add_argument("--protocol", choices=["http", "grpc"], default="grpc")
    p.add_argument("--model", help="the model name")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--streaming", action="store_true", help="gRPC ModelStreamInfer")
    p.add_argument("--out", type=Path, help="write the result row (JSON) here")
    p.add_argument("images", nargs="*", type=Path)
    args = p.parse_args(argv)
    prefix = install(args.dir)
    if args.install:
        print(" ".join(prefix))
        return 0
    if not args.url or not args.model or not args.images:
        p.error("--url, --model and at least one image are needed to measure")
    with tempfile.TemporaryDirectory() as tmp:
        data = input_data([i.read_bytes() for i in args.images], Path(tmp) / "data.json")
        result = run(
            prefix, args.url, args.protocol, args.model, data, args.concurrency, args.requests, args.streaming
        )
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

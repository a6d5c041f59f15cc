"""The GPU bench's environment: CUDA libraries for child processes, device and version facts.

``onnxruntime-gpu`` finds CUDA and cuDNN through ``onnxruntime.preload_dlls()`` (the ``nvidia-*``
packages that PyTorch brought onto the device machine); the server and the memory probes are child
processes that do not call it, so the folders of the libraries it loaded, and every ``nvidia/*/lib``
folder on ``sys.path``, go into ``LD_LIBRARY_PATH`` for them.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import onnxruntime as ort

CUDA_LIBS = re.compile(r"/lib(cudart|cudnn|cublas|cublasLt|cufft|curand|nvrtc|nvJitLink)[^/]*\.so[.0-9]*$")


def cuda_library_dirs() -> list[str]:
    """Preload ORT's CUDA libraries here and return the folders they were loaded from."""
    try:
        ort.preload_dlls()
    except Exception as exc:  # older ORT, or libraries already on the search path
        print(f"[gpu] preload_dlls: {exc}", flush=True)
    dirs: list[str] = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        path = fields[5].strip() if len(fields) == 6 else ""
        if CUDA_LIBS.search(path) and os.path.dirname(path) not in dirs:
            dirs.append(os.path.dirname(path))
    for entry in sys.path:  # and every nvidia-* package's lib folder, in case preloading missed one
        for lib in sorted(Path(entry or ".").glob("nvidia/*/lib")):
            if any(lib.glob("*.so*")) and str(lib) not in dirs:
                dirs.append(str(lib))
    return dirs


def export_cuda_libraries() -> list[str]:
    """Put the CUDA library folders on ``LD_LIBRARY_PATH`` for every child process."""
    dirs = cuda_library_dirs()
    old = os.environ.get("LD_LIBRARY_PATH", "")
    os.environ["LD_LIBRARY_PATH"] = ":".join([*dirs, *([old] if old else [])])
    return dirs


def nvidia_smi(*args: str) -> str | None:
    """``nvidia-smi ARGS`` output, stripped; None without a GPU (or without nvidia-smi)."""
    try:
        answer = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return answer.stdout.strip()


def _smi() -> str | None:
    query = "name,driver_version,memory.total,clocks.max.sm,power.limit"
    return nvidia_smi(f"--query-gpu={query}", "--format=csv,noheader")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


SERVER_IMPORTS = (
    "fastapi",
    "uvicorn",
    "pydantic_settings",
    "python_multipart",
    "grpc_health.v1.health",
    "server.app",
)


def missing_imports() -> dict[str, str]:
    """What the server needs but cannot import here (module -> error); empty when all is there."""
    import importlib

    missing = {}
    for name in SERVER_IMPORTS:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the device image lacks what the carried wheels did not bring
            missing[name] = f"{type(exc).__name__}: {exc}"
    return missing


def environment(device: str) -> dict[str, Any]:
    """Device, driver, versions and cores, for the report."""
    packages = ["onnxruntime-gpu", "onnxruntime", "numpy", "pillow", "grpcio", "fastapi", "uvicorn", "torch"]
    return {
        "device": device,
        "gpu": _smi() if device == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "providers_available": ort.get_available_providers(),
        "packages": {name: v for name in packages if (v := _version(name))},
        "ld_library_path": os.environ.get("LD_LIBRARY_PATH", ""),
        "missing_imports": missing_imports(),
    }

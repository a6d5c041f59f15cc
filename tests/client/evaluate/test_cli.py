"""``segformer-eval`` end to end: the real B0 ADE20K weights served by a real server (REST and gRPC), the
shared ADE20K validation image and its annotation; the numbers are those recorded in docs/eval.md."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from client.evaluate.cli import main
from tests.client.isolation import assert_imports_only_the_protocol
from tests.grpc.serving import ROOT, GraphReference, free_port
from tests.server.live import Served

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]
IMAGE = "ADE_val_00000001"


@pytest.fixture(scope="module")
def served(
    real_b0_onnx: Path, random_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(REST URL, gRPC URL) of one server on the real weights (the default model) and, beside them, a
    random B0 named ``random``."""
    grpc_port = free_port()
    workdir = tmp_path_factory.mktemp("eval-server")
    models = ("--model", str(real_b0_onnx), "--model", f"random={random_b0_onnx}")
    server = Served(workdir, *models, "--grpc-port", str(grpc_port), grpc=True)
    try:
        server.wait_ready()
        yield server.url, f"grpc://127.0.0.1:{grpc_port}"
    finally:
        assert server.stop() == 0
        assert server.torch_modules() == []


@pytest.fixture(scope="module")
def ade(shared_dir: Path) -> Path:
    return shared_dir / "data" / "ade20k"  # image, annotation and objectInfo150.csv in one folder


def _eval(target: str, ade: Path, out: Path, *extra: str) -> dict[str, Any]:
    assert main([target, "--images", str(ade), "--labels", str(ade), "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def _reference(model: Path, ade: Path, mode: str) -> tuple[list[float | None], float, float]:
    """Per-class IoU (%), aAcc and mIoU from the graph run directly, counted by a plain loop."""
    pred = GraphReference(model).mask((ade / f"{IMAGE}.jpg").read_bytes(), mode).astype(np.int64)
    raw = np.asarray(Image.open(ade / f"{IMAGE}.png")).astype(np.int64)
    label = np.where(raw == 0, 255, raw - 1)
    keep = label != 255
    ious: list[float | None] = []
    for c in range(150):
        inter = int(((pred == c) & (label == c) & keep).sum())
        union = int((((pred == c) | (label == c)) & keep).sum())
        ious.append(100 * inter / union if union else None)
    aacc = 100 * float(((pred == label) & keep).sum() / keep.sum())
    defined = [v for v in ious if v is not None]
    return ious, aacc, sum(defined) / len(defined)


def _documented(run: dict[str, Any]) -> str:
    return f"aAcc {run['aAcc']:.2f}, mIoU {run['mIoU']:.2f}, mAcc {run['mAcc']:.2f}"


def test_rest_and_grpc_give_the_graphs_numbers_recorded_in_docs(
    served: tuple[str, str], ade: Path, real_b0_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rest_url, grpc_url = served
    rest = _eval(rest_url, ade, tmp_path / "rest.json")
    captured = capsys.readouterr()
    assert "evaluated 1/1 (100%)" in captured.err  # the progress line
    assert "   2  sky " in captured.out and f"mIoU {rest['mIoU']:.2f}" in captured.out
    grpc = _eval(grpc_url, ade, tmp_path / "grpc.json", "-q", "--mode", "resize")
    assert (rest["transport"], grpc["transport"]) == ("rest", "grpc")
    assert rest["images"] == grpc["images"] == 1 and rest["mode"] == grpc["mode"] == "resize"
    assert rest["model"] == "segformer-b0-ade20k" and rest["precision"] == "fp32"
    assert rest["runtime"] == "onnxruntime" and "segformer-b0-ade20k fp32 on onnxruntime" in captured.out
    assert rest["classes"] == grpc["classes"] and rest["mIoU"] == grpc["mIoU"]
    ious, aacc, miou = _reference(real_b0_onnx, ade, "resize")
    assert [c["iou"] for c in rest["classes"]] == pytest.approx(ious, abs=1e-9)
    assert rest["aAcc"] == pytest.approx(aacc) and rest["mIoU"] == pytest.approx(miou)
    assert rest["classes"][2]["label"] == "sky" and rest["classes"][2]["iou"] > 90
    assert f"resize (REST and gRPC): {_documented(rest)}" in (ROOT / "docs" / "eval.md").read_text()


def test_native_mode_and_the_comparison(
    served: tuple[str, str], ade: Path, real_b0_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rest_url, grpc_url = served
    resize = _eval(rest_url, ade, tmp_path / "resize.json", "-q")
    native = _eval(grpc_url, ade, tmp_path / "native.json", "-q", "--mode", "native")
    assert native["mode"] == "native"
    ious, _, _ = _reference(real_b0_onnx, ade, "native")
    assert [c["iou"] for c in native["classes"]] == pytest.approx(ious, abs=1e-9)
    assert f"native (gRPC): {_documented(native)}" in (ROOT / "docs" / "eval.md").read_text()
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "resize.json"), str(tmp_path / "native.json")]) == 0
    out = capsys.readouterr().out
    assert "mode=resize via rest" in out and "mode=native via grpc" in out
    delta = native["mIoU"] - resize["mIoU"]
    assert f"  mIoU  {resize['mIoU']:>7.2f}  {native['mIoU']:>7.2f}  {delta:>+7.2f}" in out
    rows = out.splitlines()[out.splitlines().index(next(x for x in out.splitlines() if "ΔIoU" in x)) + 1 :]
    changes = [abs(float(r.split()[-4])) for r in rows if r.split()[-4] != "nan"]
    assert changes == sorted(changes, reverse=True) and changes[0] > 0


def test_a_named_model_is_evaluated_over_rest_and_grpc(
    served: tuple[str, str], ade: Path, random_b0_onnx: Path, tmp_path: Path
) -> None:
    rest_url = served[0]
    default = _eval(rest_url, ade, tmp_path / "default.json", "-q")
    named = _eval(rest_url, ade, tmp_path / "named.json", "-q", "--model-name", "segformer-b0-ade20k")
    assert named["model"] == default["model"] == "segformer-b0-ade20k" and named["mIoU"] == default["mIoU"]
    other = [_eval(url, ade, tmp_path / f"random-{i}.json", "-q", "--model-name", "random") for i, url in
             enumerate(served)]  # fmt: skip
    assert [run["model"] for run in other] == ["random", "random"] and other[0]["mIoU"] == other[1]["mIoU"]
    _, aacc, miou = _reference(random_b0_onnx, ade, "resize")
    assert other[0]["mIoU"] == pytest.approx(miou) and other[0]["aAcc"] == pytest.approx(aacc)
    assert other[0]["mIoU"] != default["mIoU"]  # another model's numbers, not the default's


def test_a_model_path_is_evaluated_through_a_private_server(
    served: tuple[str, str], ade: Path, real_b0_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served_run = _eval(served[0], ade, tmp_path / "served.json", "-q")
    # the same runtime as the served run (`auto` would pick OpenVINO bf16 on an AMX CPU: other masks)
    cache = f"--serve-arg=--cache-dir={tmp_path / 'cache'}", "--serve-arg=--runtime=onnxruntime"
    local = _eval(str(real_b0_onnx), ade, tmp_path / "local.json", *cache, "--serve-arg=--warmup-runs=1")
    assert "starting a local segformer-serve" in capsys.readouterr().err
    assert local["url"].startswith("http://127.0.0.1:") and local["url"] != served_run["url"]
    assert local["classes"] == served_run["classes"] and local["mIoU"] == served_run["mIoU"]
    over_grpc = _eval(str(real_b0_onnx), ade, tmp_path / "local-grpc.json", *cache, "--grpc", "-q")
    assert over_grpc["transport"] == "grpc" and over_grpc["classes"] == local["classes"]


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    return err


def test_bad_folders_and_refused_requests_give_clear_errors(
    served: tuple[str, str], ade: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rest_url, grpc_url = served
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    (images / f"{IMAGE}.jpg").symlink_to(ade / f"{IMAGE}.jpg")
    folders = ["--images", str(images), "--labels", str(labels)]
    err = _fails([rest_url, *folders], capsys)
    assert f"no annotation for 1 image(s): {images / IMAGE}.jpg (expected {labels / IMAGE}.png)" in err
    with Image.open(ade / f"{IMAGE}.png") as label:
        label.resize((256, 341), Image.Resampling.NEAREST).save(labels / f"{IMAGE}.png")
    err = _fails([rest_url, *folders, "-q"], capsys)
    assert f"label {labels / IMAGE}.png is 256x341 but image {images / IMAGE}.jpg is 683x512" in err
    both = ["--images", str(ade), "--labels", str(ade), "-q"]
    err = _fails([rest_url, *both, "--mode", "sideways"], capsys)
    assert f"{ade / IMAGE}.jpg: the server refused it: 400 invalid_argument" in err and "mode" in err
    assert "has no mode 'sideways'" in _fails([grpc_url, *both, "--mode", "sideways"], capsys)
    err = _fails([rest_url, *both, "--model-name", "nope"], capsys)
    assert "cannot describe model 'nope': 404" in err
    (images / "x_leftImg8bit.jpg").symlink_to(ade / f"{IMAGE}.jpg")
    (labels / "x_gtFine_labelIds.png").symlink_to(ade / f"{IMAGE}.png")
    (images / f"{IMAGE}.jpg").unlink()
    err = _fails([rest_url, *folders, "--dataset", "cityscapes"], capsys)
    assert "the model 'segformer-b0-ade20k' has 150 classes, cityscapes has 19" in err
    assert "folder /nonexistent does not exist" in _fails(
        [rest_url, "--images", "/nonexistent", "--labels", "."], capsys
    )
    assert "cannot describe the served model: UNAVAILABLE" in _fails(["http://127.0.0.1:1", *both], capsys)
    with pytest.raises(SystemExit) as caught:
        main([rest_url, *both, "--dataset", "voc"])
    assert caught.value.code == 2 and "invalid choice: 'voc'" in capsys.readouterr().err


def test_imports_only_the_protocol_of_the_server() -> None:
    assert_imports_only_the_protocol("client.evaluate.cli")


def test_console_script_points_at_the_cli() -> None:
    import importlib
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["segformer-eval"].partition(":")
    assert getattr(importlib.import_module(module), function) is main


def test_a_model_target_checks_the_folders_first_and_reports_a_server_that_fails(
    ade: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.onnx"
    err = _fails([str(missing), "--images", str(tmp_path / "none"), "--labels", str(ade)], capsys)
    assert f"images folder {tmp_path / 'none'} does not exist" in err and "local" not in err
    err = _fails([str(missing), "--images", str(ade), "--labels", str(ade), "-q"], capsys)
    assert "the local server exited with" in err and "missing.onnx" in err


def test_the_header_and_json_show_the_precision_the_server_computes_in(
    ade: Path, real_b0_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """OpenVINO ``mixed`` from an fp32 graph: the run says ``mixed`` (it said the graph's ``fp32``)."""
    serve = ["--serve-arg=--runtime=openvino", "--serve-arg=--precision=mixed", "--serve-arg=--sessions=1"]
    run = _eval(str(real_b0_onnx), ade, tmp_path / "mixed.json", "-q", *serve)
    assert (run["precision"], run["graph_precision"], run["runtime"]) == ("mixed", "fp32", "openvino")
    assert "segformer-b0-ade20k mixed on openvino mode=resize" in capsys.readouterr().out

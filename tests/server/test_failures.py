"""``server.failures.reason``: what a caller is told of a failed load (words, no paths), on the texts the
runtimes really raise (captured from OpenVINO 2025, ONNX Runtime 1.2x and the export subprocess)."""

from __future__ import annotations

import pytest

from server.failures import MAX_CHARS, reason

OPENVINO = (
    "Exception from src/inference/src/cpp/core.cpp:132:\n"
    "Exception from src/inference/src/dev/plugin.cpp:59:\n"
    "Exception from src/inference/src/model_reader.cpp:148:\n"
    'Unable to read the model: "/srv/models/junk.onnx" '
    'Please check that model format: ".onnx" is supported and the model is correct.\n\n\n'
)
ORT = (
    "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from /home/u/.cache/segformer-serve/m-1.onnx "
    "failed:Protobuf parsing failed."
)


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (RuntimeError(OPENVINO), 'Unable to read the model: "junk.onnx" Please check that model format'),
        (RuntimeError(ORT), "Load model from m-1.onnx failed:Protobuf parsing failed."),
        (FileNotFoundError("/tmp/pytest/x/z.onnx: no such file"), "z.onnx: no such file"),
        (RuntimeError("segformer-export failed for '/tmp/a/junkdir' (exit 2)"), "'junkdir' (exit 2)"),
        (
            ValueError("hub id nvidia/segformer-b0 and http://host/x stay"),
            "nvidia/segformer-b0 and http://host/x",
        ),
        (KeyError(), "KeyError"),
    ],
)
def test_reason_is_words_without_paths(exc: BaseException, said: str) -> None:
    text = reason(exc)
    assert said in text and "/srv" not in text and "/home" not in text and "/tmp" not in text, text
    assert "\n" not in text and "core.cpp" not in text


def test_reason_is_bounded() -> None:
    assert len(reason(ValueError("x" * 10_000))) == MAX_CHARS

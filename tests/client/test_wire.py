"""Model names and modes on both transports, before and after the stubs gain them."""

from __future__ import annotations

import pytest

from client import SegformerClient, SegmentationError
from client.wire import has_field, mode_value, segment_request
from server.grpc.gen import segmentation_pb2 as pb
from tests.grpc.serving import LiveServer, scene_png


def test_modes_the_stubs_know_and_a_clear_error_for_others() -> None:
    assert mode_value(None) == pb.INFERENCE_MODE_UNSPECIFIED
    assert mode_value("native") == pb.INFERENCE_MODE_NATIVE
    known = [n[len("INFERENCE_MODE_") :].lower() for n in pb.InferenceMode.keys()[1:]]
    assert all(mode_value(m) == pb.InferenceMode.Value(f"INFERENCE_MODE_{m.upper()}") for m in known)
    with pytest.raises(SegmentationError, match=r"segformer\.v1 has no mode 'sideways'") as caught:
        mode_value("sideways")
    assert caught.value.code == "INVALID_ARGUMENT"


def test_a_model_name_goes_in_the_request_when_the_stubs_have_the_field() -> None:
    assert segment_request(b"x", 3, "resize", "raw", None).frame_id == 3
    if has_field(pb.SegmentRequest, "model"):
        assert segment_request(b"x", 0, None, "png", "b0").model == "b0"
    else:
        with pytest.raises(SegmentationError, match=r"no SegmentRequest\.model field"):
            segment_request(b"x", 0, None, "png", "b0")


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_an_unknown_model_name_is_refused(live: LiveServer, transport: str) -> None:
    url = live.client_url(transport)
    with SegformerClient(url, timeout=30) as client:
        for call in (
            lambda: client.segment(scene_png(40, 60, 1), model="nope"),
            lambda: client.model("nope"),
        ):
            with pytest.raises(SegmentationError) as caught:
                call()
            assert caught.value.code in ("404", "NOT_FOUND", "INVALID_ARGUMENT")
        assert client.segment(scene_png(40, 60, 1)).width == 60  # no name: the default model
        assert client.model()["num_labels"] == 150

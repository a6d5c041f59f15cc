"""``ResumableFrames``: a new call resends the unanswered frames, in order, then continues the source."""

from __future__ import annotations

import itertools

import pytest

from client.resume import ResumableFrames
from client.types import SegmentationError
from server.grpc.gen import segmentation_pb2 as pb


def _ids(requests: object, count: int) -> list[int]:
    return [r.frame_id for r in itertools.islice(requests, count)]  # type: ignore[call-overload]


def test_a_new_call_resends_unanswered_frames_then_continues() -> None:
    frames = ResumableFrames(pb.SegmentRequest(frame_id=i) for i in range(10))
    first = frames.requests()
    assert _ids(first, 5) == [0, 1, 2, 3, 4]
    frames.answered(0)
    frames.answered(1)
    assert frames.pending == 3
    second = frames.requests()  # the first call ended: 2, 3, 4 were sent and never answered
    assert _ids(second, 4) == [2, 3, 4, 5]
    assert list(first) == []  # the first call's iterator ends: it takes no more frames from the source
    assert _ids(second, 10) == [6, 7, 8, 9]
    for frame_id in range(2, 10):
        frames.answered(frame_id)
    assert frames.pending == 0 and list(frames.requests()) == []


def test_answers_out_of_order_are_an_error() -> None:
    frames = ResumableFrames(pb.SegmentRequest(frame_id=i) for i in range(3))
    assert _ids(frames.requests(), 3) == [0, 1, 2]
    with pytest.raises(SegmentationError, match="answer for frame 1, expected 0"):
        frames.answered(1)

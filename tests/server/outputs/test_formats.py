"""The format registry and its encoders on made-up results: exact round trips and refusals in words."""

from __future__ import annotations

import json

import numpy as np
import pytest

from server.errors import ServeError
from server.head import axis_weights
from server.outputs.base import background, options
from server.outputs.formats import FORMATS, encode
from tests.server.outputs.decoding import b64_png, fill, iou, png_pixels, rle_decode
from tests.server.outputs.synthetic import result, with_mask


def test_unknown_format_and_bad_options_are_refused_in_words() -> None:
    with pytest.raises(ServeError, match="unknown format 'jpeg'; the formats are png, json") as info:
        FORMATS.get("jpeg")
    assert info.value.status == 400
    for kwargs, words in [
        ({"tolerance": -1.0}, "tolerance is a number of pixels >= 0"),
        ({"min_area": float("nan")}, "min_area is a number of pixels >= 0"),
        ({"classes": " , "}, "classes is empty"),
    ]:
        with pytest.raises(ServeError, match=words):
            options(**kwargs)  # type: ignore[arg-type]
    r = result()
    with pytest.raises(ServeError, match="unknown class 'lava'"):
        encode("png", r, options("sky,lava"))
    with pytest.raises(ServeError, match="class id 9 is out of range"):
        encode("rle", r, options([9]))
    with pytest.raises(ServeError, match="format probability needs classes"):
        FORMATS.check(FORMATS.get("probability"), options())


def test_accept_picks_a_format_by_content_type_and_format_wins() -> None:
    assert FORMATS.negotiate(None, None).name == "png"
    assert FORMATS.negotiate(None, "application/json").name == "json"
    assert FORMATS.negotiate(None, "text/html, application/geo+json;q=0.9").name == "polygons"
    assert FORMATS.negotiate(None, "application/vnd.coco-rle+json").name == "rle"
    assert FORMATS.negotiate(None, "application/octet-stream").name == "raw"
    assert FORMATS.negotiate("Confidence", "application/json").name == "confidence"


def test_raw_is_the_png_pixels_with_shape_and_dtype() -> None:
    r = result()
    raw = encode("raw", r, options())
    height, width = (int(v) for v in raw.fields["shape"].split(","))
    pixels = np.frombuffer(raw.data, raw.fields["dtype"]).reshape(height, width)
    assert np.array_equal(pixels, png_pixels(encode("png", r, options()).data))
    wide = with_mask((np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000) % 65535)
    raw16 = encode("raw", wide, options())
    assert raw16.fields["dtype"] == "uint16"
    assert np.array_equal(np.frombuffer(raw16.data, "<u2").reshape(3, 4), wide.mask)


def test_rle_decodes_to_each_class_exactly() -> None:
    r = result(123, 77, seed=3)
    body = json.loads(encode("rle", r, options()).data)
    assert [c["id"] for c in body["classes"]] == [c.id for c in r.classes]
    for item in body["classes"]:
        assert np.array_equal(rle_decode(item), r.mask == item["id"])


def test_polygons_rasterise_back_exactly_with_holes() -> None:
    mask = np.zeros((60, 80), np.uint8)
    mask[10:50, 10:70] = 1
    mask[20:40, 30:50] = 2  # a hole in class 1, filled by class 2
    mask[25:35, 35:45] = 1  # an island of class 1 inside class 2's square
    mask[55, 5] = 3  # a lone pixel: a degenerate ring, still drawn
    r = with_mask(mask)
    body = json.loads(encode("polygons", r, options()).data)
    features = {f["properties"]["id"]: f for f in body["features"]}
    assert body["type"] == "FeatureCollection" and set(features) == {0, 1, 2, 3}
    one = features[1]["geometry"]
    assert one["type"] == "MultiPolygon"  # the frame with its hole, and the island inside the hole
    assert sorted(len(rings) for rings in one["coordinates"]) == [1, 2]
    for class_id, feature in features.items():
        assert np.array_equal(fill(feature["geometry"], mask.shape), mask == class_id), class_id
        for rings in [feature["geometry"]["coordinates"]] if feature["geometry"]["type"] == "Polygon" else []:
            assert all(ring[0] == ring[-1] and len(ring) >= 4 for ring in rings)


def test_polygon_tolerance_simplifies_and_min_area_drops_small_parts() -> None:
    r = result(200, 240, seed=1)
    exact = json.loads(encode("polygons", r, options()).data)
    rough = json.loads(encode("polygons", r, options(tolerance=2.0)).data)

    def vertices(body: dict) -> int:
        return len(json.dumps(body))

    assert vertices(rough) < vertices(exact)
    for feature in rough["features"]:
        truth = r.mask == feature["properties"]["id"]
        assert iou(fill(feature["geometry"], r.mask.shape), truth) >= 0.9
    mask = np.zeros((40, 40), np.uint8)
    mask[5:30, 5:30], mask[35:37, 35:37] = 1, 1
    body = json.loads(encode("polygons", with_mask(mask), options(min_area=10)).data)
    (one,) = [f for f in body["features"] if f["properties"]["id"] == 1]
    assert one["geometry"]["type"] == "Polygon"  # the 2x2 square (area 1 between centres) is gone


def _torch_bilinear(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The align_corners=False bilinear of the mask head's weights, in float64."""
    (y0, y1, wy0, wy1), (x0, x1, wx0, wx1) = (
        axis_weights(plane.shape[0], size[0]),
        axis_weights(plane.shape[1], size[1]),
    )
    p = plane.astype(np.float64)
    rows = p[y0] * wy0[:, None] + p[y1] * wy1[:, None]
    return rows[:, x0] * wx0 + rows[:, x1] * wx1


def test_confidence_and_probability_are_the_interpolated_softmax() -> None:
    r = result(150, 110, seed=2)
    logits = r.logits.astype(np.float64)
    soft = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
    expected = np.rint(_torch_bilinear(soft.max(0), (150, 110)) * 255)
    got = png_pixels(encode("confidence", r, options()).data).astype(np.float64)
    assert np.abs(got - expected).max() <= 1
    body = json.loads(encode("probability", r, options("road,1")).data)
    assert [c["id"] for c in body["classes"]] == [1, 2]
    for item in body["classes"]:
        want = np.rint(_torch_bilinear(soft[item["id"]], (150, 110)) * 255)
        assert np.abs(b64_png(item["png_base64"]).astype(np.float64) - want).max() <= 1


def test_a_class_filter_leaves_only_those_classes_in_every_format() -> None:
    r = result(90, 100, seed=4)
    keep = options("sky,road")
    bg = background(r.mask.dtype)
    png = png_pixels(encode("png", r, keep).data)
    assert set(np.unique(png)) <= {1, 2, bg}
    assert np.array_equal(png == 1, r.mask == 1) and np.array_equal(png == bg, ~np.isin(r.mask, [1, 2]))
    assert encode("png", r, keep).fields["background"] == "255"
    assert {c["id"] for c in json.loads(encode("rle", r, keep).data)["classes"]} <= {1, 2}
    assert {f["properties"]["id"] for f in json.loads(encode("polygons", r, keep).data)["features"]} <= {1, 2}
    body = json.loads(encode("json", r, keep).data)
    assert {c["id"] for c in body["classes"]} <= {1, 2}
    confidence = png_pixels(encode("confidence", r, keep).data)
    assert (confidence[~np.isin(r.mask, [1, 2])] == 0).all() and (
        confidence[np.isin(r.mask, [1, 2])] > 0
    ).all()
    overlay = png_pixels(encode("overlay", r, keep).data)
    assert overlay.shape == (90, 100, 3)


def test_hostile_class_lists_are_refused_in_words_before_any_work() -> None:
    """Unicode digits and endless ids are a 400, not a 500; long tokens are quoted cut; ``probability``
    maps a bounded number of classes (each a full-size image), refused before inference."""
    r = result(20, 20, seed=5)
    for token in ("²", "٣", "9" * 5000):
        with pytest.raises(ServeError) as info:
            options(token).selected(r.spec)
        assert info.value.status == 400 and len(info.value.detail) < 300
    with pytest.raises(ServeError, match="at most 1024"):
        options(",".join(["1"] * 1025))
    with pytest.raises(ServeError, match="probability maps at most 8 classes"):
        FORMATS.check(FORMATS.get("probability"), options(",".join(str(i) for i in range(9))))
    FORMATS.check(FORMATS.get("probability"), options("1,2"))
    with pytest.raises(ServeError) as info:
        FORMATS.get("x" * 10_000)
    assert len(info.value.detail) < 300

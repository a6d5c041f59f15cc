"""Phone-size photos (real photos enlarged to 4032x3024, JPEG quality 90) over HTTP against the reference
pipeline computed at 12 Mpx; the DCT-scaled decode option (``--jpeg-draft``) and its overlay."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.reference import ReferencePipeline, agreement
from tests.server.live import Served, png_mask

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]
PHONE = (4032, 3024)


@pytest.fixture(scope="module")
def phone_photos(real_photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("phone")
    out = []
    for photo in real_photos:
        with Image.open(photo) as image:
            path = folder / f"{photo.stem}-4032x3024.jpg"
            image.convert("RGB").resize(PHONE, Image.Resampling.BILINEAR).save(path, quality=90)
        out.append(path)
    return out


@pytest.fixture(scope="module")
def expected(real_weights_dir: Path, phone_photos: list[Path]) -> dict[str, np.ndarray]:
    """The reference masks at 12 Mpx (full decode, the processor's resize), upsampled in steps."""
    reference = ReferencePipeline.load(real_weights_dir)
    masks = {}
    for photo in phone_photos:
        with Image.open(photo) as image:
            masks[photo.name] = reference.mask_in_steps(image).astype(np.uint8)
    return masks


@pytest.fixture(scope="module", params=["defaults", "jpeg-draft"])
def served(
    request: pytest.FixtureRequest, real_b0_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, str]]:
    extra = ["--jpeg-draft"] if request.param == "jpeg-draft" else []
    server = Served(tmp_path_factory.mktemp("phone-served"), "--model", str(real_b0_onnx), *extra)
    try:
        yield server.wait_ready(), request.param
    finally:
        assert server.stop() == 0, server.log_tail()


def _post(server: Served, photo: Path, query: str = "") -> httpx.Response:
    answer = httpx.post(
        f"{server.url}/v1/segment{query}",
        content=photo.read_bytes(),
        headers={"Content-Type": "image/jpeg"},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    return answer


def test_phone_size_masks_match_the_reference(
    served: tuple[Served, str], phone_photos: list[Path], expected: dict[str, np.ndarray]
) -> None:
    server, setting = served
    scores = {}
    for photo in phone_photos:
        mask = png_mask(_post(server, photo).content)
        assert mask.shape == (PHONE[1], PHONE[0])
        scores[photo.name] = agreement(mask, expected[photo.name])
    print(f"{setting}: agreement with the reference at 12 Mpx:", scores)
    # defaults: full decode + the processor's exact resize; the option trades ~0.1-1 % of the pixels
    assert min(scores.values()) >= (0.999 if setting == "defaults" else 0.98), scores


def test_phone_size_overlay_and_json(served: tuple[Served, str], phone_photos: list[Path]) -> None:
    server, _ = served
    photo = phone_photos[-1]
    overlay = _post(server, photo, "?format=overlay")
    with Image.open(io.BytesIO(overlay.content)) as image:
        assert image.size == PHONE and image.mode == "RGB"
        blended = np.asarray(image.resize((403, 302)), dtype=np.int16)
    with Image.open(photo) as original:  # the photo shows through the mask at half opacity
        seen = np.asarray(original.convert("RGB").resize((403, 302)), dtype=np.int16)
    assert np.corrcoef(blended.ravel(), seen.ravel())[0, 1] > 0.5
    body = _post(server, photo, "?format=json").json()
    assert sum(c["pixels"] for c in body["classes"]) == PHONE[0] * PHONE[1]
    assert {"decode", "preprocess", "mask", "total"} <= set(body["timings_ms"])

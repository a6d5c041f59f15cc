"""``server/rest/demo.py``: the redirect, the page's files and their policy, ``--no-demo``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from server.rest.demo import FILES
from tests.server.live import Served

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]


def test_page_files_are_served_with_a_same_origin_policy(demo_server: Served) -> None:
    root = httpx.get(f"{demo_server.url}/", timeout=30)
    assert root.status_code == 307 and root.headers["location"] == "demo/"
    for name, kind in [("", "text/html"), *FILES.items()]:
        response = httpx.get(f"{demo_server.url}/demo/{name}", timeout=30)
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == kind.split(";")[0]
        assert response.headers["content-security-policy"].startswith("default-src 'self';")
        assert "http://" not in response.text and "https://" not in response.text  # nothing from elsewhere
    missing = httpx.get(f"{demo_server.url}/demo/..%2Fsettings.py", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_no_demo_leaves_the_page_out(real_b0_onnx: Path, tmp_path: Path) -> None:
    server = Served(tmp_path, "--model", str(real_b0_onnx), "--no-demo").wait_listening()
    try:
        for path in ("/", "/demo/", "/demo/demo.js"):
            response = httpx.get(f"{server.url}{path}", timeout=30)
            assert response.status_code == 404 and response.json()["error"] == "not_found"
    finally:
        assert server.stop() == 0

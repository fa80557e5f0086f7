"""`tir serve`: the JSON API and page on 127.0.0.1, bounded queries, images confined to the index's gallery,
and a real browser (headless Chromium) taking a screenshot of a result page."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from search_support import make_manifests, make_run
from tir.cli import cli
from tir.search.searcher import Searcher

IN_CI = bool(os.environ.get("CI"))  # in CI (.ci/run) a missing extra or browser is a failure, not a skip
if not IN_CI:
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'tir[serve]'")
from tir.errors import UserError  # noqa: E402
from tir.search.server import BatchedSearches, make_server  # noqa: E402

torch.set_num_threads(1)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def searcher(tmp_path_factory) -> Searcher:
    root = tmp_path_factory.mktemp("serve")
    manifests = make_manifests(root)
    (root / "data" / "secret.txt").write_text("do not serve me")
    run = make_run(manifests, root / "run", method="rde")
    result = CliRunner().invoke(cli, ["index", str(run), "--workers", "0"])
    assert result.exit_code == 0, result.output
    return Searcher.open(run, run / "index-manifests-test.parquet", torch.device("cpu"))


@contextlib.contextmanager
def serving(searcher: Searcher) -> Iterator[int]:
    """Run the app on 127.0.0.1 (a free port) in a thread; stop it on exit."""
    server = make_server(searcher, "127.0.0.1", 0, "tir search test")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)


def get(port: int, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client-side normalisation of ``..``)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_api_page_and_bounds(searcher: Searcher) -> None:
    with serving(searcher) as port:
        status, body = get(port, "/api/search?q=" + quote("a man wearing a green jacket") + "&k=3")
        assert status == 200
        result = json.loads(body)
        assert len(result["hits"]) == 3 and result["graph"]["objects"][0]["head"] == "man" and result["attended"]
        expected = searcher.search(["a man wearing a green jacket"], 3, graphs=False)[0]
        assert [h["image_path"] for h in result["hits"]] == [h.image_path for h in expected.hits]
        for bad in ("k=0", "k=101", "k=ten", "q=", "q=" + "a" * 1001):
            query = bad if bad.startswith("q=") else f"q=a+man&{bad}"
            assert get(port, f"/api/search?{query}")[0] == 422, bad
        status, page = get(port, "/?q=" + quote("a woman in a red shirt") + "&k=4")
        assert status == 200 and page.count(b"<figure>") == 4 and b"Scene graph" in page and b"http" not in page
        assert get(port, "/")[0] == 200


def test_concurrent_requests_are_searched_in_one_batch(searcher: Searcher) -> None:
    searches = BatchedSearches(searcher, start=False)
    asked = {"a man wearing a green jacket": 1, "a woman in a red shirt": 3, "someone carrying a bag": 2}
    answers: dict[str, object] = {}
    threads = [threading.Thread(target=lambda s=s, k=k: answers.__setitem__(s, searches.search(s, k))) for s, k in asked.items()]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while searches.pending.qsize() < len(asked):
        assert time.monotonic() < deadline, "the requests were not queued"
        time.sleep(0.01)
    searches.start()
    for thread in threads:
        thread.join(60)
    assert searches.batch_sizes == [3]  # one text batch and one gallery pass for the three requests
    for sentence, k in asked.items():
        alone = searcher.search([sentence], k)[0]
        together = answers[sentence]
        assert [h.image_path for h in together.hits] == [h.image_path for h in alone.hits] and len(together.hits) == k
        assert together.graph == alone.graph
        assert [(w["word"], pytest.approx(w["weight"])) for w in together.attended] == [(w["word"], w["weight"]) for w in alone.attended]
    with pytest.raises(UserError):
        searches.search(" ", 3)


def test_images_only_from_the_gallery(searcher: Searcher) -> None:
    with serving(searcher) as port:
        status, body = get(port, "/image/" + quote(searcher.index.image_paths[0]))
        assert status == 200 and body[:4] == b"\x89PNG"
        outside = searcher.index.root.parent / "secret.txt"
        for path in ("/image/../secret.txt", "/image/%2E%2E/secret.txt", "/image/..%2Fsecret.txt",
                     "/image/test/../../secret.txt", "/image/" + quote(str(outside)), "/image/" + str(outside),
                     "/image//etc/passwd", "/image/%2Fetc%2Fpasswd", "/image/test/", "/image/"):
            status, body = get(port, path)
            assert status in (404, 400), path
            assert b"do not serve" not in body and b"root:" not in body, path


@pytest.mark.skipif(CHROMIUM is None and not IN_CI, reason="chromium is not installed (apt-get install chromium; .ci/run installs it)")
def test_browser_screenshot_of_a_result_page(searcher: Searcher, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    query = "a woman in a red shirt and black trousers carrying a bag"
    with serving(searcher) as port:
        completed = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,700", f"--screenshot={shot}",
             f"http://127.0.0.1:{port}/?q={quote(query)}&k=6"],
            capture_output=True, text=True, timeout=180, check=False)
    assert completed.returncode == 0 and shot.exists(), completed.stderr[-2000:]
    with Image.open(shot) as image:
        pixels = image.convert("RGB")
    assert pixels.size == (1200, 700)
    top = searcher.search([query], 1, graphs=False)[0].hits[0]
    with Image.open(searcher.index.root / top.image_path) as gallery_image:
        colour = gallery_image.convert("RGB").getpixel((0, 0))  # the test images are plain colours
    matching = sum(count for count, rgb in pixels.getcolors(1200 * 700)
                   if max(abs(a - b) for a, b in zip(rgb, colour)) <= 3)
    assert matching > 2000  # the top image is drawn in the page (a thumbnail is about 80 x 160 pixels)

"""`argen serve` as a service: one real server process (the shipped checkpoints) for every test here: the API's
errors, a streamed run, cancellation by a closed connection, a bounded load test, and the page in headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from argen.catalog import METHODS
from argen.serve.requests import RunRequest

ROOT = Path(__file__).resolve().parents[1]
LOAD_REQUESTS = 20
RSS_GROWTH_BOUND_MB = 64  # after a warm-up run; the 20 runs of the load test measured a few MB


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The base URL of `argen --threads 1 serve` on a free port, its process and its log file."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    log = tmp_path_factory.mktemp("serve") / "server.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "argen.cli",
            "--threads",
            "1",
            "serve",
            "--port",
            str(port),
            "--allow-host",
            "argen.internal",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(f"{url}/api/status", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"argen serve did not start: {log.read_text()[-2000:]}")
    yield url, process, log
    process.terminate()
    process.wait(timeout=30)


def events(response: httpx.Response):
    """(type, data) of each server-sent event of a streamed response."""
    for block in response.iter_text():
        yield from parse_events(block)


def parse_events(text: str):
    for block in text.strip().split("\n\n"):
        if block:
            lines = dict(line.split(": ", 1) for line in block.splitlines())
            yield lines["event"], json.loads(lines["data"])


def rss_mb(process: subprocess.Popen) -> float:
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def test_methods_are_every_shipped_method_by_name(server):
    listed = httpx.get(f"{server[0]}/api/methods").json()
    assert [method["name"] for method in listed["methods"]] == [method.name for method in METHODS]
    par16 = next(method for method in listed["methods"] if method["name"] == "PAR-16x")
    assert par16["steps"] == 31 and par16["classes"][1] == "Trouser"
    assert listed["limits"]["images"] >= 1 and listed["defaults"]["guidance"] is None  # each method's own
    prologue = next(method for method in listed["methods"] if method["name"] == "Prologue")
    assert prologue["sampling"] == {"guidance": "prologue 0.7, visual cosine^0.25 to 4", "temperature": "0.8"}


def test_a_run_without_guidance_takes_the_methods_own_and_a_given_one_replaces_it_whole():
    own = {"guidance": {"prologue": 0.7, "visual": 4.0}, "guidance_schedule": {"visual": "cosine"},
           "guidance_power": {"visual": 0.25}, "temperature": 0.8}  # fmt: skip
    unset = RunRequest("Prologue", 0, 1, 0, None, None, 0, 1.0)
    assert {name: unset.sampling_options(own)[name] for name in own} == own
    given = RunRequest("Prologue", 0, 1, 0, 3.0, 1.1, 0, 1.0).sampling_options(own)
    assert (given["guidance"], given["guidance_schedule"], given["guidance_power"], given["temperature"]) == (
        3.0,
        "constant",
        1.0,
        1.1,
    )


@pytest.mark.parametrize(
    "body, status, says",
    [
        ({"method": "PAR-32x"}, 404, "unknown method 'PAR-32x'"),
        ({"method": "PAR-16x", "class": "Hat"}, 422, "unknown class 'Hat'"),
        ({"method": "PAR-16x", "class": 10}, 422, "unknown class 10"),
        ({"method": "PAR-16x", "images": 0}, 422, "images must be in [1, 8]"),
        ({"method": "PAR-16x", "images": 1000}, 422, "images must be in [1, 8]"),
        ({"method": "PAR-16x", "top_k": 5000}, 422, "top_k must be in [0, 1024]"),
        ({"method": "PAR-16x", "temperature": 0}, 422, "temperature must be in (0.0, 5.0]"),
        ({"method": "PAR-16x", "top_p": 1.5}, 422, "top_p must be in (0.0, 1.0]"),
        ({"method": "PAR-16x", "seed": True}, 422, "seed must be an integer"),
        ({"method": "PAR-16x", "guidance": "strong"}, 422, "guidance must be a number"),
        ({"method": "PAR-16x", "steps": 3}, 422, "unknown field(s) steps"),
        ('{"method": "PAR-16x", "guidance": NaN}', 422, "guidance must be a number"),
        ("not json", 422, "the body is not JSON"),
        ([1, 2], 422, "the body must be a JSON object"),
        ("x" * 5000, 413, "at most 4096"),
        ({"method": []}, 422, "method must be a name, got []"),
        ({"method": {}}, 422, "method must be a name, got {}"),
        ({"method": "PAR-16x", "class": {}}, 422, "unknown class {}"),
        ('{"method": "PAR-16x", "seed": ' + "7" * 4001 + "}", 422, "seed must be in [0, 9007199254740992], got 777"),
        ("[" * 2000 + "]" * 2000, 422, "nested too deeply"),
        ({"method": "PAR-16x", "speculative": 100}, 422, "speculative must be in [0, 32]"),
    ],
)
def test_bad_requests_get_a_json_error_in_one_line(server, body, status, says):
    content = body if isinstance(body, str) else json.dumps(body)
    response = httpx.post(f"{server[0]}/api/generate", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    message = response.json()["error"]
    assert says in message and "\n" not in message and "Traceback" not in message and len(message) < 300
    assert "Traceback" not in server[2].read_text()  # nothing was a bug of the server


@pytest.mark.parametrize(
    "headers, status, says",
    [
        ({"Origin": "https://evil.example"}, 403, "requests from the page at https://evil.example are refused"),
        ({"Origin": "null"}, 403, "requests from the page at null are refused"),
        ({"Content-Type": "text/plain"}, 415, "Content-Type: application/json"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type: application/json"),
        ({"Host": "rebound.example:8000"}, 421, "does not answer to the host name 'rebound.example'"),
        ({"Host": "rebound.example", "Origin": "http://rebound.example"}, 421, "--allow-host NAME"),
    ],
)
def test_only_its_own_page_may_start_a_run(server, headers, status, says):
    """Cross-site requests (a foreign Origin, a form's content type) and DNS rebinding (a foreign Host) are refused
    before any work; the run would otherwise be valid."""
    before = httpx.get(f"{server[0]}/api/status").json()
    response = httpx.post(
        f"{server[0]}/api/generate",
        content=json.dumps({"method": "PAR-16x"}),
        headers={"Content-Type": "application/json", **headers},
    )
    assert response.status_code == status and says in response.json()["error"]
    after = httpx.get(f"{server[0]}/api/status").json()
    assert after == before  # no run started


def test_its_own_page_and_named_hosts_are_answered(server):
    url = server[0]
    port = url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "argen.internal", "[::1]:8000"):
        assert httpx.get(f"{url}/api/methods", headers={"Host": host}).status_code == 200
    response = httpx.get(f"{url}/api/methods", headers={"Host": "evil.example"})
    assert response.status_code == 421  # a rebinding page cannot read the API either
    body = {"method": "PAR-16x", "images": 1}
    for origin, host in (
        (f"http://localhost:{port}", f"localhost:{port}"),
        ("https://argen.internal", "argen.internal"),
    ):  # the page behind a TLS reverse proxy
        with httpx.stream(
            "POST", f"{url}/api/generate", json=body, timeout=60, headers={"Origin": origin, "Host": host}
        ) as response:
            assert response.status_code == 200 and any(kind == "done" for kind, _ in events(response))


def raw_request(url: str, head: str, body: bytes = b"", read: bool = True) -> bytes:
    """Send a request by hand (headers that httpx would not send, a body cut short); the answer's first bytes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while read and (chunk := connection.recv(4096)):  # until the server closes the connection
            answer += chunk
        return answer


def test_a_huge_declared_body_is_refused_before_it_is_read(server):
    url, process, _ = server
    before = rss_mb(process)
    head = f"POST /api/generate HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\nContent-Length: {1 << 30}\n"
    answers = [raw_request(url, head, b"{" * 1000) for _ in range(3)]  # the rest of the GiB never comes
    assert all(answer.startswith(b"HTTP/1.1 413") and b"at most 4096" in answer for answer in answers)
    assert rss_mb(process) - before < 16


def test_a_chunked_body_stops_at_the_limit_and_memory_stays_bounded(server):
    """Without Content-Length the body is counted as it arrives: 20 clients streaming 4 MB each cost no memory."""
    url, process, _ = server
    before = rss_mb(process)

    async def endless():
        for _ in range(64):
            yield b" " * 65536

    async def load():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(f"{url}/api/generate", content=endless(), headers={"Content-Type": "application/json"})
                    for _ in range(20)
                ),
                return_exceptions=True,
            )

    results = asyncio.run(load())
    answered = [result for result in results if isinstance(result, httpx.Response)]
    assert answered, results
    assert all(result.status_code == 413 for result in answered)
    assert rss_mb(process) - before < 32


def test_clients_hanging_up_mid_body_cost_one_short_line_each(server):
    url, _, log = server
    lines = len(log.read_text().splitlines())
    head = "POST /api/generate HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\nContent-Length: 4000\n"
    for _ in range(30):
        raw_request(url, head, b'{"method": ', read=False)
    assert httpx.get(f"{url}/api/status").status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(log.read_text().splitlines()) < lines + 30:
        time.sleep(0.1)
    new = log.read_text().splitlines()[lines:]
    assert len(new) == 30 and all("hung up while sending its request" in line for line in new)


def test_unknown_pages_and_methods_are_json_too(server):
    for response, status in ((httpx.get(f"{server[0]}/nothing"), 404), (httpx.get(f"{server[0]}/api/generate"), 405)):
        assert response.status_code == status and response.headers["content-type"] == "application/json"
        assert "error" in response.json()


def test_a_run_streams_every_step_then_its_images(server):
    body = {"method": "PAR-16x", "class": "Trouser", "images": 2, "seed": 3}
    with httpx.stream("POST", f"{server[0]}/api/generate", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        received = list(events(response))
    steps = [data for kind, data in received if kind == "step"]
    assert [data["step"] for data in steps] == list(range(1, 32))
    # PAR-16x: the first token of each of the 16 regions one by one, then one token in every region per step.
    assert [data["decoded"].count("1") for data in steps] == list(range(1, 17)) + list(range(32, 257, 16))
    kinds = [kind for kind, _ in received]
    done = received[kinds.index("done")][1]
    assert done["steps"] == 31 and len(done["images"]) == 2
    replay = received[kinds.index("done") + 1 :]  # partial images of a few earlier steps, rendered after the run
    assert replay and all(kind == "replay" and data["step"] < 31 and len(data["images"]) == 2 for kind, data in replay)
    image = Image.open(io.BytesIO(base64.b64decode(done["images"][0].split(",", 1)[1])))
    assert image.size == (64, 64) and done["images_per_s"] > 0


def test_a_speculative_run_shows_every_step_in_fewer_passes(server):
    body = {"method": "1x raster", "seed": 3, "speculative": 8}
    with httpx.stream("POST", f"{server[0]}/api/generate", json=body, timeout=60) as response:
        received = list(events(response))
    steps = [data["step"] for kind, data in received if kind == "step"]
    assert steps == sorted(set(steps)) and steps[-1] == 256  # several steps may arrive from one pass
    assert any(kind == "done" for kind, _ in received)


def test_a_closed_connection_cancels_its_run(server):
    url = server[0]
    before = httpx.get(f"{url}/api/status").json()
    # 8 images of 256 raster steps take seconds: the run is still going when the client leaves after one step.
    with httpx.stream("POST", f"{url}/api/generate", json={"method": "1x raster", "images": 8}, timeout=60) as response:
        first = next(events(response))
        assert first[0] == "step" and first[1]["step"] == 1
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/api/status").json()
        if status["cancelled"] > before["cancelled"] and not status["running"]:
            break
        time.sleep(0.1)
    assert status["cancelled"] == before["cancelled"] + 1 and status["finished"] == before["finished"]
    assert not status["running"] and not status["waiting"]


async def _one_run(client: httpx.AsyncClient, url: str, index: int) -> tuple[list[int], dict]:
    """Places seen while queued and the done frame of one PAR-16x run (30 s per read, 120 s in all)."""
    places, done = [], None
    body = {"method": "PAR-16x", "class": index % 10, "seed": index}
    async with asyncio.timeout(120):
        async with client.stream("POST", f"{url}/api/generate", json=body) as response:
            assert response.status_code == 200
            buffer = ""
            async for text in response.aiter_text():
                buffer += text
                *blocks, buffer = buffer.split("\n\n")
                for kind, data in parse_events("\n\n".join(blocks)):
                    assert kind != "error", data
                    if kind == "queued":
                        places.append(data["place"])
                    elif kind == "done":
                        done = data
    return places, done


def test_twenty_concurrent_runs_finish_without_error_or_memory_growth(server):
    url, process, _ = server
    httpx.post(f"{url}/api/generate", json={"method": "PAR-16x"}, timeout=60).read()  # warm-up
    before = rss_mb(process)

    async def load():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(_one_run(client, url, index) for index in range(LOAD_REQUESTS)))

    started = time.perf_counter()
    results = asyncio.run(load())
    seconds = time.perf_counter() - started
    growth = rss_mb(process) - before
    print(
        f"\nload test: {LOAD_REQUESTS} concurrent PAR-16x runs in {seconds:.1f} s, server RSS {before:.0f} MB "
        f"-> {before + growth:.0f} MB ({growth:+.1f} MB)"
    )
    assert all(done is not None and len(done["images"]) == 1 for _, done in results)
    assert max(max(places, default=0) for places, _ in results) >= LOAD_REQUESTS // 2  # they queued, one at a time
    assert growth < RSS_GROWTH_BOUND_MB
    status = httpx.get(f"{url}/api/status").json()
    assert not status["running"] and not status["waiting"] and status["failed"] == 0


def test_the_page_shows_par_filling_its_regions_together_and_compares_every_method(server, browser_page):
    page = browser_page
    page.goto(server[0] + "/")
    page.wait_for_selector("#method option", state="attached")
    page.select_option("#method", "PAR-16x")
    page.select_option("#class", label="Trouser")
    page.click("#generate")
    page.wait_for_selector('.run[data-method="PAR-16x"][data-state="done"]', timeout=30_000)
    received = page.evaluate("window.argenEvents")
    masks = [event["decoded"] for event in received if event["type"] == "step"]
    assert len(masks) == 31
    for mask in masks:  # each of the 16 regions (4x4 tokens) has as many tokens as the others, or one fewer
        counts = [
            sum(mask[(4 * row + r) * 16 + 4 * column + c] == "1" for r in range(4) for c in range(4))
            for row in range(4)
            for column in range(4)
        ]
        assert max(counts) - min(counts) <= 1
    assert masks[16].count("1") == 32 and [event["type"] for event in received].count("done") == 1
    link = page.locator('.run[data-method="PAR-16x"] a[download]')
    assert link.get_attribute("href").startswith("data:image/png;base64,")
    assert "Trouser" in link.get_attribute("download")
    assert "31 steps" in page.locator(".run .stats").inner_text()

    page.click("#compare")
    page.wait_for_function(
        f"document.querySelectorAll('.run[data-state=done]').length == {len(METHODS)}", timeout=60_000
    )
    panels = page.locator(".run")
    assert [panels.nth(i).get_attribute("data-method") for i in range(len(METHODS))] == [m.name for m in METHODS]
    for i in range(len(METHODS)):
        text = panels.nth(i).locator(".stats").inner_text()
        assert " steps · " in text and " s wall" in text
    seeds = {
        json.dumps(event.get("images"))
        for event in page.evaluate("window.argenEvents")
        if event["type"] == "done" and event["method"] == "PAR-16x"
    }
    assert len(seeds) == 1  # Compare's PAR-16x run repeats the one above: the same seed and class, the same image

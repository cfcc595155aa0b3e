"""Take docs/figures/serve.png: `argen serve` on the shipped checkpoints, Compare for one class, every run replayed
to the middle of its steps (PAR's regions half filled, CTF's coarse map, Prologue's tokens). Needs Debian's chromium
and playwright (scripts/setup.sh --dev).

    .venv/bin/python scripts/serve_screenshot.py [--out docs/figures/serve.png] [--class-name Trouser]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "serve.png")
    parser.add_argument("--class-name", default="Trouser")
    parser.add_argument("--images", type=int, default=2)
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "argen.cli", "--threads", "1", "serve", "--port", str(port)], cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "api/status")
                break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_FLAGS
            )
            page = browser.new_page(viewport={"width": 1180, "height": 760})
            page.goto(url)
            page.wait_for_selector("#method option", state="attached")
            page.select_option("#class", label=args.class_name)
            page.fill("#images", str(args.images))
            page.click("#compare")
            page.wait_for_function(
                "document.querySelectorAll('.run').length > 0 && "
                "[...document.querySelectorAll('.run')].every(r => r.dataset.state === 'done')",
                timeout=120_000,
            )
            for slider in page.locator(".replay").all():  # to the middle of the run
                slider.evaluate("s => { s.value = Math.round(s.max / 2); s.dispatchEvent(new Event('input')); }")
            page.wait_for_timeout(300)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait()
    print(f"screenshot: {args.out}")


if __name__ == "__main__":
    main()

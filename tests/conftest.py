import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# Deterministic, quiet, and fair to a shared 2-core machine.
torch.set_num_threads(1)
os.environ.setdefault("ARGEN_NO_PROGRESS", "1")


@pytest.fixture
def digits_dataset():
    from argen.config import DataConfig
    from argen.data import load_dataset

    return load_dataset(DataConfig(name="digits", image_size=8, channels=1))


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def dump_dom(tmp_path):
    """Render an HTML file in Debian's headless Chromium and return the DOM after its scripts ran."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (scripts/setup.sh --dev installs it)")

    def render(index: Path) -> str:
        command = [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            index.as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    return render


@pytest.fixture
def browser_page():
    """A Playwright page in Debian's headless Chromium (Playwright's own browsers are never downloaded); the test
    fails if a script of the page raised."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (scripts/setup.sh --dev installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        browser.close()
    assert not errors, errors


@pytest.fixture
def torchrun():
    """A function giving a 2-rank torchrun command line for `python -m argen.cli` on a port free at that moment,
    so that test runs side by side on one machine do not collide on a fixed rendezvous port."""

    def command() -> list[str]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={port}",
            "-m",
            "argen.cli",
        ]

    return command

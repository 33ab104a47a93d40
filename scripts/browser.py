"""`gqn view` in a real browser: start the server, drive Debian's headless Chromium with Selenium.

Shared by tests/test_view.py and scripts/screenshot_view.py. Chromium and ChromeDriver are
Debian's packages (chromium, chromium-driver), which `make test` installs.

    with serve_view(["pretrained:shepard_metzler_5_parts"]) as url, chromium() as driver:
        driver.get(url)
        frame = wait_for_frame(driver)          # the page's newest picture, when it stops changing
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@contextlib.contextmanager
def serve_view(args: list[str], timeout: float = 120.0):
    """Run `gqn view ARGS --port 0` and yield the address it prints; stop it after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gqn", "view", *args, "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.time() + timeout
        line = ""
        while "open http" not in line:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                raise RuntimeError(f"gqn view stopped: {process.stderr.read().strip()}")
            if time.time() > deadline:
                raise RuntimeError("gqn view did not print its address")
        yield re.search(r"open (http://\S+/)", line).group(1)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def chromium(width: int = 1000, height: int = 900):
    """Headless Chromium under Selenium, with a fresh profile and no background connections."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for program in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(program):
            raise RuntimeError(f"{program} is missing: make test installs chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def shown(driver) -> dict:
    """The page's newest picture: its pixels (H, W, 3) uint8 and what the server said it is."""
    data = driver.execute_script("return Object.assign({}, document.getElementById('prediction').dataset)")
    src = driver.find_element("id", "prediction").get_attribute("src") or ""
    if not data.get("seq") or "," not in src:
        return {}
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))
    return {
        "image": image,
        "seq": int(data["seq"]),
        "scene": int(data["scene"]),
        "camera": json.loads(data["camera"]),
        "context": json.loads(data["context"]),
        "mode": data["mode"],
        "seed": int(data["seed"]),
        "truth": int(data["truth"]) if data["truth"] != "" else None,
    }


def wait_for_frame(driver, after: int = 0, timeout: float = 60.0) -> dict:
    """The page's picture once it answers the newest request sent, newer than seq `after`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        frame = shown(driver)
        if frame and frame["seq"] > after and frame["seq"] == driver.execute_script("return state.sent"):
            return frame
        time.sleep(0.05)
    message = driver.find_element("id", "message").text
    raise TimeoutError(
        f"no picture newer than request {after} within {timeout} s ({message or 'no message'})"
    )

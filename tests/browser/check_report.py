"""Opens report pages from disk in headless Chromium with the network blocked, and says
what rendered: page size, every chart's SVG and its size on the page, requests that
failed or were blocked, console and page errors, and how much of a full-page screenshot
is not blank. Used by tests/report.rs; prints one JSON object.

    python3 check_report.py CHROMIUM SCREENSHOT_FOLDER PAGE.html [PAGE.html ...]
"""

import json
import pathlib
import sys

from PIL import Image
from playwright.sync_api import sync_playwright

chromium, shots, pages = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
results = {}
with sync_playwright() as playwright:
    # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
    browser = playwright.chromium.launch(
        executable_path=chromium,
        args=["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND"],
    )
    for path in pages:
        page_path = pathlib.Path(path).resolve()
        context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
        blocked, failed, console, errors = [], [], [], []

        def route(route):
            if route.request.url.startswith("file://"):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
        response = page.goto(page_path.as_uri(), wait_until="load")
        svgs = page.evaluate(
            """() => [...document.querySelectorAll('svg')].map(svg => {
                const box = svg.getBoundingClientRect();
                return {id: svg.id, width: box.width, height: box.height,
                        title: svg.querySelector('title') ? svg.querySelector('title').textContent : null,
                        shapes: svg.querySelectorAll('rect, circle, polyline, line').length};
            })"""
        )
        height = page.evaluate("document.documentElement.scrollHeight")
        width = page.evaluate("document.documentElement.scrollWidth")
        images = page.evaluate("document.images.length")
        links = page.evaluate("[...document.querySelectorAll('link, script, iframe, object, embed')].length")
        shot = shots / (page_path.stem + ".png")
        page.screenshot(path=str(shot), full_page=True)
        image = Image.open(shot).convert("RGB")
        small = image.resize((max(1, image.width // 4), max(1, image.height // 4)))
        raw = small.tobytes()
        pixels = [raw[i : i + 3] for i in range(0, len(raw), 3)]
        not_white = sum(1 for p in pixels if p != b"\xff\xff\xff") / len(pixels)
        colours = len(set(pixels))
        results[path] = {
            "status": response.status if response else None,
            "height": height,
            "width": width,
            "svgs": svgs,
            "images": images,
            "external_elements": links,
            "blocked": blocked,
            "failed": failed,
            "console": console,
            "errors": errors,
            "screenshot": str(shot),
            "screenshot_size": [image.width, image.height],
            "not_white": not_white,
            "colours": colours,
        }
        context.close()
    browser.close()
print(json.dumps(results))

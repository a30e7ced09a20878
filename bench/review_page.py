"""Benchmark: a reviewer's throughput on the review page, and the claim API under 8 reviewers.

By default it builds a SQLite store of ``--items`` pending review items (10,000; seeded
directly through the store in a few seconds: tests/integration/review_seed.py), creates 9
reviewer tokens and starts ``tracejury serve`` on a free 127.0.0.1 port; ``--url`` and
``--token`` (repeatable: the first drives the page, the load phase uses them in turn) target a
running server instead, whose queue must hold enough pending items.

0. **The queue's pages**: the first page of 50 pending items (15 times), every page by cursor
   (``after=``), and ``offset=`` at the last page (15 times): what a deep page costs each way.
1. **The page** (Debian's Chromium through Playwright, 1366x768): ``--steps`` times, press
   ``n`` (claim → the item visible), then ``p`` (label → saved on the page), then ``n`` again.
   Times are the page's own clock, from the keydown to the animation frame after the DOM
   shows the result (the item's title and final answer, or the label's confirmation); every
   step also checks that the final answer is inside the viewport. Reports median, p95 and max
   of: claim → item visible, label → saved, and label → next item visible: what the page makes
   the reviewer wait from the label key to the next item, i.e. label → saved plus the next
   claim → item visible (the reviewer's own pause between ``p`` and ``n`` left out; the
   driver's, a few CDP round trips, is not the page's).
2. **The API under load**: ``--reviewers`` threads (one token each), each claiming and
   labelling ``--claims`` items over HTTP at once; asserts no item was claimed twice; reports
   claims/s and the claim latency's median and p95.

Bounded: every wait has a timeout, the run a deadline (``--deadline``); talks only to
127.0.0.1; stops the server it started and the browser in ``finally`` blocks.

    .venv/bin/python bench/review_page.py [--items 10000] [--steps 50] [--reviewers 8] [--claims 50]
    .venv/bin/python bench/review_page.py --url http://127.0.0.1:8000 --token T [--token T2 ...]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the seeder lives with the tests

EXE = Path(sys.executable).parent / "tracejury"
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/lib/chromium/chromium") if os.access(p, os.X_OK)), None)
WAIT_MS = 10_000

# In the page: the keydown time of n/p, and the animation frame after #trace-title or #message
# changed (what the reviewer sees next).
_HOOK = """() => {
  window.__bench = { key: null, keyAt: 0, shown: [] };
  document.addEventListener("keydown", (ev) => {
    window.__bench.key = ev.key; window.__bench.keyAt = performance.now();
  }, true);
  const note = (what) => requestAnimationFrame(() => window.__bench.shown.push(
    { what, text: document.getElementById(what).textContent, at: performance.now() }));
  for (const id of ["trace-title", "message"]) {
    new MutationObserver(() => note(id)).observe(document.getElementById(id),
      { childList: true, characterData: true, subtree: true });
  }
}"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(name: str, values: list[float]) -> str:
    return (f"{name:<32} median {statistics.median(values):6.1f} ms   p95 {_pct(values, 0.95):6.1f} ms   "
            f"max {max(values):6.1f} ms   (n={len(values)})")  # fmt: skip


def _loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"--url: this bench talks to 127.0.0.1 only, got host {host!r}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"tracejury serve did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def build_and_serve(where: Path, items: int, tokens: int) -> tuple[subprocess.Popen[bytes], str, list[str]]:
    """A seeded SQLite store, ``tokens`` reviewer tokens, and `tracejury serve` over it."""
    from tests.integration.review_seed import seed_queue
    from tracejury.store.engine import open_engine
    from tracejury.store.tokens import create_token

    db = f"sqlite:///{where / 'review-bench.db'}"
    engine = open_engine(db)
    t0 = time.perf_counter()
    seed_queue(engine, items)
    print(f"seeded {items:,} pending review items in {time.perf_counter() - t0:.1f} s", flush=True)
    secrets = [create_token(engine, "reviewer", f"bench-{i}")[0] for i in range(tokens)]
    engine.dispose()
    port = _free_port()
    env = {"PATH": f"{EXE.parent}:/usr/bin:/bin", "HOME": str(where), "TRACEJURY_DATABASE_URL": db,
           "TRACEJURY_BROKER_URL": f"sqla+sqlite:///{where / 'broker.db'}"}  # fmt: skip
    log = (where / "serve.log").open("wb")
    proc = subprocess.Popen([str(EXE), "serve", "--port", str(port), "--log-level", "warning"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    _wait_port(port, 30)
    return proc, f"http://127.0.0.1:{port}", secrets


def drive_page(url: str, token: str, steps: int) -> dict[str, list[float]]:
    """The keyboard through ``steps`` items; the per-step latencies in ms."""
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        raise SystemExit("Debian's chromium is not installed: run scripts/setup (apt-get install chromium)")
    out: dict[str, list[float]] = {"claim → item visible": [], "label → saved": [], "label → next item visible": []}
    saved_ms = None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"], timeout=30_000)
        try:
            page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
            page.set_default_timeout(WAIT_MS)
            page.goto(f"{url}/review", wait_until="domcontentloaded")
            page.locator("#token").fill(token)
            page.locator("#login-button").click()
            page.locator("#items .row").first.wait_for()
            page.evaluate(_HOOK)
            for step in range(steps):
                shown = _press(page, "n", "trace-title", None)
                out["claim → item visible"].append(shown["at"] - shown["keyAt"])
                if saved_ms is not None:
                    out["label → next item visible"].append(saved_ms + out["claim → item visible"][-1])
                item_id = shown["text"].split(" ", 1)[0]
                answer = page.locator("#final-answer")
                box = answer.bounding_box()
                if not answer.is_visible() or box is None or box["y"] + min(box["height"], 40) > 768:
                    raise SystemExit(f"step {step}: the final answer of {item_id} is not inside the viewport: {box}")
                saved = _press(page, "p", "message", f"Labelled {item_id} ")
                saved_ms = saved["at"] - saved["keyAt"]
                out["label → saved"].append(saved_ms)
        finally:
            browser.close()
    return out


def _press(page: Any, key: str, what: str, prefix: str | None) -> dict[str, Any]:
    """Press ``key`` and wait for the frame after ``#what`` changed (to a text starting with
    ``prefix``, or to a new item's title); its time and the keydown's, in the page's clock."""
    page.evaluate("() => { window.__bench.shown = []; }")
    page.keyboard.press(key)
    found = page.wait_for_function(
        """([what, prefix]) => window.__bench.shown.find((s) => s.what === what &&
             (prefix ? s.text.startsWith(prefix) : s.text.startsWith('#')))""",
        arg=[what, prefix],
        polling=5,
        timeout=WAIT_MS,
    ).json_value()
    found["keyAt"] = page.evaluate("() => window.__bench.keyAt")
    return found


def paging(url: str, token: str, items: int) -> None:
    """Time the first page of 50 pending items 15 times, walk the queue by cursor (every page
    timed), then time ``offset`` at the last page 15 times; print bytes and latencies. The
    queue is read, not changed."""
    lat: list[float] = []
    sizes: list[int] = []
    cursor = None
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0) as client:
        client.get("/api/review/me").raise_for_status()  # the server's first request pays its start-up
        first = []
        for _ in range(15):
            t0 = time.perf_counter()
            client.get("/api/review/items", params={"state": "pending", "limit": "50"}).raise_for_status()
            first.append((time.perf_counter() - t0) * 1000)
        for _ in range(items // 50 + 2):
            params = {"state": "pending", "limit": "50", **({"after": cursor} if cursor else {})}
            t0 = time.perf_counter()
            got = client.get("/api/review/items", params=params)
            lat.append((time.perf_counter() - t0) * 1000)
            got.raise_for_status()
            sizes.append(len(got.content))
            cursor = got.headers.get("x-next-cursor")
            if cursor is None:
                break
        deep = max(0, (len(lat) - 1) * 50)
        offset = []
        for _ in range(15):
            t0 = time.perf_counter()
            client.get("/api/review/items", params={"state": "pending", "limit": "50", "offset": str(deep)})
            offset.append((time.perf_counter() - t0) * 1000)
    print(f"the queue by cursor, {len(lat)} pages of 50 (first page {sizes[0]:,} bytes):")
    print("  " + _summary("a page by cursor (after=)", lat))
    print("  " + _summary("the first page (15 times)", first))
    print("  " + _summary(f"the last pages (after item {deep:,})", lat[-5:]))
    print("  " + _summary(f"offset={deep:,}", offset))


def load(url: str, tokens: list[str], reviewers: int, claims: int, deadline: float) -> tuple[int, float, list[float]]:
    """``reviewers`` threads claiming and labelling ``claims`` items each; (claims, seconds,
    claim latencies in ms). Raises when an item was claimed twice."""
    claimed: list[list[int]] = [[] for _ in range(reviewers)]
    latencies: list[list[float]] = [[] for _ in range(reviewers)]
    errors: list[str] = []
    start = threading.Barrier(reviewers)

    def reviewer(i: int) -> None:
        headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10.0) as client:
            start.wait(timeout=30)
            for _ in range(claims):
                if time.monotonic() > deadline:
                    errors.append(f"reviewer {i}: deadline passed")
                    return
                t0 = time.perf_counter()
                got = client.post("/api/review/next", json={})
                latencies[i].append((time.perf_counter() - t0) * 1000)
                if got.status_code == 404:
                    return  # the queue ran dry
                if got.status_code != 200:
                    errors.append(f"reviewer {i}: claim: HTTP {got.status_code}: {got.text[:200]}")
                    return
                item = got.json()["itemId"]
                claimed[i].append(item)
                done = client.post(f"/api/review/items/{item}/label", json={"label": "pass"})
                if done.status_code != 200:
                    errors.append(f"reviewer {i}: label {item}: HTTP {done.status_code}: {done.text[:200]}")
                    return

    threads = [threading.Thread(target=reviewer, args=(i,), daemon=True) for i in range(reviewers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.monotonic()))
    seconds = time.perf_counter() - t0
    if any(t.is_alive() for t in threads):
        raise SystemExit("the load phase did not finish before the deadline")
    if errors:
        raise SystemExit("; ".join(errors))
    every = [i for ids in claimed for i in ids]
    if len(every) != len(set(every)):
        twice = sorted({i for i in every if every.count(i) > 1})
        raise SystemExit(f"items claimed twice: {twice[:20]}")
    return len(every), seconds, [x for lat in latencies for x in lat]


def main() -> None:
    """Build (or target), drive the page, then the load; print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=10_000, help="pending items to seed (own server only)")
    ap.add_argument("--steps", type=int, default=50, help="items the page labels")
    ap.add_argument("--reviewers", type=int, default=8)
    ap.add_argument("--claims", type=int, default=50, help="items each API reviewer claims and labels")
    ap.add_argument("--url", help="a running `tracejury serve` on 127.0.0.1 (else one is started)")
    ap.add_argument("--token", action="append", default=[], help="reviewer token(s) for --url")
    ap.add_argument("--deadline", type=float, default=600.0, help="seconds the whole run may take")
    args = ap.parse_args()
    if min(args.steps, args.reviewers, args.claims) < 1 or args.items < args.steps + args.reviewers * args.claims:
        raise SystemExit("--items must cover --steps + --reviewers x --claims, each at least 1")
    deadline = time.monotonic() + args.deadline
    proc = None
    with tempfile.TemporaryDirectory(prefix="review-bench-") as tmp:
        try:
            if args.url:
                _loopback(args.url)
                if not args.token:
                    raise SystemExit("--url needs --token (a reviewer or admin token)")
                url, tokens = args.url.rstrip("/"), args.token
            else:
                proc, url, tokens = build_and_serve(Path(tmp), args.items, args.reviewers + 1)
            print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs", flush=True)
            paging(url, tokens[0], args.items)
            page = drive_page(url, tokens[0], args.steps)
            print(f"the page, {args.steps} items by keyboard at 1366x768:")
            for name, values in page.items():
                print("  " + _summary(name, values))
            n, seconds, lat = load(url, tokens[1:] or tokens, args.reviewers, args.claims, deadline)
            print(f"the API, {args.reviewers} reviewers claiming and labelling at once: {n} claims in {seconds:.2f} s "
                  f"= {n / seconds:.0f} claims/s, no item claimed twice")  # fmt: skip
            print("  " + _summary("claim (POST /api/review/next)", lat))
            print(f"load: {os.getloadavg()[0]:.2f} (1 min)")
        finally:
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=15)


if __name__ == "__main__":
    main()

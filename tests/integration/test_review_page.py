"""The review page in a real browser: Debian's Chromium driven by Playwright (never a
downloaded browser) against a real `tracejury serve` process on a free loopback port, over a
SQLite store whose review items were escalated by `tracejury score` against the real mock
judge. The store's two backends are covered by test_review.py; this file is about the page.

Every wait is bounded (Playwright's default timeout, the server's start-up wait), and the
server and the browser stop in ``finally`` blocks whatever the test does.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from tests.integration.procs import EXE, free_port, start, stop, wait_port
from tests.integration.reviewing import invoke, populate, rubrics_with, score
from tracejury.core.simulate import simulate
from tracejury.store import review
from tracejury.store.engine import open_engine

pytestmark = pytest.mark.integration

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/lib/chromium/chromium") if os.access(p, os.X_OK)), None)
WAIT_MS = 15_000
"""Upper bound of every browser wait."""
REVIEWER = "ana"
PAYLOADS = (
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1;alert(1)">',
)
HOSTILE = "tr_hostile_0001"
EXPECTED_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclass
class Served:
    """A running `tracejury serve` over a scored store."""

    url: str
    token: str
    engine: Engine


def _hostile_trace() -> dict[str, Any]:
    """A simulated release-r1 trace with retrieved chunks and a tool snapshot whose input,
    final answer, first chunk and snapshot carry script and onerror payloads."""
    trace = next(t for t in simulate("r1", 60, seed=11)
                 if t["sample"].get("retrievedChunks") and t["sample"].get("toolSnapshots"))  # fmt: skip
    text = " ".join(PAYLOADS)
    trace["traceId"] = HOSTILE
    sample = trace["sample"]
    sample["inputText"] = f"input {text}"
    sample["finalAnswer"] = f"answer {text}"
    sample["retrievedChunks"][0]["text"] = f"chunk {text}"
    sample["toolSnapshots"][0]["snapshot"] = {"note": f"snapshot {text}"}
    return trace


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_judge: str, fast_rubrics: Path) -> Iterator[Served]:
    """40 simulated traces and the hostile one, scored with answer_correctness under an audit
    rate of 1 (every scored judgment escalates; a failed one too: high risk); then `tracejury
    serve` with a reviewer token named ana."""
    db = f"sqlite:///{tmp_path / 'review.db'}"
    monkeypatch.setenv("TRACEJURY_DATABASE_URL", db)
    rubrics = rubrics_with(fast_rubrics, tmp_path, {"answer_correctness": {"audit_rate": 1.0, "high_risk": True}})
    populate(tmp_path, monkeypatch, judge_url=mock_judge, rubrics_dir=rubrics, traces=40)
    hostile = tmp_path / "hostile.jsonl"
    hostile.write_bytes(orjson.dumps(_hostile_trace()) + b"\n")
    invoke("ingest", str(hostile))
    assert score("answer_correctness")["escalated"] == 41
    env = {
        "PATH": f"{Path(EXE).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TRACEJURY_DATABASE_URL": db,
        "TRACEJURY_RUBRICS_DIR": str(rubrics),
        "TRACEJURY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
    }
    created = subprocess.run([EXE, "token", "create", "--role", "reviewer", "--name", REVIEWER, "--json"], env=env,
                             check=True, capture_output=True, timeout=60)  # fmt: skip
    token = orjson.loads(created.stdout)["token"]
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start([EXE, "serve", "--port", str(port), "--log-level", "warning"], env, log)
    engine = open_engine(db)
    try:
        wait_port(port, timeout=30)
        yield Served(f"http://127.0.0.1:{port}", token, engine)
    finally:
        stop(proc)
        engine.dispose()
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture
def browser(served: Served) -> Iterator[Any]:
    """Headless Debian Chromium (root: no sandbox); closed whatever the test does. Started
    after the store is scored: the sync API runs an event loop of its own in this thread."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "Debian's chromium is not installed: run scripts/setup (apt-get install chromium)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"], timeout=30_000)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page with what it reported: console messages and dialogs."""

    page: Any
    console: list[str]
    dialogs: list[str]


def _open(browser: Any, served: Served) -> tuple[Watched, Any]:
    """A fresh context and page on /review, logged in with the reviewer token; returns the
    page and the response of the page's HTML."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    watched = Watched(page, [], [])
    page.on("console", lambda m: watched.console.append(f"{m.type}: {m.text}"))

    def dialog(d: Any) -> None:
        watched.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    response = page.goto(f"{served.url}/review", wait_until="domcontentloaded")
    page.locator("#token").fill(served.token)
    page.locator("#login-button").click()
    page.locator("#who").filter(has_text=f"reviewing as {REVIEWER}").wait_for()
    page.locator("#items .row").first.wait_for()
    return watched, response


def _csp_violations(watched: Watched) -> list[str]:
    return [m for m in watched.console if "Content Security Policy" in m or "Content-Security-Policy" in m]


def test_claim_and_label_with_the_keyboard(served: Served, browser: Any) -> None:
    watched, response = _open(browser, served)
    page = watched.page
    assert response.status == 200 and response.headers["content-security-policy"] == EXPECTED_CSP
    queue = review.list_items(served.engine, state="pending", limit=1000)
    assert page.locator("#items .row").count() == len(queue) == 41

    # n claims the top of the queue
    page.locator("body").press("n")
    page.locator("#trace-title").filter(has_text=f"#{queue[0]['itemId']} ").wait_for()
    claimed = review.list_items(served.engine, state="claimed")
    assert [(i["itemId"], i["claimedBy"]) for i in claimed] == [(queue[0]["itemId"], REVIEWER)]
    item = review.get_item(served.engine, queue[0]["itemId"])
    page.locator("#final-answer").filter(has_text=item["view"]["finalAnswer"]).wait_for()

    # p labels it with the rubric's passing label, with the typed rationale
    page.locator("#rationale").fill("checked the tool output")
    page.locator("#rationale").press("Escape")
    page.locator("body").press("p")
    page.locator("#history li").filter(has_text=REVIEWER).wait_for()
    stored = review.get_item(served.engine, queue[0]["itemId"])
    assert stored["state"] == "labelled"
    assert [(lb["reviewer"], lb["label"], lb["passed"], lb["rationale"]) for lb in stored["labels"]] == [
        (REVIEWER, "pass", True, "checked the tool output")
    ]

    # f relabels (appends: the pass stays in the history), the page shows both
    page.locator("body").press("f")
    page.locator("#history li").nth(1).filter(has_text="fail").wait_for()
    labels = review.get_item(served.engine, queue[0]["itemId"])["labels"]
    assert [(lb["label"], lb["passed"]) for lb in labels] == [("pass", True), ("fail", False)]

    # n claims the next one, s skips it
    page.locator("body").press("n")
    page.locator("#trace-title").filter(has_text=f"#{queue[1]['itemId']} ").wait_for()
    page.locator("body").press("s")
    page.locator("#message").filter(has_text=f"Skipped #{queue[1]['itemId']}").wait_for()
    skipped = review.list_items(served.engine, state="skipped")
    assert [(i["itemId"], i["claimedBy"]) for i in skipped] == [(queue[1]["itemId"], REVIEWER)]
    assert len(review.list_items(served.engine, state="pending", limit=1000)) == 39
    assert not _csp_violations(watched) and not watched.dialogs


def test_hostile_trace_renders_as_text_and_runs_nothing(served: Served, browser: Any) -> None:
    watched, response = _open(browser, served)
    page = watched.page
    assert response.headers["content-security-policy"] == EXPECTED_CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    (hostile,) = [i for i in review.list_items(served.engine, limit=1000) if i["traceId"] == HOSTILE]

    page.locator(f'#items .row[data-item-id="{hostile["itemId"]}"]').click()
    page.locator("#trace-title").filter(has_text=HOSTILE).wait_for()
    text = " ".join(PAYLOADS)
    # the payloads are on the page as literal, visible text
    for selector, expected in (("#input-text", f"input {text}"), ("#final-answer", f"answer {text}"),
                               ("#chunks li pre", f"chunk {text}")):  # fmt: skip
        node = page.locator(selector).first
        assert node.is_visible() and node.text_content() == expected, selector
    snapshot = page.locator("#tools li pre").first
    assert snapshot.is_visible() and orjson.loads(snapshot.text_content()) == {"note": f"snapshot {text}"}
    page.get_by_text(PAYLOADS[1]).first.wait_for(state="visible")
    # ... and nothing ran: no element was made from them, no handler fired, no dialog opened
    assert page.locator("#trace img, #trace script, #trace svg").count() == 0
    page.wait_for_timeout(500)  # give an onerror (a failing src=x load) time to fire, were there one
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert watched.dialogs == []
    assert _csp_violations(watched) == []  # nothing even tried to run, so nothing was blocked

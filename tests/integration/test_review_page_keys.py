"""The review page at a reviewer's speed, in a real browser (Debian's Chromium through
Playwright, 1366x768) against a real `tracejury serve` over a queue of 10,000 pending items:
the claimed item in view without scrolling, labelling and the next item by keyboard, paging
without loading the queue, every control reachable by Tab with a visible focus, labelled
inputs, the keys one key away (`?`), and the contrast of the text colours (WCAG AA).

Every wait is bounded; the server and the browser stop in ``finally`` blocks.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from tests.integration.procs import EXE, free_port, start, stop, wait_port
from tests.integration.review_seed import seed_queue
from tests.integration.test_review_page import CHROMIUM, WAIT_MS
from tracejury.core.review import ITEM_STATES
from tracejury.store import review
from tracejury.store.engine import open_engine

pytestmark = pytest.mark.integration

N = 10_000
VIEW = {"width": 1366, "height": 768}
REVIEWER = "ana"
CSS = Path(__file__).resolve().parents[2] / "tracejury" / "api" / "static" / "review.css"


@dataclass
class Served:
    """A running `tracejury serve` over the seeded queue."""

    url: str
    token: str
    engine: Engine


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """N pending items (tests/integration/review_seed.py), a reviewer token named ana, and
    `tracejury serve` over them. Shared by the module: tests read expectations from the store."""
    tmp = tmp_path_factory.mktemp("review-keys")
    db = f"sqlite:///{tmp / 'review.db'}"
    engine = open_engine(db)
    seed_queue(engine, N)
    env = {"PATH": f"{Path(EXE).parent}:/usr/bin:/bin", "HOME": str(tmp), "TRACEJURY_DATABASE_URL": db,
           "TRACEJURY_BROKER_URL": f"sqla+sqlite:///{tmp / 'broker.db'}"}  # fmt: skip
    created = subprocess.run([EXE, "token", "create", "--role", "reviewer", "--name", REVIEWER, "--json"], env=env,
                             check=True, capture_output=True, timeout=60)  # fmt: skip
    port = free_port()
    log = tmp / "serve.log"
    proc = start([EXE, "serve", "--port", str(port), "--log-level", "warning"], env, log)
    try:
        wait_port(port, timeout=30)
        yield Served(f"http://127.0.0.1:{port}", orjson.loads(created.stdout)["token"], engine)
    finally:
        stop(proc)
        engine.dispose()
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def browser(served: Served) -> Iterator[Any]:
    """Headless Debian Chromium (root: no sandbox), closed whatever the tests do."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "Debian's chromium is not installed: run scripts/setup (apt-get install chromium)"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"], timeout=30_000)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Opened:
    """A logged-in page and the queue listings (URL, item count, body bytes) it fetched."""

    page: Any
    listings: list[tuple[str, int, int, str | None]]


def _open(browser: Any, served: Served) -> Opened:
    context = browser.new_context(viewport=VIEW)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    opened = Opened(page, [])

    def listed(response: Any) -> None:
        if "/api/review/items?" in response.url and response.request.method == "GET":
            body = response.body()
            opened.listings.append((response.url, len(orjson.loads(body)), len(body),
                                    response.headers.get("x-next-cursor")))  # fmt: skip

    page.on("response", listed)
    page.goto(f"{served.url}/review", wait_until="domcontentloaded")
    page.locator("#token").fill(served.token)
    page.locator("#login-button").click()
    page.locator("#items .row").first.wait_for()
    return opened


def _in_view(page: Any, selector: str) -> None:
    """The element is visible and wholly inside the 1366x768 viewport."""
    box = page.locator(selector).bounding_box()
    assert page.locator(selector).is_visible() and box is not None, selector
    assert box["x"] >= 0 and box["y"] >= 0, (selector, box)
    assert box["x"] + box["width"] <= VIEW["width"] and box["y"] + box["height"] <= VIEW["height"], (selector, box)


def _title_of(item_id: int) -> str:
    return f"#{item_id} "


def test_claimed_item_is_in_view_and_the_next_follows_by_keyboard(served: Served, browser: Any) -> None:
    page = _open(browser, served).page
    top = review.list_items(served.engine, state="pending", limit=2)
    page.keyboard.press("n")
    page.locator("#trace-title").filter(has_text=_title_of(top[0]["itemId"])).wait_for()
    item = review.get_item(served.engine, top[0]["itemId"])
    assert item["state"] == "claimed" and item["claimedBy"] == REVIEWER
    page.locator("#final-answer").filter(has_text=item["view"]["finalAnswer"][:40]).wait_for()
    # everything the judge saw and said, and the controls, without scrolling the page
    for selector in ("#final-answer", "#input-text", "#btn-pass", "#btn-fail", "#label-select", "#rationale",
                     "#judge", "#question", "#escalation", "#item-chips", "#chunks li:first-child .title"):  # fmt: skip
        _in_view(page, selector)
    assert page.evaluate("[document.documentElement.scrollHeight, document.documentElement.scrollWidth]") == [768, 1366]
    assert item["judge"]["rationale"] in page.locator("#judge").inner_text()
    assert item["question"]["description"] in page.locator("#question").inner_text()
    # segments as chips, long values elided with the whole on hover
    chips = page.locator("#item-chips .chip.segment")
    parts = item["segment"].split("|")
    assert chips.count() == len(parts)
    for i, part in enumerate(parts):
        shown = chips.nth(i).inner_text()
        assert shown == part or (shown.endswith("…") and chips.nth(i).get_attribute("title") == part), (shown, part)
    assert any(len(p.split("=", 1)[1]) > 18 for p in parts), "the seeded model value is long: an elided chip"

    # p labels it; the page says so and n brings the next one, also in view
    page.keyboard.press("p")
    page.locator("#message").filter(has_text=f"Labelled #{top[0]['itemId']} as pass").wait_for()
    assert [lb["label"] for lb in review.get_item(served.engine, top[0]["itemId"])["labels"]] == ["pass"]
    page.keyboard.press("n")
    page.locator("#trace-title").filter(has_text=_title_of(top[1]["itemId"])).wait_for()
    _in_view(page, "#final-answer")
    # 2 is the rubric's second label (fail): a number key labels too
    page.keyboard.press("2")
    page.locator("#message").filter(has_text=f"Labelled #{top[1]['itemId']} as fail").wait_for()
    assert review.get_item(served.engine, top[1]["itemId"])["labels"][-1]["passed"] is False


def test_the_queue_pages_without_loading_it_all(served: Served, browser: Any) -> None:
    opened = _open(browser, served)
    page = opened.page
    pending = review.list_items(served.engine, state="pending", limit=150)
    page.locator(f'#items .row[data-item-id="{pending[0]["itemId"]}"]').wait_for()
    rows = page.locator("#items .row")
    assert rows.count() == 50
    assert [int(r) for r in rows.evaluate_all("rs => rs.map(r => r.dataset.itemId)")] == [
        i["itemId"] for i in pending[:50]
    ]
    page.keyboard.press("]")
    page.locator(f'#items .row[data-item-id="{pending[50]["itemId"]}"]').wait_for()
    assert [int(r) for r in rows.evaluate_all("rs => rs.map(r => r.dataset.itemId)")] == [
        i["itemId"] for i in pending[50:100]
    ]
    assert page.locator("#page-info").inner_text().startswith("51–100")
    page.keyboard.press("[")
    page.locator(f'#items .row[data-item-id="{pending[0]["itemId"]}"]').wait_for()
    # three listings of 50 items each, the second after a cursor: nothing near the 10,000
    urls = [u for u, *_ in opened.listings]
    assert len(opened.listings) == 3 and "after=" in urls[1] and "after=" not in urls[0] + urls[2], urls
    assert all(n == 50 and size < 60_000 and cursor for _, n, size, cursor in opened.listings), opened.listings
    assert sum(n for _, n, _, _ in opened.listings) == 150 and len(review.list_items(served.engine, limit=N)) == N
    # the queue is one tab stop; arrows move along it, Enter opens the item
    rows.first.focus()
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.dataset.itemId") == str(pending[1]["itemId"])
    page.keyboard.press("Enter")
    page.locator("#trace-title").filter(has_text=_title_of(pending[1]["itemId"])).wait_for()
    assert review.get_item(served.engine, pending[1]["itemId"])["state"] == "pending"  # opening is not claiming


_CONTROLS = "button:not([tabindex='-1']), input, select, summary, [tabindex='0']"
"""Tab stops: the queue's rows are one (a roving tabindex: arrows move within it)."""
_VISIBLE = """(els) => els.filter((e) => e.getClientRects().length && !e.disabled
  && getComputedStyle(e).visibility !== 'hidden').map((e, i) => { e.dataset.probe = String(i); return i; })"""
_FOCUS = """() => { const e = document.activeElement; const s = getComputedStyle(e);
  return [e.dataset.probe || null, e.id || e.className, s.outlineStyle, parseFloat(s.outlineWidth), s.outlineColor]; }"""


def test_tab_reaches_every_control_with_a_visible_focus(served: Served, browser: Any) -> None:
    page = _open(browser, served).page
    page.keyboard.press("n")
    page.locator("#item").wait_for()
    page.locator("#final-answer").filter(has_text=re.compile(".")).wait_for()
    probes = page.locator(_CONTROLS).evaluate_all(_VISIBLE)
    assert len(probes) >= 20  # filters, pager, queue, label form, header, scroll boxes, details
    seen: dict[str, tuple] = {}
    page.locator("body").focus()
    for _ in range(len(probes) + 10):
        page.keyboard.press("Tab")
        probe, name, style, width, color = page.evaluate(_FOCUS)
        if probe is not None:
            seen[probe] = (name, style, width, color)
    assert sorted(seen, key=int) == [str(p) for p in probes], "controls Tab never reached"
    hidden_ring = {p: v for p, v in seen.items() if v[1] in ("none", "hidden") or v[2] < 2}
    assert not hidden_ring, hidden_ring
    # every input and select has a label a screen reader reads
    unlabelled = page.locator("input, select").evaluate_all(
        "els => els.filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.id)")  # fmt: skip
    assert unlabelled == []


def test_the_keys_are_one_key_away(served: Served, browser: Any) -> None:
    page = _open(browser, served).page
    claimed = len(review.list_items(served.engine, state="claimed", limit=N))
    page.keyboard.press("?")
    help_box = page.locator("#help")
    help_box.wait_for(state="visible")
    text = help_box.inner_text()
    for key, words in (("n", "claim the next item"), ("p", "passing label"), ("f", "failing label"),
                       ("s", "skip"), ("q", "queue"), ("?", "this help")):  # fmt: skip
        assert words in text, (key, text)
    assert page.evaluate("document.activeElement.id") == "help-close"
    page.keyboard.press("n")  # the help is modal: keys do not act behind it
    page.keyboard.press("Escape")
    help_box.wait_for(state="hidden")
    assert len(review.list_items(served.engine, state="claimed", limit=N)) == claimed
    # q hides the queue and gives the item the width; q brings it back
    page.keyboard.press("q")
    page.locator("#queue").wait_for(state="hidden")
    assert page.locator("#toggle-queue").get_attribute("aria-expanded") == "false"
    page.keyboard.press("q")
    page.locator("#queue").wait_for(state="visible")


def test_nothing_to_claim_is_said(served: Served, browser: Any) -> None:
    page = _open(browser, served).page
    page.locator("#f-rubric").fill("no_such_rubric")
    page.locator("#f-rubric").press("Enter")
    page.locator("#queue-status").filter(has_text="No items match.").wait_for()
    page.locator("#items .row").first.wait_for(state="detached")
    page.keyboard.press("Escape")  # leave the field: keys do not act while typing
    page.keyboard.press("n")
    page.locator("#message").filter(has_text="Nothing to claim: the queue is empty for these filters.").wait_for()
    _in_view(page, "#message")
    assert page.locator("#item").is_hidden()


def _luminance(rgb: tuple[float, ...]) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: tuple[float, ...], bg: tuple[float, ...]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours."""
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _hex(value: str) -> tuple[int, int, int]:
    value = value.strip().lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def test_state_colours_in_the_style_sheet_meet_wcag_aa() -> None:
    css = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", CSS.read_text()))
    for state in ITEM_STATES:
        ratio = contrast(_hex(css[f"{state}-fg"]), _hex(css[f"{state}-bg"]))
        assert ratio >= 4.5, (state, css[f"{state}-fg"], css[f"{state}-bg"], round(ratio, 2))
    for fg in ("fg", "muted", "pass", "fail", "accent"):
        for bg in ("card", "bg", "current"):
            assert contrast(_hex(css[fg]), _hex(css[bg])) >= 4.5, (fg, bg)
    for bg in ("card", "bg", "current"):
        assert contrast(_hex(css["focus"]), _hex(css[bg])) >= 3.0  # a non-text indicator: 3:1


_TEXT_COLOURS = """() => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const bgOf = (e) => { for (let n = e; n; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor); if (c.length === 3 || c[3] > 0) return c.slice(0, 3); }
    return [255, 255, 255]; };
  const out = [];
  for (const e of document.querySelectorAll("body *")) {
    if (!e.getClientRects().length || e.closest("[hidden], dialog:not([open])") || e.disabled) continue;
    if (![...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    out.push([e.tagName + "." + e.className + "#" + e.id, rgb(getComputedStyle(e).color), bgOf(e)]);
  }
  return out; }"""


def test_the_page_text_meets_wcag_aa_contrast(served: Served, browser: Any) -> None:
    page = _open(browser, served).page
    page.keyboard.press("n")
    page.locator("#item").wait_for()
    page.keyboard.press("p")
    page.locator("#message").filter(has_text="Labelled").wait_for()
    page.keyboard.press("n")
    page.locator("#message").filter(has_text="Claimed").wait_for()
    page.keyboard.press("s")
    page.locator("#message").filter(has_text="Skipped").wait_for()
    page.locator("#f-state").select_option("")  # any state: claimed, labelled, skipped chips too
    page.locator("#apply").click()
    for state in ("pending", "labelled", "skipped"):
        page.locator(f"#items .chip.state-{state}").first.wait_for()
    measured = page.evaluate(_TEXT_COLOURS)
    assert len(measured) > 100
    low = [(name, fg, bg, round(contrast(tuple(fg), tuple(bg)), 2)) for name, fg, bg in measured
           if contrast(tuple(fg), tuple(bg)) < 4.5]  # fmt: skip
    assert low == []

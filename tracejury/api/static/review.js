// tracejury review page. Talks to /api/review/* with the token kept in sessionStorage;
// review-view.js renders. Trace content is untrusted: it only ever becomes text nodes.
//
// The queue (left, a page of 50 by keyset cursor) and the item in view (right). Keys, not while
// typing in a field (Esc leaves a field); `?` shows them:
//   n claim the next item · p / f pass / fail label · 1-9 the nth label · s skip · r rationale
//   q show or hide the queue · [ ] queue pages · ↑ ↓ Enter in the queue
// After a label the item stays in view (a relabel appends); n brings the next.
"use strict";

(() => {
  const TOKEN_KEY = "tracejury.review.token";
  const PAGE_SIZE = 50;
  const V = window.TracejuryReviewView;
  const $ = (id) => document.getElementById(id);
  const state = { me: null, item: null, cursors: [null], next: null, queueSeq: 0, busy: false };

  function say(text, bad = false) {
    const node = $("message");
    node.textContent = text;
    node.classList.toggle("bad", bad);
  }

  function sayQueue(text, bad = false) {
    const node = $("queue-status");
    node.textContent = text;
    node.classList.toggle("bad", bad);
  }

  // --- the API ---------------------------------------------------------------------------

  class ApiFailure extends Error {
    constructor(status, code, message) {
      super(message || `HTTP ${status}`);
      this.status = status;
      this.code = code || "error";
    }
  }

  /** JSON of a request, or ApiFailure; `withHeaders` also returns the response's headers. */
  async function api(method, path, body, withHeaders = false) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
    const init = { method, headers, credentials: "omit", cache: "no-store", redirect: "error" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const failure = new ApiFailure(response.status, data && data.code, data && data.message);
      if (response.status === 401 && state.me) logout(`Logged out: ${failure.message}`);
      throw failure;
    }
    return withHeaders ? { data, headers: response.headers } : data;
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
    const s = q.toString();
    return s ? `?${s}` : "";
  }

  // --- login -----------------------------------------------------------------------------

  function showLogin(error = "") {
    state.me = null;
    state.item = null;
    $("app").hidden = true;
    $("top-tools").hidden = true;
    $("who").textContent = "";
    $("login").hidden = false;
    $("login-error").textContent = error;
    $("token").value = "";
    $("token").focus();
  }

  function logout(why = "") {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(why);
  }

  async function start() {
    try {
      state.me = await api("GET", "/api/review/me");
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(e.status === 403 ? `This token may not review: ${e.message}` : `Login failed: ${e.message}`);
      return;
    }
    $("login").hidden = true;
    $("app").hidden = false;
    $("top-tools").hidden = false;
    $("who").textContent = `reviewing as ${state.me.reviewer} (${state.me.role})`;
    fillOptions($("f-state"), state.me.states);
    fillOptions($("f-reason"), state.me.reasons);
    if (!$("f-state").dataset.ready) {
      $("f-state").value = "pending";
      $("f-state").dataset.ready = "1";
    }
    $("claim").focus();
    await refreshQueue();
  }

  function fillOptions(select, values) {
    const keep = select.value;
    select.replaceChildren(V.el("option", null, "any"));
    select.firstChild.value = "";
    for (const v of values) {
      const option = V.el("option", null, v);
      option.value = v;
      select.append(option);
    }
    select.value = keep;
  }

  // --- the queue: one page at a time -----------------------------------------------------

  function filters() {
    return {
      state: $("f-state").value,
      rubric: $("f-rubric").value.trim(),
      reason: $("f-reason").value,
      segment: $("f-segment").value.trim(),
      release: $("f-release").value.trim(),
    };
  }

  /** Show the current page (the cursor on top of the stack); a newer refresh wins. */
  async function refreshQueue() {
    const seq = ++state.queueSeq;
    const after = state.cursors[state.cursors.length - 1];
    let page;
    try {
      page = await api("GET", `/api/review/items${query({ ...filters(), limit: String(PAGE_SIZE), after })}`, undefined, true);
    } catch (e) {
      if (seq === state.queueSeq) sayQueue(`Could not list items: ${e.message}`, true);
      return;
    }
    if (seq !== state.queueSeq) return;
    const items = page.data;
    state.next = page.headers.get("X-Next-Cursor");
    const list = $("items");
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.itemId : null;
    list.replaceChildren(...items.map((item) => V.queueRow(item, state.item && state.item.itemId === item.itemId)));
    const rows = [...list.querySelectorAll(".row")];
    const keep = rows.find((r) => r.dataset.itemId === focused) || rows.find((r) => r.classList.contains("current")) || rows[0];
    if (keep) keep.tabIndex = 0;
    if (keep && focused && keep.dataset.itemId === focused) keep.focus();
    const rubrics = $("rubric-list");
    rubrics.replaceChildren(...[...new Set(items.map((i) => i.rubric))].sort().map((r) => {
      const option = V.el("option");
      option.value = r;
      return option;
    }));
    const first = (state.cursors.length - 1) * PAGE_SIZE;
    $("page-info").textContent = items.length ? `${first + 1}–${first + items.length}${state.next ? "" : " (end)"}` : "";
    $("page-prev").disabled = state.cursors.length === 1;
    $("page-next").disabled = !state.next;
    sayQueue(items.length ? `${items.length} item(s) on this page${state.next ? ", more follow" : ""}` : "No items match.");
  }

  function page(step) {
    if (step > 0 && state.next) state.cursors.push(state.next);
    else if (step < 0 && state.cursors.length > 1) state.cursors.pop();
    else return;
    refreshQueue();
  }

  function firstPage() {
    state.cursors = [null];
    refreshQueue();
  }

  /** Arrow keys move the focus along the queue rows (one tab stop for the whole list). */
  function moveInQueue(ev) {
    const rows = [...$("items").querySelectorAll(".row")];
    const at = rows.indexOf(document.activeElement);
    if (at < 0) return;
    const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: rows.length - 1 }[ev.key];
    if (to === undefined || to < 0 || to >= rows.length) return;
    ev.preventDefault();
    rows[at].tabIndex = -1;
    rows[to].tabIndex = 0;
    rows[to].focus();
  }

  // --- one item --------------------------------------------------------------------------

  async function claimNext() {
    if (state.busy) return;
    state.busy = true;
    const f = filters();
    const body = { detail: true };
    for (const k of ["rubric", "reason", "segment"]) if (f[k]) body[k] = f[k];
    try {
      const claimed = await api("POST", "/api/review/next", body);
      show(claimed);
      say(`Claimed #${claimed.itemId} until ${claimed.leaseExpiresAt}.`);
    } catch (e) {
      if (e.code === "queue_empty") say("Nothing to claim: the queue is empty for these filters.");
      else say(`Could not claim: ${e.message}`, true);
    } finally {
      state.busy = false;
    }
    refreshQueue();
  }

  /** Fetch and show an item (opening is not claiming). */
  async function openItem(itemId) {
    let item;
    try {
      item = await api("GET", `/api/review/items/${encodeURIComponent(itemId)}`);
    } catch (e) {
      say(`Could not open #${itemId}: ${e.message}`, true);
      return false;
    }
    show(item);
    say("");
    return true;
  }

  /** Put an item's detail in view and mark its queue row. */
  function show(item) {
    state.item = item;
    V.renderItem(item);
    for (const row of $("items").querySelectorAll(".row")) {
      row.classList.toggle("current", row.dataset.itemId === String(item.itemId));
    }
  }

  async function label(value) {
    const item = state.item;
    if (!item) return say("Claim an item first (n).", true);
    if (!value) return say("This rubric has no such label.", true);
    if (state.busy) return;
    state.busy = true;
    const body = { label: value };
    const rationale = $("rationale").value.trim();
    if (rationale) body.rationale = rationale;
    try {
      const stored = await api("POST", `/api/review/items/${item.itemId}/label`, body);
      $("rationale").value = "";
      if (state.item === item) {
        item.labels = [...(item.labels || []), stored];
        Object.assign(item, { state: "labelled", claimedBy: null, leaseExpiresAt: null });
        V.renderHead(item);
        V.renderLabels(item);
        $("label-select").value = stored.label;
      }
      say(`Labelled #${stored.itemId} as ${stored.label} (${stored.passed ? "passes" : "fails"}). Press n for the next.`);
    } catch (e) {
      say(`Could not label #${item.itemId}: ${e.message}`, true);
    } finally {
      state.busy = false;
    }
    refreshQueue();
  }

  async function skip() {
    const item = state.item;
    if (!item) return say("Claim an item first (n).", true);
    try {
      const skipped = await api("POST", `/api/review/items/${item.itemId}/skip`, {});
      if (state.item === item) {
        Object.assign(item, skipped);
        V.renderHead(item);
      }
      say(`Skipped #${item.itemId}. Press n for the next.`);
    } catch (e) {
      say(`Could not skip #${item.itemId}: ${e.message}`, true);
    }
    refreshQueue();
  }

  function toggleQueue() {
    const hidden = $("app").classList.toggle("queue-hidden");
    $("toggle-queue").setAttribute("aria-expanded", String(!hidden));
    if (!hidden) (($("items").querySelector('.row[tabindex="0"]')) || $("f-state")).focus();
  }

  function showHelp() {
    if (!$("help").open) $("help").showModal();
    $("help-close").focus();
  }

  // --- wiring ----------------------------------------------------------------------------

  function typing(target) {
    return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
  }

  document.addEventListener("keydown", (ev) => {
    if (!state.me || ev.ctrlKey || ev.metaKey || ev.altKey || $("help").open) return;
    if (typing(ev.target)) {
      if (ev.key === "Escape") ev.target.blur();
      return;
    }
    if (ev.target instanceof HTMLElement && ev.target.classList.contains("row")) moveInQueue(ev);
    if (ev.defaultPrevented) return;
    const scale = state.item && state.item.scale;
    const actions = {
      n: claimNext,
      p: () => label(scale && V.passLabel(scale)),
      f: () => label(scale && V.failLabel(scale)),
      s: skip,
      q: toggleQueue,
      r: () => state.item && $("rationale").focus(),
      "?": showHelp,
      "[": () => page(-1),
      "]": () => page(1),
    };
    let action = actions[ev.key];
    if (!action && /^[1-9]$/.test(ev.key) && scale) action = () => label(scale.labels[Number(ev.key) - 1]);
    if (action) {
      ev.preventDefault();
      action();
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = $("token").value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token").value = "";
      start();
    });
    $("logout").addEventListener("click", () => logout());
    $("filters").addEventListener("submit", (ev) => {
      ev.preventDefault();
      firstPage();
    });
    $("items").addEventListener("click", (ev) => {
      const row = ev.target instanceof Element ? ev.target.closest(".row") : null;
      if (row) openItem(Number(row.dataset.itemId));
    });
    $("page-prev").addEventListener("click", () => page(-1));
    $("page-next").addEventListener("click", () => page(1));
    $("claim").addEventListener("click", claimNext);
    $("btn-next").addEventListener("click", claimNext);
    $("btn-skip").addEventListener("click", skip);
    $("btn-pass").addEventListener("click", () => state.item && label(V.passLabel(state.item.scale)));
    $("btn-fail").addEventListener("click", () => state.item && label(V.failLabel(state.item.scale)));
    $("toggle-queue").addEventListener("click", toggleQueue);
    $("help-button").addEventListener("click", showHelp);
    $("help-close").addEventListener("click", () => $("help").close());
    $("label-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      label($("label-select").value);
    });
    if (sessionStorage.getItem(TOKEN_KEY)) start();
    else showLogin();
  });
})();

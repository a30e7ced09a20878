// tracejury review page. Talks to /api/review/* with the token kept in sessionStorage.
//
// Trace content is untrusted: every value reaches the page as a text node (textContent or
// document.createTextNode), never as HTML. The page is served with a strict
// Content-Security-Policy (no inline code, same-origin only), so this file is its only script.
//
// Shortcuts (not while typing in a field; Esc leaves a field):
//   n  claim the next item (with the queue's rubric, reason and segment filters)
//   p  label with the rubric's lowest passing label    (binary: pass)
//   f  label with the rubric's highest failing label   (binary: fail)
//   s  skip the item
//   Enter in the label form saves the label chosen in the select.
"use strict";

(() => {
  const TOKEN_KEY = "tracejury.review.token";
  const $ = (id) => document.getElementById(id);
  const state = { me: null, item: null };

  // --- DOM helpers: text only ------------------------------------------------------------

  /** An element with text children (strings become text nodes) and a class. */
  function el(tag, cls, ...children) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** A value as display text: JSON for objects, "—" for nothing. */
  function show(value) {
    if (value === null || value === undefined || value === "") return "—";
    if (typeof value === "object") return JSON.stringify(value, null, 2);
    return String(value);
  }

  /** Fill a <dl> with [term, value] pairs (a value may be a Node). */
  function fillMeta(dl, pairs) {
    dl.replaceChildren();
    for (const [term, value] of pairs) {
      dl.append(el("dt", null, term), el("dd", null, value instanceof Node ? value : show(value)));
    }
  }

  function verdict(passed, text) {
    const cls = passed === true ? "pass" : passed === false ? "fail" : null;
    return el("span", cls, show(text));
  }

  function reasons(list) {
    const span = el("span");
    for (const r of list || []) span.append(el("span", "reason", r));
    return span;
  }

  function emptyNote(list, text) {
    list.replaceChildren(el("li", "empty", text));
  }

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

  async function api(method, path, body) {
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
    return data;
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
    $("logout").hidden = true;
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
    $("logout").hidden = false;
    $("who").textContent = `reviewing as ${state.me.reviewer} (${state.me.role})`;
    fillOptions($("f-state"), state.me.states);
    fillOptions($("f-reason"), state.me.reasons);
    if (!$("f-state").dataset.ready) {
      $("f-state").value = "pending";
      $("f-state").dataset.ready = "1";
    }
    await refreshQueue();
  }

  function fillOptions(select, values) {
    const keep = select.value;
    select.replaceChildren(el("option", null, "any"));
    select.firstChild.value = "";
    for (const v of values) {
      const option = el("option", null, v);
      option.value = v;
      select.append(option);
    }
    select.value = keep;
  }

  // --- the queue -------------------------------------------------------------------------

  function filters() {
    return {
      state: $("f-state").value,
      rubric: $("f-rubric").value.trim(),
      reason: $("f-reason").value,
      segment: $("f-segment").value.trim(),
      release: $("f-release").value.trim(),
    };
  }

  async function refreshQueue() {
    let items;
    try {
      items = await api("GET", `/api/review/items${query({ ...filters(), limit: "200" })}`);
    } catch (e) {
      sayQueue(`Could not list items: ${e.message}`, true);
      return;
    }
    const body = $("items-body");
    body.replaceChildren();
    const rubrics = new Set();
    for (const item of items) {
      rubrics.add(item.rubric);
      const row = el(
        "tr", state.item && state.item.itemId === item.itemId ? "current" : null,
        el("td", null, `#${item.itemId}`),
        el("td", null, show(item.priority)),
        el("td", "wrap", `${item.rubric} v${item.rubricVersion}`),
        el("td", null, reasons(item.reasons)),
        el("td", "wrap", show(item.segment)),
        el("td", "wrap", show(item.release)),
        el("td", null, show(item.state)),
        el("td", null, show(item.claimedBy)),
      );
      row.dataset.itemId = String(item.itemId);
      row.tabIndex = 0;
      row.addEventListener("click", () => openItem(item.itemId));
      row.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter") openItem(item.itemId);
      });
      body.append(row);
    }
    const list = $("rubric-list");
    list.replaceChildren();
    for (const r of [...rubrics].sort()) {
      const option = el("option");
      option.value = r;
      list.append(option);
    }
    sayQueue(items.length ? `${items.length} item(s)${items.length === 200 ? " (first 200)" : ""}` : "No items match.");
  }

  async function claimNext() {
    const f = filters();
    const body = {};
    for (const k of ["rubric", "reason", "segment"]) if (f[k]) body[k] = f[k];
    try {
      const claimed = await api("POST", "/api/review/next", body);
      await openItem(claimed.itemId);
      say(`Claimed #${claimed.itemId} until ${claimed.leaseExpiresAt}.`);
    } catch (e) {
      if (e.code === "queue_empty") {
        sayQueue("Nothing to claim: the queue is empty for these filters.");
        say("Nothing to claim: the queue is empty for these filters.");
      } else {
        say(`Could not claim: ${e.message}`, true);
      }
    }
    await refreshQueue();
  }

  // --- one item --------------------------------------------------------------------------

  async function openItem(itemId) {
    let item;
    try {
      item = await api("GET", `/api/review/items/${encodeURIComponent(itemId)}`);
    } catch (e) {
      say(`Could not open #${itemId}: ${e.message}`, true);
      return;
    }
    state.item = item;
    renderItem(item);
    for (const row of $("items-body").children) {
      row.classList.toggle("current", row.dataset.itemId === String(item.itemId));
    }
  }

  function passLabel(scale) {
    return scale.passing[0];
  }

  function failLabel(scale) {
    const failing = scale.labels.filter((l) => !scale.passing.includes(l));
    return failing[failing.length - 1];
  }

  function renderItem(item) {
    $("trace").hidden = false;
    say("");
    $("trace-title").textContent = `#${item.itemId} · ${item.rubric} v${item.rubricVersion} · trace ${item.traceId}`;
    const lease = item.leaseExpiresAt ? ` until ${item.leaseExpiresAt}` : "";
    fillMeta($("item-meta"), [
      ["state", item.state],
      ["claimed by", item.claimedBy ? `${item.claimedBy}${lease}` : null],
      ["release", item.release],
      ["segment", item.segment],
    ]);

    const view = item.view || {};
    $("input-text").textContent = show(view.inputText);
    $("final-answer").textContent = show(view.finalAnswer);
    const retrieval = view.retrieval;
    fillMeta($("flags"), [
      ["truncated", view.truncated],
      ["format valid", view.formatValid],
      ["tool required", view.toolRequired],
      ["intent", view.intent],
      ["retrieval", retrieval ? `${retrieval.empty ? "empty" : `${retrieval.docIds.length} doc(s)`}; used in answer: ${show(retrieval.usedInFinalAnswer)}` : "none"],
      ["guardrails", guardrails(view.guardrails)],
      ["latency ms", view.latencyMs],
      ["timestamp", view.timestamp],
    ]);

    const chunks = $("chunks");
    chunks.replaceChildren();
    for (const c of view.retrievedChunks || []) {
      chunks.append(el("li", null, el("div", "title", show(c.docId)), el("pre", "text", show(c.text))));
    }
    if (!chunks.children.length) emptyNote(chunks, "no retrieved chunks stored");

    const tools = $("tools");
    tools.replaceChildren();
    for (const t of view.toolCalls || []) {
      tools.append(el("li", null,
        el("div", "title", `${show(t.toolName)} · ${show(t.status)} · ${show(t.latencyMs)} ms`),
        el("pre", "text", t.snapshot === null || t.snapshot === undefined ? "no snapshot stored" : show(t.snapshot))));
    }
    if (!tools.children.length) emptyNote(tools, "no tool calls");

    fillMeta($("escalation"), [
      ["reasons", reasons(item.reasons)],
      ["priority", item.priority],
      ["evaluations", (item.evaluationIds || []).join(", ")],
      ["batch", item.batchId],
      ["escalated at", item.createdAt],
    ]);

    const judge = item.judge || {};
    fillMeta($("judge"), [
      ["evaluator", judge.evaluator ? `${judge.evaluator} v${judge.evaluatorVersion}` : null],
      ["status", judge.status],
      ["label", verdict(judge.passed, judge.label)],
      ["confidence", judge.confidence],
      ["rationale", judge.rationale],
      ["samples", (judge.sampleLabels || []).join(", ")],
      ["failure", judge.failureKind ? `${judge.failureKind}: ${show(judge.error)}` : null],
      ["model", judge.judgeModel],
    ]);

    const checkers = $("checkers");
    checkers.replaceChildren();
    for (const c of item.checkers || []) {
      checkers.append(el("li", null,
        el("div", "title", `${c.evaluator} v${c.evaluatorVersion}`),
        el("div", null, verdict(c.passed, c.label), ` · ${show(c.status)}`),
        el("div", null, show(c.rationale))));
    }
    if (!checkers.children.length) emptyNote(checkers, "none");

    const history = $("history");
    history.replaceChildren();
    for (const l of item.labels || []) {
      history.append(el("li", null,
        el("div", "title", `${l.reviewer} · ${l.createdAt}`),
        el("div", null, verdict(l.passed, l.label)),
        l.rationale ? el("div", null, l.rationale) : null));
    }
    if (!history.children.length) emptyNote(history, "no human label yet");

    $("raw-trace").textContent = JSON.stringify(item.trace, null, 2);

    const select = $("label-select");
    select.replaceChildren();
    for (const label of item.scale.labels) {
      const option = el("option", null, `${label}${item.scale.passing.includes(label) ? " (passes)" : ""}`);
      option.value = label;
      select.append(option);
    }
    const last = (item.labels || [])[item.labels.length - 1];
    select.value = last ? last.label : passLabel(item.scale) || item.scale.labels[0];
    $("btn-pass").textContent = "";
    $("btn-pass").append(`Pass: ${show(passLabel(item.scale))} `, el("kbd", null, "p"));
    $("btn-fail").textContent = "";
    $("btn-fail").append(`Fail: ${show(failLabel(item.scale))} `, el("kbd", null, "f"));
  }

  function guardrails(list) {
    if (!list || !list.length) return "none";
    return list.map((g) => `${show(g.ruleId)}: ${show(g.decision)}${g.reasonCode ? ` (${g.reasonCode})` : ""}`).join("; ");
  }

  async function label(value) {
    const item = state.item;
    if (!item) return say("Open or claim an item first (n).", true);
    if (!value) return say("This rubric has no such label.", true);
    const body = { label: value };
    const rationale = $("rationale").value.trim();
    if (rationale) body.rationale = rationale;
    try {
      const stored = await api("POST", `/api/review/items/${item.itemId}/label`, body);
      $("rationale").value = "";
      await openItem(item.itemId);
      say(`Labelled #${stored.itemId} as ${stored.label} (${stored.passed ? "passes" : "fails"}). Press n for the next.`);
    } catch (e) {
      say(`Could not label #${item.itemId}: ${e.message}`, true);
    }
    await refreshQueue();
  }

  async function skip() {
    const item = state.item;
    if (!item) return say("Open or claim an item first (n).", true);
    try {
      await api("POST", `/api/review/items/${item.itemId}/skip`, {});
      await openItem(item.itemId);
      say(`Skipped #${item.itemId}. Press n for the next.`);
    } catch (e) {
      say(`Could not skip #${item.itemId}: ${e.message}`, true);
    }
    await refreshQueue();
  }

  // --- wiring ----------------------------------------------------------------------------

  function typing(target) {
    return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
  }

  document.addEventListener("keydown", (ev) => {
    if (!state.me || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (typing(ev.target)) {
      if (ev.key === "Escape") ev.target.blur();
      return;
    }
    const scale = state.item && state.item.scale;
    const actions = {
      n: claimNext,
      p: () => label(scale && passLabel(scale)),
      f: () => label(scale && failLabel(scale)),
      s: skip,
    };
    const action = actions[ev.key];
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
      refreshQueue();
    });
    $("claim").addEventListener("click", claimNext);
    $("btn-next").addEventListener("click", claimNext);
    $("btn-skip").addEventListener("click", skip);
    $("btn-pass").addEventListener("click", () => state.item && label(passLabel(state.item.scale)));
    $("btn-fail").addEventListener("click", () => state.item && label(failLabel(state.item.scale)));
    $("label-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      label($("label-select").value);
    });
    if (sessionStorage.getItem(TOKEN_KEY)) start();
    else showLogin();
  });
})();

// tracejury review page: rendering only (review.js talks to the API and handles keys).
//
// Trace content is untrusted: every value reaches the page as a text node (textContent or
// document.createTextNode), never as HTML. The page's Content-Security-Policy allows no inline
// code, so this file and review.js are its only scripts.
"use strict";

window.TracejuryReviewView = (() => {
  const $ = (id) => document.getElementById(id);
  const CHIP_VALUE_MAX = 18;
  /** Segment values longer than this are elided in a chip; the chip's title holds the whole. */

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
    return el("span", passed === true ? "pass" : passed === false ? "fail" : null, show(text));
  }

  /** A chip whose text is elided past `max` characters of its value; the title has it all. */
  function chip(cls, text, full = text) {
    const node = el("span", `chip ${cls}`, text);
    if (full !== text || text.length > CHIP_VALUE_MAX) node.title = full;
    return node;
  }

  function stateChip(state) {
    return chip(`state-${state}`, state);
  }

  function reasonChips(list) {
    return (list || []).map((r) => chip("reason", r));
  }

  /** `model=…|rag=on|…` as one chip per dimension=value. */
  function segmentChips(segment) {
    if (!segment) return [];
    return segment.split("|").map((part) => {
      const at = part.indexOf("=");
      const dim = at < 0 ? part : part.slice(0, at);
      const value = at < 0 ? "" : part.slice(at + 1);
      const short = value.length > CHIP_VALUE_MAX ? `${value.slice(0, CHIP_VALUE_MAX - 1)}…` : value;
      return chip("segment", at < 0 ? part : `${dim}=${short}`, part);
    });
  }

  function emptyNote(list, text) {
    list.replaceChildren(el("li", "empty", text));
  }

  /** One queue row: a button (Enter or click opens the item). */
  function queueRow(item, current) {
    const row = el("button", `row${current ? " current" : ""}`,
      el("span", "line", el("span", "id", `#${item.itemId}`), stateChip(item.state),
        el("span", "sub", `${item.rubric} v${item.rubricVersion} · priority ${show(item.priority)}`)),
      el("span", "line", ...reasonChips(item.reasons)),
      el("span", "line segs", ...segmentChips(item.segment)),
      item.claimedBy ? el("span", "line sub", `claimed by ${item.claimedBy}`) : null);
    row.type = "button";
    row.tabIndex = -1;
    row.dataset.itemId = String(item.itemId);
    return el("li", null, row);
  }

  function passLabel(scale) {
    return scale.passing[0];
  }

  function failLabel(scale) {
    const failing = scale.labels.filter((l) => !scale.passing.includes(l));
    return failing[failing.length - 1];
  }

  function guardrails(list) {
    if (!list || !list.length) return "none";
    return list.map((g) => `${show(g.ruleId)}: ${show(g.decision)}${g.reasonCode ? ` (${g.reasonCode})` : ""}`).join("; ");
  }

  /** The item's head: title and chips (state, claim, reasons, release, segment). */
  function renderHead(item) {
    $("trace-title").textContent = `#${item.itemId} · ${item.rubric} v${item.rubricVersion} · trace ${item.traceId}`;
    const lease = item.leaseExpiresAt ? ` until ${item.leaseExpiresAt.slice(11, 19)}` : "";
    $("item-chips").replaceChildren(stateChip(item.state),
      item.claimedBy ? chip("claim", `${item.claimedBy}${lease}`, `claimed by ${item.claimedBy}${lease}`) : "",
      ...reasonChips(item.reasons), chip("release", `release ${show(item.release)}`), ...segmentChips(item.segment));
  }

  function renderEvidence(view) {
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
  }

  function renderJudgement(item) {
    const question = item.question || {};
    $("question").textContent = show(question.description);
    $("prompt").textContent = show(question.prompt);
    $("prompt-box").hidden = !question.prompt;
    fillMeta($("rubric-meta"), [
      ["labels", item.scale.labels.map((l, i) => `${i + 1}: ${l}${item.scale.passing.includes(l) ? " (passes)" : ""}`).join(", ")],
    ]);
    const judge = item.judge || {};
    fillMeta($("judge"), [
      ["verdict", verdict(judge.passed, judge.label)],
      ["confidence", judge.confidence],
      ["rationale", judge.rationale],
      ["samples", (judge.sampleLabels || []).join(", ")],
      ["status", judge.failureKind ? `${judge.status}: ${judge.failureKind}: ${show(judge.error)}` : judge.status],
      ["evaluator", judge.evaluator ? `${judge.evaluator} v${judge.evaluatorVersion} · ${show(judge.judgeModel)}` : null],
    ]);
    fillMeta($("escalation"), [
      ["reasons", el("span", "chips", ...reasonChips(item.reasons))],
      ["priority", item.priority],
      ["batch", item.batchId],
      ["escalated", item.createdAt],
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
    $("raw-trace").textContent = JSON.stringify(item.trace, null, 2);
  }

  /** The label history (oldest first), and the select on the newest label. */
  function renderLabels(item) {
    const history = $("history");
    history.replaceChildren();
    for (const l of item.labels || []) {
      history.append(el("li", null,
        el("div", "title", `${l.reviewer} · ${l.createdAt}`),
        el("div", null, verdict(l.passed, l.label)),
        l.rationale ? el("div", null, l.rationale) : null));
    }
    if (!history.children.length) emptyNote(history, "no human label yet");
  }

  function renderForm(item) {
    const select = $("label-select");
    select.replaceChildren();
    for (const label of item.scale.labels) {
      const option = el("option", null, `${label}${item.scale.passing.includes(label) ? " (passes)" : ""}`);
      option.value = label;
      select.append(option);
    }
    const last = (item.labels || [])[item.labels.length - 1];
    select.value = last ? last.label : passLabel(item.scale) || item.scale.labels[0];
    $("btn-pass").replaceChildren(`Pass: ${show(passLabel(item.scale))} `, el("kbd", null, "p"));
    $("btn-fail").replaceChildren(`Fail: ${show(failLabel(item.scale))} `, el("kbd", null, "f"));
  }

  /** The whole item view; the boxes that scroll start at their top. */
  function renderItem(item) {
    $("placeholder").hidden = true;
    $("item").hidden = false;
    renderHead(item);
    renderEvidence(item.view || {});
    renderJudgement(item);
    renderLabels(item);
    renderForm(item);
    for (const box of document.querySelectorAll("#item .text, #item .pane")) box.scrollTop = 0;
  }

  return { el, show, queueRow, passLabel, failLabel, renderItem, renderHead, renderLabels };
})();

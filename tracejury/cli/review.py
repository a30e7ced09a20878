"""Commands on human review: list, next, show, label, skip, agreement, plan.

Trace text is untrusted: it is printed as plain text (no Rich markup) with control characters
replaced, so a trace cannot restyle or rewrite the terminal.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from tracejury.cli.app import _catalog, _dims, _engine, _print_json, _settings, app, err, out

review_app = typer.Typer(help="Human review: the queue of escalated judgments, labels, agreement.",
                         no_args_is_help=True)  # fmt: skip
app.add_typer(review_app, name="review")

NOTHING_PENDING = 4
"""Exit code of ``review next`` when no item is claimable."""

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

Reviewer = Annotated[str, typer.Option(help="Your reviewer name (recorded with claims and labels).")]
RubricOpt = Annotated[str | None, typer.Option(help="Only this rubric id.")]
ReasonOpt = Annotated[str | None, typer.Option(help="Only items escalated for this reason.")]
SegmentOpt = Annotated[str | None, typer.Option(help="Only these segment values, e.g. rag=on|tool=none.")]


def _plain(text: object) -> str:
    """Untrusted text as one safe string: control characters (escape sequences) replaced."""
    return _CONTROL.sub("?", str(text))


def _cell(text: object) -> Text:
    """A table cell that shows untrusted text literally (no markup)."""
    return Text(_plain(text))


def _write(line: str = "") -> None:
    sys.stdout.write(line + "\n")


@review_app.command("list")
def review_list(
    state: Annotated[str | None, typer.Option(help="pending, claimed, labelled or skipped.")] = None,
    rubric: RubricOpt = None,
    reason: ReasonOpt = None,
    segment: SegmentOpt = None,
    release: Annotated[str | None, typer.Option(help="Only this release.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many items.", min=1)] = 50,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Review items in queue order (highest priority first)."""
    from tracejury.store.review import list_items

    items = list_items(_engine(_settings()), state=state, rubric=rubric, reason=reason, segment=segment,
                       release=release, limit=limit)  # fmt: skip
    if json:
        _print_json(items)
        return
    table = Table("item", "rubric", "trace", "reasons", "priority", "state", "claimed by", "segment")
    for i in items:
        table.add_row(str(i["itemId"]), i["rubric"], _cell(i["traceId"]), ", ".join(i["reasons"]),
                      str(i["priority"]), i["state"], _cell(i["claimedBy"] or "-"), _cell(i["segment"]))  # fmt: skip
    out.print(table)


def _show(detail: dict[str, Any]) -> None:
    """An item as plain text, for a reviewer at a terminal."""
    view, judge = detail["view"], detail["judge"] or {}
    _write(
        f"item {detail['itemId']}  {detail['rubric']} v{_plain(detail['rubricVersion'])}"
        f"  trace {_plain(detail['traceId'])}"
    )
    _write(f"why: {', '.join(detail['reasons'])} (priority {detail['priority']})  segment: {_plain(detail['segment'])}")
    if detail["leaseExpiresAt"]:
        _write(f"claimed by {_plain(detail['claimedBy'])} until {detail['leaseExpiresAt']}")
    if judge.get("status") == "scored":
        samples = f"  samples: {','.join(judge['sampleLabels'])}" if judge["sampleLabels"] else ""
        _write(f"judge: {_plain(judge['label'])} (confidence {judge['confidence']}){_plain(samples)}")
        _write(f"  {_plain(judge['rationale'])}")
    elif judge:
        _write(f"judge: {judge['status']} ({judge['failureKind']}): {_plain(judge['error'])}")
    for c in detail["checkers"]:
        _write(f"checker {c['evaluator']}: {_plain(c['label'])}: {_plain(c['rationale'])}")
    _write(f"input: {_plain(view['inputText'])}")
    _write(f"answer: {_plain(view['finalAnswer'])}")
    for chunk in view["retrievedChunks"]:
        _write(f"chunk {_plain(chunk['docId'])}: {_plain(chunk['text'])}")
    for call in view["toolCalls"]:
        _write(f"tool {_plain(call['toolName'])} ({call['status']}): {_plain(call['snapshot'])}")
    guards = ", ".join(f"{_plain(g['ruleId'])}={g['decision']}" for g in view["guardrails"]) or "-"
    _write(f"truncated: {view['truncated']}  guardrails: {guards}")
    for label in detail["labels"]:
        note = f": {_plain(label['rationale'])}" if label["rationale"] else ""
        _write(f"label by {_plain(label['reviewer'])} at {label['createdAt']}: {_plain(label['label'])}{note}")
    _write(f"labels: {', '.join(detail['scale']['labels'])} (passing: {', '.join(detail['scale']['passing'])})")


@review_app.command("next")
def review_next(
    reviewer: Reviewer,
    rubric: RubricOpt = None,
    reason: ReasonOpt = None,
    segment: SegmentOpt = None,
    lease: Annotated[float, typer.Option(help="Seconds the claim lasts before the item returns.", min=1)] = 600,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Claim the highest-priority pending item and show it; exit 4 when nothing is pending."""
    from tracejury.store.review import claim_next, get_item

    engine = _engine(_settings())
    item = claim_next(engine, reviewer, lease_s=lease, rubric=rubric, reason=reason, segment=segment)
    if item is None:
        if not json:
            err.print("no review item pending")
        raise typer.Exit(NOTHING_PENDING)
    if json:
        _print_json({k: item[k] for k in ("itemId", "traceId", "rubric", "reasons", "leaseExpiresAt")})
        return
    _show(get_item(engine, item["itemId"]))
    _write(f"label it: tracejury review label {item['itemId']} --reviewer {reviewer} --label LABEL")


@review_app.command("show")
def review_show(
    item_id: Annotated[int, typer.Argument(help="Review item id.")],
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One item with its trace, the judge's verdict, why it was escalated, and its labels."""
    from tracejury.store.review import get_item

    detail = get_item(_engine(_settings()), item_id)
    if json:
        _print_json(detail)
    else:
        _show(detail)


@review_app.command("label")
def review_label(
    item_id: Annotated[int, typer.Argument(help="Review item id.")],
    reviewer: Reviewer,
    label: Annotated[str, typer.Option(help="One of the rubric's labels.")],
    rationale: Annotated[str | None, typer.Option(help="Why, in a sentence.")] = None,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Label an item you claimed (or relabel a labelled one): the label supersedes the judge's
    verdict in gates; the judge's verdict stays stored."""
    from tracejury.store.review import label_item

    stored = label_item(_engine(_settings()), item_id, reviewer, label, rationale)
    if json:
        _print_json(stored)
    else:
        verdict = "pass" if stored["passed"] else "fail"
        out.print(f"item {item_id}: {stored['label']} ({verdict}) by {reviewer}", markup=False)


@review_app.command("skip")
def review_skip(
    item_id: Annotated[int, typer.Argument(help="Review item id.")],
    reviewer: Reviewer,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Set aside an item you claimed (it leaves the queue; it can still be labelled)."""
    from tracejury.store.review import skip_item

    item = skip_item(_engine(_settings()), item_id, reviewer)
    if json:
        _print_json(item)
    else:
        out.print(f"item {item_id}: skipped by {reviewer}", markup=False)


@review_app.command("escalate")
def review_escalate(batch_id: Annotated[str, typer.Argument(help="Batch id.")]) -> None:
    """Run a batch's escalation again (idempotent: only items not yet enqueued are added) — for
    a batch whose end-of-batch escalation failed, or one that ended before escalation existed."""
    from tracejury.store.batches import batch_config, batch_progress
    from workers.review import escalate_again

    engine = _engine(_settings())
    progress = batch_progress(engine, batch_id)
    state = progress["batch"].state if progress else "unknown"
    n = escalate_again(engine, batch_id, state)
    esc = (batch_config(engine, batch_id) or {}).get("escalation") or {}
    left = f"; {esc['leftOutTotal']} left out by the review budget (batch status shows which)" if esc else ""
    out.print(f"batch {batch_id}: {n} review item(s) enqueued{left}", markup=False)


@review_app.command("agreement")
def review_agreement(
    rubric: RubricOpt = None,
    by: Annotated[str, typer.Option(help="Segment dimensions to group errors by (default: whole key).")] = "",
    window: Annotated[str | None, typer.Option(help="Audit agreement per time window of the judgments: day or week.")]
    = None,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Judge–human agreement per rubric version (confusion matrix, Cohen's kappa) and the
    judge's error rate by segment, from the newest human labels; on the audit items (a
    probability sample, 1/p-weighted) the judge's miss and false-alarm rates, per window."""
    from tracejury.core.agreement import agreement
    from tracejury.store.agreement import labelled_pairs

    if window not in (None, "day", "week"):
        err.print(f"error: --window: {window!r} is not day or week", markup=False)
        raise typer.Exit(2)
    settings = _settings()
    dims = _dims(by, settings)
    report = agreement(labelled_pairs(_engine(settings), rubric=rubric), dims, window)
    if json:
        _print_json(report)
        return
    if not report:
        out.print("no labelled review items" + (f" for rubric {rubric}" if rubric else ""), markup=False)
    for r in report:
        kappa = "-" if r["kappa"] is None else f"{r['kappa']:.3f}"
        agree = "-" if r["observedAgreement"] is None else f"{100 * r['observedAgreement']:.1f}%"
        out.print(f"[bold]{r['rubric']}[/bold] v{r['rubricVersion']}: {r['n']} labelled, agreement {agree},"
                  f" kappa {kappa}, verdict flips {r['verdictFlips']}, judge failed {r['judgeFailed']}")  # fmt: skip
        matrix = Table("judge \\ human", *r["labels"])
        for label, row in zip(r["labels"], r["matrix"], strict=True):
            matrix.add_row(_cell(label), *map(str, row))
        out.print(matrix)
        errors = Table("segment", "n", "disagree", "error rate", "verdict flips", "audit n", "audit error rate")
        for s in r["segments"]:
            rate = "-" if s["errorRate"] is None else f"{100 * s['errorRate']:.1f}%"
            audit = "-" if s["auditErrorRate"] is None else f"{100 * s['auditErrorRate']:.1f}%"
            counts = [str(s["n"]), str(s["disagree"]), rate, str(s["verdictFlips"]), str(s["auditN"]), audit]
            errors.add_row(_cell(s["segment"] or "(all)"), *counts)
        out.print(errors)
        audit = r.get("audit")
        if audit:
            out.print(f"audit (1/p-weighted, {audit['n']} labels): kappa {_num(audit['kappa'])},"
                      f" agreement {_pct(audit['observedAgreement'])}, judge misses {_pct(audit['failToPass'])}"
                      f" of failures, false alarms {_pct(audit['passToFail'])} of passes", markup=False)  # fmt: skip
            if audit.get("windows"):
                drift = Table("window", "audit n", "kappa", "agreement", "misses", "false alarms")
                for w in audit["windows"]:
                    drift.add_row(w["start"], str(w["n"]), _num(w["kappa"]), _pct(w["observedAgreement"]),
                                  _pct(w["failToPass"]), _pct(w["passToFail"]))  # fmt: skip
                out.print(drift)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


@review_app.command("plan")
def review_plan(
    rubric: Annotated[str, typer.Option(help="The judged rubric whose gates the audit calibrates.")],
    release: Annotated[str, typer.Option(help="A release scored with it (its newest done batch).")],
    width: Annotated[float, typer.Option(help="The 95% interval's full width wanted on the rate.")] = 0.04,
    disagreement: Annotated[float, typer.Option(
        help="Assumed share of traces where judge and people disagree, while no audit label exists.")] = 0.05,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """How many audit labels a calibrated gate needs for its interval to shrink to a width,
    and the audit rate to set in the rubric's escalation block."""
    from workers.planning import audit_plan

    settings = _settings()
    found = _catalog(settings).rubrics.get(rubric)
    if found is None:
        err.print(f"error: --rubric: no rubric {rubric!r} in {settings.rubrics_dir}", markup=False)
        raise typer.Exit(2)
    plan = audit_plan(_engine(settings), rubric, release, width=width, disagreement=disagreement,
                      audit_rate=found.escalation.audit_rate)  # fmt: skip
    if json:
        _print_json(plan)
        return
    out.print(f"{rubric} in {release} (batch {plan['batch']}): {plan['scored']} verdicts, judge rate"
              f" {_pct(plan['judgeRate'])}, {plan['labelled']} audit labels", markup=False)  # fmt: skip
    src = "measured on the audit labels" if plan["source"] == "labels" else f"assumed ({disagreement:.0%} disagreement)"
    out.print(f"label variance per audit item: {plan['residualVariance']:.4f} ({src})", markup=False)
    if plan["labelsNeeded"] is None:
        out.print(f"a width of {width:.1%} is out of reach: the judge's own sampling variance alone gives"
                  f" {plan['floorWidth']:.1%}; sample more traces", markup=False)  # fmt: skip
        raise typer.Exit(1)
    out.print(f"for a 95% interval {width:.1%} wide: {plan['labelsNeeded']} audit labels per batch like this one;"
              f" set escalation.audit_rate to {plan['auditRate']:.3f} (now {plan['currentAuditRate']})",
              markup=False)  # fmt: skip

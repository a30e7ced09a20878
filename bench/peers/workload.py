"""The peers bench's workload: N simulated traces with distinct evidence, and the same items
for the peers (bench/peers.py).

The simulator draws questions and answers from small templates, so many traces share their
evidence, and a verdict cache would answer them for free. Here every trace's question and
answer carry the item's number (``(ref Q00042)``, ``Ref A00042.``), so no two traces share an
evidence hash; ``write_workload`` checks it and returns the count.

Files written into the folder given:

* ``traces.jsonl`` — the traces, for ``tracejury ingest``;
* ``items.jsonl`` — per trace ``id``, ``question``, ``answer``, ``evidence`` (the evidence
  block tracejury's judge sees, ``judges.evidence.evidence_block``) and ``prompt`` (the
  answer-correctness rubric, question, answer and evidence block: the SDK loop's message);
* ``promptfoo-tests.yaml`` — the same items as promptfoo tests (vars ``answer``, ``rubric``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from judges.evidence import evidence_block, evidence_from_trace
from tracejury.core.simulate import simulate

__all__ = ["RUBRIC", "distinct", "write_workload"]

RUBRIC = (
    "Rubric: answer correctness.\n"
    "Decide whether the final answer is supported by the evidence: every fact it states must agree\n"
    "with the tool output (tool_calls[].snapshot) or the retrieved documents (retrieval.chunks).\n"
    "An answer that states facts the evidence contradicts, or facts with no support in the evidence,\n"
    'is "fail". Reply with JSON: {"label": "pass" | "fail", "rationale": "<one sentence>"}.'
)
"""The one judge prompt every peer grades an item with (tracejury runs its shipped rubrics)."""


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def distinct(trace: dict[str, Any], i: int) -> dict[str, Any]:
    """``trace`` with the item number in its question and answer (hashes updated)."""
    sample = trace["sample"]
    sample["inputText"] = f"{sample['inputText']} (ref Q{i:05d})"
    final = sample["finalAnswer"]
    try:
        parsed = json.loads(final)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("answer"), str):
        parsed["answer"] += f" Ref A{i:05d}."
        sample["finalAnswer"] = json.dumps(parsed)
    else:  # a refusal or a deliberately broken answer: keep it broken, make it distinct
        sample["finalAnswer"] = f"{final} Ref A{i:05d}."
    trace["req"]["inputTextHash"] = _sha(sample["inputText"])
    trace["outputs"]["finalAnswerHash"] = _sha(sample["finalAnswer"])
    return trace


def write_workload(folder: Path, n: int, release: str, seed: int = 7) -> int:
    """Write the three files for ``n`` traces of ``release``; the number of distinct evidence
    hashes (``n``, or a RuntimeError saying how many repeat)."""
    hashes = set()
    with (folder / "traces.jsonl").open("w") as traces, (folder / "items.jsonl").open("w") as items:
        tests = []
        for i, trace in enumerate(simulate(release, n, seed, sample_rate=1.0)):
            trace = distinct(trace, i)
            traces.write(json.dumps(trace) + "\n")
            ev = evidence_from_trace(trace)
            hashes.add(ev.hash)
            block = evidence_block(ev.as_data())
            question, answer = ev.input_text or "", ev.final_answer or ""
            prompt = f"{RUBRIC}\n\n[Question]: {question}\n[Answer]: {answer}\n\n{block}"
            item = {"id": trace["traceId"], "question": question, "answer": answer, "evidence": block,
                    "prompt": prompt}  # fmt: skip
            items.write(json.dumps(item) + "\n")
            tests.append({"vars": {"answer": answer, "rubric": f"{RUBRIC}\n\n[Question]: {question}\n\n{block}"}})
    # JSON is YAML: promptfoo reads it as its tests file
    (folder / "promptfoo-tests.yaml").write_text(json.dumps(tests))
    if len(hashes) != n:
        raise RuntimeError(f"workload: {n - len(hashes)} of {n} traces repeat another's evidence")
    return len(hashes)

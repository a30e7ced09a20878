"""`review show` prints untrusted trace text with control characters replaced: a trace id or
segment value sent by an ingest token must not drive a reviewer's terminal."""

from __future__ import annotations

import pytest

from tracejury.cli.review import _show
from tracejury.core.errors import InvalidInput
from tracejury.store.review import _check_reviewer

HOSTILE = "t\x1b]0;pwned\x07\x1b[2J\x9b31m"


def test_every_field_of_show_is_plain(capsys: pytest.CaptureFixture[str]) -> None:
    detail = {
        "itemId": 1, "rubric": "answer_correctness", "rubricVersion": HOSTILE, "traceId": HOSTILE,
        "reasons": ["audit"], "priority": 10, "segment": f"rag={HOSTILE}", "leaseExpiresAt": "2026-11-26T00:00:00Z",
        "claimedBy": HOSTILE,
        "judge": {"status": "scored", "label": HOSTILE, "confidence": 0.5, "sampleLabels": [HOSTILE], "rationale": HOSTILE},
        "checkers": [{"evaluator": "tool_grounding", "label": HOSTILE, "rationale": HOSTILE}],
        "view": {"inputText": HOSTILE, "finalAnswer": HOSTILE, "retrievedChunks": [{"docId": HOSTILE, "text": HOSTILE}],
                 "toolCalls": [{"toolName": HOSTILE, "status": "ok", "snapshot": HOSTILE}],
                 "guardrails": [{"ruleId": HOSTILE, "decision": "allow"}], "truncated": False},
        "labels": [{"reviewer": HOSTILE, "createdAt": "2026-11-26T00:00:00Z", "label": HOSTILE, "rationale": HOSTILE}],
        "scale": {"labels": ["pass", "fail"], "passing": ["pass"]},
    }  # fmt: skip
    _show(detail)
    printed = capsys.readouterr().out
    assert printed.count("t?]0;pwned??[2J?31m") >= 15
    assert not any(c in printed for c in ("\x1b", "\x07", "\x9b"))


@pytest.mark.parametrize("name", ["ana\x1b[2J", "bo\x9bb", "tab\there"])
def test_reviewer_names_refuse_control_characters(name: str) -> None:
    with pytest.raises(InvalidInput, match="control characters"):
        _check_reviewer(name)

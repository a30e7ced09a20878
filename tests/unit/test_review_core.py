"""Pure parts of human review: label scales, the reviewer's trace view, agreement and kappa."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from statsmodels.stats.inter_rater import cohens_kappa as sm_kappa

from judges.rubric import Rubric
from tracejury.core.agreement import agreement, cohens_kappa, confusion_matrix
from tracejury.core.errors import InvalidInput
from tracejury.core.review import LabelScale, trace_view

ROOT = Path(__file__).resolve().parents[2]


def test_label_scale_agrees_with_the_rubric_for_every_shipped_rubric() -> None:
    files = [p for p in (ROOT / "rubrics").rglob("*.yaml") if p.name != "profiles.yaml" and "gates" not in p.parts]
    assert len(files) > 5
    for path in files:
        rubric = Rubric.from_yaml(path.read_text(), file=str(path))
        scale = LabelScale.from_output(rubric.model_dump(mode="json")["output"])
        assert scale.labels == rubric.output.labels
        for label in rubric.output.labels:
            assert scale.passed(label) == rubric.output.passed(label), (rubric.id, label)


def test_label_scale_refuses_unknown_labels_in_one_line() -> None:
    scale = LabelScale.from_output({"type": "ordinal", "labels": ["1", "2", "3"], "pass_threshold": "2"})
    assert scale.as_dict() == {"labels": ["1", "2", "3"], "passing": ["2", "3"]}
    with pytest.raises(InvalidInput) as exc:
        scale.passed("4", where="--label")
    assert str(exc.value) == "--label: '4' is not a label of this rubric (allowed: 1, 2, 3)"
    assert LabelScale.from_output(None).as_dict() == {"labels": ["pass", "fail"], "passing": ["pass"]}


def test_trace_view_shows_the_evidence(example_trace: dict[str, Any]) -> None:
    view = trace_view(example_trace)
    assert view["inputText"].startswith("Where is my order 48213")
    assert view["finalAnswer"] == example_trace["sample"]["finalAnswer"]
    assert view["retrievedChunks"] == [
        {"docId": "doc:shipping-policy", "text": "Standard shipping takes 3-5 business days after dispatch."}
    ]
    (call,) = view["toolCalls"]
    assert call["toolName"] == "order_status" and call["snapshot"]["state"] == "out_for_delivery"
    assert view["truncated"] is False and view["guardrails"][0]["decision"] == "allow"
    del example_trace["sample"]
    bare = trace_view(example_trace)
    assert bare["finalAnswer"] is None and bare["toolCalls"][0]["snapshot"] is None


def test_kappa_by_hand() -> None:
    # judge rows, human columns: n = 50, p_o = 35/50 = 0.7; judge marginals 0.5/0.5, human 0.6/0.4
    # p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    pairs = [("pass", "pass")] * 20 + [("pass", "fail")] * 5 + [("fail", "pass")] * 10 + [("fail", "fail")] * 15
    matrix = confusion_matrix(pairs, ["pass", "fail"])
    assert matrix == [[20, 5], [10, 15]]
    assert cohens_kappa(matrix) == pytest.approx(0.4, abs=1e-12)
    assert cohens_kappa([[10, 0], [0, 10]]) == pytest.approx(1.0)
    assert cohens_kappa([[0, 0], [0, 0]]) is None
    assert cohens_kappa([[7, 0], [0, 0]]) is None  # one label only: chance agreement is 1


@pytest.mark.parametrize(
    "matrix",
    [
        [[20, 5], [10, 15]],
        [[3, 9], [11, 2]],
        [[12, 3, 1], [2, 9, 4], [0, 5, 14]],
        [[1, 2, 3, 4, 5], [0, 7, 1, 0, 2], [2, 1, 9, 3, 0], [0, 0, 2, 11, 4], [1, 0, 0, 3, 17]],
    ],
)
def test_kappa_matches_statsmodels(matrix: list[list[int]]) -> None:
    assert cohens_kappa(matrix) == pytest.approx(sm_kappa(np.array(matrix)).kappa, abs=1e-12)


def _row(judge: str | None, human: str, segment: str, reasons: list[str], status: str = "scored") -> dict:
    return {
        "rubric": "r", "rubricVersion": "1", "labels": ["pass", "fail"], "segment": segment, "reasons": reasons,
        "judgeStatus": status, "judgeLabel": judge, "judgePassed": None if judge is None else judge == "pass",
        "humanLabel": human, "humanPassed": human == "pass",
    }  # fmt: skip


def test_agreement_report_per_version_and_segment() -> None:
    rows = (
        [_row("pass", "pass", "rag=on|tool=none", ["low_confidence"])] * 6
        + [_row("pass", "fail", "rag=on|tool=none", ["low_confidence"])] * 2
        + [_row("fail", "fail", "rag=off|tool=none", ["audit"])] * 3
        + [_row("pass", "fail", "rag=off|tool=none", ["audit"])] * 1
        + [_row(None, "fail", "rag=off|tool=none", ["judge_failed"], status="judge_failed")] * 2
        + [{**_row("fail", "pass", "rag=on|tool=x", ["audit"]), "rubricVersion": "2"}]
    )
    v1, v2 = agreement(rows)
    assert (v1["rubricVersion"], v1["n"], v1["judgeFailed"]) == ("1", 12, 2)
    assert v1["matrix"] == [[6, 3], [0, 3]]
    assert v1["observedAgreement"] == pytest.approx(9 / 12)
    assert v1["kappa"] == pytest.approx(sm_kappa(np.array(v1["matrix"])).kappa)
    assert v1["verdictFlips"] == 3
    on, off = v1["segments"]  # worst error rate first
    assert (on["segment"], on["n"], on["disagree"], on["errorRate"]) == ("rag=on|tool=none", 8, 2, 0.25)
    assert (off["n"], off["disagree"], off["auditN"], off["auditErrorRate"]) == (4, 1, 4, 0.25)
    assert on["auditN"] == 0 and on["auditErrorRate"] is None
    assert (v2["n"], v2["matrix"], v2["kappa"]) == (1, [[0, 0], [1, 0]], 0.0)  # p_o = p_e = 0
    (grouped,) = [r for r in agreement(rows, by=["tool"]) if r["rubricVersion"] == "1"]
    assert [(s["segment"], s["n"]) for s in grouped["segments"]] == [("tool=none", 12)]

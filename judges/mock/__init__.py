"""The mock judge: an OpenAI-compatible server whose verdicts follow the evidence.

Pure parts (verdicts, bias flips, fault plans, response bodies) are importable without aiohttp
running; ``serve`` and ``start_mock_judge`` run the server.
"""

from __future__ import annotations

from judges.mock.bias import BIAS_KEYS, Bias, flip_draw
from judges.mock.dialects import DIALECTS, Dialect, check, is_reasoning_model
from judges.mock.faults import FAULT_KINDS, HANG_S, FaultKind, FaultPlan, faulty_reply, parse_faults
from judges.mock.replies import MOCK_MODEL, chat_completion, error_body, model_list
from judges.mock.server import (
    MockJudge,
    MockStats,
    build_app,
    running_mock_judge,
    serve,
    spawn_mock_judge,
    start_mock_judge,
)
from judges.mock.verdict import (
    CONFIDENCE,
    DEFAULT_LABELS,
    Assessment,
    Outcome,
    assess,
    choose_label,
    evidence_of,
    labels_of,
    reply_for,
    rubric_of,
    schema_of,
)

__all__ = [
    "BIAS_KEYS",
    "CONFIDENCE",
    "DEFAULT_LABELS",
    "DIALECTS",
    "FAULT_KINDS",
    "HANG_S",
    "MOCK_MODEL",
    "Assessment",
    "Bias",
    "Dialect",
    "FaultKind",
    "FaultPlan",
    "MockJudge",
    "MockStats",
    "Outcome",
    "assess",
    "build_app",
    "chat_completion",
    "check",
    "choose_label",
    "error_body",
    "evidence_of",
    "faulty_reply",
    "flip_draw",
    "is_reasoning_model",
    "labels_of",
    "model_list",
    "parse_faults",
    "reply_for",
    "rubric_of",
    "running_mock_judge",
    "schema_of",
    "serve",
    "spawn_mock_judge",
    "start_mock_judge",
]

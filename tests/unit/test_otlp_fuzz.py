"""Property: a valid OTLP request with one random value anywhere never crashes the mapping (only
``InputError`` for a body that is not OTLP), every span is accounted for — in a mapped trace
or in a report — and every mapped trace serialises for ingest."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.jsonpaths import json_paths
from tests.otlp_builder import RESOURCE, genai_trace, request
from tracejury.core.errors import InputError
from tracejury.core.otlp import map_export_request

BASE = request(genai_trace("0af7651916cd43dd8448eb211c80319c") + genai_trace("4bf92f3577b34da6a3ce929d0e0e4736"),
               RESOURCE)  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
any_values = st.one_of(
    st.builds(lambda v: {"stringValue": v}, st.text(max_size=30)),
    st.builds(lambda v: {"intValue": v}, st.integers(-(2**70), 2**70).map(str) | st.text(max_size=5)),
    st.builds(lambda v: {"doubleValue": v}, st.floats() | st.sampled_from(["NaN", "Infinity", "x"])),
    st.builds(lambda v: {"boolValue": v}, st.booleans()),
    st.builds(lambda v: {"arrayValue": {"values": [{"stringValue": x} for x in v]}}, st.lists(st.text(max_size=5))),
    json_values,
)


PATHS = json_paths(BASE)


def _spans_present(doc: dict[str, Any]) -> int:
    """Span objects in a request that ``map_export_request`` accepted (so its lists are lists)."""
    return sum(len(ss.get("spans") or []) for rs in doc.get("resourceSpans") or [] for ss in rs.get("scopeSpans") or [])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=any_values)
def test_one_random_value_anywhere(path: tuple[Any, ...], value: Any) -> None:
    doc = copy.deepcopy(BASE)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    try:
        result = map_export_request(doc)
    except InputError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(("$", "request"))
        return
    accounted = sum(o.spans for o in result.origins) + result.rejected_spans
    assert accounted == result.span_count == _spans_present(doc), (result.reports, result.origins)
    for trace in result.traces:
        orjson.dumps(trace)

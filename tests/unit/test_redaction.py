"""Redaction policy: each detector's true and false positives, placeholders, field rules."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from tracejury.core.errors import ConfigError
from tracejury.core.redaction import META_KEY, RedactionPolicy, Redactor, default_policy, iban_ok, load_policy, luhn_ok

EXAMPLE = json.loads((Path(__file__).parents[1] / "data" / "trace.v1.json").read_text())


def _text(text: str, redactor: Redactor | None = None) -> str:
    return (redactor or default_policy()).redact_text(text)


def _policy(**kw: Any) -> RedactionPolicy:
    return RedactionPolicy(version="t-1", **kw)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to alice.smith+tag@example.co.uk today", "write to [EMAIL_1] today"),
        ("card 4111 1111 1111 1111 ok", "card [CARD_1] ok"),
        ("card 4111-1111-1111-1111", "card [CARD_1]"),
        ("amex 378282246310005", "amex [CARD_1]"),
        ("call +1 415-555-2671 now", "call [PHONE_1] now"),
        ("call (212) 555-0199", "call [PHONE_1]"),
        ("ring +44 20 7946 0958", "ring [PHONE_1]"),
        ("pay to GB82 WEST 1234 5698 7654 32.", "pay to [IBAN_1]."),
        ("pay DE89370400440532013000", "pay [IBAN_1]"),
        ("from 192.168.0.1, ok", "from [IP_1], ok"),
        ("from 2001:db8::8a2e:370:7334 ok", "from [IP_1] ok"),
        ("key sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123", "key [SECRET_1]"),
        ("key sk-proj-abcdefghijklmnopqrstuvwxyz0123", "key [SECRET_1]"),
        ("AKIAIOSFODNN7EXAMPLE", "[SECRET_1]"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "[SECRET_1]"),
        ("token ghp_" + "a" * 36, "token [SECRET_1]"),
        ("xoxb-1234567890-abcdefghij", "[SECRET_1]"),
        ("AIza" + "B" * 35, "[SECRET_1]"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def", "Authorization: [SECRET_1]"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY----- tail", "[SECRET_1] tail"),
    ],
)
def test_detectors_find_what_they_should(text: str, expected: str) -> None:
    assert _text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "UPS tracking 1Z999AA10123456784 is on its way",  # tracking number: not a card
        "order 1234567812345678 shipped",  # 16 digits failing Luhn: an order id, not a card
        "card 4111 1111 1111 1112",  # a card number with a bad Luhn digit
        "IBAN GB82 WEST 1234 5698 7654 33",  # bad mod-97
        "released on 2024-01-15 at 12:30:45",  # a date and a time: not a phone, not an IPv6
        "version v1.2.3.4 and 1.2.3 and 999.1.1.1",  # versions and an impossible address
        "std::vector<int> and a::b",
        "order 48213, 3-5 business days, room 101",
        "sk-short and Bearer abc",  # too short to be keys
        "user@localhost and @handle",
        "sha256:2877515b5b5b03368d9edb1b1768352ccd937954b3e12158f470d7b60f061d02",
    ],
)
def test_detectors_leave_lookalikes_alone(text: str) -> None:
    assert _text(text) == text


def test_checks() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")


def test_a_custom_rule_redacts_what_the_checks_let_through() -> None:
    r = Redactor(_policy(custom=[{"name": "card_like", "pattern": r"\b(?:\d[ -]?){15}\d\b"}]))
    assert _text("card 4111 1111 1111 1112", r) == "card [CARD_LIKE_1]"


def test_same_value_same_placeholder_within_a_trace() -> None:
    doc = copy.deepcopy(EXAMPLE)
    doc["sample"] = {
        "inputText": "I am bob@example.com, cc ann@example.com",
        "finalAnswer": "Replied to BOB@example.com",
        "retrievedChunks": [{"docId": "d1", "text": "ann@example.com wrote"}],
    }
    out, counts = default_policy().redact_trace(doc)
    assert out["sample"]["inputText"] == "I am [EMAIL_1], cc [EMAIL_2]"
    assert out["sample"]["finalAnswer"] == "Replied to [EMAIL_1]"
    assert out["sample"]["retrievedChunks"] == [{"docId": "d1", "text": "[EMAIL_2] wrote"}]
    assert counts == {"email": 4}
    assert out[META_KEY] == {"policy": "default-1", "counts": {"email": 4}}
    other, _ = default_policy().redact_trace({**doc, "sample": {"inputText": "ann@example.com"}})
    assert other["sample"]["inputText"] == "[EMAIL_1]"  # numbering starts again in each trace


def test_ids_hashes_and_config_are_kept_and_the_input_is_not_changed() -> None:
    doc = copy.deepcopy(EXAMPLE)
    doc["traceId"] = "alice@example.com"  # an id stays an id, whatever it looks like
    doc["config"]["model"]["name"] = "ops@example.com"
    doc["sample"] = {"inputText": "call +1 415-555-2671"}
    before = copy.deepcopy(doc)
    out, _ = default_policy().redact_trace(doc)
    assert doc == before
    assert out["traceId"] == "alice@example.com" and out["config"] == doc["config"]
    assert out["req"] == doc["req"] and out["outputs"] == doc["outputs"]
    assert out["sample"]["inputText"] == "call [PHONE_1]"


def test_tool_snapshots_extra_fields_and_numbers_are_scanned() -> None:
    doc = copy.deepcopy(EXAMPLE)
    doc["sample"] = {"toolSnapshots": [{"responseHash": "h", "snapshot": {"email": "x@y.io", "card": 4111111111111111,
                                                                          "n": 12345678}}]}  # fmt: skip
    doc["customer"] = {"contact": "x@y.io"}
    out, counts = default_policy().redact_trace(doc)
    assert out["sample"]["toolSnapshots"][0]["snapshot"] == {"email": "[EMAIL_1]", "card": "[CARD_1]", "n": 12345678}
    assert out["customer"] == {"contact": "[EMAIL_1]"}
    assert counts == {"email": 2, "card": 1}


def test_a_trace_without_findings_only_gains_the_policy() -> None:
    out, counts = default_policy().redact_trace(EXAMPLE)
    assert counts == {} and out == {**EXAMPLE, META_KEY: {"policy": "default-1", "counts": {}}}
    assert Redactor.off().redact_trace(EXAMPLE) == (EXAMPLE, {})


def test_field_rules_redact_hash_and_drop() -> None:
    policy = _policy(fields=[
        {"path": "$.sample.toolSnapshots[*].snapshot.customerId", "action": "hash"},
        {"path": "$.sample.toolSnapshots[*].snapshot.address", "action": "drop"},
        {"path": "$.sample.inputText", "action": "redact"},
        {"path": "$.req.userId", "action": "hash"},
    ])  # fmt: skip
    r = Redactor(policy, hmac_key="k1")
    doc = copy.deepcopy(EXAMPLE)
    doc["req"]["userId"] = "u-42"
    doc["sample"] = {"inputText": "hello", "toolSnapshots": [
        {"responseHash": "h", "snapshot": {"customerId": "c-7", "address": "1 Main St", "note": "a@b.io"}}]}  # fmt: skip
    out, counts = r.redact_trace(doc)
    snap = out["sample"]["toolSnapshots"][0]["snapshot"]
    expected = "hmac-sha256:" + hmac.new(b"k1", b"c-7", hashlib.sha256).hexdigest()
    assert snap == {"customerId": expected, "note": "[EMAIL_1]"}
    assert out["sample"]["inputText"] == "[REDACTED]"
    assert out["req"]["userId"].startswith("hmac-sha256:")
    assert counts == {"field_hash": 2, "field_drop": 1, "field_redact": 1, "email": 1}
    # deterministic with the key, different with another
    assert Redactor(policy, hmac_key="k1").redact_trace(doc)[0] == out
    assert Redactor(policy, hmac_key="k2").redact_trace(doc)[0]["req"]["userId"] != out["req"]["userId"]


def test_policy_errors() -> None:
    with pytest.raises(ConfigError, match="no key"):
        Redactor(_policy(fields=[{"path": "$.sample.inputText", "action": "hash"}]))
    with pytest.raises(ConfigError, match="cannot be redacted"):
        Redactor(_policy(fields=[{"path": "$.traceId", "action": "drop"}]))
    with pytest.raises(ConfigError, match="invalid regex"):
        Redactor(_policy(custom=[{"name": "bad", "pattern": "("}]))


def test_load_policy_from_a_file_and_pickle(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("version: mine-3\ndetectors: [email]\ncustom:\n  - name: order_id\n    pattern: 'ORD-[0-9]{4}'\n")
    r = load_policy(path)
    assert r.version == "mine-3"
    assert r.redact_text("ORD-1234 by a@b.io, card 4111111111111111") == "[ORDER_ID_1] by [EMAIL_1], card 4111111111111111"
    assert pickle.loads(pickle.dumps(r)).redact_text("a@b.io") == "[EMAIL_1]"
    assert load_policy(None).version == "default-1"


def test_raw_lines_are_redacted_as_json_or_as_text() -> None:
    r = default_policy()
    assert json.loads(r.redact_raw(b'{"traceId": "t", "sample": {"inputText": "a@b.io"}}')) == {
        "traceId": "t", "sample": {"inputText": "[EMAIL_1]"}}  # fmt: skip
    assert r.redact_raw(b'{"broken": "a@b.io 4111 1111 1111 1111') == b'{"broken": "[EMAIL_1] [CARD_1]'
    assert r.redact_raw(b"\xff not utf-8 a@b.io") == b"\xff not utf-8 [EMAIL_1]"

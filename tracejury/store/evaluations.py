"""Queries of the scoring pipeline: batches, evaluations, the judge cache, evaluator versions,
and loading traces for scoring. Every write is idempotent on its unique key, so a rerun or a
redelivered chunk duplicates nothing."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Dialect, Engine, Select, bindparam, delete, func, select, update

from tracejury.core.errors import ConfigError
from tracejury.core.evaluation import Evaluation
from tracejury.core.ingest import escape_nul
from tracejury.store.engine import insert_ignoring_conflicts
from tracejury.store.tables import (
    Batch,
    BatchTrace,
    EvaluationRow,
    EvaluatorVersion,
    JudgeCacheEntry,
    JudgeClaim,
    StoredTrace,
)

__all__ = [
    "CacheKey",
    "CachedVerdict",
    "batch_counts",
    "batch_evaluator_summary",
    "cache_get",
    "cache_put",
    "claim_keys",
    "create_batch",
    "finish_batch",
    "load_traces",
    "register_evaluator_versions",
    "release_keys",
    "release_trace_ids",
    "renew_claims",
    "reported_models",
    "save_evaluations",
    "seen_fingerprints",
]

_E = EvaluationRow.__table__
_B = Batch.__table__
_C = JudgeCacheEntry.__table__
_V = EvaluatorVersion.__table__
_J = JudgeClaim.__table__
_T = StoredTrace.__table__
_BT = BatchTrace.__table__


def create_batch(engine: Engine, *, release: str, kind: str, config: dict[str, Any], sampled: int) -> str:
    """A new running batch; returns its id."""
    batch_id = f"b_{datetime.now(UTC):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(
            _B.insert().values(
                id=batch_id, release_id=release, kind=kind, state="running", sampled=sampled,
                config=orjson.dumps(config, option=orjson.OPT_SORT_KEYS),
                created_at=datetime.now(UTC),
            )
        )  # fmt: skip
    return batch_id


def finish_batch(engine: Engine, batch_id: str, *, state: str, reason: str | None = None) -> None:
    """Mark a batch ``done`` or ``failed`` (with the reason), with the judge models it saw."""
    with engine.begin() as conn:
        conn.execute(
            update(_B).where(_B.c.id == batch_id).values(
                state=state, reason=reason, finished_at=datetime.now(UTC), judge_models=reported_models(conn, batch_id))
        )  # fmt: skip


def reported_models(conn: Connection, batch_id: str) -> bytes:
    """JSON ``{evaluator: [models]}``: the models judge endpoints reported in a batch's verdicts."""
    stmt = (
        select(_E.c.evaluator_id, _E.c.judge_model)
        .where(_E.c.batch_id == batch_id, _E.c.status == "scored", _E.c.judge_model.is_not(None))
        .distinct()
    )
    models: dict[str, set[str]] = {}
    for evaluator, model in conn.execute(stmt):
        models.setdefault(evaluator, set()).update(model.split(","))
    return orjson.dumps({k: sorted(v) for k, v in sorted(models.items())})


def release_trace_ids(engine: Engine, release: str, *, limit: int | None = None) -> list[str]:
    """Trace ids of a release, oldest first."""
    stmt = select(_T.c.trace_id).where(_T.c.release_id == release).order_by(_T.c.ts, _T.c.trace_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    with engine.connect() as conn:
        return list(conn.execute(stmt).scalars())


def load_traces(engine: Engine, trace_ids: Sequence[str]) -> dict[str, tuple[dict[str, Any], str]]:
    """``{trace id: (trace dict, segment key)}``; ids not in the store, and pruned traces (an
    empty body: ``docs/retention.md``), are absent — scoring skips them."""
    stmt = select(_T.c.trace_id, _T.c.body, _T.c.segment_key).where(_T.c.trace_id.in_(bindparam("ids", expanding=True)))
    with engine.connect() as conn:
        rows = conn.execute(stmt, {"ids": list(trace_ids)}).all()
    return {r.trace_id: (orjson.loads(r.body), r.segment_key) for r in rows if r.body}


def save_evaluations(engine: Engine, batch_id: str, evaluations: Iterable[Evaluation]) -> None:
    """Store evaluations; one already stored for (batch, trace, evaluator, version) is kept.

    The trace's release, segment key and timestamp and its sampling weight (1/p) are copied
    onto each row (two lookups per call), so gates aggregate evaluations without joins.

    The rows go to the driver as they are (``exec_driver_sql``): a scoring process writes about
    three evaluations per judge call with the shipped rubrics, and SQLAlchemy's per-row
    parameter processing was ~70% of this function's CPU. The only values the driver cannot
    take as they are, the timestamps, go through their column type's own bind processor, once
    per distinct value."""
    evaluations = list(evaluations)
    if not evaluations:
        return
    dialect = engine.dialect
    to_db = _E.c.created_at.type.dialect_impl(dialect).bind_processor(dialect) or (lambda value: value)
    stamps: dict[datetime, Any] = {}

    def stamp(at: datetime | None) -> Any:
        if at is None:
            return None
        if at not in stamps:
            stamps[at] = to_db(at)
        return stamps[at]

    now = stamp(datetime.now(UTC))
    ids = list({e.trace_id for e in evaluations})
    with engine.begin() as conn:
        traces = {
            r.trace_id: (r.release_id, r.segment_key, stamp(r.ts))
            for r in conn.execute(
                select(_T.c.trace_id, _T.c.release_id, _T.c.segment_key, _T.c.ts).where(
                    _T.c.trace_id.in_(bindparam("ids", expanding=True))
                ),
                {"ids": ids},
            )
        }
        probs = dict(
            conn.execute(
                select(_BT.c.trace_id, _BT.c.inclusion_prob).where(
                    _BT.c.batch_id == batch_id, _BT.c.trace_id.in_(bindparam("ids", expanding=True))
                ),
                {"ids": ids},
            ).all()
        )
        rows = []
        for e in evaluations:
            row = e.model_dump()
            row["sample_labels"] = ",".join(e.sample_labels) or None
            row["rationale"], row["error"] = escape_nul(e.rationale), escape_nul(e.error)
            release_id, segment_key, trace_ts = traces.get(e.trace_id, (None, None, None))
            p = probs.get(e.trace_id)
            row.update(batch_id=batch_id, created_at=now, release_id=release_id, segment_key=segment_key,
                       trace_ts=trace_ts, weight=1.0 / p if p else 1.0)  # fmt: skip
            rows.append(row)
        conn.exec_driver_sql(_insert_evaluations(dialect), rows)


_INSERT_SQL: dict[str, str] = {}


def _insert_evaluations(dialect: Dialect) -> str:
    """``INSERT … ON CONFLICT DO NOTHING`` of every evaluation column but the id, with the
    driver's named parameters (``:name`` or ``%(name)s``); built once per dialect."""
    if dialect.name not in _INSERT_SQL:
        names = [c.name for c in _E.columns if c.name != "id"]
        marks = {"sqlite": ":{}", "postgresql": "%({})s"}  # sqlite3's named style; psycopg's pyformat
        if dialect.name not in marks:
            raise ConfigError(f"the store supports SQLite and PostgreSQL, not {dialect.name}")
        mark = marks[dialect.name]
        quote = dialect.identifier_preparer.quote
        _INSERT_SQL[dialect.name] = (
            f"INSERT INTO {quote(_E.name)} ({', '.join(quote(n) for n in names)})"
            f" VALUES ({', '.join(mark.format(n) for n in names)}) ON CONFLICT DO NOTHING"
        )
    return _INSERT_SQL[dialect.name]


CacheKey = tuple[str, str, str, int]
"""(model, evaluator fingerprint, evidence hash, sample index)."""


@dataclass(frozen=True)
class CachedVerdict:
    """A cached judge verdict."""

    label: str
    rationale: str
    confidence: float | None
    prompt_tokens: int | None
    completion_tokens: int | None


def cache_get(engine: Engine, keys: Sequence[CacheKey]) -> dict[CacheKey, CachedVerdict]:
    """Cached verdicts for the keys that have one.

    Keys are grouped by (model, fingerprint, sample): a chunk's keys share a few of those, so
    each group is one ``evidence_hash IN (…)`` on the primary key's prefix, with one bound
    parameter per key (a row-value ``IN`` binds four and costs several times more CPU)."""
    groups: dict[tuple[str, str, int], list[str]] = {}
    for model, fingerprint, evidence_hash, sample in keys:
        groups.setdefault((model, fingerprint, sample), []).append(evidence_hash)
    found: dict[CacheKey, CachedVerdict] = {}
    if not groups:
        return found
    stmt = select(_C.c.evidence_hash, _C.c.label, _C.c.rationale, _C.c.confidence, _C.c.prompt_tokens,
                  _C.c.completion_tokens).where(
        _C.c.model == bindparam("model"), _C.c.evaluator_fingerprint == bindparam("fingerprint"),
        _C.c.sample_index == bindparam("sample"), _C.c.evidence_hash.in_(bindparam("hashes", expanding=True)),
    )  # fmt: skip
    with engine.connect() as conn:
        for (model, fingerprint, sample), hashes in groups.items():
            for start in range(0, len(hashes), 2000):
                params = {"model": model, "fingerprint": fingerprint, "sample": sample,
                          "hashes": hashes[start : start + 2000]}  # fmt: skip
                for r in conn.execute(stmt, params):
                    found[(model, fingerprint, r[0], sample)] = CachedVerdict(*r[1:])
    return found


def cache_put(engine: Engine, entries: Sequence[tuple[CacheKey, CachedVerdict]]) -> None:
    """Remember verdicts (first one wins for a key)."""
    if not entries:
        return
    now = datetime.now(UTC)
    rows = [
        {"model": k[0], "evaluator_fingerprint": k[1], "evidence_hash": k[2],
         "sample_index": k[3], "label": v.label, "rationale": escape_nul(v.rationale),
         "confidence": v.confidence, "prompt_tokens": v.prompt_tokens,
         "completion_tokens": v.completion_tokens, "created_at": now}
        for k, v in entries
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert_ignoring_conflicts(_C, engine.dialect), rows)


def _claim_id(key: CacheKey) -> str:
    return hashlib.sha256("\x1f".join(map(str, key)).encode()).hexdigest()


def claim_keys(
    engine: Engine, keys: Sequence[CacheKey], owner: str, ttl_s: float
) -> tuple[set[CacheKey], set[CacheKey]]:
    """Claim judge calls by cache key for ``owner`` (a worker process). Returns (``ours``:
    keys no one held, or whose claim expired, now ``owner``'s for ``ttl_s``, and its earlier
    claims; ``settled``: keys whose call ended with a verdict, to be read from the cache).
    The rest are in flight in another process."""
    if not keys:
        return set(), set()
    now = datetime.now(UTC)
    until = now + timedelta(seconds=ttl_s)
    ids = {_claim_id(k): k for k in keys}
    wanted = sorted(ids)  # every process locks rows in one order: no deadlock on PostgreSQL
    ours: set[CacheKey] = set()
    settled: set[CacheKey] = set()
    claim = insert_ignoring_conflicts(_J, engine.dialect).returning(_J.c.key)
    with engine.begin() as conn:
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            claims = [{"key": i, "owner": owner, "done": False, "expires_at": until} for i in part]
            new = set(conn.execute(claim, claims).scalars())  # the keys no one held
            ours.update(ids[i] for i in new)
            held = [i for i in part if i not in new]  # claimed before: by whom, and is it done?
            if not held:
                continue
            rows = {r.key: r for r in conn.execute(select(_J).where(_J.c.key.in_(held)))}
            expired = [i for i, r in rows.items() if not r.done and r.owner != owner and _aware(r.expires_at) < now]
            if expired:  # their process died: take the calls over
                taken = _locked_in_key_order(_J.c.key.in_(expired), _J.c.expires_at < now)
                conn.execute(update(_J).where(_J.c.key.in_(taken)).values(owner=owner, expires_at=until))
                rows |= {r.key: r for r in conn.execute(select(_J).where(_J.c.key.in_(expired)))}
            for i, r in rows.items():
                if r.done:
                    settled.add(ids[i])
                elif r.owner == owner:
                    ours.add(ids[i])
    return ours, settled


def release_keys(engine: Engine, judged: Sequence[CacheKey], failed: Sequence[CacheKey], owner: str) -> None:
    """End ``owner``'s claims: ``judged`` calls ended with a verdict (in the cache now: the
    claim stays a minute, marked done), ``failed`` ones without (deleted: the next asker calls
    the judge itself)."""
    now = datetime.now(UTC)
    done_ids = sorted({_claim_id(k) for k in judged})
    failed_ids = sorted({_claim_id(k) for k in failed})
    with engine.begin() as conn:
        for start in range(0, len(done_ids), 500):
            conn.execute(update(_J).where(_J.c.key.in_(done_ids[start : start + 500]), _J.c.owner == owner)
                         .values(done=True, expires_at=now + timedelta(seconds=60)))  # fmt: skip
        for start in range(0, len(failed_ids), 500):
            conn.execute(delete(_J).where(_J.c.key.in_(failed_ids[start : start + 500]), _J.c.owner == owner))


def renew_claims(engine: Engine, owner: str, ttl_s: float) -> None:
    """Extend the claims ``owner`` holds by ``ttl_s`` from now (its calls are still under way),
    and drop claims that expired (done ones a minute after their call, others a minute after
    their process stopped renewing them).

    On PostgreSQL the rows are locked in key order first, as ``claim_keys`` locks them, so a
    renewal and another process taking expired claims over cannot deadlock; expired rows
    someone else holds locked are left for the next round."""
    now = datetime.now(UTC)
    mine = _locked_in_key_order(_J.c.owner == owner, _J.c.done.is_(False))
    stale = _locked_in_key_order(_J.c.expires_at < now - timedelta(seconds=60), skip_locked=True)
    with engine.begin() as conn:
        conn.execute(update(_J).where(_J.c.key.in_(mine)).values(expires_at=now + timedelta(seconds=ttl_s)))
        conn.execute(delete(_J).where(_J.c.key.in_(stale)))


def _locked_in_key_order(*where: Any, skip_locked: bool = False) -> Select[Any]:
    """The claim keys matching ``where``, their rows locked in key order (``FOR UPDATE``; SQLite
    has one writer at a time and ignores it)."""
    return select(_J.c.key).where(*where).order_by(_J.c.key).with_for_update(skip_locked=skip_locked)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def seen_fingerprints(engine: Engine) -> dict[tuple[str, str], str]:
    """``{(evaluator id, version): fingerprint}`` of every version the store has seen."""
    with engine.connect() as conn:
        rows = conn.execute(select(_V.c.evaluator_id, _V.c.version, _V.c.fingerprint)).all()
    return {(r[0], r[1]): r[2] for r in rows}


def register_evaluator_versions(engine: Engine, versions: Iterable[tuple[str, str, str]]) -> None:
    """Record (id, version, fingerprint); refuse changed content under a version already seen."""
    versions = list(versions)
    seen = seen_fingerprints(engine)
    for evaluator_id, version, fingerprint in versions:
        known = seen.get((evaluator_id, version))
        if known is not None and known != fingerprint:
            raise ConfigError(
                f"rubric {evaluator_id} changed but its version is still {version!r}:"
                " bump the version (the store has evaluations under the old content)"
            )
    now = datetime.now(UTC)
    rows = [{"evaluator_id": i, "version": v, "fingerprint": f, "first_seen": now}
            for i, v, f in versions]  # fmt: skip
    if rows:
        with engine.begin() as conn:
            conn.execute(insert_ignoring_conflicts(_V, engine.dialect), rows)


def batch_counts(engine: Engine, batch_id: str) -> tuple[dict[str, int], dict[str, int]]:
    """(count by status, count of judge failures by kind) of a batch's evaluations."""
    with engine.connect() as conn:
        by_status = dict(
            conn.execute(select(_E.c.status, func.count()).where(_E.c.batch_id == batch_id).group_by(_E.c.status)).all()
        )
        by_kind = dict(
            conn.execute(
                select(_E.c.failure_kind, func.count())
                .where(_E.c.batch_id == batch_id, _E.c.status == "judge_failed")
                .group_by(_E.c.failure_kind)
            ).all()
        )
    return by_status, by_kind


def batch_evaluator_summary(engine: Engine, batch_id: str) -> list[dict[str, Any]]:
    """Per evaluator of a batch: counts by status, and scored verdicts that failed."""
    stmt = (
        select(_E.c.evaluator_id, _E.c.status, _E.c.passed, func.count())
        .where(_E.c.batch_id == batch_id)
        .group_by(_E.c.evaluator_id, _E.c.status, _E.c.passed)
    )
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for evaluator, status, passed, n in conn.execute(stmt):
            row = out.setdefault(evaluator, {"evaluator": evaluator, "failed_verdicts": 0})
            row[status] = row.get(status, 0) + n
            if status == "scored" and passed is False:
                row["failed_verdicts"] += n
    return [out[k] for k in sorted(out)]

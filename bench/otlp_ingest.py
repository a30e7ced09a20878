"""Benchmark: OTLP/HTTP protobuf ingest (`POST /v1/traces`) end to end, staged, beside a
given revision (default af23f10, which mapped each request in the request and had no staging).

Each trace is five GenAI-semconv spans (invoke_agent root → retrieval → chat → execute_tool →
chat, distinct ids and content, the builder's well-configured resource, so every trace maps
and is stored), sent as protobuf ``ExportTraceServiceRequest`` bodies built up front. Cells,
interleaved in every run, each on a fresh SQLite store and a fresh `tracejury serve` (one
uvicorn worker, loopback, an ingest token), `--clients` concurrent clients (asyncio + httpx in
this process):

  whole   100 traces per request (500 spans);
  split3  every trace's spans over 3 consecutive requests, staggered: request j holds spans
          2-3 (retrieval, chat) of block j, spans 4-5 (tool, chat) of block j-1 and the root
          of block j-2 (blocks of 100 traces), so a request still carries 500 spans and each
          trace's root comes in its LAST part;
  before  the `whole` bodies against `--before` (``git archive`` into a temp dir, its own
          `db upgrade` and `serve`, PYTHONPATH and cwd there).

The staged cells run `--after` (default: a copy of the working tree's packages taken at start,
so colleagues' edits during the run do not mix in), the same way, with the shipped settings
(every ``TRACEJURY_*`` variable but the database URL is dropped: idle 5 s, sweep every 0.5 s).

Per cell:
  accept      traces / (first request → last response);
  end-to-end  traces / (first request → all N stored), the store's ``trace`` table polled
              read-only every 0.1 s. For the staged cells this includes the 5 s idle wait
              (a latency, not a throughput limit): it can never pass N / (N / R + 5 s);
  steady      the stored count's growth from 10% to 90% of N, per second: the storing
              THROUGHPUT, the figure to hold against a traces/s target;
  latency     last response → all stored (idle wait plus whatever backlog the sweeper has);
  CPU         utime + stime per trace, first request → all stored, of every process of the
              server (`serve` and the sweeper processes it starts), and of the
              uvicorn process alone.
After each cell every trace must be stored, none quarantined or in conflict, the staging
empty; 503 (staging full) answers are retried after Retry-After and counted.

    .venv/bin/python bench/otlp_ingest.py [--traces 50000] [--clients 4] [--runs 3]
        [--cells whole,split3,before] [--before af23f10] [--after worktree] [--profile DIR]

With ``--profile DIR``, py-spy (if installed) records each cell's server processes at 100 Hz
into DIR/<cell>-run<k>.txt (raw collapsed stacks per process and thread); profile in a separate
invocation from the figures you report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.procs import free_port, start, stop, wait_port  # noqa: E402
from tests.otlp_builder import RESOURCE, any_value, attributes, genai_trace  # noqa: E402

CLI = "import sys; from tracejury.cli import main; sys.argv[0] = 'tracejury'; main()"
SPANS_PER_TRACE = 5
PER_REQUEST = 100
"""Traces per request (``whole``); ``split3`` keeps 500 spans per request too."""
POLL_S = 0.1
STAGED = ("whole", "split3")
PY_SPY = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


# -- the workload ------------------------------------------------------------------------------


def _pb_value(v: dict[str, Any]) -> AnyValue:
    """An OTLP/JSON ``AnyValue`` (the builder's) as protobuf."""
    ((kind, x),) = v.items()
    if kind == "stringValue":
        return AnyValue(string_value=x)
    if kind == "intValue":
        return AnyValue(int_value=int(x))
    if kind == "doubleValue":
        return AnyValue(double_value=x)
    if kind == "boolValue":
        return AnyValue(bool_value=x)
    if kind == "arrayValue":
        out = AnyValue()
        out.array_value.values.extend(_pb_value(e) for e in x["values"])
        return out
    out = AnyValue()  # kvlistValue
    out.kvlist_value.values.extend(_pb_attrs(x["values"]))
    return out


def _pb_attrs(attrs: list[dict[str, Any]]) -> list[KeyValue]:
    return [KeyValue(key=a["key"], value=_pb_value(a["value"])) for a in attrs]


def _set(span: dict[str, Any], key: str, value: Any) -> None:
    """Replace one attribute of a builder span (OTLP/JSON)."""
    for a in span["attributes"]:
        if a["key"] == key:
            a["value"] = any_value(value)
            return
    span["attributes"].append({"key": key, "value": any_value(value)})


def build_trace(i: int, rng: random.Random) -> list[PbSpan]:
    """Trace ``i``: the builder's GenAI trace with its own ids and content, as protobuf spans
    in the builder's order (root, retrieval, chat, execute_tool, chat)."""
    trace_hex = f"{i:012x}{rng.getrandbits(80):020x}"
    spans = genai_trace(trace_hex)
    root, ret, chat1, tool, chat2 = spans
    _set(root, "gen_ai.conversation.id", f"conv-{i}")
    _set(root, "tracejury.input_text_hash", f"sha256:{rng.getrandbits(128):032x}")
    _set(root, "tracejury.session_turn", 1 + i % 7)
    docs = [{"id": f"doc:{i % 97}", "score": rng.random()}, {"id": "doc:returns", "score": 0.5}]
    _set(ret, "gen_ai.retrieval.documents", docs)
    _set(chat1, "gen_ai.usage.input_tokens", 900 + i % 300)
    _set(tool, "gen_ai.tool.call.arguments", f'{{"orderId": "{i}"}}')
    _set(tool, "gen_ai.tool.call.result", f'{{"state": "{rng.choice(["packed", "shipped", "out_for_delivery"])}"}}')
    _set(chat2, "gen_ai.usage.output_tokens", 50 + i % 400)
    answer = f"Order {i} ships {rng.choice(['today', 'tomorrow', 'on Monday'])}."
    message = {"role": "assistant", "parts": [{"type": "text", "content": answer}]}
    _set(chat2, "gen_ai.output.messages", orjson.dumps([message]).decode())
    out = []
    for s in spans:
        pb = PbSpan(trace_id=bytes.fromhex(s["traceId"]), span_id=bytes.fromhex(s["spanId"]), name=s["name"],
                    kind=s["kind"], start_time_unix_nano=int(s["startTimeUnixNano"]),
                    end_time_unix_nano=int(s["endTimeUnixNano"]), attributes=_pb_attrs(s["attributes"]))  # fmt: skip
        if "parentSpanId" in s:
            pb.parent_span_id = bytes.fromhex(s["parentSpanId"])
        if "status" in s:
            pb.status.code, pb.status.message = s["status"]["code"], s["status"]["message"]
        out.append(pb)
    return out


_RESOURCE = Resource(attributes=_pb_attrs(attributes(RESOURCE)))


def _body(spans: list[PbSpan]) -> bytes:
    """One ``ExportTraceServiceRequest`` (one resource, one scope) holding ``spans``."""
    req = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=_RESOURCE,
        scope_spans=[ScopeSpans(scope=InstrumentationScope(name="bench"), spans=spans)],
    )])  # fmt: skip
    return req.SerializeToString()


def whole_bodies(traces: list[list[PbSpan]]) -> list[bytes]:
    """``PER_REQUEST`` whole traces per request."""
    return [_body([s for t in traces[i : i + PER_REQUEST] for s in t]) for i in range(0, len(traces), PER_REQUEST)]


def split3_bodies(traces: list[list[PbSpan]]) -> list[bytes]:
    """Each trace over 3 consecutive requests, its root last: request j = spans 2-3 of block j
    + spans 4-5 of block j-1 + the root of block j-2 (blocks of ``PER_REQUEST`` traces)."""
    blocks = [traces[i : i + PER_REQUEST] for i in range(0, len(traces), PER_REQUEST)]
    parts = (slice(1, 3), slice(3, 5), slice(0, 1))
    bodies = []
    for j in range(len(blocks) + 2):
        spans = [s for k, part in enumerate(parts) if 0 <= j - k < len(blocks) for t in blocks[j - k] for s in t[part]]
        bodies.append(_body(spans))
    return bodies


# -- one cell ----------------------------------------------------------------------------------


@dataclass
class Cell:
    """What one cell measured."""

    accept: float
    """Traces / (last response − first request)."""
    end_to_end: float
    """Traces / (all stored − first request)."""
    steady: float
    """Stored-count growth from 10% to 90% of N, per second."""
    latency: float
    """Seconds from the last response to all stored."""
    cpu_ms: float
    """CPU (user + system) of the server's processes per trace, first request → all stored:
    `serve` itself and the OTLP sweeper processes it starts."""
    api_cpu_ms: float
    """Of ``cpu_ms``, the `serve` (uvicorn) process's own."""
    retries: int = 0
    """Requests answered 503 (staging full) and sent again."""
    extra: dict[str, Any] = field(default_factory=dict)


def _group_cpu(pgid: int) -> dict[int, float]:
    """utime + stime, seconds, of every process in group ``pgid`` (the server and the sweeper
    processes it starts) by pid, from /proc/<pid>/stat."""
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid:
            out[int(proc.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _env(db: Path, code: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEJURY_")}
    env["TRACEJURY_DATABASE_URL"] = f"sqlite:///{db}"
    env["PYTHONPATH"] = str(code)
    return env


def extract(rev: str, into: Path) -> Path:
    """The code the server runs: ``rev`` via ``git archive``, or with ``worktree`` a copy of
    the working tree's packages taken now (colleagues may edit it during the run)."""
    into.mkdir()
    if rev == "worktree":
        for package in ("tracejury", "workers", "judges"):
            shutil.copytree(ROOT / package, into / package, ignore=shutil.ignore_patterns("__pycache__"))
        return into
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> bytes:
    done = subprocess.run([sys.executable, "-c", CLI, *args], env=env, cwd=cwd, capture_output=True, timeout=timeout)
    if done.returncode:
        raise SystemExit(f"tracejury {' '.join(args)} failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
    return done.stdout


@contextlib.contextmanager
def server(workdir: Path, name: str, code: Path, profile: Path | None) -> Iterator[tuple[int, int, str, Path]]:
    """A fresh store and a fresh `tracejury serve` of ``code`` (its own `db upgrade`, its
    directory first on PYTHONPATH and as cwd): (server pid, port, ingest token, db path).
    Stopped, store removed, on exit."""
    db = workdir / f"{name}.db"
    env = _env(db, code)
    cwd = code
    _cli(["db", "upgrade"], env, cwd)
    token = orjson.loads(_cli(["token", "create", "--role", "ingest", "--json"], env, cwd))["token"]
    port = free_port()
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        serve = [sys.executable, "-c", CLI, "serve", "--port", str(port), "--log-level", "warning"]
        proc = subprocess.Popen(serve, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    spy = None
    try:
        _wait_listening(proc, port, log)
        _wait_idle(proc.pid)
        if profile is not None:
            record = [str(PY_SPY), "record", "-p", str(proc.pid), "-r", "100", "--threads", "--subprocesses",
                      "--format", "raw",
                      "-o", str(profile), "--nonblocking"]  # fmt: skip
            spy = start(record, dict(os.environ), workdir / f"{name}.pyspy.log")
            time.sleep(1.0)  # py-spy attaches
        yield proc.pid, port, token, db
    finally:
        if spy is not None:
            stop(spy, signal.SIGINT, timeout=60)
        stop(proc)
        if proc.returncode not in (0, -signal.SIGTERM):
            print(f"  {name}: server exited {proc.returncode}; log tail:\n{log.read_text()[-2000:]}", flush=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 60) -> None:
    """Until the server accepts connections; fail at once if it exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            wait_port(port, timeout=0.5)
            return
        except TimeoutError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server not listening (exit {proc.poll()}):\n{log.read_text()[-3000:]}") from None


def _wait_idle(pgid: int, timeout: float = 60) -> None:
    """Until the server's processes (the sweeper process imports after the server listens)
    use under 10% of a core, so start-up is not counted in a cell's CPU."""
    deadline = time.monotonic() + timeout
    before = sum(_group_cpu(pgid).values())
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(_group_cpu(pgid).values())
        if now - before < 0.05:
            return
        before = now
    raise SystemExit(f"server processes still busy {timeout:.0f} s after start")


def _count(conn: sqlite3.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - our table names


@dataclass
class Drive:
    """Times and counts of sending a cell's bodies."""

    t0: float
    """First request."""
    t_sent: float
    """Last response."""
    samples: list[tuple[float, int]]
    """(time, traces stored), every ``POLL_S`` until all are stored."""
    retries: int
    peak_staged: int
    """Most fragments staged at one poll (staged cells)."""


async def _drive(url: str, token: str, bodies: list[bytes], clients: int, db: Path, n: int, timeout: float,
                 staged: bool) -> Drive:  # fmt: skip
    """Send ``bodies`` from ``clients`` clients while polling the stored count until ``n``."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/x-protobuf"}
    retries = 0
    t_sent = 0.0
    deadline = time.perf_counter() + timeout

    async def client() -> None:
        nonlocal retries, t_sent
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
            while not queue.empty():
                body = queue.get_nowait()
                while True:
                    r = await http.post("/v1/traces", content=body)
                    if r.status_code != 503 or time.perf_counter() > deadline:
                        break
                    retries += 1
                    await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 5.0))
                r.raise_for_status()
                t_sent = max(t_sent, time.perf_counter())
                partial = r.content  # an empty ExportTraceServiceResponse is b""; anything else names rejects
                if partial:
                    raise SystemExit(f"partial success from the server: {partial[:500]!r}")

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    samples: list[tuple[float, int]] = []
    peak = 0
    try:
        t0 = time.perf_counter()
        sending = asyncio.gather(*(client() for _ in range(clients)))
        while True:
            if sending.done():
                sending.result()  # raise a client's failure
            stored = _count(conn, "trace")
            samples.append((time.perf_counter(), stored))
            if staged:
                peak = max(peak, _count(conn, "otlp_fragment"))  # counted on its trace_id index: cheap
            if stored >= n and sending.done():
                break
            if time.perf_counter() > deadline:
                sending.cancel()
                raise SystemExit(f"timeout after {timeout:.0f} s: {stored} of {n} traces stored, "
                                 f"sending {'done' if sending.done() else 'not done'}")  # fmt: skip
            await asyncio.sleep(POLL_S)
    finally:
        conn.close()
    return Drive(t0, t_sent, samples, retries, peak)


def _crossing(samples: list[tuple[float, int]], level: float) -> float:
    """The time the stored count reached ``level`` (linear between polls)."""
    prev_t, prev_c = samples[0]
    for t, c in samples:
        if c >= level:
            if c == prev_c:
                return t
            return prev_t + (t - prev_t) * (level - prev_c) / (c - prev_c)
        prev_t, prev_c = t, c
    raise ValueError(level)


def _check(db: Path, n: int, staged: bool) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        got = {"trace": _count(conn, "trace"), "quarantine": _count(conn, "quarantine"),
               "trace_conflict": _count(conn, "trace_conflict")}  # fmt: skip
        if staged:
            got["otlp_fragment"] = _count(conn, "otlp_fragment")
            got |= dict(conn.execute("SELECT name, value FROM otlp_counter").fetchall())
    finally:
        conn.close()
    bad = [f"{k} = {v}" for k, v in got.items() if k in ("quarantine", "trace_conflict", "otlp_fragment") and v]
    if got["trace"] != n or bad:
        raise SystemExit(f"check failed: {got['trace']} of {n} traces stored; " + ", ".join(bad))
    return got


def run_cell(name: str, bodies: list[bytes], n: int, clients: int, workdir: Path, code: Path,
             timeout: float, profile: Path | None) -> Cell:  # fmt: skip
    """One cell on a fresh store and server."""
    with server(workdir, name, code, profile) as (pid, port, token, db):
        cpu0, own0 = _group_cpu(pid), time.process_time()
        d = asyncio.run(_drive(f"http://127.0.0.1:{port}", token, bodies, clients, db, n, timeout, name in STAGED))
        cpu1, own = _group_cpu(pid), time.process_time() - own0
        cpu = {p: c - cpu0.get(p, 0.0) for p, c in cpu1.items()}
        got = _check(db, n, name in STAGED)
    t_all = _crossing(d.samples, n)
    steady = 0.8 * n / (_crossing(d.samples, 0.9 * n) - _crossing(d.samples, 0.1 * n))
    extra = {**got, "peak_staged_fragments": d.peak_staged, "bench_client_cpu_ms": round(1000 * own / n, 3),
             "load1": round(os.getloadavg()[0], 1)}  # fmt: skip
    return Cell(accept=n / (d.t_sent - d.t0), end_to_end=n / (t_all - d.t0), steady=steady,
                latency=max(0.0, t_all - d.t_sent), cpu_ms=1000 * sum(cpu.values()) / n, api_cpu_ms=1000 * cpu[pid] / n,
                retries=d.retries, extra=extra)  # fmt: skip


# -- the run -----------------------------------------------------------------------------------

COLUMNS = (
    ("accept", "accept traces/s", "{:,.0f}"),
    ("end_to_end", "end-to-end traces/s", "{:,.0f}"),
    ("steady", "steady storing traces/s (10→90%)", "{:,.0f}"),
    ("latency", "last response → all stored, s", "{:.1f}"),
    ("cpu_ms", "server CPU ms/trace (all processes)", "{:.2f}"),
    ("api_cpu_ms", "of which uvicorn process", "{:.2f}"),
)


def table(results: dict[str, list[Cell]]) -> str:
    """Markdown: the median of each figure in bold, then every run."""
    head = "| cell | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|---|" + "---:|" * len(COLUMNS)]
    for name, cells in results.items():
        row = []
        for attr, _, fmt in COLUMNS:
            vals = [getattr(c, attr) for c in cells]
            row.append(f"**{fmt.format(statistics.median(vals))}** ({' / '.join(fmt.format(v) for v in vals)})")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=50000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cells", default="whole,split3,before")
    ap.add_argument("--before", default="af23f10", help="revision for the 'before' cell")
    ap.add_argument("--after", default="worktree",
                    help="revision for the staged cells; worktree: the working tree's packages at start")  # fmt: skip
    ap.add_argument("--timeout", type=float, default=900, help="seconds per cell until all traces are stored")
    ap.add_argument("--profile", type=Path, help="record each cell's server with py-spy into this directory")
    ap.add_argument("--seed", type=int, default=6)
    args = ap.parse_args()
    cells = args.cells.split(",")
    if unknown := set(cells) - {"whole", "split3", "before"}:
        raise SystemExit(f"unknown cells: {sorted(unknown)}")
    if args.traces % PER_REQUEST:
        raise SystemExit(f"--traces must be a multiple of {PER_REQUEST}")
    if args.profile is not None:
        if PY_SPY is None:
            raise SystemExit("--profile needs py-spy (.venv/bin/pip install py-spy)")
        args.profile.mkdir(parents=True, exist_ok=True)
    git = {"cwd": ROOT, "capture_output": True, "text": True}
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **git).stdout.strip()  # type: ignore[call-overload]
    status = subprocess.run(["git", "status", "--porcelain", "--", "tracejury", "workers"], **git).stdout  # type: ignore[call-overload]
    dirty = [line[3:] for line in status.splitlines() if line.strip()]

    t = time.perf_counter()
    rng = random.Random(args.seed)
    traces = [build_trace(i, rng) for i in range(args.traces)]
    bodies = {"whole": whole_bodies(traces), "split3": split3_bodies(traces)}
    bodies["before"] = bodies["whole"]
    sizes = {k: statistics.mean(len(b) for b in v) for k, v in bodies.items()}
    print(f"built {args.traces:,} traces in {time.perf_counter() - t:.1f} s: whole {len(bodies['whole'])} requests "
          f"of {sizes['whole'] / 1024:.0f} KiB, split3 {len(bodies['split3'])} of {sizes['split3'] / 1024:.0f} KiB",
          flush=True)  # fmt: skip

    results: dict[str, list[Cell]] = {c: [] for c in cells}
    with tempfile.TemporaryDirectory(prefix="otlp-bench-") as tmp:
        workdir = Path(tmp)
        code = {"before": extract(args.before, workdir / "before") if "before" in cells else workdir,
                "after": extract(args.after, workdir / "after") if set(cells) & set(STAGED) else workdir}  # fmt: skip
        for run in range(1, args.runs + 1):
            for name in cells:
                prof = args.profile / f"{name}-run{run}.txt" if args.profile else None
                cell = run_cell(name, bodies[name], args.traces, args.clients, workdir,
                                code["before" if name == "before" else "after"], args.timeout, prof)  # fmt: skip
                results[name].append(cell)
                print(f"run {run} {name:<7} accept {cell.accept:>7,.0f}/s  end-to-end {cell.end_to_end:>7,.0f}/s  "
                      f"steady {cell.steady:>7,.0f}/s  latency {cell.latency:5.1f} s  cpu {cell.cpu_ms:.2f} ms/trace "
                      f"(uvicorn {cell.api_cpu_ms:.2f})"
                      f"  503s {cell.retries}  {cell.extra}", flush=True)  # fmt: skip

    print()
    print("    " + shlex.join([".venv/bin/python", "bench/otlp_ingest.py", *sys.argv[1:]]))
    after = args.after
    if after == "worktree":
        after = f"HEAD {head}" + (f" + uncommitted {', '.join(dirty)}" if dirty else "")
    print(f"\nwhole, split3: {after}; before: {args.before}; {args.traces:,} traces of {SPANS_PER_TRACE} spans, "
          f"{PER_REQUEST} traces (500 spans) per request, {args.clients} clients, one uvicorn worker, "
          f"medians of {args.runs} run(s) (each run in brackets):\n")  # fmt: skip
    print(table(results))


if __name__ == "__main__":
    main()

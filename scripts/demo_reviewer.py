"""The demo's reviewer: works the random audit share of the review queue, labelling each
audited judgment with the simulation's truth — what the bundled mock judge says about the
trace's evidence without ``--bias`` — the way a careful person would. Only for the demo
(real labels come from people: the review page, ``tracejury review next``).

Usage: python scripts/demo_reviewer.py [--limit N]   (TRACEJURY_DATABASE_URL names the store)
"""

from __future__ import annotations

import argparse
from collections import Counter

from judges.evidence import evidence_from_trace
from judges.mock.verdict import assess, choose_label
from tracejury.settings import Settings
from tracejury.store.engine import open_engine
from tracejury.store.review import claim_next, item_scale, label_item
from tracejury.store.traces import get_trace

REVIEWER = "demo-reviewer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100_000, help="Label at most this many audit items.")
    args = parser.parse_args()
    engine = open_engine(Settings().database_url)
    done: Counter[tuple[str, str]] = Counter()
    while sum(done.values()) < args.limit:
        item = claim_next(engine, REVIEWER, reason="audit")
        if item is None:
            break
        trace = get_trace(engine, item["traceId"])["trace"]
        truth = assess(evidence_from_trace(trace).as_data()).outcome
        label = choose_label(tuple(item_scale(engine, item["itemId"])["labels"]), truth)
        label_item(engine, item["itemId"], REVIEWER, label, rationale="demo: the simulation's truth")
        done[(item["release"], label)] += 1
    for (release, label), n in sorted(done.items()):
        print(f"  {release}: {n} audit item(s) labelled {label}")
    print(f"audit items labelled: {sum(done.values())}")


if __name__ == "__main__":
    main()

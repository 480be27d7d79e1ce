"""Re-read recorded ``bench/verdict_trust.py`` runs under the stored-mode latency rule of this checkout.

Device time is scarce, so a rule change made after a GPU run is first checked against the verdict
fields that run recorded (delta, effective threshold, noise): a stored latency verdict is *not
judged* while the baseline holds fewer than ``MEASURED_RUNS`` separate-process runs, or when its
threshold exceeds ``MAX_THRESHOLD_FACTOR`` times the user's. Everything else keeps the kind it got.
The output says it is a re-reading, never a fresh measurement; re-run ``verdict_trust.py`` for that.

Usage:
    python bench/verdict_trust_rejudge.py RUN.json [RUN.json ...] --out reports/h200/verdict_trust/rejudged.md
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from aitune_ci.config import Policy
from aitune_ci.verdict.judge import MAX_THRESHOLD_FACTOR
from aitune_ci.verdict.latency import MEASURED_RUNS


def rejudge(row: dict, nightlies: int, policy: Policy) -> str:
    """The kind the stored-mode rule of this checkout gives a recorded row."""
    if row["mode"] != "stored" or row["paired"] or row["kind"] not in ("PASS", "REGRESSED", "IMPROVED"):
        return row["kind"]
    if nightlies < MEASURED_RUNS or row.get("threshold") is None:  # None: that run's own rule did not judge it
        return "NOT JUDGED"
    if row["threshold"] > MAX_THRESHOLD_FACTOR * policy.threshold:
        return "NOT JUDGED"
    return row["kind"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    policy = Policy()
    counts: dict[tuple[str, int, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for path in args.runs:
        data = json.loads(path.read_text())
        nightlies = int(data["meta"].get("nightlies", 1))
        for row in data["rows"]:
            if row["mode"] != "stored":
                continue
            key = (row["condition"], nightlies, row["check"], path.name)
            counts[key][rejudge(row, nightlies, policy)] += 1
            counts[key]["n"] += 1
    lines = [
        "# Stored mode, recorded runs re-read under the final rule",
        "",
        f"Not a fresh measurement: the verdict fields recorded by each run below, re-read by "
        f"`bench/verdict_trust_rejudge.py` with MEASURED_RUNS={MEASURED_RUNS}, "
        f"MAX_THRESHOLD_FACTOR={MAX_THRESHOLD_FACTOR:g}, threshold {policy.threshold:.0%}.",
        "",
        "| condition | nightly runs | check | run file | n | REGRESSED | IMPROVED | PASS | NOT JUDGED |",
        "|---|--:|---|---|--:|--:|--:|--:|--:|",
    ]
    for (condition, nightlies, check, name), c in sorted(counts.items()):
        lines.append(
            f"| {condition} | {nightlies} | `{check}` | {name} | {c['n']} | {c['REGRESSED']} | {c['IMPROVED']} "
            f"| {c['PASS']} | {c['NOT JUDGED']} |"
        )
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

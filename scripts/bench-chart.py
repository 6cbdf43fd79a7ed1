#!/usr/bin/env python3
"""Renders the figures of `make bench` (results/bench.json) as a PNG for the README."""
import json
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(source: str, target: str) -> None:
    with open(source) as handle:
        report = json.load(handle)
    machine = report["machine"]
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(15, 5))

    runs = report["throughput"]
    # Each case's relay rate beside what it is held against (PostgreSQL alone marking, the relay
    # on one key, or the fair limit of PostgreSQL fetching and Redis pushing alone).
    short = {"PostgreSQL alone marking": "PG marking", "relay on 1 key": "relay, 1 key", "fair limit": "fair limit"}
    cases = [
        "\n".join(textwrap.wrap(run["case"], 14)) + "\nvs " + short.get(run.get("baseline", "PostgreSQL alone marking"), run.get("baseline"))
        for run in runs
    ]
    positions = range(len(cases))
    relay = [run["relay_jobs_per_s"] for run in runs]
    baseline = [run.get("baseline_per_s", run.get("postgres_rows_per_s")) for run in runs]
    throughput.bar([p - 0.2 for p in positions], baseline, width=0.4, label="baseline", color="#9aa5b1")
    throughput.bar([p + 0.2 for p in positions], relay, width=0.4, label="outbox-relay", color="#2f6fb0")
    for p, run in zip(positions, runs):
        text, color = f"{run['ratio']:.2f}x", "black"
        if "goal_ratio" in run:
            text += f"\n(goal {run['goal_ratio']:.2f})"
            color = "black" if run["meets_goal"] else "#c0392b"
        throughput.annotate(text, (p + 0.2, run["relay_jobs_per_s"]), ha="center", va="bottom", fontsize=8, color=color)
    throughput.axhline(1500, color="#c0392b", linestyle="--", linewidth=1, label="res_outbox (about 1,500/s)")
    throughput.set_xticks(list(positions), cases, fontsize=7)
    throughput.set_ylabel("jobs per second")
    throughput.set_title(f"Throughput, {report['rows']:,} rows")
    throughput.legend(fontsize=8)

    def label(run):
        if run.get("producer") == "pgbench":
            return f"{run['rate']}/s\nPoisson\n{run['label'].split(', ')[-1]}"
        return f"{run['rate']}/s\n{'NOTIFY' if run['notify'] else 'polling'}"

    labels = [label(run) for run in report["latency"]]
    spots = range(len(labels))
    for offset, key, color in ((-0.25, "p50_ms", "#2f6fb0"), (0.0, "p99_ms", "#e67e22"), (0.25, "max_ms", "#9aa5b1")):
        latency.bar([s + offset for s in spots], [run[key] for run in report["latency"]], width=0.25, label=key[:-3], color=color)
    goals = {run["goal_p99_ms"] for run in report["latency"] if "goal_p99_ms" in run}
    for goal in goals:
        latency.axhline(goal, color="#c0392b", linestyle="--", linewidth=1, label=f"goal: p99 ≤ {goal:g} ms (Poisson runs)")
    latency.set_yscale("log")
    latency.set_xticks(list(spots), labels, fontsize=8)
    latency.set_ylabel("commit to Redis, ms (log scale)")
    latency.set_title("Latency")
    latency.legend(fontsize=8)

    figure.suptitle(f"outbox-relay, {machine['date']}, {machine['cores']} cores, PostgreSQL {machine['postgres'].split()[0]}, Redis {machine['redis']}")
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    print(f"chart written to {target}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

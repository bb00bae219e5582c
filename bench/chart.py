"""A PNG of the benchmark: throughput at 64 connections and p50 latency at 1 connection."""

from __future__ import annotations

from pathlib import Path

__all__ = ["draw_chart"]


def draw_chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name in results["scenarios"] if results["scenarios"][name].get("c64")]
    rps = [results["scenarios"][n]["c64"]["rps"] for n in names]
    p50 = [results["scenarios"][n]["c1"]["p50_ms"] for n in names]
    colors = ["#8a94a6" if not n.startswith("gateway") else "#2f5bd3" for n in names]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    left.barh(names, rps, color=colors)
    left.set_title("Throughput, 64 connections (req/s, higher is better)")
    for index, value in enumerate(rps):
        left.text(value, index, f" {value:,.0f}", va="center", fontsize=8)
    right.barh(names, p50, color=colors)
    right.set_title("Latency p50, 1 connection (ms, lower is better)")
    for index, value in enumerate(p50):
        right.text(value, index, f" {value:.2f}", va="center", fontsize=8)
    for axis in (left, right):
        axis.invert_yaxis()
        axis.spines[["top", "right"]].set_visible(False)
        axis.tick_params(labelsize=8)
    figure.suptitle(f"make bench - {results['date']} - {results['machine']['cpus']} CPUs", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)

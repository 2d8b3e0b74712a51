"""The results: targets checked, the table printed, the JSON written, the plot drawn.

python -m bench.report [bench/results/latest.json]   # the table again, and the plot redrawn
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

# The targets of the benchmark issue; ratios are matchcast / baseline from the same run.
CPU_RATIO_MAX = 1.5
P99_AT_3K_MAX_MS = 100.0
P99_RATIO_AT_5K_MAX = 1.3
IDLE_KB_AT_10K_MAX = 40.0
FLAT_COST_MAX = 1.25  # marginal CPU per frame, largest size over smallest, within 1/1.25 .. 1.25: "roughly flat"
JOIN_RATIO_MAX = 1.10  # server CPU per connect + disconnect, viewer counting on (default interval) / off
DEFAULT_VIEWERS_INTERVAL_MS = 2000


def ratios(matchcast: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for mine, base in zip(matchcast, baseline, strict=True):
        out.append(
            {
                "spectators": mine["spectators"],
                **{
                    key: mine[key] / base[key] if base[key] else float("nan")
                    for key in ("p50_ms", "p95_ms", "p99_ms", "cpu_us_per_frame", "frames_per_s")
                },
            }
        )
    return out


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def check(stack: str, name: str, value: float, limit: float, met: bool) -> None:
        found.append({"stack": stack, "target": name, "value": value, "limit": limit, "met": bool(met)})

    for stack, run in results["stacks"].items():
        fan = run.get("fanout")
        if fan:
            by_size = {r["spectators"]: r for r in fan["ratio"]}
            mine = {r["spectators"]: r for r in fan["matchcast"]}
            small, large = min(mine), max(mine)
            for size in sorted({small, large}):
                check(
                    stack,
                    f"CPU per frame at {size}, x baseline",
                    by_size[size]["cpu_us_per_frame"],
                    CPU_RATIO_MAX,
                    by_size[size]["cpu_us_per_frame"] <= CPU_RATIO_MAX,
                )
            check(
                stack,
                f"delivery at {large}",
                mine[large]["delivery"],
                1.0,
                mine[large]["delivery"] >= 1.0 and mine[large]["closed_by_server"] == 0,
            )
            check(
                stack,
                f"sockets closed by the server at {large}",
                mine[large]["closed_by_server"],
                0,
                mine[large]["closed_by_server"] == 0,
            )
            middle = 3000 if 3000 in mine else sorted(mine)[len(mine) // 2]
            check(
                stack,
                f"p99 at {middle}, ms",
                mine[middle]["p99_ms"],
                P99_AT_3K_MAX_MS,
                mine[middle]["p99_ms"] <= P99_AT_3K_MAX_MS,
            )
            check(
                stack,
                f"p99 at {large}, x baseline",
                by_size[large]["p99_ms"],
                P99_RATIO_AT_5K_MAX,
                by_size[large]["p99_ms"] <= P99_RATIO_AT_5K_MAX,
            )
            key = "marginal_us_per_frame" if "marginal_us_per_frame" in mine[large] else "cpu_us_per_frame"
            # Tiny smoke sizes can measure no CPU at all (/proc counts 10 ms ticks): then no ratio.
            flat = mine[large][key] / mine[small][key] if mine[small][key] > 0 else math.nan
            check(
                stack,
                f"marginal CPU per frame {large} / {small}",
                flat,
                FLAT_COST_MAX,
                1 / FLAT_COST_MAX <= flat <= FLAT_COST_MAX,
            )
        idle = run.get("idle")
        if idle:
            last = idle[-1]
            check(
                stack,
                f"KB per idle socket at {last['sockets']}",
                last["kb_per_socket"],
                IDLE_KB_AT_10K_MAX,
                last["kb_per_socket"] <= IDLE_KB_AT_10K_MAX,
            )
        joins = run.get("joins")
        if joins and joins["ratio"]:
            # The first interval measured is the default one; the shorter ones show the trend.
            first = joins["ratio"][0]
            interval = first["interval_ms"]
            suffix = "" if interval == DEFAULT_VIEWERS_INTERVAL_MS else f" ({interval} ms)"
            # Tiny smoke sizes can measure no CPU with counting off (10 ms ticks): then no ratio (nan, not met).
            check(
                stack,
                "CPU per join, counting on / off" + suffix,
                first["us_per_join"],
                JOIN_RATIO_MAX,
                first["us_per_join"] <= JOIN_RATIO_MAX,
            )
    return found


def _f(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[_f(v) if not isinstance(v, str) else v for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table(results: dict[str, Any]) -> str:
    parts = []
    idle_rows = []
    for stack, run in results["stacks"].items():
        for r in run.get("idle", []):
            idle_rows.append(
                [
                    f"matchcast {stack}",
                    r["sockets"],
                    r["kb_per_socket"],
                    r["rss_kb"] / 1024,
                    r["idle_cpu_pct"],
                    r["connect_per_s"],
                ]
            )
    for r in results.get("baseline_idle", []):
        idle_rows.append(
            ["baseline", r["sockets"], r["kb_per_socket"], r["rss_kb"] / 1024, r["idle_cpu_pct"], r["connect_per_s"]]
        )
    if idle_rows:
        parts.append(
            "Idle sockets (one match)\n"
            + _table(["server", "sockets", "KB/socket", "RSS MB", "idle CPU %", "connects/s"], idle_rows)
        )
    fan_rows = []
    for stack, run in results["stacks"].items():
        fan = run.get("fanout")
        if not fan:
            continue
        for mine, base, ratio in zip(fan["matchcast"], fan["baseline"], fan["ratio"], strict=True):
            for name, r in ((f"matchcast {stack}", mine), ("baseline", base)):
                fan_rows.append(
                    [
                        name,
                        r["spectators"],
                        r["p50_ms"],
                        r["p95_ms"],
                        r["p99_ms"],
                        r["max_ms"],
                        r["frames_per_s"] / 1000,
                        r["cpu_us_per_frame"],
                        r["server_cpu_pct"],
                        f"{r['delivery']:.4f}",
                        r["closed_by_server"],
                    ]
                )
            fan_rows.append(
                [
                    "  ratio",
                    mine["spectators"],
                    *(f"x{ratio[k]:.2f}" for k in ("p50_ms", "p95_ms", "p99_ms")),
                    "",
                    f"x{ratio['frames_per_s']:.2f}",
                    f"x{ratio['cpu_us_per_frame']:.2f}",
                    "",
                    "",
                    "",
                ]
            )
    if fan_rows:
        interval = results.get("meta", {}).get("plan", {}).get("interval", 0.3)
        parts.append(
            f"Fan-out (score updates {interval * 1000:g} ms apart; latency publish -> receive)\n"
            + _table(
                [
                    "server",
                    "spectators",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "max ms",
                    "kframes/s",
                    "CPU us/frame",
                    "server CPU %",
                    "delivery",
                    "closed",
                ],
                fan_rows,
            )
        )
    cost_rows = []
    for stack, run in results["stacks"].items():
        for key, cost in run.get("update_cost", {}).items():
            name = f"matchcast {stack}" if key == "matchcast" else f"baseline ({stack} run)"
            marginal = [r["marginal_us_per_frame"] for r in run["fanout"][key]]
            cost_rows.append(
                [
                    name,
                    cost["ms_per_update"],
                    cost["latency_p50_ms"],
                    cost["latency_p99_ms"],
                    " / ".join(f"{m:.1f}" for m in marginal),
                ]
            )
    if cost_rows:
        sizes = " / ".join(str(r["spectators"]) for r in next(iter(results["stacks"].values()))["fanout"]["matchcast"])
        parts.append(
            "Cost of an update besides its fan-out (few spectators), and of each frame beyond it\n"
            + _table(
                ["server", "CPU ms/update", "latency p50 ms", "p99 ms", f"marginal CPU us/frame at {sizes}"], cost_rows
            )
        )
    stream_rows = []
    for stack, run in results["stacks"].items():
        s = run.get("stream")
        if s:
            stream_rows.append(
                [
                    f"matchcast {stack}",
                    s["spectators"],
                    s["updates_sent"],
                    s["frames_per_window_min"],
                    s["frames_per_window_median"],
                    s["max_gap_ms_median"],
                    s["max_gap_ms_worst"],
                    f"{s['last_value_intact']}/{s['spectators']}",
                    s["closed_by_server"],
                ]
            )
    if stream_rows:
        plan = results.get("meta", {}).get("plan", {})
        title = (
            f"Score stream ({plan.get('stream_rate', 50):g} updates/s for {plan.get('stream_seconds', 10):g} s, "
            f"{plan.get('batch_window_ms', 100):g} ms window)"
        )
        parts.append(
            title
            + "\n"
            + _table(
                [
                    "server",
                    "spectators",
                    "updates",
                    "frames/window min",
                    "median",
                    "longest gap ms median",
                    "worst",
                    "last value intact",
                    "closed",
                ],
                stream_rows,
            )
        )
    join_rows = []
    join_title = ""
    for stack, run in results["stacks"].items():
        joins = run.get("joins")
        if not joins:
            continue
        off = next(r for r in joins["rows"] if not r["counting"])
        ratio = {r["interval_ms"]: r for r in joins["ratio"]}
        for r in joins["rows"]:
            join_rows.append(
                [
                    f"matchcast {stack}",
                    f"{r['interval_ms']} ms" if r["counting"] else "off",
                    r["joins"],
                    r["us_per_connect"],
                    r["us_per_disconnect"],
                    r["us_per_join"],
                    f"x{ratio[r['interval_ms']]['us_per_join']:.2f}" if r["counting"] else "",
                    r["viewers_frames_per_join"],
                    r["connects_per_s"],
                    f"{r['idle_cpu_pct_open']:.2f} / {r['idle_cpu_pct_anchors']:.2f}",
                ]
            )
        join_title = (
            f"Joins ({joins['joins']} guest spectators connect, {joins['concurrency']} in flight, "
            f"then drop, per sample; {off['samples']} samples per server; CPU us per spectator; "
            f"idle CPU with {off['idle_sockets']} / {off['anchors']} sockets open)"
        )
    if join_rows:
        parts.append(
            join_title
            + "\n"
            + _table(
                [
                    "server",
                    "viewer counts",
                    "joins",
                    "connect us",
                    "disconnect us",
                    "us/join",
                    "x off",
                    "viewers frames/join",
                    "connects/s",
                    "idle CPU % open / anchors",
                ],
                join_rows,
            )
        )
    checks = results.get("targets", [])
    if checks:
        parts.append(
            "Targets\n"
            + _table(
                ["stack", "target", "value", "limit", "met"],
                [
                    [t["stack"], t["target"], f"{t['value']:.2f}", f"{t['limit']:g}", "yes" if t["met"] else "NO"]
                    for t in checks
                ],
            )
        )
    return "\n\n".join(parts)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((lat, cpu), (mem, cdf)) = plt.subplots(2, 2, figsize=(12, 9))
    colors = {"memory-sqlite": "tab:blue", "redis-postgres": "tab:orange"}
    for stack, run in results["stacks"].items():
        fan = run.get("fanout")
        if not fan:
            continue
        color = colors.get(stack, "tab:green")
        # Each stack's baseline is the one measured in the same minutes: dashed, in the stack's colour.
        for label, rows, style in (
            (f"matchcast {stack}", fan["matchcast"], "-"),
            (f"baseline ({stack} run)", fan["baseline"], "--"),
        ):
            xs = [r["spectators"] for r in rows]
            lat.plot(xs, [r["p99_ms"] for r in rows], style, color=color, marker="o", label=f"{label} p99")
            lat.plot(xs, [r["p50_ms"] for r in rows], style, color=color, marker="x", alpha=0.4, label=f"{label} p50")
            cpu.plot(xs, [r["cpu_us_per_frame"] for r in rows], style, color=color, marker="o", label=label)
            largest = rows[-1]
            cdf.plot(
                largest["latency_cdf"], range(1, 101), style, color=color, label=f"{label} ({largest['spectators']})"
            )
    lat.axhline(P99_AT_3K_MAX_MS, color="grey", linewidth=0.8, linestyle=":")
    lat.set(title="Publish -> receive latency", xlabel="spectators", ylabel="ms")
    cpu.set(title="Server CPU per delivered frame", xlabel="spectators", ylabel="CPU us / frame", ylim=(0, None))
    cdf.set(title="Latency distribution at the largest size", xlabel="ms", ylabel="% of frames delivered")
    for stack, run in results["stacks"].items():
        idle = run.get("idle")
        if idle:
            mem.plot(
                [r["sockets"] for r in idle],
                [r["kb_per_socket"] for r in idle],
                "-o",
                color=colors.get(stack, "tab:green"),
                label=f"matchcast {stack}",
            )
    if results.get("baseline_idle"):
        rows = results["baseline_idle"]
        mem.plot(
            [r["sockets"] for r in rows], [r["kb_per_socket"] for r in rows], "--o", color="black", label="baseline"
        )
    mem.axhline(IDLE_KB_AT_10K_MAX, color="grey", linewidth=0.8, linestyle=":")
    mem.set(title="Server memory per idle socket (RSS)", xlabel="sockets", ylabel="KB", ylim=(0, None))
    for ax in (lat, cpu, mem, cdf):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"matchcast benchmarks ({results['meta']['date']}, {results['meta']['machine']})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else Path(__file__).parent / "results" / "latest.json"
    results = json.loads(path.read_text())
    results["targets"] = targets(results)
    print(table(results))
    write_json(results, path)
    plot(results, path.with_name("plot.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

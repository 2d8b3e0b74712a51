"""The results: the tables printed, the JSON written, the plot drawn (the targets: bench/targets.py).

python -m bench.report [bench/results/latest.json]   # the tables again, and the plot redrawn
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from bench import targets as goals
from bench.servers import BASELINES


def ratios(matchcast: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for mine, base in zip(matchcast, baseline, strict=True):
        out.append(
            {
                "spectators": mine["spectators"],
                **{
                    # Smoke sizes can measure no CPU at all (10 ms ticks; a difference of floats): no ratio then.
                    key: mine[key] / base[key] if base[key] > 1e-9 else float("nan")
                    for key in ("p50_ms", "p95_ms", "p99_ms", "cpu_us_per_frame", "frames_per_s")
                },
            }
        )
    return out


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    return goals.evaluate(results)


def server_name(key: str, stack: str) -> str:
    return f"matchcast {stack}" if key == "matchcast" else BASELINES.get(key, key)


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


def idle_table(results: dict[str, Any]) -> str | None:
    runs = [(f"matchcast {stack}", run.get("idle", [])) for stack, run in results["stacks"].items()]
    runs += [(BASELINES.get(key, key), rows) for key, rows in results.get("baselines_idle", {}).items()]
    rows = [
        [
            name,
            r["sockets"],
            r["kb_per_socket"],
            r["rss_kb"] / 1024,
            r["idle_cpu_pct"],
            r.get("wakeups_per_s", math.nan),  # not in results from before 2026-12-06
            r["connect_per_s"],
        ]
        for name, idle in runs
        for r in idle
    ]
    if not rows:
        return None
    header = ["server", "sockets", "KB/socket", "RSS MB", "idle CPU %", "wakeups/s", "connects/s"]
    return "Idle sockets (one match)\n" + _table(header, rows)


def fanout_table(results: dict[str, Any]) -> str | None:
    rows: list[list[Any]] = []
    for stack, run in results["stacks"].items():
        fan = run.get("fanout")
        if not fan:
            continue
        keys = [key for key in fan if key != "ratio"]
        for i, mine in enumerate(fan["matchcast"]):
            for key in keys:
                r = fan[key][i]
                rows.append(
                    [
                        server_name(key, stack),
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
            for key, ratio_rows in fan["ratio"].items():
                ratio = ratio_rows[i]
                rows.append(
                    [
                        f"  matchcast x {BASELINES.get(key, key)}",
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
    if not rows:
        return None
    interval = results.get("meta", {}).get("plan", {}).get("interval", 0.3)
    header = ["server", "spectators", "p50 ms", "p95 ms", "p99 ms", "max ms", "kframes/s", "CPU us/frame"]
    header += ["server CPU %", "delivery", "closed"]
    return f"Fan-out (score updates {interval * 1000:g} ms apart; latency publish -> receive)\n" + _table(header, rows)


def cost_table(results: dict[str, Any]) -> str | None:
    rows = []
    sizes = ""
    for stack, run in results["stacks"].items():
        for key, cost in run.get("update_cost", {}).items():
            name = f"matchcast {stack}" if key == "matchcast" else f"{server_name(key, stack)} ({stack} run)"
            marginal = [r["marginal_us_per_frame"] for r in run["fanout"][key]]
            sizes = " / ".join(str(r["spectators"]) for r in run["fanout"][key])
            rows.append(
                [
                    name,
                    cost["ms_per_update"],
                    cost["latency_p50_ms"],
                    cost["latency_p99_ms"],
                    " / ".join(f"{m:.1f}" for m in marginal),
                ]
            )
    if not rows:
        return None
    header = ["server", "CPU ms/update", "latency p50 ms", "p99 ms", f"marginal CPU us/frame at {sizes}"]
    return "Cost of an update besides its fan-out (few spectators), and of each frame beyond it\n" + _table(
        header, rows
    )


def stream_table(results: dict[str, Any]) -> str | None:
    rows = []
    for stack, run in results["stacks"].items():
        s = run.get("stream")
        if s:
            rows.append(
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
    if not rows:
        return None
    plan = results.get("meta", {}).get("plan", {})
    title = (
        f"Score stream ({plan.get('stream_rate', 50):g} updates/s for {plan.get('stream_seconds', 10):g} s, "
        f"{plan.get('batch_window_ms', 100):g} ms window)"
    )
    header = ["server", "spectators", "updates", "frames/window min", "median", "longest gap ms median", "worst"]
    header += ["last value intact", "closed"]
    return title + "\n" + _table(header, rows)


def joins_table(results: dict[str, Any]) -> str | None:
    rows = []
    title = ""
    for run in results["stacks"].values():
        joins = run.get("joins")
        if not joins:
            continue
        ratio = {r["interval_ms"]: r for r in joins["ratio"]}
        off = next((r for r in joins["rows"] if r["kind"] == "matchcast" and not r["counting"]), None)
        for r in joins["rows"]:
            counted = r["kind"] == "matchcast"
            x_off = ratio[r["interval_ms"]]["us_per_join"] if counted and r["counting"] and not r["logged_in"] else None
            rows.append(
                [
                    r["server"],
                    "logged in" if r["logged_in"] else "guests",
                    r["joins"],
                    r["connects_per_s"],
                    r["connects_per_cpu_s"],
                    r["us_per_connect"],
                    r["us_per_disconnect"],
                    r["us_per_join"],
                    f"x{x_off:.2f}" if x_off is not None else "",
                    r["viewers_frames_per_join"] if counted else "",
                    f"{r['idle_cpu_pct_open']:.2f} / {r['idle_cpu_pct_anchors']:.2f}"
                    if not math.isnan(r["idle_cpu_pct_open"])
                    else "",
                ]
            )
        if off is not None:
            title = (
                f"Joins ({joins['joins']} spectators connect, {joins['concurrency']} in flight, then drop, per "
                f"sample; {off['samples']} samples per row; joins/s until the last connection_established, and "
                f"per second of server CPU; CPU us per spectator; idle CPU with {off['idle_sockets']} / "
                f"{off['anchors']} sockets open)"
            )
    if not rows:
        return None
    header = ["server", "who", "joins", "joins/s", "joins/CPU s", "connect us", "disconnect us", "us/join", "x off"]
    header += ["viewers frames/join", "idle CPU % open / anchors"]
    return title + "\n" + _table(header, rows)


def targets_table(checks: list[dict[str, Any]], issue: str, title: str) -> str | None:
    rows = []
    for t in checks:
        if t["issue"] != issue:
            continue
        value = "not run" if t["value"] is None else f"{t['value']:.2f}"
        met = "not run" if t["met"] is None else "yes" if t["met"] else "no"
        rows.append([t["stack"], t["target"], value, f"{t['limit']:.2f}".rstrip("0").rstrip("."), met])
    return title + "\n" + _table(["stack", "target", "value", "limit", "met"], rows) if rows else None


def table(results: dict[str, Any]) -> str:
    checks = results.get("targets", [])
    parts = [
        idle_table(results),
        fanout_table(results),
        cost_table(results),
        stream_table(results),
        joins_table(results),
        targets_table(checks, goals.BENCHMARKS, "Targets of the benchmarks issue (x the uvicorn + Starlette baseline)"),
        targets_table(checks, goals.ISSUE_17, "Targets (issue 17: against the picows baseline of this run)"),
    ]
    return "\n\n".join(part for part in parts if part)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")


# matchcast in a colour per stack, solid; each baseline in its own colour, dashed in the memory-sqlite
# run and dotted in the redis-postgres one (each stack's baselines are those measured beside it).
COLORS = {"memory-sqlite": "tab:blue", "redis-postgres": "tab:orange"}
BASELINE_COLORS = {"baseline": "black", "picows": "tab:green", "node": "tab:red"}
STACK_STYLES = {"memory-sqlite": "--", "redis-postgres": ":"}


def line_style(key: str, stack: str) -> tuple[str, str]:
    if key == "matchcast":
        return "-", COLORS.get(stack, "tab:purple")
    return STACK_STYLES.get(stack, "-."), BASELINE_COLORS.get(key, "tab:grey")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((lat, cpu), (mem, cdf)) = plt.subplots(2, 2, figsize=(13, 10))
    for stack, run in results["stacks"].items():
        fan = run.get("fanout")
        if not fan:
            continue
        for key in (k for k in fan if k != "ratio"):
            rows = fan[key]
            style, color = line_style(key, stack)
            label = server_name(key, stack) if key == "matchcast" else f"{server_name(key, stack)} ({stack} run)"
            xs = [r["spectators"] for r in rows]
            lat.plot(xs, [r["p99_ms"] for r in rows], style, color=color, marker="o", label=f"{label} p99")
            cpu.plot(xs, [r["cpu_us_per_frame"] for r in rows], style, color=color, marker="o", label=label)
            largest = rows[-1]
            cdf.plot(
                largest["latency_cdf"], range(1, 101), style, color=color, label=f"{label} ({largest['spectators']})"
            )
    lat.axhline(goals.P99_AT_3K_MAX_MS, color="grey", linewidth=0.8, linestyle=":")
    lat.set(title="Publish -> receive latency, p99", xlabel="spectators", ylabel="ms")
    cpu.set(title="Server CPU per delivered frame", xlabel="spectators", ylabel="CPU us / frame", ylim=(0, None))
    cdf.set(title="Latency distribution at the largest size", xlabel="ms", ylabel="% of frames delivered")
    idle_runs = [("matchcast", stack, run.get("idle")) for stack, run in results["stacks"].items()]
    idle_runs += [(key, "", rows) for key, rows in results.get("baselines_idle", {}).items()]
    for key, stack, idle in idle_runs:
        if idle:
            style, color = line_style(key, stack)
            xs = [r["sockets"] for r in idle]
            mem.plot(
                xs, [r["kb_per_socket"] for r in idle], style, marker="o", color=color, label=server_name(key, stack)
            )
    mem.axhline(goals.IDLE_KB_MAX, color="grey", linewidth=0.8, linestyle=":")
    mem.set(title="Server memory per idle socket (RSS)", xlabel="sockets", ylabel="KB", ylim=(0, None))
    for ax in (lat, cpu, mem, cdf):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a scenario left out draws nothing
            ax.legend(fontsize=6)
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

#!/usr/bin/env python3
"""The summary of `./dev bench`: one table of every path measured (Chronicle's figure, the
baseline's, the ratio, the goal), printed, and the same as Markdown with a latency-under-load
plot (SVG) in the bench directory.

    report.py DIR [NAME...]

DIR holds the `<name>.json` each benchmark writes (e2e/src/bench.rs); NAMEs limit the
summary to those benchmarks (default: every report in DIR). Standard library only.
"""

import datetime
import html
import json
import os
import platform
import sys

ORDER = ["relay", "commands", "projector", "replay", "system"]


def load(directory, names):
    reports = []
    wanted = names or [n for n in ORDER if os.path.exists(os.path.join(directory, n + ".json"))]
    for name in wanted:
        path = os.path.join(directory, name + ".json")
        if not os.path.exists(path):
            print(f"bench report: {name}: no report (did it fail?)", file=sys.stderr)
            continue
        with open(path, encoding="utf-8") as handle:
            reports.append(json.load(handle))
    return reports


def number(value, unit):
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.1f}"
    if unit == "count":
        return f"{value:.0f}"
    return f"{value:,.0f}"


def verdict(row):
    met = row.get("met")
    return "" if met is None else ("met" if met else "MISSED")


def table(reports):
    header = ["benchmark", "path", "chronicle", "baseline", "unit", "ratio", "goal", ""]
    rows = []
    for report in reports:
        for row in report["rows"]:
            rows.append([
                report["bench"],
                row["path"],
                number(row["chronicle"], row["unit"]),
                number(row.get("baseline"), row["unit"]),
                row["unit"],
                "-" if row.get("ratio") is None else f"{row['ratio']:.2f}x",
                row.get("goal") or "",
                verdict(row),
            ])
    return header, rows


def print_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    def line(cells):
        return "  ".join(str(c).rjust(w) if 2 <= i <= 5 else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    print(line(header))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))


def svg_plot(reports):
    """Latency (p50 solid, p99 dashed) against throughput, one colour per series."""
    points = [p for r in reports for p in r.get("load", [])]
    if not points:
        return None
    series = []
    for point in points:
        if point["series"] not in series:
            series.append(point["series"])
    width, height, left, right, top, bottom = 760, 420, 70, 250, 30, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    max_x = max(p["throughput"] for p in points) * 1.05 or 1
    max_y = max(p["p99_ms"] for p in points) * 1.1 or 1
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

    def sx(x):
        return left + plot_w * x / max_x

    def sy(y):
        return top + plot_h * (1 - y / max_y)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="13">Latency under load (p50 solid, p99 dashed)</text>']
    for i in range(6):
        y = max_y * i / 5
        out.append(f'<line x1="{left}" y1="{sy(y):.1f}" x2="{left + plot_w}" y2="{sy(y):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:.0f}</text>')
        x = max_x * i / 5
        out.append(f'<text x="{sx(x):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{x:.0f}</text>')
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 12}" text-anchor="middle">throughput (per second)</text>')
    out.append(f'<text x="16" y="{top + plot_h / 2}" transform="rotate(-90 16 {top + plot_h / 2})" '
               f'text-anchor="middle">latency (ms)</text>')
    for index, name in enumerate(series):
        colour = colours[index % len(colours)]
        mine = sorted((p for p in points if p["series"] == name), key=lambda p: p["throughput"])
        for key, dash in (("p50_ms", ""), ("p99_ms", ' stroke-dasharray="5,4"')):
            path = " ".join(f'{sx(p["throughput"]):.1f},{sy(p[key]):.1f}' for p in mine)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
            for p in mine:
                out.append(f'<circle cx="{sx(p["throughput"]):.1f}" cy="{sy(p[key]):.1f}" r="3" fill="{colour}"/>')
        ly = top + 14 + index * 18
        out.append(f'<line x1="{left + plot_w + 15}" y1="{ly - 4}" x2="{left + plot_w + 35}" y2="{ly - 4}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{left + plot_w + 40}" y="{ly}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def markdown(reports, header, rows, plot_file):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Chronicle benchmarks",
        "",
        f"Measured {now} on {platform.node()} ({os.cpu_count()} CPUs). Every figure is against a raw",
        "baseline measured on the same machine in the same run; the ratio is what compares across",
        "machines.",
        "",
        "| " + " | ".join(header[:-1]) + " | |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    if plot_file:
        lines += ["", f"![latency under load]({plot_file})"]
    notes = [(r["bench"], n) for r in reports for n in r.get("notes", [])]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {bench}: {note}" for bench, note in notes]
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    directory, names = sys.argv[1], sys.argv[2:]
    reports = load(directory, names)
    if not reports:
        print("bench report: nothing to summarize", file=sys.stderr)
        return 1
    header, rows = table(reports)
    print()
    print_table(header, rows)
    plot = svg_plot(reports)
    plot_file = None
    if plot:
        plot_file = "latency.svg"
        with open(os.path.join(directory, plot_file), "w", encoding="utf-8") as handle:
            handle.write(plot)
    report_path = os.path.join(directory, "report.md")
    with open(report_path, "w", encoding="utf-8") as handle:
        handle.write(markdown(reports, header, rows, plot_file))
    print()
    print(f"report: {report_path}" + (f", plot: {os.path.join(directory, plot_file)}" if plot_file else ""))
    missed = [r for r in rows if r[-1] == "MISSED"]
    if missed:
        print(f"{len(missed)} goal(s) missed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

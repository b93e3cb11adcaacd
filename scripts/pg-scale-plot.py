#!/usr/bin/env python3
"""Plots the cost curves written by scripts/pg-scale (needs matplotlib).

    pg-scale-plot.py SCALE_CSV --fsync-ms 10 --scan-ms 100 --out scale.png

One panel per measure against the number of shapes (log scale), each with its target.
"""

import argparse
import csv


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv")
    p.add_argument("--fsync-ms", type=float, required=True)
    p.add_argument("--scan-ms", type=float, required=True)
    p.add_argument("--out", default="scale.png")
    a = p.parse_args()
    with open(a.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def col(name):
        out = []
        for r in rows:
            try:
                out.append(float(r[name]))
            except ValueError:
                out.append(float("nan"))
        return out

    x = col("shapes")
    panels = [
        ("throughput vs pg_recvlogical (x)", [("ratio_vs_recvlogical", "ratio", "o-")], 0.5, "min 0.5"),
        ("tracker CPU share (%)", [("tracker_cpu_share", "share", "o-")], 2.0, "max 2%"),
        ("acknowledgement lag (ms)", [("ack_lag_p50_ms", "p50", "o-"), ("ack_lag_p99_ms", "p99", "s-")],
         a.fsync_ms + 2 * a.scan_ms, "max fsync + 2 scans"),
        ("scan duration (ms)", [("scan_p50_ms", "p50", "o-"), ("scan_p99_ms", "p99", "s-")], 5.0, "max 5 ms"),
        ("pipeline RSS (MB)", [("rss_mb", "peak RSS", "o-")], None, None),
        ("tracker heap (bytes per shape)", [("bytes_per_shape", "bytes", "o-")], 160.0, "max 160"),
        ("wedge to eviction (s)", [("evict_after_s", "measured", "o-"), ("evict_bound_s", "bound", "--")], None, None),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5), dpi=100)
    for ax, (title, series, target, tlabel) in zip(axes.flat, panels):
        top = target or 0.0
        for name, label, style in series:
            y = col(name)
            if name == "tracker_cpu_share":
                y = [v * 100 for v in y]
            ax.plot(x, y, style, label=label)
            top = max([top] + [v for v in y if v == v])
        if target is not None:
            ax.axhline(target, color="#c0392b", linestyle=":", label=tlabel)
        ax.set_xscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("shapes", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.set_ylim(0, top * 1.15 if top > 0 else 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes.flat[-1].axis("off")
    axes.flat[-1].text(0, 0.5, "pg-pipeline on a real PostgreSQL\n(scripts/pg-scale)\n\n"
                       f"group fsync {a.fsync_ms:g} ms, scan {a.scan_ms:g} ms\n"
                       "8 consumer threads, a write-ahead log each,\nshape files written behind;\n4 tables, shapes id % N = k",
                       fontsize=9, va="center")
    fig.tight_layout()
    fig.savefig(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

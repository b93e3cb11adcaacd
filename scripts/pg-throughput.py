#!/usr/bin/env python3
"""Plots the throughput comparison written by scripts/pg-e2e (needs matplotlib).

    pg-throughput.py THROUGHPUT_CSV --share FRACTION --shapes N --out PNG

CSV columns: drainer, commits, seconds, tx_per_s (one row for pg_recvlogical, one for
pg-pipeline).
"""

import argparse
import csv


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv")
    p.add_argument("--share", type=float, required=True)
    p.add_argument("--shapes", type=int, required=True)
    p.add_argument("--out", default="throughput.png")
    a = p.parse_args()
    with open(a.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["drainer"] for r in rows]
    rates = [float(r["tx_per_s"]) for r in rows]
    labels = {
        "pg_recvlogical": "pg_recvlogical\n(pgoutput to /dev/null)",
        "pg-pipeline": f"pg-pipeline\n({a.shapes} shapes, fsynced files)",
    }
    fig, ax = plt.subplots(figsize=(8, 3.8), dpi=110)
    bars = ax.barh([labels.get(n, n) for n in names], rates, color=["#7f8c8d", "#2471a3"][: len(rows)])
    for b, r, row in zip(bars, rates, rows):
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {r:,.0f} tx/s ({float(row['seconds']):.1f} s)",
                va="center", fontsize=9)
    ax.set_xlim(0, max(rates) * 1.35)
    ax.set_xlabel("transactions per second, draining the same backlog")
    commits = int(rows[0]["commits"])
    ratio = rates[-1] / rates[0] if rates[0] else 0
    ax.set_title(f"Draining {commits:,} small transactions: pg-pipeline at {ratio:.2f}x the server's own rate,\n"
                 f"the tracker {a.share * 100:.2f}% of the pipeline's CPU", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

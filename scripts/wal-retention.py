#!/usr/bin/env python3
"""Checks and plots the retained-WAL series written by scripts/pg-e2e.

    wal-retention.py check CSV --wedged SECS --evicted SECS   # exit 1 if the claim fails
    wal-retention.py plot  CSV --wedged SECS --evicted SECS --out PNG

CSV columns: elapsed_s, evict_bytes, report_bytes, wal_written_bytes (WAL written since the
first sample). `check` needs only the standard library; `plot` needs matplotlib.

The claim checked: after the eviction (plus a settling margin for the slot's restart_lsn to
move), the Evict slot retains less than 20% of the WAL written meanwhile (it stops growing),
while the Report slot retains at least 90% of it (it keeps growing), and at the end the Report
slot retains at least 5 times what the Evict slot does.
"""

import argparse
import csv
import sys

SETTLE_S = 2.0
MB = 1024 * 1024


def load(path):
    with open(path, newline="") as f:
        return [
            (float(r["elapsed_s"]), int(r["evict_bytes"]), int(r["report_bytes"]), int(r["wal_written_bytes"]))
            for r in csv.DictReader(f)
        ]


def check(rows, wedged, evicted):
    after = [r for r in rows if r[0] >= evicted + SETTLE_S]
    before = [r for r in rows if r[0] < wedged]
    if len(after) < 3:
        print(f"check: only {len(after)} samples after the eviction; run the workload longer")
        return False
    first, last = after[0], after[-1]
    written = last[3] - first[3]
    evict_growth = last[1] - first[1]
    report_growth = last[2] - first[2]
    evict_max_after = max(r[1] for r in after)
    evict_max_before = max((r[1] for r in before), default=0)
    report_peak = max(r[2] for r in rows)
    ok = True
    print(
        f"retained WAL before the wedge: evict max {evict_max_before / MB:.2f} MB; "
        f"after the eviction: evict max {evict_max_after / MB:.2f} MB, end {last[1] / MB:.2f} MB"
    )
    print(
        f"retained WAL with --policy report: end {last[2] / MB:.2f} MB (peak {report_peak / MB:.2f} MB); "
        f"WAL written during the run {rows[-1][3] / MB:.2f} MB"
    )
    print(
        f"from {first[0]:.1f}s to {last[0]:.1f}s: {written / MB:.2f} MB of WAL written; "
        f"evict slot retained {evict_growth / MB:+.2f} MB, report slot {report_growth / MB:+.2f} MB"
    )
    if written <= 0:
        print("check: no WAL written after the eviction")
        return False
    if evict_growth > 0.2 * written:
        print("check FAILED: the evict slot kept growing after the eviction")
        ok = False
    if report_growth < 0.9 * written:
        print("check FAILED: the report slot did not keep growing")
        ok = False
    if last[2] < 5 * max(last[1], 1):
        print("check FAILED: at the end the report slot does not retain 5x what the evict slot does")
        ok = False
    if ok:
        print(
            f"check: OK (at the end, report retains {last[2] / max(last[1], 1):.0f}x what evict retains)"
        )
    return ok


def plot(rows, wedged, evicted, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    ax.plot(t, [r[2] / MB for r in rows], color="#c0392b", lw=2, label="StallPolicy::Report (no eviction)")
    ax.plot(t, [r[1] / MB for r in rows], color="#2471a3", lw=2, label="StallPolicy::Evict (default)")
    ax.axvline(wedged, color="grey", ls="--", lw=1)
    ax.axvline(evicted, color="grey", ls=":", lw=1)
    top = max(max(r[2] for r in rows) / MB, 1)
    ax.text(wedged, top * 0.97, " consumer wedged", va="top", fontsize=9, color="dimgrey")
    ax.text(evicted, top * 0.87, " evicted", va="top", fontsize=9, color="dimgrey")
    ax.set_xlabel("seconds")
    ax.set_ylabel("WAL retained by the slot (MB)")
    ax.set_title("PostgreSQL WAL retained behind a stuck consumer, with and without stall detection", fontsize=10)
    ax.grid(alpha=0.3)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(loc="center right", fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["check", "plot"])
    p.add_argument("csv")
    p.add_argument("--wedged", type=float, required=True)
    p.add_argument("--evicted", type=float, required=True)
    p.add_argument("--out", default="wal-retained.png")
    a = p.parse_args()
    rows = load(a.csv)
    if a.command == "check":
        sys.exit(0 if check(rows, a.wedged, a.evicted) else 1)
    plot(rows, a.wedged, a.evicted, a.out)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Plots the losses frcnn-train logged (--log FILE, JSON lines) to a PNG.

Usage: docs/plot_loss.py LOSS.jsonl OUTPUT.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAMES = ["loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"]


def smooth(values, n=50):
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > n:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    steps = [r["iteration"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    total = [sum(r[n] for n in NAMES) for r in rows]
    ax.plot(steps, smooth(total), label="total", color="black", linewidth=2)
    for n in NAMES:
        ax.plot(steps, smooth([r[n] for r in rows]), label=n, linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("iteration (batch of 4)")
    ax.set_ylabel("loss (moving average of 50 iterations)")
    ax.set_title("frcnn-train: tiny preset on synthetic shapes (tests/data/make_shapes_model.sh)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(sys.argv[2])


if __name__ == "__main__":
    main()

"""Plot every --replace-schedule to docs/schedules.png (run from the repository root).

Usage: python scripts/plot_schedules.py [--out docs/schedules.png] [--updates 1000]
"""
import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fairseq_eb.schedules import SCHEDULES, schedule_fraction  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="docs/schedules.png")
    ap.add_argument("--updates", type=int, default=1000, help="N = --replace-schedule-updates")
    args = ap.parse_args()
    n = args.updates
    xs = list(range(0, int(1.5 * n) + 1, max(1, n // 200)))
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    curves = [(name, 0.0, name) for name in SCHEDULES] + [("exponential", 2.0, "exponential, shape 2"),
                                                         ("inverse_sigmoid", 5.0, "inverse_sigmoid, shape 5")]
    for name, shape, label in curves:
        ax.plot(xs, [schedule_fraction(name, x, n, shape) for x in xs], label=label,
                linestyle="--" if shape else "-")
    ax.axvline(n, color="grey", linewidth=0.8)
    ax.set_xlabel(f"update (N = --replace-schedule-updates = {n})")
    ax.set_ylabel("p_s / --replace-sample-prob")
    ax.set_title("--replace-schedule (solid: default shapes)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""The loss curve: train and validation loss against training tokens, from metrics.jsonl to a PNG.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch, no display).
Example: plot_losses("RUN/metrics.jsonl", "RUN/loss.png")
"""

from __future__ import annotations

import io
from pathlib import Path

from lightcoder.artifacts import read_jsonl, write_bytes_atomic


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl file ([] when it does not exist); a torn last line is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    return read_jsonl(path)


def plot_losses(metrics_path: str | Path, out_path: str | Path, *, title: str = "lightcoder training") -> Path:
    """Write out_path (PNG): train loss (records with "loss") and val loss ("val_loss") vs tokens."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_metrics(metrics_path)
    train = [(r["tokens"], r["loss"]) for r in records if "loss" in r and "tokens" in r]
    val = [(r["tokens"], r["val_loss"]) for r in records if "val_loss" in r and "tokens" in r]

    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train), label="train", color="tab:blue", linewidth=1.2)
    if val:
        ax.plot(*zip(*val), label="valid", color="tab:orange", marker="o", markersize=3, linewidth=1.2)
    ax.set_xlabel("training tokens")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no metrics yet", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()

    out_path = Path(out_path)
    png = io.BytesIO()
    fig.savefig(png, format="png")
    write_bytes_atomic(out_path, png.getvalue())
    return out_path

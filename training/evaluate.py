"""``fer-model evaluate``: metrics, a Markdown table and a confusion-matrix PNG for a model.

Writes into the output folder:

- ``metrics.md``: per-class precision/recall/F1 and the headline figures;
- ``metrics.json``: the same numbers, machine-readable;
- ``confusion.png``: the row-normalised confusion matrix with counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fer_tui.emotions import LABELS
from training.data import FaceSet
from training.metrics import Metrics, compute_metrics, markdown_table
from training.predict import Predictor


def evaluate(
    predict: Predictor, faces: FaceSet, out: Path, *, flip: bool = False, model_name: str = "model"
) -> dict[str, Metrics]:
    """Score ``predict`` on ``faces`` and write the report files into ``out``.

    Returns ``{"plain": ...}``, plus ``"flip"`` (flip-averaged) when ``flip`` is set;
    the table and the confusion matrix show the flip-averaged figures then.
    """
    probs = predict(faces.x)
    results = {"plain": compute_metrics(probs, faces.y)}
    if flip:
        mirrored = predict(np.ascontiguousarray(faces.x[:, :, ::-1]))
        results["flip"] = compute_metrics((probs + mirrored) / 2.0, faces.y)
    shown = results["flip"] if flip else results["plain"]
    mode = "flip-averaged" if flip else "single view"

    out.mkdir(parents=True, exist_ok=True)
    title = f"# {model_name} on {faces.source} ({len(faces)} faces, {mode})\n\n"
    extra = ""
    if flip:
        extra = (
            f"- without flip averaging: accuracy {results['plain'].accuracy:.4f}, "
            f"macro-F1 {results['plain'].macro_f1:.4f}\n"
        )
    (out / "metrics.md").write_text(title + markdown_table(shown) + extra, encoding="utf-8")
    record = {
        "model": model_name,
        "data": faces.source,
        "images": len(faces),
        **{
            mode_name: {
                **m.summary(),
                "per_class": {
                    label: {
                        "precision": round(float(m.precision[i]), 4),
                        "recall": round(float(m.recall[i]), 4),
                        "f1": round(float(m.f1[i]), 4),
                        "support": int(m.support[i]),
                    }
                    for i, label in enumerate(LABELS)
                },
                "confusion": m.confusion.tolist(),
            }
            for mode_name, m in results.items()
        },
    }
    (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    plot_confusion(shown.confusion, out / "confusion.png", f"{model_name} ({mode})")
    return results


def plot_confusion(confusion: np.ndarray, path: Path, title: str) -> None:
    """Save the confusion matrix, coloured by share of each true class, with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = confusion.sum(axis=1, keepdims=True)
    shares = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of true class")
    ticks = np.arange(len(LABELS))
    ax.set_xticks(ticks, LABELS, rotation=45, ha="right")
    ax.set_yticks(ticks, LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(LABELS)):
        for j in range(len(LABELS)):
            colour = "white" if shares[i, j] > 0.5 else "black"
            ax.text(
                j,
                i,
                f"{confusion[i, j]}\n{shares[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=8,
                color=colour,
            )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

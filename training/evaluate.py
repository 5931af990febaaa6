"""``fer-model evaluate``: metrics, a Markdown table and a confusion-matrix PNG for a model.

Writes into the output folder:

- ``metrics.md``: per-class precision/recall/F1 and the headline figures;
- ``metrics.json``: the same numbers, machine-readable;
- ``confusion.png``: the row-normalised confusion matrix with counts;
- ``reliability.png``: accuracy against confidence (the calibration error's bins).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fer_tui.classifier import combine_views
from fer_tui.emotions import LABELS
from fer_tui.preprocess import mirrored
from training.calibration import plot_reliability
from training.data import FaceSet
from training.metrics import Metrics, compute_metrics, markdown_table
from training.predict import Predictor


def evaluate(
    predict: Predictor,
    faces: FaceSet,
    out: Path,
    *,
    flip: bool = False,
    temperature: float = 1.0,
    model_name: str = "model",
) -> dict[str, Metrics]:
    """Score ``predict`` on ``faces`` and write the report files into ``out``.

    Returns ``{"plain": ...}``, plus ``"flip"`` (flip-averaged) when ``flip`` is
    set and ``"client"`` (flip averaging as set, then ``temperature``) when the
    temperature is not 1; the table, the confusion matrix and the reliability
    diagram show the last of these, the way the client runs the model.
    """
    probs = predict(faces.x)
    flipped = predict(mirrored(faces.x)) if flip else None
    results = {"plain": compute_metrics(probs, faces.y)}
    shown_probs = probs
    if flipped is not None:
        shown_probs = combine_views(probs, flipped)
        results["flip"] = compute_metrics(shown_probs, faces.y)
    if temperature != 1.0:
        shown_probs = combine_views(probs, flipped, temperature)
        results["client"] = compute_metrics(shown_probs, faces.y)
    shown = results[list(results)[-1]]
    mode = "flip-averaged" if flip else "single view"
    if temperature != 1.0:
        mode += f", T = {temperature:g}"

    out.mkdir(parents=True, exist_ok=True)
    title = f"# {model_name} on {faces.source} ({len(faces)} faces, {mode})\n\n"
    extra = ""
    if flip:
        extra = (
            f"- without flip averaging: accuracy {results['plain'].accuracy:.4f}, "
            f"macro-F1 {results['plain'].macro_f1:.4f}\n"
        )
    if "client" in results:
        before = results["flip" if flip else "plain"]
        extra += f"- before temperature scaling: expected calibration error {before.ece:.4f}\n"
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
    plot_reliability(shown_probs, faces.y, out / "reliability.png", f"{model_name} ({mode})")
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

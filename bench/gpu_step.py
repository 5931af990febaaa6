"""Training-step time of the GPU trainer: Keras layer calls vs the lowered torch forward.

``fer-model gpu`` (``training.gpu``) runs Keras 3 on torch. Each Keras layer call carries Python
work (argument checks, name scopes, dtype policies) that a small 48×48 layer's
GPU kernels do not hide, so ``training.torch_forward`` applies the same
operations to the same variables directly. This times one training step
(forward, loss, backward, AdamW) and one teacher labelling pass (inference)
both ways, interleaved over ``--rounds`` so machine noise hits both alike, on
CUDA when there is one and on the CPU otherwise. A small ``--batch`` shows the
per-step Python cost (what paces a GPU); a large one adds the arithmetic::

    KERAS_BACKEND=torch python bench/gpu_step.py            # needs the gpu extra
    KERAS_BACKEND=torch python bench/gpu_step.py --batch 8 --batch 128 --bf16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

os.environ["KERAS_BACKEND"] = "torch"  # this bench measures the torch backend only
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAYOUTS = {
    "teacher 64-128-256-512/2": ((64, 128, 256, 512), (2, 2, 2, 2)),
    "student 32-48-96-192/1,2,2,2": ((32, 48, 96, 192), (1, 2, 2, 2)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (default 8, 128)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps timed per round")
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast")
    args = parser.parse_args()

    import torch

    from training.model import build_model
    from training.torch_forward import torch_forward

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}")
    extra = " lowered bf16 ms | bf16 vs Keras |" if args.bf16 else ""
    print(f"| layout | batch | pass | Keras call ms | lowered ms | lowered vs Keras |{extra}")
    print("|---|---:|---|---:|---:|---:|" + "---:|---:|" * args.bf16)
    for name, (widths, convs) in LAYOUTS.items():
        for batch in args.batch or [8, 128]:
            model = build_model(widths, convs)
            ways = {
                "keras": lambda x, training, m=model: m(x, training=training),
                "lowered": torch_forward(model),
            }
            if args.bf16:
                ways["bf16"] = partial(_bf16, ways["lowered"], device)
            faces = torch.rand(batch, 48, 48, 1, device=device) * 255
            labels = torch.randint(0, 7, (batch,), device=device)
            optimizer = torch.optim.AdamW([v.value for v in model.trainable_variables], lr=1e-4)
            for pass_name, step in (("train step", _train_step), ("inference", _inference)):
                times = {way: [] for way in ways}
                for _ in range(args.rounds):
                    for way, forward in ways.items():
                        run = partial(step, forward, faces, labels, optimizer)
                        times[way].append(_time(run, args.steps, device))
                ms = {way: statistics.median(t) for way, t in times.items()}
                row = f"| {name} | {batch} | {pass_name} | {ms['keras']:.1f} | {ms['lowered']:.1f} "
                row += f"| {ms['lowered'] / ms['keras']:.2f}× |"
                if args.bf16:
                    row += f" {ms['bf16']:.1f} | {ms['bf16'] / ms['keras']:.2f}× |"
                print(row)


def _bf16(forward, device: str, faces, training: bool):
    import torch

    with torch.autocast(device, dtype=torch.bfloat16):
        return forward(faces, training).float()


def _train_step(forward, faces, labels, optimizer) -> None:
    import torch

    probs = forward(faces, True)
    loss = -torch.log(probs.gather(1, labels[:, None]).clamp_min(1e-7)).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _inference(forward, faces, labels, optimizer) -> None:
    import torch

    with torch.no_grad():
        forward(faces, False)


def _time(step, steps: int, device: str) -> float:
    """Milliseconds per step, after one warm-up step."""
    import torch

    step()
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - started) / steps


if __name__ == "__main__":
    main()

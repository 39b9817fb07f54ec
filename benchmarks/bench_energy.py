"""Cost of the energy counting pass relative to plain inference.

The counting pass (forward hooks with vectorised reductions, :mod:`energy.torch_counter`)
must cost at most 1.5x a plain inference pass of the same model. This script times both
on the same batch and reports the median of several repetitions after warm-up, and the
ratio of the medians (one run of this script gives one ratio).

Default: the SE-SNN's default configuration (64 px, T = 4, channels 32/64/128/160,
spiking SE) at batch 32, on CPU. Run::

    .venv/bin/python benchmarks/bench_energy.py [--model neurallnet] [--batch 32]
        [--repeats 5] [--warmup 2] [--device cpu] [--threads N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from energy.torch_counter import OpCounter  # noqa: E402
from neurall_neuro.models.registry import get_model  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:  # noqa: ANN001
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def measure(
    model_name: str = "neurallnet",
    batch: int = 32,
    repeats: int = 5,
    warmup: int = 2,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, object]:
    """Median seconds of plain inference and of the counting pass, and their ratio."""
    torch.manual_seed(seed)
    dev = torch.device(device)
    model = get_model(model_name).to(dev).eval()
    size = model.config.input_size
    images = torch.rand(batch, model.config.in_channels, size, size, device=dev)

    def plain() -> None:
        with torch.no_grad():
            model(images)

    counter = OpCounter(model)

    def counting() -> None:
        counter.run(images)  # attaches the hooks, runs, resolves the counts, detaches

    for _ in range(warmup):
        plain()
        counting()
    # Interleaved, so drifting machine load affects both measurements alike.
    plain_times: list[float] = []
    count_times: list[float] = []
    for _ in range(repeats):
        plain_times.append(_timed(plain, dev))
        count_times.append(_timed(counting, dev))
    plain_median = statistics.median(plain_times)
    count_median = statistics.median(count_times)
    counts = counter.result()
    return {
        "model": model_name,
        "config": {
            "input_size": size,
            "timesteps": getattr(model.config, "timesteps", 1),
            "batch": batch,
        },
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "warmup": warmup,
        "plain_s": plain_times,
        "counting_s": count_times,
        "plain_median_s": plain_median,
        "counting_median_s": count_median,
        "ratio": count_median / plain_median,
        "synops_per_inference": counts.per_sample("synops"),
        "firing_rate": counts.firing_rate,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="neurallnet")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch default)"
    )
    parser.add_argument("--json", type=Path, help="also write the result as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(args.model, args.batch, args.repeats, args.warmup, args.device)
    cfg = result["config"]
    print(
        f"{result['model']} {cfg} on {result['device']} ({result['threads']} threads): "
        f"plain {result['plain_median_s']:.3f} s, counting {result['counting_median_s']:.3f} s "
        f"(median of {args.repeats} after {args.warmup} warm-up) -> ratio {result['ratio']:.3f}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["ratio"] <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())

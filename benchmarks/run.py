"""The benchmark suite (``make bench``): every case side by side from one process run.

Cases (SE-SNN at its default deployment configuration — 64 px, T = 4 — and the SE-CNN):

1. reference: the Norse model as a researcher writes it (a Python loop over timesteps
   calling the stateful modules: ``NeurAllNet.run_stepwise``);
2. ours: the fast inference path (``NeurAllNet.to_inference()``), same weights, with
   identical predictions and spikes checked on a batch before timing;
3. batch-1 latency and batch-32 throughput on the CPU (and on CUDA when available:
   batch-1 latency with and without a CUDA graph, batch-256 throughput);
4. ``loihi-emu`` against ``lava-sim`` fixed point on the same small SE-SNN and inputs
   (identical spikes asserted);
8. the full-size SE-SNN deployed: fast path, NIR ``torch`` target, ``loihi-emu``
   (layer-major and step-major) per image at batch 32, ratios to the fast path
   (``--lava-full``: one image on ``lava-sim`` too; ``--compile``: ``torch.compile``);
5. training throughput (images/s) of both models;
6. peak memory (RSS; CUDA max allocated) and model footprint (fp32, int8, Loihi);
7. the energy-counting pass against a plain pass.

Figures are medians after warm-up; the thread count, CPU model and torch version are
recorded. Results go to a table on stdout and to JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import cases  # noqa: E402
from neurall_neuro.benchmarking import Environment, peak_rss_mib  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny models, one repetition (smoke test)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument(
        "--snn",
        type=Path,
        default=None,
        help="SE-SNN checkpoint (default: pretrained/neurallnet-aria.pt if present)",
    )
    parser.add_argument(
        "--cnn",
        type=Path,
        default=None,
        help="SE-CNN checkpoint (default: pretrained/se-cnn-aria.pt if present)",
    )
    parser.add_argument("--no-lava", action="store_true", help="skip the Lava comparison")
    parser.add_argument(
        "--data",
        type=Path,
        default=os.environ.get("NEURALL_BENCH_DATA") or None,
        help="dataset folder whose images the deployment case uses (default: "
        "$NEURALL_BENCH_DATA, else seeded random images)",
    )
    parser.add_argument(
        "--lava-full",
        action="store_true",
        help="also run one full-size image on lava-sim (73-111 s at 64 px)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time torch.compile of the fast path and of the emulator's LIF step "
        "(minutes of compilation)",
    )
    parser.add_argument(
        "--no-cuda", action="store_true", help="skip CUDA cases even when a GPU is present"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/latest.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ.setdefault("NEURALL_NO_PROGRESS", "1")
    torch.set_num_threads(args.threads)
    repo = Path(__file__).resolve().parents[1]
    snn_ckpt = args.snn or (repo / "pretrained" / "neurallnet-aria.pt")
    cnn_ckpt = args.cnn or (repo / "pretrained" / "se-cnn-aria.pt")
    models = cases.load_models(snn_ckpt, cnn_ckpt, quick=args.quick)
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {"environment": Environment().to_dict(), "models": models.describe()}

    results["inference_cpu"] = cases.inference(models, "cpu", quick=args.quick, rows=rows)
    if torch.cuda.is_available() and not args.no_cuda:
        results["inference_cuda"] = cases.inference(models, "cuda", quick=args.quick, rows=rows)
    results["training"] = cases.training(models, "cpu", quick=args.quick, rows=rows)
    results["loihi"] = cases.loihi(quick=args.quick, lava=not args.no_lava, rows=rows)
    results["deployment"] = cases.deployment(
        models,
        quick=args.quick,
        rows=rows,
        data=args.data,
        lava_full=args.lava_full and not args.no_lava,
        compiled=args.compile,
    )
    results["energy_counting"] = cases.energy_counting(models, quick=args.quick, rows=rows)
    results["footprint"] = cases.footprint(models, rows=rows)
    results["peak_rss_mib"] = peak_rss_mib()
    rows.append(
        {"case": "peak RSS of the whole run", "ours": results["peak_rss_mib"], "unit": "MiB"}
    )
    results["rows"] = rows

    results["load_average_end"] = os.getloadavg()
    print(cases.render(rows, results["environment"]))
    load = " / ".join(f"{x:.2f}" for x in results["deployment"]["load_average_before"])
    print(f"\nload average (1/5/15 min) before the deployment case: {load}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()

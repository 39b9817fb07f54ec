"""loihi-emu vs lava-sim (fixed_pt) throughput on the same network and inputs.

Both run the same quantised SE-SNN (our NIR conventions: encoder conv, spiking SE branch
with an AND neuron and equalised delays, folded pools, readout integrator); the spikes of
every layer of the samples Lava ran are asserted identical. Reported:

* emulator samples/s (median of ``--repeats`` runs of the whole batch);
* Lava samples/s end to end (process graph built, compiled, started and stopped per
  sample, as the lava-sim target does) and in steady state (time inside Lava's ``run``
  calls per step, times the number of steps: a lower bound for Lava's cost);
* the ratios (goal: emulator >= 100x faster than Lava on the CPU).

Run::

    .venv/bin/python benchmarks/bench_loihi.py [--size 8] [--channels 4 6] [--timesteps 8]
        [--batch 16] [--lava-samples 2] [--repeats 5] [--device cpu] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw_targets.loihi.quantize import quantize_graph  # noqa: E402
from hw_targets.registry import get_target  # noqa: E402
from neurall_neuro.benchmarking import Environment, time_it  # noqa: E402


def _se_graph(size: int, c1: int, c2: int, timesteps: int):  # noqa: ANN202
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tests" / "hw_targets" / "conftest.py"
    spec = importlib.util.spec_from_file_location("hw_helpers", path)
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)  # type: ignore[union-attr]
    return helpers.make_se_graph(seed=0, h=size, c1=c1, c2=c2, T=timesteps)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8, help="input height = width (even)")
    parser.add_argument("--channels", type=int, nargs=2, default=(4, 6), metavar=("C1", "C2"))
    parser.add_argument("--timesteps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16, help="emulator batch")
    parser.add_argument("--lava-samples", type=int, default=2, help="samples run in Lava")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-lava", action="store_true", help="emulator only (no Lava installed)")
    args = parser.parse_args(argv)
    os.environ.setdefault("NEURALL_NO_PROGRESS", "1")

    graph = _se_graph(args.size, *args.channels, args.timesteps)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (args.batch, 3, args.size, args.size))
    network = quantize_graph(graph, timesteps=args.timesteps, calibration=images)
    T = args.timesteps

    emu = get_target("loihi-emu").compile(network, timesteps=T, device=args.device)
    emu_timing = time_it(
        lambda: emu.run(images), repeats=args.repeats, warmup=1, cuda=args.device != "cpu"
    )
    emu_rate = args.batch / emu_timing.median_s

    if args.no_lava:
        print(
            f"{network.num_neurons} neurons, T={T}: loihi-emu ({args.device}, batch {args.batch}) "
            f"{emu_rate:.1f} samples/s ({emu_timing.median_s * 1e3:.1f} ms per batch)"
        )
        return {"emulator_samples_per_s": emu_rate, "environment": Environment().to_dict()}
    n = min(args.lava_samples, args.batch)
    lava = get_target("lava-sim").compile(network, timesteps=T, record="all")
    lava_res = lava.run(images[:n])
    emu_res = get_target("loihi-emu").compile(network, timesteps=T, record="all").run(images[:n])
    for name, spikes in emu_res.spikes.items():
        if not np.array_equal(spikes, lava_res.spikes[name]):
            raise SystemExit(f"spikes of layer {name!r} differ between loihi-emu and lava-sim")
    lava_rate = n / lava_res.wall_time_s
    steady_rate = 1.0 / (lava_res.extra["lava_step_s"] * lava_res.hardware_steps)

    report = {
        "network": f"SE-SNN 3x{args.size}x{args.size}, channels {args.channels[0]}/{args.channels[1]}, "
        f"{network.num_neurons} neurons, T={T} ({lava_res.hardware_steps} hardware steps)",
        "emulator": {
            "device": args.device,
            "batch": args.batch,
            "samples_per_s": emu_rate,
            **emu_timing.to_dict(),
        },
        "lava": {
            "samples": n,
            "samples_per_s_end_to_end": lava_rate,
            "samples_per_s_steady_state": steady_rate,
            "seconds_per_step": lava_res.extra["lava_step_s"],
        },
        "ratio_end_to_end": emu_rate / lava_rate,
        "ratio_steady_state": emu_rate / steady_rate,
        "identical_spikes_on_lava_samples": True,
        "environment": Environment().to_dict(),
    }
    print(report["network"])
    print(f"loihi-emu ({args.device}, batch {args.batch}): {emu_rate:10.1f} samples/s")
    print(f"lava-sim fixed_pt end to end:         {lava_rate:10.3f} samples/s")
    print(f"lava-sim fixed_pt steady state:       {steady_rate:10.3f} samples/s")
    print(
        f"speed-up: {report['ratio_end_to_end']:.0f}x end to end, {report['ratio_steady_state']:.0f}x steady state"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()

"""Benchmark cases of ``benchmarks/run.py`` (each returns a dict and appends table rows)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurall_neuro.benchmarking import time_it
from neurall_neuro.models.checkpoint import load_checkpoint
from neurall_neuro.models.registry import get_model
from neurall_neuro.models.summary import model_size

#: NeurALLNet paper (the seed): single-image latency of its SE-SNN.
PAPER_CPU_MS = 454.67
PAPER_GPU_MS = 11.24

TINY = {"input_size": 16, "channels": [4, 8, 8, 8]}


@dataclass
class Models:
    snn: torch.nn.Module
    cnn: torch.nn.Module
    snn_source: str
    cnn_source: str
    #: the SE-SNN checkpoint's preprocessing (to load real images for it), if any
    snn_preprocessing: dict[str, Any] | None = None
    snn_classes: tuple[str, ...] | None = None

    @property
    def size(self) -> int:
        return int(self.snn.config.input_size)

    def describe(self) -> dict[str, Any]:
        return {
            "snn": {"source": self.snn_source, "config": dict(self.snn.config.__dict__)},
            "cnn": {"source": self.cnn_source, "config": dict(self.cnn.config.__dict__)},
        }


def _calibrated(model: torch.nn.Module, size: int) -> torch.nn.Module:
    """Random weights with BatchNorm statistics from random images, so the SNN fires."""
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 3, size, size))
    return model.eval()


def load_models(snn_path: Path, cnn_path: Path, quick: bool) -> Models:
    if quick:
        snn = _calibrated(get_model("neurallnet", timesteps=2, **TINY), 16)
        cnn = _calibrated(get_model("se-cnn", **TINY), 16)
        return Models(snn, cnn, "tiny random (quick)", "tiny random (quick)")
    preprocessing, classes = None, None
    if snn_path.is_file():
        ckpt = load_checkpoint(snn_path)
        snn, snn_source = ckpt.model, str(snn_path)
        preprocessing, classes = dict(ckpt.preprocessing), tuple(ckpt.class_names)
    else:
        snn, snn_source = _calibrated(get_model("neurallnet"), 64), "default config, random weights"
    if cnn_path.is_file():
        cnn, cnn_source = load_checkpoint(cnn_path).model, str(cnn_path)
    else:
        cnn, cnn_source = _calibrated(get_model("se-cnn"), 64), "default config, random weights"
    return Models(snn, cnn, snn_source, cnn_source, preprocessing, classes)


def _row(
    rows: list,
    case: str,
    ours: float,
    unit: str,
    reference: float | None = None,
    note: str = "",
    higher_is_better: bool = False,
) -> None:
    ratio = None
    if reference:
        ratio = ours / reference if higher_is_better else reference / ours
    rows.append(
        {
            "case": case,
            "reference": reference,
            "ours": ours,
            "unit": unit,
            "speedup": ratio,
            "note": note,
        }
    )


def inference(models: Models, device: str, quick: bool, rows: list) -> dict[str, Any]:
    """Cases 1-3: Norse reference loop vs fast path (SE-SNN), and the SE-CNN."""
    cuda = device == "cuda"
    repeats = 2 if quick else (30 if cuda else 15)
    size = models.size
    snn = models.snn.to(device).eval()
    cnn = models.cnn.to(device).eval()
    fast = snn.to_inference()
    gen = torch.Generator().manual_seed(0)
    big = 256 if cuda else 32
    x1 = torch.rand(1, 3, size, size, generator=gen).to(device)
    xb = torch.rand(big, 3, size, size, generator=gen).to(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    out: dict[str, Any] = {"device": device, "batch": big}
    with torch.inference_mode():
        ref_run = snn.run_stepwise(xb[:32], record=True)
        fast_run = fast.run(xb[:32], record=True)
        out["identical_spikes"] = all(
            torch.equal(ref_run.spikes[k], fast_run.spikes[k]) for k in ref_run.spikes
        )
        out["identical_predictions"] = bool(
            torch.equal(ref_run.logits.argmax(1), fast_run.logits.argmax(1))
        )
        out["firing_rates"] = {k: float(v.mean()) for k, v in fast_run.spikes.items()}
        timings = {
            "reference_b1": time_it(lambda: snn.run_stepwise(x1), repeats, cuda=cuda),
            "layer_major_b1": time_it(lambda: snn.run(x1), repeats, cuda=cuda),
            "fast_b1": time_it(lambda: fast.run(x1), repeats, cuda=cuda),
            "reference_batch": time_it(
                lambda: snn.run_stepwise(xb), max(2, repeats // 4), cuda=cuda
            ),
            "fast_batch": time_it(lambda: fast.run(xb), max(2, repeats // 4), cuda=cuda),
            "cnn_b1": time_it(lambda: cnn(x1), repeats, cuda=cuda),
            "cnn_batch": time_it(lambda: cnn(xb), max(2, repeats // 4), cuda=cuda),
        }
    out.update({k: v.to_dict() for k, v in timings.items()})
    tag = f"({device})"
    check = (
        f"identical spikes: {out['identical_spikes']}, predictions: {out['identical_predictions']}"
    )
    ms = {k: 1e3 * v.median_s for k, v in timings.items()}
    _row(
        rows,
        f"SE-SNN batch-1 latency, Norse loop vs fast path {tag}",
        ms["fast_b1"],
        "ms",
        ms["reference_b1"],
        check,
    )
    _row(
        rows,
        f"SE-SNN batch-1 latency, layer-major run() {tag}",
        ms["layer_major_b1"],
        "ms",
        ms["reference_b1"],
    )
    _row(
        rows,
        f"SE-SNN batch-{big} throughput {tag}",
        big / timings["fast_batch"].median_s,
        "img/s",
        big / timings["reference_batch"].median_s,
        higher_is_better=True,
    )
    _row(
        rows,
        f"SE-SNN batch-1 latency vs the NeurALLNet paper {tag}",
        ms["fast_b1"],
        "ms",
        PAPER_GPU_MS if cuda else PAPER_CPU_MS,
        "paper figure, different hardware (indicative)",
    )
    _row(rows, f"SE-CNN batch-1 latency {tag}", ms["cnn_b1"], "ms")
    _row(rows, f"SE-CNN batch-{big} throughput {tag}", big / timings["cnn_batch"].median_s, "img/s")
    if cuda:
        graph_ms = _cuda_graph_latency(fast, x1, repeats)
        out["fast_cuda_graph_b1_ms"] = graph_ms
        _row(
            rows,
            "SE-SNN batch-1 latency, fast path in a CUDA graph (cuda)",
            graph_ms,
            "ms",
            ms["reference_b1"],
        )
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 1e6
        rows.append(
            {
                "case": "CUDA max allocated (inference cases)",
                "ours": out["cuda_max_allocated_mb"],
                "unit": "MB",
            }
        )
    snn.to("cpu")
    cnn.to("cpu")
    return out


def _cuda_graph_latency(fast: torch.nn.Module, x1: torch.Tensor, repeats: int) -> float:
    static = x1.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fast.run(static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fast.run(static)
    return 1e3 * time_it(graph.replay, repeats, cuda=True).median_s


def _train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):  # noqa: ANN202
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def training(models: Models, device: str, quick: bool, rows: list) -> dict[str, Any]:
    """Case 5: optimiser steps per second at batch 32 (random images and labels)."""
    steps = 1 if quick else 4
    out = {}
    for name, model in (("SE-SNN", models.snn), ("SE-CNN", models.cnn)):
        model = model.to(device).train()
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(32, 3, models.size, models.size, generator=gen).to(device)
        y = torch.randint(0, model.config.num_classes, (32,), generator=gen).to(device)
        timing = time_it(_train_step(model, x, y), repeats=steps, warmup=1, cuda=device == "cuda")
        out[name] = {"images_per_s": 32 / timing.median_s, **timing.to_dict()}
        _row(
            rows, f"{name} training throughput, batch 32 ({device})", 32 / timing.median_s, "img/s"
        )
        model.eval()
    return out


def _tiny_snn(timesteps: int) -> torch.nn.Module:
    model = get_model("neurallnet", timesteps=timesteps, **TINY)
    with torch.no_grad():  # make the untrained tiny network fire in every layer
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (3, 3):
                module.weight.mul_(4.0)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.fill_(0.5)
    return model.eval()


def loihi(quick: bool, lava: bool, rows: list) -> dict[str, Any]:
    """Case 4: loihi-emu vs lava-sim fixed point, same network and inputs, same spikes."""
    from conversion.nir_export import to_nir
    from hw_targets.loihi.quantize import quantize_graph
    from hw_targets.registry import get_target

    timesteps = 2 if quick else 4
    torch.manual_seed(0)
    model = _tiny_snn(timesteps)
    images = torch.rand(32, 3, 16, 16)
    network = quantize_graph(to_nir(model), timesteps=timesteps, calibration=images)
    emu = get_target("loihi-emu").compile(network, timesteps=timesteps, record="all")
    emu_time = time_it(lambda: emu.run(images), repeats=2 if quick else 5, warmup=1)
    emu_rate = len(images) / emu_time.median_s
    out: dict[str, Any] = {
        "network": f"SE-SNN 3x16x16, channels 4/8/8/8, {network.num_neurons} neurons, T={timesteps}",
        "emulator_batch": len(images),
        "emulator_samples_per_s": emu_rate,
    }
    if not lava:
        _row(rows, "loihi-emu throughput (cpu, batch 32)", emu_rate, "img/s", note="lava skipped")
        return out
    n = 1 if quick else 2
    lava_res = (
        get_target("lava-sim").compile(network, timesteps=timesteps, record="all").run(images[:n])
    )
    emu_res = emu.run(images[:n])
    identical = all(np.array_equal(s, lava_res.spikes[k]) for k, s in emu_res.spikes.items())
    lava_rate = n / lava_res.wall_time_s
    steady = 1.0 / (lava_res.extra["lava_step_s"] * lava_res.hardware_steps)
    out.update(
        {
            "lava_samples": n,
            "lava_samples_per_s": lava_rate,
            "lava_steady_samples_per_s": steady,
            "lava_phases_s": lava_res.extra["lava_phases_s"],
            "identical_spikes": identical,
        }
    )
    _row(
        rows,
        "loihi-emu vs lava-sim fixed_pt throughput (end to end)",
        emu_rate,
        "img/s",
        lava_rate,
        f"identical spikes: {identical}",
        higher_is_better=True,
    )
    _row(
        rows,
        "loihi-emu vs lava-sim fixed_pt throughput (Lava steady state)",
        emu_rate,
        "img/s",
        steady,
        "Lava's time inside run() only",
        higher_is_better=True,
    )
    return out


def _deployment_images(models: Models, data: Path | None, batch: int) -> tuple[torch.Tensor, str]:
    """``batch`` real images of ``data`` (seeded draw, the checkpoint's preprocessing), or
    seeded random images when no data folder or no checkpoint preprocessing is given."""
    if data is not None and models.snn_preprocessing is not None:
        from neurall_neuro.data.sampling import sample_images

        drawn = sample_images(
            data, models.snn_preprocessing, n=batch, seed=0, class_names=models.snn_classes
        )
        return drawn.images, f"{batch} images of {data} (seed 0)"
    size = models.size
    gen = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, size, size, generator=gen), f"{batch} random images"


def _interleaved(fns: dict[str, Any], rounds: int) -> dict[str, list[float]]:
    """Wall times of every function, run in turn ``rounds`` times after one warm-up each
    (interleaved, so that load changes on a shared machine hit every case alike)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def deployment(
    models: Models,
    quick: bool,
    rows: list,
    data: Path | None = None,
    lava_full: bool = False,
    compiled: bool = False,
) -> dict[str, Any]:
    """Case 8: the SE-SNN (full size) deployed, per image at batch 32 on the CPU: the fast
    path, the NIR ``torch`` target and ``loihi-emu`` (layer-major, and its step-major
    reference loop), interleaved; ratios to the fast path.

    Checks before timing: ``loihi-emu`` layer-major equals step-major (scores, output
    spikes, every layer's counts), and the predictions of both targets are compared
    with the fast path's. ``lava_full``: one image on ``lava-sim`` (73-111 s at 64 px;
    identical spikes to ``loihi-emu`` checked). ``compiled``: ``torch.compile`` of the
    fast path and of the emulator's LIF step (identical outputs checked).
    """
    from conversion.nir_export import to_nir
    from hw_targets.registry import get_target

    snn = models.snn.eval()
    steps = int(snn.config.timesteps)
    batch = 8 if quick else 32
    images, source = _deployment_images(models, data, batch)
    graph = to_nir(snn, example_input=images[:1])
    fast = snn.to_inference()
    torch_target = get_target("torch").compile(graph, timesteps=steps)
    emu_target = get_target("loihi-emu")
    network = emu_target.lower(graph, timesteps=steps)
    emu = emu_target.compile(network, timesteps=steps)
    emu_step = emu_target.compile(network, timesteps=steps, schedule="step")
    with torch.inference_mode():
        fast_pred = fast.run(images).logits.argmax(1).numpy()
    torch_res, emu_res, step_res = (d.run(images) for d in (torch_target, emu, emu_step))
    identical = (
        np.array_equal(emu_res.scores, step_res.scores)
        and np.array_equal(emu_res.output_spikes, step_res.output_spikes)
        and all(
            np.array_equal(c, step_res.spike_counts[k]) for k, c in emu_res.spike_counts.items()
        )
    )
    out: dict[str, Any] = {
        "images": source,
        "batch": batch,
        "timesteps": steps,
        "emulator_kernels": emu.emulator.kernels(),
        "layer_major_equals_step_major": bool(identical),
        "torch_agrees_with_fast_path": float(np.mean(torch_res.predictions() == fast_pred)),
        "emu_agrees_with_fast_path": float(np.mean(emu_res.predictions() == fast_pred)),
        "load_average_before": os.getloadavg(),
    }
    fns = {
        "fast path": lambda: fast.run(images),
        "torch target": lambda: torch_target.run(images),
        "loihi-emu": lambda: emu.run(images),
        "loihi-emu step-major": lambda: emu_step.run(images),
    }
    times = _interleaved(fns, 1 if quick else 5)
    out["load_average_after"] = os.getloadavg()
    ms = {name: 1e3 * float(np.median(t)) / batch for name, t in times.items()}
    out["ms_per_image"] = ms
    out["ratio_to_fast_path"] = {name: v / ms["fast path"] for name, v in ms.items()}
    size = f"{models.size} px, T={steps}, b={batch}"
    _row(rows, f"SE-SNN deployed ({size}, cpu): fast path", ms["fast path"], "ms/img",
         note=source)  # fmt: skip
    goals = {"torch target": "goal <= 1.25x", "loihi-emu": "goal <= 2x"}
    for name in ("torch target", "loihi-emu", "loihi-emu step-major"):
        note = (
            f"ratio = time / fast path's ({goals[name]})" if name in goals else "the reference loop"
        )
        if name == "loihi-emu":
            note += f"; identical to step-major: {identical}"
        rows.append(
            {
                "case": f"SE-SNN deployed ({size}, cpu): {name} / fast",
                "reference": ms["fast path"],
                "ours": ms[name],
                "unit": "ms/img",
                "speedup": ms[name] / ms["fast path"],
                "note": note,
            }
        )
    if lava_full:
        lava = get_target("lava-sim").compile(network, timesteps=steps, record="all")
        lava_res = lava.run(images[:1])
        mine = emu_target.compile(network, timesteps=steps, record="all").run(images[:1])
        same = all(np.array_equal(s, lava_res.spikes[k]) for k, s in mine.spikes.items())
        phases = lava_res.extra["lava_phases_s"]
        out["lava_full"] = {
            "seconds_per_image": lava_res.wall_time_s,
            "identical_spikes": same,
            "phases_s": phases,
        }
        _row(rows, f"lava-sim fixed_pt, one image ({models.size} px, T={steps}), end to end",
             lava_res.wall_time_s, "s", note=f"identical spikes to loihi-emu: {same}; Lava's "
             f"stepping {phases['run']:.1f} s of it")  # fmt: skip
    if compiled:  # after Lava: inductor fixes the multiprocessing start method Lava sets
        out["torch_compile"] = _compile_cases(fast, emu, images, rows, quick)
    return out


def _compile_cases(
    fast: torch.nn.Module, emu: Any, images: torch.Tensor, rows: list, quick: bool
) -> dict[str, Any]:
    """``torch.compile`` of the fast path (whole ``run``) and of the emulator's float LIF
    step (on the input layer's real drive): compile time, identical outputs, ms."""
    from hw_targets.loihi.fixed_point import Decay
    from hw_targets.loihi.spec import DECAY_UNITY, DV_OFFSET, V_MAX, VTH_SHIFT

    out: dict[str, Any] = {}
    start = time.perf_counter()
    compiled_run = torch.compile(fast.run, dynamic=False)
    with torch.inference_mode():
        mine, ref = compiled_run(images, record=True), fast.run(images, record=True)
    out["fast_compile_s"] = time.perf_counter() - start
    out["fast_identical"] = bool(
        torch.equal(mine.logits, ref.logits)
        and all(torch.equal(mine.spikes[k], ref.spikes[k]) for k in ref.spikes)
    )
    with torch.inference_mode():
        t = _interleaved(
            {"eager": lambda: fast.run(images), "compiled": lambda: compiled_run(images)},
            1 if quick else 5,
        )
    out["fast_ms_per_image"] = {k: 1e3 * float(np.median(v)) / len(images) for k, v in t.items()}

    net = emu.network
    group = net.group(net.input)
    rule = Decay(DECAY_UNITY - (group.dv + DV_OFFSET))
    if net.encoder is None or rule.odd_part > 1:  # the float32 state needs factor 2^m
        return out
    bias = torch.as_tensor(net.encoder.encode(images.numpy())).reshape(len(images), -1)
    drive = (bias << group.bias_exp).to(torch.float32)
    divisor = DECAY_UNITY // rule.factor if rule.factor else 0
    threshold = float(group.vth << VTH_SHIFT)
    steps = emu.timesteps

    def step(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        decayed = torch.div(v, divisor, rounding_mode="trunc") if divisor else v * 0
        v = decayed + drive
        v = v.clamp(-V_MAX, V_MAX)
        z = (v > threshold).to(v.dtype)
        return v - v * z, z

    compiled_step = torch.compile(step, dynamic=False)

    def loop(fn: Any) -> tuple[torch.Tensor, torch.Tensor]:
        v, spikes = torch.zeros_like(drive), []
        for _ in range(steps):
            v, z = fn(v)
            spikes.append(z)
        return v, torch.stack(spikes)

    start = time.perf_counter()
    mine_v, mine_z = loop(compiled_step)
    out["emu_lif_compile_s"] = time.perf_counter() - start
    ref_v, ref_z = loop(step)
    out["emu_lif_identical"] = bool(torch.equal(mine_v, ref_v) and torch.equal(mine_z, ref_z))
    t = _interleaved({"eager": lambda: loop(step), "compiled": lambda: loop(compiled_step)},
                     1 if quick else 5)  # fmt: skip
    out["emu_lif_ms_per_image"] = {k: 1e3 * float(np.median(v)) / len(images) for k, v in t.items()}
    for what, key in (
        ("fast path (whole run)", "fast"),
        ("emulator LIF steps, input layer", "emu_lif"),
    ):
        if f"{key}_ms_per_image" not in out:
            continue
        ms = out[f"{key}_ms_per_image"]
        rows.append(
            {
                "case": f"torch.compile: {what}",
                "reference": ms["eager"],
                "ours": ms["compiled"],
                "unit": "ms/img",
                "speedup": ms["eager"] / ms["compiled"],
                "note": f"identical: {out[f'{key}_identical']}; compile "
                f"{out[f'{key}_compile_s']:.0f} s",
            }
        )
    return out


def energy_counting(models: Models, quick: bool, rows: list) -> dict[str, Any]:
    """Case 7: the energy-counting pass against a plain pass (same model, same batch)."""
    from energy.torch_counter import OpCounter

    model = models.snn.eval()
    x = torch.rand(32, 3, models.size, models.size, generator=torch.Generator().manual_seed(0))
    counter = OpCounter(model)
    plain_times, count_times = [], []
    with torch.no_grad():
        for i in range(2 + (1 if quick else 20)):  # many: the two passes are short and noisy
            t0 = time.perf_counter()
            model(x)
            t1 = time.perf_counter()
            counter.run(x)
            t2 = time.perf_counter()
            if i >= 2:  # warm-up excluded; interleaved so load drift hits both alike
                plain_times.append(t1 - t0)
                count_times.append(t2 - t1)
    plain, counting = float(np.median(plain_times)), float(np.median(count_times))
    rows.append(
        {
            "case": "energy-counting pass vs plain pass (SE-SNN, batch 32, cpu)",
            "reference": plain,
            "ours": counting,
            "unit": "s",
            "speedup": counting / plain,
            "note": "ratio = overhead counting/plain (goal <= 1.5x)",
        }
    )
    return {"plain_s": plain, "counting_s": counting, "overhead": counting / plain}


def footprint(models: Models, rows: list) -> dict[str, Any]:
    """Case 6 (footprint): fp32 and int8 parameter bytes; Loihi synapse and state bytes."""
    from conversion.nir_export import to_nir
    from hw_targets.loihi.quantize import quantize_graph

    out = {}
    for name, model in (("SE-SNN", models.snn), ("SE-CNN", models.cnn)):
        size = model_size(model)
        out[name] = {
            "parameters": size.parameters,
            "fp32_bytes": size.fp32_bytes,
            "int8_bytes": size.int8_bytes,
        }
        rows.append(
            {
                "case": f"{name} footprint (fp32 / int8)",
                "ours": size.fp32_bytes / 1e6,
                "unit": "MB",
                "note": f"{size.parameters:,} parameters; int8 {size.int8_bytes / 1e6:.2f} MB",
            }
        )
    network = quantize_graph(to_nir(models.snn), timesteps=int(models.snn.config.timesteps))
    synapse_bytes = sum(int(s.weight.size) for s in network.synapses)  # 8-bit mantissas
    state_bytes = 6 * network.num_neurons  # u and v, 24 bits each
    out["SE-SNN"]["loihi_synapse_bytes"] = synapse_bytes
    out["SE-SNN"]["loihi_state_bytes"] = state_bytes
    rows.append(
        {
            "case": "SE-SNN on Loihi: synapse mantissas + neuron state",
            "ours": (synapse_bytes + state_bytes) / 1e6,
            "unit": "MB",
            "note": f"{synapse_bytes / 1e6:.2f} MB 8-bit weights (pooling folded into kernels), "
            f"{state_bytes / 1e6:.2f} MB u/v state",
        }
    )
    return out


def render(rows: list[dict[str, Any]], environment: dict[str, Any]) -> str:
    env = environment
    lines = [
        f"CPU: {env['cpu']} ({env['cpu_count']} cores), torch {env['torch_version']}, "
        f"{env['torch_threads']} torch threads"
        + (f", GPU: {env['cuda_device']}" if env.get("cuda_device") else ""),
        "",
        f"{'case':<66} {'reference':>12} {'ours':>12} {'unit':<6} {'ratio':>8}  note",
        "-" * 120,
    ]
    for r in rows:
        ref = f"{r['reference']:.3f}" if r.get("reference") is not None else ""
        ratio = f"{r['speedup']:.1f}x" if r.get("speedup") is not None else ""
        lines.append(
            f"{r['case']:<66} {ref:>12} {r['ours']:>12.3f} {r['unit']:<6} {ratio:>8}  {r.get('note', '')}"
        )
    return "\n".join(lines)

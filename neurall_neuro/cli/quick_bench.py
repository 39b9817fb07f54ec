"""The demo's quick benchmark: a few latency/throughput figures from one process run.

The full suite lives in ``benchmarks/`` (``make bench``); this is its two-minute subset:
SE-SNN batch-1 latency of the Norse reference loop against the fast inference path (with
identical predictions checked), batch-32 throughput, the SE-CNN's batch-1 latency, and
the Loihi emulator's throughput.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurall_neuro.benchmarking import Environment, time_it


@dataclass
class QuickBenchmark:
    rows: list[dict[str, Any]]
    environment: dict[str, Any] = field(default_factory=lambda: Environment().to_dict())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        env = self.environment
        lines = [
            f"CPU: {env['cpu']} ({env['torch_threads']} torch threads), torch {env['torch_version']}; "
            "medians after warm-up.",
            "",
            "| case | value | note |",
            "|---|---|---|",
        ]
        lines += [
            f"| {r['case']} | {r['value']:.2f} {r['unit']} | {r.get('note', '')} |"
            for r in self.rows
        ]
        return "\n".join(lines)


def quick_benchmark(
    snn_checkpoint: str | Path, cnn_checkpoint: str | Path, repeats: int = 10
) -> QuickBenchmark:
    from conversion.nir_export import to_nir
    from hw_targets.registry import get_target
    from neurall_neuro.models.checkpoint import load_checkpoint

    snn = load_checkpoint(snn_checkpoint)
    cnn = load_checkpoint(cnn_checkpoint)
    size = int(snn.config["input_size"])
    generator = torch.Generator().manual_seed(0)
    x1 = torch.rand(1, 3, size, size, generator=generator)
    x32 = torch.rand(32, 3, size, size, generator=generator)
    fast = snn.model.to_inference()
    rows: list[dict[str, Any]] = []
    with torch.inference_mode():
        same = bool(
            torch.equal(
                snn.model.run_stepwise(x32).logits.argmax(1), fast.run(x32).logits.argmax(1)
            )
        )
        ref = time_it(lambda: snn.model.run_stepwise(x1), repeats=repeats)
        ours = time_it(lambda: fast.run(x1), repeats=repeats)
        thr = time_it(lambda: fast.run(x32), repeats=max(3, repeats // 3))
        cnn_t = time_it(lambda: cnn.model(x1), repeats=repeats)
    rows += [
        {
            "case": "SE-SNN batch-1 latency, Norse step loop (reference)",
            "value": 1e3 * ref.median_s,
            "unit": "ms",
        },
        {
            "case": "SE-SNN batch-1 latency, fast path",
            "value": 1e3 * ours.median_s,
            "unit": "ms",
            "note": f"{ref.median_s / ours.median_s:.1f}x faster; identical predictions: {same}",
        },
        {
            "case": "SE-SNN batch-32 throughput, fast path",
            "value": 32 / thr.median_s,
            "unit": "img/s",
        },
        {"case": "SE-CNN batch-1 latency", "value": 1e3 * cnn_t.median_s, "unit": "ms"},
    ]
    graph = to_nir(snn.model)
    with get_target("loihi-emu").compile(graph, timesteps=int(snn.config["timesteps"])) as deployed:
        emu = time_it(lambda: deployed.run(x32), repeats=max(2, repeats // 5), warmup=1)
    rows.append(
        {
            "case": "loihi-emu throughput (batch 32, CPU, bit-exact fixed point)",
            "value": 32 / emu.median_s,
            "unit": "img/s",
        }
    )
    return QuickBenchmark(rows)

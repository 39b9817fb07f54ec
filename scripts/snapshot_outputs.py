"""Record (or compare) what the shipped checkpoints compute, for refactors that must not
change behaviour.

    python scripts/snapshot_outputs.py record  OUT.npz [--data DIR] [--n 8]
    python scripts/snapshot_outputs.py compare OLD.npz NEW.npz

``record`` stores, for ``pretrained/neurallnet-aria.pt`` (SE-SNN) and
``pretrained/se-cnn-aria.pt`` (SE-CNN) on ``--n`` seeded images of ``--data`` (the
generated cohort at 64 px when no folder is given): the float model's predictions, the
NIR ``torch`` target's and ``loihi-emu``'s scores, output spikes and per-layer spike
counts, every per-layer row of the energy report, and the arrays of the netx file that
``neurall export --format netx`` writes for a seeded no-SE SNN of the shipped size (netx
holds chains only).
``compare`` prints every array that differs (exit 1) or ``identical`` (exit 0).

It uses only the public API and the CLI, so the same script runs on the code before and
after a refactor (run it from each checkout with that checkout on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _flatten_h5(path: Path, prefix: str) -> dict[str, np.ndarray]:
    import h5py

    out: dict[str, np.ndarray] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            value = obj[()]
            out[f"{prefix}/{name}"] = np.asarray(
                value.decode() if isinstance(value, bytes) else value
            )

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def record(out: Path, data: str | None, n: int) -> None:
    import torch

    from conversion.nir_export import to_nir
    from energy.report import energy_report
    from hw_targets.registry import get_target
    from neurall_neuro.data.sampling import sample_images
    from neurall_neuro.models.checkpoint import load_checkpoint, save_checkpoint
    from neurall_neuro.models.registry import get_model

    torch.manual_seed(0)
    arrays: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if data is None:
            from neurall_neuro.data.synth import generate_cohort

            data = str(Path(tmp) / "cohort")
            generate_cohort(data, n_per_class=3, size=64, n_patients_per_class=3, seed=0)
        snn = load_checkpoint(ROOT / "pretrained/neurallnet-aria.pt")
        cnn = load_checkpoint(ROOT / "pretrained/se-cnn-aria.pt")
        batch = sample_images(data, snn.preprocessing, n=n, class_names=snn.class_names)
        images = batch.images
        with torch.no_grad():
            for role, ckpt in (("snn", snn), ("cnn", cnn)):
                scores = ckpt.model.eval()(images)
                arrays[f"{role}/float_scores"] = scores.numpy()
                arrays[f"{role}/float_pred"] = scores.argmax(1).numpy()
        graph = to_nir(snn.model, example_input=images[:1])
        for target in ("torch", "loihi-emu"):
            deployed = get_target(target).compile(graph, timesteps=snn.model.config.timesteps)
            result = deployed.run(images)
            if result.scores is not None:
                arrays[f"{target}/scores"] = np.asarray(result.scores)
            arrays[f"{target}/pred"] = result.predictions()
            arrays[f"{target}/output_spikes"] = np.asarray(result.output_spikes)
            for layer, counts in result.spike_counts.items():
                arrays[f"{target}/spike_counts/{layer}"] = np.asarray(counts)
            deployed.close()
        report = energy_report(snn=snn.model, cnn=cnn.model, images=images, profiles="all")
        for summary in (report.snn, report.cnn):
            for row in summary.layers:
                for field, value in vars(row).items():
                    key = f"energy/{summary.role}/{row.name}/{field}"
                    arrays[key] = np.asarray(np.nan if value is None else value)
        for energy in report.energies:
            arrays[f"energy/pj/{energy.role}/{energy.profile}"] = np.asarray(energy.total_pj)
        # netx holds chains only: export a seeded no-SE SNN of the shipped size.
        torch.manual_seed(0)
        nose = get_model("neurallnet-nose", input_size=snn.model.config.input_size)
        nose_ckpt = Path(tmp) / "nose.pt"
        save_checkpoint(nose_ckpt, nose.eval(), list(snn.class_names), snn.preprocessing)
        netx = Path(tmp) / "nose.net"
        cmd = [sys.executable, "-m", "neurall_neuro.cli.main", "export", "--checkpoint"]
        cmd += [str(nose_ckpt), "--format", "netx", "--out", str(netx)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode == 0:
            arrays.update(_flatten_h5(netx, "netx"))
        else:
            arrays["netx/error"] = np.asarray(done.stderr.strip().splitlines()[-1])
    np.savez(out, **arrays)
    print(f"recorded {len(arrays)} arrays to {out}")


def compare(old: Path, new: Path) -> int:
    a, b = np.load(old), np.load(new)
    differ = []
    for key in sorted(set(a.files) | set(b.files)):
        if key not in a.files or key not in b.files:
            differ.append(f"{key}: only in {'new' if key not in a.files else 'old'}")
        elif a[key].shape != b[key].shape or not np.array_equal(
            a[key], b[key], equal_nan=a[key].dtype.kind == "f"
        ):
            differ.append(f"{key}: differs")
    print("\n".join(differ) if differ else f"identical ({len(a.files)} arrays)")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("out", type=Path)
    rec.add_argument("--data", default=None)
    rec.add_argument("--n", type=int, default=8)
    cmp_ = sub.add_parser("compare")
    cmp_.add_argument("old", type=Path)
    cmp_.add_argument("new", type=Path)
    args = parser.parse_args()
    if args.cmd == "record":
        record(args.out, args.data, args.n)
        return 0
    return compare(args.old, args.new)


if __name__ == "__main__":
    sys.exit(main())

"""Knowledge distillation: the loss, a CLI run with a teacher, learning from the teacher,
and the errors for bad teachers and options."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from neurall_neuro.cli.main import main
from neurall_neuro.data.dataset import ImageDataset
from neurall_neuro.data.layouts import load_cohort
from neurall_neuro.data.preprocess import Preprocessing
from neurall_neuro.data.splits import Split
from neurall_neuro.errors import CheckpointError, ConfigError
from neurall_neuro.models.checkpoint import load_checkpoint, read_checkpoint_dict, save_checkpoint
from neurall_neuro.models.registry import get_model
from neurall_neuro.training import TrainConfig, train
from neurall_neuro.training.config import load_recipe
from neurall_neuro.training.distillation import distillation_loss
from neurall_neuro.training.seeding import seed_everything

CLASSES = ["Benign", "Early", "Pre", "Pro"]
TINY_CNN = {"channels": [4, 8, 8, 8]}
SMALL_SNN = {"channels": [8, 16, 16, 16]}  # [4, 8, 8, 8] learns too slowly at 16 px
TINY = ["--size", "16", "--set", "channels=[4, 8, 8, 8]", "--batch-size", "8", "--device", "cpu"]
FAST = ["--threads", "1", "--bootstrap", "20", "--quiet"]


# --------------------------------------------------------------------------- the loss
def _manual_kl_batchmean(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """sum_k p_k log(p_k / q_k), averaged over the rows; written out, no torch KL."""
    total = torch.zeros((), dtype=torch.float64)
    for i in range(p.shape[0]):
        for k in range(p.shape[1]):
            total = total + p[i, k] * torch.log(p[i, k] / q[i, k])
    return total / p.shape[0]


def _manual_weighted_ce(
    logits: torch.Tensor, labels: torch.Tensor, w: torch.Tensor
) -> torch.Tensor:
    """-sum_i w_{y_i} log softmax(s_i)_{y_i} / sum_i w_{y_i}."""
    num = torch.zeros((), dtype=torch.float64)
    den = torch.zeros((), dtype=torch.float64)
    for i in range(logits.shape[0]):
        row = logits[i]
        log_p = row[labels[i]] - torch.log(torch.exp(row).sum())
        num = num - w[labels[i]] * log_p
        den = den + w[labels[i]]
    return num / den


def test_loss_matches_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(6, 4, generator=gen, dtype=torch.float64) * 3
    teacher = torch.randn(6, 4, generator=gen, dtype=torch.float64) * 3
    labels = torch.tensor([0, 1, 2, 3, 1, 1])
    w = torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64)
    for temperature in (1.0, 2.5, 4.0):
        p = torch.softmax(teacher / temperature, dim=1)
        q = torch.softmax(student / temperature, dim=1)
        kl = _manual_kl_batchmean(p, q)
        # The reference itself agrees with torch's KL divergence.
        assert F.kl_div(q.log(), p, reduction="batchmean").item() == pytest.approx(kl.item())
        hard = _manual_weighted_ce(student, labels, w)
        for alpha in (0.0, 0.3, 0.7, 1.0):
            expected = (1 - alpha) * hard + alpha * temperature**2 * kl
            got = distillation_loss(student, teacher, labels, temperature, alpha, weight=w)
            assert got.item() == pytest.approx(expected.item(), rel=1e-9), (temperature, alpha)
        # The soft term is scaled by T^2.
        soft = distillation_loss(student, teacher, labels, temperature, 1.0)
        assert soft.item() == pytest.approx(temperature**2 * kl.item(), rel=1e-9)


def test_loss_alpha_extremes() -> None:
    gen = torch.Generator().manual_seed(1)
    student = torch.randn(8, 4, generator=gen, requires_grad=True)
    teacher = torch.randn(8, 4, generator=gen, requires_grad=True)
    labels = torch.randint(0, 4, (8,), generator=gen)
    w = torch.tensor([1.0, 2.0, 0.5, 1.0])
    # alpha = 0: exactly the trainer's hard-label loss (class-weighted cross-entropy).
    plain = distillation_loss(student, teacher, labels, 4.0, 0.0, weight=w)
    assert torch.allclose(plain, F.cross_entropy(student, labels, weight=w))
    # alpha = 1: the labels do not matter.
    one = distillation_loss(student, teacher, labels, 4.0, 1.0, weight=w)
    other = distillation_loss(student, teacher, (labels + 1) % 4, 4.0, 1.0)
    assert torch.allclose(one, other)
    assert one.item() > 0
    # Gradients reach the student only; the same logits give zero soft loss.
    one.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
    same = distillation_loss(teacher.detach(), teacher.detach(), labels, 4.0, 1.0)
    assert same.item() == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def teacher_ckpt(tiny_cohort_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SE-CNN teacher trained through the CLI (16 px, 1 epoch)."""
    run = tmp_path_factory.mktemp("teacher") / "run"
    argv = ["train", "--model", "se-cnn", "--data", str(tiny_cohort_dir), "--out", str(run)]
    assert main([*argv, *TINY, *FAST, "--epochs", "1", "--no-test"]) == 0
    return run / "best.pt"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_distillation_run_records_teacher_and_resumes(
    tiny_cohort_dir: Path, teacher_ckpt: Path, tmp_path: Path
) -> None:
    teacher = tmp_path / "teacher.pt"
    shutil.copyfile(teacher_ckpt, teacher)
    run = tmp_path / "student"
    argv = ["train", "--model", "neurallnet", "--timesteps", "2", "--data", str(tiny_cohort_dir)]
    argv += ["--out", str(run), "--teacher", str(teacher), "--kd-temperature", "2"]
    argv += ["--kd-alpha", "0.5", "--epochs", "1", *TINY, *FAST]
    assert main(argv) == 0

    expected = {
        "teacher": str(teacher.resolve()),
        "teacher_sha256": _sha256(teacher),
        "teacher_model": "se-cnn",
        "temperature": 2.0,
        "alpha": 0.5,
    }
    for name in ("best.pt", "last.pt"):
        meta = load_checkpoint(run / name).metadata
        assert meta["distillation"] == expected, name
        assert meta["train_config"]["teacher"] == str(teacher)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["teacher"] == str(teacher)
    assert saved["kd_temperature"] == 2.0 and saved["kd_alpha"] == 0.5
    assert saved["resolved"]["distillation"] == expected
    assert (run / "test_metrics.json").is_file()

    # Resume keeps the teacher (from the run's config.yaml) and continues.
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", *FAST, "--no-test"]) == 0
    last = read_checkpoint_dict(run / "last.pt")
    assert last["training_state"]["epoch"] == 2
    assert last["metadata"]["distillation"] == expected

    # A different teacher file under the same path is refused on resume.
    other = get_model("se-cnn", num_classes=4, input_size=16, **TINY_CNN)
    save_checkpoint(teacher, other, CLASSES, {"size": 16, "clahe": False})
    config = TrainConfig.from_dict(
        {**yaml.safe_load((run / "config.yaml").read_text()), "epochs": 3, "resume": True}
    )
    with pytest.raises(CheckpointError, match="teacher changed"):
        train(config)


def _tensors(dataset: ImageDataset) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    return images, torch.tensor(dataset.labels)


def _predict(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(images).argmax(dim=1)


def test_student_moves_toward_the_teacher(tiny_cohort_dir: Path, tmp_path: Path) -> None:
    """alpha = 1 with a teacher that predicts a *permuted* labelling (class c -> c + 1):
    the student learns the teacher's answers, not the labels."""
    torch.manual_seed(0)
    cohort = load_cohort(tiny_cohort_dir)
    images, labels = _tensors(ImageDataset(cohort, Preprocessing(size=16)))
    shifted = (labels + 1) % 4
    teacher = get_model("se-cnn", num_classes=4, input_size=16, dropout=0.0, **TINY_CNN)
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    teacher.train()
    for _ in range(150):
        optimizer.zero_grad()
        F.cross_entropy(teacher(images), shifted).backward()
        optimizer.step()
    assert (_predict(teacher, images) == shifted).float().mean() >= 0.8  # a usable teacher
    teacher_path = save_checkpoint(
        tmp_path / "permuted.pt", teacher, cohort.class_names, {"size": 16, "clahe": False}
    )

    config = TrainConfig(
        model="neurallnet", data=tiny_cohort_dir, out=tmp_path / "student", size=16, timesteps=2,
        model_options=dict(SMALL_SNN), epochs=24, batch_size=8, lr=1e-2, augment=False,
        teacher=teacher_path, kd_alpha=1.0, kd_temperature=2.0, evaluate_test=False,
        log=False, device="cpu", threads=1, scheduler="none", patience=0,
    )  # fmt: skip
    train(config)
    train_part = Split.load(tmp_path / "student" / "split.json").apply(cohort)["train"]
    train_images, train_labels = _tensors(ImageDataset(train_part, Preprocessing(size=16)))
    target = _predict(teacher, train_images)

    seed_everything(0)  # as the trainer does before building the student
    before = get_model("neurallnet", num_classes=4, input_size=16, timesteps=2, **SMALL_SNN)
    after = load_checkpoint(tmp_path / "student" / "last.pt").model
    agree_before = (_predict(before, train_images) == target).float().mean().item()
    agree_after = (_predict(after, train_images) == target).float().mean().item()
    label_acc_after = (_predict(after, train_images) == train_labels).float().mean().item()
    assert agree_after >= 0.75, (agree_before, agree_after)
    assert agree_after >= agree_before + 0.3, (agree_before, agree_after)
    assert label_acc_after <= 0.5  # it followed the teacher, not the labels


# --------------------------------------------------------------------------- errors
def _student(data: Path, out: Path, **overrides: object) -> TrainConfig:
    values: dict[str, object] = dict(
        model="neurallnet", data=data, out=out, size=16, timesteps=2,
        model_options=dict(TINY_CNN), epochs=1, batch_size=8, log=False, device="cpu",
        threads=1, evaluate_test=False,
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def _fake_teacher(path: Path, class_names: list[str], preprocessing: dict[str, object]) -> Path:
    size = int(preprocessing.get("size", 16))  # type: ignore[call-overload]
    model = get_model("se-cnn", num_classes=len(class_names), input_size=size, **TINY_CNN)
    return save_checkpoint(path, model, class_names, preprocessing)


def test_bad_teachers_fail_before_training(
    tiny_cohort_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    teachers = tmp_path / "teachers"

    with pytest.raises(CheckpointError, match="teacher.*checkpoint not found"):
        train(_student(tiny_cohort_dir, runs / "a", teacher=teachers / "missing.pt"))
    teachers.mkdir()
    corrupt = teachers / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="teacher.*not a torch.save archive"):
        train(_student(tiny_cohort_dir, runs / "b", teacher=corrupt))

    other_classes = _fake_teacher(
        teachers / "classes.pt", ["Normal", "Early", "Pre", "Pro"], {"size": 16, "clahe": False}
    )
    with pytest.raises(ConfigError) as info:
        train(_student(tiny_cohort_dir, runs / "c", teacher=other_classes))
    message = str(info.value)
    assert "['Normal', 'Early', 'Pre', 'Pro']" in message
    assert "['Benign', 'Early', 'Pre', 'Pro']" in message

    big = _fake_teacher(teachers / "size32.pt", CLASSES, {"size": 32, "clahe": False})
    with pytest.raises(ConfigError, match=r"size 32 \(teacher\) vs 16 \(student\)"):
        train(_student(tiny_cohort_dir, runs / "d", teacher=big))
    clahe = _fake_teacher(teachers / "clahe.pt", CLASSES, {"size": 16, "clahe": True})
    with pytest.raises(ConfigError, match=r"clahe True \(teacher\) vs False \(student\)"):
        train(_student(tiny_cohort_dir, runs / "e", teacher=clahe))
    assert not any(runs.iterdir())  # nothing written for a bad teacher

    # Through the CLI: one line naming the problem, exit status 2.
    argv = ["train", "--model", "neurallnet", "--data", str(tiny_cohort_dir)]
    argv += ["--out", str(runs / "f"), "--teacher", str(big), *TINY, *FAST]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "size 32 (teacher) vs 16 (student)" in err and "Traceback" not in err
    assert not any(runs.iterdir())


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"kd_alpha": 1.5}, r"kd_alpha must be a number in \[0, 1\], got 1.5"),
        ({"kd_alpha": -0.1}, r"kd_alpha must be a number in \[0, 1\], got -0.1"),
        ({"kd_temperature": 0.0}, "kd_temperature must be a number > 0, got 0.0"),
        ({"kd_temperature": -2.0}, "kd_temperature must be a number > 0, got -2.0"),
        ({"kd_temperature": True}, "kd_temperature must be a number > 0"),
        ({"teacher": ""}, "teacher must be the path of a checkpoint file"),
    ],
)
def test_bad_distillation_options(overrides: dict[str, object], pattern: str) -> None:
    values: dict[str, object] = {"model": "neurallnet", "data": "d", "out": "o", "teacher": "t.pt"}
    values.update(overrides)
    with pytest.raises(ConfigError, match=pattern):
        TrainConfig(**values)


def test_distillation_options_need_a_teacher(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--teacher"):
        TrainConfig(model="neurallnet", data="d", out="o", kd_alpha=0.5)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: neurallnet\nteacher: t.pt\nkd-temperature: 3\nkd_alpha: 1\n")
    cfg = TrainConfig.from_dict({**load_recipe(recipe), "data": "d", "out": "o"})
    assert (cfg.teacher, cfg.kd_temperature, cfg.kd_alpha) == ("t.pt", 3, 1)
    assert TrainConfig(model="neurallnet", data="d", out="o").kd_temperature == 4.0
    assert TrainConfig(model="neurallnet", data="d", out="o").kd_alpha == 0.7

"""One cell end to end on real data (smoke setting: a CIFAR-10 subset, else Fashion-MNIST), and the CLI's
handling of bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from bench.run import runner, victims
from bench.run.cell import Cell
from bench.run.identity import cell_id, semantic_config
from bench.run.records import claim_path, read_records, record_path
from bench.run.runner import run_cell
from bench.run.wandb_logger import WandbLogger
from tests.conftest import (
    REPO,
    SMOKE_DATASET,
    data_dir_with_tiny_imagenet,
    group_options,
    is_timm,
    needs_smoke_data,
    slow_params,
)

pytestmark = needs_smoke_data


def test_smoke_cell_writes_full_record_and_reuses_model(smoke_cfg) -> None:
    cfg, names = smoke_cfg("attack=badnets", "defense=ft")
    first = run_cell(Cell.of(cfg, names))
    assert not first.cache_hit and first.asr_before > 50
    assert len(first.curves["victim"]) == 2 and len(first.curves["defense"]) == 1  # train / FT epochs
    assert len(first.curves["victim_acc"]) == 2 and all(0 <= a <= 100 for a in first.curves["victim_acc"])
    assert len(first.curves["defense_acc"]) == 1
    assert "loss_per_epoch" not in first.defense_info  # the curves are kept once, in curves
    assert "acc_per_epoch" not in first.defense_info
    assert first.config["attack"]["poison_rate"] == 0.1
    compute = first.compute
    assert compute["threads"] == compute["victim"]["threads"] == torch.get_num_threads()
    assert compute["cpu"] and compute["victim"]["cpu"] == compute["cpu"]
    assert compute["isa"] == torch.backends.cpu.get_cpu_capability() and isinstance(compute["cpu_bf16"], bool)
    stored = json.loads(record_path(cfg.results_dir, first.cell_id).read_text())
    assert stored == json.loads(json.dumps(first.to_dict(), default=str))  # the file holds what was returned
    assert (
        run_cell(Cell.of(cfg, names)).started_at == first.started_at
    )  # the record exists: the cell is skipped
    cfg.overwrite = True
    second = run_cell(Cell.of(cfg, names))
    assert second.cache_hit and second.acc_before == first.acc_before
    assert second.attack_train_s == first.attack_train_s
    records = read_records(cfg.results_dir)
    assert len(records) == 1 and records[0]["cell_id"] == first.cell_id
    assert records[0]["started_at"] >= first.started_at and records[0]["cache_hit"]  # rewritten
    record_path(cfg.results_dir, first.cell_id).unlink()  # a deleted (or never written) record
    cfg.overwrite = False
    assert run_cell(Cell.of(cfg, names)).cache_hit and len(read_records(cfg.results_dir)) == 1


def test_cell_claimed_by_another_process_is_skipped(smoke_cfg) -> None:
    cfg, names = smoke_cfg("attack=badnets", "defense=none")
    cid = cell_id(names, semantic_config(cfg, names))
    claim = claim_path(cfg.results_dir, cid)
    claim.parent.mkdir(parents=True)
    with FileLock(str(claim)):  # what a second sweep over the same list holds while it runs the cell
        assert run_cell(Cell.of(cfg, names)) is None
    assert read_records(cfg.results_dir) == []
    record = run_cell(Cell.of(cfg, names))  # released: this process runs it, and leaves no claim file behind
    assert record.cell_id == cid and not claim.exists()


def test_clean_model_accuracy_is_reported_once_cached(smoke_cfg) -> None:
    clean_cfg, clean_names = smoke_cfg("attack=none", "defense=none")
    clean = run_cell(Cell.of(clean_cfg, clean_names))
    assert clean.asr is None and clean.der is None
    assert clean.acc_clean_model == clean.acc_before == clean.acc
    cfg, names = smoke_cfg("attack=blend", "defense=none")
    record = run_cell(Cell.of(cfg, names))
    assert record.acc_clean_model == clean.acc_before


def run_cli(*args: str, cwd: Path, wandb_mode: str = "disabled") -> subprocess.CompletedProcess:
    """``python -m bench <args>`` in a subprocess, on the smoke data set unless ``args`` name another."""
    env = {**os.environ, "WANDB_MODE": wandb_mode, "PYTHONPATH": str(REPO)}
    env.pop("BENCH_CACHE_DIR", None)
    dataset = [] if any(a.startswith("dataset=") for a in args) else [f"dataset={SMOKE_DATASET}"]
    lead = [a for a in args[:1] if a == "-m"]  # argparse: the overrides after the flags, together
    cmd = [sys.executable, "-m", "bench", *lead, *dataset, *args[len(lead) :]]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


BAD_INPUT = [
    ("attack.poison_rate=1.5", "attack.poison_rate=1.5 is not allowed: must be a number in (0, 1]"),
    ("attack.target=10", f"attack.target must be in [0, 9] for {SMOKE_DATASET}, got 10"),
    ("defender_ratio=1", "defender_ratio=1 is not allowed: must be a number in (0, 1)"),
    (  # the smoke setting's 2,000 training images: 200 a class, 0.1 of which is no image
        "defender_ratio=0.0005",
        "defender_ratio=0.0005 of 2000 training images leaves class 0 with 0.1 of its 200 images (a "
        "class-balanced share rounds that to none); every class needs at least one",
    ),
    (
        "dataset.train_size=5",
        f"dataset.train_size=5 leaves class 0 with 0.5 of its {5000 if SMOKE_DATASET == 'cifar10' else 6000} "
        "images (a class-balanced share rounds that to none); every class needs at least one",
    ),
    (
        "results_dir=/proc/bench",
        "results_dir='/proc/bench' is not writable (/proc is not a writable "
        "directory: No such file or directory)",
    ),
    (
        "dataset.root=/nonexistent dataset.download=false",
        f"dataset.root '/nonexistent' does not hold {SMOKE_DATASET} and dataset.download=false",
    ),
]


@pytest.mark.parametrize(("override", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, override: str, message: str) -> None:
    out = run_cli("experiment=smoke", f"results_dir={tmp_path}", *override.split(), cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"error: {message}"]
    for failed in tmp_path.glob("*.failed"):  # a refusal at run time: its error, nothing said of before
        assert json.loads(failed.read_text())["error"] == message and "failure_file" not in failed.read_text()


def test_corrupt_cached_model_is_retrained(tmp_path: Path) -> None:
    args = ("experiment=smoke", f"results_dir={tmp_path}/runs", f"cache_dir={tmp_path}/cache", "defense=none")
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    entries = list((tmp_path / "cache").glob("*.pt"))
    assert len(entries) == 2  # the victim and its evaluation (triggered test set, own metrics)
    for entry in entries:
        entry.write_bytes(entry.read_bytes()[:1000])
    out = run_cli(*args, "overwrite=true", cwd=tmp_path)
    assert out.returncode == 0 and "fails its checksum" in out.stdout + out.stderr
    (record,) = (tmp_path / "runs").glob("*.json")
    assert json.loads(record.read_text())["cache_hit"] is False


def test_demo_path_shrunk(tmp_path: Path) -> None:
    """``make demo``'s cell (BadNets, then UNIT, in bf16 on the cpu_cifar recipe), at a size for tests."""
    shrink = ("dataset.train_size=1000", "dataset.test_size=500", "train.epochs=1", "defense.steps=3")
    out = run_cli(
        "experiment=demo", *shrink, f"results_dir={tmp_path}/r", f"cache_dir={tmp_path}/c", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    (record,) = read_records(tmp_path / "r")
    assert (record["dataset"], record["attack"], record["defense"]) == (SMOKE_DATASET, "badnets", "unit")
    assert record["config"]["precision"] == "bf16" and record["defense_info"]["layers"] == 17


def test_multirun_and_cfg_job(tmp_path: Path) -> None:
    out = run_cli("experiment=smoke", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 0 and "poison_rate: 0.1" in out.stdout
    sweep = ("-m", "experiment=smoke", "attack=badnets,blend", "defense=none")
    out = run_cli(*sweep, f"results_dir={tmp_path}/r", f"cache_dir={tmp_path}/c", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(r["attack"] for r in read_records(tmp_path / "r")) == ["badnets", "blend"]
    assert re.search(
        r"^sweep: 2 cells: 2 ran, 0 skipped .* 0 failed; 0:0\d:\d\d wall-clock$", out.stdout, re.M
    )
    again = run_cli(*sweep, f"results_dir={tmp_path}/r", f"cache_dir={tmp_path}/c", cwd=tmp_path)
    assert "sweep: 2 cells: 0 ran, 2 skipped (recorded)" in again.stdout


def test_sweep_goes_on_past_a_failing_cell_and_names_it(tmp_path: Path) -> None:
    """One bad cell (target 99) must not stop the sweep: the good cell's record is written, the failure is
    kept as ``<cell_id>.failed`` (not a record), the sweep's last lines name it, its exit status is 1, and
    a rerun retries the failed cell only."""
    dirs = (f"results_dir={tmp_path}/r", f"cache_dir={tmp_path}/c", f"hydra.sweep.dir={tmp_path}/s")
    sweep = ("-m", "experiment=smoke", "attack=badnets", "attack.target=99,0", "defense=none", *dirs)
    out = run_cli(*sweep, cwd=tmp_path)
    assert out.returncode == 1
    assert [r["config"]["attack"]["target"] for r in read_records(tmp_path / "r")] == [0]
    (failed,) = (tmp_path / "r").glob("*.failed")
    failure = json.loads(failed.read_text())
    assert failure["config"]["attack"]["target"] == 99
    assert "attack.target must be in [0, 9]" in failure["error"]
    assert out.stderr.strip().splitlines()[-1].startswith("failed: dataset=")
    again = run_cli(*sweep, cwd=tmp_path)
    assert again.returncode == 1 and "record exists, cell skipped" in again.stdout + again.stderr
    assert len(read_records(tmp_path / "r")) == 1


def test_a_chance_victim_is_flagged_in_its_record(smoke_cfg) -> None:
    cfg, names = smoke_cfg("attack=badnets", "defense=ft", "train.epochs=1", "train.lr=1e-9")  # untrained
    record = run_cell(Cell.of(cfg, names))
    assert any(w.startswith("victim ACC") and "at chance" in w for w in record.warnings)
    assert any("did not take" in w for w in record.warnings)


def test_output_to_a_non_terminal_talks_in_lines(tmp_path: Path) -> None:
    """A SLURM log is not a terminal: progress comes as lines (each phase's start, the victim's epochs),
    also with ``progress=false`` (it turns off bars, not news), the cell's start names its record, and the
    last line repeats the record path with the overrides."""
    dirs = (f"results_dir={tmp_path}/r", f"cache_dir={tmp_path}/c", f"hydra.run.dir={tmp_path}/h")
    out = run_cli("experiment=smoke", "defense=none", "progress=false", "attack.poison_rate=0.05", *dirs,
                  cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = (out.stdout + out.stderr).splitlines()
    assert any("victim epoch 1/2: loss" in line for line in lines)
    assert any("victim:   0%" in line for line in lines)  # the phase's start, as tqdm's line
    assert any("started; its record will be" in line for line in lines)
    assert "attack.poison_rate=0.05" in lines[-1] and f"record: {tmp_path}/r/" in lines[-1]


def test_one_output_root_holds_everything_a_run_writes(tmp_path: Path) -> None:
    out = run_cli("experiment=smoke", "defense=none", "logger=wandb", f"output_root={tmp_path}/o",
                  cwd=tmp_path, wandb_mode="offline")  # fmt: skip
    assert out.returncode == 0, out.stderr
    (record,) = read_records(tmp_path / "o" / "results" / "smoke")
    assert Path(record["victim_checkpoint"]).is_file()
    assert Path(record["victim_checkpoint"]).parent == tmp_path / "o" / ".cache" / "models"
    assert list((tmp_path / "o" / "outputs").rglob("environment.json"))
    assert list((tmp_path / "o" / "wandb").glob("offline-run-*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # nothing beside it


def test_dry_run_says_what_a_sweep_would_do_and_does_nothing(tmp_path: Path) -> None:
    dirs = (f"results_dir={tmp_path}/r", f"cache_dir={tmp_path}/c", f"hydra.sweep.dir={tmp_path}/s")
    out = run_cli("-m", "experiment=smoke", "attack=badnets,blend", "defense=none,ft", "dry_run=true", *dirs,
                  cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("dry run:")]
    assert len(lines) == 5 and all("run, training its victim, no estimate" in line for line in lines[:4])
    assert lines[-1].startswith(
        "dry run: 4 cells, 0 already recorded, 4 to run, 2 distinct victims to train; no estimate"
    )
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()


def test_wandb_online_without_a_server_falls_back_to_offline(monkeypatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    started = time.perf_counter()
    assert WandbLogger(mode="online").effective_mode() == "offline"
    assert time.perf_counter() - started < 10


def test_sigterm_mid_cell_leaves_no_record_and_a_rerun_completes(tmp_path: Path) -> None:
    """What SLURM does to a preempted job: SIGTERM while the victim trains. The cell stops with status 143,
    writes no record and releases its claim; the same command then runs it to one complete record."""
    args = ["experiment=smoke", "defense=none", "train.epochs=4", f"results_dir={tmp_path}/r",
            f"cache_dir={tmp_path}/c", f"hydra.run.dir={tmp_path}/h"]  # fmt: skip
    dataset = [f"dataset={SMOKE_DATASET}"]
    proc = subprocess.Popen([sys.executable, "-m", "bench", *dataset, *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 120
    while not list((tmp_path / "r").glob(".*.claim")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)  # loading the data or training the victim: mid-cell either way
    assert proc.poll() is None, "the cell ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "SIGTERM" in err and "Traceback" not in err, err
    assert read_records(tmp_path / "r") == [] and not list((tmp_path / "r").glob(".*.claim"))
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    assert len(read_records(tmp_path / "r")) == 1


def test_a_swallowed_sigterm_still_stops_the_cell_before_its_record(smoke_cfg, monkeypatch) -> None:
    """The SIGTERM handler's raise can be lost (the interpreter drops an exception raised inside a
    finalizer); the flag it sets still stops the cell before its record, and releases the claim."""
    monkeypatch.setattr(runner, "PREEMPTED", flag := threading.Event())
    flag.set()
    cfg, names = smoke_cfg("defense=none")
    with pytest.raises(runner.Preempted):
        run_cell(Cell.of(cfg, names))
    assert read_records(cfg.results_dir) == [] and not list(Path(cfg.results_dir).glob(".*.claim"))


def test_wandb_offline_run_is_written(smoke_cfg, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg, names = smoke_cfg("logger=wandb", f"logger.dir={tmp_path}", "defense=none")
    run_cell(Cell.of(cfg, names))
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1


# Clean-label attacks only work once the victim has learnt its classes (the backdoor is a shortcut beside
# the target class's features); a smoke victim (2 epochs on 2,000 images, ~25% ACC) has not, so their ASR
# is checked on the cpu_cifar victims (results/cpu_cifar/attacks.md), not here.
CLEAN_LABEL = ("sig", "cl", "combat", "narcissus")
# Trojan's trigger steps and CL's PGD steps are the papers' numbers and not budget-scaled (scaling them
# would change the committed records of the Fashion-MNIST grid), so plain smoke spends ~1.5 min and ~45 s
# on them; their smoke cells here shorten them.
SMOKE_ATTACK_OVERRIDES = {
    "trojan": ["attack.steps=20"],
    "cl": ["attack.steps=2"],
    "adap_blend": ["attack.poison_rate=0.05"],  # 0.3% of 2,000 images is 6: too few to learn in 2 epochs
    "dfst": ["attack.poison_rate=0.15"],  # at 5% the 2-epoch victim sat at the margin (10.9% on one machine)
}


PLAIN_MODELS = ("resnet18", "timm")  # the Table 1 architecture, and timm (no width: keeps its own)


@pytest.mark.parametrize(
    "model", [*PLAIN_MODELS, *slow_params(*(m for m in group_options("model") if m not in PLAIN_MODELS))]
)
def test_every_model_runs_in_plain_smoke_form(smoke_cfg, model: str) -> None:
    """``experiment=smoke model=<any>``, no other override: the suite's own architectures at 1/8 width
    (``model_width``), timm models at theirs."""
    cfg, names = smoke_cfg(f"model={model}", "defense=none")
    record = run_cell(Cell.of(cfg, names))
    assert record.model == model
    assert cfg.model.get("width", 1.0) == (1.0 if is_timm(model) else 0.125)


@pytest.mark.parametrize("name", [a for a in group_options("attack") if a != "none"])
def test_smoke_cell_per_attack(smoke_cfg, tmp_path: Path, name: str) -> None:
    overrides = SMOKE_ATTACK_OVERRIDES.get(name, [])
    if name == "narcissus":  # its surrogate learns on Tiny-ImageNet: a few files in its archive's layout
        overrides = [*overrides, f"data_dir={data_dir_with_tiny_imagenet(tmp_path)}"]
    cfg, names = smoke_cfg(f"attack={name}", "defense=none", *overrides)
    record = run_cell(Cell.of(cfg, names))
    if name not in CLEAN_LABEL:  # the smoke victim learnt the backdoor: above chance
        assert record.asr_before > 100 / 10 + 5
    assert record.asr == record.asr_before  # defense=none
    assert record.aux_train_s >= 0 and record.attack_train_s > 0
    if name == "issba":  # 40 codec steps cannot hide a secret: the records say so
        assert any(w.startswith("issba: the decoder reads the secret back") for w in record.warnings)
    if name == "trojan":  # its clean model was trained and cached by the pipeline, so the row has it
        assert record.acc_clean_model is not None
        assert record.attack_info["activation_after"] > record.attack_info["activation_before"]
    if name == "cl":
        assert record.attack_info["robust_acc_pgd"] <= record.attack_info["robust_acc_clean"]


def test_a_trigger_is_read_without_its_victim_unless_it_learns_with_the_victim(smoke_cfg) -> None:
    """scripts/trigger_content.py asks ``trigger_of``: BadNets' trigger comes from poisoning alone (no
    victim trained) and equals the trained victim's; Dynamic's generator learns with the classifier, so
    its victim is trained for it."""
    cell = Cell.of(*smoke_cfg("attack=badnets"))
    data, attack = victims.trigger_of(cell)
    assert cell.cache.meta(cell.victim_key) is None  # no victim was trained
    x = data.test.x[:16]
    assert torch.equal(attack.apply_uint8(x), victims.load_or_train_victim(cell).attack.apply_uint8(x))
    joint = Cell.of(*smoke_cfg("attack=dynamic"))
    victims.trigger_of(joint)
    assert joint.cache.meta(joint.victim_key) is not None
    trojan = Cell.of(*smoke_cfg("attack=trojan", "attack.steps=3"))
    with torch.no_grad():  # as the script calls it: Trojan's pattern is still optimised
        _, attack = victims.trigger_of(trojan)
    assert attack.info["steps"] == 3 and attack.info["activation_after"] != attack.info["activation_before"]

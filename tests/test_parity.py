"""The parity harness (scripts/parity): the official code sees our victim, data and normalisation through
its own interface, on the CPU, and its numbers land in one CSV row beside ours."""

from __future__ import annotations

import csv
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bench.defenses._base import DefenderContext, split_train_val
from bench.run.metrics import TriggeredTestSet, evaluate
from tests.conftest import REPO, toy_data, trained_toy_model

sys.path.insert(0, str(REPO / "scripts" / "parity"))
import harness  # noqa: E402
import official_unit  # noqa: E402

CPU = torch.device("cpu")

# A stand-in for Megum1/UNIT with the same interface: its own loaders refuse to run (the harness must
# redirect them), it calls .cuda() as the original does, and it "repairs" nothing.
STAND_IN_UTILS = """
import torch
from torchvision import transforms

def seed_torch(seed):
    torch.manual_seed(seed)

def get_transform(args, augment=False, tensor=False):
    return transforms.ToTensor()

def not_redirected(*args, **kwargs):
    raise RuntimeError("official I/O was not redirected")

get_norm = get_dataset = get_backdoor = PoisonDataset = not_redirected
"""
STAND_IN_UNIT = """
import time
import torch
from torch.utils.data import DataLoader
from utils import seed_torch, get_norm, get_dataset, get_backdoor, PoisonDataset

def acc(model, loader, preprocess):
    hits = total = 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.cuda(), y.cuda()
            hits += int((model(preprocess(x)).argmax(1) == y).sum())
            total += len(y)
    return hits / total

def unit(args, verbose=True):
    model = torch.load("ckpt/model.pt", map_location="cpu").cuda()
    model.eval()
    preprocess, _ = get_norm(args.dataset)
    test_set = get_dataset(args, train=False)
    poison_set = PoisonDataset(test_set, get_backdoor(args.attack, (32, 32), None), args.target)
    train = get_dataset(args, train=True, augment=True)
    print(f"model {type(model).__name__}, defender images {len(train)}, first {tuple(train[0][0].shape)}")
    a = acc(model, DataLoader(test_set, batch_size=args.batch_size), preprocess)
    s = acc(model, DataLoader(poison_set, batch_size=args.batch_size), preprocess)
    print(f"Initial --- Accuracy: {a*100:.2f}%, ASR: {s*100:.2f}%")
    print(f"After UNIT --- Accuracy: {a*100:.2f}%, ASR: {s*100:.2f}%")
    print("Running time: 1.25s")
"""


@pytest.fixture(scope="module")
def victim() -> harness.ParityVictim:
    model = trained_toy_model().eval()
    data, test = toy_data(200, seed=2), toy_data(100, seed=3)
    keep = test.y != 0
    x = test.x[keep].clone()
    x[:, :, :3] = 255  # class 0's band, bright: a trigger toward class 0 (only partly learned)
    triggered = TriggeredTestSet(x, test.y[keep])
    before = evaluate(model, test, triggered, 0, CPU)
    train, val = split_train_val(data, 0.2, seed=0)
    return harness.ParityVictim(
        model=model, mean=(0.5,) * 3, std=(0.5,) * 3, defender=DefenderContext(data, 10, CPU, progress=False),
        defender_train=train, defender_val=val, test=test, triggered=triggered, target=0,
        acc=before["acc"], asr=before["asr"],
    )  # fmt: skip


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    (tmp_path / "utils.py").write_text(textwrap.dedent(STAND_IN_UTILS))
    (tmp_path / "unit.py").write_text(textwrap.dedent(STAND_IN_UNIT))
    (tmp_path / "COMMIT").write_text("0123456789abcdef\n")
    return tmp_path


def test_official_code_sees_our_victim_data_and_normalisation(victim, checkout: Path) -> None:
    args = official_unit.official_args(eps=0.02, steps=3, lr=1e-3, seed=0, target=0)
    result = official_unit.run_official(checkout, victim, args)
    # its own reading of the victim equals ours: same network, normalisation, test and triggered images
    assert result.victim_acc == pytest.approx(victim.acc, abs=0.006)
    assert result.victim_asr == pytest.approx(victim.asr, abs=0.006)
    assert 0 < victim.asr < 100  # the comparison above is not of two trivial numbers
    assert "model ResNet, defender images 200, first (3, 32, 32)" in result.log
    assert result.seconds == 1.25  # its own timing line
    assert "unit" not in sys.modules and "utils" not in sys.modules  # unloaded after the run
    assert torch.Tensor.cuda is not None and torch.zeros(1).device == CPU


def test_defender_order_gives_the_reference_split_ours(victim) -> None:
    ordered = victim.defender_in_split_order()
    for c in range(10):  # the reference keeps, per class, the first 80% in dataset order for training
        members = torch.nonzero(ordered.y == c).flatten()
        n_train = int(len(members) * 0.8)
        assert torch.equal(
            ordered.x[members[:n_train]], victim.defender_train.x[victim.defender_train.y == c]
        )
        assert torch.equal(ordered.x[members[n_train:]], victim.defender_val.x[victim.defender_val.y == c])


def test_rows_replace_their_own_key_and_keep_the_columns(tmp_path: Path, victim, checkout: Path) -> None:
    out = tmp_path / "parity.csv"
    args = official_unit.official_args(eps=0.02, steps=3, lr=1e-3, seed=0, target=0)
    ref = official_unit.run_official(checkout, victim, args)

    def row(setting: str, ours_asr: float) -> harness.Row:
        return harness.Row(
            defense="unit", attack="toy", seed=0, ours_acc=victim.acc, ours_asr=ours_asr, ref_acc=ref.acc,
            ref_asr=ref.asr, ours_s=2.0, ref_s=ref.seconds, ref_commit=harness.git_commit(checkout),
            setting=setting, victim_acc=victim.acc, victim_asr=victim.asr, ref_victim_acc=ref.victim_acc,
            ref_victim_asr=ref.victim_asr,
        )  # fmt: skip

    harness.write_row(out, row("schedule=code", 1.0))
    harness.write_row(out, row("schedule=paper", 2.0))
    harness.write_row(out, row("schedule=code", 3.0))  # a rerun replaces its row
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    required = ["defense", "attack", "seed", "ours_acc", "ours_asr", "ref_acc", "ref_asr", "ours_s", "ref_s"]
    assert list(rows[0])[: len(required)] == required
    assert [(r["setting"], float(r["ours_asr"])) for r in rows] == [
        ("schedule=code", 3.0),
        ("schedule=paper", 2.0),
    ]
    assert rows[0]["ref_commit"] == "0123456789abcdef"  # the checkout's commit, beside each row
    assert float(rows[0]["d_asr"]) == pytest.approx(3.0 - ref.asr, abs=0.01)


def test_a_defense_seed_is_its_own_row(tmp_path: Path) -> None:
    """Rows of one victim under several defense seeds are kept apart; a row written before the column
    existed ran with the victim's seed and is replaced by the same row written now."""
    out = tmp_path / "parity.csv"

    def row(defense_seed: int | None, asr: float) -> harness.Row:
        return harness.Row(
            defense="anp", attack="badnets", seed=0, ours_acc=88.0, ours_asr=asr, ref_acc=88.0, ref_asr=4.0,
            ours_s=1.0, ref_s=1.0, ref_commit="c", setting="threshold=0.2", victim_acc=88.9, victim_asr=100.0,
            ref_victim_acc=None, ref_victim_asr=None, defense_seed=defense_seed,
        )  # fmt: skip

    harness.write_row(out, row(None, 13.0))
    text = out.read_text().splitlines()
    out.write_text("\n".join([text[0].removesuffix(",defense_seed"), text[1].removesuffix(",0")]) + "\n")
    harness.write_row(out, row(1, 5.0))
    harness.write_row(out, row(0, 12.0))  # replaces the row from before the column
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["defense_seed"], float(r["ours_asr"])) for r in rows] == [("0", 12.0), ("1", 5.0)]


def test_an_override_after_settings_without_the_separator_is_an_error() -> None:
    """``--settings a cache_dir=X`` (no ``--``) would run with the default cache: refused, settings named."""
    import run

    with pytest.raises(SystemExit, match="no setting cache_dir=/elsewhere of unit.*schedule=code"):
        run.main(["--defense", "unit", "--attack", "badnets", "--side", "ours",
                  "--settings", "schedule=code", "cache_dir=/elsewhere"])  # fmt: skip


def test_anp_neurons_reads_the_official_mask_file_at_or_below_the_threshold() -> None:
    """The official ``mask_values.txt`` format (its ``save_mask_scores``: index, layer, channel, mask to four
    decimals), kept after ``# mask_values.txt`` in the result's log: masks at or below the threshold."""
    import anp_neurons

    rows = [(0, "bn1", 2, 0.1), (1, "layer4.0.bn2", 74, 0.0), (2, "layer4.0.bn2", 75, 0.9),
            (3, "layer3.0.bn1", 5, 0.2)]  # fmt: skip
    mask_file = "No \t Layer Name \t Neuron Idx \t Mask Score \n" + "".join(
        "{} \t {} \t {} \t {:.4f} \n".format(*row) for row in rows
    )
    log = "printed output\n# mask_values.txt\n" + mask_file
    masks = anp_neurons.official_masks(log)
    assert anp_neurons.at_or_below(masks, 0.2) == {"bn1:2", "layer4.0.bn2:74", "layer3.0.bn1:5"}
    assert anp_neurons.at_or_below(masks, 0.05) == {"layer4.0.bn2:74"}
    with pytest.raises(SystemExit, match="keeps no mask_values"):
        anp_neurons.official_masks("printed output only")
    ours_near = {"bn1:2": 0.25}
    table = anp_neurons.other_side_masks(
        {"layer4.0.bn2:75"}, {"bn1:2", "layer3.0.bn1:5"}, ours_near, masks, 0.2
    )
    assert table[2:] == ["| layer4.0.bn2:75 | ours | 0.9000 |", "| bn1:2 | official | 0.2500 |",
                         "| layer3.0.bn1:5 | official | > 0.30 |"]  # fmt: skip


def test_anp_neurons_prunes_a_copy_by_zeroing_the_named_bn_weights() -> None:
    """The transplant evaluation prunes as both ANP codes do: the named channel's BN weight zeroed, its
    bias and every other channel untouched, in a copy (the victim itself unchanged)."""
    import anp_neurons

    from bench.models._normalize import Normalized

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    with torch.no_grad():
        net[1].weight.uniform_(0.5, 1.0)
        net[1].bias.uniform_(0.5, 1.0)
    model = Normalized(net, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    pruned = anp_neurons.pruned_copy(model, {"1:2"})
    assert pruned.net[1].weight[2] == 0
    assert torch.equal(pruned.net[1].bias, net[1].bias)
    keep = [0, 1, 3]
    assert torch.equal(pruned.net[1].weight[keep], net[1].weight[keep])
    assert (net[1].weight > 0).all()

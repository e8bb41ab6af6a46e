"""The paper's tables and figures from hand-made records: bold goes to the best cell, averages are pandas'
means, a missing cell is a gap and not a zero, the paper's numbers sit beside ours, and the same records
read back from W&B offline runs give the same frame."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.report import render, statistics
from bench.report.aggregate import records_frame, write_tables
from bench.run.records import FIELDS, NO_BACKDOOR, Record, sanity_warnings
from bench.run.wandb_logger import WandbLogger
from tests.conftest import REPO

# (attack, defense) -> (acc, asr); blend x ft is deliberately missing
CELLS = {
    ("badnets", "none"): (90.0, 100.0), ("badnets", "ft"): (89.0, 40.0), ("badnets", "unit"): (88.0, 2.0),
    ("blend", "none"): (91.0, 99.0), ("blend", "unit"): (90.5, 5.0),
}  # fmt: skip


def record(attack: str, defense: str, acc: float, asr: float | None, **extra: object) -> dict:
    before = CELLS.get((attack, "none"), (92.0, None))
    return {"cell_id": f"{attack}-{defense}", "dataset": "cifar10", "model": "resnet18", "attack": attack,
            "defense": defense, "seed": 0, "acc_clean_model": 92.0, "acc_before": before[0],
            "asr_before": before[1], "ra_before": 0.0, "acc": acc, "asr": asr, "ra": 50.0, "der": 75.0,
            "attack_train_s": 10.0, "aux_train_s": 0.0, "defense_s": 3.0 if defense == "ft" else 7.0,
            "eval_s": 1.0, "cache_hit": True, "device": "cpu", "defense_info": {},
            "config": {"seed": 0}} | extra  # fmt: skip


def write_records(root: Path, extra: list[dict] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = [record(a, d, acc, asr) for (a, d), (acc, asr) in CELLS.items()]
    rows += [record("none", "none", 92.0, None), record("none", "unit", 91.0, None), *extra]
    for r in rows:
        (root / f"{r['cell_id']}-{r['seed']}.json").write_text(json.dumps(r))
    return root


@pytest.fixture
def frame(tmp_path: Path) -> pd.DataFrame:
    return records_frame(write_records(tmp_path / "runs"))


def test_table1_paper_columns_gaps_and_averages(frame: pd.DataFrame) -> None:
    t1 = statistics.table1(frame).set_index(["attack", "defense"])
    assert t1.loc[("badnets", "ft"), "paper_asr"] == 9.78  # Table 1 of the paper
    assert t1.loc[("badnets", "unit"), ["acc", "asr"]].tolist() == [88.0, 2.0]
    assert pd.isna(t1.loc[("blend", "ft"), "asr"]) and t1.loc[("blend", "ft"), "paper_asr"] == 7.30
    assert "none" not in t1.index.get_level_values("attack")  # the clean model is Table 2's
    # blend x ft has no record: every column, ours and the paper's, is averaged over BadNets only (the
    # attacks every column has), not FT over one attack beside UNIT over two
    for defense in ("none", "ft", "unit"):
        for metric in ("acc", "asr", "paper_asr"):
            assert t1.loc[(statistics.AVERAGE, defense), metric] == t1.loc[("badnets", defense), metric]
    assert "leaving out Blend: some column has no record" in render.table1_markdown(statistics.table1(frame))


def test_a_complete_grid_averages_every_attack(tmp_path: Path) -> None:
    """With the missing cell filled, each average is the pandas mean of its column over both attacks."""
    frame = records_frame(write_records(tmp_path / "runs", [record("blend", "ft", 90.0, 20.0)]))
    t1 = statistics.table1(frame).set_index(["attack", "defense"])
    ours = frame[frame.attack != "none"].groupby("defense")[["acc", "asr"]].mean()
    for defense in ("none", "ft", "unit"):
        assert t1.loc[(statistics.AVERAGE, defense), ["acc", "asr"]].tolist() == pytest.approx(
            ours.loc[defense]
        )
    paper = statistics.paper_table1().query("attack in ['badnets', 'blend']").groupby("defense").asr.mean()
    assert t1.loc[(statistics.AVERAGE, "unit"), "paper_asr"] == pytest.approx(paper["unit"])
    assert "some column has no record" not in render.table1_markdown(statistics.table1(frame))


def test_paper_averages_over_all_attacks_are_the_published_ones() -> None:
    paper = statistics.paper_table1()
    frame = paper.assign(dataset="cifar10", model="resnet18", seed=0, ra=0.0, der=0.0, defense_s=1.0)
    avg = statistics.table1(frame).query("attack == @statistics.AVERAGE").set_index("defense")
    # the paper's printed averages; its FT ACC (90.57), no-defense ACC (94.26) and SEAM (91.48 / 8.08)
    # are not the means of its own rows (90.67, 94.24, 91.40 / 8.25): bench/report/reference/README.md
    published = {"unit": (91.77, 3.20), "anp": (91.01, 27.31), "nc": (91.36, 18.80), "nad": (90.85, 12.92)}
    for defense, (acc, asr) in published.items():
        assert avg.loc[defense, ["paper_acc", "paper_asr"]].tolist() == pytest.approx([acc, asr], abs=0.006)
    assert statistics.spearman(statistics.table1(frame)) == (pytest.approx(1.0), 8)


def test_bold_marks_the_best_repaired_cell_and_gaps_stay_gaps(frame: pd.DataFrame) -> None:
    t1 = statistics.table1(frame)
    asr = render.formatted(t1, "asr")
    assert asr.loc["BadNets", "UNIT"] == "**2.00** (0.78)"
    assert asr.loc["BadNets", "FT"] == "40.00 (9.78)"
    assert asr.loc["BadNets", "None"] == "100.00 (100.00)"  # the undefended model is never "best"
    assert asr.loc["Blend", "FT"] == f"{render.GAP} (7.30)"  # no record: a gap, not 0.00
    acc = render.formatted(t1, "acc")
    assert acc.loc["BadNets", "FT"].startswith("**89.00**")
    latex = render.table1_latex(t1)
    assert r"\textbf{2.00} {\scriptsize(0.78)}" in latex and r"\multicolumn{2}{c}{UNIT}" in latex
    assert r"& 99.00 {\scriptsize(100.00)} & -- {\scriptsize(90.68)} & -- {\scriptsize(7.30)}" in latex


def test_a_warned_cell_is_marked_and_never_bold(tmp_path: Path) -> None:
    """BadNets x UNIT's record says its repaired model is at chance: the cell is marked and leaves the
    competition, so FT, the only other repaired model of the row, is not bold either."""
    root = write_records(tmp_path / "runs")
    path = root / "badnets-unit-0.json"
    path.write_text(
        json.dumps(json.loads(path.read_text()) | {"warnings": ["repaired ACC 10.0% is at chance"]})
    )
    asr = render.formatted(statistics.table1(records_frame(root)), "asr")
    assert asr.loc["BadNets", "UNIT"] == f"2.00{render.WARNED} (0.78)"
    assert asr.loc["BadNets", "FT"] == "40.00 (9.78)"


def test_a_collapsed_model_is_never_bold_and_leaves_the_second_average(tmp_path: Path) -> None:
    """NAD on BadNets keeps 30% of its victim's 90% ACC (no warning in its record: it is not at chance):
    its low ASR must not win the row nor the defense's ranking."""
    root = write_records(
        tmp_path / "runs",
        [record("badnets", "nad", 30.0, 0.5), record("blend", "nad", 89.0, 3.0)]
        + [record("blend", "ft", 90.0, 20.0)],
    )
    table = statistics.table1(records_frame(root))
    asr = render.formatted(table, "asr")
    assert asr.loc["BadNets", "NAD"].startswith(f"0.50{render.WARNED}")  # marked, not bold
    assert asr.loc["BadNets", "UNIT"].startswith("**2.00**")  # the best model that still works
    rows = table.set_index(["attack", "defense"])
    assert rows.loc[(statistics.AVERAGE, "nad"), "asr"] == pytest.approx((0.5 + 3.0) / 2)
    assert rows.loc[(statistics.KEPT, "nad"), "asr"] == pytest.approx(3.0)  # Blend's cell only
    assert rows.loc[(statistics.KEPT, "nad"), "paper_asr"] == pytest.approx(3.32)  # the paper's, same attacks
    assert "collapsed cells left out" in render.averages_markdown(table)


def test_der_against_a_model_at_chance_is_not_a_number(tmp_path: Path) -> None:
    root = write_records(tmp_path / "runs")
    path = root / "badnets-unit-0.json"
    path.write_text(
        json.dumps(json.loads(path.read_text()) | {"warnings": ["victim ACC 10.0% is at chance (10%)"]})
    )
    rows = statistics.table1(records_frame(root)).set_index(["attack", "defense"])
    assert pd.isna(rows.loc[("badnets", "unit"), "der"]) and rows.loc[("badnets", "ft"), "der"] == 75.0


def test_sanity_warnings_name_what_is_wrong() -> None:
    before = {"acc": 11.0, "asr": 12.0, "ra": 5.0}
    flags = sanity_warnings(10, "ft", before, dict(before), {})
    assert len(flags) == 4 and "victim ACC 11.0%" in flags[0] and "repaired ACC 11.0%" in flags[1]
    assert "did not take" in flags[2] and flags[3] == "the defense changed no prediction"
    good = {"acc": 90.0, "asr": 100.0, "ra": 0.0}
    assert sanity_warnings(10, "unit", good, {"acc": 89.0, "asr": 2.0, "ra": 85.0}, {}) == []
    assert "flags 95%" in sanity_warnings(10, "strip", good, good, {"fpr": 95.0, "tpr": 99.0})[0]


def test_duplicate_cells_are_refused(tmp_path: Path) -> None:
    twin = record("badnets", "ft", 80.0, 1.0, cell_id="badnets-ft-other")
    frame = records_frame(write_records(tmp_path / "runs", [twin]))
    with pytest.raises(ValueError, match="more than once"):
        statistics.table1(frame)
    seed1 = record("badnets", "ft", 87.0, 20.0, seed=1)
    frame = records_frame(write_records(tmp_path / "seeds", [seed1]))
    t1 = statistics.table1(frame).set_index(["attack", "defense"])
    assert t1.loc[("badnets", "ft"), "asr"] == 30.0 and t1.loc[("badnets", "ft"), "n_seeds"] == 2


def test_seed_spread_is_a_95_percent_interval(tmp_path: Path) -> None:
    """Two seeds of BadNets x FT (ASR 40 and 20): mean 30 ± t(0.975, 1) x sd / sqrt(2) = 12.706 x 10;
    a one-seed cell and the average rows carry no interval."""
    frame = records_frame(write_records(tmp_path / "seeds", [record("badnets", "ft", 87.0, 20.0, seed=1)]))
    t1 = statistics.table1(frame)
    rows = t1.set_index(["attack", "defense"])
    assert rows.loc[("badnets", "ft"), "asr_ci95"] == pytest.approx(127.06)
    assert pd.isna(rows.loc[("badnets", "unit"), "asr_ci95"]) and pd.isna(
        rows.loc[(statistics.AVERAGE, "ft"), "asr_ci95"]
    )
    assert render.formatted(t1, "asr").loc["BadNets", "FT"] == "30.00 ±127.06 (9.78)"


def test_table2_and_figures_are_written(frame: pd.DataFrame, tmp_path: Path) -> None:
    t2 = statistics.table2(frame)
    row = t2.iloc[0]
    assert (row.dataset, row.model, row.acc_original, row.acc_unit) == ("cifar10", "resnet18", 92.0, 91.0)
    assert row.paper_acc_unit == 92.25
    written = write_tables(frame, tmp_path / "out")
    text = (tmp_path / "out" / "table2.md").read_text()
    header = [c.strip() for c in text.splitlines()[2].strip("|").split("|")]
    assert header == ["dataset", "model", "No defense", "UNIT", "Paper: no defense", "Paper: UNIT"]
    assert "92.25" in text.splitlines()[4] and "91.00" in text.splitlines()[4]  # two decimals throughout
    names = sorted(p.name for p in written)
    kinds = (("table1", "md csv tex"), ("table1_heatmap", "png pdf"), ("table2", "md csv"),
             ("fig5", "png pdf"), ("fig6", "png pdf"), ("cost", "md csv"))  # fmt: skip
    assert names == sorted(f"{s}.{e}" for s, es in kinds for e in es.split())
    assert all(p.stat().st_size > 0 for p in written)
    csv = pd.read_csv(tmp_path / "out" / "table1.csv")
    gap = csv[(csv.attack == "blend") & (csv.defense == "ft")]
    assert gap.asr.isna().all() and not gap.paper_asr.isna().any()


def test_each_pair_gets_its_table1(tmp_path: Path) -> None:
    """Records of a second architecture are not dropped: they get their own Table 1 beside the paper's."""
    extra = [record(a, d, 80.0, 5.0, model="vgg11", cell_id=f"vgg-{a}-{d}") for a, d in CELLS]
    written = {p.name for p in write_tables(records_frame(write_records(tmp_path / "runs", extra)), tmp_path)}
    assert {"table1.md", "table1_cifar10_vgg11.md", "table1_cifar10_vgg11.csv"} <= written
    assert "cifar10 / vgg11" in (tmp_path / "table1_cifar10_vgg11.md").read_text().splitlines()[0]
    assert "cifar10 / resnet18" in (tmp_path / "table1.md").read_text().splitlines()[0]


def test_tables_name_their_setting(tmp_path: Path) -> None:
    """Every table heading says what the records were trained with; a key the records disagree on is
    shown as mixed, never as one of the values."""
    config = {"seed": 0, "model": {"width": 0.25}, "train": {"epochs": 20}, "precision": "bf16"}
    runs = write_records(tmp_path / "runs")
    for path in runs.glob("*.json"):
        row = json.loads(path.read_text())
        epochs = 30 if row["attack"] == "blend" else 20
        path.write_text(json.dumps(row | {"config": config | {"train": {"epochs": epochs}}}))
    frame = records_frame(runs)
    heading = render.table1_markdown(statistics.table1(frame)).splitlines()[0]
    assert "width 0.25, epochs mixed, precision bf16" in heading
    clean = render.table2_markdown(statistics.table2(frame)).splitlines()[0]
    assert "width 0.25, epochs 20, precision bf16" in clean
    # Records from before ``precision`` existed ran at its default: beside ones that name it, not mixed.
    older = {key: value for key, value in config.items() if key != "precision"}
    for path in runs.glob("*.json"):
        row = json.loads(path.read_text())
        named = row["attack"] == "blend"
        path.write_text(json.dumps(row | {"config": older | ({"precision": "auto"} if named else {})}))
    assert "precision auto" in render.table1_markdown(statistics.table1(records_frame(runs))).splitlines()[0]


def test_cli_writes_tables(tmp_path: Path) -> None:
    runs = write_records(tmp_path / "runs")
    out = subprocess.run([sys.executable, "-m", "bench.report", str(runs), "--out", str(tmp_path / "o")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "o" / "table1.md").read_text()
    assert "| BadNets" in text and "**2.00** (0.78)" in text and "Spearman" in text
    # no blend x ft; records that never named ``precision`` ran at its default, and the heading says so
    assert text.startswith("Table 1 on cifar10 / resnet18 (precision auto). 5 of 6 cells have a record.")


def test_a_second_pairs_runs_join_table2_and_fig5_but_not_table1(tmp_path: Path) -> None:
    """Fig. 5's VGG-11 panel kept in a directory of its own: read with the ResNet-18 grid, Table 1 stays the
    paper's pair, Table 2 and Fig. 5 get both pairs; without the paper's pair Table 1 refuses the mix."""
    grid = write_records(tmp_path / "grid")
    vgg = tmp_path / "vgg"
    vgg.mkdir()
    panel = [("badnets", "none", 85.0, 99.0), ("badnets", "unit", 84.0, 3.0), ("none", "none", 86.0, None),
             ("none", "unit", 85.5, None)]  # fmt: skip
    for attack, defense, acc, asr in panel:
        r = record(attack, defense, acc, asr, cell_id=f"vgg-{attack}-{defense}", model="vgg11")
        (vgg / f"{r['cell_id']}.json").write_text(json.dumps(r))
    command = [sys.executable, "-m", "bench.report", str(grid), str(vgg), "--out", str(tmp_path / "o")]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    heading = (tmp_path / "o" / "table1.md").read_text().splitlines()[0]
    assert heading.startswith("Table 1 on cifar10 / resnet18 (precision auto). 5 of 6")
    assert list(pd.read_csv(tmp_path / "o" / "table2.csv").model) == ["resnet18", "vgg11"]
    assert (tmp_path / "o" / "fig5.png").exists()
    with pytest.raises(ValueError, match="one dataset/model pair"):
        statistics.table1(records_frame(vgg, tmp_path / "grid").assign(model=lambda f: f.model + "-x"))


def test_cli_refuses_a_table_of_mixed_configs_and_where_picks_one(tmp_path: Path) -> None:
    """Two BadNets x FT records of different poison rates: no table silently keeps one (exit 1, naming
    the key); --where picks a config; the per-cell listing shows the differing key as a column."""
    twin = record("badnets", "ft", 80.0, 1.0, cell_id="badnets-ft-other",
                  config={"seed": 0, "attack": {"poison_rate": 0.05}})  # fmt: skip
    first = record("badnets", "ft", 89.0, 40.0, config={"seed": 0, "attack": {"poison_rate": 0.1}})
    runs = write_records(tmp_path / "runs", [twin, first])

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bench.report", str(runs), *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    refused = cli("--out", str(tmp_path / "o"))
    assert refused.returncode == 1 and "attack.poison_rate differ" in refused.stderr
    assert not (tmp_path / "o" / "table1.md").exists()
    picked = cli("--out", str(tmp_path / "p"), "--where", "attack.poison_rate=0.1")
    assert picked.returncode == 0, picked.stderr
    picked_table = (tmp_path / "p" / "table1.md").read_text()
    assert "1 of 1 cells" in picked_table and "40.00" in picked_table and "80.00" not in picked_table
    listing = cli("--attack", "badnets", "--defense", "ft")
    assert "differ in attack.poison_rate" in listing.stdout and "|   attack.poison_rate |" in listing.stdout
    for no_match in (("--where", "attack.poison_rate=0.2"), ("--attack", "wanet"), ("--defense", "seam")):
        empty = cli(*no_match)  # a filter that matches nothing says so, whichever filter it is
        assert empty.returncode == 1 and "match the filters" in empty.stderr, no_match


def test_records_read_back_from_wandb_offline_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(dir=str(tmp_path))
    originals = [record("badnets", "unit", 88.0, 2.0, defense_info={"steps_run": 40}),
                 record("none", "none", 92.0, None)]  # fmt: skip
    for r in originals:  # a Record as the pipeline hands it over (fields a test record lacks are None)
        logger.log_record(Record(**{name: r.get(name) for name in FIELDS}))
    frame = records_frame(tmp_path / "wandb", wandb=True).set_index("cell_id")
    assert sorted(frame.index) == ["badnets-unit", "none-none"]
    row = frame.loc["badnets-unit"]
    assert (row.attack, row.defense, row.acc, row.asr, row.seed) == ("badnets", "unit", 88.0, 2.0, 0)
    assert row["defense_info.steps_run"] == 40 and row["config.seed"] == 0
    assert pd.isna(frame.loc["none-none", "asr"])  # never logged: a gap


def test_clean_accuracy_is_joined_from_the_clean_record_whatever_ran_first(tmp_path: Path) -> None:
    root = write_records(tmp_path / "runs")
    path = root / "blend-unit-0.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"acc_clean_model": None}))
    frame = records_frame(root).set_index("cell_id")
    assert frame.loc["blend-unit", "acc_clean_model"] == frame.loc["none-none", "acc_before"] == 92.0


def test_agreement_classes_each_cell_against_the_paper(frame: pd.DataFrame) -> None:
    """BadNets x FT: 40% ASR against the paper's 9.78 (partly removed vs removed); UNIT removes both
    backdoors in both; Blend x FT has no record of ours; the no-defense column is not compared."""
    t1 = statistics.table1(frame)
    marks = render.agreement(t1)
    assert (
        marks.loc["BadNets", "FT"] == render.SURVIVES_MORE
        and marks.loc["BadNets", "UNIT"] == "=" == marks.loc["Blend", "UNIT"]
    )
    assert marks.loc["Blend", "FT"] == render.NO_NUMBER and "None" not in marks.columns
    assert len({render.GAP, render.NO_NUMBER, render.SURVIVES_MORE, render.SURVIVES_LESS, "="}) == 5
    assert marks.loc["Agree"].to_dict() == {"FT": "0/1", "UNIT": "2/2"}
    survived = t1.assign(asr=t1.asr.where(~((t1.attack == "blend") & (t1.defense == "unit")), 50.0))
    # 50% is the survived class's edge
    assert render.agreement(survived).loc["Blend", "UNIT"] == render.SURVIVES_MORE
    assert "### Where we agree with the paper" in render.table1_markdown(t1)


def test_a_cell_whose_seeds_fall_in_different_classes_is_marked(tmp_path: Path) -> None:
    """BadNets x FT at 40% (partly removed) and 5% (removed) over two seeds: its mark carries the split;
    two UNIT seeds in one class (2% and 8%) and one-seed cells do not."""
    extra = [record("badnets", "ft", 87.0, 5.0, seed=1), record("badnets", "unit", 88.0, 8.0, seed=1)]
    t1 = statistics.table1(records_frame(write_records(tmp_path / "seeds", extra)))
    rows = t1.set_index(["attack", "defense"])
    assert rows.loc[("badnets", "ft"), "seeds_split"] and not rows.loc[("badnets", "unit"), "seeds_split"]
    marks = render.agreement(t1)
    # the mean, 22.5%, is partly removed against the paper's 9.78 (removed): the backdoor fares better
    assert marks.loc["BadNets", "FT"] == render.SURVIVES_MORE + render.SEEDS_SPLIT
    assert marks.loc["BadNets", "UNIT"] == "=" == marks.loc["Blend", "UNIT"]
    assert render.SEEDS_SPLIT in render.table1_markdown(t1)


def test_a_row_without_backdoor_leaves_averages_and_agreement(tmp_path: Path) -> None:
    """Adap-Blend's victim has no backdoor (its records carry the sanity warning): its row is shown but
    left out of the averages (ours and the paper's) and marked n/a, not counted, in the agreement map."""
    no_backdoor = [f"ASR 4.3% before any defense: {NO_BACKDOOR}"]
    extra = [record("adap_blend", d, 89.0, 4.0, asr_before=4.3, warnings=no_backdoor) for d in ("none", "ft")]
    t1 = statistics.table1(records_frame(write_records(tmp_path / "runs", extra)))
    avg = t1[t1.attack == statistics.AVERAGE].set_index("defense")
    assert avg.loc["ft", "asr"] == 40.0 and avg.loc["ft", "paper_asr"] == 9.78  # BadNets' alone
    assert avg.loc["none", "asr"] == 100.0  # Blend has no FT record, so it is left out too
    marks = render.agreement(t1)
    assert marks.loc["Adap-Blend", "FT"] == render.NOT_APPLICABLE and marks.loc["Agree", "FT"] == "0/1"
    assert "leaving out Adap-Blend" in render.table1_markdown(t1)
    clean_rows = statistics.table1(records_frame(write_records(tmp_path / "b")))
    assert "backdoor did not take" not in render.table1_markdown(clean_rows)


def test_a_complete_grid_keeps_its_marks_and_two_decimals(tmp_path: Path) -> None:
    """With no gap left, pandas pivots the warning flags to numpy bools and a column without paper numbers
    holds bare numbers: the dagger and the trailing zero must survive both (the CIFAR grid lost them)."""
    collapsed = ["ACC 10.0%: the model is at chance"]
    extra = [record("blend", "ft", 10.0, 100.0, warnings=collapsed)]
    extra += [record(attack, "bna", 87.6, 100.0) for attack in ("badnets", "blend")]  # no paper numbers
    grid = statistics.table1(records_frame(write_records(tmp_path / "runs", extra)))
    assert grid.acc.notna().all()  # complete: no gap anywhere
    text = render.table1_markdown(grid)
    assert "10.00 † (90.68)" in text and "88.00 (92.48)" in text
    assert " 87.60 |" in text and " 87.6 |" not in text  # BNA: bare numbers keep their two decimals
    assert r"10.00$^\dagger$" in render.table1_latex(grid)


def test_cost_counts_one_core_minutes_per_defense_column(tmp_path: Path) -> None:
    """Minutes are wall-clock x threads (FT's 3 s on 2 threads = 0.1 one-core min; UNIT's 7 s on one
    thread); a record without a thread count is untimed, not zero; the no-defense cells cost nothing."""
    root = write_records(tmp_path / "runs")
    for path in root.glob("*.json"):
        row = json.loads(path.read_text())
        threads = {"ft": 2, "unit": 1}.get(row["defense"])
        untimed = row["attack"] == "none" and row["defense"] == "unit"
        compute = {} if untimed else {"compute": {"threads": threads, "cpu": "Xeon"}}
        path.write_text(json.dumps(row | compute))
    table = statistics.cost(records_frame(root)).set_index("defense")
    assert list(table.index) == ["ft", "unit", "all"]  # the paper's column order, then the total
    assert table.loc["ft", ["cells", "untimed", "total"]].tolist() == [1, 0, pytest.approx(0.1)]
    assert table.loc["unit", ["cells", "untimed", "median", "total"]].tolist() == [
        3, 1, pytest.approx(7 / 60), pytest.approx(14 / 60)]  # fmt: skip
    assert table.loc["all", ["cells", "untimed", "total"]].tolist() == [4, 1, pytest.approx(0.1 + 14 / 60)]
    assert "Processors: Xeon." in render.cost_markdown(statistics.cost(records_frame(root)))
    nothing = statistics.cost(records_frame(write_records(tmp_path / "old"))).set_index("defense")
    assert nothing.total.isna().all() and nothing.loc["all", "untimed"] == 4


def test_labels_bold_and_spearman_say_only_what_the_records_support(tmp_path: Path) -> None:
    """Fashion-MNIST records: no paper numbers beside them, the pair named; Spearman needs 5 defenses;
    a row with one repaired model has no bold."""
    root = tmp_path / "runs"
    root.mkdir()
    for (attack, defense), (acc, asr) in CELLS.items():
        r = record(attack, defense, acc, asr) | {"dataset": "fashion_mnist"}
        (root / f"{attack}-{defense}.json").write_text(json.dumps(r))
    t1 = statistics.table1(records_frame(root))
    text = render.table1_markdown(t1)
    assert text.startswith("Table 1 on fashion_mnist / resnet18 (precision auto).")
    assert "not shown beside these" in text
    assert "(0.78)" not in text and "not computed (0 defenses" in text and "agree with the paper" not in text
    asr = render.formatted(t1, "asr")
    assert asr.loc["BadNets", "UNIT"] == "**2.00**" and asr.loc["Blend", "UNIT"] == "5.00"  # Blend: UNIT only


def test_wandb_logger_draws_each_curve_against_its_own_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    logged: list[dict] = []

    class FakeRun:
        summary: dict = {}

        def define_metric(self, name: str, step_metric: str | None = None) -> None:
            logged.append({"define": name, "step": step_metric})

        def log(self, values: dict) -> None:
            logged.append(values)

        def finish(self) -> None:
            pass

    monkeypatch.setitem(sys.modules, "wandb", type(sys)("wandb"))
    sys.modules["wandb"].init = lambda **kwargs: FakeRun()
    curves = {"victim": [2.0, 1.5], "victim_acc": [30.0, 55.5], "defense": [0.4]}
    fields = record("badnets", "ft", 89.0, 40.0) | {"curves": curves}
    WandbLogger(mode="offline").log_record(Record(**{name: fields.get(name) for name in FIELDS}))
    assert {"define": "victim/loss", "step": "victim/epoch"} in logged
    assert {"define": "victim/train_acc", "step": "victim/epoch"} in logged
    assert {"victim/epoch": 2, "victim/train_acc": 55.5} in logged
    assert {"victim/epoch": 2, "victim/loss": 1.5} in logged and {
        "defense/epoch": 1,
        "defense/loss": 0.4,
    } in logged


def test_readme_headline_is_the_committed_cifar_grid() -> None:
    """The README's headline averages are the ones the committed CIFAR-10 records aggregate to (they are
    copied from table1.md, so a grid that moves without the README fails here)."""
    runs = REPO / "results" / "cpu_cifar" / "runs"
    headline = render.averages_markdown(statistics.table1(records_frame(runs / "table1", runs / "vgg11")))
    assert headline in (REPO / "README.md").read_text()
    assert headline in (REPO / "results" / "cpu_cifar" / "table1.md").read_text()

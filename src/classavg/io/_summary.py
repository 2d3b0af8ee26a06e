"""A summary of a particle data set (what ``classavg info`` prints)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._optics import optics_groups

__all__ = ["dataset_summary"]


def _stats(values, keys=("min", "median", "max")):
    v = np.asarray(values, dtype=np.float64)
    funcs = {"min": np.min, "median": np.median, "max": np.max}
    return {k: float(funcs[k](v)) for k in keys}


def _plain(value):
    """A numpy scalar as a JSON-friendly int, float or str."""
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return int(value) if float(value).is_integer() else float(value)
    return str(value)


def dataset_summary(src) -> dict:
    """Describe a particle data set: size, optics groups, CTF and origin ranges.

    Parameters
    ----------
    src : ImageSource
        Typically a :class:`RelionSource`; other sources give what their metadata holds.

    Returns
    -------
    dict
        JSON-serialisable: ``n_particles``, ``box_size`` (px), ``pixel_size`` (A),
        ``star_file`` and ``relion_version`` (``"3.0"``/``"3.1"``, None for other sources),
        ``n_stacks`` (None for other sources), ``optics_groups`` (list of dicts: ``group``,
        ``name``, ``voltage`` kV, ``cs`` mm, ``amplitude_contrast``, ``pixel_size`` A,
        ``count``), ``ctf`` (None without CTF; else ``defocus_u``/``defocus_v`` A and
        ``defocus_angle`` deg as ``{min, median, max}``), ``origin`` (None without origins;
        else ``x_angst``/``y_angst`` ``{min, max}``, RELION sign convention).
    """
    md = src.metadata
    relion = hasattr(src, "star_version") and hasattr(src, "optics")  # a RelionSource
    if relion and "rlnOpticsGroup" in md.columns:
        optics = src.optics
        counts = md["rlnOpticsGroup"].value_counts()
        gcount = [int(counts.get(g, 0)) for g in optics["rlnOpticsGroup"]]
    else:
        gid, optics = optics_groups(md, pixel_size=src.pixel_size, L=src.L)
        gcount = np.bincount(gid)[optics["rlnOpticsGroup"].to_numpy()].tolist()

    def field(row, col, default=None):
        return float(row[col]) if col in row and pd.notna(row[col]) else default

    groups = []
    for (_, row), count in zip(optics.iterrows(), gcount):
        groups.append({
            "group": _plain(row["rlnOpticsGroup"]),
            "name": str(row.get("rlnOpticsGroupName", f"opticsGroup{row['rlnOpticsGroup']}")),
            "voltage": field(row, "rlnVoltage"),
            "cs": field(row, "rlnSphericalAberration"),
            "amplitude_contrast": field(row, "rlnAmplitudeContrast"),
            "pixel_size": field(row, "rlnImagePixelSize", src.pixel_size),
            "count": int(count),
        })
    ctf = None
    if all(c in md.columns for c in ("rlnDefocusU", "rlnDefocusV")):
        ctf = {"defocus_u": _stats(md["rlnDefocusU"]), "defocus_v": _stats(md["rlnDefocusV"])}
        if "rlnDefocusAngle" in md.columns:
            ctf["defocus_angle"] = _stats(md["rlnDefocusAngle"])
    origin = None
    if "rlnOriginXAngst" in md.columns or "rlnOriginX" in md.columns:
        o = -np.asarray(src.offsets, dtype=np.float64) * src.pixel_size
        origin = {"x_angst": _stats(o[:, 0], ("min", "max")),
                  "y_angst": _stats(o[:, 1], ("min", "max"))}
    return {
        "star_file": str(src.star_path) if relion else None,
        "relion_version": src.star_version if relion else None,
        "n_particles": int(src.n),
        "box_size": int(src.L),
        "pixel_size": float(src.pixel_size),
        "n_stacks": len(src.stack_names) if relion else None,
        "optics_groups": groups,
        "ctf": ctf,
        "origin": origin,
    }

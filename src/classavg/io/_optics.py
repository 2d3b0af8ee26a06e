"""Optics groups of any image source (shared by ``save_source`` and ``dataset_summary``)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .star import OPTICS_LABELS

__all__ = ["optics_groups", "complete_optics", "DEFAULT_OPTICS"]

logger = logging.getLogger(__name__)

_KEYS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")
#: Values written for a data set that gives none (a simulation without CTF, an array): RELION's
#: tools (``relion_stack_create``, ``relion_reconstruct``) refuse an optics block without them.
DEFAULT_OPTICS = {"rlnVoltage": 300.0, "rlnSphericalAberration": 2.7,
                  "rlnAmplitudeContrast": 0.1}
_FRESH = ("rlnOpticsGroup", "rlnOpticsGroupName", "rlnImagePixelSize", "rlnImageSize",
          "rlnImageDimensionality")


def optics_groups(metadata, *, pixel_size, L):
    """Group the rows of a metadata table into RELION optics groups.

    Rows are grouped by their optics group name (``rlnOpticsGroupName``, else
    ``rlnOpticsGroup``) when present, and by voltage, Cs and amplitude contrast; the pixel
    size is the source's single pixel size.  Groups are numbered from 1 in order of first
    appearance.

    Parameters
    ----------
    metadata : pandas.DataFrame, n rows
        Per-image metadata (RELION labels, optics folded).
    pixel_size : float
        Image pixel size in Angstrom.
    L : int
        Image size in pixels.

    Returns
    -------
    group : ndarray of int64, shape (n,)
        1-based optics group of every row.
    optics : pandas.DataFrame
        One row per group: ``rlnOpticsGroup``, ``rlnOpticsGroupName``, voltage, Cs, amplitude
        contrast and other optics labels present in ``metadata`` (first value of the group),
        ``rlnImagePixelSize``, ``rlnImageSize`` and ``rlnImageDimensionality`` (2).
    """
    n = len(metadata)
    name_col = next((c for c in ("rlnOpticsGroupName", "rlnOpticsGroup")
                     if c in metadata.columns), None)
    keys = ([name_col] if name_col else []) + [c for c in _KEYS if c in metadata.columns]
    if keys:
        gid = metadata[keys].groupby(keys, sort=False, dropna=False).ngroup()
        gid = gid.to_numpy(dtype=np.int64) + 1
    else:
        gid = np.ones(n, dtype=np.int64)
    groups, first = np.unique(gid, return_index=True)
    optics = pd.DataFrame({"rlnOpticsGroup": groups})
    if "rlnOpticsGroupName" in metadata.columns:
        names = metadata["rlnOpticsGroupName"].iloc[first].astype(str).to_numpy()
        if len(set(names)) != len(names):  # the same name with different optics values
            names = np.array([f"opticsGroup{g}" for g in groups], dtype=object)
    else:
        names = np.array([f"opticsGroup{g}" for g in groups], dtype=object)
    optics["rlnOpticsGroupName"] = names
    for col in OPTICS_LABELS:
        if col in metadata.columns and col not in _FRESH:
            optics[col] = metadata[col].iloc[first].to_numpy()
    optics["rlnImagePixelSize"] = float(pixel_size)
    optics["rlnImageSize"] = int(L)
    optics["rlnImageDimensionality"] = 2
    return gid, optics


def complete_optics(optics, *, where="optics block"):
    """Fill the optics values RELION requires but a data set may lack.

    Voltage, Cs and amplitude contrast missing from (or NaN in) ``optics`` get
    :data:`DEFAULT_OPTICS` (300 kV, 2.7 mm, 0.1), with an info message: without a defocus
    they describe no CTF (``RelionSource.has_ctf`` stays False, RELION's ``--ctf`` stays
    off), but RELION reads the file.

    Parameters
    ----------
    optics : pandas.DataFrame
        One row per optics group (a copy is returned).
    where : str
        What is being written, for the message.

    Returns
    -------
    pandas.DataFrame
    """
    optics = optics.copy()
    filled = []
    for col, value in DEFAULT_OPTICS.items():
        if col not in optics.columns:
            optics[col] = value
            filled.append(col)
        elif optics[col].isna().any():
            optics[col] = optics[col].fillna(value)
            filled.append(col)
    if filled:
        logger.info(
            "%s: no %s in the data; writing %s (no defocus is written, so no CTF is implied)",
            where, ", ".join(filled), ", ".join(f"{c} = {DEFAULT_OPTICS[c]:g}" for c in filled))
    return optics

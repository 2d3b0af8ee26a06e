"""Writing and reading the ground truth of a :class:`~classavg.sources.simulation.Simulation`.

The ``.npz`` files of :meth:`Simulation.save_ground_truth
<classavg.sources.simulation.Simulation.save_ground_truth>` (written atomically) and
:func:`load_ground_truth`.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["load_ground_truth"]


def write_ground_truth(path, data):
    """Write the arrays ``data`` to the ``.npz`` file ``path`` (a :class:`pathlib.Path`)
    atomically: through a temporary file in the same folder, removed on failure."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_ground_truth(path) -> dict:
    """Read a file written by :meth:`Simulation.save_ground_truth
    <classavg.sources.simulation.Simulation.save_ground_truth>`.

    Returns
    -------
    dict
        Arrays as saved; scalars as Python ``int`` / ``float`` / ``bool`` / ``str``, ``snr``
        None for noise-free data.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ground-truth file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise ValueError(f"ground-truth file {path!r} is not a readable .npz file: {exc}") \
            from exc
    required = ("rotations", "offsets", "in_plane_angles", "L", "n")
    missing = [k for k in required if k not in out]
    if missing:
        raise ValueError(f"ground-truth file {path!r} lacks the fields {missing}")
    for key in ("seed", "L", "n"):
        out[key] = int(out[key])
    for key in ("noise_variance", "pixel_size", "snr"):
        if key in out:
            out[key] = float(out[key])
    if "snr" in out and np.isnan(out["snr"]):
        out["snr"] = None
    if "has_ctf" in out:
        out["has_ctf"] = bool(out["has_ctf"])
    if "volume" in out:
        out["volume"] = str(out["volume"])
    return out

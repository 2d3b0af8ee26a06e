"""Writing and reading the ground truth of a :class:`~classavg.sources.simulation.Simulation`.

The ``.npz`` files of :meth:`Simulation.save_ground_truth
<classavg.sources.simulation.Simulation.save_ground_truth>` (written atomically) and
:func:`load_ground_truth`.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["load_ground_truth"]


def ground_truth_arrays(sim):
    """The fields that :meth:`Simulation.save_ground_truth
    <classavg.sources.simulation.Simulation.save_ground_truth>` writes.

    Arrays: ``rotations`` (n, 3, 3), ``viewing_directions`` (n, 3), ``in_plane_angles`` (n,)
    radians, ``euler_angles`` (n, 3) radians, ``offsets`` (n, 2) pixels, ``defocus_u``,
    ``defocus_v``, ``defocus_angle`` (n,) (Angstrom, degrees; NaN without a CTF), ``kind`` (n,)
    str ("particle" or a junk kind), ``amplitudes`` (n,), ``background_offsets`` (n,) and
    ``background_gradients`` (n, 2) (signal sd units), ``noise_psd`` (requested power per ring
    ``round(|k| L)``); scalars ``snr`` (NaN when noise-free), ``noise_variance``,
    ``signal_variance``, ``noise`` and ``contrast`` (strings), ``seed``, ``L``, ``n``,
    ``pixel_size``, ``has_ctf``, ``volume`` (a description string).
    """
    n = sim.n
    nan = np.full(n, np.nan)
    ctf = sim._ctf or {}
    return dict(
        rotations=sim.rotations, viewing_directions=sim.viewing_directions,
        in_plane_angles=sim.in_plane_angles, euler_angles=sim.euler_angles,
        offsets=sim.offsets, defocus_u=ctf.get("defocus_u", nan),
        defocus_v=ctf.get("defocus_v", nan), defocus_angle=ctf.get("defocus_angle", nan),
        kind=sim.kinds, amplitudes=sim.amplitudes,
        background_offsets=sim.background_offsets,
        background_gradients=sim.background_gradients,
        snr=np.nan if sim.snr is None else sim.snr, noise_variance=sim.noise_variance,
        signal_variance=sim.signal_variance, noise=sim.noise, noise_psd=sim.noise_psd,
        contrast=sim.contrast, seed=sim.seed, L=sim.L, n=n, pixel_size=sim.pixel_size,
        has_ctf=sim._ctf is not None, volume=sim._volume_name)


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
    for key in ("noise_variance", "signal_variance", "pixel_size", "snr"):
        if key in out:
            out[key] = float(out[key])
    if "snr" in out and np.isnan(out["snr"]):
        out["snr"] = None
    if "has_ctf" in out:
        out["has_ctf"] = bool(out["has_ctf"])
    for key in ("volume", "noise", "contrast"):
        if key in out:
            out[key] = str(out[key])
    if "kind" not in out:                   # files written before kinds were recorded
        out["kind"] = np.full(out["n"], "particle")
    return out

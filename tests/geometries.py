"""Test geometries (Angstrom), built from standard bond lengths and angles.

These are inputs, not expected values: every test compares jaxks against PySCF (or finite
differences) at these geometries.
"""

import numpy as np

WATER = (["O", "H", "H"], [[0.0, 0.0, 0.117790], [0.0, 0.755453, -0.471161],
                           [0.0, -0.755453, -0.471161]])

WATER_DIMER = (["O", "H", "H", "O", "H", "H"],
               [[-1.551007, -0.114520, 0.000000], [-1.934259, 0.762503, 0.000000],
                [-0.599677, 0.040712, 0.000000], [1.350625, 0.111469, 0.000000],
                [1.680398, -0.373741, -0.758561], [1.680398, -0.373741, 0.758561]])

NH3 = (["N", "H", "H", "H"], [[0.0, 0.0, 0.1162], [0.0, 0.9397, -0.2711],
                              [0.8138, -0.4699, -0.2711], [-0.8138, -0.4699, -0.2711]])

CH4 = (["C", "H", "H", "H", "H"], [[0.0, 0.0, 0.0], [0.6291, 0.6291, 0.6291],
                                   [-0.6291, -0.6291, 0.6291], [-0.6291, 0.6291, -0.6291],
                                   [0.6291, -0.6291, -0.6291]])

HF = (["F", "H"], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.917]])


def water_ring(n: int, r_oo: float = 2.80):
    """Cyclic (H2O)_n: O on a ring, each water donating one H-bond to the next, the free H
    alternating above and below the plane (the cyclic-hexamer motif)."""
    radius = r_oo / (2 * np.sin(np.pi / n))
    symbols, coords = [], []
    r_oh, angle = 0.96, np.deg2rad(104.5)
    for k in range(n):
        phi = 2 * np.pi * k / n
        o = radius * np.array([np.cos(phi), np.sin(phi), 0.0])
        nxt = radius * np.array([np.cos(phi + 2 * np.pi / n), np.sin(phi + 2 * np.pi / n), 0.0])
        u = (nxt - o) / np.linalg.norm(nxt - o)
        h1 = o + r_oh * u
        # free H: in the plane spanned by u and the z axis, at the HOH angle from h1
        side = np.array([0.0, 0.0, 1.0 if k % 2 else -1.0])
        side = side - side.dot(u) * u
        side /= np.linalg.norm(side)
        h2 = o + r_oh * (np.cos(angle) * u + np.sin(angle) * side)
        symbols += ["O", "H", "H"]
        coords += [o, h1, h2]
    return symbols, np.array(coords)


WATER_HEXAMER = water_ring(6)

"""Largest-Triangle-Three-Buckets downsampling (Steinarsson, 2013), in numpy.

It keeps the first and the last point and, from each of ``threshold - 2`` equal buckets
between them, the point forming the largest triangle with the point kept from the
previous bucket and the mean of the next bucket: the shape of a line survives, its peaks
among it, with a bounded number of points.
"""

import numpy as np


def lttb_indices(x: np.ndarray, y: np.ndarray, threshold: int) -> np.ndarray:
    """Positions (ascending) of at most ``threshold`` points of (x, y) to draw.

    ``x`` must be ascending and ``y`` free of NaN; every position is kept when there
    are no more than ``threshold`` points.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(x)
    if threshold >= n or n <= 2:
        return np.arange(n)
    if threshold < 3:
        return np.array([0, n - 1])[:threshold] if threshold > 0 else np.arange(0)
    # Bucket edges over the points between the first and the last.
    edges = np.linspace(1, n - 1, threshold - 1).astype(np.int64)
    kept = np.empty(threshold, dtype=np.int64)
    kept[0], kept[-1] = 0, n - 1
    previous = 0
    for bucket in range(threshold - 2):
        start, stop = edges[bucket], edges[bucket + 1]
        if bucket + 2 < len(edges):
            next_x = x[stop : edges[bucket + 2]].mean()
            next_y = y[stop : edges[bucket + 2]].mean()
        else:
            next_x, next_y = x[-1], y[-1]
        # Twice the triangle's area; the constant factor does not change the argmax.
        areas = np.abs(
            (x[previous] - next_x) * (y[start:stop] - y[previous])
            - (x[previous] - x[start:stop]) * (next_y - y[previous])
        )
        previous = start + int(np.argmax(areas))
        kept[bucket + 1] = previous
    return kept

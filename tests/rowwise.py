"""Scoring test rows one by one where a batch is refused, for comparisons with a reference."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from modelport.errors import UserError


def score_rows(predictor, rows: pd.DataFrame) -> tuple[dict, np.ndarray]:
    """Outputs for every row, and which rows were refused: when the batch is refused, each
    row is scored alone (as the scoring core isolates a row it cannot score), a refused
    row's outputs being NaN (numbers) or None (labels)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return predictor.run(rows), np.zeros(len(rows), dtype=bool)
        except UserError:
            pass
        outs, refused = [], np.zeros(len(rows), dtype=bool)
        for i in range(len(rows)):
            try:
                outs.append(predictor.run(rows.iloc[[i]]))
            except UserError:
                refused[i] = True
                outs.append(None)
    template = next(o for o in outs if o is not None)
    merged = {}
    for key, value in template.items():
        if value.dtype.kind == "f":
            blank = np.full(value.shape[1:], np.nan)
            merged[key] = np.array([o[key][0] if o is not None else blank for o in outs],
                                   dtype=value.dtype)
        else:
            merged[key] = np.array([o[key][0] if o is not None else None for o in outs],
                                   dtype=object)
    return merged, refused

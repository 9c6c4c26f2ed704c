"""Exact per-column contributions (reason codes) of a model, read from its intermediate form.

:func:`contributions` splits each row's raw score (log-odds for a binary classifier, the
value for a regressor, one score per class for multiclass) into a base value plus one
contribution per input column of the signature, so that ``base + contrib.sum(axis=1)`` is
the raw score the form computes. Contributions are worked out per model feature and summed
back to the input column each feature was made from (a one-hot column's indicators, an
imputed and scaled number), following each step's ``source``.

- Linear models: ``coef * (x - mean)``, ``mean`` being the feature means over a
  *background* frame (what shap's ``LinearExplainer`` does with its background data). The
  intermediate form stores no training means, so the background is a parameter.
- Tree ensembles: path-dependent TreeSHAP (Lundberg et al., "Consistent individualized
  feature attribution for tree ensembles", Algorithm 2), which weighs the side of a split a
  row does not take by the training weight (``Tree.cover``) that went each way. A tree read
  without covers is refused.
- Anything else (naive Bayes, k-means) is refused with a ``ConversionError``.
"""

from __future__ import annotations

import numpy as np

from modelport.compile import ir
from modelport.compile.numpy_eval import feature_matrix
from modelport.errors import ConversionError, UserError


def contributions(model_ir: ir.ModelIR, frame, background=None) -> tuple[np.ndarray, np.ndarray]:
    """``(base, contrib)`` for ``frame`` (a DataFrame coerced to the form's signature).

    ``base`` has one value per raw-score column (shape ``(n_outputs,)``); ``contrib`` has
    shape ``(rows, n_input_columns)``, or ``(rows, n_input_columns, n_outputs)`` when the
    model has several raw scores, columns in signature order. ``background`` (a frame like
    ``frame``, or a function giving one, called only when needed) is required for linear
    models and unused for trees. Raises :class:`ConversionError` for a model node that
    cannot be explained.
    """
    node = model_ir.model
    X = feature_matrix(model_ir, frame)
    if isinstance(node, ir.Linear):
        if background is None:
            raise UserError(
                "a linear model's contributions are measured from the mean of a background "
                "frame; pass background= (for example the version's registered sample)"
            )
        if callable(background):
            background = background()
        base, phi = _linear(node, X, feature_matrix(model_ir, background))
    elif isinstance(node, ir.TreeEnsemble):
        base, phi = _ensemble(node, X)
    else:
        raise ConversionError(
            f"contributions cannot be computed for a {node.kind} model node: only linear "
            "models and tree ensembles are explained"
        )
    contrib = np.einsum("rfo,fc->rco", phi, _column_map(model_ir))
    return base, contrib[:, :, 0] if contrib.shape[2] == 1 else contrib


def _column_map(model_ir: ir.ModelIR) -> np.ndarray:
    """(features, input columns): 1 where a model feature was made from that input column."""
    source = {s.name: s.source for s in model_ir.steps}
    names = list(model_ir.signature.names)
    mapping = np.zeros((len(model_ir.model.features), len(names)))
    for j, f in enumerate(model_ir.model.features):
        while f in source:
            f = source[f]
        mapping[j, names.index(f)] = 1.0
    return mapping


def _linear(node: ir.Linear, X: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    coef = np.asarray(node.coef, dtype=np.float64)  # (outputs, features)
    mean = B.mean(axis=0)
    base = np.asarray(node.intercept, dtype=np.float64) + coef @ mean
    return base, (X - mean)[:, :, None] * coef.T[None, :, :]


def _ensemble(node: ir.TreeEnsemble, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, n_features = X.shape
    phi = np.zeros((n, n_features, node.n_outputs))
    base = np.asarray(node.base, dtype=np.float64).copy()
    for t, tree in enumerate(node.trees):
        if tree.cover is None:
            raise ConversionError(
                f"tree {t} of the ensemble has no node covers: contributions need the training "
                "weight at each node, which this model's reader does not record"
            )
        expected = _TreeShap(node, tree, X, phi).run()
        base[tree.output:tree.output + expected.size] += expected
    if node.combine == "mean":
        base /= len(node.trees)
        phi /= len(node.trees)
    return base, phi


class _TreeShap:
    """Path-dependent TreeSHAP of one tree, for all rows at once.

    The recursion visits every node once whatever the row, and the zero fractions (the
    share of training weight going each way) do not depend on the row either; only the one
    fractions (1 where the row takes that side) do. So each path element holds its feature
    and zero fraction as numbers and its one fraction and permutation weight as arrays over
    rows, and Algorithm 2 runs once per tree on arrays.
    """

    def __init__(self, node: ir.TreeEnsemble, tree: ir.Tree, X: np.ndarray, phi: np.ndarray):
        self.node, self.tree, self.X, self.phi = node, tree, X, phi
        self.cover = np.asarray(tree.cover, dtype=np.float64)
        self.values = np.asarray(tree.value, dtype=np.float64)
        self.ones = np.ones(X.shape[0])

    def run(self) -> np.ndarray:
        """Add this tree's contributions to ``phi``; return its expected value per column."""
        with np.errstate(divide="ignore", invalid="ignore"):
            self._recurse(0, ([], [], [], []), 1.0, self.ones, -1)
        return self._expected(0)

    def _expected(self, j: int) -> np.ndarray:
        t = self.tree
        if t.feature[j] < 0:
            return self.values[j]
        left, right = t.left[j], t.right[j]
        return (self.cover[left] / self.cover[j] * self._expected(left)
                + self.cover[right] / self.cover[j] * self._expected(right))

    def _recurse(self, j, path, zero, one, feature) -> None:
        t = self.tree
        path = _extend(path, zero, one, feature)
        d, z, o, _ = path
        if t.feature[j] < 0:
            value, out = self.values[j], t.output
            for i in range(1, len(d)):
                share = _unwound_sum(path, i) * (o[i] - z[i])
                self.phi[:, d[i], out:out + value.size] += share[:, None] * value
            return
        f = t.feature[j]
        iz, io = 1.0, self.ones
        if f in d[1:]:
            k = d.index(f, 1)
            iz, io = z[k], o[k]
            path = _unwind(path, k)
        go_left = _go_left(self.node, t, j, self.X[:, f])
        left, right = t.left[j], t.right[j]
        self._recurse(left, path, iz * self.cover[left] / self.cover[j], io * go_left, f)
        self._recurse(right, path, iz * self.cover[right] / self.cover[j], io * ~go_left, f)


# A path is (features, zero fractions, one fractions, weights): lists of one entry per
# element; one fractions and weights are arrays over rows, one fractions exactly 0 or 1.


def _extend(path, zero: float, one: np.ndarray, feature: int):
    d, z, o, w = path
    depth = len(d)
    d, z, o = d + [feature], z + [zero], o + [one]
    w = w + [np.ones_like(one) if depth == 0 else np.zeros_like(one)]
    for i in range(depth - 1, -1, -1):
        w[i + 1] = w[i + 1] + one * w[i] * ((i + 1) / (depth + 1))
        w[i] = zero * w[i] * ((depth - i) / (depth + 1))
    return d, z, o, w


def _unwind(path, k: int):
    """The path without element ``k``, as if it had never been extended by it."""
    d, z, o, w = path
    last = len(d) - 1
    one, zero = o[k] != 0, z[k]
    w = list(w)
    carry = w[last]
    for j in range(last - 1, -1, -1):
        kept = w[j]
        if_one = carry * ((last + 1) / (j + 1))
        carry = kept - if_one * zero * ((last - j) / (last + 1))
        w[j] = np.where(one, if_one, kept * ((last + 1) / (last - j)) / zero)
    return d[:k] + d[k + 1:], z[:k] + z[k + 1:], o[:k] + o[k + 1:], w[:last]


def _unwound_sum(path, k: int) -> np.ndarray:
    """The total weight of the path with element ``k`` unwound, without building it."""
    _, z, o, w = path
    last = len(w) - 1
    one, zero = o[k] != 0, z[k]
    total_one = np.zeros_like(w[0])
    total_zero = np.zeros_like(w[0])
    carry = w[last]
    for j in range(last - 1, -1, -1):
        step = carry * ((last + 1) / (j + 1))
        total_one += step
        carry = w[j] - step * zero * ((last - j) / (last + 1))
        total_zero += w[j] / zero * ((last + 1) / (last - j))
    return np.where(one, total_one, total_zero)


def _go_left(node: ir.TreeEnsemble, tree: ir.Tree, i: int, x: np.ndarray) -> np.ndarray:
    """Which rows node ``i`` sends left: the test :mod:`numpy_eval` walks trees with."""
    op, threshold = node.split(tree.threshold[i])
    left = x <= threshold if op == "<=" else x < threshold
    categories = tree.categories[i] if tree.categories else None
    if categories is not None:
        left = np.isin(x, np.asarray(categories, dtype=np.float64))
        right = tree.categories_right[i] if tree.categories_right else None
        if right is not None:
            # neither side's category: it goes where missing values go
            other = ~left & ~np.isin(x, np.asarray(right, dtype=np.float64))
            left |= other & tree.missing_left[i]
    return np.where(np.isnan(x), tree.missing_left[i], left)

"""Exact per-column contributions (reason codes) of a model, read from its intermediate form.

:class:`Explainer` splits each row's raw score (log-odds for a binary classifier, the value
for a regressor, one score per class for multiclass) into a base value plus one
contribution per input column of the signature, so that ``base + contrib.sum(axis=1)`` is
the raw score the form computes. Contributions are worked out per model feature and summed
back to the input column each feature was made from (a one-hot column's indicators, an
imputed and scaled number), following each step's ``source``.

- Linear models: ``coef * (x - mean)``, ``mean`` being the feature means over a
  *background* frame (what shap's ``LinearExplainer`` does with its background data). The
  intermediate form stores no training means, so the background is a parameter.
- Tree ensembles: path-dependent TreeSHAP (Lundberg et al., "Consistent individualized
  feature attribution for tree ensembles"), which weighs the side of a split a row does not
  take by the training weight (``Tree.cover``) that went each way. A tree read without
  covers is refused.
- Anything else (naive Bayes, k-means) is refused with a ``ConversionError``.

An :class:`Explainer` reads the form once into flat tables (every leaf of every tree, with
its path's features, zero fractions and split tests), so explaining one row or a million is
a fixed, small number of NumPy operations over all leaves at once; build one per model
version and keep it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from math import factorial
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from modelport.compile import ir
from modelport.compile.numpy_eval import _STEPS, feature_matrix
from modelport.errors import ConversionError, UserError

if TYPE_CHECKING:
    import pandas as pd

    from modelport.signature import Signature

    #: a coerced frame, or its columns as a dict of arrays
    Rows: TypeAlias = pd.DataFrame | dict[str, np.ndarray]
    #: a coerced frame, or a function giving one
    Background: TypeAlias = pd.DataFrame | Callable[[], pd.DataFrame]

# rows x leaves per chunk: bounds the memory of the per-leaf polynomials
_CHUNK_CELLS = 1 << 20


def contributions(model_ir: ir.ModelIR, frame: Rows, background: Background | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(base, contrib)`` for ``frame`` (a DataFrame coerced to the form's signature).

    ``frame`` may also be a dict of the coerced columns (NumPy arrays). ``base`` has one
    value per raw-score column (shape ``(n_outputs,)``); ``contrib`` has
    shape ``(rows, n_input_columns)``, or ``(rows, n_input_columns, n_outputs)`` when the
    model has several raw scores, columns in signature order. ``background`` (a frame like
    ``frame``, or a function giving one, called only when needed) is required for linear
    models and unused for trees. Raises :class:`ConversionError` for a model node that
    cannot be explained. The form's tables are built on the first call and kept with the
    form (:func:`explainer_of`), so later calls pay only for the rows.
    """
    return explainer_of(model_ir).contributions(frame, background)


def explainer_of(model_ir: ir.ModelIR) -> Explainer:
    """The :class:`Explainer` of ``model_ir``, built once and kept as long as the form is
    (a predictor's form lives as long as the loaded version)."""
    found = model_ir.__dict__.get("_explainer")
    if found is None:
        found = Explainer(model_ir)
        # not a dataclass field: to_dict and equality never see it
        model_ir.__dict__["_explainer"] = found
    return found


class Explainer:
    """The contributions of one intermediate form, its tables built once.

    Raises :class:`ConversionError` when built for a model node that cannot be explained
    (neither linear nor a tree ensemble, or a tree without covers).
    """

    def __init__(self, model_ir: ir.ModelIR) -> None:
        self.model_ir = model_ir
        node = model_ir.model
        self.columns = _feature_columns(model_ir)
        self.n_columns = len(model_ir.signature.names)
        self._trees: _EnsembleTables | None
        if isinstance(node, ir.TreeEnsemble):
            self._trees = _EnsembleTables(node, self.columns, self.n_columns)
            self.n_outputs = node.n_outputs
        elif isinstance(node, ir.Linear):
            self._trees = None
            self._coef = np.asarray(node.coef, dtype=np.float64)  # (outputs, features)
            self._intercept = np.asarray(node.intercept, dtype=np.float64)
            self.n_outputs = node.n_outputs
            self._mapping = np.zeros((len(node.features), self.n_columns))
            self._mapping[np.arange(len(node.features)), self.columns] = 1.0
        else:
            raise ConversionError(
                f"contributions cannot be computed for a {node.kind} model node: only linear "
                "models and tree ensembles are explained"
            )
        #: (background, its feature means) of the last background read
        self._mean: tuple[object, np.ndarray] | None = None

    def contributions(self, frame: Rows, background: Background | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """``(base, contrib)`` for a coerced frame, or its columns as a dict of arrays (what
        surfaces hold: no DataFrame is built), as :func:`contributions` gives them."""
        return self.of_matrix(_features(self.model_ir, frame), background)

    def of_matrix(self, X: np.ndarray, background: Background | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """``(base, contrib)`` for the model node's feature matrix ``X`` (rows, features).
        The means of a background are kept while the same background object comes back
        (a predictor hands its registered sample, read once)."""
        if self._trees is not None:
            base, contrib = self._trees.contributions(X)
        else:
            if background is None:
                raise UserError(
                    "a linear model's contributions are measured from the mean of a "
                    "background frame; pass background= (for example the version's "
                    "registered sample)"
                )
            mean = self.feature_means(background)
            base = self._intercept + self._coef @ mean
            contrib = np.einsum("rf,of,fc->rco", X - mean, self._coef, self._mapping)
        return base, contrib[:, :, 0] if contrib.shape[2] == 1 else contrib


    def feature_means(self, background: Background) -> np.ndarray:
        """The means of the model node's features over ``background`` (a coerced frame, or
        a function giving one), from which a linear model's contributions are measured;
        kept while the same background object comes back."""
        if callable(background):
            background = background()
        if self._mean is not None and self._mean[0] is background:
            return self._mean[1]
        mean = feature_matrix(self.model_ir, background).mean(axis=0)
        self._mean = (background, mean)
        return mean


def count(value: Any, signature: Signature, source: str = "explain") -> int:
    """The number of reasons ``value`` asks for: a whole number from 1 to the model's
    number of input columns (an int, or its digits as text from a URL or command line).
    Anything else is a :class:`UserError` naming ``source`` and the range."""
    n = len(signature.names)
    k = None
    if isinstance(value, int) and not isinstance(value, bool):
        k = value
    elif isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 10:
        k = int(value.strip())
    if k is None or not 1 <= k <= n:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise UserError(f"{source} must be a whole number of reasons from 1 to {n} (the "
                        f"model's input columns); got {shown}")
    return k


def explained(base: np.ndarray, contrib: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                               np.ndarray | None]:
    """Which raw score each row's reasons explain: ``(base per row, contributions (rows,
    columns), output index per row or None)`` for :meth:`Explainer.contributions`' result.

    One raw score: that one. Two (a model giving both classes' scores): the second class's,
    as for a log-odds. More: the row's predicted class, the largest raw score.
    """
    n = contrib.shape[0]
    if contrib.ndim == 2:
        return np.full(n, base[0]), contrib, None
    fixed = explained_output(contrib.shape[2])
    if fixed is not None:
        pick = np.full(n, fixed, dtype=np.intp)
    else:
        pick = np.argmax(base + contrib.sum(axis=1), axis=1)
    return base[pick], contrib[np.arange(n), :, pick], pick


def explained_output(n_outputs: int) -> int | None:
    """The raw score every row's reasons explain for a model with ``n_outputs`` raw
    scores: the only one, or the second of two; None when it depends on the row (the
    predicted class of a multiclass model)."""
    if n_outputs <= 2:
        return max(n_outputs, 1) - 1
    return None


def ranked(contrib: np.ndarray, k: int) -> np.ndarray:
    """(rows, k): each row's ``k`` input columns by the size of their contribution, largest
    first; equal sizes keep signature order (the order SQL and generated code rank by)."""
    return np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :k]


def _features(model_ir: ir.ModelIR, frame: Rows) -> np.ndarray:
    """The model node's input for a coerced frame or a dict of its columns: the steps
    :func:`~modelport.compile.numpy_eval.feature_matrix` runs, without pandas."""
    if not isinstance(frame, dict):
        return feature_matrix(model_ir, frame)
    values = dict(frame)
    for step in model_ir.steps:
        values[step.name] = _STEPS[step.op](step, values[step.source])
    node = model_ir.model
    X = np.empty((len(next(iter(frame.values()))), len(node.features)), dtype=np.float64)
    for j, f in enumerate(node.features):
        X[:, j] = np.asarray(values[f], dtype=np.float64)
    return X


def _feature_columns(model_ir: ir.ModelIR) -> np.ndarray:
    """For each model feature, the index of the input column it was made from."""
    source = {s.name: s.source for s in model_ir.steps}
    names = list(model_ir.signature.names)
    out = np.empty(len(model_ir.model.features), dtype=np.int64)
    for j, f in enumerate(model_ir.model.features):
        while f in source:
            f = source[f]
        out[j] = names.index(f)
    return out


# floats the per-leaf share tables of one model may hold (8 bytes each): leaves testing
# more distinct features than fit are worked out per call instead
_TABLE_FLOATS = 1 << 22


def _shares(one: np.ndarray, zero: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(m, leaves, rows): each distinct path feature's share of each leaf's value.

    For a leaf whose path tests distinct features ``1..m``, feature ``j`` with zero
    fraction ``z_j`` (the share of training weight that took the path's side of its
    splits) and one fraction ``o_j`` (1 when the row takes them all), the SHAP value of
    feature ``i`` is ``v (o_i - z_i) sum_k w_k [t^k] prod_{j != i} (z_j + o_j t)`` with
    ``w_k = k! (m - 1 - k)! / m!``. The product over all ``j`` is built once; each ``i``
    divides its own factor back out (by ``z_i`` when ``o_i`` is 0, synthetically by ``t +
    z_i`` when it is 1), which is Algorithm 2's unwinding done per leaf. ``one`` is (m,
    leaves, rows), ``zero`` and ``weight`` (m, leaves, 1); a padding slot has ``z = 1``,
    ``o = 0`` and weight 0, a factor of 1.
    """
    m = one.shape[0]
    poly = np.zeros((m + 1,) + one.shape[1:])  # coefficients, lowest degree first
    poly[0] = 1.0
    for j in range(m):
        poly[1:j + 2] = zero[j] * poly[1:j + 2] + one[j] * poly[:j + 1]
        poly[0] *= zero[j]
    at_zero = (poly[:m] * weight).sum(axis=0)
    out = np.empty(one.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(m):
            z = zero[i]
            q = poly[m]
            total = weight[m - 1] * q
            for k in range(m - 1, 0, -1):
                q = poly[k] - z * q
                total += weight[k - 1] * q
            o = one[i]
            share = np.where(o > 0, total, np.where(z > 0, at_zero / z, 0.0))
            out[i] = share * (o - z)
    return out


class _Leaves:
    """Leaves as flat tables: each path's split tests and, per distinct feature tested,
    its slot, zero fraction, Shapley weight and input column; ``width`` slots a leaf."""

    def __init__(self, leaves: list, width: int, n_nodes: int, n_columns: int,
                 n_outputs: int) -> None:
        from scipy.sparse import csr_matrix

        steps = max(len(leaf["nodes"]) for leaf in leaves)
        n = len(leaves)
        self.width = width
        # padding steps test the always-true decision column ``n_nodes``
        self.node = np.full((steps, n), n_nodes, dtype=np.intp)
        self.left = np.ones((steps, n), dtype=bool)
        self.slot = np.zeros((steps, n), dtype=np.intp)
        self.zero = np.ones((width, n, 1))
        self.weight = np.zeros((width, n, 1))
        self.m = np.array([len(leaf["zero"]) for leaf in leaves], dtype=np.intp)
        column = np.zeros((n, width), dtype=np.intp)
        value = np.zeros((n, width, n_outputs))
        weights: dict[int, np.ndarray] = {}
        for i, leaf in enumerate(leaves):
            k, m = len(leaf["nodes"]), self.m[i]
            self.node[:k, i] = leaf["nodes"]
            self.left[:k, i] = leaf["left"]
            self.slot[:k, i] = leaf["slot"]
            self.zero[:m, i, 0] = leaf["zero"]
            if m not in weights:
                weights[m] = _weights(m)
            self.weight[:m, i, 0] = weights[m]
            column[i, :m] = leaf["columns"]
            value[i, :m] = leaf["value"]
        self.full = (np.left_shift(1, np.minimum(self.m, _MAX_BITS)) - 1).astype(np.intp)[:, None]
        # (columns * outputs, width * leaves): a (slot, leaf) share times the leaf's
        # values, added at the slot's column
        k = n_outputs
        column, value = column.T, value.transpose(1, 0, 2)  # slot first
        cells = (column.reshape(-1)[:, None] * k + np.arange(k)).reshape(-1)
        self.spread = csr_matrix(
            (value.reshape(-1), (cells, np.repeat(np.arange(n * width), k))),
            shape=(n_columns * k, n * width))

    def patterns(self, go: np.ndarray) -> np.ndarray:
        """(leaves, rows): bit ``j`` set where the row takes all its leaf's splits on the
        leaf's ``j``-th distinct feature; ``go`` is (splits + 1, rows)."""
        failed = np.zeros((len(self.m), go.shape[1]), dtype=np.intp)
        for s in range(self.node.shape[0]):
            missed = go[self.node[s]] != self.left[s][:, None]
            failed |= np.left_shift(missed, self.slot[s][:, None])
        return self.full & ~failed

    def ones(self, pattern: np.ndarray) -> np.ndarray:
        """(width, leaves, rows) one fractions from patterns."""
        bits = np.arange(self.width)[:, None, None]
        return (np.right_shift(pattern[None], bits) & 1).astype(np.float64)

    def add(self, go: np.ndarray, out: np.ndarray) -> None:
        """Add these leaves' contributions for decisions ``go`` to ``out`` (cells, rows)."""
        shares = self.shares(go)
        out += self.spread @ shares.reshape(-1, go.shape[1])

    def shares(self, go: np.ndarray) -> np.ndarray:
        if self.width < _MAX_BITS:
            one = self.ones(self.patterns(go))
        else:  # too many features for a bit pattern: one fraction by one fraction
            one = np.ones((self.width, len(self.m), go.shape[1]))
            leaves = np.arange(len(self.m))
            for s in range(self.node.shape[0]):
                one[self.slot[s], leaves] *= go[self.node[s]] == self.left[s][:, None]
        return _shares(one, self.zero, self.weight)


class _TabledLeaves(_Leaves):
    """Leaves whose shares are looked up: every pattern of every leaf worked out once."""

    def __init__(self, leaves: list, width: int, *args: int) -> None:
        super().__init__(leaves, width, *args)
        sizes = np.left_shift(1, self.m)
        self.offset = (np.cumsum(sizes) - sizes).astype(np.intp)
        self.offset = self.offset[:, None]
        self.table = np.zeros((width, int(sizes.sum())))
        for m in np.unique(self.m):
            at = np.nonzero(self.m == m)[0]
            pattern = np.broadcast_to(np.arange(1 << m), (len(at), 1 << m))
            shares = _shares(self.ones(pattern), self.zero[:, at], self.weight[:, at])
            shares[m:] = 0.0  # padding slots
            self.table[:, self.offset[at] + pattern] = shares

    def shares(self, go: np.ndarray) -> np.ndarray:
        return self.table[:, self.offset + self.patterns(go)]


# the distinct features of a path a bit pattern (an intp) can hold
_MAX_BITS = 62


def _weights(m: int) -> np.ndarray:
    """Shapley weights ``k! (m - 1 - k)! / m!`` for ``k`` in ``0..m-1``."""
    return np.array([factorial(k) * factorial(m - 1 - k) / factorial(m) for k in range(m)])


class _EnsembleTables:
    """Every leaf of a tree ensemble in :class:`_Leaves` blocks, plus the split tests."""

    def __init__(self, node: ir.TreeEnsemble, columns: np.ndarray, n_columns: int) -> None:
        self.n_outputs = node.n_outputs
        self.n_columns = n_columns
        scale = 1.0 / len(node.trees) if node.combine == "mean" else 1.0
        feature: list[int] = []
        threshold: list[float] = []
        less_equal: list[bool] = []
        missing_left: list[bool] = []
        categorical: list[tuple[int, int, list, list | None, bool]] = []
        base = np.asarray(node.base, dtype=np.float64).copy()
        by_m: dict[int, list] = {}
        for t, tree in enumerate(node.trees):
            if tree.cover is None:
                raise ConversionError(
                    f"tree {t} of the ensemble has no node covers: contributions need the "
                    "training weight at each node, which this model's reader does not record"
                )
            index = {}  # node -> its column in the decision matrix
            for j, f in enumerate(tree.feature):
                if f < 0:
                    continue
                index[j] = len(feature)
                op, thr = node.split(tree.threshold[j])
                feature.append(f)
                threshold.append(thr)
                less_equal.append(op == "<=")
                missing_left.append(bool(tree.missing_left[j]))
                cats = tree.categories[j] if tree.categories else None
                if cats is not None:
                    right = tree.categories_right[j] if tree.categories_right else None
                    categorical.append((index[j], f, cats, right, bool(tree.missing_left[j])))
            cover = np.asarray(tree.cover, dtype=np.float64)
            for leaf in _leaves(tree, cover, index):
                value = np.zeros(self.n_outputs)
                v = np.asarray(tree.value[leaf["leaf"]], dtype=np.float64)
                value[tree.output:tree.output + v.size] = v
                base += value * leaf["all_zero"]
                m = len(leaf["features"])
                if m == 0:
                    continue
                leaf["value"] = value * scale
                leaf["columns"] = columns[leaf["features"]]
                by_m.setdefault(m, []).append(leaf)
        if node.combine == "mean":
            base /= len(node.trees)
        self.base = base
        self.feature = np.asarray(feature, dtype=np.intp)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.less_equal = np.asarray(less_equal, dtype=bool)
        self.missing_left = np.asarray(missing_left, dtype=bool)
        self.categorical = categorical
        args = (len(feature), n_columns, self.n_outputs)
        # the widest table that fits: leaves testing up to ``width`` distinct features
        width = 0
        for m in sorted(by_m):
            if m >= _MAX_BITS or sum(len(by_m[k]) * (1 << k) * m
                                     for k in by_m if k <= m) > _TABLE_FLOATS:
                break
            width = m
        self.blocks: list[_Leaves] = []
        tabled = [leaf for m in sorted(by_m) if m <= width for leaf in by_m[m]]
        if tabled:
            self.blocks.append(_TabledLeaves(tabled, width, *args))
        self.blocks += [_Leaves(by_m[m], m, *args) for m in sorted(by_m) if m > width]
        self.n_leaves = sum(len(b.m) for b in self.blocks)

    def decisions(self, X: np.ndarray) -> np.ndarray:
        """(splits + 1, rows): True where a row goes left at each split; the last row,
        always True, is what padded path steps test."""
        go = np.ones((len(self.feature) + 1, X.shape[0]), dtype=bool)
        x = X.T[self.feature]
        threshold = self.threshold[:, None]
        with np.errstate(invalid="ignore"):
            test = np.where(self.less_equal[:, None], x <= threshold, x < threshold)
        for at, f, cats, right, missing_left in self.categorical:
            left = np.isin(X[:, f], np.asarray(cats, dtype=np.float64))
            if right is not None:
                # neither side's category: it goes where missing values go
                other = ~left & ~np.isin(X[:, f], np.asarray(right, dtype=np.float64))
                left |= other & missing_left
            test[at] = left
        go[:-1] = np.where(np.isnan(x), self.missing_left[:, None], test)
        return go

    def contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, k = X.shape[0], self.n_outputs
        contrib = np.zeros((self.n_columns * k, n))
        step = max(1, _CHUNK_CELLS // max(1, self.n_leaves))
        for start in range(0, n, step):
            go = self.decisions(X[start:start + step])
            for block in self.blocks:
                block.add(go, contrib[:, start:start + step])
        return self.base.copy(), contrib.T.reshape(n, self.n_columns, k)


def _leaves(tree: ir.Tree, cover: np.ndarray, index: dict) -> Iterator[dict[str, Any]]:
    """Each leaf of ``tree`` with its path: decision columns, sides, distinct features (in
    first-tested order), each split's slot among them, their zero fractions and the
    product of all zero fractions (the leaf's weight in the expected value)."""
    stack: list[tuple[int, list[int], list[bool], list[int]]] = [(0, [], [], [])]
    while stack:
        j, nodes, sides, parents = stack.pop()
        if tree.feature[j] < 0:
            features: list[int] = []
            zero: list[float] = []
            slot = []
            all_zero = 1.0
            for parent, left in zip(parents, sides, strict=True):
                f = tree.feature[parent]
                child = tree.left[parent] if left else tree.right[parent]
                ratio = cover[child] / cover[parent] if cover[parent] else np.nan
                all_zero *= ratio
                if f not in features:
                    features.append(f)
                    zero.append(1.0)
                s = features.index(f)
                zero[s] *= ratio
                slot.append(s)
            yield {"leaf": j, "nodes": nodes, "left": sides, "slot": slot,
                   "features": np.asarray(features, dtype=np.int64),
                   "zero": np.asarray(zero), "all_zero": all_zero}
            continue
        for child, left in ((tree.left[j], True), (tree.right[j], False)):
            stack.append((child, nodes + [index[j]], sides + [left], parents + [j]))

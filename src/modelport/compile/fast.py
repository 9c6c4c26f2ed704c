"""A ModelIR prepared once for fast scoring: the NumPy runtime behind the ``compiled`` format.

:func:`modelport.compile.evaluate` is the readable proof; :class:`Prepared` is the same
arithmetic laid out for speed. Everything that does not depend on the rows is done when the
model is loaded: categorical inputs get one vocabulary each, so every one-hot column and
ordinal code becomes a table lookup on integer codes; all trees of an ensemble become one set
of flat node arrays walked for every row and every tree at once, one vectorised step per
level, each step only over the walkers that have not reached a leaf yet. A single row costs a few dozen small NumPy operations and
never touches pandas.
"""

from __future__ import annotations

import numpy as np

from modelport.compile import ir
from modelport.compile.numpy_eval import outputs

#: rows scored per block, so the (rows x trees) walk state stays small
_BLOCK = 2048


class Prepared:
    """``model_ir`` with every lookup table and tree array built; call :meth:`run`."""

    def __init__(self, model_ir: ir.ModelIR) -> None:
        self.ir = model_ir
        kinds = {c.name: c.kind for c in model_ir.signature.inputs}
        # categorical fields are integer codes over the vocabulary of their input column:
        # 0 missing, 1..m known values, m + 1 anything else
        root: dict[str, str] = {n: n for n, k in kinds.items() if k == "categorical"}
        vocab: dict[str, dict[str, int]] = {n: {} for n in root}

        def learn(col: str, values) -> None:
            table = vocab[root[col]]
            for v in values:
                if v is not None and v not in table:
                    table[v] = len(table) + 1

        for s in model_ir.steps:
            if s.source in root:
                if isinstance(s, ir.Impute):
                    root[s.name] = root[s.source]
                    learn(s.source, [s.value])
                elif isinstance(s, ir.Indicator | ir.Ordinal):
                    learn(s.source, s.categories)
        self._vocab = vocab
        self._root = root
        self._program = [self._compile_step(s) for s in model_ir.steps]
        node = model_ir.model
        self._features = list(node.features)
        self._score = self._compile_node(node)

    # --- preparation ----------------------------------------------------------------------

    def _compile_step(self, s):
        if s.source in self._root:
            table = self._vocab[self._root[s.source]]
            unknown = len(table) + 1
            if isinstance(s, ir.Impute):
                code = table[s.value]
                return s.name, s.source, lambda c: np.where(c == 0, code, c)
            if isinstance(s, ir.IsMissing):
                return s.name, s.source, lambda c: (c == 0).astype(np.float64)
            lut = np.zeros(unknown + 1, dtype=np.float64)
            if isinstance(s, ir.Indicator):
                for c in s.categories:
                    lut[0 if c is None else table[c]] = 1.0
                if s.negate:
                    lut = 1.0 - lut
            else:  # Ordinal
                lut[:] = np.nan if s.unknown is None else s.unknown
                for i, c in enumerate(s.categories):
                    lut[table[c]] = float(i)
                lut[0] = np.nan if s.missing is None else s.missing
            return s.name, s.source, lut.take
        # numeric sources stay float64 with NaN for missing
        if isinstance(s, ir.Impute):
            value = float(s.value)
            return s.name, s.source, lambda x: np.where(np.isnan(x), value, x)
        if isinstance(s, ir.Scale):
            center, scale = s.center, s.scale
            return s.name, s.source, lambda x: (x - center) / scale
        if isinstance(s, ir.Affine):
            mul, add = s.mul, s.add
            return s.name, s.source, lambda x: x * mul + add
        if isinstance(s, ir.IsMissing):
            return s.name, s.source, lambda x: np.isnan(x).astype(np.float64)
        if isinstance(s, ir.Indicator):
            known = np.asarray([c for c in s.categories if c is not None], dtype=np.float64)
            with_missing, negate = None in s.categories, s.negate

            def indicator(x):
                hit = np.where(np.isnan(x), with_missing, np.isin(x, known))
                return (hit != negate).astype(np.float64)

            return s.name, s.source, indicator
        if isinstance(s, ir.Ordinal):
            codes = {float(c): float(i) for i, c in enumerate(s.categories)}
            unknown = np.nan if s.unknown is None else s.unknown
            missing = np.nan if s.missing is None else s.missing

            def ordinal(x):
                return np.array([missing if v != v else codes.get(v, unknown) for v in x.tolist()],
                                dtype=np.float64)

            return s.name, s.source, ordinal
        raise TypeError(f"unknown step {type(s).__name__}")

    def _compile_node(self, node):
        if isinstance(node, ir.Linear):
            coef_t = np.ascontiguousarray(np.asarray(node.coef, dtype=np.float64).T)
            intercept = np.asarray(node.intercept, dtype=np.float64)
            return lambda X: X @ coef_t + intercept
        if isinstance(node, ir.TreeEnsemble):
            return _Forest(node)
        if isinstance(node, ir.GaussianNB | ir.Centroids):
            from modelport.compile.numpy_eval import raw_scores

            return lambda X: raw_scores(node, X)
        raise TypeError(f"unknown model node {type(node).__name__}")

    # --- scoring ----------------------------------------------------------------------------

    def encode(self, name: str, values: np.ndarray) -> np.ndarray:
        """Integer codes of categorical input ``name`` (0 missing, m + 1 unknown)."""
        table = self._vocab[name]
        unknown = len(table) + 1
        get = table.get
        return np.fromiter(
            (get(v, unknown) if v.__class__ is str else 0 for v in values),
            dtype=np.int64, count=len(values),
        )

    def run(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs, as :func:`~modelport.compile.evaluate` gives them, for checked columns."""
        values = dict(cols)
        for name in self._vocab:
            values[name] = self.encode(name, cols[name])
        for name, source, fn in self._program:
            values[name] = fn(values[source])
        n = len(next(iter(cols.values())))
        X = np.empty((n, len(self._features)), dtype=np.float64)
        for j, f in enumerate(self._features):
            X[:, j] = values[f]
        return outputs(self.ir.output, self._score(X))


class _Forest:
    """Every tree of an ensemble as one flat node table, walked for all trees at once."""

    def __init__(self, node: ir.TreeEnsemble) -> None:
        feature, threshold, le, missing_left, left, right, values = [], [], [], [], [], [], []
        is_leaf: list[bool] = []
        cat_rows: list[tuple[int, list, list | None]] = []
        roots, offset = [], 0
        for tree in node.trees:
            roots.append(offset)
            cats = tree.categories or [None] * len(tree.feature)
            cats_right = tree.categories_right or [None] * len(tree.feature)
            for i, f in enumerate(tree.feature):
                leaf = f < 0
                is_leaf.append(leaf)
                op, t = node.split(tree.threshold[i])
                feature.append(0 if leaf else f)
                threshold.append(t)
                le.append(op == "<=")
                missing_left.append(bool(tree.missing_left[i]))
                # a leaf points at itself: a walker there stays until it is dropped
                left.append(offset + i if leaf else offset + tree.left[i])
                right.append(offset + i if leaf else offset + tree.right[i])
                row = np.zeros(node.n_outputs)
                if leaf:
                    v = tree.value[i]
                    row[tree.output:tree.output + len(v)] = v
                values.append(row)
                if not leaf and cats[i] is not None:
                    cat_rows.append((offset + i, cats[i], cats_right[i]))
            offset += len(tree.feature)
        self.is_leaf = np.asarray(is_leaf, dtype=bool)
        self.feature = np.asarray(feature, dtype=np.int32)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.le = np.asarray(le, dtype=bool)
        self.missing_left = np.asarray(missing_left, dtype=bool)
        self.left = np.asarray(left, dtype=np.int32)
        self.right = np.asarray(right, dtype=np.int32)
        #: children[2 * i] is node i's left child, children[2 * i + 1] its right one
        self.children = np.column_stack([self.left, self.right]).reshape(-1)
        self.values = np.asarray(values, dtype=np.float64).reshape(len(values), node.n_outputs)
        self.roots = np.asarray(roots, dtype=np.int32)
        self.base = np.asarray(node.base, dtype=np.float64)
        self.mean = len(node.trees) if node.combine == "mean" else None
        self.all_le = bool(self.le.all())
        self.depth = max((t.depth() for t in node.trees), default=0)
        self.cat = None
        if cat_rows:
            # per categorical node: the side each integer code goes, 1 left, 0 right,
            # 2 "with the missing values"; codes beyond the table are "other"
            width = int(max(max(c + r) if r else max(c) for _, c, r in
                            ((i, [int(v) for v in c], [int(v) for v in (r or [])])
                             for i, c, r in cat_rows))) + 1
            self.cat_index = np.full(len(feature), -1, dtype=np.int32)
            table = np.zeros((len(cat_rows), width + 1), dtype=np.int8)
            for k, (i, c, r) in enumerate(cat_rows):
                self.cat_index[i] = k
                if r is not None:
                    table[k, :] = 2
                    table[k, [int(v) for v in r]] = 0
                table[k, [int(v) for v in c]] = 1
            self.cat = table
            self.cat_width = width

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if X.shape[0] == 1:
            return self._one(X[0])
        if X.shape[0] <= _BLOCK:
            return self._block(X)
        return np.concatenate([self._block(X[i:i + _BLOCK]) for i in range(0, len(X), _BLOCK)])

    def _go_left(self, x: np.ndarray, node, maybe_nan: bool = True) -> np.ndarray:
        """Whether value ``x`` at ``node`` (an index array, or ``slice(None)`` for all) goes left."""
        t = self.threshold[node]
        go_left = (x <= t) if self.all_le else np.where(self.le[node], x <= t, x < t)
        if self.cat is not None:
            k = self.cat_index[node]
            is_cat = k >= 0
            if is_cat.any():
                code = np.where(np.isnan(x) | (x < 0) | (x > self.cat_width) | (x % 1 != 0),
                                self.cat_width, x).astype(np.intp)
                side = self.cat[np.where(is_cat, k, 0), np.where(is_cat, code, 0)]
                side_left = np.where(side == 2, self.missing_left[node], side == 1)
                go_left = np.where(is_cat, side_left, go_left)
        if maybe_nan:
            nan = np.isnan(x)
            if nan.any():
                go_left = np.where(nan, self.missing_left[node], go_left)
        return go_left

    def _one(self, row: np.ndarray) -> np.ndarray:
        # one row: decide every node of every tree at once, then follow the decisions from
        # each root; a few operations over all nodes beat a walk of many small steps
        go_left = self._go_left(row[self.feature], slice(None), bool(np.isnan(row).any()))
        step = np.where(go_left, self.left, self.right)
        node = self.roots
        for _ in range(self.depth):
            node = step[node]
        raw = self.values[node].sum(axis=0)[None, :] + self.base
        if self.mean:
            raw /= self.mean
        return raw

    def _block(self, X: np.ndarray) -> np.ndarray:
        n, n_trees = X.shape[0], len(self.roots)
        # one walker per (row, tree), in row-major order; leaves point at themselves, and
        # walkers that reached one are dropped from the active set once they are many, so
        # the work follows the actual path lengths, not the deepest tree
        at = np.tile(self.roots, n)
        flat_x = X.reshape(-1)
        active = np.flatnonzero(~self.is_leaf[at]).astype(np.int32)
        node = at[active]
        base_ix = (active // n_trees) * np.int32(X.shape[1])
        while active.size:
            x = flat_x[base_ix + self.feature[node]]
            go_left = self._go_left(x, node)
            node = self.children[2 * node + ~go_left]
            done = self.is_leaf[node]
            n_done = np.count_nonzero(done)
            if n_done == active.size:
                at[active] = node
                break
            if n_done * 4 >= active.size:
                at[active[done]] = node[done]
                keep = ~done
                active, node, base_ix = active[keep], node[keep], base_ix[keep]
        raw = self.values[at].reshape(n, n_trees, -1).sum(axis=1) + self.base
        if self.mean:
            raw /= self.mean
        return raw

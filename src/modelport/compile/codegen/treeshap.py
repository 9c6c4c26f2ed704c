"""What generated reason codes compute: path-dependent TreeSHAP over tables of the trees.

With ``explain=True`` the C and JavaScript generators add, after ``score``, functions that
split a row's raw scores into a base value plus one contribution per input column, the
numbers :mod:`modelport.compile.explain` gives. They walk each tree once per row with the
recursive algorithm of Lundberg et al. ("Consistent individualized feature attribution for
tree ensembles", Algorithm 2): the path from the root keeps, per distinct feature split on,
the share of training weight (*zero* fraction, from the node covers) and of the row (*one*
fraction, 0 or 1) that follows the path's splits on it, with the Shapley weights of the
path's subsets; a leaf adds its value to each path feature in proportion to those weights.

This module holds what every language writes the same way: the refusals, the node tables
(children, covers, leaf values; node indices global across the ensemble), the base values
and the size of the path buffer; and :func:`goes_left_tests`, which takes each split's
test from the language's own :meth:`~modelport.compile.codegen.lowering.Lowering.goes_left`,
the very expression ``score`` branches on, so explaining and scoring never take different
paths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelport.compile import ir
from modelport.compile.explain import _feature_columns
from modelport.errors import ConversionError

if TYPE_CHECKING:
    from modelport.compile.codegen.lowering import Lowering

#: the languages whose generated code can carry reasons
EXPLAINED = ("c", "javascript")


def check(model_ir: ir.ModelIR, language: str) -> None:
    """Raise :class:`ConversionError` saying why reasons cannot be generated for
    ``model_ir`` in ``language``; return when they can."""
    if language not in EXPLAINED:
        raise ConversionError(
            f"reasons are generated for C and JavaScript, not {language}: generate C or "
            f"JavaScript with explain=True, or {language} without it")
    node = model_ir.model
    if isinstance(node, ir.Linear):
        raise ConversionError(
            "a linear model's reasons are exported as SQL, not as generated code (its "
            "contributions are measured from the mean of background rows): export it to SQL "
            "for reasons, or generate code without explain=True")
    if not isinstance(node, ir.TreeEnsemble):
        raise ConversionError(
            f"reasons are generated for tree ensembles only; a {node.kind} model node has "
            "no contributions to compute: generate code without explain=True")
    for t, tree in enumerate(node.trees):
        if tree.cover is None:
            raise ConversionError(
                f"tree {t} of the ensemble has no node covers: reasons weigh the side of a "
                "split a row does not take by the training weight that went each way, which "
                "this model's reader does not record; generate code without explain=True, "
                "or convert the model from scikit-learn, LightGBM or XGBoost")


@dataclass
class Tables:
    """A tree ensemble as the flat tables generated TreeSHAP walks.

    Node ``i`` (global: tree ``t``'s nodes start at ``tree_root[t]``) splits on model
    feature ``node_feature[i]`` (-1 at a leaf) into ``node_left[i]`` and ``node_right[i]``
    and was reached by training weight ``node_cover[i]``; a leaf's scores are
    ``leaf_value[node_value[i]:][:tree_width[t]]``, already divided by the number of trees
    when the ensemble averages them, added to raw scores from ``tree_output[t]`` on.
    ``feature_column[j]`` is the input column (signature order) model feature ``j`` was
    made from.
    """

    n_inputs: int
    n_raw: int
    n_features: int
    base: list[float]
    feature_column: list[int]
    tree_root: list[int]
    tree_output: list[int]
    tree_width: list[int]
    node_feature: list[int]
    node_left: list[int]
    node_right: list[int]
    node_cover: list[float]
    node_value: list[int]
    leaf_value: list[float]
    #: the most splits on any root-to-leaf path
    depth: int

    @property
    def path_slots(self) -> int:
        """Path steps the recursion holds at once: a node at depth ``d`` keeps its own copy
        of at most ``d + 1`` steps while its descendants work past it."""
        return (self.depth + 1) * (self.depth + 2) // 2


def tables(model_ir: ir.ModelIR) -> Tables:
    """The :class:`Tables` of ``model_ir``'s tree ensemble (call :func:`check` first)."""
    node = model_ir.model
    scale = 1.0 / len(node.trees) if node.combine == "mean" and node.trees else 1.0
    out = Tables(
        n_inputs=len(model_ir.signature.names), n_raw=max(node.n_outputs, 1),
        n_features=len(node.features), base=[], feature_column=[
            int(c) for c in _feature_columns(model_ir)],
        tree_root=[], tree_output=[], tree_width=[], node_feature=[], node_left=[],
        node_right=[], node_cover=[], node_value=[], leaf_value=[],
        depth=max((tree.depth() for tree in node.trees), default=0))
    for tree in node.trees:
        root = len(out.node_feature)
        out.tree_root.append(root)
        out.tree_output.append(int(tree.output))
        out.tree_width.append(max(len(v) for v in tree.value))
        for i, f in enumerate(tree.feature):
            leaf = f < 0
            out.node_feature.append(-1 if leaf else int(f))
            out.node_left.append(-1 if leaf else root + tree.left[i])
            out.node_right.append(-1 if leaf else root + tree.right[i])
            out.node_cover.append(float(tree.cover[i]))
            out.node_value.append(len(out.leaf_value) if leaf else -1)
            if leaf:
                values = [float(v) * scale for v in tree.value[i]]
                out.leaf_value += values + [0.0] * (out.tree_width[-1] - len(values))
    out.base = _base(node)
    return out


def _base(node: ir.TreeEnsemble) -> list[float]:
    """The raw scores before any feature is known: the ensemble's base plus each tree's
    leaf values weighted by the share of training weight that reached the leaf."""
    base = [float(b) for b in node.base]
    base += [0.0] * (max(node.n_outputs, 1) - len(base))
    for tree in node.trees:
        cover = tree.cover
        assert cover is not None  # refused before: trees without covers are not explained
        stack = [(0, 1.0)]
        while stack:
            i, share = stack.pop()
            if tree.feature[i] < 0:
                for j, v in enumerate(tree.value[i]):
                    base[tree.output + j] += float(v) * share
                continue
            parent = float(cover[i])
            for child in (tree.left[i], tree.right[i]):
                ratio = float(cover[child]) / parent if parent else math.nan
                stack.append((child, share * ratio))
    if node.combine == "mean" and node.trees:
        base = [b / len(node.trees) for b in base]
    return base


def goes_left_tests(lo: Lowering, node: ir.TreeEnsemble, tree: ir.Tree) -> list[tuple[int, str]]:
    """``(node index within the tree, test)`` for each split of ``tree``: the expression on
    ``x`` that is true when a row goes left, exactly as ``lo``'s ``score`` writes it."""
    cats = tree.categories or [None] * len(tree.feature)
    cats_right = tree.categories_right or [None] * len(tree.feature)
    return [(i, lo.goes_left(node, tree, i, cats[i], cats_right[i]))
            for i, f in enumerate(tree.feature) if f >= 0]


def output_labels(model_ir: ir.ModelIR) -> list:
    """What each raw score is named by in reasons: the class labels when there is one raw
    score per class, else the raw scores' positions (as :mod:`modelport.scoring.reasons`
    names them)."""
    n_raw = max(model_ir.model.n_outputs, 1)
    classes = model_ir.signature.classes
    return list(classes) if classes is not None and len(classes) == n_raw else list(range(n_raw))


def stack_bytes(t: Tables) -> int:
    """About how much stack one call of the generated ``explain`` takes (C's layout)."""
    return (t.path_slots * 32 + (t.n_features + 1) * 8 * (t.n_raw + 1)
            + (t.depth + 1) * 96)


def wrapped(items: list[str], per_line: int = 10) -> list[str]:
    """Table entries, ``per_line`` to a line, each followed by a comma (C initialisers and
    JavaScript arrays both take the last one)."""
    return [" ".join(f"{item}," for item in items[i:i + per_line])
            for i in range(0, len(items), per_line)]


def explained_raw(n_raw: int) -> str:
    """Which raw score reasons explain, in words (the rule of
    :func:`modelport.scoring.reasons.top`)."""
    if n_raw == 1:
        return "0, the only one"
    if n_raw == 2:
        return "1, the second class's"
    return "the largest raw score's index (the predicted class)"

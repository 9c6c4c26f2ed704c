"""The intermediate form of a fitted model: inputs, preprocessing steps, one model node, output.

A :class:`ModelIR` says what a model computes in terms any backend can write out: named
*fields* flow from the signature's input columns through preprocessing *steps* (each makes
one new numeric field from one input field), a *model node* turns the fields it lists into
raw scores, and the *output* turns raw scores into labels, probabilities, values or cluster
ids. Every node is a plain dataclass of lists and numbers, so the whole form is JSON; trees
are flat arrays (feature, threshold, left, right, missing-goes-left, value) and categorical
splits are category sets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeAlias

import numpy as np

from modelport.kernel import double_split
from modelport.signature import Signature

# --- preprocessing steps: each makes field ``name`` from field ``source`` ---------------------


@dataclass
class Impute:
    """``source``, or ``value`` where ``source`` is missing (``None``: it stays missing, as
    for a column that was empty when the imputer was fitted)."""

    op: ClassVar[str] = "impute"
    name: str
    source: str
    value: float | str | None


@dataclass
class Scale:
    """``(source - center) / scale``, the form of StandardScaler and RobustScaler."""

    op: ClassVar[str] = "scale"
    name: str
    source: str
    center: float
    scale: float


@dataclass
class Affine:
    """``source * mul + add``, the form of MinMaxScaler."""

    op: ClassVar[str] = "affine"
    name: str
    source: str
    mul: float
    add: float


@dataclass
class Indicator:
    """1.0 when ``source`` is one of ``categories`` (``None`` stands for missing), else 0.0.

    With ``negate`` the test is inverted: 1.0 for anything *not* in ``categories``, which is
    how a one-hot column of infrequent categories also catches unknown ones.
    """

    op: ClassVar[str] = "indicator"
    name: str
    source: str
    categories: list
    negate: bool = False


@dataclass
class IsMissing:
    """1.0 where ``source`` is missing, else 0.0."""

    op: ClassVar[str] = "is_missing"
    name: str
    source: str


@dataclass
class Ordinal:
    """The position of ``source`` in ``categories``; ``unknown`` for others, ``missing`` for missing.

    ``None`` for ``unknown`` or ``missing`` means the result is missing (NaN).
    """

    op: ClassVar[str] = "ordinal"
    name: str
    source: str
    categories: list
    unknown: float | None = None
    missing: float | None = None


STEPS = {cls.op: cls for cls in (Impute, Scale, Affine, Indicator, IsMissing, Ordinal)}

Step: TypeAlias = Impute | Scale | Affine | Indicator | IsMissing | Ordinal

# --- model nodes: each turns ``features`` into raw scores, one column per ``n_outputs`` ---------


@dataclass
class Linear:
    """``raw[:, k] = intercept[k] + sum_j coef[k][j] * features[j]``."""

    kind: ClassVar[str] = "linear"
    features: list[str]
    coef: list[list[float]]
    intercept: list[float]

    @property
    def n_outputs(self) -> int:
        return len(self.intercept)


@dataclass
class Tree:
    """One binary tree as flat arrays indexed by node; node 0 is the root.

    A node with ``feature[i] == -1`` is a leaf whose scores are ``value[i]``. Otherwise a
    missing feature goes left when ``missing_left[i]``. A numeric split sends a row left when
    its feature passes the ensemble's comparison with ``threshold[i]``. A categorical split
    (``categories[i]`` is a list of category codes) sends the codes in ``categories[i]`` left
    and, when ``categories_right[i]`` is a list, the codes in it right and every other value
    the way missing values go; without it every other value goes right. ``output`` is the
    first raw-score column the leaf values add to (boosting grows one tree per class).
    ``cover`` (optional) is the training weight that reached each node (sample counts,
    or hessian sums for XGBoost), what path-dependent TreeSHAP weighs the unseen side of
    a split by (:mod:`~modelport.compile.explain`); it is stored only when present.
    """

    feature: list[int]
    threshold: list[float]
    left: list[int]
    right: list[int]
    missing_left: list[bool]
    value: list[list[float]]
    categories: list[list | None] | None = None
    categories_right: list[list | None] | None = None
    output: int = 0
    cover: list[float] | None = None

    def add_leaf(self, width: int = 1) -> int:
        """Append a leaf of ``width`` zero scores and return its index; a reader then makes
        it a split or sets its values. The per-node lists the tree holds (``categories``,
        ``categories_right``, ``cover``) get their blank entry too, so they stay aligned."""
        self.feature.append(-1)
        self.threshold.append(0.0)
        self.left.append(-1)
        self.right.append(-1)
        self.missing_left.append(False)
        self.value.append([0.0] * width)
        for kept in (self.categories, self.categories_right):
            if kept is not None:
                kept.append(None)
        if self.cover is not None:
            self.cover.append(0.0)
        return len(self.feature) - 1

    def depth(self) -> int:
        """The longest root-to-leaf path, in splits."""
        best, stack = 0, [(0, 0)]
        while stack:
            i, d = stack.pop()
            if self.feature[i] < 0:
                best = max(best, d)
            else:
                stack += [(self.left[i], d + 1), (self.right[i], d + 1)]
        return best


@dataclass
class TreeEnsemble:
    """``raw = base + combine(trees)``: ``sum`` for boosting, ``mean`` for forests.

    ``compare`` is ``<=`` (scikit-learn, LightGBM) or ``<`` (XGBoost): a row goes left when
    ``x compare threshold``. ``input_dtype`` ``float32`` says the native model rounds features
    to float32 before comparing; :meth:`split` restates such a split exactly on float64 values.
    """

    kind: ClassVar[str] = "tree_ensemble"
    features: list[str]
    trees: list[Tree]
    n_outputs: int
    base: list[float]
    combine: str = "sum"
    compare: str = "<="
    input_dtype: str = "float64"

    def split(self, threshold: float) -> tuple[str, float]:
        """``(op, t)`` such that ``x op t`` on float64 ``x`` is this ensemble's split test."""
        return double_split(threshold, self.compare, self.input_dtype)


@dataclass
class GaussianNB:
    """Joint log-likelihood per class of a Gaussian naive Bayes model."""

    kind: ClassVar[str] = "gaussian_nb"
    features: list[str]
    theta: list[list[float]]
    var: list[list[float]]
    log_prior: list[float]

    @property
    def n_outputs(self) -> int:
        return len(self.log_prior)


@dataclass
class Centroids:
    """Squared Euclidean distance to each centre (k-means); the nearest is the cluster."""

    kind: ClassVar[str] = "centroids"
    features: list[str]
    centers: list[list[float]]

    @property
    def n_outputs(self) -> int:
        return len(self.centers)


NODES = {cls.kind: cls for cls in (Linear, TreeEnsemble, GaussianNB, Centroids)}

Node: TypeAlias = Linear | TreeEnsemble | GaussianNB | Centroids

#: how raw scores become outputs
TRANSFORMS = {
    "identity": "regression value = raw[:, 0]",
    "exp": "regression value = exp(raw[:, 0])",
    "logistic": "binary: p1 = 1 / (1 + exp(-raw[:, 0])), proba = [1 - p1, p1]",
    "softmax": "proba = softmax(raw)",
    "ovr_logistic": "one-vs-rest: p = logistic(raw), normalised to sum 1",
    "probability": "raw already holds class probabilities",
    "normalize": "proba = raw / sum(raw) (raw as is where the sum is not positive)",
    "margin": "labels only: binary raw[:, 0] > 0, else argmax(raw)",
    "nearest": "cluster = argmin(raw)",
}


@dataclass
class Output:
    """The task, the classes (classifiers) and the transform from raw scores to outputs."""

    task: str
    transform: str
    classes: list | None = None

    @property
    def gives_proba(self) -> bool:
        return self.task == "classification" and self.transform != "margin"


@dataclass
class ModelIR:
    """A whole model: the signature it reads, steps, one model node and its output."""

    signature: Signature
    steps: list = field(default_factory=list)
    model: Any = None
    output: Output | None = None
    #: the precision of the native model's arithmetic (XGBoost computes in float32)
    precision: str = "float64"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; :meth:`from_dict` reads it back."""
        assert self.output is not None  # set by every front end
        model = _plain(asdict(self.model))
        for tree in model.get("trees", ()):
            # forms stored before covers existed keep their exact shape
            if tree.get("cover") is None:
                tree.pop("cover", None)
        return {
            "signature": self.signature.to_dict(),
            "steps": [{"op": s.op, **_plain(asdict(s))} for s in self.steps],
            "model": {"kind": self.model.kind, **model},
            "output": asdict(self.output),
            "precision": self.precision,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelIR:
        """Read back what :meth:`to_dict` wrote."""
        steps = []
        for s in d["steps"]:
            s = dict(s)
            steps.append(STEPS[s.pop("op")](**s))
        m = dict(d["model"])
        node_cls = NODES[m.pop("kind")]
        if node_cls is TreeEnsemble:
            m["trees"] = [Tree(**t) for t in m["trees"]]
        known = {f.name for f in fields(node_cls)}
        return cls(
            signature=Signature.from_dict(d["signature"]),
            steps=steps,
            model=node_cls(**{k: v for k, v in m.items() if k in known}),
            output=Output(**d["output"]),
            precision=d.get("precision", "float64"),
        )

    @property
    def field_kinds(self) -> dict[str, str]:
        """``numeric`` or ``categorical`` for every input and derived field."""
        kinds = {c.name: c.kind for c in self.signature.inputs}
        for s in self.steps:
            # imputing keeps a column's kind; every other step makes a number
            kinds[s.name] = kinds[s.source] if isinstance(s, Impute) else "numeric"
        return kinds

    @property
    def missing_possible(self) -> dict[str, bool]:
        """For every input and derived field, whether it can be missing (NaN, None, SQL
        NULL) for some row: a backend writes a tree's missing-value test only on such a
        field. Every input can be; a step's result follows from its source."""
        return missing_possible([c.name for c in self.signature.inputs], self.steps)


def missing_possible(inputs: list[str], steps: list[Step]) -> dict[str, bool]:
    """For the fields ``inputs`` (each of which can be missing) and those ``steps`` make,
    whether each can be missing (see :attr:`ModelIR.missing_possible`)."""
    possible = dict.fromkeys(inputs, True)
    for s in steps:
        possible[s.name] = _missing_after(s, possible.get(s.source, True))
    return possible


def _missing_after(step: Step, source_missing: bool) -> bool:
    """Whether ``step`` can give a missing value, given whether its source can. Arithmetic
    counts as missing-free only when no finite or infinite input can make it NaN (a zero
    scale, 0 x infinity, infinity - infinity)."""
    if isinstance(step, IsMissing | Indicator):
        return False
    if isinstance(step, Impute):
        return step.value is None or (isinstance(step.value, float) and bool(np.isnan(step.value)))
    if isinstance(step, Ordinal):
        return step.unknown is None or (step.missing is None and source_missing)
    if isinstance(step, Scale):
        safe = bool(np.isfinite(step.center) and np.isfinite(step.scale) and step.scale != 0)
    else:
        safe = bool(np.isfinite(step.mul) and np.isfinite(step.add) and step.mul != 0)
    return source_missing or not safe


def _plain(value: Any) -> Any:
    """Python numbers and lists in place of NumPy ones (NaN and infinity stay floats)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value

"""Read an H2O MOJO (GBM, DRF, GLM) into a ModelIR, so it scores without a JVM.

A MOJO is a zip: ``model.ini`` holds the model's parameters as ``key = value`` lines plus
its columns and the files of their category domains (``domains/d000.txt``, one level per
line); tree models keep each tree as a compact byte string (``trees/t<class>_<group>.bin``).
:func:`read_mojo` parses the zip; :func:`to_ir` turns the model into the intermediate form,
reading everything from the file and computing what h2o-genmodel computes:

- **trees** (GBM, DRF): a row goes right when ``x >= split`` (the split is a float32) and
  left otherwise; a categorical split holds a bitset of the levels that go right, the other
  levels it covers go left, and missing values, unseen levels and levels outside the
  bitset's range go the node's NA direction. GBM adds ``init_f`` and applies the link of
  its distribution (logit, softmax over the per-class trees, log, identity); DRF averages
  its trees (a binomial forest's trees give the first class's probability; a multinomial
  forest's per-class sums are normalised to sum to one);
- **GLM**: categorical levels are indicator columns (the mode level also stands for missing
  and unseen levels, as mean imputation gives them), numbers are mean-imputed, then the
  coefficients, the intercept and the inverse link (logit, softmax, log, identity).

Each tree's auxiliary entry (``trees/t<class>_<group>_aux.bin``, which H2O writes beside
the tree) gives the training weight that went each way at every split; the reader keeps it
as the tree's node covers, from which :mod:`~modelport.compile.explain` computes TreeSHAP
reason codes (a split's weight is its children's total: see :func:`_covers`). A MOJO
without those entries reads as before, without covers, and its reasons are refused.

Categorical inputs reach the trees as their position in the MOJO's domain; an unseen level
counts as missing, as h2o-genmodel's scorer treats it when told to turn unknown levels into
NA (``PredictCsv`` and ``mojo_predict_pandas`` do). A model the reader cannot represent
raises :class:`~modelport.errors.ConversionError` naming what it lacks.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
from dataclasses import dataclass, field
from typing import Any

from modelport.compile import ir
from modelport.errors import ConversionError, UserError
from modelport.signature import Column, Signature

#: the MOJO model categories modelport can register, and the task each becomes
CATEGORIES = {"Binomial": "classification", "Multinomial": "classification",
              "Ordinal": "classification", "Regression": "regression",
              "Clustering": "clustering"}

# NA directions of a tree node, as h2o-genmodel numbers them
_NA_VS_REST, _NA_LEFT, _LEFT = 1, 2, 4
_LEAF_COLUMN = 0xFFFF

#: GBM distributions whose link is the identity / the log / the logit
_IDENTITY_DISTRIBUTIONS = ("gaussian", "laplace", "quantile", "huber")
_LOG_DISTRIBUTIONS = ("poisson", "gamma", "tweedie")


@dataclass
class Mojo:
    """The parsed contents of a MOJO zip."""

    info: dict[str, Any]
    columns: list[str]
    domains: dict[int, list[str]]
    files: dict[str, bytes] = field(repr=False)

    @property
    def algo(self) -> str:
        return str(self.info.get("algo", ""))

    @property
    def category(self) -> str:
        return str(self.info.get("category", ""))

    @property
    def supervised(self) -> bool:
        return bool(self.info.get("supervised", True))

    @property
    def features(self) -> list[str]:
        """The input columns, in the MOJO's order (the response, if any, comes last)."""
        n = self.info.get("n_features")
        return self.columns[: int(n)] if n is not None else self.columns[:-1]

    @property
    def response_domain(self) -> list[str] | None:
        if not self.supervised:
            return None
        return self.domains.get(len(self.columns) - 1)

    def get(self, key: str, default: Any = None) -> Any:
        value = self.info.get(key, default)
        return default if value is None else value

    def describe(self) -> str:
        return f"{self.info.get('algorithm') or self.algo} ({self.category})"


def read_mojo(data: bytes) -> Mojo:
    """Parse MOJO bytes; a file that is not a MOJO is a :class:`UserError`."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UserError("the file is not an H2O MOJO: it is not a zip archive "
                        "(export one with model.download_mojo())") from None
    with zf:
        names = set(zf.namelist())
        if "model.ini" not in names:
            raise UserError("the zip file is not an H2O MOJO: it has no model.ini "
                            "(export one with model.download_mojo())")
        # trees and domains are all a scorer needs; the JSON model details can be large
        files = {n: zf.read(n) for n in names
                 if n == "model.ini" or n.startswith(("trees/", "domains/"))}
    info: dict[str, Any] = {}
    columns: list[str] = []
    domain_files: dict[int, tuple[int, str]] = {}
    section = None
    for raw_line in files["model.ini"].decode("utf-8").splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line in ("[info]", "[columns]", "[domains]"):
            section = line
        elif section == "[info]":
            key, _, value = line.partition("=")
            info[key.strip()] = _value(value.strip())
        elif section == "[columns]":
            columns.append(line)
        elif section == "[domains]":
            position, _, rest = line.partition(":")
            n_levels, _, fname = rest.strip().partition(" ")
            domain_files[int(position)] = (int(n_levels), fname)
    escaped = bool(info.get("escape_domain_values", False))
    domains: dict[int, list[str]] = {}
    for index, (count, fname) in domain_files.items():
        blob = files.get(f"domains/{fname}")
        if blob is None:
            raise UserError(f"the MOJO is incomplete: domains/{fname} is missing")
        levels = blob.decode("utf-8").split("\n")
        if levels and levels[-1] == "":
            levels.pop()
        if escaped:
            levels = [_unescape(v) for v in levels]
        if len(levels) != count:
            raise UserError(f"the MOJO is damaged: domains/{fname} holds {len(levels)} levels, "
                            f"model.ini says {count}")
        domains[index] = levels
    if info.get("endianness", "LITTLE_ENDIAN") != "LITTLE_ENDIAN":
        raise UserError("the MOJO was written big-endian; re-export it on a little-endian machine")
    return Mojo(info=info, columns=columns, domains=domains, files=files)


def signature_of(mojo: Mojo) -> Signature:
    """Inputs from the MOJO's columns and domains; task and classes from its category."""
    task = CATEGORIES.get(mojo.category)
    if task is None:
        raise UserError(f"H2O MOJO category {mojo.category!r} ({mojo.algo}) is not supported: "
                        f"modelport registers {', '.join(CATEGORIES)} models")
    inputs = []
    for i, name in enumerate(mojo.features):
        levels = mojo.domains.get(i)
        if levels is None:
            inputs.append(Column(name=name, dtype="float64", kind="numeric", nullable=True))
        else:
            inputs.append(Column(name=name, dtype="string", kind="categorical", nullable=True,
                                 categories=list(levels)))
    classes = None
    if task == "classification":
        domain = mojo.response_domain
        if domain is None:
            domain = [str(k) for k in range(int(mojo.get("n_classes", 2)))]
        classes = _typed_classes(domain)
    return Signature(inputs=inputs, task=task, classes=classes)


def to_ir(mojo: Mojo | bytes, signature: Signature | None = None) -> ir.ModelIR:
    """The intermediate form of a GBM, DRF or GLM MOJO; others raise ConversionError."""
    if isinstance(mojo, bytes | bytearray):
        mojo = read_mojo(bytes(mojo))
    signature = signature or signature_of(mojo)
    _check_common(mojo)
    node: ir.TreeEnsemble | ir.Linear
    if mojo.algo in ("gbm", "drf"):
        steps, fields = tree_inputs(mojo, signature)
        node, output = (_gbm if mojo.algo == "gbm" else _drf)(mojo, fields)
    elif mojo.algo == "glm":
        steps, node, output = glm_model(mojo, signature)
    else:
        raise ConversionError(f"no reader for {mojo.describe()} MOJOs "
                              "(GBM, DRF and GLM are read)")
    if output.task == "classification":
        assert signature.classes is not None  # a classifier's
        output.classes = list(signature.classes)
    return ir.ModelIR(signature=signature, steps=steps, model=node, output=output)


# --- model.ini values -------------------------------------------------------------------------


def _value(text: str) -> Any:
    """A model.ini value as Python: null, booleans, numbers, [lists] and strings."""
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_value(v.strip()) for v in inner.split(",")] if inner else []
    for parse in (int, _java_float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def _java_float(text: str) -> float:
    special = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
    if text in special:
        return special[text]
    if not any(ch.isdigit() for ch in text):
        raise ValueError(text)
    return float(text)


def _unescape(level: str) -> str:
    """Undo the MOJO's escaping of line breaks in category levels (``\\n``, ``\\\\``)."""
    if "\\" not in level:
        return level
    out, i = [], 0
    while i < len(level):
        ch = level[i]
        if ch == "\\" and i + 1 < len(level) and level[i + 1] in "n\\":
            out.append("\n" if level[i + 1] == "n" else "\\")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _typed_classes(domain: list[str]) -> list:
    """Class labels: integers when every level is one written plainly (``0``, ``1``)."""
    try:
        ints = [int(v) for v in domain]
    except ValueError:
        return list(domain)
    return ints if [str(v) for v in ints] == list(domain) else list(domain)


def _check_common(mojo: Mojo) -> None:
    what = mojo.describe()
    if mojo.category not in ("Binomial", "Multinomial", "Regression"):
        raise ConversionError(f"no reader for {what} MOJOs "
                              "(binomial, multinomial and regression models are read)")
    if int(mojo.get("preprocessors_count", 0)):
        raise ConversionError(f"the {what} MOJO has preprocessors (e.g. target encoding), "
                              "which the reader does not apply")
    encoding = str(mojo.get("_genmodel_encoding", "AUTO"))
    if encoding not in ("AUTO", "Enum"):
        raise ConversionError(f"the {what} MOJO encodes categories as {encoding}; the reader "
                              "reads the default (AUTO/Enum) encoding")
    if mojo.get("offset_column") is not None:
        raise ConversionError(f"the {what} MOJO uses an offset column, which the reader "
                              "does not take")
    if mojo.get("balance_classes", False):
        raise ConversionError(f"the {what} MOJO was trained with balance_classes and corrects "
                              "its probabilities for it; the reader does not")


# --- trees --------------------------------------------------------------------------------


def tree_inputs(mojo: Mojo, signature: Signature) -> tuple[list, list[str]]:
    """Steps giving each categorical column its code in the model's domain; tree fields."""
    kinds = {c.name: c.kind for c in signature.inputs}
    steps, fields = [], []
    for i, name in enumerate(mojo.features):
        if name not in kinds:
            raise ConversionError(f"the MOJO reads column {name!r}, which is not in the "
                                  "signature")
        levels = mojo.domains.get(i)
        if levels is None:
            if kinds[name] != "numeric":
                raise ConversionError(f"column {name!r} is numeric in the MOJO but "
                                      "categorical in the signature")
            fields.append(name)
            continue
        if kinds[name] != "categorical":
            raise ConversionError(f"column {name!r} is categorical in the MOJO but numeric "
                                  "in the signature")
        step = ir.Ordinal(f"level({name})", name, list(levels), unknown=None, missing=None)
        steps.append(step)
        fields.append(step.name)
    return steps, fields


def _trees(mojo: Mojo) -> list[tuple[int, ir.Tree]]:
    """``(class index, tree)`` for every stored tree, class by class, in tree order."""
    mojo_version = float(mojo.get("mojo_version", 0.0))
    if mojo_version < 1.2:
        raise ConversionError(f"the {mojo.describe()} MOJO is version {mojo_version:.2f}; the "
                              "reader reads trees of version 1.20 and later")
    n_groups = int(mojo.get("n_trees"))
    per_class = int(mojo.get("n_trees_per_class", 1))
    sizes = {i: len(levels) for i, levels in mojo.domains.items()}
    out = []
    for k in range(per_class):
        for j in range(n_groups):
            blob = mojo.files.get(f"trees/t{k:02d}_{j:03d}.bin")
            if blob is None:  # a class may have no tree in a group
                continue
            tree = _parse_tree(blob, sizes)
            aux = mojo.files.get(f"trees/t{k:02d}_{j:03d}_aux.bin")
            if aux is not None:
                tree.cover = _covers(tree, aux)
            out.append((k, tree))
    return out


# one auxiliary record per split, as h2o-genmodel's SharedTreeMojoModel.AuxInfo reads it:
# node id, a reserved int, weight left/right, prediction left/right, squared error
# left/right, left child's id, right child's id
_AUX = struct.Struct("<iiffffffii")


def _covers(tree: ir.Tree, blob: bytes) -> list[float] | None:
    """The training weight that reached each node of ``tree`` (a parsed tree, nodes in
    pre-order), from its auxiliary entry; None when the entry does not describe the tree.

    H2O numbers the root 0, and each split's record names its children's numbers and the
    weight that went to each, so a leaf's weight is found by walking the tree from the root
    as h2o-genmodel does. A split's weight is the sum of its children's: a forest's root
    record counts every training row while the splits below count only the rows its tree
    was grown on (in-bag), and TreeSHAP needs the weight of each node to be what its
    children share (else its base is not the model's expected score).
    """
    if tree.feature[0] < 0:
        # a tree of one leaf splits nothing: no record, and no weight is ever weighed
        return [0.0]
    if len(blob) % _AUX.size:
        return None
    splits = {}
    for nid, _, w_left, w_right, _, _, _, _, nid_left, nid_right in _AUX.iter_unpack(blob):
        splits[nid] = (w_left, w_right, nid_left, nid_right)
    cover = [0.0] * len(tree.feature)
    stack = [(0, 0)]  # (node of the tree, H2O's number for it)
    while stack:
        i, nid = stack.pop()
        if tree.feature[i] < 0:
            continue
        record = splits.get(nid)
        if record is None:
            # not this tree's entry: a model with it still scores, its reasons are refused
            return None
        w_left, w_right, nid_left, nid_right = record
        cover[tree.left[i]], cover[tree.right[i]] = w_left, w_right
        stack += [(tree.left[i], nid_left), (tree.right[i], nid_right)]
    for i in reversed(range(len(cover))):  # children come after their parent
        if tree.feature[i] >= 0:
            cover[i] = cover[tree.left[i]] + cover[tree.right[i]]
    return cover


def _parse_tree(blob: bytes, domain_sizes: dict[int, int]) -> ir.Tree:
    """One compressed tree as flat IR arrays (nodes in pre-order, root first)."""
    t = new_tree()

    def leaf(pos: int) -> int:
        i = new_node(t)
        t.value[i] = [_f32(blob, pos)]
        return i

    def node(pos: int) -> int:
        node_type = blob[pos]
        col = struct.unpack_from("<H", blob, pos + 1)[0]
        if col == _LEAF_COLUMN:  # a tree of one leaf
            return leaf(pos + 3)
        i = new_node(t)
        na_dir = blob[pos + 3]
        pos += 4
        t.feature[i] = col
        t.missing_left[i] = na_dir in (_NA_LEFT, _LEFT)
        equal = node_type & 12
        if na_dir == _NA_VS_REST:
            # every present value goes left, only missing ones right
            t.threshold[i] = math.inf
        elif equal == 0:
            t.threshold[i] = _f32(blob, pos)
            pos += 4
        else:
            if equal == 8:  # 32 bits inline
                bit_offset, n_bits = 0, 32
            elif equal == 12:  # offset (2 bytes), length in bits (4 bytes), the bits
                bit_offset, n_bits = struct.unpack_from("<HI", blob, pos)
                pos += 6
            else:
                raise ConversionError(f"a tree node uses split type {equal}, which the "
                                      "reader does not know")
            n_bytes = (n_bits - 1) // 8 + 1 if n_bits > 0 else 0
            bits = blob[pos:pos + n_bytes]
            pos += n_bytes
            bitset_split(t, i, domain_sizes.get(col, 0), bit_offset, n_bits, bits)
        left_mask = node_type & 51
        if left_mask & 16:
            t.left[i] = leaf(pos)
            right_pos = pos + 4
        else:
            width = left_mask + 1
            size = int.from_bytes(blob[pos:pos + width], "little")
            t.left[i] = node(pos + width)
            right_pos = pos + width + size
        right_mask = (node_type & 0xC0) >> 2
        t.right[i] = leaf(right_pos) if right_mask & 16 else node(right_pos)
        return i

    node(0)
    return finished(t)


def new_tree() -> ir.Tree:
    """An empty tree for :func:`new_node` to grow (nodes in pre-order, root first)."""
    return ir.Tree(feature=[], threshold=[], left=[], right=[], missing_left=[], value=[],
                   categories=[])


def new_node(t: ir.Tree) -> int:
    """A new leaf of value 0 in ``t``; its index."""
    return t.add_leaf()


def bitset_split(t: ir.Tree, i: int, n_levels: int, bit_offset: int, n_bits: int,
                 bits: bytes) -> None:
    """Node ``i`` of ``t`` as h2o-genmodel's categorical split: the levels whose bit is set
    go right, the others the bitset covers go left, the rest the NA way (set ``missing_left``
    first)."""
    # every level's side, so no code is left to "the NA way" (unseen levels are
    # missing values by then): levels outside the bitset's range go the NA way
    left: list[float] = []
    right: list[float] = []
    for code in range(n_levels):
        b = code - bit_offset
        if 0 <= b < n_bits:
            goes_right = bool(bits[b >> 3] >> (b & 7) & 1)
        else:
            goes_right = not t.missing_left[i]
        (right if goes_right else left).append(float(code))
    if not left or not right:
        # every present level one way: a test no value passes (or every value does)
        t.threshold[i] = -math.inf if not left else math.inf
    else:
        assert t.categories is not None  # made by new_tree
        t.categories[i] = left


def finished(t: ir.Tree) -> ir.Tree:
    """``t`` without a categories list when no node splits on categories."""
    assert t.categories is not None  # made by new_tree
    if all(c is None for c in t.categories):
        t.categories = None
    return t


def _f32(blob: bytes, pos: int) -> float:
    return struct.unpack_from("<f", blob, pos)[0]


def _gbm(mojo: Mojo, fields: list[str]) -> tuple[ir.TreeEnsemble, ir.Output]:
    return gbm_node(f"{mojo.describe()} MOJO", mojo.category, str(mojo.get("distribution")),
                    str(mojo.get("link_function") or ""), float(mojo.get("init_f", 0.0)),
                    int(mojo.get("n_classes", 1)), _trees(mojo), fields)


def gbm_node(what: str, category: str, distribution: str, link: str, init_f: float,
             n_classes: int, trees: list[tuple[int, ir.Tree]], fields: list[str]
             ) -> tuple[ir.TreeEnsemble, ir.Output]:
    """The ensemble and output of a GBM: ``trees`` are ``(class index, tree)`` pairs;
    ``what`` names the model in errors."""
    for k, tree in trees:
        tree.output = k
    members = [tree for _, tree in trees]
    if category == "Regression":
        node = ir.TreeEnsemble(fields, members, n_outputs=1, base=[init_f], combine="sum",
                               compare="<")
        if distribution in _IDENTITY_DISTRIBUTIONS and link in ("", "identity"):
            return node, ir.Output("regression", "identity")
        if distribution in _LOG_DISTRIBUTIONS and link in ("", "log"):
            return node, ir.Output("regression", "exp")
        raise ConversionError(f"the {what} uses distribution {distribution!r}; the reader "
                              "reads gaussian, laplace, quantile, huber, poisson, gamma and "
                              "tweedie regressions")
    if distribution == "bernoulli" and n_classes == 2:
        node = ir.TreeEnsemble(fields, members, n_outputs=1, base=[init_f], combine="sum",
                               compare="<")
        return node, ir.Output("classification", "logistic")
    if distribution == "multinomial" and n_classes == 2:
        # one tree per group: raw scores (f, -f), as genmodel scores two classes
        for tree in members:
            tree.value = [[v[0], -v[0]] for v in tree.value]
        node = ir.TreeEnsemble(fields, members, n_outputs=2, base=[init_f, -init_f],
                               combine="sum", compare="<")
        return node, ir.Output("classification", "softmax")
    if distribution == "multinomial":
        node = ir.TreeEnsemble(fields, members, n_outputs=n_classes, base=[0.0] * n_classes,
                               combine="sum", compare="<")
        return node, ir.Output("classification", "softmax")
    raise ConversionError(f"the {what} uses distribution {distribution!r}; the reader "
                          "reads bernoulli and multinomial classifiers")


def _drf(mojo: Mojo, fields: list[str]) -> tuple[ir.TreeEnsemble, ir.Output]:
    return drf_node(mojo.category, int(mojo.get("n_classes", 1)),
                    bool(mojo.get("binomial_double_trees", False)), _trees(mojo), fields)


def drf_node(category: str, n_classes: int, double_trees: bool,
             trees: list[tuple[int, ir.Tree]], fields: list[str]
             ) -> tuple[ir.TreeEnsemble, ir.Output]:
    """The ensemble and output of a DRF: ``trees`` are ``(class index, tree)`` pairs."""
    members = []
    for k, tree in trees:
        tree.output = k
        members.append(tree)
    if category == "Regression":
        node = ir.TreeEnsemble(fields, members, n_outputs=1, base=[0.0], combine="mean",
                               compare="<")
        return node, ir.Output("regression", "identity")
    if n_classes == 2 and not double_trees:
        # one tree per group, giving the first class's probability
        for tree in members:
            tree.value = [[v[0], 1.0 - v[0]] for v in tree.value]
        node = ir.TreeEnsemble(fields, members, n_outputs=2, base=[0.0, 0.0], combine="mean",
                               compare="<")
        return node, ir.Output("classification", "probability")
    # per-class sums over their total: the same as means over theirs, with genmodel's arithmetic
    node = ir.TreeEnsemble(fields, members, n_outputs=n_classes, base=[0.0] * n_classes,
                           combine="sum", compare="<")
    return node, ir.Output("classification", "normalize")


# --- GLM ------------------------------------------------------------------------------------


def glm_model(mojo: Mojo, signature: Signature
              ) -> tuple[list[ir.Indicator | ir.Impute], ir.Linear, ir.Output]:
    """Steps, linear node and output of a GLM described by ``mojo``'s parameters (``family``,
    ``link``, ``cats``, ``cat_offsets``, ``cat_modes``, ``num_means``, ``beta``, ...)."""
    what = f"{mojo.describe()} {mojo.get('artefact', 'MOJO')}"
    family = str(mojo.get("family"))
    link = str(mojo.get("link", "") or "")
    if int(mojo.get("num_interactions", 0)):
        raise ConversionError(f"the {what} has interaction columns, which the reader "
                              "does not build")
    if not mojo.get("mean_imputation", False):
        raise ConversionError(f"the {what} does not impute missing values with means; "
                              "the reader reads mean-imputing GLMs")
    if family == "binomial" and link == "logit":
        output = ir.Output("classification", "logistic")
    elif family == "multinomial":
        output = ir.Output("classification", "softmax")
    elif family == "gaussian" and link == "identity":
        output = ir.Output("regression", "identity")
    elif family in ("poisson", "gamma", "tweedie", "negativebinomial") and link == "log":
        output = ir.Output("regression", "exp")
    else:
        raise ConversionError(f"the {what} uses family {family!r} with link {link!r}; the "
                              "reader reads binomial/logit, multinomial, gaussian/identity and "
                              "log-link regressions")
    n_cats = int(mojo.get("cats"))
    offsets = [int(v) for v in mojo.get("cat_offsets")]
    modes = [int(v) for v in mojo.get("cat_modes", [])]
    means = [float(v) for v in mojo.get("num_means", [])]
    beta = [float(v) for v in mojo.get("beta")]
    all_levels = bool(mojo.get("use_all_factor_levels", False))
    n_out = int(mojo.get("n_classes")) if family == "multinomial" else 1
    per_class = len(beta) // n_out
    if per_class * n_out != len(beta):
        raise ConversionError(f"the {what} has {len(beta)} coefficients for {n_out} classes")
    kinds = {c.name: c.kind for c in signature.inputs}
    features = mojo.features
    steps: list[ir.Indicator | ir.Impute] = []
    fields: list[str] = []
    coef: list[list[float]] = [[] for _ in range(n_out)]
    for i in range(n_cats):
        name = features[i]
        if kinds.get(name) != "categorical":
            raise ConversionError(f"column {name!r} is categorical in the MOJO but not in "
                                  "the signature")
        levels = mojo.domains.get(i) or []
        for code, level in enumerate(levels):
            b = code if all_levels else code - 1
            if b < 0 or offsets[i] + b >= offsets[i + 1]:
                continue  # the reference level, or one the model has no coefficient for
            weights = [beta[k * per_class + offsets[i] + b] for k in range(n_out)]
            if not any(weights):
                continue
            if i < len(modes) and code == modes[i]:
                # the mode stands in for missing and unseen levels too
                others = [v for j, v in enumerate(levels) if j != code]
                step = ir.Indicator(f"{name}={level}", name, others, negate=True)
            else:
                step = ir.Indicator(f"{name}={level}", name, [level])
            steps.append(step)
            fields.append(step.name)
            for k in range(n_out):
                coef[k].append(weights[k])
    for j, name in enumerate(features[n_cats:]):
        if kinds.get(name) != "numeric":
            raise ConversionError(f"column {name!r} is numeric in the MOJO but not in the "
                                  "signature")
        impute = ir.Impute(f"impute({name})", name, means[j])
        steps.append(impute)
        fields.append(impute.name)
        for k in range(n_out):
            coef[k].append(beta[k * per_class + offsets[n_cats] + j])
    intercept = [beta[k * per_class + per_class - 1] for k in range(n_out)]
    return steps, ir.Linear(fields, coef, intercept), output

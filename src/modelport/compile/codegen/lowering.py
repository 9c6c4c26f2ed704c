"""The walk shared by every code generator: a ModelIR lowered to statements a language prints.

A language module subclasses :class:`Lowering` and says how to write a number, a string, a
test, an ``if``, a function; the walk decides what is computed and in which order, the same
order as :func:`modelport.compile.evaluate`, so every language computes the same float64
values. Generated ``score(row)`` reads each input once (numbers as float64 with NaN for
missing, categories as strings with null for missing), runs the preprocessing steps as
local variables, fills a ``raw`` score array (trees in functions of their own, big trees
split across several so no function outgrows a compiler's limits, such as the JVM's 64 KB
per method) and turns it into the outputs.

Text from the model (column names, categories, labels) reaches the source only through
:mod:`modelport.quoting.code`: as string literals, as identifiers from one
:class:`~modelport.quoting.code.Identifiers` per file (each input is read into a variable
named after its column, ``in_<name>``), and in comments only in its display form. The
original names stay in a lookup table, ``COLUMNS``, from which ``score`` reads the row.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from modelport.compile import ir
from modelport.errors import ConversionError
from modelport.quoting.code import Identifiers, comment, comment_text, string_literal

#: the most tree nodes one generated function holds inline (about 2x this in the worst case)
NODES_PER_FUNCTION = 400
#: the deepest a tree nests inside one function, far below any parser's block limit
DEPTH_PER_FUNCTION = 24


class Lowering:
    """Turn a ModelIR into source text; subclasses supply the syntax."""

    #: the target, as :mod:`modelport.quoting.code` names it (each language sets it)
    language: str
    #: the string that indents one block
    indent_unit = "    "
    #: the lookup table of input names in the generated code
    table = "COLUMNS"

    def __init__(self, model_ir: ir.ModelIR) -> None:
        if model_ir.precision != "float64":
            raise ConversionError(f"the model computes in {model_ir.precision}; generated code "
                                  "computes in float64 and would not match it exactly")
        self.ir = model_ir
        self.kinds = model_ir.field_kinds
        self.var: dict[str, str] = {}
        self.functions: list[tuple[str, list[str]]] = []  # (name, body lines)
        self.names = Identifiers(self.language, prefix="in_")
        #: per model feature, whether it can be missing when the trees read it: a split's
        #: missing-value test is written only then (the steps before the model decide it;
        #: code fed features from elsewhere sets every entry True)
        possible = model_ir.missing_possible
        self.feature_missing: list[bool] = [possible.get(f, True)
                                            for f in getattr(model_ir.model, "features", [])]

    # --- syntax a language must supply --------------------------------------------------

    def num(self, v: float) -> str:
        v = float(v)
        if math.isnan(v):
            return self.nan_literal
        if math.isinf(v):
            return self.inf_literal if v > 0 else f"(-{self.inf_literal})"
        text = repr(v)
        return text if v >= 0 else f"({text})"

    nan_literal = "NAN"
    inf_literal = "INFINITY"
    true_literal = "true"
    false_literal = "false"

    def text(self, s: object) -> str:
        return string_literal(self.language, str(s))

    def isnan(self, x: str) -> str:
        raise NotImplementedError

    def is_null(self, s: str) -> str:
        raise NotImplementedError

    def str_eq(self, s: str, literal: str) -> str:
        raise NotImplementedError

    def not_(self, cond: str) -> str:
        return f"!({cond})"

    def and_(self, *conds: str) -> str:
        return "(" + " && ".join(conds) + ")"

    def or_(self, *conds: str) -> str:
        return "(" + " || ".join(conds) + ")"

    def exp(self, x: str) -> str:
        raise NotImplementedError

    def sqrt(self, x: str) -> str:
        raise NotImplementedError

    def if_(self, cond: str) -> str:
        return f"if ({cond}) {{"

    def else_(self) -> str:
        return "} else {"

    def end(self) -> str | None:
        return "}"

    def declare_num(self, var: str, expr: str) -> str:
        raise NotImplementedError

    def declare_str(self, var: str, expr: str) -> str:
        raise NotImplementedError

    def assign(self, var: str, expr: str) -> str:
        return f"{var} = {expr};"

    def assign_str(self, var: str, literal: str) -> str:
        return self.assign(var, literal)

    def key(self, i: int) -> str:
        """The row key of input ``i``: its original name, from the lookup table."""
        return f"{self.table}[{i}]"

    def read_num(self, i: int, name: str) -> str:
        raise NotImplementedError

    def read_str(self, i: int, name: str) -> str:
        raise NotImplementedError

    def add_raw(self, k: int, expr: str) -> str:
        return f"raw[{k}] += {expr};"

    def call_tree(self, fn: str) -> str:
        return f"{fn}(x, raw);"

    def tree_call(self, fn: str, tree: ir.Tree) -> str:
        """The statement by which the model runs tree ``tree``'s root function ``fn``."""
        return self.call_tree(fn)

    def x(self, j: int) -> str:
        return f"x[{j}]"

    # --- the walk ------------------------------------------------------------------------

    def preprocessing(self) -> list[str]:
        """Statements that read the inputs and compute every step into a local variable."""
        lines = []
        for i, c in enumerate(self.ir.signature.inputs):
            v = self.names(c.name)
            self.var[c.name] = v
            if c.kind == "numeric":
                lines.append(self.declare_num(v, self.read_num(i, c.name)))
            else:
                lines.append(self.declare_str(v, self.read_str(i, c.name)))
        for i, s in enumerate(self.ir.steps):
            v = f"f{i}"
            lines += self.step(s, v, self.var[s.source], self.kinds[s.source])
            self.var[s.name] = v
        return lines

    def step(self, s: ir.Step, v: str, x: str, kind: str) -> list[str]:
        one, zero = self.num(1.0), self.num(0.0)
        if isinstance(s, ir.Impute):
            if s.value is None:
                return [self.declare_str(v, x) if kind == "categorical" else
                        self.declare_num(v, x)]
            if kind == "categorical":
                return [self.declare_str(v, x), self.if_(self.is_null(v)),
                        self.indent_unit + self.assign_str(v, self.text(s.value)),
                        *self._end()]
            return [self.declare_num(v, x), self.if_(self.isnan(v)),
                    self.indent_unit + self.assign(v, self.num(float(s.value))), *self._end()]
        if isinstance(s, ir.Scale):
            return [self.declare_num(v, f"({x} - {self.num(s.center)}) / {self.num(s.scale)}")]
        if isinstance(s, ir.Affine):
            return [self.declare_num(v, f"{x} * {self.num(s.mul)} + {self.num(s.add)}")]
        missing = self.is_null(x) if kind == "categorical" else self.isnan(x)
        if isinstance(s, ir.IsMissing):
            return [self.declare_num(v, zero), self.if_(missing),
                    self.indent_unit + self.assign(v, one), *self._end()]
        if isinstance(s, ir.Indicator):
            tests = [self.equals(x, c, kind) for c in s.categories if c is not None]
            if None in s.categories:
                tests.append(missing)
            yes, no = (zero, one) if s.negate else (one, zero)
            if not tests:
                return [self.declare_num(v, no)]
            return [self.declare_num(v, no), self.if_(self.or_(*tests)),
                    self.indent_unit + self.assign(v, yes), *self._end()]
        if isinstance(s, ir.Ordinal):
            unknown = self.num(math.nan if s.unknown is None else s.unknown)
            lines = [self.declare_num(v, unknown)]
            for i, c in enumerate(s.categories):
                lines += [self.if_(self.equals(x, c, kind)),
                          self.indent_unit + self.assign(v, self.num(i)), *self._end()]
            lines += [self.if_(missing), self.indent_unit + self.assign(
                v, self.num(math.nan if s.missing is None else s.missing)), *self._end()]
            return lines
        raise ConversionError(f"no code generator for step {type(s).__name__}")

    def equals(self, x: str, c: Any, kind: str) -> str:
        if kind == "categorical":
            return self.str_eq(x, self.text(c))
        return f"{x} == {self.num(c)}"

    def _end(self) -> list[str]:
        e = self.end()
        return [e] if e is not None else []

    def table_entries(self, names: list[str]) -> list[str]:
        """One line per name for a lookup table: its literal, then a comment naming the
        variable it is read into."""
        return [f"{self.text(n)},  {comment(self.language, self.names(n))}" for n in names]

    def features(self) -> list[str]:
        """The model node's inputs, in order, as variable names."""
        return [self.var[f] for f in self.ir.model.features]

    def model(self) -> list[str]:
        """Statements filling ``raw`` (already holding zeros) from the feature array ``x``."""
        node = self.ir.model
        lines = []
        if isinstance(node, ir.Linear):
            for k, (row, b) in enumerate(zip(node.coef, node.intercept, strict=True)):
                terms = [self.num(b)] + [f"{self.num(c)} * {self.x(j)}" for j, c in enumerate(row)]
                lines.append(self.set_raw(k, " + ".join(terms)))
            return lines
        if isinstance(node, ir.TreeEnsemble):
            for k, b in enumerate(node.base):
                lines.append(self.set_raw(k, self.num(b)))
            for t, tree in enumerate(node.trees):
                lines.append(self.tree_call(self.tree_functions(node, tree, f"tree{t}"), tree))
            if node.combine == "mean":
                for k in range(node.n_outputs):
                    lines.append(self.set_raw(k, f"raw[{k}] / {self.num(len(node.trees))}"))
            return lines
        if isinstance(node, ir.GaussianNB):
            for k, (theta, var, prior) in enumerate(zip(node.theta, node.var, node.log_prior,
                                                        strict=True)):
                const = float(-0.5 * np.sum(np.log(2.0 * np.pi * np.asarray(var))))
                quad = " + ".join(f"({self.x(j)} - {self.num(t)}) * ({self.x(j)} - {self.num(t)})"
                                  f" / {self.num(s)}"
                                  for j, (t, s) in enumerate(zip(theta, var, strict=True)))
                lines.append(self.set_raw(k, f"{self.num(prior)} + ({self.num(const)} - "
                                             f"{self.num(0.5)} * ({quad}))"))
            return lines
        if isinstance(node, ir.Centroids):
            for k, center in enumerate(node.centers):
                dist = " + ".join(f"({self.x(j)} - {self.num(c)}) * ({self.x(j)} - {self.num(c)})"
                                  for j, c in enumerate(center))
                lines.append(self.set_raw(k, dist))
            return lines
        raise ConversionError(f"no code generator for model node {type(node).__name__}")

    def set_raw(self, k: int, expr: str) -> str:
        return self.assign(f"raw[{k}]", expr)

    def tree_functions(self, node: ir.TreeEnsemble, tree: ir.Tree, name: str) -> str:
        """Write ``tree`` as one or more functions adding to ``raw``; return the root's name."""
        size = _subtree_sizes(tree)
        cats = tree.categories or [None] * len(tree.feature)
        cats_right = tree.categories_right or [None] * len(tree.feature)
        pending = [(0, name)]
        while pending:
            root, fn = pending.pop()
            body: list[str] = []

            def visit(i: int, depth: int, fn: str = fn, body: list[str] = body,
                      root: int = root) -> None:
                pad = self.indent_unit * depth
                if i != root and (size[i] > NODES_PER_FUNCTION or depth >= DEPTH_PER_FUNCTION):
                    sub = f"{fn}_{i}"
                    pending.append((i, sub))
                    body.append(pad + self.call_tree(sub))
                    return
                if tree.feature[i] < 0:
                    for j, v in enumerate(tree.value[i]):
                        if v != 0.0:
                            body.append(pad + self.add_raw(tree.output + j, self.num(v)))
                    if not any(v != 0.0 for v in tree.value[i]):
                        body.append(pad + self.no_op())
                    return
                body.append(pad + self.if_(self.goes_left(node, tree, i, cats[i],
                                                          cats_right[i])))
                visit(tree.left[i], depth + 1)
                body.append(pad + self.else_())
                visit(tree.right[i], depth + 1)
                e = self.end()
                if e is not None:
                    body.append(pad + e)

            visit(root, 0)
            self.functions.append((fn, body))
        return name

    def no_op(self) -> str:
        return ";"

    def goes_left(self, node: ir.TreeEnsemble, tree: ir.Tree, i: int, cats: list | None,
                  cats_right: list | None) -> str:
        x = self.x(tree.feature[i])
        ml = tree.missing_left[i]
        # the missing-value test, where the feature can be missing at all
        nan = ml and self.feature_missing[tree.feature[i]]
        if cats is not None:
            tests = [f"{x} == {self.num(c)}" for c in cats]
            if ml:
                if nan:
                    tests.insert(0, self.isnan(x))
                if cats_right is not None:
                    # a code on neither side goes where missing values go
                    tests.append(self.not_(self.or_(*[f"{x} == {self.num(c)}"
                                                      for c in cats_right]))
                                 if cats_right else self.true_literal)
            return self.or_(*tests) if tests else self.false_literal
        op, t = node.split(tree.threshold[i])
        if nan:
            return self.missing_or(x, op, self.num(t))
        return f"{x} {op} {self.num(t)}"

    def missing_or(self, x: str, op: str, t: str) -> str:
        """The test that ``x`` is missing or ``x op t`` (``op`` is ``<=`` or ``<``)."""
        return self.or_(self.isnan(x), f"{x} {op} {t}")

    def result(self) -> tuple[list[str], str]:
        """Statements computing the outputs from ``raw``, and what ``score`` returns.

        Returns ``(lines, kind)`` where kind is ``value`` (one number in ``raw[0]``) or
        ``vector`` (``n_outputs`` numbers in ``out``).
        """
        out = self.ir.output
        assert out is not None  # set by every front end
        if out.task == "classification":
            assert out.classes is not None  # a classifier's
            n = len(out.classes)
        else:
            n = self.ir.model.n_outputs
        t = out.transform
        if out.task == "regression":
            if t == "exp":
                return [self.set_raw(0, self.exp("raw[0]"))], "value"
            return [], "value"
        lines = []
        if out.task == "clustering":
            lines += [self.set_out(k, self.sqrt(f"raw[{k}]")) for k in range(n)]
        elif t == "logistic":
            lines += [self.set_out(1, self.sigmoid("raw[0]")),
                      self.set_out(0, f"{self.num(1.0)} - out[1]")]
        elif t == "softmax":
            lines.append(self.declare_num("top", "raw[0]"))
            for k in range(1, n):
                lines += [self.if_(f"raw[{k}] > top"), self.indent_unit + self.assign("top",
                                                                                     f"raw[{k}]"),
                          *self._end()]
            lines.append(self.declare_num("total", self.num(0.0)))
            for k in range(n):
                lines += [self.set_out(k, self.exp(f"raw[{k}] - top")),
                          self.assign("total", f"total + out[{k}]")]
            lines += [self.set_out(k, f"out[{k}] / total") for k in range(n)]
        elif t == "ovr_logistic":
            lines.append(self.declare_num("total", self.num(0.0)))
            for k in range(n):
                lines += [self.set_out(k, self.sigmoid(f"raw[{k}]")),
                          self.assign("total", f"total + out[{k}]")]
            lines += [self.set_out(k, f"out[{k}] / total") for k in range(n)]
        elif t in ("probability", "margin"):
            lines += [self.set_out(k, f"raw[{k}]") for k in range(self.ir.model.n_outputs)]
        elif t == "normalize":
            lines.append(self.declare_num("total", self.num(0.0)))
            lines += [self.assign("total", f"total + raw[{k}]") for k in range(n)]
            lines += [self.set_out(k, f"raw[{k}]") for k in range(n)]
            lines += [self.if_(f"total > {self.num(0.0)}"),
                      *[self.indent_unit + self.set_out(k, f"out[{k}] / total") for k in range(n)],
                      *self._end()]
        else:
            raise ConversionError(f"no code generator for transform {t!r}")
        return lines, "vector"

    def n_out(self) -> int:
        out = self.ir.output
        assert out is not None  # set by every front end
        if out.task == "regression":
            return 1
        if out.task == "classification" and out.transform != "margin":
            assert out.classes is not None  # a classifier's
            return len(out.classes)
        return self.ir.model.n_outputs

    def set_out(self, k: int, expr: str) -> str:
        return self.assign(f"out[{k}]", expr)

    def sigmoid(self, z: str) -> str:
        one = self.num(1.0)
        return f"{one} / ({one} + {self.exp(f'-{z}')})"


def _subtree_sizes(tree: ir.Tree) -> list[int]:
    size = [1] * len(tree.feature)
    order, stack = [], [0]
    while stack:
        i = stack.pop()
        order.append(i)
        if tree.feature[i] >= 0:
            stack += [tree.left[i], tree.right[i]]
    for i in reversed(order):
        if tree.feature[i] >= 0:
            size[i] = 1 + size[tree.left[i]] + size[tree.right[i]]
    return size


def shown(value: object) -> str:
    """A name or label as comments and usage notes show it: text in quotes, in the display
    form of :func:`~modelport.quoting.code.comment_text`; numbers as they are."""
    if isinstance(value, str):
        return f"'{comment_text(value)}'"
    return comment_text(str(value))


def shown_names(names: list[str], table: str) -> str:
    """Input names for comments: each in its display form, with a note pointing to the
    lookup table ``table`` when one of them needed escapes."""
    text = ", ".join(comment_text(n) for n in names) or "none"
    if any(comment_text(n) != n for n in names):
        text += (" (shown with %XX escapes for characters outside letters, digits and simple "
                 f"punctuation; {table} holds them exactly)")
    return text


def usage_returns(model_ir: ir.ModelIR) -> str:
    """One sentence saying what ``score`` returns, for comments and usage notes (class labels
    in their display form, see :func:`shown`)."""
    out = model_ir.output
    assert out is not None  # set by every front end
    if out.task == "regression":
        return "the predicted value (a number)"
    if out.task == "clustering":
        return ("the Euclidean distance to each cluster centre, in cluster order (the nearest "
                "is the cluster)")
    assert out.classes is not None  # a classifier's
    classes = "[" + ", ".join(shown(c) for c in out.classes) + "]"
    if out.transform == "margin":
        return (f"the decision scores (the model gives no probabilities; classes "
                f"{classes}: binary score > 0 means {shown(out.classes[-1])}, otherwise the "
                "largest score wins)")
    return f"the probability of each class, in the order {classes}"

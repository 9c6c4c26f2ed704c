"""A ModelIR as one SQL expression for PostgreSQL, MariaDB/MySQL or SQLite.

The expression reads the input columns by name and computes everything inline:
imputation as ``COALESCE``, one-hot and ordinal codes as ``CASE``, scalers as arithmetic,
linear models as sums of products, each tree as nested ``CASE`` (a missing value is a
``NULL`` and follows the tree's missing-value branch), ensembles as sums and the sigmoid as
``EXP``. It returns the positive-class probability (binary classifiers), the value
(regressors), the label (multiclass classifiers, and binary ones that give no probability)
or the cluster index (k-means). Long sums are parenthesised as balanced trees, so a
300-tree ensemble nests only as deep as its deepest tree plus ~10 levels, well within
SQLite's expression depth limit of 1000; SQLite's parser stack is smaller still (about 100
entries), so there deep trees are written flat, one ``WHEN`` per leaf. Numbers are written
as float64 literals with all 17 significant digits, so the database computes in the same
arithmetic as NumPy. Column names, categories and labels come from data: they are written
only through :mod:`modelport.quoting.sql`, which refuses what a dialect cannot hold.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from modelport.compile import ir
from modelport.errors import ConversionError, UserError
from modelport.quoting.sql import DIALECTS, dollar_quoted, fit, identifier, literal

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DIALECTS", "create_function", "create_reason_functions", "function_name",
           "reason_function_names", "reasons", "result_kind", "to_sql", "to_sql_parts",
           "to_sql_subquery"]

#: the sigmoid and exp arguments are clamped here: beyond it the result is 0, 1 or overflow
_EXP_LIMIT = 700.0
#: trees deeper than this are written flat for SQLite (its parser stack is small)
_SQLITE_NESTED_DEPTH = 6


def to_sql(model_ir: ir.ModelIR, dialect: str, prefix: str = "") -> str:
    """One SQL expression computing the model's score from its input columns.

    ``prefix`` is written before every column reference (``NEW.`` in a trigger body).
    """
    return _Writer(model_ir, dialect, prefix).expression()


def to_sql_parts(model_ir: ir.ModelIR, dialect: str,
                 prefix: str = "") -> tuple[list[tuple[str, str]], str]:
    """The model as ``(features, expression)``: each tree ensemble's preprocessed inputs
    as named expressions, and the score as an expression over those names.

    An ensemble tests the same preprocessed input in hundreds of nodes; written inline
    (:func:`to_sql`), every test recomputes its imputation, scaling or one-hot ``CASE``.
    A caller that can compute the features once (function variables, a derived table)
    uses this form. For other models the feature list is empty and the expression is the
    inline one.
    """
    w = _Writer(model_ir, dialect, prefix, share=True)
    return w.lets, w.expression()


def to_sql_subquery(model_ir: ir.ModelIR, dialect: str, prefix: str = "") -> str:
    """One scalar expression that computes each shared feature once, for a database with
    no stored functions (SQLite): the score selected from a one-row derived table of the
    features. The derived table is ``DISTINCT`` so the planner keeps it as a table instead
    of substituting the feature expressions back into every tree test.
    """
    lets, expr = to_sql_parts(model_ir, dialect, prefix)
    if not lets:
        return expr
    features = ", ".join(f"{e} AS {identifier(n, dialect)}" for n, e in lets)
    return f"(SELECT {expr} FROM (SELECT DISTINCT {features}) AS mp_features)"


def function_name(name: str) -> str:
    """The name :func:`create_function` gives the function of model ``name``:
    ``<name>_score``, with a hashed suffix when that is over 63 bytes."""
    return fit(name, "_score")


def create_function(model_ir: ir.ModelIR, dialect: str, name: str) -> str:
    """``CREATE FUNCTION <name>_score(col, ...)`` for PostgreSQL or MariaDB/MySQL.

    Parameters are the input columns in signature order, so a caller writes
    ``SELECT churn_score(tenure, plan, ...) FROM customers``; the function's name is
    :func:`function_name`. SQLite has no stored functions: use :func:`to_sql` there.
    """
    if dialect == "sqlite":
        raise UserError("SQLite has no stored functions: use the expression (--dialect sqlite "
                        "writes <name>_score.expr.sql)")
    w = _Writer(model_ir, dialect, "", share=True)
    expr = w.expression()
    fn, params, returns = _head(w, name)
    real = w.column_type("numeric")
    head = f"CREATE OR REPLACE FUNCTION {fn}({params})\nRETURNS {returns}\n"
    if dialect == "postgresql":
        # the body's tag is chosen so that no category or name inside can close it
        if not w.lets:
            # a one-statement SQL function is inlined into the calling query
            body = f"\nSELECT {expr}\n"
            return f"{head}LANGUAGE sql IMMUTABLE PARALLEL SAFE\nAS {dollar_quoted(body)};\n"
        # PL/pgSQL variables hold each feature once; the plan of the score is cached
        declare = "".join(f"  {w.ident(n)} {real} := {e};\n" for n, e in w.lets)
        body = f"\nDECLARE\n{declare}BEGIN\n  RETURN {expr};\nEND\n"
        return f"{head}LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE\nAS {dollar_quoted(body)};\n"
    if not w.lets:
        return f"{head}DETERMINISTIC NO SQL\nRETURN {expr};\n"
    declare = "".join(f"  DECLARE {w.ident(n)} {real} DEFAULT {e};\n" for n, e in w.lets)
    return f"{head}DETERMINISTIC NO SQL\nBEGIN\n{declare}  RETURN {expr};\nEND\n"


def function_head(model_ir: ir.ModelIR, dialect: str, name: str) -> tuple[str, str, str]:
    """``(function, parameters, return type)`` of the function :func:`create_function`
    writes for model ``name``, quoted for ``dialect``: what any other body of the same
    function (a compiled one, say) is declared with, so callers see one function."""
    return _head(_Writer(model_ir, dialect, "", share=True), name)


def _head(w: _Writer, name: str) -> tuple[str, str, str]:
    fn = identifier(function_name(name), w.dialect, "function name")
    params = ", ".join(f"{w.ident(c.name)} {w.column_type(c.kind)}"
                       for c in w.ir.signature.inputs)
    return fn, params, w.result_type()


def reasons(model_ir: ir.ModelIR, dialect: str, k: int, means: np.ndarray, prefix: str = "",
            inline: bool | None = None) -> list[tuple[str, str]]:
    """A linear model's top ``k`` reasons as SQL: ``[("reason_1", expression),
    ("contribution_1", expression), ...]``, one expression per reason.

    ``reason_j`` is the name of the input column with the ``j``-th largest contribution
    (by size, equal sizes in signature order) and ``contribution_j`` that contribution,
    ``coef * (feature - mean)`` summed over the column's features, in the raw score (the
    log-odds of a binary classifier, the value of a regressor); ``means`` are the model
    node's feature means over the background the contributions are measured from
    (:meth:`modelport.compile.explain.Explainer.feature_means`). These are the reasons
    every other surface gives (:mod:`modelport.compile.explain`). A row whose score is NULL
    has NULL reasons.

    Each column's contribution is computed once in a one-row derived table (``inline``
    False, the default except on MariaDB/MySQL, which cannot read an outer query's columns
    inside a derived table); inline, it is written into every comparison that ranks it.
    A model that is not linear, or has more than two raw scores, is refused with a
    :class:`ConversionError`.
    """
    w = _Writer(model_ir, dialect, prefix)
    terms = w.contributions(means)
    names = list(model_ir.signature.names)
    if inline is None:
        inline = dialect == "mysql"
    if inline:
        return w.ranked(terms, k, names)
    stem = _variable_stem(set(names), "mp_c")
    held = [w.ident(f"{stem}{i}") for i in range(len(terms))]
    table = ", ".join(f"{t} AS {h}" for t, h in zip(terms, held, strict=True))
    return [(col, f"(SELECT {e} FROM (SELECT DISTINCT {table}) AS mp_contributions)")
            for col, e in w.ranked(held, k, names)]


def reason_function_names(name: str) -> tuple[str, str]:
    """The names :func:`create_reason_functions` gives model ``name``'s two functions:
    ``<name>_reason`` and ``<name>_contribution`` (hashed to fit 63 bytes)."""
    return fit(name, "_reason"), fit(name, "_contribution")


def create_reason_functions(model_ir: ir.ModelIR, dialect: str, name: str,
                            means: np.ndarray) -> list[str]:
    """``CREATE FUNCTION`` statements for PostgreSQL or MariaDB/MySQL of a linear model's
    reasons (see :func:`reasons`): ``<name>_reason(n, col, ...)``, the input column of the
    ``n``-th reason, and ``<name>_contribution(n, col, ...)``, its contribution; the
    columns in signature order as :func:`create_function` takes them. Each computes the
    contributions once, into variables, and ranks them there."""
    if dialect == "sqlite":
        raise UserError("SQLite has no stored functions: use the reason expressions")
    w = _Writer(model_ir, dialect, "")
    terms = w.contributions(means)
    names = list(model_ir.signature.names)
    stem = _variable_stem(set(names), "mp_c")
    n_param = "mp_n"
    while n_param in {n.lower() for n in names}:
        n_param += "_"
    n_param = w.ident(n_param)
    held = [w.ident(f"{stem}{i}") for i in range(len(terms))]
    ranks = w.ranks(held)
    params = ", ".join(f"{w.ident(c.name)} {w.column_type(c.kind)}"
                       for c in model_ir.signature.inputs)
    real = w.column_type("numeric")
    out = []
    for fname, result, pick in (
            (reason_function_names(name)[0], None, [w.text(n, "column name") for n in names]),
            (reason_function_names(name)[1], real, held)):
        whens = " ".join(f"WHEN {r} = {n_param} - 1 THEN {p}"
                         for r, p in zip(ranks, pick, strict=True))
        body = w.null_guard(held, f"CASE {whens} END")
        fn = identifier(fname, dialect, "function name")
        returns = result or ("text" if dialect == "postgresql" else w.varchar())
        if dialect == "postgresql":
            head = (f"CREATE OR REPLACE FUNCTION {fn}({n_param} integer, {params})\n"
                    f"RETURNS {returns}\n")
            declare = "".join(f"  {h} {real} := {t};\n" for h, t in zip(held, terms,
                                                                          strict=True))
            text = f"\nDECLARE\n{declare}BEGIN\n  RETURN {body};\nEND\n"
            out.append(f"{head}LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE\n"
                       f"AS {dollar_quoted(text)};\n")
        else:
            head = (f"CREATE OR REPLACE FUNCTION {fn}({n_param} INT, {params})\n"
                    f"RETURNS {returns}\n")
            declare = "".join(f"  DECLARE {h} {real} DEFAULT {t};\n"
                              for h, t in zip(held, terms, strict=True))
            out.append(f"{head}DETERMINISTIC NO SQL\nBEGIN\n{declare}  RETURN {body};\n"
                       "END\n")
    return out


def result_kind(model_ir: ir.ModelIR) -> str:
    """What the expression returns: ``probability``, ``value``, ``label`` or ``cluster``."""
    out = model_ir.output
    assert out is not None  # set by every front end
    if out.task == "regression":
        return "value"
    if out.task == "clustering":
        return "cluster"
    assert out.classes is not None  # a classifier's
    if len(out.classes) == 2 and out.transform != "margin":
        return "probability"
    return "label"


class _Writer:
    def __init__(self, model_ir: ir.ModelIR, dialect: str, prefix: str,
                 share: bool = False) -> None:
        if dialect not in DIALECTS:
            raise UserError(f"unknown SQL dialect {dialect!r}: use one of {', '.join(DIALECTS)}")
        if model_ir.precision != "float64":
            raise ConversionError(f"the model computes in {model_ir.precision}; SQL computes "
                                  "in float64 and would not match it exactly")
        self.ir = model_ir
        self.dialect = dialect
        #: the longest text literal written, in characters: MySQL's VARCHAR must hold it
        self.longest_text = 0
        #: whether a number of the model is missing (NaN, written NULL): a PMML tree's leaf
        #: or segment that gives no answer
        self.null_numbers = False
        self.kinds = model_ir.field_kinds
        self.expr: dict[str, str] = {c.name: prefix + self.ident(c.name)
                                     for c in model_ir.signature.inputs}
        #: whether a field can be NULL: a tree's missing-value test is written only then
        self.nullable: dict[str, bool] = model_ir.missing_possible
        for s in model_ir.steps:
            self.expr[s.name] = self.step(s)
        #: (name, expression) of each computed feature an ensemble reads, when shared
        self.lets: list[tuple[str, str]] = []
        node = model_ir.model
        if share and isinstance(node, ir.TreeEnsemble):
            seen = {c.name for c in model_ir.signature.inputs}
            stem = _variable_stem(seen)
            for i, f in enumerate(node.features):
                if f not in seen:
                    seen.add(f)
                    name = f"{stem}{i}"
                    self.lets.append((name, self.expr[f]))
                    self.expr[f] = self.ident(name)

    # --- literals and names ---------------------------------------------------------------

    def ident(self, name: str) -> str:
        return identifier(name, self.dialect, "column name")

    def num(self, v: float) -> str:
        v = float(v)
        if math.isnan(v):
            # no answer: NULL, which arithmetic carries through as NumPy carries NaN
            self.null_numbers = True
            return "NULL::float8" if self.dialect == "postgresql" else "NULL"
        if not math.isfinite(v):
            raise ConversionError(f"the model holds the number {v}, which SQL cannot write")
        text = repr(v)
        if "e" not in text:
            text += "e0"  # an exponent makes MySQL read a double, not a DECIMAL
        if self.dialect == "postgresql":
            return f"{text}::float8" if v >= 0 else f"({text}::float8)"
        return text if v >= 0 else f"({text})"

    def text(self, v: str, what: str = "category") -> str:
        self.longest_text = max(self.longest_text, len(str(v)))
        return literal(v, self.dialect, what)

    def value(self, v: Any, kind: str) -> str:
        return self.text(v) if kind == "categorical" else self.num(v)

    def label(self, c: str | float) -> str:
        if isinstance(c, bool):
            return "1" if c else "0"
        if isinstance(c, int):
            return str(c)
        if isinstance(c, float):
            return self.num(c)
        return self.text(c, "class label")

    def varchar(self) -> str:
        # longer than every literal: a longer value cut to fit could equal a category
        n = max(255, self.longest_text + 1)
        return f"VARCHAR({n})" if n <= 16000 else "LONGTEXT"

    def column_type(self, kind: str) -> str:
        if kind == "categorical":
            return "text" if self.dialect == "postgresql" else self.varchar()
        return "double precision" if self.dialect == "postgresql" else "DOUBLE"

    def result_type(self) -> str:
        kind = result_kind(self.ir)
        if kind == "cluster":
            return "bigint" if self.dialect == "postgresql" else "BIGINT"
        if kind != "label":
            return "double precision" if self.dialect == "postgresql" else "DOUBLE"
        out = self.ir.output
        assert out is not None and out.classes is not None  # a classifier's
        if not all(isinstance(c, int | float) for c in out.classes):
            return "text" if self.dialect == "postgresql" else self.varchar()
        if all(isinstance(c, int) for c in out.classes):
            return "bigint" if self.dialect == "postgresql" else "BIGINT"
        return "double precision" if self.dialect == "postgresql" else "DOUBLE"

    def may_be_null(self) -> bool:
        """Whether a raw score can be NULL (NaN in NumPy): the model holds a missing number,
        or a field that can be NULL reaches arithmetic (trees test for NULL instead)."""
        node = self.ir.model
        if self.null_numbers:
            return True
        if isinstance(node, ir.TreeEnsemble):
            return False
        return any(self.nullable.get(f, True) for f in node.features)

    def clamp(self, x: str, low: float | None, high: float | None) -> str:
        lo, hi = ("MAX", "MIN") if self.dialect == "sqlite" else ("GREATEST", "LEAST")
        clamped = x
        if high is not None:
            clamped = f"{hi}({clamped}, {self.num(high)})"
        if low is not None:
            clamped = f"{lo}({clamped}, {self.num(low)})"
        if self.dialect == "postgresql" and self.may_be_null():
            # PostgreSQL's GREATEST and LEAST pass over a NULL argument: a missing score
            # would become the bound (a probability of 0 or 1) instead of staying missing
            return f"(CASE WHEN ({x}) IS NULL THEN NULL ELSE {clamped} END)"
        return clamped

    def strings(self, x: str) -> str:
        # MariaDB compares text case- and trailing-space-insensitively by default
        return f"BINARY {x}" if self.dialect == "mysql" else x

    # --- preprocessing --------------------------------------------------------------------

    def step(self, s: ir.Step) -> str:
        x = self.expr[s.source]
        kind = self.kinds[s.source]
        if isinstance(s, ir.Impute):
            return f"COALESCE({x}, {self.value(s.value, kind)})"
        if isinstance(s, ir.Scale):
            return f"(({x} - {self.num(s.center)}) / {self.num(s.scale)})"
        if isinstance(s, ir.Affine):
            return f"({x} * {self.num(s.mul)} + {self.num(s.add)})"
        one, zero = self.num(1.0), self.num(0.0)
        if isinstance(s, ir.IsMissing):
            return f"(CASE WHEN {x} IS NULL THEN {one} ELSE {zero} END)"
        if isinstance(s, ir.Indicator):
            known = [c for c in s.categories if c is not None]
            tests = []
            if known:
                tests.append(self.member(x, known, kind))
            if None in s.categories:
                tests.append(f"{x} IS NULL")
            cond = " OR ".join(tests) or "1 = 0"
            yes, no = (zero, one) if s.negate else (one, zero)
            return f"(CASE WHEN {cond} THEN {yes} ELSE {no} END)"
        if isinstance(s, ir.Ordinal):
            missing = "NULL" if s.missing is None else self.num(s.missing)
            unknown = "NULL" if s.unknown is None else self.num(s.unknown)
            whens = " ".join(f"WHEN {self.strings(x) if kind == 'categorical' else x} = "
                             f"{self.value(c, kind)} THEN {self.num(i)}"
                             for i, c in enumerate(s.categories))
            return f"(CASE WHEN {x} IS NULL THEN {missing} {whens} ELSE {unknown} END)"
        raise ConversionError(f"no SQL for step {type(s).__name__}")

    def member(self, x: str, values: list, kind: str) -> str:
        items = ", ".join(self.value(v, kind) for v in values)
        if kind == "categorical":
            x = self.strings(x)
        return f"{x} IN ({items})"

    # --- model ------------------------------------------------------------------------------

    def raw(self) -> list[str]:
        node = self.ir.model
        xs = [self.expr[f] for f in node.features]
        if isinstance(node, ir.Linear):
            return [balanced_sum([self.num(b)] + [f"{self.num(c)} * {x}"
                                                  for c, x in zip(row, xs, strict=True)])
                    for row, b in zip(node.coef, node.intercept, strict=True)]
        if isinstance(node, ir.TreeEnsemble):
            per_output: list[list[str]] = [[] for _ in range(node.n_outputs)]
            for tree in node.trees:
                width = len(tree.value[0])
                for j in range(width):
                    per_output[tree.output + j].append(self.tree(node, tree, xs, j))
            out = []
            for k, terms in enumerate(per_output):
                total = balanced_sum(terms) if terms else self.num(0.0)
                if node.combine == "mean":
                    total = f"({total}) / {self.num(len(node.trees))}"
                out.append(f"({self.num(node.base[k])} + {total})" if node.base[k] or not terms
                           else total)
            return out
        if isinstance(node, ir.GaussianNB):
            out = []
            for theta, var, prior in zip(node.theta, node.var, node.log_prior, strict=True):
                const = prior + -0.5 * math.fsum(math.log(2.0 * math.pi * v) for v in var)
                quad = balanced_sum([f"({x} - {self.num(t)}) * ({x} - {self.num(t)}) / "
                                     f"{self.num(v)}" for x, t, v in zip(xs, theta, var,
                                                                        strict=True)])
                out.append(f"({self.num(const)} - {self.num(0.5)} * ({quad}))")
            return out
        if isinstance(node, ir.Centroids):
            return [balanced_sum([f"({x} - {self.num(c)}) * ({x} - {self.num(c)})"
                                  for x, c in zip(xs, center, strict=True)])
                    for center in node.centers]
        raise ConversionError(f"no SQL for model node {type(node).__name__}")

    def tree(self, node: ir.TreeEnsemble, tree: ir.Tree, xs: list[str], j: int) -> str:
        cats = tree.categories or [None] * len(tree.feature)
        cats_right = tree.categories_right or [None] * len(tree.feature)

        def left_test(i: int) -> str:
            x = xs[tree.feature[i]]
            ml = tree.missing_left[i]
            # a field that is never NULL (imputed, one-hot) needs no missing-value test
            null_left = ml and self.nullable.get(node.features[tree.feature[i]], True)
            codes, codes_right = cats[i], cats_right[i]
            if codes is not None:
                left = [f"{x} IN ({', '.join(self.num(c) for c in codes)})"]
                if null_left:
                    left.insert(0, f"{x} IS NULL")
                if ml:
                    if codes_right is not None:
                        # a code on neither side goes where missing values go
                        right = ", ".join(self.num(c) for c in codes_right)
                        left.append(f"{x} NOT IN ({right})" if right else "1 = 1")
                cond = " OR ".join(left)
            else:
                op, t = node.split(tree.threshold[i])
                cond = f"{x} {op} {self.num(t)}" if math.isfinite(t) else (
                    f"{x} IS NOT NULL" if t > 0 else "1 = 0")
                if null_left:
                    cond = f"{x} IS NULL OR {cond}"
            return cond

        def visit(i: int) -> str:
            if tree.feature[i] < 0:
                return self.num(tree.value[i][j])
            return (f"CASE WHEN {left_test(i)} THEN {visit(tree.left[i])} "
                    f"ELSE {visit(tree.right[i])} END")

        if self.dialect != "sqlite" or tree.depth() <= _SQLITE_NESTED_DEPTH:
            return visit(0)
        # SQLite's parser stack holds ~100 entries, a few per nested CASE: deep trees are
        # written flat, one WHEN per leaf with the tests on its path (a NULL test counts
        # as false, so the right branch is "not a true left test")
        whens: list[str] = []
        stack: list[tuple[int, list[str]]] = [(0, [])]
        while stack:
            i, path = stack.pop()
            if tree.feature[i] < 0:
                whens.append(f"WHEN {' AND '.join(path) or '1 = 1'} THEN "
                             f"{self.num(tree.value[i][j])}")
                continue
            test = left_test(i)
            stack.append((tree.right[i], [*path, f"NOT COALESCE({test}, 0)"]))
            stack.append((tree.left[i], [*path, f"({test})"]))
        return f"CASE {' '.join(whens)} END"

    # --- reasons ----------------------------------------------------------------------------

    def contributions(self, means: np.ndarray) -> list[str]:
        """One expression per input column: its contribution to the raw score reasons
        explain, ``coef * (feature - mean)`` summed over the features made from it."""
        from modelport.compile.explain import explained_output

        node = self.ir.model
        if not isinstance(node, ir.Linear):
            raise ConversionError(
                f"reasons are written in SQL for linear models, not a {node.kind} model; a "
                "tree ensemble's reasons are generated in C and JavaScript")
        out = explained_output(node.n_outputs)
        if out is None:
            raise ConversionError(
                "a model with more than two raw scores explains each row's predicted class, "
                "which SQL reasons do not choose: explain it in Python, HTTP or batch")
        source = {s.name: s.source for s in self.ir.steps}
        per_column: dict[str, list[str]] = {n: [] for n in self.ir.signature.names}
        for f, coef, mean in zip(node.features, node.coef[out], means, strict=True):
            column = f
            while column in source:
                column = source[column]
            per_column[column].append(f"{self.num(coef)} * ({self.expr[f]} - "
                                      f"{self.num(mean)})")
        return [balanced_sum(terms) if terms else self.num(0.0)
                for terms in per_column.values()]

    def ranks(self, terms: list[str]) -> list[str]:
        """Each term's place (0 first) when ranked by size, largest first, equal sizes in
        the order given: the number of terms that come before it."""
        size = [f"ABS({t})" for t in terms]
        out = []
        for i in range(len(terms)):
            before = [f"(CASE WHEN {size[j]} {'>=' if j < i else '>'} {size[i]} THEN 1 "
                      "ELSE 0 END)" for j in range(len(terms)) if j != i]
            out.append(balanced_sum(before) if before else "0")
        return out

    def ranked(self, terms: list[str], k: int, names: list[str]) -> list[tuple[str, str]]:
        """``reason_j`` and ``contribution_j`` for ``j`` in ``1..k`` over ``terms``."""
        ranks = self.ranks(terms)
        out = []
        for j in range(k):
            reason = " ".join(f"WHEN {r} = {j} THEN {self.text(n, 'column name')}"
                              for r, n in zip(ranks, names, strict=True))
            value = " ".join(f"WHEN {r} = {j} THEN {t}" for r, t in zip(ranks, terms,
                                                                          strict=True))
            out += [(f"reason_{j + 1}", self.null_guard(terms, f"CASE {reason} END")),
                    (f"contribution_{j + 1}", self.null_guard(terms, f"CASE {value} END"))]
        return out

    def null_guard(self, terms: list[str], expr: str) -> str:
        """``expr``, or NULL when a term is NULL (a missing value reaching arithmetic: the
        score is NULL too), where a term can be."""
        if not self.may_be_null():
            return expr
        return f"(CASE WHEN ({balanced_sum(list(terms))}) IS NULL THEN NULL ELSE {expr} END)"

    # --- output ---------------------------------------------------------------------------

    def expression(self) -> str:
        out = self.ir.output
        assert out is not None  # set by every front end
        raw = self.raw()
        kind = result_kind(self.ir)
        if kind == "value":
            if out.transform == "exp":
                # below -700 the result is under 1e-304 (PostgreSQL refuses an underflow)
                return f"EXP({self.clamp(raw[0], -_EXP_LIMIT, _EXP_LIMIT)})"
            return raw[0]
        if kind == "cluster":
            return self.argbest(raw, list(range(len(raw))), "<=")
        if kind == "probability":
            t = out.transform
            if t == "logistic":
                z = raw[0]
            elif t in ("softmax", "ovr_logistic"):
                if t == "ovr_logistic":
                    raise ConversionError("one-vs-rest probabilities of two classes do not "
                                          "compile to SQL")
                z = f"({raw[1]}) - ({raw[0]})"
            elif t == "probability":
                return raw[1]
            else:
                raise ConversionError(f"no SQL for transform {t!r}")
            one = self.num(1.0)
            return f"{one} / ({one} + EXP(-{self.clamp(z, -_EXP_LIMIT, _EXP_LIMIT)}))"
        assert out.classes is not None  # a classifier's
        if out.transform == "margin" and len(raw) == 1:
            return (f"CASE WHEN {raw[0]} > {self.num(0.0)} THEN {self.label(out.classes[1])} "
                    f"ELSE {self.label(out.classes[0])} END")
        return self.argbest(raw, out.classes, ">=")

    def argbest(self, raw: list[str], labels: list, op: str) -> str:
        """The label of the first largest (``>=``) or smallest (``<=``) raw score."""
        # NumPy's argmax and argmin pick the first NaN: so does the SQL, for NULL scores
        whens = ([f"WHEN ({r}) IS NULL THEN {self.label(lab)}" for r, lab in zip(raw, labels,
                                                                               strict=True)]
                 if self.may_be_null() else [])
        for k in range(len(raw) - 1):
            cond = " AND ".join(f"({raw[k]}) {op} ({raw[m]})" for m in range(k + 1, len(raw)))
            whens.append(f"WHEN {cond} THEN {self.label(labels[k])}")
        return f"CASE {' '.join(whens)} ELSE {self.label(labels[-1])} END"


def _variable_stem(inputs: set[str], stem: str = "mp_f") -> str:
    """A prefix for variables (``stem`` and digits) that no input (a function parameter)
    can be mistaken for, case-insensitively as MariaDB compares names."""
    taken = {n.lower() for n in inputs}
    while any(t.startswith(stem) and t[len(stem):].isdigit() for t in taken):
        stem += "_"
    return stem


def balanced_sum(terms: list[str]) -> str:
    """``a + b + ...`` parenthesised as a balanced tree, so it nests ~log2(n) deep."""
    if len(terms) == 1:
        return terms[0]
    mid = len(terms) // 2
    return f"({balanced_sum(terms[:mid])} + {balanced_sum(terms[mid:])})"

"""A ModelIR as one C99 source file needing only ``<math.h>`` and ``<string.h>``.

C has no dictionaries, so the row comes as two arrays in signature order: ``num`` holds the
numeric inputs (``NAN`` for missing) and ``cat`` the categorical ones (``NULL`` for
missing). ``<name>_score(num, cat, out)`` writes ``<NAME>_N_OUTPUTS`` numbers to ``out``.
"""

from __future__ import annotations

import re
from typing import Any

from modelport.compile import ir
from modelport.compile.codegen import treeshap
from modelport.compile.codegen.lowering import Lowering, shown, shown_names, usage_returns
from modelport.quoting.code import comment, symbol_name


class CLowering(Lowering):
    language = "c"
    true_literal = "1"
    false_literal = "0"
    #: the numeric and the categorical input names, in the order score takes them
    numeric: list[str]
    categorical: list[str]

    def __init__(self, model_ir: ir.ModelIR) -> None:
        super().__init__(model_ir)
        self.returns = one_value_leaves(model_ir.model)

    def isnan(self, x: str) -> str:
        return f"isnan({x})"

    def is_null(self, s: str) -> str:
        return f"{s} == NULL"

    def str_eq(self, s: str, literal: str) -> str:
        return f"({s} != NULL && strcmp({s}, {literal}) == 0)"

    def exp(self, x: str) -> str:
        return f"exp({x})"

    def sqrt(self, x: str) -> str:
        return f"sqrt({x})"

    def declare_num(self, var: str, expr: str) -> str:
        return f"double {var} = {expr};"

    def declare_str(self, var: str, expr: str) -> str:
        return f"const char *{var} = {expr};"

    def equals(self, x: str, c: Any, kind: str) -> str:
        # a C string ends at its first NUL, so no input equals a category holding one
        if kind == "categorical" and "\0" in str(c):
            return self.false_literal
        return super().equals(x, c, kind)

    def read_num(self, i: int, name: str) -> str:
        return f"num[{self.numeric.index(name)}]"

    def read_str(self, i: int, name: str) -> str:
        return f"cat[{self.categorical.index(name)}]"

    def no_op(self) -> str:
        return "return 0.0;" if self.returns else ";"

    def missing_or(self, x: str, op: str, t: str) -> str:
        # a comparison with NaN is false, so "not above" is "NaN or at most" in one
        # comparison and one branch, where isnan() || x <= t takes two
        return f"!({x} {_NEGATED[op]} {t})"

    #: whether each tree function returns its leaf's value (every leaf of the ensemble
    #: holds one number) rather than adding to ``raw``: the sum stays in a register and
    #: a tree's last call is a jump, about a tenth faster over 300 trees
    returns: bool

    def add_raw(self, k: int, expr: str) -> str:
        return f"return {expr};" if self.returns else super().add_raw(k, expr)

    def call_tree(self, fn: str) -> str:
        return f"return {fn}(x);" if self.returns else super().call_tree(fn)

    def tree_call(self, fn: str, tree: ir.Tree) -> str:
        return f"raw[{tree.output}] += {fn}(x);" if self.returns else super().call_tree(fn)

    def tree_signature(self, fn: str) -> str:
        """The C declarator of tree function ``fn`` (already given its prefix)."""
        if self.returns:
            return f"static double {fn}(const double *x)"
        return f"static void {fn}(const double *x, double *raw)"


def one_value_leaves(node: object) -> bool:
    """Whether ``node`` is a tree ensemble every leaf of which holds one number."""
    return isinstance(node, ir.TreeEnsemble) and all(
        len(v) == 1 for tree in node.trees for v in tree.value)


#: a split's comparison, and the one that is false exactly when it holds or x is NaN
_NEGATED = {"<=": ">", "<": ">="}


_DOC = """The model {name}, compiled to C by modelport (C99; link with -lm).
void {sym}_score(const double *num, const char *const *cat, double *out):
  num: the numeric inputs in this order (NAN for missing): {numeric}
  cat: the categorical inputs in this order (NULL for missing): {categorical}
  out: {up}_N_OUTPUTS doubles receiving {returns}."""


def generate(model_ir: ir.ModelIR, name: str = "model", explain: bool = False) -> str:
    """C source defining ``void <name>_score(const double *num, const char *const *cat, double *out)``.

    With ``explain`` (tree ensembles with covers) the source goes on to define the reason
    codes of :func:`explain_lines`; the part before them is the source without ``explain``.
    """
    if explain:
        treeshap.check(model_ir, "c")
    lo = CLowering(model_ir)
    lo.numeric = model_ir.signature.numeric
    lo.categorical = model_ir.signature.categorical
    sym = symbol_name(name)
    pre = lo.preprocessing()
    model = lo.model()
    result, kind = lo.result()
    n_raw = max(model_ir.model.n_outputs, 1)
    ind = "    "
    tables = {"numeric": f"{sym}_numeric_inputs", "categorical": f"{sym}_categorical_inputs"}
    out = [
        comment("c", _DOC.format(name=shown(name), sym=sym, up=sym.upper(),
                                 numeric=shown_names(lo.numeric, tables["numeric"]),
                                 categorical=shown_names(lo.categorical,
                                                         tables["categorical"]),
                                 returns=usage_returns(model_ir))),
        "#include <math.h>",
        "#include <stddef.h>",
        "#include <string.h>",
        "",
        f"#define {sym.upper()}_N_OUTPUTS {lo.n_out()}",
        "",
    ]
    for group, names in (("numeric", lo.numeric), ("categorical", lo.categorical)):
        out += [f"// the {group} inputs' names in the order score takes them (NULL ends the "
                "list), each beside the variable it is read into",
                f"const char *const {tables[group]}[] = {{",
                *[ind + line for line in lo.table_entries(names)], ind + "NULL", "};", ""]
    out += function_lines(lo, sym)
    out.append(f"void {sym}_score(const double *num, const char *const *cat, double *out) {{")
    out.append(ind + "(void) num; (void) cat;")
    out += [ind + line for line in pre]
    feats = lo.features()
    out.append(ind + f"double x[{max(len(feats), 1)}] = {{{', '.join(feats) or '0.0'}}};")
    out.append(ind + f"double raw[{n_raw}] = {{0.0}};")
    out.append(ind + "(void) x;")
    out += [ind + _prefix_calls(line, sym) for line in model]
    out += [ind + line for line in result]
    if kind == "value":
        out.append(ind + "out[0] = raw[0];")
    out.append("}")
    if explain:
        out += explain_lines(lo, sym, pre, model)
    return "\n".join(out) + "\n"


def function_lines(lo: CLowering, sym: str) -> list[str]:
    """The lowering's functions (the trees) as static C functions named ``<sym>_<fn>``:
    their prototypes, then their bodies."""
    out = [lo.tree_signature(f"{sym}_{fn}") + ";" for fn, _ in lo.functions]
    out.append("")
    for fn, body in lo.functions:
        out.append(lo.tree_signature(f"{sym}_{fn}") + " {")
        out += ["    " + _prefix_calls(line, sym) for line in body]
        out.append("}\n")
    return out


#: a call of a tree function, as the lowering writes it (``tree3(x, raw);``,
#: ``raw[0] += tree3(x);``, ``return tree3_17(x);``)
_TREE_CALL = re.compile(r"(?<![\w])(tree\d+(?:_\d+)*)\(x\b")


def _prefix_calls(line: str, sym: str) -> str:
    return _TREE_CALL.sub(lambda m: f"{sym}_{m.group(1)}(x", line)


_EXPLAIN_DOC = """\
Reason codes: each input column's contribution to each raw score, by path-dependent
TreeSHAP. A row has {up}_N_RAW raw scores (the scores before {sym}_score turns them into
its outputs); {sym}_base holds the raw scores every row starts from, and raw score r of a
row is {sym}_base[r] plus the sum of the row's contributions to r.
void {sym}_explain(const double *num, const char *const *cat, double *contrib):
  num, cat: the inputs, as {sym}_score takes them.
  contrib: {up}_N_INPUTS * {up}_N_RAW doubles receiving the contributions:
  contrib[c * {up}_N_RAW + r] is input column c's ({sym}_inputs[c]) to raw score r.
int {sym}_reasons(const double *num, const char *const *cat, int k, int *column,
{pad}double *contribution):
  the k input columns (at most {up}_N_INPUTS) that moved the explained raw score most,
  largest magnitude first, equal magnitudes in {sym}_inputs order: column[i] is the
  column's index in {sym}_inputs, contribution[i] its contribution. Returns the raw score
  explained: {which}.
Neither allocates memory: a call takes about {kb} KB of stack (the deepest tree has
{depth} splits)."""

# the algorithm, with @sym@ and @SYM@ standing for the model's symbol; sizes are literal
_EXPLAIN_CODE = """
// one step of the path from a tree's root to the node being visited: a feature the path
// splits on, the share of training weight (zero) and of this row (one: 0 or 1) that follows
// the path's splits on it, and, for the subsets of the path's features of this step's
// position in size, their Shapley weight
struct @sym@_step {
    int feature;
    double zero, one, weight;
};

// add a step to a path of n steps: each subset either leaves the new feature out (the
// training weight's share, zero) or takes it in (the row's, one)
static void @sym@_extend(struct @sym@_step *path, int n, int feature, double zero,
                         double one) {
    path[n].feature = feature;
    path[n].zero = zero;
    path[n].one = one;
    path[n].weight = n == 0 ? 1.0 : 0.0;
    for (int i = n - 1; i >= 0; i--) {
        path[i + 1].weight += one * path[i].weight * (i + 1) / (n + 1);
        path[i].weight = zero * path[i].weight * (n - i) / (n + 1);
    }
}

// the summed weights of the path of n steps as it would be without step i: extending
// undone, the path left as it is
static double @sym@_unwound(const struct @sym@_step *path, int n, int i) {
    double one = path[i].one, zero = path[i].zero;
    double carry = path[n - 1].weight, total = 0.0;
    for (int j = n - 2; j >= 0; j--) {
        if (one != 0.0) {
            double w = carry * n / ((j + 1) * one);
            total += w;
            carry = path[j].weight - w * zero * (n - 1 - j) / n;
        } else {
            total += path[j].weight * n / (zero * (n - 1 - j));
        }
    }
    return total;
}

// take step i out of a path of n steps (n - 1 remain)
static void @sym@_unwind(struct @sym@_step *path, int n, int i) {
    double one = path[i].one, zero = path[i].zero, carry = path[n - 1].weight;
    for (int j = n - 2; j >= 0; j--) {
        if (one != 0.0) {
            double w = path[j].weight;
            path[j].weight = carry * n / ((j + 1) * one);
            carry = w - path[j].weight * zero * (n - 1 - j) / n;
        } else {
            path[j].weight = path[j].weight * n / (zero * (n - 1 - j));
        }
    }
    for (int j = i; j < n - 1; j++) {
        path[j].feature = path[j + 1].feature;
        path[j].zero = path[j + 1].zero;
        path[j].one = path[j + 1].one;
    }
}

// the subtree of tree t under node, reached by a path of n steps held at parent and then a
// split on feature with shares zero and one: its leaves' values added to phi (feature major)
static void @sym@_visit(const double *x, int t, int node, struct @sym@_step *parent, int n,
                        int feature, double zero, double one, double *phi) {
    // a side neither training weight nor the row reached adds nothing, and unwinding its
    // step would divide by zero
    if (zero == 0.0 && one == 0.0) return;
    // this node's path is a copy, after its parent's, so the parent's stays for the other side
    struct @sym@_step *path = parent + n;
    for (int i = 0; i < n; i++) path[i] = parent[i];
    @sym@_extend(path, n, feature, zero, one);
    n++;
    int f = @sym@_node_feature[node];
    if (f < 0) {
        const double *value = @sym@_leaf_value + @sym@_node_value[node];
        for (int i = 1; i < n; i++) {
            double share = @sym@_unwound(path, n, i) * (path[i].one - path[i].zero);
            double *into = phi + path[i].feature * @SYM@_N_RAW + @sym@_tree_output[t];
            for (int k = 0; k < @sym@_tree_width[t]; k++) into[k] += share * value[k];
        }
        return;
    }
    int hot = @sym@_node_left[node], cold = @sym@_node_right[node];
    if (!@sym@_tree_left[t](x, node - @sym@_tree_root[t])) {
        hot = @sym@_node_right[node];
        cold = @sym@_node_left[node];
    }
    // a feature the path split on before leaves it, to come back with both splits' shares
    double zero_before = 1.0, one_before = 1.0;
    for (int i = 1; i < n; i++) {
        if (path[i].feature == f) {
            zero_before = path[i].zero;
            one_before = path[i].one;
            @sym@_unwind(path, n, i);
            n--;
            break;
        }
    }
    double cover = @sym@_node_cover[node];
    @sym@_visit(x, t, hot, path, n, f, zero_before * (@sym@_node_cover[hot] / cover),
                one_before, phi);
    @sym@_visit(x, t, cold, path, n, f, zero_before * (@sym@_node_cover[cold] / cover),
                0.0, phi);
}

// every input column's contribution to every raw score (column major) for features x
static void @sym@_contributions(const double *x, double *contrib) {
    double phi[@phi@];
    struct @sym@_step path[@slots@];
    for (int i = 0; i < @phi@; i++) phi[i] = 0.0;
    for (int t = 0; t < @trees@; t++)
        @sym@_visit(x, t, @sym@_tree_root[t], path, 0, -1, 1.0, 1.0, phi);
    for (int i = 0; i < @SYM@_N_INPUTS * @SYM@_N_RAW; i++) contrib[i] = 0.0;
    for (int j = 0; j < @n_features@; j++)
        for (int r = 0; r < @SYM@_N_RAW; r++)
            contrib[@sym@_feature_column[j] * @SYM@_N_RAW + r] += phi[j * @SYM@_N_RAW + r];
}

void @sym@_explain(const double *num, const char *const *cat, double *contrib) {
    double x[@features@];
    @sym@_features(num, cat, x);
    @sym@_contributions(x, contrib);
}

int @sym@_reasons(const double *num, const char *const *cat, int k, int *column,
                  double *contribution) {
    double x[@features@];
    double contrib[@SYM@_N_INPUTS * @SYM@_N_RAW];
    unsigned char taken[@SYM@_N_INPUTS] = {0};
    @sym@_features(num, cat, x);
    @sym@_contributions(x, contrib);
@pick@
    if (k > @SYM@_N_INPUTS) k = @SYM@_N_INPUTS;
    for (int s = 0; s < k; s++) {
        // the largest magnitude left; on equals the first in signature order, NaN last
        int pick = -1;
        double most = 0.0;
        for (int c = 0; c < @SYM@_N_INPUTS; c++) {
            double m = fabs(contrib[c * @SYM@_N_RAW + r]);
            if (taken[c]) continue;
            if (pick < 0 || m > most || (isnan(most) && !isnan(m))) {
                pick = c;
                most = m;
            }
        }
        taken[pick] = 1;
        column[s] = pick;
        contribution[s] = contrib[pick * @SYM@_N_RAW + r];
    }
    return r;
}
"""


#: how reasons picks the raw score it explains, by the number of raw scores
_PICK = {
    1: "    // the raw score explained: the only one\n    int r = 0;",
    2: "    // the raw score explained: the second of two, the second class's\n    int r = 1;",
}
_PICK_LARGEST = """\
    // the raw score explained: the largest, as score computes the raw scores (the
    // predicted class; the first of equals, and a NaN before any number, as NumPy's argmax)
    double raw[@SYM@_N_RAW] = {0.0};
    int r = 0;
    @sym@_raw(x, raw);
    for (int q = 1; q < @SYM@_N_RAW; q++) {
        if (!isnan(raw[r]) && (raw[q] > raw[r] || isnan(raw[q]))) r = q;
    }"""


def explain_lines(lo: CLowering, sym: str, pre: list[str], model: list[str]) -> list[str]:
    """The reason codes of a tree ensemble with covers (see :mod:`.treeshap`): names table,
    base values, node tables, one goes-left test per tree taken from ``score``'s own
    splits, the features computed by ``score``'s own preprocessing lines ``pre``, and
    ``<sym>_explain`` and ``<sym>_reasons`` (:data:`_EXPLAIN_DOC`); with several raw
    scores, which one is the predicted class is computed by ``score``'s own ``model``
    lines."""
    model_ir = lo.ir
    node = model_ir.model
    tables = treeshap.tables(model_ir)
    up, ind = sym.upper(), "    "
    names = model_ir.signature.names
    doc = _EXPLAIN_DOC.format(sym=sym, up=up, pad=" " * len(f"int {sym}_reasons("),
                              which=treeshap.explained_raw(tables.n_raw), depth=tables.depth,
                              kb=-(-treeshap.stack_bytes(tables) // 1024))
    out = ["", comment("c", doc),
        f"#define {up}_N_INPUTS {tables.n_inputs}",
        f"#define {up}_N_RAW {tables.n_raw}",
        "",
        "// the input columns' names in signature order, the order reasons index them (NULL",
        "// ends the list), each beside the variable it is read into",
        f"const char *const {sym}_inputs[] = {{",
        *[ind + line for line in lo.table_entries(names)], ind + "NULL", "};",
        "",
        f"const double {sym}_base[{up}_N_RAW] = {{"
        f"{', '.join(lo.num(b) for b in tables.base)}}};",
        ""]

    def table(ctype: str, what: str, values: list, comment_line: str) -> None:
        items = [lo.num(v) if ctype == "double" else str(v) for v in values] or ["0"]
        out.extend([comment("c", comment_line),
                    f"static const {ctype} {sym}_{what}[{len(items)}] = {{",
                    *[ind + line for line in treeshap.wrapped(items)], "};"])

    table("int", "tree_root", tables.tree_root, "each tree's root node")
    table("int", "tree_output", tables.tree_output,
          "the first raw score each tree's leaves add to")
    table("int", "tree_width", tables.tree_width, "how many raw scores they add to")
    table("int", "node_feature", tables.node_feature,
          "the nodes of all trees: the model feature each splits on (-1 at a leaf)")
    table("int", "node_left", tables.node_left, "the node a row going left reaches")
    table("int", "node_right", tables.node_right, "the node a row going right reaches")
    table("double", "node_cover", tables.node_cover, "the training weight that reached each")
    table("int", "node_value", tables.node_value,
          "where each leaf's values start in the leaf values (-1 at a split)")
    table("double", "leaf_value", tables.leaf_value,
          "the leaf values, divided by the number of trees where the ensemble averages")
    table("int", "feature_column", tables.feature_column,
          "the input column each model feature was made from")
    out.append("")
    # each split's test as score writes it, so both always take the same path
    lefts = []
    for t, tree in enumerate(node.trees):
        fn = f"{sym}_tree{t}_left"
        lefts.append(fn)
        out += [f"static int {fn}(const double *x, int node) {{", ind + "(void) x;",
                ind + "switch (node) {"]
        for i, test in treeshap.goes_left_tests(lo, node, tree):
            out.append(f"{ind}case {i}: return {test};")
        out += [ind + "}", ind + "return 0;", "}", ""]
    out += ["// whether a row goes left at a node of each tree",
            f"static int (*const {sym}_tree_left[{max(len(lefts), 1)}])"
            "(const double *, int) = {",
            *[ind + line for line in treeshap.wrapped(lefts or ["NULL"], 4)], "};", ""]
    out += ["// the model features of a row, computed as score computes them",
            f"static void {sym}_features(const double *num, const char *const *cat, "
            "double *x) {", ind + "(void) num; (void) cat;", *[ind + line for line in pre]]
    out += [f"{ind}x[{j}] = {v};" for j, v in enumerate(lo.features())]
    out += ["}", ""]
    if tables.n_raw > 2:
        out += ["// the raw scores of a row's features, computed as score computes them",
                f"static void {sym}_raw(const double *x, double *raw) {{",
                *[ind + _prefix_calls(line, sym) for line in model], "}", ""]
    n_features = max(tables.n_features, 1)
    code = _EXPLAIN_CODE.replace("@pick@", _PICK.get(tables.n_raw, _PICK_LARGEST))
    for key, value in (("@features@", n_features), ("@phi@", n_features * tables.n_raw),
                       ("@slots@", tables.path_slots), ("@trees@", len(node.trees)),
                       ("@n_features@", tables.n_features), ("@SYM@", up), ("@sym@", sym)):
        code = code.replace(key, str(value))
    out += code.strip("\n").split("\n")
    return out

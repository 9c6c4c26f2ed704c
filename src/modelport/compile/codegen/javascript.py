"""A ModelIR as an ES module with no imports: ``export function score(row)``."""

from __future__ import annotations

import textwrap

from modelport.compile import ir
from modelport.compile.codegen import treeshap
from modelport.compile.codegen.lowering import Lowering, shown, shown_names, usage_returns
from modelport.quoting.code import comment


class JavaScriptLowering(Lowering):
    language = "javascript"
    indent_unit = "  "
    nan_literal = "NaN"
    inf_literal = "Infinity"

    def isnan(self, x: str) -> str:
        return f"Number.isNaN({x})"

    def is_null(self, s: str) -> str:
        return f"{s} === null"

    def str_eq(self, s: str, literal: str) -> str:
        return f"{s} === {literal}"

    def exp(self, x: str) -> str:
        return f"Math.exp({x})"

    def sqrt(self, x: str) -> str:
        return f"Math.sqrt({x})"

    def declare_num(self, var: str, expr: str) -> str:
        return f"let {var} = {expr};"

    declare_str = declare_num

    def read_num(self, i: int, name: str) -> str:
        return f"num(row[{self.key(i)}])"

    def read_str(self, i: int, name: str) -> str:
        return f"str(row[{self.key(i)}])"


_DOC = """The model {name}, compiled to JavaScript (an ES module) by modelport.
score(row) takes an object keyed by input column name ({columns}); a missing value is
null, undefined or NaN. It returns {returns}."""

_HEADER = """
function num(v) {
  if (v === null || v === undefined) return NaN;
  if (typeof v === "string") return v.trim() === "" ? NaN : Number(v);
  return Number(v);
}

function str(v) {
  if (v === null || v === undefined || (typeof v === "number" && Number.isNaN(v))) return null;
  return String(v);
}
"""


def generate(model_ir: ir.ModelIR, name: str = "model", explain: bool = False) -> str:
    """An ES module exporting ``score(row)``.

    With ``explain`` (tree ensembles with covers) the module goes on to export ``explain``
    and ``reasons`` (see :func:`explain_lines`); the part before them is the module without
    ``explain``.
    """
    if explain:
        treeshap.check(model_ir, "javascript")
    lo = JavaScriptLowering(model_ir)
    pre = lo.preprocessing()
    model = lo.model()
    result, kind = lo.result()
    ind = "  "
    names = model_ir.signature.names
    out = [comment("javascript", _DOC.format(name=shown(name),
                                             columns=shown_names(names, lo.table),
                                             returns=usage_returns(model_ir))),
           "",
           "// the input columns: score reads row[COLUMNS[i]] into the variable named beside it",
           "export const COLUMNS = Object.freeze([",
           *[ind + line for line in lo.table_entries(names)], "]);",
           _HEADER]
    for fn, body in lo.functions:
        out.append(f"function {fn}(x, raw) {{")
        out += [ind + line for line in body]
        out.append("}\n")
    out.append("export function score(row) {")
    out += [ind + line for line in pre]
    out.append(ind + f"const x = [{', '.join(lo.features())}];")
    out.append(ind + f"const raw = new Array({max(model_ir.model.n_outputs, 1)}).fill(0);")
    out += [ind + line for line in model]
    out += [ind + line for line in result]
    if kind == "value":
        out.append(ind + "return raw[0];")
    else:
        out.insert(len(out) - len(result), ind + f"const out = new Array({lo.n_out()}).fill(0);")
        out.append(ind + "return out;")
    out.append("}")
    if explain:
        out += explain_lines(lo, pre, model)
    return "\n".join(out) + "\n"


#: the usage note of the reason codes, one paragraph per item (wrapped when written)
_EXPLAIN_DOC = (
    "Reason codes: each input column's contribution to each raw score (the {raw} score "
    "turns into its outputs), by path-dependent TreeSHAP. Raw score r of a row is base[r] "
    "plus the sum of the row's contributions to r.",
    "explain(row) returns {{base, contributions}}: base, an array of the {raw} every row "
    "starts from; contributions, an object keyed by input column name (as in COLUMNS) "
    "whose values are {shape}.",
    "reasons(row, k) returns the k input columns (at most COLUMNS.length) that moved the "
    "explained raw score most, largest magnitude first, equal magnitudes in COLUMNS order, "
    "as an array of {{column, value, contribution{output_key}}}: value is the row's input "
    "value as score reads it (null when missing){output_doc}. The raw score explained is "
    "{which}.",
)

# the algorithm; the tables it reads are written before it
_EXPLAIN_CODE = """
// a path from a tree's root, one step per slot from some offset on: a feature the path
// splits on, the share of training weight (zero) and of this row (one: 0 or 1) that follows
// the path's splits on it, and, for the subsets of the path's features of the step's
// position in size, their Shapley weight
function newPath() {
  return { feature: new Int32Array(PATH_SLOTS), zero: new Float64Array(PATH_SLOTS),
           one: new Float64Array(PATH_SLOTS), weight: new Float64Array(PATH_SLOTS) };
}

// add a step to the path of n steps at offset at: each subset either leaves the new
// feature out (the training weight's share, zero) or takes it in (the row's, one)
function extend(p, at, n, feature, zero, one) {
  const w = p.weight;
  p.feature[at + n] = feature;
  p.zero[at + n] = zero;
  p.one[at + n] = one;
  w[at + n] = n === 0 ? 1 : 0;
  for (let i = n - 1; i >= 0; i--) {
    w[at + i + 1] += one * w[at + i] * (i + 1) / (n + 1);
    w[at + i] = zero * w[at + i] * (n - i) / (n + 1);
  }
}

// the summed weights of the path as it would be without step i: extending undone, the
// path left as it is
function unwound(p, at, n, i) {
  const one = p.one[at + i], zero = p.zero[at + i], w = p.weight;
  let carry = w[at + n - 1], total = 0;
  for (let j = n - 2; j >= 0; j--) {
    if (one !== 0) {
      const part = carry * n / ((j + 1) * one);
      total += part;
      carry = w[at + j] - part * zero * (n - 1 - j) / n;
    } else {
      total += w[at + j] * n / (zero * (n - 1 - j));
    }
  }
  return total;
}

// take step i out of the path of n steps (n - 1 remain)
function unwind(p, at, n, i) {
  const one = p.one[at + i], zero = p.zero[at + i], w = p.weight;
  let carry = w[at + n - 1];
  for (let j = n - 2; j >= 0; j--) {
    if (one !== 0) {
      const before = w[at + j];
      w[at + j] = carry * n / ((j + 1) * one);
      carry = before - w[at + j] * zero * (n - 1 - j) / n;
    } else {
      w[at + j] = w[at + j] * n / (zero * (n - 1 - j));
    }
  }
  for (const part of [p.feature, p.zero, p.one]) part.copyWithin(at + i, at + i + 1, at + n);
}

// the subtree of tree t under node, reached by the path of n steps at offset parent and
// then a split on feature with shares zero and one: its leaves' values added to phi
// (feature major)
function visit(x, t, node, p, parent, n, feature, zero, one, phi) {
  // a side neither training weight nor the row reached adds nothing, and unwinding its
  // step would divide by zero
  if (zero === 0 && one === 0) return;
  // this node's path is a copy, after its parent's, so the parent's stays for the other side
  const at = parent + n;
  for (const part of [p.feature, p.zero, p.one, p.weight]) part.copyWithin(at, parent, at);
  extend(p, at, n, feature, zero, one);
  n++;
  const f = NODE_FEATURE[node];
  if (f < 0) {
    const value = NODE_VALUE[node], output = TREE_OUTPUT[t], width = TREE_WIDTH[t];
    for (let i = 1; i < n; i++) {
      const share = unwound(p, at, n, i) * (p.one[at + i] - p.zero[at + i]);
      const into = p.feature[at + i] * N_RAW + output;
      for (let k = 0; k < width; k++) phi[into + k] += share * LEAF_VALUE[value + k];
    }
    return;
  }
  const left = TREE_LEFT[t](x, node - TREE_ROOT[t]);
  const hot = left ? NODE_LEFT[node] : NODE_RIGHT[node];
  const cold = left ? NODE_RIGHT[node] : NODE_LEFT[node];
  // a feature the path split on before leaves it, to come back with both splits' shares
  let zeroBefore = 1, oneBefore = 1;
  for (let i = 1; i < n; i++) {
    if (p.feature[at + i] === f) {
      zeroBefore = p.zero[at + i];
      oneBefore = p.one[at + i];
      unwind(p, at, n, i);
      n--;
      break;
    }
  }
  const cover = NODE_COVER[node];
  visit(x, t, hot, p, at, n, f, zeroBefore * (NODE_COVER[hot] / cover), oneBefore, phi);
  visit(x, t, cold, p, at, n, f, zeroBefore * (NODE_COVER[cold] / cover), 0, phi);
}

// every input column's contribution to every raw score (column major) for features x
function contributionsOf(x) {
  const p = newPath(), phi = new Float64Array(Math.max(FEATURE_COLUMN.length, 1) * N_RAW);
  for (let t = 0; t < TREE_ROOT.length; t++) visit(x, t, TREE_ROOT[t], p, 0, 0, -1, 1, 1, phi);
  const contrib = new Float64Array(COLUMNS.length * N_RAW);
  for (let j = 0; j < FEATURE_COLUMN.length; j++) {
    for (let r = 0; r < N_RAW; r++) contrib[FEATURE_COLUMN[j] * N_RAW + r] += phi[j * N_RAW + r];
  }
  return contrib;
}

export function explain(row) {
  const contrib = contributionsOf(features(row)), contributions = {};
  COLUMNS.forEach((name, c) => {
    const value = N_RAW === 1 ? contrib[c]
      : Array.from(contrib.subarray(c * N_RAW, (c + 1) * N_RAW));
    // defined, not assigned: a column named __proto__ is a key like any other
    Object.defineProperty(contributions, name, { value, enumerable: true, writable: true,
                                                 configurable: true });
  });
  return { base: BASE.slice(), contributions };
}

export function reasons(row, k) {
  const x = features(row), contrib = contributionsOf(x), n = COLUMNS.length;
@pick@
  const taken = new Uint8Array(n), out = [];
  for (let s = 0; s < k && s < n; s++) {
    // the largest magnitude left; on equals the first in COLUMNS order, NaN last
    let pick = -1, most = 0;
    for (let c = 0; c < n; c++) {
      const m = Math.abs(contrib[c * N_RAW + r]);
      if (taken[c]) continue;
      if (pick < 0 || m > most || (Number.isNaN(most) && !Number.isNaN(m))) {
        pick = c;
        most = m;
      }
    }
    taken[pick] = 1;
    const given = row[COLUMNS[pick]];
    let value = NUMERIC_INPUT[pick] ? num(given) : str(given);
    if (Number.isNaN(value)) value = null;
    const reason = { column: COLUMNS[pick], value, contribution: contrib[pick * N_RAW + r] };
    if (N_RAW > 1) reason.output = OUTPUTS[r];
    out.push(reason);
  }
  return out;
}
"""


_PICK = {
    1: "  // the raw score explained: the only one\n  const r = 0;",
    2: "  // the raw score explained: the second of two, the second class's\n  const r = 1;",
}
_PICK_LARGEST = """\
  // the raw score explained: the largest, as score computes the raw scores (the predicted
  // class; the first of equals, and a NaN before any number, as NumPy's argmax)
  const raw = rawOf(x);
  let r = 0;
  for (let q = 1; q < N_RAW; q++) {
    if (!Number.isNaN(raw[r]) && (raw[q] > raw[r] || Number.isNaN(raw[q]))) r = q;
  }"""


def explain_lines(lo: JavaScriptLowering, pre: list[str], model: list[str]) -> list[str]:
    """The reason codes of a tree ensemble with covers (see :mod:`.treeshap`): base
    values, node tables, one goes-left test per tree taken from ``score``'s own splits,
    the features computed by ``score``'s own preprocessing lines ``pre``, and the exported
    ``explain(row)`` and ``reasons(row, k)`` (:data:`_EXPLAIN_DOC`); with several raw
    scores, which one is the predicted class is computed by ``score``'s own ``model``
    lines."""
    model_ir = lo.ir
    node = model_ir.model
    tables = treeshap.tables(model_ir)
    ind = "  "
    several = tables.n_raw > 1
    doc = "\n".join(textwrap.fill(paragraph.format(
        raw="one raw score" if tables.n_raw == 1 else f"{tables.n_raw} raw scores",
        which=treeshap.explained_raw(tables.n_raw),
        shape=("arrays of one number per raw score" if several else "numbers"),
        output_key=", output" if several else "",
        output_doc=("; output names the raw score explained: the class label when there "
                    "is one raw score per class, else its index") if several else ""), 88)
                     for paragraph in _EXPLAIN_DOC)
    out = ["", comment("javascript", doc), ""]

    def table(what: str, values: list, note: str, ints: bool = True) -> None:
        items = [str(v) if ints else lo.num(v) for v in values]
        out.extend([comment("javascript", note), f"const {what} = Object.freeze([",
                    *[ind + line for line in treeshap.wrapped(items)], "]);"])

    out += [f"const N_RAW = {tables.n_raw};",
            f"const PATH_SLOTS = {tables.path_slots};"]
    table("BASE", tables.base, "the raw scores every row starts from", ints=False)
    table("NUMERIC_INPUT", ["true" if c.kind == "numeric" else "false"
                            for c in model_ir.signature.inputs],
          "whether each input column is read as a number (else as text)")
    if several:
        out += [comment("javascript", "what each raw score is named by in reasons"),
                "const OUTPUTS = Object.freeze([",
                *[ind + line for line in treeshap.wrapped(
                    [_label(lo, c) for c in treeshap.output_labels(model_ir)])], "]);"]
    table("TREE_ROOT", tables.tree_root, "each tree's root node")
    table("TREE_OUTPUT", tables.tree_output, "the first raw score each tree's leaves add to")
    table("TREE_WIDTH", tables.tree_width, "how many raw scores they add to")
    table("NODE_FEATURE", tables.node_feature,
          "the nodes of all trees: the model feature each splits on (-1 at a leaf)")
    table("NODE_LEFT", tables.node_left, "the node a row going left reaches")
    table("NODE_RIGHT", tables.node_right, "the node a row going right reaches")
    table("NODE_COVER", tables.node_cover, "the training weight that reached each", ints=False)
    table("NODE_VALUE", tables.node_value,
          "where each leaf's values start in LEAF_VALUE (-1 at a split)")
    table("LEAF_VALUE", tables.leaf_value,
          "the leaf values, divided by the number of trees where the ensemble averages",
          ints=False)
    table("FEATURE_COLUMN", tables.feature_column,
          "the input column each model feature was made from")
    out.append("")
    # each split's test as score writes it, so both always take the same path
    lefts = []
    for t, tree in enumerate(node.trees):
        fn = f"tree{t}_left"
        lefts.append(fn)
        out += [f"function {fn}(x, node) {{", ind + "switch (node) {"]
        for i, test in treeshap.goes_left_tests(lo, node, tree):
            out.append(f"{ind * 2}case {i}: return {test};")
        out += [ind + "}", ind + "return false;", "}", ""]
    out += [comment("javascript", "whether a row goes left at a node of each tree"),
            "const TREE_LEFT = Object.freeze([",
            *[ind + line for line in treeshap.wrapped(lefts, 6)], "]);", "",
            comment("javascript", "the model features of a row, computed as score computes "
                    "them"),
            "function features(row) {", *[ind + line for line in pre],
            ind + f"return [{', '.join(lo.features())}];", "}"]
    if tables.n_raw > 2:
        out += ["", comment("javascript", "the raw scores of a row's features, computed as "
                            "score computes them"),
                "function rawOf(x) {",
                ind + f"const raw = new Array({tables.n_raw}).fill(0);",
                *[ind + line for line in model], ind + "return raw;", "}"]
    code = _EXPLAIN_CODE.replace("@pick@", _PICK.get(tables.n_raw, _PICK_LARGEST))
    out += code.rstrip("\n").split("\n")
    return out


def _label(lo: JavaScriptLowering, label: object) -> str:
    """A class label or raw-score index as a JavaScript literal."""
    if isinstance(label, bool):
        return "true" if label else "false"
    if isinstance(label, int):
        return str(label)
    if isinstance(label, float):
        return lo.num(label)
    return lo.text(label)

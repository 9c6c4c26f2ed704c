"""A ModelIR as an ES module with no imports: ``export function score(row)``."""

from __future__ import annotations

from modelport.compile import ir
from modelport.compile.codegen.lowering import Lowering, shown, shown_names, usage_returns
from modelport.quoting.code import comment


class JavaScriptLowering(Lowering):
    language = "javascript"
    indent_unit = "  "
    nan_literal = "NaN"
    inf_literal = "Infinity"

    def isnan(self, x):
        return f"Number.isNaN({x})"

    def is_null(self, s):
        return f"{s} === null"

    def str_eq(self, s, literal):
        return f"{s} === {literal}"

    def exp(self, x):
        return f"Math.exp({x})"

    def sqrt(self, x):
        return f"Math.sqrt({x})"

    def declare_num(self, var, expr):
        return f"let {var} = {expr};"

    declare_str = declare_num

    def read_num(self, i, name):
        return f"num(row[{self.key(i)}])"

    def read_str(self, i, name):
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


def generate(model_ir: ir.ModelIR, name: str = "model") -> str:
    """An ES module exporting ``score(row)``."""
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
    return "\n".join(out) + "\n"

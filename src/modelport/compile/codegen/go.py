"""A ModelIR as one Go package using only the standard library: ``func Score(row map[string]any)``.

Go exports only capitalised names, so the function is ``Score``; a missing value is ``nil``
or ``math.NaN()``. Categorical values are held as ``*string`` (``nil`` when missing).
"""

from __future__ import annotations

from modelport.compile import ir
from modelport.compile.codegen.lowering import Lowering, shown, shown_names, usage_returns
from modelport.quoting.code import comment, symbol_name


class GoLowering(Lowering):
    language = "go"
    indent_unit = "\t"
    table = "columns"
    nan_literal = "math.NaN()"
    inf_literal = "math.Inf(1)"

    def isnan(self, x: str) -> str:
        return f"math.IsNaN({x})"

    def is_null(self, s: str) -> str:
        return f"{s} == nil"

    def str_eq(self, s: str, literal: str) -> str:
        return f"({s} != nil && *{s} == {literal})"

    def exp(self, x: str) -> str:
        return f"math.Exp({x})"

    def sqrt(self, x: str) -> str:
        return f"math.Sqrt({x})"

    def declare_num(self, var: str, expr: str) -> str:
        return f"var {var} float64 = {expr}"

    def declare_str(self, var: str, expr: str) -> str:
        return f"var {var} *string = {expr}"

    def assign(self, var: str, expr: str) -> str:
        return f"{var} = {expr}"

    def assign_str(self, var: str, literal: str) -> str:
        return f"{var} = strPtr({literal})"

    def read_num(self, i: int, name: str) -> str:
        return f"num(row[{self.key(i)}])"

    def read_str(self, i: int, name: str) -> str:
        return f"str(row[{self.key(i)}])"

    def add_raw(self, k: int, expr: str) -> str:
        return f"raw[{k}] += {expr}"

    def call_tree(self, fn: str) -> str:
        return f"{fn}(x, raw)"

    def no_op(self) -> str:
        return "// nothing to add"


_DOC = """Package {pkg} is the model {name}, compiled to Go by modelport (standard
library only). Score(row) takes a map keyed by input column name
({columns});
a missing value is nil or NaN. It returns {returns}."""

_HELPERS = """
func num(v any) float64 {
	switch t := v.(type) {
	case nil:
		return math.NaN()
	case float64:
		return t
	case float32:
		return float64(t)
	case int:
		return float64(t)
	case int32:
		return float64(t)
	case int64:
		return float64(t)
	case bool:
		if t {
			return 1
		}
		return 0
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
		if err != nil {
			return math.NaN()
		}
		return f
	}
	return math.NaN()
}

func str(v any) *string {
	var s string
	switch t := v.(type) {
	case nil:
		return nil
	case string:
		s = t
	case float64:
		if math.IsNaN(t) {
			return nil
		}
		s = strconv.FormatFloat(t, 'f', -1, 64)
	default:
		s = fmt.Sprint(t)
	}
	return &s
}

func strPtr(s string) *string { return &s }
"""


def generate(model_ir: ir.ModelIR, name: str = "model") -> str:
    """A Go source file of package ``<name>`` with ``func Score(row map[string]any)``."""
    lo = GoLowering(model_ir)
    pkg = symbol_name(name)
    pre = lo.preprocessing()
    model = lo.model()
    result, kind = lo.result()
    returns = "float64" if kind == "value" else "[]float64"
    names = model_ir.signature.names
    out = [
        comment("go", _DOC.format(pkg=pkg, name=shown(name),
                                  columns=shown_names(names, lo.table),
                                  returns=usage_returns(model_ir))),
        f"package {pkg}",
        "",
        'import (\n\t"fmt"\n\t"math"\n\t"strconv"\n\t"strings"\n)',
        "",
        "// the input columns: Score reads row[columns[i]] into the variable named beside it",
        "var columns = [...]string{",
        *["\t" + line for line in lo.table_entries(names)],
        "}",
        _HELPERS,
    ]
    for fn, body in lo.functions:
        out.append(f"func {fn}(x []float64, raw []float64) {{")
        out += ["\t" + line for line in body]
        out.append("}\n")
    out.append(f"// Score scores one row.\nfunc Score(row map[string]any) {returns} {{")
    out += ["\t" + line for line in pre]
    used = [lo.var[c.name] for c in model_ir.signature.inputs] + [
        lo.var[s.name] for s in model_ir.steps]
    out.append("\t_ = []any{" + ", ".join(used) + "}")  # Go refuses unused variables
    out.append("\tx := []float64{" + ", ".join(lo.features()) + "}")
    out.append(f"\traw := make([]float64, {max(model_ir.model.n_outputs, 1)})")
    out.append("\t_ = x")
    out += ["\t" + line for line in model]
    if kind == "value":
        out += ["\t" + line for line in result]
        out.append("\treturn raw[0]")
    else:
        out.append(f"\tout := make([]float64, {lo.n_out()})")
        out += ["\t" + line for line in result]
        out.append("\treturn out")
    out.append("}")
    return "\n".join(out) + "\n"

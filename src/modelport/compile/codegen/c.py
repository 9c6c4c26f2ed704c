"""A ModelIR as one C99 source file needing only ``<math.h>`` and ``<string.h>``.

C has no dictionaries, so the row comes as two arrays in signature order: ``num`` holds the
numeric inputs (``NAN`` for missing) and ``cat`` the categorical ones (``NULL`` for
missing). ``<name>_score(num, cat, out)`` writes ``<NAME>_N_OUTPUTS`` numbers to ``out``.
"""

from __future__ import annotations

from modelport.compile import ir
from modelport.compile.codegen.lowering import Lowering, shown, shown_names, usage_returns
from modelport.quoting.code import comment, symbol_name


class CLowering(Lowering):
    language = "c"
    true_literal = "1"
    false_literal = "0"

    def isnan(self, x):
        return f"isnan({x})"

    def is_null(self, s):
        return f"{s} == NULL"

    def str_eq(self, s, literal):
        return f"({s} != NULL && strcmp({s}, {literal}) == 0)"

    def exp(self, x):
        return f"exp({x})"

    def sqrt(self, x):
        return f"sqrt({x})"

    def declare_num(self, var, expr):
        return f"double {var} = {expr};"

    def declare_str(self, var, expr):
        return f"const char *{var} = {expr};"

    def equals(self, x, c, kind):
        # a C string ends at its first NUL, so no input equals a category holding one
        if kind == "categorical" and "\0" in str(c):
            return self.false_literal
        return super().equals(x, c, kind)

    def read_num(self, i, name):
        return f"num[{self.numeric.index(name)}]"

    def read_str(self, i, name):
        return f"cat[{self.categorical.index(name)}]"

    def no_op(self):
        return ";"


_DOC = """The model {name}, compiled to C by modelport (C99; link with -lm).
void {sym}_score(const double *num, const char *const *cat, double *out):
  num: the numeric inputs in this order (NAN for missing): {numeric}
  cat: the categorical inputs in this order (NULL for missing): {categorical}
  out: {up}_N_OUTPUTS doubles receiving {returns}."""


def generate(model_ir: ir.ModelIR, name: str = "model") -> str:
    """C source defining ``void <name>_score(const double *num, const char *const *cat, double *out)``."""
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
    return "\n".join(out) + "\n"


def function_lines(lo: CLowering, sym: str) -> list[str]:
    """The lowering's functions (the trees) as static C functions named ``<sym>_<fn>``:
    their prototypes, then their bodies."""
    out = [f"static void {sym}_{fn}(const double *x, double *raw);" for fn, _ in lo.functions]
    out.append("")
    for fn, body in lo.functions:
        out.append(f"static void {sym}_{fn}(const double *x, double *raw) {{")
        out += ["    " + _prefix_calls(line, sym) for line in body]
        out.append("}\n")
    return out


def _prefix_calls(line: str, sym: str) -> str:
    stripped = line.lstrip()
    if stripped.startswith("tree") and stripped.endswith("(x, raw);"):
        return line[: len(line) - len(stripped)] + f"{sym}_{stripped}"
    return line

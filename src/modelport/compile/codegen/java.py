"""A ModelIR as one Java class with no dependencies: ``public static double[] score(Map<String, Object> row)``.

Tree functions live in nested classes of bounded size, so neither a method (64 KB of
bytecode) nor a class's constant pool (65,535 entries) outgrows the JVM's limits however
many trees the model has.
"""

from __future__ import annotations

from modelport.compile import ir
from modelport.compile.codegen.lowering import Lowering, shown, shown_names, usage_returns
from modelport.quoting.code import class_name, comment

#: tree nodes per nested class (each number costs two constant-pool entries)
NODES_PER_CLASS = 6000


class JavaLowering(Lowering):
    language = "java"
    nan_literal = "Double.NaN"
    inf_literal = "Double.POSITIVE_INFINITY"

    def isnan(self, x: str) -> str:
        return f"Double.isNaN({x})"

    def is_null(self, s: str) -> str:
        return f"{s} == null"

    def str_eq(self, s: str, literal: str) -> str:
        return f"{literal}.equals({s})"

    def exp(self, x: str) -> str:
        return f"Math.exp({x})"

    def sqrt(self, x: str) -> str:
        return f"Math.sqrt({x})"

    def declare_num(self, var: str, expr: str) -> str:
        return f"double {var} = {expr};"

    def declare_str(self, var: str, expr: str) -> str:
        return f"String {var} = {expr};"

    def read_num(self, i: int, name: str) -> str:
        return f"num(row.get({self.key(i)}))"

    def read_str(self, i: int, name: str) -> str:
        return f"str(row.get({self.key(i)}))"


_DOC = """The model {name}, compiled to Java by modelport; no dependencies.
{cls}.score(row) takes a Map<String, Object> keyed by input column name
({columns}); a missing value is null or NaN.
It returns {returns}."""


_HELPERS = """
    private static double num(Object v) {
        if (v == null) return Double.NaN;
        if (v instanceof Number) return ((Number) v).doubleValue();
        String s = v.toString().trim();
        return s.isEmpty() ? Double.NaN : Double.parseDouble(s);
    }

    private static String str(Object v) {
        if (v == null) return null;
        if (v instanceof Double || v instanceof Float) {
            double d = ((Number) v).doubleValue();
            if (Double.isNaN(d)) return null;
            if (d == Math.rint(d) && !Double.isInfinite(d)) return Long.toString((long) d);
        }
        return v.toString();
    }
"""


def generate(model_ir: ir.ModelIR, name: str = "model") -> str:
    """Java source of ``public final class <Name>`` with ``score(Map<String, Object> row)``."""
    lo = JavaLowering(model_ir)
    cls = class_name(name)
    pre = lo.preprocessing()
    model = lo.model()
    result, kind = lo.result()
    # which nested class holds each tree function
    home: dict[str, str] = {}
    groups: list[list[tuple[str, list[str]]]] = [[]]
    count = 0
    for fn, body in lo.functions:
        if count > NODES_PER_CLASS and groups[-1]:
            groups.append([])
            count = 0
        groups[-1].append((fn, body))
        home[fn] = f"T{len(groups) - 1}"
        count += len(body)
    ind = "    "
    returns = "double" if kind == "value" else "double[]"
    names = model_ir.signature.names
    out = [
        comment("java", _DOC.format(name=shown(name), cls=cls,
                                    columns=shown_names(names, lo.table),
                                    returns=usage_returns(model_ir))),
        "import java.util.Map;",
        "",
        f"public final class {cls} {{",
        f"    private {cls}() {{}}",
        "",
        "    // the input columns: score reads row.get(COLUMNS[i]) into the variable named "
        "beside it",
        "    private static final String[] COLUMNS = {",
        *[ind * 2 + line for line in lo.table_entries(names)],
        "    };",
        _HELPERS,
    ]
    for g, group in enumerate(groups):
        if not group:
            continue
        out.append(f"    static final class T{g} {{")
        for fn, body in group:
            out.append(f"        static void {fn}(double[] x, double[] raw) {{")
            out += ["            " + _qualify(line, home) for line in body]
            out.append("        }")
        out.append("    }\n")
    out.append(f"    public static {returns} score(Map<String, Object> row) {{")
    out += [ind * 2 + line for line in pre]
    out.append(ind * 2 + f"double[] x = {{{', '.join(lo.features())}}};")
    out.append(ind * 2 + f"double[] raw = new double[{max(model_ir.model.n_outputs, 1)}];")
    out += [ind * 2 + _qualify(line, home) for line in model]
    if kind == "value":
        out += [ind * 2 + line for line in result]
        out.append(ind * 2 + "return raw[0];")
    else:
        out.append(ind * 2 + f"double[] out = new double[{lo.n_out()}];")
        out += [ind * 2 + line for line in result]
        out.append(ind * 2 + "return out;")
    out += ["    }", "}"]
    return "\n".join(out) + "\n"


def _qualify(line: str, home: dict[str, str]) -> str:
    stripped = line.lstrip()
    if stripped.endswith("(x, raw);"):
        fn = stripped[: -len("(x, raw);")]
        if fn in home:
            return line[: len(line) - len(stripped)] + f"{home[fn]}.{stripped}"
    return line

"""A ModelIR as a PostgreSQL function written in C: the model's generated C
(:mod:`modelport.compile.codegen.c`) behind PostgreSQL's version-1 calling convention.

The function has the name, parameters and result type of the SQL function
(:func:`modelport.compile.sql.create_function`), so a trigger or query calls either the same
way; it computes what the generated C computes, in float64. The library holds two
translation units, so no name of the model's code meets a macro of PostgreSQL's headers, and
keeps the model's symbols hidden, so two models' libraries loaded into one server process
never bind to each other's code: only the entry point and PostgreSQL's magic block are
exported.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from modelport.compile import ir, sql
from modelport.compile.codegen import c as c_code
from modelport.errors import ConversionError
from modelport.quoting.code import c_literal
from modelport.quoting.sql import literal

#: the exported entry point of every library (each library is its own namespace)
ENTRY = "modelport_score"
#: how the two files are compiled (with ``-I`` the server's headers); -fno-fast-math keeps
#: IEEE arithmetic, as the proof needs
FLAGS = ["-O2", "-shared", "-fPIC", "-fno-fast-math"]


def sources(model_ir: ir.ModelIR) -> dict[str, str]:
    """The library's C files (name -> text): the model, every symbol of it hidden, and
    PostgreSQL's entry point around it."""
    if model_ir.precision != "float64":
        raise ConversionError(f"the model computes in {model_ir.precision}; the compiled "
                              "function computes in float64 and would not match it exactly")
    # the C library's headers first, with their own visibility; then everything after hidden
    model = ("#include <math.h>\n#include <stddef.h>\n#include <string.h>\n"
             "#pragma GCC visibility push(hidden)\n" + c_code.generate(model_ir, "mp"))
    return {"model.c": model, "entry.c": _entry(model_ir)}


def library_name(files: dict[str, str], include_dir: str | Path, version: str) -> str:
    """The library's file name: a hash of its sources, flags, headers and the server
    version it is built for, so a server process that loaded one library is never handed
    another under the same name (PostgreSQL keeps a loaded library until the process
    ends)."""
    key = hashlib.sha256("\0".join([*FLAGS, str(include_dir), version,
                                    *sorted(f"{k}\0{v}" for k, v in files.items())])
                         .encode()).hexdigest()[:24]
    return f"modelport_{key}.so"


def create_function(model_ir: ir.ModelIR, name: str, library: str | Path) -> str:
    """``CREATE OR REPLACE FUNCTION <name>_score(...)`` with the C body in ``library``."""
    fn, params, returns = sql.function_head(model_ir, "postgresql", name)
    return (f"CREATE OR REPLACE FUNCTION {fn}({params})\nRETURNS {returns}\n"
            f"AS {literal(str(library), 'postgresql')}, {literal(ENTRY, 'postgresql')}\n"
            "LANGUAGE C IMMUTABLE PARALLEL SAFE;\n")


def _entry(model_ir: ir.ModelIR) -> str:
    sig = model_ir.signature
    numeric, categorical = sig.numeric, sig.categorical
    n_out = c_code.CLowering(model_ir).n_out()
    reads = []
    for at, col in enumerate(sig.inputs):
        if col.kind == "categorical":
            reads.append(f"    cat[{categorical.index(col.name)}] = PG_ARGISNULL({at}) ? NULL : "
                         f"text_to_cstring(PG_GETARG_TEXT_PP({at}));")
        else:
            reads.append(f"    num[{numeric.index(col.name)}] = PG_ARGISNULL({at}) ? NAN : "
                         f"PG_GETARG_FLOAT8({at});")
    return "\n".join([
        "/* modelport: the PostgreSQL entry point of one compiled model */",
        '#include "postgres.h"',
        '#include "fmgr.h"',
        '#include "utils/builtins.h"',
        "#include <math.h>",
        "",
        "PG_MODULE_MAGIC;",
        "",
        "void mp_score(const double *num, const char *const *cat, double *out);",
        "",
        f"PG_FUNCTION_INFO_V1({ENTRY});",
        "",
        f"Datum {ENTRY}(PG_FUNCTION_ARGS) {{",
        f"    double num[{max(len(numeric), 1)}];",
        f"    const char *cat[{max(len(categorical), 1)}];",
        f"    double out[{n_out}];",
        "    (void) num; (void) cat;",
        *reads,
        "    mp_score(num, cat, out);",
        *_result(model_ir, n_out),
        "}",
        "",
    ])


def _result(model_ir: ir.ModelIR, n_out: int) -> list[str]:
    """What the SQL function returns, from ``out``: the value, the positive class's
    probability, the nearest cluster or the winning label (NULL where it is NaN)."""
    kind = sql.result_kind(model_ir)
    if kind in ("value", "probability"):
        at = 1 if kind == "probability" else 0
        return [f"    if (isnan(out[{at}])) PG_RETURN_NULL();",
                f"    PG_RETURN_FLOAT8(out[{at}]);"]
    lines = ["    int best = 0;"]
    if kind == "cluster":
        # the nearest centre, the first of equals, as NumPy's argmin picks
        lines += [f"    for (int k = 1; k < {n_out}; k++) if (out[k] < out[best]) best = k;",
                  "    if (isnan(out[best])) PG_RETURN_NULL();",
                  "    PG_RETURN_INT64((int64) best);"]
        return lines
    classes = list(model_ir.output.classes or []) if model_ir.output is not None else []
    if n_out == 1:  # one margin: above zero is the second class
        lines.append("    if (isnan(out[0])) PG_RETURN_NULL();")
        lines.append("    best = out[0] > 0.0 ? 1 : 0;")
    else:
        lines += [f"    for (int k = 1; k < {n_out}; k++) if (out[k] > out[best]) best = k;",
                  "    if (isnan(out[best])) PG_RETURN_NULL();"]
    returns = sql.function_head(model_ir, "postgresql", "m")[2]
    lines.append("    switch (best) {")
    for at, label in enumerate(classes):
        if returns == "text":
            value = f"PointerGetDatum(cstring_to_text({c_literal(str(label))}))"
            lines.append(f"    case {at}: PG_RETURN_DATUM({value});")
        elif returns == "bigint":
            lines.append(f"    case {at}: PG_RETURN_INT64((int64) {int(label)}LL);")
        else:
            lines.append(f"    case {at}: PG_RETURN_FLOAT8({float(label)!r});")
    lines += ["    }", "    PG_RETURN_NULL();"]
    return lines

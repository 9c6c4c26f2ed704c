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
from modelport.quoting.sql import identifier, literal

#: the exported entry points of every library (each library is its own namespace): the
#: model function, and the row trigger that scores with it without leaving C
ENTRY = "modelport_score"
TRIGGER = "modelport_trigger"
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


def create_trigger_function(name: str, library: str | Path) -> str:
    """``CREATE OR REPLACE FUNCTION <name>() RETURNS trigger``: the library's row trigger,
    which reads the input columns, scores with the model and sets the output, version and
    scored-at columns without leaving C. Its arguments (:func:`trigger_arguments`) name the
    columns."""
    fn = identifier(name, "postgresql", "function name")
    return (f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger\n"
            f"AS {literal(str(library), 'postgresql')}, {literal(TRIGGER, 'postgresql')}\n"
            "LANGUAGE C;\n")


def trigger_arguments(output: str, version_column: str, scored_at: str, version: int,
                      inputs: list[str]) -> str:
    """The trigger's argument list: the three columns it writes, the version, then the
    table column of each model input in signature order, each a quoted literal."""
    return ", ".join(literal(str(v), "postgresql")
                     for v in [output, version_column, scored_at, int(version), *inputs])


def reads_directly(kind: str, column_type: str) -> bool:
    """Whether the C trigger reads a column of ``column_type`` (as PostgreSQL's
    ``format_type`` writes it) for an input of ``kind`` as the SQL function's parameter
    receives it: the integer, floating and numeric types as numbers, text and varchar as
    text. Any other type keeps the PL/pgSQL trigger, where PostgreSQL casts it."""
    if kind == "categorical":
        return column_type == "text" or column_type.startswith("character varying")
    return column_type in _NUMBER_TYPES or column_type.startswith("numeric")


_NUMBER_TYPES = ("double precision", "real", "smallint", "integer", "bigint")


def _entry(model_ir: ir.ModelIR) -> str:
    sig = model_ir.signature
    numeric, categorical = sig.numeric, sig.categorical
    n_out = c_code.CLowering(model_ir).n_out()
    args, fields = [], []
    for at, col in enumerate(sig.inputs):
        if col.kind == "categorical":
            target = f"cat[{categorical.index(col.name)}]"
            args.append(f"    {target} = PG_ARGISNULL({at}) ? NULL : "
                        f"text_to_cstring(PG_GETARG_TEXT_PP({at}));")
            fields.append(f"    {target} = mp_text(p, {at}, text[{categorical.index(col.name)}]);")
        else:
            target = f"num[{numeric.index(col.name)}]"
            args.append(f"    {target} = PG_ARGISNULL({at}) ? NAN : PG_GETARG_FLOAT8({at});")
            fields.append(f"    {target} = mp_number(p, {at});")
    arrays = [f"    double num[{max(len(numeric), 1)}];",
              f"    const char *cat[{max(len(categorical), 1)}];",
              f"    double out[{n_out}];",
              "    bool isnull;",
              "    Datum result;",
              "    (void) num; (void) cat;"]
    return "\n".join([
        "/* modelport: the PostgreSQL entry points of one compiled model */",
        _ENTRY_HEAD.replace("N_INPUTS", str(len(sig.inputs))),
        *_result(model_ir, n_out),
        "",
        f"PG_FUNCTION_INFO_V1({ENTRY});",
        "",
        f"Datum {ENTRY}(PG_FUNCTION_ARGS) {{",
        *arrays,
        *args,
        "    mp_score(num, cat, out);",
        "    result = mp_result(out, &isnull);",
        "    if (isnull) PG_RETURN_NULL();",
        "    PG_RETURN_DATUM(result);",
        "}",
        "",
        f"PG_FUNCTION_INFO_V1({TRIGGER});",
        "",
        f"Datum {TRIGGER}(PG_FUNCTION_ARGS) {{",
        "    TriggerData *td = (TriggerData *) fcinfo->context;",
        "    HeapTuple row;",
        "    MpPlan *p;",
        "    Datum put[3];",
        "    bool put_null[3] = {false, false, false};",
        f"    char text[{max(len(categorical), 1)}][MP_SHORT_TEXT];",
        "    (void) text;",
        *arrays,
        "    if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event)",
        "        || !TRIGGER_FIRED_FOR_ROW(td->tg_event))",
        '        elog(ERROR, "modelport: the scoring trigger must fire BEFORE, FOR EACH ROW");',
        "    row = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;",
        "    p = mp_plan(fcinfo, td);",
        "    heap_deform_tuple(row, p->desc, p->values, p->nulls);",
        *fields,
        "    mp_score(num, cat, out);",
        "    result = mp_result(out, &isnull);",
        "    put[0] = result;",
        "    put_null[0] = isnull;",
        "    put[1] = Int64GetDatum(p->version);",
        "    put[2] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());",
        "    return PointerGetDatum(mp_replace(row, p, put, put_null));",
        "}",
        "",
    ])


#: the C trigger: what it includes, the plan it builds once per statement from its
#: arguments (the output, version and scored-at columns, the version, then the input
#: columns in signature order) and how it reads a column as the SQL function's parameter
#: would receive it (the implicit casts of these types to float8 and text)
_ENTRY_HEAD = """#include "postgres.h"
#include "fmgr.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"
#include <math.h>
#include <stdlib.h>

PG_MODULE_MAGIC;

void mp_score(const double *num, const char *const *cat, double *out);

typedef struct {
    TupleDesc desc;
    Datum *values;
    bool *nulls;
    int written[3];        /* output, version, scored-at column numbers */
    int64 version;
    int input[N_INPUTS];   /* each input's column index, from 0 */
    Oid type[N_INPUTS];
} MpPlan;

static int mp_column(TupleDesc desc, const char *name) {
    for (int i = 0; i < desc->natts; i++) {
        Form_pg_attribute a = TupleDescAttr(desc, i);
        if (!a->attisdropped && strcmp(NameStr(a->attname), name) == 0) return i;
    }
    ereport(ERROR, (errmsg("modelport: the scored table has no column \\"%s\\"", name),
                    errhint("re-install the model with modelport trigger install --upgrade")));
    return -1;
}

static MpPlan *mp_plan(FunctionCallInfo fcinfo, TriggerData *td) {
    MpPlan *p = (MpPlan *) fcinfo->flinfo->fn_extra;
    Trigger *tg = td->tg_trigger;
    TupleDesc desc = RelationGetDescr(td->tg_relation);
    if (p != NULL && p->desc == desc) return p;
    if (tg->tgnargs != 4 + N_INPUTS)
        elog(ERROR, "modelport: the scoring trigger takes %d arguments, got %d",
             4 + N_INPUTS, tg->tgnargs);
    p = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(MpPlan));
    p->desc = desc;
    p->values = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(Datum) * desc->natts);
    p->nulls = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(bool) * desc->natts);
    for (int k = 0; k < 3; k++) p->written[k] = mp_column(desc, tg->tgargs[k]) + 1;
    p->version = strtoll(tg->tgargs[3], NULL, 10);
    for (int i = 0; i < N_INPUTS; i++) {
        p->input[i] = mp_column(desc, tg->tgargs[4 + i]);
        p->type[i] = TupleDescAttr(desc, p->input[i])->atttypid;
    }
    fcinfo->flinfo->fn_extra = p;
    return p;
}

static double mp_number(const MpPlan *p, int i) {
    Datum v = p->values[p->input[i]];
    if (p->nulls[p->input[i]]) return NAN;
    switch (p->type[i]) {
    case FLOAT8OID: return DatumGetFloat8(v);
    case FLOAT4OID: return (double) DatumGetFloat4(v);
    case INT2OID: return (double) DatumGetInt16(v);
    case INT4OID: return (double) DatumGetInt32(v);
    case INT8OID: return (double) DatumGetInt64(v);
    case NUMERICOID: return DatumGetFloat8(DirectFunctionCall1(numeric_float8, v));
    }
    ereport(ERROR, (errmsg("modelport: column \\"%s\\" has a type the compiled trigger does "
                           "not read as a number", NameStr(TupleDescAttr(p->desc, p->input[i])->attname)),
                    errhint("re-install the model with modelport trigger install --upgrade")));
    return NAN;
}

/* the row with the three written columns replaced: heap_modify_tuple_by_cols, reusing the
   values already read from the row instead of reading it again */
static HeapTuple mp_replace(HeapTuple row, MpPlan *p, const Datum *put, const bool *put_null) {
    HeapTuple out;
    for (int k = 0; k < 3; k++) {
        p->values[p->written[k] - 1] = put[k];
        p->nulls[p->written[k] - 1] = put_null[k];
    }
    out = heap_form_tuple(p->desc, p->values, p->nulls);
    out->t_data->t_ctid = row->t_data->t_ctid;
    out->t_self = row->t_self;
    out->t_tableOid = row->t_tableOid;
    return out;
}

/* a text value shorter than this is copied into the caller's buffer rather than palloc'd */
#define MP_SHORT_TEXT 64

static const char *mp_text(const MpPlan *p, int i, char *buffer) {
    text *t;
    if (p->nulls[p->input[i]]) return NULL;
    if (p->type[i] != TEXTOID && p->type[i] != VARCHAROID)
        ereport(ERROR, (errmsg("modelport: column \\"%s\\" has a type the compiled trigger does "
                               "not read as text", NameStr(TupleDescAttr(p->desc, p->input[i])->attname)),
                        errhint("re-install the model with modelport trigger install --upgrade")));
    t = DatumGetTextPP(p->values[p->input[i]]);
    if (VARSIZE_ANY_EXHDR(t) >= MP_SHORT_TEXT) return text_to_cstring(t);
    memcpy(buffer, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
    buffer[VARSIZE_ANY_EXHDR(t)] = '\\0';
    return buffer;
}
"""


def _result(model_ir: ir.ModelIR, n_out: int) -> list[str]:
    """``mp_result(out, isnull)``: what the SQL function returns, from ``out``: the value,
    the positive class's probability, the nearest cluster or the winning label (NULL
    where it is NaN)."""
    kind = sql.result_kind(model_ir)
    lines = ["static Datum mp_result(const double *out, bool *isnull) {",
             "    int best = 0;",
             "    (void) best;",
             "    *isnull = false;"]
    null = ["        *isnull = true;", "        return (Datum) 0;", "    }"]
    if kind in ("value", "probability"):
        at = 1 if kind == "probability" else 0
        return lines + [f"    if (isnan(out[{at}])) {{", *null,
                        f"    return Float8GetDatum(out[{at}]);", "}"]
    if kind == "cluster":
        # the nearest centre, the first of equals, as NumPy's argmin picks
        return lines + [
            f"    for (int k = 1; k < {n_out}; k++) if (out[k] < out[best]) best = k;",
            "    if (isnan(out[best])) {", *null,
            "    return Int64GetDatum((int64) best);", "}"]
    classes = list(model_ir.output.classes or []) if model_ir.output is not None else []
    if n_out == 1:  # one margin: above zero is the second class
        lines += ["    if (isnan(out[0])) {", *null, "    best = out[0] > 0.0 ? 1 : 0;"]
    else:
        lines += [f"    for (int k = 1; k < {n_out}; k++) if (out[k] > out[best]) best = k;",
                  "    if (isnan(out[best])) {", *null]
    returns = sql.function_head(model_ir, "postgresql", "m")[2]
    lines.append("    switch (best) {")
    for at, label in enumerate(classes):
        if returns == "text":
            value = f"PointerGetDatum(cstring_to_text({c_literal(str(label))}))"
        elif returns == "bigint":
            value = f"Int64GetDatum((int64) {int(label)}LL)"
        else:
            value = f"Float8GetDatum({float(label)!r})"
        lines.append(f"    case {at}: return {value};")
    return lines + ["    }", "    *isnull = true;", "    return (Datum) 0;", "}"]

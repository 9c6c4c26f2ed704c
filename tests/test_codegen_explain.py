"""Reason codes in generated C and JavaScript equal Python's TreeSHAP, add up, or are refused.

Every tree family of the conformance zoo (``tests/zoo.py`` and the families of
``test_compile_ir``: decision trees, forests, extra trees, gradient boosting, histogram
gradient boosting with native categories and missing values, LightGBM with a categorical
feature) is generated with ``explain=True``, compiled (one gcc -O2 program, one node
process, both in other processes) and run on rows from another seed than the training rows,
with unknown categories and missing values. Per row, the generated contributions must equal
:func:`modelport.compile.explain.contributions` and the base plus their sum the raw score
(both to 1e-9), and the generated reasons must be those of
:func:`modelport.scoring.reasons.top`. The source with ``explain`` is the source without it
followed by the reason codes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelport.compile import ModelIR, to_ir
from modelport.compile.codegen import file_name, generate, identifier
from modelport.compile.codegen.treeshap import output_labels
from modelport.compile.explain import contributions
from modelport.compile.numpy_eval import feature_matrix, raw_scores
from modelport.errors import ConversionError
from modelport.formats.compiled import CompiledPredictor
from modelport.formats.native import classes_of, infer_task
from modelport.scoring.reasons import top
from modelport.signature import Signature
from test_compile_ir import FAMILIES, fitted, with_unseen_rows
from test_export_hostile_code import CANARY, PAYLOADS

import zoo
from conftest import need_module, unavailable

TOL = 1e-9
#: the float64 tree ensembles of test_compile_ir, then the zoo's own
TREES = tuple(n for n in FAMILIES if "xgboost" not in n and any(
    w in n for w in ("tree", "forest", "hgb", "lightgbm", "gradient_boosting")))
ZOO_TREES = ("zoo_random_forest", "zoo_hgb", "zoo_lightgbm")
MODELS = TREES + ZOO_TREES
HOSTILE = "hostile_names"

pytestmark = [
    pytest.mark.filterwarnings("ignore:Found unknown categories"),
    pytest.mark.filterwarnings("ignore:X does not have valid feature names"),
    pytest.mark.filterwarnings("ignore:categorical_feature keyword has been found"),
]


# --- the models and the rows they are explained on ------------------------------------------


def _held_out(columns: list[str]) -> pd.DataFrame:
    """Rows from another seed than every training frame, with the given columns, plus the
    rows :func:`with_unseen_rows` adds (an unknown category, missing values)."""
    mixed, _, _, _ = zoo.data(n=40, seed=11)
    frame = mixed.copy()
    if "region" in columns:
        rng = np.random.default_rng(12)
        codes = rng.integers(0, 8, len(frame)).astype(float)
        codes[rng.uniform(size=len(frame)) < 0.1] = np.nan
        frame["region"] = codes
    return with_unseen_rows(frame[columns])


def _hostile_case():
    """A tree pipeline whose column names would run code where they landed unescaped."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.tree import DecisionTreeClassifier

    numbers, words = [PAYLOADS["c"], "__proto__"], PAYLOADS["javascript"]
    rng = np.random.default_rng(4)
    n = 200
    X = pd.DataFrame({numbers[0]: np.round(rng.normal(size=n), 2),
                      numbers[1]: np.round(rng.normal(size=n), 2)})
    X.loc[rng.uniform(size=n) < 0.1, numbers[0]] = np.nan
    X[words] = pd.Series(rng.choice(['a"b', "c*/d", "e"], n).astype(object), dtype=object)
    y = ((X[numbers[1]] > 0) ^ (X[words] == "e")).astype(int)
    model = make_pipeline(ColumnTransformer([
        ("words", make_pipeline(SimpleImputer(strategy="constant", fill_value="none"),
                                OneHotEncoder(handle_unknown="ignore")), [words]),
    ], remainder="passthrough"), DecisionTreeClassifier(max_depth=4, random_state=0))
    model.fit(X, y)
    rows = X.tail(20).copy()
    rows.loc[rows.index[0], words] = "never seen"
    rows.loc[rows.index[1], numbers] = np.nan
    return model, X, rows


@cache
def case(name: str):
    """(signature, coerced held-out rows, intermediate form) of model ``name``."""
    if name == HOSTILE:
        model, train, rows = _hostile_case()
        sig = Signature.infer(train, "classification", classes_of(model))
    elif name in ZOO_TREES:
        family = name.removeprefix("zoo_")
        if family == "lightgbm":
            need_module("lightgbm", "gbm")
        model, train = zoo.build(family)
        sig = Signature.infer(train, infer_task(model), classes_of(model))
        rows = _held_out(list(train.columns))
    else:
        model, sig, train = fitted(name)
        rows = _held_out(list(train.columns))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model_ir = to_ir(model, sig)
    return sig, sig.coerce(rows), model_ir


@cache
def expected(name: str):
    """(base, contributions as (rows, columns, raw scores), raw scores, each row's top
    reasons as records) from the Python side."""
    sig, frame, model_ir = case(name)
    base, contrib = contributions(model_ir, frame)
    contrib = contrib.reshape(len(frame), len(sig.names), -1)
    raw = raw_scores(model_ir.model, feature_matrix(model_ir, frame))
    data = json.dumps(model_ir.to_dict(), allow_nan=True).encode()
    reasons = top(CompiledPredictor(data, sig), sig.columns(frame), k_of(name))
    return base, contrib, raw, reasons.records()


def k_of(name: str) -> int:
    """How many reasons to ask for: all columns but one, so both the order and the cut
    are checked."""
    return max(1, len(case(name)[0].names) - 1)


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (None if v is None or v != v else v) for k, v in r.items()}
            for r in frame.to_dict("records")]


# --- running the generated code in other processes ------------------------------------------


def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd[0]} failed:\n{proc.stderr[-3000:]}\n{proc.stdout[-1000:]}"
    return proc.stdout


def _tool(name: str) -> None:
    if shutil.which(name) is None:
        unavailable(f"{name} is not installed")


_C_DRIVER = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
%(protos)s
typedef void (*explain_fn)(const double *, const char *const *, double *);
typedef int (*reasons_fn)(const double *, const char *const *, int, int *, double *);

/* rows of inputs/<name>.tsv: the first line holds the kinds (n or c), '' is missing;
   prints the names table (hex), the base, then per row the contributions and reasons */
static void run(const char *name, explain_fn explain, reasons_fn reasons, const double *base,
                const char *const *inputs, int n_inputs, int n_raw, int k) {
    char path[512], line[65536];
    snprintf(path, sizeof path, "inputs/%%s.tsv", name);
    FILE *f = fopen(path, "r");
    if (!f) { perror(path); exit(1); }
    printf("%%s\tN", name);
    for (int i = 0; inputs[i] != NULL; i++) {
        printf("\t");
        for (const unsigned char *p = (const unsigned char *) inputs[i]; *p; p++)
            printf("%%02x", *p);
    }
    printf("\n%%s\tB", name);
    for (int r = 0; r < n_raw; r++) printf("\t%%.17g", base[r]);
    printf("\n");
    char kinds[256];
    int first = 1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *cells[256]; int n = 0; char *p = line; cells[n++] = p;
        for (; *p; p++) if (*p == '\t') { *p = 0; cells[n++] = p + 1; }
        if (first) { for (int i = 0; i < n; i++) kinds[i] = cells[i][0]; first = 0; continue; }
        double num[256]; const char *cat[256]; int a = 0, b = 0;
        for (int i = 0; i < n_inputs; i++) {
            if (kinds[i] == 'n') num[a++] = cells[i][0] ? strtod(cells[i], NULL) : NAN;
            else cat[b++] = cells[i][0] ? cells[i] : NULL;
        }
        double contrib[4096], contribution[256];
        int column[256];
        explain(num, cat, contrib);
        printf("%%s\tE", name);
        for (int i = 0; i < n_inputs * n_raw; i++) printf("\t%%.17g", contrib[i]);
        int r = reasons(num, cat, k, column, contribution);
        printf("\n%%s\tR\t%%d", name, r);
        for (int i = 0; i < k; i++) printf("\t%%d\t%%.17g", column[i], contribution[i]);
        printf("\n");
    }
    fclose(f);
}

int main(void) {
%(calls)s
    return 0;
}
"""


def _cell(v) -> str:
    return "" if v is None else repr(float(v)) if isinstance(v, float | int) else str(v)


@cache
def c_results(folder: str) -> dict:
    """Every model's C compiled into one program and run over its rows: per model the
    names table, the base, and per row the contributions and reasons."""
    _tool("gcc")
    root = Path(folder) / "c"
    (root / "inputs").mkdir(parents=True)
    files, protos, calls = [], [], []
    for name in (*MODELS, HOSTILE):
        sig, frame, model_ir = case(name)
        source = generate(model_ir, "c", name, explain=True)
        sym, n_raw = identifier(name), max(model_ir.model.n_outputs, 1)
        assert f"#define {sym.upper()}_N_INPUTS {len(sig.names)}\n" in source
        assert f"#define {sym.upper()}_N_RAW {n_raw}\n" in source
        (root / file_name("c", name)).write_text(source)
        files.append(file_name("c", name))
        lines = ["\t".join("n" if c.kind == "numeric" else "c" for c in sig.inputs)]
        lines += ["\t".join(_cell(v) for v in row.values()) for row in _records(frame)]
        (root / "inputs" / f"{name}.tsv").write_text("\n".join(lines) + "\n")
        protos += [f"void {sym}_explain(const double *, const char *const *, double *);",
                   f"int {sym}_reasons(const double *, const char *const *, int, int *, "
                   "double *);",
                   f"extern const double {sym}_base[];",
                   f"extern const char *const {sym}_inputs[];"]
        calls.append(f'    run("{name}", {sym}_explain, {sym}_reasons, {sym}_base, '
                     f"{sym}_inputs, {len(sig.names)}, {n_raw}, {k_of(name)});")
    (root / "driver.c").write_text(_C_DRIVER % {"protos": "\n".join(protos),
                                                "calls": "\n".join(calls)})
    flags = ["-std=c99", "-O2", "-Wall", "-Werror", "-Wno-unused-variable"]
    # one compiler per file, two at a time: the optimiser's time dominates this test
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda f: _run(["gcc", *flags, "-c", f, "-o", f"{f}.o"], root),
                      ["driver.c", *files]))
    _run(["gcc", "-o", "reasons", "driver.c.o", *[f"{f}.o" for f in files], "-lm"], root)
    out: dict = {}
    for line in _run(["./reasons"], root).splitlines():
        name, kind, *cells = line.split("\t")
        got = out.setdefault(name, {"explain": [], "reasons": []})
        if kind == "N":
            got["names"] = [bytes.fromhex(c).decode("utf-8", "surrogatepass") for c in cells]
        elif kind == "B":
            got["base"] = np.array([float(c) for c in cells])
        elif kind == "E":
            got["explain"].append([float(c) for c in cells])
        else:
            got["reasons"].append((int(cells[0]), [int(c) for c in cells[1::2]],
                                   [float(c) for c in cells[2::2]]))
    return out


_JS_DRIVER = """
import { readFileSync } from "node:fs";
%(imports)s
const models = { %(table)s };
const out = {};
for (const [name, [m, k]] of Object.entries(models)) {
  const rows = JSON.parse(readFileSync(`inputs/${name}.json`, "utf8"));
  out[name] = rows.map((row) => ({ explain: m.explain(row), reasons: m.reasons(row, k),
                                   score: m.score(row) }));
}
console.log(JSON.stringify(out));
"""


@cache
def javascript_results(folder: str) -> dict:
    """Every model's JavaScript module run over its rows in one node process: per model
    and row, what explain, reasons and score return."""
    _tool("node")
    root = Path(folder) / "javascript"
    (root / "inputs").mkdir(parents=True)
    imports, table = [], []
    for i, name in enumerate((*MODELS, HOSTILE)):
        sig, frame, model_ir = case(name)
        (root / file_name("javascript", name)).write_text(
            generate(model_ir, "javascript", name, explain=True))
        (root / "inputs" / f"{name}.json").write_text(json.dumps(_records(frame)))
        imports.append(f'import * as m{i} from "./{file_name("javascript", name)}";')
        table.append(f'"{name}": [m{i}, {k_of(name)}]')
    (root / "driver.mjs").write_text(_JS_DRIVER % {"imports": "\n".join(imports),
                                                   "table": ", ".join(table)})
    return json.loads(_run(["node", "driver.mjs"], root))


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("explained-code"))


# --- the checks ----------------------------------------------------------------------------


def assert_close(got, want, what: str) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    worst = float(np.abs(got - want).max()) if got.size else 0.0
    assert worst <= TOL, f"{what}: max abs diff {worst:.3g}"


def assert_adds_up(name: str, base, contrib, language: str) -> None:
    """Contributions and base equal the Python ones, and base + sum is the raw score."""
    want_base, want_contrib, raw, _ = expected(name)
    assert_close(base, want_base, f"{language} base of {name}")
    assert_close(contrib, want_contrib, f"{language} contributions of {name}")
    assert_close(np.asarray(base)[None, :] + np.asarray(contrib).sum(axis=1), raw,
                 f"{language} base + contributions vs raw score of {name}")
    # the explanation is of what the model computes, not of nothing
    assert np.abs(want_contrib).max() > 0


def assert_same_reasons(name: str, i: int, picked: int, columns: list[str], values,
                        contribs, explained: np.ndarray, language: str) -> None:
    """Row ``i``'s reasons follow the rule of scoring.reasons.top and agree with it.

    On the generated side the rule holds exactly: the columns are the first k of the
    row's generated contributions to raw score ``picked`` (``explained``, columns x raw
    scores) by magnitude, equal ones in signature order, with those contributions. Against
    top(): the same raw score, the same contributions position by position, and the same
    columns except where rounding orders two magnitudes within 1e-12 differently (a column
    with no contribution can hold 1e-17 of rounding on one side and 0 on the other).

    top() takes the largest of base + summed contributions, generated code the largest raw
    score as score computes it: where two classes tie exactly (a leaf's class shares), the
    last bits of rounding pick top()'s, and the generated reasons must then be the Python
    contributions to the class the generated code picked.
    """
    sig, frame, model_ir = case(name)
    _, contrib, raw, records = expected(name)
    k = k_of(name)
    order = np.argsort(-np.abs(explained[:, picked]), kind="stable")[:k]
    assert columns == [sig.names[j] for j in order], (language, name, i)
    assert list(contribs) == explained[order, picked].tolist(), (language, name, i)
    if values is not None:
        given = _records(frame.iloc[[i]])[0]
        assert values == [given[c] for c in columns], (language, name, i)
    record = records[i]
    want = record["reasons"]
    top_pick = output_labels(model_ir).index(record["output"]) if "output" in record else 0
    if picked != top_pick:
        assert raw.shape[1] > 2, (language, name, i, picked)
        assert abs(raw[i, picked] - raw[i, top_pick]) <= TOL, (language, name, i, picked)
        assert raw[i, picked] >= raw[i].max() - TOL
        want = [{"column": sig.names[j], "contribution": contrib[i, j, picked]}
                for j in np.argsort(-np.abs(contrib[i, :, picked]), kind="stable")[:k]]
    assert len(columns) == len(want), (language, name, i)
    for r, (column, c, w) in enumerate(zip(columns, contribs, want, strict=True)):
        assert abs(c - w["contribution"]) <= TOL, (language, name, i, r)
        if column != w["column"]:
            a, b = (abs(contrib[i, sig.names.index(n), picked]) for n in (column, w["column"]))
            assert abs(a - b) <= 1e-12, (language, name, i, r, column)


@pytest.mark.parametrize("name", MODELS)
def test_c_contributions_and_reasons_equal_python(name, build_dir):
    sig, frame, model_ir = case(name)
    got = c_results(build_dir)[name]
    assert got["names"] == sig.names
    contrib = np.asarray(got["explain"]).reshape(len(frame), len(sig.names), -1)
    assert_adds_up(name, got["base"], contrib, "C")
    for i, (picked, columns, contribs) in enumerate(got["reasons"]):
        assert_same_reasons(name, i, picked, [sig.names[c] for c in columns], None, contribs,
                            contrib[i], "C")


@pytest.mark.parametrize("name", MODELS)
def test_javascript_contributions_and_reasons_equal_python(name, build_dir):
    sig, frame, model_ir = case(name)
    rows = javascript_results(build_dir)[name]
    assert len(rows) == len(frame)
    base = rows[0]["explain"]["base"]
    several = len(base) > 1
    contrib = np.array([[np.atleast_1d(row["explain"]["contributions"][c]) for c in sig.names]
                        for row in rows], dtype=np.float64)
    for row in rows:
        assert sorted(row["explain"]["contributions"]) == sorted(sig.names)
        # one raw score: plain numbers; several: one array per column
        assert all(isinstance(v, list) == several
                   for v in row["explain"]["contributions"].values())
    assert_adds_up(name, base, contrib, "JavaScript")
    for i, row in enumerate(rows):
        assert_javascript_reasons(name, i, row["reasons"], contrib[i])


def assert_javascript_reasons(name: str, i: int, reasons: list[dict],
                              explained: np.ndarray) -> None:
    """Generated JavaScript's reasons of row ``i`` (see :func:`assert_same_reasons`); with
    several raw scores each names the one explained, by class label."""
    labels = output_labels(case(name)[2])
    outputs = {r.get("output") for r in reasons}
    assert len(outputs) == 1, outputs
    output = outputs.pop()
    assert (output is None) == (len(labels) == 1)
    assert_same_reasons(name, i, 0 if output is None else labels.index(output),
                        [r["column"] for r in reasons], [r["value"] for r in reasons],
                        [r["contribution"] for r in reasons], explained, "JavaScript")


def test_hostile_column_names_stay_names_in_both_languages(build_dir):
    """Names that would close a C comment or end a JavaScript line, and ``__proto__``,
    come back as the very names, keying the same contributions."""
    sig, frame, _ = case(HOSTILE)
    CANARY.unlink(missing_ok=True)
    c = c_results(build_dir)[HOSTILE]
    assert c["names"] == sig.names
    contrib = np.asarray(c["explain"]).reshape(len(frame), len(sig.names), -1)
    assert_adds_up(HOSTILE, c["base"], contrib, "C")
    rows = javascript_results(build_dir)[HOSTILE]
    assert not CANARY.exists(), "a payload in a name ran"
    for i, row in enumerate(rows):
        assert sorted(row["explain"]["contributions"]) == sorted(sig.names)
        got = np.asarray([np.atleast_1d(row["explain"]["contributions"][n])
                          for n in sig.names], dtype=np.float64)
        assert_close(got, contrib[i], "JavaScript")
        assert_javascript_reasons(HOSTILE, i, row["reasons"], got)


def test_javascript_scores_what_it_explains(build_dir):
    """score and explain read a row the same way: the class explained (largest raw score)
    is the class score gives the highest probability."""
    name = "hgb_multiclass"
    rows = javascript_results(build_dir)[name]
    classes = case(name)[0].classes
    for row in rows:
        assert row["reasons"][0]["output"] == classes[int(np.argmax(row["score"]))]


# --- without explain, and refusals ---------------------------------------------------------


@pytest.mark.parametrize("name", ("decision_tree_multiclass", "hgb_native_categorical_strings",
                                  "lightgbm_categorical", "random_forest_regressor",
                                  "logistic_binary_strings", "gaussian_nb"))
@pytest.mark.parametrize("language", ("python", "javascript", "c", "java", "go"))
def test_source_without_explain_is_unchanged(name, language):
    if name.startswith("lightgbm"):
        need_module("lightgbm", "gbm")
    model, sig, _ = fitted(name)
    model_ir = to_ir(model, sig)
    plain = generate(model_ir, language, name)
    assert generate(model_ir, language, name, explain=False) == plain
    if language in ("c", "javascript") and model_ir.model.kind == "tree_ensemble":
        # reasons only add to the source: score and everything before it stay as they were
        explained = generate(model_ir, language, name, explain=True)
        assert explained.startswith(plain) and len(explained) > len(plain)


@pytest.mark.parametrize("language", ("python", "java", "go"))
def test_other_languages_refuse_reasons(language):
    model_ir = case("random_forest_nan")[2]
    with pytest.raises(ConversionError, match="reasons are generated for C and JavaScript"):
        generate(model_ir, language, "forest", explain=True)


@pytest.mark.parametrize("language", ("c", "javascript"))
def test_linear_models_refuse_and_point_to_sql(language):
    model, sig, _ = fitted("logistic_binary_strings")
    with pytest.raises(ConversionError, match="linear model's reasons are exported as SQL"):
        generate(to_ir(model, sig), language, "logistic", explain=True)


@pytest.mark.parametrize("language", ("c", "javascript"))
def test_models_other_than_trees_refuse(language):
    model, sig, _ = fitted("gaussian_nb")
    with pytest.raises(ConversionError, match="tree ensembles only; a gaussian_nb"):
        generate(to_ir(model, sig), language, "nb", explain=True)


@pytest.mark.parametrize("language", ("c", "javascript"))
def test_trees_without_covers_refuse(language):
    model_ir = ModelIR.from_dict(case("hgb_binary_nan")[2].to_dict())
    model_ir.model.trees[2].cover = None
    with pytest.raises(ConversionError, match="tree 2 of the ensemble has no node covers"):
        generate(model_ir, language, "hgb", explain=True)
    # without reasons the same form still generates
    assert "score" in generate(model_ir, language, "hgb")


@pytest.mark.parametrize("language", ("c", "javascript"))
def test_float32_models_refuse_as_without_reasons(language):
    need_module("xgboost", "gbm")
    model, sig, _ = fitted("xgboost_regressor")
    with pytest.raises(ConversionError, match="float32"):
        generate(to_ir(model, sig), language, "xgb", explain=True)

"""Every compiler backend computes what scikit-learn computes, family by family, or refuses.

Each family of ``test_compile_ir`` (every supported model and preprocessing step, on data
with numbers, string categories, unknown categories and missing values) goes through the
compiled NumPy runtime, SQL on PostgreSQL, MariaDB and SQLite, and generated Python,
JavaScript, C, Java and Go. Each language is compiled and run once for all models (one gcc,
one javac, one node, one go build), then every (backend, family) pair is compared with the
native model to 1e-9. Models that compute in float32 (XGBoost) must be refused instead.
A 300-tree HistGradientBoosting churn pipeline rides along in every build.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from modelport.compile import to_ir
from modelport.compile.codegen import class_name, file_name, generate, identifier
from modelport.compile.sql import result_kind, to_sql, to_sql_parts
from modelport.errors import ConversionError
from modelport.formats.native import NativePredictor, classes_of
from modelport.signature import Signature
from test_compile_ir import FAMILIES, fitted, with_unseen_rows

import zoo
from conftest import need_module, port_open, unavailable

TOL = 1e-9
CHURN = "churn_hgb300"
MODELS = (*FAMILIES, CHURN)
#: the float64 tree ensembles among them, and the models with a categorical input
TREES = tuple(n for n in MODELS if "xgboost" not in n and any(
    w in n for w in ("tree", "forest", "hgb", "lightgbm", "gradient_boosting")))
CATEGORICAL = ("logistic_binary_strings", "logistic_multinomial", "linear_regression", "ridge",
               "sgd_log_multiclass", "sgd_regressor", "extra_trees", "hgb_multiclass",
               "hgb_native_categorical_strings", "hgb_categorical_codes", "gaussian_nb",
               "kmeans", "gradient_boosting_multiclass", CHURN)
LANGUAGES = ("python", "javascript", "c", "java", "go")
DIALECTS = ("postgresql", "mysql", "sqlite")

pytestmark = [
    pytest.mark.filterwarnings("ignore:Found unknown categories"),
    pytest.mark.filterwarnings("ignore:categorical_feature keyword has been found"),
    pytest.mark.filterwarnings("ignore:X does not have valid feature names"),
]


@cache
def churn_case():
    """A 300-tree HistGradientBoosting pipeline on the churn data, with 300 sample rows."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from modelport.datasets import churn

    frame = churn.generate(3000, seed=1)
    X = frame.drop(columns=["customer_id", "churned"])
    numeric = [c for c in X.columns if X[c].dtype.kind in "if"]
    categorical = [c for c in X.columns if c not in numeric]
    pre = ColumnTransformer([
        ("num", "passthrough", numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="none"),
                              OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
         categorical),
    ])
    model = make_pipeline(pre, HistGradientBoostingClassifier(
        max_iter=300, early_stopping=False, random_state=0))
    model.fit(X, frame["churned"])
    sample = X.head(300).reset_index(drop=True)
    sig = Signature.infer(sample, "classification", classes_of(model))
    return model, sig, sample


@cache
def case(name: str):
    """(model, signature, coerced frame with unseen rows, IR or the refusal, native outputs)."""
    if name == CHURN:
        model, sig, X = churn_case()
        X = X.copy()
        X.loc[0, "plan"] = "enterprise"  # an unseen category
        X.loc[1, ["plan", "region", "age"]] = np.nan
        frame = sig.coerce(X)
    else:
        model, sig, X = fitted(name)
        frame = sig.coerce(with_unseen_rows(X))
    model_ir = to_ir(model, sig)
    native = NativePredictor(model, sig)._run(frame)
    if sig.task == "clustering":
        native["distances"] = model.transform(frame)
    elif sig.task == "classification" and "proba" not in native:
        native["margin"] = np.asarray(model.decision_function(frame), dtype=np.float64)
    return model, sig, frame, model_ir, native


def expected_vector(name: str) -> np.ndarray:
    """What generated ``score`` should return for each row, from the native model."""
    _, sig, _, _, native = case(name)
    if sig.task == "regression":
        return native["value"].reshape(-1, 1)
    if sig.task == "clustering":
        return native["distances"]
    if "proba" in native:
        return native["proba"]
    return native["margin"].reshape(len(native["margin"]), -1)


def refuses(name: str) -> bool:
    return case(name)[3].precision != "float64"


def assert_close(name: str, got, expected, backend: str) -> None:
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, (backend, name, got.shape, expected.shape)
    diff = np.abs(got - expected)
    worst = float(np.nanmax(diff)) if diff.size else 0.0
    assert np.array_equal(np.isnan(got), np.isnan(expected)), (backend, name, "NaN differs")
    assert worst <= TOL, f"{backend} differs from scikit-learn on {name}: max abs diff {worst:.3g}"


# --- the compiled NumPy runtime ------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_compiled_numpy_runtime_matches_scikit_learn(name):
    from modelport.formats import compiled
    from modelport.parity import compare

    model, sig, frame, _, native = case(name)
    if refuses(name):
        with pytest.raises(ConversionError, match="float32"):
            compiled.convert(model, sig, frame)
        return
    predictor = compiled.load(compiled.convert(model, sig, frame), sig)
    batch = predictor.run(frame)
    assert compare(native, batch, sig.task, TOL)["passed"]
    # one row at a time, as a service sends them, scores the same
    for i in (0, len(frame) - 1, len(frame) - 2):
        row = {k: (None if v != v else v) for k, v in frame.iloc[i].items()}
        one = predictor.run(row)
        for key, values in batch.items():
            if values.dtype.kind == "f":
                np.testing.assert_allclose(one[key][0], values[i], rtol=0, atol=TOL)
            else:
                assert one[key][0] == values[i]


@pytest.mark.parametrize("name", TREES)
def test_native_tree_walk_matches_the_numpy_walk(name, monkeypatch):
    """Batches walk trees in onnxruntime's float64 operator: the same leaves as NumPy's walk."""
    from modelport.formats import compiled

    model, sig, frame, model_ir, _ = case(name)
    assert model_ir.model.kind == "tree_ensemble" and not refuses(name)
    data = compiled.convert(model, sig, frame)
    native = compiled.load(data, sig)
    monkeypatch.setenv("MODELPORT_NUMPY_TREES", "1")
    walked = compiled.load(data, sig)
    forest = native._prepared._program.model_node
    has_categorical = any(t.categories and any(c is not None for c in t.categories)
                          for t in model_ir.model.trees)
    assert (forest.native is None) == has_categorical
    assert walked._prepared._program.model_node.native is None
    assert_same_outputs(native.run(frame), walked.run(frame))


def assert_same_outputs(a: dict, b: dict) -> None:
    """Two runtimes' outputs agree: numbers to 1e-12, labels and clusters exactly."""
    assert a.keys() == b.keys()
    for key, values in b.items():
        if values.dtype.kind == "f":
            np.testing.assert_allclose(a[key], values, rtol=0, atol=1e-12)
        else:
            np.testing.assert_array_equal(a[key], values)


@pytest.mark.parametrize("name", CATEGORICAL)
def test_dictionary_encoded_columns_score_as_strings(name):
    """Columnar readers hand categories over as words + codes; the scores do not change."""
    from modelport.formats import compiled
    from modelport.predictor import Coded

    model, sig, frame, _, _ = case(name)
    assert sig.categorical and not refuses(name)
    predictor = compiled.load(compiled.convert(model, sig, frame), sig)
    cols = sig.columns(frame)
    coded = dict(cols)
    for c in sig.categorical:
        values = cols[c]
        missing = np.array([not isinstance(v, str) for v in values])
        # an unseen word too, as a new file may hold
        words = np.array(sorted({v for v in values[~missing]}) + ["never seen"], dtype=object)
        codes = np.searchsorted(words[:-1], np.where(missing, words[0], values))
        codes[missing] = -1
        codes[::17] = len(words) - 1
        coded[c] = Coded(words, codes)
        cols[c] = coded[c].decode()
    assert_same_outputs(predictor._run_batch(coded), predictor._run_columns(cols))


# --- SQL ------------------------------------------------------------------------------------


def sql_expected(name: str):
    _, sig, _, model_ir, native = case(name)
    kind = result_kind(model_ir)
    if kind == "probability":
        return kind, native["proba"][:, 1]
    if kind == "value":
        return kind, native["value"]
    if kind == "cluster":
        return kind, native["cluster"]
    return kind, native["label"]


def _sql_connection(dialect: str):
    if dialect == "sqlite":
        import sqlite3

        return sqlite3.connect(":memory:"), "?"
    if dialect == "postgresql":
        psycopg = need_module("psycopg", "postgres")
        if not port_open("127.0.0.1", 5432):
            unavailable("PostgreSQL on 127.0.0.1:5432")
        conn = psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test",
                               autocommit=True)
        return conn, "%s"
    pymysql = need_module("pymysql", "mysql")
    if not port_open("127.0.0.1", 3306):
        unavailable("MariaDB on 127.0.0.1:3306")
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                           database="test", autocommit=True)
    return conn, "%s"


def _quote(dialect: str, name: str) -> str:
    return f"`{name}`" if dialect == "mysql" else f'"{name}"'


@cache
def sql_results(dialect: str) -> dict:
    """Every model's SQL expression evaluated over its rows in one connection."""
    conn, mark = _sql_connection(dialect)
    results = {}
    try:
        cur = conn.cursor()
        for name in MODELS:
            _, sig, frame, model_ir, _ = case(name)
            if refuses(name):
                continue
            expr = to_sql(model_ir, dialect)
            table = f"mp_compile_{abs(hash(name)) % 10**8}"
            types = {"numeric": {"postgresql": "double precision"}.get(dialect, "DOUBLE"),
                     "categorical": {"mysql": "VARCHAR(64)"}.get(dialect, "TEXT")}
            if dialect == "sqlite":
                types = {"numeric": "REAL", "categorical": "TEXT"}
            cols = ", ".join(f"{_quote(dialect, c.name)} {types[c.kind]}" for c in sig.inputs)
            temp = "TEMPORARY"
            cur.execute(f"DROP {temp} TABLE IF EXISTS {table}" if dialect == "mysql"
                        else f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"CREATE {temp} TABLE {table} (row_id INTEGER PRIMARY KEY, {cols})")
            names = ", ".join(_quote(dialect, c) for c in sig.names)
            marks = ", ".join([mark] * (len(sig.names) + 1))
            rows = [(i, *[None if (v is None or v != v) else v for v in r])
                    for i, r in enumerate(frame.itertuples(index=False))]
            cur.executemany(f"INSERT INTO {table} (row_id, {names}) VALUES ({marks})", rows)
            cur.execute(f"SELECT {expr} FROM {table} ORDER BY row_id")
            results[name] = [r[0] for r in cur.fetchall()]
            if to_sql_parts(model_ir, dialect)[0]:
                results[name, "shared"] = _shared_form(cur, dialect, model_ir, table, names)
    finally:
        conn.close()
    return results


@pytest.mark.services
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", MODELS)
def test_sql_expression_matches_scikit_learn(dialect, name):
    if refuses(name):
        with pytest.raises(ConversionError, match="float32"):
            to_sql(case(name)[3], dialect)
        return
    got = sql_results(dialect)[name]
    kind, expected = sql_expected(name)
    if kind in ("probability", "value"):
        assert_close(name, [float(v) for v in got], expected, f"SQL ({dialect})")
    elif kind == "cluster":
        assert [int(v) for v in got] == [int(v) for v in expected]
    else:
        assert [str(v) for v in got] == [str(v) for v in expected], (dialect, name)


def _shared_form(cur, dialect: str, model_ir, table: str, names: str) -> list:
    """The model evaluated as a trigger runs it: features computed once, in a function's
    variables (PostgreSQL, MariaDB) or a derived table (SQLite)."""
    from modelport.compile.sql import create_function, to_sql_subquery

    if dialect == "sqlite":
        cur.execute(f"SELECT {to_sql_subquery(model_ir, dialect)} FROM {table} ORDER BY row_id")
        return [r[0] for r in cur.fetchall()]
    cur.execute(create_function(model_ir, dialect, "mp_test_shared"))
    try:
        cur.execute(f"SELECT mp_test_shared_score({names}) FROM {table} ORDER BY row_id")
        return [r[0] for r in cur.fetchall()]
    finally:
        cur.execute("DROP FUNCTION mp_test_shared_score")


@pytest.mark.services
@pytest.mark.parametrize("dialect", DIALECTS)
def test_sql_with_features_computed_once_matches_scikit_learn(dialect):
    results = sql_results(dialect)
    shared = [name for name in MODELS if (name, "shared") in results]
    assert CHURN in shared  # the ensembles are written with their features computed once
    for name in shared:
        kind, expected = sql_expected(name)
        got = results[name, "shared"]
        if kind in ("probability", "value"):
            assert_close(name, [float(v) for v in got], expected, f"SQL shared ({dialect})")
        else:
            assert [str(v) for v in got] == [str(v) for v in expected], (dialect, name)


def test_sql_tests_for_null_only_where_a_tree_feature_can_be_null():
    from modelport.compile.sql import to_sql, to_sql_parts

    # the churn forest reads its numbers raw (NULL goes the learned way) and its categories
    # imputed and one-hot encoded, never NULL: only the raw numbers are tested for NULL
    model_ir = case(CHURN)[3]
    lets, expr = to_sql_parts(model_ir, "postgresql")
    tested = set(re.findall(r'"([^"]+)" IS NULL', expr))
    assert tested and tested <= set(model_ir.signature.numeric)
    assert len(lets) > 10 and not tested & {name for name, _ in lets}
    # a forest on raw inputs with missing values sends NULL down the learned side
    model_ir = case("hgb_binary_nan")[3]
    assert any(t.missing_left[i] and t.feature[i] >= 0 for t in model_ir.model.trees
               for i in range(len(t.feature)))
    assert " IS NULL OR " in to_sql(model_ir, "postgresql")


@pytest.mark.services
@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_sql_function_takes_columns_in_signature_order(dialect):
    from modelport.compile.sql import create_function

    name = "logistic_binary_strings"
    _, sig, frame, model_ir, _ = case(name)
    conn, _ = _sql_connection(dialect)
    try:
        cur = conn.cursor()
        cur.execute(create_function(model_ir, dialect, "mp_test_churn"))
        row = frame.iloc[0]
        args = ", ".join("NULL" if row[c] != row[c] else
                         (repr(float(row[c])) if col.kind == "numeric" else f"'{row[c]}'")
                         for c, col in zip(sig.names, sig.inputs, strict=True))
        cur.execute(f"SELECT mp_test_churn_score({args})")
        got = float(cur.fetchone()[0])
        cur.execute("DROP FUNCTION mp_test_churn_score" + ("" if dialect == "mysql" else
                                                          "(" + ", ".join(
            "double precision" if c.kind == "numeric" else "text" for c in sig.inputs) + ")"))
    finally:
        conn.close()
    assert abs(got - sql_expected(name)[1][0]) <= TOL


# --- generated code ---------------------------------------------------------------------------


def _write_inputs(folder: Path) -> None:
    """One tab-separated file per model: names, kinds (n/c), then rows ('' is missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        _, sig, frame, _, _ = case(name)
        lines = ["\t".join(sig.names), "\t".join("n" if c.kind == "numeric" else "c"
                                                 for c in sig.inputs)]
        for r in frame.itertuples(index=False):
            lines.append("\t".join("" if (v is None or v != v) else
                                   (repr(float(v)) if isinstance(v, float) else str(v))
                                   for v in r))
        (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n")


def _read_outputs(text: str) -> dict[str, np.ndarray]:
    """``name\\tv v v`` lines -> one array per model."""
    out: dict[str, list] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, values = line.split("\t")
        out.setdefault(name, []).append([float(v) for v in values.split()])
    return {k: np.asarray(v) for k, v in out.items()}


def _compilable() -> list[str]:
    return [n for n in MODELS if not refuses(n)]


def _run(cmd, cwd, timeout=600, env=None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)
    assert proc.returncode == 0, f"{cmd[0]} failed:\n{proc.stderr[-3000:]}\n{proc.stdout[-2000:]}"
    return proc.stdout


def _tool(name: str) -> None:
    if shutil.which(name) is None:
        unavailable(f"{name} is not installed")


@cache
def code_results(language: str, folder: str) -> dict[str, np.ndarray]:
    """Every model compiled into one program of ``language`` and run over its rows."""
    root = Path(folder) / language
    inputs = root / "inputs"
    _write_inputs(inputs)
    names = _compilable()
    sources = {n: generate(case(n)[3], language, n) for n in names}
    return _BUILDERS[language](root, inputs, names, sources)


def _python(root, inputs, names, sources):
    out = {}
    for n in names:
        path = root / file_name("python", n)
        path.write_text(sources[n])
        spec = importlib.util.spec_from_file_location(f"generated_{n}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _, sig, frame, _, _ = case(n)
        rows = [{k: (None if v != v else v) for k, v in r.items()}
                for r in frame.to_dict("records")]
        out[n] = np.asarray([np.atleast_1d(module.score(r)) for r in rows], dtype=np.float64)
    return out


_JS_DRIVER = """
import { readFileSync } from "node:fs";
%(imports)s
const models = { %(table)s };
const lines = [];
for (const [name, score] of Object.entries(models)) {
  const rows = readFileSync(`inputs/${name}.tsv`, "utf8").trimEnd().split("\\n");
  const names = rows[0].split("\\t"), kinds = rows[1].split("\\t");
  for (const line of rows.slice(2)) {
    const cells = line.split("\\t"), row = {};
    names.forEach((c, i) => { row[c] = cells[i] === "" ? null :
                              (kinds[i] === "n" ? Number(cells[i]) : cells[i]); });
    const r = score(row);
    lines.push(name + "\\t" + (Array.isArray(r) ? r : [r]).map(String).join(" "));
  }
}
console.log(lines.join("\\n"));
"""


def _javascript(root, inputs, names, sources):
    _tool("node")
    for n in names:
        (root / file_name("javascript", n)).write_text(sources[n])
    imports = "\n".join(f'import {{ score as m{i} }} from "./{file_name("javascript", n)}";'
                        for i, n in enumerate(names))
    table = ", ".join(f'"{n}": m{i}' for i, n in enumerate(names))
    (root / "driver.mjs").write_text(_JS_DRIVER % {"imports": imports, "table": table})
    return _read_outputs(_run(["node", "driver.mjs"], root))


_C_DRIVER = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
%(protos)s
typedef void (*score_fn)(const double *, const char *const *, double *);

static void run(const char *name, score_fn fn, int n_out) {
    char path[512], line[65536];
    snprintf(path, sizeof path, "inputs/%%s.tsv", name);
    FILE *f = fopen(path, "r");
    if (!f) { perror(path); exit(1); }
    char kinds[256]; int n_cols = 0, row_no = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *cells[256]; int n = 0; char *p = line; cells[n++] = p;
        for (; *p; p++) if (*p == '\t') { *p = 0; cells[n++] = p + 1; }
        if (row_no == 0) { n_cols = n; row_no++; continue; }
        if (row_no == 1) { for (int i = 0; i < n; i++) kinds[i] = cells[i][0]; row_no++; continue; }
        double num[256]; const char *cat[256]; int a = 0, b = 0;
        for (int i = 0; i < n_cols; i++) {
            if (kinds[i] == 'n') num[a++] = cells[i][0] ? strtod(cells[i], NULL) : NAN;
            else cat[b++] = cells[i][0] ? cells[i] : NULL;
        }
        double out[64];
        fn(num, cat, out);
        printf("%%s\t", name);
        for (int k = 0; k < n_out; k++) printf(k ? " %%.17g" : "%%.17g", out[k]);
        printf("\n");
    }
    fclose(f);
}

int main(void) {
%(calls)s
    return 0;
}
"""


def _c(root, inputs, names, sources):
    _tool("gcc")
    files = []
    for n in names:
        path = root / file_name("c", n)
        path.write_text(sources[n])
        files.append(path.name)
    protos = "\n".join(f"void {identifier(n)}_score(const double *, const char *const *, double *);"
                       for n in names)
    calls = "\n".join(f'    run("{n}", {identifier(n)}_score, {len(expected_vector(n)[0])});'
                      for n in names)
    (root / "driver.c").write_text(_C_DRIVER % {"protos": protos, "calls": calls})
    _run(["gcc", "-std=c99", "-O0", "-Wall", "-Werror", "-Wno-unused-variable", "-o", "models",
          "driver.c", *files, "-lm"], root)
    return _read_outputs(_run(["./models"], root))


_JAVA_DRIVER = """
import java.nio.file.*;
import java.util.*;
import java.util.function.Function;

public class Driver {
    static void run(String name, Function<Map<String, Object>, Object> score) throws Exception {
        List<String> rows = Files.readAllLines(Paths.get("inputs", name + ".tsv"));
        String[] names = rows.get(0).split("\\t", -1), kinds = rows.get(1).split("\\t", -1);
        StringBuilder sb = new StringBuilder();
        for (String line : rows.subList(2, rows.size())) {
            String[] cells = line.split("\\t", -1);
            Map<String, Object> row = new HashMap<>();
            for (int i = 0; i < names.length; i++)
                row.put(names[i], cells[i].isEmpty() ? null :
                        (kinds[i].equals("n") ? (Object) Double.parseDouble(cells[i]) : cells[i]));
            Object r = score.apply(row);
            double[] v = r instanceof double[] ? (double[]) r : new double[] {(Double) r};
            sb.append(name).append('\\t');
            for (int k = 0; k < v.length; k++) sb.append(k > 0 ? " " : "").append(v[k]);
            sb.append('\\n');
        }
        System.out.print(sb);
    }

    public static void main(String[] args) throws Exception {
%(calls)s
    }
}
"""


def _java(root, inputs, names, sources):
    _tool("javac")
    files = []
    for n in names:
        path = root / file_name("java", n)
        path.write_text(sources[n])
        files.append(path.name)
    calls = "\n".join(f'        run("{n}", r -> {class_name(n)}.score(r));' for n in names)
    (root / "Driver.java").write_text(_JAVA_DRIVER % {"calls": calls})
    _run(["javac", "-nowarn", "-J-Xss16m", "-d", "classes", "Driver.java", *files], root)
    return _read_outputs(_run(["java", "-cp", "classes", "Driver"], root))


_GO_DRIVER = """package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
%(imports)s
)

func run(name string, score func(map[string]any) []float64) {
	data, err := os.ReadFile("inputs/" + name + ".tsv")
	if err != nil {
		panic(err)
	}
	rows := strings.Split(strings.TrimRight(string(data), "\\n"), "\\n")
	names, kinds := strings.Split(rows[0], "\\t"), strings.Split(rows[1], "\\t")
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for _, line := range rows[2:] {
		cells := strings.Split(line, "\\t")
		row := map[string]any{}
		for i, c := range names {
			switch {
			case cells[i] == "":
				row[c] = nil
			case kinds[i] == "n":
				v, _ := strconv.ParseFloat(cells[i], 64)
				row[c] = v
			default:
				row[c] = cells[i]
			}
		}
		out := score(row)
		parts := make([]string, len(out))
		for k, v := range out {
			parts[k] = strconv.FormatFloat(v, 'g', -1, 64)
		}
		fmt.Fprintf(w, "%%s\\t%%s\\n", name, strings.Join(parts, " "))
	}
}

func main() {
%(calls)s
}
"""


def _go(root, inputs, names, sources):
    _tool("go")
    (root / "go.mod").write_text("module modelporttest\n\ngo 1.19\n")
    imports, calls = [], []
    for n in names:
        pkg = identifier(n)
        folder = root / "models" / pkg
        folder.mkdir(parents=True, exist_ok=True)
        (folder / file_name("go", n)).write_text(sources[n])
        imports.append(f'\t{pkg} "modelporttest/models/{pkg}"')
        if case(n)[1].task == "regression":
            calls.append(f'\trun("{n}", func(r map[string]any) []float64 '
                         f'{{ return []float64{{{pkg}.Score(r)}} }})')
        else:
            calls.append(f'\trun("{n}", {pkg}.Score)')
    (root / "main.go").write_text(_GO_DRIVER % {"imports": "\n".join(imports),
                                                "calls": "\n".join(calls)})
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local",
           "GOCACHE": os.environ.get("GOCACHE", str(Path.home() / ".cache" / "go-build"))}
    _run(["go", "build", "-o", "models_bin", "."], root, env=env)
    return _read_outputs(_run(["./models_bin"], root, env=env))


_BUILDERS = {"python": _python, "javascript": _javascript, "c": _c, "java": _java, "go": _go}


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("compiled-code"))


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", MODELS)
def test_generated_code_matches_scikit_learn(language, name, build_dir):
    if refuses(name):
        with pytest.raises(ConversionError, match="float32"):
            generate(case(name)[3], language, name)
        return
    got = code_results(language, build_dir)[name]
    assert_close(name, got, expected_vector(name), language)


def test_churn_hgb_has_300_trees_and_splits_into_many_functions():
    from modelport.compile.codegen.java import generate as java

    model_ir = case(CHURN)[3]
    assert len(model_ir.model.trees) == 300
    source = java(model_ir, CHURN)
    assert source.count("static void tree") >= 300
    # every method stays far below the JVM's 64 KB bytecode limit
    longest = max(len(block) for block in source.split("static void tree")[1:])
    assert longest < 40_000


def test_float_literals_round_trip_exactly():
    from modelport.compile.codegen.lowering import Lowering

    lo = Lowering.__new__(Lowering)
    for v in (0.1, 1 / 3, -2.5e-300, 1e22, 123456789.123456789):
        assert float(lo.num(v).strip("()")) == v


@pytest.mark.parametrize("family", [n for n in zoo.NAMES if n != "xgboost"])
def test_compiled_predictor_passes_the_predictor_conformance_suite(family):
    from modelport.formats import compiled
    from modelport.formats.native import infer_task
    from modelport.testing import check_predictor

    if family in ("lightgbm",):
        need_module("lightgbm", "gbm")
    model, sample = zoo.build(family)
    task = infer_task(model)
    sig = Signature.infer(sample, task, classes_of(model) if task == "classification" else None)
    predictor = compiled.load(compiled.convert(model, sig, sample), sig)
    check_predictor(predictor, NativePredictor(model, sig), sample, compiled.TOLERANCE)

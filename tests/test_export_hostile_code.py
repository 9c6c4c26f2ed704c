"""Hostile names and categories reach generated code as text, never as code.

Column names, category values and class labels come from data and from files users receive
from others. Each test here pins one way such text used to break out of generated code, on
a model whose names carry it: a Python docstring closed by a column name (and the exporter
running the module in its own process), a C comment closed by ``*/``, JavaScript and Go
comments ended by U+2028 or a newline, a Java comment ended by the unicode escape
``\\u000a``, ``\\N`` in a Python module, a raw CR and the trigraph ``??/`` in a C string.
Every artefact must compile, score exactly like the native model on rows keyed by the
original names, and leave the canary file uncreated; a text a language cannot hold (NUL in
C) is refused with one line.

The helpers below compile and run generated code in each language in separate processes,
with rows that carry any text (hex-encoded for Java, Go and C, JSON for Python and
JavaScript); ``test_quoting_code`` drives them with generated names.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelport
from modelport.compile import codegen, to_ir
from modelport.errors import UserError
from modelport.signature import Signature

from conftest import unavailable

TOL = 1e-9
#: created by any payload that runs; it must never exist
CANARY = Path(tempfile.gettempdir()) / f"modelport-canary-{os.getpid()}"
C = str(CANARY)
#: text that runs code where it lands unescaped, one per target
PAYLOADS = {
    "python": f'age"""+str(__import__("pathlib").Path({C!r}).touch())+"""',
    "python_single": f'"+str(__import__("pathlib").Path({C!r}).touch())+"',
    "javascript": f'*/\u2028import("node:fs").then(f => f.writeFileSync({json.dumps(C)}, ""))'
                  f'\n//',
    "c": f'*/ __attribute__((constructor)) static void mp_pwn(void) {{ '
         f'__builtin_abort(); }} /* {C}',
    "java": f'\\u000a static {{ try {{ new java.io.File({json.dumps(C)}).createNewFile(); }} '
            f'catch (Exception e) {{}} }} //',
    "go": f'\nfunc init() {{ _ = os.WriteFile({json.dumps(C)}, nil, 0o644) }}\n//',
}
LANGUAGES = ("python", "javascript", "c", "java", "go")

pytestmark = [
    pytest.mark.filterwarnings("ignore:Found unknown categories"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]


@pytest.fixture(autouse=True)
def no_canary():
    CANARY.unlink(missing_ok=True)
    yield
    assert not CANARY.exists(), "a payload in a name ran"


# --- a model whose names carry the text ------------------------------------------------------


def hostile_frame(numeric: list[str], categorical: dict[str, list[str]], n: int = 60,
                  seed: int = 0) -> pd.DataFrame:
    """Training rows: numbers (some missing) and categories drawn from the given values
    (some missing)."""
    rng = np.random.default_rng(seed)
    data = {}
    for c in numeric:
        values = np.round(rng.normal(size=n), 2)
        values[rng.uniform(size=n) < 0.1] = np.nan
        data[c] = values
    for c, values in categorical.items():
        picked = np.array(values, dtype=object)[rng.integers(0, len(values), n)]
        picked[rng.uniform(size=n) < 0.1] = None
        data[c] = pd.Series(picked, dtype=object)
    return pd.DataFrame(data)


def hostile_model(numeric: list[str], categorical: dict[str, list[str]],
                  classes: list[str], fill: str = "missing", seed: int = 0):
    """(pipeline, signature, rows to score) for a classifier over ``numeric`` and
    ``categorical`` columns: imputed numbers; categories imputed with ``fill``, one-hot and
    ordinal encoded. The rows to score add unseen categories and all-missing rows."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    X = hostile_frame(numeric, categorical, seed=seed)
    rng = np.random.default_rng(seed + 1)
    y = np.array(classes, dtype=object)[rng.integers(0, len(classes), len(X))]
    y[: len(classes)] = classes
    parts = []
    if numeric:
        parts.append(("num", SimpleImputer(strategy="median"), numeric))
    if categorical:
        cats = list(categorical)
        parts += [
            ("onehot", make_pipeline(SimpleImputer(strategy="constant", fill_value=fill),
                                     OneHotEncoder(handle_unknown="ignore")), cats),
            ("ordinal", make_pipeline(SimpleImputer(strategy="constant", fill_value=fill),
                                      OrdinalEncoder(handle_unknown="use_encoded_value",
                                                     unknown_value=-1)), cats),
        ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make_pipeline(ColumnTransformer(parts), LogisticRegression(max_iter=200))
        model.fit(X, y)
    sig = Signature.infer(X, "classification", [str(c) for c in model.classes_])
    rows = X.copy()
    for i, c in enumerate(categorical):
        rows.loc[i % len(rows), c] = f"unseen {c}"
    rows.loc[len(rows)] = [None] * len(rows.columns)
    return model, sig, sig.coerce(rows)


def native_scores(model, frame: pd.DataFrame) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.predict_proba(frame)


# --- running generated code in each language, in other processes -----------------------------


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (None if v is None or v != v else v) for k, v in r.items()}
            for r in frame.to_dict("records")]


def run_tool(cmd: list[str], cwd: Path, env: dict | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, f"{cmd[0]} failed:\n{proc.stderr[-3000:]}\n{proc.stdout[-1000:]}"
    return proc.stdout


def need_tool(name: str) -> None:
    if shutil.which(name) is None:
        unavailable(f"{name} is not installed")


def _floats(text: str) -> np.ndarray:
    return np.array([[float(v) for v in line.split()] for line in text.splitlines()
                     if line.strip()], dtype=np.float64)


_PYTHON_DRIVER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("hostile", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
for row in json.load(open("rows.json")):
    out = module.score(row)
    print(" ".join(repr(float(v)) for v in (out if isinstance(out, list) else [out])))
"""


def _python(folder: Path, source: str, sig, frame) -> np.ndarray:
    (folder / "hostile.py").write_text(source)
    (folder / "rows.json").write_text(json.dumps(_records(frame)))
    return _floats(run_tool([sys.executable, "-I", "-c", _PYTHON_DRIVER, "hostile.py"], folder))


_JS_DRIVER = """
import { readFileSync } from "node:fs";
import { score } from "./hostile.mjs";
for (const row of JSON.parse(readFileSync("rows.json", "utf8"))) {
  const out = score(row);
  console.log((Array.isArray(out) ? out : [out]).map(String).join(" "));
}
"""


def _javascript(folder: Path, source: str, sig, frame) -> np.ndarray:
    need_tool("node")
    (folder / "hostile.mjs").write_text(source)
    (folder / "rows.json").write_text(json.dumps(_records(frame)))
    (folder / "driver.mjs").write_text(_JS_DRIVER)
    return _floats(run_tool(["node", "driver.mjs"], folder))


def _cells(frame: pd.DataFrame, encode) -> str:
    """Rows as lines of space-separated cells: ``-`` missing, ``n<number>``, ``s<hex>``."""
    lines = []
    for row in _records(frame):
        lines.append(" ".join("-" if v is None else
                              f"s{encode(v)}" if isinstance(v, str) else f"n{float(v)!r}"
                              for v in row.values()))
    return "\n".join(lines) + "\n"


def _utf16_hex(text: str) -> str:
    return text.encode("utf-16-be", "surrogatepass").hex()


def _utf8_hex(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").hex()


_JAVA_DRIVER = """
import java.nio.file.*;
import java.util.*;

public class Driver {
    static String text(String hex) {
        char[] c = new char[hex.length() / 4];
        for (int i = 0; i < c.length; i++)
            c[i] = (char) Integer.parseInt(hex.substring(4 * i, 4 * i + 4), 16);
        return new String(c);
    }

    public static void main(String[] args) throws Exception {
        List<String> lines = Files.readAllLines(Paths.get("rows.txt"));
        String[] names = lines.get(0).split(" ", -1);
        StringBuilder sb = new StringBuilder();
        for (String line : lines.subList(1, lines.size())) {
            String[] cells = line.split(" ", -1);
            Map<String, Object> row = new HashMap<>();
            for (int i = 0; i < cells.length; i++) {
                String c = cells[i];
                Object v = c.equals("-") ? null : c.charAt(0) == 'n'
                    ? (Object) Double.parseDouble(c.substring(1)) : text(c.substring(1));
                row.put(text(names[i].substring(1)), v);
            }
            double[] out = %(cls)s.score(row);
            for (int k = 0; k < out.length; k++) sb.append(k > 0 ? " " : "").append(out[k]);
            sb.append('\\n');
        }
        System.out.print(sb);
    }
}
"""


def _java(folder: Path, source: str, sig, frame, name: str) -> np.ndarray:
    need_tool("javac")
    cls = codegen.class_name(name)
    (folder / codegen.file_name("java", name)).write_text(source)
    (folder / "Driver.java").write_text(_JAVA_DRIVER % {"cls": cls})
    header = " ".join("h" + _utf16_hex(n) for n in sig.names)
    (folder / "rows.txt").write_text(header + "\n" + _cells(frame, _utf16_hex))
    run_tool(["javac", "-nowarn", "-d", "classes", "Driver.java", codegen.file_name("java", name)],
         folder)
    return _floats(run_tool(["java", "-cp", "classes", "Driver"], folder))


_GO_DRIVER = """package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	model "hostiletest/%(pkg)s"
)

func text(h string) string {
	b, err := hex.DecodeString(h)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func main() {
	data, err := os.ReadFile("rows.txt")
	if err != nil {
		panic(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\\n"), "\\n")
	names := strings.Split(lines[0], " ")
	for _, line := range lines[1:] {
		cells := strings.Split(line, " ")
		row := map[string]any{}
		for i, c := range cells {
			key := text(names[i][1:])
			switch {
			case c == "-":
				row[key] = nil
			case c[0] == 'n':
				v, _ := strconv.ParseFloat(c[1:], 64)
				row[key] = v
			default:
				row[key] = text(c[1:])
			}
		}
		out := model.Score(row)
		parts := make([]string, len(out))
		for k, v := range out {
			parts[k] = strconv.FormatFloat(v, 'g', -1, 64)
		}
		fmt.Println(strings.Join(parts, " "))
	}
}
"""


def _go(folder: Path, source: str, sig, frame, name: str) -> np.ndarray:
    need_tool("go")
    pkg = codegen.identifier(name)
    (folder / "go.mod").write_text("module hostiletest\n\ngo 1.19\n")
    (folder / pkg).mkdir()
    (folder / pkg / codegen.file_name("go", name)).write_text(source)
    (folder / "main.go").write_text(_GO_DRIVER % {"pkg": pkg})
    header = " ".join("h" + _utf8_hex(n) for n in sig.names)
    (folder / "rows.txt").write_text(header + "\n" + _cells(frame, _utf8_hex))
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local",
           "GOCACHE": os.environ.get("GOCACHE", str(Path.home() / ".cache" / "go-build"))}
    run_tool(["go", "vet", "."], folder, env=env)
    run_tool(["go", "build", "-o", "hostile_bin", "."], folder, env=env)
    return _floats(run_tool(["./hostile_bin"], folder, env=env))


_C_DRIVER = r"""
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void %(sym)s_score(const double *num, const char *const *cat, double *out);

static char *text(const char *hex, size_t n) {
    char *s = malloc(n / 2 + 1);
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%%2x", &v);
        s[i] = (char) v;
    }
    s[n / 2] = 0;
    return s;
}

int main(void) {
    FILE *f = fopen("rows.txt", "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len = getline(&line, &cap, f);
    char kinds[4096];
    int n_in = 0;
    for (ssize_t i = 0; i < len; i++)
        if (line[i] == 'n' || line[i] == 'c') kinds[n_in++] = line[i];
    while ((len = getline(&line, &cap, f)) > 0) {
        double num[4096];
        const char *cat[4096];
        char *owned[4096];
        int a = 0, b = 0, k = 0;
        char *p = line;
        for (int i = 0; i < n_in; i++) {
            size_t n = strcspn(p, " \n");
            if (kinds[i] == 'n') {
                num[a++] = *p == '-' ? NAN : strtod(p + 1, NULL);
            } else if (*p == '-') {
                cat[b++] = NULL;
            } else {
                owned[k] = text(p + 1, n - 1);
                cat[b++] = owned[k++];
            }
            p += n + 1;
        }
        double out[%(n_out)d];
        %(sym)s_score(num, cat, out);
        for (int j = 0; j < %(n_out)d; j++) printf(j ? " %%.17g" : "%%.17g", out[j]);
        printf("\n");
        while (k) free(owned[--k]);
    }
    free(line);
    fclose(f);
    return 0;
}
"""


def _c(folder: Path, source: str, sig, frame, name: str) -> np.ndarray:
    need_tool("gcc")
    sym = codegen.identifier(name)
    (folder / codegen.file_name("c", name)).write_text(source)
    n_out = len(sig.classes) if sig.task == "classification" else 1
    (folder / "driver.c").write_text(_C_DRIVER % {"sym": sym, "n_out": n_out})
    kinds = " ".join("n" if c.kind == "numeric" else "c" for c in sig.inputs)
    (folder / "rows.txt").write_text(kinds + "\n" + _cells(frame, _utf8_hex))
    # -std=c99 turns trigraphs on, as strict compilers have them; -Wall warns of any
    run_tool(["gcc", "-std=c99", "-O0", "-Wall", "-Werror", "-Wno-unused-variable", "-o",
          "hostile", "driver.c", codegen.file_name("c", name), "-lm"], folder)
    return _floats(run_tool(["./hostile"], folder))


def scorable(language: str, frame: pd.DataFrame) -> np.ndarray:
    """Rows the language can be given: C strings cannot hold NUL."""
    if language != "c":
        return np.ones(len(frame), dtype=bool)
    return np.array([not any(isinstance(v, str) and "\0" in v for v in r.values())
                     for r in _records(frame)])


def run_code(language: str, source: str, sig, frame: pd.DataFrame, name: str,
             folder: Path) -> np.ndarray:
    """Build ``source`` in ``folder`` and score the scorable rows of ``frame`` with it, in
    processes of their own; returns one row of outputs per scorable row."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = frame[scorable(language, frame)].reset_index(drop=True)
    if language == "python":
        return _python(folder, source, sig, rows)
    if language == "javascript":
        return _javascript(folder, source, sig, rows)
    return {"c": _c, "java": _java, "go": _go}[language](folder, source, sig, rows, name)


def assert_scores_like_native(language: str, model, sig, frame, name: str,
                              folder: Path) -> None:
    """Generate ``language`` from the model, build and run it: it scores every row it can
    be given like the native model, to 1e-9."""
    source = codegen.generate(to_ir(model, sig), language, name)
    got = run_code(language, source, sig, frame, name, folder)
    expected = native_scores(model, frame)[scorable(language, frame)]
    assert got.shape == expected.shape, (language, got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL, err_msg=language)


# --- the findings, each on the model that showed it -------------------------------------------


def _register(model, sig, frame, name: str = "hostile"):
    rows = frame.iloc[:-1]  # the registered sample is training data
    return modelport.log_model(model, name, sample=rows, formats=["joblib"])


def test_python_export_runs_no_payload_from_a_column_name(tmp_path):
    """A MOJO's column named like a docstring's end ran `id` on `export --format python`."""
    from modelport.compile import export

    model, sig, frame = hostile_model([PAYLOADS["python"], "tenure"],
                                      {"plan": ["basic", "premium"]}, ["no", "yes"])
    _register(model, sig, frame)
    files = export("hostile", "python", tmp_path / "out")
    source = (tmp_path / "out" / "hostile.py").read_text()
    assert tmp_path / "out" / "hostile.py" in files
    assert PAYLOADS["python"] not in source.split("COLUMNS = (")[0]  # not in the docstring
    got = run_code("python", source, sig, frame, "hostile", tmp_path / "run")
    np.testing.assert_allclose(got, native_scores(model, frame), rtol=0, atol=TOL)


def test_bundle_export_runs_no_payload_from_a_column_name(tmp_path):
    from modelport.compile import export

    model, sig, frame = hostile_model([PAYLOADS["python"], PAYLOADS["python_single"]],
                                      {"plan": ["basic", PAYLOADS["python_single"]]},
                                      ["no", "yes"])
    _register(model, sig, frame)
    export("hostile", "bundle", tmp_path / "bundle")
    parity = json.loads((tmp_path / "bundle" / "parity.json").read_text())
    assert parity["targets"]["python"]["max_abs_diff"] <= TOL
    assert "separate interpreter" in parity["targets"]["python"]["checked"]
    readme = (tmp_path / "bundle" / "README.md").read_text()
    assert "%XX escapes" in readme and PAYLOADS["python"] not in readme


def test_proof_of_generated_python_runs_in_another_process(tmp_path):
    from modelport.compile.proof import check_python

    marker = tmp_path / "pid"
    source = (f"import os\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\n"
              "def score(row):\n    return [0.5, 0.5]\n")
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    assert check_python(source, (frame, {"proba": np.full((2, 2), 0.5)})) == 0.0
    assert int(marker.read_text()) != os.getpid()


def test_python_module_holds_backslash_n_in_names(tmp_path):
    """`\\N` in a name made the Python module a syntax error."""
    from modelport.compile import export

    model, sig, frame = hostile_model(["plan\\N", "a\\N{BULLET}"],
                                      {"region\\x": ["n\\N", "\\u0041"]}, ["no", "yes"])
    _register(model, sig, frame)
    export("hostile", "python", tmp_path / "out")
    got = run_code("python", (tmp_path / "out" / "hostile.py").read_text(), sig, frame,
                   "hostile", tmp_path / "run")
    np.testing.assert_allclose(got, native_scores(model, frame), rtol=0, atol=TOL)


def test_c_comment_closer_in_a_name_stays_in_the_name(tmp_path):
    """`*/` in a name ended the C header comment and added code."""
    model, sig, frame = hostile_model([PAYLOADS["c"], "x*/y"], {"plan*/": ["a*/b", "/*c"]},
                                      ["no*/", "yes"])
    assert_scores_like_native("c", model, sig, frame, "hostile", tmp_path)


def test_c_string_holds_carriage_returns_and_trigraphs(tmp_path):
    """A raw CR or `??/` (a backslash to a C99 compiler) broke the C string literal."""
    model, sig, frame = hostile_model(["tenure??/", "cr\r"],
                                      {"plan??/": ["a??/", "b\r", "c??=", "d\\"]},
                                      ["no", "yes"], fill="fill??/")
    assert_scores_like_native("c", model, sig, frame, "hostile", tmp_path)


def test_javascript_line_terminators_in_names_end_no_comment(tmp_path):
    """U+2028 and newlines in a name ended the JavaScript header comment."""
    model, sig, frame = hostile_model([PAYLOADS["javascript"], "a\u2029b", "c\nd"],
                                      {"plan\u2028": ["x\u2028y", "</script>", "\n"]},
                                      ["no\u2028", "yes"])
    assert_scores_like_native("javascript", model, sig, frame, "hostile", tmp_path)


def test_go_newline_in_a_name_ends_no_comment(tmp_path):
    model, sig, frame = hostile_model([PAYLOADS["go"], "a`b"], {"plan\n": ["x\ny", "`"]},
                                      ["no\n", "yes"])
    assert_scores_like_native("go", model, sig, frame, "hostile", tmp_path)


def test_java_unicode_escape_in_a_name_ends_no_comment(tmp_path):
    """Java decodes `\\u000a` before lexing, so it ended a `//` comment holding it."""
    model, sig, frame = hostile_model([PAYLOADS["java"], "q\\u0022", "\\\\u000a"],
                                      {"plan\\u000d": ["\\u000a", "\\u005c", "\\uuuu0022"]},
                                      ["no\\u000a", "yes"])
    assert_scores_like_native("java", model, sig, frame, "hostile", tmp_path)


def test_c_export_of_a_name_holding_nul_is_refused_with_one_line(tmp_path):
    from test_compile_export import run_cli

    model, sig, frame = hostile_model(["a\0b"], {"plan": ["x", "y"]}, ["no", "yes"])
    _register(model, sig, frame)
    proc = run_cli("export", "hostile", "--format", "c", "--out", str(tmp_path / "c"), rc=2)
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "hostile/1 cannot be exported as c" in proc.stderr and "NUL" in proc.stderr
    assert not (tmp_path / "c").exists()
    # the languages whose strings hold NUL take the same model
    for language in ("python", "javascript", "java", "go"):
        assert_scores_like_native(language, model, sig, frame, "hostile", tmp_path / language)


def test_c_category_holding_nul_equals_no_c_string(tmp_path):
    model, sig, frame = hostile_model(["x"], {"plan": ["a", "a\0b", "c"]}, ["no", "yes"])
    assert_scores_like_native("c", model, sig, frame, "hostile", tmp_path)


def test_generation_refuses_what_a_language_cannot_hold_with_a_user_error():
    model, sig, _ = hostile_model(["x"], {"plan": ["a", "b"]}, ["no", "yes"], fill="f\0g")
    with pytest.raises(UserError, match="NUL"):
        codegen.generate(to_ir(model, sig), "c", "hostile")

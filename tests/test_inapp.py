"""In-app serving: the runtime scores exported churn models exactly, checks rows as the web
service does, and needs nothing but NumPy (proved in a fresh virtual environment).

The two churn models (a logistic and a gradient-boosting pipeline) are trained, registered
and bundled once per test session by ``examples/inapp/export.py``; the examples' own tests
(``test_inapp_examples.py``) share them through :func:`churn_bundles`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import cached_venv, need_module

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "inapp"
#: customers the example models are trained on in tests (the sample is 1,000 of them)
ROWS = int(os.environ.get("MODELPORT_INAPP_ROWS", "2000"))
#: where fresh virtual environments are kept between runs
VENV_CACHE = Path(os.environ.get("MODELPORT_TEST_CACHE", Path.home() / ".cache" / "modelport-tests"))
#: what the in-app runtime must never pull in
HEAVY = ("sklearn", "pandas", "scipy", "pyarrow", "sqlalchemy", "onnx", "modelport.registry",
         "modelport.signature", "modelport.compile", "modelport.predictor")


def example_module(name: str):
    spec = importlib.util.spec_from_file_location(f"inapp_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Bundle:
    """One exported churn model and what the native model says about its registered sample."""

    name: str
    folder: Path
    uri: str
    home: Path
    sample: object            # the registered sample, a DataFrame
    rows: list[dict]          # the same rows as plain dicts (None for missing values)
    proba: np.ndarray         # the native model's predict_proba on them
    labels: np.ndarray
    native: object            # the fitted scikit-learn pipeline


_BUILT: dict[str, dict[str, Bundle]] = {}


def churn_bundles(tmp_path_factory) -> dict[str, Bundle]:
    """Both example bundles, built once per session with ``examples/inapp/export.py``."""
    if "bundles" not in _BUILT:
        from modelport.registry import Registry

        home = tmp_path_factory.mktemp("inapp-home")
        out = tmp_path_factory.mktemp("inapp-bundles")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MODELPORT_HOME", str(home))
            mp.delenv("MODELPORT_REGISTRY", raising=False)
            mp.delenv("MODELPORT_ARTIFACTS", raising=False)
            mp.setenv("OMP_NUM_THREADS", "1")
            folders = example_module("export").main(["--rows", str(ROWS), "--out", str(out)],
                                                    echo=lambda *_: None)
            reg = Registry()
            built = {}
            for name, folder in folders.items():
                uri = json.loads((folder / "bundle.json").read_text())["uri"]
                version = reg.get(uri)
                sample = reg.sample(version)
                native = reg.load(version, format="joblib").model
                built[name] = Bundle(name, folder, uri, home, sample, records(sample),
                                     native.predict_proba(sample), native.predict(sample), native)
        _BUILT["bundles"] = built
    return _BUILT["bundles"]


def records(frame) -> list[dict]:
    """Rows of a DataFrame as dicts of plain Python values, None for missing."""
    out = []
    for row in frame.astype(object).to_dict("records"):
        out.append({k: None if v is None or (isinstance(v, float) and math.isnan(v))
                    or str(v) == "<NA>" else v for k, v in row.items()})
    return out


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Bundle]:
    return churn_bundles(tmp_path_factory)


MODELS = ("logistic", "hgb")


# --- the runtime scores exactly ------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_runtime_matches_the_registered_model_on_its_sample(bundles, name):
    from modelport import inapp

    b = bundles[name]
    model = inapp.load(b.folder)
    assert (model.name, model.format, model.classes) == ("churn", "compiled", [0, 1])
    as_records = model.predict_proba(b.rows)
    np.testing.assert_allclose(as_records, b.proba, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(model.predict(b.rows), b.labels)
    # every input shape a caller may hold scores the same
    np.testing.assert_allclose(model.predict_proba(b.sample), b.proba, rtol=0, atol=1e-9)
    columns = {k: [r[k] for r in b.rows] for k in model.input_names}
    np.testing.assert_allclose(model.predict_proba(columns), b.proba, rtol=0, atol=1e-9)
    matrix = np.array([[r[k] for k in model.input_names] for r in b.rows], dtype=object)
    np.testing.assert_allclose(model.predict_proba(matrix), b.proba, rtol=0, atol=1e-9)
    # one row at a time takes the scalar path: the same numbers
    one_by_one = np.vstack([model.predict_proba(r) for r in b.rows[:200]])
    np.testing.assert_allclose(one_by_one, b.proba[:200], rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", MODELS)
def test_runtime_scores_the_onnx_graph_of_the_bundle(bundles, name):
    need_module("onnxruntime", "onnx")
    from modelport import inapp

    b = bundles[name]
    model = inapp.load(b.folder, format="onnx")
    assert model.format == "onnx"
    proba = model.predict_proba(b.rows)
    np.testing.assert_allclose(proba, b.proba, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(model.predict(b.rows), b.labels)
    # float32 sums may round differently in a batch of one
    np.testing.assert_allclose(model.predict_proba(b.rows[0]), proba[:1], rtol=0, atol=1e-6)
    # the graph alone, with the signature beside it, reads its layout from its own metadata
    alone = inapp.load(b.folder / "churn.onnx")
    np.testing.assert_allclose(alone.predict_proba(b.rows), proba, rtol=0, atol=1e-12)


def test_runtime_loads_a_compiled_file_on_its_own(bundles, tmp_path):
    from modelport import inapp

    b = bundles["hgb"]
    shutil.copy(b.folder / "churn.compiled.json", tmp_path / "model.json")
    model = inapp.load(tmp_path / "model.json")
    assert model.format == "compiled" and model.name is None
    np.testing.assert_allclose(model.predict_proba(b.rows), b.proba, rtol=0, atol=1e-9)


def test_runtime_imports_nothing_but_numpy(bundles):
    code = (
        "import sys\n"
        "from modelport import inapp\n"
        f"m = inapp.load({str(bundles['hgb'].folder)!r})\n"
        f"m.predict_proba({bundles['hgb'].rows[:3]!r})\n"
        f"print([n for n in {HEAVY!r} if n in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_bundle_carries_the_kernel_verbatim(bundles):
    from modelport import kernel

    vendored = bundles["hgb"].folder / "modelport_inapp.py"
    assert vendored.read_text() == Path(kernel.__file__).read_text()


def test_the_kernels_old_path_still_imports_the_same_objects():
    import modelport.inapp
    from modelport import inapp, kernel
    from modelport.inapp.runtime import Forest, InputWarning, double_split

    assert Forest is kernel.Forest and double_split is kernel.double_split  # beyond __all__
    assert InputWarning is kernel.InputWarning  # so warning filters on either path match
    assert modelport.inapp.runtime.__all__ == kernel.__all__
    for name in inapp.__all__:
        assert getattr(inapp, name) is getattr(kernel, name), name


# --- input checks mirror the web service -------------------------------------------------------


def _bad_rows(row: dict) -> dict[str, tuple[dict, str]]:
    """Rows the web service refuses, and the field it names."""
    without_age = {k: v for k, v in row.items() if k != "age"}
    return {
        "unseen category": ({**row, "plan": "platinum"}, "plan"),
        "absent field": (without_age, "age"),
        "unknown field": ({**row, "customer_id": 7}, "customer_id"),
        "text for a number": ({**row, "age": "forty"}, "age"),
        "number out of range": ({**row, "tenure_months": 10_000}, "tenure_months"),
        "a list for a value": ({**row, "region": ["north", "south"]}, "region"),
    }


@pytest.mark.parametrize("case", list(_bad_rows({"x": 0})))
def test_input_checks_refuse_what_the_web_service_refuses(bundles, case):
    from modelport import inapp
    from modelport.scoring.checks import InputPolicy, Unreadable, check
    from modelport.signature import Signature

    b = bundles["logistic"]
    row, field = _bad_rows(b.rows[0])[case]
    signature = Signature.from_dict(json.loads((b.folder / "signature.json").read_text()))
    strict = InputPolicy.of(strict=True)
    try:  # one record, as the JSON routes decode it
        served = check({k: [v] for k, v in row.items()}, signature, strict)
        assert served.first_reject() is not None
        assert served.first_reject()[1].field == field
    except Unreadable as exc:
        assert exc.field == field
    model = inapp.load(b.folder, strict=True)
    with pytest.raises(inapp.InputError) as refused:
        model.predict_proba(row)
    assert refused.value.field == field
    assert repr(field) in str(refused.value)
    # inside a batch too, naming the row
    with pytest.raises(inapp.InputError, match=rf"(row|record) 1\b.*{field}|{field}.*row 1\b"):
        model.predict_proba([b.rows[1], row])


@pytest.mark.parametrize("case", ["unseen category", "number out of range"])
def test_values_outside_training_are_scored_with_a_warning_by_default(bundles, case):
    from modelport import inapp

    b = bundles["logistic"]
    row, field = _bad_rows(b.rows[0])[case]
    with pytest.warns(inapp.InputWarning, match=repr(field)):
        got = inapp.load(b.folder).predict_proba(row)
    assert got.shape == (1, 2) and np.isfinite(got).all()


def test_a_record_missing_a_field_among_complete_ones_is_refused(bundles):
    from modelport import inapp

    b = bundles["hgb"]
    partial = {k: v for k, v in b.rows[1].items() if k != "region"}
    with pytest.raises(inapp.InputError, match="record 1 is missing field 'region'"):
        inapp.load(b.folder).predict_proba([b.rows[0], partial])


def test_flagged_rows_score_with_the_models_own_handling(bundles):
    from modelport import inapp

    b = bundles["logistic"]
    row = {**b.rows[0], "plan": "platinum", "tenure_months": 1_000}
    model = inapp.load(b.folder, unseen_categories="warn", out_of_range="flag")
    with pytest.warns(inapp.InputWarning) as caught:
        got = model.predict_proba(row)
    assert {w.message.args[0].split()[1] for w in caught} == {"'plan'", "'tenure_months'"}
    frame = b.sample.iloc[[0]].copy()
    frame["plan"], frame["tenure_months"] = "platinum", 1_000
    np.testing.assert_allclose(got, b.native.predict_proba(frame), rtol=0, atol=1e-9)


def test_missing_values_take_the_models_defaults(bundles):
    import pandas as pd

    from modelport import inapp

    for b in bundles.values():
        rows = [dict.fromkeys(b.rows[0]), {**b.rows[2], "age": float("nan"), "region": None}]
        got = inapp.load(b.folder).predict_proba(rows)
        # what scikit-learn is fed for the same rows: NaN for every missing value
        frame = pd.DataFrame(rows)
        for c in frame.columns:
            numeric = b.sample[c].dtype.kind in "iuf"
            frame[c] = (pd.to_numeric(frame[c]) if numeric
                        else frame[c].astype(object).where(frame[c].notna(), np.nan))
        np.testing.assert_allclose(got, b.native.predict_proba(frame), rtol=0, atol=1e-9)


def test_a_missing_value_the_model_has_no_default_for_is_refused(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import modelport
    from modelport import inapp
    from modelport.compile import export

    import zoo

    _, numeric, y, _ = zoo.data(n=200)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(numeric, y)
    modelport.log_model(model, "plain", sample=numeric.head(50), formats=["joblib", "compiled"])
    export("plain", "bundle", tmp_path / "b")
    loaded = inapp.load(tmp_path / "b")
    row = numeric.iloc[0].to_dict()
    np.testing.assert_allclose(loaded.predict_proba(row), model.predict_proba(numeric.head(1)),
                               rtol=0, atol=1e-9)
    first = next(iter(row))
    with pytest.raises(inapp.InputError, match=f"field '{first}' is missing and the "
                       "model has no default"):
        loaded.predict_proba([row, {**row, first: None}])


def test_bad_arguments_are_refused_with_the_fix(bundles, tmp_path):
    from modelport import inapp

    b = bundles["hgb"]
    with pytest.raises(ValueError, match="unseen_categories='ignore': use one of flag, reject"):
        inapp.load(b.folder, unseen_categories="ignore")
    with pytest.raises(inapp.InputError, match="cannot read input of type str"):
        inapp.load(b.folder).predict("tenure_months=3")
    with pytest.raises(inapp.InputError, match="has 3 columns but the model takes 10"):
        inapp.load(b.folder).predict([[1, 2, 3]])
    with pytest.raises(FileNotFoundError, match="the bundle's manifest is missing"):
        inapp.load(tmp_path)
    assert inapp.load(b.folder).predict_proba([]).shape == (0, 2)


# --- the bundle ------------------------------------------------------------------------------


def test_export_bundle_writes_every_target_with_signature_parity_and_readme(bundles, tmp_path,
                                                                             monkeypatch):
    from modelport.registry import Registry

    b = bundles["hgb"]
    monkeypatch.setenv("MODELPORT_HOME", str(b.home))
    out = tmp_path / "bundle"
    proc = subprocess.run([sys.executable, "-m", "modelport", "export", b.uri, "--format",
                           "bundle", "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    written = sorted(Path(f).name for f in json.loads(proc.stdout)["files"])
    assert written == sorted(["churn.compiled.json", "modelport_inapp.py", "churn.onnx",
                              "churn.mjs", "Churn.java", "churn.c", "churn.h", "churn.go",
                              "churn.py", "signature.json", "parity.json", "bundle.json",
                              "README.md"])
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["uri"] == b.uri and manifest["classes"] == [0, 1]
    assert manifest["onnx"]["inputs"] == "columns" and manifest["onnx"]["outputs"]["proba"]
    assert set(manifest["files"].values()) == set(written) - {"bundle.json"}
    version = Registry().get(b.uri)
    assert json.loads((out / "signature.json").read_text()) == version.signature
    parity = json.loads((out / "parity.json").read_text())
    assert parity["sample_rows"] == len(b.rows)
    targets = parity["targets"]
    assert targets["compiled"]["rows"] == len(b.rows)
    assert targets["compiled"]["max_abs_diff"] <= 1e-9 and targets["python"]["max_abs_diff"] <= 1e-9
    assert targets["onnx"]["max_abs_diff"] <= 1e-4 and targets["onnx"]["label_flips"] == 0
    readme = (out / "README.md").read_text()
    for fname in written:
        if fname != "README.md":
            assert f"`{fname}`" in readme, fname
    assert "inapp.load(" in readme and "churn_score(num, cat, out)" in readme
    # the example row the README shows, with the score it claims
    shown = readme.split("gives `[", 1)[1].split("]`", 1)[0]
    from modelport.compile.bundle import example_row
    from modelport.inapp import load

    got = load(out).predict_proba(example_row(version.signature))[0]
    assert [float(v) for v in shown.split(", ")] == pytest.approx(got.tolist(), rel=1e-5)


def test_bundle_of_a_model_the_compiler_cannot_take_keeps_its_onnx_graph(tmp_path):
    need_module("skl2onnx", "onnx")
    from sklearn.neighbors import KNeighborsClassifier

    import modelport
    from modelport import inapp
    from modelport.compile import export

    import zoo

    _, numeric, y, _ = zoo.data(n=200)
    model = KNeighborsClassifier().fit(numeric, y)
    modelport.log_model(model, "knn", sample=numeric.head(50), formats=["joblib", "onnx"])
    files = {p.name for p in export("knn", "bundle", tmp_path / "b")}
    assert "knn.onnx" in files and "knn.compiled.json" not in files and "knn.mjs" not in files
    parity = json.loads((tmp_path / "b" / "parity.json").read_text())
    assert "no compiler for KNeighborsClassifier" in parity["not_compiled"]
    loaded = inapp.load(tmp_path / "b")
    assert loaded.format == "onnx"
    np.testing.assert_allclose(loaded.predict_proba(numeric.head(50)),
                               model.predict_proba(numeric.head(50)), rtol=0, atol=1e-4)


def test_bundle_of_a_model_with_nothing_to_run_in_app_is_refused(tmp_path):
    from sklearn.neighbors import KNeighborsClassifier

    import modelport

    import zoo

    _, numeric, y, _ = zoo.data(n=100)
    modelport.log_model(KNeighborsClassifier().fit(numeric, y), "knn", sample=numeric,
                        formats=["joblib"])
    proc = subprocess.run([sys.executable, "-m", "modelport", "export", "knn", "--format",
                           "bundle", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=180, env=os.environ.copy())
    assert proc.returncode == 2, proc.stderr
    assert "knn/1 cannot be bundled" in proc.stderr
    assert "no accepted ONNX artefact" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


# --- nothing but NumPy: a fresh virtual environment ----------------------------------------


def fresh_venv(*packages: str) -> Path:
    """A virtual environment holding only ``packages`` (and their own dependencies), made
    once and kept (``conftest.cached_venv``); a cached one is reused only while it still
    holds exactly what it was made with (no scikit-learn, pandas, SciPy or modelport crept
    in), otherwise it is made anew."""
    python = cached_venv("inapp", list(packages), pip_args=("--only-binary", ":all:"),
                         check=lambda python: _holds_only(python.parent.parent, packages),
                         timeout=420)
    return python.parent.parent


def _holds_only(root: Path, packages: tuple[str, ...]) -> bool:
    proc = subprocess.run(
        [str(root / "bin" / "python"), "-I", "-c",
         "import importlib.metadata as m, json; "
         "print(json.dumps(sorted(d.metadata['Name'].lower() for d in m.distributions())))"],
        capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return False
    installed = set(json.loads(proc.stdout))
    forbidden = {"scikit-learn", "pandas", "scipy", "modelport", "pyarrow", "onnx"}
    return set(packages) <= installed and not installed & forbidden


def _run_app(python: Path, bundle: Path, rows: list[dict], tmp_path: Path, *args: str):
    example_module("export").write_customers(rows, tmp_path / "customers")
    with open(tmp_path / "customers.jsonl") as stdin:
        proc = subprocess.run([str(python), "-I", str(EXAMPLES / "python" / "app.py"),
                               str(bundle), *args], stdin=stdin, capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return np.array([[float(v) for v in line.split("\t")] for line in proc.stdout.splitlines()])


def test_python_example_runs_in_a_fresh_venv_with_only_numpy(bundles, tmp_path):
    venv = fresh_venv("numpy")
    python = venv / "bin" / "python"
    absent = subprocess.run(
        [str(python), "-I", "-c", "import importlib.util as u; print([m for m in "
         "('sklearn', 'pandas', 'scipy', 'modelport', 'onnxruntime') if u.find_spec(m)])"],
        capture_output=True, text=True, timeout=60)
    assert absent.stdout.strip() == "[]", absent.stdout + absent.stderr
    for b in bundles.values():
        got = _run_app(python, b.folder, b.rows, tmp_path)
        np.testing.assert_allclose(got, b.proba, rtol=0, atol=1e-9)
    # the kernel vendored as it is, one file under a name of the application's choosing
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    shutil.copyfile(ROOT / "src" / "modelport" / "kernel.py", vendor / "churn_runtime.py")
    b = bundles["hgb"]
    code = (f"import json, sys; sys.path.insert(0, {str(vendor)!r}); import churn_runtime\n"
            f"m = churn_runtime.load({str(b.folder)!r})\n"
            f"rows = [json.loads(line) for line in open({str(tmp_path / 'customers.jsonl')!r})]\n"
            "print(json.dumps(m.predict_proba(rows).tolist()))\n")
    proc = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(json.loads(proc.stdout), b.proba, rtol=0, atol=1e-9)


def test_python_example_scores_onnx_in_a_fresh_venv_with_numpy_and_onnxruntime(bundles,
                                                                                tmp_path):
    python = fresh_venv("numpy", "onnxruntime") / "bin" / "python"
    for b in bundles.values():
        got = _run_app(python, b.folder, b.rows, tmp_path, "--format", "onnx")
        np.testing.assert_allclose(got, b.proba, rtol=0, atol=1e-4)


def test_python_example_reports_a_customer_it_cannot_score_and_goes_on(bundles, tmp_path):
    b = bundles["logistic"]
    rows = [b.rows[0], {**b.rows[1], "contract": "lifetime"}, b.rows[2]]
    example_module("export").write_customers(rows, tmp_path / "customers")

    def app(*options):
        with open(tmp_path / "customers.jsonl") as stdin:
            return subprocess.run([sys.executable, str(EXAMPLES / "python" / "app.py"),
                                   str(b.folder), *options], stdin=stdin, capture_output=True,
                                  text=True, timeout=120)

    flagged = app()  # an unseen contract is scored, with a warning
    assert flagged.returncode == 0, flagged.stderr
    assert "customer 1: warning: field 'contract' value 'lifetime'" in flagged.stderr
    assert len([line for line in flagged.stdout.split("\n") if line]) == 3
    proc = app("--strict")
    assert proc.returncode == 1
    assert "customer 1: field 'contract' value 'lifetime'" in proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[1] == ""
    np.testing.assert_allclose([float(v) for v in lines[2].split("\t")], b.proba[2], atol=1e-9)

"""Column names, categories and class labels from data reach PMML through the XML quoting
layer: markup characters, quotes, whitespace XML would normalise and names modelport uses
for its own fields come back exactly in an independent evaluator (pypmml); what XML cannot
carry at all is refused with one line naming it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from modelport.compile import to_ir
from modelport.compile.pmml import to_pmml
from modelport.errors import UserError
from modelport.formats import pmml
from modelport.formats.native import NativePredictor, classes_of, infer_task
from modelport.parity import compare
from modelport.quoting import xml
from modelport.signature import Signature

from conftest import need_module, unavailable

pytestmark = [pytest.mark.filterwarnings("ignore::modelport.kernel.InputWarning")]

#: names an input column may have, each a way text could break out of an XML value or be
#: changed on the way back, or a name the writer uses for one of its own fields
HOSTILE_COLUMNS = [
    'q"uote\'s', "<tag attr='1'>&amp;", "tab\tnew\nline\rcr", " padded ", "]]>--><!--",
    "ünïcödé 😀", "target", "label", "probability(yes <&>)", "score(no\r\n)", "x\x85\u2028y",
]
HOSTILE_CATEGORIES = ["a\rb", "<b>&c;</b>", " ", "'\"", "\t"]
HOSTILE_CLASSES = ["yes <&>", "no\r\n"]


def _frame(n: int = 240, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({c: rng.normal(size=n) for c in HOSTILE_COLUMNS if c != CATEGORICAL})
    X[CATEGORICAL] = rng.choice(HOSTILE_CATEGORIES, size=n)
    signal = X["target"] + (X[CATEGORICAL] == "a\rb") * 1.5
    y = np.where(signal + rng.normal(scale=0.5, size=n) > 0.3, *HOSTILE_CLASSES)
    return X, y


CATEGORICAL = "<tag attr='1'>&amp;"


def _model(family: str):
    """A pipeline reading the hostile columns: one-hot (Indicator steps), ordinal codes
    (Ordinal steps) or histogram boosting on the raw strings (its own Ordinal step)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    if family == "native_categorical":
        return HistGradientBoostingClassifier(categorical_features=[CATEGORICAL], max_iter=5,
                                              random_state=0)
    X, _ = _frame()
    numeric = [c for c in X.columns if c != CATEGORICAL]
    encoder = (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
               if family == "ordinal_tree" else OneHotEncoder(handle_unknown="ignore"))
    prep = ColumnTransformer([("num", StandardScaler(), numeric),
                              ("cat", encoder, [CATEGORICAL])])
    estimator = {
        "logistic": LogisticRegression(max_iter=500),
        "forest": RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0),
        "boosting": GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0),
        "ordinal_tree": RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0),
    }[family]
    return Pipeline([("prep", prep), ("model", estimator)])


def _signature(model, X) -> Signature:
    return Signature.infer(X, infer_task(model), classes_of(model))


@pytest.mark.parametrize("family", ["logistic", "forest", "boosting", "ordinal_tree",
                                    "native_categorical"])
def test_hostile_names_categories_and_labels_round_trip_through_pypmml(family):
    need_module("pypmml", "pmml")
    if not pmml.available():
        unavailable("java is not on PATH (pypmml runs PMML in a JVM)")
    X, y = _frame()
    model = _model(family).fit(X, y)
    sig = _signature(model, X)
    data = pmml.convert(model, sig, X)

    # the document is well-formed and every data name reads back as it was
    root = ET.fromstring(data)
    ns = "{http://www.dmg.org/PMML-4_4}"
    fields = [f.get("name") for f in root.iter(f"{ns}DataField")]
    assert set(HOSTILE_COLUMNS) <= set(fields)
    assert len(fields) == len(set(fields)), "an input shares its name with a field of the writer"
    categories = {v.get("value") for df in root.iter(f"{ns}DataField")
                  if df.get("name") == CATEGORICAL for v in df}
    assert categories == set(HOSTILE_CATEGORIES)
    assert [c.name for c in pmml.inspect(data).inputs] == list(X.columns)

    predictor = pmml.load(data, sig)
    rows = pd.concat([X, X.head(2)], ignore_index=True)
    rows.loc[len(X), CATEGORICAL] = "never seen <&>\r"
    rows.loc[len(X) + 1, CATEGORICAL] = None
    reference = NativePredictor(model, sig).run(rows)
    got = predictor.run(rows)
    result = compare(reference, got, sig.task, pmml.TOLERANCE)
    assert result["passed"], result
    assert set(got["label"].tolist()) <= set(HOSTILE_CLASSES)


@pytest.mark.parametrize("bad", ["nul\x00", "escape\x1b[31m", "nonchar\uffff", "bell\x07"])
def test_text_xml_cannot_carry_is_refused_naming_it(bad):
    from sklearn.linear_model import LogisticRegression

    X = pd.DataFrame({bad: [0.0, 1.0, 2.0, 3.0], "ok": [1.0, 0.0, 1.0, 0.0]})
    model = LogisticRegression().fit(X, [0, 0, 1, 1])
    with pytest.raises(UserError) as caught:
        to_pmml(to_ir(model, _signature(model, X)))
    message = str(caught.value)
    assert "\n" not in message
    assert "column name" in message and repr(bad) in message and "rename the column" in message


def test_a_category_or_label_xml_cannot_carry_is_refused_naming_it():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    X = pd.DataFrame({"plan": ["basic", "pro\x00", "basic", "pro\x00"]})
    model = Pipeline([("prep", ColumnTransformer([("cat", OneHotEncoder(), ["plan"])])),
                      ("model", LogisticRegression())]).fit(X, [0, 1, 0, 1])
    with pytest.raises(UserError, match=r"category of column 'plan' 'pro\\x00' holds U\+0000"):
        to_pmml(to_ir(model, _signature(model, X)))

    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    model = LogisticRegression().fit(X, ["no", "no", "yes\x01", "yes\x01"])
    with pytest.raises(UserError, match=r"class label 'yes\\x01' holds U\+0001"):
        to_pmml(to_ir(model, _signature(model, X)))


def test_escaped_values_survive_an_xml_parser_exactly():
    values = ['"', "'", "<", ">", "&", "&amp;", "]]>", "\t", "\n", "\r", "\r\n", " a ",
              "\x85", "\u2028", "😀", "\ufffd", "\ud7ff\ue000\U0010ffff"]
    for value in values:
        element = ET.fromstring(f'<a v="{xml.attribute(value)}" w=\'{xml.attribute(value)}\'>'
                                f"{xml.text(value)}</a>")
        assert element.get("v") == element.get("w") == element.text == value


def test_every_character_xml_cannot_carry_is_refused():
    refused = [chr(c) for c in (*range(0x20), 0xD800, 0xDFFF, 0xFFFE, 0xFFFF)
               if chr(c) not in "\t\n\r"]
    for char in refused:
        with pytest.raises(UserError, match="which XML cannot carry"):
            xml.attribute(f"a{char}b", "column name")
        with pytest.raises(UserError, match="which XML cannot carry"):
            xml.text(f"a{char}b")


def test_document_writes_what_elementtree_parses_back():
    root = ET.Element("PMML", {"xmlns": "http://www.dmg.org/PMML-4_4", "name": "a\"<&>'\n"})
    ET.SubElement(root, "Value", {"value": "\r\t"}).text = "x\ry"
    ET.SubElement(root, "Empty")
    ET.indent(root)
    text = xml.document(root)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    back = ET.fromstring(text.encode())
    assert back.get("name") == "a\"<&>'\n"
    assert back[0].get("value") == "\r\t" and back[0].text == "x\ry"
    with pytest.raises(ValueError, match="not an XML element name"):
        xml.document(ET.Element("bad tag"))

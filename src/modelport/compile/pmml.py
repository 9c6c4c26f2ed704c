"""Write a ModelIR as PMML 4.4.

Inputs become the DataDictionary, preprocessing steps DerivedFields of the
TransformationDictionary, and the model node one model element: a RegressionModel for
linear models and Gaussian naive Bayes (a softmax over per-class log-likelihoods), a
ClusteringModel for k-means, a MiningModel of TreeModels for tree ensembles (``average`` of
probability trees for forests; a ``modelChain`` of per-class ``sum`` segments followed by a
logit/softmax RegressionModel for boosting). Numbers are written with ``repr`` so an
evaluator reads back the exact doubles. A tree node whose missing values go left tests
``isMissing(x) or x <= t``: pypmml 1.5.8 ignores ``defaultChild`` (a missing value falls
through to the ``True`` sibling), and explicit predicates mean the same in every evaluator.

Column names, categories and class labels come from data: the tree is built with
ElementTree and written by :func:`modelport.quoting.xml.document`, which escapes every
attribute value and text and refuses what XML cannot carry (a NUL in a column name, say)
with a one-line error naming it. The names modelport gives its own fields (``target``,
``label``, ``probability(1)``...) yield to the data's: a column called ``target`` keeps its
name and the target field becomes ``target#2``, so every input keeps its name exactly.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from modelport.compile import ir
from modelport.quoting import xml

NS = "http://www.dmg.org/PMML-4_4"
#: the names of the output fields, unless an input already has one (see the module docstring);
#: the PMML format module finds them by their ``feature``, not by name
LABEL, VALUE, CLUSTER = "label", "value", "cluster"
TARGET = "target"


def probability_field(cls: object) -> str:
    return f"probability({cls})"


def to_pmml(model_ir: ir.ModelIR) -> str:
    """The PMML 4.4 document, as a string, computing what ``model_ir`` computes.

    A column name, category or class label that XML cannot carry (a NUL or another
    control character, a lone surrogate) raises a :class:`~modelport.errors.UserError`
    naming it: PMML reads inputs by name, so it cannot be written differently.
    """
    _check_text(model_ir)
    writer = _Writer(model_ir)
    root = ET.Element("PMML", {"xmlns": NS, "version": "4.4"})
    header = ET.SubElement(root, "Header", {"description": "written by modelport"})
    ET.SubElement(header, "Application", {"name": "modelport"})
    _data_dictionary(root, model_ir, writer.target)
    if model_ir.steps:
        td = ET.SubElement(root, "TransformationDictionary")
        for step in model_ir.steps:
            td.append(writer.derived_field(step))
    root.append(writer.model())
    ET.indent(root)
    return xml.document(root)


def _check_text(model_ir: ir.ModelIR) -> None:
    """Refuse, naming it, data text XML cannot carry, before any of it is written."""
    rename = "rename the column"
    for col in model_ir.signature.inputs:
        xml.check(col.name, "PMML: column name", rename)
        for c in col.categories or []:
            xml.check(str(c), f"PMML: category of column {col.name!r}",
                      "replace the value in the training data")
    assert model_ir.output is not None  # set by every front end
    for c in model_ir.output.classes or []:
        xml.check(str(c), "PMML: class label", "relabel the target")
    for step in model_ir.steps:
        xml.check(step.name, "PMML: derived field", rename)


def _num(value: float) -> str:
    value = float(value)
    if math.isinf(value):
        # XML Schema spells infinity INF; Java does not read it, the largest double does
        return repr(math.copysign(1.7976931348623157e308, value))
    return repr(value)


def _data_dictionary(root: ET.Element, model_ir: ir.ModelIR, target: str) -> None:
    dd = ET.SubElement(root, "DataDictionary")
    for col in model_ir.signature.inputs:
        if col.kind == "numeric":
            ET.SubElement(dd, "DataField", {"name": col.name, "optype": "continuous",
                                            "dataType": "double"})
        else:
            df = ET.SubElement(dd, "DataField", {"name": col.name, "optype": "categorical",
                                                 "dataType": "string"})
            for c in col.categories or []:
                ET.SubElement(df, "Value", {"value": str(c)})
    out = model_ir.output
    assert out is not None  # set by every front end
    if out.task == "classification":
        assert out.classes is not None  # a classifier's
        df = ET.SubElement(dd, "DataField", {"name": target, "optype": "categorical",
                                             "dataType": _class_type(out.classes)})
        for c in out.classes:
            ET.SubElement(df, "Value", {"value": str(c)})
    elif out.task == "regression":
        ET.SubElement(dd, "DataField", {"name": target, "optype": "continuous",
                                        "dataType": "double"})
    dd.set("numberOfFields", str(len(dd)))


def _class_type(classes: list) -> str:
    """The PMML dataType that gives the classes back as they are (``0`` stays an int)."""
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "integer"
    return "string"


def _field_ref(name: str) -> ET.Element:
    return ET.Element("FieldRef", {"field": name})


def _const(value: float) -> ET.Element:
    e = ET.Element("Constant", {"dataType": "double"})
    e.text = _num(value)
    return e


def _norm_discrete(field: str, value: object) -> ET.Element:
    return ET.Element("NormDiscrete", {"field": field, "value": str(value), "mapMissingTo": "0"})


def _set_predicate(field: str, operator: str, values: list) -> ET.Element:
    test = ET.Element("SimpleSetPredicate", {"field": field, "booleanOperator": operator})
    arr = ET.SubElement(test, "Array", {"n": str(len(values)), "type": "real"})
    arr.text = " ".join(_num(c) for c in values)
    return test


def _apply(function: str, *args: ET.Element) -> ET.Element:
    e = ET.Element("Apply", {"function": function})
    e.extend(args)
    return e


class _Writer:
    def __init__(self, model_ir: ir.ModelIR) -> None:
        self.ir = model_ir
        self.kinds = model_ir.field_kinds
        self.taken = set(self.kinds)
        self.target = self.fresh(TARGET)
        self.label, self.value, self.cluster = (self.fresh(n) for n in (LABEL, VALUE, CLUSTER))
        assert model_ir.output is not None  # set by every front end
        self.proba = {str(c): self.fresh(probability_field(c))
                      for c in model_ir.output.classes or []}

    def fresh(self, name: str) -> str:
        """``name``, or ``name#2``, ``name#3``... if a field already has it."""
        base, n = name, 1
        while name in self.taken:
            n += 1
            name = f"{base}#{n}"
        self.taken.add(name)
        return name

    # --- preprocessing ------------------------------------------------------------------

    def _is_any(self, source: str, categories: list) -> ET.Element:
        """1.0 when ``source`` is one of ``categories``, else 0.0 (not for missing values).

        Categories of text are compared by NormDiscrete, which holds them in an attribute:
        pypmml reads only the first piece of an element's text, so a category written with
        a reference (``&amp;``, ``&#13;``) would never match as Constant text.
        """
        if self.kinds[source] == "numeric":
            test = _apply("isIn", _field_ref(source), *(_const(float(c)) for c in categories))
            return _apply("if", test, _const(1.0), _const(0.0))
        hits = [_norm_discrete(source, c) for c in categories]
        return hits[0] if len(hits) == 1 else _apply("sum", *hits)

    def derived_field(self, step: ir.Step) -> ET.Element:
        categorical = self.kinds[step.name] == "categorical"
        df = ET.Element("DerivedField", {
            "name": step.name,
            "optype": "categorical" if categorical else "continuous",
            "dataType": "string" if categorical else "double",
        })
        x = _field_ref(step.source)
        if isinstance(step, ir.Impute):
            if step.value is not None:
                x.set("mapMissingTo", str(step.value) if categorical
                      else _num(float(step.value)))
            df.append(x)
        elif isinstance(step, ir.Scale):
            df.append(_apply("/", _apply("-", x, _const(step.center)), _const(step.scale)))
        elif isinstance(step, ir.Affine):
            df.append(_apply("+", _apply("*", x, _const(step.mul)), _const(step.add)))
        elif isinstance(step, ir.IsMissing):
            df.append(_apply("if", _apply("isMissing", x), _const(1.0), _const(0.0)))
        elif isinstance(step, ir.Indicator):
            hit, miss = (0.0, 1.0) if step.negate else (1.0, 0.0)
            on_missing = hit if None in step.categories else miss
            known = [c for c in step.categories if c is not None]
            if known:
                value = self._is_any(step.source, known)
                if step.negate:
                    value = _apply("-", _const(1.0), value)
            else:
                value = _const(miss)
            df.append(_apply("if", _apply("isMissing", _field_ref(step.source)),
                             _const(on_missing), value))
        elif isinstance(step, ir.Ordinal):
            df.append(self._ordinal(step))
        else:
            raise TypeError(f"unknown step {type(step).__name__}")
        return df

    def _ordinal(self, step: ir.Ordinal) -> ET.Element:
        if self.kinds[step.source] != "numeric" and not all(
                xml.is_plain_text(str(c)) for c in step.categories):
            return self._ordinal_by_attributes(step)
        mv = ET.Element("MapValues", {"outputColumn": "code", "dataType": "double"})
        if step.missing is not None:
            mv.set("mapMissingTo", _num(step.missing))
        if step.unknown is not None:
            mv.set("defaultValue", _num(step.unknown))
        ET.SubElement(mv, "FieldColumnPair", {"field": step.source, "column": "category"})
        table = ET.SubElement(mv, "InlineTable")
        for i, c in enumerate(step.categories):
            row = ET.SubElement(table, "row")
            ET.SubElement(row, "category").text = (
                _num(c) if self.kinds[step.source] == "numeric" else str(c))
            ET.SubElement(row, "code").text = _num(i)
        return mv

    def _ordinal_by_attributes(self, step: ir.Ordinal) -> ET.Element:
        """The position of a category as a sum of NormDiscretes, for categories an
        InlineTable could only hold as text with references (see :meth:`_is_any`). An
        ``if`` without an ``else`` gives a missing value, where ``unknown`` or ``missing``
        is None."""
        x = step.source
        found = self._is_any(x, list(step.categories))
        codes = [_apply("*", _const(float(i)), _norm_discrete(x, c))
                 for i, c in enumerate(step.categories) if i]
        code = (codes[0] if len(codes) == 1 else _apply("sum", *codes)) if codes else _const(0.0)
        known = _apply("greaterThan", found, _const(0.5))
        value = (_apply("if", known, code) if step.unknown is None
                 else _apply("if", known, code, _const(step.unknown)))
        if step.missing is None:
            return _apply("if", _apply("isNotMissing", _field_ref(x)), value)
        return _apply("if", _apply("isMissing", _field_ref(x)), _const(step.missing), value)

    def _log_likelihood(self, node: ir.GaussianNB, i: int) -> ET.Element:
        """Class ``i``'s joint log-likelihood, as scikit-learn's GaussianNB computes it."""
        const = -0.5 * sum(math.log(2.0 * math.pi * v) for v in node.var[i])
        terms = []
        for f, theta, var in zip(node.features, node.theta[i], node.var[i], strict=True):
            diff = _apply("-", _field_ref(f), _const(theta))
            diff2 = _apply("-", _field_ref(f), _const(theta))
            terms.append(_apply("/", _apply("*", diff, diff2), _const(var)))
        total = terms[0] if len(terms) == 1 else _apply("sum", *terms)
        return _apply("+", _const(node.log_prior[i] + const), _apply("*", _const(-0.5), total))

    # --- schema and outputs -------------------------------------------------------------

    def mining_schema(self, target: bool = True, extra: Sequence[str] = ()) -> ET.Element:
        ms = ET.Element("MiningSchema")
        assert self.ir.output is not None  # set by every front end
        if target and self.ir.output.task != "clustering":
            ET.SubElement(ms, "MiningField", {"name": self.target, "usageType": "target"})
        for col in self.ir.signature.inputs:
            # unknown categories flow on (one-hot 'ignore'); they are not invalid input
            ET.SubElement(ms, "MiningField", {"name": col.name, "invalidValueTreatment": "asIs"})
        for name in extra:
            ET.SubElement(ms, "MiningField", {"name": name})
        return ms

    def output(self) -> ET.Element:
        out = self.ir.output
        assert out is not None  # set by every front end
        o = ET.Element("Output")
        if out.task == "classification":
            ET.SubElement(o, "OutputField", {"name": self.label, "optype": "categorical",
                                             "dataType": "string", "feature": "predictedValue"})
            if out.gives_proba:
                assert out.classes is not None  # a classifier's
                for c in out.classes:
                    ET.SubElement(o, "OutputField", {
                        "name": self.proba[str(c)], "optype": "continuous",
                        "dataType": "double", "feature": "probability", "value": str(c)})
        elif out.task == "regression":
            ET.SubElement(o, "OutputField", {"name": self.value, "optype": "continuous",
                                             "dataType": "double", "feature": "predictedValue"})
        else:
            ET.SubElement(o, "OutputField", {"name": self.cluster, "optype": "categorical",
                                             "dataType": "string", "feature": "predictedValue"})
        return o

    # --- model elements -----------------------------------------------------------------

    def model(self) -> ET.Element:
        node = self.ir.model
        if isinstance(node, ir.Linear):
            return self._linear(node)
        if isinstance(node, ir.GaussianNB):
            return self._naive_bayes(node)
        if isinstance(node, ir.Centroids):
            return self._clustering(node)
        if isinstance(node, ir.TreeEnsemble):
            return self._ensemble(node)
        raise TypeError(f"unknown model node {type(node).__name__}")

    def _regression_model(self, function: str, normalization: str,
                          tables: Sequence[tuple[object, float, list[tuple[str, float]]]], *,
                          schema_extra: Sequence[str] = (), output: bool = True) -> ET.Element:
        """A RegressionModel; ``tables`` is a list of (category, intercept, [(field, coef)])."""
        m = ET.Element("RegressionModel", {"functionName": function,
                                           "normalizationMethod": normalization})
        m.append(self.mining_schema(extra=list(schema_extra)))
        if output:
            m.append(self.output())
        for category, intercept, terms in tables:
            t = ET.SubElement(m, "RegressionTable", {"intercept": _num(intercept)})
            if category is not None:
                t.set("targetCategory", str(category))
            for f, coef in terms:
                ET.SubElement(t, "NumericPredictor", {"name": f, "coefficient": _num(coef)})
        return m

    def _linear(self, node: ir.Linear) -> ET.Element:
        out = self.ir.output
        assert out is not None  # set by every front end
        if out.task == "regression":
            terms = list(zip(node.features, node.coef[0], strict=True))
            return self._regression_model("regression", "none", [(None, node.intercept[0], terms)])
        classes = out.classes
        assert classes is not None  # a classifier's
        if out.transform == "ovr_logistic":
            return self._ovr_logistic(node, classes)
        if out.transform == "logistic":
            # PMML's binary logit: the first table's probability, the second 1 - it
            terms = list(zip(node.features, node.coef[0], strict=True))
            tables = [(classes[1], node.intercept[0], terms), (classes[0], 0.0, [])]
            return self._regression_model("classification", "logit", tables)
        if out.transform == "margin" and len(classes) == 2:
            # labels only: class 1 when the margin is positive; class 0 first wins a tie
            return self._softmax(classes, [_const(0.0), self._margin(node, 0)])
        if out.transform in ("softmax", "margin"):
            return self._softmax(classes, [self._margin(node, k) for k in range(len(classes))])
        raise TypeError(f"no PMML for linear transform {out.transform!r}")

    def _margin(self, node: ir.Linear, k: int) -> ET.Element:
        terms = [_apply("*", _field_ref(f), _const(w))
                 for f, w in zip(node.features, node.coef[k], strict=True)]
        return _apply("sum", _const(node.intercept[k]), *terms)

    def _ovr_logistic(self, node: ir.Linear, classes: list) -> ET.Element:
        """One-vs-rest logistic: sigmoid fields, then 'simplemax' normalises them to sum 1."""
        m = ET.Element("RegressionModel", {"functionName": "classification",
                                           "normalizationMethod": "simplemax"})
        m.append(self.mining_schema())
        m.append(self.output())
        lt = ET.SubElement(m, "LocalTransformations")
        names = [self.fresh(f"ovr({c})") for c in classes]
        for k, name in enumerate(names):
            margin = self._margin(node, k)
            sigmoid = _apply("/", _const(1.0), _apply("+", _const(1.0),
                                                      _apply("exp", _apply("*", _const(-1.0), margin))))
            df = ET.SubElement(lt, "DerivedField", {"name": name, "optype": "continuous",
                                                     "dataType": "double"})
            df.append(sigmoid)
        for c, name in zip(classes, names, strict=True):
            t = ET.SubElement(m, "RegressionTable", {"intercept": "0.0", "targetCategory": str(c)})
            ET.SubElement(t, "NumericPredictor", {"name": name, "coefficient": "1.0"})
        return m

    def _naive_bayes(self, node: ir.GaussianNB) -> ET.Element:
        scores = [self._log_likelihood(node, k) for k in range(node.n_outputs)]
        assert self.ir.output is not None  # set by every front end
        assert self.ir.output.classes is not None  # a classifier's
        return self._softmax(self.ir.output.classes, scores)

    def _softmax(self, classes: list, scores: list[ET.Element], *,
                 schema_extra: Sequence[str] = (), output: bool = True) -> ET.Element:
        """A softmax classifier over score expressions, each shifted by their maximum.

        pypmml exponentiates the scores as they are, so a score over ~709 gives NaN
        probabilities; subtracting the maximum first keeps every probability finite.
        """
        m = ET.Element("RegressionModel", {"functionName": "classification",
                                           "normalizationMethod": "softmax"})
        m.append(self.mining_schema(extra=list(schema_extra)))
        if output:
            m.append(self.output())
        lt = ET.SubElement(m, "LocalTransformations")
        names = [self.fresh(f"score({c})") for c in classes]
        shifted = [self.fresh(f"shifted_score({c})") for c in classes]
        for name, expr in zip(names, scores, strict=True):
            df = ET.SubElement(lt, "DerivedField", {"name": name, "optype": "continuous",
                                                    "dataType": "double"})
            df.append(expr)
        for name, moved in zip(names, shifted, strict=True):
            df = ET.SubElement(lt, "DerivedField", {"name": moved,
                                                    "optype": "continuous", "dataType": "double"})
            df.append(_apply("-", _field_ref(name), _apply("max", *map(_field_ref, names))))
        for c, moved in zip(classes, shifted, strict=True):
            t = ET.SubElement(m, "RegressionTable", {"intercept": "0.0",
                                                     "targetCategory": str(c)})
            ET.SubElement(t, "NumericPredictor", {"name": moved, "coefficient": "1.0"})
        return m

    def _clustering(self, node: ir.Centroids) -> ET.Element:
        m = ET.Element("ClusteringModel", {"functionName": "clustering",
                                           "modelClass": "centerBased",
                                           "numberOfClusters": str(node.n_outputs)})
        m.append(self.mining_schema(target=False))
        m.append(self.output())
        cm = ET.SubElement(m, "ComparisonMeasure", {"kind": "distance"})
        ET.SubElement(cm, "squaredEuclidean")
        for f in node.features:
            ET.SubElement(m, "ClusteringField", {"field": f})
        for k, center in enumerate(node.centers):
            cl = ET.SubElement(m, "Cluster", {"id": str(k), "name": str(k)})
            arr = ET.SubElement(cl, "Array", {"n": str(len(center)), "type": "real"})
            arr.text = " ".join(_num(v) for v in center)
        return m

    # --- trees --------------------------------------------------------------------------

    def _ensemble(self, node: ir.TreeEnsemble) -> ET.Element:
        out = self.ir.output
        assert out is not None  # set by every front end
        if out.task == "classification" and out.transform == "probability":
            seg = [self._tree_model(node, t, classes=out.classes) for t in node.trees]
            return self._mining_model("classification", "average", seg, output=True)
        if out.task == "regression" and out.transform == "identity":
            return self._sum_model(node, 0, top=True)
        # raw scores per output column, then the link function
        segments = []
        raw_names = []
        for k in range(node.n_outputs):
            m = self._sum_model(node, k, top=False)
            name = self.fresh(f"raw({k})")
            o = ET.Element("Output")
            ET.SubElement(o, "OutputField", {"name": name, "optype": "continuous",
                                             "dataType": "double", "feature": "predictedValue"})
            m.insert(1, o)
            raw_names.append(name)
            segments.append(m)
        if out.task == "regression":  # exp link
            final = self._regression_model("regression", "exp", [(None, 0.0, [(raw_names[0], 1.0)])],
                                           schema_extra=raw_names, output=False)
        elif out.transform == "logistic":
            c = out.classes
            assert c is not None  # a classifier's
            final = self._regression_model(
                "classification", "logit",
                [(c[1], 0.0, [(raw_names[0], 1.0)]), (c[0], 0.0, [])],
                schema_extra=raw_names, output=False)
        elif out.transform == "softmax":
            assert out.classes is not None  # a classifier's
            final = self._softmax(out.classes, [_field_ref(n) for n in raw_names],
                                  schema_extra=raw_names, output=False)
        elif out.transform == "normalize":
            # each class's raw score over their sum: PMML's simplemax
            assert out.classes is not None  # a classifier's
            final = self._regression_model(
                "classification", "simplemax",
                [(c, 0.0, [(raw_names[k], 1.0)]) for k, c in enumerate(out.classes)],
                schema_extra=raw_names, output=False)
        else:
            raise TypeError(f"no PMML for tree transform {out.transform!r}")
        segments.append(final)
        return self._mining_model(out.task, "modelChain", segments, output=True)

    def _mining_model(self, function: str, method: str, models: list[ET.Element],
                      output: bool) -> ET.Element:
        m = ET.Element("MiningModel", {"functionName": function})
        m.append(self.mining_schema(target=output))
        if output:
            m.append(self.output())
        seg = ET.SubElement(m, "Segmentation", {"multipleModelMethod": method})
        for i, model in enumerate(models):
            s = ET.SubElement(seg, "Segment", {"id": str(i + 1)})
            ET.SubElement(s, "True")
            s.append(model)
        return m

    def _sum_model(self, node: ir.TreeEnsemble, k: int, top: bool) -> ET.Element:
        """``base[k] + sum`` (or mean) of the trees adding to raw column ``k``."""
        trees = [t for t in node.trees if t.output <= k < t.output + len(t.value[0])]
        models = [self._tree_model(node, t, column=k - t.output) for t in trees]
        method = "average" if node.combine == "mean" else "sum"
        if method == "sum" and node.base[k] != 0.0:
            # the base score first, as the native models add it: a one-leaf tree
            models.insert(0, self._constant_tree(node.base[k]))
        return self._mining_model("regression", method, models, output=top)

    def _constant_tree(self, value: float) -> ET.Element:
        m = ET.Element("TreeModel", {"functionName": "regression"})
        m.append(self.mining_schema(target=False))
        ET.SubElement(ET.SubElement(m, "Node", {"id": "0", "score": _num(value)}), "True")
        return m

    def _tree_model(self, node: ir.TreeEnsemble, tree: ir.Tree, column: int = 0,
                    classes: list | None = None) -> ET.Element:
        function = "classification" if classes is not None else "regression"
        m = ET.Element("TreeModel", {"functionName": function,
                                     "missingValueStrategy": "none",
                                     "noTrueChildStrategy": "returnLastPrediction",
                                     "splitCharacteristic": "binarySplit"})
        m.append(self.mining_schema(target=False))
        splits = [node.split(t) for t in tree.threshold]
        cats = tree.categories or [None] * len(tree.feature)
        cats_right = tree.categories_right or [None] * len(tree.feature)

        def leaf(e: ET.Element, i: int) -> None:
            values = tree.value[i]
            if classes is None:
                e.set("score", _num(values[column]))
                return
            best = max(range(len(values)), key=lambda j: values[j])
            e.set("score", str(classes[best]))
            for c, p in zip(classes, values, strict=True):
                ET.SubElement(e, "ScoreDistribution", {
                    "value": str(c), "recordCount": _num(p), "probability": _num(p)})

        def build(i: int, predicate: ET.Element) -> ET.Element:
            e = ET.Element("Node", {"id": str(i)})
            e.append(predicate)
            if tree.feature[i] < 0:
                leaf(e, i)
                return e
            f = node.features[tree.feature[i]]
            codes, codes_right = cats[i], cats_right[i]
            if codes is not None and codes_right is not None and tree.missing_left[i]:
                # left: anything not sent right (unknown codes go the way missing values go)
                test = _set_predicate(f, "isNotIn", codes_right)
            elif codes is not None:
                test = _set_predicate(f, "isIn", codes)
            else:
                op, t = splits[i]
                test = ET.Element("SimplePredicate", {
                    "field": f, "operator": "lessOrEqual" if op == "<=" else "lessThan",
                    "value": _num(t)})
            left, right = tree.left[i], tree.right[i]
            if tree.missing_left[i]:
                # a missing value makes the test unknown (false); 'or' sends it left
                either = ET.Element("CompoundPredicate", {"booleanOperator": "or"})
                either.append(ET.Element("SimplePredicate", {"field": f, "operator": "isMissing"}))
                either.append(test)
                test = either
            e.append(build(left, test))
            e.append(build(right, ET.Element("True")))
            return e

        m.append(build(0, ET.Element("True")))
        return m

"""Read a PMML document made elsewhere into a ModelIR, so it scores without a JVM.

PMML says what a model computes; the intermediate form can say much of it exactly, and
what it cannot say is not read (the file is then scored by an evaluator, with the reason):

- **TreeModel**: every node's children are tried in order and the first whose predicate
  is true is taken, so an n-way node becomes a chain of binary splits. Predicates have
  three values (true, false, unknown when a field is missing); what unknown does is the
  model's ``missingValueStrategy``: ``none`` tries the next child, ``defaultChild`` takes
  the named child, ``lastPrediction`` and ``nullPrediction`` stop at the node or with no
  answer; a node with no true child does what ``noTrueChildStrategy`` says. Each of these
  is a fixed direction per node, so each becomes a split whose missing values go one way
  (or a split on "is it missing" first). ``SimplePredicate`` on numbers,
  ``SimplePredicate``/``SimpleSetPredicate`` on categories and ``CompoundPredicate``
  (``and``, ``or``, ``surrogate``) are read; what the path already decided is not split
  on again. A tree whose every Node has a ``recordCount`` keeps the counts as node covers,
  the training weight reason codes weigh a split's sides by (a split made up for a
  multi-way node or a missing value has the sum of the nodes it stands for); one whose
  counts are missing, do not add up, or leave a split or leaf without weight keeps none.
- **MiningModel** of trees: ``sum``, ``average``, ``weightedAverage``, ``majorityVote``,
  ``weightedMajorityVote`` and ``selectFirst`` segmentations, and the ``modelChain`` that
  boosting converters write (sums of trees whose outputs feed a final RegressionModel with
  a logit or softmax link) become one tree ensemble.
- **RegressionModel** (identity, exp, logit and softmax links; numeric and categorical
  predictors), **GeneralRegressionModel** (generalized linear regressions with an identity
  or log link, multinomial logistic classifiers; one covariate or factor level per
  parameter), **ClusteringModel** (centre-based, squared or plain Euclidean distance) and
  **NaiveBayesModel** with Gaussian inputs, these two over inputs replaced where missing.
- **Scorecard** with numeric partial scores: a sum of trees, one per Characteristic,
  each giving the score of its first Attribute whose predicate is true.
- **Transformations** (``TransformationDictionary``, ``LocalTransformations``, a
  MiningField's ``missingValueReplacement``): ``NormContinuous`` with two points,
  ``NormDiscrete``, ``MapValues`` over one categorical field, ``Apply`` with ``+ - * /``
  and a constant, ``isMissing``/``isNotMissing``, ``equal``/``notEqual``/``isIn``/
  ``isNotIn`` on a category and ``if`` over a category; ``Targets`` rescaling.

A field whose ``dataType`` is ``float`` is compared as a float32, as the PMML evaluators
do, so trees over such fields split as float32 values; a model that computes in float32
(``x-mathContext="float"``) is not read. Anything else raises
:class:`~modelport.errors.ConversionError` naming the element, e.g. ``the form has no
NeuralNetwork``.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from modelport.compile import ir
from modelport.errors import ConversionError, UserError
from modelport.signature import Signature

if TYPE_CHECKING:
    from typing import TypeAlias, TypeVar

    #: what a field holds as the reader sees it
    _Value: TypeAlias = "_Num | _Cat | _CatNum | _Const | _TreeSum"
    _T = TypeVar("_T")

MODEL_TAGS = ("RegressionModel", "TreeModel", "MiningModel", "ClusteringModel",
              "GeneralRegressionModel", "NaiveBayesModel", "NeuralNetwork",
              "SupportVectorMachineModel", "NearestNeighborModel", "Scorecard",
              "RuleSetModel", "BayesianNetworkModel", "GaussianProcessModel",
              "TimeSeriesModel", "SequenceModel", "AssociationModel", "TextModel",
              "BaselineModel", "AnomalyDetectionModel")
_PREDICATES = ("True", "False", "SimplePredicate", "CompoundPredicate", "SimpleSetPredicate")
_NUMERIC_TYPES = ("integer", "double", "float")
_BOOLEANS = {"true": "true", "True": "true", "TRUE": "true", "1": "true",
             "false": "false", "False": "false", "FALSE": "false", "0": "false"}
#: a tree compiled from nested predicates may repeat subtrees; beyond this it is not read
MAX_NODES = 2_000_000


def read_pmml(data: bytes | str) -> ET.Element:
    """The PMML document's root element with XML namespaces taken off every tag.

    A document that is not XML is a :class:`UserError`.
    """
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise UserError(f"the file is not valid PMML (XML error: {exc})") from None
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.startswith("{"):
            el.tag = el.tag.split("}", 1)[1]
    return root


def top_model(root: ET.Element) -> ET.Element:
    """The document's model element (the first one, as evaluators take it)."""
    for child in root:
        if child.tag in MODEL_TAGS:
            return child
    raise UserError("the PMML file holds no model element this format can score")


def canonical(text: str, data_type: str | None) -> str:
    """A category as scoring sees it: numbers written as Python prints them (``1.0`` and
    ``1`` are the category ``1`` of an integer or double field), booleans in lower case,
    other text unchanged."""
    if data_type == "boolean":
        return _BOOLEANS.get(text, text)
    if data_type not in _NUMERIC_TYPES:
        return text
    try:
        value = float(text)
    except ValueError:
        return text
    if value.is_integer() and abs(value) < 2 ** 53:
        return str(int(value))
    return repr(value)


def to_ir(data: bytes | ET.Element, signature: Signature) -> ir.ModelIR:
    """The intermediate form of a PMML document, scoring in ``signature``'s inputs.

    Raises :class:`ConversionError` naming the first element the form cannot express.
    """
    root = read_pmml(data) if isinstance(data, bytes | str) else data
    return _Reader(root, signature).read()


def verification_records(root: ET.Element) -> tuple[list[dict[str | None, str]],
                                                    dict[str | None, dict[str, float]]]:
    """The rows of the model's ``ModelVerification`` and its fields.

    Returns ``(rows, fields)``: each row maps a verification field (a MiningField or an
    OutputField name) to its text, absent when missing; ``fields`` maps each field to its
    ``precision`` and ``zeroThreshold``. Both are empty when the model has no records.
    """
    model = top_model(root)
    mv = model.find("ModelVerification")
    if mv is None:
        return [], {}
    columns: dict[str, str | None] = {}
    fields: dict[str | None, dict[str, float]] = {}
    for vf in mv.iter("VerificationField"):
        name = vf.get("field")
        column = vf.get("column") or name
        assert column is not None  # the field is required by PMML
        columns[column.split(":", 1)[-1]] = name
        fields[name] = {"precision": float(vf.get("precision", "1e-6")),
                        "zero": float(vf.get("zeroThreshold", "1e-16"))}
    rows = []
    table = mv.find("InlineTable")
    for row in [] if table is None else table.findall("row"):
        record: dict[str | None, str] = {}
        for cell in row:
            name = columns.get(cell.tag.split(":", 1)[-1])
            if name is not None and cell.text is not None and cell.text.strip() not in ("",
                                                                                         "NA",
                                                                                         "N/A"):
                record[name] = cell.text.strip()
        rows.append(record)
    return rows, fields


# --- what a field holds ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Num:
    """A number held by IR field ``name`` (NaN when missing); ``float32`` when the PMML
    field is a float, compared after rounding to float32."""

    name: str
    float32: bool = False


@dataclass(frozen=True)
class _Cat:
    """A category: IR categorical field ``source`` seen through a value map.

    ``table`` maps source values to values (None: missing); source values outside it
    become ``other`` (``_SAME``: unchanged); a missing source becomes ``missing``.
    """

    source: str
    data_type: str | None = None
    table: tuple | None = None
    other: object = None
    missing: object = None

    def value_of(self, v: str | None) -> object:
        """What source value ``v`` (None: missing) is seen as."""
        if v is None:
            return self.missing
        if self.table is not None:
            mapped = self._mapped
            if v in mapped:
                return mapped[v]
            return v if self.other is _SAME else self.other
        return v

    @cached_property
    def _mapped(self) -> dict:
        assert self.table is not None  # read only through a table
        return dict(self.table)


_SAME = object()


@dataclass(frozen=True)
class _CatNum:
    """A number that depends on one category only (NormDiscrete, MapValues to numbers)."""

    cat: _Cat
    values: tuple  # (category, number) pairs
    other: float | None = None
    missing: float | None = None

    def number(self, category: object) -> float | None:
        """The number of a category as the ``_Cat`` sees it (None: missing)."""
        if category is None:
            return self.missing
        return dict(self.values).get(category, self.other)


@dataclass(frozen=True)
class _Const:
    value: object


@dataclass
class _TreeSum:
    """``const + sum(weight * tree)``: what a sum of regression trees gives."""

    #: (TreeModel element, weight, scope, what a tree with no answer gives: NaN, 0.0 when
    #: it is skipped, or the reason it cannot be read)
    trees: list
    const: float = 0.0

    def scaled(self, factor: float, add: float = 0.0) -> _TreeSum:
        return _TreeSum([(t, w * factor, s, n) for t, w, s, n in self.trees],
                        self.const * factor + add)


# --- the reader ----------------------------------------------------------------------------------


class _Scope:
    """Fields visible to a model: inputs, derived fields (read when first used) and the
    outputs of earlier segments of a model chain."""

    def __init__(self, reader: _Reader, parent: _Scope | None = None) -> None:
        self.reader = reader
        self.parent = parent
        self.values: dict[str | None, _Value] = {}
        self.derived: dict[str | None, ET.Element] = {}

    def child(self) -> _Scope:
        return _Scope(self.reader, self)

    def define(self, derived_fields: Iterable[ET.Element]) -> None:
        for df in derived_fields:
            self.derived[df.get("name")] = df

    def get(self, name: str | None) -> _Value:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.values:
                return scope.values[name]
            if name in scope.derived:
                df = scope.derived.pop(name)
                try:
                    value = self.reader.expression(_expression_of(df), scope, df)
                except ConversionError as exc:
                    raise ConversionError(f"{exc} (DerivedField {name!r})") from None
                scope.values[name] = value
                return value
            scope = scope.parent
        raise ConversionError(f"the model reads field {name!r}, which is neither an input nor "
                              "a derived field")


class _Reader:
    def __init__(self, root: ET.Element, signature: Signature) -> None:
        self.root = root
        self.signature = signature
        self.steps: list = []
        self._step_names: dict[tuple, str] = {}
        self.data_fields = {f.get("name"): f for f in root.iter("DataField")}
        self.vocab: dict[str, list[str]] = {}
        self._code_of: dict[str, dict[str, int]] = {}
        self.codes: dict[str, str] = {}

    # --- the whole model ---------------------------------------------------------------------

    def read(self) -> ir.ModelIR:
        model = top_model(self.root)
        if model.tag not in ("TreeModel", "MiningModel", "RegressionModel", "ClusteringModel",
                             "NaiveBayesModel", "GeneralRegressionModel", "Scorecard"):
            raise ConversionError(f"the form has no {model.tag}")
        scope = _Scope(self)
        for col in self.signature.inputs:
            df = self.data_fields.get(col.name)
            data_type = df.get("dataType") if df is not None else None
            if col.kind == "numeric":
                scope.values[col.name] = _Num(col.name, float32=data_type == "float")
            elif data_type == "boolean":
                # scoring reads a boolean column as 0 and 1, or text as it is written
                table = tuple(_BOOLEANS.items())
                for v in _BOOLEANS:
                    self.category_code(col.name, v)
                scope.values[col.name] = _Cat(col.name, data_type, table, _SAME, None)
            else:
                scope.values[col.name] = _Cat(col.name, data_type)
        td = self.root.find("TransformationDictionary")
        if td is not None:
            scope.define(td.findall("DerivedField"))
        task = self.signature.task
        node: ir.Node
        if task == "clustering":
            if model.tag != "ClusteringModel":
                raise ConversionError(f"a clustering {model.tag} is not read")
            node, output = self.clustering(model, self.model_scope(model, scope))
        elif model.tag == "RegressionModel":
            node, output = self.regression(model, self.model_scope(model, scope))
        elif model.tag == "NaiveBayesModel":
            node, output = self.naive_bayes(model, self.model_scope(model, scope))
        elif model.tag == "GeneralRegressionModel":
            node, output = self.general_regression(model, self.model_scope(model, scope))
        elif model.tag == "Scorecard":
            node, output = self.scorecard(model, self.model_scope(model, scope))
        else:
            node, output = self.trees(model, scope)
        self._finish_codes()
        return ir.ModelIR(signature=self.signature, steps=self.steps, model=node, output=output)

    def model_scope(self, model: ET.Element, parent: _Scope) -> _Scope:
        """The fields a (nested) model sees: its MiningSchema's replacements of missing
        values and its LocalTransformations."""
        _check_math(model)
        scope = parent.child()
        schema = model.find("MiningSchema")
        for mf in [] if schema is None else schema.findall("MiningField"):
            name = mf.get("name")
            if mf.get("usageType", "active") != "active":
                continue
            replacement = mf.get("missingValueReplacement")
            if mf.get("outliers", "asIs") != "asIs":
                raise ConversionError(f"the form has no outlier treatment "
                                      f"{mf.get('outliers')!r} (MiningField {name!r})")
            treatment = mf.get("invalidValueTreatment", "returnInvalid")
            if treatment not in ("returnInvalid", "asIs"):
                # a value outside the field's Values or Interval would count as missing (or
                # as another value): the form tells such values only by what splits list
                raise ConversionError(f"the form has no invalidValueTreatment {treatment!r} "
                                      f"(MiningField {name!r})")
            if replacement is not None:
                scope.values[name] = self.impute(parent.get(name), replacement, name)
        lt = model.find("LocalTransformations")
        if lt is not None:
            scope.define(lt.findall("DerivedField"))
        return scope

    def classifier_classes(self) -> list:
        """The classes of the classifier being read; a classifier that names none is not
        read (a :class:`ConversionError`, so the file is left to another evaluator)."""
        classes = self.signature.classes
        if not classes:
            raise ConversionError("a classifier that names no classes is not read")
        return classes

    # --- steps ------------------------------------------------------------------------------

    def add(self, step: ir.Step) -> str:
        """Add ``step`` unless the same one exists; its field's name."""
        key = (step.op, step.source, *(repr(v) for k, v in vars(step).items()
                                       if k not in ("name", "source")))
        if key in self._step_names:
            return self._step_names[key]
        base, n = step.name, 1
        taken = {s.name for s in self.steps} | set(self.signature.names)
        while step.name in taken:
            n += 1
            step.name = f"{base}#{n}"
        self.steps.append(step)
        self._step_names[key] = step.name
        return step.name

    def impute(self, value: _Value, replacement: str, where: str | None) -> _Num | _Cat:
        if isinstance(value, _Num):
            try:
                number = float(replacement)
            except ValueError:
                raise ConversionError(f"missingValueReplacement {replacement!r} of numeric "
                                      f"field {where!r} is not a number") from None
            return _Num(self.add(ir.Impute(f"impute({value.name})", value.name, number)),
                        value.float32)
        if isinstance(value, _Cat) and value.table is None:
            text = canonical(replacement, value.data_type)
            return _Cat(self.add(ir.Impute(f"impute({value.source})", value.source, text)),
                        value.data_type)
        raise ConversionError(f"the form has no missing-value replacement for derived field "
                              f"{where!r}")

    def code(self, source: str) -> str:
        """The IR field of the code of categorical field ``source`` (its position in a
        vocabulary known once the whole model is read)."""
        self.vocabulary(source)
        self.codes.setdefault(source, f"code({source})")
        return self.codes[source]

    def vocabulary(self, source: str) -> list[str]:
        """The values of categorical field ``source`` known so far: its DataField's, then
        those the model names, in the order met."""
        if source not in self.vocab:
            self.vocab[source] = []
            col = next((c for c in self.signature.inputs if c.name == source), None)
            for v in (col.categories or []) if col is not None else []:
                self.category_code(source, str(v))
        return self.vocab[source]

    def category_code(self, source: str, value: str) -> float:
        vocab = self.vocabulary(source)
        index = self._code_of.setdefault(source, {})
        if value not in index:
            index[value] = len(vocab)
            vocab.append(value)
        return float(index[value])

    def _finish_codes(self) -> None:
        """Ordinal steps for every categorical field a tree splits on: a value in no
        vocabulary gets a code of its own, which no split lists, so it goes wherever
        "not one of these" goes; a missing value is NaN."""
        for source, name in self.codes.items():
            vocab = self.vocab[source]
            step = ir.Ordinal(name, source, list(vocab), unknown=float(len(vocab)), missing=None)
            self.steps.append(step)

    # --- expressions ------------------------------------------------------------------------

    def expression(self, el: ET.Element, scope: _Scope, where: ET.Element) -> _Value:
        tag = el.tag
        value: _Value | str  # a field's value, or the category a NormDiscrete names
        if tag == "FieldRef":
            value = scope.get(el.get("field"))
            return self._map_missing(value, el.get("mapMissingTo"), el)
        if tag == "Constant":
            if el.get("missing") == "true":
                return _Const(None)
            text = (el.text or "").strip()
            if el.get("dataType") in _NUMERIC_TYPES or (el.get("dataType") is None
                                                         and _is_number(text)):
                return _Const(float(text))
            return _Const(text)
        if tag == "NormContinuous":
            return self._norm_continuous(el, scope)
        if tag == "NormDiscrete":
            cat = scope.get(el.get("field"))
            if not isinstance(cat, _Cat):
                raise ConversionError(f"NormDiscrete over non-categorical field "
                                      f"{el.get('field')!r} is not read")
            value = canonical(el.attrib["value"], cat.data_type)
            missing = el.get("mapMissingTo")
            return _CatNum(cat, ((value, 1.0),), 0.0, float(missing) if missing else None)
        if tag == "MapValues":
            return self._map_values(el, scope, where)
        if tag == "Apply":
            return self._apply(el, scope, where)
        raise ConversionError(f"the form has no {tag}")

    def _map_missing(self, value: _Value, text: str | None, el: ET.Element) -> _Value:
        if text is None:
            return value
        if isinstance(value, _Num):
            return self.impute(value, text, el.get("field") or el.tag)
        if isinstance(value, _Cat):
            return _Cat(value.source, value.data_type, value.table, value.other,
                        canonical(text, value.data_type))
        if isinstance(value, _CatNum):
            return _CatNum(value.cat, value.values, value.other, float(text))
        return value

    def _norm_continuous(self, el: ET.Element, scope: _Scope) -> _Value:
        value = scope.get(el.get("field"))
        if not isinstance(value, _Num):
            raise ConversionError(f"NormContinuous over non-numeric field {el.get('field')!r} "
                                  "is not read")
        points = [(float(p.attrib["orig"]), float(p.attrib["norm"]))
                  for p in el.findall("LinearNorm")]
        if len(points) != 2:
            raise ConversionError(f"the form has no piecewise NormContinuous of {len(points)} "
                                  "points (two points are read)")
        if el.get("outliers", "asIs") != "asIs":
            raise ConversionError(f"the form has no NormContinuous outliers="
                                  f"{el.get('outliers')!r}")
        (o1, n1), (o2, n2) = points
        # start + (x - o1) / (o2 - o1) * (n2 - n1), in the evaluators' order
        scaled = self.add(ir.Scale(f"norm({value.name})", value.name, o1, o2 - o1))
        out = _Num(self.add(ir.Affine(f"norm({value.name})", scaled, n2 - n1, n1)))
        return self._map_missing(out, el.get("mapMissingTo"), el)

    def _map_values(self, el: ET.Element, scope: _Scope, where: ET.Element) -> _CatNum | _Cat:
        pairs = el.findall("FieldColumnPair")
        if len(pairs) != 1:
            raise ConversionError(f"the form has no MapValues over {len(pairs)} fields")
        cat = scope.get(pairs[0].get("field"))
        if not isinstance(cat, _Cat):
            raise ConversionError(f"MapValues over non-categorical field "
                                  f"{pairs[0].get('field')!r} is not read")
        column, out_column = pairs[0].get("column"), el.get("outputColumn")
        table = el.find("InlineTable")
        if table is None:
            raise ConversionError("the form has no MapValues without an InlineTable")
        numeric = (el.get("dataType") or where.get("dataType")) in _NUMERIC_TYPES
        mapping = {}
        for row in table.findall("row"):
            assert column is not None and out_column is not None  # required by PMML
            cells = {c.tag.split(":", 1)[-1]: (c.text or "").strip() for c in row}
            key = cells.get(column.split(":", 1)[-1])
            value = cells.get(out_column.split(":", 1)[-1])
            if key is None or value is None:
                raise ConversionError("a MapValues row lacks its input or output column")
            mapping[canonical(key, cat.data_type)] = value
        default, missing = el.get("defaultValue"), el.get("mapMissingTo")
        # the map applies to what the source category is seen as
        sources = self._source_values(cat)
        if numeric:
            values = tuple((k, float(v)) for k, v in mapping.items())
            return _compose_number(cat, values, float(default) if default else None,
                                   float(missing) if missing else None, sources)
        out_type = el.get("dataType") or where.get("dataType")
        return _compose_category(cat, {k: canonical(v, out_type) for k, v in mapping.items()},
                                 canonical(default, out_type) if default else None,
                                 canonical(missing, out_type) if missing else None,
                                 out_type, sources)

    def _source_values(self, cat: _Cat) -> list[str]:
        return self.vocabulary(cat.source)

    def _apply(self, el: ET.Element, scope: _Scope, where: ET.Element) -> _Value:
        function = el.get("function")
        args = [self.expression(a, scope, where) for a in el if a.tag != "Extension"]
        if el.get("invalidValueTreatment", "returnInvalid") not in ("returnInvalid", "asIs"):
            raise ConversionError(f"the form has no Apply invalidValueTreatment "
                                  f"{el.get('invalidValueTreatment')!r}")
        result = self._function(function, args, el)
        return self._map_missing(result, el.get("mapMissingTo"), el)

    def _function(self, function: str | None, args: list, el: ET.Element) -> _Value:
        consts = [a for a in args if isinstance(a, _Const)]
        if len(consts) == len(args) and function in _FOLDABLE:
            values = [a.value for a in args]
            if any(v is None for v in values):
                return _Const(None)
            return _Const(_FOLDABLE[function](*values))
        if function in ("+", "-", "*", "/") and len(args) == 2:
            return self._arithmetic(function, args)
        if function in ("isMissing", "isNotMissing") and len(args) == 1:
            return self._is_missing(args[0], function == "isNotMissing")
        if function in ("equal", "notEqual", "isIn", "isNotIn") and args:
            cat = args[0]
            if isinstance(cat, _Cat) and all(isinstance(a, _Const) for a in args[1:]):
                wanted = {canonical(_text(a.value), cat.data_type) for a in args[1:]}
                negate = function in ("notEqual", "isNotIn")
                sources = self._source_values(cat)
                return _boolean(cat, wanted, negate, sources)
        if function == "if" and len(args) in (2, 3):
            return self._if(args, el)
        raise ConversionError(f"the form has no Apply function {function!r} over "
                              f"{_describe(args)}")

    def _arithmetic(self, function: str, args: list) -> _Num | _TreeSum:
        a, b = args
        if isinstance(a, _Num) and isinstance(b, _Const) and isinstance(b.value, float):
            c = b.value
            steps: dict[str, ir.Step] = {"+": ir.Affine(f"({a.name}+{c!r})", a.name, 1.0, c),
                     "-": ir.Affine(f"({a.name}-{c!r})", a.name, 1.0, -c),
                     "*": ir.Affine(f"({a.name}*{c!r})", a.name, c, 0.0),
                     "/": ir.Scale(f"({a.name}/{c!r})", a.name, 0.0, c)}
            return _Num(self.add(steps[function]))
        if isinstance(b, _Num) and isinstance(a, _Const) and isinstance(a.value, float):
            c = a.value
            if function == "+":
                return _Num(self.add(ir.Affine(f"({c!r}+{b.name})", b.name, 1.0, c)))
            if function == "*":
                return _Num(self.add(ir.Affine(f"({c!r}*{b.name})", b.name, c, 0.0)))
            if function == "-":
                return _Num(self.add(ir.Affine(f"({c!r}-{b.name})", b.name, -1.0, c)))
        if isinstance(a, _TreeSum) and isinstance(b, _Const) and isinstance(b.value, float):
            c = b.value
            if function in ("+", "-"):
                return a.scaled(1.0, c if function == "+" else -c)
            if function == "*":
                return a.scaled(c)
        if isinstance(b, _TreeSum) and isinstance(a, _Const) and isinstance(a.value, float):
            c = a.value
            if function == "+":
                return b.scaled(1.0, c)
            if function == "*":
                return b.scaled(c)
            if function == "-":
                return b.scaled(-1.0, c)
        raise ConversionError(f"the form has no Apply function {function!r} over "
                              f"{_describe(args)} (arithmetic with a constant is read)")

    def _is_missing(self, arg: _Value, negate: bool) -> _Num | _CatNum:
        if isinstance(arg, _Num):
            name = self.add(ir.IsMissing(f"missing({arg.name})", arg.name))
            if negate:
                name = self.add(ir.Affine(f"present({arg.name})", name, -1.0, 1.0))
            return _Num(name)
        if isinstance(arg, _Cat):
            def flag(seen: object) -> float:
                """1.0 where what the category is seen as is missing (or is not)."""
                return float((seen is None) != negate)

            sources = self._source_values(arg)
            return _CatNum(_Cat(arg.source, arg.data_type),
                           tuple((s, flag(arg.value_of(s))) for s in sources),
                           flag(arg.value_of(_UNLISTED_TEXT)), flag(arg.value_of(None)))
        raise ConversionError(f"the form has no isMissing over {_describe([arg])}")

    def _if(self, args: list, el: ET.Element) -> _CatNum | _Cat:
        cond, then = args[0], args[1]
        other = args[2] if len(args) == 3 else _Const(None)
        if not isinstance(cond, _CatNum):
            raise ConversionError(f"the form has no Apply function 'if' over "
                                  f"{_describe(args)} (a condition on one category is read)")
        cat = cond.cat
        sources = self._source_values(cat)

        def pick(seen: object) -> _Value:
            flag = cond.number(seen)
            if flag is None:
                return _Const(None)
            return then if flag else other

        def result(probe: str | None, branch: _Value) -> object:
            """What the ``if`` gives for source value ``probe`` (None: missing)."""
            if isinstance(branch, _Const):
                return branch.value
            if branch == cat:
                seen = cat.value_of(probe)
                return _SAME if seen == _UNLISTED_TEXT else seen
            raise ConversionError(f"the form has no Apply function 'if' over "
                                  f"{_describe(args)}")

        table = {s: result(s, pick(cat.value_of(s))) for s in sources}
        unlisted = result(_UNLISTED_TEXT, pick(cat.value_of(_UNLISTED_TEXT)))
        missing = result(None, pick(cat.value_of(None)))
        values = [*table.values(), unlisted, missing]
        if all(v is None or isinstance(v, float) for v in values):
            assert unlisted is None or isinstance(unlisted, float)  # all() above checked it
            assert missing is None or isinstance(missing, float)  # all() above checked it
            return _CatNum(_Cat(cat.source, cat.data_type), tuple(table.items()), unlisted,
                           missing)
        if any(isinstance(v, float) for v in values):
            raise ConversionError("the form has no Apply function 'if' mixing numbers and "
                                  "categories")
        return _Cat(cat.source, cat.data_type,
                    tuple((k, None if v is None else _text(v)) for k, v in table.items()),
                    unlisted if unlisted in (None, _SAME) else _text(unlisted),
                    None if missing is None else _text(missing))

    # --- trees and ensembles --------------------------------------------------------------

    def trees(self, model: ET.Element, scope: _Scope) -> tuple[ir.TreeEnsemble, ir.Output]:
        """A TreeModel or a MiningModel of trees as one tree ensemble."""
        task = self.signature.task
        n_out = len(self.classifier_classes()) if task == "classification" else 1
        builder = _Ensemble(self, n_out)
        if task == "regression":
            value = self.regression_value(model, scope)
            for tree, weight, sub_scope, null in value.trees:
                builder.add_tree(tree, sub_scope, scale=weight, null=null)
            builder.base[0] += value.const
            return builder.node("sum"), ir.Output("regression", "identity")
        combine, transform = self.classifier(model, scope, builder)
        classes = list(self.classifier_classes())
        return builder.node(combine), ir.Output("classification", transform, classes)

    def regression_value(self, model: ET.Element, scope: _Scope) -> _TreeSum:
        """What a regression TreeModel or MiningModel of trees gives, as a sum of trees."""
        if model.get("functionName") != "regression":
            raise ConversionError(f"a {model.get('functionName')} {model.tag} inside a "
                                  "regression is not read")
        scope = self.model_scope(model, scope)
        if model.tag == "TreeModel":
            value = _TreeSum([(model, 1.0, scope, math.nan)])
        elif model.tag == "MiningModel":
            value = self._mining_regression(model, scope)
        else:
            raise ConversionError(f"the form has no {model.tag} inside a tree ensemble")
        return _rescale(value, model)

    def _mining_regression(self, model: ET.Element, scope: _Scope) -> _TreeSum:
        seg = model.find("Segmentation")
        assert seg is not None  # required by PMML
        method = seg.get("multipleModelMethod")
        segments = seg.findall("Segment")
        if method == "modelChain":
            return self._chain(segments, scope, self.regression_value)
        if method not in ("sum", "average", "weightedAverage", "weightedSum"):
            raise ConversionError(f"the form has no MiningModel multipleModelMethod "
                                  f"{method!r} for regression")
        treatment = _treatment(seg)
        # a segment with no answer makes the whole answer missing, except that a skipped
        # one adds nothing to a sum; an average of the others is not in the form
        null: float | str
        if treatment != "skipSegment":
            null = math.nan
        elif method in ("sum", "weightedSum"):
            null = 0.0
        else:
            null = f"the form has no {method} that skips segments with no answer"
        total = _TreeSum([])
        weights = [float(s.get("weight", "1")) for s in segments]
        for segment, weight in zip(segments, weights, strict=True):
            _check_true(segment)
            part = self.regression_value(_segment_model(segment), scope)
            part = _TreeSum([(t, w, s, null if isinstance(n, float) and math.isnan(n) else n)
                             for t, w, s, n in part.trees], part.const)
            if method == "average":
                weight = 1.0 / len(segments)
            elif method == "weightedAverage":
                weight = weight / sum(weights)
            elif method == "sum":
                weight = 1.0
            part = part.scaled(weight)
            total = _TreeSum(total.trees + part.trees, total.const + part.const)
        return total

    def _chain(self, segments: list, scope: _Scope, last: Callable[[ET.Element, _Scope], _T]
               ) -> _T:
        """Run a model chain: each segment's output fields become fields of the next."""
        chain = scope.child()
        for i, segment in enumerate(segments):
            _check_true(segment)
            sub = _segment_model(segment)
            if i == len(segments) - 1:
                return last(sub, chain)
            value = self.regression_value(sub, chain)
            output = sub.find("Output")
            for of in [] if output is None else output.findall("OutputField"):
                feature = of.get("feature", "predictedValue")
                if feature == "predictedValue":
                    chain.values[of.get("name")] = value
                elif feature == "transformedValue":
                    assert output is not None  # its fields are being read
                    expr = _expression_of(of)
                    local = chain.child()
                    local.values.update({o.get("name"): chain.values[o.get("name")]
                                         for o in output.findall("OutputField")
                                         if o.get("name") in chain.values})
                    chain.values[of.get("name")] = self.expression(expr, local, of)
                else:
                    raise ConversionError(f"the form has no OutputField feature {feature!r} "
                                          "inside a model chain")
        raise ConversionError("an empty model chain is not read")

    def classifier(self, model: ET.Element, scope: _Scope, builder: _Ensemble
                   ) -> tuple[str, str]:
        """Fill ``builder`` with a classifying TreeModel or MiningModel of trees; the
        ensemble's combine and output transform."""
        scope = self.model_scope(model, scope)
        if model.get("functionName") != "classification":
            raise ConversionError(f"a {model.get('functionName')} {model.tag} is not read "
                                  "as a classifier")
        if model.find("Targets") is not None:
            raise ConversionError("the form has no Targets of a classifier")
        if model.tag == "TreeModel":
            builder.add_tree(model, scope)
            return "sum", "probability"
        if model.tag != "MiningModel":
            raise ConversionError(f"the form has no {model.tag} inside a tree ensemble")
        seg = model.find("Segmentation")
        assert seg is not None  # required by PMML
        method = seg.get("multipleModelMethod")
        segments = seg.findall("Segment")
        if method == "modelChain":
            return self._chain(segments, scope,
                               lambda sub, chain: self._chain_classifier(sub, chain, builder))
        if method == "selectFirst":
            builder.add_select_first(segments, scope)
            return "sum", "probability"
        weights = [float(s.get("weight", "1")) for s in segments]
        if method in ("majorityVote", "weightedMajorityVote", "average", "weightedAverage"):
            total = sum(weights) if method.startswith("weighted") else len(segments)
            treatment = _treatment(seg)
            vote = method.endswith("ajorityVote")
            # a tree with no answer makes the answer missing, except that a vote counts it
            # as a vote for "no answer" and skipping it averages the others: neither is in
            # the form
            null: float | str
            if treatment == "returnMissing" or (treatment == "continue" and not vote):
                null = math.nan
            else:
                null = (f"the form has no {method} over trees that can give no answer "
                        f"(missingPredictionTreatment {treatment!r})")
            for segment, weight in zip(segments, weights, strict=True):
                _check_true(segment)
                sub = _segment_model(segment)
                if sub.tag != "TreeModel" or sub.get("functionName") != "classification":
                    raise ConversionError(f"the form has no {method} over {sub.tag}")
                if sub.find("Targets") is not None:
                    raise ConversionError("the form has no Targets of a classifier")
                share = (weight if method.startswith("weighted") else 1.0) / total
                builder.add_tree(sub, self.model_scope(sub, scope), vote=vote, scale=share,
                                 null=null)
            return "sum", "probability"
        raise ConversionError(f"the form has no MiningModel multipleModelMethod {method!r} "
                              "for classification")

    def _chain_classifier(self, model: ET.Element, scope: _Scope, builder: _Ensemble
                          ) -> tuple[str, str]:
        """The last segment of a boosting chain: a RegressionModel over tree sums."""
        if model.tag != "RegressionModel" or model.get("functionName") != "classification":
            raise ConversionError(f"the form has no model chain ending in a "
                                  f"{model.get('functionName')} {model.tag}")
        scope = self.model_scope(model, scope)
        tables = model.findall("RegressionTable")
        norm = model.get("normalizationMethod", "none")
        columns = self._table_columns(tables, norm)
        if norm == "logit":
            builder.n_out, builder.base = 1, [0.0]
        for table, column, sign in columns:
            if column is None:
                continue
            builder.base[column] += sign * float(table.get("intercept", "0"))
            for child in table:
                if child.tag == "NumericPredictor":
                    if float(child.get("exponent", "1")) != 1.0:
                        raise ConversionError("the form has no NumericPredictor exponent")
                    value = scope.get(child.get("name"))
                    coefficient = sign * float(child.attrib["coefficient"])
                    if isinstance(value, _Const) and isinstance(value.value, float):
                        builder.base[column] += coefficient * value.value
                        continue
                    if not isinstance(value, _TreeSum):
                        raise ConversionError(f"the form has no model chain whose last model "
                                              f"mixes trees with field {child.get('name')!r}")
                    builder.base[column] += coefficient * value.const
                    for tree, weight, sub_scope, null in value.trees:
                        builder.add_tree(tree, sub_scope, scale=weight * coefficient,
                                         output=column, single=True, null=null)
                elif child.tag != "Extension":
                    raise ConversionError(f"the form has no {child.tag} in a model chain")
        return "sum", "logistic" if norm == "logit" else "softmax"

    def _table_columns(self, tables: list, norm: str
                       ) -> list[tuple[ET.Element, int | None, float]]:
        """``(table, raw column, sign)`` per RegressionTable of a classifier, and checks
        its link: ``softmax`` (a column per class) or ``logit`` over two classes (one
        column: the first table's score; the other class gets one minus its probability)."""
        classes = self.classifier_classes()
        index = {}
        for t in tables:
            index[id(t)] = class_index(t.get("targetCategory"), classes)
        if sorted(index.values()) != list(range(len(classes))):
            raise ConversionError("the RegressionTables name other classes than the target")
        if norm == "softmax":
            return [(t, index[id(t)], 1.0) for t in tables]
        if norm == "logit" and len(classes) == 2:
            first, second = tables
            if _has_terms(second) or float(second.get("intercept", "0")) != 0.0:
                raise ConversionError("the form has no binary logit whose second "
                                      "RegressionTable is not zero")
            # the logistic output gives the probability of classes[1]
            sign = 1.0 if index[id(first)] == 1 else -1.0
            return [(first, 0, sign), (second, None, 1.0)]
        raise ConversionError(f"the form has no RegressionModel normalizationMethod {norm!r} "
                              f"over {len(classes)} classes (softmax, and logit over two "
                              "classes, are read)")

    # --- regression models ----------------------------------------------------------------

    def regression(self, model: ET.Element, scope: _Scope) -> tuple[ir.Linear, ir.Output]:
        """A top-level RegressionModel as a linear node."""
        task = self.signature.task
        tables = model.findall("RegressionTable")
        norm = model.get("normalizationMethod", "none")
        linear = _Linear(self)
        if task == "regression":
            if len(tables) != 1:
                raise ConversionError("a regression with several RegressionTables is not read")
            transform = {"none": "identity", "exp": "exp"}.get(norm)
            if transform is None:
                raise ConversionError(f"the form has no regression normalizationMethod {norm!r}")
            linear.columns = 1
            linear.table(tables[0], scope, 0, 1.0)
            factor, constant = _target_rescale(model)
            if transform == "exp" and (factor, constant) != (1.0, 0.0):
                raise ConversionError("the form has no Targets rescaling of an exp link")
            linear.rescale(factor, constant)
            return linear.node(), ir.Output("regression", transform)
        if model.find("Targets") is not None:
            raise ConversionError("the form has no Targets of a classifier")
        columns = self._table_columns(tables, norm)
        linear.columns = 1 if norm == "logit" else len(self.classifier_classes())
        for table, column, sign in columns:
            if column is not None:
                linear.table(table, scope, column, sign)
        transform = "logistic" if norm == "logit" else "softmax"
        return linear.node(), ir.Output("classification", transform,
                                        list(self.classifier_classes()))

    def general_regression(self, model: ET.Element, scope: _Scope
                           ) -> tuple[ir.Linear, ir.Output]:
        """A GeneralRegressionModel whose parameters each hold one covariate (to the first
        power) or one factor level, as a linear node: a generalized linear regression with
        an identity or log link, or a multinomial logistic classifier."""
        model_type = model.get("modelType")
        task = self.signature.task
        if task == "regression":
            if model_type not in ("regression", "generalLinear", "generalizedLinear"):
                raise ConversionError(f"the form has no GeneralRegressionModel modelType "
                                      f"{model_type!r} for regression")
            link = model.get("linkFunction", "identity") if model_type == "generalizedLinear" \
                else "identity"
            transform = {"identity": "identity", "log": "exp"}.get(link)
            if transform is None:
                raise ConversionError(f"the form has no GeneralRegressionModel linkFunction "
                                      f"{link!r}")
            columns: dict[object, int] = {None: 0}
        elif model_type == "multinomialLogistic":
            transform = "softmax"
            columns = {c: k for k, c in enumerate(self.classifier_classes())}
        else:
            raise ConversionError(f"the form has no GeneralRegressionModel modelType "
                                  f"{model_type!r} for classification")
        for attr in ("offsetVariable", "trialsVariable", "trialsValue"):
            if model.get(attr) is not None:
                raise ConversionError(f"the form has no GeneralRegressionModel {attr}")
        factors = {p.get("name") for p in model.iter("Predictor")
                   if _parent_tag(model, p) == "FactorList"}
        cells: dict[str | None, list] = {}
        for cell in model.iter("PPCell"):
            cells.setdefault(cell.get("parameterName"), []).append(cell)
        linear = _Linear(self)
        linear.columns = len(set(columns.values()))
        offset = float(model.get("offsetValue", "0"))
        for k in range(linear.columns):
            linear.intercept[k] = offset
        for pcell in model.iter("PCell"):
            category = pcell.get("targetCategory")
            if task == "regression":
                column = 0
            else:
                classes = self.classifier_classes()
                column = columns[classes[class_index(category, classes)]]
            beta = float(pcell.attrib["beta"])
            parameter = pcell.get("parameterName")
            found = cells.get(parameter, [])
            if not found:
                linear.intercept[column] += beta
                continue
            if len(found) > 1:
                raise ConversionError(f"the form has no GeneralRegressionModel parameter "
                                      f"{parameter!r} over several predictors (products of "
                                      "fields)")
            name, value = found[0].get("predictorName"), found[0].get("value")
            field = scope.get(name)
            if name in factors:
                if not isinstance(field, _Cat):
                    raise ConversionError(f"factor {name!r} is not categorical")
                # a missing factor gives no answer, as evaluators have it
                assert value is not None  # required by PMML
                level = canonical(value, field.data_type)
                linear.number(_CatNum(field, ((level, 1.0),), 0.0, None), name, column, beta)
            else:
                assert value is not None  # required by PMML
                if float(value) != 1.0:
                    raise ConversionError(f"the form has no covariate {name!r} to the power "
                                          f"{value}")
                linear.number(field, name, column, beta)
        if task == "classification":
            reference = model.get("targetReferenceCategory")
            named = {pc.get("targetCategory") for pc in model.iter("PCell")}
            if len(named) != len(self.classifier_classes()) - 1 or (
                    reference is not None and reference in named):
                raise ConversionError("the GeneralRegressionModel's parameters name other "
                                      "classes than all but its reference class")
            return linear.node(), ir.Output("classification", transform,
                                            list(self.classifier_classes()))
        return linear.node(), ir.Output("regression", transform)

    def scorecard(self, model: ET.Element, scope: _Scope) -> tuple[ir.TreeEnsemble, ir.Output]:
        """A Scorecard whose partial scores are numbers, as a sum of trees: each
        Characteristic is a tree giving the ``partialScore`` of its first Attribute whose
        predicate is true (an unknown one is passed over) and no answer when none is, as
        JPMML-Evaluator has it. Reason codes rank the characteristics; they change no
        score."""
        if self.signature.task != "regression":
            raise ConversionError(f"the form has no {model.get('functionName')} Scorecard")
        if model.find("Targets") is not None:
            raise ConversionError("the form has no Targets of a Scorecard")
        builder = _Ensemble(self, 1)
        builder.base[0] = float(model.get("initialScore", "0"))
        characteristics = model.find("Characteristics")
        for ch in [] if characteristics is None else characteristics.findall("Characteristic"):
            tree = _TreeBuild(builder, single=True)
            tree.first_true(ch.findall("Attribute"), scope, _partial_score)
            builder.trees.append(tree.finish())
        if not builder.trees:
            raise ConversionError("a Scorecard has no Characteristic")
        return builder.node("sum"), ir.Output("regression", "identity")

    def clustering(self, model: ET.Element, scope: _Scope) -> tuple[ir.Centroids, ir.Output]:
        if model.get("modelClass", "centerBased") != "centerBased":
            raise ConversionError(f"the form has no ClusteringModel modelClass "
                                  f"{model.get('modelClass')!r}")
        measure = model.find("ComparisonMeasure")
        kind = [c.tag for c in measure if c.tag != "Extension"] if measure is not None else []
        if measure is None or measure.get("kind", "distance") != "distance" or kind not in (
                ["squaredEuclidean"], ["euclidean"]):
            raise ConversionError(f"the form has no ClusteringModel comparison measure "
                                  f"{kind or None} (squared or plain Euclidean distance is read)")
        if measure.get("compareFunction", "absDiff") != "absDiff":
            raise ConversionError("the form has no compareFunction other than absDiff")
        features = []
        for cf in model.findall("ClusteringField"):
            if cf.get("isCenterField", "true") != "true":
                continue
            if float(cf.get("fieldWeight", "1")) != 1.0 or cf.get("compareFunction",
                                                                  "absDiff") != "absDiff":
                raise ConversionError(f"the form has no weighted ClusteringField "
                                      f"{cf.get('field')!r}")
            features.append(self.defined_field(scope.get(cf.get("field")), cf.get("field"),
                                               "ClusteringModel"))
        centers = []
        for cluster in model.findall("Cluster"):
            array = cluster.find("Array")
            values = [float(v) for v in _array(array)]
            if len(values) != len(features):
                raise ConversionError("a Cluster's centre has another length than the fields")
            centers.append(values)
        return ir.Centroids(features, centers), ir.Output("clustering", "nearest")

    def naive_bayes(self, model: ET.Element, scope: _Scope) -> tuple[ir.GaussianNB, ir.Output]:
        """A NaiveBayesModel whose inputs are all Gaussian, as Gaussian naive Bayes."""
        threshold = float(model.get("threshold", "0"))
        if threshold > 0:
            raise ConversionError("the form has no NaiveBayesModel threshold above 0")
        classes = self.classifier_classes()
        features: list[str] = []
        theta: list[list[float]] = [[] for _ in classes]
        var: list[list[float]] = [[] for _ in classes]
        inputs = model.find("BayesInputs")
        for bi in [] if inputs is None else inputs.findall("BayesInput"):
            if bi.find("DerivedField") is not None or bi.find("PairCounts") is not None:
                raise ConversionError(f"the form has no NaiveBayesModel counts of "
                                      f"{bi.get('fieldName')!r} (Gaussian inputs are read)")
            stats = bi.find("TargetValueStats")
            seen = set()
            for tvs in [] if stats is None else stats.findall("TargetValueStat"):
                gauss = tvs.find("GaussianDistribution")
                if gauss is None:
                    raise ConversionError("the form has no NaiveBayesModel distribution other "
                                          "than GaussianDistribution")
                k = class_index(tvs.get("value"), classes)
                theta[k].append(float(gauss.attrib["mean"]))
                var[k].append(float(gauss.attrib["variance"]))
                seen.add(k)
            if seen != set(range(len(classes))):
                raise ConversionError(f"BayesInput {bi.get('fieldName')!r} lacks a class")
            features.append(self.defined_field(scope.get(bi.get("fieldName")),
                                               bi.get("fieldName"), "NaiveBayesModel"))
        counts = [0.0] * len(classes)
        output = model.find("BayesOutput")
        assert output is not None  # required by PMML
        for tv in output.iter("TargetValueCount"):
            counts[class_index(tv.get("value"), classes)] = float(tv.attrib["count"])
        total = sum(counts)
        log_prior = [math.log(c / total) for c in counts]
        return (ir.GaussianNB(features, theta, var, log_prior),
                ir.Output("classification", "softmax", list(classes)))

    def defined_field(self, value: _Value, where: str | None, model: str) -> str:
        """The IR field of a number that is never missing: evaluators leave a missing
        value out of a distance or a likelihood, which the form's centroids and Gaussian
        naive Bayes do not, so such a model is read only when its inputs are replaced
        where missing (``missingValueReplacement``, ``mapMissingTo``)."""
        name = self.numeric_field(value, where)
        if not self.never_missing(name):
            raise ConversionError(f"the form has no {model} over a field that may be missing "
                                  f"({where!r} has no missingValueReplacement)")
        return name

    def never_missing(self, name: str) -> bool:
        return not ir.missing_possible([], self.steps).get(name, True)

    def numeric_field(self, value: _Value, where: str | None) -> str:
        """The IR field of a number the model node reads as it is."""
        if isinstance(value, _Num):
            if value.float32:
                raise ConversionError(f"the form has no float32 rounding of field {where!r} "
                                      "outside a tree")
            return value.name
        if isinstance(value, _CatNum) and value.missing is not None:
            flags = {v for _, v in value.values} | {value.other, value.missing}
            if flags <= {0.0, 1.0}:
                return self.indicator(value)
        raise ConversionError(f"the form has no {_describe([value])} as a numeric input "
                              f"({where!r})")

    def indicator(self, value: _CatNum) -> str:
        """A 0/1 number of a category as an Indicator step."""
        sources = self._source_values(value.cat)
        ones = [s for s in sources if value.number(value.cat.value_of(s)) == 1.0]
        cats: list[str | None] = list(ones) + (
            [None] if value.number(value.cat.value_of(None)) == 1.0 else [])
        listed = set(sources)
        if value.number(value.cat.value_of(_UNLISTED_TEXT)) == 1.0:
            # anything unlisted is a one: the complement of the listed zeros
            zeros: list[str | None] = [s for s in listed if s not in ones]
            zeros += [] if None in cats else [None]
            return self.add(ir.Indicator(f"{value.cat.source}!={zeros}", value.cat.source,
                                         zeros, negate=True))
        return self.add(ir.Indicator(f"{value.cat.source}={cats}", value.cat.source, cats))


#: a category no vocabulary lists, to ask what a value map does with such values
_UNLISTED_TEXT = "\x00modelport-unlisted"


# --- linear models ---------------------------------------------------------------------------


class _Linear:
    """Terms of a linear model gathered per IR field, for one or more raw columns."""

    def __init__(self, reader: _Reader) -> None:
        self.reader = reader
        self.columns = 1
        self.coef: dict[str, dict[int, float]] = {}
        self.intercept: dict[int, float] = {}

    def term(self, name: str, column: int, weight: float) -> None:
        row = self.coef.setdefault(name, {})
        row[column] = row.get(column, 0.0) + weight

    def table(self, table: ET.Element, scope: _Scope, column: int, sign: float) -> None:
        self.intercept[column] = self.intercept.get(column, 0.0) + sign * float(
            table.get("intercept", "0"))
        for child in table:
            if child.tag == "NumericPredictor":
                if float(child.get("exponent", "1")) != 1.0:
                    raise ConversionError(f"the form has no NumericPredictor exponent "
                                          f"({child.get('name')!r})")
                self.number(scope.get(child.get("name")), child.get("name"), column,
                            sign * float(child.attrib["coefficient"]))
            elif child.tag == "CategoricalPredictor":
                value = scope.get(child.get("name"))
                if not isinstance(value, _Cat):
                    raise ConversionError(f"CategoricalPredictor over non-categorical field "
                                          f"{child.get('name')!r} is not read")
                category = canonical(child.attrib["value"], value.data_type)
                # a missing category matches no predictor: the term is zero, as evaluators have it
                self.number(_CatNum(value, ((category, 1.0),), 0.0, 0.0), child.get("name"),
                            column, sign * float(child.attrib["coefficient"]))
            elif child.tag == "PredictorTerm":
                raise ConversionError("the form has no PredictorTerm (products of fields)")
            elif child.tag != "Extension":
                raise ConversionError(f"the form has no {child.tag} in a RegressionTable")

    def number(self, value: _Value, where: str | None, column: int, weight: float) -> None:
        reader = self.reader
        if isinstance(value, _Const) and isinstance(value.value, float):
            self.intercept[column] = self.intercept.get(column, 0.0) + weight * value.value
        elif isinstance(value, _Num):
            self.term(reader.numeric_field(value, where), column, weight)
        elif isinstance(value, _CatNum):
            self.category_number(value, where, column, weight)
        else:
            raise ConversionError(f"the form has no {_describe([value])} as a predictor "
                                  f"({where!r})")

    def category_number(self, value: _CatNum, where: str | None, column: int,
                        weight: float) -> None:
        """``weight * number(category)``: an indicator term per distinct number, over the
        number of unlisted categories; a zero-weight term that is NaN exactly where the
        number is missing makes the score missing there, as PMML has it."""
        reader = self.reader
        cat = value.cat
        sources = reader._source_values(cat)
        numbers = {s: value.number(cat.value_of(s)) for s in sources}
        if any(n is None for n in numbers.values()):
            raise ConversionError(f"the form has no category that maps to a missing number "
                                  f"({where!r})")
        other = value.number(cat.value_of(_UNLISTED_TEXT))
        miss = value.number(cat.value_of(None))
        base = other if other is not None else 0.0
        if base:
            self.intercept[column] = self.intercept.get(column, 0.0) + weight * base
        groups: dict[float, list] = {}
        for s, n in numbers.items():
            assert n is not None  # a missing number was refused above
            if n != base:
                groups.setdefault(n, []).append(s)
        for n, group in groups.items():
            name = reader.add(ir.Indicator(f"{cat.source}={group}", cat.source, group))
            self.term(name, column, weight * (n - base))
        if miss is not None and miss != base:
            name = reader.add(ir.Indicator(f"{cat.source}=None", cat.source, [None]))
            self.term(name, column, weight * (miss - base))
        if miss is None or other is None:
            name = reader.add(ir.Ordinal(f"defined({cat.source})", cat.source, list(sources),
                                         unknown=None if other is None else 0.0,
                                         missing=None if miss is None else 0.0))
            self.term(name, column, 0.0)

    def rescale(self, factor: float, constant: float) -> None:
        if (factor, constant) == (1.0, 0.0):
            return
        for row in self.coef.values():
            for k in row:
                row[k] *= factor
        for k in list(self.intercept):
            self.intercept[k] = self.intercept[k] * factor + constant

    def node(self) -> ir.Linear:
        names = list(self.coef)
        coef = [[self.coef[n].get(k, 0.0) for n in names] for k in range(self.columns)]
        intercept = [self.intercept.get(k, 0.0) for k in range(self.columns)]
        return ir.Linear(names, coef, intercept)


# --- trees -----------------------------------------------------------------------------------


@dataclass
class _Cont:
    """Where a row goes next: ``key`` says which destination it is (so two ways to the
    same place are one), ``build`` makes it under what the path has decided."""

    key: tuple
    build: Callable


@dataclass
class _Known:
    """What the path to a node decided about each field: numbers lie in ``(lo, hi]``,
    categories in ``allowed`` (None: any) and not in ``excluded``; missing is True, False
    or None (not decided)."""

    num: dict = field(default_factory=dict)
    cat: dict = field(default_factory=dict)

    def with_num(self, name: str, lo: float, hi: float, missing: bool | None) -> _Known:
        return _Known({**self.num, name: (lo, hi, missing)}, self.cat)

    def with_cat(self, name: str, allowed: frozenset | None, excluded: frozenset,
                 missing: bool | None) -> _Known:
        return _Known(self.num, {**self.cat, name: (allowed, excluded, missing)})


class _Ensemble:
    """Trees of one ensemble as flat IR trees over shared features."""

    def __init__(self, reader: _Reader, n_out: int) -> None:
        self.reader = reader
        self.n_out = n_out
        self.trees: list[ir.Tree] = []
        self.features: list[str] = []
        self.base = [0.0] * n_out
        self.float32: set[bool] = set()
        self.classes = reader.signature.classes

    def feature(self, name: str, float32: bool | None) -> int:
        """The index of IR field ``name``; ``float32`` None for category codes, which are
        exact in either precision."""
        if float32 is not None:
            self.float32.add(float32)
        if len(self.float32) > 1:
            raise ConversionError("the form has no tree mixing float and double fields")
        if name not in self.features:
            self.features.append(name)
        return self.features.index(name)

    def node(self, combine: str) -> ir.TreeEnsemble:
        dtype = "float32" if True in self.float32 else "float64"
        return ir.TreeEnsemble(self.features, self.trees, self.n_out, list(self.base),
                               combine=combine, compare="<=", input_dtype=dtype)

    def add_tree(self, model: ET.Element, scope: _Scope, *, scale: float = 1.0,
                 output: int = 0, vote: bool = False, single: bool | None = None,
                 null: float | str = math.nan) -> None:
        """Add TreeModel ``model``: its leaves times ``scale`` add to raw column ``output``
        (``single``: one column, else one per class); where it gives no answer its leaf
        holds ``null`` (a text: the reason such a tree cannot be read)."""
        if single is None:
            single = self.reader.signature.task == "regression"
        tree = _TreeBuild(self, scale=scale, output=output, vote=vote, single=single,
                          null=null)
        root = model.find("Node")
        if root is None:
            raise ConversionError("a TreeModel has no Node")
        tree.model(model, scope, root)
        self.trees.append(tree.finish())

    def add_select_first(self, segments: list, scope: _Scope) -> None:
        """``selectFirst``: the first segment whose predicate holds scores, as one tree."""
        tree = _TreeBuild(self, single=self.reader.signature.task == "regression")
        conts = []
        for segment in segments:
            sub = _segment_model(segment)
            if sub.tag != "TreeModel" or sub.get("functionName") != "classification":
                raise ConversionError(f"the form has no selectFirst over {sub.tag}")
            conts.append((segment, sub, self.reader.model_scope(sub, scope)))

        def pick(i: int, known: _Known) -> int:
            if i == len(conts):
                return tree.leaf(None)
            segment, sub, sub_scope = conts[i]
            root = sub.find("Node")

            def take(k: _Known) -> int:
                assert root is not None  # required by PMML
                return tree.model(sub, sub_scope, root, k)

            taken = _Cont(("segment", i), take)
            skipped = _Cont(("after", i), lambda k: pick(i + 1, k))
            # a segment whose predicate is unknown is not selected
            return tree.decide(_predicate(segment), scope, known, taken, skipped, skipped)

        pick(0, _Known())
        self.trees.append(tree.finish())


class _TreeBuild:
    """One IR tree built from PMML nodes; node 0 is the root.

    Alongside the nodes it works out each node's cover, the training weight that reached
    it, from the ``recordCount`` of the PMML nodes (see :meth:`counts`): a leaf standing
    for a PMML node has that node's count, a leaf where a row stops at a node or gets no
    answer has none (the counts say no training record did, else they are not used), and
    every split has the sum of its two sides, so a split the reader makes up (one link of
    a multi-way chain, a test for a missing value) has the sum of the nodes it stands for.
    The tree keeps its covers only when every PMML node it is built from has a count and
    each count is accounted for exactly once (:meth:`finish`).
    """

    def __init__(self, ensemble: _Ensemble, *, scale: float = 1.0, output: int = 0,
                 vote: bool = False, single: bool = False, null: float | str = math.nan) -> None:
        self.ensemble = ensemble
        self.null = null
        self.reader = ensemble.reader
        self.scale = scale
        self.output = output
        self.vote = vote
        self.single = single
        #: the tree's categories while it is built (finish may drop them)
        self.categories: list[list | None] = []
        self.t = ir.Tree(feature=[], threshold=[], left=[], right=[], missing_left=[],
                         value=[], categories=self.categories)
        self.cover: list[float] = []
        #: whether the covers are the training weights: None until a TreeModel is read
        self.counted: bool | None = None
        #: the PMML nodes with a positive count built so far
        self.built: set[int] = set()

    def finish(self) -> ir.Tree:
        t = self.t
        if all(c is None for c in self.categories):
            t.categories = None
        t.output = self.output
        if self.counted and self.weighable():
            t.cover = self.cover
        return t

    def weighable(self) -> bool:
        """Whether every split has training weight to share between its sides and every
        leaf an answer. Reason codes (path-dependent TreeSHAP) weigh a split's sides by
        their covers over the split's and average over every leaf: a split no training
        record reached (a category with a zero count, a chain of such) would divide 0 by
        0, and a leaf with no answer (a category or missing value no child takes) would
        make the average missing, for every row however few reach them. Such a tree keeps
        no covers, so that reason codes are refused rather than missing."""
        t = self.t
        return all(c > 0.0 for c, f in zip(self.cover, t.feature, strict=True) if f >= 0) \
            and not any(math.isnan(v) for values in t.value for v in values)

    def counts(self, model: ET.Element) -> None:
        """Take the covers from ``model``'s node counts only if every Node has one: a
        count that is missing, negative or not a number leaves the whole tree without
        covers (some writers count only leaves, or write class proportions there)."""
        if self.counted is False:
            return
        for node in model.iter("Node"):
            count = _count(node)
            if count is None or not count >= 0.0 or math.isinf(count):
                self.counted = False
                return
        if self.counted is None:
            self.counted = True

    def check_count(self, node: ET.Element, at: int) -> None:
        """Drop the covers unless PMML ``node``, built at IR node ``at``, is accounted for
        exactly once: its count equals the cover the IR subtree adds up to (the sum of its
        children's counts, as far as the path lets rows reach them) up to the rounding of
        the written numbers, and it is not built twice (its records would then be shared
        between the copies in proportions the file does not give)."""
        if not self.counted:
            return
        count = _count(node)
        assert count is not None  # counts() found one on every Node
        if count > 0.0:
            if id(node) in self.built:
                self.counted = False
                return
            self.built.add(id(node))
        # counts are whole records, or sums of weights a writer may print rounded (to about
        # seven significant digits, a float's precision, or more): one part in a million
        # allows for that, yet a record missing from a count below a million is caught
        if abs(self.cover[at] - count) > 1e-6 * max(count, self.cover[at]):
            self.counted = False

    def model(self, model: ET.Element, scope: _Scope, root: ET.Element,
              known: _Known | None = None) -> int:
        """The IR node of ``root``'s tree (its own settings), arrived at under ``known``."""
        strategy = model.get("missingValueStrategy", "none")
        no_true = model.get("noTrueChildStrategy", "returnNullPrediction")
        if strategy not in ("none", "defaultChild", "lastPrediction", "nullPrediction"):
            raise ConversionError(f"the form has no TreeModel missingValueStrategy "
                                  f"{strategy!r}")
        if no_true not in ("returnNullPrediction", "returnLastPrediction"):
            raise ConversionError(f"the form has no noTrueChildStrategy {no_true!r}")
        regression = model.get("functionName") == "regression"
        if regression != self.single:
            raise ConversionError(f"a {model.get('functionName')} TreeModel is not read where "
                                  f"{'numbers' if self.single else 'classes'} are scored")
        if regression:
            factor, constant = _target_rescale(model)
        elif model.find("Targets") is not None:
            raise ConversionError("the form has no Targets of a classifier")
        else:
            factor, constant = 1.0, 0.0
        scale = self.scale
        self.scale = scale * factor
        if constant:
            self.ensemble.base[self.output] += scale * constant
        settings = (strategy, no_true, regression)
        self.counts(model)
        # the root's own predicate: a root that is not true gives no answer
        root_cont = _Cont(("node", id(root)), lambda k: self.node(root, scope, k, settings))
        null = _Cont(("null",), lambda k: self.leaf(None))
        try:
            return self.decide(_predicate(root), scope, known or _Known(), root_cont, null,
                               null)
        finally:
            self.scale = scale

    # --- nodes ------------------------------------------------------------------------------

    def reserve(self) -> int:
        t = self.t
        if len(t.feature) >= MAX_NODES:
            raise ConversionError(f"the tree would take over {MAX_NODES} nodes in the form")
        i = t.add_leaf(1 if self.single else self.ensemble.n_out)  # categories included
        self.cover.append(0.0)  # the tree holds its covers only once they are known
        return i

    def leaf(self, values: list | None, count: float = 0.0) -> int:
        """A leaf giving ``values`` (None: no answer), reached by ``count`` training
        records."""
        i = self.reserve()
        self.cover[i] = count
        width = 1 if self.single else self.ensemble.n_out
        if values is None:
            if isinstance(self.null, str):
                raise ConversionError(self.null)
            self.t.value[i] = [self.null] * width
        else:
            self.t.value[i] = [v * self.scale for v in values]
        return i

    def split(self, feature: str, float32: bool | None, threshold: float, left: _Cont, right: _Cont,
              missing_left: bool, known_left: _Known, known_right: _Known,
              categories: list | None = None) -> int:
        i = self.reserve()
        t = self.t
        t.feature[i] = self.ensemble.feature(feature, float32)
        t.threshold[i] = threshold
        t.missing_left[i] = missing_left
        self.categories[i] = categories
        t.left[i] = left.build(known_left)
        t.right[i] = right.build(known_right)
        self.cover[i] = self.cover[t.left[i]] + self.cover[t.right[i]]
        return i

    def node(self, node: ET.Element, scope: _Scope, known: _Known,
             settings: tuple[str, str, bool]) -> int:
        """Arrived at PMML ``node`` (its predicate held): its children, or its value."""
        children = node.findall("Node")
        if node.find("Partition") is not None or node.find("EmbeddedModel") is not None:
            raise ConversionError("the form has no EmbeddedModel in a tree node")
        if not children:
            count = _count(node) if self.counted else 0.0
            assert count is not None  # counts() found one on every Node
            at = self.leaf(self.values(node, settings), count)
            self.check_count(node, at)
            return at
        strategy, no_true, _ = settings
        by_id = {c.get("id"): c for c in children if c.get("id") is not None}

        def after(i: int, k: _Known) -> int:
            if i == len(children):
                if no_true == "returnLastPrediction":
                    return self.leaf(self.values(node, settings))
                return self.leaf(None)
            child = children[i]
            taken = _Cont(("node", id(child)), lambda kk: self.node(child, scope, kk, settings))
            skipped = _Cont(("after", id(node), i + 1), lambda kk: after(i + 1, kk))
            if strategy == "none":
                unknown = skipped
            elif strategy == "nullPrediction":
                unknown = _Cont(("null",), lambda kk: self.leaf(None))
            elif strategy == "lastPrediction":
                unknown = _Cont(("last", id(node)), lambda kk: self.leaf(self.values(node, settings)))
            else:
                default = by_id.get(node.get("defaultChild"))
                if default is None:
                    raise ConversionError(f"tree node {node.get('id')!r} names no defaultChild "
                                          "among its children")
                unknown = _Cont(("node", id(default)),
                                lambda kk: self.node(default, scope, kk, settings))
            return self.decide(_predicate(child), scope, k, taken, skipped, unknown)

        at = after(0, known)
        self.check_count(node, at)
        return at

    def first_true(self, items: list, scope: _Scope, values: Callable) -> int:
        """The IR subtree giving ``values(item)`` of the first of ``items`` whose predicate
        is true (one whose predicate is unknown is passed over), no answer when none is."""
        def after(i: int, k: _Known) -> int:
            if i == len(items):
                return self.leaf(None)
            item = items[i]
            taken = _Cont(("item", id(item)), lambda kk: self.leaf(values(item)))
            skipped = _Cont(("after", id(items), i + 1), lambda kk: after(i + 1, kk))
            return self.decide(_predicate(item), scope, k, taken, skipped, skipped)

        return after(0, _Known())

    def values(self, node: ET.Element, settings: tuple[str, str, bool]) -> list | None:
        """A node's leaf values: its score (regression), or its class probabilities."""
        if settings[2]:
            score = node.get("score")
            if score is None:
                return None
            try:
                return [float(score)]
            except ValueError:
                raise ConversionError(f"tree node score {score!r} is not a number") from None
        classes = self.ensemble.classes
        assert classes is not None  # trees() reads no classifier without classes
        dists = node.findall("ScoreDistribution")
        score = node.get("score")
        if self.vote:
            if score is None:
                return None
            out = [0.0] * len(classes)
            out[class_index(score, classes)] = 1.0
            return out
        if not dists:
            if score is None:
                return None
            raise ConversionError("the form has no classification tree node without "
                                  "ScoreDistribution")
        out = [0.0] * len(classes)
        if any(d.get("probability") is not None for d in dists):
            for d in dists:
                out[class_index(d.get("value"), classes)] = float(d.get("probability", "0"))
            return out
        counts = [(d.get("value"), float(d.attrib["recordCount"])) for d in dists]
        total = sum(c for _, c in counts)
        if total == 0:
            return None
        for value, count in counts:
            out[class_index(value, classes)] = count / total
        return out

    # --- predicates -------------------------------------------------------------------------

    def decide(self, pred: ET.Element, scope: _Scope, known: _Known, on_true: _Cont,
               on_false: _Cont, on_unknown: _Cont) -> int:
        """The IR subtree sending rows to ``on_true``, ``on_false`` or ``on_unknown`` as
        ``pred`` is true, false or unknown for them."""
        tag = pred.tag
        if tag == "True":
            return on_true.build(known)
        if tag == "False":
            return on_false.build(known)
        if tag == "CompoundPredicate":
            return self._compound(pred, scope, known, on_true, on_false, on_unknown)
        name = pred.get("field")
        value = scope.get(name)
        if tag == "SimplePredicate":
            op = pred.get("operator")
            if op in ("isMissing", "isNotMissing"):
                t, f = (on_true, on_false) if op == "isMissing" else (on_false, on_true)
                return self._missing(value, name, known, t, f)
            text = pred.get("value")
            if isinstance(value, _Num):
                assert text is not None  # required by PMML
                return self._compare(value, op, float(text), known, on_true, on_false,
                                     on_unknown)
            if isinstance(value, _Cat) and op in ("equal", "notEqual"):
                assert text is not None  # required by PMML
                wanted = {canonical(text, value.data_type)}
                t, f = (on_true, on_false) if op == "equal" else (on_false, on_true)
                return self._category(value, wanted, known, t, f, on_unknown)
            if isinstance(value, _CatNum):
                assert text is not None  # required by PMML
                return self._category_number(value, op, float(text), known, on_true, on_false,
                                             on_unknown)
            raise ConversionError(f"the form has no SimplePredicate {op!r} on "
                                  f"{_describe([value])} ({name!r})")
        if tag == "SimpleSetPredicate":
            op = pred.get("booleanOperator")
            if not isinstance(value, _Cat):
                raise ConversionError(f"the form has no SimpleSetPredicate on "
                                      f"{_describe([value])} ({name!r})")
            wanted = {canonical(v, value.data_type) for v in _array(pred.find("Array"))}
            t, f = (on_true, on_false) if op == "isIn" else (on_false, on_true)
            return self._category(value, wanted, known, t, f, on_unknown)
        raise ConversionError(f"the form has no {tag}")

    def _compound(self, pred: ET.Element, scope: _Scope, known: _Known, on_true: _Cont,
                  on_false: _Cont, on_unknown: _Cont) -> int:
        op = pred.get("booleanOperator")
        parts = [c for c in pred if c.tag in _PREDICATES]
        if op not in ("and", "or", "surrogate"):
            raise ConversionError(f"the form has no CompoundPredicate {op!r}")

        def chain(i: int, t: _Cont, f: _Cont, u: _Cont, k: _Known) -> int:
            p = parts[i]
            if i == len(parts) - 1:
                return self.decide(p, scope, k, t, f, u)
            key = (id(pred), i + 1)
            if op == "and":
                rest = _Cont(("and", *key, t.key, f.key, u.key),
                             lambda kk: chain(i + 1, t, f, u, kk))
                rest_unknown = _Cont(("and", *key, u.key, f.key, u.key),
                                     lambda kk: chain(i + 1, u, f, u, kk))
                return self.decide(p, scope, k, rest, f, rest_unknown)
            if op == "or":
                rest = _Cont(("or", *key, t.key, f.key, u.key),
                             lambda kk: chain(i + 1, t, f, u, kk))
                rest_unknown = _Cont(("or", *key, t.key, u.key, u.key),
                                     lambda kk: chain(i + 1, t, u, u, kk))
                return self.decide(p, scope, k, t, rest, rest_unknown)
            rest = _Cont(("surrogate", *key, t.key, f.key, u.key),
                         lambda kk: chain(i + 1, t, f, u, kk))
            return self.decide(p, scope, k, t, f, rest)

        if not parts:
            raise ConversionError("an empty CompoundPredicate is not read")
        return chain(0, on_true, on_false, on_unknown, known)

    def _missing(self, value: _Value, name: str | None, known: _Known, on_missing: _Cont,
                 on_present: _Cont) -> int:
        if isinstance(value, _Num):
            lo, hi, miss = known.num.get(value.name, (-math.inf, math.inf, None))
            if miss is not None:
                return (on_missing if miss else on_present).build(known)
            # every number passes "<= +inf": present values go left, missing ones right
            return self.split(value.name, value.float32, math.inf, on_present, on_missing,
                              False, known.with_num(value.name, lo, hi, False),
                              known.with_num(value.name, lo, hi, True))
        if isinstance(value, _Cat):
            sources = self.reader._source_values(value)
            missing_values = {s for s in sources if value.value_of(s) is None}
            other_missing = value.table is not None and value.other is None
            wanted_missing = value.missing is None
            return self._sets(value.source, missing_values, other_missing, wanted_missing,
                              known, on_missing, on_present, None)
        raise ConversionError(f"the form has no isMissing on {_describe([value])} ({name!r})")

    def _compare(self, value: _Num, op: str | None, t: float, known: _Known, on_true: _Cont,
                 on_false: _Cont, on_unknown: _Cont) -> int:
        if value.float32:
            t = float(np.float32(t))
        below = float(np.nextafter(t, -math.inf))
        if op == "lessOrEqual":
            return self._threshold(value, t, on_true, on_false, on_unknown, known)
        if op == "lessThan":
            return self._threshold(value, below, on_true, on_false, on_unknown, known)
        if op == "greaterThan":
            return self._threshold(value, t, on_false, on_true, on_unknown, known)
        if op == "greaterOrEqual":
            return self._threshold(value, below, on_false, on_true, on_unknown, known)
        if op in ("equal", "notEqual"):
            t_, f_ = (on_true, on_false) if op == "equal" else (on_false, on_true)
            # x == t: not x <= below, and x <= t
            inner = _Cont(("eq", value.name, t, t_.key, f_.key, on_unknown.key),
                          lambda k: self._threshold(value, t, t_, f_, on_unknown, k))
            return self._threshold(value, below, f_, inner, on_unknown, known)
        raise ConversionError(f"the form has no SimplePredicate operator {op!r}")

    def _threshold(self, value: _Num, t: float, left: _Cont, right: _Cont, unknown: _Cont,
                   known: _Known) -> int:
        """``x <= t`` goes to ``left``, a larger number to ``right``, missing to ``unknown``."""
        name = value.name
        lo, hi, miss = known.num.get(name, (-math.inf, math.inf, None))
        if miss is True:
            return unknown.build(known)
        settled = left if hi <= t else right if lo >= t else None
        if settled is not None:
            if miss is False or unknown.key == settled.key:
                return settled.build(known)
            return self.split(name, value.float32, math.inf, settled, unknown, False,
                              known.with_num(name, lo, hi, False),
                              known.with_num(name, lo, hi, True))
        if miss is False or unknown.key in (left.key, right.key):
            missing_left = miss is not False and unknown.key == left.key
            return self.split(name, value.float32, t, left, right, missing_left,
                              known.with_num(name, lo, t, miss if missing_left else False),
                              known.with_num(name, t, hi, False if missing_left else miss))
        present = _Cont(("present", name, t, left.key, right.key),
                        lambda k: self._threshold(value, t, left, right, unknown, k))
        return self.split(name, value.float32, math.inf, present, unknown, False,
                          known.with_num(name, lo, hi, False), known.with_num(name, lo, hi, True))

    def _category(self, value: _Cat, wanted: set, known: _Known, on_true: _Cont,
                  on_false: _Cont, on_unknown: _Cont) -> int:
        """A category (as ``value`` sees it) in ``wanted`` goes to ``on_true``."""
        if value.table is None or value.other is _SAME:
            for w in wanted:
                self.reader.category_code(value.source, w)
        sources = self.reader._source_values(value)
        if any(value.value_of(s) is None for s in sources):
            raise ConversionError("the form has no value map sending a category to missing "
                                  "in a tree split")
        hit = {s for s in sources if value.value_of(s) in wanted}
        other = value.other if value.table is not None else _SAME
        other_hit = other is not _SAME and other is not None and other in wanted
        if value.missing is None:
            on_missing = on_unknown
        else:
            on_missing = on_true if value.missing in wanted else on_false
        if other is None and value.table is not None:
            # unlisted values are missing ones
            return self._sets(value.source, hit, False, None, known, on_true, on_false,
                              on_missing, other_to=on_unknown)
        return self._sets(value.source, hit, other_hit, None, known, on_true, on_false,
                          on_missing)

    def _category_number(self, value: _CatNum, op: str | None, t: float, known: _Known,
                         on_true: _Cont, on_false: _Cont, on_unknown: _Cont) -> int:
        test = {"lessOrEqual": lambda x: x <= t, "lessThan": lambda x: x < t,
                "greaterThan": lambda x: x > t, "greaterOrEqual": lambda x: x >= t,
                "equal": lambda x: x == t, "notEqual": lambda x: x != t}.get(op) \
            if op is not None else None
        if test is None:
            raise ConversionError(f"the form has no SimplePredicate operator {op!r}")
        cat = value.cat
        sources = self.reader._source_values(cat)

        def outcome(category: object) -> bool | None:
            n = value.number(category)
            return None if n is None else bool(test(n))

        hit = {s for s in sources if outcome(cat.value_of(s)) is True}
        undecided = {s for s in sources if outcome(cat.value_of(s)) is None}
        if undecided:
            raise ConversionError("the form has no category mapped to a missing number in a "
                                  "tree split")
        unlisted = outcome(cat.value_of(_UNLISTED_TEXT))
        miss = outcome(cat.value_of(None))
        on_missing = on_unknown if miss is None else on_true if miss else on_false
        if unlisted is None:
            return self._sets(cat.source, hit, False, None, known, on_true, on_false,
                              on_missing, other_to=on_unknown)
        return self._sets(cat.source, hit, unlisted, None, known, on_true, on_false, on_missing)

    def _sets(self, source: str, hit: set, other_hit: bool, missing_hit: bool | None,
              known: _Known, on_true: _Cont, on_false: _Cont, on_missing: _Cont | None,
              other_to: _Cont | None = None) -> int:
        """Split categorical ``source``: listed values in ``hit`` go to ``on_true``, other
        listed ones to ``on_false``, values no vocabulary lists to ``on_true`` when
        ``other_hit`` (or ``other_to``), missing ones to ``on_missing`` (or by
        ``missing_hit``)."""
        if on_missing is None:
            on_missing = on_true if missing_hit else on_false
        if other_to is not None:
            raise ConversionError("the form has no value map sending unlisted categories to "
                                  "missing in a tree split")
        reader = self.reader
        vocab = reader._source_values(_Cat(source))
        code = reader.code(source)
        allowed, excluded, miss = known.cat.get(source, (None, frozenset(), None))
        if miss is True:
            return on_missing.build(known)
        possible = set(vocab) - excluded if allowed is None else set(allowed)
        # unlisted values are possible unless the path allowed only listed ones
        others_possible = allowed is None
        goes_true = {s for s in possible if s in hit}
        goes_false = possible - goes_true
        if others_possible:
            (goes_true if other_hit else goes_false).add(None)
        if not goes_false or not goes_true:
            settled = on_true if goes_true else on_false
            if miss is False or on_missing.key == settled.key:
                return settled.build(known)
            return self.split(code, None, math.inf, settled, on_missing, False,
                              known.with_cat(source, allowed, excluded, False),
                              known.with_cat(source, allowed, excluded, True))
        if miss is not False and on_missing.key not in (on_true.key, on_false.key):
            present = _Cont(("present", source, tuple(sorted(hit)), other_hit, on_true.key,
                             on_false.key),
                            lambda k: self._sets(source, hit, other_hit, None, k, on_true,
                                                 on_false, on_missing))
            return self.split(code, None, math.inf, present, on_missing, False,
                              known.with_cat(source, allowed, excluded, False),
                              known.with_cat(source, allowed, excluded, True))
        # the listed side of the split is the side unlisted values do not go
        if other_hit:
            listed, listed_cont, rest_cont = goes_false - {None}, on_false, on_true
        else:
            listed, listed_cont, rest_cont = goes_true - {None}, on_true, on_false
        missing_left = miss is not False and on_missing.key == listed_cont.key
        codes = sorted(reader.category_code(source, s) for s in listed)
        left_allowed = frozenset(listed)
        right_excluded = excluded | frozenset(listed)
        right_allowed = None if allowed is None else frozenset(set(allowed) - set(listed))
        return self.split(code, None, math.inf, listed_cont, rest_cont, missing_left,
                          known.with_cat(source, left_allowed, excluded,
                                         miss if missing_left else False),
                          known.with_cat(source, right_allowed, right_excluded,
                                         False if missing_left else miss),
                          categories=codes)


# --- small readers -------------------------------------------------------------------------


_FOLDABLE = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}


def _compose_number(cat: _Cat, values: Iterable[tuple[object, float | None]],
                    default: float | None, missing: float | None,
                    sources: Iterable[str]) -> _CatNum:
    """A numeric MapValues over what ``cat`` sees: a number per source category."""
    table = dict(values)
    out = []
    for s in sources:
        seen = cat.value_of(s)
        out.append((s, missing if seen is None else table.get(seen, default)))
    unlisted = cat.value_of(_UNLISTED_TEXT) if cat.table is not None else _UNLISTED_TEXT
    other = missing if unlisted is None else table.get(unlisted, default)
    seen_missing = cat.value_of(None)
    miss = missing if seen_missing is None else table.get(seen_missing, default)
    return _CatNum(_Cat(cat.source, cat.data_type), tuple(out), other, miss)


def _compose_category(cat: _Cat, mapping: dict, default: str | None, missing: str | None,
                      out_type: str | None, sources: Iterable[str]) -> _Cat:
    out = []
    for s in sources:
        seen = cat.value_of(s)
        out.append((s, missing if seen is None else mapping.get(seen, default)))
    unlisted = cat.value_of(_UNLISTED_TEXT) if cat.table is not None else _UNLISTED_TEXT
    other = missing if unlisted is None else mapping.get(unlisted, default)
    seen_missing = cat.value_of(None)
    miss = missing if seen_missing is None else mapping.get(seen_missing, default)
    return _Cat(cat.source, out_type, tuple(out), other, miss)


def _boolean(cat: _Cat, values: set, negate: bool, sources: Iterable[str]) -> _CatNum:
    """1.0 where what ``cat`` sees is one of ``values`` (0.0 where it is not, inverted by
    ``negate``), missing where it is missing."""
    def flag(seen: object) -> float | None:
        if seen is None:
            return None
        return float((seen in values) != negate)

    out = tuple((s, flag(cat.value_of(s))) for s in sources)
    unlisted = cat.value_of(_UNLISTED_TEXT) if cat.table is not None else _UNLISTED_TEXT
    return _CatNum(_Cat(cat.source, cat.data_type), out, flag(unlisted),
                   flag(cat.value_of(None)))


def _count(node: ET.Element) -> float | None:
    """A Node's ``recordCount``: the training records that reached it (None: not given)."""
    text = node.get("recordCount")
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _partial_score(attribute: ET.Element) -> list[float]:
    if attribute.find("ComplexPartialScore") is not None:
        raise ConversionError("the form has no Scorecard ComplexPartialScore (an expression "
                              "as an Attribute's score; numbers are read)")
    score = attribute.get("partialScore")
    if score is None:
        raise ConversionError("a Scorecard Attribute has no partialScore")
    return [float(score)]


def _rescale(value: _TreeSum, model: ET.Element) -> _TreeSum:
    factor, constant = _target_rescale(model)
    if model.tag == "TreeModel":
        return value  # a tree applies its own Targets as it is built
    return value.scaled(factor, constant) if (factor, constant) != (1.0, 0.0) else value


def _target_rescale(model: ET.Element) -> tuple[float, float]:
    targets = model.find("Targets")
    if targets is None:
        return 1.0, 0.0
    found = targets.findall("Target")
    if len(found) != 1:
        raise ConversionError("the form has no Targets of several fields")
    target = found[0]
    named = target.get("field")
    schema = model.find("MiningSchema")
    predicted = [] if schema is None else [mf.get("name") for mf in schema.findall("MiningField")
                                           if mf.get("usageType") in ("target", "predicted")]
    if named is not None and named not in predicted:
        # a Target for a field the model does not predict does not apply to it
        return 1.0, 0.0
    for attr in ("min", "max"):
        if target.get(attr) is not None:
            raise ConversionError(f"the form has no Target {attr} (clamping)")
    if target.get("castInteger") is not None:
        raise ConversionError("the form has no Target castInteger")
    if target.find("TargetValue") is not None:
        raise ConversionError("the form has no TargetValue")
    return float(target.get("rescaleFactor", "1")), float(target.get("rescaleConstant", "0"))


def _parent_tag(root: ET.Element, child: ET.Element) -> str | None:
    for el in root.iter():
        if child in list(el):
            return el.tag
    return None


def _treatment(segmentation: ET.Element) -> str:
    treatment = segmentation.get("missingPredictionTreatment", "continue")
    if treatment not in ("continue", "skipSegment", "returnMissing"):
        raise ConversionError(f"the form has no missingPredictionTreatment {treatment!r}")
    return treatment


def _check_math(model: ET.Element) -> None:
    context = model.get("x-mathContext") or model.get("mathContext")
    if context not in (None, "double"):
        raise ConversionError(f"the model computes in {context} (x-mathContext), which the "
                              "form does not")


def _segment_model(segment: ET.Element) -> ET.Element:
    for child in segment:
        if child.tag in MODEL_TAGS:
            return child
    raise ConversionError("a Segment holds no model")


def _check_true(segment: ET.Element) -> None:
    if _predicate(segment).tag != "True":
        raise ConversionError("the form has no Segment predicate other than True outside "
                              "selectFirst")


def _predicate(el: ET.Element) -> ET.Element:
    for child in el:
        if child.tag in _PREDICATES:
            return child
    raise ConversionError(f"a {el.tag} has no predicate")


def _expression_of(el: ET.Element) -> ET.Element:
    for child in el:
        if child.tag != "Extension" and child.tag != "Value":
            return child
    raise ConversionError(f"{el.tag} {el.get('name')!r} has no expression")


def _has_terms(table: ET.Element) -> bool:
    return any(c.tag in ("NumericPredictor", "CategoricalPredictor", "PredictorTerm")
               for c in table)


def class_index(text: str | None, classes: list) -> int:
    """The position of class ``text`` among ``classes`` (``1.0`` is the class ``1``)."""
    for i, c in enumerate(classes):
        if str(c) == text:
            return i
    try:
        number = float(text) if text is not None else None
    except (TypeError, ValueError):
        number = None
    if number is not None:
        for i, c in enumerate(classes):
            try:
                if float(c) == number:
                    return i
            except (TypeError, ValueError):
                continue
    raise ConversionError(f"class {text!r} is not one of the target's classes "
                          f"{', '.join(map(str, classes))}")


_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')


def _array(el: ET.Element | None) -> list[str]:
    """The values of a PMML Array (quoted strings may hold spaces)."""
    if el is None:
        raise ConversionError("a predicate has no Array")
    out = []
    for quoted, plain in _TOKEN.findall(el.text or ""):
        out.append(re.sub(r'\\(.)', r"\1", quoted) if plain == "" else plain)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _describe(values: list) -> str:
    names = {_Num: "a number", _Cat: "a category", _CatNum: "a number of a category",
             _Const: "a constant", _TreeSum: "a model's output"}
    return ", ".join(names.get(type(v), type(v).__name__) for v in values) or "nothing"

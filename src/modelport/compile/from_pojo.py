"""Read an H2O POJO (GBM, DRF, GLM) into a ModelIR, so it scores without a JVM.

A POJO is the Java class H2O generates for a model (``h2o.download_pojo``). Its trees and
coefficients are Java code, but code H2O writes from a handful of templates, so a strict
recogniser reads them as text, never running anything:

- the source is lexed as ``javac`` lexes it (unicode escapes decoded, comments and string
  literals blanked: :func:`modelport.formats.pojo.java_code`), so no column name or level
  reaches the recogniser, and whitespace is squashed to one canonical form;
- **GBM and DRF**: the model's ``score0`` calls ``<Model>_Forest_<j>.score0`` for each tree
  group in order, each forest adds ``<Model>_Tree_<j>_class_<k>.score0`` to ``preds[k+1]``
  (``preds[0]`` for regression), and each tree is one nested conditional whose tests are
  one of H2O's split shapes: ``data[i] < 1.5f`` (missing values go right),
  ``Double.isNaN(data[i]) || data[i] < 1.5f`` (left), ``!Double.isNaN(data[i])`` and
  ``!Double.isNaN(data[i]) && (data[i] < n)`` (every present value left, missing right),
  and the two bitset shapes over ``GRPSPLIT`` byte arrays (levels whose bit is set go
  right, levels outside the bitset go the missing way); leaves are float literals. The
  lines after the forests name the link: GBM's ``init_f`` and logistic, ``GBM_rescale``
  (softmax) or identity; DRF's division by its tree count (a binomial forest's trees give
  the first class's probability, ``preds[2] = 1.0 - preds[1]``) or normalisation;
- **GLM**: ``BETA``, ``CAT_MODES``, ``NUM_MEANS`` and ``CATOFFS`` are read from their
  array literals and the ``score0`` body must be exactly H2O's (mean imputation, either
  categorical loop, the inverse link and its outputs).

What is read becomes the same nodes the MOJO reader builds (:mod:`modelport.compile.
from_mojo`): ``tree_inputs``, ``gbm_node``, ``drf_node``, ``glm_model``. Anything else, any
shape not recognised exactly, or a model whose columns disagree with the signature, raises
:class:`~modelport.errors.ConversionError` naming what was not recognised; the POJO is then
scored by h2o-genmodel. Like h2o-genmodel, a split compares the double value with the
float32 split value widened to a double.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

from modelport.compile import ir
from modelport.compile.from_mojo import (
    Mojo,
    bitset_split,
    drf_node,
    finished,
    gbm_node,
    glm_model,
    new_node,
    new_tree,
    tree_inputs,
)
from modelport.errors import ConversionError
from modelport.signature import Signature

#: a Java floating-point literal as H2O writes one (``Float.toString``/``Double.toString``)
_NUM = r"-?(?:\d+\.\d*|\.\d+|\d+)(?:E-?\d+)?"
_INT = r"\d+"
_PRED = r"preds\[0\]=hex\.genmodel\.GenModel\.getPrediction\(preds,PRIOR_CLASS_DISTRIB,data,(" + _NUM + r")\);"
_MAX_DEPTH = 400

# the tests of a tree node, on squashed code; ``c`` is the column, ``v`` a float split value
_NUM_NA_RIGHT = re.compile(rf"data\[(?P<c>{_INT})\]<(?P<v>{_NUM})f")
_NUM_NA_LEFT = re.compile(rf"Double\.isNaN\(data\[(?P<c>{_INT})\]\)\|\|data\[(?P=c)\]<(?P<v>{_NUM})f")
_NA_VS_REST = re.compile(rf"!Double\.isNaN\(data\[(?P<c>{_INT})\]\)")
_NA_VS_REST_CAT = re.compile(rf"!Double\.isNaN\(data\[(?P<c>{_INT})\]\)&&\(data\[(?P=c)\]<(?P<d>{_INT})\)")
_IN = r"GenModel\.bitSetIsInRange\((?P<n>\d+),(?P<o>\d+),data\[(?P=c)\]\)"
_IN_AGAIN = r"GenModel\.bitSetIsInRange\((?P=n),(?P=o),data\[(?P=c)\]\)"
_HAS = r"!GenModel\.bitSetContains\((?P<g>GRPSPLIT\d+),(?P=n),(?P=o),data\[(?P=c)\]\)"
_CAT_NA_LEFT = re.compile(
    rf"Double\.isNaN\(data\[(?P<c>{_INT})\]\)\|\|!{_IN}\|\|\(data\[(?P=c)\]>=(?P<d>\d+)\)"
    rf"\|\|\({_IN_AGAIN}&&\(data\[(?P=c)\]<(?P=d)\)&&{_HAS}\)")
_CAT_NA_RIGHT = re.compile(
    rf"!Double\.isNaN\(data\[(?P<c>{_INT})\]\)&&\({_IN}&&\(data\[(?P=c)\]<(?P<d>\d+)\)&&{_HAS}\)")
_LEAF = re.compile(rf"{_NUM}f")


def to_ir(source: str, signature: Signature) -> ir.ModelIR:
    """The intermediate form of a GBM, DRF or GLM POJO whose compiled class reported
    ``signature``; anything else raises ConversionError."""
    from modelport.formats.pojo import declared_class, java_code

    code = squashed(java_code(source))
    _, name = declared_class(source)
    classes = _top_level_classes(code)
    main = classes.get(name)
    if main is None:
        raise ConversionError("the POJO's public class is not a top-level class")
    model = _described(main[0], name, classes, signature)
    if not main[0].startswith(f"public class {name} extends GenModel{{"):
        raise ConversionError("the POJO's class does not extend GenModel as H2O writes GBM, "
                              "DRF and GLM classes")
    body = _score0(main[0])
    node: ir.TreeEnsemble | ir.Linear
    if body.startswith("java.util.Arrays.fill(preds,0);"):
        steps, fields = tree_inputs(model, signature)
        node, output = _trees(body, name, classes, model, fields)
    elif body.startswith("final double[]b=BETA.VALUES;"):
        model.info.update(_glm_info(body, main[0], model))
        steps, node, output = glm_model(model, signature)
    else:
        raise ConversionError("the POJO's score0 is neither H2O's tree code (GBM, DRF) nor its "
                              "GLM code; the reader reads those")
    if output.task == "classification":
        assert signature.classes is not None  # a classifier's
        output.classes = list(signature.classes)
    return ir.ModelIR(signature=signature, steps=steps, model=node, output=output)


# --- the code as text -------------------------------------------------------------------------


def squashed(code: str) -> str:
    """``code`` with whitespace removed except one space between two word characters."""
    code = re.sub(r"\s+", " ", code).strip()
    return re.sub(r" (?=\W)|(?<=\W) ", "", code)


def _top_level_classes(code: str) -> dict[str, tuple[str, int]]:
    """Each top-level class of squashed ``code``: its text from ``[public ]class`` to its
    closing brace, and where that starts."""
    out: dict[str, tuple[str, int]] = {}
    depth, start, opened = 0, 0, None
    for m in re.finditer(r"[{};]", code):
        ch = m.group(0)
        if depth == 0 and ch == "{":
            opened = re.search(r"(?:public )?class ([A-Za-z_$][\w$]*)", code[start:m.start()])
            opened_at = start + opened.start() if opened else None
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise ConversionError("the POJO's braces do not balance")
        if depth == 0 and ch in ";}":
            if ch == "}" and opened is not None:
                assert opened_at is not None  # set with opened
                out[opened.group(1)] = (code[opened_at:m.end()], opened_at)
                opened = None
            start = m.end()
    return out


def _score0(main: str) -> str:
    """The body of the model's ``score0`` (before its ``return preds;``)."""
    found = re.findall(r"public final double\[\]score0\(double\[\]data,double\[\]preds\)\{(.*?)"
                       r"return preds;\}", main)
    if len(found) != 1:
        raise ConversionError("the POJO has no score0(double[] data, double[] preds) as H2O "
                              "writes it")
    return found[0]


def _described(main: str, name: str, classes: dict[str, tuple[str, int]],
               signature: Signature) -> Mojo:
    """The model as the MOJO reader's builders take it, from the signature the compiled
    class reported, checked against what the source declares."""
    category_match = re.search(r"public hex\.ModelCategory getModelCategory\(\)\{return "
                               r"hex\.ModelCategory\.(\w+);\}", main)
    n_features = re.search(r"public int nfeatures\(\)\{return (\d+);\}", main)
    n_classes = re.search(r"public int nclasses\(\)\{return (\d+);\}", main)
    domains = re.search(r"public static final String\[\]\[\]DOMAINS=new String\[\]\[\]\{(.*?)\};",
                        main)
    if category_match and category_match.group(1) not in ("Binomial", "Multinomial",
                                                          "Regression"):
        raise ConversionError(f"no reader for {category_match.group(1)} POJOs (binomial, "
                              "multinomial and regression GBM, DRF and GLM are read)")
    if not (category_match and n_features and n_classes and domains):
        raise ConversionError("the POJO does not declare its category, features, classes and "
                              "domains as H2O does")
    category, n = category_match.group(1), int(n_features.group(1))
    if n != len(signature.inputs):
        raise ConversionError(f"the POJO declares {n} features, its class reports "
                              f"{len(signature.inputs)}")
    expected = {"classification": ("Binomial", "Multinomial"), "regression": ("Regression",)}
    if category not in expected.get(signature.task, ()):
        raise ConversionError(f"no reader for {category} POJOs (binomial, multinomial and "
                              "regression GBM, DRF and GLM are read)")
    entries = domains.group(1).split(",")
    sizes: dict[int, int] = {}
    for i, entry in enumerate(entries):
        if entry == "null":
            continue
        holder = re.fullmatch(r"([A-Za-z_$][\w$]*)\.VALUES", entry)
        declared = holder and classes.get(holder.group(1))
        size = holder and declared and re.match(
            rf"class {re.escape(holder.group(1))}[^{{]*\{{public "
            r"static final String\[\]VALUES=new String\[(\d+)\];", declared[0])
        if not size:
            raise ConversionError(f"the POJO's domain {i} is not a column-info class as H2O "
                                  "writes it")
        sizes[i] = int(size.group(1))
    supervised = signature.task != "clustering"
    if len(entries) != n + supervised:
        raise ConversionError("the POJO's DOMAINS do not list one entry per column")
    columns, levels = [c.name for c in signature.inputs], {}
    for i, col in enumerate(signature.inputs):
        if (i in sizes) != (col.kind == "categorical") or \
                (i in sizes and sizes[i] != len(col.categories or [])):
            raise ConversionError(f"column {i}'s domain in the POJO is not the one its class "
                                  "reports")
        if col.kind == "categorical":
            assert col.categories is not None  # a categorical column's
            levels[i] = list(col.categories)
    n_out = int(n_classes.group(1))
    if signature.task == "classification":
        assert signature.classes is not None  # a classifier's
        if n_out != len(signature.classes):
            raise ConversionError("the POJO's class count is not its response domain's")
    info = {"category": category, "n_features": n, "n_classes": n_out,
            "supervised": supervised, "algorithm": "", "artefact": "POJO"}
    return Mojo(info=info, columns=columns + ["response"], domains=levels, files={})


# --- GBM and DRF ------------------------------------------------------------------------------


def _trees(body: str, name: str, classes: dict[str, tuple[str, int]], model: Mojo,
           fields: list[str]) -> tuple[ir.TreeEnsemble, ir.Output]:
    """The ensemble and output of a tree POJO's ``score0`` body."""
    q = re.escape(name)
    calls = re.match(rf"java\.util\.Arrays\.fill\(preds,0\);((?:{q}_Forest_\d+\.score0\(data,"
                     r"preds\);)*)(.*)$", body)
    assert calls is not None  # to_ir checked that the body starts with the fill
    forests = re.findall(rf"{q}_Forest_(\d+)\.score0", calls.group(1))
    if not forests:
        raise ConversionError("the POJO's score0 calls no tree forests: it is neither a GBM, "
                              "a DRF nor a GLM, which the reader reads")
    if [int(j) for j in forests] != list(range(len(forests))):
        raise ConversionError("the POJO's score0 does not call its forests in order")
    tail, n_classes, category = calls.group(2), model.get("n_classes"), model.category
    trees = [pair for j in range(len(forests))
             for pair in _forest(j, name, classes, model, regression=category == "Regression")]
    what = f"{category} POJO"

    def shape(pattern: str) -> re.Match | None:
        return re.fullmatch(pattern, tail)

    gbm_binomial = shape(rf"preds\[2\]=preds\[1\]\+({_NUM});preds\[2\]=1\.\/\(1\.\+Math\.min"
                         rf"\(1e19,Math\.exp\(-\(preds\[2\]\)\)\)\);preds\[1\]=1\.0-preds\[2\];"
                         + _PRED)
    if gbm_binomial and category == "Binomial":
        return gbm_node(what, category, "bernoulli", "logit", float(gbm_binomial.group(1)),
                        2, trees, fields)
    if shape(r"hex\.genmodel\.GenModel\.GBM_rescale\(preds\);" + _PRED) and n_classes > 2:
        return gbm_node(what, category, "multinomial", "", 0.0, n_classes, trees, fields)
    gbm_regression = shape(rf"preds\[0\]\+=({_NUM});preds\[0\]=preds\[0\];")
    if gbm_regression and category == "Regression":
        return gbm_node(what, category, "gaussian", "identity", float(gbm_regression.group(1)),
                        1, trees, fields)
    drf_binomial = shape(r"preds\[1\]\/=(\d+);preds\[2\]=1\.0-preds\[1\];" + _PRED)
    drf_regression = shape(r"preds\[0\]\/=(\d+);")
    divided = drf_binomial or drf_regression
    if divided and (category == "Binomial") == bool(drf_binomial):
        if int(divided.group(1)) != len(trees) or len(trees) != len(forests):
            raise ConversionError(f"the DRF POJO divides by {divided.group(1)} but has "
                                  f"{len(trees)} trees")
        return drf_node(category, n_classes, False, trees, fields)
    if shape(r"double sum=0;for\(int i=1;i<preds\.length;i\+\+\)\{sum\+=preds\[i\];\}if\(sum>0\)"
             r"for\(int i=1;i<preds\.length;i\+\+\)\{preds\[i\]\/=sum;\}" + _PRED) \
            and n_classes > 2:
        return drf_node(category, n_classes, True, trees, fields)
    raise ConversionError("the POJO's score0 ends in code the reader does not recognise (it "
                          "reads GBM's logistic, softmax and identity links and DRF's averages; "
                          "balance_classes corrections and other links are not read)")


def _forest(j: int, name: str, classes: dict[str, tuple[str, int]], model: Mojo,
            regression: bool) -> list[tuple[int, ir.Tree]]:
    """``(class index, tree)`` for each tree forest ``j`` adds, in class order."""
    q = re.escape(f"{name}_Forest_{j}")
    forest = classes.get(f"{name}_Forest_{j}")
    adds = forest and re.fullmatch(rf"class {q}\{{public static void score0\(double\[\]fdata,"
                                   rf"double\[\]preds\)\{{((?:preds\[\d+\]\+={re.escape(name)}_"
                                   r"Tree_\d+_class_\d+\.score0\(fdata\);)+)\}\}", forest[0])
    if not adds:
        raise ConversionError(f"forest {j} of the POJO is not written as H2O writes forests")
    out, last = [], -1
    for slot, tree_j, k in re.findall(r"preds\[(\d+)\]\+=.*?_Tree_(\d+)_class_(\d+)\.score0",
                                      adds.group(1)):
        slot, tree_j, k = int(slot), int(tree_j), int(k)
        if tree_j != j or k <= last or slot != (0 if regression else k + 1) or \
                (regression and k != 0) or k >= max(model.get("n_classes"), 1):
            raise ConversionError(f"forest {j} of the POJO adds its trees to unexpected outputs")
        last = k
        out.append((k, _tree(f"{name}_Tree_{j}_class_{k}", classes, model)))
    return out


def _tree(cls: str, classes: dict[str, tuple[str, int]], model: Mojo) -> ir.Tree:
    """One tree class's nested conditional as flat IR arrays (pre-order, root first)."""
    text = classes.get(cls)
    q = re.escape(cls)
    whole = text and re.fullmatch(
        rf"class {q}\{{static final double score0\(double\[\]data\)\{{double pred=(.*?);"
        r"return pred;\}((?:public static final byte\[\]GRPSPLIT\d+=new byte\[\]\{[-\d,]*\};)*)\}",
        text[0])
    if not whole:
        raise ConversionError(f"the POJO's tree {cls.rsplit('_Tree_', 1)[-1]} is not one "
                              "conditional expression as H2O writes trees")
    bitsets = {g: bytes(int(v) & 0xFF for v in values.split(",") if v)
               for g, values in re.findall(r"byte\[\](GRPSPLIT\d+)=new byte\[\]\{([-\d,]*)\}",
                                           whole.group(2))}
    expr, t = whole.group(1), new_tree()
    n_features = model.get("n_features")
    sizes = {i: len(levels) for i, levels in model.domains.items()}

    def node(pos: int, depth: int) -> tuple[int, int]:
        if depth > _MAX_DEPTH:
            raise ConversionError("a tree of the POJO is deeper than the reader reads")
        i = new_node(t)
        if expr.startswith("(", pos):
            q_at, level = pos + 1, 0
            while q_at < len(expr) and not (expr[q_at] == "?" and level == 0):
                level += {"(": 1, ")": -1}.get(expr[q_at], 0)
                q_at += 1
            _split(t, i, expr[pos + 1:q_at], bitsets, sizes, n_features)
            t.left[i], pos = node(q_at + 1, depth + 1)
            if not expr.startswith(":", pos):
                raise ConversionError("a tree of the POJO is not a nested conditional")
            t.right[i], pos = node(pos + 1, depth + 1)
            if not expr.startswith(")", pos):
                raise ConversionError("a tree of the POJO is not a nested conditional")
            return i, pos + 1
        leaf = _LEAF.match(expr, pos)
        if leaf is None:
            raise ConversionError("a leaf of the POJO's trees is not a float literal")
        t.value[i] = [_f32(leaf.group(0)[:-1])]
        return i, leaf.end()

    _, end = node(0, 0)
    if end != len(expr):
        raise ConversionError("a tree of the POJO has code after its conditional")
    return finished(t)


def _split(t: ir.Tree, i: int, test: str, bitsets: dict, sizes: dict, n_features: int) -> None:
    """Node ``i`` as the split ``test`` (one of H2O's shapes, squashed) says."""
    for pattern, missing_left in ((_NUM_NA_RIGHT, False), (_NUM_NA_LEFT, True)):
        m = pattern.fullmatch(test)
        if m:
            col = _column(m, sizes, n_features, categorical=False)
            t.feature[i], t.threshold[i], t.missing_left[i] = col, _f32(m["v"]), missing_left
            return
    m = _NA_VS_REST.fullmatch(test) or _NA_VS_REST_CAT.fullmatch(test)
    if m:
        # every present value left, missing values right
        col = _column(m, sizes, n_features, categorical="d" in m.groupdict())
        t.feature[i], t.threshold[i], t.missing_left[i] = col, float("inf"), False
        return
    for pattern, missing_left in ((_CAT_NA_RIGHT, False), (_CAT_NA_LEFT, True)):
        m = pattern.fullmatch(test)
        if m:
            col = _column(m, sizes, n_features, categorical=True)
            n_bits, offset, bits = int(m["n"]), int(m["o"]), bitsets.get(m["g"])
            if n_bits < 1 or bits is None or len(bits) != (n_bits - 1) // 8 + 1:
                raise ConversionError(f"the POJO's bitset {m['g']} does not hold {n_bits} bits")
            t.feature[i], t.missing_left[i] = col, missing_left
            bitset_split(t, i, sizes[col], offset, n_bits, bits)
            return
    raise ConversionError(f"a split of the POJO's trees has a shape the reader does not "
                          f"recognise: {_shape(test)}")


def _column(m: re.Match, sizes: dict, n_features: int, categorical: bool) -> int:
    col = int(m["c"])
    if col >= n_features or (col in sizes) != categorical:
        raise ConversionError(f"a split of the POJO's trees reads column {col} as "
                              f"{'categorical' if categorical else 'numeric'}, which it is not")
    if categorical and "d" in m.groupdict() and int(m["d"]) != sizes[col]:
        raise ConversionError(f"a split of the POJO's trees bounds column {col} by {m['d']} "
                              f"levels; its domain has {sizes[col]}")
    return col


def _shape(test: str) -> str:
    """A split test with its numbers and array names elided, to name it in messages."""
    return re.sub(r"GRPSPLIT\d+", "G", re.sub(_NUM + "f?", "N", test))[:160]


def _f32(text: str) -> float:
    """A Java float literal's value, as a double."""
    return struct.unpack("<f", struct.pack("<f", float(text)))[0]


# --- GLM ----------------------------------------------------------------------------------


def _glm_info(body: str, main: str, model: Mojo) -> dict:
    """What :func:`modelport.compile.from_mojo.glm_model` reads, from a GLM POJO."""
    m = re.fullmatch(
        r"final double\[\]b=BETA\.VALUES;"
        r"for\(int i=0;i<(?P<c>\d+);\+\+i\)if\(Double\.isNaN\(data\[i\]\)\)data\[i\]="
        r"CAT_MODES\.VALUES\[i\];"
        r"for\(int i=0;i<(?P<n>\d+);\+\+i\)if\(Double\.isNaN\(data\[i\+(?P=c)\]\)\)data\[i\+"
        r"(?P=c)\]=NUM_MEANS\.VALUES\[i\];"
        r"double eta=0\.0;"
        r"(?P<loop>for\(int i=0;i<CATOFFS\.length-1;\+\+i\)\{int ival=\(int\)data\[i\];"
        r"if\(ival!=data\[i\]\)throw new IllegalArgumentException\(\);ival\+=CATOFFS\[i\];"
        r"if\(ival<CATOFFS\[i\+1\]\)eta\+=b\[ival\];\}"
        r"|for\(int i=0;i<CATOFFS\.length-1;\+\+i\)if\(data\[i\]!=0\)\{int ival=\(int\)data\[i\]"
        r"-1;if\(ival!=data\[i\]-1\)throw new IllegalArgumentException\(\);ival\+=CATOFFS\[i\];"
        r"if\(ival<CATOFFS\[i\+1\]\)eta\+=b\[ival\];\})"
        r"for\(int i=(?P=c);i<b\.length-1-(?P<off>\d+);\+\+i\)eta\+=b\[(?P=off)\+i\]\*data\[i\];"
        r"eta\+=b\[b\.length-1\];"
        r"double mu=hex\.genmodel\.GenModel\.GLM_(?P<link>\w+)Inv\(eta\);"
        r"(?P<preds>.*)", body)
    if m is None:
        raise ConversionError("the GLM POJO's score0 is not the code the reader reads (H2O's "
                              "mean-imputing binomial, gaussian and log-link GLMs)")
    c, n, off = int(m["c"]), int(m["n"]), int(m["off"])
    binomial = re.fullmatch(rf"preds\[0\]=\(mu>=({_NUM})\)\?1:0;preds\[1\]=1\.0-mu;"
                            r"preds\[2\]=mu;", m["preds"])
    value = m["preds"] == "preds[0]=mu;"
    families = {("logit", True): "binomial", ("identity", False): "gaussian",
                ("log", False): "poisson"}
    family = families.get((m["link"], bool(binomial)))
    if family is None or not (binomial or value):
        raise ConversionError(f"the GLM POJO's link {m['link']} and outputs are not ones the "
                              "reader reads (binomial/logit, gaussian/identity, log)")
    beta = _array(main, "BETA", "double", float)
    modes = _array(main, "CAT_MODES", "int", int)
    means = _array(main, "NUM_MEANS", "double", float)
    catoffs = re.search(r"public static final int\[\]CATOFFS=\{([\d,]*)\};", main)
    if catoffs is None:
        raise ConversionError("the GLM POJO declares no CATOFFS")
    offsets = [int(v) for v in catoffs.group(1).split(",") if v]
    cats = sorted(model.domains)
    if cats != list(range(c)) or len(offsets) != c + 1 or len(modes) != c or \
            len(means) != n or c + n != model.get("n_features") or \
            off != offsets[-1] - c or len(beta) != offsets[-1] + n + 1:
        raise ConversionError("the GLM POJO's coefficient layout does not match its columns")
    return {"family": family, "link": m["link"], "cats": c, "cat_offsets": offsets,
            "cat_modes": modes, "num_means": means, "beta": beta,
            "use_all_factor_levels": m["loop"].startswith("for(int i=0;i<CATOFFS.length-1;++i){"),
            "mean_imputation": True, "n_classes": model.get("n_classes")}


def _array(main: str, name: str, kind: str, parse: Callable[[str], object]) -> list:
    """The values of nested class ``name``'s ``VALUES`` array, filled by H2O's chunks."""
    start = re.search(rf"(?:^|[;{{}}])(?:public )?static class {name} implements java\.io\."
                      rf"Serializable\{{public static final {kind}\[\]VALUES=new {kind}\[(\d+)\];",
                      main)
    if start is None:
        raise ConversionError(f"the GLM POJO declares no {name} array as H2O writes it")
    size = int(start.group(1))
    block = re.match(
        rf"static\{{(?:{name}_\d+\.fill\(VALUES\);)+\}}((?:static final class {name}_\d+ "
        rf"implements java\.io\.Serializable\{{static final void fill\({kind}\[\]sa\)\{{"
        rf"(?:sa\[\d+\]={_NUM};)*\}}\}})+)\}}", main[start.end():])
    if block is None:
        raise ConversionError(f"the GLM POJO's {name} array is not filled as H2O fills it")
    values: dict[int, object] = {}
    for index, value in re.findall(rf"sa\[(\d+)\]=({_NUM});", block.group(1)):
        if int(index) in values:
            raise ConversionError(f"the GLM POJO sets {name}[{index}] twice")
        values[int(index)] = parse(value)
    if sorted(values) != list(range(size)):
        raise ConversionError(f"the GLM POJO does not set every value of {name}")
    return [values[i] for i in range(size)]

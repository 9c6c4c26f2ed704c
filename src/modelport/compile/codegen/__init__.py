"""Dependency-free source code for a compiled model: Python, JavaScript, C, Java and Go.

Every language gets the same calling convention, so nobody reads generated code to call it:
``score(row)`` takes one row keyed by input column name (a dict, a JS object, a Java
``Map<String, Object>``, a Go ``map[string]any``; C takes arrays in signature order) with
missing values as ``None``/``null``/``NaN``, and returns the class probabilities in class
order (classifiers), the value (regressors) or the distance to each centre (k-means).

Names, categories and labels are written only through :mod:`modelport.quoting.code`; a
text a language cannot hold (a NUL in C) is refused with a
:class:`~modelport.errors.UserError` naming it.
"""

from __future__ import annotations

import importlib

from modelport.compile import ir
from modelport.compile.codegen import treeshap
from modelport.errors import UserError
from modelport.quoting import code as quoting

#: language -> (module, file name pattern)
LANGUAGES = {
    # a module name Python can import
    "python": ("modelport.compile.codegen.python", "{sym}.py"),
    "javascript": ("modelport.compile.codegen.javascript", "{name}.mjs"),
    "c": ("modelport.compile.codegen.c", "{name}.c"),
    "java": ("modelport.compile.codegen.java", "{Name}.java"),
    "go": ("modelport.compile.codegen.go", "{name}.go"),
}


def generate(model_ir: ir.ModelIR, language: str, name: str = "model",
             explain: bool = False) -> str:
    """Source code of ``model_ir`` in ``language``; ``name`` names the class, package or symbol.

    ``explain`` adds reason codes, each input column's contribution to the raw scores, for
    tree ensembles with node covers in C (``<name>_explain``, ``<name>_reasons``) and
    JavaScript (``explain(row)``, ``reasons(row, k)``); see
    :mod:`~modelport.compile.codegen.treeshap`. Any other model or language raises
    :class:`~modelport.errors.ConversionError` saying why. The source with reasons is the
    source without them followed by the reason codes, so ``score`` is the same either way.
    """
    if language not in LANGUAGES:
        raise UserError(f"unknown language {language!r}: use one of {', '.join(LANGUAGES)}")
    module = importlib.import_module(LANGUAGES[language][0])
    if not explain:
        return module.generate(model_ir, name)
    treeshap.check(model_ir, language)
    return module.generate(model_ir, name, explain=True)


def file_name(language: str, name: str) -> str:
    """The file the source of model ``name`` goes in (Java wants the class name, Python a
    module name it can import)."""
    return LANGUAGES[language][1].format(name=name, Name=class_name(name),
                                         sym=identifier(name))


def class_name(name: str) -> str:
    """``churn-model`` -> ``ChurnModel``: a name usable as a Java class (see
    :func:`modelport.quoting.code.class_name`)."""
    return quoting.class_name(name)


def identifier(name: str) -> str:
    """``churn-model`` -> ``churn_model``: a name usable as a C symbol, Go package or Python
    module (see :func:`modelport.quoting.code.symbol_name`)."""
    return quoting.symbol_name(name)

"""Dependency-free source code for a compiled model: Python, JavaScript, C, Java and Go.

Every language gets the same calling convention, so nobody reads generated code to call it:
``score(row)`` takes one row keyed by input column name (a dict, a JS object, a Java
``Map<String, Object>``, a Go ``map[string]any``; C takes arrays in signature order) with
missing values as ``None``/``null``/``NaN``, and returns the class probabilities in class
order (classifiers), the value (regressors) or the distance to each centre (k-means).
"""

from __future__ import annotations

import importlib

from modelport.compile import ir
from modelport.errors import UserError

#: language -> (module, file name pattern)
LANGUAGES = {
    "python": ("modelport.compile.codegen.python", "{name}.py"),
    "javascript": ("modelport.compile.codegen.javascript", "{name}.mjs"),
    "c": ("modelport.compile.codegen.c", "{name}.c"),
    "java": ("modelport.compile.codegen.java", "{Name}.java"),
    "go": ("modelport.compile.codegen.go", "{name}.go"),
}


def generate(model_ir: ir.ModelIR, language: str, name: str = "model") -> str:
    """Source code of ``model_ir`` in ``language``; ``name`` names the class, package or symbol."""
    if language not in LANGUAGES:
        raise UserError(f"unknown language {language!r}: use one of {', '.join(LANGUAGES)}")
    return importlib.import_module(LANGUAGES[language][0]).generate(model_ir, name)


def file_name(language: str, name: str) -> str:
    """The file the source of model ``name`` goes in (Java wants the class name)."""
    return LANGUAGES[language][1].format(name=name, Name=class_name(name))


def class_name(name: str) -> str:
    """``churn-model`` -> ``ChurnModel``: a name usable as a Java class."""
    parts = "".join(ch if ch.isalnum() else " " for ch in name).split()
    text = "".join(p[:1].upper() + p[1:] for p in parts) or "Model"
    return text if text[0].isalpha() else "M" + text


def identifier(name: str) -> str:
    """``churn-model`` -> ``churn_model``: a name usable as a C symbol or Go package."""
    text = "".join(ch if ch.isalnum() else "_" for ch in name).lower() or "model"
    return text if text[0].isalpha() else "m_" + text

"""In-app serving: run an exported model inside another application, with NumPy alone.

``modelport export churn@production --format bundle --out churn-bundle`` writes the model
as an app-ready folder (the compiled form, ONNX, JavaScript, C, Java, Go and Python source,
the signature, the parity report and a README). :func:`load` reads such a bundle, or a
single ``.compiled.json`` / ``.onnx`` file, into a :class:`Model`::

    from modelport import inapp

    model = inapp.load("churn-bundle")
    model.predict_proba({"tenure_months": 3, "plan": "basic", ...})[0, 1]

The scoring is the kernel's, :mod:`modelport.kernel`: one file that imports only NumPy (and
onnxruntime for ONNX artefacts) and nothing from modelport, so an application can vendor it
without modelport, scikit-learn or pandas; bundles carry a copy as ``modelport_inapp.py``.
This package is the in-app surface over it and holds no scoring of its own: it re-exports
the kernel's user-facing names, and :mod:`modelport.inapp.runtime`, the kernel's old home,
still imports for code written against it.
"""

from modelport.inapp import runtime  # noqa: F401  (the old path, kept as an attribute)
from modelport.kernel import InputError, InputWarning, Model, Program, load

__all__ = ["InputError", "InputWarning", "Model", "Program", "load"]

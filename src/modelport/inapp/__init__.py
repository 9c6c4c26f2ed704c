"""In-app serving: run an exported model inside another application, with NumPy alone.

``modelport export churn@production --format bundle --out churn-bundle`` writes the model
as an app-ready folder (the compiled form, ONNX, JavaScript, C, Java, Go and Python source,
the signature, the parity report and a README). :func:`load` reads such a bundle, or a
single ``.compiled.json`` / ``.onnx`` file, into a :class:`Model`::

    from modelport import inapp

    model = inapp.load("churn-bundle")
    model.predict_proba({"tenure_months": 3, "plan": "basic", ...})[0, 1]

Everything lives in :mod:`modelport.inapp.runtime`, one file that imports only NumPy (and
onnxruntime for ONNX artefacts), so an application can vendor it without modelport,
scikit-learn or pandas: bundles carry a copy as ``modelport_inapp.py``.
"""

from .runtime import InputError, InputWarning, Model, Program, load

__all__ = ["InputError", "InputWarning", "Model", "Program", "load"]

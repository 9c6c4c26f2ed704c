"""joblib (pickle) artefacts: the native estimator, exactly as fitted.

Unpickling runs code, so the registry verifies the artefact's sha256 against the value
recorded at registration before this module ever sees the bytes; a changed file is refused.
"""

from __future__ import annotations

import io
from typing import Any

from modelport.formats.native import NativePredictor
from modelport.signature import Signature

NAME = "joblib"
EXTRA = None
TOLERANCE = 0.0


def available() -> bool:
    return True


def convert(model: Any, signature: Signature, sample: Any) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(model, buf, compress=3)
    return buf.getvalue()


def load(data: bytes, signature: Signature) -> NativePredictor:
    import joblib

    return NativePredictor(joblib.load(io.BytesIO(data)), signature, format=NAME)

"""Score churn customers inside a Python application with modelport's in-app runtime.

    python app.py BUNDLE < customers.jsonl         # one JSON object a line -> one score a line
    python app.py BUNDLE '{"tenure_months": 3, "plan": "basic", ...}'
    python app.py BUNDLE --format onnx < customers.jsonl
    python app.py BUNDLE --strict < customers.jsonl   # refuse values training never saw

BUNDLE is a folder written by ``modelport export churn --format bundle``. The app needs
NumPy only (onnxruntime for ``--format onnx``): it uses ``modelport.inapp`` when modelport
is installed, else the copy of the runtime the bundle carries (``modelport_inapp.py``).
A customer the model cannot score (a missing field, text for a number) is reported on
stderr with the reason and the app goes on to the next one. A value training never saw (an
unknown plan, a tenure beyond the longest seen) is scored and the warning reported on
stderr; with ``--strict`` such a customer is refused instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings


def runtime(bundle: str):
    try:
        from modelport import inapp
    except ImportError:
        sys.path.insert(0, bundle)
        import modelport_inapp as inapp
    return inapp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="the bundle folder")
    parser.add_argument("customer", nargs="?", help="one customer as JSON (else stdin, a line each)")
    parser.add_argument("--format", choices=("compiled", "onnx"), default="compiled")
    parser.add_argument("--strict", action="store_true",
                        help="refuse customers with values training never saw")
    args = parser.parse_args(argv)
    inapp = runtime(args.bundle)
    model = inapp.load(args.bundle, format=args.format, strict=args.strict)

    if args.customer is not None:
        proba = model.predict_proba(json.loads(args.customer))[0]
        print(f"churn probability {proba[-1]:.3f}, by {model.describe()}")
        return 0
    failed = 0
    for n, line in enumerate(sys.stdin):
        if not line.strip():
            continue
        try:
            with warnings.catch_warnings(record=True) as flagged:
                warnings.simplefilter("always", inapp.InputWarning)
                proba = model.predict_proba(json.loads(line))[0]
            for w in flagged:
                print(f"customer {n}: warning: {w.message}", file=sys.stderr)
        except inapp.InputError as exc:
            print(f"customer {n}: {exc}", file=sys.stderr)
            print("")
            failed += 1
            continue
        # repr: the shortest text that reads back as exactly this float
        print("\t".join(repr(float(p)) for p in proba))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

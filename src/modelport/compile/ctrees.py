"""Tree ensembles compiled to machine code, for jobs that walk the trees millions of times.

A batch job over a gradient-boosting model spends most of its time walking trees. The
trees of a :class:`~modelport.compile.ir.TreeEnsemble` are written as C by the C code
generator's lowering (nested ``if``/``else``, one function per tree, as
``modelport export --format c`` writes them), with a loop that runs every tree over a block
of rows. The system C compiler (``$CC``, else ``cc``) builds it into a shared library,
cached under ``~/.cache/modelport/trees`` (``$MODELPORT_CACHE``) by the hash of its source, so
a model is compiled once per machine. It is called through ``ctypes`` on the feature matrix
and gives the raw tree sums, like the onnxruntime operator it replaces.

Before it is used, the library is checked against the NumPy walk on probe rows built from
the trees' own thresholds (each value just below, at and above a split, and missing), so a
miscompiled or mismatched library is never used: :func:`build` returns None and the caller
keeps its other runtime. ``MODELPORT_TREES=onnx`` or ``numpy`` (or no compiler) turns it off;
forests of more than :data:`MAX_NODES` nodes are not compiled.

The library also has an entry point for one row (``mp_forest_one``: each tree's code run
on the row, into the caller's output, nothing allocated): the function :func:`build`
returns carries it as ``forest.one``, checked on the probe rows against the batch entry.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

from modelport.compile import ir

log = logging.getLogger(__name__)

#: rows walked through one tree before the next tree: the tree's code stays in cache
_BLOCK = 64
#: largest difference from the NumPy walk accepted on the probe rows (sums in another order)
_TOLERANCE = 1e-9
#: the compiler's budget; a forest too big to compile in it keeps the other runtime
_COMPILE_SECONDS = 120
#: forests with more nodes than this are not compiled: gcc -O2 builds about 4,000 nodes
#: a second here, and a job should not wait minutes for a library before its first row
MAX_NODES = 200_000
#: forests with fewer nodes are not compiled for row-at-a-time serving: the NumPy walk of
#: one row over all nodes at once costs about as much as the call into the library
ROW_MIN_NODES = 2_000


class CompiledForest(Protocol):
    """What :func:`build` returns: the batch entry, carrying the library it keeps loaded
    and the one-row entry (None when it differed from the batch entry)."""

    library: ctypes.CDLL
    one: Callable[..., np.ndarray] | None
    #: the one-row entry on a sequence of feature values (the row-at-a-time path's form),
    #: giving a new array of raw sums; None with ``one``
    one_values: Callable[[Sequence[float]], np.ndarray] | None

    def __call__(self, X: np.ndarray) -> np.ndarray: ...


def enabled() -> bool:
    """Whether compiled trees may be used here (``MODELPORT_TREES`` allows it, a compiler
    is on the PATH)."""
    choice = os.environ.get("MODELPORT_TREES", "c")
    if choice != "c" or os.environ.get("MODELPORT_NUMPY_TREES"):
        return False
    return _compiler() is not None


def build(model_ir: ir.ModelIR, reference: Callable[[np.ndarray], np.ndarray]
          ) -> CompiledForest | None:
    """The trees of ``model_ir`` as a function of a float64 feature matrix giving the raw
    tree sums (no base, no averaging), or None when they cannot be compiled here.

    ``reference`` computes the ensemble's output another way (the NumPy walk: sums plus
    base, averaged where the ensemble averages); the library is used only if it agrees on
    the probe rows.
    """
    node = model_ir.model
    if not isinstance(node, ir.TreeEnsemble) or not node.trees or not enabled():
        return None
    size = sum(len(tree.feature) for tree in node.trees)
    if size > MAX_NODES:
        log.info("%d tree nodes: too many to compile quickly, using the next runtime", size)
        return None
    try:
        source = _source(model_ir)
        lib = _load(source)
    except Exception as exc:  # noqa: BLE001 - any failure keeps the other runtime
        log.warning("compiled trees unavailable, using the next runtime: %s", exc)
        return None
    fn = lib.mp_forest
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_void_p]
    n_features, n_outputs = len(node.features), node.n_outputs

    def forest(X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != n_features:
            raise ValueError(f"expected {n_features} tree features, got shape {X.shape}")
        out = np.empty((X.shape[0], n_outputs))
        fn(X.ctypes.data, X.shape[0], n_features, out.ctypes.data)
        return out

    compiled = cast(CompiledForest, forest)
    compiled.library = lib  # keeps the library loaded as long as the function lives
    entry = _forest_one(lib)
    compiled.one = one = _one_row(entry, n_features, n_outputs)
    compiled.one_values = _one_row_values(entry, n_features, n_outputs)
    probe = probe_rows(node)
    got = forest(probe) + np.asarray(node.base, dtype=np.float64)
    if node.combine == "mean":
        got /= len(node.trees)
    want = reference(probe)
    worst = float(np.max(np.abs(got - want))) if len(probe) else 0.0
    if not worst <= _TOLERANCE:
        log.warning("compiled trees differ from the NumPy walk by %g; not used", worst)
        return None
    first = probe[:_BLOCK]
    sums = forest(first)
    if not all(np.array_equal(one(x), b) for x, b in zip(first, sums, strict=True)):
        log.warning("the compiled one-row entry differs from the batch entry; not used")
        compiled.one = compiled.one_values = None
    elif not all(np.array_equal(compiled.one_values(x.tolist()), b)
                 for x, b in zip(first, sums, strict=True)):
        log.warning("the compiled one-row entry on values differs from the batch entry; "
                    "not used")
        compiled.one_values = None
    return compiled


def _forest_one(lib: ctypes.CDLL) -> Any:
    """The library's one-row entry, ``mp_forest_one(x, n_features, out)``, with its C
    types declared (without them ctypes would pass the addresses as 32-bit ints)."""
    fn = lib.mp_forest_one
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p]
    return fn


def _one_row(fn: Any, n_features: int, n_outputs: int) -> Callable[..., np.ndarray]:
    """The one-row entry ``fn`` (:func:`_forest_one`) as a function of a row (float64,
    ``n_features`` long) giving its raw tree sums, written into ``out`` when one is given."""

    def one(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if x.dtype != np.float64 or x.shape != (n_features,) or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
            if x.shape != (n_features,):
                raise ValueError(f"expected {n_features} tree features, got {x.size}")
        if out is None:
            out = np.empty(n_outputs)
        fn(x.ctypes.data, n_features, out.ctypes.data)
        return out

    return one


def _one_row_values(fn: Any, n_features: int, n_outputs: int
                    ) -> Callable[[Sequence[float]], np.ndarray]:
    """The one-row entry ``fn`` (:func:`_forest_one`) as a function of a sequence of
    ``n_features`` numbers, giving a new array of the raw tree sums. The row and the sums go
    through buffers of the calling thread, made once with their addresses: taking an
    array's address through ctypes costs about a microsecond, as much as a small forest."""
    local = threading.local()

    def buffers() -> tuple[np.ndarray, np.ndarray, int, int]:
        x, out = np.zeros(n_features), np.zeros(n_outputs)
        local.buffers = made = (x, out, x.ctypes.data, out.ctypes.data)
        return made

    def one_values(values: Sequence[float]) -> np.ndarray:
        try:
            x, out, x_at, out_at = local.buffers
        except AttributeError:
            x, out, x_at, out_at = buffers()
        if len(values) != n_features:
            raise ValueError(f"expected {n_features} tree features, got {len(values)}")
        x[:] = values
        fn(x_at, n_features, out_at)
        return out.copy()

    return one_values


def probe_rows(node: ir.TreeEnsemble, limit: int = 2048, seed: int = 0) -> np.ndarray:
    """Rows that exercise both sides of the trees' splits: every feature drawn from its
    split values, the next float on each side of them, missing and, for categorical
    splits, every code named and one that is not."""
    rng = np.random.default_rng(seed)
    n = len(node.features)
    choices: list[set[float]] = [set() for _ in range(n)]
    for tree in node.trees:
        cats = tree.categories or [None] * len(tree.feature)
        for i, f in enumerate(tree.feature):
            if f < 0:
                continue
            cat = cats[i]
            if cat is not None:
                codes = [float(c) for c in cat]
                choices[f].update(codes + [max(codes, default=0.0) + 1.0, -1.0])
                continue
            t = float(tree.threshold[i])
            if np.isfinite(t):
                choices[f].update([t, float(np.nextafter(t, -np.inf)),
                                   float(np.nextafter(t, np.inf))])
    columns = []
    for values in choices:
        pool = np.array(sorted(values) + [np.nan, 0.0])
        columns.append(rng.choice(pool, size=limit))
    return np.column_stack(columns) if columns else np.empty((limit, 0))


def _source(model_ir: ir.ModelIR) -> str:
    from modelport.compile.codegen.c import CLowering, function_lines

    node = model_ir.model
    lo = CLowering(model_ir)
    # the feature matrix comes from the caller, so any feature may hold NaN
    lo.feature_missing = [True] * len(node.features)
    roots = [f"mp_{lo.tree_functions(node, tree, f'tree{t}')}"
             for t, tree in enumerate(node.trees)]
    out = ["/* modelport: the trees of one model, for batch scoring */",
           "#include <math.h>", "#include <stddef.h>", ""]
    out += function_lines(lo, "mp")
    # each tree gets a loop over a block of rows, into which the compiler inlines the
    # tree's own function: one call per tree and block rather than per tree and row
    for fn, tree in zip(roots, node.trees, strict=True):
        call = (f"out[r * {node.n_outputs} + {tree.output}] += {fn}(X + r * n_features);"
                if lo.returns else f"{fn}(X + r * n_features, out + r * {node.n_outputs});")
        out.append(f"static void {fn}_rows(const double *X, long n, long n_features, "
                   f"double *out) {{\n    for (long r = 0; r < n; r++) {call}\n}}")
    out.append("typedef void (*rows_fn)(const double *, long, long, double *);")
    out.append(f"static const rows_fn TREES[{len(roots)}] = "
               f"{{{', '.join(fn + '_rows' for fn in roots)}}};")
    if lo.returns:
        # one row calls each tree directly, in order: no call through the table and no
        # loop over a block of one row per tree
        calls = "\n".join(f"    out[{tree.output}] += {fn}(x);"
                           for fn, tree in zip(roots, node.trees, strict=True))
    else:
        calls = (f"    for (size_t t = 0; t < {len(roots)}; t++) "
                 "TREES[t](x, 1, n_features, out);")
    out.append(f"""
void mp_forest_one(const double *x, long n_features, double *out) {{
    (void) n_features;
    for (long i = 0; i < {node.n_outputs}; i++) out[i] = 0.0;
{calls}
}}

void mp_forest(const double *X, long n, long n_features, double *out) {{
    const long n_out = {node.n_outputs}, block = {_BLOCK};
    for (long i = 0; i < n * n_out; i++) out[i] = 0.0;
    for (long b = 0; b < n; b += block) {{
        long m = b + block < n ? block : n - b;
        for (size_t t = 0; t < {len(roots)}; t++)
            TREES[t](X + b * n_features, m, n_features, out + b * n_out);
    }}
}}
""")
    return "\n".join(out)


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc)


def cache_dir() -> Path:
    root = os.environ.get("MODELPORT_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelport"
    return Path(root) / "trees"


def _load(source: str) -> ctypes.CDLL:
    """The shared library of ``source``: from the cache, else compiled into it."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (set CC or install cc)")
    flags = ["-O2", "-shared", "-fPIC", "-fno-fast-math"]
    key = hashlib.sha256("\0".join([cc, *flags, source]).encode()).hexdigest()[:32]
    lib = cache_dir() / f"{key}.so"
    if lib.exists():
        try:
            return ctypes.CDLL(str(lib))
        except OSError:
            lib.unlink(missing_ok=True)  # a damaged file: build it again
    build_library({"forest.c": source}, flags, lib)
    return ctypes.CDLL(str(lib))


def build_library(sources: dict[str, str], flags: list[str], lib: Path,
                  timeout: float = _COMPILE_SECONDS) -> None:
    """Compile the C files ``sources`` (file name -> text) into the shared library ``lib``,
    unless it is there already. The library is written under a temporary name beside it and
    renamed, so concurrent jobs never load half a file; one lock per library makes the
    processes that need it at once run the compiler once. A failed build is a
    :class:`RuntimeError` with the compiler's last words."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (set CC or install cc)")
    folder = lib.parent
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder / f"{lib.stem}.lock"):
        # the processes of one server load the same version at once: one compiles, the
        # others wait for its library instead of each running the compiler
        if lib.exists():
            return
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            files = []
            for name, text in sources.items():
                (Path(tmp) / name).write_text(text)
                files.append(str(Path(tmp) / name))
            built = Path(tmp) / lib.name
            done = subprocess.run([cc, *flags, "-o", str(built), *files, "-lm"],
                                  capture_output=True, text=True, timeout=timeout)
            if done.returncode != 0:
                raise RuntimeError(f"{cc} failed: {done.stderr.strip()[-500:]}")
            built.chmod(0o644)
            os.replace(built, lib)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if needed) held for the block, where the
    platform has ``fcntl``; elsewhere nothing is locked."""
    try:
        import fcntl
    except ImportError:  # not POSIX: concurrent builds only cost time
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

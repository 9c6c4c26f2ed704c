"""H2O POJO artefacts: a model exported by H2O as a generated Java class, served by h2o-genmodel.

A POJO (``h2o.download_pojo(model)``) is one ``.java`` file: a public class extending
``hex.genmodel.GenModel`` whose trees, weights or centroids are written out as Java code,
plus helper classes holding its column names and levels. modelport registers the source
unchanged as the version's native artefact and:

- **compiles** it with the JDK's ``javac`` against ``h2o-genmodel.jar`` (the one beside the
  imported file, else the one ``MODELPORT_H2O_GENMODEL_JAR`` names), into a folder of this
  process kept for its life (one compilation per source per process);
- **reads the signature from the compiled class**, asking it through the JVM (``getNames``,
  ``getDomainValues``, ``getModelCategory``, the ``@ModelPojo`` annotation): input columns
  in the class's order, categorical where it holds a domain, classes from the response
  domain; nothing of the source is parsed for them, nor run in Python;
- **reads** GBM, DRF and GLM classes written as H2O writes them into the model compiler's
  intermediate form (:mod:`modelport.compile.from_pojo`, text only, nothing run), proven
  at import against the compiled class on the sample and probe rows (1e-9): the version
  gets a ``compiled`` artefact and serves with ``runtime == "compiled"``, no JVM;
- **scores** any other POJO with ``EasyPredictModelWrapper`` in the same long-lived JVM as
  MOJOs (:mod:`modelport.formats.h2o_jvm`), a batch per call, unseen levels counting as
  missing; its ``compiled`` artefact is rejected with the reason the reader gave.

A POJO is a program: importing one runs its code in the JVM, as loading a pickle runs
Python, so import POJOs you trust. What modelport adds never mixes its text with code: the
source is compiled byte for byte, the file handed to ``javac`` is named after the class the
source declares (found by Java's own lexical rules, comments and literals skipped, and
refused unless it is a plain ASCII identifier), ``javac`` runs without a shell and with
annotation processing off, and names shown in messages pass through
:func:`modelport.quoting.code.comment_text`.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import ConversionError, UserError
from modelport.formats import h2o_jvm
from modelport.predictor import Predictor
from modelport.quoting.code import comment_text
from modelport.signature import Signature

if TYPE_CHECKING:
    import pandas as pd

    from modelport.compile.fast import Prepared
    from modelport.compile.ir import ModelIR
    from modelport.registry import Artefact

NAME = "pojo"
#: JPype, for POJOs scored by h2o-genmodel (reading GBM, DRF and GLM needs nothing)
EXTRA = h2o_jvm.EXTRA
TOLERANCE = 1e-9
#: the runtime of a POJO the reader does not read: H2O's own scorer
RUNTIME = "h2o-genmodel"
#: ``auto`` (read when possible, else h2o-genmodel), ``compiled`` or ``jvm``
RUNTIME_ENV = "MODELPORT_POJO_RUNTIME"
_JAVA_ID = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def available() -> bool:
    return True


# --- the format contract ------------------------------------------------------------------


def convert(model: Any, signature: Signature, sample: Any) -> bytes:
    raise ConversionError("a POJO is exported by H2O itself (h2o.download_pojo); modelport "
                          "imports it, and writes Java of its own with export --format java")


def inspect(data: bytes, source: Path | str | None = None) -> Signature:
    """The signature the compiled class reports: its input columns (categorical where it
    holds a domain, with the domain's levels), task and classes (the response domain).

    ``source`` is the imported file; a genmodel jar beside it is used to compile.
    """
    from modelport.compile.from_mojo import Mojo, signature_of

    compiled = compile_pojo(data, source)
    described = Mojo(info=_info(compiled), columns=list(compiled.names),
                     domains=compiled.domains, files={})
    return signature_of(described)


def load(data: bytes, signature: Signature) -> PojoPredictor:
    """A Predictor over POJO source ``data``: read into the compiled runtime when it is a
    GBM, DRF or GLM written as H2O writes them, else compiled (once per process) and scored
    by h2o-genmodel in this process's JVM."""
    return PojoPredictor(data, signature)


def read(data: bytes, signature: Signature) -> ModelIR:
    """The intermediate form of POJO source ``data`` (:mod:`modelport.compile.from_pojo`);
    ConversionError when it is not read."""
    from modelport.compile.from_pojo import to_ir

    return to_ir(_decoded(data, "the POJO"), signature)


class PojoPredictor(Predictor):
    """Scores a POJO with its read form (``runtime == "compiled"``, no JVM) or with
    h2o-genmodel's ``EasyPredictModelWrapper`` (``runtime == "h2o-genmodel"``)."""

    format = NAME
    _prepared: Prepared | None
    _scorer: h2o_jvm.Scorer | None

    def __init__(self, data: bytes, signature: Signature, runtime: str | None = None) -> None:
        super().__init__(signature)
        choice = runtime or os.environ.get(RUNTIME_ENV) or "auto"
        if choice not in ("auto", "compiled", "jvm"):
            raise UserError(f"{RUNTIME_ENV}={choice!r} is not a POJO runtime: use auto, "
                            "compiled or jvm")
        self.class_name = declared_class(_decoded(data, "the POJO"))[1]
        self.reader_refusal: str | None = f"not read: {RUNTIME_ENV}=jvm"
        self._prepared = self._scorer = None
        if choice != "jvm":
            from modelport.compile.fast import Prepared

            try:
                self._prepared = Prepared(read(data, signature))
                self.runtime, self.reader_refusal = "compiled", None
                return
            except ConversionError as exc:
                if choice == "compiled":
                    raise UserError(f"{RUNTIME_ENV}=compiled, but this POJO cannot be read: "
                                    f"{exc}") from None
                self.reader_refusal = str(exc)
        compiled = compile_pojo(data)
        self.class_name = compiled.class_name
        self.runtime = RUNTIME
        self._scorer = h2o_jvm.Scorer(compiled.model(), signature, compiled.category,
                                      compiled.jar)

    def describe(self) -> str:
        return f"{super().describe()} [{self.runtime}]"

    def _run_columns(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._prepared is not None:
            return self._prepared.run(cols)
        assert self._scorer is not None  # set when the reader refused the POJO
        return self._scorer.run(cols)

    def _run(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return self._run_columns({c: frame[c].to_numpy() for c in frame.columns})


def derived_artefacts(data: bytes, signature: Signature, frame: pd.DataFrame | None = None,
                      *, source: Path | str | None = None, formats: Sequence[str] | None = None
                      ) -> tuple[dict[str, Any], list[Artefact], dict[str, bytes],
                                 dict[str, Any]]:
    """What importing POJO ``data`` adds to its own artefact: the ``compiled`` artefact of
    its read form, proven against the compiled class in the JVM, or why it is not read.

    Returns ``(pojo_figures, artefacts, blobs, params)`` as the MOJO format does. The proof
    scores the sample plus probe rows (every split point and the double below it, every
    level, missing values, an unseen level) with h2o-genmodel and with the read form; a
    difference over 1e-9 is a UserError and nothing is registered. Asking for the compiled
    format (``formats=["compiled"]``) of a POJO that is not read is a UserError naming why.
    """
    import json

    from modelport.compile import evaluate
    from modelport.formats.mojo import _comparable, proof_rows
    from modelport.parity import compare
    from modelport.registry import Artefact

    compiled = compile_pojo(data, source)
    wanted = ("compiled",) if formats is None else tuple(formats)
    if set(wanted) - {"compiled"}:
        raise UserError(f"a POJO derives the compiled format only, not "
                        f"{', '.join(sorted(set(wanted) - {'compiled'}))}: drop it from formats=")
    model_ir, refusal = None, f"{RUNTIME_ENV}=jvm"
    if (os.environ.get(RUNTIME_ENV) or "auto") != "jvm":
        try:
            model_ir = read(data, signature)
        except ConversionError as exc:
            refusal = str(exc)
    figures = {"runtime": "compiled" if model_ir else RUNTIME, "reference": "h2o-genmodel",
               "class": compiled.class_name, "genmodel_jar": compiled.jar.name}
    if model_ir is None:
        figures["reader"] = refusal
        if formats is not None and wanted:
            raise UserError(f"this POJO is served by h2o-genmodel only ({refusal}); drop "
                            f"formats= ({', '.join(wanted)})")
        artefacts = [Artefact(format="compiled", status="rejected", reason=f"not read: {refusal}")]
        return figures, artefacts, {}, _params(compiled)
    proof = proof_rows(signature, model_ir, frame)
    genmodel = h2o_jvm.Scorer(compiled.model(), signature, compiled.category, compiled.jar)
    reference = genmodel.run({c: proof[c].to_numpy() for c in proof.columns})
    result = compare(_comparable(reference, signature), evaluate(model_ir, proof),
                     signature.task, TOLERANCE)
    figures.update({k: result[k] for k in ("rows", "max_abs_diff", "max_rel_diff",
                                           "label_flips") if k in result})
    if not result["passed"]:
        raise UserError(f"modelport's reading of this POJO ({compiled.class_name}) differs from "
                        f"h2o-genmodel on {result['rows']} rows ({result['reason']}); nothing "
                        f"was registered. Set {RUNTIME_ENV}=jvm wherever it is imported and "
                        "served to score it with h2o-genmodel instead")
    artefacts, blobs = [], {}
    if "compiled" in wanted:
        blob = json.dumps(model_ir.to_dict(), allow_nan=True).encode("utf-8")
        parity = {k: v for k, v in figures.items() if k not in ("runtime", "class",
                                                                 "genmodel_jar")}
        artefacts.append(Artefact(format="compiled", status="accepted", size=len(blob),
                                  parity={**parity, "derived_from": NAME}))
        blobs["compiled"] = blob
    return figures, artefacts, blobs, _params(compiled)


def _params(compiled: Compiled) -> dict:
    # a binomial POJO's F1 threshold is a literal inside its score0 code, not reported by
    # the class, so unlike a MOJO's it is not recorded
    return {"h2o_algo": compiled.algo, "h2o_category": compiled.category,
            "h2o_class": compiled.class_name}


def _info(compiled: Compiled) -> dict:
    """What :func:`modelport.compile.from_mojo.signature_of` reads of a model."""
    model = compiled.model()
    return {"category": compiled.category, "algo": compiled.algo,
            "supervised": bool(model.isSupervised()), "n_features": int(model.nfeatures()),
            "n_classes": int(model.nclasses())}


# --- compiling the source ------------------------------------------------------------------------


@dataclass
class Compiled:
    """A POJO compiled in this process: its class, where its classes are, what it reports."""

    class_name: str
    folder: Path
    jar: Path
    names: list[str]
    domains: dict[int, list[str]]
    category: str
    algo: str

    def model(self) -> Any:
        """A new instance of the model class (h2o-genmodel's ``GenModel``)."""
        return h2o_jvm.load_class(self.class_name, self.folder, self.jar)()


_COMPILED: dict[str, Compiled] = {}
_COMPILE_LOCK = threading.Lock()
_FOLDERS: list[str] = []


def compile_pojo(data: bytes, source: Path | str | None = None) -> Compiled:
    """POJO source ``data`` compiled with ``javac`` against h2o-genmodel and loaded in this
    process's JVM; compiled once per source per process.

    The genmodel jar is ``MODELPORT_H2O_GENMODEL_JAR``, else the one beside ``source``.
    A missing JDK or jar, or source that does not compile into an H2O model class, is a
    one-line :class:`UserError`.
    """
    key = hashlib.sha256(data).hexdigest()
    with _COMPILE_LOCK:
        if key in _COMPILED:
            return _COMPILED[key]
        shown = comment_text(Path(source).name) if source else "the POJO"
        jar = h2o_jvm.genmodel_jar(Path(source).parent if source else None)
        if jar is None:
            raise UserError(f"compiling {shown} needs h2o-genmodel.jar: put it beside the file "
                            f"or set {h2o_jvm.GENMODEL_ENV} "
                            "(h2o.download_pojo(model, get_genmodel_jar=True) writes it)")
        javac = shutil.which("javac")
        if javac is None:
            raise UserError(f"compiling {shown} needs a JDK, but no 'javac' is on PATH: "
                            "install one (apt-get install openjdk-17-jdk-headless)")
        h2o_jvm.jpype_module("H2O POJOs (scored by h2o-genmodel)")
        text = _decoded(data, shown)
        package, cls = declared_class(text)
        qualified = f"{package}.{cls}" if package else cls
        folder = Path(tempfile.mkdtemp(prefix="modelport-pojo-"))
        _FOLDERS.append(str(folder))
        (folder / "src").mkdir()
        (folder / "src" / f"{cls}.java").write_bytes(data)
        done = subprocess.run(
            [javac, "-proc:none", "-nowarn", "-encoding", "UTF-8", "-implicit:none",
             "-cp", str(jar), "-d", str(folder / "classes"), "-J-Xmx1g",
             str(folder / "src" / f"{cls}.java")],
            capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise UserError(f"{shown} does not compile against {jar.name}: "
                            f"{_first_error(done.stdout + done.stderr, folder)}")
        compiled = _inspected(qualified, folder / "classes", jar, shown)
        _COMPILED[key] = compiled
        return compiled


def _decoded(data: bytes, shown: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{shown} is not UTF-8 text: is it an H2O POJO (a .java file)?") from None


def _first_error(output: str, folder: Path) -> str:
    """javac's first error, on one line, without the temporary folder's path."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    first = next((ln for ln in lines if "error" in ln), lines[0] if lines else "javac failed")
    first = first.replace(str(folder / "src") + "/", "")
    return "".join(ch if ch.isprintable() else "?" for ch in first[:300])


def _inspected(qualified: str, classes: Path, jar: Path, shown: str) -> Compiled:
    """What the compiled class reports of itself, through the JVM."""
    import jpype

    try:
        cls = h2o_jvm.load_class(qualified, classes, jar)
    except Exception as exc:  # noqa: BLE001 - the class did not load
        raise UserError(f"{shown}: the compiled class {comment_text(qualified)} does not load "
                        f"({type(exc).__name__})") from None
    genmodel = h2o_jvm.genmodel_class("hex.genmodel.GenModel", jar)
    if not genmodel.class_.isAssignableFrom(cls.class_):
        raise UserError(f"{shown} is not an H2O POJO: its class {comment_text(qualified)} does "
                        "not extend hex.genmodel.GenModel")
    try:
        model = cls()
    except Exception as exc:  # noqa: BLE001 - its constructor failed
        raise UserError(f"{shown}: the class {comment_text(qualified)} cannot be "
                        f"instantiated ({type(exc).__name__})") from None
    n = int(model.nfeatures())
    all_names = [str(v) for v in model.getNames()]
    domains = {}
    supervised = bool(model.isSupervised())
    indices = [*range(n), *([int(model.getResponseIdx())] if supervised else [])]
    for pos, i in enumerate(indices):
        levels = model.getDomainValues(jpype.JInt(i))
        if levels is not None:
            domains[pos if pos < n else len(indices) - 1] = [str(v) for v in levels]
    names = all_names[:n] + ([str(model.getResponseName())] if supervised else [])
    annotation = h2o_jvm.genmodel_class("hex.genmodel.annotations.ModelPojo", jar)
    mark = cls.class_.getAnnotation(annotation.class_)
    algo = str(mark.algorithm()) if mark is not None else ""
    return Compiled(class_name=qualified, folder=classes, jar=jar, names=names,
                    domains=domains, category=str(model.getModelCategory().toString()),
                    algo=algo)


@atexit.register
def _remove_folders() -> None:
    for folder in _FOLDERS:
        shutil.rmtree(folder, ignore_errors=True)


# --- the class the source declares -------------------------------------------------------------

_UNICODE_ESCAPE = re.compile(r"\\+u+([0-9a-fA-F]{4})")


def declared_class(source: str) -> tuple[str | None, str]:
    """``(package, class)`` of the first public top-level class ``source`` declares.

    Read as ``javac`` reads it: unicode escapes (``\\u000a``) decoded first, then comments,
    string, character and text-block literals skipped, so a class named in a comment or a
    string does not count. The class name becomes a file name, so anything but an ASCII
    Java identifier is refused.
    """
    code = _code_only(_unicode_unescaped(source))
    package = re.match(r"\s*package\s+([A-Za-z_$][\w$]*(?:\s*\.\s*[A-Za-z_$][\w$]*)*)\s*;", code)
    found = re.search(r"(?:^|[;}\s])public\s+(?:(?:final|abstract|strictfp)\s+)*class\s+(\S+?)"
                      r"(?=[\s{<]|$)", code)
    if found is None:
        raise UserError("the file declares no public class: is it an H2O POJO (the .java file "
                        "of h2o.download_pojo)?")
    name = found.group(1)
    if not _JAVA_ID.fullmatch(name):
        raise UserError(f"the POJO's class name {comment_text(name)} is not an ASCII Java "
                        "identifier: rename the class (and the model in H2O)")
    pkg = re.sub(r"\s+", "", package.group(1)) if package else None
    return pkg, name


def _unicode_unescaped(text: str) -> str:
    r"""Java's first step: ``\uXXXX`` (after an even number of backslashes) is the character."""
    def one(m: re.Match) -> str:
        whole = m.group(0)
        slashes = len(whole) - len(whole.lstrip("\\"))
        if slashes % 2 == 0:
            return whole
        return whole[:slashes - 1] + chr(int(m.group(1), 16))

    return _UNICODE_ESCAPE.sub(one, text)


def _code_only(text: str) -> str:
    """``text`` with comments and literals replaced by spaces (line breaks kept)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        two = text[i:i + 2]
        if two == "//":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif two == "/*":
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        elif text.startswith('"""', i):
            end = text.find('"""', i + 3)
            while end > 0 and _escaped_at(text, end):
                end = text.find('"""', end + 1)
            i = n if end < 0 else end + 3
            out.append(" ")
        elif text[i] in "\"'":
            quote, j = text[i], i + 1
            while j < n and text[j] != quote and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            out.append(" ")
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _escaped_at(text: str, pos: int) -> bool:
    slashes = 0
    while pos - 1 - slashes >= 0 and text[pos - 1 - slashes] == "\\":
        slashes += 1
    return slashes % 2 == 1


def java_code(source: str) -> str:
    """``source`` as ``javac`` lexes it: unicode escapes decoded, then comments and string,
    character and text-block literals blanked (line breaks kept), so what is left holds no
    text of the model's names or levels."""
    return _code_only(_unicode_unescaped(source))

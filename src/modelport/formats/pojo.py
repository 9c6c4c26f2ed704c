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
- **scores** it with ``EasyPredictModelWrapper`` in the same long-lived JVM as MOJOs
  (:mod:`modelport.formats.h2o_jvm`), a batch per call, unseen levels counting as missing.

The runtime is ``h2o-genmodel`` for every POJO: its trees are Java code, which modelport does
not read into its intermediate form (a MOJO of the same model is read; export one with
``download_mojo`` for the compiled runtime, SQL and generated code).

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
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelport.errors import ConversionError, UserError
from modelport.formats import h2o_jvm
from modelport.predictor import Predictor
from modelport.quoting.code import comment_text
from modelport.signature import Signature

NAME = "pojo"
#: JPype, as for MOJOs scored by h2o-genmodel
EXTRA = h2o_jvm.EXTRA
#: the runtime is H2O's own scorer: nothing to differ from
TOLERANCE = 1e-9
RUNTIME = "h2o-genmodel"
#: why a POJO is not read into the intermediate form (shown by ``modelport models show``)
NOT_READ = ("a POJO's trees and weights are Java code, which modelport does not read; a MOJO "
            "of the same model is read into the compiled runtime (download_mojo)")
_JAVA_ID = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("jpype") is not None


# --- the format contract ------------------------------------------------------------------


def convert(model, signature: Signature, sample) -> bytes:
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
    """A Predictor over POJO source ``data``: compiled (once per process) and scored by
    h2o-genmodel in this process's JVM."""
    return PojoPredictor(data, signature)


class PojoPredictor(Predictor):
    """Scores a compiled POJO with ``EasyPredictModelWrapper`` (``runtime == "h2o-genmodel"``)."""

    format = NAME
    runtime = RUNTIME
    reader_refusal = NOT_READ

    def __init__(self, data: bytes, signature: Signature) -> None:
        super().__init__(signature)
        compiled = compile_pojo(data)
        self.class_name = compiled.class_name
        self.algo = compiled.algo
        self._scorer = h2o_jvm.Scorer(compiled.model(), signature, compiled.category,
                                      compiled.jar)

    def describe(self) -> str:
        return f"{super().describe()} [{self.runtime}]"

    def _run_columns(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._scorer.run(cols)

    def _run(self, frame) -> dict[str, np.ndarray]:
        return self._run_columns({c: frame[c].to_numpy() for c in frame.columns})


def derived_artefacts(data: bytes, signature: Signature, frame=None, *, source=None,
                      formats=None):
    """What importing POJO ``data`` adds to its own artefact: its runtime and why it is not
    read (no derived formats), and the model's H2O parameters.

    Returns ``(pojo_figures, artefacts, blobs, params)`` as the MOJO format does; asking for
    a derived format (``formats=["compiled"]``) is a UserError naming why there is none.
    """
    from modelport.registry import Artefact

    compiled = compile_pojo(data, source)
    wanted = ("compiled",) if formats is None else tuple(formats)
    if formats is not None and wanted:
        raise UserError(f"a POJO is served by h2o-genmodel only: {NOT_READ}; drop "
                        f"formats= ({', '.join(wanted)})")
    figures = {"runtime": RUNTIME, "reference": "h2o-genmodel", "reader": NOT_READ,
               "class": compiled.class_name, "genmodel_jar": compiled.jar.name}
    artefacts = [Artefact(format="compiled", status="rejected",
                          reason=f"not read: {NOT_READ}")]
    return figures, artefacts, {}, _params(compiled)


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

    def model(self):
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

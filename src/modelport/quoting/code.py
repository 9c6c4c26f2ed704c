r"""Untrusted text written into Python, JavaScript, C, Java and Go source so it means only itself.

A code generator needs three things, and takes each from here:

- **String literals** of any text: :func:`string_literal`, or one of :func:`python_literal`,
  :func:`javascript_literal`, :func:`c_literal`, :func:`java_literal`, :func:`go_literal`.
  Every literal is printable ASCII with escapes, so neither the file's encoding, nor a line
  terminator only one language knows (U+2028 in JavaScript), nor a Java unicode escape
  (``\u000a`` is decoded before Java lexes), nor a C trigraph (``??/`` is a backslash) can
  move the end of the literal.
- **Comments**: untrusted text appears in comments only as :func:`comment_text`, a
  percent-encoded display form (``a*/b`` shows as ``a%2A%2Fb``) over an alphabet that no
  comment or docstring of any target can end or re-lex on. :func:`comment` and
  :func:`docstring` refuse any text outside that alphabet, so a piece a generator forgot to
  encode fails loudly instead of becoming code.
- **Identifiers**: :class:`Identifiers` maps each name to an identifier made of ASCII
  letters, digits and ``_``, deterministic, unique within one model (``a b`` and ``a-b``
  become ``in_a_b`` and ``in_a_b_2``) and never a keyword; the generated code keeps the
  original names as literals in a lookup table, so rows are still keyed by them.
  :func:`symbol_name` and :func:`class_name` name a whole model (a C symbol prefix, a Go
  package, a Python module, a Java class).

>>> print(python_literal('age"\\N'))
"age\"\\N"
>>> print(java_literal("\\u000a"), c_literal("??/"))
"\\u000a" "\?\?/"
>>> comment_text("plan */ x")
'plan %2A%2F x'
>>> ids = Identifiers("go", prefix="in_")
>>> ids("a b"), ids("a-b"), ids("a b")
('in_a_b', 'in_a_b_2', 'in_a_b')
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Iterable

from modelport.errors import UserError

LANGUAGES = ("python", "javascript", "c", "java", "go")

_PRINTABLE = frozenset(map(chr, range(0x20, 0x7F)))
_BASIC_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: the longest string constant a class file holds, in modified UTF-8 bytes
JAVA_MAX_CONSTANT = 65535


def _escaped(text: str, escapes: dict[str, str], other: Callable[[str], str]) -> str:
    return "".join(escapes[ch] if ch in escapes else ch if ch in _PRINTABLE else other(ch)
                   for ch in text)


def _utf16(ch: str) -> list[int]:
    c = ord(ch)
    if c < 0x10000:
        return [c]
    c -= 0x10000
    return [0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF)]


def _shown(text: str) -> str:
    """The text as it is named in an error message: one line, not too long."""
    r = repr(text)
    return r if len(r) <= 80 else r[:77] + "..."


# --- string literals -------------------------------------------------------------------------


def python_literal(text: str) -> str:
    """A Python string literal (double-quoted, ASCII only) whose value is exactly ``text``.

    Every character is allowed: NUL, lone surrogates, CR, U+2028, backslashes and sequences
    such as ``\\N`` come out as escapes, so the literal can go anywhere an expression can in
    generated Python (a module, an Airflow DAG) and the file stays ASCII.
    """
    def other(ch: str) -> str:
        c = ord(ch)
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" if c < 0x10000 else f"\\U{c:08x}"

    return '"' + _escaped(text, _BASIC_ESCAPES, other) + '"'


_JS_ESCAPES = {**_BASIC_ESCAPES, "<": "\\u003c"}  # so the module may be inlined in <script>


def javascript_literal(text: str) -> str:
    """A JavaScript string literal (double-quoted, ASCII only) whose value is exactly ``text``.

    Characters outside printable ASCII are ``\\uXXXX`` escapes of their UTF-16 code units
    (so U+2028 and U+2029, line terminators to older engines, never appear raw, and a lone
    surrogate stays one); ``<`` is escaped too, so no ``</script>`` or ``<!--`` appears
    should the module be inlined in an HTML page. Valid in strict mode and in modules.
    """
    def other(ch: str) -> str:
        return "".join(f"\\u{u:04x}" for u in _utf16(ch))

    return '"' + _escaped(text, _JS_ESCAPES, other) + '"'


def java_literal(text: str) -> str:
    """A Java string literal (ASCII only) whose value, as UTF-16, is exactly ``text``.

    Java decodes ``\\uXXXX`` before it lexes, so the literal never uses a unicode escape for
    a character that matters to the lexer: quote, backslash, CR and LF get their usual
    escapes, the other ASCII controls three-digit octal ones, and only characters from
    U+0080 up are ``\\uXXXX`` code units. A backslash in ``text`` is doubled, so text such as
    ``\\u000a`` stays text (right after a lone high surrogate it is ``\\134``, which javac
    reads correctly there). Raises :class:`~modelport.errors.UserError` for text longer
    than a class file's 65,535-byte string constant.
    """
    def other(ch: str) -> str:
        c = ord(ch)
        return f"\\{c:03o}" if c < 0x80 else "".join(f"\\u{u:04x}" for u in _utf16(ch))

    size = sum(1 if 0 < u < 0x80 else 2 if u < 0x800 else 3
               for ch in text for u in _utf16(ch))
    if size > JAVA_MAX_CONSTANT:
        raise UserError(f"{_shown(text)} is too long for a Java string constant ({size:,} "
                        f"bytes; a class file holds at most {JAVA_MAX_CONSTANT:,}): shorten "
                        "that name or value, or export to another language")
    # javac, having read a high surrogate's escape, looks ahead for its pair and misreads an
    # escaped backslash there ("\ud800\\u002a" fails to compile): such a backslash is
    # written as the octal escape \134 instead
    return '"' + "".join("\\134" if ch == "\\" and "\ud800" <= prev <= "\udbff"
                         else _escaped(ch, _BASIC_ESCAPES, other)
                         for prev, ch in zip(" " + text, text, strict=False)) + '"'


def go_literal(text: str) -> str:
    """A Go interpreted string literal (ASCII only) whose value is the UTF-8 of ``text``.

    Code points are ``\\u``/``\\U`` escapes; a lone surrogate, which Go's escapes cannot
    name, becomes the three ``\\x`` bytes it has in WTF-8, the bytes a Go program holding
    such a string would hold.
    """
    def other(ch: str) -> str:
        c = ord(ch)
        if c < 0x80:
            return f"\\x{c:02x}"
        if 0xD800 <= c < 0xE000:
            return "".join(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        return f"\\u{c:04x}" if c < 0x10000 else f"\\U{c:08x}"

    return '"' + _escaped(text, _BASIC_ESCAPES, other) + '"'


_C_ESCAPES = {**_BASIC_ESCAPES, "?": "\\?"}  # no '??' sequence, so no trigraph


def c_literal(text: str) -> str:
    """A C string literal (ASCII only) holding the UTF-8 bytes of ``text``.

    Bytes outside printable ASCII are three-digit octal escapes (a hex escape would swallow
    the hexadecimal digits after it), every ``?`` is ``\\?`` so no trigraph such as ``??/``
    forms, and a lone surrogate is written as its WTF-8 bytes. C strings end at their
    first NUL, so text holding one raises :class:`~modelport.errors.UserError`.
    """
    if "\0" in text:
        raise UserError(f"{_shown(text)} cannot be written as a C string, which ends at its "
                        "first NUL character: remove the NUL from that name or value, or "
                        "export to another language")

    def other(ch: str) -> str:
        return "".join(f"\\{b:03o}" for b in ch.encode("utf-8", "surrogatepass"))

    return '"' + _escaped(text, _C_ESCAPES, other) + '"'


_LITERALS = {"python": python_literal, "javascript": javascript_literal, "c": c_literal,
             "java": java_literal, "go": go_literal}


def string_literal(language: str, text: str) -> str:
    """A string literal of ``language`` (one of :data:`LANGUAGES`) whose value is ``text``."""
    return _LITERALS[language](text)


# --- comments ---------------------------------------------------------------------------------

#: characters comment_text shows as themselves: none of them, alone or in any sequence,
#: ends or changes a comment or docstring of any target (no quote, backslash, '*', '/',
#: '?', '%', control or non-ASCII character)
_SHOWN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                   " _.,:;=+-()[]{}<>#@!~^&|$")
_COMMENT_UNSAFE = re.compile(r'[^\x20-\x7e\n]|[\\"]|\?\?|\*/|/\*')


def comment_text(text: str) -> str:
    """``text`` in a display form safe inside any comment or docstring of every target.

    Characters outside a small safe alphabet (letters, digits, space and
    ``_.,:;=+-()[]{}<>#@!~^&|$``) are shown as the ``%XX`` escapes of their UTF-8 bytes, as
    in a URL: ``churn_score`` is unchanged, ``a*/b`` shows as ``a%2A%2Fb`` and a newline as
    ``%0A``. The form is for people reading the generated code; the exact text lives in
    the code's literals.
    """
    return "".join(ch if ch in _SHOWN else
                   "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
                   for ch in text)


def _checked(text: str) -> str:
    bad = _COMMENT_UNSAFE.search(text)
    if bad:
        raise ValueError(f"comment text holds {bad.group()!r} at {bad.start()}: pass "
                         "untrusted text through comment_text()")
    return text


def comment(language: str, text: str) -> str:
    """``text`` as line comments of ``language`` (``#`` for Python, ``//`` for the others).

    ``text`` is modelport's own words with untrusted pieces passed through
    :func:`comment_text`; each ``\\n`` starts a new comment line. Anything that could end
    or change a comment in some target (a control or non-ASCII character, a backslash, a
    double quote, ``??``, ``/*`` or ``*/``) raises ``ValueError``.
    """
    mark = "#" if language == "python" else "//"
    return "\n".join(f"{mark} {line}".rstrip() for line in _checked(text).split("\n"))


def docstring(text: str) -> str:
    """``text`` as a Python triple-quoted docstring, under the rules of :func:`comment`."""
    return '"""' + _checked(text) + '"""'


# --- identifiers ------------------------------------------------------------------------------

#: words an identifier must not be in each target: keywords, reserved and contextual words,
#: literals, and names generated code or the headers it includes define
KEYWORDS: dict[str, frozenset[str]] = {
    "python": frozenset([*keyword.kwlist, *keyword.softkwlist, "math", "row", "x", "raw",
                         "out", "score", "top", "total", "COLUMNS"]),
    "javascript": frozenset(
        "await break case catch class const continue debugger default delete do else enum "
        "export extends false finally for function if implements import in instanceof "
        "interface let new null package private protected public return static super switch "
        "this throw true try typeof var void while with yield arguments eval undefined NaN "
        "Infinity async of get set num str score row x raw out top total COLUMNS".split()),
    "c": frozenset(
        "auto break case char const continue default do double else enum extern float for "
        "goto if inline int long register restrict return short signed sizeof static struct "
        "switch typedef union unsigned void volatile while _Alignas _Alignof _Atomic _Bool "
        "_Complex _Generic _Imaginary _Noreturn _Static_assert _Thread_local alignas alignof "
        "bool constexpr false nullptr static_assert thread_local true typeof typeof_unqual "
        "_BitInt _Decimal32 _Decimal64 _Decimal128 NULL NAN INFINITY HUGE_VAL HUGE_VALF "
        "HUGE_VALL FP_NAN FP_INFINITE FP_ZERO FP_SUBNORMAL FP_NORMAL FP_ILOGB0 FP_ILOGBNAN "
        "MATH_ERRNO MATH_ERREXCEPT math_errhandling isnan isinf isfinite isnormal signbit "
        "fpclassify isgreater isgreaterequal isless islessequal islessgreater isunordered "
        "errno EDOM ERANGE offsetof size_t ptrdiff_t wchar_t exp sqrt strcmp num cat out x "
        "raw top total".split()),
    "java": frozenset(
        "abstract assert boolean break byte case catch char class const continue default do "
        "double else enum extends final finally float for goto if implements import "
        "instanceof int interface long native new package private protected public return "
        "short static strictfp super switch synchronized this throw throws transient try "
        "void volatile while true false null var yield record sealed permits when module "
        "open opens exports requires transitive provides uses with to _ num str score row x "
        "raw out top total COLUMNS".split()),
    "go": frozenset(
        "break case chan const continue default defer else fallthrough for func go goto if "
        "import interface map package range return select struct switch type var any bool "
        "byte comparable complex64 complex128 error float32 float64 int int8 int16 int32 "
        "int64 rune string uint uint8 uint16 uint32 uint64 uintptr true false iota nil append "
        "cap clear close complex copy delete imag len make max min new panic print println "
        "real recover fmt math strconv strings num str strPtr Score row x raw out top total "
        "columns".split()),
}

#: the longest part of an identifier taken from the name
_MAX_BODY = 40


def identifier(language: str, text: str, *, prefix: str = "",
               taken: Iterable[str] = ()) -> str:
    """An identifier of ``language`` for the name ``text``, not in ``taken``.

    ASCII letters and digits of ``text`` are kept (up to 40 of them, runs of anything else
    become one ``_``) after ``prefix``; one that would start with a digit starts with ``x``;
    one that is a keyword or reserved word of the target (:data:`KEYWORDS`) or already in
    ``taken`` gets the first free suffix ``_2``, ``_3``, ... The same inputs always give the
    same identifier.
    """
    body = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:_MAX_BODY].rstrip("_") or "x"
    base = prefix + body
    if not (base[0].isascii() and (base[0].isalpha() or base[0] == "_")):
        base = "x" + base
    taken = set(taken)
    reserved = KEYWORDS[language]
    name, n = base, 1
    while name in reserved or name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


class Identifiers:
    """The identifiers of one generated file: each name always gets the same one, and no two
    names (nor any of ``reserved``) share one, however alike they are.

    >>> ids = Identifiers("python", prefix="in_", reserved={"in_x"})
    >>> ids(""), ids("class"), ids("Class")
    ('in_x_2', 'in_class', 'in_Class')
    """

    def __init__(self, language: str, *, prefix: str = "",
                 reserved: Iterable[str] = ()) -> None:
        if language not in KEYWORDS:
            raise ValueError(f"unknown language {language!r}: use one of {', '.join(LANGUAGES)}")
        self.language = language
        self.prefix = prefix
        self._taken = set(reserved)
        self._of: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        if text not in self._of:
            name = identifier(self.language, text, prefix=self.prefix, taken=self._taken)
            self._taken.add(name)
            self._of[text] = name
        return self._of[text]


#: lower-case names a model's own symbol must not be: a Go package cannot be a keyword,
#: shadow a predeclared name or be ``main``; a Python module cannot be a keyword
_SYMBOL_RESERVED = frozenset(
    {*keyword.kwlist, *keyword.softkwlist, "main"} | (KEYWORDS["go"] - {"Score"}))
#: Java types the generated class refers to, which a class of the same name would shadow
_JAVA_TYPES = frozenset("String Map Object Double Float Long Integer Number Math Boolean "
                        "System Override".split())


def symbol_name(text: str) -> str:
    """``churn-model`` -> ``churn_model``: a model's name as a lower-case identifier, usable
    as a C symbol prefix, a Go package and a Python module in every case.

    Letters and digits stay (lower-cased), anything else becomes ``_``; a name that would
    start with something other than a letter gets ``m_`` in front, and one that is a
    keyword or a reserved name gets ``_model`` after.
    """
    name = "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in text).lower()
    name = name or "model"
    if not name[0].isalpha():
        name = "m_" + name
    return name + "_model" if name in _SYMBOL_RESERVED else name


def class_name(text: str) -> str:
    """``churn-model`` -> ``ChurnModel``: a model's name as a Java class name.

    Words of ASCII letters and digits are capitalised and joined; a name starting with a
    digit gets ``M`` in front; one that would shadow a type the class uses (``String``,
    ``Map``, ``Math``...) or name one of its nested classes (``T0``...) gets ``Model``
    after. Java keywords are lower-case, so a class name is never one.
    """
    parts = "".join(ch if ch.isascii() and ch.isalnum() else " " for ch in text).split()
    name = "".join(p[:1].upper() + p[1:] for p in parts) or "Model"
    if not name[0].isalpha():
        name = "M" + name
    if name in _JAVA_TYPES or re.fullmatch(r"T[0-9]+", name):
        name += "Model"
    return name

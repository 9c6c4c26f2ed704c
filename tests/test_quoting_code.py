"""The quoting layer for code: literals mean their text, comments cannot end, identifiers are safe.

Unit checks of :mod:`modelport.quoting.code`, then properties over generated hostile text,
drawn family by family (the quote and comment closers of each target, backslash sequences,
line terminators, NUL, trigraphs, Java unicode escapes, non-ASCII and lone surrogates,
keywords, very long text, payloads that create a canary file):

- every literal, compiled by each language's own compiler, holds exactly its text, and
  every comment of the display form compiles to nothing;
- a model whose column names, categories, imputed value and class labels are such text,
  generated in every language, builds, runs in its own process on rows keyed by the
  original names and scores like scikit-learn to 1e-9 (C on the rows a C string can carry),
  or is refused with a one-line UserError; the canary is never created.

Compilers start once per example, so each example carries many texts; the whole file runs
in under three minutes on two cores.
"""

from __future__ import annotations

import ast
import os
import re
import tempfile
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modelport.compile import codegen, to_ir
from modelport.errors import UserError
from modelport.quoting import code as q
from test_export_hostile_code import (
    CANARY,
    LANGUAGES,
    PAYLOADS,
    hostile_model,
    native_scores,
    need_tool,
    run_code,
    run_tool,
    scorable,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Found unknown categories"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]

#: hostile text by what it attacks; strategies draw a family first, so each is as likely
#: as any other however many pieces it has
FAMILIES = {
    "python": ['"""', "'''", '"', "'", "\\N", "\\N{BULLET}", "\\x4", "{", "}", "#", "\\",
               'f"{x}"', "\\\n"],
    "javascript": ["*/", "/*", "//", "`", "${", "</script>", "<!--", "-->", "\\u0041",
                   "__proto__", "constructor"],
    "c": ["*/", "??/", "??=", "??(", "??'", "\\", "\\\n", "%s", "\\x41", "\\0", "'"],
    "java": ["\\u000a", "\\u000d", "\\u0022", "\\u005c", "\\uuuu000a", "\\\\u000a",
             "\\u002a/", "\\U000a"],
    "go": ["`", "\\x", "\\U0001F600", "//go:generate", "\\a"],
    "line terminators": ["\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c"],
    "non-ASCII": ["é", "中文", "😀", "\ufeff", "\u202e", "\u200b", "\U0010ffff", "ß", "\x7f",
                  "\x1b"],
    "keywords": ["class", "int", "func", "return", "None", "null", "in_x", "COLUMNS", "score",
                 "row", "String", "main", "x", "raw", "__init__", "NAN"],
    "very long": ["x" * 2000, "é" * 700, "*/" * 300],
    "payloads": list(PAYLOADS.values()),
}
NUL = "\0"
LONE_SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]


def _piece(families: dict[str, list[str]]):
    return st.sampled_from(sorted(families)).flatmap(lambda f: st.sampled_from(families[f]))


def hostile_text(*, nul: bool = True, surrogates: bool = False, max_pieces: int = 4):
    """Text made of up to ``max_pieces`` family pieces and short random strings."""
    families = dict(FAMILIES)
    if nul:
        families["NUL"] = [NUL, "a\0b"]
    if surrogates:
        families["lone surrogates"] = LONE_SURROGATES
    chars = st.characters(exclude_categories=() if surrogates else ("Cs",))
    random = st.text(alphabet=chars, max_size=3)
    if not nul:
        random = random.map(lambda s: s.replace(NUL, ""))
    return st.lists(st.one_of(_piece(families), random), min_size=1,
                    max_size=max_pieces).map("".join)


# --- unit checks ---------------------------------------------------------------------------


def test_doc_examples_hold():
    import doctest

    assert doctest.testmod(q, optionflags=doctest.ELLIPSIS).failed == 0


@pytest.mark.parametrize("language", q.LANGUAGES)
def test_literals_are_printable_ascii(language):
    text = "".join(chr(c) for c in range(1, 0x3000)) + "\U0001F600\u2028??/\\u000a"
    literal = q.string_literal(language, text)
    assert literal.isascii() and literal.isprintable()
    assert literal[0] == literal[-1] == '"'


def test_java_literal_never_uses_a_unicode_escape_for_what_the_lexer_sees():
    literal = q.java_literal('"\\\n\r\0\x85')
    assert literal == '"\\"\\\\\\n\\r\\000\\u0085"'


def test_c_literal_breaks_every_trigraph_and_refuses_nul():
    assert "??" not in q.c_literal("??/??=??(??)??!??<??>??-??'")
    with pytest.raises(UserError, match="NUL") as info:
        q.c_literal("plan\0x")
    assert len(str(info.value).splitlines()) == 1 and "'plan\\x00x'" in str(info.value)


def test_java_literal_refuses_text_longer_than_a_class_file_constant():
    q.java_literal("é" * 32767)
    with pytest.raises(UserError, match="too long for a Java string constant"):
        q.java_literal("é" * 32768)


def test_comment_refuses_text_that_could_end_it():
    for bad in ("a */ b", "a\\u000a", "??/", 'x"', "line\rbreak", "a\u2028b", "é"):
        with pytest.raises(ValueError, match="comment_text"):
            q.comment("c", bad)
        with pytest.raises(ValueError):
            q.docstring(bad)
    assert q.comment("go", "one\ntwo") == "// one\n// two"
    assert q.comment("python", "a (b)\n\nc") == "# a (b)\n#\n# c"


def test_identifiers_are_unique_and_never_keywords():
    ids = q.Identifiers("java", prefix="")
    assert [ids(t) for t in ("class", "a b", "a-b", "", "9", "a b")] == [
        "class_2", "a_b", "a_b_2", "x_2", "x9", "a_b"]  # x: a name generated code uses
    assert q.identifier("python", "in_x", prefix="in_") == "in_in_x"
    assert q.identifier("go", "type") == "type_2"
    assert len(q.identifier("c", "y" * 500, prefix="in_")) == 43


def test_model_names_become_symbols_and_classes_that_compile():
    assert q.symbol_name("churn-model") == "churn_model"
    assert q.symbol_name("func") == "func_model" and q.symbol_name("main") == "main_model"
    assert q.symbol_name("9lives") == "m_9lives" and q.symbol_name("") == "model"
    assert q.class_name("churn.v2") == "ChurnV2"
    assert q.class_name("string") == "StringModel" and q.class_name("t0") == "T0Model"
    assert q.class_name("2x") == "M2x"


# --- properties of the pieces ----------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(hostile_text(surrogates=True))
def test_python_literal_reads_back_as_its_text(text):
    assert ast.literal_eval(q.python_literal(text)) == text


@settings(max_examples=300, deadline=None)
@given(hostile_text(surrogates=True))
def test_display_form_is_safe_and_decodes_to_its_text(text):
    shown = q.comment_text(text)
    assert re.fullmatch(r"[A-Za-z0-9 _.,:;=+\-()\[\]{}<>#@!~^&|$%]*", shown)
    assert urllib.parse.unquote(shown, errors="surrogatepass") == text
    for language in q.LANGUAGES:
        q.comment(language, shown)
    tree = ast.parse(q.docstring(shown))
    assert len(tree.body) == 1 and ast.literal_eval(tree.body[0].value) == shown


@settings(max_examples=200, deadline=None)
@given(st.lists(hostile_text(), min_size=1, max_size=12))
def test_identifiers_of_any_names_are_valid_distinct_and_stable(names):
    for language in q.LANGUAGES:
        ids = q.Identifiers(language, prefix="in_")
        made = [ids(n) for n in names]
        assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", m) for m in made)
        assert not set(made) & q.KEYWORDS[language]
        assert len(set(made)) == len(set(names))
        again = q.Identifiers(language, prefix="in_")
        assert [again(n) for n in names] == made


_LITERAL_PROGRAMS = {
    "javascript": ("values.mjs", """%(comments)s
const values = [%(items)s];
for (const s of values) {
  const units = [...Array(s.length).keys()].map(i => s.charCodeAt(i).toString(16));
  console.log(s.length ? units.map(u => u.padStart(4, "0")).join("") : "-");
}
"""),
    "java": ("Values.java", """%(comments)s
public class Values {
    static final String[] VALUES = {%(items)s};
    public static void main(String[] args) {
        StringBuilder sb = new StringBuilder();
        for (String s : VALUES) {
            if (s.isEmpty()) sb.append('-');
            for (char c : s.toCharArray()) sb.append(String.format("%%04x", (int) c));
            sb.append('\\n');
        }
        System.out.print(sb);
    }
}
"""),
    "go": ("values.go", """%(comments)s
package main

import (
	"encoding/hex"
	"fmt"
)

var values = []string{%(items)s}

func main() {
	for _, s := range values {
		if s == "" {
			fmt.Println("-")
		} else {
			fmt.Println(hex.EncodeToString([]byte(s)))
		}
	}
}
"""),
    "c": ("values.c", """%(comments)s
#include <stdio.h>
static const char *const values[] = {%(items)s};
int main(void) {
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        const unsigned char *s = (const unsigned char *) values[i];
        if (!*s) printf("-");
        for (; *s; s++) printf("%%02x", *s);
        printf("\\n");
    }
    return 0;
}
"""),
}


def _expected_hex(language: str, text: str) -> str:
    if not text:
        return "-"
    if language in ("javascript", "java"):
        return text.encode("utf-16-be", "surrogatepass").hex()
    return text.encode("utf-8", "surrogatepass").hex()


def _compiled_values(language: str, texts: list[str], folder: Path) -> list[str]:
    fname, template = _LITERAL_PROGRAMS[language]
    comments = "\n".join(q.comment(language, q.comment_text(t)) for t in texts)
    items = ", ".join(q.string_literal(language, t) for t in texts)
    (folder / fname).write_text(template % {"comments": comments, "items": items})
    if language == "javascript":
        need_tool("node")
        out = run_tool(["node", fname], folder)
    elif language == "java":
        need_tool("javac")
        run_tool(["javac", "-d", "classes", fname], folder)
        out = run_tool(["java", "-cp", "classes", "Values"], folder)
    elif language == "go":
        need_tool("go")
        env = {**os.environ, "GOTOOLCHAIN": "local"}
        run_tool(["go", "build", "-o", "values", fname], folder, env=env)
        out = run_tool(["./values"], folder)
    else:
        need_tool("gcc")
        run_tool(["gcc", "-std=c99", "-Wall", "-Werror", "-o", "values", fname], folder)
        out = run_tool(["./values"], folder)
    return out.splitlines()


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(hostile_text(surrogates=True), min_size=20, max_size=40))
@example([piece for pieces in FAMILIES.values() for piece in pieces] + LONE_SURROGATES
         + [NUL, "", "a\0b", "\ud800\\u002a"])  # the last once broke javac
def test_every_compiler_reads_each_literal_as_its_text(texts):
    with tempfile.TemporaryDirectory() as tmp:
        for language in ("javascript", "java", "go", "c"):
            kept = [t for t in texts if not (language == "c" and NUL in t)]
            folder = Path(tmp) / language
            folder.mkdir()
            got = _compiled_values(language, kept, folder)
            assert got == [_expected_hex(language, t) for t in kept], language
    assert not CANARY.exists()


# --- the property over whole models ----------------------------------------------------------


@st.composite
def hostile_models(draw):
    """Column names, their kinds, categories, the imputed category and class labels, all
    hostile; now and then a column name holds NUL, which C cannot hold."""
    names = draw(st.lists(hostile_text(nul=False), min_size=4, max_size=8, unique=True))
    if draw(st.integers(0, 9)) == 0:
        names[0] += "\0x"  # scikit-learn drops a trailing NUL from column names
    n_cat = draw(st.integers(1, len(names) - 1))
    categorical = {c: draw(st.lists(hostile_text(), min_size=2, max_size=4, unique=True))
                   for c in names[-n_cat:]}
    classes = draw(st.lists(hostile_text(), min_size=2, max_size=3, unique=True))
    fill = draw(hostile_text(nul=False))
    return names[:-n_cat], categorical, classes, fill


_EVERY_PIECE = list(dict.fromkeys(p for pieces in FAMILIES.values() for p in pieces))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(hostile_models())
@example((_EVERY_PIECE[:25], {"plan\u2028": [*_EVERY_PIECE[25:50], "a\0b", NUL],
                              "*/??/": _EVERY_PIECE[50:]},
          ["no\u2028", '"""', "*/\\u000a"], "fill??/\r"))
@example((["tenure", "a\0b"], {"plan": ["x", "y"]}, ["no", "yes"], "missing"))
def test_hostile_models_score_like_scikit_learn_in_every_language_or_are_refused(case):
    numeric, categorical, classes, fill = case
    model, sig, frame = hostile_model(numeric, categorical, classes, fill=fill)
    model_ir = to_ir(model, sig)
    expected = native_scores(model, frame)
    with tempfile.TemporaryDirectory() as tmp:
        for language in LANGUAGES:
            try:
                source = codegen.generate(model_ir, language, "hostile")
            except UserError as exc:
                assert len(str(exc).splitlines()) == 1
                assert language == "c" and NUL in "".join(sig.names + [fill]), str(exc)
                continue
            assert source.isascii()
            got = run_code(language, source, sig, frame, "hostile", Path(tmp) / language)
            want = expected[scorable(language, frame)]
            assert got.shape == want.shape, language
            assert abs(got - want).max() <= 1e-9, language
            assert not CANARY.exists(), f"a payload ran in {language}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_alike_names_get_distinct_identifiers_and_the_table_keeps_the_names(language):
    names = ["a b", "a-b", "a_b", "class"]
    model, sig, _ = hostile_model(names, {"plan": ["x", "y"]}, ["no", "yes"])
    source = codegen.generate(to_ir(model, sig), language, "hostile")
    table = [q.string_literal(language, n) for n in sig.names]
    at = [source.index(f"{literal},  ") for literal in table]
    assert at == sorted(at)  # the lookup table lists the original names in input order
    for ident in ("in_a_b", "in_a_b_2", "in_a_b_3", "in_class", "in_plan"):
        assert re.search(rf"\b{ident}\b( float64| \*string)? = ", source), ident

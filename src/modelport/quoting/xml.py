"""XML text and attribute values, for the PMML modelport writes.

Column names, categories and class labels come from data and reach PMML as attribute values
and element text. Escaping ``& < > " '`` (quotes in attributes) keeps them from ending a
value or opening markup; that alone is not enough for them to come back exactly:

- XML 1.0 cannot carry NUL and the other C0 controls but tab, newline and carriage return,
  lone surrogates, U+FFFE or U+FFFF, not even as character references. A document holding
  one is not XML, and an evaluator refuses it. Mapping such a character to another would
  change a field name, which must match the input column exactly, so it is refused with a
  :class:`~modelport.errors.UserError` naming the value.
- A parser turns a tab, newline or carriage return inside an attribute value into a space,
  and a carriage return in text into a newline; written as character references they
  survive. C1 controls and U+2028 are written as references too: XML 1.1 readers take
  them for line ends.
- pypmml reads an element's text only up to the first reference, so a category needing
  one must travel in an attribute; :func:`is_plain_text` tells a writer which values can
  be element text.

:func:`document` writes an ElementTree tree with these rules, so a writer builds its tree
with :mod:`xml.etree.ElementTree` as usual and never serialises it any other way.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from modelport.errors import UserError

#: what XML 1.0 cannot carry in any form (its ``Char`` production, inverted)
_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: tags and attribute names come from the writer, never from data: a plain XML name
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]*\Z")

_TEXT = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord("\r"): "&#13;",
         0x2028: "&#x2028;", **{c: f"&#x{c:X};" for c in range(0x7F, 0xA0)}}
_ATTRIBUTE = {**_TEXT, ord('"'): "&quot;", ord("'"): "&apos;", ord("\t"): "&#9;",
              ord("\n"): "&#10;"}


def check(value: str, what: str = "text",
          fix: str = "change it to characters XML can hold") -> str:
    """Return ``value`` if XML 1.0 can carry every character of it, else raise a
    :class:`~modelport.errors.UserError` that names ``what`` (e.g. ``column name``) and the
    value, says which character at which position, and ends with ``fix``."""
    value = str.__str__(value)
    bad = _ILLEGAL.search(value)
    if bad is None:
        return value
    shown = repr(value) if len(value) <= 60 else repr(value[:57]) + "..."
    char = bad.group()
    raise UserError(f"{what} {shown} holds U+{ord(char):04X} at position {bad.start()}, "
                    f"which XML cannot carry; {fix}")


def text(value: str, what: str = "text") -> str:
    """``value`` escaped for element content: checked by :func:`check`, then ``& < >``,
    carriage returns, C1 controls and U+2028 written as references (quotes need none
    there, and are left as they are, see :func:`is_plain_text`)."""
    return check(value, what).translate(_TEXT)


def is_plain_text(value: str) -> bool:
    """Whether :func:`text` writes ``value`` as it is, with no reference. pypmml, for one,
    reads only the first piece of an element's text, up to a reference: a writer keeps
    other values in attributes, which every reader takes whole."""
    value = check(value)
    return value.translate(_TEXT) == value


def attribute(value: str, what: str = "attribute value") -> str:
    """``value`` escaped for an attribute in either kind of quotes: as :func:`text`, both
    quotes, and tabs and newlines as references, which attribute normalisation leaves
    alone."""
    return check(value, what).translate(_ATTRIBUTE)


def document(root: ET.Element) -> str:
    """The XML document of an ElementTree tree, with an XML declaration, every attribute
    value and text through :func:`attribute` and :func:`text`. Comments, processing
    instructions and namespaced tags (``{uri}name``) are not written: a writer gives its
    namespace as an ``xmlns`` attribute."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    _element(root, parts)
    return "".join(parts)


def _element(node: ET.Element, parts: list[str]) -> None:
    tag = node.tag
    if not isinstance(tag, str) or not _NAME.match(tag):
        raise ValueError(f"not an XML element name: {tag!r}")
    parts.append(f"<{tag}")
    for key, value in node.attrib.items():
        if not _NAME.match(key):
            raise ValueError(f"not an XML attribute name: {key!r}")
        parts.append(f' {key}="{attribute(value, f"the {tag} {key}")}"')
    if not len(node) and not node.text:
        parts.append("/>")
    else:
        parts.append(">")
        if node.text:
            parts.append(text(node.text, f"the text of {tag}"))
        for child in node:
            _element(child, parts)
        parts.append(f"</{tag}>")
    if node.tail:
        parts.append(text(node.tail, f"the text after {tag}"))

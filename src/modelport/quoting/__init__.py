"""The one way untrusted text reaches anything modelport writes for another program to read.

Column names, category values, class labels, model and file names come from data and from
files users receive from others (an imported MOJO, PMML or ONNX file): any of them may hold
a quote, a comment closer, a newline, a NUL or a deliberate payload. Generators of code, SQL,
XML and DAGs call this layer for every piece of such text and never format it themselves,
so each target's lexical rules are written down once, next to each other:

- :mod:`modelport.quoting.code`: Python, JavaScript, C, Java and Go. A string literal of
  any text (:func:`~modelport.quoting.code.string_literal`, and one function per language
  such as :func:`~modelport.quoting.code.python_literal`, which the Airflow DAG writer uses
  too), comments that show untrusted text only in an escaped display form
  (:func:`~modelport.quoting.code.comment_text`), and identifiers mapped from names,
  unique per model and never a keyword (:class:`~modelport.quoting.code.Identifiers`).
- :mod:`modelport.quoting.sql`: identifiers, string literals and object names of the SQL dialects
  (PostgreSQL, MariaDB/MySQL, SQLite).
- :mod:`modelport.quoting.xml`: text and attribute values in PMML documents.

A target that cannot hold some text at all (a NUL in a C string, a Java constant over the
JVM's 65,535-byte limit) gets a :class:`~modelport.errors.UserError` naming the text and the
fix, never an artefact that means something else.
"""

"""What ``modelport trigger install`` put into a database, recorded in that database.

Every installation is one row of the ``modelport_triggers`` table in the scored database:
the scored table, its key, the model URI, the mode, the feature columns, the columns it
added and the statements that remove the objects it created. The worker reads its work
from there and ``uninstall`` removes exactly what is listed, so nothing outside the
database has to remember what was installed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

#: the bookkeeping table, created by the first install and dropped by the last uninstall
META_TABLE = "modelport_triggers"
MODES = ("worker", "sql")
EVENTS = ("insert", "update")
#: the columns each mode adds to the scored table, after the score column itself
SUFFIXES = {"worker": ("version", "scored_at", "status", "count"),
            "sql": ("version", "scored_at")}
#: score kind -> the type of the score column
SCORE_TYPES = {"probability": "float", "value": "float", "cluster": "int", "label": "text",
               "label_int": "int", "label_float": "float"}


@dataclass
class Installation:
    """One table scored by one model, in one mode."""

    table: str
    key: str
    output: str
    model: str
    mode: str
    columns: dict[str, str]  # model input name -> table column
    events: list[str] = field(default_factory=lambda: list(EVENTS))
    version: int | None = None  # the version installed (SQL mode) or first scored with
    score_kind: str = "probability"  # what the score column holds (see SCORE_TYPES)
    key_type: str = ""  # the key column's declared type
    added_columns: list[str] = field(default_factory=list)
    drops: list[str] = field(default_factory=list)  # statements removing created objects

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Installation:
        return cls(**json.loads(text))

    def out(self, suffix: str | None = None) -> str:
        """The name of the score column, or of one of the columns beside it."""
        return self.output if suffix is None else f"{self.output}_{suffix}"

    @property
    def queue(self) -> str:
        return object_name("modelport_queue", self.table)

    @property
    def channel(self) -> str:
        return object_name("modelport", self.table)

    def name(self, what: str) -> str:
        """The name of a created trigger or function, e.g. ``modelport_customers_ins``."""
        return object_name(f"modelport_{what}", self.table)


def object_name(prefix: str, table: str) -> str:
    """``prefix_table`` kept within PostgreSQL's and MySQL's 63-character limit."""
    name = f"{prefix}_{table}"
    if len(name) <= 60:
        return name
    digest = hashlib.sha1(table.encode()).hexdigest()[:8]
    return f"{name[:51]}_{digest}"

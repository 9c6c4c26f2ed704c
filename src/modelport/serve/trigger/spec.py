"""What ``modelport trigger install`` put into a database, recorded in that database.

Every installation is one row of the ``modelport_triggers`` table in the scored database,
as data: the scored table, its key and its type, the model URI, the mode, the events, the
feature columns, the score column and the columns install added, and the names of the
objects it made (queue, triggers, functions, NOTIFY channel). The worker reads its work
from there and ``uninstall`` and ``--upgrade`` rebuild the statements that remove those
objects from these fields. No SQL text is stored, so whoever can write that table cannot
make modelport run a statement; a row is checked field by field when it is read, and one
that modelport could not have written is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields

from modelport.errors import UserError
from modelport.quoting.sql import NAME_BYTES, derived_name, fit, is_derived_name

#: the bookkeeping table, created by the first install and dropped by the last uninstall
META_TABLE = "modelport_triggers"
MODES = ("worker", "sql", "native")
#: the modes in which the database scores each row itself, in a trigger calling the model's
#: function: written in SQL, or compiled to C (native, PostgreSQL)
IN_DATABASE = ("sql", "native")
EVENTS = ("insert", "update")
#: the columns each mode adds to the scored table, after the score column itself
SUFFIXES = {"worker": ("version", "scored_at", "status", "count"),
            "sql": ("version", "scored_at"), "native": ("version", "scored_at")}
#: score kind -> the type of the score column
SCORE_TYPES = {"probability": "float", "value": "float", "cluster": "int", "label": "text",
               "label_int": "int", "label_float": "float"}
#: the most reasons an installation writes (a model with more inputs writes at most this)
MAX_REASONS = 100
#: the objects each mode makes, by role, and the prefix of each one's name
ROLES = {
    "worker": {"queue": "modelport_queue", "channel": "modelport",
               "ins": "modelport_ins", "upd": "modelport_upd",
               "enqueue_ins": "modelport_enqueue_ins", "enqueue_upd": "modelport_enqueue_upd"},
    "sql": {"model_function": "modelport_model", "score": "modelport_score",
            "sql": "modelport_sql", "sql_ins": "modelport_sql_ins",
            "sql_upd": "modelport_sql_upd"},
}
ROLES["native"] = ROLES["sql"]  # the same objects; only the model function's body differs
#: a key column's declared type, as it is written into the queue table and casts: words,
#: an optional size, an optional array mark; no quotes, no punctuation beyond those
_KEY_TYPE = re.compile(r"([A-Za-z_][A-Za-z0-9_. ]*(\(\s*\d+\s*(,\s*\d+\s*)?\))?"
                       r"[A-Za-z0-9_ ]*(\[\])?)?\Z")


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
    objects: dict[str, str] = field(default_factory=dict)  # role -> name of what was made
    #: reasons written beside the score (SQL mode): ``<output>_reason_1..`` and
    #: ``<output>_contribution_1..``
    explain: int = 0

    def __post_init__(self) -> None:
        if not self.objects and self.mode in ROLES:
            self.objects = object_names(self.table, self.mode)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str, table: str | None = None) -> Installation:
        """The installation a ``modelport_triggers`` row describes, every field checked:
        a :class:`UserError` names the table and the field of a row modelport could not
        have written. A row written before object names were recorded gets the names
        that version gave (it recorded statements, which are never run)."""
        where = f"the {META_TABLE} row of table {table!r}"

        def bad(what: str) -> UserError:
            return UserError(f"{where} is not one modelport wrote ({what}), so nothing is done "
                             f"with it: delete that row of {META_TABLE}, then re-install")

        try:
            data = json.loads(text)
        except (TypeError, ValueError):
            raise bad("not JSON") from None
        if not isinstance(data, dict):
            raise bad("not a JSON object")
        legacy = "objects" not in data
        data.pop("drops", None)  # statements an earlier version stored: never run
        known = {f.name for f in fields(cls)}
        if set(data) - known:
            raise bad(f"unknown fields {sorted(set(data) - known)}")
        for name in ("table", "key", "output", "model", "mode", "score_kind"):
            if not _text(data.get(name)):
                raise bad(f"{name} is not text")
        if table is not None and data["table"] != table:
            raise bad("its table field names another table")
        mode = data["mode"]
        if mode not in MODES:
            raise bad(f"mode {mode!r}")
        if data["score_kind"] not in SCORE_TYPES:
            raise bad(f"score_kind {data['score_kind']!r}")
        columns = data.get("columns")
        if not (isinstance(columns, dict) and columns
                and all(_text(k) and _text(v) for k, v in columns.items())):
            raise bad("columns is not a map of names")
        events = data.get("events", list(EVENTS))
        if not (isinstance(events, list) and events and set(events) <= set(EVENTS)):
            raise bad("events")
        version = data.get("version")
        if version is not None and (type(version) is not int or version < 1):
            raise bad("version is not a version number")
        key_type = data.get("key_type", "")
        if not (isinstance(key_type, str) and _KEY_TYPE.match(key_type)):
            raise bad(f"key_type {key_type!r}")
        explain = data.get("explain", 0)
        if type(explain) is not int or not 0 <= explain <= MAX_REASONS:
            raise bad(f"explain {explain!r}")
        added = data.get("added_columns", [])
        allowed = score_columns(data["output"], explain)
        if not (isinstance(added, list) and all(_text(c) and c in allowed for c in added)):
            raise bad("added_columns holds a column install does not add")
        if legacy:
            data["objects"] = _legacy_names(data["table"], mode)
        else:
            objects = data["objects"]
            if not (isinstance(objects, dict) and set(objects) == set(ROLES[mode])
                    and all(is_derived_name(v) for v in objects.values())):
                raise bad("objects are not the names install gives")
        return cls(**data)

    def out(self, suffix: str | None = None) -> str:
        """The name of the score column, or of one of the columns beside it
        (``<output>_<suffix>``, hashed to fit 63 bytes)."""
        return self.output if suffix is None else fit(self.output, f"_{suffix}")

    def reason_columns(self) -> list[tuple[str, str]]:
        """``(column, kind)`` of each reason column: ``<output>_reason_j`` (the input column)
        and ``<output>_contribution_j`` for ``j`` up to :attr:`explain`."""
        out = []
        for j in range(1, self.explain + 1):
            out += [(self.out(f"reason_{j}"), "text"), (self.out(f"contribution_{j}"), "float")]
        return out

    @property
    def queue(self) -> str:
        return self.objects["queue"]

    @property
    def channel(self) -> str:
        return self.objects["channel"]

    @property
    def model_base(self) -> str:
        """The name the scoring function of SQL mode is written for: it is called
        ``<model_base>_score`` (see :func:`modelport.compile.sql.function_name`)."""
        return derived_name(ROLES["sql"]["model_function"], self.table)

    def name(self, role: str) -> str:
        """The name of a created trigger or function, e.g. ``modelport_ins_customers``."""
        return self.objects[role]


def object_names(table: str, mode: str) -> dict[str, str]:
    """The name of every object ``mode`` makes for ``table``, by role: fitting every
    database's limit and needing no quotes (see :func:`~modelport.quoting.sql.derived_name`)."""
    from modelport.compile.sql import function_name

    names = {role: derived_name(prefix, table) for role, prefix in ROLES[mode].items()}
    if mode in IN_DATABASE:
        names["model_function"] = function_name(names["model_function"])
    return names


def score_columns(output: str, explain: int = 0) -> set[str]:
    """Every column install may add beside the score column ``output``, in either mode,
    with ``explain`` reasons."""
    suffixes = [*SUFFIXES["worker"], *(f"{what}_{j}" for j in range(1, explain + 1)
                                       for what in ("reason", "contribution"))]
    return {output} | {fit(output, f"_{s}") for s in suffixes} | {
        f"{output}_{s}" for s in SUFFIXES["worker"]}


def _text(value: object) -> bool:
    return isinstance(value, str) and value != "" and "\x00" not in value


def check_key_type(key_type: str, table: str, key: str) -> str:
    """``key_type`` (from the database's catalogue) if it can be written into the queue
    table's definition, else a :class:`UserError` naming the key column."""
    if not _KEY_TYPE.match(key_type or ""):
        raise UserError(f"the key column {key!r} of {table!r} has the type {key_type!r}, "
                        "which modelport cannot copy into its queue table: use a key column "
                        "of a plain type (an integer, text, a uuid)")
    return key_type or ""


def _legacy_names(table: str, mode: str) -> dict[str, str]:
    """The object names versions that recorded statements gave: ``prefix_table``, cut
    with a SHA-1 suffix beyond 60 characters."""

    def old(prefix: str) -> str:
        name = f"{prefix}_{table}"
        if len(name) > 60:
            name = f"{name[:51]}_{hashlib.sha1(table.encode()).hexdigest()[:8]}"  # noqa: S324
        # PostgreSQL kept the first 63 bytes of a longer name
        return name.encode("utf-8")[:NAME_BYTES].decode("utf-8", "ignore")

    names = {role: old(prefix) for role, prefix in ROLES[mode].items()}
    if mode == "sql":
        names["model_function"] = f"{names['model_function']}_score"
    return names

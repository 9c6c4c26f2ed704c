"""The model registry: models, immutable numbered versions, movable aliases with history.

Metadata lives in a SQL database (SQLite by default, PostgreSQL) and artefacts in a
content-addressed store (a local folder by default, S3). A version becomes visible in one
transaction, after all its artefacts are stored, so a crash never leaves half a version.

Every read re-hashes a blob against the sha256 the database records, so a changed file is
refused; but whoever can write the database could record the hash of a file of their own.
With ``MODELPORT_SIGNING_KEY`` set, each artefact's row also holds an HMAC-SHA256 of what
it is -- model, version, format and sha256 (:func:`artefact_signature`) -- and every read
checks it before the blob is fetched: a row whose hash was changed, or whose signature was
copied from another row, or removed, is refused (:class:`SignatureRefused`) unless
``MODELPORT_ALLOW_UNSIGNED=1`` lets versions without a signature load. See
``docs/security.md``.

All SQL on the registry's tables is in this package; other packages go through
:class:`Registry`. Its modules:

- this one: :class:`Registry`, :class:`Version`, :class:`Artefact`, :class:`NewVersion`
  and artefact signing;
- :mod:`~modelport.registry.schema`: the tables, opening the database, and the write
  transaction that allocates version numbers and moves aliases;
- :mod:`~modelport.registry.store`: the content-addressed artefact stores (a local folder,
  S3), which verify each blob's sha256 on read;
- :mod:`~modelport.registry.aliases`: replaying an alias's history to find where a
  rollback goes;
- :mod:`~modelport.registry.schedules`: schedules and their runs, the SQL behind the
  scheduler (:class:`~modelport.registry.schedules.ScheduleRecords`, a base of
  :class:`Registry`).
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, overload

from sqlalchemy import delete, func, insert, select, update

from modelport.config import Settings
from modelport.errors import ArtefactTampered, NotFound, UserError
from modelport.registry import schema as S
from modelport.registry.aliases import rollback_target
from modelport.registry.schedules import ScheduleRecords
from modelport.registry.store import open_store
from modelport.uri import ModelURI, check_alias, check_name

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Connection, RowMapping


def _now() -> datetime:
    return datetime.now(UTC)


@overload
def _iso(value: datetime) -> str: ...
@overload
def _iso(value: None) -> None: ...
def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite returns naive datetimes; they were stored in UTC
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


log = logging.getLogger(__name__)

#: the secret artefact signatures are made with; unset, nothing is signed or checked
SIGNING_KEY_ENV = "MODELPORT_SIGNING_KEY"
#: ``1`` lets artefacts without a signature load while a key is set (a registry signed
#: from some day on); a signature that is present and wrong is refused all the same
ALLOW_UNSIGNED_ENV = "MODELPORT_ALLOW_UNSIGNED"
_MIN_KEY_CHARS = 32
_GENERATE = "python -c 'import secrets; print(secrets.token_hex(32))'"


class SignatureRefused(ArtefactTampered):
    """An artefact's signature is missing or does not match what its row says it is."""


def signing_key() -> bytes | None:
    """The key in ``MODELPORT_SIGNING_KEY`` (None when unset); a key too short to be secret
    is a :class:`~modelport.errors.UserError`."""
    text = os.environ.get(SIGNING_KEY_ENV, "")
    if not text:
        return None
    if len(text) < _MIN_KEY_CHARS:
        raise UserError(f"{SIGNING_KEY_ENV} holds {len(text)} characters; use a random "
                        f"secret of at least {_MIN_KEY_CHARS}, e.g. the output of {_GENERATE}")
    return text.encode("utf-8")


def artefact_signature(key: bytes, name: str, version: int, fmt: str, sha256: str) -> str:
    """The signature of the blob ``sha256`` as format ``fmt`` of version ``name/version``:
    HMAC-SHA256 under ``key`` of the four as one JSON array, so a signature is valid for
    that row alone. Version 0, which no version has, signs a blob of the model that is not
    a version's format (:meth:`Registry.put_signed`)."""
    message = json.dumps(["modelport-artefact", 1, name, int(version), fmt, sha256],
                         separators=(",", ":")).encode("utf-8")
    return "hmac-sha256:" + hmac.new(key, message, hashlib.sha256).hexdigest()


def current_user() -> str:
    try:
        return os.environ.get("MODELPORT_USER") or getpass.getuser()
    except Exception:
        return "unknown"


@dataclass
class Artefact:
    format: str
    status: str
    sha256: str | None = None
    size: int | None = None
    parity: dict | None = None
    reason: str | None = None
    signature: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format, "status": self.status, "sha256": self.sha256,
            "size": self.size, "parity": self.parity, "reason": self.reason,
            "signed": self.signature is not None,
        }


@dataclass
class Version:
    """One registered version of a model, as recorded."""

    name: str
    version: int
    created_at: str
    created_by: str | None
    task: str
    native_format: str | None
    signature: dict
    metrics: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    data_fingerprint: str | None = None
    library_versions: dict = field(default_factory=dict)
    parent_version: int | None = None
    sample_sha256: str | None = None
    description: str | None = None
    lineage: dict = field(default_factory=dict)
    artefacts: list[Artefact] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"{self.name}/{self.version}"

    def accepted_formats(self) -> list[str]:
        return [a.format for a in self.artefacts if a.status == "accepted"]

    def artefact(self, fmt: str) -> Artefact | None:
        return next((a for a in self.artefacts if a.format == fmt), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "uri": self.uri,
            "created_at": self.created_at, "created_by": self.created_by, "task": self.task,
            "native_format": self.native_format, "aliases": self.aliases,
            "signature": self.signature, "metrics": self.metrics, "params": self.params,
            "tags": self.tags, "data_fingerprint": self.data_fingerprint,
            "library_versions": self.library_versions, "parent_version": self.parent_version,
            "sample_sha256": self.sample_sha256, "description": self.description,
            "lineage": self.lineage,
            "formats": {a.format: a.to_dict() for a in self.artefacts},
        }

    def __int__(self) -> int:
        return self.version

    def __repr__(self) -> str:
        return f"<Version {self.uri} task={self.task} formats={self.accepted_formats()}>"


@dataclass
class NewVersion:
    """Everything a version records, prepared before the registering transaction."""

    task: str
    signature: dict
    native_format: str | None
    artefacts: list[Artefact]
    blobs: dict[str, bytes]  # format -> bytes, for accepted and rejected conversions alike
    sample: bytes | None = None
    metrics: dict | None = None
    params: dict | None = None
    tags: dict | None = None
    data_fingerprint: str | None = None
    library_versions: dict | None = None
    parent_version: int | None = None
    description: str | None = None
    lineage: dict | None = None


class Registry(ScheduleRecords):
    """Models, versions and aliases. ``Registry()`` opens the one configured by environment.

    All the SQL on the registry's tables is here: schedules and their runs come from
    :class:`~modelport.registry.schedules.ScheduleRecords`; the monitoring reference of a
    version is :meth:`reference` / :meth:`set_reference`.
    """

    def __init__(self, url: str | None = None, artefacts: str | None = None) -> None:
        settings = Settings.from_env()
        self.url = url or settings.registry_url
        self.signing_key = signing_key()
        self.store = open_store(artefacts or settings.artefacts)
        self.engine = S.open_engine(self.url)

    def __repr__(self) -> str:
        return f"Registry({self.engine.url.render_as_string()!r}, {self.store!r})"

    # -- reading ------------------------------------------------------------------------

    def list_models(self) -> list[dict[str, Any]]:
        """Every model with its latest version, version count and aliases."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(S.models).order_by(S.models.c.name)).mappings().all()
            stats = {
                r.model: (r.n, r.latest)
                for r in conn.execute(
                    select(S.versions.c.model, func.count().label("n"),
                           func.max(S.versions.c.version).label("latest"))
                    .group_by(S.versions.c.model)
                )
            }
            alias_rows = conn.execute(select(S.aliases)).mappings().all()
        out = []
        for r in rows:
            n, latest = stats.get(r["name"], (0, None))
            out.append({
                "name": r["name"], "description": r["description"],
                "created_at": _iso(r["created_at"]), "versions": n, "latest_version": latest,
                "aliases": {a["alias"]: a["version"] for a in alias_rows if a["model"] == r["name"]},
            })
        return out

    def search(self, name: str | None = None, tags: dict[str, str] | None = None,
               task: str | None = None) -> list[Version]:
        """Versions whose model name contains ``name`` (in any case) and that carry all of
        ``tags``."""
        q = select(S.versions).order_by(S.versions.c.model, S.versions.c.version)
        if name:
            # autoescape: '_' and '%' are characters of a model name, not LIKE wildcards
            q = q.where(func.lower(S.versions.c.model).contains(name.lower(), autoescape=True))
        if task:
            q = q.where(S.versions.c.task == task)
        with self.engine.connect() as conn:
            found = [self._version(conn, r) for r in conn.execute(q).mappings()]
        if tags:
            found = [v for v in found
                     if all(k in v.tags and str(v.tags[k]) == str(val) for k, val in tags.items())]
        return found

    def versions(self, name: str) -> list[Version]:
        """All versions of model ``name``, oldest first."""
        self._require_model(name)
        q = select(S.versions).where(S.versions.c.model == name).order_by(S.versions.c.version)
        with self.engine.connect() as conn:
            return [self._version(conn, r) for r in conn.execute(q).mappings()]

    def get(self, uri: str | ModelURI) -> Version:
        """The version a model URI (``churn``, ``churn/3``, ``churn@production``) names."""
        u = uri if isinstance(uri, ModelURI) else ModelURI.parse(str(uri))
        with self.engine.connect() as conn:
            if u.alias is not None:
                version = conn.execute(
                    select(S.aliases.c.version).where(
                        S.aliases.c.model == u.name, S.aliases.c.alias == u.alias)
                ).scalar()
                if version is None:
                    self._require_model(u.name, conn)
                    known = self.aliases(u.name)
                    hint = f" (known: {', '.join(sorted(known))})" if known else ""
                    raise NotFound(
                        f"model {u.name!r} has no alias {u.alias!r}{hint}; set one with "
                        f"'modelport models alias {u.name} VERSION {u.alias}'"
                    )
            elif u.version is not None:
                version = u.version
            else:
                version = conn.execute(
                    select(func.max(S.versions.c.version)).where(S.versions.c.model == u.name)
                ).scalar()
                if version is None:
                    self._require_model(u.name, conn)
                    raise NotFound(f"model {u.name!r} has no versions yet")
            row = conn.execute(
                select(S.versions).where(
                    S.versions.c.model == u.name, S.versions.c.version == version)
            ).mappings().first()
            if row is None:
                self._require_model(u.name, conn)
                raise NotFound(
                    f"model {u.name!r} has no version {version}; "
                    f"list them with 'modelport models show {u.name}'"
                )
            return self._version(conn, row)

    def resolve(self, uri: str | ModelURI) -> int:
        """The version number a model URI names now, in one small query (no artefacts or
        signature read): what a surface following an alias asks every few seconds."""
        u = uri if isinstance(uri, ModelURI) else ModelURI.parse(str(uri))
        if u.version is not None:
            return u.version
        with self.engine.connect() as conn:
            if u.alias is not None:
                found = conn.execute(select(S.aliases.c.version).where(
                    S.aliases.c.model == u.name, S.aliases.c.alias == u.alias)).scalar()
            else:
                found = conn.execute(select(func.max(S.versions.c.version))
                                     .where(S.versions.c.model == u.name)).scalar()
        if found is None:
            return self.get(u).version  # raises NotFound naming what is missing
        return int(found)

    def lineages(self, name: str) -> list[tuple[int, dict]]:
        """Every version number of model ``name`` with its lineage, newest first, in one
        query (no artefacts or aliases read); empty for a model with no versions."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(S.versions.c.version, S.versions.c.lineage)
                                .where(S.versions.c.model == name)
                                .order_by(S.versions.c.version.desc())).all()
        return [(number, lineage or {}) for number, lineage in rows]

    def reference(self, name: str, version: int) -> dict | None:
        """The monitoring reference statistics stored for version ``name/version``
        (:mod:`modelport.monitor.reference`), or None."""
        t = S.references
        with self.engine.connect() as conn:
            return conn.execute(select(t.c.statistics).where(
                t.c.model == name, t.c.version == version)).scalar()

    def aliases(self, name: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(S.aliases).where(S.aliases.c.model == name)).mappings()
            return {r["alias"]: r["version"] for r in rows}

    def alias_history(self, name: str, alias: str | None = None) -> list[dict[str, Any]]:
        """Every alias move of model ``name`` (or of one alias): from, to, when, by, why."""
        q = select(S.alias_events).where(S.alias_events.c.model == name)
        if alias:
            q = q.where(S.alias_events.c.alias == alias)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(S.alias_events.c.id)).mappings().all()
        return [{
            "alias": r["alias"], "action": r["action"], "from_version": r["from_version"],
            "to_version": r["to_version"], "at": _iso(r["at"]), "by": r["by"],
            "reason": r["reason"],
        } for r in rows]

    def events(self, name: str, kind: str | None = None) -> list[dict[str, Any]]:
        q = select(S.events).where(S.events.c.model == name)
        if kind:
            q = q.where(S.events.c.kind == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(S.events.c.id)).mappings().all()
        return [{"kind": r["kind"], "at": _iso(r["at"]), **(r["data"] or {})} for r in rows]

    def read_artefact(self, version: Version, fmt: str) -> bytes:
        """The verified bytes of one format of a version: its signature checked first (with
        ``MODELPORT_SIGNING_KEY`` set), then the bytes against the recorded sha256."""
        art = version.artefact(fmt)
        if art is None or art.sha256 is None:
            raise NotFound(
                f"{version.uri} has no {fmt} artefact; it has: "
                f"{', '.join(version.accepted_formats()) or 'none'}"
            )
        self._check_signature(version.name, version.version, fmt, art.sha256, art.signature)
        return self.store.get(art.sha256)

    def put_signed(self, data: bytes, name: str, purpose: str) -> tuple[str, str | None]:
        """Store a blob that is not one of a version's formats (an online learner's state),
        returning its sha256 and its signature as ``purpose`` of model ``name`` (None
        without a key), for the caller to record beside the hash."""
        sha = self.store.put(data)
        key = self.signing_key
        return sha, artefact_signature(key, name, 0, purpose, sha) if key else None

    def get_signed(self, sha256: str, signature: str | None, name: str, purpose: str) -> bytes:
        """The bytes :meth:`put_signed` stored, checked as :meth:`read_artefact` checks an
        artefact's."""
        self._check_signature(name, 0, purpose, sha256, signature)
        return self.store.get(sha256)

    def sign_unsigned(self, name: str | None = None) -> int:
        """Sign every stored artefact (of model ``name``, or of all) that has no signature,
        after re-hashing its blob; returns how many were signed. What this signs is trusted
        as it stands: run it once, when a key is first set, on a registry you trust."""
        key = self.signing_key
        if key is None:
            raise UserError(f"set {SIGNING_KEY_ENV} to the key to sign with (e.g. the output "
                            f"of {_GENERATE})")
        q = select(S.artefacts).where(S.artefacts.c.signature.is_(None),
                                      S.artefacts.c.sha256.is_not(None))
        if name is not None:
            q = q.where(S.artefacts.c.model == name)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        for r in rows:
            self.store.get(r["sha256"])  # a blob changed since registration stops it here
        with S.write_txn(self.engine) as conn:
            for r in rows:
                conn.execute(update(S.artefacts).where(
                    S.artefacts.c.model == r["model"], S.artefacts.c.version == r["version"],
                    S.artefacts.c.format == r["format"], S.artefacts.c.sha256 == r["sha256"],
                    S.artefacts.c.signature.is_(None),
                ).values(signature=artefact_signature(key, r["model"], r["version"],
                                                      r["format"], r["sha256"])))
        return len(rows)

    def _check_signature(self, name: str, version: int, fmt: str, sha: str,
                         signature: str | None) -> None:
        key = self.signing_key
        if key is None:
            return
        what = (f"the {fmt} artefact of {name}/{version}" if version
                else f"the {fmt} of {name}")
        what += f" (sha256 {sha[:12]}...)"
        if signature is None:
            if os.environ.get(ALLOW_UNSIGNED_ENV) == "1":
                log.warning("loading %s without a signature (%s=1)", what, ALLOW_UNSIGNED_ENV)
                return
            redo = ("register the model again with the key set, sign the versions you trust "
                    "with Registry().sign_unsigned()" if version
                    else "start afresh (modelport learn --fresh)")
            raise SignatureRefused(
                f"{what} has no signature and {SIGNING_KEY_ENV} is set: it was stored "
                "without the key, or its signature was removed from the registry database; "
                f"refusing to load it. To fix it, {redo}, or set {ALLOW_UNSIGNED_ENV}=1 to "
                "load unsigned versions")
        expected = artefact_signature(key, name, version, fmt, sha)
        if not hmac.compare_digest(signature.encode("utf-8"), expected.encode("utf-8")):
            raise SignatureRefused(
                f"{what} does not carry a valid signature under {SIGNING_KEY_ENV}: the "
                "registry database was changed after it was registered, or it was signed "
                "with another key; refusing to load it. Register the model again from a "
                f"trusted copy, or set {SIGNING_KEY_ENV} to the key it was registered with")

    def sample(self, uri: str | ModelURI | Version) -> pd.DataFrame:
        """The sample of training rows stored with a version, as a DataFrame."""
        import io

        import pandas as pd

        v = uri if isinstance(uri, Version) else self.get(uri)
        if not v.sample_sha256:
            raise NotFound(f"{v.uri} was registered without a sample")
        return pd.read_parquet(io.BytesIO(self.store.get(v.sample_sha256)))

    def load(self, uri: str | ModelURI | Version, format: str | None = None) -> Any:
        """A Predictor for a version: ``format``, or the native format when there is one.

        Which artefact a surface serves is the scoring core's choice
        (:mod:`modelport.scoring.choice`); :func:`modelport.load` with ``format="fastest"``
        applies it.
        """
        # a Predictor of the format's own class, typed Any: callers read that class's
        # attributes (a native predictor's ``model``)
        from modelport import formats
        from modelport.signature import Signature

        v = uri if isinstance(uri, Version) else self.get(uri)
        fmt = format or self.default_format(v)
        art = v.artefact(fmt)
        if art is None:
            raise NotFound(
                f"{v.uri} has no {fmt} artefact; it has: {', '.join(v.accepted_formats())}"
            )
        if art.status != "accepted":
            raise UserError(
                f"the {fmt} conversion of {v.uri} was rejected at registration "
                f"({art.reason}); load another format: {', '.join(v.accepted_formats())}"
            )
        predictor = formats.get(fmt).load(self.read_artefact(v, fmt), Signature.from_dict(v.signature))
        predictor.model_name = v.name
        predictor.model_version = v.version
        if v.sample_sha256:
            # what Predictor.explain measures a linear model from, read only if asked
            predictor.background = functools.partial(self.sample, v)
        return predictor

    def default_format(self, v: Version) -> str:
        from modelport.formats import DEFAULT_FORMATS

        accepted = v.accepted_formats()
        for fmt in ((v.native_format,) if v.native_format else ()) + DEFAULT_FORMATS:
            if fmt in accepted:
                return fmt
        if accepted:
            return accepted[0]
        raise UserError(f"{v.uri} has no accepted artefact to load")

    # -- writing ------------------------------------------------------------------------

    def create_version(self, name: str, new: NewVersion) -> Version:
        """Store the artefacts, then record the version in one transaction."""
        check_name(name)
        shas = {fmt: self.store.put(data) for fmt, data in new.blobs.items()}
        sample_sha = self.store.put(new.sample) if new.sample is not None else None
        _fault("register:stored")
        now = _now()
        with S.write_txn(self.engine) as conn:
            self._ensure_model(conn, name, now)
            conn.execute(update(S.models).where(S.models.c.name == name)
                         .values(last_version=S.models.c.last_version + 1))
            number = conn.execute(
                select(S.models.c.last_version).where(S.models.c.name == name)).scalar_one()
            if new.parent_version is not None:
                exists = conn.execute(select(S.versions.c.id).where(
                    S.versions.c.model == name, S.versions.c.version == new.parent_version)
                ).first()
                if exists is None:
                    raise NotFound(f"parent version {name}/{new.parent_version} does not exist")
            conn.execute(insert(S.versions).values(
                model=name, version=number, created_at=now, created_by=current_user(),
                task=new.task, native_format=new.native_format, signature=new.signature,
                metrics=new.metrics or {}, params=new.params or {}, tags=new.tags or {},
                data_fingerprint=new.data_fingerprint, library_versions=new.library_versions or {},
                parent_version=new.parent_version, sample_sha256=sample_sha,
                description=new.description, lineage=new.lineage or {},
            ))
            key = self.signing_key
            for art in new.artefacts:
                sha = shas.get(art.format)
                conn.execute(insert(S.artefacts).values(
                    model=name, version=number, format=art.format, sha256=sha,
                    size=len(new.blobs[art.format]) if art.format in new.blobs else None,
                    status=art.status, parity=art.parity, reason=art.reason,
                    signature=(artefact_signature(key, name, number, art.format, sha)
                               if key and sha else None),
                ))
            _fault("register:before-commit")
        return self.get(ModelURI(name, number))

    def set_alias(self, name: str, version: int | str, alias: str, *,
                  reason: str | None = None, by: str | None = None) -> Version:
        """Point ``name@alias`` at ``version``, recording the move in the alias history."""
        check_alias(alias)
        target = self.get(ModelURI(name, _version_number(version)))
        with S.write_txn(self.engine) as conn:
            self._lock_model(conn, name)
            alive = conn.execute(select(S.versions.c.id).where(
                S.versions.c.model == name, S.versions.c.version == target.version)).first()
            if alive is None:  # deleted since it was looked up
                raise NotFound(f"model {name!r} has no version {target.version}")
            self._move_alias(conn, name, alias, target.version, "set", reason, by)
        return self.get(ModelURI(name, alias=alias))

    def rollback(self, name: str, alias: str, *, reason: str | None = None,
                 by: str | None = None) -> Version:
        """Move ``name@alias`` back to the version it pointed to before the current one."""
        check_alias(alias)
        with S.write_txn(self.engine) as conn:
            self._lock_model(conn, name)
            history = conn.execute(
                select(S.alias_events).where(S.alias_events.c.model == name,
                                             S.alias_events.c.alias == alias)
                .order_by(S.alias_events.c.id)).mappings().all()
            if not history:
                raise NotFound(f"model {name!r} has no alias {alias!r} to roll back")
            target = rollback_target(history)
            if target is None:
                raise UserError(
                    f"{name}@{alias} has no earlier version to roll back to; "
                    f"see 'modelport models show {name}' for its history"
                )
            alive = conn.execute(select(S.versions.c.id).where(
                S.versions.c.model == name, S.versions.c.version == target)).first()
            if alive is None:
                raise UserError(
                    f"{name}@{alias} would roll back to version {target}, which was deleted; "
                    f"set the alias explicitly with 'modelport models alias'"
                )
            self._move_alias(conn, name, alias, target, "rollback", reason, by)
        return self.get(ModelURI(name, alias=alias))

    def delete_alias(self, name: str, alias: str, *, reason: str | None = None,
                     by: str | None = None) -> None:
        with S.write_txn(self.engine) as conn:
            self._lock_model(conn, name)
            current = conn.execute(select(S.aliases.c.version).where(
                S.aliases.c.model == name, S.aliases.c.alias == alias)).scalar()
            if current is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            conn.execute(delete(S.aliases).where(
                S.aliases.c.model == name, S.aliases.c.alias == alias))
            conn.execute(insert(S.alias_events).values(
                model=name, alias=alias, action="delete", from_version=current,
                to_version=None, at=_now(), by=by or current_user(), reason=reason))

    def delete(self, name: str, version: int | None = None, *, force: bool = False) -> list[int]:
        """Delete one version (or the whole model); refuses versions an alias points to
        unless ``force``. Returns the deleted version numbers."""
        with S.write_txn(self.engine) as conn:
            self._lock_model(conn, name)
            q = select(S.versions.c.version).where(S.versions.c.model == name)
            if version is not None:
                q = q.where(S.versions.c.version == version)
            doomed = [r[0] for r in conn.execute(q)]
            if version is not None and not doomed:
                raise NotFound(f"model {name!r} has no version {version}")
            pinned = conn.execute(select(S.aliases).where(
                S.aliases.c.model == name, S.aliases.c.version.in_(doomed))).mappings().all()
            if pinned and not force:
                names = ", ".join(f"{name}@{a['alias']} -> {a['version']}" for a in pinned)
                raise UserError(
                    f"refusing to delete: aliases point to it ({names}); move them first "
                    "or pass --force"
                )
            for a in pinned:
                conn.execute(delete(S.aliases).where(
                    S.aliases.c.model == name, S.aliases.c.alias == a["alias"]))
                conn.execute(insert(S.alias_events).values(
                    model=name, alias=a["alias"], action="delete", from_version=a["version"],
                    to_version=None, at=_now(), by=current_user(), reason="version deleted"))
            conn.execute(delete(S.artefacts).where(
                S.artefacts.c.model == name, S.artefacts.c.version.in_(doomed)))
            conn.execute(delete(S.versions).where(
                S.versions.c.model == name, S.versions.c.version.in_(doomed)))
            if version is None:
                conn.execute(delete(S.models).where(S.models.c.name == name))
                conn.execute(delete(S.alias_events).where(S.alias_events.c.model == name))
                conn.execute(delete(S.events).where(S.events.c.model == name))
        return doomed

    def set_reference(self, name: str, version: int, statistics: dict[str, Any]) -> None:
        """Store ``statistics`` as the monitoring reference of version ``name/version``,
        replacing the one stored before (see :meth:`reference`)."""
        t = S.references
        with S.write_txn(self.engine) as conn:
            conn.execute(delete(t).where(t.c.model == name, t.c.version == version))
            conn.execute(insert(t).values(model=name, version=version, statistics=statistics,
                                          created_at=_now()))

    def record_event(self, name: str, kind: str, data: dict[str, Any]) -> None:
        with S.write_txn(self.engine) as conn:
            conn.execute(insert(S.events).values(model=name, kind=kind, at=_now(), data=data))

    # -- internals ----------------------------------------------------------------------

    def _require_model(self, name: str, conn: Connection | None = None) -> None:
        if conn is None:
            with self.engine.connect() as c:
                return self._require_model(name, c)
        found = conn.execute(select(S.models.c.name).where(S.models.c.name == name)).first()
        if found is None:
            names = [r[0] for r in conn.execute(select(S.models.c.name))]
            hint = f" (known: {', '.join(names[:10])})" if names else " (the registry is empty)"
            raise NotFound(f"no model named {name!r}{hint}")

    def _lock_model(self, conn: Connection, name: str) -> None:
        # SQLite's BEGIN IMMEDIATE already serialises writers; on PostgreSQL the model's row
        # lock makes alias moves and deletions of one model wait for each other, so two
        # moves never both read the same "current" version.
        self._require_model(name, conn)
        conn.execute(select(S.models.c.name).where(S.models.c.name == name).with_for_update())

    def _ensure_model(self, conn: Connection, name: str, now: datetime) -> None:
        values = {"name": name, "last_version": 0, "created_at": now}
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            # two first registrations of one model must not both try to create it
            conn.execute(pg_insert(S.models).values(**values).on_conflict_do_nothing())
            return
        found = conn.execute(select(S.models.c.name).where(S.models.c.name == name)).first()
        if found is None:
            conn.execute(insert(S.models).values(**values))

    def _move_alias(self, conn: Connection, name: str, alias: str, version: int, action: str,
                    reason: str | None, by: str | None) -> None:
        current = conn.execute(select(S.aliases.c.version).where(
            S.aliases.c.model == name, S.aliases.c.alias == alias)).scalar()
        now = _now()
        if current is None:
            conn.execute(insert(S.aliases).values(
                model=name, alias=alias, version=version, updated_at=now))
        else:
            conn.execute(update(S.aliases).where(
                S.aliases.c.model == name, S.aliases.c.alias == alias
            ).values(version=version, updated_at=now))
        conn.execute(insert(S.alias_events).values(
            model=name, alias=alias, action=action, from_version=current, to_version=version,
            at=now, by=by or current_user(), reason=reason))

    def _version(self, conn: Connection, row: RowMapping) -> Version:
        arts = conn.execute(select(S.artefacts).where(
            S.artefacts.c.model == row["model"], S.artefacts.c.version == row["version"]
        ).order_by(S.artefacts.c.format)).mappings().all()
        names = conn.execute(select(S.aliases.c.alias).where(
            S.aliases.c.model == row["model"], S.aliases.c.version == row["version"]
        ).order_by(S.aliases.c.alias)).scalars().all()
        return Version(
            name=row["model"], version=row["version"], created_at=_iso(row["created_at"]),
            created_by=row["created_by"], task=row["task"], native_format=row["native_format"],
            signature=row["signature"], metrics=row["metrics"] or {}, params=row["params"] or {},
            tags=row["tags"] or {}, data_fingerprint=row["data_fingerprint"],
            library_versions=row["library_versions"] or {},
            parent_version=row["parent_version"], sample_sha256=row["sample_sha256"],
            description=row["description"], lineage=row["lineage"] or {},
            artefacts=[Artefact(format=a["format"], status=a["status"], sha256=a["sha256"],
                                size=a["size"], parity=a["parity"], reason=a["reason"],
                                signature=a["signature"])
                       for a in arts],
            aliases=list(names),
        )


def _version_number(version: int | str) -> int:
    """A version number given as an int or a string of digits, else a :class:`UserError`."""
    text = str(version).strip()
    if isinstance(version, bool) or not text.isdigit() or int(text) < 1:
        raise UserError(f"bad version {version!r}: a version is a positive number (e.g. 3)")
    return int(text)


def _fault(point: str) -> None:
    """Crash-test hook: ``MODELPORT_FAULT=<point>`` stops the process here until it is killed."""
    if os.environ.get("MODELPORT_FAULT") == point:
        import sys
        import time

        print(f"modelport: fault point {point} reached", file=sys.stderr, flush=True)
        while True:
            time.sleep(1)

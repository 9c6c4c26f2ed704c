"""Where modelport keeps its state, read from the environment.

``MODELPORT_HOME`` (default ``./.modelport``) holds the default SQLite registry and the
local artefact store; ``MODELPORT_REGISTRY`` is a SQLAlchemy URL for the metadata and
``MODELPORT_ARTIFACTS`` a folder or ``s3://bucket/prefix`` for the artefacts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    registry_url: str
    artefacts: str

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("MODELPORT_HOME") or ".modelport").expanduser().absolute()
        registry = env.get("MODELPORT_REGISTRY") or f"sqlite:///{home / 'registry.db'}"
        artefacts = env.get("MODELPORT_ARTIFACTS") or str(home / "artefacts")
        return cls(home=home, registry_url=registry, artefacts=artefacts)

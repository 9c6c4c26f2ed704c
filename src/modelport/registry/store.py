"""Content-addressed artefact stores: a blob's name is the sha256 of its bytes.

Writes are atomic (a temporary file renamed into place, or a single S3 PUT), so a crash
never leaves a partly written blob under a real name; reads verify the hash, so a blob that
was changed after it was written is refused.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelport.errors import ArtefactTampered, NotFound, UserError


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _verify(data: bytes, expected: str, where: str) -> bytes:
    actual = sha256(data)
    if actual != expected:
        raise ArtefactTampered(
            f"artefact {where} does not match its recorded sha256 (expected {expected[:12]}..., "
            f"found {actual[:12]}...): it was changed after registration; refusing to load it. "
            "Register the model again from a trusted copy"
        )
    return data


class LocalStore:
    """Blobs in a local folder, as ``ab/abcdef...``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        digest = sha256(data)
        target = self.path(digest)
        # a blob already there is kept only if intact: storing the same bytes again is how
        # a changed artefact is repaired
        if target.exists() and sha256(target.read_bytes()) == digest:
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, digest: str) -> bytes:
        target = self.path(digest)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise NotFound(
                f"artefact {digest[:12]}... is missing from {self.root}: the artefact store "
                "does not match the registry (check MODELPORT_ARTIFACTS)"
            ) from None
        return _verify(data, digest, str(target))

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)


class S3Store:
    """Blobs in S3-compatible storage under ``s3://bucket/prefix``.

    The endpoint comes from ``MODELPORT_S3_ENDPOINT_URL`` (or boto3's own
    ``AWS_ENDPOINT_URL``), credentials from the usual AWS variables.
    """

    def __init__(self, url: str) -> None:
        from modelport.errors import require

        boto3 = require("boto3", "s3", "S3 artefact storage")
        rest = url[len("s3://"):]
        self.bucket, _, prefix = rest.partition("/")
        self.prefix = prefix.strip("/")
        endpoint = os.environ.get("MODELPORT_S3_ENDPOINT_URL") or None
        self.client = boto3.client("s3", endpoint_url=endpoint)

    def __repr__(self) -> str:
        return f"S3Store('s3://{self.bucket}/{self.prefix}')"

    def key(self, digest: str) -> str:
        return "/".join(p for p in (self.prefix, digest[:2], digest) if p)

    def put(self, data: bytes) -> str:
        digest = sha256(data)
        # An object already there is kept only if its ETag (the MD5 of a single-part upload)
        # matches: storing the same bytes again is how a changed artefact is repaired.
        if self._etag(digest) != hashlib.md5(data, usedforsecurity=False).hexdigest():
            with self._errors("write", digest):
                self.client.put_object(Bucket=self.bucket, Key=self.key(digest), Body=data)
        return digest

    def get(self, digest: str) -> bytes:
        try:
            with self._errors("read", digest):
                obj = self.client.get_object(Bucket=self.bucket, Key=self.key(digest))
                data = obj["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise NotFound(
                f"artefact {digest[:12]}... is missing from s3://{self.bucket}/{self.prefix}"
            ) from None
        return _verify(data, digest, f"s3://{self.bucket}/{self.key(digest)}")

    def _etag(self, digest: str) -> str | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(digest))[
                "ETag"].strip('"')
        except Exception:
            return None

    @contextmanager
    def _errors(self, doing: str, digest: str) -> Iterator[None]:
        """Turn a bucket that is missing or refuses us, or an endpoint that does not answer,
        into a UserError naming the settings to check; a missing object passes through."""
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"s3://{self.bucket}/{self.key(digest)}"
        try:
            yield
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise
            raise UserError(
                f"cannot {doing} {where}: {exc} (check MODELPORT_ARTIFACTS and the AWS "
                "credentials)"
            ) from None
        except BotoCoreError as exc:
            raise UserError(
                f"cannot {doing} {where}: {exc} (check MODELPORT_S3_ENDPOINT_URL)"
            ) from None

    def exists(self, digest: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(digest))
            return True
        except Exception:
            return False

    def delete(self, digest: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(digest))


def open_store(location: str) -> LocalStore | S3Store:
    """The artefact store at ``location``: a folder, or ``s3://bucket/prefix``."""
    if location.startswith("s3://"):
        return S3Store(location)
    return LocalStore(location)



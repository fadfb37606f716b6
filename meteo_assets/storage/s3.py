"""One S3 bucket through a boto3 client, with errors that say which bucket, which setting and why.

Shared by the raw bucket (`s3_raw.py`) and the Parquet lake (`lake.py`). Credentials come only from
the standard AWS chain (environment, `AWS_PROFILE`, instance or task role): nothing here reads,
stores or prints them.
"""

from __future__ import annotations

from collections.abc import Iterable

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

CREDENTIALS_HINT = (
    "credentials come from the standard AWS chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
    "AWS_PROFILE, or an instance/task role"
)
MISSING_BUCKET = {"404", "NoSuchBucket"}
ACCESS_DENIED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
PRECONDITION_FAILED = {"412", "PreconditionFailed", "ConditionalRequestConflict"}


class S3StorageError(RuntimeError):
    """The object store refused or could not be reached; the message names the bucket and the cause."""


class ConcurrentChange(S3StorageError):
    """The object changed between our read and our conditional write (another writer got there first)."""


class S3Bucket:
    def __init__(self, client, name: str, setting: str, create: bool = False):
        self.client, self.name, self.setting, self.create = client, name, setting, create
        self._checked = False

    @property
    def endpoint(self) -> str:
        return self.client.meta.endpoint_url

    def uri(self, key: str = "") -> str:
        return f"s3://{self.name}/{key}"

    def ensure(self) -> S3Bucket:
        """Check once that the bucket exists (creating it when allowed), so that a wrong name fails
        with a message naming it rather than on the first object."""
        if self._checked:
            return self
        try:
            self.client.head_bucket(Bucket=self.name)
        except ClientError as exc:
            if _code(exc) not in MISSING_BUCKET:
                raise self._error("cannot use", exc) from exc
            if not self.create:
                raise S3StorageError(
                    f"S3 bucket {self.name!r} ({self.setting}) does not exist at {self.endpoint}: create it, "
                    f"point {self.setting} at an existing bucket, or set METEO_S3_CREATE_BUCKETS=1"
                ) from exc
            self._create()
        except BotoCoreError as exc:
            raise self._error("cannot use", exc) from exc
        self._checked = True
        return self

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None when there is no such object."""
        try:
            response = self.client.get_object(Bucket=self.name, Key=key)
            return response["Body"].read(), response["ETag"]
        except ClientError as exc:
            if _code(exc) in {"NoSuchKey", "404"}:
                return None
            raise self._error(f"cannot read {key}", exc) from exc
        except BotoCoreError as exc:
            raise self._error(f"cannot read {key}", exc) from exc

    def put(self, key: str, body: bytes) -> None:
        """Write one object in a single PUT: S3 makes it visible whole or not at all."""
        self._put(key, body, {})

    def swap(self, key: str, body: bytes, etag: str | None) -> None:
        """Replace the object read as version `etag` (None: that was absent) in one conditional PUT,
        so that a concurrent writer's version is never silently overwritten."""
        self._put(key, body, {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag})

    def _put(self, key: str, body: bytes, condition: dict[str, str]) -> None:
        try:
            self.client.put_object(Bucket=self.name, Key=key, Body=body, **condition)
        except ClientError as exc:
            if _code(exc) in PRECONDITION_FAILED:
                raise ConcurrentChange(f"{self.uri(key)} changed while it was being rewritten") from exc
            raise self._error(f"cannot write {key}", exc) from exc
        except BotoCoreError as exc:
            raise self._error(f"cannot write {key}", exc) from exc

    def keys(self, prefix: str) -> list[str]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
            return [item["Key"] for page in pages for item in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(f"cannot list {prefix}", exc) from exc

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        try:
            for start in range(0, len(keys), 1000):  # the API's batch limit
                batch = [{"Key": key} for key in keys[start : start + 1000]]
                self.client.delete_objects(Bucket=self.name, Delete={"Objects": batch, "Quiet": True})
        except (ClientError, BotoCoreError) as exc:
            raise self._error(f"cannot delete {len(keys)} objects", exc) from exc

    def _create(self) -> None:
        region = self.client.meta.region_name
        options = {} if region in (None, "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        try:
            self.client.create_bucket(Bucket=self.name, **options)
        except ClientError as exc:
            if _code(exc) not in {"BucketAlreadyOwnedByYou"}:
                raise self._error("cannot create", exc) from exc

    def _error(self, what: str, exc: Exception) -> S3StorageError:
        if isinstance(exc, NoCredentialsError):
            cause = f"no AWS credentials found ({CREDENTIALS_HINT})"
        elif isinstance(exc, EndpointConnectionError):
            cause = f"cannot reach {self.endpoint} (METEO_S3_ENDPOINT_URL)"
        elif isinstance(exc, ClientError) and _code(exc) in ACCESS_DENIED:
            cause = f"access denied ({_code(exc)}; {CREDENTIALS_HINT})"
        else:
            cause = str(exc)
        return S3StorageError(f"S3 bucket {self.name!r} ({self.setting}) at {self.endpoint}: {what}: {cause}")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))

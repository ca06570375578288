"""Objects written straight into the in-process moto's S3 (``moto_aws``), for a test whose
subject is not the writing: through the API, a thousand small PutObjects took more CPU than what
such a test looks at (about 2 s a thousand: each is serialized, signed, parsed and answered)."""

from collections.abc import Iterable


def write_objects(bucket: str, objects: Iterable[tuple[str, bytes]]) -> None:
    """Each (key, body) of ``objects`` into ``bucket`` of moto's S3, as a PutObject leaves it."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]  # (S3's backends are per partition)
    for key, body in objects:
        backend.put_object(bucket, key, body)

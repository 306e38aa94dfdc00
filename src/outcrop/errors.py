"""Domain errors. Operations raise these; the wire layer turns each into the AWS error of the same code.

Each error carries the message the caller needs to fix the request. The HTTP status comes from the
service model of the operation being served (see ``outcrop.wire.errors``), with ``status`` here as the
fallback for errors an operation does not model.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    code = "InternalServerException"
    status = 500

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class ValidationError(ServiceError):
    code = "ValidationException"
    status = 400


class SerializationError(ServiceError):
    code = "SerializationException"
    status = 400


class NotFound(ServiceError):
    code = "ResourceNotFoundException"
    status = 404


class Conflict(ServiceError):
    code = "ConflictException"
    status = 400


class ServiceQuotaExceeded(ServiceError):
    code = "ServiceQuotaExceededException"
    status = 400


class TooManyTags(ServiceError):
    code = "TooManyTagsException"
    status = 400


class AccessDenied(ServiceError):
    code = "AccessDeniedException"
    status = 403


class Throttled(ServiceError):
    code = "ThrottlingException"
    status = 429


class ServiceUnavailable(ServiceError):
    code = "ServiceUnavailableException"
    status = 503


class InternalServer(ServiceError):
    code = "InternalServerException"
    status = 500


class UnknownOperation(ServiceError):
    code = "UnknownOperationException"
    status = 404


class NotImplementedOperation(ServiceError):
    """An operation of the AWS model that outcrop does not serve: the caller's request cannot succeed here,
    so it is a client error (4xx, never retried by SDKs), not a server fault."""

    code = "UnsupportedOperationException"
    status = 400


class ModelTimeout(ServiceError):
    code = "ModelTimeoutException"
    status = 408


class ModelError(ServiceError):
    code = "ModelErrorException"
    status = 424


class ModelNotReady(ServiceError):
    code = "ModelNotReadyException"
    status = 429


class ModelStreamError(ServiceError):
    code = "ModelStreamErrorException"
    status = 424


class MissingAuthenticationToken(ServiceError):
    code = "MissingAuthenticationTokenException"
    status = 403


class IncompleteSignature(ServiceError):
    code = "IncompleteSignatureException"
    status = 403


class InvalidSignature(ServiceError):
    code = "InvalidSignatureException"
    status = 403


class UnrecognizedClient(ServiceError):
    code = "UnrecognizedClientException"
    status = 403


class RequestTooLarge(ServiceError):
    """A body over ``max_request_bytes``: refused from ``Content-Length`` before it is read, when declared."""

    code = "RequestEntityTooLargeException"
    status = 413


class RequestTimeout(ServiceError):
    """A client that did not finish sending its body within ``body_read_timeout_seconds``."""

    code = "RequestTimeoutException"
    status = 408

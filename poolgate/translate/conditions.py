"""Condition types and reasons, spelled exactly as Gateway API and the Inference Extension name them."""

from __future__ import annotations

from dataclasses import dataclass

# Condition types
ACCEPTED = "Accepted"
PROGRAMMED = "Programmed"
RESOLVED_REFS = "ResolvedRefs"
CONFLICTED = "Conflicted"
PARTIALLY_INVALID = "PartiallyInvalid"
ABNORMAL_WHEN_TRUE = frozenset({CONFLICTED, PARTIALLY_INVALID})  # negative polarity: False is the healthy state

# Gateway API reasons
R_ACCEPTED = "Accepted"
R_PROGRAMMED = "Programmed"
R_RESOLVED_REFS = "ResolvedRefs"
R_INVALID = "Invalid"
R_LISTENERS_NOT_VALID = "ListenersNotValid"
R_UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
R_PROTOCOL_CONFLICT = "ProtocolConflict"
R_NO_CONFLICTS = "NoConflicts"
R_INVALID_ROUTE_KINDS = "InvalidRouteKinds"
R_NO_MATCHING_PARENT = "NoMatchingParent"
R_NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
R_NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
R_BACKEND_NOT_FOUND = "BackendNotFound"
R_REF_NOT_PERMITTED = "RefNotPermitted"
R_INVALID_KIND = "InvalidKind"
R_UNSUPPORTED_VALUE = "UnsupportedValue"
R_PENDING = "Pending"

# Inference Extension (InferencePool status.parents) reasons
R_HTTPROUTE_NOT_ACCEPTED = "HTTPRouteNotAccepted"
R_ENDPOINT_PICKER_REF_MISSING = "EndpointPickerRefMissing"
R_INVALID_EXTENSION_REF = "InvalidExtensionRef"
R_NOT_SUPPORTED_BY_PARENT = "NotSupportedByParent"


@dataclass(frozen=True)
class Cond:
    """A condition before it gets its generation and timestamp: type, True/False, reason, message."""

    type: str
    status: bool
    reason: str
    message: str

    @classmethod
    def true(cls, type_: str, reason: str, message: str) -> Cond:
        return cls(type_, True, reason, message)

    @classmethod
    def false(cls, type_: str, reason: str, message: str) -> Cond:
        return cls(type_, False, reason, message)

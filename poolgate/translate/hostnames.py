"""Gateway API hostname semantics: wildcard matching, listener/route intersection, specificity order."""

from __future__ import annotations


def matches(pattern: str, host: str) -> bool:
    """Whether `host` (exact or wildcard) falls within `pattern`; `*.a.com` covers any name ending in `.a.com`
    (one or more labels), and `*` covers everything."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        suffix = pattern[1:]
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == pattern


def intersect(listener_hostname: str | None, route_hostname: str) -> str | None:
    """The hostnames a route hostname serves on a listener: the more specific of the two when one covers the
    other, else None (no overlap)."""
    if listener_hostname is None:
        return route_hostname
    if matches(listener_hostname, route_hostname):
        return route_hostname
    if matches(route_hostname, listener_hostname):
        return listener_hostname
    return None


def effective_hostnames(listener_hostname: str | None, route_hostnames: list[str]) -> list[str]:
    """The hostnames a route serves on a listener ("*" = any); empty when route and listener do not intersect."""
    if not route_hostnames:
        return [listener_hostname or "*"]
    out = []
    for hostname in route_hostnames:
        common = intersect(listener_hostname, hostname)
        if common is not None and common not in out:
            out.append(common)
    return out


def specificity(hostname: str) -> tuple[int, int]:
    """Sort key (ascending = more specific first): exact names before wildcards, longer before shorter."""
    if hostname == "*":
        return (2, 0)
    return (1 if hostname.startswith("*.") else 0, -len(hostname))


def covering_patterns(hostname: str) -> list[str]:
    """Every hostname pattern that covers `hostname`: itself, each wildcard of a parent domain, and "*"."""
    if hostname == "*":
        return ["*"]
    labels = hostname.split(".")
    start = 1 if hostname.startswith("*.") else 0
    out = [hostname]
    out += ["*." + ".".join(labels[i:]) for i in range(start + 1, len(labels))]
    out.append("*")
    return out

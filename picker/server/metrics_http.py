"""The picker's Prometheus endpoint, with upstream's authentication when it runs on Kubernetes.

Upstream (`--metrics-endpoint-auth`, default true) serves `/metrics` only to a caller whose bearer token the API server
accepts (TokenReview) and who may `get` the non-resource URL `/metrics` (SubjectAccessReview), as controller-runtime's
metrics filter does. `TokenReviewAuth` does the same with the kubernetes client: 401 without a token or with one the API
server rejects, 403 when the caller may not read `/metrics`. Decisions are cached for 10 s per token. Without
Kubernetes (an objects file, `poolgate up`) there is nobody to ask, and `/metrics` is open.
"""

from __future__ import annotations

import logging
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger("poolgate.picker")

CACHE_SECONDS = 10.0


class TokenReviewAuth:
    """Whether a bearer token may read /metrics, asked of the Kubernetes API server (see the module docstring)."""

    def __init__(self, api_client) -> None:
        from kubernetes import client

        self._authn = client.AuthenticationV1Api(api_client)
        self._authz = client.AuthorizationV1Api(api_client)
        self._client = client
        self._cache: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def status(self, authorization: str) -> int:
        """200 when the `Authorization` header's bearer token may read /metrics, else 401 or 403."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return 401
        token = token.strip()
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        status = self._review(token)
        with self._lock:
            if len(self._cache) > 1000:
                self._cache.clear()
            self._cache[token] = (now + CACHE_SECONDS, status)
        return status

    def _review(self, token: str) -> int:
        client = self._client
        try:
            review = self._authn.create_token_review(
                client.V1TokenReview(
                    api_version="authentication.k8s.io/v1",
                    kind="TokenReview",
                    spec=client.V1TokenReviewSpec(token=token),
                )
            )
            user = review.status.user if review.status and review.status.authenticated else None
            if user is None:
                return 401
            access = self._authz.create_subject_access_review(
                client.V1SubjectAccessReview(
                    api_version="authorization.k8s.io/v1",
                    kind="SubjectAccessReview",
                    spec=client.V1SubjectAccessReviewSpec(
                        user=user.username,
                        groups=user.groups,
                        uid=user.uid,
                        non_resource_attributes=client.V1NonResourceAttributes(path="/metrics", verb="get"),
                    ),
                )
            )
        except Exception as error:  # the API server is unreachable or refused the review: deny, say why
            log.warning("metrics authentication failed", extra={"error": str(error)})
            return 401
        return 200 if access.status and access.status.allowed else 403


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:
        """Scrapes are not logged."""


def _guarded(app, auth: TokenReviewAuth):
    reasons = {401: "401 Unauthorized", 403: "403 Forbidden"}

    def guarded(environ, start_response):
        status = auth.status(environ.get("HTTP_AUTHORIZATION", ""))
        if status != 200:
            start_response(reasons[status], [("Content-Type", "text/plain; charset=utf-8")])
            return [reasons[status].encode()]
        return app(environ, start_response)

    return guarded


def serve_metrics(registry: CollectorRegistry, host: str, port: int, auth: TokenReviewAuth | None) -> WSGIServer:
    """Serve `registry` on http://host:port/metrics in a daemon thread (behind `auth` when given); returns the server
    (its `server_port` is the bound port, `shutdown()` stops it)."""
    app = make_wsgi_app(registry)
    server = make_server(
        host, port, app if auth is None else _guarded(app, auth), _ThreadingServer, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics http", daemon=True).start()
    return server

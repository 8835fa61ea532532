"""A tiny fake Kubernetes API server on loopback, for the real kubernetes client: list and watch of a few resource
paths, TokenReview and SubjectAccessReview.

    async with FakeApiServer() as api:
        api.add("/api/v1/namespaces/default/pods", pod)
        client = ApiClient(Configuration(host=f"http://127.0.0.1:{api.port}"))
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web


class FakeApiServer:
    """Serves list and watch for a few resource paths; `send` pushes a watch event (also to watches opened later
    from an older resourceVersion); unknown paths answer 404.
    TokenReviews authenticate the tokens of `users` (token -> user name); SubjectAccessReviews allow the users of
    `metrics_readers` to get /metrics."""

    def __init__(self) -> None:
        self.users: dict[str, str] = {}
        self.metrics_readers: set[str] = set()
        self.reviews: list[str] = []  # kinds of the reviews asked, in order
        self.items: dict[str, dict[str, dict]] = {}
        self.watchers: dict[str, list[asyncio.Queue]] = {}
        self.events: dict[str, list[dict]] = {}  # every event sent, per path, for watches that start from a version
        self.version = 10
        self.watch_requests: list[str] = []
        self.runner = None
        self.port = 0

    def add(self, path: str, *items: dict) -> None:
        self.items.setdefault(path, {}).update({i["metadata"]["name"]: i for i in items})

    async def send(self, path: str, kind: str, item: dict) -> None:
        self.version += 1
        item = {**item, "metadata": {**item["metadata"], "resourceVersion": str(self.version)}}
        if kind == "DELETED":
            self.items[path].pop(item["metadata"]["name"], None)
        else:
            self.items.setdefault(path, {})[item["metadata"]["name"]] = item
        event = {"type": kind, "object": item}
        self.events.setdefault(path, []).append(event)
        for queue in self.watchers.get(path, []):
            queue.put_nowait(event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path not in self.items:
            return web.json_response(
                {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}, status=404
            )
        if request.query.get("watch", "").lower() in ("true", "1"):
            self.watch_requests.append(f"{path}?{request.query_string}")
            response = web.StreamResponse()
            await response.prepare(request)
            queue: asyncio.Queue = asyncio.Queue()
            # as a real API server: a watch from a resourceVersion first gets the events after it, so no event sent
            # between the client's list and its watch is lost
            since = int(request.query.get("resourceVersion") or self.version)
            for event in self.events.get(path, []):
                if int(event["object"]["metadata"]["resourceVersion"]) > since:
                    queue.put_nowait(event)
            self.watchers.setdefault(path, []).append(queue)
            try:
                while True:
                    await response.write(orjson.dumps(await queue.get()) + b"\n")
            finally:
                self.watchers[path].remove(queue)
        items = [
            {k: v for k, v in item.items() if k not in ("kind", "apiVersion")} for item in self.items[path].values()
        ]
        return web.json_response({"kind": "List", "metadata": {"resourceVersion": str(self.version)}, "items": items})

    async def review(self, request: web.Request) -> web.Response:
        review = await request.json()
        kind = "TokenReview" if request.path.endswith("/tokenreviews") else "SubjectAccessReview"
        self.reviews.append(kind)
        if kind == "TokenReview":
            user = self.users.get(review["spec"]["token"])
            status = {"authenticated": True, "user": {"username": user, "groups": []}} if user else {}
        else:
            spec = review["spec"]
            path = spec.get("nonResourceAttributes", {})
            allowed = spec["user"] in self.metrics_readers and path == {"path": "/metrics", "verb": "get"}
            status = {"allowed": allowed}
        return web.json_response({**review, "status": status}, status=201)

    async def __aenter__(self):
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self.handle)
        app.router.add_route("POST", "/apis/authentication.k8s.io/v1/tokenreviews", self.review)
        app.router.add_route("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", self.review)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info):
        await self.runner.cleanup()

    def kubeconfig(self, path) -> str:
        """Write a kubeconfig naming this server to `path`; returns the path."""
        path.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
            f"clusters: [{{name: fake, cluster: {{server: 'http://127.0.0.1:{self.port}'}}}}]\n"
            "users: [{name: fake, user: {token: picker}}]\n"
            "contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: default}}]\n"
        )
        return str(path)

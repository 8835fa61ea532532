"""The xDS Envoy Gateway builds from the objects the Envoy Gateway target generates, for the subset of fields they
use, shaped as Envoy Gateway v1.9 shapes it (read in envoyproxy/gateway):

- listener per sibling Gateway listener; ClientTrafficPolicy -> HCM `early_header_mutation_extensions` and the
  listener's `per_connection_buffer_limit_bytes`;
- route per companion rule match, named `httproute/<ns>/<name>/rule/<i>/match/<j>/*`, to the rule's cluster
  `httproute/<ns>/<name>/rule/<i>` (internal/gatewayapi/helpers.go); BackendTrafficPolicy retry -> `retry_policy`
  with the previous_hosts predicate and 5 host selection attempts (internal/xds/translator/route.go);
- EnvoyExtensionPolicy -> an ext_proc HTTP filter `envoy.filters.http.ext_proc/envoyextensionpolicy/<ns>/<name>/
  extproc/<i>`, disabled in the HCM and enabled per route with an empty FilterConfig, gRPC to the cluster
  `envoyextensionpolicy/<ns>/<name>/extproc/<i>` with a 10 s timeout; trailers SEND with full-duplex bodies
  (internal/xds/translator/extproc.go, internal/gatewayapi/envoyextensionpolicy.go, ext_service.go);
- rule cluster: EDS, one locality per backendRef (`<cluster>/backend/<k>`), HTTP/2 for appProtocol
  kubernetes.io/h2c; BackendTrafficPolicy endpointOverride ->
  `lb_policy: CLUSTER_PROVIDED` + an override_host `load_balancing_policy` on the header with the configured
  fallback, circuit breakers with max_retries 1024, `per_connection_buffer_limit_bytes` (cluster.go);
- EnvoyPatchPolicy JSON patches applied RFC 6902 to the resources as JSON with proto field names
  (jsonpatch.go: protojson UseProtoNames, `EnsurePathExistsOnAdd`).

Endpoints come from the Pods of the input (EDS from files; Envoy Gateway streams them over ADS); a picker Service
is reached at its clusterIP."""

from __future__ import annotations

from pathlib import Path

import jsonpatch
import yaml
from jsonpath_ng.ext import parse as jsonpath_parse

from poolgate.api import Pod, Service

T = "type.googleapis.com/"
HCM = T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
EXT_PROC = T + "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
BODY_MODES = {
    "Buffered": "BUFFERED",
    "BufferedPartial": "BUFFERED_PARTIAL",
    "Streamed": "STREAMED",
    "FullDuplexStreamed": "FULL_DUPLEX_STREAMED",
}


def _by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def _targets(policy: dict) -> list[dict]:
    spec = policy["spec"]
    return spec.get("targetRefs") or [spec["targetRef"]]


def _seconds(duration: str) -> str:
    return duration if duration.endswith("s") and not duration.endswith("ms") else f"{int(duration[:-2]) / 1000}s"


def _single(name: str, kind: str, fields: dict, value_match: dict) -> dict:
    return {
        "single_predicate": {
            "input": {"name": name, "typed_config": {"@type": T + f"envoy.type.matcher.v3.{kind}", **fields}},
            "value_match": value_match,
        }
    }


def _operations(document: dict, operation: dict) -> list[dict]:
    """The RFC 6902 operations of one Envoy Gateway patch operation (internal/utils/jsonpatch)."""
    operation = dict(operation)
    json_path = operation.pop("jsonPath", None)
    if json_path is None:
        return [operation]
    suffix = operation.pop("path", "")
    found = jsonpath_parse(json_path).find(document)
    if not found:
        raise ValueError(f"no element matches the jsonPath {json_path}")
    pointers = ["/" + "/".join(str(part).strip("[]") for part in str(match.full_path).split(".")) for match in found]
    return [{**operation, "path": pointer + suffix} for pointer in pointers]


def _one_of(kind: str, predicates: list[dict]) -> dict:
    """A predicate list, or its only predicate (as Envoy Gateway collapses them)."""
    return predicates[0] if len(predicates) == 1 else {kind: {"predicate": predicates}}


def _http2() -> dict:
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }


class EnvoyGatewayShape:
    """Builds the bootstrap Envoy Gateway's Envoy would run for the generated objects."""

    def __init__(self, generated: list[dict], inputs: list, directory: Path, listen: str, admin_port: int):
        self.objects = generated
        self.pods = [o for o in inputs if isinstance(o, Pod)]
        self.services = {(o.namespace, o.name): o for o in inputs if isinstance(o, Service)}
        self.directory = directory
        self.listen = listen
        self.admin_port = admin_port

    # --- policies by target ---------------------------------------------------------------------------------------

    def _rule_policies(self, kind: str, namespace: str, route: str, rule: str) -> list[dict]:
        return [
            p
            for p in _by_kind(self.objects, kind)
            if p["metadata"]["namespace"] == namespace
            and any(
                t["kind"] == "HTTPRoute" and t["name"] == route and t.get("sectionName") == rule for t in _targets(p)
            )
        ]

    def _gateway_policy(self, kind: str, gateway: dict) -> dict | None:
        found = [
            p
            for p in _by_kind(self.objects, kind)
            if p["metadata"]["namespace"] == gateway["metadata"]["namespace"]
            and any(t["kind"] == "Gateway" and t["name"] == gateway["metadata"]["name"] for t in _targets(p))
        ]
        return found[0] if found else None

    # --- ext_proc ---------------------------------------------------------------------------------------------------

    @staticmethod
    def ext_proc_name(policy: dict, index: int = 0) -> str:
        return f"envoyextensionpolicy/{policy['metadata']['namespace']}/{policy['metadata']['name']}/extproc/{index}"

    def _ext_proc_filter(self, policy: dict, index: int = 0) -> dict:
        ext = policy["spec"]["extProc"][index]
        backend = ext["backendRefs"][0]
        namespace = backend.get("namespace", policy["metadata"]["namespace"])
        mode = {
            "request_header_mode": "SKIP",
            "response_header_mode": "SKIP",
            "request_body_mode": "NONE",
            "response_body_mode": "NONE",
            "request_trailer_mode": "SKIP",
            "response_trailer_mode": "SKIP",
        }
        for phase in ("request", "response"):
            if phase in ext.get("processingMode", {}):
                mode[f"{phase}_header_mode"] = "SEND"
                body = ext["processingMode"][phase].get("body")
                if body:
                    mode[f"{phase}_body_mode"] = BODY_MODES[body]
                    if body == "FullDuplexStreamed":
                        mode[f"{phase}_trailer_mode"] = "SEND"
        config = {
            "@type": EXT_PROC,
            "grpc_service": {
                "envoy_grpc": {
                    "cluster_name": self.ext_proc_name(policy, index),
                    "authority": f"{backend['name']}.{namespace}:{backend['port']}",
                },
                "timeout": "10s",
            },
            "processing_mode": mode,
            "failure_mode_allow": ext.get("failOpen", False),
        }
        if "messageTimeout" in ext:
            config["message_timeout"] = _seconds(ext["messageTimeout"])
        if "statusOnError" in ext:
            config["status_on_error"] = {"code": ext["statusOnError"]}
        metadata = ext.get("metadata", {})
        if metadata:
            config["metadata_options"] = {
                "forwarding_namespaces": {"untyped": metadata.get("accessibleNamespaces", [])},
                "receiving_namespaces": {"untyped": metadata.get("writableNamespaces", [])},
            }
        return {
            "name": f"envoy.filters.http.ext_proc/{self.ext_proc_name(policy, index)}",
            "disabled": True,
            "typed_config": config,
        }

    def _picker_address(self, policy: dict, index: int = 0) -> tuple[str, dict | None]:
        """Where the policy's picker is (a Service's clusterIP; a Backend's FQDN resolved as cluster DNS would, to
        the Service's clusterIP) and the TLS the cluster speaks (a Backend's `tls`, as translator.go builds it)."""
        backend = policy["spec"]["extProc"][index]["backendRefs"][0]
        namespace = backend.get("namespace", policy["metadata"]["namespace"])
        if backend.get("kind", "Service") == "Service":
            return self.services[(namespace, backend["name"])].spec.cluster_ip, None
        (found,) = [
            b
            for b in _by_kind(self.objects, "Backend")
            if (b["metadata"]["namespace"], b["metadata"]["name"]) == (namespace, backend["name"])
        ]
        (endpoint,) = found["spec"]["endpoints"]
        service, service_namespace = endpoint["fqdn"]["hostname"].split(".")[:2]
        tls = found["spec"].get("tls")
        socket = None
        if tls is not None:
            assert tls.get("insecureSkipVerify"), "only unverified TLS is modelled"
            context = {
                "@type": T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {"alpn_protocols": tls.get("alpnProtocols", [])},
            }
            if "sni" in tls:
                context["sni"] = tls["sni"]
            socket = {"name": "envoy.transport_sockets.tls", "typed_config": context}
        return self.services[(service_namespace, service)].spec.cluster_ip, socket

    def _ext_proc_cluster(self, policy: dict, index: int = 0) -> dict:
        backend = policy["spec"]["extProc"][index]["backendRefs"][0]
        address, transport_socket = self._picker_address(policy, index)
        name = self.ext_proc_name(policy, index)
        breaker = policy["spec"]["extProc"][index].get("backendSettings", {}).get("circuitBreaker", {})
        cluster = {
            "name": name,
            "type": "STATIC",
            "connect_timeout": "10s",
            "circuit_breakers": {
                "thresholds": [
                    {
                        "priority": "DEFAULT",
                        "max_requests": breaker.get("maxParallelRequests", 1024),
                        "max_pending_requests": breaker.get("maxPendingRequests", 1024),
                    }
                ]
            },
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {"socket_address": {"address": address, "port_value": backend["port"]}}
                                }
                            }
                        ]
                    }
                ],
            },
            "typed_extension_protocol_options": _http2(),
        }
        if transport_socket is not None:
            cluster["transport_socket"] = transport_socket
        return cluster

    # --- response overrides (custom_response.go) ------------------------------------------------------------------

    @staticmethod
    def custom_response_name(policy: dict) -> str:
        return f"envoy.filters.http.custom_response/backendtrafficpolicy/{policy['metadata']['namespace']}/{policy['metadata']['name']}"

    def _custom_response_filter(self, policy: dict) -> dict:
        matchers = []
        for i, override in enumerate(policy["spec"]["responseOverride"]):
            match, response = override["match"], override["response"]
            predicates = []
            if match.get("statusCodes"):
                predicates.append(
                    _one_of(
                        "or_matcher",
                        [
                            _single(
                                "http-response-status-code-match-input",
                                "HttpResponseStatusCodeMatchInput",
                                {},
                                {"exact": str(code["value"])},
                            )
                            for code in match["statusCodes"]
                        ],
                    )
                )
            if match.get("responseHeaders"):
                predicates.append(
                    _one_of(
                        "and_matcher",
                        [
                            _single(
                                "http-response-header-match-input",
                                "HttpResponseHeaderMatchInput",
                                {"header_name": h["name"]},
                                {h["value"].get("type", "Exact").lower(): h["value"]["value"]},
                            )
                            for h in match["responseHeaders"]
                        ],
                    )
                )
            if override.get("source") in ("Local", "Backend"):
                predicates.append(
                    _single(
                        "http-response-local-reply-match-input",
                        "HttpResponseLocalReplyMatchInput",
                        {},
                        {"exact": "true" if override["source"] == "Local" else "false"},
                    )
                )
            action = {
                "@type": T + "envoy.extensions.http.custom_response.local_response_policy.v3.LocalResponsePolicy",
                "body_format": {"text_format": response["body"]["inline"]},
                "response_headers_to_add": [
                    {
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        "header": {"key": "Content-Type", "value": response["contentType"]},
                    }
                ],
            }
            name = f"backendtrafficpolicy/{policy['metadata']['namespace']}/{policy['metadata']['name']}"
            matchers.append(
                {
                    "predicate": _one_of("and_matcher", predicates),
                    "on_match": {"action": {"name": f"{name}/responseoverride/rule/{i}", "typed_config": action}},
                }
            )
        return {
            "name": self.custom_response_name(policy),
            "disabled": True,
            "typed_config": {
                "@type": T + "envoy.extensions.filters.http.custom_response.v3.CustomResponse",
                "custom_response_matcher": {"matcher_list": {"matchers": matchers}},
            },
        }

    # --- routes and clusters ----------------------------------------------------------------------------------------

    @staticmethod
    def _match(match: dict) -> dict:
        path = match.get("path", {"type": "PathPrefix", "value": "/"})
        out = (
            {"path": path["value"]}
            if path["type"] == "Exact"
            else ({"prefix": "/"} if path["value"] == "/" else {"path_separated_prefix": path["value"].rstrip("/")})
        )
        headers = [
            {
                "name": h["name"].lower(),
                "string_match": (
                    {"safe_regex": {"regex": h["value"]}}
                    if h.get("type") == "RegularExpression"
                    else {"exact": h["value"]}
                ),
            }
            for h in match.get("headers", [])
        ]
        if headers:
            out["headers"] = headers
        return out

    def _routes_and_clusters(self, route: dict) -> tuple[list[dict], list[dict], list[dict]]:
        namespace, name = route["metadata"]["namespace"], route["metadata"]["name"]
        routes, clusters, filters = [], [], []
        for i, rule in enumerate(route["spec"]["rules"]):
            cluster = f"httproute/{namespace}/{name}/rule/{i}"
            extensions = self._rule_policies("EnvoyExtensionPolicy", namespace, name, rule.get("name"))
            traffic = self._rule_policies("BackendTrafficPolicy", namespace, name, rule.get("name"))
            action: dict = {"cluster": cluster}
            if "request" in rule.get("timeouts", {}):
                action["timeout"] = rule["timeouts"]["request"]
            if traffic and "retry" in traffic[0]["spec"]:
                retry = traffic[0]["spec"]["retry"]
                action["retry_policy"] = {
                    "retry_on": ",".join(retry["retryOn"]["triggers"]),
                    "num_retries": retry["numRetries"],
                    "retriable_status_codes": [503],
                    "host_selection_retry_max_attempts": "5",
                    "retry_host_predicate": [
                        {
                            "name": "envoy.retry_host_predicates.previous_hosts",
                            "typed_config": {
                                "@type": T + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                            },
                        }
                    ],
                }
            enabled = [
                f"envoy.filters.http.ext_proc/{self.ext_proc_name(p, i)}"
                for p in extensions
                for i in range(len(p["spec"]["extProc"]))
            ]
            overriding = [p for p in traffic if p["spec"].get("responseOverride")]
            enabled += [self.custom_response_name(p) for p in overriding]
            for j, match in enumerate(rule["matches"]):
                entry = {"name": f"{cluster}/match/{j}/*", "match": self._match(match), "route": action}
                if not rule.get("backendRefs"):  # a rule without backends answers 500 (Gateway API)
                    entry = {**entry, "direct_response": {"status": 500}}
                    del entry["route"]
                if enabled:
                    entry["typed_per_filter_config"] = {
                        name: {"@type": T + "envoy.config.route.v3.FilterConfig", "config": {}} for name in enabled
                    }
                routes.append(entry)
            for policy in overriding:
                if self._custom_response_filter(policy) not in filters:
                    filters.append(self._custom_response_filter(policy))
            for policy in extensions:  # one filter and cluster per entry, however many rules the policy targets
                for i in range(len(policy["spec"]["extProc"])):
                    if self._ext_proc_filter(policy, i) not in filters:
                        filters.append(self._ext_proc_filter(policy, i))
                        clusters.append(self._ext_proc_cluster(policy, i))
            if rule.get("backendRefs"):
                clusters.append(
                    self._rule_cluster(cluster, rule["backendRefs"], namespace, traffic[0]["spec"] if traffic else {})
                )
        return routes, clusters, filters

    def _pod_ips(self, service: dict) -> list[str]:
        selector = service["spec"]["selector"]
        pods = [
            p
            for p in self.pods
            if p.namespace == service["metadata"]["namespace"]
            and p.ready
            and all(p.metadata.labels.get(k) == v for k, v in selector.items())
        ]
        return [p.status.pod_ip for p in sorted(pods, key=lambda p: p.name)]

    def _rule_cluster(self, name: str, backend_refs: list[dict], namespace: str, traffic: dict) -> dict:
        services = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in _by_kind(self.objects, "Service")}
        localities = []
        for k, ref in enumerate(backend_refs):
            key = (ref.get("namespace", namespace), ref["name"])  # a generated Service, or one of the user's
            ips = self._pod_ips(services[key]) if key in services else [self.services[key].spec.cluster_ip]
            localities.append(
                {
                    "locality": {"region": f"{name}/backend/{k}"},
                    "load_balancing_weight": ref.get("weight", 1),
                    "lb_endpoints": [
                        {
                            "endpoint": {"address": {"socket_address": {"address": ip, "port_value": ref["port"]}}},
                            "load_balancing_weight": 1,
                        }
                        for ip in ips
                    ],
                }
            )
        eds = self.directory / f"eds-{name.replace('/', '_')}.yaml"
        eds.write_text(
            yaml.safe_dump(
                {
                    "resources": [
                        {
                            "@type": T + "envoy.config.endpoint.v3.ClusterLoadAssignment",
                            "cluster_name": name,
                            "endpoints": localities,
                        }
                    ]
                }
            )
        )
        fallback = {
            "policies": [
                {
                    "typed_extension_config": {
                        "name": "envoy.load_balancing_policies.least_request",
                        "typed_config": {
                            "@type": T + "envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest",
                            "locality_lb_config": {"locality_weighted_lb_config": {}},
                        },
                    }
                }
            ]
        }
        cluster = {
            "name": name,
            "type": "EDS",
            "connect_timeout": "10s",
            "dns_lookup_family": "V4_PREFERRED",
            "eds_cluster_config": {
                "service_name": name,
                "eds_config": {"path_config_source": {"path": str(eds)}, "resource_api_version": "V3"},
            },
            "common_lb_config": {},
            "ignore_health_on_host_removal": True,
            "per_connection_buffer_limit_bytes": int(traffic.get("connection", {}).get("bufferLimit", 32768)),
            "lb_policy": "LEAST_REQUEST",
            "load_balancing_policy": fallback,
        }
        override = traffic.get("loadBalancer", {}).get("endpointOverride")
        if override:
            cluster["lb_policy"] = "CLUSTER_PROVIDED"
            cluster["load_balancing_policy"] = {
                "policies": [
                    {
                        "typed_extension_config": {
                            "name": "envoy.load_balancing_policies.override_host",
                            "typed_config": {
                                "@type": T + "envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost",
                                "override_host_sources": [{"header": s["header"]} for s in override["extractFrom"]],
                                "fallback_policy": fallback,
                            },
                        }
                    }
                ]
            }
        if any(
            port.get("appProtocol") == "kubernetes.io/h2c"
            for ref in backend_refs
            for port in services.get((ref.get("namespace", namespace), ref["name"]), {"spec": {"ports": []}})["spec"][
                "ports"
            ]
            if port["port"] == ref["port"]
        ):
            cluster["typed_extension_protocol_options"] = _http2()
        breaker = traffic.get("circuitBreaker", {})
        thresholds = {"priority": "DEFAULT", "max_retries": 1024}
        for field, key in (
            ("maxConnections", "max_connections"),
            ("maxPendingRequests", "max_pending_requests"),
            ("maxParallelRequests", "max_requests"),
            ("maxParallelRetries", "max_retries"),
        ):
            if field in breaker:
                thresholds[key] = breaker[field]
        cluster["circuit_breakers"] = {"thresholds": [thresholds]}
        return cluster

    # --- listeners and the bootstrap ---------------------------------------------------------------------------------

    def resources(self) -> tuple[list[dict], list[dict]]:
        """Listeners and clusters before any EnvoyPatchPolicy (one Gateway listener, as the tests use)."""
        (gateway,) = _by_kind(self.objects, "Gateway")
        (listener,) = gateway["spec"]["listeners"]
        routes, clusters, filters = [], [], []
        for route in _by_kind(self.objects, "HTTPRoute"):
            r, c, f = self._routes_and_clusters(route)
            routes += r
            clusters += [x for x in c if x not in clusters]
            filters += [x for x in f if x not in filters]
        filters.sort(  # httpfilters.go's order: custom_response 0, ext_proc 100 + entry index
            key=lambda f: 0 if "custom_response" in f["name"] else 100 + int(f["name"].rsplit("/", 1)[1])
        )
        routes.sort(key=lambda r: -len(r["match"].get("headers", [])))  # more header matches first
        ctp = self._gateway_policy("ClientTrafficPolicy", gateway)
        namespace, name = gateway["metadata"]["namespace"], gateway["metadata"]["name"]
        hcm = {
            "@type": HCM,
            "stat_prefix": f"http-{listener['port']}",
            "route_config": {
                "name": f"{namespace}/{name}/{listener['name']}",
                "virtual_hosts": [
                    {"name": f"{namespace}/{name}/{listener['name']}/*", "domains": ["*"], "routes": routes}
                ],
            },
            "http_filters": filters
            + [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": T + "envoy.extensions.filters.http.router.v3.Router"},
                }
            ],
        }
        out_listener = {
            "name": f"{namespace}/{name}/{listener['name']}",
            "address": {"socket_address": {"address": self.listen, "port_value": listener["port"]}},
            "filter_chains": [
                {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
            ],
        }
        if ctp:
            remove = ctp["spec"].get("headers", {}).get("earlyRequestHeaders", {}).get("remove", [])
            hcm["early_header_mutation_extensions"] = [
                {
                    "name": "envoy.http.early_header_mutation.header_mutation",
                    "typed_config": {
                        "@type": T + "envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
                        "mutations": [{"remove": h} for h in remove],
                    },
                }
            ]
            out_listener["per_connection_buffer_limit_bytes"] = int(ctp["spec"]["connection"]["bufferLimit"])
            http_timeouts = ctp["spec"].get("timeout", {}).get("http", {})
            for field, key in (
                ("requestHeadersReceivedTimeout", "request_headers_timeout"),
                ("requestReceivedTimeout", "request_timeout"),
                ("streamIdleTimeout", "stream_idle_timeout"),
            ):
                if field in http_timeouts:
                    hcm[key] = http_timeouts[field]
        return [out_listener], clusters

    def patched(self, listeners: list[dict], clusters: list[dict]) -> tuple[list[dict], list[dict]]:
        """The resources after the EnvoyPatchPolicies, applied as Envoy Gateway applies them: each patch to the one
        resource of its type and name, a `jsonPath` first turned into JSON pointers (to which `path` is appended)."""
        route_configs = [
            f["typed_config"]["route_config"]
            for lst in listeners
            for chain in lst["filter_chains"]
            for f in chain["filters"]
        ]
        by_type = {
            T + "envoy.config.listener.v3.Listener": listeners,
            T + "envoy.config.cluster.v3.Cluster": clusters,
            T + "envoy.config.route.v3.RouteConfiguration": route_configs,
        }
        for policy in _by_kind(self.objects, "EnvoyPatchPolicy"):
            for patch in policy["spec"]["jsonPatches"]:
                resources = by_type[patch["type"]]
                (index,) = [i for i, r in enumerate(resources) if r["name"] == patch["name"]]
                patched = jsonpatch.apply_patch(resources[index], _operations(resources[index], patch["operation"]))
                resources[index].clear()
                resources[index].update(patched)  # in place: route configurations live inside their listener
        return listeners, clusters

    def bootstrap(self, patch: bool = True) -> dict:
        """A bootstrap with the resources (patched by default)."""
        listeners, clusters = self.resources()
        if patch:
            listeners, clusters = self.patched(listeners, clusters)
        return {
            "node": {"id": "envoy-gateway", "cluster": "envoy-gateway"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}}},
            "static_resources": {"listeners": listeners, "clusters": clusters},
        }

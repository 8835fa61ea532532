"""Emit Envoy configuration from the IR, as typed protobuf messages of Envoy's own API (xds-protos), then as the
JSON/YAML shapes Envoy loads: a standalone bootstrap, or file-based dynamic resources (LDS/CDS files)."""

from __future__ import annotations

import json
import re

from envoy.config.accesslog.v3 import accesslog_pb2 as access_log_pb2
from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, extension_pb2, grpc_service_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2, processing_mode_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.load_balancing_policies.override_host.v3 import override_host_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import json_format, struct_pb2, wrappers_pb2
from google.protobuf.any_pb2 import Any
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from poolgate.api.contract import (
    CALLOUT_METADATA_KEY,
    DESTINATION_HEADER,
    EPP_FILTER,
    GATEWAY_ONLY_HEADERS,
    LB_METADATA_NAMESPACE,
    MODEL_LIST_METADATA_KEY,
    MODEL_NAME_HEADER,
    MODEL_ROUTER,
    MODEL_ROUTER_FILTER,
    MODEL_ROUTER_ONLY_HEADERS,
    OBSERVE_RESPONSE,
    PICK_REQUEST,
    POOL_METADATA_KEY,
    RESPONSE_OBSERVER_FILTER,
    ROUTE_METADATA_NAMESPACE,
    ROUTE_POOLS_KEY,
    SERVED_KEY,
    SUBSET_HINT_NAMESPACE,
)
from poolgate.translate import ir, naming
from poolgate.translate.answers import EdgeError
from poolgate.translate.options import TranslateOptions
from poolgate.translate.policy import CalloutPolicy


def _any(message: Message) -> Any:
    packed = Any()
    packed.Pack(message)
    return packed


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def to_dict(message: Message) -> dict:
    """A message as the JSON object Envoy reads (proto field names)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


# --- listeners ----------------------------------------------------------------------------------------------------


def listener(lst: ir.Listener, model: ir.IR, options: TranslateOptions) -> listener_pb2.Listener:
    """An Envoy listener with one HTTP connection manager serving the listener's virtual hosts."""
    pickers = [c for c in model.clusters.values() if c.role == "picker"]
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=lst.name.replace("/", "_"),
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        route_config=route_configuration(lst),
        strip_any_host_port=True,
        normalize_path={"value": True},
        merge_slashes=True,
        path_with_escaped_slashes_action=hcm_pb2.HttpConnectionManager.UNESCAPE_AND_REDIRECT,
        early_header_mutation_extensions=[_strip_headers(lst.model_router is not None)],
        request_headers_timeout=_duration(lst.client_timeouts.request_headers_s),
        request_timeout=_duration(lst.client_timeouts.request_s),
        stream_idle_timeout=_duration(lst.client_timeouts.stream_idle_s),
        local_reply_config=_local_replies(lst.edge_errors),
    )
    hcm.common_http_protocol_options.max_headers_count.value = MAX_HEADERS_COUNT
    hcm.max_request_headers_kb.value = lst.request_limits.max_headers_kb
    if lst.request_limits.drop_underscore_headers:
        hcm.common_http_protocol_options.headers_with_underscores_action = protocol_pb2.HttpProtocolOptions.DROP_HEADER
    if lst.model_router is not None:
        hcm.http_filters.append(
            hcm_pb2.HttpFilter(
                name=MODEL_ROUTER_FILTER, typed_config=_any(_model_router(lst.model_router, lst.model_list))
            )
        )
    if lst.endpoint_picker is not None:
        hcm.http_filters.append(
            hcm_pb2.HttpFilter(
                name=EPP_FILTER, typed_config=_any(_endpoint_picker(pickers[0].name, lst.endpoint_picker))
            )
        )
    if lst.response_observer is not None:
        hcm.http_filters.append(
            hcm_pb2.HttpFilter(
                name=RESPONSE_OBSERVER_FILTER,
                typed_config=_any(_endpoint_picker(pickers[0].name, lst.response_observer)),
            )
        )
    hcm.http_filters.append(
        hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=_any(router_pb2.Router()))
    )
    out = listener_pb2.Listener(
        name=lst.name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(
                address=options.bind_address(lst.gateway_namespace, lst.gateway_name), port_value=lst.port
            )
        ),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager", typed_config=_any(hcm)
                    )
                ]
            )
        ],
    )
    out.per_connection_buffer_limit_bytes.value = options.buffer_limit_bytes
    return out


# --- the answers Envoy gives itself -------------------------------------------------------------------------------

# Envoy's own limit on the number of request headers (its default): the size limit is the listener's policy.
MAX_HEADERS_COUNT = 100
PICKER_EJECTION_FAILURES = 2  # failed calls in a row that take a picker replica out of rotation
# The `{placeholder}`s of an EdgeError message -> the Envoy format command that fills them in.
_PLACEHOLDERS = {
    "model": f"%REQ({MODEL_NAME_HEADER})%",
    "pools": f"%METADATA(ROUTE:{ROUTE_METADATA_NAMESPACE}:{ROUTE_POOLS_KEY})%",
    "route": "%ROUTE_NAME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(:PATH)%",
    "reply": "%LOCAL_REPLY_BODY%",
    "details": "%RESPONSE_CODE_DETAILS%",
}
# Which local replies an EdgeError's cause is: (status, response flag or None, CEL condition or None)
_PICKER_ANSWER = "response.code_details.startsWith('poolgate_picker')"  # the picker's own JSON answers (kept)
_CAUSES: dict[str, tuple[int, str | None, str | None]] = {
    "model_not_found": (404, "NR", f"'{MODEL_NAME_HEADER}' in request.headers"),
    "missing_model": (404, "NR", f"request.method == 'POST' && !('{MODEL_NAME_HEADER}' in request.headers)"),
    "route_not_found": (404, "NR", None),
    "picker_unavailable": (503, None, "response.code_details.startsWith('ext_proc_error')"),
    "invalid_backend": (500, "NC", None),
    "rule_not_served": (500, None, "response.code_details == 'direct_response'"),
    "headers_too_large": (431, None, None),
    "malformed_request": (400, None, "response.code_details.startsWith('http1.')"),
}


def _local_replies(errors: tuple[EdgeError, ...]) -> hcm_pb2.LocalReplyConfig:
    """Local-reply mappers that turn each answer Envoy gives itself into its OpenAI-style JSON error."""
    config = hcm_pb2.LocalReplyConfig()
    for error in errors:
        status, flag, condition = _CAUSES[error.cause]
        filters = [
            access_log_pb2.AccessLogFilter(
                status_code_filter=access_log_pb2.StatusCodeFilter(
                    comparison=access_log_pb2.ComparisonFilter(
                        op=access_log_pb2.ComparisonFilter.EQ,
                        value=base_pb2.RuntimeUInt32(default_value=status, runtime_key="poolgate.local_reply"),
                    )
                )
            )
        ]
        if flag:
            filters.append(
                access_log_pb2.AccessLogFilter(response_flag_filter=access_log_pb2.ResponseFlagFilter(flags=[flag]))
            )
        if condition:
            expression = cel_pb2.ExpressionFilter(expression=condition)
            filters.append(
                access_log_pb2.AccessLogFilter(
                    extension_filter=access_log_pb2.ExtensionFilter(
                        name="envoy.access_loggers.extension_filters.cel", typed_config=_any(expression)
                    )
                )
            )
        both = access_log_pb2.AccessLogFilter(and_filter=access_log_pb2.AndFilter(filters=filters))
        mapper = hcm_pb2.ResponseMapper(filter=both if len(filters) > 1 else filters[0])
        mapper.status_code.value = error.status
        body = json_format.ParseDict(_error_body(error), struct_pb2.Struct())
        mapper.body_format_override.json_format.CopyFrom(body)
        config.mappers.append(mapper)
    return config


def _error_body(error: EdgeError) -> dict:
    """The JSON body of an edge error, with Envoy format commands where the message names the request."""
    message = error.message.format(**_PLACEHOLDERS)
    return {"error": {"message": message, "type": error.error_type, "param": error.param, "code": error.code}}


def _strip_headers(model_routing: bool) -> extension_pb2.TypedExtensionConfig:
    headers = GATEWAY_ONLY_HEADERS + (MODEL_ROUTER_ONLY_HEADERS if model_routing else ())
    mutation = header_mutation_pb2.HeaderMutation(
        mutations=[mutation_rules_pb2.HeaderMutation(remove=h) for h in headers]
    )
    return extension_pb2.TypedExtensionConfig(name="poolgate.strip_picker_headers", typed_config=_any(mutation))


def _grpc_service(cluster: str, timeout_s: float, metadata: dict[str, str]) -> grpc_service_pb2.GrpcService:
    service = grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster), timeout=_duration(timeout_s)
    )
    for key, value in metadata.items():
        service.initial_metadata.append(base_pb2.HeaderValue(key=key, value=value))
    return service


def _processing_mode(policy: CalloutPolicy) -> processing_mode_pb2.ProcessingMode:
    """What Envoy sends an ext_proc service, as the policy decided."""
    mode = processing_mode_pb2.ProcessingMode

    def part(send: bool) -> processing_mode_pb2.ProcessingMode.HeaderSendMode.ValueType:
        return mode.SEND if send else mode.SKIP

    return mode(
        request_header_mode=part(policy.request_headers),
        request_body_mode=mode.BodySendMode.Value(policy.request_body),
        request_trailer_mode=part(policy.request_trailers),
        response_header_mode=part(policy.response_headers),
        response_body_mode=mode.BodySendMode.Value(policy.response_body),
        response_trailer_mode=part(policy.response_trailers),
    )


def _endpoint_picker(default_cluster: str, policy: CalloutPolicy) -> ext_proc_pb2.ExternalProcessor:
    """An ext_proc filter calling pickers: the endpoint-picker filter, or the response observer (observe-only). On its
    own it sends the picker nothing; each route that forwards to a pool overrides what to send and to which picker.
    (It cannot be disabled and enabled per route instead: Envoy decides which filters run from the route matched
    first, before the model router has set X-Gateway-Model-Name.)"""
    config = ext_proc_pb2.ExternalProcessor(
        grpc_service=_grpc_service(default_cluster, policy.timeout_s, {}),
        failure_mode_allow=policy.failure_mode_allow,
        observability_mode=policy.observe_only,
        processing_mode=_processing_mode(policy),
        message_timeout=_duration(policy.timeout_s),
        metadata_options=ext_proc_pb2.MetadataOptions(
            forwarding_namespaces=ext_proc_pb2.MetadataOptions.MetadataNamespaces(
                untyped=[LB_METADATA_NAMESPACE, SUBSET_HINT_NAMESPACE]
            ),
            receiving_namespaces=ext_proc_pb2.MetadataOptions.MetadataNamespaces(untyped=[LB_METADATA_NAMESPACE]),
        ),
        route_cache_action=ext_proc_pb2.ExternalProcessor.RETAIN,
        status_on_error=http_status_pb2.HttpStatus(code=http_status_pb2.ServiceUnavailable),
    )
    return config


def _model_router(policy: CalloutPolicy, models: ir.ModelList | None) -> ext_proc_pb2.ExternalProcessor:
    """The body-based model router: reads `model` from the body, sets X-Gateway-Model-Name, re-picks the route; and
    answers `GET /v1/models` with the models of the listener's pools (gRPC metadata MODEL_LIST_METADATA_KEY)."""
    metadata = {CALLOUT_METADATA_KEY: MODEL_ROUTER}
    if models is not None:
        metadata[MODEL_LIST_METADATA_KEY] = model_list_json(models)
    return ext_proc_pb2.ExternalProcessor(
        grpc_service=_grpc_service(naming.MODEL_ROUTER_CLUSTER, policy.timeout_s, metadata),
        failure_mode_allow=policy.failure_mode_allow,
        processing_mode=_processing_mode(policy),
        message_timeout=_duration(policy.timeout_s),
        route_cache_action=ext_proc_pb2.ExternalProcessor.CLEAR,
        status_on_error=http_status_pb2.HttpStatus(code=http_status_pb2.ServiceUnavailable),
    )


def model_list_json(models: ir.ModelList) -> str:
    """The model list as the model router reads it: {pool: {"endpoints": ["host:port", ...], "aliases": [...]}}."""
    pools = {
        source.pool: {"endpoints": [f"{a.host}:{a.port}" for a in source.addresses], "aliases": list(source.aliases)}
        for source in models.sources
    }
    return json.dumps(pools, separators=(",", ":"))


def _picker_override(call: ir.PickerCall | None) -> ext_proc_pb2.ExtProcPerRoute:
    """Per route (or weighted cluster): call the pool's own picker, naming the pool, with the pool's failure mode
    (and telling it when an observer call follows with the response); or, for a backend without a picker next to
    pools that have one, do not call any."""
    if call is None:
        return ext_proc_pb2.ExtProcPerRoute(disabled=True)
    metadata = {POOL_METADATA_KEY: call.pool}
    if call.observer is not None:
        metadata[CALLOUT_METADATA_KEY] = PICK_REQUEST
    return _callout_override(call.cluster, call.policy, metadata)


def _observer_override(call: ir.PickerCall | None) -> ext_proc_pb2.ExtProcPerRoute:
    """Per route (or weighted cluster): have the pool's picker observe the response, or not at all."""
    if call is None or call.observer is None:
        return ext_proc_pb2.ExtProcPerRoute(disabled=True)
    return _callout_override(
        call.cluster, call.observer, {POOL_METADATA_KEY: call.pool, CALLOUT_METADATA_KEY: OBSERVE_RESPONSE}
    )


def _callout_override(cluster: str, policy: CalloutPolicy, metadata: dict[str, str]) -> ext_proc_pb2.ExtProcPerRoute:
    overrides = ext_proc_pb2.ExtProcOverrides(
        grpc_service=_grpc_service(cluster, policy.timeout_s, metadata),
        processing_mode=_processing_mode(policy),
    )
    overrides.failure_mode_allow.value = policy.failure_mode_allow
    return ext_proc_pb2.ExtProcPerRoute(overrides=overrides)


def _picker_filters(config, call: ir.PickerCall | None, observed: bool) -> None:
    """Set the picker filters' per-route configuration of a route or weighted cluster (`typed_per_filter_config`)."""
    config[EPP_FILTER].CopyFrom(_any(_picker_override(call)))
    if observed:
        config[RESPONSE_OBSERVER_FILTER].CopyFrom(_any(_observer_override(call)))


# --- routes -------------------------------------------------------------------------------------------------------


def route_configuration(lst: ir.Listener) -> route_pb2.RouteConfiguration:
    """The listener's routes: one virtual host per hostname, routes in Gateway API precedence."""
    config = route_pb2.RouteConfiguration(name=lst.name)
    config.validate_clusters.value = False  # invalid backends name an undefined cluster on purpose (-> 500)
    for vh in lst.virtual_hosts:
        config.virtual_hosts.append(
            route_components_pb2.VirtualHost(
                name=f"{lst.name}/{vh.name}", domains=list(vh.domains), routes=[_route(r) for r in vh.routes]
            )
        )
    return config


def _string_match(kind: str, value: str) -> string_pb2.StringMatcher:
    if kind == "RegularExpression":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value))
    return string_pb2.StringMatcher(exact=value)


def _route_match(match: ir.Match) -> route_components_pb2.RouteMatch:
    out = route_components_pb2.RouteMatch()
    if match.path_type == "Exact":
        out.path = match.path
    elif match.path_type == "RegularExpression":
        out.safe_regex.regex = match.path
    elif match.path == "/" or match.path.endswith("/"):
        out.prefix = match.path
    else:
        out.path_separated_prefix = match.path
    for kind, name, value in match.headers:
        out.headers.append(route_components_pb2.HeaderMatcher(name=name, string_match=_string_match(kind, value)))
    if match.method:
        out.headers.append(
            route_components_pb2.HeaderMatcher(name=":method", string_match=_string_match("Exact", match.method))
        )
    for kind, name, value in match.query_params:
        out.query_parameters.append(
            route_components_pb2.QueryParameterMatcher(name=name, string_match=_string_match(kind, value))
        )
    return out


def _header_options(mods: ir.HeaderMods) -> list[base_pb2.HeaderValueOption]:
    action = base_pb2.HeaderValueOption
    out = [
        action(header=base_pb2.HeaderValue(key=k, value=v), append_action=action.OVERWRITE_IF_EXISTS_OR_ADD)
        for k, v in mods.set
    ]
    out += [
        action(header=base_pb2.HeaderValue(key=k, value=v), append_action=action.APPEND_IF_EXISTS_OR_ADD)
        for k, v in mods.add
    ]
    return out


def _route(route: ir.Route) -> route_components_pb2.Route:
    out = route_components_pb2.Route(name=route.name, match=_route_match(route.match))
    out.request_headers_to_add.extend(_header_options(route.request_headers))
    out.request_headers_to_remove.extend(route.request_headers.remove)
    out.response_headers_to_add.extend(_header_options(route.response_headers))
    out.response_headers_to_remove.extend(route.response_headers.remove)
    action = route.action
    if isinstance(action, ir.DirectResponse):
        out.direct_response.status = action.status
        out.direct_response.body.inline_string = action.body
    elif isinstance(action, ir.Redirect):
        _redirect(out.redirect, action, route.match)
    else:
        _forward(out, action, route.match)
    return out


def _redirect(out: route_components_pb2.RedirectAction, action: ir.Redirect, match: ir.Match) -> None:
    codes = {
        301: out.MOVED_PERMANENTLY,
        302: out.FOUND,
        303: out.SEE_OTHER,
        307: out.TEMPORARY_REDIRECT,
        308: out.PERMANENT_REDIRECT,
    }
    out.response_code = codes[action.status_code]
    if action.scheme:
        out.scheme_redirect = action.scheme
    if action.hostname:
        out.host_redirect = action.hostname
    if action.port:
        out.port_redirect = action.port
    if action.path_rewrite:
        kind, value = action.path_rewrite
        if kind == "ReplaceFullPath":
            out.path_redirect = value
        else:
            out.regex_rewrite.CopyFrom(_prefix_rewrite(match.path, value))


def _prefix_rewrite(prefix: str, replacement: str) -> regex_pb2.RegexMatchAndSubstitute:
    """Replace a matched path prefix (up to a segment boundary) the way Gateway API defines it:
    /foo -> /bar turns /foo/x into /bar/x; /foo -> / turns /foo/x into /x."""
    stem = re.escape(prefix.rstrip("/"))
    kept = replacement.rstrip("/")
    if kept:
        pattern, substitution = f"^{stem}(/.*)?$", kept + r"\1"
    else:
        pattern, substitution = f"^{stem}/*(.*)$", r"/\1"
    return regex_pb2.RegexMatchAndSubstitute(pattern=regex_pb2.RegexMatcher(regex=pattern), substitution=substitution)


def _forward(out: route_components_pb2.Route, action: ir.Forward, match: ir.Match) -> None:
    route = out.route
    route.timeout.CopyFrom(_duration(action.timeout_s))
    if action.host_rewrite:
        route.host_rewrite_literal = action.host_rewrite
    if action.path_rewrite:
        kind, value = action.path_rewrite
        if kind == "ReplaceFullPath":
            route.regex_rewrite.CopyFrom(
                regex_pb2.RegexMatchAndSubstitute(pattern=regex_pb2.RegexMatcher(regex="^/.*$"), substitution=value)
            )
        else:
            route.regex_rewrite.CopyFrom(_prefix_rewrite(match.path, value))
    backends = action.backends
    pickers = [b.picker for b in backends if b.picker]
    observed = any(p.observer is not None for p in pickers)  # the listener has the response-observer filter
    if pickers:
        pools = ",".join(dict.fromkeys(p.pool for p in pickers))
        out.metadata.filter_metadata[ROUTE_METADATA_NAMESPACE].update({ROUTE_POOLS_KEY: pools})
        # The route calls its (first) pool's picker; with weighted pools each cluster names its own picker below.
        _picker_filters(out.typed_per_filter_config, pickers[0], observed)
    if action.retry is not None:
        route.retry_policy.retry_on = ",".join(action.retry.retry_on)
        route.retry_policy.num_retries.value = action.retry.num_retries
    if action.per_try_timeout_s:
        route.retry_policy.per_try_timeout.CopyFrom(_duration(action.per_try_timeout_s))
    single = backends[0]
    if len(backends) == 1 and not (single.request_headers or single.response_headers):
        route.cluster = single.cluster
        return
    route.cluster_not_found_response_code = route_components_pb2.RouteAction.INTERNAL_SERVER_ERROR
    for backend in backends:
        weight = route_components_pb2.WeightedCluster.ClusterWeight(
            name=backend.cluster or naming.INVALID_BACKEND_CLUSTER
        )
        weight.weight.value = backend.weight
        weight.request_headers_to_add.extend(_header_options(backend.request_headers))
        weight.request_headers_to_remove.extend(backend.request_headers.remove)
        weight.response_headers_to_add.extend(_header_options(backend.response_headers))
        weight.response_headers_to_remove.extend(backend.response_headers.remove)
        if pickers:
            _picker_filters(weight.typed_per_filter_config, backend.picker, observed)
        route.weighted_clusters.clusters.append(weight)


# --- clusters -----------------------------------------------------------------------------------------------------


def _typed_policy(name: str, message: Message) -> cluster_pb2.LoadBalancingPolicy.Policy:
    return cluster_pb2.LoadBalancingPolicy.Policy(
        typed_extension_config=extension_pb2.TypedExtensionConfig(name=name, typed_config=_any(message))
    )


def _least_request() -> cluster_pb2.LoadBalancingPolicy:
    return cluster_pb2.LoadBalancingPolicy(
        policies=[_typed_policy("envoy.load_balancing_policies.least_request", least_request_pb2.LeastRequest())]
    )


def _override_host() -> cluster_pb2.LoadBalancingPolicy:
    """Send each request to the endpoint the picker chose (header or envoy.lb metadata, first reachable entry of
    its list), falling back to least-request when the picker gave none: only pool members are ever reachable."""
    source = override_host_pb2.OverrideHost.OverrideHostSource
    config = override_host_pb2.OverrideHost(
        override_host_sources=[
            source(header=DESTINATION_HEADER),
            source(metadata={"key": LB_METADATA_NAMESPACE, "path": [{"key": DESTINATION_HEADER}]}),
        ],
        fallback_policy=_least_request(),
    )
    return cluster_pb2.LoadBalancingPolicy(
        policies=[_typed_policy("envoy.load_balancing_policies.override_host", config)]
    )


def _report_served_endpoint(cluster_json: dict) -> None:
    """Have the override_host policy write the endpoint that served into envoy.lb metadata, which the picker reads
    on the response path. `selected_host_key` (Envoy >= 1.38) is newer than the xds-protos release, so it is added to
    the JSON form; Envoy checks it against its own descriptors when it loads the configuration."""
    policy = cluster_json["load_balancing_policy"]["policies"][0]["typed_extension_config"]["typed_config"]
    policy["selected_host_key"] = {"key": LB_METADATA_NAMESPACE, "path": [{"key": SERVED_KEY}]}


def cluster(c: ir.Cluster, options: TranslateOptions) -> cluster_pb2.Cluster:
    """An Envoy cluster for a pool, a Service, a picker or the model router."""
    out = cluster_pb2.Cluster(
        name=c.name,
        type=cluster_pb2.Cluster.STRICT_DNS if c.dns else cluster_pb2.Cluster.STATIC,
        connect_timeout=_duration(options.connect_timeout_s),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=c.name,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(
                                address=address_pb2.Address(
                                    socket_address=address_pb2.SocketAddress(address=a.host, port_value=a.port)
                                )
                            )
                        )
                        for a in c.addresses
                    ]
                )
            ],
        ),
    )
    if c.dns:
        out.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
    if c.role == "pool":
        out.load_balancing_policy.CopyFrom(_override_host() if c.override_host else _least_request())
        out.per_connection_buffer_limit_bytes.value = options.buffer_limit_bytes
    if c.role == "picker":
        out.outlier_detection.CopyFrom(_picker_outlier_detection())
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds()
    thresholds.max_connections.value = c.limits.max_connections
    thresholds.max_pending_requests.value = c.limits.max_pending_requests
    thresholds.max_requests.value = c.limits.max_requests
    thresholds.max_retries.value = c.limits.max_retries
    out.circuit_breakers.thresholds.append(thresholds)
    if c.http2:
        protocol = http_protocol_options_pb2.HttpProtocolOptions(
            explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
            )
        )
        out.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].CopyFrom(
            _any(protocol)
        )
    if c.tls:
        out.transport_socket.name = "envoy.transport_sockets.tls"
        out.transport_socket.typed_config.Pack(_upstream_tls(c, options))
    return out


def _picker_outlier_detection() -> outlier_detection_pb2.OutlierDetection:
    """Take a picker replica out of rotation after two failed calls in a row (a refused or reset connection counts
    as a 5xx), for 5 s and longer each time it fails again, so that the other replicas take its requests."""
    return outlier_detection_pb2.OutlierDetection(
        consecutive_5xx=wrappers_pb2.UInt32Value(value=PICKER_EJECTION_FAILURES),
        interval=_duration(1.0),
        base_ejection_time=_duration(5.0),
        max_ejection_percent=wrappers_pb2.UInt32Value(value=100),
    )


def _upstream_tls(c: ir.Cluster, options: TranslateOptions) -> tls_pb2.UpstreamTlsContext:
    """TLS to a picker: HTTP/2 by ALPN, SNI the Service's name; with a CA bundle, the certificate must chain to it
    and name the Service (see TranslateOptions.picker_ca)."""
    context = tls_pb2.CommonTlsContext(alpn_protocols=["h2"])
    if options.picker_ca:
        short = c.server_name.removesuffix(f".{options.cluster_domain}")
        context.validation_context.trusted_ca.filename = options.picker_ca
        for name in dict.fromkeys((c.server_name, short)):
            context.validation_context.match_typed_subject_alt_names.append(
                common_pb2.SubjectAltNameMatcher(
                    san_type=common_pb2.SubjectAltNameMatcher.DNS, matcher=string_pb2.StringMatcher(exact=name)
                )
            )
    return tls_pb2.UpstreamTlsContext(sni=c.server_name, common_tls_context=context)


# --- whole configurations -----------------------------------------------------------------------------------------


def listener_json(lst: ir.Listener, model: ir.IR, options: TranslateOptions) -> dict:
    """A listener as the JSON object Envoy loads. The error bodies' fields keep their order (protobuf's Struct
    does not keep one), so the same input gives the same bytes in every process."""
    out = to_dict(listener(lst, model, options))
    hcm = out["filter_chains"][0]["filters"][0]["typed_config"]
    for mapper, error in zip(hcm.get("local_reply_config", {}).get("mappers", []), lst.edge_errors, strict=True):
        mapper["body_format_override"]["json_format"] = _error_body(error)
    return out


def cluster_json(c: ir.Cluster, options: TranslateOptions) -> dict:
    """A cluster as the JSON object Envoy loads."""
    out = to_dict(cluster(c, options))
    if c.override_host:
        _report_served_endpoint(out)
    return out


def resources(model: ir.IR, options: TranslateOptions) -> tuple[list[dict], list[dict]]:
    """The listeners and clusters of the IR as Envoy JSON objects."""
    listeners = [listener_json(lst, model, options) for lst in model.listeners]
    clusters = [cluster_json(c, options) for _, c in sorted(model.clusters.items())]
    return listeners, clusters


def _base_bootstrap(options: TranslateOptions) -> dict:
    return {
        "node": {"id": "poolgate", "cluster": "poolgate"},
        "admin": {
            "address": {
                "socket_address": {"address": options.admin_address.host, "port_value": options.admin_address.port}
            }
        },
    }


def bootstrap(model: ir.IR, options: TranslateOptions) -> dict:
    """A complete standalone Envoy bootstrap (static listeners and clusters)."""
    listeners, clusters = resources(model, options)
    out = _base_bootstrap(options)
    out["static_resources"] = {"listeners": listeners, "clusters": clusters}
    return out


LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def dynamic_bootstrap(config_dir: str, options: TranslateOptions) -> dict:
    """A bootstrap that loads listeners and clusters from `config_dir`/lds.yaml and cds.yaml and reloads them when
    the directory is swapped atomically (how a mounted ConfigMap or `poolgate up` updates Envoy without a restart)."""

    def source(file: str) -> dict:
        return {
            "path_config_source": {"path": f"{config_dir}/{file}", "watched_directory": {"path": config_dir}},
            "resource_api_version": "V3",
        }

    out = _base_bootstrap(options)
    out["dynamic_resources"] = {"lds_config": source("lds.yaml"), "cds_config": source("cds.yaml")}
    return out


def discovery_files(model: ir.IR, options: TranslateOptions) -> dict[str, dict]:
    """The contents of lds.yaml and cds.yaml for `dynamic_bootstrap`."""
    listeners, clusters = resources(model, options)
    return {
        "lds.yaml": {"resources": [{"@type": LISTENER_TYPE, **item} for item in listeners]},
        "cds.yaml": {"resources": [{"@type": CLUSTER_TYPE, **item} for item in clusters]},
    }

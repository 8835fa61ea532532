"""Lowering to the IR and emitting Envoy configuration: each behaviour the Envoy config must have, and every
generated bootstrap checked by the real Envoy binary."""

from __future__ import annotations

import json

from poolgate.api.builders import (
    basic,
    build,
    gateway,
    gateway_class,
    grant,
    pod,
    pool,
    pool_ref,
    route,
    service,
)
from poolgate.api.contract import MANAGED_PICKER_ANNOTATION
from poolgate.translate import TranslateOptions, translate, xds
from poolgate.translate.output import swap_directory


def clusters_by_name(bootstrap: dict) -> dict[str, dict]:
    return {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}


def hcm(bootstrap: dict, index: int = 0) -> dict:
    return bootstrap["static_resources"]["listeners"][index]["filter_chains"][0]["filters"][0]["typed_config"]


def routes(bootstrap: dict) -> list[dict]:
    return [r for vh in hcm(bootstrap)["route_config"]["virtual_hosts"] for r in vh.get("routes", [])]


def endpoints(cluster: dict) -> list[str]:
    return [
        f"{e['endpoint']['address']['socket_address']['address']}:{e['endpoint']['address']['socket_address']['port_value']}"
        for group in cluster["load_assignment"].get("endpoints", [])
        for e in group.get("lb_endpoints", [])
    ]


def test_pool_cluster_has_ready_pod_endpoints_and_override_host(envoy_validate):
    objects = basic(pod("p2", "10.0.0.3", ready=False), pod("other", "10.0.0.9", app="other"))
    boot = translate(objects).bootstrap()
    envoy_validate(boot)
    cluster = clusters_by_name(boot)["poolgate/pool/default/pool"]
    assert endpoints(cluster) == ["10.0.0.1:8000", "10.0.0.2:8000"]
    policy = cluster["load_balancing_policy"]["policies"][0]["typed_extension_config"]
    assert policy["name"] == "envoy.load_balancing_policies.override_host"
    config = policy["typed_config"]
    assert config["@type"].endswith("override_host.v3.OverrideHost")
    sources = config["override_host_sources"]
    assert sources[0] == {"header": "x-gateway-destination-endpoint"}
    assert sources[1]["metadata"] == {"key": "envoy.lb", "path": [{"key": "x-gateway-destination-endpoint"}]}
    assert "fallback_policy" in config
    assert config["selected_host_key"] == {
        "key": "envoy.lb",
        "path": [{"key": "x-gateway-destination-endpoint-served"}],
    }


def test_three_target_ports_and_active_ports_annotation(envoy_validate):
    objects = build(
        gateway_class(),
        gateway(),
        route(),
        pool(ports=(8000, 8001, 8002)),
        service(),
        pod("p0", "10.0.0.1"),
        pod("p1", "10.0.0.2", annotations={"inference.networking.k8s.io/active-ports": "8000,8002"}),
    )
    boot = translate(objects).bootstrap()
    envoy_validate(boot)
    assert endpoints(clusters_by_name(boot)["poolgate/pool/default/pool"]) == [
        "10.0.0.1:8000",
        "10.0.0.1:8001",
        "10.0.0.1:8002",
        "10.0.0.2:8000",
        "10.0.0.2:8002",
    ]


def test_port_mismatched_backend_ref_is_ignored(envoy_validate):
    objects = build(
        gateway_class(),
        gateway(),
        route(rules=[{"backendRefs": [pool_ref("pool", port=1234)]}]),
        pool(),
        service(),
        pod("p0", "10.0.0.1"),
    )
    boot = translate(objects).bootstrap()
    envoy_validate(boot)
    assert endpoints(clusters_by_name(boot)["poolgate/pool/default/pool"]) == ["10.0.0.1:8000"]


def test_picker_filter_sends_nothing_by_default_and_each_route_names_its_pool(envoy_validate):
    objects = build(
        gateway_class(),
        gateway(),
        route(
            rules=[
                {"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}], "backendRefs": [pool_ref("pool")]},
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/plain"}}],
                    "backendRefs": [{"name": "web", "port": 80}],
                },
            ]
        ),
        pool(),
        service(),
        service("web", ip="127.0.0.40", port=80),
    )
    boot = translate(objects).bootstrap()
    envoy_validate(boot)
    filters = hcm(boot)["http_filters"]
    assert [f["name"] for f in filters] == ["poolgate.endpoint_picker", "envoy.filters.http.router"]
    # on and doing nothing by default: a route re-picked after the model router must still reach its picker
    assert "disabled" not in filters[0]
    base_mode = filters[0]["typed_config"]["processing_mode"]
    assert base_mode["request_header_mode"] == "SKIP" and base_mode["response_header_mode"] == "SKIP"
    by_path = {r["match"].get("path_separated_prefix"): r for r in routes(boot)}
    overrides = by_path["/v1"]["typed_per_filter_config"]["poolgate.endpoint_picker"]["overrides"]
    assert overrides["processing_mode"]["request_body_mode"] == "FULL_DUPLEX_STREAMED"
    assert overrides["processing_mode"]["request_trailer_mode"] == "SEND"
    assert overrides["grpc_service"]["envoy_grpc"]["cluster_name"] == "poolgate/picker/default/epp/9002"
    assert overrides["grpc_service"]["initial_metadata"] == [{"key": "x-poolgate-pool", "value": "default/pool"}]
    assert overrides["failure_mode_allow"] is False
    assert "typed_per_filter_config" not in by_path["/plain"]
    assert by_path["/plain"]["route"]["cluster"] == "poolgate/service/default/web/80"
    assert endpoints(clusters_by_name(boot)["poolgate/service/default/web/80"]) == ["127.0.0.40:80"]


def test_client_sent_destination_header_is_stripped_before_any_filter():
    boot = translate(basic()).bootstrap()
    early = hcm(boot)["early_header_mutation_extensions"][0]["typed_config"]["mutations"]
    removed = {m["remove"] for m in early}
    assert {"x-gateway-destination-endpoint", "x-gateway-destination-endpoint-subset"} <= removed


def test_fail_open_and_fail_close(envoy_validate):
    objects = build(
        gateway_class(),
        gateway(),
        route(
            rules=[
                {"matches": [{"path": {"value": "/open"}}], "backendRefs": [pool_ref("open")]},
                {"matches": [{"path": {"value": "/closed"}}], "backendRefs": [pool_ref("closed")]},
            ]
        ),
        pool("open", failure_mode="FailOpen"),
        pool("closed"),
        service(),
    )
    boot = translate(objects).bootstrap()
    envoy_validate(boot)
    by_path = {r["match"].get("path_separated_prefix"): r for r in routes(boot)}
    open_overrides = by_path["/open"]["typed_per_filter_config"]["poolgate.endpoint_picker"]["overrides"]
    closed_overrides = by_path["/closed"]["typed_per_filter_config"]["poolgate.endpoint_picker"]["overrides"]
    assert open_overrides["failure_mode_allow"] is True
    # Envoy can fail open only while the request body is buffered, so FailOpen pools buffer it
    assert open_overrides["processing_mode"]["request_body_mode"] == "BUFFERED"
    assert closed_overrides["failure_mode_allow"] is False
    assert closed_overrides["processing_mode"]["request_body_mode"] == "FULL_DUPLEX_STREAMED"
    base = hcm(boot)["http_filters"][0]["typed_config"]
    assert base["metadata_options"]["receiving_namespaces"]["untyped"] == ["envoy.lb"]


def test_output_is_byte_identical_across_processes(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    outputs = {
        subprocess.run(
            [sys.executable, "-m", "poolgate.cli", "translate", "-f", "examples/weighted-pools.yaml"],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
        ).stdout
        for _ in range(3)
    }
    assert len(outputs) == 1


def test_buffered_body_mode(envoy_validate):
    boot = translate(basic(), TranslateOptions(body_mode="BUFFERED")).bootstrap()
    envoy_validate(boot)
    overrides = routes(boot)[0]["typed_per_filter_config"]["poolgate.endpoint_picker"]["overrides"]
    assert overrides["processing_mode"]["request_body_mode"] == "BUFFERED"
    assert boot["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"] == 32 * 1024 * 1024


def test_h2c_pool_speaks_http2_to_pods(envoy_validate):
    objects = build(gateway_class(), gateway(), route(), pool(h2c=True), service(), pod("p0", "10.0.0.1"))
    boot = translate(objects).bootstrap()
    envoy_validate(boot)
    options = clusters_by_name(boot)["poolgate/pool/default/pool"]["typed_extension_protocol_options"]
    assert (
        "http2_protocol_options"
        in options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
    )


def test_weighted_pools_each_call_their_own_picker(envoy_validate):
    objects = build(
        gateway_class(),
        gateway(),
        route(rules=[{"backendRefs": [pool_ref("a", weight=70), pool_ref("b", weight=30)]}]),
        pool("a", picker="epp-a"),
        pool("b", picker="epp-b"),
        service("epp-a"),
        service("epp-b", ip="127.0.0.3"),
    )
    boot = translate(objects).bootstrap()
    envoy_validate(boot)
    action = routes(boot)[0]["route"]
    weights = {c["name"]: c["weight"] for c in action["weighted_clusters"]["clusters"]}
    assert weights == {"poolgate/pool/default/a": 70, "poolgate/pool/default/b": 30}
    pickers = {
        c["name"]: c["typed_per_filter_config"]["poolgate.endpoint_picker"]["overrides"]["grpc_service"]
        for c in action["weighted_clusters"]["clusters"]
    }
    assert pickers["poolgate/pool/default/a"]["envoy_grpc"]["cluster_name"] == "poolgate/picker/default/epp-a/9002"
    assert pickers["poolgate/pool/default/b"]["envoy_grpc"]["cluster_name"] == "poolgate/picker/default/epp-b/9002"
    assert pickers["poolgate/pool/default/b"]["initial_metadata"] == [{"key": "x-poolgate-pool", "value": "default/b"}]


def test_missing_pool_and_missing_picker_answer_500(envoy_validate):
    objects = build(
        gateway_class(),
        gateway(),
        route(
            rules=[
                {"matches": [{"path": {"value": "/missing"}}], "backendRefs": [pool_ref("nope")]},
                {"matches": [{"path": {"value": "/nopicker"}}], "backendRefs": [pool_ref("pool")]},
                {
                    "matches": [{"path": {"value": "/half"}}],
                    "backendRefs": [pool_ref("nope", weight=50), pool_ref("ok", weight=50)],
                },
            ]
        ),
        pool(),
        pool("ok", picker=None),
    )
    boot = translate(objects).bootstrap()
    envoy_validate(boot)
    by_path = {r["match"].get("path_separated_prefix"): r for r in routes(boot)}
    assert by_path["/missing"]["direct_response"]["status"] == 500
    assert by_path["/nopicker"]["direct_response"]["status"] == 500
    half = by_path["/half"]["route"]
    assert half["cluster_not_found_response_code"] == "INTERNAL_SERVER_ERROR"
    assert [c["name"] for c in half["weighted_clusters"]["clusters"]] == [
        "poolgate/invalid-backend",
        "poolgate/pool/default/ok",
    ]
    assert "poolgate/invalid-backend" not in clusters_by_name(boot)


def test_pool_without_picker_uses_least_request_and_no_ext_proc(envoy_validate):
    objects = build(gateway_class(), gateway(), route(), pool(picker=None), pod("p0", "10.0.0.1"))
    boot = translate(objects).bootstrap()
    envoy_validate(boot)
    names = [f["name"] for f in hcm(boot)["http_filters"]]
    assert names == ["envoy.filters.http.router"]
    policy = clusters_by_name(boot)["poolgate/pool/default/pool"]["load_balancing_policy"]["policies"][0]
    assert policy["typed_extension_config"]["name"] == "envoy.load_balancing_policies.least_request"


def test_cross_namespace_backend_without_grant_is_not_routed(envoy_validate):
    base = [
        gateway_class(),
        gateway(),
        route(rules=[{"backendRefs": [pool_ref("pool", namespace="models")]}]),
        pool(namespace="models"),
        service(namespace="models"),
    ]
    denied = translate(build(*base)).bootstrap()
    envoy_validate(denied)
    assert routes(denied)[0]["direct_response"]["status"] == 500
    allowed = translate(build(*base, grant("models", "default"))).bootstrap()
    envoy_validate(allowed)
    assert routes(allowed)[0]["route"]["cluster"] == "poolgate/pool/models/pool"


def test_model_name_routing_runs_the_model_router_first(envoy_validate):
    def rule(model, pool_name):
        return {
            "matches": [{"headers": [{"name": "X-Gateway-Model-Name", "value": model}]}],
            "backendRefs": [pool_ref(pool_name)],
        }

    objects = build(
        gateway_class(),
        gateway(),
        route(rules=[rule("llama", "a"), rule("qwen", "b")]),
        pool("a"),
        pool("b"),
        service(),
    )
    boot = translate(objects).bootstrap()
    envoy_validate(boot)
    filters = hcm(boot)["http_filters"]
    assert [f["name"] for f in filters] == [
        "poolgate.model_router",
        "poolgate.endpoint_picker",
        "envoy.filters.http.router",
    ]
    router = filters[0]["typed_config"]
    assert router["route_cache_action"] == "CLEAR"
    metadata = {m["key"]: m["value"] for m in router["grpc_service"]["initial_metadata"]}
    assert metadata["x-poolgate-callout"] == "model-router"
    # what GET /v1/models lists: the listener's pools (no endpoints in this snapshot), no rewrite names
    assert json.loads(metadata["x-poolgate-model-list"]) == {
        "default/a": {"endpoints": [], "aliases": []},
        "default/b": {"endpoints": [], "aliases": []},
    }
    assert filters[1]["typed_config"]["route_cache_action"] == "RETAIN"
    removed = {m["remove"] for m in hcm(boot)["early_header_mutation_extensions"][0]["typed_config"]["mutations"]}
    assert "x-gateway-model-name" in removed
    matchers = [r["match"]["headers"][0] for r in routes(boot)]
    assert matchers == [
        {"name": "x-gateway-model-name", "string_match": {"exact": "llama"}},
        {"name": "x-gateway-model-name", "string_match": {"exact": "qwen"}},
    ]
    assert "poolgate/model-router" in clusters_by_name(boot)


def test_route_precedence_exact_then_longest_prefix_then_headers():
    rules = [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [pool_ref("pool")]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}], "backendRefs": [pool_ref("pool")]},
        {
            "matches": [
                {"path": {"type": "PathPrefix", "value": "/v1"}, "headers": [{"name": "x-tier", "value": "gold"}]}
            ],
            "backendRefs": [pool_ref("pool")],
        },
        {"matches": [{"path": {"type": "Exact", "value": "/v1/models"}}], "backendRefs": [pool_ref("pool")]},
    ]
    objects = build(gateway_class(), gateway(), route(rules=rules), pool(), service())
    order = [r["name"].split("/rule/")[1] for r in routes(translate(objects).bootstrap())]
    assert order == ["3/match/0", "2/match/0", "1/match/0", "0/match/0"]


def test_hostnames_make_virtual_hosts_with_listener_precedence(envoy_validate):
    listeners = [
        {"name": "any", "port": 8080, "protocol": "HTTP"},
        {"name": "wild", "port": 8080, "protocol": "HTTP", "hostname": "*.example.com"},
    ]
    objects = build(
        gateway_class(),
        gateway(listeners=listeners),
        route("on-wild", parents=[{"name": "gw", "sectionName": "wild"}], hostnames=["chat.example.com"]),
        route("on-any", parents=[{"name": "gw", "sectionName": "any"}]),
        pool(),
        service(),
    )
    boot = translate(objects).bootstrap()
    envoy_validate(boot)
    assert len(boot["static_resources"]["listeners"]) == 1  # both Gateway listeners share port 8080
    vhosts = {
        vh["domains"][0]: [r["name"].split("/rule")[0] for r in vh.get("routes", [])]
        for vh in hcm(boot)["route_config"]["virtual_hosts"]
    }
    assert vhosts == {"chat.example.com": ["default/on-wild"], "*.example.com": [], "*": ["default/on-any"]}


def test_filters_and_timeouts(envoy_validate):
    rules = [
        {
            "matches": [{"path": {"value": "/v1"}}],
            "filters": [
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {"set": [{"name": "x-env", "value": "prod"}], "remove": ["x-debug"]},
                },
                {
                    "type": "URLRewrite",
                    "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/api"}},
                },
            ],
            "backendRefs": [pool_ref("pool")],
            "timeouts": {"request": "5m", "backendRequest": "90s"},
        },
        {
            "matches": [{"path": {"value": "/old"}}],
            "filters": [
                {"type": "RequestRedirect", "requestRedirect": {"hostname": "new.example.com", "statusCode": 308}}
            ],
        },
        {
            "matches": [{"path": {"value": "/cors"}}],
            "filters": [{"type": "CORS", "cors": {"allowOrigins": ["*"]}}],
            "backendRefs": [pool_ref("pool")],
        },
    ]
    objects = build(gateway_class(), gateway(), route(rules=rules), pool(), service())
    translation = translate(objects)
    boot = translation.bootstrap()
    envoy_validate(boot)
    by_path = {r["match"].get("path_separated_prefix"): r for r in routes(boot)}
    v1 = by_path["/v1"]
    assert v1["request_headers_to_add"] == [
        {"header": {"key": "x-env", "value": "prod"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
    ]
    assert v1["request_headers_to_remove"] == ["x-debug"]
    assert v1["route"]["timeout"] == "300s" and v1["route"]["retry_policy"]["per_try_timeout"] == "90s"
    assert v1["route"]["regex_rewrite"]["substitution"] == r"/api\1"
    assert by_path["/old"]["redirect"] == {"host_redirect": "new.example.com", "response_code": "PERMANENT_REDIRECT"}
    assert by_path["/cors"]["direct_response"]["status"] == 500
    status = {s["metadata"]["name"]: s for s in translation.status() if s["kind"] == "HTTPRoute"}
    partially = [c for c in status["route"]["status"]["parents"][0]["conditions"] if c["type"] == "PartiallyInvalid"]
    assert partially and "CORS" in partially[0]["message"]


def test_dns_endpoints_use_the_headless_service(envoy_validate):
    boot = translate(basic(), TranslateOptions(endpoints="dns")).bootstrap()
    envoy_validate(boot)
    cluster = clusters_by_name(boot)["poolgate/pool/default/pool"]
    assert cluster["type"] == "STRICT_DNS"
    assert endpoints(cluster) == ["pool-endpoints.default.svc.cluster.local:8000"]
    picker = clusters_by_name(boot)["poolgate/picker/default/epp/9002"]
    assert endpoints(picker) == ["epp.default.svc.cluster.local:9002"]


def test_dynamic_resources_files(tmp_path, envoy_validate):
    translation = translate(basic())
    files = translation.discovery_files()
    assert [r["@type"] for r in files["lds.yaml"]["resources"]] == [xds.LISTENER_TYPE]
    assert {r["name"] for r in files["cds.yaml"]["resources"]} == {
        "poolgate/pool/default/pool",
        "poolgate/picker/default/epp/9002",
    }
    swap_directory(tmp_path / "xds", files)
    boot = xds.dynamic_bootstrap(str(tmp_path / "xds"), translation.options)
    assert boot["dynamic_resources"]["lds_config"]["path_config_source"]["watched_directory"]["path"] == str(
        tmp_path / "xds"
    )
    envoy_validate(boot)


def test_two_gateways_on_one_port_conflict_unless_bound_apart():
    objects = build(gateway_class(), gateway("a"), gateway("b"))
    assert translate(objects).bind_conflicts() == [
        "Gateway default/b and Gateway default/a both listen on 0.0.0.0:8080"
    ]
    apart = TranslateOptions(bind_addresses={("default", "a"): "127.0.1.1", ("default", "b"): "127.0.1.2"})
    assert translate(objects, apart).bind_conflicts() == []


def test_managed_picker_annotation_implies_the_managed_picker_service(envoy_validate):
    managed = pool(picker=None)
    managed["metadata"]["annotations"] = {
        "poolgate.dev/managed-picker": "true",
        "poolgate.dev/failure-mode": "FailOpen",
    }
    objects = build(gateway_class(), gateway(), route(), managed, service("pool-epp"), pod("p0", "10.0.0.1"))
    boot = translate(objects).bootstrap()
    envoy_validate(boot)
    overrides = routes(boot)[0]["typed_per_filter_config"]["poolgate.endpoint_picker"]["overrides"]
    assert overrides["grpc_service"]["envoy_grpc"]["cluster_name"] == "poolgate/picker/default/pool-epp/9002"
    assert overrides["failure_mode_allow"] is True


REWRITE = {
    "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
    "kind": "InferenceModelRewrite",
    "metadata": {"name": "canary", "namespace": "default"},
    "spec": {
        "poolRef": {"name": "pool"},
        "rules": [{"matches": [{"model": {"type": "Exact", "value": "alias"}}], "targets": [{"modelRewrite": "m"}]}],
    },
}


def test_a_poolgate_picker_picks_on_one_call_and_observes_the_response_on_another(envoy_validate):
    boot = translate(basic(), TranslateOptions(poolgate_pickers=True)).bootstrap()
    envoy_validate(boot)
    filters = {f["name"]: f["typed_config"] for f in hcm(boot)["http_filters"]}
    assert list(filters) == ["poolgate.endpoint_picker", "poolgate.response_observer", "envoy.filters.http.router"]
    observer = filters["poolgate.response_observer"]
    assert observer["observability_mode"] is True and observer["failure_mode_allow"] is True
    assert observer["metadata_options"]["forwarding_namespaces"]["untyped"][0] == "envoy.lb"  # pick id, served
    per_filter = routes(boot)[0]["typed_per_filter_config"]
    picking = per_filter["poolgate.endpoint_picker"]["overrides"]
    assert picking["failure_mode_allow"] is False  # the pool's FailClose stays on the pick
    mode = picking["processing_mode"]
    assert mode["request_body_mode"] == "FULL_DUPLEX_STREAMED"
    assert mode["response_header_mode"] == "SKIP" and mode.get("response_body_mode", "NONE") == "NONE"
    assert {"key": "x-poolgate-callout", "value": "pick-request"} in picking["grpc_service"]["initial_metadata"]
    observing = per_filter["poolgate.response_observer"]["overrides"]
    assert observing["failure_mode_allow"] is True
    assert observing["processing_mode"] == {
        "request_header_mode": "SEND",  # from the request on: a client that leaves early is heard of
        "response_header_mode": "SEND",
        "response_body_mode": "STREAMED",
        "request_trailer_mode": "SKIP",
        "response_trailer_mode": "SEND",
    }
    assert {"key": "x-poolgate-callout", "value": "observe-response"} in observing["grpc_service"]["initial_metadata"]
    assert {"key": "x-poolgate-pool", "value": "default/pool"} in observing["grpc_service"]["initial_metadata"]


def test_a_picker_that_edits_responses_keeps_them_on_the_picking_call(envoy_validate):
    for objects, options in (
        (basic(REWRITE), TranslateOptions(poolgate_pickers=True)),  # maps the rewritten model name back
        (basic(), TranslateOptions(poolgate_pickers=True, picker_edits_responses=True)),
        (basic(), TranslateOptions()),  # a picker that may not be poolgate's knows no observer call
    ):
        boot = translate(objects, options).bootstrap()
        envoy_validate(boot)
        assert [f["name"] for f in hcm(boot)["http_filters"]] == [
            "poolgate.endpoint_picker",
            "envoy.filters.http.router",
        ]
        picking = routes(boot)[0]["typed_per_filter_config"]["poolgate.endpoint_picker"]["overrides"]
        assert picking["processing_mode"]["response_body_mode"] == "FULL_DUPLEX_STREAMED"
        assert [m["key"] for m in picking["grpc_service"]["initial_metadata"]] == ["x-poolgate-pool"]


def test_managed_pickers_observe_responses_only_where_the_translation_knows_poolgate_deploys_them():
    """The hooks deploy managed pools' pickers (`managed_picker_replicas`): those observe responses apart from the
    pick while a single replica runs; `poolgate translate` cannot tell who runs them and keeps the response inline."""
    managed = pool()
    managed["metadata"]["annotations"] = {MANAGED_PICKER_ANNOTATION: "true"}
    objects = build(gateway_class(), gateway(), route(), managed, pod("p0", "10.0.0.1"))

    def filters(options: TranslateOptions) -> list[str]:
        return [f["name"] for f in hcm(translate(objects, options).bootstrap())["http_filters"]]

    inline = ["poolgate.endpoint_picker", "envoy.filters.http.router"]
    assert filters(TranslateOptions(endpoints="dns")) == inline
    assert "poolgate.response_observer" in filters(TranslateOptions(endpoints="dns", managed_picker_replicas=1))
    assert filters(TranslateOptions(endpoints="dns", managed_picker_replicas=3)) == inline
    assert filters(TranslateOptions(endpoints="dns", managed_picker_replicas=1, picker_edits_responses=True)) == inline


def test_a_picker_service_resolves_to_every_ready_replica_it_selects(envoy_validate):
    """Static endpoints: the ready Pods the picker Service selects are the picker cluster's endpoints (a Service
    without a selector, or with none ready, is reached at its cluster IP), and a failing replica is taken out of
    rotation."""
    epp = service("epp", ip="10.96.0.9")
    epp["spec"]["selector"] = {"app": "epp"}
    epp["spec"]["ports"][0]["targetPort"] = 9102
    replicas = [pod(f"epp-{i}", f"10.0.1.{i}", app="epp") for i in range(3)]
    replicas.append(pod("epp-down", "10.0.1.9", app="epp", ready=False))
    objects = build(gateway_class(), gateway(), route(), pool(), epp, pod("p0", "10.0.0.1"), *replicas)
    boot = translate(objects).bootstrap()
    envoy_validate(boot)
    picker = clusters_by_name(boot)["poolgate/picker/default/epp/9002"]
    assert endpoints(picker) == ["10.0.1.0:9102", "10.0.1.1:9102", "10.0.1.2:9102"]
    assert picker["type"] == "STATIC"
    assert picker["outlier_detection"]["consecutive_5xx"] == xds.PICKER_EJECTION_FAILURES
    lone = build(gateway_class(), gateway(), route(), pool(), service("epp", ip="10.96.0.9"), pod("p0", "10.0.0.1"))
    assert endpoints(clusters_by_name(translate(lone).bootstrap())["poolgate/picker/default/epp/9002"]) == [
        "10.96.0.9:9002"
    ]
    dns = translate(objects, TranslateOptions(endpoints="dns")).bootstrap()
    assert endpoints(clusters_by_name(dns)["poolgate/picker/default/epp/9002"]) == [
        "epp.default.svc.cluster.local:9002"
    ]
    # Envoy balances each call on its own, so with several replicas the response stays on the picking call
    own = translate(objects, TranslateOptions(poolgate_pickers=True)).bootstrap()
    assert [f["name"] for f in hcm(own)["http_filters"]] == ["poolgate.endpoint_picker", "envoy.filters.http.router"]
    single = build(gateway_class(), gateway(), route(), pool(), epp, pod("p0", "10.0.0.1"), replicas[0])
    observed = translate(single, TranslateOptions(poolgate_pickers=True)).bootstrap()
    assert "poolgate.response_observer" in [f["name"] for f in hcm(observed)["http_filters"]]

"""Sample objects for the CRD parity tests, as data.

Per kind: a valid base object and edits of it. An edit maps a field path (`spec.rules[0].matches`) to its new value,
or to DELETE to remove the field. `valid` samples must be accepted; each `invalid` sample breaks one rule of the
upstream CRD and names it by a fragment of the error the CRD gives; `stricter` samples are accepted by the upstream
CRD but refused by poolgate on purpose, each with the reason.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

DELETE = object()
GATEWAY_V1 = "gateway.networking.k8s.io/v1"
GATEWAY_V1BETA1 = "gateway.networking.k8s.io/v1beta1"
POOL_REF = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "pool"}


@dataclass(frozen=True)
class KindCorpus:
    kind: str
    base: dict
    api_versions: tuple[str, ...]  # every sample is judged under each of these
    valid: dict[str, dict]
    invalid: dict[str, tuple[dict, str]]  # name -> (edits, fragment of the upstream CRD's error)
    stricter: dict[str, tuple[dict, str]] = field(default_factory=dict)  # name -> (edits, why poolgate refuses)


def edited(base: dict, edits: dict) -> dict:
    """A deep copy of `base` with the edits applied."""
    obj = copy.deepcopy(base)
    for path, value in edits.items():
        parts = [int(p) if p.isdigit() else p for p in path.replace("[", ".").replace("]", "").split(".")]
        parent = obj
        for part in parts[:-1]:
            parent = parent[part] if isinstance(part, int) else parent.setdefault(part, {})
        if value is DELETE:
            del parent[parts[-1]]
        else:
            parent[parts[-1]] = copy.deepcopy(value)
    return obj


def ports(*numbers: int) -> list[dict]:
    return [{"number": n} for n in numbers]


def condition(type_: str = "Accepted", **changes) -> dict:
    cond = {
        "type": type_,
        "status": "True",
        "reason": "Accepted",
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 1,
    }
    return {k: v for k, v in {**cond, **changes}.items() if v is not DELETE}


def pool_parent(gateway: str = "gw", **changes) -> dict:
    entry = {
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway, "namespace": "default"},
        "controllerName": "poolgate.dev/gateway-controller",
        "conditions": [condition()],
    }
    return {k: v for k, v in {**entry, **changes}.items() if v is not DELETE}


def pool_conditions(*conditions: dict) -> dict:
    """The edit giving a pool one status parent with these conditions."""
    return {"status.parents": [pool_parent(conditions=list(conditions))]}


def listener(name: str = "http", port: int = 80, protocol: str = "HTTP", **extra) -> dict:
    return {"name": name, "port": port, "protocol": protocol, **extra}


def header_filter(kind: str = "RequestHeaderModifier") -> dict:
    field_name = kind[0].lower() + kind[1:]
    return {"type": kind, field_name: {"set": [{"name": "x-team", "value": "a"}]}}


SERVICE_BACKEND = {"name": "svc", "port": 8080}
FILTERS, MATCHES = "spec.rules[0].filters", "spec.rules[0].matches"
BACKEND_FILTERS = "spec.rules[0].backendRefs[0].filters"


def https(**tls) -> dict:
    return listener("https", 443, "HTTPS", tls=tls)


def mirror(**config) -> dict:
    return {"type": "RequestMirror", "requestMirror": {"backendRef": SERVICE_BACKEND, **config}}


def rewrite_prefix(prefix: str = "/v1") -> dict:
    return {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": prefix}}}


CERT = {"name": "cert"}
MANY = 17  # one more than the many 16-item limits


INFERENCE_POOL = KindCorpus(
    kind="InferencePool",
    base={
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": "pool", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "vllm"}},
            "targetPorts": ports(8000),
            "endpointPickerRef": {"name": "epp", "port": {"number": 9002}},
        },
    },
    api_versions=("inference.networking.k8s.io/v1",),
    valid={
        "no endpoint picker": {"spec.endpointPickerRef": DELETE},
        "a null endpoint picker is pruned": {"spec.endpointPickerRef": None},
        "eight data-parallel ports": {"spec.targetPorts": ports(*range(8000, 8008))},
        "h2c to the pods": {"spec.appProtocol": "kubernetes.io/h2c"},
        "fail open": {"spec.endpointPickerRef.failureMode": "FailOpen"},
        "picker that is not a Service needs no port": {
            "spec.endpointPickerRef": {"group": "apps", "kind": "Deployment", "name": "epp"}
        },
        "empty label value": {"spec.selector.matchLabels.tier": ""},
        "64 labels": {"spec.selector.matchLabels": {f"l{i}": "x" for i in range(64)}},
        "status of two controllers": {
            "status": {"parents": [pool_parent("a"), pool_parent("b", controllerName="example.com/other")]}
        },
        "status parent with only a name": {"status.parents": [{"parentRef": {"name": "gw"}}]},
    },
    invalid={
        "duplicate target ports": (
            {"spec.targetPorts": ports(8000, 8000)},
            "spec.targetPorts: port number must be unique",
        ),
        "no target ports": ({"spec.targetPorts": []}, "spec.targetPorts: [] should be non-empty"),
        "nine target ports": ({"spec.targetPorts": ports(*range(8000, 8009))}, "spec.targetPorts: [{'number'"),
        "target port 0": ({"spec.targetPorts": ports(0)}, "spec.targetPorts[0].number: 0 is less than the minimum"),
        "target port 65536": ({"spec.targetPorts": ports(65536)}, "65536 is greater than the maximum"),
        "target port as a string": ({"spec.targetPorts": [{"number": "8000"}]}, "is not of type 'integer'"),
        "target ports missing": ({"spec.targetPorts": DELETE}, "'targetPorts' is a required property"),
        "selector missing": ({"spec.selector": DELETE}, "'selector' is a required property"),
        "no labels": ({"spec.selector.matchLabels": {}}, "spec.selector.matchLabels: {} should be non-empty"),
        "65 labels": ({"spec.selector.matchLabels": {f"l{i}": "x" for i in range(65)}}, "has too many properties"),
        "label value starts with a dash": (
            {"spec.selector.matchLabels.app": "-vllm"},
            "spec.selector.matchLabels.app: '-vllm' does not match",
        ),
        "label value of 64 characters": ({"spec.selector.matchLabels.app": "v" * 64}, "is too long"),
        "unknown app protocol": ({"spec.appProtocol": "grpc"}, "spec.appProtocol: 'grpc' is not one of"),
        "unknown failure mode": ({"spec.endpointPickerRef.failureMode": "Sometimes"}, "'Sometimes' is not one of"),
        "picker without port (kind defaults to Service)": (
            {"spec.endpointPickerRef.port": DELETE},
            "port is required when kind is 'Service'",
        ),
        "Service picker without port": (
            {"spec.endpointPickerRef": {"kind": "Service", "name": "epp"}},
            "port is required when kind is 'Service'",
        ),
        "picker without name": ({"spec.endpointPickerRef.name": DELETE}, "'name' is a required property"),
        "picker with an empty name": (
            {"spec.endpointPickerRef.name": ""},
            "spec.endpointPickerRef.name: '' should be non-empty",
        ),
        "picker group with capitals": (
            {"spec.endpointPickerRef.group": "Apps"},
            "spec.endpointPickerRef.group: 'Apps' does not match",
        ),
        "picker kind with a dot": (
            {"spec.endpointPickerRef.kind": "Service.v1"},
            "spec.endpointPickerRef.kind: 'Service.v1' does not match",
        ),
        "picker port 0": (
            {"spec.endpointPickerRef.port.number": 0},
            "spec.endpointPickerRef.port.number: 0 is less than the minimum",
        ),
        "picker port without number": ({"spec.endpointPickerRef.port": {}}, "'number' is a required property"),
        "spec missing": ({"spec": DELETE}, "'spec' is a required property"),
        "legacy v1alpha2 version": ({"apiVersion": "inference.networking.x-k8s.io/v1alpha2"}, "is not served"),
        "status parent without parentRef": (
            {"status.parents": [pool_parent(parentRef=DELETE)]},
            "'parentRef' is a required property",
        ),
        "status parentRef without name": (
            {"status.parents": [{"parentRef": {"kind": "Gateway"}}]},
            "'name' is a required property",
        ),
        "status controllerName without a path": (
            {"status.parents": [pool_parent(controllerName="poolgate.dev")]},
            "controllerName: 'poolgate.dev' does not match",
        ),
        "33 status parents": ({"status.parents": [pool_parent(f"gw{i}") for i in range(33)]}, "status.parents: [{"),
        "condition without lastTransitionTime": (
            pool_conditions(condition(lastTransitionTime=DELETE)),
            "'lastTransitionTime' is a required property",
        ),
        "condition without message": (pool_conditions(condition(message=DELETE)), "'message' is a required property"),
        "condition time that is not RFC 3339": (
            pool_conditions(condition(lastTransitionTime="yesterday")),
            "'yesterday' is not a 'date-time'",
        ),
        "condition status Maybe": (pool_conditions(condition(status="Maybe")), "'Maybe' is not one of"),
        "condition reason with spaces": (
            pool_conditions(condition(reason="Not accepted")),
            "'Not accepted' does not match",
        ),
        "condition type with spaces": (pool_conditions(condition("Is Accepted")), "'Is Accepted' does not match"),
        "negative observedGeneration": (
            pool_conditions(condition(observedGeneration=-1)),
            "-1 is less than the minimum",
        ),
        "two conditions of one type": (
            pool_conditions(condition(), condition(status="False")),
            "conditions: Duplicate value",
        ),
        "nine conditions": (pool_conditions(*(condition(f"T{i}") for i in range(9))), "conditions: [{"),
    },
    stricter={
        "empty label key": (
            {"spec.selector.matchLabels": {"": "vllm"}},
            "a structural schema cannot constrain map keys; a pod label key is never empty, so poolgate refuses it",
        ),
    },
)

OBJECTIVE_VERSIONS = ("inference.networking.x-k8s.io/v1alpha2", "llm-d.ai/v1alpha2")

INFERENCE_OBJECTIVE = KindCorpus(
    kind="InferenceObjective",
    base={
        "apiVersion": OBJECTIVE_VERSIONS[0],
        "kind": "InferenceObjective",
        "metadata": {"name": "chat", "namespace": "default"},
        "spec": {"priority": 10, "poolRef": {"name": "pool"}},
    },
    api_versions=OBJECTIVE_VERSIONS,
    valid={
        "sheddable (negative priority)": {"spec.priority": -1},
        "no priority": {"spec.priority": DELETE},
        "explicit pool group and kind": {"spec.poolRef": POOL_REF},
        "status with a condition": {"status.conditions": [condition("Ready")]},
    },
    invalid={
        "poolRef missing": ({"spec.poolRef": DELETE}, "'poolRef' is a required property"),
        "poolRef without name": ({"spec.poolRef.name": DELETE}, "'name' is a required property"),
        "poolRef with an empty name": ({"spec.poolRef.name": ""}, "spec.poolRef.name: '' should be non-empty"),
        "poolRef group with capitals": ({"spec.poolRef.group": "Inference.networking.k8s.io"}, "spec.poolRef.group: "),
        "poolRef kind with a dash first": ({"spec.poolRef.kind": "-Pool"}, "spec.poolRef.kind: '-Pool' does not match"),
        "priority as a word": ({"spec.priority": "high"}, "'high' is not of type 'integer'"),
        "fractional priority": ({"spec.priority": 1.5}, "1.5 is not of type 'integer'"),
        "condition without reason": (
            {"status.conditions": [condition("Ready", reason=DELETE)]},
            "'reason' is a required property",
        ),
        "two conditions of one type": (
            {"status.conditions": [condition("Ready"), condition("Ready")]},
            "status.conditions: Duplicate value",
        ),
        "nine conditions": ({"status.conditions": [condition(f"T{i}") for i in range(9)]}, "status.conditions: [{"),
    },
    stricter={
        "spec missing": (
            {"spec": DELETE},
            "the CRD leaves spec optional, but an objective without poolRef applies to no pool",
        ),
        "priority beyond int32": (
            {"spec.priority": 2**31},
            "the Go type is int32; the CRD says only `format: int32`, which the schema check ignores",
        ),
    },
)

INFERENCE_MODEL_REWRITE = KindCorpus(
    kind="InferenceModelRewrite",
    base={
        "apiVersion": OBJECTIVE_VERSIONS[0],
        "kind": "InferenceModelRewrite",
        "metadata": {"name": "rw", "namespace": "default"},
        "spec": {
            "poolRef": {"name": "pool"},
            "rules": [{"matches": [{"model": {"value": "llama"}}], "targets": [{"modelRewrite": "llama-v2"}]}],
        },
    },
    api_versions=OBJECTIVE_VERSIONS,
    valid={
        "weighted canary": {
            "spec.rules[0].targets": [{"modelRewrite": "a", "weight": 90}, {"modelRewrite": "b", "weight": 10}]
        },
        "extreme weights": {
            "spec.rules[0].targets": [{"modelRewrite": "a", "weight": 1}, {"modelRewrite": "b", "weight": 1000000}]
        },
        "catch-all rule": {MATCHES: DELETE},
        "no rules": {"spec.rules": []},
        "several matches, explicit type": {
            MATCHES: [{"model": {"type": "Exact", "value": "a"}}, {"model": {"value": "b"}}]
        },
        "status with a condition": {"status.conditions": [condition()]},
    },
    invalid={
        "rules missing": ({"spec.rules": DELETE}, "'rules' is a required property"),
        "poolRef missing": ({"spec.poolRef": DELETE}, "'poolRef' is a required property"),
        "rule without targets": ({"spec.rules[0].targets": []}, "spec.rules[0].targets: [] should be non-empty"),
        "target without modelRewrite": (
            {"spec.rules[0].targets": [{"weight": 1}]},
            "'modelRewrite' is a required property",
        ),
        "weight 0": ({"spec.rules[0].targets[0].weight": 0}, "0 is less than the minimum of 1"),
        "weight 1000001": ({"spec.rules[0].targets[0].weight": 1000001}, "1000001 is greater than the maximum"),
        "prefix match type": ({"spec.rules[0].matches[0].model.type": "Prefix"}, "'Prefix' is not one of ['Exact']"),
        "empty model value": ({"spec.rules[0].matches[0].model.value": ""}, "value: '' should be non-empty"),
        "match without model": ({MATCHES: [{}]}, "'model' is a required property"),
        "model without value": (
            {"spec.rules[0].matches[0].model": {"type": "Exact"}},
            "'value' is a required property",
        ),
        "condition status Maybe": ({"status.conditions": [condition(status="Maybe")]}, "'Maybe' is not one of"),
    },
    stricter={
        "weight on some targets only": (
            {"spec.rules[0].targets": [{"modelRewrite": "a", "weight": 90}, {"modelRewrite": "b"}]},
            "weights are set on all targets or on none; llm-d's controller enforces it, not the CRD",
        ),
        "spec missing": (
            {"spec": DELETE},
            "the CRD leaves spec optional, but a rewrite without poolRef and rules does nothing",
        ),
        "rule without targets": (
            {"spec.rules[0].targets": DELETE},
            "the CRD checks minItems only when targets are given, but a rule without targets rewrites to nothing",
        ),
    },
)

GATEWAY_CLASS = KindCorpus(
    kind="GatewayClass",
    base={
        "apiVersion": GATEWAY_V1,
        "kind": "GatewayClass",
        "metadata": {"name": "poolgate"},
        "spec": {"controllerName": "poolgate.dev/gateway-controller"},
    },
    api_versions=(GATEWAY_V1,),
    valid={
        "v1beta1": {"apiVersion": GATEWAY_V1BETA1},
        "parameters in a ConfigMap": {
            "spec.parametersRef": {"group": "", "kind": "ConfigMap", "name": "cfg", "namespace": "default"}
        },
        "description of 64 characters": {"spec.description": "d" * 64},
    },
    invalid={
        "spec missing": ({"spec": DELETE}, "'spec' is a required property"),
        "controllerName missing": ({"spec.controllerName": DELETE}, "'controllerName' is a required property"),
        "controllerName without a path": (
            {"spec.controllerName": "poolgate.dev"},
            "spec.controllerName: 'poolgate.dev' does not match",
        ),
        "controllerName with capitals in the domain": ({"spec.controllerName": "Poolgate.dev/gw"}, "does not match"),
        "description of 65 characters": ({"spec.description": "d" * 65}, "spec.description: "),
        "parametersRef without kind": (
            {"spec.parametersRef": {"group": "", "name": "cfg"}},
            "'kind' is a required property",
        ),
        "parametersRef namespace with capitals": (
            {"spec.parametersRef": {"group": "", "kind": "ConfigMap", "name": "cfg", "namespace": "Default"}},
            "'Default' does not match",
        ),
        "unserved version": ({"apiVersion": "gateway.networking.k8s.io/v1alpha2"}, "is not served"),
    },
)

GATEWAY = KindCorpus(
    kind="Gateway",
    base={
        "apiVersion": GATEWAY_V1,
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "default"},
        "spec": {"gatewayClassName": "poolgate", "listeners": [listener()]},
    },
    api_versions=(GATEWAY_V1,),
    valid={
        "v1beta1": {"apiVersion": GATEWAY_V1BETA1},
        "wildcard hostname": {"spec.listeners[0].hostname": "*.example.com"},
        "one port, two hostnames": {
            "spec.listeners": [listener("a", hostname="a.example.com"), listener("b", hostname="b.example.com")]
        },
        "one port, with and without hostname": {
            "spec.listeners": [listener("a", hostname="a.example.com"), listener("b")]
        },
        "HTTPS with a certificate": {"spec.listeners": [https(certificateRefs=[CERT])]},
        "HTTPS with options only": {"spec.listeners": [https(options={"example.com/key": "v"})]},
        "TLS passthrough": {
            "spec.listeners": [listener("tls", 443, "TLS", hostname="a.example.com", tls={"mode": "Passthrough"})]
        },
        "TCP listener": {"spec.listeners": [listener("tcp", 5432, "TCP")]},
        "implementation-specific protocol": {"spec.listeners[0].protocol": "example.com/Proto"},
        "routes from selected namespaces": {
            "spec.listeners[0].allowedRoutes": {
                "namespaces": {
                    "from": "Selector",
                    "selector": {
                        "matchLabels": {"team": "a"},
                        "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}],
                    },
                }
            }
        },
        "route kinds": {
            "spec.listeners[0].allowedRoutes.kinds": [
                {"kind": "HTTPRoute"},
                {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"},
            ]
        },
        "addresses": {
            "spec.addresses": [
                {"value": "10.0.0.1"},
                {"type": "IPAddress", "value": "fd00::1"},
                {"type": "Hostname", "value": "gw.example.com"},
                {"type": "example.com/pool", "value": "any"},
            ]
        },
    },
    invalid={
        "no listeners": ({"spec.listeners": []}, "spec.listeners: [] should be non-empty"),
        "65 listeners": ({"spec.listeners": [listener(f"l{i}", 8000 + i) for i in range(65)]}, "spec.listeners: [{"),
        "listeners missing": ({"spec.listeners": DELETE}, "'listeners' is a required property"),
        "gatewayClassName missing": ({"spec.gatewayClassName": DELETE}, "'gatewayClassName' is a required property"),
        "empty gatewayClassName": ({"spec.gatewayClassName": ""}, "spec.gatewayClassName: '' should be non-empty"),
        "duplicate listener names": (
            {"spec.listeners": [listener("a", 80), listener("a", 81)]},
            "Listener name must be unique",
        ),
        "same port, protocol and hostname": (
            {"spec.listeners": [listener("a"), listener("b")]},
            "Combination of port, protocol and hostname must be unique",
        ),
        "port 0": ({"spec.listeners[0].port": 0}, "spec.listeners[0].port: 0 is less than the minimum"),
        "port 65536": ({"spec.listeners[0].port": 65536}, "65536 is greater than the maximum"),
        "protocol with a slash but no domain": (
            {"spec.listeners[0].protocol": "HTTP/2"},
            "spec.listeners[0].protocol: 'HTTP/2' does not match",
        ),
        "listener name with capitals": (
            {"spec.listeners[0].name": "HTTP"},
            "spec.listeners[0].name: 'HTTP' does not match",
        ),
        "hostname with capitals": ({"spec.listeners[0].hostname": "Example.com"}, "'Example.com' does not match"),
        "hostname on a TCP listener": (
            {"spec.listeners": [listener("tcp", 5432, "TCP", hostname="db.example.com")]},
            "hostname must not be specified for protocols ['TCP', 'UDP']",
        ),
        "tls on an HTTP listener": (
            {"spec.listeners[0].tls": {"certificateRefs": [CERT]}},
            "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
        ),
        "HTTPS passthrough": (
            {"spec.listeners": [https(mode="Passthrough")]},
            "tls mode must be Terminate for protocol HTTPS",
        ),
        "TLS listener without tls": (
            {"spec.listeners": [listener("tls", 443, "TLS")]},
            "tls mode must be set for protocol TLS",
        ),
        "HTTPS without certificate or options": (
            {"spec.listeners": [https()]},
            "certificateRefs or options must be specified when mode is Terminate",
        ),
        "unknown tls mode": (
            {"spec.listeners": [https(mode="Reencrypt", certificateRefs=[CERT])]},
            "'Reencrypt' is not one of",
        ),
        "certificate without name": (
            {"spec.listeners": [https(certificateRefs=[{"kind": "Secret"}])]},
            "'name' is a required property",
        ),
        "routes from nowhere": (
            {"spec.listeners[0].allowedRoutes": {"namespaces": {"from": "Nowhere"}}},
            "'Nowhere' is not one of",
        ),
        "nine route kinds": (
            {"spec.listeners[0].allowedRoutes.kinds": [{"kind": f"K{i}"} for i in range(9)]},
            "allowedRoutes.kinds: [{",
        ),
        "route kind without kind": (
            {"spec.listeners[0].allowedRoutes.kinds": [{"group": "gateway.networking.k8s.io"}]},
            "'kind' is a required property",
        ),
        "IP address that is no IP": (
            {"spec.addresses": [{"type": "IPAddress", "value": "gw.example.com"}]},
            "is not valid under any of the given schemas",
        ),
        "duplicate IP addresses": (
            {"spec.addresses": [{"value": "10.0.0.1"}, {"value": "10.0.0.1"}]},
            "IPAddress values must be unique",
        ),
        "duplicate hostnames": (
            {"spec.addresses": [{"type": "Hostname", "value": "a.example.com"}] * 2},
            "Hostname values must be unique",
        ),
        "hostname address with capitals": (
            {"spec.addresses": [{"type": "Hostname", "value": "GW.example.com"}]},
            "Hostname value must be empty or contain only valid characters",
        ),
        "address type with a space": (
            {"spec.addresses": [{"type": "My Type", "value": "x"}]},
            "'My Type' does not match",
        ),
        "17 addresses": ({"spec.addresses": [{"value": f"10.0.0.{i}"} for i in range(MANY)]}, "spec.addresses: [{"),
    },
    stricter={
        "unknown label selector operator": (
            {
                "spec.listeners[0].allowedRoutes": {
                    "namespaces": {
                        "from": "Selector",
                        "selector": {"matchExpressions": [{"key": "env", "operator": "Near"}]},
                    }
                }
            },
            "the CRD leaves a LabelSelector operator free; Kubernetes' own label selector validation accepts only the four operators",
        ),
    },
)

HTTP_ROUTE = KindCorpus(
    kind="HTTPRoute",
    base={
        "apiVersion": GATEWAY_V1,
        "kind": "HTTPRoute",
        "metadata": {"name": "route", "namespace": "default"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [POOL_REF]}]},
    },
    api_versions=(GATEWAY_V1,),
    valid={
        "v1beta1": {"apiVersion": GATEWAY_V1BETA1},
        "no rules (the default matches everything)": {"spec.rules": DELETE},
        "no parents": {"spec.parentRefs": DELETE},
        "Service backend with a port": {"spec.rules[0].backendRefs": [SERVICE_BACKEND]},
        "weights 0 and 1000000": {
            "spec.rules[0].backendRefs": [{**POOL_REF, "weight": 0}, {**POOL_REF, "name": "b", "weight": 1000000}]
        },
        "exact path": {MATCHES: [{"path": {"type": "Exact", "value": "/v1/chat/completions"}}]},
        "percent-encoded path": {MATCHES: [{"path": {"value": "/a%20b/~c@d"}}]},
        "regex path": {MATCHES: [{"path": {"type": "RegularExpression", "value": "/v[0-9]+/.* x"}}]},
        "header, query and method matches": {
            MATCHES: [
                {
                    "headers": [{"name": "x-model", "value": "llama"}],
                    "queryParams": [{"type": "RegularExpression", "name": "v", "value": ".*"}],
                    "method": "POST",
                }
            ]
        },
        "no matches": {MATCHES: []},
        "header modifier": {
            FILTERS: [
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {
                        "set": [{"name": "a", "value": "1"}],
                        "add": [{"name": "b", "value": "2"}],
                        "remove": ["c", "d"],
                    },
                }
            ]
        },
        "rewrite a prefix of the one prefix match": {
            MATCHES: [{"path": {"value": "/v2"}}],
            FILTERS: [rewrite_prefix()],
        },
        "rewrite the full path": {
            FILTERS: [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {
                        "hostname": "a.example.com",
                        "path": {"type": "ReplaceFullPath", "replaceFullPath": "/x"},
                    },
                }
            ]
        },
        "redirect without backends": {
            "spec.rules": [
                {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}
            ]
        },
        "header filters on a backend": {BACKEND_FILTERS: [header_filter(), header_filter("ResponseHeaderModifier")]},
        "mirror half": {FILTERS: [mirror(percent=50)]},
        "mirror a fraction": {FILTERS: [mirror(fraction={"numerator": 1, "denominator": 3})]},
        "extension filter": {
            FILTERS: [{"type": "ExtensionRef", "extensionRef": {"group": "example.com", "kind": "Thing", "name": "t"}}]
        },
        "one gateway, two sections": {
            "spec.parentRefs": [{"name": "gw", "sectionName": "a"}, {"name": "gw", "sectionName": "b"}]
        },
        "same name in two namespaces": {"spec.parentRefs": [{"name": "gw"}, {"name": "gw", "namespace": "other"}]},
        "timeouts": {"spec.rules[0].timeouts": {"request": "10s", "backendRequest": "5s500ms"}},
        "no request timeout, any backend timeout": {
            "spec.rules[0].timeouts": {"request": "0s", "backendRequest": "1h"}
        },
        "wildcard hostnames": {"spec.hostnames": ["*.example.com", "a.example.com"]},
        "named rules": {
            "spec.rules": [{"name": "chat", "backendRefs": [POOL_REF]}, {"name": "embed", "backendRefs": [POOL_REF]}]
        },
        "128 matches across rules": {
            "spec.rules": [{"matches": [{"path": {"value": f"/{r}/{i}"}} for i in range(64)]} for r in range(2)]
        },
    },
    invalid={
        "spec missing": ({"spec": DELETE}, "'spec' is a required property"),
        "negative weight": ({"spec.rules[0].backendRefs[0].weight": -1}, "-1 is less than the minimum of 0"),
        "weight 1000001": ({"spec.rules[0].backendRefs[0].weight": 1000001}, "1000001 is greater than the maximum"),
        "Service backend without port": (
            {"spec.rules[0].backendRefs": [{"name": "svc"}]},
            "Must have port for Service reference",
        ),
        "backend without name": (
            {"spec.rules[0].backendRefs": [{"kind": "InferencePool", "group": "inference.networking.k8s.io"}]},
            "'name' is a required property",
        ),
        "backend kind with a dash first": ({"spec.rules[0].backendRefs[0].kind": "-Pool"}, "'-Pool' does not match"),
        "backend namespace with an underscore": (
            {"spec.rules[0].backendRefs[0].namespace": "team_a"},
            "'team_a' does not match",
        ),
        "relative path": ({MATCHES: [{"path": {"value": "v1"}}]}, "value must be an absolute path"),
        "path with //": ({MATCHES: [{"path": {"value": "/a//b"}}]}, "must not contain '//'"),
        "path with /../": ({MATCHES: [{"path": {"value": "/a/../b"}}]}, "must not contain '/../'"),
        "path ending in /..": ({MATCHES: [{"path": {"type": "Exact", "value": "/a/.."}}]}, "must not end with '/..'"),
        "path ending in /.": ({MATCHES: [{"path": {"value": "/a/."}}]}, "must not end with '/.'"),
        "path with #": ({MATCHES: [{"path": {"value": "/a#b"}}]}, "must not contain '#'"),
        "path with %2F": ({MATCHES: [{"path": {"value": "/a%2Fb"}}]}, "must not contain '%2F'"),
        "path with a space": ({MATCHES: [{"path": {"value": "/a b"}}]}, "must only contain valid characters"),
        "path with a bad percent escape": (
            {MATCHES: [{"path": {"value": "/a%zz"}}]},
            "must only contain valid characters",
        ),
        "path of 1025 characters": ({MATCHES: [{"path": {"value": "/" + "a" * 1024}}]}, "is too long"),
        "path type Prefix": ({MATCHES: [{"path": {"type": "Prefix", "value": "/"}}]}, "'Prefix' is not one of"),
        "no rules": ({"spec.rules": []}, "spec.rules: [] should be non-empty"),
        "17 rules": ({"spec.rules": [{"backendRefs": [POOL_REF]}] * MANY}, "spec.rules: [{"),
        "17 backends": ({"spec.rules[0].backendRefs": [POOL_REF] * MANY}, "backendRefs: [{"),
        "65 matches in a rule": ({MATCHES: [{"path": {"value": f"/{i}"}} for i in range(65)]}, "matches: [{"),
        "129 matches across rules": (
            {"spec.rules": [{"matches": [{"path": {"value": f"/{r}/{i}"}} for i in range(43)]} for r in range(3)]},
            "the total number of matches across all rules in a route must be less than 128",
        ),
        "filter config of another type": (
            {FILTERS: [{**header_filter(), "responseHeaderModifier": {"remove": ["x"]}}]},
            "filter.responseHeaderModifier must be nil if the filter.type is not ResponseHeaderModifier",
        ),
        "filter without its config": (
            {FILTERS: [{"type": "URLRewrite"}]},
            "filter.urlRewrite must be specified for URLRewrite filter.type",
        ),
        "backend filter without its config": (
            {BACKEND_FILTERS: [{"type": "RequestMirror"}]},
            "filter.requestMirror must be specified",
        ),
        "unknown filter type": ({FILTERS: [{"type": "Bogus"}]}, "'Bogus' is not one of"),
        "redirect with backends": (
            {FILTERS: [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]},
            "RequestRedirect filter must not be used together with backendRefs",
        ),
        "redirect and rewrite": (
            {
                "spec.rules": [
                    {
                        "filters": [
                            {"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}},
                            {"type": "URLRewrite", "urlRewrite": {"hostname": "a.example.com"}},
                        ]
                    }
                ]
            },
            "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both",
        ),
        "header modifier twice": (
            {FILTERS: [header_filter(), header_filter()]},
            "RequestHeaderModifier filter cannot be repeated",
        ),
        "backend header modifier twice": (
            {BACKEND_FILTERS: [header_filter("ResponseHeaderModifier")] * 2},
            "ResponseHeaderModifier filter cannot be repeated",
        ),
        "prefix rewrite with an exact match": (
            {MATCHES: [{"path": {"type": "Exact", "value": "/v2"}}], FILTERS: [rewrite_prefix()]},
            "When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified",
        ),
        "prefix rewrite with two matches": (
            {MATCHES: [{"path": {"value": "/a"}}, {"path": {"value": "/b"}}], FILTERS: [rewrite_prefix()]},
            "exactly one PathPrefix match must be specified",
        ),
        "prefix redirect with an exact match": (
            {
                "spec.rules": [
                    {
                        "matches": [{"path": {"type": "Exact", "value": "/a"}}],
                        "filters": [
                            {
                                "type": "RequestRedirect",
                                "requestRedirect": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}},
                            }
                        ],
                    }
                ]
            },
            "When using RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified",
        ),
        "backend prefix rewrite with an exact match": (
            {MATCHES: [{"path": {"type": "Exact", "value": "/v2"}}], BACKEND_FILTERS: [rewrite_prefix()]},
            "Within backendRefs, When using URLRewrite filter with path.replacePrefixMatch",
        ),
        "full-path rewrite without the path": (
            {FILTERS: [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath"}}}]},
            "replaceFullPath must be specified when type is set to 'ReplaceFullPath'",
        ),
        "path modifier without type": (
            {FILTERS: [{"type": "URLRewrite", "urlRewrite": {"path": {"replaceFullPath": "/x"}}}]},
            "'type' is a required property",
        ),
        "redirect status 304": (
            {"spec.rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 304}}]}]},
            "304 is not one of",
        ),
        "redirect scheme ftp": (
            {"spec.rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "ftp"}}]}]},
            "'ftp' is not one of",
        ),
        "mirror percent 101": ({FILTERS: [mirror(percent=101)]}, "101 is greater than the maximum"),
        "mirror percent and fraction": (
            {FILTERS: [mirror(percent=1, fraction={"numerator": 1})]},
            "Only one of percent or fraction may be specified",
        ),
        "mirror fraction above one": (
            {FILTERS: [mirror(fraction={"numerator": 3, "denominator": 2})]},
            "numerator must be less than or equal to denominator",
        ),
        "mirror to a Service without port": (
            {FILTERS: [mirror(backendRef={"name": "svc"})]},
            "Must have port for Service reference",
        ),
        "method FETCH": ({MATCHES: [{"method": "FETCH"}]}, "'FETCH' is not one of"),
        "header name with a space": (
            {MATCHES: [{"headers": [{"name": "x model", "value": "a"}]}]},
            "'x model' does not match",
        ),
        "header match without value": (
            {MATCHES: [{"headers": [{"name": "x-model"}]}]},
            "'value' is a required property",
        ),
        "two matches on one header": (
            {MATCHES: [{"headers": [{"name": "x-model", "value": "a"}, {"name": "x-model", "value": "b"}]}]},
            "headers: Duplicate value",
        ),
        "two matches on one query parameter": (
            {MATCHES: [{"queryParams": [{"name": "v", "value": "a"}, {"name": "v", "value": "b"}]}]},
            "queryParams: Duplicate value",
        ),
        "17 header matches": (
            {MATCHES: [{"headers": [{"name": f"h{i}", "value": "a"} for i in range(MANY)]}]},
            "headers: [{",
        ),
        "header set twice in a modifier": (
            {
                FILTERS: [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"set": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]},
                    }
                ]
            },
            "set: Duplicate value",
        ),
        "header removed twice": (
            {FILTERS: [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["a", "a"]}}]},
            "remove: Duplicate value",
        ),
        "one gateway twice": (
            {"spec.parentRefs": [{"name": "gw"}, {"name": "gw"}]},
            "sectionName must be unique when parentRefs includes 2 or more references to the same parent",
        ),
        "one gateway with and without section": (
            {"spec.parentRefs": [{"name": "gw"}, {"name": "gw", "sectionName": "a"}]},
            "sectionName must be specified when parentRefs includes 2 or more references to the same parent",
        ),
        "parent namespace with an underscore": ({"spec.parentRefs[0].namespace": "team_a"}, "'team_a' does not match"),
        "parent port 0": ({"spec.parentRefs[0].port": 0}, "0 is less than the minimum"),
        "33 parents": ({"spec.parentRefs": [{"name": f"gw{i}"} for i in range(33)]}, "spec.parentRefs: [{"),
        "backend timeout above request timeout": (
            {"spec.rules[0].timeouts": {"request": "10s", "backendRequest": "1m"}},
            "backendRequest timeout cannot be longer than request timeout",
        ),
        "timeout in days": ({"spec.rules[0].timeouts": {"request": "1d"}}, "'1d' does not match"),
        "hostname with capitals": ({"spec.hostnames": ["Example.com"]}, "'Example.com' does not match"),
        "17 hostnames": ({"spec.hostnames": [f"h{i}.example.com" for i in range(MANY)]}, "spec.hostnames: ["),
        "rule name with capitals": ({"spec.rules[0].name": "Chat"}, "'Chat' does not match"),
    },
    stricter={
        "two rules with one name": (
            {"spec.rules": [{"name": "a", "backendRefs": [POOL_REF]}, {"name": "a", "backendRefs": [POOL_REF]}]},
            "Gateway API says rule names are unique within a route; the standard-channel CRD does not check it",
        ),
    },
)

REFERENCE_GRANT = KindCorpus(
    kind="ReferenceGrant",
    base={
        "apiVersion": GATEWAY_V1,
        "kind": "ReferenceGrant",
        "metadata": {"name": "allow", "namespace": "pools"},
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "routes"}],
            "to": [{"group": "inference.networking.k8s.io", "kind": "InferencePool"}],
        },
    },
    api_versions=(GATEWAY_V1,),
    valid={
        "v1beta1": {"apiVersion": GATEWAY_V1BETA1},
        "one named target": {"spec.to[0].name": "pool"},
        "core group": {"spec.to": [{"group": "", "kind": "Service"}]},
        "16 sources": {
            "spec.from": [
                {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": f"ns{i}"} for i in range(16)
            ]
        },
    },
    invalid={
        "spec missing": ({"spec": DELETE}, "'spec' is a required property"),
        "no sources": ({"spec.from": []}, "spec.from: [] should be non-empty"),
        "no targets": ({"spec.to": []}, "spec.to: [] should be non-empty"),
        "17 targets": ({"spec.to": [{"group": "", "kind": f"K{i}"} for i in range(MANY)]}, "spec.to: [{"),
        "source without namespace": ({"spec.from[0].namespace": DELETE}, "'namespace' is a required property"),
        "source without group": ({"spec.from[0].group": DELETE}, "'group' is a required property"),
        "target without kind": ({"spec.to[0].kind": DELETE}, "'kind' is a required property"),
        "source namespace with capitals": ({"spec.from[0].namespace": "Routes"}, "'Routes' does not match"),
        "target group with an underscore": (
            {"spec.to[0].group": "inference_networking"},
            "'inference_networking' does not match",
        ),
        "target with an empty name": ({"spec.to[0].name": ""}, "spec.to[0].name: '' should be non-empty"),
        "unserved version": ({"apiVersion": "gateway.networking.k8s.io/v1alpha2"}, "is not served"),
    },
)

CORPUS = (
    GATEWAY_CLASS,
    GATEWAY,
    HTTP_ROUTE,
    REFERENCE_GRANT,
    INFERENCE_POOL,
    INFERENCE_OBJECTIVE,
    INFERENCE_MODEL_REWRITE,
)

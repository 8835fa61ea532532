"""Every name that Envoy config, picker, hooks, simulator and benchmarks must agree on, defined once.

In the spirit of the upstream picker's `metadata/consts.go`: headers, Envoy dynamic-metadata namespaces and keys, gRPC
metadata, annotations and labels, the controller's identity. A module that needs one of these names imports it from
here; nothing else spells them out.
"""

from __future__ import annotations

# --- Destination: what the picker tells Envoy, and what Envoy reports back -------------------------------------------
DESTINATION_HEADER = "x-gateway-destination-endpoint"  # picker -> Envoy: the endpoint(s) to send the request to
SERVED_KEY = "x-gateway-destination-endpoint-served"  # Envoy -> picker (envoy.lb metadata): the endpoint that served
SUBSET_KEY = "x-gateway-destination-endpoint-subset"  # Envoy -> picker: the endpoints the picker may choose among
SCORES_KEY = "x-gateway-destination-endpoint-scores"  # upstream (v0.10): optional per-endpoint scores; unused yet
LB_METADATA_NAMESPACE = "envoy.lb"  # dynamic-metadata namespace the destination keys live in
SUBSET_HINT_NAMESPACE = "envoy.lb.subset_hint"  # filter-metadata namespace of the subset hint
PREFILLER_HOST_PORT_HEADER = "x-prefiller-host-port"  # picker -> decode pod's sidecar: the prefill pod's ip:port
# Headers only the picker may set: removed from client requests before any filter runs.
PICKER_ONLY_HEADERS = (DESTINATION_HEADER, SERVED_KEY, SUBSET_KEY, PREFILLER_HOST_PORT_HEADER)
SPLIT_SHARE_HEADER = "x-poolgate-split-share"  # Envoy Gateway target: matches a pool's share rule (clients' is removed)

# --- Model router (body-based routing) --------------------------------------------------------------------------------
MODEL_NAME_HEADER = "x-gateway-model-name"  # model router -> route match: the model the request body names
BASE_MODEL_NAME_HEADER = "x-gateway-base-model-name"  # model router -> route match: the LoRA adapter's base model
# Headers only the model router may set: removed from client requests before any filter runs.
MODEL_ROUTER_ONLY_HEADERS = (MODEL_NAME_HEADER, BASE_MODEL_NAME_HEADER)
MODEL_ROUTER = "model-router"  # the model router's identity: the value of CALLOUT_METADATA_KEY on its calls

# --- Request headers the picker reads (names poolgate's clients send; upstream's deprecated aliases below) -------------
OBJECTIVE_HEADER = "x-gateway-inference-objective"  # the InferenceObjective a request belongs to
MODEL_REWRITE_HEADER = "x-gateway-model-name-rewrite"  # rewrite the request's model to this name
REQUEST_ID_HEADER = "x-request-id"  # request id, kept in logs and picker metrics
SESSION_TOKEN_HEADER = "x-session-token"  # session affinity: the endpoint a session stays on
STEERING_HEADER = "test-epp-endpoint-selection"  # conformance tests' candidate list (only with steering enabled)

# --- Upstream names (llm-d router v0.10, FACTS §9): current names, and the deprecated aliases still read --------------
# The picker reads the current name first and the deprecated alias second (UPSTREAM_HEADER_ALIASES).
LLM_D_OBJECTIVE_HEADER = "x-llm-d-inference-objective"  # current name of OBJECTIVE_HEADER
LLM_D_MODEL_REWRITE_HEADER = "x-llm-d-model-name-rewrite"  # current name of MODEL_REWRITE_HEADER
LLM_D_FAIRNESS_ID_HEADER = "x-llm-d-inference-fairness-id"  # flow-control fairness id (deprecated: x-gateway-*)
LLM_D_SLO_TTFT_HEADER = "x-llm-d-slo-ttft-ms"  # time-to-first-token objective in ms (deprecated: x-slo-ttft-ms)
LLM_D_SLO_TPOT_HEADER = "x-llm-d-slo-tpot-ms"  # time-per-output-token objective in ms (deprecated: x-slo-tpot-ms)
DEPRECATED_FAIRNESS_ID_HEADER = "x-gateway-inference-fairness-id"  # deprecated alias of LLM_D_FAIRNESS_ID_HEADER
DEPRECATED_SLO_TTFT_HEADER = "x-slo-ttft-ms"  # deprecated alias of LLM_D_SLO_TTFT_HEADER
DEPRECATED_SLO_TPOT_HEADER = "x-slo-tpot-ms"  # deprecated alias of LLM_D_SLO_TPOT_HEADER
# (current name, deprecated alias) of every request header upstream renamed
UPSTREAM_HEADER_ALIASES = (
    (LLM_D_OBJECTIVE_HEADER, OBJECTIVE_HEADER),
    (LLM_D_MODEL_REWRITE_HEADER, MODEL_REWRITE_HEADER),
    (LLM_D_FAIRNESS_ID_HEADER, DEPRECATED_FAIRNESS_ID_HEADER),
    (LLM_D_SLO_TTFT_HEADER, DEPRECATED_SLO_TTFT_HEADER),
    (LLM_D_SLO_TPOT_HEADER, DEPRECATED_SLO_TPOT_HEADER),
)
# Where the picker reads a request's path (upstream's order: Envoy's pseudo-header, then the two a proxy may set)
PATH_HEADERS = (":path", "x-original-path", "x-forwarded-path")
# The path suffixes upstream's `openai-parser` claims (llm-d router v0.10): a request on one of them is read as an
# OpenAI body; a request on any other path goes to the config's fallback parser (`passthrough-parser`), if any
OPENAI_PATH_SUFFIXES = (
    "chat/completions",
    "completions",
    "embeddings",
    "responses",
    "conversations",
    "chat/completions/render",
    "completions/render",
    "images/generations",
)
DROPPED_REASON_HEADER = "x-llm-d-request-dropped-reason"  # response header on a request the picker rejected
DROPPED_SATURATED = "rejected-saturated"  # DROPPED_REASON_HEADER value: every endpoint was filtered out (429)

# --- Which request headers a client may send --------------------------------------------------------------------------
# Headers that steer the picker and that only the gateway's own parts may set (the picker, or a route's filters after
# the picker ran): removed from every client request before any filter runs. A client that set the rewrite header
# could bypass an InferenceModelRewrite canary; one that set the prefiller header could send its prefill anywhere.
GATEWAY_ONLY_HEADERS = (
    *PICKER_ONLY_HEADERS,
    MODEL_REWRITE_HEADER,
    LLM_D_MODEL_REWRITE_HEADER,
)
# Headers meant for clients, which the gateway passes to the picker as sent: they choose among a pool's endpoints or
# set a request's priority, never steer it outside its pool (the steering header only with conformance steering on).
CLIENT_CONTROL_HEADERS = (
    OBJECTIVE_HEADER,
    LLM_D_OBJECTIVE_HEADER,
    LLM_D_FAIRNESS_ID_HEADER,
    DEPRECATED_FAIRNESS_ID_HEADER,
    LLM_D_SLO_TTFT_HEADER,
    DEPRECATED_SLO_TTFT_HEADER,
    LLM_D_SLO_TPOT_HEADER,
    DEPRECATED_SLO_TPOT_HEADER,
    SESSION_TOKEN_HEADER,
    REQUEST_ID_HEADER,
    STEERING_HEADER,
)

# --- Response headers poolgate's parts set for tests and benchmarks ---------------------------------------------------
SERVED_BY_HEADER = "x-poolgate-served-by"  # simulator: the endpoint (ip:port) that answered
PREFILLED_BY_HEADER = "x-poolgate-prefilled-by"  # simulator (P/D decode side): the endpoint that prefilled
SERVED_MODEL_HEADER = "x-poolgate-served-model"  # simulator: the model (or adapter) the request named on arrival
CONFORMANCE_SELECTED_HEADER = "x-conformance-test-selected-endpoint"  # picker (steering on): the endpoint it chose
CONFORMANCE_SERVED_HEADER = "x-conformance-test-served-endpoint"  # picker (steering on): where Envoy says it served
PICKED_ECHO_HEADER = "x-poolgate-picked"  # simulator -> client: the picker's choice the request arrived with (first)
CONFIG_GENERATION_HEADER = "x-config-generation"  # benchmark route header: which edit of the objects served

# --- Envoy route metadata (read by the gateway's own error answers) ------------------------------------------------------
ROUTE_METADATA_NAMESPACE = "poolgate"  # filter-metadata namespace poolgate puts on the Envoy routes it generates
ROUTE_POOLS_KEY = (
    "pools"  # ROUTE_METADATA_NAMESPACE key: the InferencePools (namespace/name, comma-separated) of a route
)

# --- gRPC metadata of Envoy's ext_proc calls, and the filters that make them ------------------------------------------
POOL_METADATA_KEY = "x-poolgate-pool"  # gRPC initial metadata naming the pool (namespace/name) a picker call is for
CALLOUT_METADATA_KEY = "x-poolgate-callout"  # gRPC initial metadata naming the callout (MODEL_ROUTER)
MODEL_LIST_METADATA_KEY = "x-poolgate-model-list"  # model router's gRPC metadata: JSON of what /v1/models lists
MODELS_PATH = "/v1/models"  # the OpenAI model list, which the model router answers for a Gateway
EPP_FILTER = "poolgate.endpoint_picker"  # Envoy filter name of a pool's endpoint-picker callout
RESPONSE_OBSERVER_FILTER = "poolgate.response_observer"  # Envoy filter name of a picker's observe-only response call
# CALLOUT_METADATA_KEY values of a poolgate picker's two calls when the response is observed apart from the pick
PICK_REQUEST = "pick-request"  # the picking call covers the request alone; an OBSERVE_RESPONSE call follows
OBSERVE_RESPONSE = "observe-response"  # the observe-only call that follows the request and its response
PICK_ID_KEY = "x-poolgate-pick"  # envoy.lb metadata: the picker's id of a pick, which ties the two calls together
MODEL_ROUTER_FILTER = "poolgate.model_router"  # Envoy filter name of the model-router callout

# --- Picker replicas: the load exchange (a poolgate extension; the upstream picker has no equivalent) -------------------
LOAD_EXCHANGE_PORT = 9005  # UDP: where a picker replica hears its peers announce their requests (default)
LOAD_EXCHANGE_PORT_FLAG = "--load-exchange-port"  # poolgate picker: that port (0: any free port)
LOAD_EXCHANGE_PEERS_FLAG = "--load-exchange-peers"  # poolgate picker: the peers, HOST:PORT,... (a name: every address)
LOAD_EXCHANGE_TTL_FLAG = (
    "--load-exchange-ttl"  # poolgate picker: seconds after which an unended peer request is dropped
)

# --- Controller identity, annotations and labels -----------------------------------------------------------------------
CONTROLLER_NAME = "poolgate.dev/gateway-controller"  # GatewayClass controllerName poolgate implements
MANAGED_PICKER_ANNOTATION = "poolgate.dev/managed-picker"  # on an InferencePool: "true": poolgate deploys its picker
PROFILE_ANNOTATION = "poolgate.dev/scheduling-profile"  # on an InferencePool: its picker's scheduling profile
FAILURE_MODE_ANNOTATION = "poolgate.dev/failure-mode"  # on an InferencePool: FailOpen | FailClose of a managed picker
MODELS_ANNOTATION = "poolgate.dev/models"  # on an InferencePool: its fixed model list (comma-separated)
CONFIG_HASH_ANNOTATION = "poolgate.dev/config-hash"  # on a managed picker's pods: hash of its config (rolls on change)
BOOTSTRAP_HASH_ANNOTATION = "poolgate.dev/bootstrap-hash"  # on Envoy's pods: hash of its bootstrap (rolls on change)
POOL_LABEL = "poolgate.dev/pool"  # on a managed picker's children: the pool it serves
GATEWAY_CLASS_LABEL = "poolgate.dev/gateway-class"  # on a GatewayClass's children: the class they belong to
GATEWAY_LABEL = "poolgate.dev/gateway"  # on Gateways of a poolgate class: pools relate those Gateways only
POOL_LABEL_PREFIX = "pools.poolgate.dev/"  # + a pool's hash, on HTTPRoutes that forward to it: the pool relates them

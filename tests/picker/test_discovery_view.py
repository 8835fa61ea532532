"""build_view: from Kubernetes objects to what the picker serves (pure)."""

import pytest
import yaml

from picker.discovery.view import adapter_bases, build_view, parse_pool_key
from tests.conftest import objects_from_yaml

OBJECTS = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: llama
  namespace: team
  annotations: {poolgate.dev/models: "llama, sql-lora", poolgate.dev/scheduling-profile: llmd-default}
spec:
  selector: {matchLabels: {app: llama}}
  targetPorts: [{number: 8000}, {number: 8001}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: other, namespace: team}
spec:
  selector: {matchLabels: {app: other}}
  targetPorts: [{number: 9000}]
---
apiVersion: v1
kind: Pod
metadata: {name: b-pod, namespace: team, labels: {app: llama, llm-d.ai/engine-type: sglang}}
status: {podIP: 10.0.0.2, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: a-pod
  namespace: team
  labels: {app: llama}
  annotations: {llm-d.ai/active-ports: "8001"}
status: {podIP: 10.0.0.1, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: not-ready, namespace: team, labels: {app: llama}}
status: {podIP: 10.0.0.3, conditions: [{type: Ready, status: "False"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: elsewhere, namespace: other-team, labels: {app: llama}}
status: {podIP: 10.0.0.4, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: batch, namespace: team}
spec: {priority: -1, poolRef: {name: llama}}
---
apiVersion: llm-d.ai/v1alpha2
kind: InferenceObjective
metadata: {name: chat, namespace: team}
spec: {poolRef: {name: llama}}
---
apiVersion: llm-d.ai/v1alpha2
kind: InferenceObjective
metadata: {name: for-other, namespace: team}
spec: {priority: 5, poolRef: {name: other}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: canary, namespace: team, creationTimestamp: "2025-01-02T00:00:00Z"}
spec:
  poolRef: {name: llama}
  rules:
  - matches: [{model: {value: food-review}}]
    targets: [{modelRewrite: food-review-v1, weight: 90}, {modelRewrite: food-review-v2, weight: 10}]
"""


def test_view_of_a_pool_reuses_the_translators_endpoints_and_collects_its_objectives_and_rewrites():
    view = build_view(objects_from_yaml(OBJECTS), pools=["team/llama", "team/missing"])
    llama = view.pools["team/llama"]
    assert llama.exists and llama.name == "llama"
    assert [(e.key, e.pod_name) for e in llama.endpoints] == [
        ("10.0.0.1:8001", "a-pod"),
        ("10.0.0.2:8000", "b-pod"),
        ("10.0.0.2:8001", "b-pod"),
    ]
    assert llama.endpoints[1].labels["llm-d.ai/engine-type"] == "sglang"
    assert llama.priorities == {"batch": -1, "chat": None}
    (rewrite,) = llama.rewrites
    assert rewrite.name == "canary" and rewrite.rules[0].models == ("food-review",)
    assert [(t.model, t.weight) for t in rewrite.rules[0].targets] == [("food-review-v1", 90), ("food-review-v2", 10)]
    assert llama.models == frozenset({"llama", "sql-lora"}) and llama.profile == "llmd-default"
    missing = view.pools["team/missing"]
    assert not missing.exists and missing.endpoints == ()


def test_without_a_pool_list_every_pool_is_served():
    view = build_view(objects_from_yaml(OBJECTS))
    assert sorted(view.pools) == ["team/llama", "team/other"]
    other = view.pools["team/other"]
    assert other.endpoints == () and other.priorities == {"for-other": 5} and other.models is None


def test_adapter_bases_from_body_based_routing_configmaps():
    maps = yaml.safe_load_all("""
apiVersion: v1
kind: ConfigMap
metadata: {name: llama-adapters, labels: {inference.networking.k8s.io/bbr-managed: "true"}}
data:
  baseModel: meta-llama/Llama-3.1-8B-Instruct
  adapters: |
    - food-review
    - sql-lora
---
apiVersion: v1
kind: ConfigMap
metadata: {name: qwen-adapters}
data: {baseModel: Qwen/Qwen3-8B, adapters: "qwen-a qwen-b"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: broken}
data: {baseModel: x, adapters: "{a: 1}"}
""")
    assert adapter_bases(maps) == {
        "food-review": "meta-llama/Llama-3.1-8B-Instruct",
        "sql-lora": "meta-llama/Llama-3.1-8B-Instruct",
        "qwen-a": "Qwen/Qwen3-8B",
        "qwen-b": "Qwen/Qwen3-8B",
    }


@pytest.mark.parametrize(
    "value, ok", [("ns/name", True), ("name", False), ("/name", False), ("ns/", False), ("a/b/c", False)]
)
def test_pool_keys_are_namespace_slash_name(value, ok):
    if ok:
        assert parse_pool_key(value) == value
    else:
        with pytest.raises(ValueError):
            parse_pool_key(value)

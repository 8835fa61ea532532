"""`poolgate up` plans: which containers run vLLM, how their arguments map to a local api_server
process, what the plan starts for a Deployment of them, and picker replicas."""

from __future__ import annotations

import pytest

from poolgate.api.builders import build, gateway, gateway_class, listener, pool, pool_ref, route, service
from poolgate.api.core import Container
from poolgate.translate import translate
from poolgate.up import vllm
from poolgate.up.plan import PICKER_REPLICA_LABEL, Allocator, make_plan


def container(image: str = "vllm/vllm-openai:v0.32.0", command=(), args=()) -> Container:
    return Container(name="vllm", image=image, command=list(command), args=list(args))


@pytest.mark.parametrize(
    ("image", "command", "args"),
    [
        ("vllm/vllm-openai:v0.32.0", (), ("--model", "m")),
        ("docker.io/vllm/vllm-openai@sha256:abc", (), ("m",)),
        ("registry.example/custom:1", ("vllm", "serve", "m"), ()),
        ("registry.example/custom:1", ("/usr/local/bin/vllm",), ("serve", "m")),
        ("python:3.11", ("python3", "-m", vllm.API_SERVER), ("--model", "m")),
    ],
)
def test_containers_that_run_vllm_are_recognised(image, command, args):
    assert vllm.runs_vllm(container(image, command, args))
    assert vllm.server_args(container(image, command, args))[:2] == ("--model", "m")


@pytest.mark.parametrize(
    "other", [container("ghcr.io/poolgate/poolgate:1", args=("sim",)), container("nginx:1", ("nginx",))]
)
def test_other_containers_are_not_vllm(other):
    assert not vllm.runs_vllm(other)


def test_arguments_keep_the_model_lora_and_engine_flags_and_drop_host_and_port():
    args = vllm.server_args(
        container(
            "any:1",
            ("vllm", "serve", "/models/tiny"),
            ("--host", "0.0.0.0", "--port=9000", "--served-model-name", "tiny", "--lora-modules", "a=/lora/a"),
        )
    )
    assert args == ("--model", "/models/tiny", "--served-model-name", "tiny", "--lora-modules", "a=/lora/a")
    assert vllm.server_args(container(args=("--model=/m", "--dtype", "bfloat16"))) == (
        "--model",
        "/m",
        "--dtype",
        "bfloat16",
    )


def test_a_vllm_container_without_a_model_is_refused_by_name():
    with pytest.raises(vllm.VllmArgsError, match=r"'vllm'.*no model"):
        vllm.server_args(container(args=("--dtype", "bfloat16")))


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_local_engines_float_across_cores_on_at_least_one_thread(threads):
    env = vllm.server_env(threads)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"  # pinned, a worker's sched_yield spin starves a neighbour
    assert env["OMP_NUM_THREADS"] == str(max(1, threads))
    assert env["HF_HUB_OFFLINE"] == "1"  # nothing downloaded


def vllm_deployment(args: tuple[str, ...], replicas: int = 2) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "tiny", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "tiny"}},
            "template": {
                "metadata": {"labels": {"app": "tiny"}},
                "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.32.0", "args": list(args)}]},
            },
        },
    }


def test_each_replica_of_a_vllm_deployment_is_a_local_vllm_on_its_own_address():
    objects = build(
        gateway_class(),
        gateway(listeners=listener(8080)),
        route(rules=[{"backendRefs": [pool_ref("tiny")]}]),
        pool("tiny", app="tiny"),
        service(),
        vllm_deployment(("--model", "/m", "--served-model-name", "tiny")),
    )
    plan = make_plan(objects, Allocator(7))
    assert plan.warnings == [] and plan.sim_pods == []
    assert [(p.name, p.ip, p.port, p.args) for p in plan.vllm_pods] == [
        ("tiny-0", "127.7.0.10", 8000, ("--model", "/m", "--served-model-name", "tiny")),
        ("tiny-1", "127.7.0.11", 8000, ("--model", "/m", "--served-model-name", "tiny")),
    ]
    pods = {o.name: o for o in plan.objects if o.kind == "Pod"}
    assert pods["tiny-0"].status.pod_ip == "127.7.0.10" and pods["tiny-0"].ready


def test_a_vllm_deployment_without_a_model_is_not_started_and_says_why():
    objects = build(pool("tiny", app="tiny"), vllm_deployment(("--dtype", "bfloat16"), replicas=1))
    plan = make_plan(objects, Allocator())
    assert plan.vllm_pods == [] and not [o for o in plan.objects if o.kind == "Pod"]
    assert plan.warnings == [
        "default/tiny-0: container 'vllm': the vLLM arguments name no model (`vllm serve MODEL`); not started"
    ]


def test_picker_replicas_are_processes_the_picker_service_selects():
    objects = build(
        gateway_class(),
        gateway(listeners=listener(8080)),
        route(rules=[{"backendRefs": [pool_ref("tiny")]}]),
        pool("tiny", app="tiny"),
        service(),
        vllm_deployment(("--model", "/m"), replicas=1),
    )
    single = make_plan(objects, Allocator(7))
    assert [(p.child, p.address.host) for p in single.pickers] == [("picker/default/epp", "127.7.1.2")]
    assert not [o for o in single.objects if o.kind == "Pod" and o.name.startswith("epp")]
    plan = make_plan(objects, Allocator(7), picker_replicas=3)
    assert [(p.child, p.address.host, p.replica) for p in plan.pickers] == [
        ("picker/default/epp", "127.7.1.2", 0),
        ("picker/default/epp/1", "127.7.1.3", 1),
        ("picker/default/epp/2", "127.7.1.4", 2),
    ]
    epp = next(o for o in plan.objects if o.kind == "Service" and o.name == "epp")
    assert epp.spec.selector == {PICKER_REPLICA_LABEL: "epp"}
    graph = translate(plan.objects).graph
    assert [(pod.status.pod_ip, port) for pod, port in graph.pools[("default", "tiny")].picker.replicas] == [
        ("127.7.1.2", 9002),
        ("127.7.1.3", 9002),
        ("127.7.1.4", 9002),
    ]
    with pytest.raises(ValueError, match="picker replicas"):
        make_plan(objects, Allocator(7), picker_replicas=0)

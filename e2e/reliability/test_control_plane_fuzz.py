"""Hypothesis-generated objects through the translator: schema-shaped sets of Gateways, routes, pools, Services,
grants and pods, with one value anywhere replaced by arbitrary JSON. The translator never crashes, every object it
refuses is refused with the field at fault, and whatever it accepts becomes Envoy configuration and status.

A few hundred cases by default; POOLGATE_HYPOTHESIS_EXAMPLES=10000 for the long run (it also drives the hooks'
property tests in tests/hooks/test_properties.py, which cover hook requests the same way)."""

from __future__ import annotations

import copy
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poolgate.api import parse_objects
from poolgate.api.builders import gateway as gw
from poolgate.api.builders import gateway_class as gateway_class_of_ours
from poolgate.api.builders import pod, pool, pool_ref, route
from poolgate.api.builders import service as svc
from poolgate.translate import TranslateOptions, translate
from tests.hooks.strategies import (
    OUR_CLASS,
    gateway,
    gateway_class,
    http_route,
    inference_pool,
    json_values,
    labels,
    namespaces,
    reference_grant,
    service,
)

pytestmark = pytest.mark.xdist_group("reliability-fuzz")
EXAMPLES = int(os.environ.get("POOLGATE_HYPOTHESIS_EXAMPLES", "300"))
TOP_LEVEL = {"apiVersion", "kind", "metadata", "spec", "status"}


@st.composite
def pods(draw) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": draw(st.sampled_from(["p0", "p1", "p2"])),
            "namespace": draw(namespaces),
            "labels": draw(labels),
        },
        "status": {
            "phase": "Running",
            "podIP": draw(st.sampled_from(["10.0.0.1", "10.0.0.2", "fd00::1"])),
            "conditions": [{"type": "Ready", "status": draw(st.sampled_from(["True", "False"]))}],
        },
    }


def working_set() -> list[dict]:
    """A gateway that serves: class, Gateway, a route to a pool with a picker (FailOpen), a weighted route to two
    pools, the picker Service and ready pods."""
    return [
        gateway_class_of_ours(),
        gw(listeners=[{"name": "http", "port": 8080, "protocol": "HTTP"}]),
        route(),
        route("split", rules=[{"backendRefs": [pool_ref("pool", weight=70), pool_ref("other", weight=30)]}]),
        pool(failure_mode="FailOpen"),
        pool("other"),
        svc(),
        pod("p0", "10.0.0.1"),
        pod("p1", "10.0.0.2"),
        pod("o0", "10.0.0.3", app="other"),
    ]


@st.composite
def damaged_object_sets(draw) -> list[dict]:
    """A working gateway plus schema-shaped objects of every kind; usually one value somewhere in one of them
    replaced by arbitrary JSON."""
    extra = draw(
        st.lists(
            st.one_of(gateway_class(), gateway(), http_route(), inference_pool(), service(), reference_grant(), pods()),
            max_size=6,
        )
    )
    objects = copy.deepcopy(working_set() + extra + [OUR_CLASS])
    if draw(st.integers(0, 4)) == 0:
        return objects
    node, key = objects, draw(st.integers(0, len(objects) - 1))
    for _ in range(draw(st.integers(1, 7))):
        child = node[key]
        if isinstance(child, dict) and child:
            node, key = child, draw(st.sampled_from(sorted(child)))
        elif isinstance(child, list) and child:
            node, key = child, draw(st.integers(0, len(child) - 1))
        else:
            break
    node[key] = draw(json_values)
    return objects


def _field_root(field: str) -> str:
    return re.split(r"[.\[]", field, maxsplit=1)[0]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_object_sets())
def test_the_translator_never_crashes_and_names_the_field_of_every_refusal(objects):
    accepted, problems = parse_objects(("fuzz", obj) for obj in objects)
    for problem in problems:
        assert problem.message, problem
        if problem.object != "<document>":  # a document that is not a mapping has no field to name
            assert _field_root(problem.field) in TOP_LEVEL, str(problem)
    for options in (TranslateOptions(), TranslateOptions(endpoints="dns", picker_tls=True)):
        translation = translate(accepted, options)
        listeners, clusters = translation.discovery_files()["lds.yaml"], translation.discovery_files()["cds.yaml"]
        assert isinstance(listeners["resources"], list) and isinstance(clusters["resources"], list)
        for status in translation.status():
            assert status["kind"] in {"GatewayClass", "Gateway", "HTTPRoute", "InferencePool"}
            assert isinstance(status["status"], dict)

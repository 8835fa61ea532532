"""`poolgate up`'s startup warnings: the conditions of the computed status that report a problem."""

from poolgate.api.builders import basic, build, gateway, gateway_class, listener, pool_ref, route
from poolgate.translate import translate
from poolgate.up.summary import status_problems


def test_a_healthy_gateway_warns_of_nothing_and_a_missing_backend_is_named():
    assert status_problems(translate(basic()).status()) == []  # Conflicted False is the healthy state

    broken = build(gateway_class(), gateway(listeners=listener(8080)), route(rules=[{"backendRefs": [pool_ref("x")]}]))
    problems = status_problems(translate(broken).status())
    assert any("ResolvedRefs False" in p and "HTTPRoute" in p for p in problems)


def test_negative_polarity_conditions_warn_when_true():
    status = [
        {
            "kind": "Gateway",
            "metadata": {"namespace": "default", "name": "g"},
            "status": {
                "listeners": [
                    {"conditions": [{"type": "Conflicted", "status": "True", "reason": "ProtocolConflict"}]},
                    {"conditions": [{"type": "Conflicted", "status": "False", "reason": "NoConflicts"}]},
                ]
            },
        }
    ]
    assert status_problems(status) == ["Gateway default/g: Conflicted True (ProtocolConflict): "]

"""Typed models of the Kubernetes objects poolgate consumes (pydantic), and loading them from YAML/JSON."""

from poolgate.api.base import Condition, KubeObject, LabelSelector, ObjectMeta
from poolgate.api.core import Deployment, Namespace, Pod, Service
from poolgate.api.gateway import Gateway, GatewayClass, HTTPRoute, ReferenceGrant
from poolgate.api.inference import InferenceModelRewrite, InferenceObjective, InferencePool
from poolgate.api.load import InvalidObjects, Problem, load_files, parse_object, parse_objects

__all__ = [
    "Condition",
    "Deployment",
    "Gateway",
    "GatewayClass",
    "HTTPRoute",
    "InferenceModelRewrite",
    "InferenceObjective",
    "InferencePool",
    "InvalidObjects",
    "KubeObject",
    "LabelSelector",
    "Namespace",
    "ObjectMeta",
    "Pod",
    "Problem",
    "ReferenceGrant",
    "Service",
    "load_files",
    "parse_object",
    "parse_objects",
]

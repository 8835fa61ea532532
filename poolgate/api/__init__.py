"""Typed models of the Kubernetes objects poolgate consumes (pydantic), and loading them from YAML/JSON."""

from poolgate.api.base import Condition, KubeObject, LabelSelector, ObjectMeta
from poolgate.api.core import Deployment, Namespace, Pod, Service
from poolgate.api.gateway import GatewayClass, Gateway, HTTPRoute, ReferenceGrant
from poolgate.api.inference import InferenceModelRewrite, InferenceObjective, InferencePool
from poolgate.api.load import InvalidObjects, Problem, load_files, parse_object, parse_objects

__all__ = [
    "Condition", "Deployment", "KubeObject", "LabelSelector", "ObjectMeta", "Namespace", "Pod", "Service", "GatewayClass",
    "Gateway", "HTTPRoute", "ReferenceGrant", "InferenceModelRewrite", "InferenceObjective", "InferencePool",
    "InvalidObjects", "Problem", "load_files", "parse_object", "parse_objects",
]

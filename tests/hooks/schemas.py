"""Validating objects the way an API server would: built-in kinds against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict: unknown fields fail), custom kinds against the openAPIV3Schema of their CRD."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.35.0"  # the kubectl/helm of the aws-cdk layer are built for 1.35


class Schemas:
    """The CRD schemas of some directories, by (apiVersion, kind)."""

    def __init__(self, *directories: Path):
        self.crds: dict[tuple[str, str], dict] = {}
        for directory in directories:
            for path in sorted(directory.rglob("*.yaml")):
                for doc in yaml.safe_load_all(path.read_text()):
                    if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                        spec = doc["spec"]
                        for version in spec["versions"]:
                            key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                            self.crds[key] = version["schema"]["openAPIV3Schema"]
        self._validators: dict[tuple[str, str], jsonschema.Draft7Validator] = {}

    def validator(self, api_version: str, kind: str) -> jsonschema.Draft7Validator:
        key = (api_version, kind)
        if key not in self._validators:
            self._validators[key] = jsonschema.Draft7Validator(self.crds[key])
        return self._validators[key]

    def validate(self, obj: dict) -> None:
        """Raise (with the offending field) unless `obj` is valid for its kind."""
        key = (obj["apiVersion"], obj["kind"])
        if key in self.crds:
            error = jsonschema.exceptions.best_match(self.validator(*key).iter_errors(obj))
            if error is not None:
                raise AssertionError(f"{obj['kind']} {obj['metadata'].get('name')}: {error.json_path}: {error.message}")
            return
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)

    def validate_status(self, api_version: str, kind: str, status: dict) -> None:
        """Raise unless `status` is valid under the CRD's status schema."""
        schema = self.crds[(api_version, kind)]["properties"]["status"]
        error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(status))
        if error is not None:
            raise AssertionError(f"{kind} status: {error.json_path}: {error.message}")

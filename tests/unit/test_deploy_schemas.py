"""Every compose file against the Compose Specification's JSON schema, every Kubernetes
manifest against Kubernetes' own schemas, offline.

Where the schemas come from (all PyPI packages of the test extra, no network at test time):
- Compose: compose-spec.json as vendored by check-jsonschema (its LICENSE.compose-spec,
  Apache-2.0, ships beside it).
- Kubernetes: kubernetes-validate, which ships the strict schemas (no unknown fields) of
  every Kubernetes version since 1.25.
- KEDA's ScaledObject and TriggerAuthentication are CRDs that no package ships: a small
  schema of our own below checks the fields these manifests use. The Kustomization is
  checked by test_deploy_files (its resources are the files here).
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.unit.deploy_files import COMPOSE_FILES, k8s_documents, load_yaml

K8S_VERSIONS = ["1.28", kubernetes_validate.utils.latest_version()]


def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(
        (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    )
    validator_class = jsonschema.validators.validator_for(schema)
    return validator_class(schema)


def _string_map() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": {"type": "string"}}


_KEDA_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "labels": _string_map()},
}
KEDA_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "metadata": _KEDA_METADATA,
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "kind": {"type": "string"},
                            "apiVersion": {"type": "string"},
                        },
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"type": "string"},
                                # KEDA's trigger metadata is a map of strings: 100 is refused.
                                "metadata": _string_map(),
                                "authenticationRef": {
                                    "type": "object",
                                    "required": ["name"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "name": {"type": "string"},
                                        "kind": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "metadata": _KEDA_METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {
                                "parameter": {"type": "string"},
                                "name": {"type": "string"},
                                "key": {"type": "string"},
                            },
                        },
                    }
                },
            },
        },
    },
}


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_follows_the_compose_specification(path):
    compose_validator().validate(load_yaml(path))


def test_compose_schema_refuses_an_unknown_service_key():
    broken = {"services": {"worker": {"image": "ownkey", "comand": ["worker"]}}}
    assert not compose_validator().is_valid(broken)


def _k8s_id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


BUILTIN_DOCS = [doc for doc in k8s_documents() if doc["kind"] not in KEDA_SCHEMAS]
KEDA_DOCS = [doc for doc in k8s_documents() if doc["kind"] in KEDA_SCHEMAS]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", BUILTIN_DOCS, ids=_k8s_id)
def test_kubernetes_manifest_follows_the_kubernetes_schema(doc, version):
    kubernetes_validate.validate(doc, version, strict=True)


def test_kubernetes_schema_refuses_an_unknown_container_field():
    (api,) = [d for d in BUILTIN_DOCS if _k8s_id(d) == "Deployment/ownkey-api"]
    broken = json.loads(json.dumps(api))
    broken["spec"]["template"]["spec"]["containers"][0]["arg"] = ["api"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_only_keda_objects_skip_the_kubernetes_schemas():
    assert {doc["kind"] for doc in KEDA_DOCS} == set(KEDA_SCHEMAS)
    assert all(doc["apiVersion"].startswith("keda.sh/") for doc in KEDA_DOCS)


@pytest.mark.parametrize("doc", KEDA_DOCS, ids=_k8s_id)
def test_keda_object_has_the_fields_keda_reads(doc):
    jsonschema.validate(doc, KEDA_SCHEMAS[doc["kind"]])


def test_keda_schema_refuses_a_numeric_list_length():
    (scaled,) = [d for d in KEDA_DOCS if d["kind"] == "ScaledObject"]
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["triggers"][0]["metadata"]["listLength"] = 100
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, KEDA_SCHEMAS["ScaledObject"])

"""The Kubernetes API semantics over the store: create, get, list, update, patch, delete, watch.

One `Api` holds the served resource types (built-ins plus what CRDs add), the
store, and the garbage collector. Every mutation runs under the store's lock,
so a read-modify-write (an update with its resourceVersion check, a patch) is
atomic, as etcd's compare-and-swap makes it on a real server.
"""

from __future__ import annotations

import base64
import copy
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import yaml

from kube_apiserver import cel_rules, core_schemas, errors, objects, patches, schema
from kube_apiserver.errors import ApiError
from kube_apiserver.registry import BUILTIN_TYPES, ResourceType, type_from_crd
from kube_apiserver.selectors import SelectorError, parse_field_selector, parse_label_selector
from kube_apiserver.store import Gone, ObjectKey, Store

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
_SYSTEM_METADATA = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "namespace",
    "name",
    "generation",
)


class Validation:
    """The request's `fieldValidation`: what to do about fields the schema does not know.

    Strict refuses the request (400), Warn (the default) and Ignore accept it;
    Warn reports each field in `warnings`, sent back as Warning headers.
    """

    def __init__(self, mode: str | None = None) -> None:
        self.mode = mode or "Warn"
        self.warnings: list[str] = []

    def unknown_fields(self, paths: list[str]) -> None:
        if not paths:
            return
        if self.mode == "Strict":
            raise errors.bad_request("strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in paths))
        if self.mode == "Warn":
            self.warnings += [f'unknown field "{p}"' for p in paths]


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything that is neither metadata nor status: a change here bumps metadata.generation."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Api:
    def __init__(self, store: Store | None = None, bookmark_interval: float = 5.0) -> None:
        self.store = store or Store()
        self.bookmark_interval = bookmark_interval
        self.types: dict[tuple[str, str, str], ResourceType] = {}
        self.cluster_ips = objects.ClusterIPs()
        for resource_type in BUILTIN_TYPES:
            self._register(resource_type)
        for name in DEFAULT_NAMESPACES:
            if self.store.get(("", "namespaces"), ("", name)) is None:
                self.create(self.resolve("", "v1", "namespaces"), None, {"metadata": {"name": name}})
        # Imported here: the collector calls back into this Api.
        from kube_apiserver.collector import GarbageCollector

        self.collector = GarbageCollector(self)

    # Resource types.
    def _register(self, resource_type: ResourceType) -> None:
        self.types[(resource_type.group, resource_type.version, resource_type.plural)] = resource_type

    def restore_crds(self) -> None:
        """Serve the types of every stored CRD (after the store was loaded from disk)."""
        for crd in self.store.items(("apiextensions.k8s.io", "customresourcedefinitions")):
            for resource_type in type_from_crd(crd):
                self._register(resource_type)

    def resolve(self, group: str, version: str, plural: str) -> ResourceType:
        resource_type = self.types.get((group, version, plural))
        if resource_type is None:
            raise ApiError(
                404, "NotFound", "the server could not find the requested resource", {"group": group, "kind": plural}
            )
        return resource_type

    def type_of(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        return next(
            (t for t in self.types.values() if t.group == group and t.version == version and t.kind == kind), None
        )

    # Reads.
    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.store.get(rt.key, (namespace or "", name))
        if obj is None:
            raise errors.not_found(rt.plural, name, rt.group)
        return self._present(rt, obj)

    def _present(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        return obj

    def _matcher(self, rt: ResourceType, label_selector: str | None, field_selector: str | None):
        try:
            labels = parse_label_selector(label_selector)
            fields = parse_field_selector(field_selector, rt.kind)
        except SelectorError as error:
            raise errors.bad_request(str(error)) from None
        return lambda obj: labels(obj["metadata"].get("labels") or {}) and fields(obj)

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> dict[str, Any]:
        matches = self._matcher(rt, label_selector, field_selector)
        with self.store.changed:
            items = [
                self._present(rt, o)
                for o in self.store.items(rt.key, namespace if rt.namespaced else None)
                if matches(o)
            ]
            resource_version = self.store.resource_version
        metadata: dict[str, Any] = {"resourceVersion": str(resource_version)}
        if continue_token:
            try:
                token = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start_after = tuple(token["start"])
            except (ValueError, KeyError, TypeError):
                raise errors.bad_request("continue key is not valid: invalid token") from None
            if token["rv"] < self.store.compacted:
                raise errors.gone(
                    "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter."
                )
            items = [o for o in items if (o["metadata"].get("namespace") or "", o["metadata"]["name"]) > start_after]
            metadata["resourceVersion"] = str(token["rv"])
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            token = {"rv": int(metadata["resourceVersion"]), "start": [last.get("namespace") or "", last["name"]]}
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {"apiVersion": rt.api_version, "kind": f"{rt.kind}List", "metadata": metadata, "items": items}

    # Create.
    def _check_namespace_open(self, namespace: str) -> None:
        ns = self.store.get(("", "namespaces"), ("", namespace))
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
                {
                    "name": namespace,
                    "kind": "namespaces",
                    "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}],
                },
            )

    def _check_crd_open(self, rt: ResourceType) -> None:
        crd = self.store.get(("apiextensions.k8s.io", "customresourcedefinitions"), ("", f"{rt.plural}.{rt.group}"))
        if crd is not None and crd["metadata"].get("deletionTimestamp"):
            raise errors.method_not_allowed("create not allowed while custom resource definition is terminating")

    def _admit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, validation: Validation) -> None:
        """Type-specific defaults and checks, then the object's schema."""
        name = obj["metadata"]["name"]
        # ObjectMeta's collections are omitempty: an emptied one is not stored.
        for key in ("labels", "annotations", "finalizers", "ownerReferences", "managedFields"):
            if obj["metadata"].get(key) in ({}, []):
                del obj["metadata"][key]
        objects.check_metadata(rt.kind, rt.group, obj)
        causes: list[dict[str, str]] = []
        if rt.custom and rt.schema:
            schema.apply_defaults(obj, rt.schema)
            validation.unknown_fields(schema.prune(obj, rt.schema, root=True))
            causes = schema.validate(obj, rt.schema)
            if cel_rules.has_rules(rt.schema):
                causes = causes + [cel_rules.NOT_CHECKED] if causes else cel_rules.violations(obj, rt.schema, "")
        elif not rt.custom:
            causes = self._builtin_causes(rt, obj, old, validation)
        if causes:
            raise errors.invalid(rt.kind, name, rt.group, causes)

    def _builtin_causes(
        self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, validation: Validation
    ) -> list[dict[str, str]]:
        """A built-in object against its Kubernetes schema, then the rules of its kind."""
        findings = core_schemas.check({**obj, "apiVersion": rt.api_version, "kind": rt.kind})
        if findings.type_errors:
            raise errors.bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                + "; ".join(findings.type_errors)
            )
        validation.unknown_fields([core_schemas.path_text(p) for p in findings.unknown])
        for path in findings.unknown:
            core_schemas.remove(obj, path)
        causes = findings.causes
        if rt.kind == "Pod" and rt.group == "":
            causes += objects.check_pod(obj) + (objects.check_pod_update(old, obj) if old else [])
        elif rt.kind == "CustomResourceDefinition":
            causes += self._crd_causes(obj)
        return causes

    def _crd_causes(self, crd: dict[str, Any]) -> list[dict[str, str]]:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        expected = f"{names.get('plural')}.{spec.get('group')}"
        causes = []
        if crd["metadata"]["name"] != expected:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": "metadata.name",
                    "message": f'metadata.name: Invalid value: "{crd["metadata"]["name"]}": '
                    'must be spec.names.plural+"."+spec.group',
                }
            )
        if not spec.get("versions"):
            causes.append(
                {"reason": "FieldValueRequired", "field": "spec.versions", "message": "spec.versions: Required value"}
            )
        elif sum(1 for v in spec["versions"] if v.get("storage")) != 1:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": "spec.versions",
                    "message": "spec.versions: Invalid value: must have exactly one version marked as storage version",
                }
            )
        return causes

    def create(
        self,
        rt: ResourceType,
        namespace: str | None,
        body: dict[str, Any],
        dry_run: bool = False,
        validation: Validation | None = None,
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request is not an object")
        obj = copy.deepcopy(body)
        if obj.get("kind") not in (None, rt.kind) or obj.get("apiVersion") not in (None, rt.api_version):
            raise errors.bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) does not match the expected API version "
                f"({rt.api_version})"
            )
        metadata = obj.setdefault("metadata", {})
        with self.store.changed:
            if rt.namespaced:
                if metadata.get("namespace") and metadata["namespace"] != namespace:
                    raise errors.bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request"
                    )
                metadata["namespace"] = namespace
                self._check_namespace_open(namespace)
            else:
                metadata.pop("namespace", None)
            if rt.custom:
                self._check_crd_open(rt)
            if metadata.get("resourceVersion"):
                raise errors.bad_request("resourceVersion should not be set on objects to be created")
            if not metadata.get("name"):
                if not metadata.get("generateName"):
                    raise errors.invalid(
                        rt.kind,
                        "",
                        rt.group,
                        [
                            {
                                "reason": "FieldValueRequired",
                                "field": "metadata.name",
                                "message": "metadata.name: Required value: name or generateName is required",
                            }
                        ],
                    )
                metadata["name"] = self._unused_name(rt, namespace, metadata["generateName"])
            for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
                metadata.pop(key, None)
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = objects.now()
            metadata["generation"] = 1
            self._defaults_on_create(rt, obj)
            self._admit(rt, obj, None, validation or Validation())
            if self.store.get(rt.key, (namespace or "" if rt.namespaced else "", metadata["name"])) is not None:
                raise errors.already_exists(rt.plural, metadata["name"], rt.group)
            if dry_run:
                return self._present(rt, obj)
            stored = self.store.put(rt.key, obj)
            self._after_write(rt, stored)
        return self._present(rt, stored)

    def _unused_name(self, rt: ResourceType, namespace: str | None, prefix: str) -> str:
        while True:
            name = objects.generate_name(prefix)
            if self.store.get(rt.key, (namespace or "", name)) is None:
                return name

    def _defaults_on_create(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.has_status and rt.custom:
            obj.pop("status", None)
        if rt.group != "":
            if rt.kind == "CustomResourceDefinition":
                obj["metadata"]["finalizers"] = list(
                    dict.fromkeys((obj["metadata"].get("finalizers") or []) + [CRD_CLEANUP_FINALIZER])
                )
            return
        if rt.kind == "Namespace":
            obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
            obj["status"] = {"phase": "Active"}
            labels = obj["metadata"].setdefault("labels", {})
            labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        elif rt.kind == "Pod":
            objects.default_pod(obj)
            account = obj["spec"]["serviceAccountName"]
            if self.store.get(("", "serviceaccounts"), (obj["metadata"]["namespace"], account)) is None:
                raise errors.forbidden(
                    f'pods "{obj["metadata"].get("name")}" is forbidden: error looking up service account '
                    f'{obj["metadata"]["namespace"]}/{account}: serviceaccount "{account}" not found'
                )
        elif rt.kind == "Service":
            taken = {s.get("spec", {}).get("clusterIP") for s in self.store.items(("", "services"))}
            objects.default_service(obj, self.cluster_ips.allocate(taken))
        elif rt.kind == "Secret":
            objects.normalize_secret(obj)

    def _after_write(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """Side effects of a stored object: CRDs serve their types; namespaces get their default account."""
        if rt.kind == "CustomResourceDefinition" and not obj["metadata"].get("deletionTimestamp"):
            for resource_type in type_from_crd(obj):
                self._register(resource_type)
            self._mark_crd_established(obj)
        elif rt.kind == "Namespace" and rt.group == "" and not obj["metadata"].get("deletionTimestamp"):
            if self.store.get(("", "serviceaccounts"), (obj["metadata"]["name"], "default")) is None:
                self.create(
                    self.resolve("", "v1", "serviceaccounts"),
                    obj["metadata"]["name"],
                    {"metadata": {"name": "default"}},
                )

    def _mark_crd_established(self, crd: dict[str, Any]) -> None:
        names = crd["spec"]["names"]
        accepted = {k: v for k, v in names.items()}
        accepted.setdefault("singular", names["kind"].lower())
        accepted.setdefault("listKind", names["kind"] + "List")
        stamp = objects.now()
        status = {
            "acceptedNames": accepted,
            "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": stamp,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": stamp,
                },
            ],
        }
        if crd.get("status", {}).get("acceptedNames") != accepted:
            crd["status"] = status
            self.store.put(("apiextensions.k8s.io", "customresourcedefinitions"), crd)

    # Update and patch.
    def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        subresource: str | None = None,
        dry_run: bool = False,
        validation: Validation | None = None,
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request is not an object")
        with self.store.changed:
            current = self.store.get(rt.key, (namespace or "", name))
            if current is None:
                raise errors.not_found(rt.plural, name, rt.group)
            metadata = body.get("metadata") or {}
            if metadata.get("name") not in (None, name):
                raise errors.bad_request(
                    f"the name of the object ({metadata.get('name')}) does not match the name on the URL ({name})"
                )
            if metadata.get("resourceVersion"):
                if metadata["resourceVersion"] != current["metadata"]["resourceVersion"]:
                    raise errors.conflict(rt.plural, name, rt.group)
            elif not rt.allow_unconditional_update:
                raise errors.invalid(
                    rt.kind,
                    name,
                    rt.group,
                    [
                        {
                            "reason": "FieldValueInvalid",
                            "field": "metadata.resourceVersion",
                            "message": "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                        }
                    ],
                )
            return self._replace(rt, current, copy.deepcopy(body), subresource, dry_run, validation or Validation())

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        raw: bytes,
        subresource: str | None = None,
        field_manager: str | None = None,
        dry_run: bool = False,
        validation: Validation | None = None,
    ) -> dict[str, Any]:
        validation = validation or Validation()
        known = (patches.MERGE_PATCH, patches.JSON_PATCH, patches.APPLY_PATCH) + (
            () if rt.custom else (patches.STRATEGIC_MERGE_PATCH,)
        )
        if content_type not in known:
            raise errors.unsupported_media_type(content_type)
        try:
            body = yaml.safe_load(raw) if content_type == patches.APPLY_PATCH else json.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as error:
            raise errors.bad_request(f"error decoding patch: {error}") from None
        with self.store.changed:
            current = self.store.get(rt.key, (namespace or "", name))
            if content_type == patches.APPLY_PATCH:
                if not field_manager:
                    raise errors.invalid(
                        "PatchOptions",
                        "",
                        "meta.k8s.io",
                        [
                            {
                                "reason": "FieldValueRequired",
                                "field": "fieldManager",
                                "message": "fieldManager: Required value: is required for apply patch",
                            }
                        ],
                    )
                if current is None:
                    if subresource:
                        raise errors.not_found(rt.plural, name, rt.group)
                    applied = copy.deepcopy(body)
                    applied.setdefault("metadata", {})["name"] = name
                    return self.create(rt, namespace, applied, dry_run, validation)
            if current is None:
                raise errors.not_found(rt.plural, name, rt.group)
            if content_type == patches.MERGE_PATCH:
                patched = patches.merge_patch(current, body)
            elif content_type == patches.JSON_PATCH:
                try:
                    patched = patches.json_patch(current, body)
                except ValueError as error:
                    raise ApiError(
                        422, "Invalid", f"the server rejected our request due to an error in our request: {error}"
                    ) from None
            elif content_type == patches.STRATEGIC_MERGE_PATCH:
                patched = patches.strategic_merge_patch(current, body)
            else:
                patched = patches.apply_patch(current, body)
            if not isinstance(patched, dict):
                raise errors.bad_request("the patch did not result in an object")
            patched_rv = (patched.get("metadata") or {}).get("resourceVersion")
            if patched_rv and patched_rv != current["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.plural, name, rt.group)
            return self._replace(rt, current, patched, subresource, dry_run, validation)

    def _replace(
        self,
        rt: ResourceType,
        current: dict[str, Any],
        new: dict[str, Any],
        subresource: str | None,
        dry_run: bool,
        validation: Validation,
    ) -> dict[str, Any]:
        """Store `new` in place of `current` with the API's rules; a write that changes nothing is a no-op."""
        if subresource == "status":
            result = copy.deepcopy(current)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            result = new
            result.setdefault("metadata", {})
            if rt.has_status:
                if "status" in current:
                    result["status"] = copy.deepcopy(current["status"])
                else:
                    result.pop("status", None)
            for key in _SYSTEM_METADATA:
                if key in current["metadata"]:
                    result["metadata"][key] = current["metadata"][key]
                else:
                    result["metadata"].pop(key, None)
            if rt.kind == "Service" and rt.group == "":
                old_ip = current.get("spec", {}).get("clusterIP")
                new_spec = result.setdefault("spec", {})
                if new_spec.get("clusterIP") in (None, ""):
                    new_spec["clusterIP"] = old_ip
                    if "clusterIPs" in current.get("spec", {}):
                        new_spec.setdefault("clusterIPs", current["spec"]["clusterIPs"])
                elif new_spec["clusterIP"] != old_ip:
                    changed = f'spec.clusterIPs[0]: Invalid value: ["{new_spec["clusterIP"]}"]: may not change once set'
                    raise errors.invalid(
                        "Service",
                        current["metadata"]["name"],
                        "",
                        [{"reason": "FieldValueInvalid", "field": "spec.clusterIPs[0]", "message": changed}],
                    )
            if rt.kind == "Secret" and rt.group == "":
                objects.normalize_secret(result)
        metadata = result["metadata"]
        name = current["metadata"]["name"]
        if current["metadata"].get("deletionTimestamp"):
            added = set(metadata.get("finalizers") or []) - set(current["metadata"].get("finalizers") or [])
            if added:
                raise errors.invalid(
                    rt.kind,
                    name,
                    rt.group,
                    [
                        {
                            "reason": "FieldValueForbidden",
                            "field": "metadata.finalizers",
                            "message": "metadata.finalizers: Forbidden: no new finalizers can be added if the "
                            f"object is being deleted, found new finalizers {sorted(added)}",
                        }
                    ],
                )
        self._admit(rt, result, current, validation)
        if _spec_part(result) != _spec_part(current):
            metadata["generation"] = current["metadata"].get("generation", 1) + 1
        metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        comparable = {k: v for k, v in result.items() if k not in ("apiVersion", "kind")}
        if comparable == {k: v for k, v in current.items() if k not in ("apiVersion", "kind")}:
            return self._present(rt, current)
        if dry_run:
            return self._present(rt, result)
        if (
            metadata.get("deletionTimestamp")
            and not metadata.get("finalizers")
            and not self._awaits_kubelet(rt, result)
        ):
            removed = self.store.remove(rt.key, (metadata.get("namespace") or "", name))
            self._after_remove(rt, removed)
            return self._present(rt, removed)
        stored = self.store.put(rt.key, result)
        self._after_write(rt, stored)
        self.collector.kick()
        return self._present(rt, stored)

    def bind(self, namespace: str, name: str, binding: dict[str, Any]) -> dict[str, Any]:
        """pods/binding: put a pod on a node (what a scheduler does); a bound pod cannot be bound again."""
        rt = self.resolve("", "v1", "pods")
        target = (binding.get("target") or {}).get("name")
        if not target:
            raise errors.invalid(
                "Binding",
                name,
                "",
                [{"reason": "FieldValueRequired", "field": "target.name", "message": "target.name: Required value"}],
            )
        with self.store.changed:
            pod = self.store.get(rt.key, (namespace, name))
            if pod is None:
                raise errors.not_found("pods", name)
            if pod["spec"].get("nodeName"):
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is already assigned to '
                    f'node "{pod["spec"]["nodeName"]}"',
                )
            pod["spec"]["nodeName"] = target
            pod.setdefault("status", {}).setdefault("conditions", []).append(
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": objects.now()}
            )
            self.store.put(rt.key, pod)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    # Delete.
    def _awaits_kubelet(self, rt: ResourceType, obj: dict[str, Any]) -> bool:
        """A pod bound to a node stays, terminating, until its kubelet deletes it with grace period 0."""
        return (
            rt.kind == "Pod"
            and rt.group == ""
            and bool((obj.get("spec") or {}).get("nodeName"))
            and obj["metadata"].get("deletionGracePeriodSeconds", 0) > 0
        )

    def delete(
        self, rt: ResourceType, namespace: str | None, name: str, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        options = options or {}
        with self.store.changed:
            key: ObjectKey = (namespace or "" if rt.namespaced else "", name)
            current = self.store.get(rt.key, key)
            if current is None:
                raise errors.not_found(rt.plural, name, rt.group)
            preconditions = options.get("preconditions") or {}
            if preconditions.get("uid") and preconditions["uid"] != current["metadata"]["uid"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in object meta: "
                    f"{current['metadata']['uid']}",
                )
            if (
                preconditions.get("resourceVersion")
                and preconditions["resourceVersion"] != current["metadata"]["resourceVersion"]
            ):
                raise errors.conflict(rt.plural, name, rt.group)
            if options.get("dryRun"):
                return self._present(rt, current)
            metadata = current["metadata"]
            grace = options.get("gracePeriodSeconds")
            if rt.kind == "Pod" and rt.group == "" and grace is None:
                grace = current["spec"].get("terminationGracePeriodSeconds", 30)
            grace = grace or 0
            if metadata.get("deletionTimestamp"):
                if rt.kind == "Pod" and grace < metadata.get("deletionGracePeriodSeconds", 0):
                    metadata["deletionGracePeriodSeconds"] = grace
                    return self.store_or_remove(rt, current)
                return self._present(rt, current)
            policy = options.get("propagationPolicy")
            if policy is None and options.get("orphanDependents") is not None:
                policy = "Orphan" if options["orphanDependents"] else "Background"
            finalizers = list(metadata.get("finalizers") or [])
            if policy == "Foreground" and FOREGROUND not in finalizers:
                finalizers.append(FOREGROUND)
            if policy == "Orphan" and ORPHAN not in finalizers:
                finalizers.append(ORPHAN)
            terminating = rt.kind == "Namespace" and rt.group == ""
            graceful = rt.kind == "Pod" and rt.group == "" and bool(current["spec"].get("nodeName")) and grace > 0
            if finalizers or terminating or graceful:
                metadata["deletionTimestamp"] = objects.now()
                metadata["deletionGracePeriodSeconds"] = grace if graceful else 0
                metadata["generation"] = metadata.get("generation", 1) + 1
                if finalizers:
                    metadata["finalizers"] = finalizers
                if terminating:
                    current["status"] = {"phase": "Terminating"}
                stored = self.store.put(rt.key, current)
                self.collector.kick()
                return self._present(rt, stored)
            removed = self.store.remove(rt.key, key)
            self._after_remove(rt, removed)
            return self._present(rt, removed)

    def store_or_remove(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        if not obj["metadata"].get("finalizers") and not self._awaits_kubelet(rt, obj):
            removed = self.store.remove(rt.key, (obj["metadata"].get("namespace") or "", obj["metadata"]["name"]))
            self._after_remove(rt, removed)
            return self._present(rt, removed)
        return self._present(rt, self.store.put(rt.key, obj))

    def _after_remove(self, rt: ResourceType, removed: dict[str, Any] | None) -> None:
        if removed is not None and rt.kind == "CustomResourceDefinition":
            for resource_type in type_from_crd(removed):
                self.types.pop((resource_type.group, resource_type.version, resource_type.plural), None)
                self.store.drop_type(resource_type.key)
        self.collector.kick()

    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        options: dict[str, Any] | None,
    ) -> dict[str, Any]:
        listed = self.list(rt, namespace, label_selector, field_selector)
        for item in listed["items"]:
            try:
                self.delete(rt, item["metadata"].get("namespace"), item["metadata"]["name"], options)
            except ApiError as error:
                if error.code != 404:
                    raise
        return {
            "apiVersion": rt.api_version,
            "kind": f"{rt.kind}List",
            "metadata": {"resourceVersion": str(self.store.resource_version)},
            "items": [],
        }

    # Watch.
    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        resource_version: str | None,
        timeout: float,
        bookmarks: bool,
        stopped: Any,
        send_initial_events: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Watch events as dicts; ends at timeout, when `stopped()` is true, or after a 410 ERROR event.

        Without a resourceVersion (or with `sendInitialEvents`, the watch-list
        protocol), the current objects come first as ADDED events; with
        `sendInitialEvents` a BOOKMARK annotated `k8s.io/initial-events-end`
        then says the initial list is complete. Bad selectors or
        resourceVersions raise here, before any event is produced.
        """
        matches = self._matcher(rt, label_selector, field_selector)
        if resource_version not in (None, "", "0") and not resource_version.isdigit():
            raise errors.bad_request(f'invalid resource version "{resource_version}"')
        return self._watch_events(
            rt,
            namespace if rt.namespaced else None,
            matches,
            resource_version,
            timeout,
            bookmarks,
            stopped,
            send_initial_events,
        )

    def _watch_events(
        self,
        rt: ResourceType,
        scope: str | None,
        matches: Any,
        resource_version: str | None,
        timeout: float,
        bookmarks: bool,
        stopped: Any,
        send_initial_events: bool,
    ) -> Iterator[dict[str, Any]]:

        def in_scope(obj: dict[str, Any]) -> bool:
            return scope is None or obj["metadata"].get("namespace") == scope

        with self.store.changed:
            current = [o for o in self.store.items(rt.key, scope) if matches(o)]
            start = self.store.resource_version
        matched = {(o["metadata"].get("namespace") or "", o["metadata"]["name"]) for o in current}
        if resource_version in (None, "", "0") or send_initial_events:
            for obj in current:
                yield {"type": "ADDED", "object": self._present(rt, obj)}
            last = start
            if send_initial_events:
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "kind": rt.kind,
                        "apiVersion": rt.api_version,
                        "metadata": {
                            "resourceVersion": str(last),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    },
                }
        else:
            last = int(resource_version)
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + self.bookmark_interval
        while not stopped() and time.monotonic() < deadline:
            try:
                with self.store.changed:
                    events = self.store.events_after(last, rt.key)
                    newest = self.store.resource_version
            except Gone:
                yield {
                    "type": "ERROR",
                    "object": errors.gone(f"too old resource version: {last} ({self.store.compacted + 1})").status(),
                }
                return
            for event in events:
                obj = event.object
                if not in_scope(obj):
                    continue
                key = (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
                kind = event.type
                if kind == "DELETED":
                    if key not in matched and not matches(obj):
                        continue
                    matched.discard(key)
                elif matches(obj):
                    kind = "ADDED" if key not in matched else kind
                    matched.add(key)
                elif key in matched:
                    matched.discard(key)
                    kind = "DELETED"
                else:
                    continue
                yield {"type": kind, "object": self._present(rt, copy.deepcopy(obj))}
            last = newest
            if bookmarks and time.monotonic() >= next_bookmark:
                next_bookmark = time.monotonic() + self.bookmark_interval
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "kind": rt.kind,
                        "apiVersion": rt.api_version,
                        "metadata": {"resourceVersion": str(last)},
                    },
                }
            if not events:
                self.store.wait(last, max(0.0, min(deadline - time.monotonic(), next_bookmark - time.monotonic(), 1.0)))

"""Who is asking, and may they: bearer tokens and RBAC.

Authentication: the admin token (member of `system:masters`, allowed
everything) and ServiceAccount tokens issued through the TokenRequest API
(`POST .../serviceaccounts/NAME/token`), as `system:serviceaccount:NS:NAME`.
A request with a token that is not valid is refused with 401; one without a
token is `system:anonymous` (group `system:unauthenticated`), whom RBAC allows
nothing but health and version unless a binding says otherwise — as a real
server with anonymous authentication on (its default). With authentication off
everyone is admin.

Authorization: RBAC as Kubernetes evaluates it — Roles and ClusterRoles bound
by RoleBindings (in their namespace) and ClusterRoleBindings (everywhere) to
users, groups or ServiceAccounts; rules by API group, resource (with
`resource/subresource`), verb and resourceName, `*` wildcards. Discovery,
OpenAPI, version and health paths, and asking what one may do
(SelfSubjectAccessReview), are open to every authenticated user, as the
bootstrap `system:discovery` and `system:basic-user` bindings make them.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kube_apiserver.errors import ApiError

if TYPE_CHECKING:
    from kube_apiserver.api import Api

RBAC = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = field(default=())

    @property
    def is_admin(self) -> bool:
        return "system:masters" in self.groups


ADMIN = User("admin", ("system:masters", "system:authenticated"))
ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


@dataclass(frozen=True)
class Request:
    verb: str
    group: str
    resource: str
    subresource: str | None
    namespace: str | None
    name: str | None


# The bootstrap ClusterRole system:basic-user, bound to every authenticated user.
BASIC_USER_RULES = [
    {
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
        "verbs": ["create"],
    }
]


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


class Authenticator:
    def __init__(self, admin_token: str | None) -> None:
        self.admin_token = admin_token
        self._tokens: dict[str, User] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.admin_token is not None

    def issue(self, namespace: str, service_account: str) -> str:
        token = secrets.token_urlsafe(32)
        user = User(
            f"system:serviceaccount:{namespace}:{service_account}",
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
        )
        with self._lock:
            self._tokens[token] = user
        return token

    def user(self, authorization: str | None) -> User:
        if not self.enabled:
            return ADMIN
        if not authorization:
            return ANONYMOUS
        if not authorization.startswith("Bearer "):
            raise unauthorized()
        token = authorization[len("Bearer ") :].strip()
        if secrets.compare_digest(token, self.admin_token or ""):
            return ADMIN
        with self._lock:
            user = self._tokens.get(token)
        if user is None:
            raise unauthorized()
        return user


def _matches(values: list[str] | None, wanted: str) -> bool:
    return bool(values) and ("*" in values or wanted in values)


def _rule_allows(rule: dict[str, Any], request: Request) -> bool:
    resource = request.resource + (f"/{request.subresource}" if request.subresource else "")
    resources = rule.get("resources") or []
    resource_ok = (
        "*" in resources
        or resource in resources
        or (request.subresource is not None and f"{request.resource}/*" in resources)
    )
    names = rule.get("resourceNames")
    return (
        _matches(rule.get("apiGroups"), request.group)
        and resource_ok
        and _matches(rule.get("verbs"), request.verb)
        and (not names or request.name in names)
    )


def _subject_is(subject: dict[str, Any], user: User, binding_namespace: str | None) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user.name
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{namespace}:{subject.get('name')}"
    return False


class Authorizer:
    def __init__(self, api: Api) -> None:
        self.api = api

    def _rules(self, role_ref: dict[str, Any], namespace: str | None) -> list[dict[str, Any]]:
        if role_ref.get("kind") == "ClusterRole":
            role = self.api.store.get((RBAC, "clusterroles"), ("", role_ref.get("name", "")))
        else:
            role = self.api.store.get((RBAC, "roles"), (namespace or "", role_ref.get("name", "")))
        return (role or {}).get("rules") or []

    def allowed(self, user: User, request: Request) -> bool:
        if user.is_admin or (
            "system:authenticated" in user.groups and any(_rule_allows(r, request) for r in BASIC_USER_RULES)
        ):
            return True
        for binding in self.api.store.items((RBAC, "clusterrolebindings")):
            if any(_subject_is(s, user, None) for s in binding.get("subjects") or []):
                if any(_rule_allows(r, request) for r in self._rules(binding.get("roleRef") or {}, None)):
                    return True
        if request.namespace is None:
            return False
        for binding in self.api.store.items((RBAC, "rolebindings"), request.namespace):
            if any(_subject_is(s, user, request.namespace) for s in binding.get("subjects") or []):
                if any(_rule_allows(r, request) for r in self._rules(binding.get("roleRef") or {}, request.namespace)):
                    return True
        return False

    def check(self, user: User, request: Request) -> None:
        if self.allowed(user, request):
            return
        qualified = request.resource + (f"/{request.subresource}" if request.subresource else "")
        target = f"{request.resource}.{request.group}" if request.group else request.resource
        named = f' "{request.name}"' if request.name else ""
        where = f' in the namespace "{request.namespace}"' if request.namespace else " at the cluster scope"
        raise ApiError(
            403,
            "Forbidden",
            f'{target}{named} is forbidden: User "{user.name}" cannot {request.verb} resource '
            f'"{qualified}" in API group "{request.group}"{where}',
            {"name": request.name or "", "group": request.group, "kind": request.resource},
        )

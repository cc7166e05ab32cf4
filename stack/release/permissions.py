"""Which Google API methods the bundle (and its deploy tooling) calls, which IAM
permissions each needs, and which permissions the roles ``pack391 bootstrap`` grants hold.

Two tables, each row citing the Google page it was read from:

- :data:`METHODS`: API method -> the permissions its caller needs, and who the caller is
  (:class:`Principal`: the functions' runtime account, the CI deploy account, or nobody:
  an API key). Method ids are the gRPC names (``google.cloud.run.v2.Services/UpdateService``)
  the REST and gRPC transports share; the Cloud Storage JSON API's are its own
  (``storage.objects.insert``).
- :data:`ROLE_PERMISSIONS`: role -> the permissions of that role that matter here (a
  subset: ``roles/run.developer`` holds more than the bundle uses).

:mod:`stack.release.bootstrap` grants :data:`RUNTIME_ROLES` and :data:`DEPLOYER_ROLES`;
:func:`problems` checks calls against them (``tests/plugins/api_calls.py`` runs it on every
call the test suite made to the fakes of Google's APIs). Pure data and functions: nothing
here calls anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class Principal(StrEnum):
    """Who makes a call in production."""

    RUNTIME = "runtime"
    """The functions' own service account (``PACK391_RUNTIME_SERVICE_ACCOUNT``)."""
    DEPLOYER = "deployer"
    """The CI deploy account (workload identity federation) running ``firebase deploy``
    and ``pack391 deploy ...``."""
    API_KEY = "api-key"
    """No IAM principal: the call carries the project's web API key."""


@dataclass(frozen=True)
class Method:
    """One Google API method: who calls it, what it needs, where that is documented."""

    id: str
    permissions: tuple[str, ...]
    """Every permission the caller needs (empty for an API-key call)."""
    principal: Principal
    caller: str
    """Where in this repository the call is made (or what makes it on our behalf)."""
    doc: str
    """The Google page that names the permission."""


# Google's pages each row cites ------------------------------------------------------

RUN_PERMISSIONS = "https://cloud.google.com/run/docs/reference/iam/permissions"
RUN_ROLES = "https://cloud.google.com/run/docs/reference/iam/roles"
RUN_SERVICE_IDENTITY = "https://cloud.google.com/run/docs/configuring/services/service-identity"
""""Certain operations, like creating or updating a service or revision, require the
deployer account to have permissions on the service identity resource" (actAs)."""
MONITORING_ACCESS = "https://cloud.google.com/monitoring/access-control"
FIRESTORE_IAM = "https://cloud.google.com/firestore/docs/security/iam"
""""Required permissions for API methods" (documents, databases, indexes, operations)."""
FIRESTORE_ROLES = "https://cloud.google.com/iam/docs/roles-permissions/firestore"
FIRESTORE_EXPORT = "https://cloud.google.com/firestore/docs/manage-data/export-import"
TASKS_ACCESS = "https://cloud.google.com/tasks/docs/reference-access-control"
TASKS_OIDC = "https://cloud.google.com/tasks/docs/reference/rest/v2/OidcToken"
""""The caller must have iam.serviceAccounts.actAs permission for the service account"."""
STORAGE_JSON = "https://cloud.google.com/storage/docs/access-control/iam-json"
STORAGE_ROLES = "https://cloud.google.com/storage/docs/access-control/iam-roles"
SECRETS_ACCESS = "https://cloud.google.com/secret-manager/docs/access-control"
RUN_SECRETS = "https://cloud.google.com/run/docs/configuring/services/secrets"
SIGN_BLOB = (
    "https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/"
    "signBlob"
)
SERVICE_ACCOUNT_ROLES = "https://cloud.google.com/iam/docs/service-account-permissions"
FUNCTIONS_PERMISSIONS = "https://cloud.google.com/functions/docs/reference/iam/permissions"
IDENTITY_TOOLKIT = (
    "https://cloud.google.com/identity-platform/docs/reference/rest/v1/accounts/"
    "signInWithCustomToken"
)

_RUN = "google.cloud.run.v2.Services"
_ADMIN = "google.firestore.admin.v1.FirestoreAdmin"
_DOCS = "google.firestore.v1.Firestore"
_OPS = "google.longrunning.Operations"
ACT_AS = "iam.serviceAccounts.actAs"
R, D, K = Principal.RUNTIME, Principal.DEPLOYER, Principal.API_KEY

METHODS: tuple[Method, ...] = (
    # Cloud Run Admin API v2: scaling (shared/gcp/cloudrun.py) and the canary's traffic and
    # no-traffic deploys. An update (re)attaches the service identity: actAs on it.
    Method(f"{_RUN}/GetService", ("run.services.get",), R, "shared/gcp/cloudrun.py",
           RUN_PERMISSIONS),
    Method(f"{_RUN}/UpdateService", ("run.services.update", ACT_AS), R,
           "shared/gcp/cloudrun.py", RUN_SERVICE_IDENTITY),
    # Cloud Run's and Cloud Functions v2's operations share the REST path
    # v2/projects/*/locations/*/operations/*: the bundle polls Cloud Run's only
    Method(f"{_OPS}/GetOperation@run", ("run.operations.get",), R,
           "shared/gcp/cloudrun.py (operation.result)", RUN_PERMISSIONS),
    # Cloud Monitoring: the scale guard and the canary judge
    Method("google.monitoring.v3.MetricService/ListTimeSeries", ("monitoring.timeSeries.list",),
           R, "shared/gcp/monitoring.py", MONITORING_ACCESS),
    # Firestore Admin: the deploy guard's index gate, managed backups and drills
    Method(f"{_ADMIN}/ListIndexes", ("datastore.indexes.list",), R,
           "functions/deploy_guard/readers.py", FIRESTORE_IAM),
    Method(f"{_ADMIN}/GetDatabase", ("datastore.databases.getMetadata",), R,
           "functions/backup/pitr.py, managed.py", FIRESTORE_IAM),
    Method(f"{_ADMIN}/ExportDocuments", ("datastore.databases.export",), R,
           "functions/backup/managed_export.py", FIRESTORE_EXPORT),
    Method(f"{_ADMIN}/CloneDatabase", ("datastore.databases.clone",), R,
           "functions/backup/managed.py (restore drill)", FIRESTORE_IAM),
    Method(f"{_ADMIN}/DeleteDatabase", ("datastore.databases.delete",), R,
           "functions/backup/managed.py (drill clean-up)", FIRESTORE_IAM),
    Method(f"{_OPS}/GetOperation@firestore", ("datastore.operations.get",), R,
           "functions/backup/managed_export.py, managed.py", FIRESTORE_IAM),
    Method(f"{_OPS}/ListOperations@firestore", ("datastore.operations.list",), R,
           "functions/backup/managed_export.py", FIRESTORE_IAM),
    Method(f"{_OPS}/CancelOperation@firestore", ("datastore.operations.cancel",), R,
           "functions/backup/managed_export.py", FIRESTORE_IAM),
    # Firestore documents: firebase-admin everywhere, the logical backup's REST and gRPC
    # reader (functions/backup/documents.py). The tests run them against the emulator,
    # not a fake: listed here, covered by tests/stack/test_permissions.py.
    Method(f"{_DOCS}/RunQuery", ("datastore.entities.get", "datastore.entities.list"), R,
           "firebase-admin; functions/backup/documents.py", FIRESTORE_IAM),
    Method(f"{_DOCS}/RunAggregationQuery", ("datastore.entities.get", "datastore.entities.list"),
           R, "firebase-admin (count/sum/avg)", FIRESTORE_IAM),
    Method(f"{_DOCS}/BatchGetDocuments", ("datastore.entities.get",), R, "firebase-admin",
           FIRESTORE_IAM),
    Method(f"{_DOCS}/Commit", ("datastore.entities.create", "datastore.entities.update",
                               "datastore.entities.delete"), R,
           "firebase-admin; functions/backup/documents.py", FIRESTORE_IAM),
    Method(f"{_DOCS}/BatchWrite", ("datastore.entities.create", "datastore.entities.update",
                                   "datastore.entities.delete"), R,
           "firebase-admin (BulkWriter)", FIRESTORE_IAM),
    Method(f"{_DOCS}/BeginTransaction", ("datastore.databases.get",), R, "firebase-admin",
           FIRESTORE_IAM),
    Method(f"{_DOCS}/Rollback", ("datastore.databases.get",), R, "firebase-admin", FIRESTORE_IAM),
    Method(f"{_DOCS}/ListCollectionIds", ("datastore.entities.list",), R,
           "functions/backup/documents.py", FIRESTORE_IAM),
    # Cloud Tasks: load-test shards and the canary's 10 s judge chain, through
    # firebase-admin's task queue (an OIDC token of the runtime account rides on each task:
    # actAs on itself)
    Method("google.cloud.tasks.v2.CloudTasks/CreateTask", ("cloudtasks.tasks.create", ACT_AS),
           R, "functions/load/gcp.py, functions/deploy_guard/gcp.py "
           "(firebase_admin.functions)", TASKS_OIDC),
    # Cloud Tasks delivering a task to a task-queue function (pack391ExecuteLoadTest,
    # pack391JudgeDeployment) with that token
    Method("run.invoke/task-functions", ("run.routes.invoke",), R,
           "Cloud Tasks, as the runtime account", RUN_PERMISSIONS),
    # Cloud Run reads each bound secret (PACK391_BACKUP_KEY ...) as the runtime account
    Method("google.cloud.secretmanager.v1.SecretManagerService/AccessSecretVersion",
           ("secretmanager.versions.access",), R, "Cloud Run, secret environment variables",
           RUN_SECRETS),
    # Cloud Storage JSON API: logical backups to gs://, managed backups' copies
    Method("storage.objects.insert", ("storage.objects.create", "storage.objects.delete"), R,
           "functions/backup/destinations.py (an overwrite needs delete too)", STORAGE_JSON),
    Method("storage.objects.get", ("storage.objects.get",), R,
           "functions/backup/destinations.py", STORAGE_JSON),
    Method("storage.objects.list", ("storage.objects.list",), R,
           "functions/backup/destinations.py, managed_export.py", STORAGE_JSON),
    Method("storage.objects.delete", ("storage.objects.delete",), R,
           "functions/backup/destinations.py", STORAGE_JSON),
    Method("storage.objects.rewrite", ("storage.objects.create", "storage.objects.get",
                                       "storage.objects.delete"), R,
           "functions/backup/managed_export.py (copies to the other regions)", STORAGE_JSON),
    # The deploy tooling, as the CI deploy account
    Method("google.cloud.secretmanager.v1.SecretManagerService/GetSecretVersion",
           ("secretmanager.versions.get",), D,
           "stack/release/secret_manager.py (pack391 deploy secrets)", SECRETS_ACCESS),
    Method("google.cloud.secretmanager.v1.SecretManagerService/GetSecret",
           ("secretmanager.secrets.get",), D,
           "stack/release/secret_manager.py (pack391 deploy secrets --create)", SECRETS_ACCESS),
    Method("google.cloud.secretmanager.v1.SecretManagerService/CreateSecret",
           ("secretmanager.secrets.create",), D,
           "stack/release/secret_manager.py (pack391 deploy secrets --create)", SECRETS_ACCESS),
    Method("google.cloud.secretmanager.v1.SecretManagerService/AddSecretVersion",
           ("secretmanager.versions.add",), D,
           "stack/release/secret_manager.py (pack391 deploy secrets --create)", SECRETS_ACCESS),
    Method("google.iam.credentials.v1.IAMCredentials/SignBlob", ("iam.serviceAccounts.signBlob",),
           D, "stack/cli/deploy_token.py (pack391 deploy token)", SIGN_BLOB),
    Method("google.cloud.functions.v2.FunctionService/UpdateFunction",
           ("cloudfunctions.functions.update", ACT_AS), D, "firebase deploy",
           FUNCTIONS_PERMISSIONS),
    Method("identitytoolkit.accounts.signInWithCustomToken", (), K,
           "stack/cli/deploy_token.py (pack391 deploy token)", IDENTITY_TOOLKIT),
)  # fmt: skip
"""Every Google API method the bundle and its deploy tooling call."""

BY_ID: Mapping[str, Method] = {m.id: m for m in METHODS}


# Roles: the relevant subset of each role's permissions ---------------------------------


@dataclass(frozen=True)
class Role:
    name: str
    permissions: frozenset[str]
    """The permissions of the role that matter here (the role holds more)."""
    doc: str


DRILL_ROLE_ID = "pack391DrillDatabases"
"""A custom role (created by the bootstrap): delete a database, nothing else of
``roles/datastore.owner``, granted only on the drill's databases (an IAM condition)."""

_ROLES: tuple[Role, ...] = (
    Role("roles/datastore.user", frozenset({
        "datastore.databases.get", "datastore.databases.getMetadata",
        "datastore.entities.allocateIds", "datastore.entities.create",
        "datastore.entities.delete", "datastore.entities.get", "datastore.entities.list",
        "datastore.entities.update", "datastore.indexes.list",
    }), FIRESTORE_ROLES),
    Role("roles/datastore.importExportAdmin", frozenset({
        "datastore.databases.export", "datastore.databases.import",
        "datastore.databases.getMetadata", "datastore.operations.cancel",
        "datastore.operations.get", "datastore.operations.list",
    }), FIRESTORE_ROLES),
    Role("roles/datastore.cloneAdmin", frozenset({
        "datastore.databases.clone", "datastore.databases.create",
        "datastore.databases.getMetadata",
    }), FIRESTORE_ROLES),
    Role("roles/datastore.indexAdmin", frozenset({
        "datastore.indexes.create", "datastore.indexes.delete", "datastore.indexes.list",
    }), FIRESTORE_ROLES),
    Role(f"roles/{DRILL_ROLE_ID}", frozenset({
        "datastore.databases.delete", "datastore.databases.getMetadata",
    }), FIRESTORE_ROLES),
    Role("roles/run.developer", frozenset({
        "run.services.get", "run.services.list", "run.services.update",
        "run.operations.get", "run.operations.list", "run.revisions.get",
        "run.revisions.list", "run.routes.invoke",
    }), RUN_ROLES),
    Role("roles/run.invoker", frozenset({"run.routes.invoke"}), RUN_ROLES),
    Role("roles/run.admin", frozenset({
        "run.services.get", "run.services.update", "run.services.setIamPolicy",
        "run.operations.get", "run.revisions.list", "run.routes.invoke",
    }), RUN_ROLES),
    Role("roles/monitoring.viewer", frozenset({"monitoring.timeSeries.list"}), MONITORING_ACCESS),
    Role("roles/cloudtasks.enqueuer", frozenset({"cloudtasks.tasks.create"}), TASKS_ACCESS),
    Role("roles/cloudtasks.admin", frozenset({
        "cloudtasks.queues.create", "cloudtasks.queues.update", "cloudtasks.tasks.create",
    }), TASKS_ACCESS),
    Role("roles/iam.serviceAccountUser", frozenset({ACT_AS}), SERVICE_ACCOUNT_ROLES),
    Role("roles/iam.serviceAccountTokenCreator", frozenset({
        "iam.serviceAccounts.signBlob", "iam.serviceAccounts.getAccessToken",
        "iam.serviceAccounts.getOpenIdToken",
    }), SERVICE_ACCOUNT_ROLES),
    Role("roles/iam.workloadIdentityUser", frozenset({
        "iam.serviceAccounts.getAccessToken",
    }), SERVICE_ACCOUNT_ROLES),
    Role("roles/secretmanager.secretAccessor", frozenset({"secretmanager.versions.access"}),
         SECRETS_ACCESS),
    Role("roles/secretmanager.admin", frozenset({
        "secretmanager.secrets.get", "secretmanager.secrets.create", "secretmanager.versions.add",
        "secretmanager.versions.get", "secretmanager.versions.access",
        "secretmanager.secrets.getIamPolicy", "secretmanager.secrets.setIamPolicy",
    }), SECRETS_ACCESS),
    Role("roles/storage.objectAdmin", frozenset({
        "storage.objects.create", "storage.objects.delete", "storage.objects.get",
        "storage.objects.list", "storage.objects.update",
    }), STORAGE_ROLES),
    Role("roles/storage.legacyBucketReader", frozenset({
        "storage.buckets.get", "storage.objects.list",
    }), STORAGE_ROLES),
    Role("roles/storage.admin", frozenset({
        "storage.buckets.get", "storage.objects.create", "storage.objects.delete",
        "storage.objects.get", "storage.objects.list",
    }), STORAGE_ROLES),
    Role("roles/cloudfunctions.admin", frozenset({
        "cloudfunctions.functions.create", "cloudfunctions.functions.update",
        "cloudfunctions.functions.get", "cloudfunctions.operations.get",
    }), FUNCTIONS_PERMISSIONS),
    Role("roles/firebase.admin", frozenset({"firebase.projects.get"}),
         "https://firebase.google.com/docs/projects/iam/roles-predefined-product"),
    Role("roles/cloudscheduler.admin", frozenset({"cloudscheduler.jobs.create",
                                                  "cloudscheduler.jobs.update"}),
         "https://cloud.google.com/scheduler/docs/reference/iam/roles"),
    Role("roles/artifactregistry.admin", frozenset({"artifactregistry.repositories.update"}),
         "https://cloud.google.com/artifact-registry/docs/access-control"),
    Role("roles/serviceusage.serviceUsageConsumer", frozenset({"serviceusage.services.use"}),
         "https://cloud.google.com/service-usage/docs/access-control"),
    Role("roles/firebasehosting.admin", frozenset({"firebasehosting.sites.update"}),
         "https://firebase.google.com/docs/projects/iam/roles-predefined-product"),
)  # fmt: skip

ROLE_PERMISSIONS: Mapping[str, Role] = {r.name: r for r in _ROLES}


@dataclass(frozen=True)
class Grant:
    """One role given to one principal, on the project or on one kind of resource."""

    role: str
    on: str
    """``project``, ``itself`` (the account's own service account resource), ``runtime``
    (the runtime account's resource), ``task-function`` (its Cloud Run service),
    ``secrets`` (each secret), ``backup-buckets`` (each bucket), ``drill-databases``."""
    why: str


RUNTIME_ROLES: tuple[Grant, ...] = (
    Grant("roles/datastore.user", "project",
          "read and write documents (every area); ListIndexes for the deploy guard's gate"),
    Grant("roles/run.developer", "project",
          "the scale guard's manual scaling, the canary's traffic and no-traffic deploys"),
    Grant("roles/monitoring.viewer", "project",
          "Cloud Run's metrics for the scale guard and the canary judge"),
    Grant("roles/cloudtasks.enqueuer", "project",
          "pack391_runLoadTest enqueues a task per shard; the canary's judge chain"),
    Grant("roles/datastore.importExportAdmin", "project",
          "managed backups: exports and their operations (get, list, cancel)"),
    Grant("roles/datastore.cloneAdmin", "project", "restore drills clone the database"),
    Grant(f"roles/{DRILL_ROLE_ID}", "drill-databases",
          "a drill deletes its clone; no other database can be deleted"),
    Grant("roles/iam.serviceAccountUser", "itself",
          "actAs itself: the OIDC token on each load-test task, Cloud Run updates that keep "
          "the functions' identity"),
    Grant("roles/run.invoker", "task-function",
          "Cloud Tasks calls the task-queue functions with the runtime account's token (SDK "
          "0.6.0 drops the task function's invoker option, so the deploy does not grant it)"),
    Grant("roles/secretmanager.secretAccessor", "secrets",
          "the functions' secret params, bound as environment variables"),
    Grant("roles/storage.objectAdmin", "backup-buckets",
          "logical backups to gs:// and the managed backups' regional copies"),
)  # fmt: skip
"""What ``pack391 bootstrap`` grants the functions' runtime account, and why."""

DEPLOYER_ROLES: tuple[Grant, ...] = (
    Grant("roles/firebase.admin", "project",
          "the Firebase CLI reads the project, its extensions and apps on every deploy"),
    Grant("roles/cloudfunctions.admin", "project", "create and update the functions"),
    Grant("roles/run.admin", "project",
          "deploy guard pinning, invoker policies the CLI sets on callables"),
    Grant("roles/cloudscheduler.admin", "project", "the scheduled functions' jobs"),
    Grant("roles/cloudtasks.admin", "project", "the task-queue function's queue"),
    Grant("roles/secretmanager.admin", "project",
          "the CLI grants secret access to the runtime account; pack391 deploy secrets reads "
          "versions"),
    Grant("roles/artifactregistry.admin", "project", "the CLI sets the image cleanup policy"),
    Grant("roles/serviceusage.serviceUsageConsumer", "project", "API calls billed to the project"),
    Grant("roles/firebasehosting.admin", "project", "deploy the ops page"),
    Grant("roles/datastore.indexAdmin", "project", "firebase deploy --only firestore:indexes"),
    Grant("roles/iam.serviceAccountUser", "runtime",
          "deploy functions that run as the runtime account (actAs)"),
    Grant("roles/iam.serviceAccountTokenCreator", "itself",
          "pack391 deploy token signs the bot's custom token with IAM signBlob"),
)  # fmt: skip
"""What ``pack391 bootstrap`` grants the CI deploy account, and why."""


def granted(principal: Principal, without: Iterable[str] = ()) -> frozenset[str]:
    """The permissions bootstrap's roles give ``principal`` (less the roles ``without``)."""
    grants = {Principal.RUNTIME: RUNTIME_ROLES, Principal.DEPLOYER: DEPLOYER_ROLES}.get(
        principal, ()
    )
    skip = set(without)
    out: set[str] = set()
    for grant in grants:
        if grant.role not in skip:
            out |= ROLE_PERMISSIONS[grant.role].permissions
    return frozenset(out)


def missing(method: Method, permissions: frozenset[str]) -> tuple[str, ...]:
    """The permissions of ``method`` that ``permissions`` lacks, in the table's order."""
    return tuple(p for p in method.permissions if p not in permissions)


def problems(calls: Iterable[str]) -> list[str]:
    """For each method id called: why bootstrap's roles would not let it through (not in
    :data:`METHODS`, or a permission none of its principal's roles holds). Empty: all
    covered."""
    out = []
    for call in sorted(set(calls)):
        method = BY_ID.get(call)
        if method is None:
            out.append(
                f"{call}: not in stack.release.permissions.METHODS: add a row (its permission, who "
                "calls it, the Google page naming the permission) and grant it in bootstrap"
            )
            continue
        lacking = missing(method, granted(method.principal))
        if lacking:
            out.append(
                f"{call}: needs {', '.join(lacking)}, which no role pack391 bootstrap grants "
                f"the {method.principal.value} account holds (stack.release.permissions)"
            )
    return out

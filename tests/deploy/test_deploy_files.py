"""deploy/: the container images, the compose file and the Kubernetes manifests, checked with real tools.

No container engine runs here, so what can be checked without one is:
- Dockerfile: hadolint (the linter, from its PyPI wheel); every COPY source exists; each
  target runs as the unprivileged user with a healthcheck; the entry point's secret files.
- compose.yaml: the Compose Specification's JSON schema (check-jsonschema's vendored copy);
  every command is a real `ecg-worklist` command, every secret, volume and path it names exists.
- Kubernetes: kubernetes-validate, strict, against the API's OpenAPI schemas (1.30 and the
  newest it ships); KEDA's ScaledObject (a CRD) against tests/deploy/keda_scaledobject.schema.json;
  every container runs a real command, one watcher per inbox, GPUs requested, TLS on the Ingress.
- Prometheus alerts and the Grafana dashboard name only metrics the exporter publishes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from worker.cli import main
from worker.dispatch import Stage
from worker.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
BIN = Path(sys.executable).parent
TARGETS = {"review", "cpu-worker", "gpu"}
SETTINGS_FIELDS = {f"ECGWL_{name.upper()}" for name in Settings.model_fields}


def _run(*argv: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120, **kwargs)


def _is_real_command(args: list[str]) -> None:
    """`ecg-worklist ARGS --help` works and every --option in ARGS is one the command has."""
    words = [a for a in args if not a.startswith("-")]
    # Walk down the click group while the words name sub-commands; the rest are values.
    command: Any = main
    path: list[str] = []
    for word in words:
        if hasattr(command, "commands") and word in command.commands:
            command = command.commands[word]
            path.append(word)
    assert path, f"{args}: not an ecg-worklist command"
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    for option in (a.split("=", 1)[0] for a in args if a.startswith("--")):
        assert option in result.output, f"{args}: {path} has no option {option}"


def _settings_names(names: list[str]) -> None:
    """Every ECGWL_ variable is a setting (or NAME_FILE for one, read by the entry point)."""
    unknown = [n for n in names if n.startswith("ECGWL_") and n.removesuffix("_FILE") not in SETTINGS_FIELDS]
    assert not unknown, f"not settings of worker/settings.py: {unknown}"


# ---------------------------------------------------------------- Dockerfile


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_hadolint_passes_the_dockerfile_and_catches_a_bad_one(tmp_path: Path) -> None:
    result = _run(BIN / "hadolint", DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    result = _run(BIN / "hadolint", bad)
    assert result.returncode != 0 and "DL3007" in result.stdout  # the linter does run


def test_every_target_runs_unprivileged_and_everything_copied_exists() -> None:
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for instruction, args in _dockerfile_instructions():
        if instruction == "FROM":
            current = args.split(" AS ")[-1].strip() if " AS " in args else args
            stages[current] = []
        elif current is not None:
            stages[current].append((instruction, args))
    assert TARGETS <= set(stages)
    for target in TARGETS:
        users = [args for instruction, args in stages[target] if instruction == "USER"]
        assert users and users[-1].split(":")[0] == "10001", target  # never root
    base = stages["base"]
    assert any(i == "HEALTHCHECK" and "health" in a for i, a in base)
    assert any(i == "VOLUME" and "/var/lib/ecg-worklist" in a for i, a in base)
    [entrypoint] = [json.loads(a) for i, a in base if i == "ENTRYPOINT"]
    for instruction, args in base:
        if instruction == "COPY":
            sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    # ...and none of them is left out of the build context by the .dockerignore beside the Dockerfile.
    ignored = {line.strip().rstrip("/") for line in (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for instruction, args in base:
        if instruction == "COPY":
            for source in [a for a in shlex.split(args) if not a.startswith("--")][:-1]:
                parts = Path(source).parts
                assert not any("/".join(parts[:n]) in ignored for n in range(1, len(parts) + 1)), source
    assert entrypoint == ["/usr/local/bin/ecg-worklist-entrypoint"]
    assert os.access(DEPLOY / "docker" / "entrypoint.sh", os.X_OK)
    # The package's own folders are all copied: the install would miss a module otherwise.
    copied = {shlex.split(a)[-1].strip("./") for i, a in base if i == "COPY"}
    assert {"ingest", "model", "reports", "training", "worker", "migrations"} <= copied


def test_each_target_installs_its_roles_extra_and_only_the_gpu_one_torch() -> None:
    """The images install the per-role extras of pyproject.toml; review and cpu-worker no torch."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert not any(dep.split("[")[0].split(">")[0].split("=")[0].strip() in ("torch", "transformers", "hl7")
                   for dep in project["dependencies"])
    installs: dict[str, list[str]] = {}
    current = None
    for instruction, args in _dockerfile_instructions():
        if instruction == "FROM":
            current = args.split(" AS ")[-1].strip()
        elif instruction == "RUN" and current in TARGETS:
            installs.setdefault(current, []).append(args)
    for target in TARGETS:
        named = re.findall(r'"\.\[([a-z0-9,-]+)\]"', " ".join(installs[target]))
        assert named, target
        for extra in named[0].split(","):
            assert extra in extras, (target, extra)
        assert target in named[0].split(","), target
    for target in ("review", "cpu-worker"):
        assert "torch" not in " ".join(installs[target]), target
        assert not any("torch" in dep for dep in extras[target]), target


def test_the_entry_point_reads_secret_files_and_runs_ecg_worklist(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ecg-worklist").write_text('#!/bin/sh\necho "args: $*"\nenv | grep "^ECGWL_" | sort\n')
    (fake / "ecg-worklist").chmod(0o755)
    secret = tmp_path / "database_url"
    secret.write_text("postgresql+psycopg://app:p'a\"s$s@db/ecg\n")  # quotes and $ survive, the newline goes
    env = {"PATH": f"{fake}:/usr/bin:/bin", "ECGWL_DATABASE_URL_FILE": str(secret), "ECGWL_POLL_SECONDS": "2"}
    result = _run("sh", DEPLOY / "docker" / "entrypoint.sh", "worker", "--queues", "prepare", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "args: worker --queues prepare"
    assert "ECGWL_DATABASE_URL=postgresql+psycopg://app:p'a\"s$s@db/ecg" in lines
    assert not any(line.startswith("ECGWL_DATABASE_URL_FILE=") for line in lines)
    assert "ECGWL_POLL_SECONDS=2" in lines

    env["ECGWL_DATABASE_URL_FILE"] = str(tmp_path / "missing")
    result = _run("sh", DEPLOY / "docker" / "entrypoint.sh", "watch", env=env)
    assert result.returncode == 78
    assert result.stderr.strip() == f"ecg-worklist: ECGWL_DATABASE_URL_FILE names {tmp_path / 'missing'}, which cannot be read"


# ---------------------------------------------------------------- compose


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # PyYAML resolves the `<<` merge keys as compose does


def test_compose_file_passes_the_compose_specification_schema(tmp_path: Path) -> None:
    result = _run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    restart: unless-stopped\n", "    restart_policy: always\n", 1))
    assert _run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", broken).returncode != 0


def test_compose_services_run_real_commands_with_their_secrets_and_volumes() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "watch", "worker-cpu", "worker-gpu", "worker-interpret-cpu",
            "deliver", "review", "metrics"} <= set(services)
    ours = {name: s for name, s in services.items() if str(s.get("image", "")).startswith("${ECGWL_IMAGE_PREFIX")}
    assert len(ours) == 8
    for name, service in ours.items():
        _is_real_command(service["command"])
        assert service["build"]["target"] in TARGETS
        assert service["image"].endswith(":" + service["build"]["target"]), name
        environment = service["environment"]
        _settings_names(list(environment))
        # Each secret file the entry point is told to read is mounted into that service.
        for variable, value in environment.items():
            if variable.endswith("_FILE"):
                assert value.startswith("/run/secrets/") and value.removeprefix("/run/secrets/") in service["secrets"]
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            assert source in compose["volumes"] or source.startswith("${"), (name, volume)
    for service in services.values():
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"]
    # The merge order gives these the review image (no reader, no torch: the base install);
    # the watcher reads files, so it runs on the workers' image.
    for name in ("migrate", "deliver", "review", "metrics"):
        assert services[name]["build"]["target"] == "review", name
    assert services["watch"]["build"]["target"] == "cpu-worker"
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["environment"]["ECGWL_DATABASE_URL_FILE"].endswith("owner_database_url")
    for name in ("watch", "worker-cpu", "deliver", "review", "metrics"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    [gpu] = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert services["worker-gpu"]["build"]["target"] == "gpu"
    for name in ("review", "metrics"):
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"])  # behind the TLS proxy
        _is_real_command(services[name]["healthcheck"]["test"][2:])
    # Every file or folder the compose file points at is in the repository.
    for path in re.findall(r"(?:file: |- )(\.\.?/[\w./-]+)", COMPOSE.read_text()):
        if "/secrets/" in path or path.startswith("./inbox"):
            continue  # made by make-secrets.sh / by the site
        assert (COMPOSE.parent / path).exists(), path


@pytest.mark.services
def test_the_application_role_can_work_but_not_touch_the_audit_trigger(postgres_url: str, tmp_path: Path) -> None:
    """deploy/compose/postgres-init: the roles on a real Postgres, migrated by the owner."""
    import uuid

    import sqlalchemy as sa

    from reports import store

    if not Path("/usr/bin/psql").exists():
        pytest.skip("psql is not installed")
    suffix = uuid.uuid4().hex[:8]
    owner, app = f"ecgwl_owner_{suffix}", f"ecgwl_app_{suffix}"
    database = postgres_url.rsplit("/", 1)[1]
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            # The postgres image's POSTGRES_USER is a superuser; here the owner gets just what the
            # script needs (CREATEROLE for the application role).
            conn.execute(sa.text(f'CREATE ROLE "{owner}" LOGIN CREATEROLE'))
            conn.execute(sa.text(f'ALTER DATABASE "{database}" OWNER TO "{owner}"'))
            conn.execute(sa.text(f'ALTER SCHEMA public OWNER TO "{owner}"'))
        result = _run("psql", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", owner, "-d", database,
                      "-v", f"app_role={app}", "-v", "app_password=secret", "-v", f"owner={owner}",
                      "-v", f"database={database}", "-f", DEPLOY / "compose" / "postgres-init" / "roles.sql.in")
        assert result.returncode == 0, result.stderr
        base = postgres_url.rsplit("/", 1)[0].replace("postgres@", "{}@")
        store.upgrade(f"{base.format(owner)}/{database}")  # the migration job, as the owner
        app_engine = sa.create_engine(f"{base.format(app)}/{database}")
        with app_engine.connect() as conn:
            conn.execute(sa.text("INSERT INTO users (username, role, password_hash, active, failed_logins, "
                                 "created_at) VALUES ('a', 'viewer', 'x', true, 0, now())"))
            conn.execute(sa.text("UPDATE users SET failed_logins = 1"))
            conn.commit()
            for statement in ("ALTER TABLE audit_events DISABLE TRIGGER ALL",
                              "DROP TRIGGER audit_events_no_update_delete ON audit_events",
                              "DROP TABLE audit_events"):
                with pytest.raises(sa.exc.ProgrammingError, match="must be owner|permission denied"):
                    conn.execute(sa.text(statement))
                conn.rollback()
        app_engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{database}" OWNER TO postgres'))
            roles = conn.execute(sa.text("SELECT rolname FROM pg_roles WHERE rolname IN (:a, :b)"),
                                 {"a": app, "b": owner}).scalars().all()
            for role in sorted(roles):  # the app role first (it sorts first), then the owner
                conn.execute(sa.text(f'REASSIGN OWNED BY "{role}" TO postgres'))
                conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
                conn.execute(sa.text(f'DROP ROLE "{role}"'))
        admin.dispose()


# ---------------------------------------------------------------- Kubernetes


def _manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(KUBERNETES.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
def test_kubernetes_manifests_pass_strict_openapi_validation(version: str, tmp_path: Path) -> None:
    files = sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
    result = _run(BIN / "kubernetes-validate", "--strict", "-k", version, *files)
    assert result.returncode == 0, result.stdout + result.stderr
    checked = result.stdout.count(" passed for resource ")
    crds = sum(1 for _, doc in _manifests() if doc["apiVersion"].startswith("keda.sh/"))
    assert checked == len(_manifests()) - crds  # every core resource was checked, none skipped
    broken = tmp_path / "review.yaml"
    broken.write_text((KUBERNETES / "review.yaml").read_text().replace("containerPort:", "containerport:"))
    assert _run(BIN / "kubernetes-validate", "--strict", "-k", version, broken).returncode != 0


def test_the_keda_scaled_object_scales_the_cpu_workers_on_real_queue_lists() -> None:
    import jsonschema

    schema = json.loads((Path(__file__).parent / "keda_scaledobject.schema.json").read_text())
    deployments = {doc["metadata"]["name"]: doc for _, doc in _manifests() if doc["kind"] == "Deployment"}
    scaled = [doc for _, doc in _manifests() if doc["kind"] == "ScaledObject"]
    assert scaled
    for doc in scaled:
        jsonschema.validate(doc, schema)
        target = deployments[doc["spec"]["scaleTargetRef"]["name"]]
        queues = target["spec"]["template"]["spec"]["containers"][0]["args"][2].split(",")
        for trigger in doc["spec"]["triggers"]:
            assert trigger["metadata"]["listName"] in queues  # Celery's Redis list is the queue's name
            assert trigger["metadata"]["listName"] in {stage.value for stage in Stage}
    bad = json.loads(json.dumps(scaled[0]))
    bad["spec"]["triggers"][0]["metadata"]["listname"] = "prepare"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_kubernetes_pods_run_real_commands_unprivileged_one_watcher_per_inbox() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert all((KUBERNETES / name).exists() for name in kustomization["resources"])
    config = next(doc for _, doc in _manifests() if doc["kind"] == "ConfigMap")
    _settings_names(list(config["data"]))
    for _, doc in _manifests():
        if doc["kind"] == "Secret":
            _settings_names(list(doc["stringData"]))
    workloads = [doc for _, doc in _manifests() if doc["kind"] in ("Deployment", "Job")]
    inboxes = []
    for doc in workloads:
        pod = doc["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            image = container["image"]
            if not image.startswith("ecg-worklist:"):
                continue
            assert image.split(":")[1] in TARGETS
            assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            if "args" in container:
                _is_real_command(container["args"])
            _settings_names([e["name"] for e in container.get("env", [])])
            if container.get("args", [None])[0] == "watch":
                assert doc["spec"]["replicas"] == 1 and doc["spec"]["strategy"]["type"] == "Recreate"
                [inbox] = json.loads(next(e["value"] for e in container["env"] if e["name"] == "ECGWL_INBOX_DIRS"))
                inboxes.append(inbox)
    assert len(inboxes) >= 2 and len(set(inboxes)) == len(inboxes)  # one Deployment per inbox
    gpu = next(doc for doc in workloads if doc["metadata"]["name"] == "worker-gpu")
    limits = gpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1
    ingress = next(doc for _, doc in _manifests() if doc["kind"] == "Ingress")
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    migrate = next(doc for doc in workloads if doc["kind"] == "Job")
    assert migrate["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]


def test_kustomize_renders_the_manifests_when_kubectl_is_here() -> None:
    import shutil

    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (optional: the manifests are validated above without it)")
    result = _run("kubectl", "kustomize", KUBERNETES)
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert len(docs) == len([d for p, d in _manifests() if p.name != "secret.example.yaml"])
    assert all(doc["metadata"].get("namespace", "ecg-worklist") == "ecg-worklist" for doc in docs)


# ---------------------------------------------------------------- Prometheus and Grafana


def _exported_names() -> set[str]:
    """The sample names the exporter can publish (from its metric families and their types)."""
    from worker.metrics import WorklistExporter

    exporter = WorklistExporter.__new__(WorklistExporter)  # no database: only the families' names and types
    from worker.metrics import Snapshot, Totals

    exporter.totals, exporter.destinations, exporter.redis = Totals(), ["his"], object()
    snapshot = Snapshot(taken_at=0.0, postgres_up=True, redis_up=True)
    families = [*exporter._queue_metrics(snapshot), *exporter._study_metrics(snapshot),
                *exporter._delivery_metrics(snapshot), *exporter._tail_metrics()]
    names = {"ecgwl_exporter_up", "ecgwl_exporter_query_seconds"}
    for family in families:
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        names |= {family.name + suffix for suffix in suffixes}
    return names


def test_alerts_and_dashboard_use_only_published_metrics() -> None:
    published = _exported_names()
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "ecg-worklist.json").read_text())
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expression in expressions for name in re.findall(r"\becgwl_[a-z_]+", expression)}
    assert used and used <= published, used - published
    for panel in dashboard["panels"]:  # the provisioned data source, by uid
        assert panel["datasource"]["uid"] == "ecgwl-prometheus"
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "ecgwl-prometheus"
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["alerts.yml"]
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["metrics:9464"]

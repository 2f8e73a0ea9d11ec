"""prefect.yaml, docker-compose.yml and the Dockerfile: they parse, match their schemas, point at
real flows, services and build stages, pin their images, write one model per collection, and
hold no secrets. (No Docker engine here: the images are not built by these tests.)"""

from __future__ import annotations

import copy
import inspect
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
_SECRET_WORDS = ("KEY", "PASSWORD", "SECRET", "TOKEN")


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _deployments() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    return data


def _dockerfile_stages() -> set[str]:
    text = (ROOT / "Dockerfile").read_text()
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, flags=re.MULTILINE | re.IGNORECASE))


def test_prefect_yaml_deployments_load_with_prefects_model() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    model = PrefectYamlModel.model_validate(yaml.safe_load((ROOT / "prefect.yaml").read_text()))
    assert len(model.deployments) >= 3
    pools = set()
    for deployment in model.deployments:
        assert deployment.entrypoint and deployment.work_pool and deployment.work_pool.name
        pools.add(deployment.work_pool.name)
        path, _, name = deployment.entrypoint.partition(":")
        flow = load_flow_from_entrypoint(f"{ROOT / path}:{name}")
        inspect.signature(flow.fn).bind(**deployment.parameters)  # every parameter exists
        for schedule in deployment.schedules or []:
            raw = schedule if isinstance(schedule, dict) else schedule.model_dump()
            CronSchedule(cron=raw["cron"], timezone=raw.get("timezone"))
    assert pools == {"clasp-cpu", "clasp-gpu"}
    assert any(d.schedules for d in model.deployments)


def test_compose_has_the_services_and_a_gpu_worker() -> None:
    services = _compose()["services"]
    expected = {"qdrant", "postgres", "prefect-server", "setup", "cpu-worker", "gpu-worker"}
    assert expected | {"dask-scheduler", "dask-worker"} <= set(services)
    gpu = services["gpu-worker"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "--pool clasp-gpu" in gpu["command"] and "--pool clasp-cpu" in services["cpu-worker"]["command"]
    assert gpu["environment"]["CLASP_QDRANT_URL"] == "http://qdrant:6333"  # merged from the worker anchor


def _env_items(services: dict[str, Any]) -> list[tuple[str, str]]:
    items = []
    for service in services.values():
        env = service.get("environment", {})
        items += [(str(k), str(v)) for k, v in (env.items() if isinstance(env, dict) else [])]
    return items


def test_compose_takes_secrets_from_the_environment() -> None:
    secrets = [(k, v) for k, v in _env_items(_compose()["services"]) if any(w in k for w in _SECRET_WORDS)]
    assert secrets
    for key, value in secrets:
        assert re.fullmatch(r"\$\{[A-Z_]+(:[?-][^}]*)?\}", value), f"{key} must come from the environment"
    url = _compose()["services"]["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert "${PREFECT_DB_PASSWORD" in url


def test_cluster_runner_names_the_missing_extra() -> None:
    from clasp_ingest.flows.cluster import cluster_task_runner

    for kind in ("dask", "ray"):
        try:
            __import__(f"prefect_{kind}")
        except ImportError:
            with pytest.raises(ImportError, match=rf"clasp-ingest\[{kind}\]"):
                cluster_task_runner(kind)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- one model per collection


def _worker_env(pool: str) -> dict[str, str]:
    """The environment docker-compose gives the workers of ``pool``."""
    for service in _compose()["services"].values():
        if f"--pool {pool}" in str(service.get("command", "")):
            return {str(k): str(v) for k, v in service.get("environment", {}).items()}
    raise AssertionError(f"no docker-compose service runs a worker of pool {pool!r}")


def _model_and_collection(deployment: dict[str, Any]) -> tuple[str, str]:
    """What a run of ``deployment`` writes: parameters, then the job's env, then the worker's env,
    then the flow's defaults (Settings: CLASP_MODEL, CLASP_COLLECTION)."""
    from clasp_ingest.config import Settings

    pool = deployment.get("work_pool", {})
    env = _worker_env(pool["name"]) | dict(pool.get("job_variables", {}).get("env", {}))
    parameters = deployment.get("parameters", {})
    fields = Settings.model_fields
    model = parameters.get("model") or env.get("CLASP_MODEL") or fields["model"].default
    collection = parameters.get("collection") or env.get("CLASP_COLLECTION") or fields["collection"].default
    return str(model), str(collection)


def _collections_with_two_models(deployments: list[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """``{collection: {model: [deployments]}}`` for collections that more than one model writes."""
    writers: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for deployment in deployments:
        model, collection = _model_and_collection(deployment)
        writers[collection][model].append(deployment["name"])
    return {c: dict(models) for c, models in writers.items() if len(models) > 1}


def test_every_collection_gets_the_vectors_of_one_model() -> None:
    assert _collections_with_two_models(_deployments()) == {}
    resolved = {d["name"]: _model_and_collection(d) for d in _deployments()}
    assert resolved["inbox-cpu"] == ("clasp-mini", "clasp_mini")
    assert resolved["podcasts-nightly"] == ("clasp-official", "clasp_official")


def test_the_collection_rule_finds_two_models_in_one_collection() -> None:
    deployments = copy.deepcopy(_deployments())
    for deployment in deployments:  # as before: no collection named, the default for all
        deployment["parameters"].pop("collection", None)
    clash = _collections_with_two_models(deployments)
    assert set(clash) == {"clasp_segments"}
    assert set(clash["clasp_segments"]) == {"clasp-official", "clasp-mini"}
    assert clash["clasp_segments"]["clasp-mini"] == ["inbox-cpu"]


# --------------------------------------------------------------------------- docker-compose and Dockerfile


def test_compose_matches_the_compose_specification_schema() -> None:
    """The Compose Specification's JSON schema, as vendored in check-jsonschema."""
    from importlib.resources import files

    import jsonschema

    schema_file = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator_class(schema).iter_errors(_compose())]
    assert errors == []


def test_compose_references_point_at_what_exists() -> None:
    services = _compose()["services"]
    stages = _dockerfile_stages()
    assert stages == {"cpu", "gpu"}
    for name, service in services.items():
        for target, condition in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on a service that does not exist: {target}"
            if condition.get("condition") == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy"
        if "build" in service:
            assert service["build"]["target"] in stages, f"{name} builds a stage the Dockerfile lacks"
            assert service["build"].get("context", ".") == "."
        assert "pip install" not in str(service.get("command", "")), f"{name} installs at every start"
    assert {name for name, s in services.items() if "healthcheck" in s} >= {"qdrant", "prefect-server"}


def _pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and tag != "latest" and re.search(r"\d", tag) is not None


def test_images_are_pinned() -> None:
    for name, service in _compose()["services"].items():
        image = service.get("image", "")
        if "build" not in service:
            assert _pinned(image), f"{name}: pin a version, not {image!r}"
    arguments = dict(re.findall(r"^ARG\s+(\w+_IMAGE)=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M))
    assert set(arguments) == {"PYTHON_IMAGE", "TORCH_IMAGE"}
    assert all(_pinned(image) for image in arguments.values()), arguments
    assert arguments["TORCH_IMAGE"].split(":")[1].startswith(_torch_pin())


def _torch_pin() -> str:
    """The torch the project is tested with (constraints.txt; pyproject.toml holds a range)."""
    found = re.search(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert found, "constraints.txt pins torch"
    return found.group(1)


def test_qdrant_server_is_in_qdrant_clients_compatibility_window() -> None:
    from importlib.metadata import version

    from qdrant_client.common.version_check import is_compatible

    tag = _compose()["services"]["qdrant"]["image"].rpartition(":")[2]
    assert is_compatible(version("qdrant-client"), tag.removeprefix("v"))
    assert not is_compatible(version("qdrant-client"), "1.15.5")  # the server pinned before


def test_cluster_deployment_reaches_the_compose_dask_scheduler() -> None:
    services = _compose()["services"]
    (cluster,) = [d for d in _deployments() if d["parameters"].get("runner") == "dask"]
    host, port = cluster["parameters"]["address"].removeprefix("tcp://").split(":")
    assert host in services and f"--port {port}" in services[host]["command"]
    worker = services["dask-worker"]
    assert f"tcp://{host}:{port}" in worker["command"] and worker["build"]["target"] == "gpu"
    assert worker["environment"]["CLASP_QDRANT_URL"] == "http://qdrant:6333"  # workers open the store


def test_dockerfile_copies_files_of_the_repository() -> None:
    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources += line.split()[1:-1]
    missing = [source for source in sources if not (ROOT / source).exists()]
    assert "pyproject.toml" in sources and "clasp_ingest" in sources
    if set(missing) == {"constraints.txt"}:
        pytest.skip("constraints.txt (the pins the images install with) is not in this checkout yet")
    assert missing == []


def test_gpu_constraints_keep_the_images_torch(tmp_path: Path) -> None:
    """docker/gpu-constraints.sh: the project's pins less torch and the CUDA wheels, plus the
    image's own torch/torchvision (here the test interpreter stands for the image's python)."""
    from importlib.metadata import version

    constraints = tmp_path / "constraints.txt"
    constraints.write_text(
        "numpy==2.4.6\ntorch==2.14.1\nTorchVision==0.29.1\ntorchaudio==2.14.1\ntriton==3.8.0\n"
        "nvidia-cudnn-cu13==9.24.0.43\nnvidia-cublas==13.1.1.3\ncuda-bindings==13.5.0\n"
        "torchmetrics==1.8.2\nprefect==3.8.8\n"
    )
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    done = subprocess.run(
        ["sh", str(ROOT / "docker" / "gpu-constraints.sh"), str(constraints)],
        capture_output=True, text=True, env=env, check=True, timeout=120,
    )  # fmt: skip
    kept, torch_line, vision_line = done.stdout.splitlines()[:3], *done.stdout.splitlines()[3:]
    assert kept == ["numpy==2.4.6", "torchmetrics==1.8.2", "prefect==3.8.8"]
    assert torch_line.startswith(f"torch=={version('torch')}")  # the exact build: 2.14.1+cu130 here
    assert vision_line.startswith(f"torchvision=={version('torchvision')}")


def test_the_images_install_the_package_editable_where_flow_runs_start() -> None:
    """Flow runs start in the image's copy of the repo (prefect.yaml's pull step) and load
    ``flows/*.py`` from it: there ``./clasp_ingest``, which lacks the top-level connectors/,
    flows/ and retriever/, shadowed a plain install, and every run failed to load its flow
    ("No module named 'clasp_ingest.connectors'"; reproduced with a wheel install and Prefect's
    loader in that folder). Installed editable, those folders are mapped in from the copy."""
    pulls = yaml.safe_load((ROOT / "prefect.yaml").read_text())["pull"]
    workdirs = re.findall(r"^WORKDIR\s+(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert {step["prefect.deployments.steps.set_working_directory"]["directory"] for step in pulls} == set(
        workdirs
    )
    installs = re.findall(r"pip install (.*?\.\[\$\{EXTRAS\}\]\")", (ROOT / "Dockerfile").read_text())
    assert len(installs) == 2 and all(" -e " in f" {line}" for line in installs), installs

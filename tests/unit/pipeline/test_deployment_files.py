"""prefect.yaml and docker-compose.yml parse, point at real flows, and hold no secrets."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
_SECRET_WORDS = ("KEY", "PASSWORD", "SECRET", "TOKEN")


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


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
    assert {"qdrant", "postgres", "prefect-server", "cpu-worker", "gpu-worker"} <= set(services)
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

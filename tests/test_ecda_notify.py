"""Notifications: vLLM's runtime LoRA endpoints (contract-tested against a stub that checks the
documented request shape), the webhook, retries with backoff, and the active-adapter route."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import save_file
from test_ecda_service import AUTH, TOKEN
from vllm_stub import VllmStub

from compass.adapt import Adapter
from compass.adapt.integrity import weights_manifest
from compass.ecda import Registry
from compass.ecda.notify import NotifyConfig, parse_path_map
from compass.ecda.service import create_app
from compass.errors import ConfigError


@pytest.fixture
def registry(tmp_path) -> Registry:
    """Two versions with a weight file and its manifest (``compass.json``), the first active."""
    reg = Registry(tmp_path / "data" / "registry.sqlite")
    for i, (adapter_id, parent) in enumerate((("kor-1", None), ("kor-2", "kor-1"))):
        folder = tmp_path / "data" / "adapters" / adapter_id
        folder.mkdir(parents=True)
        save_file({"w": np.full((2, 2), i, dtype=np.float32)}, str(folder / Adapter.WEIGHTS))
        manifest = weights_manifest(folder / Adapter.WEIGHTS)
        (folder / Adapter.META).write_text(json.dumps({"weights": manifest}))
        reg.register(adapter_id, "kor", folder, parent=parent,
                     metrics={"adaptation_gain": 0.02, "preservation_loss": -0.01})
    reg.promote("kor-1")
    return reg


def sha(registry, adapter_id: str) -> str:
    return weights_manifest(Path(registry.get(adapter_id).path) / Adapter.WEIGHTS)["sha256"]


def delivered(c, n: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = c.get("/v1/notifications?state=delivered").json()["notifications"]
        if len(found) >= n:
            return found
        assert time.monotonic() < deadline, c.get("/v1/notifications").json()
        time.sleep(0.05)


def app(tmp_path, registry, vllm, **options):
    config = NotifyConfig(vllm_url=vllm.url, webhook_url=vllm.url + "/hook", poll=0.05, backoff=0.05,
                          max_backoff=0.2, path_map={str(tmp_path / "data" / "adapters"): "/models"},
                          lora_name="compass-{id}", **options)
    return TestClient(create_app(tmp_path / "data" / "queries.sqlite", registry, token=TOKEN, notify=config))


def test_promotion_and_rollback_load_the_new_version_before_unloading_the_old(tmp_path, registry):
    with VllmStub() as vllm, app(tmp_path, registry, vllm) as c:
        vllm.loaded["compass-kor-1"] = "/models/kor-1"  # served before the service started
        assert c.post("/v1/adapters/kor-2/promote?reason=gate", headers=AUTH).status_code == 200
        delivered(c, 2)
        assert vllm.calls == [
            ("/v1/load_lora_adapter", {"lora_name": "compass-kor-2", "lora_path": "/models/kor-2"}),
            ("/v1/unload_lora_adapter", {"lora_name": "compass-kor-1"})]
        assert vllm.loaded == {"compass-kor-2": "/models/kor-2"}
        assert c.get("/v1/adapters/active?lang=ko").json()["lora_name"] == "compass-kor-2"
        assert c.post("/v1/adapters/kor-2/rollback", headers=AUTH).status_code == 200
        delivered(c, 4)
        assert vllm.calls[2:] == [("/v1/load_lora_adapter", {"lora_name": "compass-kor-1",
                                                             "lora_path": "/models/kor-1"}),
                                  ("/v1/unload_lora_adapter", {"lora_name": "compass-kor-2"})]
        assert vllm.loaded == {"compass-kor-1": "/models/kor-1"}
        active = c.get("/v1/adapters/active?lang=kor").json()
        assert (active["id"], active["lora_name"]) == ("kor-1", "compass-kor-1")
        assert active["path"] == "adapters/kor-1"  # relative to the data directory, as everywhere
        assert c.get("/v1/adapters/active?lang=swh").status_code == 404
    assert vllm.violations == []
    keys = ("event", "language", "version", "previous", "path", "sha256")
    hook = [{k: h[k] for k in keys} for h in vllm.hooks]
    assert hook == [{"event": "promote", "language": "kor", "version": "kor-2", "previous": "kor-1",
                     "path": "/models/kor-2", "sha256": sha(registry, "kor-2")},
                    {"event": "rollback", "language": "kor", "version": "kor-1", "previous": "kor-2",
                     "path": "/models/kor-1", "sha256": sha(registry, "kor-1")}]
    assert vllm.hooks[0]["gate"] == {"adaptation_gain": 0.02, "preservation_loss": -0.01}
    assert vllm.hooks[0]["reason"] == "gate"


def test_a_failing_model_server_is_retried_with_backoff_and_shown_until_delivered(tmp_path, registry):
    with VllmStub(fail_next=10_000) as vllm, app(tmp_path, registry, vllm) as c:
        registry.promote("kor-2")  # outside the API (the CLI, a worker): found in the decision log
        deadline = time.monotonic() + 10
        while not any(n["attempts"] >= 3 for n in
                      c.get("/v1/notifications?state=pending").json()["notifications"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        pending = {n["target"]: n for n in c.get("/v1/notifications").json()["notifications"]}
        assert pending["vllm"]["state"] == "pending" and pending["vllm"]["done"] == 0
        assert pending["vllm"]["last_error"].startswith("HTTP 503 from http://127.0.0.1:")
        assert pending["webhook"]["state"] == "delivered"  # the hook answered; only vLLM failed
        vllm.fail_next = 0
        assert c.post(f"/v1/notifications/{pending['vllm']['id']}/retry", headers=AUTH).status_code == 200
        delivered(c, 2)
        assert c.post(f"/v1/notifications/{pending['vllm']['id']}/retry", headers=AUTH).status_code == 409
        assert c.post("/v1/notifications/99/retry", headers=AUTH).status_code == 404
    assert vllm.loaded == {"compass-kor-2": "/models/kor-2"}
    assert vllm.violations == []


def test_replicas_on_one_database_notify_once(tmp_path, registry):
    """Two services on one database: one notifier leads, so vLLM hears of a promotion once."""
    with VllmStub() as vllm, app(tmp_path, registry, vllm) as first, app(tmp_path, registry, vllm) as second:
        assert second.post("/v1/adapters/kor-2/promote", headers=AUTH).status_code == 200
        delivered(first, 2)
        time.sleep(0.5)  # ten notifier polls: a second notifier would have sent by now
        roles = {c.get("/v1/notifications").json()["role"] for c in (first, second)}
        assert roles == {"leader", "standby"}
    assert [c[0] for c in vllm.calls] == ["/v1/load_lora_adapter", "/v1/unload_lora_adapter"]
    assert len(vllm.hooks) == 1


def test_a_load_that_vllm_already_has_counts_as_done(tmp_path, registry):
    """A retry after a lost response: vLLM answers 400 'already been loaded'; the unload goes on."""
    with VllmStub() as vllm, app(tmp_path, registry, vllm) as c:
        vllm.loaded.update({"compass-kor-2": "/models/kor-2", "compass-kor-1": "/models/kor-1"})
        c.post("/v1/adapters/kor-2/promote", headers=AUTH)
        delivered(c, 2)
    assert vllm.loaded == {"compass-kor-2": "/models/kor-2"} and vllm.violations == []


def test_the_stub_refuses_what_vllm_does_not_define():
    import urllib.error
    import urllib.request

    with VllmStub() as vllm:
        for path, body in (("/v1/load_lora_adapter", {"name": "x", "path": "/p"}),
                           ("/v1/load_lora_adapter", {"lora_name": "x"}),
                           ("/v1/lora/load", {"lora_name": "x", "lora_path": "/p"})):
            request = urllib.request.Request(vllm.url + path, data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(request)
    assert len(vllm.violations) == 3 and vllm.loaded == {}


def test_paths_map_to_the_model_servers_and_bad_settings_are_refused():
    config = NotifyConfig(path_map=parse_path_map(["/srv/a=/models", "/srv/a/special=/fast"]))
    assert config.served_path("/srv/a/kor-2") == "/models/kor-2"
    assert config.served_path("/srv/a/special/kor-2") == "/fast/kor-2"
    assert config.served_path("/srv/ab/kor-2") == "/srv/ab/kor-2"
    assert config.name("swh-u7", "swh") == "compass-swh-u7"
    with pytest.raises(ConfigError, match="LOCAL=REMOTE"):
        parse_path_map(["models"])
    with pytest.raises(ConfigError, match="http"):
        NotifyConfig(vllm_url="vllm:8000")
    with pytest.raises(ConfigError, match="lora_name template"):
        NotifyConfig(lora_name="compass-{version}")

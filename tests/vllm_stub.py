"""A stand-in for vLLM's runtime LoRA endpoints, pinned to their documented contract.

docs.vllm.ai, "LoRA Adapters" → "Dynamically serving LoRA Adapters" (with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``): ``POST /v1/load_lora_adapter`` with a JSON
body ``{"lora_name": ..., "lora_path": ...}`` answers 200 ``Success: LoRA adapter
'<name>' added successfully.``; ``POST /v1/unload_lora_adapter`` with ``{"lora_name":
...}`` answers 200 ``... removed successfully.``. vLLM's serving code answers 400
"The lora adapter '<name>' has already been loaded." for a name it has and 404 "...
cannot be found." for an unload of a name it does not have. Anything else that a
request does differently (method, path, content type, fields) is recorded as a
violation and refused, so a test can assert there were none.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROUTES = {"/v1/load_lora_adapter": {"lora_name", "lora_path"}, "/v1/unload_lora_adapter": {"lora_name"}}


class VllmStub:
    """``with VllmStub() as vllm: ... vllm.url, vllm.loaded, vllm.calls, vllm.violations``.

    ``fail_next``: answer that many requests with 503 first (a model server restarting).
    A webhook receiver on the same server: any POST to ``/hook`` is recorded in ``hooks``.
    """

    def __init__(self, fail_next: int = 0) -> None:
        self.loaded: dict[str, str] = {}
        self.calls: list[tuple[str, dict]] = []
        self.hooks: list[dict] = []
        self.violations: list[str] = []
        self.fail_next = fail_next
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_):  # quiet
                pass

            def do_GET(self):
                stub._violate(self, f"GET {self.path}: only POST is defined")

            def do_POST(self):
                stub._post(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> VllmStub:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, handler, code: int, text: str) -> None:
        data = text.encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "text/plain" if code == 200 else "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _violate(self, handler, why: str) -> None:
        with self._lock:
            self.violations.append(why)
        self._answer(handler, 422, json.dumps({"message": why}))

    def _post(self, handler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        kind = handler.headers.get("Content-Type", "")
        if kind.split(";")[0].strip() != "application/json":
            return self._violate(handler, f"{handler.path}: Content-Type {kind!r}")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._violate(handler, f"{handler.path}: body is not JSON")
        if handler.path == "/hook":
            with self._lock:
                self.hooks.append(body)
            return self._answer(handler, 200, "ok")
        fields = ROUTES.get(handler.path)
        if fields is None:
            return self._violate(handler, f"POST {handler.path}: no such endpoint")
        if not isinstance(body, dict) or set(body) != fields or not all(isinstance(body[f], str) and body[f]
                                                                        for f in fields):
            return self._violate(handler, f"{handler.path}: body {body!r} is not exactly {sorted(fields)}")
        with self._lock:
            self.calls.append((handler.path, body))
            if self.fail_next > 0:
                self.fail_next -= 1
                failing = True
            else:
                failing = False
        if failing:
            return self._answer(handler, 503, json.dumps({"message": "engine restarting"}))
        name = body["lora_name"]
        with self._lock:
            if handler.path == "/v1/load_lora_adapter":
                if name in self.loaded:
                    return self._answer(handler, 400, json.dumps({
                        "message": f"The lora adapter '{name}' has already been loaded.",
                        "type": "InvalidUserInput", "code": 400}))
                self.loaded[name] = body["lora_path"]
                return self._answer(handler, 200, f"Success: LoRA adapter '{name}' added successfully.")
            if name not in self.loaded:
                return self._answer(handler, 404, json.dumps({
                    "message": f"The lora adapter '{name}' cannot be found.", "type": "NotFoundError",
                    "code": 404}))
            del self.loaded[name]
            return self._answer(handler, 200, f"Success: LoRA adapter '{name}' removed successfully.")

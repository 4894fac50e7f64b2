"""A stdlib HTTP server on 127.0.0.1 that plays an OpenAI-compatible judge
from a script, counting every request it receives and every reply it
completes, per (question, Assistant 1's answer)."""
from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USAGE = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
_SHOWN = re.compile(r"\[Question\]\n(.*?)\n\n\[The Start of Assistant 1's Answer\]\n(.*?)\n\n"
                    r"\[The End of Assistant 1's Answer\]\n\n\[The Start of Assistant 2's Answer\]\n(.*?)\n\n"
                    r"\[The End of Assistant 2's Answer\]", re.S)

# An action: ("reply", text) | ("status", code, headers) | ("hang", seconds): no
# reply within the client's timeout, then the connection is closed.
Action = tuple


class ScriptedJudge:
    """script(question, answer_1, answer_2, hit) -> action, hit counting the
    request's earlier (not held) arrivals from 0. With ``hold_after``, once
    that many replies are complete every further request is held until
    ``release()`` and then dropped unanswered (a client killed meanwhile
    never gets it)."""

    def __init__(self, script: Callable[[str, str, str, int], Action], hold_after: int | None = None):
        self.script, self.hold_after = script, hold_after
        self.received: Counter = Counter()
        self.answered: Counter = Counter()
        self.arrivals: dict[tuple, list[float]] = defaultdict(list)
        self.headers: list[dict] = []
        self.held = 0
        self._release = threading.Event()
        self._lock = threading.Lock()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                question, first, second = _SHOWN.search(body["messages"][-1]["content"]).groups()
                key = (question, first)
                with judge._lock:
                    judge.headers.append(dict(self.headers))
                    hold = judge.hold_after is not None and sum(judge.answered.values()) >= judge.hold_after
                    if hold:
                        judge.held += 1
                    else:
                        hit = judge.received[key]
                        judge.received[key] += 1
                        judge.arrivals[key].append(time.monotonic())
                if hold:
                    judge._release.wait(30)
                    return
                action = judge.script(question, first, second, hit)
                if action[0] == "hang":
                    time.sleep(action[1])
                    return
                if action[0] == "status":
                    self._send(action[1], {"error": {"message": f"scripted {action[1]}"}}, action[2])
                    return
                self._send(200, {"id": "x", "object": "chat.completion", "model": body["model"], "usage": USAGE,
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": action[1]}}]})
                with judge._lock:
                    judge.answered[key] += 1

            def _send(self, code, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def release(self) -> None:
        self._release.set()

    def __enter__(self) -> "ScriptedJudge":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

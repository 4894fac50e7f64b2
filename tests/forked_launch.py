"""``python -m lpjax.launch`` command lines, each in its own process, without
paying an interpreter start and lpjax's imports for each.

``run_lanes`` starts one helper interpreter (this module as ``__main__``),
which imports the launcher and the modules its stages use, then forks one
child per command line. A child is a fresh process as far as the test can
tell: its own pid, exit status (``-9`` when it SIGKILLed itself), stdout and
stderr (files, read back as text), and its own JAX backend (the helper never
initializes one, so forking it is safe). The child runs what
``python -m lpjax.launch`` runs: ``absl.app.run(launch.main,
flags_parser=launch._parse_flags)`` after the same huge-pages re-exec
(done once, by the helper).

Command lines come in lanes: a lane's commands run one after another (a
chain of kills and resumes in one workdir), lanes run side by side,
``parallel`` at a time, in the order given.

``LaunchServer`` keeps one such helper for a whole test module and forks
a child per ``start``: a test runs its launches one by one, looks at the
workdir between them, and may SIGKILL a child itself.

What differs per command is only what lpjax reads at run time (``env``:
LPJAX_KILL_AT, LPJAX_TRACEBACK, ...). Variables read when jax is imported
(``JAX_*``, ``XLA_*``) are the helper's, so every command shares them.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

_READ_AT_IMPORT = ("JAX_", "XLA_", "TF_", "GLIBC_TUNABLES", "PYTHON")


def run_lanes(lanes, *, cwd, env, parallel, timeout):
    """Run every lane; returns {name: subprocess.CompletedProcess} (and its
    wall time as ``.seconds``) for each command that ran.

    ``lanes``: a list of lanes, each a list of dicts ``{"name", "argv"}``
    (the arguments after ``python -m lpjax.launch``), optionally ``"env"``
    (variables to set, or to unset with None) and ``"stop_unless"`` (an exit
    status: any other ends the lane there, as a failed assertion would have
    ended a loop of launches). ``timeout``: seconds for one command (it is
    SIGKILLed after that, and the lane goes on)."""
    names = [job["name"] for lane in lanes for job in lane]
    assert len(set(names)) == len(names), "command names must differ"
    lanes = [[{**job, "id": n} for n, job in enumerate(lane, start=sum(map(len, lanes[:i])))]
             for i, lane in enumerate(lanes)]
    for lane in lanes:
        for job in lane:
            _check_run_time_env(job["name"], job.get("env", {}))
    with tempfile.TemporaryDirectory(prefix="lpjax-forked-") as tmp:
        spec = os.path.join(tmp, "spec.json")
        with open(spec, "w") as f:
            json.dump({"lanes": lanes, "parallel": parallel, "timeout": timeout, "dir": tmp}, f)
        total = timeout * sum(len(lane) for lane in lanes) + 120
        helper = subprocess.Popen([sys.executable, "-m", "tests.forked_launch", spec], cwd=cwd, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = helper.communicate(timeout=total)
        except subprocess.TimeoutExpired:
            os.killpg(helper.pid, signal.SIGKILL)
            raise
        finally:
            if helper.poll() is None:
                os.killpg(helper.pid, signal.SIGKILL)
                helper.wait()
        assert helper.returncode == 0, f"the launch helper failed ({helper.returncode}):\n{out[-2000:]}\n{err[-3000:]}"
        with open(os.path.join(tmp, "results.json")) as f:
            done = json.load(f)
        results = {}
        for lane in lanes:
            for job in lane:
                if job["name"] not in done:
                    continue
                results[job["name"]] = _completed(job, tmp, **done[job["name"]])
        return results


class LaunchServer:
    """A helper interpreter that forks one launcher child per ``start``.

    ``start(argv, env=None)`` returns the child's pid at once; ``wait(pid)``
    its CompletedProcess (stdout and stderr as text, ``.seconds``);
    ``run`` both. ``env``: run-time variables, as in ``run_lanes``."""

    def __init__(self, *, cwd, env, timeout):
        self._tmp = tempfile.TemporaryDirectory(prefix="lpjax-server-")
        self._timeout, self._argv, self._next = int(timeout), {}, 0
        self._helper = subprocess.Popen([sys.executable, "-m", "tests.forked_launch", "--serve", self._tmp.name],
                                        cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        start_new_session=True)

    def _ask(self, request):
        self._helper.stdin.write(json.dumps(request) + "\n")
        self._helper.stdin.flush()
        for line in self._helper.stdout:  # what else the helper prints (import warnings) is passed over
            if line.startswith(_REPLY):
                return json.loads(line[len(_REPLY):])
        raise RuntimeError(f"the launch helper ended ({self._helper.wait()})")

    def start(self, argv, env=None) -> int:
        _check_run_time_env(" ".join(argv), env or {})
        job = {"id": self._next, "argv": list(argv), "env": env or {}}
        self._next += 1
        pid = self._ask({"op": "start", "job": job, "timeout": self._timeout})["pid"]
        self._argv[pid] = job
        return pid

    def wait(self, pid) -> subprocess.CompletedProcess:
        return _completed(self._argv.pop(pid), self._tmp.name, **self._ask({"op": "wait", "pid": pid}))

    def run(self, argv, env=None) -> subprocess.CompletedProcess:
        return self.wait(self.start(argv, env))

    def close(self):
        if self._helper.poll() is None:
            os.killpg(self._helper.pid, signal.SIGKILL)
            self._helper.wait()
        self._tmp.cleanup()


_REPLY = "@lpjax-server "


def _check_run_time_env(name, env):
    bad = [k for k in env if k.startswith(_READ_AT_IMPORT)]
    assert not bad, f"{name}: {bad} are read when jax is imported: start another helper"


def _completed(job, directory, returncode, seconds) -> subprocess.CompletedProcess:
    """A finished child as subprocess.run would give it, with its wall time
    as ``.seconds`` (for a test's own report)."""
    read = lambda stream: _read(os.path.join(directory, f"{job['id']}.{stream}"))
    proc = subprocess.CompletedProcess([sys.executable, "-m", "lpjax.launch", *job["argv"]], returncode, read("out"),
                                       read("err"))
    proc.seconds = seconds
    return proc


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


# ---------------------------------------------------------------- the helper

def _child(job, directory, timeout):
    """In the forked child: run the launcher on ``job`` and exit with its status."""
    code = 1
    try:
        for stream, fd in (("out", 1), ("err", 2)):
            target = os.open(os.path.join(directory, f"{job['id']}.{stream}"),
                             os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        for key, value in job.get("env", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        signal.alarm(timeout)  # SIGALRM's default action ends the process
        from absl import app

        from lpjax import launch

        sys.argv = [launch.__file__, *job["argv"]]
        try:
            app.run(launch.main, flags_parser=launch._parse_flags)
            code = 0
        except SystemExit as e:  # what the interpreter makes of sys.exit(...)
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code
            else:
                print(e.code, file=sys.stderr)
                code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _serve(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    lanes = [list(lane) for lane in spec["lanes"]]
    parallel, timeout, directory = spec["parallel"], int(spec["timeout"]), spec["dir"]
    results, running, started = {}, {}, {}  # running: pid -> (lane index, job)
    waiting = list(range(len(lanes)))  # lanes not yet started, in order
    active = set()  # lanes with a command running

    def start(i):
        job = lanes[i].pop(0)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(job, directory, timeout)
        running[pid] = (i, job)
        started[pid] = time.time()
        active.add(i)

    while waiting or running:
        while waiting and len(active) < parallel:
            start(waiting.pop(0))
        pid, status = os.wait()
        i, job = running.pop(pid)
        active.discard(i)
        results[job["name"]] = {"returncode": os.waitstatus_to_exitcode(status), "seconds": time.time() - started[pid]}
        if "stop_unless" in job and results[job["name"]]["returncode"] != job["stop_unless"]:
            lanes[i].clear()
        if lanes[i]:
            start(i)  # the lane goes on at once, ahead of lanes not yet started
    with open(os.path.join(directory, "results.json"), "w") as f:
        json.dump(results, f)


def _warm_up():
    """Import what a launch imports, without initializing a JAX backend (a
    process with XLA's threads must not fork) or using a thread pool."""
    import importlib

    import jax  # noqa: F401

    # What lpjax.launch.main imports (the pipeline: its stages, flax, orbax,
    # tensorstore, ...), then what lpjax imports inside functions, seconds per
    # launch: loading a tokenizer (transformers, its Llama config, and torch
    # with them), writing a subset (datasets), the report's plots (matplotlib).
    # Only a head start: whatever is missing here, the launch imports itself.
    for name in ("lpjax.config", "lpjax.validate", "lpjax.distributed", "lpjax.errors", "lpjax.preflight",
                 "lpjax.tuning", "lpjax.pipeline", "transformers", "transformers.models.auto.tokenization_auto",
                 "transformers.tokenization_utils_fast", "transformers.models.llama.configuration_llama",
                 "transformers.activations", "transformers.integrations.accelerate",
                 "transformers.integrations.hub_kernels", "transformers.core_model_loading", "datasets",
                 "matplotlib.figure", "matplotlib.backends.backend_agg"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _server(directory):
    """LaunchServer's side: requests on stdin, one JSON reply line each."""
    started = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request["job"], directory, request["timeout"])
            started[pid] = time.time()
            reply = {"pid": pid}
        else:
            pid = request["pid"]
            _, status = os.waitpid(pid, 0)
            reply = {"returncode": os.waitstatus_to_exitcode(status), "seconds": time.time() - started.pop(pid)}
        print(_REPLY + json.dumps(reply), flush=True)


if __name__ == "__main__":
    from lpjax import launch

    launch.reexec_with_huge_pages()  # as `python -m lpjax.launch` does, once for every child
    _warm_up()
    if sys.argv[1] == "--serve":
        _server(sys.argv[2])
    else:
        _serve(sys.argv[1])

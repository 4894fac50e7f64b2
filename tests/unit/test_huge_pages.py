"""The launcher re-executes itself once with glibc's huge-page tunable
(lpjax.launch.reexec_with_huge_pages)."""
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

CODE = ("import os; from lpjax import launch; launch.reexec_with_huge_pages(); "
        "print(os.getpid(), os.environ.get('GLIBC_TUNABLES', ''))")


def run(env_extra: dict) -> tuple[int, str, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LPJAX_HUGE_PAGES")}
    proc = subprocess.Popen([sys.executable, "-c", CODE], cwd=REPO, env={**env, **env_extra},
                            stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    pid, _, tunables = out.strip().partition(" ")
    return int(pid), tunables, proc.pid


@pytest.mark.skipif(sys.platform != "linux", reason="glibc tunables are a Linux matter")
def test_relaunch_keeps_pid_and_adds_the_tunable_once():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not a glibc system")
    pid, tunables, child = run({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert pid == child  # execve: same process, so kill -9 and resume see one PID
    assert tunables == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


def test_opt_out_and_an_explicit_setting_are_left_alone():
    assert run({"LPJAX_HUGE_PAGES": "0"})[1] == ""
    assert run({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})[1] == "glibc.malloc.hugetlb=0"

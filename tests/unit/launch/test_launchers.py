"""What the cluster launchers emit: the sbatch of a Slurm job array (as
submitit renders it) and the Cloud TPU VM command lines, against expected
text; bash parses both, and the TPU lines' quoting gives each host exactly
the launcher's arguments. Also the dry run of the shipped sweeps."""
import os
import shlex
import subprocess

import pytest

from launch import sweep, tpu
from launch.points import make_points
from tests.conftest import REPO


TWO = [{"select.percent": 5.0, "select.baselines": ("random", "full")},
       {"select.percent": 25.0, "select.baselines": ("random", "full"), "data.source": "my $data.json"}]

SBATCH = """#!/bin/bash

# Parameters
#SBATCH --array=0-1%1
#SBATCH --error=/shared/two/slurm/%A_%a_0_log.err
#SBATCH --gpus-per-node=4
#SBATCH --job-name=lpjax-sweep
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --open-mode=append
#SBATCH --output=/shared/two/slurm/%A_%a_0_log.out
#SBATCH --partition=gpu
#SBATCH --signal=USR2@90
#SBATCH --time=120
#SBATCH --wckey=submitit

# setup
source ~/venv/bin/activate

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output /shared/two/slurm/%A_%a_%t_log.out --error /shared/two/slurm/%A_%a_%t_log.err \
/opt/venv/bin/python -u -m submitit.core._submit /shared/two/slurm
"""

TPU_LINE = (
    "gcloud compute tpus tpu-vm ssh my-v4-32 --zone=us-central2-b --worker=all --command=\"cd ~/lpjax && python3 -m "
    "lpjax.launch --config=configs/lp_app.py --config.select.percent=5.0 "
    "'--config.select.baselines=(\\\"random\\\", \\\"full\\\")' --config.workdir=runs/two/points/percent=5 "
    "--config.store=runs/two/store --config.distributed.coordinator=auto\" "
    "|| { echo 'point percent=5 failed' >&2; failed=1; }")


def test_sbatch_of_a_multi_host_array(tmp_path):
    pytest.importorskip("submitit")
    from launch import slurm

    options = slurm.SlurmOptions(partition="gpu", nodes=2, tasks_per_node=4, gpus_per_node=4, array_parallelism=1,
                                 time_min=120, setup=("source ~/venv/bin/activate",))
    text = slurm.sbatch_text(2, "/shared/two/slurm", options, python="/opt/venv/bin/python")
    assert text == SBATCH.replace("\\\n", "")
    # 8 processes per point: each runs lpjax with JAX finding its coordinator in Slurm's environment.
    assert slurm.point_extra_args(options) == ["--config.distributed.coordinator=auto"]
    assert slurm.point_extra_args(slurm.SlurmOptions()) == []
    path = slurm.write_sbatch(str(tmp_path / "slurm" / "array.sbatch"), text)
    assert subprocess.run(["bash", "-n", path]).returncode == 0


def test_tpu_lines_and_their_quoting(tmp_path):
    points = make_points(TWO, "configs/lp_app.py", "runs/two")
    script = tpu.script(points, tpu.TpuOptions("my-v4-32", "us-central2-b"))
    assert TPU_LINE in script.splitlines()
    path = tmp_path / "run_points.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    # Run the script with a stand-in gcloud that prints what each host would run.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "gcloud").write_text('#!/usr/bin/env bash\nfor a; do case $a in --command=*) printf "%s\\0" '
                                 '"${a#--command=}";; esac; done\n')
    (fake / "gcloud").chmod(0o755)
    out = subprocess.run(["bash", str(path)], capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert out.returncode == 0, out.stderr
    remote = out.stdout.split("\0")[:-1]
    for p, command in zip(points, remote):
        cd, rest = command.split(" && ", 1)
        assert cd == "cd ~/lpjax"
        assert shlex.split(rest) == ["python3", "-m", "lpjax.launch", *p.args(),
                                     "--config.distributed.coordinator=auto"]
    assert "--config.data.source=my $data.json" in shlex.split(remote[1])


@pytest.mark.parametrize("name,points,probes", [("embedded", 27, 3), ("paper_opt_alpaca", 98, 7),
                                                ("paper_llama2_dolly", 87, 4)])
def test_dry_run_of_shipped_sweeps(name, points, probes, capsys, tmp_path, monkeypatch):
    # The paper sweeps name checkpoints and data that are not here: the dry run works without them.
    monkeypatch.chdir(REPO)
    rc = sweep.main([f"--sweep=launch/sweeps/{name}.py", f"--runs={tmp_path}", "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith(f"{points} points")
    assert f"shared probes: {probes} probe run(s) serve {points} points" in out
    assert not os.listdir(tmp_path)  # a dry run writes nothing

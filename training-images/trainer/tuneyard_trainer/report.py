"""The evaluation report people read (report.html) and the blind A/B sheet for a human review (ab-review.csv, its key
ab-key.csv apart), written by the eval job beside eval.json and generations.jsonl.

report.html is one self-contained file: inline CSS and inline SVG charts drawn here (no scripts, fonts, images or
network: it opens offline and from a mail attachment). The charts are small enough to draw by hand (a line chart of
the training and eval loss, histograms of grader scores); a plotting library would add megabytes to the image for two
chart types. Everything that comes from the run (prompts, answers, grader names, reasoning) is HTML-escaped.

`render_report(eval_report, generations, history, judgements=None)` is a pure function: the eval job renders it
without the judge (the judge runs after it), its judge section between the JUDGE_BEGIN / JUDGE_END markers; the
pipeline's JudgeAnswers Lambda later replaces that section with the judge's verdicts (judge-report.ts)."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import random
from pathlib import Path
from typing import Any

HISTORY_FILE = "training_history.json"  # written by train.py beside training_config.json
REPORT_FILE = "report.html"
AB_SHEET = "ab-review.csv"
AB_KEY = "ab-key.csv"
DEFAULT_AB_SEED = 15
MAX_SAMPLES = 50  # side-by-side samples in the report (worst regressions first); the A/B sheet has every item
# The judge section sits between these comments: the pipeline's JudgeAnswers Lambda, which runs after this report is
# written, replaces what is between them with the judge's verdicts (constructs/fine-tuning-pipeline/handler/
# judge-report.ts) and rewrites report.html in place. A contract: change both sides together.
JUDGE_BEGIN, JUDGE_END = "<!-- tuneyard:judge -->", "<!-- /tuneyard:judge -->"

BASE_COLOUR, TUNED_COLOUR = "#8a8f98", "#1f6feb"
TRAIN_COLOUR, EVAL_COLOUR = "#1f6feb", "#d1242f"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _e(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return _e(value)
    return f"{value:.{digits}g}"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values spanning [low, high]."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks, value = [], start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


def _frame(width: int, height: int, label: str, body: list[str], legend: list[tuple[str, str]]) -> str:
    items = "".join(
        f'<g transform="translate({60 + i * 110},14)"><rect width="12" height="12" fill="{colour}"/>'
        f'<text x="16" y="10">{_e(name)}</text></g>'
        for i, (name, colour) in enumerate(legend)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="{_e(label)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">{items}{"".join(body)}</svg>'
    )


def _axes(x0, y0, x1, y1, xticks, yticks, sx, sy, x_label, y_label) -> list[str]:
    parts = [f'<path class="axis" d="M{x0},{y1} V{y0} H{x1}" fill="none" stroke="#57606a"/>']
    for t in yticks:
        y = sy(t)
        parts.append(f'<path d="M{x0},{y:.1f} H{x1}" stroke="#eaeef2"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{_number(t, 3)}</text>')
    for t in xticks:
        x = sx(t)
        parts.append(f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle">{_number(t, 3)}</text>')
    parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y0 + 32}" text-anchor="middle">{_e(x_label)}</text>')
    parts.append(
        f'<text transform="translate(14,{(y0 + y1) / 2:.1f}) rotate(-90)" text-anchor="middle">{_e(y_label)}</text>'
    )
    return parts


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    colours: dict[str, str],
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 280,
) -> str:
    """An SVG line chart: one path per non-empty series of (x, y) points (a lone point is drawn as a dot too)."""
    points = [p for values in series.values() for p in values if all(math.isfinite(v) for v in p)]
    if not points:
        raise ValueError("line_chart needs at least one finite (x, y) point")
    x0, y0, x1, y1 = 60, height - 40, width - 16, 36
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    xticks, yticks = _ticks(min(xs), max(xs)), _ticks(min(ys), max(ys))
    xl, xh, yl, yh = xticks[0], xticks[-1], yticks[0], yticks[-1]

    def sx(v: float) -> float:
        return x0 + (v - xl) / (xh - xl) * (x1 - x0)

    def sy(v: float) -> float:
        return y0 - (v - yl) / (yh - yl) * (y0 - y1)

    body = _axes(x0, y0, x1, y1, xticks, yticks, sx, sy, x_label, y_label)
    legend = []
    for name, values in series.items():
        finite = sorted(p for p in values if all(math.isfinite(v) for v in p))
        if not finite:
            continue
        colour = colours[name]
        legend.append((name, colour))
        d = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(finite))
        body.append(f'<path class="series" data-series="{_e(name)}" d="{d}" fill="none" stroke="{colour}" stroke-width="2"/>')
        body.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in finite)
    return _frame(width, height, f"{y_label} by {x_label}", body, legend)


def histogram(
    groups: dict[str, list[float]], colours: dict[str, str], x_label: str, bins: int = 10, width: int = 420, height: int = 220
) -> str:
    """An SVG histogram of several groups of values side by side in each bin (counts), over [min(0, low), max(1,
    high)]: grader scores mostly lie in [0, 1]."""
    values = [v for vs in groups.values() for v in vs if math.isfinite(v)]
    if not values:
        raise ValueError("histogram needs at least one finite value")
    xticks = _ticks(min(0.0, min(values)), max(1.0, max(values)))
    low, high = xticks[0], xticks[-1]
    span = (high - low) / bins

    def bin_of(v: float) -> int:
        return min(int((v - low) / span), bins - 1)

    counts = {name: [0] * bins for name in groups}
    for name, vs in groups.items():
        for v in vs:
            if math.isfinite(v):
                counts[name][bin_of(v)] += 1
    top = max(max(c) for c in counts.values())
    x0, y0, x1, y1 = 60, height - 40, width - 12, 36
    yticks = _ticks(0, top, 4)
    yh = yticks[-1]

    def sx(v: float) -> float:
        return x0 + (v - low) / (high - low) * (x1 - x0)

    def sy(v: float) -> float:
        return y0 - v / yh * (y0 - y1)

    body = _axes(x0, y0, x1, y1, xticks, yticks, sx, sy, x_label, "answers")
    slot = (x1 - x0) / bins / max(len(groups), 1)
    for g, (name, per_bin) in enumerate(counts.items()):
        d = []
        for b, count in enumerate(per_bin):
            if count:
                left = x0 + b * (x1 - x0) / bins + g * slot + 1
                d.append(f"M{left:.1f},{y0} V{sy(count):.1f} h{slot - 2:.1f} V{y0} Z")
        if d:
            body.append(f'<path class="bars" data-series="{_e(name)}" d="{" ".join(d)}" fill="{colours[name]}"/>')
    return _frame(width, height, f"{x_label} distribution", body, [(n, colours[n]) for n in groups])


# --- reading the job's files ---


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    # split on "\n" only: str.splitlines also splits on U+2028, U+0085 and other characters JSON keeps inside strings
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} line {number} is not JSON ({error.msg}); the file should be JSON lines") from error
    return rows


def read_history(folder: Path) -> list[dict[str, Any]] | None:
    """The Trainer's log_history that train.py wrote beside the model (None for a model trained before it did)."""
    path = folder / HISTORY_FILE
    if not path.exists():
        return None
    document = json.loads(path.read_text(encoding="utf-8"))
    history = document.get("log_history") if isinstance(document, dict) else None
    if not isinstance(history, list):
        raise ValueError(f"{path} has no log_history list; it should be what train.py writes ({{\"log_history\": [...]}})")
    return history


def loss_curves(history: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Training loss per logging step and eval loss per evaluation, by step, from a Trainer's log_history."""
    train = [(float(e["step"]), float(e["loss"])) for e in history if "loss" in e and "step" in e]
    evals = [(float(e["step"]), float(e["eval_loss"])) for e in history if "eval_loss" in e and "step" in e]
    return {"train loss": train, "eval loss": evals}


# --- samples ---


def _grader_names(generations: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for row in generations:
        for side in ("base_scores", "tuned_scores"):
            names.update(dict.fromkeys(row.get(side) or {}))
    return list(names)


def score_change(row: dict[str, Any]) -> float | None:
    """The mean over graders of tuned minus base score (graders that scored both answers); None without any."""
    base, tuned = row.get("base_scores") or {}, row.get("tuned_scores") or {}
    changes = [tuned[n] - base[n] for n in base if _is_number(base.get(n)) and _is_number(tuned.get(n))]
    return sum(changes) / len(changes) if changes else None


def ordered_samples(generations: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The generations, worst regressions first, and how they were ordered: by the mean grader score change (tuned -
    base, lowest first) when graders scored them, else by the tuned answer running to max_new_tokens where the base
    stopped, then by how much longer the tuned answer is (a tuned model that rambles or never stops)."""
    if any(score_change(row) is not None for row in generations):
        def key(row):
            change = score_change(row)
            return (change is None, change if change is not None else 0.0, row.get("index", 0))

        return sorted(generations, key=key), "mean grader score change (tuned − base), lowest first"

    def by_length(row):
        no_stop = bool(row.get("base_stopped")) and not row.get("tuned_stopped", True)
        return (not no_stop, -(row.get("tuned_tokens", 0) - row.get("base_tokens", 0)), row.get("index", 0))

    return sorted(generations, key=by_length), "no graders: tuned answers that did not stop first, then the longest"


def prompt_text(prompt: Any) -> str:
    """A prompt (generations.jsonl: the messages before the answer) as plain text, one `role: content` per message."""
    if isinstance(prompt, str):
        return prompt
    lines = []
    for message in prompt or []:
        content = message.get("content")
        if not isinstance(content, str):
            content = json.dumps(content if content is not None else message.get("tool_calls"), ensure_ascii=False)
        lines.append(f"{message.get('role', '?')}: {content}")
    return "\n".join(lines)


# --- the blind A/B sheet ---


def _cell(text: str) -> str:
    """A spreadsheet cell that cannot run as a formula (answers are untrusted text)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def ab_sheets(generations: list[dict[str, Any]], seed: int = DEFAULT_AB_SEED) -> tuple[str, str]:
    """(ab-review.csv, ab-key.csv): every item with its two answers in an order drawn per item from `seed`, and the
    key naming which of A and B is the tuned model's answer (kept apart: the reviewer is not sent it)."""
    chooser = random.Random(seed)
    sheet, key = io.StringIO(), io.StringIO()
    review = csv.writer(sheet, lineterminator="\n")
    review.writerow(["item", "prompt", "reference", "answer_a", "answer_b", "preference (A, B or tie)", "notes"])
    answers = csv.writer(key, lineterminator="\n")
    answers.writerow(["item", "tuned", "base", "seed"])
    for row in generations:
        item = f"item-{row['index']}"
        tuned_first = chooser.random() < 0.5
        a, b = (row["tuned"], row["base"]) if tuned_first else (row["base"], row["tuned"])
        review.writerow([item, _cell(prompt_text(row["prompt"])), _cell(row.get("reference", "")), _cell(a), _cell(b), "", ""])
        answers.writerow([item, "A" if tuned_first else "B", "B" if tuned_first else "A", seed])
    return sheet.getvalue(), key.getvalue()


# --- the page ---

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0;background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px}h3{font-size:14px;margin:12px 0 4px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:16px 20px;margin:16px 0}
table{border-collapse:collapse;margin:8px 0}th,td{border-bottom:1px solid #eaeef2;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#57606a}.bad{color:#d1242f}.good{color:#1a7f37}
.chart text{font-size:11px;fill:#57606a}.charts{display:flex;flex-wrap:wrap;gap:16px}
.sample{border:1px solid #d0d7de;border-radius:6px;margin:12px 0;padding:8px 12px}
.pair{display:grid;grid-template-columns:1fr 1fr 1fr;gap:8px}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;padding:6px 8px;margin:2px 0;border-radius:4px;font-size:12px;max-height:240px;overflow:auto}
"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num_cell(value: Any, css: str = "") -> str:
    return f'<td class="n {css}">{_number(value)}</td>'


def _summary(report: dict[str, Any]) -> str:
    base, tuned = report.get("base") or {}, report.get("tuned") or {}
    rows = [
        ["<td>eval loss</td>", _num_cell(base.get("eval_loss")), _num_cell(tuned.get("eval_loss"))],
        ["<td>eval perplexity</td>", _num_cell(base.get("eval_perplexity")), _num_cell(tuned.get("eval_perplexity"))],
        ["<td>probe loss (forgetting)</td>", _num_cell(base.get("probe_loss")), _num_cell(tuned.get("probe_loss"))],
    ]
    facts = [
        f"eval loss ratio (tuned / base): <b>{_number(report.get('eval_loss_ratio'))}</b>",
        f"forgetting (probe loss increase): <b>{_number(report.get('forgetting_increase'))}</b>",
        f"held-out examples: <b>{_number(report.get('examples'))}</b>",
    ]
    preference = report.get("preference")
    if preference:
        # beta null: a reward model's own scores (method=reward), not DPO's implicit reward
        label = "Reward model pairwise accuracy" if preference.get("beta") is None else "DPO preference accuracy"
        facts.append(
            f"{label}: <b>{_number(preference.get('accuracy'))}</b> "
            f"({_number(preference.get('preferred'))}/{_number(preference.get('pairs'))} pairs), "
            f"reward margin {_number(preference.get('reward_margin'))}"
        )
    reward = report.get("reward")
    if reward:
        # grpo, rloo: the run's own reward of both models' answers (the gate's minRewardGain)
        sources = ", ".join(f"{_e(name)} x{_number(weight)}" for name, weight in (reward.get("sources") or {}).items())
        base, tuned = reward.get("base") or {}, reward.get("tuned") or {}
        rows.append(["<td>mean reward (the run's)</td>", _num_cell(base.get("mean")), _num_cell(tuned.get("mean"))])
        facts.append(
            f"reward gain (tuned - base): <b>{_number(reward.get('gain'))}</b> over {_number(reward.get('rows'))} "
            f"answers; sources {sources or 'none'}"
        )
    generation = report.get("generation")
    if generation:
        facts.append(
            f"answers generated: <b>{_number(generation.get('items'))}</b> of {_number(generation.get('of'))} prompts "
            f"(greedy, at most {_number(generation.get('max_new_tokens'))} new tokens; "
            f"{_number(generation.get('identical_answers'))} identical)"
        )
    return (
        '<section id="summary"><h2>Summary</h2>'
        + _table(["", "base", "tuned"], rows)
        + "<ul>" + "".join(f"<li>{f}</li>" for f in facts) + "</ul></section>"
    )


def _curves(history: list[dict[str, Any]] | None) -> str:
    head = '<section id="curves"><h2>Training and eval loss</h2>'
    if not history:
        return head + '<p class="muted">No training history: the model was trained before train.py recorded it.</p></section>'
    curves = loss_curves(history)
    if not any(curves.values()):
        return head + '<p class="muted">The training history holds no loss values.</p></section>'
    chart = line_chart(curves, {"train loss": TRAIN_COLOUR, "eval loss": EVAL_COLOUR}, "step", "loss")
    counts = f"{len(curves['train loss'])} training loss points, {len(curves['eval loss'])} evaluations"
    return head + chart + f'<p class="muted">{counts}</p></section>'


def _graders(report: dict[str, Any], generations: list[dict[str, Any]]) -> str:
    head = '<section id="graders"><h2>Graders: base vs tuned</h2>'
    summary = report.get("graders")
    if not summary:
        return head + '<p class="muted">This run names no graders.</p></section>'
    base, tuned = summary.get("base") or {}, summary.get("tuned") or {}
    names = list(dict.fromkeys([*base, *tuned]))
    rows = []
    for name in names:
        b, t = base.get(name) or {}, tuned.get(name) or {}
        change = t["mean"] - b["mean"] if _is_number(b.get("mean")) and _is_number(t.get("mean")) else None
        css = "" if change is None else ("bad" if change < 0 else "good" if change > 0 else "")
        rows.append([
            f"<td>{_e(name)}</td>", _num_cell(b.get("mean")), _num_cell(t.get("mean")), _num_cell(change, css),
            _num_cell(b.get("passed")), _num_cell(t.get("passed")), _num_cell(t.get("graded")),
            _num_cell((b.get("error_count") or 0) + (t.get("error_count") or 0)),
        ])
    table = _table(["grader", "base mean", "tuned mean", "change", "base passed", "tuned passed", "graded", "errors"], rows)
    charts = []
    for name in names:
        groups = {
            side: [row[f"{side}_scores"][name] for row in generations
                   if isinstance((row.get(f"{side}_scores") or {}).get(name), (int, float))]
            for side in ("base", "tuned")
        }
        if any(groups.values()):
            chart = histogram(groups, {"base": BASE_COLOUR, "tuned": TUNED_COLOUR}, f"{name} score")
            charts.append(f'<figure><figcaption><h3>{_e(name)}</h3></figcaption>{chart}</figure>')
    return head + table + f'<div class="charts">{"".join(charts)}</div></section>'


def _benchmarks(report: dict[str, Any]) -> str:
    head = '<section id="benchmarks"><h2>Benchmarks (forgetting)</h2>'
    entries = report.get("benchmarks")
    if not entries:
        return head + '<p class="muted">This run stages no benchmark files.</p></section>'
    rows = [
        [
            f"<td>{_e(e.get('name'))}</td>", _num_cell(e.get("items")), _num_cell(e.get("of")),
            _num_cell(e.get("base_accuracy")), _num_cell(e.get("tuned_accuracy")),
            _num_cell(e.get("drop"), "bad" if (e.get("drop") or 0) > 0.02 else ""),
            _num_cell(e.get("drop_norm")),
        ]
        for e in entries
    ]
    note = '<p class="muted">drop: base − tuned accuracy (above 0: the tuned model lost accuracy; over 0.02 in red).</p>'
    return head + _table(["benchmark", "items", "of", "base acc", "tuned acc", "drop", "drop (norm)"], rows) + note + "</section>"


def _judge(judgements: dict[str, Any] | None) -> str:
    head = '<section id="judge"><h2>LLM judge</h2>'
    if not judgements:
        return head + (
            '<p class="muted">judge: not run yet / not configured (the judge runs after this report is written: its '
            "verdicts go to eval-reports/&lt;run&gt;/judge/, and <code>tuneyard eval RUN</code> prints them).</p></section>"
        )
    pairwise = judgements.get("pairwise") if isinstance(judgements.get("pairwise"), dict) else judgements
    wins, ties, losses = (int(pairwise.get(k) or 0) for k in ("wins", "ties", "losses"))
    total = wins + ties + losses
    rate = pairwise.get("winRate", pairwise.get("win_rate", wins / total if total else None))
    table = _table(
        ["tuned wins", "ties", "tuned loses", "win rate (wins / judged)"],
        [[_num_cell(wins, "good"), _num_cell(ties), _num_cell(losses, "bad"), _num_cell(rate)]],
    )
    items = judgements.get("items") or judgements.get("judgements") or []
    listed = "".join(
        f"<li><b>{_e(i.get('item', i.get('index', '?')))}</b>: {_e(i.get('verdict', ''))} — {_e(i.get('reasoning', ''))}</li>"
        for i in items[:MAX_SAMPLES]
    )
    return head + table + (f"<ul>{listed}</ul>" if listed else "") + "</section>"


def _samples(generations: list[dict[str, Any]]) -> str:
    head = '<section id="samples"><h2>Side-by-side samples</h2>'
    if not generations:
        return head + '<p class="muted">No generations (max_generations 0, or eval rows without prompts).</p></section>'
    ordered, how = ordered_samples(generations)
    shown = ordered[:MAX_SAMPLES]
    cards = []
    for row in shown:
        change = score_change(row)
        scores = []
        for name in _grader_names([row]):
            b, t = (row.get("base_scores") or {}).get(name), (row.get("tuned_scores") or {}).get(name)
            scores.append(f"{_e(name)}: {_number(b)} → {_number(t)}")
        meta = [f"item {_e(row.get('index'))}"]
        if change is not None:
            meta.append(f'score change <b class="{"bad" if change < 0 else "good" if change > 0 else ""}">{_number(change)}</b>')
        meta.append(
            f"tokens {_number(row.get('base_tokens'))} → {_number(row.get('tuned_tokens'))}"
            + ("" if row.get("tuned_stopped", True) else ' <b class="bad">(tuned did not stop)</b>')
        )
        cards.append(
            '<div class="sample">'
            f'<div class="muted">{" · ".join(meta)}{" · " + "; ".join(scores) if scores else ""}</div>'
            f"<h3>Prompt</h3><pre>{_e(prompt_text(row.get('prompt')))}</pre>"
            '<div class="pair">'
            f"<div><h3>Reference</h3><pre>{_e(row.get('reference', ''))}</pre></div>"
            f"<div><h3>Base</h3><pre>{_e(row.get('base', ''))}</pre></div>"
            f"<div><h3>Tuned</h3><pre>{_e(row.get('tuned', ''))}</pre></div>"
            "</div></div>"
        )
    note = f'<p class="muted">{len(shown)} of {len(generations)} items, ordered by {_e(how)}.</p>'
    return head + note + "".join(cards) + "</section>"


def render_report(
    eval_report: dict[str, Any],
    generations: list[dict[str, Any]],
    history: list[dict[str, Any]] | None,
    judgements: dict[str, Any] | None = None,
    title: str = "Tuneyard evaluation",
) -> str:
    """report.html from eval.json (`eval_report`), generations.jsonl's rows, the Trainer's log_history (None when
    the model folder has none) and, when the judge has run, its summary (`judgements`: judge.json, whose `pairwise`
    holds wins, ties, losses and winRate, or those counts at the top; optional `items`, each with item/index, verdict
    and reasoning)."""
    if not isinstance(eval_report, dict) or "base" not in eval_report or "tuned" not in eval_report:
        raise ValueError("render_report needs eval.json's report (a dict with base and tuned figures)")
    parts = [
        _summary(eval_report),
        _curves(history),
        _graders(eval_report, generations),
        _benchmarks(eval_report),
        JUDGE_BEGIN + _judge(judgements) + JUDGE_END,
        _samples(generations),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>"
        f"<h1>{_e(title)}</h1><p class=\"muted\">eval.json schema version {_number(eval_report.get('schema_version'))}</p>"
        + "".join(parts)
        + "</main></body></html>\n"
    )


def write(
    folder: Path, eval_report: dict[str, Any], generations: list[dict[str, Any]], history, seed: int = DEFAULT_AB_SEED
) -> list[str]:
    """report.html and, when there are generations, ab-review.csv and ab-key.csv in `folder`: the files written."""
    (folder / REPORT_FILE).write_text(render_report(eval_report, generations, history), encoding="utf-8")
    written = [REPORT_FILE]
    if generations:
        sheet, key = ab_sheets(generations, seed)
        (folder / AB_SHEET).write_text(sheet, encoding="utf-8")
        (folder / AB_KEY).write_text(key, encoding="utf-8")
        written += [AB_SHEET, AB_KEY]
    return written

/**
 * The judge's section of report.html. The eval job writes report.html (tuneyard_trainer/report.py) before the judge
 * runs, with a placeholder judge section between `<!-- tuneyard:judge -->` and `<!-- /tuneyard:judge -->`; the
 * JudgeAnswers invocation that writes judge.json renders this section from its summary and judgements and puts it
 * between the markers, rewriting report.html in place. Rewriting is idempotent: the markers stay, so a retried
 * invocation replaces its own section.
 *
 * Everything the judge wrote (reasoning, raw answers, verdict labels) and every grader name is HTML-escaped as
 * report.py escapes (Python's `html.escape(quote=True)`): they are untrusted model text. The page's
 * Content-Security-Policy (no scripts) stays as the eval job wrote it.
 */
import type { Judgement } from './judge-answers';

/** The markers around the judge section; report.py's JUDGE_BEGIN / JUDGE_END. */
export const JUDGE_BEGIN = '<!-- tuneyard:judge -->';
export const JUDGE_END = '<!-- /tuneyard:judge -->';
/** Items listed with their judgements (worst for the tuned model first), as report.py's MAX_SAMPLES. */
export const MAX_JUDGED_ITEMS_SHOWN = 50;

/** The parts of judge.json (judge-answers.ts `summarize`) the section shows. */
export interface JudgeSummary {
  readonly modelId: string;
  readonly pairwise: { items: number; wins: number; ties: number; losses: number; errors: number; winRate: number } | null;
  readonly pointwise: Record<string, Record<string, { mean: number | null; passed: number | null; graded: number; error_count: number }>>;
  readonly judgements: number;
  readonly errors: number;
  readonly reportUri: string;
}

/** Python's html.escape(value, quote=True). */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#x27;');
}

/** A number as report.py's `_number` writes it (4 significant digits), "—" for none. */
function num(value: number | null | undefined): string {
  if (value === null || value === undefined) return '—';
  if (Number.isInteger(value)) return String(value);
  return Number.isFinite(value) ? String(Number(value.toPrecision(4))) : escapeHtml(value);
}

function cell(value: number | null | undefined, css = ''): string {
  return `<td class="n ${css}">${num(value)}</td>`;
}

function table(header: string[], rows: string[][]): string {
  return `<table><thead><tr>${header.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.join('')}</tr>`).join('')}</tbody></table>`;
}

type Outcome = 'loss' | 'tie' | 'error' | 'win' | 'none';
const OUTCOME_RANK: Record<Outcome, number> = { loss: 0, tie: 1, error: 2, none: 3, win: 4 };

/** An item's pairwise outcome from its two orders (as judge-answers.ts `combineOrders`). */
function outcome(pair: readonly Judgement[]): Outcome {
  if (pair.length === 0) return 'none';
  if (pair.length !== 2 || pair.some((j) => j.error !== null)) return 'error';
  if (pair.every((j) => j.verdict === 'tuned')) return 'win';
  if (pair.every((j) => j.verdict === 'base')) return 'loss';
  return 'tie';
}

/** tuned − base over the item's numeric pointwise verdicts (0 when none): lower is worse for the tuned model. */
function pointwiseChange(rows: readonly Judgement[]): number {
  let change = 0;
  for (const j of rows) {
    if (j.kind !== 'pointwise' || typeof j.verdict !== 'number') continue;
    change += j.side === 'tuned' ? j.verdict : -j.verdict;
  }
  return change;
}

/** The items of the judgements, worst for the tuned model first: losses, ties, errors, then wins; then by pointwise change, then index. */
export function orderedItems(judgements: readonly Judgement[]): Array<{ index: number; outcome: Outcome; change: number; judgements: Judgement[] }> {
  const byIndex = new Map<number, Judgement[]>();
  for (const j of judgements) byIndex.set(j.index, [...(byIndex.get(j.index) ?? []), j]);
  return [...byIndex.entries()]
    .map(([index, rows]) => ({ index, outcome: outcome(rows.filter((j) => j.kind === 'pairwise')), change: pointwiseChange(rows), judgements: rows }))
    .sort((a, b) => OUTCOME_RANK[a.outcome] - OUTCOME_RANK[b.outcome] || a.change - b.change || a.index - b.index);
}

function judgementLine(j: Judgement): string {
  const what = j.kind === 'pairwise' ? `pairwise (${j.order === 'base-tuned' ? 'A = base, B = tuned' : 'A = tuned, B = base'})` : `${escapeHtml(j.grader)} on the ${j.side} answer`;
  if (j.error !== null) {
    return `<li>${what}: <b class="bad">error</b> ${escapeHtml(j.error)}${j.raw !== null ? `<pre>${escapeHtml(j.raw)}</pre>` : ''}</li>`;
  }
  const css = j.kind === 'pairwise' ? (j.verdict === 'tuned' ? 'good' : j.verdict === 'base' ? 'bad' : '') : '';
  const verdict = typeof j.verdict === 'number' ? num(j.verdict) : escapeHtml(j.verdict);
  return `<li>${what}: <b class="${css}">${j.kind === 'pairwise' && j.verdict !== 'tie' ? 'prefers ' : ''}${verdict}</b><pre>${escapeHtml(j.reasoning ?? '')}</pre></li>`;
}

/** The judge section (between the markers, markers excluded) from judge.json's summary and judgements.jsonl's rows. */
export function renderJudgeSection(summary: JudgeSummary, judgements: readonly Judgement[]): string {
  const parts = [`<section id="judge"><h2>LLM judge</h2>`, `<p class="muted">judge model <b>${escapeHtml(summary.modelId)}</b>; ${num(summary.judgements)} judgements, ${num(summary.errors)} with an error.</p>`];
  const p = summary.pairwise;
  if (p) {
    parts.push(
      table(['tuned wins', 'ties', 'tuned loses', 'errors', 'win rate (wins / judged)'], [[cell(p.wins, 'good'), cell(p.ties), cell(p.losses, 'bad'), cell(p.errors), cell(p.winRate)]]),
      '<p class="muted">Each item judged in both orders: a win when both orders prefer the tuned answer, a loss when both prefer the base answer, a tie otherwise; items with an error are left out of the win rate.</p>',
    );
  }
  const graders = Object.entries(summary.pointwise ?? {});
  if (graders.length) {
    parts.push(
      '<h3>Pointwise graders</h3>',
      table(
        ['grader', 'base mean', 'tuned mean', 'base passed', 'tuned passed', 'graded (base / tuned)', 'errors'],
        graders.map(([name, sides]) => {
          const base = sides.base ?? { mean: null, passed: null, graded: 0, error_count: 0 };
          const tuned = sides.tuned ?? { mean: null, passed: null, graded: 0, error_count: 0 };
          const worse = base.mean !== null && tuned.mean !== null && tuned.mean < base.mean;
          return [`<td>${escapeHtml(name)}</td>`, cell(base.mean), cell(tuned.mean, worse ? 'bad' : ''), cell(base.passed), cell(tuned.passed), `<td class="n">${num(base.graded)} / ${num(tuned.graded)}</td>`, cell(base.error_count + tuned.error_count)];
        }),
      ),
    );
  }
  const items = orderedItems(judgements);
  const shown = items.slice(0, MAX_JUDGED_ITEMS_SHOWN);
  if (shown.length) {
    parts.push(
      '<h3>Judgements</h3>',
      `<p class="muted">${shown.length} of ${items.length} items, worst for the tuned model first (losses, ties, errors, then wins; then by the pointwise score change).</p>`,
      ...shown.map(
        (item) =>
          `<div class="sample judged" data-item="${item.index}"><div class="muted">item ${item.index}` +
          (item.outcome !== 'none' ? ` · pairwise <b class="${item.outcome === 'win' ? 'good' : item.outcome === 'loss' ? 'bad' : ''}">${item.outcome}</b>` : '') +
          `</div><ul>${item.judgements.map(judgementLine).join('')}</ul></div>`,
      ),
    );
  }
  parts.push(`<p class="muted">judge.json and judgements.jsonl: ${escapeHtml(summary.reportUri.replace(/judge\.json$/, ''))}</p></section>`);
  return parts.join('');
}

/**
 * report.html with its judge section replaced, or a reason why it cannot be (no markers: a report written by a
 * trainer from before the markers; or more than one pair).
 */
export function withJudgeSection(page: string, section: string): { page: string } | { problem: string } {
  const begin = page.indexOf(JUDGE_BEGIN);
  const end = page.indexOf(JUDGE_END);
  if (begin < 0 || end < begin) return { problem: `report.html has no ${JUDGE_BEGIN} ... ${JUDGE_END} section (written by an older trainer)` };
  if (page.indexOf(JUDGE_BEGIN, begin + 1) >= 0 || page.indexOf(JUDGE_END, end + 1) >= 0) return { problem: 'report.html has more than one judge section' };
  return { page: page.slice(0, begin + JUDGE_BEGIN.length) + section + page.slice(end) };
}

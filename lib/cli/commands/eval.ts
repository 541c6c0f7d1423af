import { Command } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DATA_PREFIXES } from '../../layout';
import { GATE_REJECTED_ERROR } from '../../run-request';
import { CliError } from '../errors';
import { table } from '../format';
import type { CommandContext } from '../program';

/** What the eval job writes beside eval.json (training-images/trainer/tuneyard_trainer/report.py). */
export const EVAL_FILES = { report: 'report.html', generations: 'generations.jsonl', abSheet: 'ab-review.csv', abKey: 'ab-key.csv' } as const;

/** `eval-reports/<run>/<evaluation job>/output/model/eval.json`: the folder every eval file is in. */
const EVAL_JSON = /\/output\/model\/eval\.json$/;

interface Side {
  readonly eval_loss?: number;
  readonly probe_loss?: number | null;
}
interface GraderResult {
  readonly mean?: number | null;
  readonly passed?: number | null;
}
/** The parts of eval.json (schema version 1) the summary prints. */
interface EvalJson {
  readonly schema_version?: number;
  readonly base?: Side;
  readonly tuned?: Side;
  readonly eval_loss_ratio?: number;
  readonly forgetting_increase?: number | null;
  readonly preference?: { readonly accuracy?: number; readonly pairs?: number } | null;
  /** grpo and rloo: the run's reward of the base and tuned answers (the gate's minRewardGain). */
  readonly reward?: { readonly rows?: number; readonly base?: { readonly mean?: number | null }; readonly tuned?: { readonly mean?: number | null }; readonly gain?: number | null } | null;
  readonly graders?: { readonly base?: Record<string, GraderResult>; readonly tuned?: Record<string, GraderResult> } | null;
  readonly benchmarks?: ReadonlyArray<{ readonly name: string; readonly base_accuracy: number; readonly tuned_accuracy: number; readonly drop: number }> | null;
}
/** judge.json's pairwise summary (constructs/fine-tuning-pipeline/handler/judge-answers.ts). */
interface JudgeSummary {
  readonly pairwise?: { readonly items: number; readonly wins: number; readonly ties: number; readonly losses: number; readonly winRate: number } | null;
}

/** A blind review scored against its key: the tuned answer preferred (win), the base (loss), or neither (tie). */
export interface AbResult {
  readonly items: number;
  readonly wins: number;
  readonly ties: number;
  readonly losses: number;
  /** (wins + ties / 2) / items, with its 95% Wilson score interval. */
  readonly winRate: number;
  readonly interval: readonly [number, number];
  /** Items of the key the reviewer left without a preference. */
  readonly unreviewed: number;
}

/** RFC 4180 CSV (quoted fields, doubled quotes, newlines inside quotes), as Python's csv module writes it. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || row.length) rows.push([...row, field]);
  return rows.filter((r) => r.length > 1 || r[0] !== '');
}

function records(text: string, file: string, needed: readonly string[]): Record<string, string>[] {
  const [header, ...rows] = parseCsv(text);
  const missing = needed.filter((name) => !(header ?? []).includes(name));
  if (missing.length) throw new CliError(`${file} has no column ${missing.map((m) => `"${m}"`).join(', ')}; it should be the ${EVAL_FILES.abSheet} \`tuneyard eval\` downloaded, with the reviewer's preferences filled in`);
  return rows.map((cells) => Object.fromEntries(header.map((name, i) => [name, cells[i] ?? ''])));
}

/** The 95% Wilson score interval of a proportion. */
export function wilson(successes: number, n: number, z = 1.959963984540054): [number, number] {
  if (n === 0) return [0, 1];
  const p = successes / n;
  const centre = (p + (z * z) / (2 * n)) / (1 + (z * z) / n);
  const half = (z / (1 + (z * z) / n)) * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n));
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/** Scores a filled-in A/B sheet (column "preference (A, B or tie)") against its key (item -> which letter is tuned). */
export function scoreAbSheet(sheetText: string, keyText: string, sheetFile: string = EVAL_FILES.abSheet): AbResult {
  const preferenceColumn = 'preference (A, B or tie)';
  const sheet = records(sheetText, sheetFile, ['item', preferenceColumn]);
  const key = new Map(records(keyText, EVAL_FILES.abKey, ['item', 'tuned']).map((row) => [row.item, row.tuned]));
  let wins = 0;
  let ties = 0;
  let losses = 0;
  let unreviewed = 0;
  sheet.forEach((row, at) => {
    const tuned = key.get(row.item);
    if (tuned === undefined) throw new CliError(`${sheetFile} row ${at + 2}: item "${row.item}" is not in the key; score the sheet of the same run`);
    const choice = row[preferenceColumn].trim().toUpperCase();
    if (choice === '') unreviewed++;
    else if (choice === 'TIE' || choice === '=') ties++;
    else if (choice === 'A' || choice === 'B') choice === tuned ? wins++ : losses++;
    else throw new CliError(`${sheetFile} row ${at + 2} (item ${row.item}): preference "${row[preferenceColumn]}" is not A, B or tie`);
  });
  const items = wins + ties + losses;
  if (!items) throw new CliError(`${sheetFile} has no preferences filled in: write A, B or tie in the "${preferenceColumn}" column`);
  const score = wins + ties / 2;
  return { items, wins, ties, losses, winRate: score / items, interval: wilson(score, items), unreviewed };
}

const num = (value: number | null | undefined, digits = 4): string => (typeof value === 'number' && Number.isFinite(value) ? String(Number(value.toPrecision(digits))) : '-');

/** The gate's decision, from the run's execution. */
function gateText(status: string | undefined, error: string | undefined, cause: string | undefined): string {
  if (status === 'SUCCEEDED') return 'passed';
  if (status === 'FAILED' && error === GATE_REJECTED_ERROR) return `rejected: ${cause ?? ''}`.trimEnd();
  if (status === 'RUNNING') return 'not decided yet (the run is running)';
  return `no decision (run ${(status ?? 'unknown').toLowerCase()}${error ? `: ${error}` : ''})`;
}

export function summaryText(runId: string, gate: string, report: EvalJson, judge: JudgeSummary | undefined, reportUri: string): string {
  const lines = [`run ${runId}`, `gate: ${gate}`, ''];
  lines.push(
    table(
      ['', 'BASE', 'TUNED'],
      [
        ['eval loss', num(report.base?.eval_loss), num(report.tuned?.eval_loss)],
        ['probe loss', num(report.base?.probe_loss), num(report.tuned?.probe_loss)],
      ],
    ).trimEnd(),
  );
  lines.push(`eval loss ratio ${num(report.eval_loss_ratio)}, forgetting ${num(report.forgetting_increase)}`);
  if (report.preference) lines.push(`DPO preference accuracy ${num(report.preference.accuracy)} over ${report.preference.pairs ?? '-'} pairs`);
  if (report.reward) lines.push(`reward ${num(report.reward.base?.mean)} -> ${num(report.reward.tuned?.mean)} (gain ${num(report.reward.gain)}) over ${report.reward.rows ?? '-'} answers`);
  const base = report.graders?.base ?? {};
  const tuned = report.graders?.tuned ?? {};
  const names = [...new Set([...Object.keys(base), ...Object.keys(tuned)])];
  lines.push('');
  lines.push(
    names.length
      ? table(
          ['GRADER', 'BASE MEAN', 'TUNED MEAN', 'CHANGE'],
          names.map((n) => {
            const b = base[n]?.mean;
            const t = tuned[n]?.mean;
            return [n, num(b), num(t), typeof b === 'number' && typeof t === 'number' ? num(t - b) : '-'];
          }),
        ).trimEnd()
      : 'graders: none in this run',
  );
  lines.push('');
  lines.push(
    report.benchmarks?.length
      ? table(
          ['BENCHMARK', 'BASE ACC', 'TUNED ACC', 'DROP'],
          report.benchmarks.map((b) => [b.name, num(b.base_accuracy), num(b.tuned_accuracy), num(b.drop)]),
        ).trimEnd()
      : 'benchmarks: none in this run',
  );
  const pair = judge?.pairwise;
  lines.push('');
  lines.push(
    pair
      ? `judge: tuned wins ${pair.wins}, ties ${pair.ties}, loses ${pair.losses} of ${pair.items} (win rate ${num(pair.winRate)})`
      : judge
        ? 'judge: ran without pairwise preferences'
        : 'judge: not run yet / not configured',
  );
  lines.push(`report: ${reportUri}`);
  return lines.join('\n') + '\n';
}

export function registerEvalCommand(program: Command, ctx: CommandContext): void {
  program
    .command('eval')
    .description(
      `A run's evaluation: prints the gate decision, losses, graders, benchmarks and judge, and downloads ${EVAL_FILES.report}, ${EVAL_FILES.generations} ` +
        `and the blind review sheet ${EVAL_FILES.abSheet} (its key ${EVAL_FILES.abKey} only with --with-key). --ab-results scores a filled-in sheet against the key.`,
    )
    .argument('<run>', 'run id (or execution ARN)')
    .option('--out <dir>', 'where the files go (default: ./<run>-eval/)')
    .option('--with-key', `also download ${EVAL_FILES.abKey} (which of A and B is the tuned answer); keep it from the reviewer`, false)
    .option('--ab-results <file>', `a filled-in ${EVAL_FILES.abSheet}: prints the tuned model's win rate with a 95% interval`)
    .action(async (run: string, opts: { out?: string; withKey: boolean; abResults?: string }, command: Command) => {
      ctx.use(command);
      const client = ctx.runClient();
      const { execution, runId } = await client.findRun(run); // an unknown run fails here
      const { dataBucketName } = await client.plane();
      const runPrefix = `${DATA_PREFIXES.evalReports}${runId}/`;
      const reports = (await client.listObjects(runPrefix)).filter((o) => EVAL_JSON.test(o.Key ?? ''));
      const newest = reports.sort((a, b) => (a.LastModified?.getTime() ?? 0) - (b.LastModified?.getTime() ?? 0)).pop();
      if (!newest) {
        throw new CliError(
          `no evaluation for run ${runId} yet (nothing at s3://${dataBucketName}/${runPrefix}*/output/model/eval.json): the Evaluate stage writes it after training; follow the run with \`tuneyard watch ${runId}\``,
        );
      }
      const folder = newest.Key!.replace(/eval\.json$/, '');
      if (opts.abResults) {
        const key = await client.readObject(`${folder}${EVAL_FILES.abKey}`);
        if (key === undefined) throw new CliError(`run ${runId} has no ${EVAL_FILES.abKey} (s3://${dataBucketName}/${folder}): its evaluation generated no answers`);
        let sheet: string;
        try {
          sheet = fs.readFileSync(opts.abResults, 'utf8');
        } catch (e) {
          throw new CliError(`cannot read --ab-results ${opts.abResults}: ${(e as Error).message}`);
        }
        const result = scoreAbSheet(sheet, key, opts.abResults);
        const [low, high] = result.interval;
        ctx.print(
          { runId, ...result },
          `blind review of run ${runId}: tuned preferred ${result.wins}, tie ${result.ties}, base preferred ${result.losses} of ${result.items}` +
            `${result.unreviewed ? ` (${result.unreviewed} left blank)` : ''}\n` +
            `tuned win rate ${num(result.winRate, 3)} (ties count half), 95% interval ${num(low, 3)}-${num(high, 3)}\n`,
        );
        return;
      }
      const evalText = (await client.readObject(newest.Key!))!;
      let report: EvalJson;
      try {
        report = JSON.parse(evalText) as EvalJson;
      } catch {
        throw new CliError(`s3://${dataBucketName}/${newest.Key} is not JSON; the evaluation job wrote it incompletely: rerun the run`);
      }
      const judgeText = await client.readObject(`${runPrefix}judge/judge.json`);
      const judge = judgeText === undefined ? undefined : (JSON.parse(judgeText) as JudgeSummary);
      const out = path.resolve(opts.out ?? `${runId}-eval`);
      fs.mkdirSync(out, { recursive: true });
      const wanted = [EVAL_FILES.report, EVAL_FILES.generations, EVAL_FILES.abSheet, ...(opts.withKey ? [EVAL_FILES.abKey] : [])];
      const downloaded: string[] = [];
      for (const name of wanted) {
        const text = await client.readObject(`${folder}${name}`);
        if (text === undefined) continue; // no generations: no sheet; an evaluation from before the report
        fs.writeFileSync(path.join(out, name), text);
        downloaded.push(name);
      }
      const reportUri = `s3://${dataBucketName}/${folder}${EVAL_FILES.report}`;
      const gate = gateText(execution.status, execution.error, execution.cause);
      const text =
        summaryText(runId, gate, report, judge, reportUri) +
        (downloaded.length ? `downloaded to ${out}: ${downloaded.join(', ')}\n` : `nothing to download in s3://${dataBucketName}/${folder}\n`);
      ctx.print({ runId, gate, evalReport: `s3://${dataBucketName}/${newest.Key}`, reportUri, eval: report, judge: judge ?? null, out, downloaded }, text);
    });
}

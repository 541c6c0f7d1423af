import { Command, InvalidArgumentError, Option } from 'commander';
import { DatasetCheck, DatasetIssue, DatasetReport, formatError, formatErrorGroup } from '../../datasets';
import { datasetNameProblem } from '../../layout';
import { positiveInt } from '../args';
import { datasetVersionHash } from '../dataset-hash';
import { CheckedDataset, CheckedFile, checkDataset, displayName } from '../dataset-files';
import { DatasetManifest, DatasetVersionInfo, listDatasetVersions, readVersionJson, VALIDATION_REPORT } from '../dataset-versions';
import { CliError } from '../errors';
import { count, table, time } from '../format';
import { progressBar } from '../io';
import type { CommandContext } from '../program';
import { METHODS } from '../../methods';
import { RECIPE_FIELDS } from '../../recipe';

/** Error groups (errors with the same code and message) printed per file before "... and N more". */
export const MAX_PRINTED_ERRORS = 50;

const INPUTS =
  'JSON Lines, gzip-compressed JSON Lines (.jsonl.gz), a JSON array (read element by element), or - for standard input';

export function registerDatasetCommands(program: Command, ctx: CommandContext): void {
  program
    .command('validate')
    .description('Check a dataset locally with the same rules as the pipeline (nothing is uploaded).')
    .argument('<file>', `training data: ${INPUTS}`)
    .addOption(new Option('--method <method>', 'the training method the data is for').choices(METHODS))
    .option('--eval <file>', 'held-out eval data (also checked against the training file: same format, no overlapping rows)')
    .option('--max-length <tokens>', `count rows longer than this many (estimated) tokens (with --method, default: the recipe's, ${RECIPE_FIELDS.maxLength.default})`, positiveInt)
    .option('--strict', 'fail on warnings too (eval rows that are also in the training file)', false)
    .action(async (file: string, opts: { method?: (typeof METHODS)[number]; eval?: string; maxLength?: number; strict: boolean }, command: Command) => {
      ctx.use(command);
      // checked for a run: the rows a run with the recipe's default maxLength would drop are counted too
      const maxLength = opts.maxLength ?? (opts.method ? RECIPE_FIELDS.maxLength.default : undefined);
      const checked = await checkDataset(ctx.io, file, opts.eval, { method: opts.method, maxLength, overlap: 'warning', sha256: ctx.global.json });
      const warnings = checked.check.issues.filter((i) => i.severity === 'warning').length;
      const ok = checked.check.ok && !(opts.strict && warnings > 0);
      if (ctx.global.json) {
        ctx.print(checkJson(checked, ok), '');
      } else {
        let text = reportText(checked);
        if (opts.strict && warnings > 0 && checked.check.ok) text += `failed: ${count(warnings)} warning${warnings === 1 ? '' : 's'} with --strict\n`;
        ctx.io.out(text);
      }
      ctx.exitCode = ok ? 0 : 1;
    });

  program
    .command('upload')
    .description(
      'Validate a dataset and upload it as an immutable, content-addressed version: datasets/<name>/<sha256>/. ' +
        'Compressed and JSON-array input is stored as the JSON Lines the pipeline reads.',
    )
    .argument('<file>', `training data: ${INPUTS}`)
    .requiredOption('--name <name>', 'dataset name (lower-case letters, digits, ".", "_", "-")', datasetName)
    .option('--eval <file>', 'held-out eval data')
    .option('--allow-overlap', 'upload even when eval rows are also in the training file (recorded in the manifest; the pipeline then accepts it)', false)
    .addOption(new Option('--method <method>', 'check the files for this method (grpo and rloo: a training file of prompt-only rows, which the other methods refuse)').choices(METHODS))
    .action(async (file: string, opts: { name: string; eval?: string; allowOverlap: boolean; method?: (typeof METHODS)[number] }, command: Command) => {
      ctx.use(command);
      const checked = await checkDataset(ctx.io, file, opts.eval, { method: opts.method, overlap: opts.allowOverlap ? 'allowed' : 'error', spool: true, sha256: true });
      try {
        await upload(ctx, file, opts, checked);
      } finally {
        checked.cleanup();
      }
    });

  program
    .command('datasets')
    .description('List the dataset versions in the plane\'s data bucket, newest first; with NAME[@VERSION], show one version\'s validation report.')
    .argument('[dataset]', 'a dataset name (its newest version) or name@sha256')
    .action(async (dataset: string | undefined, _opts: unknown, command: Command) => {
      ctx.use(command);
      const client = ctx.runClient();
      if (dataset === undefined) {
        const versions = await listDatasetVersions(client);
        ctx.print(
          versions.map(versionJson),
          versions.length
            ? table(
                ['NAME', 'VERSION', 'FORMAT', 'ROWS', 'EVAL ROWS', 'DUPLICATES', 'OVERLAP', 'UPLOADED'],
                versions.map((v) => {
                  const j = versionJson(v);
                  return [v.name, v.sha256.slice(0, 12), j.format ?? '-', num(j.rows), num(j.evalRows), num(j.duplicates), overlapText(v.manifest), time(v.uploaded)];
                }),
              )
            : 'no datasets uploaded yet: upload one with `tuneyard upload FILE --name NAME`\n',
        );
        return;
      }
      const [name, sha] = dataset.split('@');
      const versions = await listDatasetVersions(client, name);
      const version = sha === undefined ? versions[0] : versions.find((v) => v.sha256 === sha || (sha.length >= 6 && v.sha256.startsWith(sha)));
      if (!version) {
        throw new CliError(
          versions.length === 0
            ? `dataset ${name} not found: list datasets with \`tuneyard datasets\``
            : `dataset ${name} has no version ${sha}: its versions are ${versions.map((v) => v.sha256.slice(0, 12)).join(', ')}`,
        );
      }
      const stored = await readVersionJson<{ createdAt?: string; train: DatasetReport; eval?: DatasetReport }>(client, version, VALIDATION_REPORT);
      ctx.print({ ...versionJson(version), manifest: version.manifest, validationReport: stored ?? null }, versionText(version, stored));
    });
}

async function upload(ctx: CommandContext, file: string, opts: { name: string; eval?: string; allowOverlap: boolean }, checked: CheckedDataset): Promise<void> {
  const { check } = checked;
  if (!check.ok) {
    if (!ctx.global.json) {
      ctx.io.out(reportText(checked));
      throw new CliError(`not uploaded: fix the errors above (check with \`tuneyard validate ${file}${opts.eval ? ` --eval ${opts.eval}` : ''}\`)`);
    }
    ctx.print(checkJson(checked, false), '');
    throw new CliError(`not uploaded: ${count(check.errorCount)} error${check.errorCount === 1 ? '' : 's'}, listed in the JSON on stdout (train.report.errorGroups, eval.report.errorGroups, issues)`);
  }
  const sha256 = datasetVersionHash(checked.train.sha256!, checked.eval?.sha256);
  const version = `${opts.name}@${sha256}`;
  const client = ctx.runClient();
  const total = checked.train.bytes + (checked.eval?.bytes ?? 0);
  const progress = progressBar(ctx.io, `uploading ${opts.name}`, total);
  const source = (f: CheckedFile) => {
    if (!f.uploadPath) throw new Error(`no JSON Lines to upload for ${displayName(f.path)}`);
    return { path: f.uploadPath, bytes: f.bytes };
  };
  const { created } = await client.uploadDataset({
    name: opts.name,
    sha256,
    train: source(checked.train),
    eval: checked.eval && source(checked.eval),
    manifest: manifest(opts.name, sha256, checked, opts.allowOverlap),
    onProgress: (sent) => progress.update(sent),
  });
  progress.finish();
  const { dataBucketName } = await client.plane();
  const uri = `s3://${dataBucketName}/datasets/${opts.name}/${sha256}/`;
  const overlap = check.overlap && check.overlap.count > 0 ? `  ${count(check.overlap.count)} eval rows also in the training file: kept (--allow-overlap), recorded in the manifest\n` : '';
  ctx.print(
    { dataset: version, name: opts.name, sha256, uri, created, ...(check.overlap ? { overlap: check.overlap.count, allowOverlap: opts.allowOverlap } : {}) },
    created
      ? `uploaded ${version}\n  ${uri}\n  ${count(checked.train.report.rows)} train rows${checked.eval ? `, ${count(checked.eval.report.rows)} eval rows` : ''} (${checked.train.report.format})\n${overlap}`
      : `${version} already exists: nothing uploaded\n  ${uri}\n`,
  );
}

/** `--json` of validate and of a refused upload. */
function checkJson(checked: CheckedDataset, ok: boolean) {
  const { check } = checked;
  return {
    ok,
    errorCount: check.errorCount,
    train: fileJson(checked.train),
    eval: checked.eval && fileJson(checked.eval),
    issues: check.issues,
    ...(check.overlap ? { overlap: check.overlap } : {}),
  };
}

/**
 * The text report of `validate`: each file's errors, grouped (the same code and message once, with how
 * many and the first lines), the findings across the files, then a summary per file.
 */
export function reportText(checked: CheckedDataset): string {
  let text = '';
  const issues = (file: 'train' | 'eval', path: string) => checked.check.issues.filter((i) => i.file === file).map((i) => issueText(path, i)).join('');
  for (const [which, file] of [['train', checked.train], ['eval', checked.eval]] as const) {
    if (!file) continue;
    const { report } = file;
    const path = displayName(file.path);
    const groups = report.errorGroups.slice(0, MAX_PRINTED_ERRORS);
    for (const g of groups) text += formatErrorGroup(path, g) + '\n';
    const printed = groups.reduce((n, g) => n + g.count, 0);
    if (report.errorCount > printed) text += `... and ${count(report.errorCount - printed)} more\n`;
    text += issues(which, path);
    text += summary(file, report, which === 'eval' ? checked.check : undefined);
  }
  return text;
}

function issueText(path: string, issue: DatasetIssue): string {
  const line = formatError(path, issue);
  return issue.severity === 'warning' ? `warning: ${line}\n` : `${line}\n`;
}

function summary(file: CheckedFile, report: DatasetReport, check?: DatasetCheck): string {
  const errors = report.errorCount + (check?.issues.filter((i) => i.file === 'eval' && i.severity === 'error').length ?? 0);
  const input = file.input.gzip || file.input.kind !== 'jsonl' || file.path === '-';
  const lines = [
    `${displayName(file.path)}: ${errors === 0 ? 'ok' : `${count(errors)} error${errors === 1 ? '' : 's'}`}`,
    ...(input
      ? [`  input        ${[file.input.gzip ? 'gzip-compressed' : '', file.input.kind === 'json-array' ? 'JSON array' : 'JSON Lines'].filter(Boolean).join(' ')}${file.path === '-' ? ' from stdin' : ''}, read as ${count(file.bytes)} bytes of JSON Lines`]
      : []),
    `  format       ${report.format ?? 'unknown'}${report.method ? ` (checked for ${report.method})` : ''}`,
    ...(foreignDialect(report.dialect, report.format) ? [`  dialect      ${report.dialect} (read as ${report.format})`] : []),
    `  examples     ${count(report.rows)} (${count(report.validRows)} valid)`,
    `  tokens       ~${count(report.tokens.total)} estimated (${report.tokens.estimator}; per example p50 ${count(report.tokens.p50)}, p95 ${count(report.tokens.p95)}, max ${count(report.tokens.max)})`,
    `  duplicates   ${count(report.duplicates.count)}${report.duplicates.examples.length ? ` (e.g. line ${report.duplicates.examples[0].line} repeats line ${report.duplicates.examples[0].firstLine})` : ''}`,
  ];
  if (report.tokens.maxLength !== undefined) {
    const { count: over, lines: at } = report.tokens.overLimit;
    lines.push(
      `  too long     ${count(over)} over ${count(report.tokens.maxLength)} tokens${at.length ? ` (e.g. line ${at[0]})` : ''}: ` +
        `dropped in training (recipe overlongRows "drop", the default) or cut to maxLength ("truncate")`,
    );
  }
  if (check?.overlap) {
    const o = check.overlap;
    const verdict = o.count === 0 ? '' : o.policy === 'allowed' ? ' (allowed: --allow-overlap)' : o.policy === 'error' ? ' (error)' : ' (warning; upload refuses it without --allow-overlap)';
    lines.push(`  in train     ${count(o.count)}${o.examples.length ? ` (e.g. line ${o.examples[0].line} is train line ${o.examples[0].trainLine})` : ''}${verdict}`);
  }
  return lines.join('\n') + '\n';
}

/** A dialect other than the format's own JSON (ShareGPT, OpenAI preference rows). */
function foreignDialect(dialect: string | null | undefined, format: string | null | undefined): boolean {
  return Boolean(dialect && dialect !== format && dialect !== 'messages');
}

function fileJson(file: CheckedFile) {
  return { file: file.path, bytes: file.bytes, sha256: file.sha256, input: file.input, report: file.report };
}

/** manifest.json of a dataset version: what is in it, what the checks found, and how its hash was made. */
function manifest(name: string, sha256: string, checked: CheckedDataset, allowOverlap: boolean) {
  const entry = (key: string, file: CheckedFile) => ({
    key,
    sha256: file.sha256!,
    bytes: file.bytes,
    format: file.report.format,
    ...(file.report.dialect ? { dialect: file.report.dialect } : {}),
    rows: file.report.rows,
    tokens: file.report.tokens.total,
    duplicates: file.report.duplicates.count,
    // what the user gave: the stored key always holds JSON Lines
    source: { file: displayName(file.path), gzip: file.input.gzip, kind: file.input.kind, bytes: file.input.bytes },
  });
  const { overlap } = checked.check;
  return {
    name,
    sha256,
    hash: checked.eval ? 'sha256(train.sha256 + eval.sha256)' : 'sha256(train.jsonl)',
    format: checked.train.report.format,
    ...(checked.train.report.dialect ? { dialect: checked.train.report.dialect } : {}),
    files: {
      train: entry('train.jsonl', checked.train),
      ...(checked.eval ? { eval: entry('eval.jsonl', checked.eval) } : {}),
    },
    // eval rows whose normalised content is in train.jsonl; the pipeline refuses them unless allowOverlap
    ...(overlap ? { overlap: { count: overlap.count, examples: overlap.examples } } : {}),
    allowOverlap,
    createdBy: 'tuneyard upload',
  };
}

/** What `tuneyard datasets` shows of a version. */
function versionJson(v: DatasetVersionInfo) {
  const files = v.manifest.files ?? {};
  return {
    dataset: `${v.name}@${v.sha256}`,
    name: v.name,
    sha256: v.sha256,
    format: (v.manifest.format as string | null | undefined) ?? files.train?.format ?? null,
    ...(v.manifest.dialect ? { dialect: v.manifest.dialect } : {}),
    rows: files.train?.rows,
    evalRows: files.eval?.rows,
    duplicates: files.train?.duplicates,
    overlap: v.manifest.overlap?.count,
    allowOverlap: v.manifest.allowOverlap,
    uploaded: v.uploaded,
  };
}

function num(n: number | undefined): string {
  return n === undefined ? '-' : count(n);
}

function overlapText(m: DatasetManifest): string {
  if (m.overlap === undefined) return m.files?.eval ? 'not checked' : '-';
  return m.overlap.count === 0 ? '0' : `${count(m.overlap.count)}${m.allowOverlap ? ' (allowed)' : ''}`;
}

function versionText(v: DatasetVersionInfo, stored: { createdAt?: string; train: DatasetReport; eval?: DatasetReport } | undefined): string {
  const j = versionJson(v);
  const lines = [
    `dataset      ${j.dataset}`,
    `uploaded     ${time(v.uploaded)}`,
    `format       ${j.format ?? 'unknown'}${foreignDialect(j.dialect, j.format) ? ` (${j.dialect} rows)` : ''}`,
    `rows         ${num(j.rows)} train${j.evalRows !== undefined ? `, ${num(j.evalRows)} eval` : ''}`,
    `duplicates   ${num(j.duplicates)}`,
    `overlap      ${overlapText(v.manifest)}`,
  ];
  if (!stored) {
    lines.push('validated    not yet by the pipeline (its ValidateDataset step writes validation-report.json on the first run)');
    return lines.join('\n') + '\n';
  }
  lines.push(`validated    ${stored.createdAt ?? '-'} by the pipeline (${VALIDATION_REPORT})`);
  let text = lines.join('\n') + '\n';
  for (const [file, report] of [['train.jsonl', stored.train], ['eval.jsonl', stored.eval]] as const) {
    if (!report) continue;
    text += `${file}: ${report.errorCount === 0 ? 'ok' : `${count(report.errorCount)} error${report.errorCount === 1 ? '' : 's'}`}, ${count(report.rows)} rows (${count(report.validRows)} valid), ~${count(report.tokens.total)} tokens (p50 ${count(report.tokens.p50)}, p95 ${count(report.tokens.p95)}, max ${count(report.tokens.max)})\n`;
    for (const g of (report.errorGroups ?? report.errors.map((e) => ({ ...e, count: 1, lines: [e.line] }))).slice(0, MAX_PRINTED_ERRORS)) {
      text += formatErrorGroup(file, g) + '\n';
    }
    if (report.contamination) text += `  in train   ${count(report.contamination.count)}\n`;
  }
  return text;
}

function datasetName(value: string): string {
  const problem = datasetNameProblem(value);
  if (problem) throw new InvalidArgumentError(problem);
  return value;
}

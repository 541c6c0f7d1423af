import { Command, InvalidArgumentError, Option } from 'commander';
import { DatasetReport, formatError } from '../../datasets';
import { datasetNameProblem } from '../../layout';
import { positiveInt } from '../args';
import { datasetVersionHash } from '../dataset-hash';
import { CheckedDataset, CheckedFile, checkDataset } from '../dataset-files';
import { CliError } from '../errors';
import { count } from '../format';
import { progressBar } from '../io';
import type { CommandContext } from '../program';
import { METHODS } from '../../methods';
import { RECIPE_FIELDS } from '../../recipe';

/** Errors printed per file before "... and N more". */
export const MAX_PRINTED_ERRORS = 50;

export function registerDatasetCommands(program: Command, ctx: CommandContext): void {
  program
    .command('validate')
    .description('Check a JSONL dataset locally with the same rules as the pipeline (nothing is uploaded).')
    .argument('<file>', 'training data, JSONL')
    .addOption(new Option('--method <method>', 'the training method the data is for').choices(METHODS))
    .option('--eval <file>', 'held-out eval data, JSONL (also checked for rows copied from the training file)')
    .option('--max-length <tokens>', `count rows longer than this many (estimated) tokens (with --method, default: the recipe's, ${RECIPE_FIELDS.maxLength.default})`, positiveInt)
    .action(async (file: string, opts: { method?: (typeof METHODS)[number]; eval?: string; maxLength?: number }, command: Command) => {
      ctx.use(command);
      // checked for a run: the rows a run with the recipe's default maxLength would drop are counted too
      const maxLength = opts.maxLength ?? (opts.method ? RECIPE_FIELDS.maxLength.default : undefined);
      const checked = await checkDataset(ctx.io, file, opts.eval, { method: opts.method, maxLength });
      const ok = errorCount(checked) === 0;
      if (ctx.global.json) {
        ctx.print({ ok, train: fileJson(checked.train), eval: checked.eval && fileJson(checked.eval) }, '');
      } else {
        ctx.io.out(reportText(checked));
      }
      ctx.exitCode = ok ? 0 : 1;
    });

  program
    .command('upload')
    .description('Validate a dataset and upload it as an immutable, content-addressed version: datasets/<name>/<sha256>/.')
    .argument('<file>', 'training data, JSONL')
    .requiredOption('--name <name>', 'dataset name (lower-case letters, digits, ".", "_", "-")', datasetName)
    .option('--eval <file>', 'held-out eval data, JSONL')
    .action(async (file: string, opts: { name: string; eval?: string }, command: Command) => {
      ctx.use(command);
      const checked = await checkDataset(ctx.io, file, opts.eval, {});
      if (errorCount(checked) > 0) {
        if (!ctx.global.json) ctx.io.out(reportText(checked));
        else ctx.print({ ok: false, train: fileJson(checked.train), eval: checked.eval && fileJson(checked.eval) }, '');
        throw new CliError(`not uploaded: fix the errors above (check with \`tuneyard validate ${file}\`)`);
      }
      const sha256 = datasetVersionHash(checked.train.sha256, checked.eval?.sha256);
      const version = `${opts.name}@${sha256}`;
      const client = ctx.runClient();
      const total = checked.train.bytes + (checked.eval?.bytes ?? 0);
      const progress = progressBar(ctx.io, `uploading ${opts.name}`, total);
      const { created } = await client.uploadDataset({
        name: opts.name,
        sha256,
        train: { path: checked.train.path, bytes: checked.train.bytes },
        eval: checked.eval && { path: checked.eval.path, bytes: checked.eval.bytes },
        manifest: manifest(opts.name, sha256, checked),
        onProgress: (sent) => progress.update(sent),
      });
      progress.finish();
      const { dataBucketName } = await client.plane();
      const uri = `s3://${dataBucketName}/datasets/${opts.name}/${sha256}/`;
      ctx.print(
        { dataset: version, name: opts.name, sha256, uri, created },
        created
          ? `uploaded ${version}\n  ${uri}\n  ${count(checked.train.report.rows)} train rows${checked.eval ? `, ${count(checked.eval.report.rows)} eval rows` : ''} (${checked.train.report.format})\n`
          : `${version} already exists: nothing uploaded\n  ${uri}\n`,
      );
    });
}

function errorCount(checked: CheckedDataset): number {
  return checked.train.report.errorCount + (checked.eval?.report.errorCount ?? 0);
}

/** The text report of `validate`: each error as FILE:LINE: message, then a summary per file. */
export function reportText(checked: CheckedDataset): string {
  let text = '';
  for (const file of [checked.train, checked.eval]) {
    if (!file) continue;
    const { report } = file;
    const shown = report.errors.slice(0, MAX_PRINTED_ERRORS);
    for (const e of shown) text += formatError(file.path, e) + '\n';
    if (report.errorCount > shown.length) text += `... and ${count(report.errorCount - shown.length)} more\n`;
    text += summary(file.path, report);
  }
  return text;
}

function summary(path: string, report: DatasetReport): string {
  const lines = [
    `${path}: ${report.errorCount === 0 ? 'ok' : `${count(report.errorCount)} error${report.errorCount === 1 ? '' : 's'}`}`,
    `  format       ${report.format ?? 'unknown'}${report.method ? ` (checked for ${report.method})` : ''}`,
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
  if (report.contamination) {
    const c = report.contamination;
    lines.push(`  in train     ${count(c.count)}${c.examples.length ? ` (e.g. line ${c.examples[0].line} is train line ${c.examples[0].trainLine})` : ''}`);
  }
  return lines.join('\n') + '\n';
}

function fileJson(file: CheckedFile) {
  return { file: file.path, bytes: file.bytes, sha256: file.sha256, report: file.report };
}

/** manifest.json of a dataset version: what is in it and how its hash was made. */
function manifest(name: string, sha256: string, checked: CheckedDataset) {
  const entry = (key: string, file: CheckedFile) => ({
    key,
    sha256: file.sha256,
    bytes: file.bytes,
    format: file.report.format,
    rows: file.report.rows,
    tokens: file.report.tokens.total,
    duplicates: file.report.duplicates.count,
  });
  return {
    name,
    sha256,
    hash: checked.eval ? 'sha256(train.sha256 + eval.sha256)' : 'sha256(train.jsonl)',
    format: checked.train.report.format,
    files: {
      train: entry('train.jsonl', checked.train),
      ...(checked.eval ? { eval: entry('eval.jsonl', checked.eval) } : {}),
    },
    createdBy: 'tuneyard upload',
  };
}

function datasetName(value: string): string {
  const problem = datasetNameProblem(value);
  if (problem) throw new InvalidArgumentError(problem);
  return value;
}

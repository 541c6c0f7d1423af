import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { checkMultipleChoice, MULTIPLE_CHOICE_FORMAT, MultipleChoiceReport } from '../../datasets/multiple-choice';
import { datasetNameProblem } from '../../layout';
import { datasetVersionHash } from '../dataset-hash';
import { CliError } from '../errors';
import { count } from '../format';
import type { CommandContext } from '../program';

/** Errors printed before "... and N more". */
const MAX_PRINTED_ERRORS = 50;

/**
 * `tuneyard stage-benchmark FILE --name NAME`: a multiple-choice benchmark file, checked with the evaluation job's
 * rules (lib/datasets/multiple-choice.ts), stored as a dataset version (`datasets/<name>/<sha256>/train.jsonl`)
 * whose manifest says `format: multiple-choice`: a run names it in `--benchmark`, never as its training data.
 */
export function registerBenchmarkCommand(program: Command, ctx: CommandContext): void {
  program
    .command('stage-benchmark')
    .description(
      'Check a multiple-choice benchmark file (JSON Lines: {"question" or "context": str, "choices": [str, ...], "answer": index} per line) ' +
        'and store it as an immutable dataset version of format multiple-choice: datasets/<name>/<sha256>/. ' +
        'Runs score it for forgetting with `tuneyard train --benchmark NAME`; it is not training data.',
    )
    .argument('<file>', 'the benchmark items, JSON Lines (UTF-8)')
    .requiredOption('--name <name>', 'benchmark name (lower-case letters, digits, ".", "_", "-"); eval.json reports the benchmark by it', benchmarkName)
    .action(async (file: string, opts: { name: string }, command: Command) => {
      ctx.use(command);
      let bytes: Buffer;
      try {
        bytes = fs.readFileSync(file);
      } catch (e) {
        throw new CliError(`${file}: cannot read the benchmark (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
      const report = checkMultipleChoice(bytes, path.basename(file));
      if (report.errors.length) {
        if (ctx.global.json) ctx.print({ ok: false, items: report.items, errors: report.errors }, '');
        else ctx.io.out(errorsText(report));
        throw new CliError(`not staged: ${count(report.errors.length)} error${report.errors.length === 1 ? '' : 's'} in ${file}; fix them (the format: README "Evaluation: answers, graders and benchmarks")`);
      }
      const fileSha = createHash('sha256').update(bytes).digest('hex');
      const sha256 = datasetVersionHash(fileSha);
      const client = ctx.runClient();
      const { created } = await client.uploadDataset({
        name: opts.name,
        sha256,
        train: { path: file, bytes: bytes.length },
        manifest: manifest(opts.name, sha256, file, bytes.length, report),
      });
      const { dataBucketName } = await client.plane();
      const version = `${opts.name}@${sha256}`;
      const uri = `s3://${dataBucketName}/datasets/${opts.name}/${sha256}/`;
      ctx.print(
        { dataset: version, name: opts.name, sha256, uri, created, format: MULTIPLE_CHOICE_FORMAT, items: report.items },
        (created ? `staged benchmark ${version}\n` : `${version} already exists: nothing staged\n`) +
          `  ${uri}\n  ${count(report.items)} items (${count(report.questions)} questions, ${count(report.contexts)} contexts; ${report.minChoices}-${report.maxChoices} choices)\n` +
          `  use it: tuneyard train ... --benchmark ${opts.name}\n`,
      );
    });
}

/** manifest.json of a staged benchmark: the dataset manifest's fields (`tuneyard datasets` lists it), format multiple-choice. */
function manifest(name: string, sha256: string, file: string, bytes: number, report: MultipleChoiceReport) {
  return {
    name,
    sha256,
    hash: 'sha256(train.jsonl)',
    format: MULTIPLE_CHOICE_FORMAT,
    files: {
      train: { key: 'train.jsonl', sha256, bytes, format: MULTIPLE_CHOICE_FORMAT, rows: report.items, source: { file: path.basename(file), gzip: false, kind: 'jsonl', bytes } },
    },
    benchmark: { items: report.items, questions: report.questions, contexts: report.contexts, minChoices: report.minChoices, maxChoices: report.maxChoices },
    createdBy: 'tuneyard stage-benchmark',
  };
}

function errorsText(report: MultipleChoiceReport): string {
  const printed = report.errors.slice(0, MAX_PRINTED_ERRORS).map((e) => `${e.message} (${e.code})\n`);
  const more = report.errors.length > MAX_PRINTED_ERRORS ? `... and ${count(report.errors.length - MAX_PRINTED_ERRORS)} more\n` : '';
  return printed.join('') + more;
}

function benchmarkName(value: string): string {
  const problem = datasetNameProblem(value);
  if (problem) throw new InvalidArgumentError(problem);
  return value;
}

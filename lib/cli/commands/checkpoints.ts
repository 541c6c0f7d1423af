import type { _Object } from '@aws-sdk/client-s3';
import { Command } from 'commander';
import { DATA_PREFIXES } from '../../layout';
import { table, time } from '../format';
import type { CommandContext } from '../program';

/**
 * The manifest the trainer writes last into each checkpoint folder (training-images/trainer,
 * `CHECKPOINT_MANIFEST`): the files every host wrote, with their sizes. A checkpoint is complete,
 * and resumable, when every file it lists is there with that size.
 */
export const CHECKPOINT_MANIFEST = 'tuneyard-checkpoint.json';

/** One checkpoint of a run in S3: `checkpoints/<run id>/checkpoint-<step>/`. */
export interface CheckpointSummary {
  readonly step: number;
  readonly s3Uri: string;
  readonly files: number;
  readonly bytes: number;
  /** The newest object's time: when the checkpoint was last written to. */
  readonly lastModified?: Date;
  /** Every file the checkpoint's manifest lists is there with its size (the trainer resumes only complete ones). */
  readonly complete: boolean;
  /** Why it is not complete. */
  readonly missing?: string;
}

/** The checkpoints among a run's checkpoint objects (keys relative to the run's prefix), by step; `manifests` holds each folder's manifest text. */
export function checkpointsOf(
  objects: readonly _Object[],
  prefix: string,
  bucket: string,
  manifests: ReadonlyMap<number, string | undefined>,
): CheckpointSummary[] {
  const folders = new Map<number, _Object[]>();
  for (const object of objects) {
    const rest = (object.Key ?? '').slice(prefix.length);
    const match = /^checkpoint-(\d+)\//.exec(rest);
    if (!match) continue;
    const step = Number(match[1]);
    folders.set(step, [...(folders.get(step) ?? []), object]);
  }
  return [...folders.entries()]
    .sort(([a], [b]) => a - b)
    .map(([step, files]) => {
      const folder = `${prefix}checkpoint-${step}/`;
      const sizes = new Map(files.map((f) => [(f.Key ?? '').slice(folder.length), f.Size ?? 0]));
      const newest = files.reduce<Date | undefined>((t, f) => (f.LastModified && (!t || f.LastModified > t) ? f.LastModified : t), undefined);
      const missing = missingFiles(manifests.get(step), sizes);
      return {
        step,
        s3Uri: `s3://${bucket}/${folder}`,
        files: files.length,
        bytes: files.reduce((sum, f) => sum + (f.Size ?? 0), 0),
        lastModified: newest,
        complete: missing === undefined,
        ...(missing === undefined ? {} : { missing }),
      };
    });
}

/** Why a checkpoint folder is not complete, or undefined when its manifest's files are all there with their sizes. */
function missingFiles(manifestText: string | undefined, sizes: ReadonlyMap<string, number>): string | undefined {
  if (manifestText === undefined) return `no ${CHECKPOINT_MANIFEST} yet (still being written, or cut short)`;
  let listed: Record<string, number>;
  try {
    listed = (JSON.parse(manifestText) as { files?: Record<string, number> }).files ?? {};
  } catch {
    return `${CHECKPOINT_MANIFEST} is not valid JSON`;
  }
  const absent = Object.entries(listed).filter(([name, size]) => sizes.get(name) !== size);
  if (!absent.length) return undefined;
  return `${absent.length} of ${Object.keys(listed).length} files missing or of another size (e.g. ${absent[0][0]})`;
}

/** `512 B`, `12.3 MiB`, `1.4 GiB`. */
export function bytesText(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

export function registerCheckpointsCommand(program: Command, ctx: CommandContext): void {
  program
    .command('checkpoints')
    .description(
      `A run's checkpoints in S3 (${DATA_PREFIXES.checkpoints}<run>/checkpoint-<step>/): step, size, time written and whether it is complete ` +
        '(a spot restart resumes the newest complete one).',
    )
    .argument('<run>', 'run id (or execution ARN)')
    .action(async (run: string, _opts: unknown, command: Command) => {
      ctx.use(command);
      const client = ctx.runClient();
      const { runId } = await client.findRun(run); // an unknown run fails here
      const { dataBucketName } = await client.plane();
      const prefix = `${DATA_PREFIXES.checkpoints}${runId}/`;
      const objects = await client.listObjects(prefix);
      const manifests = new Map<number, string | undefined>();
      for (const object of objects) {
        const rest = (object.Key ?? '').slice(prefix.length);
        const step = /^checkpoint-(\d+)\//.exec(rest)?.[1];
        if (step !== undefined && rest === `checkpoint-${step}/${CHECKPOINT_MANIFEST}`) manifests.set(Number(step), await client.readObject(object.Key!));
      }
      const checkpoints = checkpointsOf(objects, prefix, dataBucketName, manifests);
      const s3Uri = `s3://${dataBucketName}/${prefix}`;
      const text = checkpoints.length
        ? table(
            ['STEP', 'SIZE', 'FILES', 'WRITTEN', 'COMPLETE'],
            checkpoints.map((c) => [String(c.step), bytesText(c.bytes), String(c.files), time(c.lastModified), c.complete ? 'yes' : `no: ${c.missing}`]),
          ) + `${s3Uri}\n`
        : `no checkpoints for run ${runId} yet (${s3Uri}): the trainer saves one every saveSteps optimiser steps (recipe; default 100)\n`;
      ctx.print({ runId, s3Uri, checkpoints }, text);
    });
}

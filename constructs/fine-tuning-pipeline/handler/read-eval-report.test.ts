import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseReport, readEvalReport } from './read-eval-report';

const REPORT = { schema_version: 1, base: { eval_loss: 2, eval_perplexity: 7.39, probe_loss: null }, tuned: { eval_loss: 1.5, eval_perplexity: 4.48, probe_loss: null }, eval_loss_ratio: 0.75, forgetting_increase: null, examples: 10 };

function s3With(key: string, bytes: Buffer) {
  return {
    send: (async (command: any) => {
      if (`${command.input.Bucket}/${command.input.Key}` !== key) throw Object.assign(new Error('no'), { name: 'NoSuchKey' });
      return { ContentLength: bytes.length, Body: { transformToByteArray: async () => new Uint8Array(bytes) } };
    }) as any,
  };
}

describe('ReadEvalReport handler', () => {
  test('reads eval.json from an object URI and returns the gate numbers', async () => {
    const result = await readEvalReport({ reportUri: 's3://b/eval-reports/r/job/output/model/eval.json', thresholds: { maxEvalLossRatio: 1 } }, s3With('b/eval-reports/r/job/output/model/eval.json', Buffer.from(JSON.stringify(REPORT))));
    expect(result).toMatchObject({ evalLossRatio: 0.75, forgettingIncrease: null, examples: 10, reportUri: 's3://b/eval-reports/r/job/output/model/eval.json' });
    expect(result.summary).toBe('eval_loss_ratio=0.75 (max 1); forgetting_increase=none (no probe); eval_loss 2 -> 1.5 on 10 examples');
  });

  test.each(['gnu', 'pax', 'ustar'])('reads eval.json out of a model.tar.gz (%s format)', async (format) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eval-tar-'));
    fs.writeFileSync(path.join(dir, 'other.bin'), Buffer.alloc(1500, 7));
    fs.writeFileSync(path.join(dir, 'eval.json'), JSON.stringify(REPORT));
    execFileSync('tar', [`--format=${format}`, '-czf', path.join(dir, 'model.tar.gz'), '-C', dir, './other.bin', './eval.json']);
    const bytes = fs.readFileSync(path.join(dir, 'model.tar.gz'));
    const result = await readEvalReport({ reportUri: 's3://b/k/model.tar.gz' }, s3With('b/k/model.tar.gz', bytes));
    expect(result.evalLossRatio).toBe(0.75);
  });

  test('fails as EvalReportInvalid when the report is missing', async () => {
    await expect(readEvalReport({ reportUri: 's3://b/missing/' }, s3With('b/x', Buffer.from('')))).rejects.toMatchObject({ name: 'EvalReportInvalid', message: expect.stringContaining('s3://b/missing/eval.json does not exist') });
  });

  test.each([
    [{ ...REPORT, schema_version: 2 }, /schema_version must be 1, got 2/],
    [{ ...REPORT, eval_loss_ratio: 'NaN' }, /eval_loss_ratio must be a finite number/],
    [{ ...REPORT, examples: 0 }, /examples must be a positive integer/],
  ])('fails as EvalReportInvalid on a report that breaks the contract (%#)', (report, message) => {
    expect(() => parseReport(JSON.stringify(report), 'x')).toThrow(message);
  });
});

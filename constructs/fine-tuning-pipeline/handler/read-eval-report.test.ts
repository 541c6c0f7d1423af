import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { trainerReport } from '../../../test/support/trainer-reports';
import { gateFailures, parseReport, readEvalReport } from './read-eval-report';

// The eval.json the real trainer wrote, without and with a forgetting probe.
const REPORT = trainerReport(false);
const PROBE_REPORT = trainerReport(true);
const RATIO = REPORT.tuned.eval_loss / REPORT.base.eval_loss;

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
    expect(result).toMatchObject({ evalLossRatio: RATIO, forgettingIncrease: null, examples: REPORT.examples, passed: true, failures: [], reportUri: 's3://b/eval-reports/r/job/output/model/eval.json' });
    expect(result.summary).toBe(`passed | eval_loss_ratio=${Number(RATIO.toPrecision(4))} (max 1); forgetting_increase=none (no probe); eval_loss 5.991 -> 5.592 on 4 examples`);
  });

  test('recomputes the forgetting increase from the probe losses and gates on it', () => {
    const result = parseReport(JSON.stringify(PROBE_REPORT), 'x', { maxEvalLossRatio: 1, maxForgettingIncrease: 0.01 }, true);
    expect(result.forgettingIncrease).toBeCloseTo(PROBE_REPORT.tuned.probe_loss - PROBE_REPORT.base.probe_loss, 12);
    expect(result.passed).toBe(true);
    const tighter = parseReport(JSON.stringify(PROBE_REPORT), 'x', { maxEvalLossRatio: 1, maxForgettingIncrease: -0.1 }, true);
    const increase = Number((PROBE_REPORT.tuned.probe_loss - PROBE_REPORT.base.probe_loss).toPrecision(4));
    expect(tighter).toMatchObject({ passed: false, failures: [`forgetting_increase ${increase} is above the maximum -0.1`] });
  });

  test('fails closed when the run planned a probe and the report has no forgetting figure', () => {
    const result = parseReport(JSON.stringify(REPORT), 'x', { maxEvalLossRatio: 1, maxForgettingIncrease: 0.1 }, true);
    expect(result).toMatchObject({ passed: false, forgettingIncrease: null });
    expect(result.summary).toMatch(/^rejected: forgetting_increase was not measured although the run planned a probe \(maximum 0\.1\) \| .*forgetting_increase=missing/);
    // without a planned probe, the same report passes
    expect(parseReport(JSON.stringify(REPORT), 'x', { maxEvalLossRatio: 1, maxForgettingIncrease: 0.1 }, false).passed).toBe(true);
  });

  test('the gate never passes NaN and checks only the thresholds that are set', () => {
    expect(gateFailures({ evalLossRatio: NaN, forgettingIncrease: null }, { maxEvalLossRatio: 1 }, false)).toHaveLength(1);
    expect(gateFailures({ evalLossRatio: 5, forgettingIncrease: 3 }, {}, true)).toEqual([]);
    expect(gateFailures({ evalLossRatio: 1, forgettingIncrease: 0.1 }, { maxEvalLossRatio: 1, maxForgettingIncrease: 0.1 }, true)).toEqual([]);
  });

  test.each([
    ['a ratio that disagrees with the losses', { ...PROBE_REPORT, eval_loss_ratio: 0.8 }, /eval_loss_ratio 0\.8 disagrees with the losses it summarises/],
    ['a forgetting increase that disagrees with the probe losses', { ...PROBE_REPORT, forgetting_increase: -0.5 }, /forgetting_increase -0\.5 disagrees with the probe losses/],
    ['a forgetting increase without probe losses', { ...REPORT, forgetting_increase: 0.01 }, /forgetting_increase 0\.01 disagrees/],
    ['no forgetting increase beside probe losses', { ...PROBE_REPORT, forgetting_increase: null }, /forgetting_increase null disagrees/],
    ['a zero base loss', { ...REPORT, base: { ...REPORT.base, eval_loss: 0 } }, /base\.eval_loss must be above 0/],
  ])('refuses %s (EvalReportInvalid): the gate does not trust a figure its losses contradict', (_, report, message) => {
    expect(() => parseReport(JSON.stringify(report), 'x')).toThrow(message);
  });

  test.each(['gnu', 'pax', 'ustar'])('reads eval.json out of a model.tar.gz (%s format)', async (format) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eval-tar-'));
    fs.writeFileSync(path.join(dir, 'other.bin'), Buffer.alloc(1500, 7));
    fs.writeFileSync(path.join(dir, 'eval.json'), JSON.stringify(REPORT));
    execFileSync('tar', [`--format=${format}`, '-czf', path.join(dir, 'model.tar.gz'), '-C', dir, './other.bin', './eval.json']);
    const bytes = fs.readFileSync(path.join(dir, 'model.tar.gz'));
    const result = await readEvalReport({ reportUri: 's3://b/k/model.tar.gz' }, s3With('b/k/model.tar.gz', bytes));
    expect(result.evalLossRatio).toBe(RATIO);
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

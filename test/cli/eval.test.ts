/**
 * `tuneyard eval` against moto with the real SDK clients, on the files the real eval job wrote
 * (test/fixtures/contracts/eval-job/: training-images/trainer/tests/test_report.py writes them with
 * TUNEYARD_UPDATE_FIXTURES=1).
 *
 * What is simulated (moto is not AWS): the pipeline is a stand-in state machine run by moto's Step
 * Functions parser: {} succeeds (the gate passed), {reject} ends in the gate's Fail state, {wait}
 * stays RUNNING. The eval job's output is put where SageMaker uploads it
 * (eval-reports/<run>/<evaluation job>/output/model/).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { DescribeExecutionCommand, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { parseCsv, scoreAbSheet, wilson } from '../../lib/cli/commands/eval';
import { startMotoPlane, MotoPlane } from './moto-plane';
import { cli } from './support';

const BUCKET = 'tuneyard-data-eval';
const STATE_MACHINE = 'arn:aws:states:us-east-1:123456789012:stateMachine:TuneyardPipeline';
const FIXTURE = path.join(__dirname, '..', 'fixtures', 'contracts', 'eval-job');
const FILES = ['eval.json', 'generations.jsonl', 'report.html', 'ab-review.csv', 'ab-key.csv'];
const read = (name: string) => fs.readFileSync(path.join(FIXTURE, name), 'utf8');

const STAND_IN = {
  StartAt: 'Route',
  States: {
    Route: {
      Type: 'Choice',
      Choices: [
        { Variable: '$.reject', IsPresent: true, Next: 'GateRejected' },
        { Variable: '$.wait', IsPresent: true, Next: 'Train' },
      ],
      Default: 'Register',
    },
    GateRejected: { Type: 'Fail', Error: 'Tuneyard.GateRejected', Cause: 'eval_loss_ratio 1.2 is above 1.0' },
    Train: { Type: 'Wait', Seconds: 3600, Next: 'Register' },
    Register: { Type: 'Pass', End: true },
  },
};

let plane: MotoPlane;
let tmp: string;

beforeAll(async () => {
  plane = await startMotoPlane({ bucket: BUCKET, definition: STAND_IN, executeStateMachine: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-eval-'));
}, 120_000);

afterAll(async () => {
  await plane?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

async function startRun(name: string, input: object): Promise<void> {
  const { executionArn } = await plane.clients.sfn.send(new StartExecutionCommand({ stateMachineArn: STATE_MACHINE, name, input: JSON.stringify(input) }));
  for (let i = 0; i < 100; i++) {
    const { status } = await plane.clients.sfn.send(new DescribeExecutionCommand({ executionArn }));
    if (status !== 'RUNNING' || 'wait' in input) break;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function put(key: string, body: string): Promise<void> {
  await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
}

async function putEvalJob(runId: string, files = FILES): Promise<string> {
  const folder = `eval-reports/${runId}/tuneyard-${runId}-eval/output/model/`;
  for (const name of files) await put(`${folder}${name}`, read(name));
  return folder;
}

describe('tuneyard eval', () => {
  test('prints the gate decision, losses, graders and benchmarks, and downloads the report, generations and sheet but not the key', async () => {
    // GIVEN a run the gate passed, with the eval job's real output
    const runId = 'chats-lora-eval00000001';
    await startRun(runId, {});
    const folder = await putEvalJob(runId);
    const out = path.join(tmp, 'passed');

    // WHEN
    const result = await cli(['eval', runId, '--out', out], { clients: plane.factory });

    // THEN
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const report = JSON.parse(read('eval.json'));
    const lines = result.stdout.split('\n');
    expect(lines.slice(0, 2)).toEqual([`run ${runId}`, 'gate: passed']);
    expect(result.stdout).toMatch(new RegExp(`eval loss\\s+${String(Number(report.base.eval_loss.toPrecision(4)))}\\s+${String(Number(report.tuned.eval_loss.toPrecision(4)))}`));
    for (const name of Object.keys(report.graders.tuned)) {
      expect(result.stdout).toMatch(new RegExp(`^${name}\\s+${String(Number(report.graders.base[name].mean.toPrecision(4)))}\\s+${String(Number(report.graders.tuned[name].mean.toPrecision(4)))}`, 'm'));
    }
    expect(result.stdout).toMatch(new RegExp(`^${report.benchmarks[0].name}\\s`, 'm'));
    expect(result.stdout).toContain('judge: not run yet / not configured');
    expect(result.stdout).toContain(`report: s3://${BUCKET}/${folder}report.html`);
    expect(fs.readdirSync(out).sort()).toEqual(['ab-review.csv', 'generations.jsonl', 'report.html']);
    for (const name of fs.readdirSync(out)) expect(fs.readFileSync(path.join(out, name), 'utf8')).toBe(read(name));
  });

  test('--with-key downloads the key too; the judge summary is printed when the judge ran; a rejected run says why', async () => {
    // GIVEN a run the gate rejected, judged
    const runId = 'chats-lora-eval00000002';
    await startRun(runId, { reject: true });
    await putEvalJob(runId);
    await put(`eval-reports/${runId}/judge/judge.json`, JSON.stringify({ pairwise: { items: 40, wins: 22, ties: 6, losses: 12, errors: 0, winRate: 0.55 } }));
    const out = path.join(tmp, 'rejected');

    // WHEN
    const result = await cli(['eval', runId, '--out', out, '--with-key', '--json'], { clients: plane.factory });

    // THEN
    expect(result.code).toBe(0);
    const json = JSON.parse(result.stdout);
    expect(json.gate).toBe('rejected: eval_loss_ratio 1.2 is above 1.0');
    expect(json.judge.pairwise.winRate).toBe(0.55);
    expect(json.downloaded.sort()).toEqual(['ab-key.csv', 'ab-review.csv', 'generations.jsonl', 'report.html']);
    expect(fs.readFileSync(path.join(out, 'ab-key.csv'), 'utf8')).toBe(read('ab-key.csv'));
    const text = await cli(['eval', runId, '--out', out], { clients: plane.factory });
    expect(text.stdout).toContain('judge: tuned wins 22, ties 6, loses 12 of 40 (win rate 0.55)');
  });

  test('a grpo run\'s evaluation prints the run\'s reward of the base and tuned answers and its gain (the gate\'s minRewardGain)', async () => {
    // GIVEN a grpo run whose evaluation job wrote the trainer's real eval.json of the toy GRPO adapter
    const runId = 'sums-grpo-eval00000004';
    await startRun(runId, {});
    const report = fs.readFileSync(path.join(FIXTURE, '..', 'eval-report-grpo.json'), 'utf8');
    await put(`eval-reports/${runId}/tuneyard-${runId}-eval/output/model/eval.json`, report);
    // WHEN
    const result = await cli(['eval', runId, '--out', path.join(tmp, 'grpo')], { clients: plane.factory });
    // THEN
    expect(result.code).toBe(0);
    const { reward } = JSON.parse(report);
    expect(result.stdout).toContain(`reward ${Number(reward.base.mean.toPrecision(4))} -> ${Number(reward.tuned.mean.toPrecision(4))} (gain ${Number(reward.gain.toPrecision(4))}) over 20 answers`);
  });

  test('fails with the next step when the run has no evaluation yet', async () => {
    const runId = 'chats-lora-eval00000003';
    await startRun(runId, { wait: true });
    const result = await cli(['eval', runId, '--out', path.join(tmp, 'none')], { clients: plane.factory });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`no evaluation for run ${runId} yet`);
    expect(result.stderr).toContain(`tuneyard watch ${runId}`);
    expect(fs.existsSync(path.join(tmp, 'none'))).toBe(false);
  });

  test('fails when the run does not exist', async () => {
    const result = await cli(['eval', 'no-such-run-000000000000'], { clients: plane.factory });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('run no-such-run-000000000000 not found');
  });

  test('--ab-results scores a filled-in sheet against the key in S3', async () => {
    // GIVEN the downloaded sheet, filled in by a reviewer who always picks the tuned answer except on 10 items (ties on 5)
    const runId = 'chats-lora-eval00000004';
    await startRun(runId, {});
    await putEvalJob(runId);
    const [header, ...rows] = parseCsv(read('ab-review.csv'));
    const key = new Map(parseCsv(read('ab-key.csv')).slice(1).map(([item, tuned]) => [item, tuned]));
    const column = header.indexOf('preference (A, B or tie)');
    const filled = rows.map((row, i) => {
      const tuned = key.get(row[0])!;
      const choice = i < 5 ? 'tie' : i < 15 ? (tuned === 'A' ? 'B' : 'A') : tuned.toLowerCase();
      return row.map((cell, c) => (c === column ? choice : cell));
    });
    const csvText = [header, ...filled].map((r) => r.map((c) => `"${c.replace(/"/g, '""')}"`).join(',')).join('\r\n') + '\r\n';
    const file = path.join(tmp, 'filled.csv');
    fs.writeFileSync(file, csvText);

    // WHEN
    const result = await cli(['eval', runId, '--ab-results', file, '--json'], { clients: plane.factory });

    // THEN
    expect(result.stderr).toBe('');
    const json = JSON.parse(result.stdout);
    const n = rows.length;
    expect(json).toMatchObject({ items: n, wins: n - 15, ties: 5, losses: 10, unreviewed: 0 });
    expect(json.winRate).toBeCloseTo((n - 15 + 2.5) / n, 10);
    expect(json.interval[0]).toBeLessThan(json.winRate);
    expect(json.interval[1]).toBeGreaterThan(json.winRate);
  });
});

describe('A/B scoring', () => {
  test('the Wilson interval matches hand-worked values', () => {
    // 5 of 10: 0.2366 to 0.7634; 0 of 10: 0 to z^2 / (n + z^2) = 3.8415 / 13.8415 = 0.2775
    expect(wilson(5, 10).map((v) => Number(v.toFixed(4)))).toEqual([0.2366, 0.7634]);
    expect(wilson(0, 10).map((v) => Number(v.toFixed(4)))).toEqual([0, 0.2775]);
  });

  test('fails when a preference is neither A, B nor tie, naming the row and item', () => {
    const sheet = 'item,"preference (A, B or tie)",notes\nitem-0,maybe,\n';
    expect(() => scoreAbSheet(sheet, 'item,tuned,base,seed\nitem-0,A,B,15\n', 'mine.csv')).toThrow(/mine\.csv row 2 \(item item-0\): preference "maybe" is not A, B or tie/);
  });

  test('fails when the sheet is not an A/B sheet', () => {
    expect(() => scoreAbSheet('a,b\n1,2\n', 'item,tuned\n')).toThrow(/has no column "item", "preference \(A, B or tie\)"/);
  });

  test('parses quoted fields with commas, quotes and newlines as Python csv writes them', () => {
    expect(parseCsv('a,"b, ""c""\nd",e\n1,2,3\n')).toEqual([['a', 'b, "c"\nd', 'e'], ['1', '2', '3']]);
  });
});

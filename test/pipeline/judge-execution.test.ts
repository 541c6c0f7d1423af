import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConverseCommand } from '@aws-sdk/client-bedrock-runtime';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { Template } from 'aws-cdk-lib/assertions';
import { PIPELINE_FAILURES, PIPELINE_STATES } from '../../constructs/fine-tuning-pipeline';
import { judgeAnswers } from '../../constructs/fine-tuning-pipeline/handler/judge-answers';
import { planRunStep, PlanRunEnvironment } from '../../constructs/fine-tuning-pipeline/handler/plan-run';
import { readEvalReport } from '../../constructs/fine-tuning-pipeline/handler/read-eval-report';
import { parseRunRequest, runIdFor } from '../../lib/run-request';
import { completedJob, definitionFromTemplate, lambdaTask, LocalHandler, runLocal, snsRecorder, stepFunctionsError } from '../support/local-sfn';
import { trainerReport } from '../support/trainer-reports';
import { pipelineStack } from './pipeline-stack';

// GIVEN the pipeline synthesized with a judge model allowed, and the same pipeline without one
const JUDGE_MODEL = 'amazon.nova-pro-v1:0';
const withJudge = definitionFromTemplate(Template.fromStack(pipelineStack({ judgeModelIds: [JUDGE_MODEL] }).stack).toJSON());
const withoutJudge = definitionFromTemplate(Template.fromStack(pipelineStack().stack).toJSON());

const ENV: PlanRunEnvironment = {
  bucketName: 'data-bucket',
  volumeKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/volume',
  outputKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/output',
  allowHubModels: false,
  deployStage: false,
  judgeModelIds: [JUDGE_MODEL],
};
const BASE_REQUEST = {
  dataset: { name: 'support-chats', sha256: 'a'.repeat(64) },
  baseModel: 's3://data-bucket/base-models/llama-3.1-8b/',
  recipe: { method: 'qlora', batchSize: 2 },
};
const JUDGED_REQUEST = { ...BASE_REQUEST, judge: { modelId: JUDGE_MODEL } };
// The files the real evaluation job writes (training-images/trainer/tests): eval.json and generations.jsonl.
const GENERATIONS = fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'contracts', 'generations.jsonl'), 'utf8');

/** The data bucket in memory: the evaluation job's output of the run, and whatever the judge writes. */
function bucket(runId: string, generations: boolean) {
  const output = `data-bucket/eval-reports/${runId}/tuneyard-${runId}-eval/output/model/`;
  const objects = new Map<string, string>([[`${output}eval.json`, JSON.stringify(trainerReport(false))]]);
  if (generations) objects.set(`${output}generations.jsonl`, GENERATIONS);
  return {
    objects,
    send: async (command: any) => {
      const key = `${command.input.Bucket}/${command.input.Key}`;
      if (command instanceof PutObjectCommand) {
        objects.set(key, command.input.Body as string);
        return {};
      }
      if (!(command instanceof GetObjectCommand)) throw new Error(`unexpected ${command.constructor.name}`);
      const body = objects.get(key);
      if (body === undefined) throw stepFunctionsError('NoSuchKey', 'The specified key does not exist.');
      const bytes = Buffer.from(body);
      return { ContentLength: bytes.length, Body: { transformToString: async () => body, transformToByteArray: async () => new Uint8Array(bytes) } };
    },
  };
}

/** A judge that prefers the tuned answer ("dhat") in either position. */
function tunedPreferringJudge() {
  const requests: any[] = [];
  return {
    requests,
    send: async (command: any) => {
      if (!(command instanceof ConverseCommand)) throw new Error(`unexpected ${command.constructor.name}`);
      requests.push(command.input);
      const text = command.input.messages![0].content![0].text as string;
      const winner = /Answer A:\ndhat/.test(text) ? 'A' : 'B';
      return { output: { message: { role: 'assistant', content: [{ text: JSON.stringify({ reasoning: 'dhat is preferred', winner }) }] } }, stopReason: 'end_turn', usage: { inputTokens: 50, outputTokens: 10 } };
    },
  };
}

function world(runId: string, options: { generations?: boolean } = {}) {
  const s3 = bucket(runId, options.generations ?? true);
  const bedrock = tunedPreferringJudge();
  const sns = snsRecorder();
  const judged: any[] = [];
  const handlers: Record<string, LocalHandler> = {
    PlanRun: lambdaTask((event) => planRunStep(event, ENV)),
    ValidateDataset: lambdaTask(() => ({ format: 'chat', rows: 1000, evalRows: 200 })),
    Train: (input) => completedJob(input),
    Evaluate: (input) => completedJob(input),
    // each invocation has time for two items (two Converse calls each): the 4 rows take two invocations
    JudgeAnswers: lambdaTask((event) => {
      judged.push(event);
      const before = bedrock.requests.length;
      return judgeAnswers(event, { s3, bedrock, concurrency: 1, reserveMs: 1000, remainingMs: () => (bedrock.requests.length - before < 4 ? 60_000 : 0) });
    }),
    ReadEvalReport: lambdaTask((event) => readEvalReport(event, s3 as any)),
    Register: () => ({ ModelPackageArn: 'arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard-models/1' }),
  };
  for (const name of Object.keys(withJudge.States)) if (name.startsWith('Notify')) handlers[name] = sns;
  return { handlers, s3, bedrock, sns, judged };
}

describe('FineTuningPipeline with an LLM judge, executed locally', () => {
  test('a run with a judge is judged after Evaluate, in two invocations, and $.judge holds the result', async () => {
    // GIVEN
    const runId = runIdFor(parseRunRequest(JUDGED_REQUEST));
    const w = world(runId);
    // WHEN
    const result = await runLocal(withJudge, JUDGED_REQUEST, w.handlers, { executionName: runId });
    // THEN
    expect(result.requestErrors).toEqual([]);
    expect([result.status, result.error, result.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
    expect(result.entered).toEqual([
      'PlanRun', 'ValidateDataset', 'Train', 'Evaluate',
      PIPELINE_STATES.judgeRequested, 'JudgeStart', PIPELINE_STATES.judgeAnswers, PIPELINE_STATES.judgeDone, PIPELINE_STATES.judgeAnswers, PIPELINE_STATES.judgeDone, 'JudgeResult',
      'ReadEvalReport', 'Gate', 'Register', 'NotifySucceeded', 'Succeeded',
    ]);
    expect(w.judged.map((e) => e.progress.cursor)).toEqual([0, 2]);
    expect(w.judged[0].judge).toMatchObject({ modelId: JUDGE_MODEL, maxItems: 100, pairwise: true });
    const prefix = `eval-reports/${runId}/judge/`;
    expect(result.output.judge).toEqual({ reportUri: `s3://data-bucket/${prefix}judge.json`, items: 4, wins: 4, ties: 0, losses: 0, winRate: 1 });
    expect(w.s3.objects.get(`data-bucket/${prefix}judgements.jsonl`)!.trim().split('\n')).toHaveLength(8);
    expect(w.bedrock.requests).toHaveLength(8);
  });

  test('a run without a judge goes from Evaluate to ReadEvalReport with $.judge null', async () => {
    const runId = runIdFor(parseRunRequest(BASE_REQUEST));
    const w = world(runId);
    const result = await runLocal(withJudge, BASE_REQUEST, w.handlers, { executionName: runId });
    expect(result.requestErrors).toEqual([]);
    expect(result.status).toBe('SUCCEEDED');
    expect(result.entered.slice(3, 6)).toEqual(['Evaluate', PIPELINE_STATES.judgeRequested, 'ReadEvalReport']);
    expect(result.output.judge).toBeNull();
    expect(w.bedrock.requests).toEqual([]);
  });

  test('a pipeline without judge models has no judge states, and $.judge is null', async () => {
    expect(Object.keys(withoutJudge.States).filter((s) => s.startsWith('Judge'))).toEqual([]);
    const runId = runIdFor(parseRunRequest(BASE_REQUEST));
    const { JudgeAnswers: _judge, NotifyJudgeFailed: _notify, ...handlers } = world(runId).handlers;
    const result = await runLocal(withoutJudge, BASE_REQUEST, handlers, { executionName: runId });
    expect(result.requestErrors).toEqual([]);
    expect(result.status).toBe('SUCCEEDED');
    expect(result.entered.slice(3, 5)).toEqual(['Evaluate', 'ReadEvalReport']);
    expect(result.output.judge).toBeNull();
  });

  test('fails when the judge cannot run (no generations.jsonl), notified with the stage and the fix', async () => {
    const runId = runIdFor(parseRunRequest(JUDGED_REQUEST));
    const w = world(runId, { generations: false });
    const result = await runLocal(withJudge, JUDGED_REQUEST, w.handlers, { executionName: runId });
    expect(result.status).toBe('FAILED');
    expect(result.error).toBe('JudgeFailed');
    expect(result.entered.slice(-2)).toEqual([`Notify${PIPELINE_FAILURES.judgeFailed}`, PIPELINE_FAILURES.judgeFailed]);
    expect(w.sns.messages[0].message).toMatchObject({ outcome: 'FAILED', stage: PIPELINE_STATES.judgeAnswers, error: 'JudgeFailed', cause: expect.stringContaining('or remove judge from the request') });
    expect(result.entered).not.toContain('Register');
  });

  describe('the gate on the judge\'s win rate (thresholds.minJudgeWinRate)', () => {
    const GATED_REQUEST = { ...JUDGED_REQUEST, thresholds: { minJudgeWinRate: 0.5 } };

    test('passes when the judge prefers the tuned answers, the win rate named in the notification', async () => {
      const runId = runIdFor(parseRunRequest(GATED_REQUEST));
      const w = world(runId);
      const result = await runLocal(withJudge, GATED_REQUEST, w.handlers, { executionName: runId });
      expect(result.requestErrors).toEqual([]);
      expect([result.status, result.error]).toEqual(['SUCCEEDED', undefined]);
      expect(w.sns.messages[0].message.report).toContain('judge_win_rate=1 (4 wins, 0 ties, 0 losses of 4 items; min 0.5)');
    });

    test('rejects the run when the judge prefers the base answers, the check named with its value and threshold', async () => {
      const runId = runIdFor(parseRunRequest(GATED_REQUEST));
      const w = world(runId);
      // the same judge, preferring the other answer ("dhat" is the tuned model's) in either position
      const tuned = tunedPreferringJudge();
      const basePreferring = {
        send: async (command: any) => {
          const answer = await tuned.send(command);
          const verdict = JSON.parse(answer.output.message.content[0].text);
          return { ...answer, output: { message: { role: 'assistant', content: [{ text: JSON.stringify({ ...verdict, winner: verdict.winner === 'A' ? 'B' : 'A' }) }] } } };
        },
      };
      w.handlers.JudgeAnswers = lambdaTask((event) => judgeAnswers(event, { s3: w.s3, bedrock: basePreferring, concurrency: 1, reserveMs: 1000, remainingMs: () => 60_000 }));
      const result = await runLocal(withJudge, GATED_REQUEST, w.handlers, { executionName: runId });
      expect(result.requestErrors).toEqual([]);
      expect([result.status, result.error]).toEqual(['FAILED', 'Tuneyard.GateRejected']);
      expect(result.cause).toMatch(/^rejected: judge_win_rate 0 is below the minimum 0\.5 \| .*judge_win_rate=0 \(0 wins, 0 ties, 4 losses of 4 items; min 0\.5\)/);
      expect(w.sns.messages).toEqual([
        { subject: 'Tuneyard run rejected by the quality gate', message: expect.objectContaining({ outcome: 'REJECTED', report: expect.stringContaining('judge_win_rate 0 is below the minimum 0.5'), thresholds: expect.objectContaining({ minJudgeWinRate: 0.5 }) }) },
      ]);
    });
  });
});

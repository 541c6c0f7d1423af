/**
 * `events`, `checkpoints` and `logs` against moto with the real SDK clients.
 *
 * What is simulated (moto is not AWS):
 * - The pipeline is a stand-in state machine named like the real one's stages, run by moto's Step
 *   Functions parser (moto config stepfunctions.execute_state_machine): Pass states, a Choice, a
 *   Fail state and a Wait state that keeps a run RUNNING until it is stopped. Its histories are
 *   moto's, in AWS's event shapes.
 * - moto's training jobs are born Completed with one secondary status transition (Starting); the
 *   full sequence (Downloading, Training, Uploading) and a task that failed and was retried are
 *   covered with fake clients below, since moto cannot produce them.
 * - Checkpoints are objects the test writes where SageMaker syncs the trainer's checkpoint folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CreateTrainingJobCommand } from '@aws-sdk/client-sagemaker';
import { CreateLogGroupCommand, CreateLogStreamCommand, PutLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { DescribeExecutionCommand, StartExecutionCommand, StopExecutionCommand } from '@aws-sdk/client-sfn';
import type { HistoryEvent } from '@aws-sdk/client-sfn';
import { CHECKPOINT_MANIFEST } from '../../lib/cli/commands/checkpoints';
import { stagesOf } from '../../lib/cli/commands/events';
import { startMotoPlane, MotoPlane } from './moto-plane';
import { cli, fakeClients, PLANE_OUTPUTS } from './support';

const BUCKET = 'tuneyard-data-inspect';
const STATE_MACHINE = 'arn:aws:states:us-east-1:123456789012:stateMachine:TuneyardPipeline';
const GROUP = '/aws/sagemaker/TrainingJobs';

/** Stage names as the pipeline's; a run's input picks its path: {} succeeds, {fail} fails in ValidateDataset, {wait} stays in Train. */
const PIPELINE_STAND_IN = {
  StartAt: 'PlanRun',
  States: {
    PlanRun: { Type: 'Pass', Next: 'Route' },
    Route: {
      Type: 'Choice',
      Choices: [
        { Variable: '$.fail', IsPresent: true, Next: 'ValidateDataset' },
        { Variable: '$.wait', IsPresent: true, Next: 'Train' },
      ],
      Default: 'Register',
    },
    ValidateDataset: { Type: 'Pass', Next: 'RunFailed' },
    RunFailed: { Type: 'Fail', Error: 'Tuneyard.DatasetInvalid', Cause: 'train.jsonl:3: missing field "completion"' },
    Train: { Type: 'Wait', Seconds: 3600, Next: 'Register' },
    Register: { Type: 'Pass', End: true },
  },
};

let plane: MotoPlane;

beforeAll(async () => {
  plane = await startMotoPlane({ bucket: BUCKET, definition: PIPELINE_STAND_IN, executeStateMachine: true });
  await plane.clients.logs.send(new CreateLogGroupCommand({ logGroupName: GROUP }));
}, 120_000);

afterAll(async () => {
  await plane?.stop();
});

/** Starts a run of the stand-in and waits until it has left its first states (or ended). */
async function startRun(name: string, input: object, until: (status: string) => boolean): Promise<string> {
  const { executionArn } = await plane.clients.sfn.send(new StartExecutionCommand({ stateMachineArn: STATE_MACHINE, name, input: JSON.stringify(input) }));
  for (let i = 0; i < 100; i++) {
    const { status } = await plane.clients.sfn.send(new DescribeExecutionCommand({ executionArn }));
    if (until(status!)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return executionArn!;
}

async function createTrainingJob(runId: string): Promise<void> {
  await plane.clients.sagemaker.send(
    new CreateTrainingJobCommand({
      TrainingJobName: `tuneyard-${runId}-train`,
      AlgorithmSpecification: { TrainingImage: '123456789012.dkr.ecr.us-east-1.amazonaws.com/tuneyard-trainer:latest', TrainingInputMode: 'File' },
      RoleArn: 'arn:aws:iam::123456789012:role/TuneyardTraining',
      OutputDataConfig: { S3OutputPath: `s3://${BUCKET}/artifacts/${runId}/` },
      ResourceConfig: { InstanceType: 'ml.g5.2xlarge', InstanceCount: 1, VolumeSizeInGB: 100 },
      StoppingCondition: { MaxRuntimeInSeconds: 86400 },
    }),
  );
}

async function putLogs(runId: string, events: Array<{ timestamp: number; message: string }>, stream = 'algo-1-1700000000'): Promise<void> {
  const logStreamName = `tuneyard-${runId}-train/${stream}`;
  try {
    await plane.clients.logs.send(new CreateLogStreamCommand({ logGroupName: GROUP, logStreamName }));
  } catch (e) {
    if ((e as Error).name !== 'ResourceAlreadyExistsException') throw e;
  }
  await plane.clients.logs.send(new PutLogEventsCommand({ logGroupName: GROUP, logStreamName, logEvents: events }));
}

const TIME = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ';

describe('events', () => {
  test('a run that succeeded: each stage with start, end and outcome, then the training job\'s status transitions', async () => {
    // GIVEN a finished run and its training job
    await startRun('chats-lora-000000000001', {}, (s) => s !== 'RUNNING');
    await createTrainingJob('chats-lora-000000000001');

    // WHEN
    const text = await cli(['events', 'chats-lora-000000000001'], { clients: plane.factory });
    const json = await cli(['events', 'chats-lora-000000000001', '--json'], { clients: plane.factory });

    // THEN
    expect(text.code).toBe(0);
    const lines = text.stdout.split('\n');
    expect(lines[0]).toBe('run chats-lora-000000000001: SUCCEEDED');
    expect(lines[1]).toMatch(/^STAGE +STARTED +ENDED +TOOK +OUTCOME$/);
    expect(lines.slice(2, 5).map((l) => l.split(/ +/)[0])).toEqual(['PlanRun', 'Route', 'Register']);
    for (const line of lines.slice(2, 5)) expect(line).toMatch(new RegExp(`^\\w+ +${TIME} +${TIME} +\\d+s +succeeded$`));
    expect(lines[5]).toBe('training job tuneyard-chats-lora-000000000001-train: Completed');
    expect(lines[6]).toMatch(/^STATUS +STARTED +ENDED +TOOK +MESSAGE$/);
    expect(lines[7]).toMatch(new RegExp(`^Starting +${TIME} +${TIME} +0s +Preparing the instances for training$`));
    const out = JSON.parse(json.stdout);
    expect(out).toMatchObject({ runId: 'chats-lora-000000000001', status: 'SUCCEEDED', trainingJob: { name: 'tuneyard-chats-lora-000000000001-train', status: 'Completed' } });
    expect(out.stages.map((s: { stage: string; outcome: string }) => `${s.stage}:${s.outcome}`)).toEqual(['PlanRun:succeeded', 'Route:succeeded', 'Register:succeeded']);
    expect(out.trainingJob.transitions).toEqual([expect.objectContaining({ status: 'Starting', message: 'Preparing the instances for training' })]);
  });

  test('a run that failed: the failing stage with the error and cause; no training job yet', async () => {
    await startRun('chats-lora-000000000002', { fail: true }, (s) => s !== 'RUNNING');
    const { code, stdout } = await cli(['events', 'chats-lora-000000000002'], { clients: plane.factory });
    expect(code).toBe(0);
    expect(stdout).toMatch(/^run chats-lora-000000000002: FAILED\n/);
    expect(stdout).toMatch(new RegExp(`^ValidateDataset +${TIME} +${TIME} +\\d+s +succeeded$`, 'm'));
    expect(stdout).toMatch(new RegExp(`^RunFailed +${TIME} +${TIME} +\\d+s +failed: Tuneyard\\.DatasetInvalid \\(train\\.jsonl:3: missing field "completion"\\)$`, 'm'));
    expect(stdout).toMatch(/^training job: not created yet \(the Train stage creates it\)$/m);
  });

  test('fails on a run that does not exist', async () => {
    const { code, stderr } = await cli(['events', 'no-such-run'], { clients: plane.factory });
    expect(stderr).toBe('error: run no-such-run not found in plane Tuneyard: list runs with `tuneyard runs`\n');
    expect(code).toBe(1);
  });

  test('the full secondary status sequence and a task retried after a failure (fake clients: moto has neither)', async () => {
    const t = (s: number) => new Date(Date.UTC(2026, 11, 1, 12, 0, s));
    const history: HistoryEvent[] = [
      { id: 1, type: 'ExecutionStarted', timestamp: t(0) },
      { id: 2, type: 'TaskStateEntered', timestamp: t(1), stateEnteredEventDetails: { name: 'PlanRun' } },
      { id: 3, type: 'TaskFailed', timestamp: t(2), taskFailedEventDetails: { resource: 'invoke', resourceType: 'lambda', error: 'Lambda.TooManyRequestsException', cause: 'Rate exceeded' } },
      { id: 4, type: 'TaskSucceeded', timestamp: t(4), taskSucceededEventDetails: { resource: 'invoke', resourceType: 'lambda' } },
      { id: 5, type: 'TaskStateExited', timestamp: t(5), stateExitedEventDetails: { name: 'PlanRun' } },
      { id: 6, type: 'TaskStateEntered', timestamp: t(5), stateEnteredEventDetails: { name: 'Train' } },
    ];
    const { factory } = fakeClients({
      ...PLANE_OUTPUTS,
      DescribeExecutionCommand: () => ({ name: 'chats-lora-000000000003', status: 'RUNNING', startDate: t(0) }),
      GetExecutionHistoryCommand: () => ({ events: history }),
      DescribeTrainingJobCommand: () => ({
        TrainingJobName: 'tuneyard-chats-lora-000000000003-train',
        TrainingJobStatus: 'InProgress',
        SecondaryStatus: 'Training',
        SecondaryStatusTransitions: [
          { Status: 'Starting', StartTime: t(6), EndTime: t(70), StatusMessage: 'Launching requested ML instances' },
          { Status: 'Downloading', StartTime: t(70), EndTime: t(130), StatusMessage: 'Downloading the training image' },
          { Status: 'Training', StartTime: t(130), StatusMessage: 'Training image download completed. Training in progress.' },
        ],
      }),
    });

    const { code, stdout } = await cli(['events', 'chats-lora-000000000003'], { clients: factory });

    expect(code).toBe(0);
    expect(stdout).toBe(
      [
        'run chats-lora-000000000003: RUNNING',
        'STAGE    STARTED               ENDED                 TOOK  OUTCOME',
        'PlanRun  2026-12-01T12:00:01Z  2026-12-01T12:00:05Z  4s    succeeded',
        'Train    2026-12-01T12:00:05Z  -                     -     running',
        'training job tuneyard-chats-lora-000000000003-train: InProgress',
        'STATUS       STARTED               ENDED                 TOOK    MESSAGE',
        'Starting     2026-12-01T12:00:06Z  2026-12-01T12:01:10Z  1m 04s  Launching requested ML instances',
        'Downloading  2026-12-01T12:01:10Z  2026-12-01T12:02:10Z  1m 00s  Downloading the training image',
        'Training     2026-12-01T12:02:10Z  -                     -       Training image download completed. Training in progress.',
        '',
      ].join('\n'),
    );
  });
});

describe('stagesOf', () => {
  const t = (s: number) => new Date(Date.UTC(2026, 11, 1, 12, 0, s));
  test('a task that failed and was caught ends failed with its error; the states open when the run was stopped end aborted', () => {
    const stages = stagesOf([
      { id: 1, type: 'TaskStateEntered', timestamp: t(1), stateEnteredEventDetails: { name: 'Train' } },
      { id: 2, type: 'TaskFailed', timestamp: t(9), taskFailedEventDetails: { resource: 'createTrainingJob.sync', resourceType: 'sagemaker', error: 'SageMaker.AmazonSageMakerException', cause: 'ResourceLimitExceeded' } },
      { id: 3, type: 'TaskStateExited', timestamp: t(9), stateExitedEventDetails: { name: 'Train' } },
      { id: 4, type: 'TaskStateEntered', timestamp: t(10), stateEnteredEventDetails: { name: 'NotifyFailure' } },
      { id: 5, type: 'ExecutionAborted', timestamp: t(12), executionAbortedEventDetails: { error: 'Tuneyard.Cancelled', cause: 'cancelled with tuneyard cancel' } },
    ]);
    expect(stages).toEqual([
      { stage: 'Train', start: t(1), end: t(9), outcome: 'failed', error: 'SageMaker.AmazonSageMakerException', cause: 'ResourceLimitExceeded' },
      { stage: 'NotifyFailure', start: t(10), end: t(12), outcome: 'aborted', error: 'Tuneyard.Cancelled', cause: 'cancelled with tuneyard cancel' },
    ]);
  });
});

describe('checkpoints', () => {
  const RUN = 'chats-lora-000000000004';
  const prefix = `checkpoints/${RUN}/`;

  beforeAll(async () => {
    await startRun(RUN, { wait: true }, (s) => s === 'RUNNING');
    const put = (key: string, body: string) => plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: prefix + key, Body: body }));
    // step 100: complete (every file its manifest lists, with that size)
    await put('checkpoint-100/adapter_model.safetensors', 'a'.repeat(2048));
    await put('checkpoint-100/trainer_state.json', '{"global_step":100}');
    await put('checkpoint-100/tuneyard-checkpoint.json', JSON.stringify({ files: { 'adapter_model.safetensors': 2048, 'trainer_state.json': 19 } }));
    // step 200: its manifest names a file S3 does not have yet
    await put('checkpoint-200/trainer_state.json', '{"global_step":200}');
    await put('checkpoint-200/tuneyard-checkpoint.json', JSON.stringify({ files: { 'adapter_model.safetensors': 2048, 'trainer_state.json': 19 } }));
    // step 300: no manifest yet
    await put('checkpoint-300/adapter_model.safetensors', 'b'.repeat(2048));
  });

  test('lists each checkpoint with step, size, files, time and whether it is complete', async () => {
    const { code, stdout } = await cli(['checkpoints', RUN], { clients: plane.factory });
    const lines = stdout.split('\n');
    expect(lines[0]).toMatch(/^STEP +SIZE +FILES +WRITTEN +COMPLETE$/);
    expect(lines[1]).toMatch(new RegExp(`^100 +2\\.1 KiB +3 +${TIME} +yes$`));
    const manifestBytes = JSON.stringify({ files: { 'adapter_model.safetensors': 2048, 'trainer_state.json': 19 } }).length;
    expect(lines[2]).toMatch(new RegExp(`^200 +${19 + manifestBytes} B +2 +${TIME} +no: 1 of 2 files missing or of another size \\(e\\.g\\. adapter_model\\.safetensors\\)$`));
    expect(lines[3]).toMatch(new RegExp(`^300 +2\\.0 KiB +1 +${TIME} +no: no tuneyard-checkpoint\\.json yet \\(still being written, or cut short\\)$`));
    expect(lines[4]).toBe(`s3://${BUCKET}/${prefix}`);
    expect(code).toBe(0);
    const json = JSON.parse((await cli(['checkpoints', RUN, '--json'], { clients: plane.factory })).stdout);
    expect(json.checkpoints.map((c: { step: number; complete: boolean; bytes: number }) => [c.step, c.complete, c.bytes])).toEqual([
      [100, true, 2048 + 19 + JSON.stringify({ files: { 'adapter_model.safetensors': 2048, 'trainer_state.json': 19 } }).length],
      [200, false, 19 + JSON.stringify({ files: { 'adapter_model.safetensors': 2048, 'trainer_state.json': 19 } }).length],
      [300, false, 2048],
    ]);
  });

  test('reads the manifest the trainer writes (its CHECKPOINT_MANIFEST and folder names)', () => {
    const trainer = fs.readFileSync(path.join(__dirname, '..', '..', 'training-images', 'trainer', 'tuneyard_trainer', 'train.py'), 'utf8');
    expect(/^CHECKPOINT_MANIFEST = "([^"]+)"$/m.exec(trainer)?.[1]).toBe(CHECKPOINT_MANIFEST);
    expect(trainer).toContain('f"checkpoint-{state.global_step}"');
    expect(trainer).toContain('manifest = {"files": dict(sorted(union.items())), "run": self.identity}');
  });

  test('a run without checkpoints says so; an unknown run fails', async () => {
    const none = await cli(['checkpoints', 'chats-lora-000000000001'], { clients: plane.factory });
    expect(none.stdout).toBe(
      `no checkpoints for run chats-lora-000000000001 yet (s3://${BUCKET}/checkpoints/chats-lora-000000000001/): the trainer saves one every saveSteps optimiser steps (recipe; default 100)\n`,
    );
    expect(none.code).toBe(0);
    const noneJson = await cli(['checkpoints', 'chats-lora-000000000001', '--json'], { clients: plane.factory });
    expect(JSON.parse(noneJson.stdout)).toEqual({ runId: 'chats-lora-000000000001', s3Uri: `s3://${BUCKET}/checkpoints/chats-lora-000000000001/`, checkpoints: [] });
    const unknown = await cli(['checkpoints', 'no-such-run'], { clients: plane.factory });
    expect(unknown.stderr).toBe('error: run no-such-run not found in plane Tuneyard: list runs with `tuneyard runs`\n');
    expect(unknown.code).toBe(1);
  });
});

describe('logs', () => {
  test('fails with exit 1 on a run that does not exist', async () => {
    const { code, stdout, stderr } = await cli(['logs', 'no-such-run'], { clients: plane.factory });
    expect(stdout).toBe('');
    expect(stderr).toBe('error: run no-such-run not found in plane Tuneyard: list runs with `tuneyard runs`\n');
    expect(code).toBe(1);
  });

  test('--json prints [] when there are no lines, and the lines as one array otherwise', async () => {
    const empty = await cli(['logs', 'chats-lora-000000000001', '--json'], { clients: plane.factory });
    expect(empty.stdout).toBe('[]\n');
    expect(empty.code).toBe(0);
    const text = await cli(['logs', 'chats-lora-000000000001'], { clients: plane.factory });
    expect(text.stdout).toBe('');
    expect(text.code).toBe(0);

    const t = Date.now() - 60_000;
    await putLogs('chats-lora-000000000001', [{ timestamp: t, message: 'step=1 train_loss=2.0' }, { timestamp: t + 1, message: 'step=2 train_loss=1.9' }]);
    const lines = await cli(['logs', 'chats-lora-000000000001', '--json'], { clients: plane.factory });
    expect(JSON.parse(lines.stdout)).toEqual([
      { stream: 'tuneyard-chats-lora-000000000001-train/algo-1-1700000000', timestamp: t, message: 'step=1 train_loss=2.0' },
      { stream: 'tuneyard-chats-lora-000000000001-train/algo-1-1700000000', timestamp: t + 1, message: 'step=2 train_loss=1.9' },
    ]);
  });

  test('--follow on a running run with no training job yet keeps polling, and ends once the run is cancelled, with the lines written before', async () => {
    // GIVEN a run in its Train stage whose job has not been created (nothing says the logs are over but the run)
    const RUN = 'chats-lora-000000000005';
    await startRun(RUN, { wait: true }, (s) => s === 'RUNNING');
    const t = Date.now() - 60_000;
    await putLogs(RUN, [{ timestamp: t, message: 'loading the model' }]);
    let sleeps = 0;
    const sleep = async () => {
      sleeps++;
      if (sleeps === 2) {
        // WHEN lines arrive and the run is cancelled while logs waits between polls
        await putLogs(RUN, [{ timestamp: t + 1000, message: 'stopped after step 7' }]);
        await plane.clients.sfn.send(new StopExecutionCommand({ executionArn: `${STATE_MACHINE.replace(':stateMachine:', ':execution:')}:${RUN}`, error: 'Tuneyard.Cancelled' }));
      }
      if (sleeps > 5) throw new Error('logs --follow did not stop after the run ended');
    };

    const { code, stdout } = await cli(['logs', RUN, '--follow', '--interval', '1'], { clients: plane.factory, sleep });

    // THEN it printed every line once and returned after the poll that saw the run end
    expect(stdout).toBe('loading the model\nstopped after step 7\n');
    expect(sleeps).toBe(2);
    expect(code).toBe(0);
  });

  test('--follow on a run that has already ended prints its lines and returns without waiting', async () => {
    let sleeps = 0;
    const { code, stdout } = await cli(['logs', 'chats-lora-000000000001', '--follow'], { clients: plane.factory, sleep: async () => void sleeps++ });
    expect(stdout).toBe('step=1 train_loss=2.0\nstep=2 train_loss=1.9\n');
    expect(sleeps).toBe(0);
    expect(code).toBe(0);
  });
});

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { remainingSeconds, runExitCode, watchLine } from '../../lib/cli/commands/runs';
import { GATE_REJECTED_ERROR } from '../../lib/run-request';
import { EXAMPLES } from '../../lib/cli/program';
import { RunStatus } from '../../lib/cli/run-client';
import { estimateCost, estimateTrainingHours, onDemandPricePerHour, SPOT_DISCOUNT } from '../../lib/pricing';
import { awsError, cli, fakeClients, PLANE_OUTPUTS } from './support';

const EXECUTION = 'arn:aws:states:us-east-1:123456789012:execution:Tuneyard:greetings-qlora-0123456789ab';

describe('argument handling', () => {
  test('--help lists every command and exits 0', async () => {
    const { code, stdout } = await cli(['--help']);
    for (const command of ['validate', 'upload', 'train', 'watch', 'runs', 'describe', 'cancel', 'logs', 'models', 'deploy', 'invoke', 'estimate']) {
      expect(stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    }
    expect(stdout).toMatch(/--stack <name> +CloudFormation stack of the Tuneyard plane/);
    expect(code).toBe(0);
  });

  test('fails on an unknown command or option with a usage hint', async () => {
    const unknown = await cli(['fly']);
    expect(unknown.stderr).toMatch(/^error: unknown command 'fly'/);
    expect(unknown.code).toBe(64);
    const option = await cli(['runs', '--colour']);
    expect(option.stderr).toMatch(/^error: unknown option '--colour'\n\(run with --help for usage\)/);
    expect(option.code).toBe(64);
  });

  test('fails on an invalid dataset name before any AWS call', async () => {
    const { factory, calls } = fakeClients({});
    const { code, stderr } = await cli(['upload', 'data.jsonl', '--name', 'Bad Name'], { clients: factory });
    expect(stderr).toContain('dataset name "Bad Name" is invalid');
    expect(code).toBe(64); // an invalid option value is a usage error
    expect(calls).toEqual([]);
  });

  test('global options apply after the command too: --region and --profile reach the client factory', async () => {
    const seen: unknown[] = [];
    const { factory } = fakeClients({ ...PLANE_OUTPUTS, ListExecutionsCommand: () => ({ executions: [] }) });
    const { code, stdout } = await cli(['runs', '--region', 'eu-west-1', '--profile', 'ml'], { clients: (o) => (seen.push(o), factory(o)) });
    expect(seen).toEqual([{ region: 'eu-west-1', profile: 'ml' }]);
    expect(stdout).toBe('no runs yet: start one with `tuneyard train`\n');
    expect(code).toBe(0);
  });
});

describe('AWS errors', () => {
  test('no credentials', async () => {
    // GIVEN a profile "ml" that exists but has no usable credentials
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-aws-'));
    fs.writeFileSync(path.join(dir, 'config'), '[profile ml]\nregion = eu-west-1\n');
    const saved = process.env.AWS_CONFIG_FILE;
    process.env.AWS_CONFIG_FILE = path.join(dir, 'config');
    const { factory } = fakeClients({
      DescribeStacksCommand: () => {
        throw awsError('CredentialsProviderError', 'Could not load credentials from any providers');
      },
    });
    const { code, stderr } = await cli(['runs', '--profile', 'ml'], { clients: factory }).finally(() =>
      saved === undefined ? delete process.env.AWS_CONFIG_FILE : (process.env.AWS_CONFIG_FILE = saved),
    );
    expect(stderr).toBe('error: no AWS credentials found via profile "ml": run `aws configure` / `aws sso login`, or pass --profile (Could not load credentials from any providers)\n');
    expect(code).toBe(1);
  });

  test('plane not deployed in the region', async () => {
    const { factory } = fakeClients(
      {
        DescribeStacksCommand: () => {
          throw awsError('ValidationError', 'Stack with id Tuneyard does not exist');
        },
      },
      'eu-central-1',
    );
    const { code, stderr } = await cli(['models'], { clients: factory });
    expect(stderr).toBe('error: Tuneyard plane Tuneyard not found in region eu-central-1: deploy it with `npx cdk deploy` or pass --stack/--region\n');
    expect(code).toBe(1);
  });

  test('a stack without the plane\'s outputs', async () => {
    const { factory } = fakeClients({ DescribeStacksCommand: () => ({ Stacks: [{ StackName: 'Other', Outputs: [] }] }) });
    const { code, stderr } = await cli(['runs', '--stack', 'Other'], { clients: factory });
    expect(stderr).toMatch(/^error: stack Other has no output "StateMachineArn": it is not a Tuneyard plane/);
    expect(code).toBe(1);
  });

  test('run not found', async () => {
    const { factory } = fakeClients({
      ...PLANE_OUTPUTS,
      DescribeExecutionCommand: () => {
        throw awsError('ExecutionDoesNotExist', 'Execution Does Not Exist');
      },
    });
    const { code, stderr } = await cli(['watch', 'nope'], { clients: factory });
    expect(stderr).toBe('error: run nope not found in plane Tuneyard: list runs with `tuneyard runs`\n');
    expect(code).toBe(1);
  });
});

describe('help examples', () => {
  test.each(Object.keys(EXAMPLES))('every flag of the %s examples is an option that command (or the program) takes', async (command) => {
    const { stdout, code } = await cli([command, '--help']);
    expect(code).toBe(0);
    const known = new Set(stdout.slice(0, stdout.indexOf('\nExamples:')).match(/--[a-z][a-z0-9-]*/g)); // the options, not the examples themselves
    for (const example of EXAMPLES[command]) {
      expect(example).toMatch(new RegExp(`tuneyard ${command}( |$)`));
      const flags = example.slice(example.indexOf(`tuneyard ${command}`)).match(/ --[a-z][a-z0-9-]*/g) ?? [];
      expect(flags.map((f) => f.trim()).filter((f) => !known.has(f))).toEqual([]);
    }
  });
});

describe('watch', () => {
  /** A run that moves through PlanRun → Train (twice) → Gate and ends as `end`. */
  function scriptedRun(end: { status: string; error?: string; cause?: string }) {
    const start = new Date('2026-11-01T10:00:00Z');
    const polls = [
      { status: 'RUNNING', stage: 'PlanRun', job: undefined },
      { status: 'RUNNING', stage: 'Train', job: { TrainingJobStatus: 'InProgress', SecondaryStatus: 'Training', metrics: { train_loss: 1.9, epoch: 0.5 } } },
      { status: 'RUNNING', stage: 'Train', job: { TrainingJobStatus: 'InProgress', SecondaryStatus: 'Training', metrics: { train_loss: 1.9, epoch: 0.5 } } },
      { status: end.status, stage: 'Gate', job: { TrainingJobStatus: 'Completed', SecondaryStatus: 'Completed', metrics: { train_loss: 1.2, eval_loss: 1.3, epoch: 1 } } },
    ];
    let i = -1;
    const now = () => new Date(start.getTime() + (i + 1) * 60_000);
    const current = () => polls[Math.min(i, polls.length - 1)];
    const fake = fakeClients({
      ...PLANE_OUTPUTS,
      DescribeExecutionCommand: () => {
        i++;
        const p = current();
        const ended = p.status !== 'RUNNING';
        return { name: 'greetings-qlora-0123456789ab', executionArn: EXECUTION, status: p.status, startDate: start, stopDate: ended ? now() : undefined, input: '{"recipe":{"method":"qlora","epochs":1}}', ...(ended ? { error: end.error, cause: end.cause } : {}) };
      },
      GetExecutionHistoryCommand: () => ({ events: [{ type: 'TaskStateEntered', stateEnteredEventDetails: { name: current().stage } }] }),
      DescribeTrainingJobCommand: (input) => {
        const job = current().job;
        if (!job) throw awsError('ValidationException', 'Requested resource not found.');
        return {
          TrainingJobName: input.TrainingJobName,
          TrainingJobStatus: job.TrainingJobStatus,
          SecondaryStatus: job.SecondaryStatus,
          TrainingStartTime: new Date(start.getTime() + 60_000),
          FinalMetricDataList: Object.entries(job.metrics).map(([MetricName, Value]) => ({ MetricName, Value, Timestamp: now() })),
        };
      },
    });
    return { ...fake, now };
  }

  test('prints a line when the run changes and exits 0 when it succeeds', async () => {
    const { factory, calls, now } = scriptedRun({ status: 'SUCCEEDED' });
    const sleeps: number[] = [];
    const { code, stdout, stderr } = await cli(['watch', 'greetings-qlora-0123456789ab', '--interval', '5'], { clients: factory, now, sleep: async (ms) => void sleeps.push(ms) });

    expect(stdout.split('\n').filter(Boolean)).toEqual([
      '[RUNNING] PlanRun | elapsed 1m 00s',
      '[RUNNING] Train | job InProgress/Training | train_loss 1.9 epoch 0.5 | elapsed 2m 00s, ~1m 00s of training left',
      '[SUCCEEDED] Gate | job Completed/Completed | train_loss 1.2 eval_loss 1.3 epoch 1 | elapsed 4m 00s',
    ]);
    expect(stderr).toBe('run greetings-qlora-0123456789ab succeeded\n');
    expect(code).toBe(0);
    expect(sleeps).toEqual([5000, 5000, 5000]);
    expect(calls.find((c) => c.command === 'DescribeTrainingJobCommand')?.input).toEqual({ TrainingJobName: 'tuneyard-greetings-qlora-0123456789ab-train' });
  });

  test('exits 2 when the eval gate rejects the run', async () => {
    const { factory, now } = scriptedRun({ status: 'FAILED', error: GATE_REJECTED_ERROR, cause: 'eval loss ratio 1.08 > 1.0' });
    const { code, stderr } = await cli(['watch', 'greetings-qlora-0123456789ab'], { clients: factory, now });
    expect(stderr).toBe('run greetings-qlora-0123456789ab was rejected by the eval gate: eval loss ratio 1.08 > 1.0\n');
    expect(code).toBe(2);
  });

  test('exits 1 when the run fails', async () => {
    const { factory, now } = scriptedRun({ status: 'FAILED', error: 'Tuneyard.TrainingFailed', cause: 'CUDA out of memory' });
    const { code, stderr } = await cli(['watch', 'greetings-qlora-0123456789ab'], { clients: factory, now });
    expect(stderr).toBe('run greetings-qlora-0123456789ab failed: Tuneyard.TrainingFailed (CUDA out of memory)\n');
    expect(code).toBe(1);
  });

  test('--json prints one JSON object per change', async () => {
    const { factory, now } = scriptedRun({ status: 'SUCCEEDED' });
    const { stdout } = await cli(['watch', 'greetings-qlora-0123456789ab', '--json'], { clients: factory, now });
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.stage)).toEqual(['PlanRun', 'Train', 'Gate']);
    expect(lines[1]).toMatchObject({ status: 'RUNNING', trainingJob: { status: 'InProgress', trainLoss: 1.9, epoch: 0.5 }, remainingSeconds: 60 });
  });

  test('an online RL run shows its policy loss, mean reward and KL; a reward model its pairwise accuracy', () => {
    const at = new Date('2026-11-01T10:05:00Z');
    const run = (metrics: Record<string, number>) =>
      watchLine({ runId: 'r', status: 'RUNNING', stage: 'Train', startDate: new Date('2026-11-01T10:00:00Z'), trainingJob: { name: 'j', status: 'InProgress', secondaryStatus: 'Training', metrics } } as RunStatus, at);
    expect(run({ policy_loss: 0.0123, reward_mean: 1.5, kl: 0.031, clip_fraction: 0.2, epoch: 0.25 })).toBe(
      '[RUNNING] Train | job InProgress/Training | policy_loss 0.0123 reward_mean 1.5 kl 0.031 epoch 0.25 | elapsed 5m 00s',
    );
    expect(run({ train_loss: 0.61, reward_accuracy: 0.75, epoch: 1 })).toBe('[RUNNING] Train | job InProgress/Training | train_loss 0.61 reward_accuracy 0.75 epoch 1 | elapsed 5m 00s');
  });

  test('outcome and remaining time helpers', () => {
    expect(runExitCode({ status: 'RUNNING' })).toBeUndefined();
    expect(runExitCode({ status: 'SUCCEEDED' })).toBe(0);
    expect(runExitCode({ status: 'FAILED', error: GATE_REJECTED_ERROR })).toBe(2);
    expect(runExitCode({ status: 'TIMED_OUT' })).toBe(1);
    expect(runExitCode({ status: 'ABORTED' })).toBe(1);
    const status = (epoch: number): RunStatus => ({
      runId: 'r',
      executionArn: EXECUTION,
      status: 'RUNNING',
      input: { recipe: { method: 'lora', epochs: 3 } },
      trainingJob: { name: 'j', status: 'InProgress', startTime: new Date(0), metrics: { epoch } },
    });
    // 600 s for 1 of 3 epochs: 1200 s to go
    expect(remainingSeconds(status(1), new Date(600_000))).toBe(1200);
    expect(remainingSeconds(status(0), new Date(600_000))).toBeUndefined();
  });
});

describe('cancel', () => {
  test('stops the execution and the training job while it is in progress', async () => {
    const { factory, calls } = fakeClients({
      ...PLANE_OUTPUTS,
      DescribeExecutionCommand: () => ({ name: 'greetings-qlora-0123456789ab', status: 'RUNNING' }),
      StopExecutionCommand: () => ({}),
      DescribeTrainingJobCommand: (input) => ({ TrainingJobName: input.TrainingJobName, TrainingJobStatus: 'InProgress' }),
      StopTrainingJobCommand: () => ({}),
      GetCallerIdentityCommand: () => ({ Arn: 'arn:aws:sts::123456789012:assumed-role/ml-platform/ana' }),
    });
    const { code, stdout } = await cli(['cancel', 'greetings-qlora-0123456789ab', '--reason', 'wrong dataset'], { clients: factory });
    expect(stdout).toBe('run greetings-qlora-0123456789ab: execution stopped; training job stopping\n');
    expect(code).toBe(0);
    // The plane's RunsAborted rule notifies this error and cause: who cancelled, and why.
    expect(calls.find((c) => c.command === 'StopExecutionCommand')?.input).toEqual({
      executionArn: EXECUTION,
      error: 'Tuneyard.Cancelled',
      cause: 'cancelled with tuneyard cancel by arn:aws:sts::123456789012:assumed-role/ml-platform/ana: wrong dataset',
    });
    expect(calls.find((c) => c.command === 'StopTrainingJobCommand')?.input).toEqual({ TrainingJobName: 'tuneyard-greetings-qlora-0123456789ab-train' });
  });

  test('still cancels when the caller cannot be named, and says so in the cause', async () => {
    const { factory, calls } = fakeClients({
      ...PLANE_OUTPUTS,
      DescribeExecutionCommand: () => ({ name: 'greetings-qlora-0123456789ab', status: 'RUNNING' }),
      StopExecutionCommand: () => ({}),
      DescribeTrainingJobCommand: (input) => ({ TrainingJobName: input.TrainingJobName, TrainingJobStatus: 'Completed' }),
      GetCallerIdentityCommand: () => {
        throw awsError('AccessDenied', 'not allowed');
      },
    });
    const { code } = await cli(['cancel', 'greetings-qlora-0123456789ab'], { clients: factory });
    expect(code).toBe(0);
    expect(calls.find((c) => c.command === 'StopExecutionCommand')?.input).toMatchObject({ cause: 'cancelled with tuneyard cancel by an unknown caller (GetCallerIdentity failed: AccessDenied)' });
  });
});

describe('invoke', () => {
  test('sends an OpenAI chat-completions payload and prints the reply', async () => {
    const { factory, calls } = fakeClients({
      InvokeEndpointCommand: () => ({ Body: new TextEncoder().encode(JSON.stringify({ choices: [{ message: { role: 'assistant', content: 'Bonjour !' } }] })) }),
    });
    const { code, stdout } = await cli(['invoke', '--endpoint', 'chat', 'Say hello in French', '--adapter', 'french', '--max-tokens', '32'], { clients: factory });
    expect(stdout).toBe('Bonjour !\n');
    expect(code).toBe(0);
    const input = calls[0].input as { EndpointName: string; ContentType: string; Body: Uint8Array };
    expect(input.EndpointName).toBe('chat');
    expect(input.ContentType).toBe('application/json');
    expect(JSON.parse(new TextDecoder().decode(input.Body))).toEqual({ model: 'french', messages: [{ role: 'user', content: 'Say hello in French' }], max_tokens: 32 });
  });

  test('reports a missing endpoint', async () => {
    const { factory } = fakeClients({
      InvokeEndpointCommand: () => {
        throw awsError('ValidationError', 'Endpoint chat of account 123456789012 not found.');
      },
    });
    const { code, stderr } = await cli(['invoke', '--endpoint', 'chat', 'hi'], { clients: factory });
    expect(stderr).toMatch(/^error: endpoint chat not found in this region/);
    expect(code).toBe(1);
  });
});

describe('train', () => {
  test('fails on an invalid request before any run starts, naming the field', async () => {
    const { factory, calls } = fakeClients({ ...PLANE_OUTPUTS });
    const { code, stderr } = await cli(['train', '--dataset', `greetings@${'a'.repeat(64)}`, '--base-model', 'not a model', '--method', 'lora'], { clients: factory });
    expect(stderr).toMatch(/^error: invalid RunRequest:\n {2}- baseModel: must be an s3:\/\/ folder/);
    expect(code).toBe(1);
    expect(calls.map((c) => c.command)).not.toContain('StartExecutionCommand');
  });

  test('--adapter needs --deploy-endpoint', async () => {
    const { factory, calls } = fakeClients({ ...PLANE_OUTPUTS });
    const { code, stderr } = await cli(['train', '--dataset', `greetings@${'a'.repeat(64)}`, '--base-model', 'org/model-8B', '--adapter', 'chat-v1'], { clients: factory });
    expect(stderr).toBe('error: --adapter needs --deploy-endpoint NAME\n');
    expect(code).toBe(1);
    expect(calls.map((c) => c.command)).not.toContain('StartExecutionCommand');
  });
});

describe('estimate', () => {
  test('lists every GPU instance, fitting ones first and cheapest first, with on-demand and spot cost', async () => {
    const { code, stdout } = await cli(['estimate', '--base-model', 'meta-llama/Llama-3.1-8B-Instruct', '--method', 'qlora', '--tokens', '10000000', '--json']);
    const { estimates, assumptions } = JSON.parse(stdout);
    expect(assumptions).toMatchObject({ parametersBillions: 8.03, spotDiscount: SPOT_DISCOUNT });
    const fitting = estimates.filter((e: { fits: boolean }) => e.fits);
    expect(fitting.length).toBeGreaterThan(0);
    expect(estimates.slice(0, fitting.length)).toEqual(fitting);
    const costs = fitting.map((e: { onDemandUsd?: number }) => e.onDemandUsd ?? Infinity);
    expect(costs).toEqual([...costs].sort((a, b) => a - b));
    const g5 = estimates.find((e: { instanceType: string }) => e.instanceType === 'ml.g5.2xlarge');
    expect(g5.spotUsd).toBeCloseTo(g5.onDemandUsd * (1 - SPOT_DISCOUNT));
    expect(code).toBe(0);
  });

  test('one instance that does not fit: the advice, and exit 1', async () => {
    const { code, stdout } = await cli(['estimate', '--base-model', 'meta-llama/Llama-3.1-70B', '--method', 'lora', '--tokens', '1000000', '--instance', 'ml.g5.2xlarge']);
    expect(stdout).toMatch(/^ml\.g5\.2xlarge +1 +bf16 +[\d.]+ +24 +no +- +- +-$/m);
    expect(stdout).toMatch(/^LoRA of Llama 3\.1 70B .* needs ~[\d.]+ GiB per GPU; ml\.g5\.2xlarge has 24 GiB per GPU: /m);
    expect(code).toBe(1);
  });

  test('one instance that fits: hours and cost, exit 0', async () => {
    const { code, stdout } = await cli(['estimate', '--base-model', 'Qwen/Qwen2.5-0.5B', '--method', 'lora', '--tokens', '36000000', '--instance', 'ml.g5.xlarge']);
    // Qwen2.5 0.5B's shape counts 0.49B parameters; on A10G LoRA: 500 tok/s × 8/0.49 = 8163 tok/s → 36M tokens in 1.225 h; × $1.408
    expect(stdout).toMatch(/^ml\.g5\.xlarge +1 +bf16 +[\d.]+ +24 +yes +1\.2 +\$1\.72 +\$0\.52$/m);
    expect(code).toBe(0);
  });

  test('fails when the model size cannot be told from its name', async () => {
    const { code, stderr } = await cli(['estimate', '--base-model', 'org/mystery', '--method', 'lora', '--tokens', '1000']);
    expect(stderr).toMatch(/cannot tell the size of base model "org\/mystery".*pass --base-model-parameters/);
    expect(code).toBe(1);
  });
});

describe('pricing', () => {
  test('training hours follow the stated throughput assumption', () => {
    // H100, qlora: 2000 tok/s/GPU at 8B; 8 GPUs at 0.9 of linear; 2 epochs of 57.6M tokens → 115.2M / 14400 / 3600 = 2.22 h
    expect(estimateTrainingHours({ gpuModel: 'H100', gpus: 8, method: 'qlora', paramsB: 8, tokens: 57_600_000, epochs: 2 })).toBeCloseTo(2 / 0.9);
    // DPO runs at a third of LoRA's rate
    const lora = estimateTrainingHours({ gpuModel: 'A10G', gpus: 1, method: 'lora', paramsB: 8, tokens: 1e6, epochs: 1 });
    expect(estimateTrainingHours({ gpuModel: 'A10G', gpus: 1, method: 'dpo', paramsB: 8, tokens: 1e6, epochs: 1 })).toBeCloseTo(3 * lora);
    // GRPO generates its completions token by token before scoring them: assumed at a tenth of LoRA's rate
    expect(estimateTrainingHours({ gpuModel: 'A10G', gpus: 1, method: 'grpo', paramsB: 8, tokens: 1e6, epochs: 1 })).toBeCloseTo(10 * lora);
    expect(() => estimateTrainingHours({ gpuModel: 'TPU', gpus: 1, method: 'lora', paramsB: 8, tokens: 1, epochs: 1 })).toThrow(/no throughput assumption for GPU model "TPU"/);
  });

  test('cost is hours × instances × the on-demand price; unpriced instances have none', () => {
    expect(estimateCost('ml.g5.2xlarge', 2, 3).onDemandUsd).toBeCloseTo(2 * 3 * onDemandPricePerHour('ml.g5.2xlarge')!);
    expect(estimateCost('ml.p5e.48xlarge', 1, 1)).toEqual({});
  });
});

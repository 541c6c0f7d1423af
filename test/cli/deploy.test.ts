import { createHash } from 'node:crypto';
import { deploymentName } from '../../lib/cli/deploy';
import { awsError, Call, cli, fakeClients, Handler, PLANE_OUTPUTS } from './support';

const PACKAGE_ARN = 'arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard-models/3';
const MODEL_DATA = 's3://tuneyard-data/artifacts/run-1/tuneyard-run-1-train/output/model/';
const NEW_NAME = `chat-${createHash('sha256').update(PACKAGE_ARN).digest('hex').slice(0, 8)}`;
const ROLE = 'arn:aws:iam::123456789012:role/TuneyardServing';
const IMAGE = '763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.33.0-lmi15.0.0-cu128';
const DEPLOYMENT_CONFIG = {
  BlueGreenUpdatePolicy: { TrafficRoutingConfiguration: { Type: 'ALL_AT_ONCE', WaitIntervalInSeconds: 600 } },
  AutoRollbackConfiguration: { Alarms: [{ AlarmName: 'chat-5xx' }, { AlarmName: 'chat-latency' }] },
};
const VARIANT = { VariantName: 'AllTraffic', InstanceType: 'ml.g5.2xlarge', InitialInstanceCount: 1, InitialVariantWeight: 1, ModelDataDownloadTimeoutInSeconds: 1800 };

/** The model registry: version 3 of the plane's group, with the pipeline's uncompressed model folder. */
function registry(approval: string, calls: () => Call[], kind = 'generative'): Record<string, Handler> {
  return {
    ...PLANE_OUTPUTS,
    ListModelPackagesCommand: () => ({ ModelPackageSummaryList: [{ ModelPackageVersion: 3, ModelPackageArn: PACKAGE_ARN }] }),
    DescribeModelPackageCommand: () => ({
      ModelPackageArn: PACKAGE_ARN,
      ModelPackageVersion: 3,
      ModelApprovalStatus: calls().some((c) => c.command === 'UpdateModelPackageCommand') ? 'Approved' : approval,
      ApprovalDescription: approval === 'Rejected' ? 'eval_loss regressed' : undefined,
      InferenceSpecification: { Containers: [{ Image: IMAGE, ModelDataSource: { S3DataSource: { S3Uri: MODEL_DATA, S3DataType: 'S3Prefix', CompressionType: 'None' } } }] },
      CustomerMetadataProperties: { method: kind === 'reward' ? 'reward' : 'lora', kind },
    }),
    UpdateModelPackageCommand: () => ({ ModelPackageArn: PACKAGE_ARN }),
  };
}

const notFound = (what: string) => {
  throw awsError('ValidationException', `Could not find ${what}.`);
};

/**
 * A single-model endpoint `chat` on config `chat-config-1` (model `chat-model-1`): CreateModel,
 * CreateEndpointConfig and UpdateEndpoint change the fake's state; `statuses` are what
 * DescribeEndpoint returns after the update, one per call (the last repeats).
 */
function singleModel(options: { approval?: string; kind?: string; statuses?: Array<[string, string?]>; deploymentConfig?: object | null; failFirstUpdate?: boolean } = {}) {
  let failUpdate = options.failFirstUpdate ?? false;
  const models = new Map<string, object>([
    [
      'chat-model-1',
      {
        ModelName: 'chat-model-1',
        ExecutionRoleArn: ROLE,
        EnableNetworkIsolation: true,
        VpcConfig: { Subnets: ['subnet-1', 'subnet-2'], SecurityGroupIds: ['sg-1'] },
        PrimaryContainer: {
          Image: IMAGE,
          Environment: { SM_VLLM_MAX_MODEL_LEN: '8192', SM_VLLM_SERVED_MODEL_NAME: 'chat' },
          ModelDataSource: { S3DataSource: { S3Uri: 's3://tuneyard-data/base-models/llama/', S3DataType: 'S3Prefix', CompressionType: 'None' } },
        },
      },
    ],
  ]);
  const configs = new Map<string, object>([
    ['chat-config-1', { EndpointConfigName: 'chat-config-1', ProductionVariants: [{ ...VARIANT, ModelName: 'chat-model-1' }], KmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/k' }],
  ]);
  const endpoint = { config: 'chat-config-1', status: 'InService', pending: undefined as string | undefined };
  const statuses = [...(options.statuses ?? [['InService', NEW_NAME]])];
  const fake = fakeClients({
    ...registry(options.approval ?? 'Approved', () => fake.calls, options.kind),
    DescribeEndpointCommand: ({ EndpointName }) => {
      if (EndpointName !== 'chat') notFound(`endpoint 'arn:aws:sagemaker:us-east-1:123456789012:endpoint/${EndpointName}'`);
      if (endpoint.pending) {
        const [status, config] = statuses.length > 1 ? statuses.shift()! : statuses[0];
        endpoint.status = status;
        if (config) endpoint.config = config;
      }
      return {
        EndpointName: 'chat',
        EndpointStatus: endpoint.status,
        EndpointConfigName: endpoint.config,
        ...(endpoint.pending && endpoint.status === 'Updating' ? { PendingDeploymentSummary: { EndpointConfigName: endpoint.pending } } : {}),
        ...(options.deploymentConfig === null ? {} : { LastDeploymentConfig: options.deploymentConfig ?? DEPLOYMENT_CONFIG }),
      };
    },
    DescribeEndpointConfigCommand: ({ EndpointConfigName }) => configs.get(EndpointConfigName as string) ?? notFound('endpoint configuration'),
    DescribeModelCommand: ({ ModelName }) => models.get(ModelName as string) ?? notFound('model'),
    CreateModelCommand: (input) => void models.set(input.ModelName as string, input),
    CreateEndpointConfigCommand: (input) => void configs.set(input.EndpointConfigName as string, input),
    UpdateEndpointCommand: (input) => {
      if (failUpdate) {
        failUpdate = false;
        throw awsError('ThrottlingException', 'Rate exceeded');
      }
      endpoint.pending = input.EndpointConfigName as string;
      endpoint.status = 'Updating';
      return {};
    },
  });
  return fake;
}

/** An inference-component endpoint `chat` with the base component `chat-base` and, optionally, the adapter `support`. */
function adapters(options: { approval?: string; adapter?: { status: string; artifact?: string; endpoint?: string }; statuses?: Array<[string, string?]> } = {}) {
  const components = new Map<string, Record<string, unknown>>([['chat-base', { InferenceComponentName: 'chat-base', EndpointName: 'chat', InferenceComponentStatus: 'InService', Specification: { ModelName: 'chat-model-1' } }]]);
  if (options.adapter) {
    components.set('support', {
      InferenceComponentName: 'support',
      EndpointName: options.adapter.endpoint ?? 'chat',
      InferenceComponentStatus: options.adapter.status,
      Specification: { BaseInferenceComponentName: 'chat-base', Container: { ArtifactUrl: options.adapter.artifact ?? 's3://tuneyard-data/artifacts/old/adapter.tar.gz' } },
    });
  }
  const statuses = [...(options.statuses ?? [['InService']])];
  let written = false;
  const fake = fakeClients({
    ...registry(options.approval ?? 'Approved', () => fake.calls),
    DescribeEndpointCommand: () => ({ EndpointName: 'chat', EndpointStatus: 'InService', EndpointConfigName: 'chat-config-1' }),
    DescribeEndpointConfigCommand: () => ({ EndpointConfigName: 'chat-config-1', ProductionVariants: [{ VariantName: 'AllTraffic', InstanceType: 'ml.g5.12xlarge' }], ExecutionRoleArn: ROLE }),
    ListInferenceComponentsCommand: ({ EndpointNameEquals }) => ({
      InferenceComponents: [...components.values()].filter((c) => c.EndpointName === EndpointNameEquals).map((c) => ({ InferenceComponentName: c.InferenceComponentName })),
    }),
    DescribeInferenceComponentCommand: ({ InferenceComponentName }) => {
      const c = components.get(InferenceComponentName as string) ?? notFound('inference component');
      if (written && InferenceComponentName === 'support') {
        const [status, reason] = statuses.length > 1 ? statuses.shift()! : statuses[0];
        return { ...c, InferenceComponentStatus: status, FailureReason: reason };
      }
      return c;
    },
    CreateInferenceComponentCommand: (input) => void ((written = true), components.set(input.InferenceComponentName as string, { ...input, InferenceComponentStatus: 'Creating' })),
    UpdateInferenceComponentCommand: () => void (written = true),
  });
  return fake;
}

const writes = (calls: Call[]) => calls.filter((c) => /^(Create|Update)/.test(c.command));

describe('deploy to a single-model endpoint', () => {
  test('creates a model from the merged weights with the current model\'s image, role and network, a copy of the config, and updates the endpoint with its deployment config', async () => {
    // GIVEN
    const { factory, calls } = singleModel();

    // WHEN
    const { code, stdout, stderr } = await cli(['deploy', '3', '--endpoint', 'chat'], { clients: factory });

    // THEN
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(writes(calls)).toEqual([
      {
        command: 'CreateModelCommand',
        input: {
          ModelName: NEW_NAME,
          ExecutionRoleArn: ROLE,
          EnableNetworkIsolation: true,
          VpcConfig: { Subnets: ['subnet-1', 'subnet-2'], SecurityGroupIds: ['sg-1'] },
          PrimaryContainer: {
            Image: IMAGE,
            Environment: { SM_VLLM_MAX_MODEL_LEN: '8192', SM_VLLM_SERVED_MODEL_NAME: 'chat' },
            ModelDataSource: { S3DataSource: { S3Uri: `${MODEL_DATA}full/`, S3DataType: 'S3Prefix', CompressionType: 'None' } },
          },
        },
      },
      {
        command: 'CreateEndpointConfigCommand',
        input: { EndpointConfigName: NEW_NAME, ProductionVariants: [{ ...VARIANT, ModelName: NEW_NAME }], KmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/k' },
      },
      { command: 'UpdateEndpointCommand', input: { EndpointName: 'chat', EndpointConfigName: NEW_NAME, DeploymentConfig: DEPLOYMENT_CONFIG } },
    ]);
    expect(stdout).toBe(
      `deploying model version 3 to chat (single-model): ${MODEL_DATA}full/\n` +
        `  CreateModel ${NEW_NAME}\n` +
        `  CreateEndpointConfig ${NEW_NAME}\n` +
        `  UpdateEndpoint chat -> ${NEW_NAME} (its deployment config: blue/green ALL_AT_ONCE, rollback on chat-5xx, chat-latency)\n` +
        'follow it: tuneyard deploy 3 --endpoint chat --wait\n',
    );
  });

  test('running it again sends nothing: the endpoint is being updated to the same config, or already runs it', async () => {
    // GIVEN a deploy that started (the endpoint is Updating to the new config)
    const fake = singleModel({ statuses: [['Updating']] });
    await cli(['deploy', '3', '--endpoint', 'chat'], { clients: fake.factory });
    const before = writes(fake.calls).length;

    // WHEN it is run again
    const again = await cli(['deploy', '3', '--endpoint', 'chat'], { clients: fake.factory });

    // THEN
    expect(again.stdout).toContain(`chat is already being updated to ${NEW_NAME}: nothing sent\n`);
    expect(again.code).toBe(0);
    expect(writes(fake.calls).length).toBe(before);
  });

  test('a re-run after an interrupted deploy reuses the model and config it created and only updates the endpoint', async () => {
    // GIVEN a first run whose UpdateEndpoint failed
    const fake = singleModel({ failFirstUpdate: true });
    expect((await cli(['deploy', '3', '--endpoint', 'chat'], { clients: fake.factory })).code).toBe(1);
    fake.calls.length = 0;

    // WHEN
    const { code, stdout } = await cli(['deploy', '3', '--endpoint', 'chat', '--json'], { clients: fake.factory });

    // THEN
    expect(code).toBe(0);
    expect(writes(fake.calls).map((c) => c.command)).toEqual(['UpdateEndpointCommand']);
    expect(JSON.parse(stdout)).toMatchObject({
      endpoint: 'chat',
      form: 'single-model',
      endpointConfig: NEW_NAME,
      model: { arn: PACKAGE_ARN, version: 3, approvedNow: false },
      sent: [{ action: 'UpdateEndpoint', input: { EndpointName: 'chat', EndpointConfigName: NEW_NAME } }],
      notes: [`model ${NEW_NAME} exists (an earlier deploy of this package): reused`, `endpoint config ${NEW_NAME} exists (an earlier deploy of this package): reused`],
    });
  });

  test('an endpoint without a deployment config is updated with SageMaker\'s default, and the output says so', async () => {
    const { factory, calls } = singleModel({ deploymentConfig: null });
    const { stdout } = await cli(['deploy', '3', '--endpoint', 'chat'], { clients: factory });
    expect(calls.find((c) => c.command === 'UpdateEndpointCommand')!.input).toEqual({ EndpointName: 'chat', EndpointConfigName: NEW_NAME });
    expect(stdout).toContain("chat has no deployment configuration: SageMaker's default applies (blue/green, all at once, no rollback alarms)\n");
  });

  test('--wait exits 0 when the endpoint is InService on the new config', async () => {
    const sleeps: number[] = [];
    const { factory } = singleModel({ statuses: [['Updating'], ['Updating'], ['InService', NEW_NAME]] });
    const { code, stdout } = await cli(['deploy', '3', '--endpoint', 'chat', '--wait'], { clients: factory, sleep: async (ms) => void sleeps.push(ms) });
    expect(stdout).toMatch(/\[Updating\] endpoint chat\n\[InService\] endpoint chat\ndeployed: chat is InService on chat-[0-9a-f]{8}\n$/);
    expect(code).toBe(0);
    expect(sleeps).toEqual([30_000, 30_000, 30_000]);
  });

  test('--wait exits 1 with "rolled back" when the endpoint is back InService on its previous config', async () => {
    const { factory } = singleModel({ statuses: [['Updating'], ['InService', 'chat-config-1']] });
    const { code, stderr } = await cli(['deploy', '3', '--endpoint', 'chat', '--wait'], { clients: factory });
    expect(stderr).toBe(
      `error: chat rolled back: it is InService on chat-config-1, not ${NEW_NAME} (an auto-rollback alarm fired or the new fleet failed); the rollback stands\n`,
    );
    expect(code).toBe(1);
  });

  test('--wait exits 1 when the endpoint fails', async () => {
    // the fake reports no FailureReason: the message says so
    const { factory } = singleModel({ statuses: [['Updating'], ['Failed']] });
    const { code, stderr } = await cli(['deploy', '3', '--endpoint', 'chat', '--wait', '--json'], { clients: factory });
    expect(stderr).toBe('error: chat is Failed: no reason given\n');
    expect(code).toBe(1);
  });

  test('--wait gives up after 90 minutes of polls, saying SageMaker carries on', async () => {
    const sleeps: number[] = [];
    const { factory } = singleModel({ statuses: [['Updating']] });
    const { code, stderr } = await cli(['deploy', '3', '--endpoint', 'chat', '--wait'], { clients: factory, sleep: async (ms) => void sleeps.push(ms) });
    expect(stderr).toBe(
      'error: endpoint chat is still Updating after 1h 30m: SageMaker finishes or rolls back the deployment on its own; wait again with the same command (it sends nothing twice)\n',
    );
    expect(code).toBe(1);
    expect(sleeps.length).toBe(180);
  });

  test('fails when --adapter is given for a single-model endpoint, before writing anything', async () => {
    const { factory, calls } = singleModel();
    const { code, stderr } = await cli(['deploy', '3', '--endpoint', 'chat', '--adapter', 'support'], { clients: factory });
    expect(stderr).toBe('error: endpoint chat serves one model (its variant names model chat-model-1), not adapters as inference components: drop --adapter to roll it to the merged model\n');
    expect(code).toBe(1);
    expect(writes(calls)).toEqual([]);
  });
});

describe('deploy to an inference-component endpoint', () => {
  const SPEC = { BaseInferenceComponentName: 'chat-base', Container: { ArtifactUrl: `${MODEL_DATA}adapter.tar.gz` } };

  test('creates the adapter component on the base component (the one without BaseInferenceComponentName)', async () => {
    const { factory, calls } = adapters();
    const { code, stdout } = await cli(['deploy', '3', '--endpoint', 'chat', '--adapter', 'support'], { clients: factory });
    expect(writes(calls)).toEqual([{ command: 'CreateInferenceComponentCommand', input: { InferenceComponentName: 'support', EndpointName: 'chat', Specification: SPEC } }]);
    expect(calls.find((c) => c.command === 'ListInferenceComponentsCommand')!.input).toEqual({ EndpointNameEquals: 'chat' });
    expect(stdout).toBe(
      `deploying model version 3 to chat (inference-components): ${MODEL_DATA}adapter.tar.gz\n` +
        '  CreateInferenceComponent support on chat-base\n' +
        'follow it: tuneyard deploy 3 --endpoint chat --adapter support --wait\n',
    );
    expect(code).toBe(0);
  });

  test('running it again updates the adapter component instead of creating it', async () => {
    const { factory, calls } = adapters({ adapter: { status: 'InService', artifact: `${MODEL_DATA}adapter.tar.gz` } });
    const { code } = await cli(['deploy', '3', '--endpoint', 'chat', '--adapter', 'support'], { clients: factory });
    expect(writes(calls)).toEqual([{ command: 'UpdateInferenceComponentCommand', input: { InferenceComponentName: 'support', Specification: SPEC } }]);
    expect(code).toBe(0);
  });

  test('an adapter already Updating to this model is waited for, not sent again; to another model it is refused', async () => {
    const same = adapters({ adapter: { status: 'Updating', artifact: `${MODEL_DATA}adapter.tar.gz` } });
    const waited = await cli(['deploy', '3', '--endpoint', 'chat', '--adapter', 'support'], { clients: same.factory });
    expect(waited.stdout).toContain('adapter support is already Updating to this model: nothing sent\n');
    expect(writes(same.calls)).toEqual([]);

    const other = adapters({ adapter: { status: 'Updating' } });
    const refused = await cli(['deploy', '3', '--endpoint', 'chat', '--adapter', 'support'], { clients: other.factory });
    expect(refused.stderr).toBe('error: adapter support on chat is Updating to another model (s3://tuneyard-data/artifacts/old/adapter.tar.gz): deploy when it is InService\n');
    expect(refused.code).toBe(1);
    expect(writes(other.calls)).toEqual([]);
  });

  test('fails without --adapter, naming the flag, before writing anything', async () => {
    const { factory, calls } = adapters();
    const { code, stderr } = await cli(['deploy', '3', '--endpoint', 'chat'], { clients: factory });
    expect(stderr).toBe('error: endpoint chat serves adapters as inference components: name the adapter component with --adapter (an existing one is updated)\n');
    expect(code).toBe(1);
    expect(writes(calls)).toEqual([]);
  });

  test('fails when --adapter names the base component', async () => {
    const { factory, calls } = adapters();
    const { code, stderr } = await cli(['deploy', '3', '--endpoint', 'chat', '--adapter', 'chat-base'], { clients: factory });
    expect(stderr).toBe("error: chat-base is the base model's component on chat, not an adapter: choose another adapter name (--adapter)\n");
    expect(code).toBe(1);
    expect(writes(calls)).toEqual([]);
  });

  test('fails when --adapter names a component of another endpoint, before writing anything', async () => {
    // GIVEN an adapter named "support" on another endpoint (ListInferenceComponents of chat does not show it)
    const { factory, calls } = adapters({ adapter: { status: 'InService', endpoint: 'other' } });
    // WHEN
    const { code, stderr } = await cli(['deploy', '3', '--endpoint', 'chat', '--adapter', 'support'], { clients: factory });
    // THEN
    expect(stderr).toBe('error: the name support is taken by a component of endpoint other: choose another adapter name (--adapter)\n');
    expect(code).toBe(1);
    expect(writes(calls)).toEqual([]);
  });

  test('--wait exits 0 when the adapter is InService, 1 when it is Failed', async () => {
    const ok = adapters({ statuses: [['Creating'], ['InService']] });
    const deployed = await cli(['deploy', '3', '--endpoint', 'chat', '--adapter', 'support', '--wait'], { clients: ok.factory });
    expect(deployed.stdout).toMatch(/\[Creating\] adapter support\n\[InService\] adapter support\ndeployed: adapter support is InService on chat\n$/);
    expect(deployed.code).toBe(0);

    const bad = adapters({ statuses: [['Creating'], ['Failed', 'adapter_config.json not found in the archive']] });
    const failed = await cli(['deploy', '3', '--endpoint', 'chat', '--adapter', 'support', '--wait', '--json'], { clients: bad.factory });
    expect(failed.stderr).toBe('error: adapter support on chat is Failed: adapter_config.json not found in the archive\n');
    expect(JSON.parse(failed.stdout)).toMatchObject({ form: 'inference-components', adapter: 'support', outcome: 'failed', status: 'Failed' });
    expect(failed.code).toBe(1);
  });
});

describe('deploy refuses', () => {
  test('a rejected model, even with --approve', async () => {
    const { factory, calls } = singleModel({ approval: 'Rejected' });
    const { code, stderr } = await cli(['deploy', '3', '--endpoint', 'chat', '--approve'], { clients: factory });
    expect(stderr).toBe('error: model version 3 was rejected (eval_loss regressed): not deploying it; pick another with `tuneyard models`\n');
    expect(code).toBe(1);
    expect(writes(calls)).toEqual([]);
  });

  test('a reward model (lineage kind=reward), even with --approve: it scores text and generates none', async () => {
    const { factory, calls } = singleModel({ approval: 'PendingManualApproval', kind: 'reward' });
    const { code, stderr } = await cli(['deploy', '3', '--endpoint', 'chat', '--approve'], { clients: factory });
    expect(stderr).toBe('error: model version 3 is a reward model (kind=reward): it scores text and generates none, so a vLLM endpoint does not serve it; RL runs name it as their reward model (tuneyard train --method rloo --reward-model 3)\n');
    expect(code).toBe(1);
    expect(writes(calls)).toEqual([]);
  });

  test('an unapproved model without --approve, with the fix', async () => {
    const { factory, calls } = singleModel({ approval: 'PendingManualApproval' });
    const { code, stderr } = await cli(['deploy', '3', '--endpoint', 'chat'], { clients: factory });
    expect(stderr).toBe('error: model version 3 is PendingManualApproval, not Approved: approve it with --approve or in the registry\n');
    expect(code).toBe(1);
    expect(writes(calls)).toEqual([]);
  });

  test('with --approve, a pending model is approved first, then deployed', async () => {
    const { factory, calls } = singleModel({ approval: 'PendingManualApproval' });
    const { code, stdout } = await cli(['deploy', 'arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard-models/3', '--endpoint', 'chat', '--approve'], { clients: factory });
    expect(writes(calls).map((c) => c.command)).toEqual(['UpdateModelPackageCommand', 'CreateModelCommand', 'CreateEndpointConfigCommand', 'UpdateEndpointCommand']);
    expect(writes(calls)[0].input).toEqual({ ModelPackageArn: PACKAGE_ARN, ModelApprovalStatus: 'Approved', ApprovalDescription: 'approved with `tuneyard deploy --approve` for chat' });
    expect(stdout).toMatch(/^approved model version 3\ndeploying model version 3 to chat/);
    expect(code).toBe(0);
  });

  test('an endpoint that does not exist, before approving anything', async () => {
    const { factory, calls } = singleModel({ approval: 'PendingManualApproval' });
    const { code, stderr } = await cli(['deploy', '3', '--endpoint', 'nope', '--approve'], { clients: factory });
    expect(stderr).toBe("error: endpoint nope not found: check --endpoint, --region and --profile (the plane's EndpointName output names its endpoint)\n");
    expect(code).toBe(1);
    expect(writes(calls)).toEqual([]);
  });

  test('a missing --endpoint is a usage error', async () => {
    const { code, stderr } = await cli(['deploy', '3']);
    expect(stderr).toMatch(/^error: required option '--endpoint <name>' not specified/);
    expect(code).toBe(64); // usage errors exit 64 (EX_USAGE)
  });
});

describe('deploymentName', () => {
  test('is <endpoint>-<first 8 hex of sha256(package ARN)>, at most 63 characters', () => {
    expect(deploymentName('chat', PACKAGE_ARN)).toBe(NEW_NAME);
    const long = deploymentName('e'.repeat(63), PACKAGE_ARN);
    expect(long).toHaveLength(63);
    expect(long).toBe(`${'e'.repeat(54)}-${NEW_NAME.slice(-8)}`);
  });
});

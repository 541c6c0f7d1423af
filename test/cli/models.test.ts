/**
 * `tuneyard models` and `tuneyard models show` against moto, with model packages registered by the pipeline's
 * real Register state (ModelRegistry.registerState, run locally on the plan PlanRun makes): their lineage is what
 * the pipeline writes, not a copy of its keys. moto stores and answers CustomerMetadataProperties as SageMaker does.
 */
import { CreateModelPackageCommand, CreateModelPackageGroupCommand, DescribeModelPackageCommand, ModelPackageSummary } from '@aws-sdk/client-sagemaker';
import { LINEAGE_KEYS } from '../../constructs/model-registry';
import { createAwsClients, MODEL_DESCRIBE_CONCURRENCY } from '../../lib/cli/run-client';
import { parseRunRequest, runIdFor } from '../../lib/run-request';
import { MotoPlane, startMotoPlane } from './moto-plane';
import { PLAN_RUN_ENV, REGISTER_IMAGE, registerState, RegisteredRun } from './register-state';
import { awsError, cli, fakeClients, PLANE_OUTPUTS } from './support';

const BUCKET = 'tuneyard-data-models';
const GROUP = 'tuneyard-models';
const BASE = `s3://${BUCKET}/base-models/qwen2.5-0.5b-instruct/`;
let plane: MotoPlane;
const factory = () => plane.clients;

const REWARD_REQUEST = { dataset: { name: 'prefs', sha256: 'b'.repeat(64) }, baseModel: BASE, recipe: { method: 'reward' } };
const REWARD_RUN_ID = runIdFor(parseRunRequest(REWARD_REQUEST));
const LORA_REQUEST = { dataset: { name: 'support-chats', sha256: 'a'.repeat(64) }, baseModel: BASE, recipe: { method: 'lora', loraR: 8 } };
const LORA_RUN_ID = runIdFor(parseRunRequest(LORA_REQUEST));
let reward: RegisteredRun;
let rloo: RegisteredRun;
let lora: RegisteredRun;
let rlooRunId: string;

beforeAll(async () => {
  plane = await startMotoPlane({ bucket: BUCKET, outputs: { ModelPackageGroupName: GROUP } });
  await plane.clients.sagemaker.send(new CreateModelPackageGroupCommand({ ModelPackageGroupName: GROUP }));
  // version 1: registered before the Register state wrote lineage (a description and model data only)
  await plane.clients.sagemaker.send(
    new CreateModelPackageCommand({
      ModelPackageGroupName: GROUP,
      ModelPackageDescription: 'greetings qlora v1',
      ModelApprovalStatus: 'Approved',
      InferenceSpecification: {
        Containers: [{ Image: REGISTER_IMAGE, ModelDataUrl: `s3://${BUCKET}/artifacts/old-run/model.tar.gz` }],
        SupportedContentTypes: ['application/json'],
        SupportedResponseMIMETypes: ['application/json'],
      },
    }),
  );
  const registerRun = registerState(GROUP, plane.clients.sagemaker, { ...PLAN_RUN_ENV, bucketName: BUCKET });
  // version 2: a reward model; 3: an RLOO run rewarded by version 2 (named by its ARN); 4: a LoRA run
  reward = await registerRun(REWARD_REQUEST, { evalLossRatio: null, forgettingIncrease: 0.01 });
  const rlooRequest = { dataset: { name: 'prompts', sha256: 'c'.repeat(64) }, baseModel: BASE, recipe: { method: 'rloo' }, rewardModel: reward.arn };
  rlooRunId = runIdFor(parseRunRequest(rlooRequest));
  rloo = await registerRun(rlooRequest, { evalLossRatio: 0.97, forgettingIncrease: 0.02 });
  lora = await registerRun(LORA_REQUEST, { evalLossRatio: 0.85, forgettingIncrease: 0.03 });
}, 120_000);

afterAll(async () => {
  await plane?.stop();
});

describe('tuneyard models', () => {
  test('lists each version with its kind, method, run and reward model, newest first; a version without lineage shows -', async () => {
    const { code, stdout, stderr } = await cli(['models'], { clients: factory });
    expect(stderr).toBe('');
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^VERSION +KIND +METHOD +APPROVAL +CREATED +RUN +REWARD MODEL +DESCRIPTION$/);
    const T = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ';
    expect(lines.slice(1)).toEqual([
      // the LoRA run: rewarded by nothing; its description's recipe (the run has its own column)
      expect.stringMatching(new RegExp(`^4 +generative +lora +PendingManualApproval +${T} +${LORA_RUN_ID} +- +recipe loraR=8 method=lora$`)),
      // the RLOO run names the reward model by its version in this group
      expect.stringMatching(new RegExp(`^3 +generative +rloo +PendingManualApproval +${T} +${rlooRunId} +2 +recipe method=rloo$`)),
      expect.stringMatching(new RegExp(`^2 +reward +reward +PendingManualApproval +${T} +${REWARD_RUN_ID} +- +recipe method=reward$`)),
      expect.stringMatching(new RegExp(`^1 +- +- +Approved +${T} +- +- +greetings qlora v1$`)),
    ]);
    expect(code).toBe(0);
  });

  test('--kind reward lists the reward models only; --kind generative the others with lineage', async () => {
    const rewards = await cli(['models', '--kind', 'reward'], { clients: factory });
    expect(rewards.stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/ +/).slice(0, 3))).toEqual([['2', 'reward', 'reward']]);
    expect(rewards.code).toBe(0);
    const generative = await cli(['models', '--kind', 'generative'], { clients: factory });
    expect(generative.stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/ +/).slice(0, 3))).toEqual([
      ['4', 'generative', 'lora'],
      ['3', 'generative', 'rloo'],
    ]);
  });

  test('--json carries each version\'s lineage as the Register state wrote it (null without one)', async () => {
    const { code, stdout } = await cli(['--json', 'models'], { clients: factory });
    const listed = JSON.parse(stdout);
    expect(listed.map((m: { version: number }) => m.version)).toEqual([4, 3, 2, 1]);
    expect(listed.map((m: { lineage: unknown }) => m.lineage)).toEqual([
      lora.sent.CustomerMetadataProperties,
      rloo.sent.CustomerMetadataProperties,
      reward.sent.CustomerMetadataProperties,
      null,
    ]);
    expect(listed[1]).toMatchObject({ arn: rloo.arn, approval: 'PendingManualApproval', modelData: rloo.plan.modelArtifactS3Uri, description: rloo.sent.ModelPackageDescription });
    // every key the Register state writes is there
    expect(Object.keys(listed[1].lineage).sort()).toEqual([...LINEAGE_KEYS].sort());
    expect(code).toBe(0);
  });

  test('fails with a usage error on an unknown --kind', async () => {
    const { code, stderr } = await cli(['models', '--kind', 'policy'], { clients: factory });
    expect(stderr).toMatch(/option '--kind <kind>' argument 'policy' is invalid\. Allowed choices are reward, generative\./);
    expect(code).toBe(64);
  });

  test('a version whose lineage predates its kind (registered before reward models) is generative: listed so, by --kind generative, and by models show', async () => {
    // GIVEN a qlora model registered with the lineage of the time, which had no kind key (every model was generative)
    const arn = 'arn:aws:sagemaker:us-east-1:123456789012:model-package/g/5';
    const older = { runId: 'greetings-qlora-0123456789ab', baseModel: BASE, datasetName: 'greetings', datasetSha256: 'd'.repeat(64), method: 'qlora', trainingJobName: 'tuneyard-greetings-qlora-0123456789ab-train', evalLossRatio: '0.91', evalReport: `s3://${BUCKET}/eval-reports/greetings-qlora-0123456789ab/eval.json` };
    const { factory: registry } = fakeClients({
      ...PLANE_OUTPUTS,
      ListModelPackagesCommand: () => ({ ModelPackageSummaryList: [{ ModelPackageArn: arn, ModelPackageVersion: 5 }] }),
      DescribeModelPackageCommand: () => ({ ModelPackageArn: arn, ModelPackageVersion: 5, ModelPackageGroupName: 'g', ModelApprovalStatus: 'Approved', CustomerMetadataProperties: older }),
    });
    // WHEN it is listed, filtered and shown
    const listed = await cli(['models'], { clients: registry });
    const generative = await cli(['models', '--kind', 'generative'], { clients: registry });
    const rewards = await cli(['models', '--kind', 'reward'], { clients: registry });
    const shown = await cli(['models', 'show', '5'], { clients: registry });
    // THEN it is generative in each, and --json keeps the lineage as registered
    expect(listed.stdout.trimEnd().split('\n')[1].split(/ +/).slice(0, 3)).toEqual(['5', 'generative', 'qlora']);
    expect(generative.stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/ +/).slice(0, 3))).toEqual([['5', 'generative', 'qlora']]);
    expect(rewards.stdout).toBe('no models of kind reward among the 1 registered: a run with --method reward registers one\n');
    expect(shown.stdout).toMatch(/^ {2}kind +generative$/m);
    expect(JSON.parse((await cli(['--json', 'models'], { clients: registry })).stdout)[0].lineage).toEqual(older);
  });

  test('says when no model is of the kind asked for', async () => {
    const { factory: empty } = fakeClients({
      ...PLANE_OUTPUTS,
      ListModelPackagesCommand: () => ({ ModelPackageSummaryList: [{ ModelPackageArn: 'arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1', ModelPackageVersion: 1 }] }),
      DescribeModelPackageCommand: () => ({ ModelPackageArn: 'arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1', ModelPackageVersion: 1 }),
    });
    const { code, stdout } = await cli(['models', '--kind', 'reward'], { clients: empty });
    expect(stdout).toBe('no models of kind reward among the 1 registered: a run with --method reward registers one\n');
    expect(code).toBe(0);
  });
});

describe('tuneyard models show', () => {
  test('shows an RLOO model\'s lineage: what it is, its data, the reward model it was trained against, its job, report and model data', async () => {
    const { code, stdout, stderr } = await cli(['models', 'show', '3'], { clients: factory });
    expect(stderr).toBe('');
    const lineage = rloo.sent.CustomerMetadataProperties!;
    const rows = Object.fromEntries(
      stdout
        .trimEnd()
        .split('\n')
        .slice(1)
        .map((l) => /^ {2}(\S+(?: \S+)*?) {2,}(.*)$/.exec(l)!.slice(1, 3)),
    );
    expect(stdout.split('\n')[0]).toBe(`model version 3: ${rloo.arn}`);
    expect(rows).toMatchObject({
      kind: 'generative',
      method: 'rloo',
      run: rlooRunId,
      'base model': BASE,
      dataset: `prompts@${'c'.repeat(64)}`,
      'reward model': `version 2 (${reward.arn})`,
      'training job': rloo.plan.trainingJobName,
      'eval loss ratio': '0.97',
      'forgetting increase': '0.02',
      'eval report': rloo.plan.evalReport.s3Uri,
      approval: 'PendingManualApproval',
      'model data': rloo.plan.modelArtifactS3Uri,
    });
    // every lineage value the Register state wrote is shown
    for (const key of LINEAGE_KEYS) expect(stdout).toContain(lineage[key]);
    expect(code).toBe(0);
  });

  test('shows a reward model by ARN, trained against no reward model; a report figure it did not measure shows -', async () => {
    const { code, stdout } = await cli(['models', 'show', reward.arn], { clients: factory });
    expect(stdout).toMatch(/^ {2}kind +reward$/m);
    expect(stdout).toMatch(/^ {2}reward model +none$/m);
    expect(stdout).toMatch(/^ {2}eval loss ratio +-$/m);
    expect(stdout).toMatch(new RegExp(`^ {2}dataset +prefs@${'b'.repeat(64)}$`, 'm'));
    expect(code).toBe(0);
  });

  test('--json prints the package and its lineage', async () => {
    const { code, stdout } = await cli(['models', 'show', '2', '--json'], { clients: factory });
    expect(JSON.parse(stdout)).toMatchObject({
      version: 2,
      arn: reward.arn,
      approval: 'PendingManualApproval',
      modelData: reward.plan.modelArtifactS3Uri,
      lineage: reward.sent.CustomerMetadataProperties,
    });
    expect(code).toBe(0);
  });

  test('shows a model registered without lineage with - and says so', async () => {
    const { code, stdout } = await cli(['models', 'show', '1'], { clients: factory });
    expect(stdout).toContain('  registered without lineage (kind, method, run): only its package fields are known\n');
    expect(stdout).toMatch(/^ {2}kind +-$/m);
    expect(stdout).toMatch(/^ {2}reward model +-$/m);
    expect(stdout).toMatch(/^ {2}approval +Approved$/m);
    expect(stdout).toMatch(new RegExp(`^ {2}model data +s3://${BUCKET}/artifacts/old-run/model\\.tar\\.gz$`, 'm'));
    expect(stdout).toMatch(/^ {2}description +greetings qlora v1$/m);
    expect(JSON.parse((await cli(['--json', 'models', 'show', '1'], { clients: factory })).stdout).lineage).toBeNull();
    expect(code).toBe(0);
  });

  test('fails with exit 1 on an unknown model and exit 64 without one', async () => {
    const unknown = await cli(['models', 'show', '9'], { clients: factory });
    expect(unknown.stderr).toBe(`error: model version 9 not found in ${GROUP}: see \`tuneyard models\`\n`);
    expect(unknown.code).toBe(1);
    const missingArn = await cli(['models', 'show', `arn:aws:sagemaker:us-east-1:123456789012:model-package/${GROUP}/99`], { clients: factory });
    expect(missingArn.stderr).toMatch(/^error: model arn:.*\/99 not found: list models with `tuneyard models`\n$/);
    expect(missingArn.code).toBe(1);
    const missing = await cli(['models', 'show'], { clients: factory });
    expect(missing.stderr).toMatch(/^error: missing required argument 'model'/);
    expect(missing.code).toBe(64);
  });
});

describe('models usage', () => {
  test('`models show` takes no --kind, and its help does not list it; `models` refuses another argument', async () => {
    const help = await cli(['models', 'show', '--help']);
    expect(help.stdout).toMatch(/^Usage: tuneyard models show \[options\] <model>$/m);
    expect(help.stdout).toContain('--json');
    expect(help.stdout).not.toContain('--kind');
    expect((await cli(['models', '--help'])).stdout).toMatch(/^ {2}--kind <kind> +only the models of this lineage kind/m);
    const kind = await cli(['models', 'show', '3', '--kind', 'reward'], { clients: factory });
    expect([kind.code, kind.stdout, kind.stderr]).toEqual([64, '', 'error: --kind reward filters the listing (tuneyard models --kind reward); `models show` shows the one model named: remove --kind\n']);
    const list = await cli(['models', 'list'], { clients: factory });
    expect([list.code, list.stdout]).toEqual([64, '']);
  });
});

describe('reading the lineage of many versions', () => {
  test('leaves out a version deleted between the listing and its description', async () => {
    const arn = (v: number) => `arn:aws:sagemaker:us-east-1:123456789012:model-package/${GROUP}/${v}`;
    const { factory: racing } = fakeClients({
      ...PLANE_OUTPUTS,
      ListModelPackagesCommand: () => ({ ModelPackageSummaryList: [2, 1].map((v) => ({ ModelPackageArn: arn(v), ModelPackageVersion: v })) }),
      DescribeModelPackageCommand: ({ ModelPackageName }) => {
        if (ModelPackageName === arn(2)) throw awsError('ValidationException', `Model Package ${arn(2)} does not exist.`);
        return { ModelPackageArn: arn(1), ModelPackageVersion: 1, ModelApprovalStatus: 'Approved' };
      },
    });
    const { code, stdout } = await cli(['models'], { clients: racing });
    expect(stdout.trimEnd().split('\n').slice(1)).toEqual([expect.stringMatching(/^1 +- +- +Approved /)]);
    expect(code).toBe(0);
  });

  test('the CLI\'s SageMaker client rides out a burst of throttling of DescribeModelPackage, which the SDK\'s default 3 attempts give up on', async () => {
    // GIVEN the CLI's real SageMaker client, whose HTTP answers ThrottlingException to the first 3 requests
    const saved = { ...process.env };
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing' });
    const { sagemaker } = createAwsClients({ region: 'us-east-1' });
    const arn = `arn:aws:sagemaker:us-east-1:123456789012:model-package/${GROUP}/7`;
    let requests = 0;
    const answer = (statusCode: number, headers: Record<string, string>, body: object) => ({ response: { statusCode, headers, body: new TextEncoder().encode(JSON.stringify(body)) } });
    (sagemaker.config as { requestHandler: unknown }).requestHandler = {
      handle: async () =>
        ++requests <= 3
          ? answer(400, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-errortype': 'ThrottlingException' }, { __type: 'ThrottlingException', message: 'Rate exceeded' })
          : answer(200, { 'content-type': 'application/x-amz-json-1.1' }, { ModelPackageArn: arn, ModelPackageVersion: 7 }),
    };
    try {
      // WHEN one version is described
      const described = await sagemaker.send(new DescribeModelPackageCommand({ ModelPackageName: arn }));
      // THEN the 4th attempt answers it
      expect({ version: described.ModelPackageVersion, requests }).toEqual({ version: 7, requests: 4 });
    } finally {
      sagemaker.destroy();
      process.env = saved;
    }
  }, 30_000);

  test(`describes every listed version across pages, ${MODEL_DESCRIBE_CONCURRENCY} at a time, and keeps the listing's order`, async () => {
    // GIVEN 20 versions on two pages, each DescribeModelPackage answering after a delay
    const summaries: ModelPackageSummary[] = Array.from({ length: 20 }, (_, i) => ({
      ModelPackageArn: `arn:aws:sagemaker:us-east-1:123456789012:model-package/${GROUP}/${20 - i}`,
      ModelPackageVersion: 20 - i,
      ModelPackageStatus: 'Completed',
      CreationTime: new Date(Date.UTC(2026, 10, 20 - i)),
    }));
    let inFlight = 0;
    let most = 0;
    const { factory: many, calls } = fakeClients({
      ...PLANE_OUTPUTS,
      ListModelPackagesCommand: ({ NextToken }) => (NextToken ? { ModelPackageSummaryList: summaries.slice(10) } : { ModelPackageSummaryList: summaries.slice(0, 10), NextToken: 'page-2' }),
      DescribeModelPackageCommand: async ({ ModelPackageName }) => {
        most = Math.max(most, ++inFlight);
        const version = Number(String(ModelPackageName).split('/').pop());
        // later versions answer first: the order must come from the listing
        await new Promise((resolve) => setTimeout(resolve, version % 3));
        inFlight--;
        return { ModelPackageArn: ModelPackageName, ModelPackageVersion: version, ModelPackageGroupName: GROUP, CustomerMetadataProperties: { runId: `run-${version}`, kind: version % 2 ? 'reward' : 'generative', method: version % 2 ? 'reward' : 'lora' } };
      },
    });
    // WHEN
    const { code, stdout } = await cli(['--json', 'models'], { clients: many });
    // THEN
    expect(JSON.parse(stdout).map((m: { version: number; lineage: { runId: string } }) => [m.version, m.lineage.runId])).toEqual(summaries.map((s) => [s.ModelPackageVersion, `run-${s.ModelPackageVersion}`]));
    expect(calls.filter((c) => c.command === 'DescribeModelPackageCommand')).toHaveLength(20);
    expect(most).toBe(MODEL_DESCRIBE_CONCURRENCY);
    expect(code).toBe(0);
  });
});

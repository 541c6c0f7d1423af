/**
 * The CLI's AWS commands with the real SDK clients against a moto server on 127.0.0.1.
 *
 * What is simulated (moto is not AWS):
 * - The plane is a stand-in CloudFormation stack: an S3 bucket and a one-state (Pass) state
 *   machine, with the outputs the real stack exports; the model package group is made by the test.
 * - moto's Step Functions does not run the state machine: an execution stays RUNNING and its
 *   history is moto's canned one (a Pass state called "A State"), so the stage read from it is that.
 * - moto's training jobs are born Completed with a canned metric; moto has no StopTrainingJob
 *   (the in-progress cancel path is covered with fake clients in program.test.ts).
 * - moto honours `If-None-Match: *` on PutObject (412 PreconditionFailed) — asserted below, since
 *   the CLI's write-once path relies on it.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateStackCommand } from '@aws-sdk/client-cloudformation';
import { CreateLogGroupCommand, CreateLogStreamCommand, PutLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  CreateEndpointCommand,
  CreateEndpointConfigCommand,
  CreateModelCommand,
  CreateModelPackageCommand,
  CreateModelPackageGroupCommand,
  CreateTrainingJobCommand,
  DeleteEndpointCommand,
  DescribeEndpointCommand,
  DescribeEndpointConfigCommand,
  DescribeModelCommand,
  DescribeModelPackageCommand,
  SageMakerClient,
} from '@aws-sdk/client-sagemaker';
import { AwsClients } from '../../lib/cli/run-client';
import { parseRunRequest, runIdFor } from '../../lib/run-request';
import { MotoServer, startMoto } from '../support/moto';
import { motoClients } from './moto-plane';
import { cli } from './support';

const REGION = 'us-east-1';
const BUCKET = 'tuneyard-data-moto';
const GROUP = 'tuneyard-models';
let moto: MotoServer;
let clients: AwsClients;
let tmp: string;
const factory = () => clients;

beforeAll(async () => {
  moto = await startMoto(REGION);
  clients = motoClients(moto);
  await clients.cloudformation.send(new CreateStackCommand({ StackName: 'Tuneyard', TemplateBody: JSON.stringify(PLANE_STAND_IN) }));
  await clients.sagemaker.send(new CreateModelPackageGroupCommand({ ModelPackageGroupName: GROUP }));
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-moto-'));
}, 60_000);

afterAll(async () => {
  for (const client of Object.values(clients ?? {})) client.destroy();
  await moto?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** A CloudFormation stand-in for the plane: the bucket, a Pass state machine, the outputs. */
const PLANE_STAND_IN = {
  Resources: {
    Data: { Type: 'AWS::S3::Bucket', Properties: { BucketName: BUCKET } },
    Pipeline: {
      Type: 'AWS::StepFunctions::StateMachine',
      Properties: {
        StateMachineName: 'TuneyardPipeline',
        RoleArn: 'arn:aws:iam::123456789012:role/TuneyardPipeline',
        DefinitionString: JSON.stringify({ StartAt: 'PlanRun', States: { PlanRun: { Type: 'Pass', End: true } } }),
      },
    },
  },
  Outputs: {
    StateMachineArn: { Value: { Ref: 'Pipeline' } },
    DataBucketName: { Value: { Ref: 'Data' } },
    ModelPackageGroupName: { Value: GROUP },
    TrainingJobPrefix: { Value: 'tuneyard-' },
  },
};

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

describe('datasets', () => {
  let train: string;
  let evalFile: string;
  let version: string;

  beforeAll(() => {
    // 17 MiB of training data: more than one 16 MiB part, so the upload is multipart.
    train = path.join(tmp, 'train.jsonl');
    const row = (i: number) => JSON.stringify({ messages: [{ role: 'user', content: `question ${i} ${'q'.repeat(400)}` }, { role: 'assistant', content: `answer ${i}` }] }) + '\n';
    const rows: string[] = [];
    for (let size = 0, i = 0; size < 17 * 1024 * 1024; i++) {
      rows.push(row(i));
      size += rows[rows.length - 1].length;
    }
    fs.writeFileSync(train, rows.join(''));
    evalFile = path.join(tmp, 'eval.jsonl');
    fs.writeFileSync(evalFile, row(-1) + row(-2));
    version = sha256(sha256(fs.readFileSync(train)) + sha256(fs.readFileSync(evalFile)));
  });

  test('upload writes train.jsonl, eval.jsonl and manifest.json under datasets/<name>/<sha256>/', async () => {
    const { code, stdout, stderr } = await cli(['upload', train, '--eval', evalFile, '--name', 'support-chats'], { clients: factory });

    expect(stderr).toBe('');
    expect(stdout).toContain(`uploaded support-chats@${version}\n  s3://${BUCKET}/datasets/support-chats/${version}/\n`);
    expect(code).toBe(0);
    const listed = await clients.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `datasets/support-chats/${version}/` }));
    expect(listed.Contents?.map((o) => o.Key).sort()).toEqual(['eval.jsonl', 'manifest.json', 'train.jsonl'].map((k) => `datasets/support-chats/${version}/${k}`));
    const trainObject = await clients.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `datasets/support-chats/${version}/train.jsonl` }));
    expect(sha256(Buffer.from(await trainObject.Body!.transformToByteArray()))).toBe(sha256(fs.readFileSync(train)));
    const manifest = JSON.parse(await (await clients.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `datasets/support-chats/${version}/manifest.json` }))).Body!.transformToString());
    expect(manifest).toMatchObject({
      name: 'support-chats',
      sha256: version,
      hash: 'sha256(train.sha256 + eval.sha256)',
      format: 'chat',
      files: { train: { key: 'train.jsonl', sha256: sha256(fs.readFileSync(train)) }, eval: { key: 'eval.jsonl', rows: 2 } },
    });
  });

  test('uploading the same bytes again is a no-op that prints the existing version', async () => {
    const key = `datasets/support-chats/${version}/manifest.json`;
    const before = await clients.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));

    const { code, stdout } = await cli(['upload', train, '--eval', evalFile, '--name', 'support-chats'], { clients: factory });

    expect(stdout).toBe(`support-chats@${version} already exists: nothing uploaded\n  s3://${BUCKET}/datasets/support-chats/${version}/\n`);
    expect(code).toBe(0);
    const after = await clients.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    expect(after.ETag).toBe(before.ETag);
    expect(after.LastModified).toEqual(before.LastModified);
  });

  test('moto refuses a second write with If-None-Match: * (412), as the bucket policy requires', async () => {
    await expect(
      clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `datasets/support-chats/${version}/eval.jsonl`, Body: 'x', IfNoneMatch: '*' })),
    ).rejects.toMatchObject({ name: 'PreconditionFailed', $metadata: { httpStatusCode: 412 } });
  });

  test('an upload interrupted before its manifest completes on retry: existing files answer 412 and are kept', async () => {
    // GIVEN a version whose data files exist but whose manifest was never written
    const key = `datasets/support-chats/${version}/`;
    await clients.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: `${key}manifest.json` }));
    const trainBefore = await clients.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${key}train.jsonl` }));

    // WHEN it is uploaded again
    const { code, stdout } = await cli(['upload', train, '--eval', evalFile, '--name', 'support-chats', '--json'], { clients: factory });

    // THEN the manifest is written and the data files are the originals
    expect(JSON.parse(stdout)).toEqual({ dataset: `support-chats@${version}`, name: 'support-chats', sha256: version, uri: `s3://${BUCKET}/${key}`, created: true, overlap: 0, allowOverlap: false });
    expect(code).toBe(0);
    await clients.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${key}manifest.json` }));
    const trainAfter = await clients.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${key}train.jsonl` }));
    expect(trainAfter.LastModified).toEqual(trainBefore.LastModified);
  });

  test('a file that fails validation is not uploaded', async () => {
    const bad = path.join(tmp, 'bad.jsonl');
    fs.writeFileSync(bad, '{"text": ""}\n');
    const { code, stdout, stderr } = await cli(['upload', bad, '--name', 'bad-data'], { clients: factory });
    expect(stdout).toMatch(new RegExp(`^${bad.replace(/[.]/g, '\\.')}:1: .*\\(empty-content\\)$`, 'm'));
    expect(stderr).toContain('error: not uploaded: fix the errors above');
    expect(code).toBe(1);
    const listed = await clients.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'datasets/bad-data/' }));
    expect(listed.KeyCount ?? 0).toBe(0);
  });
});

describe('runs', () => {
  const small = () => {
    const file = path.join(tmp, 'small.jsonl');
    fs.writeFileSync(file, JSON.stringify({ prompt: 'Hi', completion: 'Hello!' }) + '\n');
    return file;
  };
  const baseModel = `s3://${BUCKET}/base-models/llama-3.1-8b/`;
  let sha: string;
  let runId: string;

  beforeAll(async () => {
    const file = small();
    sha = sha256(fs.readFileSync(file));
    const up = await cli(['upload', file, '--name', 'greetings'], { clients: factory });
    expect(up.code).toBe(0);
    // train refuses a base model folder without config.json (the staging itself is tested in stage-model.test.ts)
    await clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'base-models/llama-3.1-8b/config.json', Body: '{"model_type":"llama"}' }));
    runId = runIdFor(parseRunRequest({ dataset: { name: 'greetings', sha256: sha }, baseModel, recipe: { method: 'qlora', batchSize: 2 }, autoApprove: false, deploy: null }));
  });

  test('train resolves a bare dataset name to its newest version and starts the run with its deterministic id', async () => {
    const { code, stdout, stderr } = await cli(['train', '--dataset', 'greetings', '--base-model', baseModel, '--method', 'qlora', '--batch-size', '2'], { clients: factory });

    expect(stderr).toBe('');
    expect(stdout).toMatch(new RegExp(`^started run ${runId}\n  QLoRA of .*8B.* at maxLength 2048, batchSize 2 needs ~[\\d.]+ GiB per GPU; ml\\.g5\\.2xlarge has 24 GiB per GPU\\.\n  estimated ~\\S+ h of training on 1 x ml\\.g5\\.2xlarge: <?\\$[\\d.]+ with spot \\(<?\\$[\\d.]+ on demand\\)[^\n]*\n  watch it: tuneyard watch ${runId}\n$`));
    expect(code).toBe(0);
  });

  test('train with the same request again starts nothing and prints the existing run', async () => {
    const { code, stdout } = await cli(['train', '--dataset', `greetings@${sha}`, '--base-model', baseModel, '--method', 'qlora', '--batch-size', '2', '--json'], { clients: factory });
    const out = JSON.parse(stdout);
    expect(out).toMatchObject({ runId, existing: true, trainingJobName: `tuneyard-${runId}-train` });
    expect(out.executionArn).toBe(`arn:aws:states:${REGION}:123456789012:execution:TuneyardPipeline:${runId}`);
    expect(code).toBe(0);
    const runs = await cli(['runs', '--json'], { clients: factory });
    expect(JSON.parse(runs.stdout).filter((r: { runId: string }) => r.runId === runId)).toHaveLength(1);
  });

  test('train fails before starting anything when the dataset version does not exist', async () => {
    const { code, stderr } = await cli(['train', '--dataset', `greetings@${'0'.repeat(64)}`, '--base-model', baseModel, '--method', 'qlora'], { clients: factory });
    expect(stderr).toBe(`error: dataset greetings@${'0'.repeat(64)} not found in ${BUCKET}: upload it with \`tuneyard upload FILE --name greetings\`\n`);
    expect(code).toBe(1);
  });

  test('train refuses a run that does not fit in GPU memory, before starting anything', async () => {
    const { code, stderr } = await cli(['train', '--dataset', `greetings@${sha}`, '--base-model', baseModel, '--method', 'lora', '--instance', 'ml.g5.2xlarge', '--batch-size', '16'], { clients: factory });
    expect(stderr).toMatch(/^error: the run does not fit in GPU memory: LoRA of .*8B.* needs ~[\d.]+ GiB per GPU; ml\.g5\.2xlarge has 24 GiB per GPU: use qlora/);
    expect(code).toBe(1);
    const runs = await cli(['runs', '--json'], { clients: factory });
    expect(JSON.parse(runs.stdout).map((r: { runId: string }) => r.runId)).toEqual([runId]);
  });

  test('runs lists the run', async () => {
    const { code, stdout } = await cli(['runs'], { clients: factory });
    expect(stdout.split('\n')[0]).toMatch(/^RUN +STATUS +STARTED +DURATION$/);
    expect(stdout).toMatch(new RegExp(`^${runId} +RUNNING +\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ +-$`, 'm'));
    expect(code).toBe(0);
  });

  test('describe shows the stage, the request and the training job with its metrics', async () => {
    // GIVEN the run's training job (moto creates it Completed, with a canned metric)
    await clients.sagemaker.send(
      new CreateTrainingJobCommand({
        TrainingJobName: `tuneyard-${runId}-train`,
        AlgorithmSpecification: { TrainingImage: '123456789012.dkr.ecr.us-east-1.amazonaws.com/tuneyard-trainer:latest', TrainingInputMode: 'File' },
        RoleArn: 'arn:aws:iam::123456789012:role/TuneyardTraining',
        OutputDataConfig: { S3OutputPath: `s3://${BUCKET}/artifacts/${runId}/` },
        ResourceConfig: { InstanceType: 'ml.g5.2xlarge', InstanceCount: 1, VolumeSizeInGB: 100 },
        StoppingCondition: { MaxRuntimeInSeconds: 86400 },
      }),
    );

    const text = await cli(['describe', runId], { clients: factory });
    const json = await cli(['describe', runId, '--json'], { clients: factory });

    expect(text.stdout).toMatch(new RegExp(`^run +${runId}$`, 'm'));
    expect(text.stdout).toMatch(/^status +RUNNING$/m);
    expect(text.stdout).toMatch(/^stage +A State$/m); // moto's canned history
    expect(text.stdout).toMatch(new RegExp(`^dataset +greetings@${sha}$`, 'm'));
    expect(text.stdout).toMatch(/^instance +1 x ml\.g5\.2xlarge \(spot\)$/m);
    expect(text.stdout).toMatch(new RegExp(`^training job +tuneyard-${runId}-train: Completed/Completed$`, 'm'));
    expect(text.stdout).toMatch(/^ {2}train:progress +\d/m);
    expect(text.code).toBe(0);
    const status = JSON.parse(json.stdout);
    expect(status).toMatchObject({ runId, status: 'RUNNING', stage: 'A State', input: { dataset: { name: 'greetings', sha256: sha }, recipe: { method: 'qlora' } } });
    expect(status.trainingJob).toMatchObject({ name: `tuneyard-${runId}-train`, status: 'Completed', secondaryStatus: 'Completed' });
  });

  test('logs prints the training job\'s log lines from every stream, oldest first', async () => {
    const group = '/aws/sagemaker/TrainingJobs';
    await clients.logs.send(new CreateLogGroupCommand({ logGroupName: group }));
    const t = Date.now() - 60_000;
    for (const [stream, events] of [
      [`tuneyard-${runId}-train/algo-1-1700000000`, [{ timestamp: t, message: 'step=1 train_loss=2.0' }, { timestamp: t + 2000, message: 'step=3 train_loss=1.5' }]],
      [`tuneyard-${runId}-train/algo-2-1700000000`, [{ timestamp: t + 1000, message: 'step=2 train_loss=1.8' }]],
      ['tuneyard-other-run-train/algo-1-1700000000', [{ timestamp: t, message: 'not this run' }]],
    ] as const) {
      await clients.logs.send(new CreateLogStreamCommand({ logGroupName: group, logStreamName: stream }));
      await clients.logs.send(new PutLogEventsCommand({ logGroupName: group, logStreamName: stream, logEvents: [...events] }));
    }

    const all = await cli(['logs', runId], { clients: factory });
    const tail = await cli(['logs', runId, '--tail', '1'], { clients: factory });

    expect(all.stdout).toBe('step=1 train_loss=2.0\nstep=2 train_loss=1.8\nstep=3 train_loss=1.5\n');
    expect(all.code).toBe(0);
    expect(tail.stdout).toBe('step=3 train_loss=1.5\n');
  });

  test('cancel stops the execution (the Completed training job is left alone), and watch then exits 1', async () => {
    const { code, stdout } = await cli(['cancel', runId, '--reason', 'superseded', '--json'], { clients: factory });
    expect(JSON.parse(stdout)).toEqual({
      runId,
      executionStopped: true,
      trainingJobStopped: false,
      cause: expect.stringMatching(/^cancelled with tuneyard cancel by arn:aws:(sts|iam)::\d{12}:\S+: superseded$/),
    });
    expect(code).toBe(0);

    const watched = await cli(['watch', runId], { clients: factory });
    expect(watched.stdout).toMatch(new RegExp(`^\\[ABORTED\\] A State \\| job Completed/Completed \\| elapsed `));
    expect(watched.stderr).toBe(`run ${runId} aborted\n`);
    expect(watched.code).toBe(1);

    const again = await cli(['cancel', runId], { clients: factory });
    expect(again.stdout).toBe(`run ${runId}: execution had already ended; no training job in progress\n`);
  });

  test('describe fails with a clear message when the run does not exist', async () => {
    const { code, stderr } = await cli(['describe', 'no-such-run'], { clients: factory });
    expect(stderr).toBe('error: run no-such-run not found in plane Tuneyard: list runs with `tuneyard runs`\n');
    expect(code).toBe(1);
  });
});

describe('models', () => {
  beforeAll(async () => {
    for (const description of ['greetings qlora v1', 'greetings qlora v2']) {
      await clients.sagemaker.send(
        new CreateModelPackageCommand({
          ModelPackageGroupName: GROUP,
          ModelPackageDescription: description,
          ModelApprovalStatus: 'PendingManualApproval',
          InferenceSpecification: {
            Containers: [{ Image: '123456789012.dkr.ecr.us-east-1.amazonaws.com/vllm:latest', ModelDataUrl: `s3://${BUCKET}/artifacts/run/model.tar.gz` }],
            SupportedContentTypes: ['application/json'],
            SupportedResponseMIMETypes: ['application/json'],
          },
        }),
      );
    }
  });

  test('models lists the registered versions, newest first', async () => {
    const { code, stdout } = await cli(['models'], { clients: factory });
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^VERSION +KIND +METHOD +APPROVAL +CREATED +RUN +REWARD MODEL +DESCRIPTION$/);
    expect(lines.slice(1).map((l) => l.split(/ +/)[0])).toEqual(['2', '1']);
    // registered without lineage: kind, method, run and reward model - (test/cli/models.test.ts registers with it)
    expect(lines[1]).toMatch(/^2 +- +- +PendingManualApproval +\S+ +- +- +greetings qlora v2$/);
    expect(code).toBe(0);
  });

  test('deploy fails on an unknown version', async () => {
    const { code, stderr } = await cli(['deploy', '9', '--endpoint', 'chat'], { clients: factory });
    expect(stderr).toBe(`error: model version 9 not found in ${GROUP}: see \`tuneyard models\`\n`);
    expect(code).toBe(1);
  });
});

/**
 * `deploy` to a single-model endpoint, against moto's SageMaker with the real SDK clients.
 * What moto simulates, and what it does not (moto 5.2.5):
 * - DescribeEndpoint/DescribeEndpointConfig/DescribeModel, CreateModel and CreateEndpointConfig
 *   are moto's: the model and config the CLI creates are read back from moto below. Endpoints are
 *   born InService; endpoint configs accept only moto's older instance list (ml.g4dn.xlarge here).
 * - moto keeps no EnableNetworkIsolation (DescribeModel says false) and no LastDeploymentConfig,
 *   so the CLI copies "false" and reports SageMaker's default deployment.
 * - moto has no UpdateEndpoint: a middleware on this test's SageMaker client stands in for it,
 *   records the request, and replaces the endpoint in moto (DeleteEndpoint + CreateEndpoint on the
 *   new config): the end state of a successful blue/green update, which `--wait` then reads.
 * - Inference components are not in moto: that form is covered with fake clients (deploy.test.ts).
 */
describe('deploy to a single-model endpoint', () => {
  const ROLE = 'arn:aws:iam::123456789012:role/TuneyardServing';
  const IMAGE = '763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.33.0-lmi15.0.0-cu128';
  const MODEL_DATA = `s3://${BUCKET}/artifacts/run-1/tuneyard-run-1-train/output/model/`;
  const updates: Record<string, unknown>[] = [];
  let packageArn: string;
  let name: string;
  let deployClients: AwsClients;

  beforeAll(async () => {
    const pkg = await clients.sagemaker.send(
      new CreateModelPackageCommand({
        ModelPackageGroupName: GROUP,
        ModelPackageDescription: 'support qlora',
        ModelApprovalStatus: 'PendingManualApproval',
        InferenceSpecification: {
          Containers: [{ Image: IMAGE, ModelDataSource: { S3DataSource: { S3Uri: MODEL_DATA, S3DataType: 'S3Prefix', CompressionType: 'None' } } }],
          SupportedContentTypes: ['application/json'],
          SupportedResponseMIMETypes: ['application/json'],
        },
      }),
    );
    packageArn = pkg.ModelPackageArn!;
    name = `chat-${sha256(packageArn).slice(0, 8)}`;
    await clients.sagemaker.send(
      new CreateModelCommand({
        ModelName: 'chat-model-1',
        ExecutionRoleArn: ROLE,
        PrimaryContainer: {
          Image: IMAGE,
          Environment: { SM_VLLM_SERVED_MODEL_NAME: 'chat', SM_VLLM_MAX_MODEL_LEN: '8192' },
          ModelDataSource: { S3DataSource: { S3Uri: `s3://${BUCKET}/base-models/llama/`, S3DataType: 'S3Prefix', CompressionType: 'None' } },
        },
        VpcConfig: { Subnets: ['subnet-0a'], SecurityGroupIds: ['sg-0a'] },
      }),
    );
    await clients.sagemaker.send(
      new CreateEndpointConfigCommand({
        EndpointConfigName: 'chat-config-1',
        ProductionVariants: [{ VariantName: 'AllTraffic', ModelName: 'chat-model-1', InstanceType: 'ml.g4dn.xlarge', InitialInstanceCount: 1, InitialVariantWeight: 1 }],
      }),
    );
    await clients.sagemaker.send(new CreateEndpointCommand({ EndpointName: 'chat', EndpointConfigName: 'chat-config-1' }));

    const sagemaker = new SageMakerClient(moto.clientConfig);
    sagemaker.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName !== 'UpdateEndpointCommand') return next(args);
        const input = args.input as { EndpointName: string; EndpointConfigName: string };
        updates.push(input);
        await clients.sagemaker.send(new DeleteEndpointCommand({ EndpointName: input.EndpointName }));
        const created = await clients.sagemaker.send(new CreateEndpointCommand({ EndpointName: input.EndpointName, EndpointConfigName: input.EndpointConfigName }));
        return { output: { $metadata: {}, EndpointArn: created.EndpointArn }, response: {} } as never;
      },
      { step: 'initialize', name: 'motoUpdateEndpoint' },
    );
    deployClients = { ...clients, sagemaker };
  });

  afterAll(() => deployClients?.sagemaker.destroy());

  test('refuses the pending package without --approve and leaves it pending', async () => {
    const { code, stderr } = await cli(['deploy', packageArn, '--endpoint', 'chat'], { clients: () => deployClients });
    expect(stderr).toMatch(/^error: model version \d+ is PendingManualApproval, not Approved: approve it with --approve or in the registry\n$/);
    expect(code).toBe(1);
    const pkg = await clients.sagemaker.send(new DescribeModelPackageCommand({ ModelPackageName: packageArn }));
    expect(pkg.ModelApprovalStatus).toBe('PendingManualApproval');
  });

  test('--approve --wait approves the package, creates the model and config in moto, updates the endpoint and waits for InService', async () => {
    const { code, stdout, stderr } = await cli(['deploy', packageArn, '--endpoint', 'chat', '--approve', '--wait', '--json'], { clients: () => deployClients });

    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ endpoint: 'chat', form: 'single-model', endpointConfig: name, outcome: 'deployed', status: 'InService', model: { arn: packageArn, approvedNow: true } });
    const pkg = await clients.sagemaker.send(new DescribeModelPackageCommand({ ModelPackageName: packageArn }));
    expect(pkg.ModelApprovalStatus).toBe('Approved');
    const model = await clients.sagemaker.send(new DescribeModelCommand({ ModelName: name }));
    expect(model).toMatchObject({
      ExecutionRoleArn: ROLE,
      VpcConfig: { Subnets: ['subnet-0a'], SecurityGroupIds: ['sg-0a'] },
      PrimaryContainer: {
        Image: IMAGE,
        Environment: { SM_VLLM_SERVED_MODEL_NAME: 'chat', SM_VLLM_MAX_MODEL_LEN: '8192' },
        ModelDataSource: { S3DataSource: { S3Uri: `${MODEL_DATA}full/`, S3DataType: 'S3Prefix', CompressionType: 'None' } },
      },
    });
    const config = await clients.sagemaker.send(new DescribeEndpointConfigCommand({ EndpointConfigName: name }));
    expect(config.ProductionVariants).toEqual([expect.objectContaining({ VariantName: 'AllTraffic', ModelName: name, InstanceType: 'ml.g4dn.xlarge', InitialInstanceCount: 1 })]);
    expect(updates).toEqual([{ EndpointName: 'chat', EndpointConfigName: name }]);
    const ep = await clients.sagemaker.send(new DescribeEndpointCommand({ EndpointName: 'chat' }));
    expect(ep).toMatchObject({ EndpointStatus: 'InService', EndpointConfigName: name });
  });

  test('deploying the same package again sends nothing', async () => {
    const { code, stdout } = await cli(['deploy', packageArn, '--endpoint', 'chat'], { clients: () => deployClients });
    expect(stdout).toContain(`chat already runs ${name}: nothing sent\n`);
    expect(code).toBe(0);
    expect(updates).toHaveLength(1);
  });

  test('fails with a clear message when the endpoint does not exist', async () => {
    const { code, stderr } = await cli(['deploy', packageArn, '--endpoint', 'missing'], { clients: () => deployClients });
    expect(stderr).toBe("error: endpoint missing not found: check --endpoint, --region and --profile (the plane's EndpointName output names its endpoint)\n");
    expect(code).toBe(1);
  });
});

describe('finding the plane', () => {
  test('a stack that does not exist is reported with the region and how to fix it', async () => {
    const { code, stderr } = await cli(['runs', '--stack', 'Elsewhere'], { clients: factory });
    expect(stderr).toBe('error: Tuneyard plane Elsewhere not found in region us-east-1: deploy it with `npx cdk deploy` or pass --stack/--region\n');
    expect(code).toBe(1);
  });
});

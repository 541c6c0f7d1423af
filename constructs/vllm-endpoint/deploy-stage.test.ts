import { Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { definitionFromTemplate, runLocal, snsRecorder } from '../../test/support/local-sfn';
import { testStack } from '../../test/support/app';
import { DEPLOY_FAILURES, VllmDeployStage, VllmEndpoint, VllmModelData } from '.';
import { DatasetStore } from '../dataset-store';

/** The Deploy stage in a state machine of its own, wired the way the pipeline wires its stages. */
function machine(inferenceComponents: boolean) {
  const stack: Stack = testStack();
  const bucket = s3.Bucket.fromBucketName(stack, 'Data', 'tuneyard-data');
  const endpoint = new VllmEndpoint(stack, 'Serving', {
    instanceType: 'ml.g5.2xlarge',
    baseModel: 'meta-llama/Llama-3.1-8B-Instruct',
    modelData: VllmModelData.fromS3Prefix(bucket, 'base-models/llama-3.1-8b/'),
    endpointName: 'support-llm',
    ...(inferenceComponents ? { inferenceComponents: { minCopies: 1 } } : {}),
  });
  const store = new DatasetStore(stack, 'Store');
  const topic = new sns.Topic(stack, 'Topic');
  const role = new iam.Role(stack, 'MachineRole', { assumedBy: new iam.ServicePrincipal('states.amazonaws.com') });
  const stage = new VllmDeployStage({ endpoint, pollInterval: Duration.seconds(0), maxPolls: 3 });
  const chain = stage.bind(stack, {
    role,
    topic,
    store,
    failure: (name, stageName) => {
      const fail = new sfn.Fail(stack, name, { errorPath: '$.error.Error', causePath: '$.error.Cause' });
      return new tasks.SnsPublish(stack, `Notify${name}`, {
        topic,
        message: sfn.TaskInput.fromObject({ stage: stageName, 'error.$': '$.error.Error', 'cause.$': '$.error.Cause' }),
        resultPath: sfn.JsonPath.DISCARD,
      }).next(fail);
    },
    addTransientRetries: (state) => void state.addRetry({ errors: ['ThrottlingException'], maxAttempts: 2 }),
  });
  new sfn.StateMachine(stack, 'Machine', { role, definitionBody: sfn.DefinitionBody.fromChainable(sfn.Chain.start(chain).next(new sfn.Succeed(stack, 'Done'))) });
  const template = Template.fromStack(stack);
  return { endpoint, template, definition: definitionFromTemplate(template.toJSON()) };
}

/**
 * SageMaker loads the run's adapter (ArtifactUrl) or merged model (ModelDataSource) under artifacts/
 * with the endpoint's execution role: without read access there, the component or the update fails.
 */
function expectEndpointReadsArtifacts(template: Template) {
  template.hasResourceProperties('AWS::IAM::Policy', {
    Roles: [{ Ref: Match.stringLikeRegexp('^ServingRole') }],
    PolicyDocument: {
      Statement: Match.arrayWith([
        Match.objectLike({
          Action: Match.arrayWith(['s3:GetObject']),
          Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [Match.stringLikeRegexp('^Store'), 'Arn'] }, '/artifacts/*']] },
        }),
        Match.objectLike({ Action: 's3:ListBucket', Condition: { StringLike: { 's3:prefix': 'artifacts/*' } } }),
      ]),
    },
  });
}

const input = (overrides: Record<string, unknown> = {}) => ({
  plan: {
    runId: 'run-7',
    modelApprovalStatus: 'Approved',
    modelArtifactS3Uri: 's3://tuneyard-data/artifacts/run-7/job/output/model/',
    deploy: { endpointName: 'support-llm', adapterName: 'support-v7' },
    ...overrides,
  },
});

describe('VllmDeployStage on a single-model endpoint', () => {
  const { definition, template } = machine(false);

  test('creates the model and config, updates the endpoint with its deployment config, and polls until InService', async () => {
    const calls: Record<string, any[]> = {};
    const record = (name: string, result: (i: any) => unknown) => (i: any) => ((calls[name] ??= []).push(i), result(i));
    let polls = 0;
    let configName = '';
    const run = await runLocal(definition, input(), {
      DeployCreateModel: record('model', () => ({ ModelArn: 'm' })),
      DeployCreateEndpointConfig: record('config', (i) => ((configName = i.EndpointConfigName), {})),
      DeployUpdateEndpoint: record('update', () => ({ EndpointArn: 'e' })),
      DeployDescribe: () => (++polls < 2 ? { EndpointStatus: 'Updating', EndpointConfigName: 'old' } : { EndpointStatus: 'InService', EndpointConfigName: configName }),
    });
    expect([run.status, run.error, run.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
    expect(run.entered).toContain('Deployed');
    expect(calls.model[0].PrimaryContainer.ModelDataSource.S3DataSource.S3Uri).toBe('s3://tuneyard-data/artifacts/run-7/job/output/model/full/');
    expect(calls.model[0].EnableNetworkIsolation).toBe(true);
    expect(calls.config[0].ProductionVariants[0]).toEqual(
      expect.objectContaining({ ModelName: calls.model[0].ModelName, InstanceType: 'ml.g5.2xlarge', InferenceAmiVersion: 'al2-ami-sagemaker-inference-gpu-3-1' }),
    );
    expect(calls.update[0]).toEqual(
      expect.objectContaining({
        EndpointName: 'support-llm',
        EndpointConfigName: configName,
        DeploymentConfig: expect.objectContaining({ AutoRollbackConfiguration: { Alarms: [expect.any(Object), expect.any(Object)] } }),
      }),
    );
  });

  test('fails, notified, when SageMaker rolled the update back (InService on the previous config)', async () => {
    const topic = snsRecorder();
    const run = await runLocal(definition, input(), {
      DeployCreateModel: () => ({}),
      DeployCreateEndpointConfig: () => ({}),
      DeployUpdateEndpoint: () => ({}),
      DeployDescribe: (() => {
        let n = 0;
        return () => (++n === 1 ? { EndpointStatus: 'RollingBack', EndpointConfigName: 'old' } : { EndpointStatus: 'InService', EndpointConfigName: 'old' });
      })(),
      [`Notify${DEPLOY_FAILURES.rolledBack}`]: topic,
    });
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('Tuneyard.DeployRolledBack');
    expect(run.cause).toMatch(/rolled support-llm back to old.*the rollback stands/);
    expect(run.entered).not.toContain('DeployUpdateEndpointAgain');
    expect(topic.messages).toHaveLength(1);
  });

  test('fails, notified, when the rollback itself failed', async () => {
    const run = await runLocal(definition, input(), {
      DeployCreateModel: () => ({}),
      DeployCreateEndpointConfig: () => ({}),
      DeployUpdateEndpoint: () => ({}),
      DeployDescribe: () => ({ EndpointStatus: 'UpdateRollbackFailed', EndpointConfigName: 'old' }),
      [`Notify${DEPLOY_FAILURES.failed}`]: snsRecorder(),
    });
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('Tuneyard.DeployFailed');
    expect(run.cause).toBe('Endpoint support-llm is UpdateRollbackFailed.');
  });

  test('gives up after the bounded number of polls', async () => {
    const run = await runLocal(definition, input(), {
      DeployCreateModel: () => ({}),
      DeployCreateEndpointConfig: () => ({}),
      DeployUpdateEndpoint: () => ({}),
      DeployDescribe: () => ({ EndpointStatus: 'Updating', EndpointConfigName: 'old' }),
      [`Notify${DEPLOY_FAILURES.timedOut}`]: snsRecorder(),
    });
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('Tuneyard.DeployTimedOut');
    expect(run.entered.filter((s) => s === 'DeployDescribe')).toHaveLength(4);
  });

  test('refuses an unapproved model and another endpoint', async () => {
    const unapproved = await runLocal(definition, input({ modelApprovalStatus: 'PendingManualApproval' }), { [`Notify${DEPLOY_FAILURES.notApproved}`]: snsRecorder() });
    expect(unapproved.error).toBe('Tuneyard.DeployNotApproved');
    const other = await runLocal(definition, input({ deploy: { endpointName: 'other', adapterName: 'a' } }), { [`Notify${DEPLOY_FAILURES.targetUnknown}`]: snsRecorder() });
    expect(other.error).toBe('Tuneyard.DeployTargetUnknown');
  });

  test('lets the state machine pass the endpoint role and read the rollback alarms', () => {
    const statements = JSON.stringify(template.findResources('AWS::IAM::Policy'));
    expect(statements).toContain('iam:PassRole');
    expect(statements).toContain('cloudwatch:DescribeAlarms');
    expect(statements).toContain('sagemaker:UpdateEndpoint');
  });

  test("lets the endpoint's role read the run's merged model under artifacts/", () => expectEndpointReadsArtifacts(template));
});

describe('VllmDeployStage on an inference-component endpoint', () => {
  const { definition, endpoint, template } = machine(true);

  test("lets the endpoint's role read the run's adapter under artifacts/", () => expectEndpointReadsArtifacts(template));

  test('creates the adapter component on the base when it does not exist, and polls it to InService', async () => {
    const created: any[] = [];
    let polls = 0;
    const run = await runLocal(definition, input(), {
      DeployFindAdapter: () => {
        const e = new Error('Could not find inference component');
        e.name = 'SageMaker.SageMakerException';
        throw e;
      },
      DeployCreateAdapter: (i) => (created.push(i), {}),
      DeployDescribe: () => ({ InferenceComponentStatus: ++polls < 2 ? 'Creating' : 'InService' }),
    });
    expect(run.status).toBe('SUCCEEDED');
    expect(created[0]).toEqual({
      InferenceComponentName: 'support-v7',
      EndpointName: 'support-llm',
      Specification: {
        BaseInferenceComponentName: endpoint.baseComponentName,
        Container: { ArtifactUrl: 's3://tuneyard-data/artifacts/run-7/job/output/model/adapter.tar.gz' },
      },
    });
  });

  test('updates an existing adapter component, and fails notified when it ends Failed', async () => {
    const updated: any[] = [];
    const topic = snsRecorder();
    const run = await runLocal(definition, input(), {
      DeployFindAdapter: () => ({ InferenceComponentName: 'support-v7' }),
      DeployUpdateAdapter: (i) => (updated.push(i), {}),
      DeployDescribe: () => ({ InferenceComponentStatus: 'Failed' }),
      [`Notify${DEPLOY_FAILURES.failed}`]: topic,
    });
    expect(updated).toHaveLength(1);
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('Tuneyard.DeployFailed');
    expect(topic.messages).toHaveLength(1);
  });
});

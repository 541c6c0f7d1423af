import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { planRunStep } from '../fine-tuning-pipeline/handler/plan-run';
import { createPlaneFunction } from '../../lib/plane-function';
import { deploymentName } from '../../lib/deploy';
import { compliancePacks } from '../../lib/nag';
import { testStack } from '../../test/support/app';
import { definitionFromTemplate, runLocal, snsRecorder } from '../../test/support/local-sfn';
import { deployFunctionTask, deploySettingsFromTemplate, FakeClock, FakeSageMaker } from '../../test/pipeline/sagemaker-deploy-fake';
import { DEPLOY_FAILURES, DEPLOY_STATES, VllmDeployStage, VllmEndpoint, VllmModelData } from '.';
import { DatasetStore } from '../dataset-store';
import type { IPipelineStageContext } from '../fine-tuning-pipeline';
import { Construct } from 'constructs';

const PACKAGE_ARN = 'arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard-models/7';

interface MachineOptions {
  readonly inferenceComponents?: boolean;
  readonly instanceType?: string;
  /** The endpoint's name (`support-llm`); null: generated from the construct path. */
  readonly endpointName?: string | null;
  readonly adapterNamePrefix?: string;
}

/**
 * What FineTuningPipeline gives a stage, built in `scope` (its own role, topic and log key): the
 * stage's functions and states are made the pipeline's way.
 */
function stageContext(scope: Construct, store: DatasetStore): IPipelineStageContext {
  const topic = new sns.Topic(scope, 'Topic');
  const role = new iam.Role(scope, 'MachineRole', { assumedBy: new iam.ServicePrincipal('states.amazonaws.com') });
  const logKey = new kms.Key(scope, 'LogKey', { enableKeyRotation: true });
  return {
    role,
    topic,
    store,
    failure: (name, stageName) => {
      const fail = new sfn.Fail(scope, name, { errorPath: '$.error.Error', causePath: '$.error.Cause' });
      return new tasks.SnsPublish(scope, `Notify${name}`, {
        topic,
        message: sfn.TaskInput.fromObject({ stage: stageName, 'error.$': '$.error.Error', 'cause.$': '$.error.Cause' }),
        resultPath: sfn.JsonPath.DISCARD,
      }).next(fail);
    },
    addTransientRetries: (state) => void state.addRetry({ errors: ['Lambda.ServiceException'], maxAttempts: 2 }),
    createFunction: (id, fnOptions) =>
      createPlaneFunction(scope, {
        ...fnOptions,
        ids: { function: id, role: `${id}Role`, logGroup: `${id}Logs` },
        logEncryptionKey: logKey,
        logRetention: logs.RetentionDays.ONE_WEEK,
        removalPolicy: RemovalPolicy.DESTROY,
      }).function,
  };
}

/** The Deploy stage in a state machine of its own, wired the way FineTuningPipeline wires its stages. */
function machine(options: MachineOptions = {}) {
  const stack: Stack = testStack();
  const store = new DatasetStore(stack, 'Store');
  const ebs = options.instanceType === 'ml.p3.2xlarge';
  const endpoint = new VllmEndpoint(stack, 'Serving', {
    instanceType: options.instanceType ?? 'ml.g5.2xlarge',
    ...(ebs ? { parametersBillions: 1, attentionHeads: 32 } : { baseModel: 'meta-llama/Llama-3.1-8B-Instruct' }),
    modelData: VllmModelData.fromS3Prefix(store.bucket, 'base-models/llama/'),
    endpointName: options.endpointName === null ? undefined : (options.endpointName ?? 'support-llm'),
    ...(options.inferenceComponents ? { inferenceComponents: { minCopies: 1 } } : { dataCapture: { bucket: store.bucket, samplingPercentage: 20 } }),
  });
  if (ebs) {
    // Settings a team may add to its variant (escape hatch): the copy must keep them, under the API's names.
    endpoint.endpointConfig.addPropertyOverride('ProductionVariants.0.VolumeSizeInGB', 200);
    endpoint.endpointConfig.addPropertyOverride('ProductionVariants.0.EnableSSMAccess', true);
  }
  const stage = new VllmDeployStage({ endpoint, adapterNamePrefix: options.adapterNamePrefix });
  const context = stageContext(stack, store);
  const chain = stage.bind(stack, context);
  new sfn.StateMachine(stack, 'Machine', { role: context.role, definitionBody: sfn.DefinitionBody.fromChainable(sfn.Chain.start(chain).next(new sfn.Succeed(stack, 'Done'))) });
  const template = Template.fromStack(stack);
  const json = template.toJSON();
  return {
    stack,
    endpoint,
    stage,
    template,
    json,
    definition: definitionFromTemplate(json, stack.getLogicalId(stack.node.findChild('Machine').node.defaultChild as any)),
    settings: deploySettingsFromTemplate(json),
  };
}

/**
 * The stage's input as the pipeline hands it over: PlanRun's real output for the request, and
 * Register's result (CreateModelPackage's answer at `$.registration`). PlanRun is told what the
 * pipeline tells it of `stage` (what it deploys, its adapter prefix).
 */
function runInput(deploy: { endpointName: string; adapterName?: string }, overrides: Record<string, unknown> = {}, stage?: VllmDeployStage) {
  const request = {
    dataset: { name: 'support-chats', sha256: 'a'.repeat(64) },
    baseModel: 's3://data-bucket/base-models/llama-3.1-8b/',
    recipe: { method: 'qlora', batchSize: 2, merge: !deploy.adapterName }, // batch 4 x 2048 of Llama 3.1 8B does not fit the A10G
    autoApprove: true,
    deploy,
    ...overrides,
  };
  const planned = planRunStep(
    { request, executionName: 'run-7' },
    {
      bucketName: 'data-bucket',
      volumeKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/data',
      outputKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/data',
      allowHubModels: false,
      deployStage: true,
      deploys: stage?.deploys ?? (deploy.adapterName ? 'adapter' : 'full-weights'),
      adapterNamePrefix: stage?.adapterNamePrefix,
    },
  );
  return JSON.parse(JSON.stringify({ ...planned, registration: { ModelPackageArn: PACKAGE_ARN } }));
}

/** Every state whose name starts with "Deploy" (or is Deployed), in order. */
const deployStates = (entered: string[]) => entered.filter((s) => s.startsWith('Deploy'));

/** The Deploy function's own policy statements (its role's default policy). */
function functionStatements(template: Template): any[] {
  const policies = template.findResources('AWS::IAM::Policy');
  return Object.values(policies)
    .filter((p: any) => p.Properties.Roles.some((r: any) => /^DeployFunctionRole/.test(r.Ref)))
    .flatMap((p: any) => p.Properties.PolicyDocument.Statement);
}
/** The compliance packs' unacknowledged findings on the Deploy function, its role and its log group. */
function deployFunctionFindings(stack: Stack): string[] {
  return compliancePacks(stack.node.root).flatMap((pack) =>
    pack
      .validateScope(stack)
      .violations.flatMap((v) => v.violatingResources.filter((r) => /\/DeployFunction/.test(r.constructPath ?? '')).map((r) => `${v.ruleName} at ${r.constructPath}`)),
  );
}
const actionsOf = (statements: any[]): string[] => statements.flatMap((s) => ([] as string[]).concat(s.Action));
/** The Deploy function's allowed inference-component actions and the resources (ARN tails, sorted) each may act on. */
function componentGrants(template: Template): Record<string, string[]> {
  const grants: Record<string, string[]> = {};
  for (const st of functionStatements(template).filter((s) => s.Effect === 'Allow')) {
    for (const action of actionsOf([st]).filter((a) => a.endsWith('InferenceComponent'))) {
      const tails = ([] as unknown[]).concat(st.Resource).map((r) => {
        const json = JSON.stringify(r);
        return /"EndpointArn"/.test(json) ? 'the endpoint' : /:inference-component\/[^"]*/.exec(json)![0];
      });
      grants[action.replace('sagemaker:', '')] = [...(grants[action.replace('sagemaker:', '')] ?? []), ...tails].sort();
    }
  }
  return grants;
}

describe('VllmDeployStage on a single-model endpoint with EBS volumes (ml.p3.2xlarge: a KMS key; data capture on)', () => {
  const m = machine({ instanceType: 'ml.p3.2xlarge' });
  const NEW_NAME = deploymentName('support-llm', PACKAGE_ARN);

  function world(steps: FakeSageMaker['endpointSteps'] = ['Updating', 'deployed']) {
    const fake = FakeSageMaker.fromTemplate(m.json);
    fake.endpointSteps = [...steps];
    const clock = new FakeClock();
    const task = deployFunctionTask(fake, m.settings, clock);
    const notify = snsRecorder();
    const handlers = { DeployStart: task, DeployWait: task, ...Object.fromEntries(Object.values(DEPLOY_FAILURES).map((f) => [`Notify${f}`, notify])) };
    return { fake, clock, task, notify, handlers };
  }

  test('a single-model run (no adapterName) deploys its merged model and ends SUCCEEDED', async () => {
    // GIVEN the README's single-model request, and an endpoint that takes 10 minutes (blue/green baking)
    const w = world([...Array(19).fill('Updating'), 'deployed']);
    const input = runInput({ endpointName: 'support-llm' });
    expect(input.plan.deploy).toEqual({ endpointName: 'support-llm' });

    // WHEN
    const run = await runLocal(m.definition, input, w.handlers);

    // THEN
    expect([run.status, run.error, run.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
    expect(deployStates(run.entered)).toEqual(['DeployStart', 'DeployStatus', 'Deployed']);
    expect(w.task.invocations).toBe(1);
    expect(run.output.deployment).toMatchObject({ outcome: 'deployed', status: 'InService', endpointName: 'support-llm', waitFor: { endpointConfigName: NEW_NAME } });
    expect(w.fake.writes.map((c) => c.operation)).toEqual(['CreateModel', 'CreateEndpointConfig', 'UpdateEndpoint']);
    expect(run.requestErrors).toEqual([]);
    expect(w.fake.requestErrors()).toEqual([]);
  });

  test('the new endpoint config is the current one as SageMaker describes it: data capture, KMS key, VolumeSizeInGB, EnableSSMAccess kept', async () => {
    const w = world();
    const run = await runLocal(m.definition, runInput({ endpointName: 'support-llm' }), w.handlers);
    expect(run.status).toBe('SUCCEEDED');

    const initial = [...FakeSageMaker.fromTemplate(m.json).configs.values()][0];
    const [model, config, update] = w.fake.writes.map((c) => c.input);
    expect(model).toMatchObject({
      ModelName: NEW_NAME,
      ExecutionRoleArn: expect.stringMatching(/role\/ServingRole/),
      EnableNetworkIsolation: true,
      PrimaryContainer: { ModelDataSource: { S3DataSource: { S3Uri: `${run.output.plan.modelArtifactS3Uri}full/`, S3DataType: 'S3Prefix', CompressionType: 'None' } } },
    });
    expect(config.EndpointConfigName).toBe(NEW_NAME);
    expect(config.DataCaptureConfig).toEqual(initial.DataCaptureConfig);
    expect(config.DataCaptureConfig).toMatchObject({ EnableCapture: true, InitialSamplingPercentage: 20 });
    expect(config.KmsKeyId).toEqual(initial.KmsKeyId);
    expect(config.KmsKeyId).toMatch(/^arn:aws:kms:/);
    expect(config.ProductionVariants).toEqual([{ ...initial.ProductionVariants[0], ModelName: NEW_NAME }]);
    expect(config.ProductionVariants[0]).toMatchObject({ VolumeSizeInGB: 200, EnableSSMAccess: true });
    expect(JSON.stringify(config)).not.toMatch(/VolumeSizeInGb|EnableSsmAccess/);
    expect(update).toEqual({
      EndpointName: 'support-llm',
      EndpointConfigName: NEW_NAME,
      DeploymentConfig: {
        BlueGreenUpdatePolicy: { TrafficRoutingConfiguration: { Type: 'ALL_AT_ONCE', WaitIntervalInSeconds: 600 }, TerminationWaitInSeconds: 0 },
        // the alarms' names (Ref), as local-sfn resolves them
        AutoRollbackConfiguration: { Alarms: [{ AlarmName: expect.stringMatching(/^servinginvocation5xxalarm/) }, { AlarmName: expect.stringMatching(/^servingmodellatencyalarm/) }] },
      },
    });
    // The SageMaker API model accepts every request (an unknown member such as VolumeSizeInGb would be refused).
    expect(w.fake.requestErrors()).toEqual([]);
  });

  test('a deployment longer than one invocation goes on in DeployWait: two more transitions per ~13 minutes', async () => {
    const w = world([...Array(39).fill('Updating'), 'deployed']); // 20 minutes
    const run = await runLocal(m.definition, runInput({ endpointName: 'support-llm' }), w.handlers);
    expect(run.status).toBe('SUCCEEDED');
    expect(deployStates(run.entered)).toEqual(['DeployStart', 'DeployStatus', 'DeployWait', 'DeployStatus', 'Deployed']);
    expect(w.task.invocations).toBe(2);
    expect(w.clock.sleeps.every((ms) => ms === 30_000)).toBe(true);
  });

  test('fails, notified, when SageMaker rolled the update back (InService on the previous config)', async () => {
    const w = world(['Updating', 'rolled-back']);
    const run = await runLocal(m.definition, runInput({ endpointName: 'support-llm' }), w.handlers);
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('Tuneyard.DeployRolledBack');
    expect(JSON.parse(run.cause!).errorMessage).toMatch(
      new RegExp(`^support-llm rolled back: it is InService on ServingEndpointConfig\\w+, not ${NEW_NAME} .*the rollback stands\\. The previous model serves again.*tuneyard deploy ${PACKAGE_ARN} --endpoint support-llm --wait`),
    );
    expect(run.entered).toContain(`Notify${DEPLOY_FAILURES.rolledBack}`);
    expect(w.notify.messages).toHaveLength(1);
  });

  test('fails, notified, when the endpoint fails', async () => {
    const w = world(['Updating', 'UpdateRollbackFailed']);
    const run = await runLocal(m.definition, runInput({ endpointName: 'support-llm' }), w.handlers);
    expect(run.error).toBe('Tuneyard.DeployFailed');
    expect(JSON.parse(run.cause!).errorMessage).toMatch(/^support-llm is UpdateRollbackFailed: The primary container .* did not pass the ping health check\. The model stays registered/);
    expect(run.entered).toContain(`Notify${DEPLOY_FAILURES.failed}`);
  });

  test('gives up after 90 minutes of waiting (DeployTimedOut), leaving the deployment to SageMaker', async () => {
    const w = world(['Updating']);
    const started = w.clock.now;
    const run = await runLocal(m.definition, runInput({ endpointName: 'support-llm' }), w.handlers);
    expect(run.error).toBe('Tuneyard.DeployTimedOut');
    expect(JSON.parse(run.cause!).errorMessage).toBe(
      `endpoint support-llm is still Updating after 90 minutes: SageMaker finishes or rolls back the deployment on its own. Follow it with \`tuneyard deploy ${PACKAGE_ARN} --endpoint support-llm --wait\` (it sends nothing twice).`,
    );
    expect(w.clock.now - started).toBe(90 * 60_000);
    // 13 minutes per invocation: the start and six waits
    expect(w.task.invocations).toBe(7);
    expect(run.entered.filter((s) => s === DEPLOY_STATES.wait)).toHaveLength(6);
  });

  test('an endpoint that is not InService fails the run (DeployFailed) with the reason, before writing anything', async () => {
    const w = world();
    [...w.fake.endpoints.values()][0].EndpointStatus = 'Updating';
    const run = await runLocal(m.definition, runInput({ endpointName: 'support-llm' }), w.handlers);
    expect(run.error).toBe('Tuneyard.DeployFailed');
    expect(JSON.parse(run.cause!).errorMessage).toBe(
      `endpoint support-llm is Updating: deploy when it is InService. Once that is fixed, deploy the registered model with \`tuneyard deploy ${PACKAGE_ARN} --endpoint support-llm --wait\`.`,
    );
    expect(w.fake.writes).toEqual([]);
  });

  test('refuses an unapproved model and another endpoint before reading or writing anything', async () => {
    const unapproved = world();
    const pending = await runLocal(m.definition, runInput({ endpointName: 'support-llm' }, { autoApprove: false }), unapproved.handlers);
    expect(pending.error).toBe('Tuneyard.DeployNotApproved');
    expect(JSON.parse(pending.cause!).errorMessage).toMatch(
      new RegExp(`^Run \\S+ registered its model as PendingManualApproval; only approved models are deployed\\. .*tuneyard deploy ${PACKAGE_ARN} --endpoint support-llm --approve`),
    );
    expect(pending.entered).toContain(`Notify${DEPLOY_FAILURES.notApproved}`);
    const other = world();
    const elsewhere = await runLocal(m.definition, runInput({ endpointName: 'other' }), other.handlers);
    expect(elsewhere.error).toBe('Tuneyard.DeployTargetUnknown');
    expect(JSON.parse(elsewhere.cause!).errorMessage).toBe('The run asked to deploy to other; this pipeline deploys to support-llm. Ask for support-llm, or leave deploy out.');
    expect(elsewhere.entered).toContain(`Notify${DEPLOY_FAILURES.targetUnknown}`);
    expect([...unapproved.fake.calls, ...other.fake.calls]).toEqual([]);
  });

  test("the function may deploy to this endpoint only, and let SageMaker use the endpoint's key (kms:CreateGrant for AWS resources, kms:DescribeKey)", () => {
    const statements = functionStatements(m.template);
    const keyArn = { 'Fn::GetAtt': [m.stack.getLogicalId(m.endpoint.encryptionKey!.node.defaultChild as any), 'Arn'] };
    expect(statements).toEqual(
      expect.arrayContaining([
        { Action: 'kms:CreateGrant', Effect: 'Allow', Resource: keyArn, Condition: { Bool: { 'kms:GrantIsForAWSResource': true } } },
        { Action: 'kms:DescribeKey', Effect: 'Allow', Resource: keyArn },
        expect.objectContaining({ Action: 'iam:PassRole', Condition: { StringEquals: { 'iam:PassedToService': 'sagemaker.amazonaws.com' } } }),
        expect.objectContaining({ Action: 'cloudwatch:DescribeAlarms', Resource: [expect.objectContaining({ 'Fn::GetAtt': [expect.stringMatching(/Invocation5xxAlarm/), 'Arn'] }), expect.objectContaining({ 'Fn::GetAtt': [expect.stringMatching(/ModelLatencyAlarm/), 'Arn'] })] }),
      ]),
    );
    // models and configs under the endpoint's prefix only; no wildcard besides X-Ray's
    const resources = JSON.stringify(statements.filter((s) => actionsOf([s]).some((a) => a.startsWith('sagemaker:')))).match(/:(model|endpoint-config)\/[^"]*/g);
    expect([...new Set(resources)].sort()).toEqual([':endpoint-config/support-llm-*', ':model/support-llm-*']);
    expect(statements.filter((s) => s.Resource === '*').flatMap((s) => actionsOf([s])).sort()).toEqual(['xray:PutTelemetryRecords', 'xray:PutTraceSegments']);
    expect(actionsOf(statements).filter((a) => /^sagemaker:/.test(a)).sort()).toEqual([
      'sagemaker:CreateEndpointConfig',
      'sagemaker:CreateModel',
      'sagemaker:DescribeEndpoint',
      'sagemaker:DescribeEndpointConfig',
      'sagemaker:DescribeModel',
      'sagemaker:UpdateEndpoint',
    ]);
  });

  test('the state machine role only invokes the function: no SageMaker, IAM or CloudWatch permission', () => {
    const policies = m.template.findResources('AWS::IAM::Policy');
    const machine = Object.values(policies).filter((p: any) => p.Properties.Roles.some((r: any) => /^MachineRole/.test(r.Ref)));
    const actions = machine.flatMap((p: any) => actionsOf(p.Properties.PolicyDocument.Statement));
    expect(actions).toContain('lambda:InvokeFunction');
    expect(actions.filter((a) => /^(sagemaker|iam|cloudwatch|kms):/.test(a))).toEqual([]);
  });

  test('the Deploy function raises no unacknowledged compliance finding', () => {
    expect(deployFunctionFindings(m.stack)).toEqual([]);
  });
});

describe('VllmDeployStage on a single-model endpoint with local NVMe (ml.g5.2xlarge)', () => {
  test('grants nothing on a KMS key: the endpoint has none', () => {
    const { template, endpoint } = machine();
    expect(endpoint.encryptionKey).toBeUndefined();
    expect(actionsOf(functionStatements(template)).filter((a) => a.startsWith('kms:'))).toEqual([]);
  });
});

describe('VllmDeployStage on an inference-component endpoint', () => {
  const m = machine({ inferenceComponents: true });
  const input = () => runInput({ endpointName: 'support-llm', adapterName: 'support-llm-v7' }, {}, m.stage);

  function world(steps: FakeSageMaker['componentSteps'], adapter?: { artifact: string }) {
    const fake = FakeSageMaker.fromTemplate(m.json);
    fake.componentSteps = steps;
    if (adapter) {
      fake.components.set('support-llm-v7', {
        InferenceComponentName: 'support-llm-v7',
        EndpointName: 'support-llm',
        InferenceComponentStatus: 'InService',
        Specification: { BaseInferenceComponentName: m.endpoint.baseComponentName, Container: { ArtifactUrl: adapter.artifact } },
      });
    }
    const task = deployFunctionTask(fake, m.settings);
    const notify = snsRecorder();
    return { fake, task, notify, handlers: { DeployStart: task, DeployWait: task, ...Object.fromEntries(Object.values(DEPLOY_FAILURES).map((f) => [`Notify${f}`, notify])) } };
  }

  test("creates the run's adapter component on the base component and ends SUCCEEDED when it is InService", async () => {
    const w = world(['Creating', 'InService']);
    const run = await runLocal(m.definition, input(), w.handlers);
    expect([run.status, run.error]).toEqual(['SUCCEEDED', undefined]);
    expect(deployStates(run.entered)).toEqual(['DeployStart', 'DeployStatus', 'Deployed']);
    expect(w.fake.writes).toEqual([
      {
        operation: 'CreateInferenceComponent',
        input: {
          InferenceComponentName: 'support-llm-v7',
          EndpointName: 'support-llm',
          Specification: { BaseInferenceComponentName: m.endpoint.baseComponentName, Container: { ArtifactUrl: `${run.output.plan.modelArtifactS3Uri}adapter.tar.gz` } },
        },
      },
    ]);
    // the base component is known: no ListInferenceComponents (which IAM cannot scope)
    expect(w.fake.calls.map((c) => c.operation)).not.toContain('ListInferenceComponents');
    expect(w.fake.requestErrors()).toEqual([]);
    expect(run.requestErrors).toEqual([]);
  });

  test('updates an existing adapter component', async () => {
    const w = world(['Updating', 'InService'], { artifact: 's3://data-bucket/artifacts/old/adapter.tar.gz' });
    const run = await runLocal(m.definition, input(), w.handlers);
    expect(run.status).toBe('SUCCEEDED');
    expect(w.fake.writes.map((c) => [c.operation, c.input.Specification.Container.ArtifactUrl])).toEqual([
      ['UpdateInferenceComponent', `${run.output.plan.modelArtifactS3Uri}adapter.tar.gz`],
    ]);
    expect(w.fake.requestErrors()).toEqual([]);
  });

  test('fails, notified, with SageMaker\'s reason when the adapter component ends Failed', async () => {
    const w = world(['Creating', 'Failed']);
    const run = await runLocal(m.definition, input(), w.handlers);
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('Tuneyard.DeployFailed');
    expect(JSON.parse(run.cause!).errorMessage).toMatch(
      /^adapter support-llm-v7 on support-llm is Failed: adapter_config\.json not found in the archive\. .*tuneyard deploy \S+ --endpoint support-llm --adapter support-llm-v7 --wait/,
    );
    expect(w.notify.messages).toHaveLength(1);
  });

  test('the function may describe, create and update inference components (create on this endpoint), and nothing of models, configs, roles or keys', () => {
    const actions = actionsOf(functionStatements(m.template)).filter((a) => !a.startsWith('logs:') && !a.startsWith('xray:'));
    expect(actions.sort()).toEqual([
      'sagemaker:CreateInferenceComponent',
      'sagemaker:DescribeEndpoint',
      'sagemaker:DescribeEndpointConfig',
      'sagemaker:DescribeInferenceComponent',
      'sagemaker:UpdateInferenceComponent',
    ]);
    expect(deployFunctionFindings(m.stack)).toEqual([]);
  });

  test('creates and updates only the adapter components named <endpoint>-* (the default prefix), and describes the base besides', () => {
    expect(m.stage.adapterNamePrefix).toBe('support-llm-');
    const components = componentGrants(m.template);
    expect(components.CreateInferenceComponent).toEqual([':inference-component/support-llm-*', 'the endpoint']);
    expect(components.UpdateInferenceComponent).toEqual([':inference-component/support-llm-*']);
    expect(components.DescribeInferenceComponent).toEqual([`:inference-component/${m.endpoint.baseComponentName!.toLowerCase()}`, `:inference-component/${m.endpoint.baseComponentName}`, ':inference-component/support-llm-*'].sort());
    // the endpoint's name and the base component's differ: no Deny needed
    expect(functionStatements(m.template).filter((st) => st.Effect === 'Deny')).toEqual([]);
  });

  test("PlanRun (the real planRunStep, told the stage's prefix) refuses an adapter name without it, before any GPU time", () => {
    expect(() => runInput({ endpointName: 'support-llm', adapterName: 'support-v7' }, {}, m.stage)).toThrow(
      /^deploy\.adapterName: this pipeline's Deploy stage deploys adapters named support-llm-\* only .*got "support-v7"\. Name the adapter support-llm-support-v7 \(tuneyard train --adapter support-llm-support-v7\)\.$/,
    );
    // what the IAM policy above allows passes
    expect(runInput({ endpointName: 'support-llm', adapterName: 'support-llm-v8' }, {}, m.stage).plan.deploy).toEqual({ endpointName: 'support-llm', adapterName: 'support-llm-v8' });
  });
});

describe('VllmDeployStage adapter name prefixes', () => {
  test('a prefix of its own: IAM allows create and update of inference-component/<prefix>* only, both spellings', () => {
    const { template, stage, stack } = machine({ inferenceComponents: true, adapterNamePrefix: 'Team-A-' });
    expect(stage.adapterNamePrefix).toBe('Team-A-');
    const components = componentGrants(template);
    expect(components.CreateInferenceComponent).toEqual([':inference-component/Team-A-*', ':inference-component/team-a-*', 'the endpoint']);
    expect(components.UpdateInferenceComponent).toEqual([':inference-component/Team-A-*', ':inference-component/team-a-*']);
    expect(JSON.stringify(functionStatements(template))).not.toContain('inference-component/*');
    expect(deployFunctionFindings(stack)).toEqual([]);
  });

  test("with a generated endpoint name the base component's name starts with the default prefix: an explicit Deny keeps the base out", () => {
    const { template, endpoint, stage } = machine({ inferenceComponents: true, endpointName: null });
    expect(endpoint.baseComponentName!.startsWith(stage.adapterNamePrefix!)).toBe(true);
    const deny = functionStatements(template).filter((st) => st.Effect === 'Deny');
    expect(deny).toHaveLength(1);
    expect(actionsOf(deny).sort()).toEqual(['sagemaker:CreateInferenceComponent', 'sagemaker:UpdateInferenceComponent']);
    expect(JSON.stringify(deny[0].Resource)).toContain(`:inference-component/${endpoint.baseComponentName}"`);
  });

  test('a single-model endpoint has no adapter prefix: PlanRun checks no adapter name', () => {
    const { stage } = machine();
    expect(stage.adapterNamePrefix).toBeUndefined();
  });

  /** An adapter endpoint and, for each prefix, a Deploy stage bound in a scope of its own (as two pipelines bind theirs). */
  function sharedEndpoint(prefixes: Array<string | undefined>, managedAdapter?: string) {
    const stack = testStack();
    const store = new DatasetStore(stack, 'Store');
    const endpoint = new VllmEndpoint(stack, 'Serving', {
      instanceType: 'ml.g5.12xlarge',
      baseModel: 'meta-llama/Llama-3.1-8B-Instruct',
      modelData: VllmModelData.fromS3Prefix(store.bucket, 'base-models/llama/'),
      endpointName: 'shared',
      inferenceComponents: { minCopies: 1 },
    });
    if (managedAdapter) endpoint.addAdapter(managedAdapter, { bucket: store.bucket, key: 'adapters/legal.tar.gz' });
    prefixes.forEach((adapterNamePrefix, i) => {
      const team = new Construct(stack, `Team${i}`);
      new VllmDeployStage({ endpoint, adapterNamePrefix }).bind(team, stageContext(team, store));
    });
    return stack;
  }

  test('two pipelines deploy adapters to one endpoint under prefixes of their own', () => {
    const template = Template.fromStack(sharedEndpoint(['team-a-', 'team-b-']));
    const grants = Object.values(template.findResources('AWS::IAM::Policy')).flatMap((p: any) =>
      (p.Properties.PolicyDocument.Statement as any[]).filter((st) => actionsOf([st]).includes('sagemaker:UpdateInferenceComponent')).map((st) => JSON.stringify(st.Resource).match(/inference-component\/[^"]*/g)),
    );
    expect(grants).toEqual([['inference-component/team-a-*'], ['inference-component/team-b-*']]);
  });

  test('fails when two stages on one endpoint have prefixes of which one starts the other', () => {
    expect(() => Template.fromStack(sharedEndpoint(['team-', 'TEAM-a-']))).toThrow(
      /the Deploy stages of Test\/Team0 and Test\/Team1 deploy adapters to Test\/Serving under the prefixes "team-" and "TEAM-a-", one of which starts the other/,
    );
    // both on the default prefix (the endpoint's name)
    expect(() => Template.fromStack(sharedEndpoint([undefined, undefined]))).toThrow(/prefixes "shared-" and "shared-"/);
  });

  test("fails when the prefix takes in an adapter the endpoint's stack manages", () => {
    expect(() => Template.fromStack(sharedEndpoint(['team-a-'], 'team-a-legal'))).toThrow(
      /deploys adapters named "team-a-\*" to Test\/Serving, which takes in its CloudFormation-managed adapters team-a-legal/,
    );
    expect(() => Template.fromStack(sharedEndpoint(['team-a-'], 'legal'))).not.toThrow();
  });

  test('fails when the prefix cannot start an adapter name, or the endpoint serves one model', () => {
    expect(() => machine({ inferenceComponents: true, adapterNamePrefix: '-team' })).toThrow(/adapterNamePrefix "-team" is invalid.*Use e\.g\. "team-a-"/);
    expect(() => machine({ inferenceComponents: true, adapterNamePrefix: 'team_a_' })).toThrow(/adapterNamePrefix "team_a_" is invalid/);
    expect(() => machine({ adapterNamePrefix: 'team-a-' })).toThrow(/adapterNamePrefix "team-a-": endpoint Test\/Serving serves one model, not adapters.*Leave adapterNamePrefix out/);
  });
});

describe('VllmDeployStage validation', () => {
  test('fails when pollInterval is under a second', () => {
    const stack = testStack();
    const store = new DatasetStore(stack, 'Store');
    const endpoint = new VllmEndpoint(stack, 'Serving', { instanceType: 'ml.g5.2xlarge', baseModel: 'meta-llama/Llama-3.1-8B-Instruct', modelData: VllmModelData.fromS3Prefix(store.bucket, 'm/') });
    const stage = new VllmDeployStage({ endpoint, pollInterval: Duration.millis(0) });
    expect(() => stage.bind(stack, {} as any)).toThrow(/pollInterval must be 1 second to 5 minutes .*got 0 s/);
  });
});

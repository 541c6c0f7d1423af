import { Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { DatasetStore } from '../../constructs/dataset-store';
import { DatasetValidationFunction } from '../../constructs/dataset-validator';
import { FineTuningJob } from '../../constructs/fine-tuning-job';
import { FineTuningPipeline, GATE_REJECTED_ERROR, IPipelineTrainingJob } from '../../constructs/fine-tuning-pipeline';
import { environmentSettings, planRunStep } from '../../constructs/fine-tuning-pipeline/handler/plan-run';
import { readEvalReport } from '../../constructs/fine-tuning-pipeline/handler/read-eval-report';
import { ModelRegistry } from '../../constructs/model-registry';
import { DEFAULT_VLLM_DLC_TAG } from '../../constructs/vllm-endpoint/image';
import { parseRunRequest, runIdFor } from '../../lib/run-request';
import { complianceFindings, testStack } from '../support/app';
import { completedJob, definitionFromTemplate, lambdaTask, LocalHandler, resolveTemplateValue, runLocal, snsRecorder } from '../support/local-sfn';
import { movedReport } from '../support/trainer-reports';
import { pipelineStack } from './pipeline-stack';

const { stack, pipeline } = pipelineStack();
const template = Template.fromStack(stack);
const definition = definitionFromTemplate(template.toJSON());
const states: Array<[string, any]> = Object.entries(definition.States);
const taskStates = states.filter(([, s]) => s.Type === 'Task');

describe('FineTuningPipeline template', () => {
  test('logs ALL events with execution data to a KMS-encrypted log group with retention, with X-Ray on', () => {
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineType: 'STANDARD',
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: { Level: 'ALL', IncludeExecutionData: true, Destinations: [Match.anyValue()] },
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', {
      LogGroupName: Match.stringLikeRegexp('^/aws/vendedlogs/states/'),
      KmsKeyId: Match.anyValue(),
      RetentionInDays: 365,
    });
  });

  test('every Task retries only named transient errors, with backoff and full jitter, and catches everything', () => {
    expect(taskStates.length).toBeGreaterThanOrEqual(15);
    for (const [name, state] of taskStates) {
      // The job states retry nothing: their failures go to the inspection (see the next test).
      const jobState = name === 'Train' || name === 'Evaluate';
      expect({ name, retry: state.Retry?.length > 0 }).toEqual({ name, retry: !jobState });
      for (const retrier of state.Retry ?? []) {
        expect(retrier).toMatchObject({ JitterStrategy: 'FULL', BackoffRate: 2, MaxDelaySeconds: expect.any(Number) });
        // Never States.ALL or States.TaskFailed: a failed training job or a bad dataset fails the same way twice.
        expect(retrier.ErrorEquals).not.toContain('States.ALL');
        expect(retrier.ErrorEquals).not.toContain('States.TaskFailed');
      }
      expect({ name, catchAll: state.Catch?.some((c: any) => c.ErrorEquals.includes('States.ALL')) }).toEqual({ name, catchAll: true });
    }
    // Timeouts are retried only by the Lambdas that are pure or read-only.
    const timeoutRetried = taskStates.filter(([, s]) => (s.Retry ?? []).some((r: any) => r.ErrorEquals.includes('States.Timeout'))).map(([n]) => n);
    expect(timeoutRetried.sort()).toEqual(['InspectEvaluation', 'InspectTraining', 'PlanRun', 'ReadEvalReport', 'ValidateDataset']);
  });

  test('a failed Train or Evaluate state is inspected, never blindly retried: a retried create whose answer was lost would meet ResourceInUse', () => {
    for (const [job, inspect] of [['Train', 'InspectTraining'], ['Evaluate', 'InspectEvaluation']]) {
      expect(definition.States[job].Retry).toBeUndefined();
      expect(definition.States[job].Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: inspect }]);
    }
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: 'sagemaker:DescribeTrainingJob', Resource: 'arn:aws:sagemaker:us-east-1:123456789012:training-job/tuneyard-*' })]) },
      Roles: [{ Ref: Match.stringLikeRegexp('InspectJobFunctionRole') }],
    });
  });

  test('notifies stopped runs with an EventBridge rule on the execution status, with the cause StopExecution was given', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.states'],
        'detail-type': ['Step Functions Execution Status Change'],
        detail: { status: ['ABORTED'], stateMachineArn: [{ Ref: Match.stringLikeRegexp('^Pipeline') }] },
      },
      Targets: [
        Match.objectLike({
          Arn: { Ref: Match.stringLikeRegexp('^Topic') },
          InputTransformer: {
            InputPathsMap: { 'detail-name': '$.detail.name', 'detail-cause': '$.detail.cause', 'detail-error': '$.detail.error', 'detail-executionArn': '$.detail.executionArn', time: '$.time' },
            InputTemplate: Match.stringLikeRegexp('"outcome":"ABORTED".*"runId":<detail-name>.*"cause":<detail-cause>'),
          },
        }),
      ],
    });
    // EventBridge may publish to the topic and use its key.
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: 'sns:Publish', Principal: { Service: 'events.amazonaws.com' } })]) },
    });
    template.hasResourceProperties('AWS::KMS::Key', {
      KeyPolicy: { Statement: Match.arrayWith([Match.objectLike({ Action: ['kms:Decrypt', 'kms:GenerateDataKey*'], Principal: { Service: 'events.amazonaws.com' } })]) },
    });
  });

  test('every Task has a timeout', () => {
    for (const [name, state] of taskStates) {
      expect({ name, timeout: state.TimeoutSeconds ?? state.TimeoutSecondsPath }).toEqual({ name, timeout: expect.anything() });
    }
    expect(definition.States.PlanRun.TimeoutSeconds).toBe(900);
  });

  test('every failure path ends in a Fail state named for its cause, after a notification', () => {
    const fails = states.filter(([, s]) => s.Type === 'Fail').map(([n]) => n).sort();
    expect(fails).toEqual(
      ['DatasetInvalid', 'DatasetValidationFailed', 'EvalReportInvalid', 'EvaluationFailed', 'PlanRunFailed', 'RegistrationFailed', 'Rejected', 'RunRequestInvalid', 'TrainingFailed'].sort(),
    );
    for (const fail of fails) {
      const notifier = states.find(([, s]) => s.Next === fail);
      expect(notifier?.[1].Resource).toBe('arn:aws:states:::sns:publish');
    }
    expect(definition.States.Rejected).toEqual({ Type: 'Fail', Error: GATE_REJECTED_ERROR, CausePath: '$.report.summary' });
    expect(definition.States.TrainingFailed).toEqual({ Type: 'Fail', ErrorPath: '$.error.Error', CausePath: '$.error.Cause' });
  });

  test("counts gate rejections with a metric filter on the log group, in the pipeline's own namespace", () => {
    // Tuneyard/Pipeline/<state machine name>: another pipeline's rejections never mix in
    const namespace = { 'Fn::Join': ['', ['Tuneyard/Pipeline/', { 'Fn::GetAtt': [stack.resolve((pipeline.stateMachine.node.defaultChild as any).logicalId), 'Name'] }]] };
    template.hasResourceProperties('AWS::Logs::MetricFilter', {
      LogGroupName: { Ref: stack.resolve((pipeline.logGroup.node.defaultChild as any).logicalId) },
      FilterPattern: '{ ($.type = "ExecutionFailed") && ($.details.error = "Tuneyard.GateRejected") }',
      MetricTransformations: [Match.objectLike({ MetricNamespace: namespace, MetricName: 'RunsRejected', MetricValue: '1' })],
    });
    expect(stack.resolve(pipeline.metricRunsRejected().namespace)).toEqual(namespace);
    expect(stack.resolve(pipeline.metricExecutionsFailed().metricName)).toBe('ExecutionsFailed');
  });

  test('passes the four compliance packs with no unacknowledged finding', () => {
    expect(complianceFindings(stack)).toEqual([]);
  });

  test('fails when the timeout is longer than 24 days', () => {
    expect(() => pipelineStack({ timeout: Duration.days(30) })).toThrow(/timeout must be between 1 minute and 24 days; got 30 days/);
  });

  test('measures run duration with the state machine\'s ExecutionTime metric', () => {
    const time = pipeline.metricExecutionTime();
    expect([time.namespace, time.metricName]).toEqual(['AWS/States', 'ExecutionTime']);
    expect(stack.resolve(time.dimensions)).toEqual({ StateMachineArn: stack.resolve(pipeline.stateMachine.stateMachineArn) });
  });
});

/**
 * A pipeline as a user composes it over one store, its template, and what its PlanRun function is
 * told: the synthesized environment, read by the function's own reader.
 */
function composed(build: (stack: Stack, store: DatasetStore) => FineTuningPipeline) {
  const stack = testStack('Team');
  const store = new DatasetStore(stack, 'Store');
  const pipeline = build(stack, store);
  const template = Template.fromStack(stack).toJSON();
  const logicalId = (c: { node: { defaultChild?: unknown } }) => stack.getLogicalId(c.node.defaultChild as any);
  const variables = template.Resources[logicalId(pipeline.planRunFunction)].Properties.Environment.Variables;
  // The training-job ARNs the state machine's role may create jobs under (AccessDenied on any other name).
  const allowedJobArns = Object.values(template.Resources as Record<string, any>)
    .filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles).includes(logicalId(pipeline.role as any)))
    .flatMap((r) => r.Properties.PolicyDocument.Statement as any[])
    .filter((st) => [st.Action].flat().includes('sagemaker:CreateTrainingJob'))
    .flatMap((st) => [resolveTemplateValue(st.Resource, template.Resources)].flat() as string[]);
  return {
    stack,
    store,
    pipeline,
    template,
    variables,
    allowedJobArns,
    env: environmentSettings(resolveTemplateValue(variables, template.Resources)),
    definition: definitionFromTemplate(template, logicalId(pipeline.stateMachine)),
  };
}

/** Whether an IAM resource pattern (`*` wildcards) admits `arn`. */
const admits = (pattern: string, arn: string) => new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.?+^$()[\]{}|\\/]/g, '\\$&')).join('.*')}$`).test(arn);

/** Runs the synthesized definition once, with the real PlanRun and ReadEvalReport and local stand-ins for SageMaker, the validator and SNS. */
async function runOnce(p: ReturnType<typeof composed>) {
  const request = { dataset: { name: 'support-chats', sha256: 'b'.repeat(64) }, baseModel: `s3://${p.env.bucketName}/base-models/llama-3.1-8b/`, recipe: { method: 'qlora', batchSize: 2 }, autoApprove: true };
  const runId = runIdFor(parseRunRequest(request));
  const calls: Record<string, any[]> = {};
  const record = (name: string, fn: LocalHandler): LocalHandler => async (input) => {
    (calls[name] ??= []).push(input);
    return fn(input);
  };
  // the real trainer's eval.json, with a tuned model 20% better than the base
  const report = Buffer.from(JSON.stringify(movedReport(false, { evalLossRatio: 0.8 })));
  const reportsRead: string[] = [];
  const s3Client = {
    send: (async (command: any) => {
      reportsRead.push(`${command.input.Bucket}/${command.input.Key}`);
      return { ContentLength: report.length, Body: { transformToByteArray: async () => new Uint8Array(report) } };
    }) as any,
  };
  const job = (input: any) => completedJob(input);
  const sns = snsRecorder();
  const handlers: Record<string, LocalHandler> = {
    PlanRun: record('PlanRun', lambdaTask((event) => planRunStep(event, p.env))),
    ValidateDataset: record('ValidateDataset', lambdaTask(() => ({ ok: true, format: 'chat', rows: 500 }))),
    Train: record('Train', job),
    Evaluate: record('Evaluate', job),
    ReadEvalReport: record('ReadEvalReport', lambdaTask((event) => readEvalReport(event, s3Client))),
    Register: record('Register', () => ({ ModelPackageArn: 'arn:aws:sagemaker:us-east-1:123456789012:model-package/models/1' })),
  };
  for (const name of Object.keys(p.definition.States)) if (name.startsWith('Notify')) handlers[name] = sns;
  const run = await runLocal(p.definition, request, handlers, { executionName: runId });
  return { run, runId, calls, reportsRead, sns };
}

describe('PlanRun reads the tokenizer.json of a run\'s base model and reward model, the base model\'s tokenizer_config.json, and no other object', () => {
  // GIVEN the pipeline's PlanRun role
  const statements = Object.values(template.findResources('AWS::IAM::Policy'))
    .filter((p: any) => p.Properties.Roles.some((r: any) => /^PipelinePlanRunFunctionRole/.test(r.Ref)))
    .flatMap((p: any) => p.Properties.PolicyDocument.Statement);
  const bucket = { 'Fn::GetAtt': [stack.getLogicalId(pipeline.trainingJob.store.bucket.node.defaultChild as any), 'Arn'] };
  const objects = (key: string) => ({ 'Fn::Join': ['', [bucket, `/${key}`]] });

  test('gets base-models/*/tokenizer.json, base-models/*/tokenizer_config.json and artifacts/*/tokenizer.json only, lists those two prefixes, and decrypts with the store key', () => {
    const reads = statements.filter((s) => [s.Action].flat().some((a: string) => a.startsWith('s3:Get')));
    expect(reads).toEqual([expect.objectContaining({ Effect: 'Allow', Action: 's3:GetObject' })]);
    expect(reads[0].Resource).toHaveLength(3);
    expect(reads[0].Resource).toEqual(
      expect.arrayContaining([objects('base-models/*/tokenizer.json'), objects('artifacts/*/tokenizer.json'), objects('base-models/*/tokenizer_config.json')]),
    );
    const lists = statements.filter((s) => [s.Action].flat().includes('s3:ListBucket'));
    expect(lists).toEqual([
      expect.objectContaining({ Action: 's3:ListBucket', Resource: bucket, Condition: { StringLike: { 's3:prefix': ['base-models/*', 'artifacts/*'] } } }),
    ]);
    const key = { 'Fn::GetAtt': [stack.getLogicalId(pipeline.trainingJob.store.encryptionKey!.node.defaultChild as any), 'Arn'] };
    expect(statements.filter((s) => [s.Action].flat().includes('kms:Decrypt'))).toEqual([expect.objectContaining({ Resource: key })]);
    // nothing else of the bucket: no object of datasets/, checkpoints/ or a whole model folder
    const s3Resources = statements.filter((s) => JSON.stringify(s.Action).includes('s3:')).flatMap((s) => [s.Resource].flat());
    expect(s3Resources.map((r) => JSON.stringify(r)).filter((r) => r.includes('/') && !/tokenizer\.json|base-models\/\*\/tokenizer_config\.json|graders\.json/.test(r))).toEqual([]);
  });

  test('PlanRun has the memory to parse two large tokenizer.json files (1,024 MB)', () => {
    template.hasResourceProperties('AWS::Lambda::Function', { Description: Match.stringLikeRegexp('plans the run'), MemorySize: 1024 });
  });

  test('the PlanRun function and its role pass the four compliance packs (the wildcard keys acknowledged with reasons)', () => {
    expect(complianceFindings(stack)).toEqual([]);
  });
});

describe('FineTuningPipeline with every collaborator defaulted: { store }', () => {
  // GIVEN only a store
  const p = composed((stack, store) => new FineTuningPipeline(stack, 'Pipeline', { store }));

  test('creates and exposes a training job on the store, a registry, a dataset validator and a topic', () => {
    expect(p.pipeline.trainingJob).toBeInstanceOf(FineTuningJob);
    expect(p.pipeline.trainingJob.store).toBe(p.store);
    expect(p.pipeline.registry).toBeInstanceOf(ModelRegistry);
    expect(p.pipeline.datasetValidator).toBeInstanceOf(DatasetValidationFunction);
    expect(p.pipeline.datasetValidator.store).toBe(p.store);
    const template = Template.fromStack(p.stack);
    template.resourceCountIs('AWS::SageMaker::ModelPackageGroup', 1);
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
    // The validator is the ValidateDataset state's function; its logs use the pipeline's log key.
    expect(p.definition.States.ValidateDataset.Resource).toContain(p.stack.getLogicalId((p.pipeline.datasetValidator.function as any).node.defaultChild));
    template.hasResourceProperties('AWS::Logs::LogGroup', {
      LogGroupName: Match.anyValue(),
      KmsKeyId: { 'Fn::GetAtt': [p.stack.getLogicalId(p.pipeline.logEncryptionKey.node.defaultChild as any), 'Arn'] },
    });
  });

  test("plans runs with the job's and the store's settings: no planSettings to repeat", () => {
    const key = { 'Fn::GetAtt': [p.stack.getLogicalId(p.store.encryptionKey!.node.defaultChild as any), 'Arn'] };
    expect(p.variables).toMatchObject({
      TUNEYARD_BUCKET_NAME: { Ref: p.stack.getLogicalId(p.store.bucket.node.defaultChild as any) },
      TUNEYARD_VOLUME_KMS_KEY_ARN: key,
      TUNEYARD_OUTPUT_KMS_KEY_ARN: key,
      TUNEYARD_ALLOW_HUB_MODELS: 'false',
      TUNEYARD_JOB_NAME_PREFIX: 'tuneyard-',
      // the bundled trainer's CUDA build runs on sm_75 and later
      TUNEYARD_MIN_COMPUTE_CAPABILITY: '7.5',
    });
  });

  test('refuses a run on GPUs the bundled trainer cannot run on (V100) in PlanRun, before any job starts', () => {
    const request = { dataset: { name: 'support-chats', sha256: 'b'.repeat(64) }, baseModel: `s3://${p.env.bucketName}/base-models/llama-3.1-8b/`, recipe: { method: 'qlora', batchSize: 1 } };
    expect(() => planRunStep({ request: { ...request, instanceType: 'ml.p3.2xlarge' } }, p.env)).toThrow(/ml\.p3\.2xlarge has V100 GPUs \(compute capability 7\.0\)/);
    expect(planRunStep({ request: { ...request, instanceType: 'ml.g5.2xlarge' } }, p.env).plan.resourceConfig.InstanceType).toBe('ml.g5.2xlarge');
  });

  test('passes the four compliance packs with no unacknowledged finding', () => {
    expect(complianceFindings(p.stack)).toEqual([]);
  });

  test('runs end to end: jobs with network isolation and no VPC, the model registered with the vLLM DLC as its serving image', async () => {
    const { run, runId, calls, sns } = await runOnce(p);
    expect([run.status, run.error, run.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
    expect(run.entered).toEqual(['PlanRun', 'ValidateDataset', 'Train', 'Evaluate', 'ReadEvalReport', 'Gate', 'Register', 'NotifySucceeded', 'Succeeded']);
    expect(calls.Train[0]).toMatchObject({ TrainingJobName: `tuneyard-${runId}-train`, EnableNetworkIsolation: true });
    expect(calls.Train[0]).not.toHaveProperty('VpcConfig');
    expect(calls.Register[0].InferenceSpecification.Containers[0].Image).toBe(`763104351884.dkr.ecr.us-east-1.amazonaws.com/vllm:${DEFAULT_VLLM_DLC_TAG}`);
    expect(sns.messages.map((m) => m.message.outcome)).toEqual(['SUCCEEDED']);
    expect(run.requestErrors).toEqual([]);
  });
});

describe("FineTuningPipeline with a team's training job (jobNamePrefix 'teama-')", () => {
  // GIVEN two teams' pipelines over one store: team A's job has its own prefix, team B takes every default
  const p = composed((stack, store) => {
    const teamA = new FineTuningPipeline(stack, 'TeamA', { store, trainingJob: new FineTuningJob(stack, 'TeamAJobs', { store, jobNamePrefix: 'teama-' }) });
    new FineTuningPipeline(stack, 'TeamB', { store });
    return teamA;
  });

  test("PlanRun is told the job's prefix, the prefix the state machine may create jobs under", () => {
    expect(p.variables.TUNEYARD_JOB_NAME_PREFIX).toBe('teama-');
    expect(p.env.jobNamePrefix).toBe('teama-');
    expect(p.allowedJobArns).toEqual(['arn:aws:sagemaker:us-east-1:123456789012:training-job/teama-*']);
  });

  test("a run names its jobs with the team's prefix, and the role admits them (no AccessDenied)", async () => {
    const { run, runId, calls, reportsRead } = await runOnce(p);
    expect([run.status, run.error, run.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
    const names = [calls.Train[0].TrainingJobName, calls.Evaluate[0].TrainingJobName];
    expect(names).toEqual([`teama-${runId}-train`, `teama-${runId}-eval`]);
    for (const name of names) expect(p.allowedJobArns.some((arn) => admits(arn, `arn:aws:sagemaker:us-east-1:123456789012:training-job/${name}`))).toBe(true);
    expect(reportsRead).toEqual([`${p.env.bucketName}/eval-reports/${runId}/teama-${runId}-eval/output/model/eval.json`]);
    expect(calls.Register[0].CustomerMetadataProperties.trainingJobName).toBe(`teama-${runId}-train`);
    expect(run.requestErrors).toEqual([]);
  });

  test('the two pipelines pass the four compliance packs', () => {
    expect(complianceFindings(p.stack)).toEqual([]);
  });
});

describe('FineTuningPipeline refuses at synth what cannot run', () => {
  function twoStores() {
    const stack = testStack();
    return { stack, store: new DatasetStore(stack, 'Store'), other: new DatasetStore(stack, 'OtherStore') };
  }

  test("fails when the training job works on another store than the pipeline's", () => {
    const { stack, store, other } = twoStores();
    const trainingJob = new FineTuningJob(stack, 'Jobs', { store: other });
    expect(() => new FineTuningPipeline(stack, 'Pipeline', { store, trainingJob })).toThrow(
      /trainingJob works on another data store \(Test\/OtherStore\) than the pipeline's store \(Test\/Store\): .*Create the FineTuningJob with the pipeline's store, or omit trainingJob/,
    );
  });

  test("fails when the dataset validator reads another store than the pipeline's", () => {
    const { stack, store, other } = twoStores();
    const datasetValidator = new DatasetValidationFunction(stack, 'Validator', { store: other });
    expect(() => new FineTuningPipeline(stack, 'Pipeline', { store, datasetValidator })).toThrow(
      /datasetValidator reads another data store \(Test\/OtherStore\) than the pipeline's store \(Test\/Store\): .*Create the DatasetValidationFunction with the pipeline's store, or omit datasetValidator/,
    );
  });

  test('accepts collaborators on another DatasetStore over the same bucket', () => {
    const stack = testStack();
    const key = new DatasetStore(stack, 'Owner').encryptionKey!;
    const imported = (id: string) => new DatasetStore(stack, id, { bucket: s3.Bucket.fromBucketName(stack, `${id}Bucket`, 'team-data'), encryptionKey: key });
    const store = imported('Store');
    expect(() => new FineTuningPipeline(stack, 'Pipeline', { store, trainingJob: new FineTuningJob(stack, 'Jobs', { store: imported('Other') }) })).not.toThrow();
  });

  test("fails when a training job's prefix is too long for the job names", () => {
    const { stack, store } = twoStores();
    const job = new FineTuningJob(stack, 'Jobs', { store });
    // another implementation of the interface, whose prefix no FineTuningJob would accept
    const trainingJob: IPipelineTrainingJob = {
      store,
      encryptionKey: job.encryptionKey,
      allowHubModels: false,
      jobNamePrefix: 'team-alpha-',
      trainState: (id) => job.trainState(id),
      evaluateState: (id) => job.evaluateState(id),
      grantStart: (grantee) => job.grantStart(grantee),
    };
    expect(() => new FineTuningPipeline(stack, 'Pipeline', { store, trainingJob })).toThrow(
      /trainingJob.jobNamePrefix "team-alpha-" cannot start the job names: use 1-9 lower-case letters, digits or hyphens/,
    );
  });

  test('fails when the store has no KMS key and the training job is defaulted', () => {
    const stack = testStack();
    const store = new DatasetStore(stack, 'Store', { bucket: s3.Bucket.fromBucketName(stack, 'Bucket', 'team-data') });
    expect(() => new FineTuningPipeline(stack, 'Pipeline', { store })).toThrow(
      /store has no KMS key, and the default trainingJob encrypts .* pass trainingJob: new FineTuningJob\(scope, id, \{ store, encryptionKey \}\)/,
    );
  });

  test('fails when vpcSubnets is given without a vpc', () => {
    const { stack, store } = twoStores();
    expect(() => new FineTuningPipeline(stack, 'Pipeline', { store, vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_ISOLATED } })).toThrow(
      /vpcSubnets places the functions in a VPC, but no vpc was given: pass vpc too, or remove vpcSubnets/,
    );
  });
});

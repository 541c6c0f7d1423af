import * as fs from 'node:fs';
import * as path from 'node:path';
import { Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { FineTuningJob, FineTuningJobProps, JOB_RESULT_FIELDS, TRAINER_ENTRYPOINT } from './fine-tuning-job';
import { complianceFindings, testStack } from '../../test/support/app';
import { DatasetStore } from '../dataset-store';
import { TrainingImage } from '../training-image';

const IMAGE = '123456789012.dkr.ecr.us-east-1.amazonaws.com/tuneyard-trainer:1.0';
const METRICS = JSON.parse(fs.readFileSync(path.join(__dirname, '../../training-images/trainer/metrics.json'), 'utf8'));

function setup(props: Partial<FineTuningJobProps> = {}, stack: Stack = testStack()) {
  const vpc = new ec2.Vpc(stack, 'Vpc', {
    ipAddresses: ec2.IpAddresses.cidr('10.20.0.0/16'),
    availabilityZones: ['us-east-1a', 'us-east-1b'],
    natGateways: 0,
    subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 20 }],
  });
  const store = new DatasetStore(stack, 'Store');
  const job = new FineTuningJob(stack, 'Job', { store, vpc, image: TrainingImage.fromImageUri(IMAGE), s3PrefixListId: 'pl-63a5400a', ...props });
  return { stack, job, store, vpc };
}

/** The state's JSON as the state machine renders it, with tokens resolved by the stack. */
function renderState(stack: Stack, state: sfn.State): Record<string, any> {
  return stack.resolve(state.toStateJson());
}

describe('FineTuningJob', () => {
  test('renders the full CreateTrainingJob request of the Train state', () => {
    // GIVEN
    const { stack, job } = setup();
    // WHEN
    const json = renderState(stack, job.trainState('Train'));
    // THEN
    expect(json.Resource).toBe('arn:aws:states:::sagemaker:createTrainingJob.sync');
    expect(json.TimeoutSeconds).toBeGreaterThan(2 * 24 * 3600);
    expect(json.Parameters).toMatchObject({
      'TrainingJobName.$': '$.plan.trainingJobName',
      'HyperParameters.$': '$.plan.hyperParameters',
      'InputDataConfig.$': '$.plan.inputDataConfig',
      'OutputDataConfig.$': '$.plan.outputDataConfig',
      'ResourceConfig.$': '$.plan.resourceConfig',
      'StoppingCondition.$': '$.plan.stoppingCondition',
      'EnableManagedSpotTraining.$': '$.plan.enableManagedSpotTraining',
      'CheckpointConfig.$': '$.plan.checkpointConfig',
      RoleArn: { 'Fn::GetAtt': [expect.stringMatching(/^JobRole/), 'Arn'] },
      AlgorithmSpecification: { TrainingImage: IMAGE, TrainingInputMode: 'File', MetricDefinitions: METRICS, ContainerEntrypoint: ['python', '-m', 'tuneyard_trainer'], ContainerArguments: ['train'] },
      VpcConfig: { SecurityGroupIds: [{ 'Fn::GetAtt': [expect.stringMatching(/^JobSecurityGroup/), 'GroupId'] }], Subnets: expect.arrayContaining([{ Ref: expect.stringMatching(/^VpcisolatedSubnet1/) }]) },
      EnableNetworkIsolation: true,
      EnableInterContainerTrafficEncryption: true,
      Environment: { HF_HUB_OFFLINE: '1', HF_DATASETS_OFFLINE: '1', HF_HUB_DISABLE_TELEMETRY: '1' },
    });
    expect(json.Parameters.VpcConfig.Subnets).toHaveLength(2);
    expect(Object.keys(json.ResultSelector)).toEqual(JOB_RESULT_FIELDS.map((f) => `${f}.$`));
    expect(json.ResultPath).toBe('$.training');
  });

  test('the Evaluate state runs the image in evaluate mode, on demand, with the evaluation fragments', () => {
    // GIVEN
    const { stack, job } = setup();
    // WHEN
    const json = renderState(stack, job.evaluateState('Evaluate'));
    // THEN
    expect(json.Parameters).toMatchObject({
      'TrainingJobName.$': '$.plan.evaluationJobName',
      'InputDataConfig.$': '$.plan.evaluationInputDataConfig',
      'OutputDataConfig.$': '$.plan.evaluationOutputDataConfig',
      'ResourceConfig.$': '$.plan.evaluationResourceConfig',
      'StoppingCondition.$': '$.plan.evaluationStoppingCondition',
      AlgorithmSpecification: expect.objectContaining({ ContainerArguments: ['evaluate'] }),
      EnableNetworkIsolation: true,
    });
    expect(json.Parameters).not.toHaveProperty(['EnableManagedSpotTraining.$']);
    expect(json.Parameters).not.toHaveProperty(['CheckpointConfig.$']);
    expect(json.ResultPath).toBe('$.evaluation');
  });

  test('takes network isolation from the plan only when Hub models are allowed', () => {
    const { stack, job } = setup({ allowHubModels: true });
    const json = renderState(stack, job.trainState('Train'));
    expect(json.Parameters['EnableNetworkIsolation.$']).toBe('$.plan.enableNetworkIsolation');
    expect(json.Parameters).not.toHaveProperty('EnableNetworkIsolation');
  });

  test('the security group allows inter-container traffic and HTTPS to the VPC and S3 only', () => {
    const { stack } = setup();
    const template = Template.fromStack(stack);
    const groups = template.findResources('AWS::EC2::SecurityGroup', { Properties: { GroupDescription: Match.stringLikeRegexp('Tuneyard training jobs') } });
    const [[groupId, group]] = Object.entries(groups);
    expect(group.Properties.SecurityGroupIngress ?? []).toEqual([]);
    expect(JSON.stringify(group)).not.toContain('0.0.0.0/0');
    const separate = Object.values(template.findResources('AWS::EC2::SecurityGroupEgress')).map((r) => r.Properties);
    const egress = [...group.Properties.SecurityGroupEgress, ...separate];
    expect(egress).toHaveLength(3);
    expect(egress).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ IpProtocol: 'tcp', FromPort: 443, ToPort: 443, CidrIp: { 'Fn::GetAtt': [expect.stringMatching(/^Vpc/), 'CidrBlock'] } }),
        expect.objectContaining({ IpProtocol: 'tcp', FromPort: 443, ToPort: 443, DestinationPrefixListId: 'pl-63a5400a' }),
      ]),
    );
    template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', { IpProtocol: '-1', GroupId: { 'Fn::GetAtt': [groupId, 'GroupId'] }, SourceSecurityGroupId: { 'Fn::GetAtt': [groupId, 'GroupId'] } });
    template.hasResourceProperties('AWS::EC2::SecurityGroupEgress', { IpProtocol: '-1', GroupId: { 'Fn::GetAtt': [groupId, 'GroupId'] }, DestinationSecurityGroupId: { 'Fn::GetAtt': [groupId, 'GroupId'] } });
  });

  test('the execution role is scoped to the data prefixes, the VPC and the log group', () => {
    const { stack } = setup();
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: { Statement: [Match.objectLike({ Principal: { Service: 'sagemaker.amazonaws.com' }, Condition: { StringEquals: { 'aws:SourceAccount': '123456789012' } } })] },
    });
    const statements = Object.values(template.findResources('AWS::IAM::Policy')).flatMap((p) => p.Properties.PolicyDocument.Statement as any[]);
    const s3Resources = statements.filter((s) => JSON.stringify(s.Action).includes('s3:')).flatMap((s) => [s.Resource].flat());
    const prefixes = s3Resources.map((r) => JSON.stringify(r)).filter((r) => r.includes('/'));
    for (const prefix of ['datasets/*', 'base-models/*', 'artifacts/*', 'eval-reports/*', 'checkpoints/*']) expect(prefixes.join()).toContain(prefix);
    expect(prefixes.every((r) => /\/(datasets|base-models|artifacts|eval-reports|checkpoints)\/\*/.test(r))).toBe(true);
    const eni = statements.find((s) => s.Sid === 'NetworkInterfacesInTheVpc');
    expect(eni.Condition).toEqual({ ArnEquals: { 'ec2:Vpc': { 'Fn::Join': ['', expect.arrayContaining([expect.stringContaining(':vpc/'), { Ref: expect.stringMatching(/^Vpc/) }])] } } });
    expect(statements.find((s) => s.Sid === 'TrainingJobMetrics').Condition).toEqual({ StringEquals: { 'cloudwatch:namespace': '/aws/sagemaker/TrainingJobs' } });
    expect(JSON.stringify(statements.find((s) => s.Sid === 'TrainingJobLogs').Resource)).toContain('log-group:/aws/sagemaker/TrainingJobs:*');
    const ecr = statements.find((s) => JSON.stringify(s.Action).includes('ecr:BatchGetImage'));
    expect(JSON.stringify(ecr.Resource)).toContain('repository/tuneyard-trainer');
  });

  test('grantStart gives the pipeline role the job, PassRole and EventBridge rule permissions, scoped', () => {
    const { stack, job } = setup();
    const role = new iam.Role(stack, 'PipelineRole', { assumedBy: new iam.ServicePrincipal('states.amazonaws.com') });
    job.grantStart(role);
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: Match.stringLikeRegexp('^PipelineRole') }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: ['sagemaker:AddTags', 'sagemaker:CreateTrainingJob', 'sagemaker:DescribeTrainingJob', 'sagemaker:StopTrainingJob'],
            Resource: 'arn:aws:sagemaker:us-east-1:123456789012:training-job/tuneyard-*',
          }),
          // The Step Functions IAM policy for CreateTrainingJob .sync: without ListTags the Train state fails with AccessDenied.
          Match.objectLike({ Action: 'sagemaker:ListTags', Resource: '*' }),
          Match.objectLike({ Action: 'iam:PassRole', Condition: { StringEquals: { 'iam:PassedToService': 'sagemaker.amazonaws.com' } }, Resource: { 'Fn::GetAtt': [Match.stringLikeRegexp('^JobRole'), 'Arn'] } }),
          Match.objectLike({
            Action: ['events:DescribeRule', 'events:PutRule', 'events:PutTargets'],
            Resource: 'arn:aws:events:us-east-1:123456789012:rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule',
          }),
        ]),
      },
    });
    expect(complianceFindings(stack).filter((f) => / at (Job|PipelineRole)/.test(f))).toEqual([]);
  });

  test('metrics are SEARCH expressions matching the words of the job-name prefix in Host (unquoted: a token match)', () => {
    const { job } = setup({ jobNamePrefix: 'team-a-' });
    expect(job.metricTrainingLoss().expression).toBe(`SEARCH('{/aws/sagemaker/TrainingJobs,Host} MetricName="train_loss" (Host=team AND Host=a)', 'Average', 300)`);
    expect(setup({ jobNamePrefix: 'tuneyard-' }).job.metricTrainingLoss().expression).toContain(`MetricName="train_loss" Host=tuneyard'`);
    expect(job.metricEvalLoss().expression).toContain('MetricName="eval_loss"');
    expect(job.metricTokensPerSecond().expression).toContain('MetricName="tokens_per_second"');
    expect(job.metricGpuUtilization().expression).toContain('MetricName="GPUUtilization"');
    expect(job.metricGpuMemoryUtilization().expression).toContain('MetricName="GPUMemoryUtilization"');
    const names = METRICS.map((m: { Name: string }) => m.Name);
    for (const name of ['train_loss', 'eval_loss', 'tokens_per_second']) expect(names).toContain(name);
  });

  test('the RL and preference metrics search for names the MetricDefinitions publish (metrics.json)', () => {
    // GIVEN
    const { job } = setup({ jobNamePrefix: 'team-a-' });
    const defined: string[] = METRICS.map((m: { Name: string }) => m.Name);
    // WHEN
    const searched = {
      reward_mean: job.metricRewardMean(),
      kl: job.metricKl(),
      completion_length: job.metricCompletionLength(),
      clipped_ratio: job.metricClippedRatio(),
      format_miss_ratio: job.metricFormatMissRatio(),
      policy_loss: job.metricPolicyLoss(),
      reward_accuracy: job.metricRewardAccuracy(),
      reward_margin: job.metricRewardMargin(),
    };
    // THEN each is a SEARCH of its own metric over the prefix's jobs, and a metric the trainer prints
    for (const [name, metric] of Object.entries(searched)) {
      expect(metric.expression).toBe(`SEARCH('{/aws/sagemaker/TrainingJobs,Host} MetricName="${name}" (Host=team AND Host=a)', 'Average', 300)`);
      expect(defined).toContain(name);
    }
    expect(job.metricDefinitions.map((d) => d.name)).toEqual(defined);
    // options pass through, as for the loss metrics
    expect(job.metricKl({ period: Duration.minutes(1), label: 'kl' })).toMatchObject({ label: 'kl', expression: expect.stringMatching(/, 60\)$/) });
  });

  test('has no unacknowledged compliance finding', () => {
    // GIVEN a test VPC without flow logs (PlaneNetwork's tests cover those): only the job's own resources count
    const { stack } = setup();
    expect(complianceFindings(stack).filter((f) => / at Job/.test(f))).toEqual([]);
  });

  test('fails when the default recipe cannot fit its instance', () => {
    expect(() =>
      setup({ defaultRecipe: { recipe: { method: 'sft' }, baseModel: 's3://b/base-models/llama-3.1-8b/', instanceType: 'ml.g5.2xlarge' } }),
    ).toThrow(/defaultRecipe does not fit in GPU memory: full SFT of Llama 3\.1 8B .* needs ~1\d\d(\.\d)? GiB per GPU; ml\.g5\.2xlarge has 24 GiB per GPU: use qlora/);
  });

  test('accepts a default recipe that fits', () => {
    const { job } = setup({ defaultRecipe: { recipe: { method: 'qlora', batchSize: 2 }, baseModel: 'meta-llama/Llama-3.1-8B-Instruct' } });
    expect(job.defaultRecipe?.recipe.method).toBe('qlora');
  });

  test('fails when the default recipe is invalid or its model size is unknown', () => {
    expect(() => setup({ defaultRecipe: { recipe: { method: 'sft', loraR: 8 }, baseModel: 'x-8b' } })).toThrow(/recipe\.loraR: loraR applies to method lora or qlora or .* only and has no effect with method "sft"/);
    expect(() => setup({ defaultRecipe: { recipe: { method: 'lora' }, baseModel: 's3://b/base-models/custom/' } })).toThrow(/set baseModelParameters/);
  });

  test('fails when the job name prefix is invalid', () => {
    expect(() => setup({ jobNamePrefix: 'Tuneyard_' })).toThrow(/jobNamePrefix "Tuneyard_" is invalid/);
    expect(() => setup({ jobNamePrefix: 'much-too-long-' })).toThrow(/jobNamePrefix "much-too-long-" is invalid: use 1-9/);
  });
});

describe('FineTuningJob without a VPC (the default)', () => {
  // GIVEN only a store: no vpc, no image
  const stack = testStack();
  const store = new DatasetStore(stack, 'Store');
  const job = new FineTuningJob(stack, 'Job', { store });
  const train = renderState(stack, job.trainState('Train'));
  const evaluate = renderState(stack, job.evaluateState('Evaluate'));
  const template = Template.fromStack(stack);

  test('runs every job with network isolation and no VpcConfig, offline, with inter-container encryption', () => {
    for (const json of [train, evaluate]) {
      expect(json.Parameters).not.toHaveProperty('VpcConfig');
      expect(json.Parameters).toMatchObject({
        EnableNetworkIsolation: true,
        EnableInterContainerTrafficEncryption: true,
        Environment: { HF_HUB_OFFLINE: '1', HF_DATASETS_OFFLINE: '1', HF_HUB_DISABLE_TELEMETRY: '1' },
      });
    }
  });

  test('creates no security group and grants no network interfaces', () => {
    expect(job.securityGroup).toBeUndefined();
    template.resourceCountIs('AWS::EC2::SecurityGroup', 0);
    const statements = Object.values(template.findResources('AWS::IAM::Policy')).flatMap((p) => p.Properties.PolicyDocument.Statement as any[]);
    expect(statements.find((s) => s.Sid === 'NetworkInterfacesInTheVpc')).toBeUndefined();
    expect(JSON.stringify(statements)).not.toContain('ec2:CreateNetworkInterface');
  });

  test("runs the bundled trainer, built by cdk deploy, and encrypts with the store's key", () => {
    // the Docker image asset of training-images/trainer: an image in the bootstrap's container-assets repository
    expect(JSON.stringify(train.Parameters.AlgorithmSpecification.TrainingImage)).toMatch(/cdk-[a-z0-9]+-container-assets-123456789012-us-east-1:[0-9a-f]{64}/);
    expect(job.encryptionKey).toBe(store.encryptionKey);
    expect(job.store).toBe(store);
  });

  test('has no unacknowledged compliance finding', () => {
    expect(complianceFindings(stack)).toEqual([]);
  });

  test('fails when Hub models are allowed outside a VPC (their jobs run without network isolation)', () => {
    const other = testStack();
    expect(() => new FineTuningJob(other, 'Job', { store: new DatasetStore(other, 'Store'), allowHubModels: true })).toThrow(
      /allowHubModels is true but no vpc was given: .*Pass vpc \(a VPC with a NAT route to huggingface.co\), or leave allowHubModels false/,
    );
  });

  test('fails when VPC placement is given without a vpc', () => {
    const other = testStack();
    const otherStore = new DatasetStore(other, 'Store');
    expect(() => new FineTuningJob(other, 'Job', { store: otherStore, s3PrefixListId: 'pl-63a5400a' })).toThrow(
      /s3PrefixListId place the jobs in a VPC, but no vpc was given: pass vpc too, or remove s3PrefixListId/,
    );
    expect(() => new FineTuningJob(other, 'Job2', { store: otherStore, vpcSubnets: {}, s3PrefixListId: 'pl-63a5400a' })).toThrow(/\] vpcSubnets and s3PrefixListId place the jobs in a VPC/);
  });
});

test('the states run the trainer image with the entrypoint its Dockerfile declares', () => {
  const dockerfile = fs.readFileSync(path.join(__dirname, '..', '..', 'training-images', 'trainer', 'Dockerfile'), 'utf8');
  const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile);
  expect(entrypoint).not.toBeNull();
  expect(JSON.parse(entrypoint![1])).toEqual(TRAINER_ENTRYPOINT);
});

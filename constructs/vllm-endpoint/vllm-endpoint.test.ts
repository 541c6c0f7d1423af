import { App, Duration, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import { complianceFindings, TEST_ENV, testApp, testStack } from '../../test/support/app';
import { DLC_ACCOUNTS, VllmDeployment, VllmEndpoint, VllmEndpointProps, VllmImage, VllmModelData } from '.';
import { PlaneNetwork } from '../plane-network';

function setup(stack: Stack = testStack()) {
  const key = new kms.Key(stack, 'DataKey', { enableKeyRotation: true });
  const bucket = s3.Bucket.fromBucketAttributes(stack, 'Data', { bucketName: 'tuneyard-data', encryptionKey: key });
  return { stack, bucket, key };
}

function endpoint(props: Partial<VllmEndpointProps> = {}, stack?: Stack) {
  const ctx = setup(stack);
  const ep = new VllmEndpoint(ctx.stack, 'Serving', {
    instanceType: 'ml.g5.2xlarge',
    baseModel: 'meta-llama/Llama-3.1-8B-Instruct',
    modelData: VllmModelData.fromS3Prefix(ctx.bucket, 'artifacts/run-1/model/full'),
    ...props,
  });
  return { ...ctx, ep, template: Template.fromStack(ctx.stack) };
}

describe('VllmEndpoint, single model', () => {
  // GIVEN an 8B model on ml.g5.2xlarge with autoscaling
  const { stack, ep, template } = endpoint({ autoScaling: { maxInstances: 3 } });

  test('serves the uncompressed model folder from the DLC with network isolation and the vLLM environment', () => {
    template.hasResourceProperties('AWS::SageMaker::Model', {
      EnableNetworkIsolation: true,
      PrimaryContainer: {
        Image: '763104351884.dkr.ecr.us-east-1.amazonaws.com/vllm:server-sagemaker-cuda-v1.3',
        ModelDataSource: {
          S3DataSource: { S3Uri: 's3://tuneyard-data/artifacts/run-1/model/full/', S3DataType: 'S3Prefix', CompressionType: 'None' },
        },
        Environment: Match.objectLike({
          SM_VLLM_MODEL: '/opt/ml/model',
          SM_VLLM_SERVED_MODEL_NAME: 'meta-llama/Llama-3.1-8B-Instruct',
          SM_VLLM_TENSOR_PARALLEL_SIZE: '1',
          SM_VLLM_MAX_MODEL_LEN: '8192',
          SM_VLLM_GPU_MEMORY_UTILIZATION: '0.9',
          SM_VLLM_DTYPE: 'auto',
        }),
      },
    });
    const env = Object.values(template.findResources('AWS::SageMaker::Model'))[0].Properties.PrimaryContainer.Environment;
    expect(env.SM_VLLM_ENABLE_LORA).toBeUndefined();
  });

  test('the variant names the model, pins the AMI and sizes the startup and download timeouts for 8B', () => {
    template.hasResourceProperties('AWS::SageMaker::EndpointConfig', {
      ProductionVariants: [
        Match.objectLike({
          ModelName: { 'Fn::GetAtt': [Match.stringLikeRegexp('ServingModel'), 'ModelName'] },
          InstanceType: 'ml.g5.2xlarge',
          InitialInstanceCount: 1,
          InferenceAmiVersion: 'al2-ami-sagemaker-inference-gpu-3-1',
          ContainerStartupHealthCheckTimeoutInSeconds: 840,
          ModelDataDownloadTimeoutInSeconds: 720,
          RoutingConfig: { RoutingStrategy: 'LEAST_OUTSTANDING_REQUESTS' },
        }),
      ],
      KmsKeyId: Match.absent(),
    });
  });

  test('sets no volume key on an NVMe instance type, and warns with an id', () => {
    Annotations.fromStack(stack).hasWarning('/Test/Serving', Match.stringLikeRegexp('local NVMe instance storage.*tuneyard:endpoint-kms-unsupported'));
  });

  test('deploys blue/green with auto-rollback on its 5xx and p99 latency alarms', () => {
    template.hasResourceProperties('AWS::SageMaker::Endpoint', {
      EndpointName: ep.endpointName,
      DeploymentConfig: {
        BlueGreenUpdatePolicy: { TrafficRoutingConfiguration: { Type: 'ALL_AT_ONCE', WaitIntervalInSeconds: 600 }, TerminationWaitInSeconds: 0 },
        AutoRollbackConfiguration: {
          Alarms: [{ AlarmName: { Ref: Match.stringLikeRegexp('ServingInvocation5xxAlarm') } }, { AlarmName: { Ref: Match.stringLikeRegexp('ServingModelLatencyAlarm') } }],
        },
      },
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/SageMaker',
      MetricName: 'ModelLatency',
      ExtendedStatistic: 'p99',
      Threshold: 60_000_000,
      Dimensions: Match.arrayWith([{ Name: 'EndpointName', Value: ep.endpointName }, { Name: 'VariantName', Value: 'AllTraffic' }]),
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'Invocation5XXErrors', Statistic: 'Sum', Threshold: 5 });
  });

  test('scales instances on concurrent requests per model', () => {
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      ResourceId: `endpoint/${ep.endpointName}/variant/AllTraffic`,
      ScalableDimension: 'sagemaker:variant:DesiredInstanceCount',
      MinCapacity: 1,
      MaxCapacity: 3,
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        PredefinedMetricSpecification: { PredefinedMetricType: 'SageMakerVariantConcurrentRequestsPerModelHighResolution' },
        TargetValue: 16,
      }),
    });
  });

  test('the role reads only the model prefix and pulls only the vllm repository', () => {
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Action: Match.arrayWith(['ecr:BatchGetImage']), Resource: 'arn:aws:ecr:us-east-1:763104351884:repository/vllm' }),
          Match.objectLike({ Action: 's3:GetObject', Resource: 'arn:aws:s3:::tuneyard-data/artifacts/run-1/model/full/*' }),
        ]),
      },
    });
  });

  test('exposes metrics with the real namespaces and dimensions', () => {
    expect(stack.resolve(ep.metricGpuUtilization().namespace)).toBe('/aws/sagemaker/Endpoints');
    expect(stack.resolve(ep.metricGpuMemoryUtilization().dimensions)).toEqual({ EndpointName: ep.endpointName, VariantName: 'AllTraffic' });
    expect(ep.metricInvocations().namespace).toBe('AWS/SageMaker');
    expect(ep.metricOverheadLatency().metricName).toBe('OverheadLatency');
    expect(ep.metricInvocation4XXErrors().statistic).toBe('Sum');
    expect(ep.metricConcurrentRequests().metricName).toBe('ConcurrentRequestsPerModel');
    expect(() => ep.metricNoCapacityInvocationFailures()).toThrow(/inference components only/);
  });

  test('passes the four compliance packs', () => {
    expect(complianceFindings(stack)).toEqual([]);
  });
});

describe('VllmEndpoint, inference components with adapters and scale to zero', () => {
  // GIVEN
  const ctx = setup();
  const topic = new sns.Topic(ctx.stack, 'Alarms', { masterKey: ctx.key });
  // WHEN
  const ep = new VllmEndpoint(ctx.stack, 'Serving', {
    instanceType: 'ml.g5.12xlarge',
    baseModel: 'meta-llama/Llama-3.1-8B-Instruct',
    modelData: VllmModelData.fromS3Prefix(ctx.bucket, 'base-models/llama-3.1-8b/'),
    vllm: { tensorParallelDegree: 2 },
    inferenceComponents: { minCopies: 0, maxCopies: 4, adapters: { 'support-v1': { bucket: ctx.bucket, key: 'artifacts/run-1/adapter.tar.gz' } } },
    alarmTopic: topic,
  });
  ep.addAdapter('legal-v2', { bucket: ctx.bucket, key: 'artifacts/run-2/adapter.tar.gz' });
  const template = Template.fromStack(ctx.stack);

  test('the endpoint config has an execution role, a variant without a model, managed instance scaling to zero and least-outstanding routing', () => {
    template.hasResourceProperties('AWS::SageMaker::EndpointConfig', {
      ExecutionRoleArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('ServingRole'), 'Arn'] },
      ProductionVariants: [
        {
          VariantName: 'AllTraffic',
          InstanceType: 'ml.g5.12xlarge',
          InitialInstanceCount: 1,
          InferenceAmiVersion: 'al2-ami-sagemaker-inference-gpu-3-1',
          // 4 GPUs / tensor parallel 2 = 2 copies per instance: 4 copies on 2 instances
          ManagedInstanceScaling: { Status: 'ENABLED', MinInstanceCount: 0, MaxInstanceCount: 2 },
          RoutingConfig: { RoutingStrategy: 'LEAST_OUTSTANDING_REQUESTS' },
        },
      ],
    });
  });

  test('the base component starts with one copy (never 0) on tensor-parallel GPUs, updated by rolling half the copies per batch with auto-rollback', () => {
    template.hasResourceProperties('AWS::SageMaker::InferenceComponent', {
      InferenceComponentName: ep.baseComponentName,
      EndpointName: ep.endpointName,
      VariantName: 'AllTraffic',
      RuntimeConfig: { CopyCount: 1 },
      Specification: {
        ModelName: { 'Fn::GetAtt': [Match.stringLikeRegexp('ServingModel'), 'ModelName'] },
        // 2 of the 4 GPUs: half of three quarters of the 192 GiB host
        ComputeResourceRequirements: { NumberOfAcceleratorDevicesRequired: 2, MinMemoryRequiredInMb: 73728 },
        StartupParameters: { ContainerStartupHealthCheckTimeoutInSeconds: 840, ModelDataDownloadTimeoutInSeconds: 720 },
      },
      DeploymentConfig: {
        RollingUpdatePolicy: Match.objectLike({ MaximumBatchSize: { Type: 'CAPACITY_PERCENT', Value: 50 }, RollbackMaximumBatchSize: { Type: 'CAPACITY_PERCENT', Value: 50 } }),
        AutoRollbackConfiguration: { Alarms: Match.arrayWith([{ AlarmName: { Ref: Match.stringLikeRegexp('ServingInvocation5xxAlarm') } }]) },
      },
    });
    template.hasResourceProperties('AWS::SageMaker::Endpoint', { DeploymentConfig: Match.absent() });
  });

  test('each adapter is a component on the base with its S3 artifact', () => {
    for (const [name, key] of [
      ['support-v1', 'artifacts/run-1/adapter.tar.gz'],
      ['legal-v2', 'artifacts/run-2/adapter.tar.gz'],
    ]) {
      template.hasResourceProperties('AWS::SageMaker::InferenceComponent', {
        InferenceComponentName: name,
        Specification: { BaseInferenceComponentName: ep.baseComponentName, Container: { ArtifactUrl: `s3://tuneyard-data/${key}` } },
        RuntimeConfig: Match.absent(),
      });
    }
    expect(ep.adapterNames).toEqual(['support-v1', 'legal-v2']);
  });

  test('enables runtime LoRA loading in vLLM', () => {
    template.hasResourceProperties('AWS::SageMaker::Model', {
      PrimaryContainer: {
        Environment: Match.objectLike({
          SM_VLLM_ENABLE_LORA: 'true',
          SM_VLLM_MAX_LORAS: '4',
          SM_VLLM_MAX_LORA_RANK: '64',
          SM_VLLM_TENSOR_PARALLEL_SIZE: '2',
          VLLM_ALLOW_RUNTIME_LORA_UPDATING: 'True',
        }),
      },
    });
  });

  test('scales copies 0-4 on concurrent requests per copy, and wakes from zero on NoCapacityInvocationFailures', () => {
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      ResourceId: `inference-component/${ep.baseComponentName}`,
      ScalableDimension: 'sagemaker:inference-component:DesiredCopyCount',
      MinCapacity: 0,
      MaxCapacity: 4,
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        PredefinedMetricSpecification: { PredefinedMetricType: 'SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution' },
      }),
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'StepScaling',
      StepScalingPolicyConfiguration: Match.objectLike({
        AdjustmentType: 'ChangeInCapacity',
        StepAdjustments: [{ MetricIntervalLowerBound: 0, ScalingAdjustment: 1 }],
      }),
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/SageMaker',
      MetricName: 'NoCapacityInvocationFailures',
      Dimensions: [{ Name: 'InferenceComponentName', Value: ep.baseComponentName }],
      AlarmActions: Match.arrayWith([{ Ref: Match.stringLikeRegexp('ServingScaleOutFromZero') }]),
    });
    expect(ep.noCapacityAlarm).toBeDefined();
  });

  test('per-component metrics use the InferenceComponents namespace and the component name', () => {
    expect(ep.metricGpuUtilization().namespace).toBe('/aws/sagemaker/InferenceComponents');
    expect(ep.metricGpuUtilization().metricName).toBe('GPUUtilizationNormalized');
    expect(ep.metricModelLatency().dimensions).toEqual({ InferenceComponentName: ep.baseComponentName });
    expect(ep.metricConcurrentRequests().metricName).toBe('ConcurrentRequestsPerCopy');
  });

  test('passes the four compliance packs', () => {
    expect(complianceFindings(ctx.stack)).toEqual([]);
  });
});

describe('VllmEndpoint options', () => {
  test('tensor parallel defaults to every GPU of the instance', () => {
    const { ep } = endpoint({ instanceType: 'ml.g5.12xlarge' });
    expect(ep.tensorParallelDegree).toBe(4);
    expect(ep.environment.SM_VLLM_TENSOR_PARALLEL_SIZE).toBe('4');
  });

  test('encrypts the volume with a new rotating key on an instance type without NVMe', () => {
    const { template, stack } = endpoint({ instanceType: 'ml.p3.2xlarge', baseModel: 'Qwen/Qwen2.5-3B-Instruct' });
    template.hasResourceProperties('AWS::SageMaker::EndpointConfig', { KmsKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('ServingKey'), 'Arn'] } });
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true, Description: Match.stringLikeRegexp('ML storage volume') });
    Annotations.fromStack(stack).hasNoWarning('/Test/Serving', Match.stringLikeRegexp('NVMe'));
    expect(complianceFindings(stack)).toEqual([]);
  });

  test('looks the DLC account up per region, and maps it in a region-agnostic stack', () => {
    const milan = new Stack(testApp(), 'Milan', { env: { account: TEST_ENV.account, region: 'eu-south-1' } });
    const { template } = endpoint({}, milan);
    template.hasResourceProperties('AWS::SageMaker::Model', {
      PrimaryContainer: { Image: '692866216735.dkr.ecr.eu-south-1.amazonaws.com/vllm:server-sagemaker-cuda-v1.3' },
    });
    const agnostic = Template.fromStack(endpoint({}, new Stack(new App(), 'Agnostic')).stack);
    expect(JSON.stringify(agnostic.findResources('AWS::SageMaker::Model'))).toContain('"Fn::FindInMap":["TuneyardDlcAccounts",{"Ref":"AWS::Region"},"account"]');
  });

  test('takes a pinned DLC tag, a custom image and a model package', () => {
    const { template } = endpoint({
      image: VllmImage.fromUri('123456789012.dkr.ecr.us-east-1.amazonaws.com/my-vllm:1'),
      vllm: { maxModelLength: 4096, gpuMemoryUtilization: 0.85, dtype: 'bfloat16', enableLora: true, maxLoras: 8, maxLoraRank: 32 },
    });
    template.hasResourceProperties('AWS::SageMaker::Model', {
      PrimaryContainer: {
        Image: '123456789012.dkr.ecr.us-east-1.amazonaws.com/my-vllm:1',
        Environment: Match.objectLike({ SM_VLLM_MAX_MODEL_LEN: '4096', SM_VLLM_GPU_MEMORY_UTILIZATION: '0.85', SM_VLLM_DTYPE: 'bfloat16', SM_VLLM_MAX_LORAS: '8', SM_VLLM_MAX_LORA_RANK: '32' }),
      },
    });
    const ctx = setup();
    new VllmEndpoint(ctx.stack, 'FromPackage', {
      instanceType: 'ml.g5.2xlarge',
      baseModel: 'meta-llama/Llama-3.1-8B-Instruct',
      modelData: VllmModelData.fromModelPackage('arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard/3', { bucket: ctx.bucket, key: 'artifacts/run-3/' }),
    });
    Template.fromStack(ctx.stack).hasResourceProperties('AWS::SageMaker::Model', {
      PrimaryContainer: { ModelPackageName: 'arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard/3', Image: Match.absent() },
    });
    expect(complianceFindings(ctx.stack)).toEqual([]);
  });

  test('renders canary and rolling strategies for the endpoint', () => {
    const { template } = endpoint({ instanceCount: 4, deployment: VllmDeployment.canary({ waitInterval: Duration.minutes(5) }) });
    template.hasResourceProperties('AWS::SageMaker::Endpoint', {
      DeploymentConfig: Match.objectLike({
        BlueGreenUpdatePolicy: Match.objectLike({
          TrafficRoutingConfiguration: { Type: 'CANARY', WaitIntervalInSeconds: 300, CanarySize: { Type: 'CAPACITY_PERCENT', Value: 10 } },
        }),
      }),
    });
    const rolling = endpoint({ instanceCount: 2, deployment: VllmDeployment.rolling({ batchSize: { type: 'INSTANCE_COUNT', value: 1 } }) });
    rolling.template.hasResourceProperties('AWS::SageMaker::Endpoint', {
      DeploymentConfig: Match.objectLike({ RollingUpdatePolicy: Match.objectLike({ MaximumBatchSize: { Type: 'INSTANCE_COUNT', Value: 1 } }) }),
    });
  });

  test('captures requests and responses to the data bucket, encrypted with its key', () => {
    const ctx = setup();
    new VllmEndpoint(ctx.stack, 'Serving', {
      instanceType: 'ml.g5.2xlarge',
      baseModel: 'meta-llama/Llama-3.1-8B-Instruct',
      modelData: VllmModelData.fromS3Prefix(ctx.bucket, 'artifacts/run-1/model/full/'),
      dataCapture: { bucket: ctx.bucket, samplingPercentage: 20 },
    });
    Template.fromStack(ctx.stack).hasResourceProperties('AWS::SageMaker::EndpointConfig', {
      DataCaptureConfig: {
        EnableCapture: true,
        InitialSamplingPercentage: 20,
        DestinationS3Uri: Match.stringLikeRegexp('^s3://tuneyard-data/data-capture/'),
        KmsKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('DataKey'), 'Arn'] },
        CaptureOptions: [{ CaptureMode: 'Input' }, { CaptureMode: 'Output' }],
      },
    });
    expect(complianceFindings(ctx.stack)).toEqual([]);
  });
});

describe('VllmEndpoint preflight and validation', () => {
  test('fails when the model is too big for the instance, with the numbers and the fix', () => {
    expect(() => endpoint({ baseModel: 'meta-llama/Llama-3.3-70B-Instruct' })).toThrow(
      /Serving a 70B model \(bf16\) at 8192 tokens over 1 GPU\(s\) needs ~\d+(\.\d)? GiB per GPU; ml\.g5\.2xlarge gives vLLM 21\.6 GiB per GPU.*The smallest instance that fits is ml\./,
    );
  });

  test('fails when the tensor parallel degree exceeds the GPUs of the instance', () => {
    expect(() => endpoint({ instanceType: 'ml.g5.12xlarge', vllm: { tensorParallelDegree: 8 } })).toThrow(/tensor parallel degree 8 needs 8 GPUs; ml\.g5\.12xlarge has 4/);
  });

  test('fails when the tensor parallel degree does not divide the GPUs', () => {
    expect(() => endpoint({ instanceType: 'ml.g5.12xlarge', vllm: { tensorParallelDegree: 3 } })).toThrow(/does not divide the 4 GPUs of ml\.g5\.12xlarge.*Use one of 1, 2, 4/);
  });

  test('fails when the tensor parallel degree does not divide the attention heads', () => {
    expect(() => endpoint({ instanceType: 'ml.g5.48xlarge', baseModel: 'Qwen/Qwen2.5-7B-Instruct' })).toThrow(
      /tensor parallel degree 8 does not divide the 28 attention heads of Qwen\/Qwen2\.5-7B-Instruct.*Use one of 1, 2, 4 on ml\.g5\.48xlarge/,
    );
  });

  test('fails when bfloat16 is asked of a GPU without it', () => {
    expect(() => endpoint({ instanceType: 'ml.g4dn.xlarge', baseModel: 'Qwen/Qwen2.5-1.5B-Instruct', vllm: { dtype: 'bfloat16' } })).toThrow(/dtype bfloat16 needs an Ampere/);
  });

  test('fails when a single-model endpoint is asked to scale to zero', () => {
    expect(() => endpoint({ autoScaling: { minInstances: 0, maxInstances: 2 } })).toThrow(/cannot scale to 0 instances.*minCopies: 0/);
  });

  test('fails when an adapter is added to a single-model endpoint, or is not a tarball', () => {
    const { ep, bucket } = endpoint();
    expect(() => ep.addAdapter('a', { bucket, key: 'artifacts/a.tar.gz' })).toThrow(/needs the inference-component form/);
    const ic = endpoint({ inferenceComponents: {} });
    expect(() => ic.ep.addAdapter('a', { bucket: ic.bucket, key: 'artifacts/run-1/adapter/' })).toThrow(/is not a \.tar\.gz/);
    expect(() => ic.ep.addAdapter('bad_name', { bucket: ic.bucket, key: 'a.tar.gz' })).toThrow(/adapter name "bad_name" is invalid/);
  });

  test('fails when inference components are given a blue/green strategy', () => {
    expect(() => endpoint({ inferenceComponents: {}, deployment: VllmDeployment.canary() })).toThrow(/rolling deployments only/);
  });

  test('fails when the model folder is given as a tarball or a URI', () => {
    const ctx = setup();
    expect(
      () =>
        new VllmEndpoint(ctx.stack, 'S', { instanceType: 'ml.g5.2xlarge', baseModel: 'Llama-3.1-8B', modelData: VllmModelData.fromS3Prefix(ctx.bucket, 'artifacts/model.tar.gz') }),
    ).toThrow(/is a tarball/);
  });

  test('warns, with an id, when the model size is unknown', () => {
    const { stack } = endpoint({ baseModel: undefined });
    Annotations.fromStack(stack).hasWarning('/Test/Serving', Match.stringLikeRegexp('tuneyard:serving-preflight-partial'));
  });
});

describe('VllmEndpoint auto-rollback permissions', () => {
  /** The statements of the policies attached to the endpoint's own role. */
  function roleStatements(template: Template): Array<Record<string, unknown>> {
    return Object.values(template.findResources('AWS::IAM::Policy'))
      .filter((p) => JSON.stringify(p.Properties.Roles).includes('ServingRole'))
      .flatMap((p) => p.Properties.PolicyDocument.Statement);
  }
  const describeAlarms = {
    Effect: 'Allow',
    Action: 'cloudwatch:DescribeAlarms',
    Resource: [
      { 'Fn::GetAtt': [expect.stringMatching(/^ServingInvocation5xxAlarm/), 'Arn'] },
      { 'Fn::GetAtt': [expect.stringMatching(/^ServingModelLatencyAlarm/), 'Arn'] },
    ],
  };

  test('the execution role of a single-model endpoint (the model\'s ExecutionRoleArn) reads exactly its two rollback alarms', () => {
    // GIVEN / WHEN a blue/green endpoint
    const { template } = endpoint();
    // THEN
    template.hasResourceProperties('AWS::SageMaker::Model', { ExecutionRoleArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^ServingRole'), 'Arn'] } });
    expect(roleStatements(template)).toContainEqual(describeAlarms);
  });

  test('the execution role of an inference-component endpoint (the endpoint config\'s ExecutionRoleArn) reads them too, with no wildcard finding', () => {
    // GIVEN / WHEN a rolling-update endpoint
    const { template, stack } = endpoint({ inferenceComponents: {} });
    // THEN
    template.hasResourceProperties('AWS::SageMaker::EndpointConfig', { ExecutionRoleArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^ServingRole'), 'Arn'] } });
    expect(roleStatements(template)).toContainEqual(describeAlarms);
    expect(complianceFindings(stack)).toEqual([]);
  });
});

describe('VllmEndpoint image and host AMI', () => {
  test('pulls the DLC from the right account in every region of the DLC table, including ap-east-2 and ap-southeast-6', () => {
    // GIVEN the deep-learning-containers region table's opt-in accounts
    expect(DLC_ACCOUNTS).toMatchObject({ 'ap-east-2': '975050140332', 'ap-southeast-6': '633930458069', 'me-west-1': '124382933778', 'us-east-1': '763104351884' });
    for (const [region, account] of [
      ['ap-east-2', '975050140332'],
      ['ap-southeast-6', '633930458069'],
    ]) {
      // WHEN
      const { template } = endpoint({}, new Stack(testApp(), `In${region.replace(/-/g, '')}`, { env: { account: TEST_ENV.account, region } }));
      // THEN
      template.hasResourceProperties('AWS::SageMaker::Model', { PrimaryContainer: { Image: `${account}.dkr.ecr.${region}.amazonaws.com/vllm:server-sagemaker-cuda-v1.3` } });
    }
    const agnostic = Template.fromStack(endpoint({}, new Stack(new App(), 'Agnostic')).stack);
    expect(agnostic.toJSON().Mappings.TuneyardDlcAccounts).toMatchObject({ 'ap-east-2': { account: '975050140332' }, 'ap-southeast-6': { account: '633930458069' } });
  });

  test('runs a CUDA 13 DLC tag (v2.x) on the driver 580 AMI by default, and v1.x on the default AMI', () => {
    const v2 = endpoint({ image: VllmImage.dlc('server-sagemaker-cuda-v2.5') });
    v2.template.hasResourceProperties('AWS::SageMaker::EndpointConfig', {
      ProductionVariants: [Match.objectLike({ InferenceAmiVersion: 'al2023-ami-sagemaker-inference-gpu-4-1' })],
    });
    expect(v2.ep.productionVariant.inferenceAmiVersion).toBe('al2023-ami-sagemaker-inference-gpu-4-1');
    const v1 = endpoint({ image: VllmImage.dlc('server-sagemaker-cuda-v1.4'), inferenceAmiVersion: 'al2023-ami-sagemaker-inference-gpu-4-1' });
    expect(v1.ep.inferenceAmiVersion).toBe('al2023-ami-sagemaker-inference-gpu-4-1');
    expect(endpoint().ep.inferenceAmiVersion).toBe('al2-ami-sagemaker-inference-gpu-3-1');
  });

  test('fails when a CUDA 13 DLC tag is paired with an AMI whose driver is older than 580', () => {
    expect(() => endpoint({ image: VllmImage.dlc('server-sagemaker-cuda-v2.0'), inferenceAmiVersion: 'al2-ami-sagemaker-inference-gpu-3-1' })).toThrow(
      /vllm:server-sagemaker-cuda-v2\.0 needs NVIDIA driver 580 or later; inferenceAmiVersion al2-ami-sagemaker-inference-gpu-3-1 has driver 550\. Use inferenceAmiVersion 'al2023-ami-sagemaker-inference-gpu-4-1'/,
    );
  });
});

describe('VllmEndpoint inference component sizing and rolling batches', () => {
  test('reserves three quarters of a 16 GiB host for the one copy of an ml.g5.xlarge, so SageMaker can place it', () => {
    // GIVEN / WHEN a 16 GiB host (the old default of 16384 MiB could never be placed on it)
    const { template } = endpoint({ instanceType: 'ml.g5.xlarge', inferenceComponents: {} });
    // THEN
    template.hasResourceProperties('AWS::SageMaker::InferenceComponent', {
      Specification: Match.objectLike({ ComputeResourceRequirements: { NumberOfAcceleratorDevicesRequired: 1, MinMemoryRequiredInMb: 12288 } }),
    });
    for (const type of ['ml.g6.xlarge', 'ml.g4dn.xlarge']) {
      const small = endpoint({ instanceType: type, baseModel: 'Qwen/Qwen2.5-1.5B-Instruct', inferenceComponents: {} });
      small.template.hasResourceProperties('AWS::SageMaker::InferenceComponent', {
        Specification: Match.objectLike({ ComputeResourceRequirements: Match.objectLike({ MinMemoryRequiredInMb: 12288 }) }),
      });
    }
  });

  test('takes a given reservation, and warns with an id when it leaves less than a quarter of the host', () => {
    const { template, stack } = endpoint({ instanceType: 'ml.g5.xlarge', inferenceComponents: { minMemoryRequiredInMb: 14336 } });
    template.hasResourceProperties('AWS::SageMaker::InferenceComponent', {
      Specification: Match.objectLike({ ComputeResourceRequirements: Match.objectLike({ MinMemoryRequiredInMb: 14336 }) }),
    });
    Annotations.fromStack(stack).hasWarning('/Test/Serving', Match.stringLikeRegexp('tuneyard:copy-memory-tight'));
  });

  test('fails when the copies would need all of the host memory, with the numbers and the fix', () => {
    expect(() => endpoint({ instanceType: 'ml.g5.xlarge', inferenceComponents: { minMemoryRequiredInMb: 16384 } })).toThrow(
      /minMemoryRequiredInMb 16384 × 1 copy per instance needs 16384 MiB; ml\.g5\.xlarge has 16384 MiB \(16 GiB\) of host memory.*Use 12288 or less/,
    );
    // 4 GPUs / tensor parallel 1 = 4 copies of 60 GiB on a 192 GiB host
    expect(() =>
      endpoint({ instanceType: 'ml.g5.12xlarge', vllm: { tensorParallelDegree: 1 }, inferenceComponents: { minMemoryRequiredInMb: 61440 } }),
    ).toThrow(/61440 × 4 copies per instance needs 245760 MiB; ml\.g5\.12xlarge has 196608 MiB/);
  });

  test('fails when the host memory cannot be derived for an instance type Tuneyard does not know', () => {
    expect(() => endpoint({ instanceType: 'ml.g7.2xlarge', vllm: { tensorParallelDegree: 1 }, inferenceComponents: {} })).toThrow(
      /not in Tuneyard's table, so the host memory of each model copy cannot be derived.*Set inferenceComponents\.minMemoryRequiredInMb/,
    );
  });

  test('a count batch within 5-50% of every fleet size is kept: one copy out of 2-4, one instance out of 2', () => {
    const ic = endpoint({
      instanceType: 'ml.g5.12xlarge',
      inferenceComponents: { minCopies: 2, maxCopies: 4 },
      vllm: { tensorParallelDegree: 1 },
      deployment: VllmDeployment.rolling({ batchSize: { type: 'COPY_COUNT', value: 1 } }),
    });
    expect(ic.ep.apiDeploymentConfig).toMatchObject({ RollingUpdatePolicy: { MaximumBatchSize: { Type: 'COPY_COUNT', Value: 1 } } });
    const single = endpoint({ instanceCount: 2, deployment: VllmDeployment.rolling({ batchSize: { type: 'INSTANCE_COUNT', value: 1 } }) });
    expect(single.ep.apiDeploymentConfig).toMatchObject({ RollingUpdatePolicy: { MaximumBatchSize: { Type: 'INSTANCE_COUNT', Value: 1 } } });
  });

  test('fails when a rolling batch of one copy is 100% of a one-copy component', () => {
    expect(() => endpoint({ inferenceComponents: { minCopies: 1, maxCopies: 1 }, deployment: VllmDeployment.rolling({ batchSize: { type: 'COPY_COUNT', value: 1 } }) })).toThrow(
      /a rolling batch of 1 copy \(COPY_COUNT\) is 100% of a fleet of 1 copies; SageMaker accepts 5-50% of the fleet \(MaximumBatchSize\)\. Use a percentage: \{ type: 'CAPACITY_PERCENT', value: 50 \}/,
    );
    // scale to zero: the update still starts from one copy
    expect(() => endpoint({ inferenceComponents: { minCopies: 0, maxCopies: 3 }, deployment: VllmDeployment.rolling({ batchSize: { type: 'COPY_COUNT', value: 1 } }) })).toThrow(
      /is 100% of a fleet of 1-3 copies/,
    );
  });

  test('fails when a count batch is under 5% of the largest fleet or a percentage is outside 5-50', () => {
    expect(() => endpoint({ autoScaling: { minInstances: 2, maxInstances: 30 }, deployment: VllmDeployment.rolling({ batchSize: { type: 'INSTANCE_COUNT', value: 1 } }) })).toThrow(
      /a rolling batch of 1 instance \(INSTANCE_COUNT\) is 3% of a fleet of 2-30 instances.*Use a percentage/,
    );
    expect(() => endpoint({ instanceCount: 4, deployment: VllmDeployment.rolling({ batchSize: { type: 'INSTANCE_COUNT', value: 3 } }) })).toThrow(
      /3 instances \(INSTANCE_COUNT\) is 75% of a fleet of 4 instances.*Use 1-2 instances, or a percentage/,
    );
    expect(() => endpoint({ inferenceComponents: {}, deployment: VllmDeployment.rolling({ batchSize: { type: 'CAPACITY_PERCENT', value: 100 } }) })).toThrow(
      /a rolling batch of 100% is outside the 5-50% of the fleet that SageMaker accepts \(MaximumBatchSize\)\. Use a batchSize from 5 to 50 percent/,
    );
  });
});

describe('VllmEndpoint in a VPC', () => {
  test('creates and deletes network interfaces only in its VPC (ec2:Vpc), describes the network on *, and passes the packs', () => {
    // GIVEN the plane's network
    const stack = testStack();
    const network = new PlaneNetwork(stack, 'Network', { s3PrefixListId: 'pl-63a5400a' });
    // WHEN
    const { template } = endpoint({ vpc: network.vpc, vpcSubnets: network.vpcSubnets, s3PrefixListId: network.s3PrefixListId }, stack);
    // THEN
    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: Match.stringLikeRegexp('^ServingRole') }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Sid: 'NetworkInterfacesInTheVpc',
            Effect: 'Allow',
            Action: ['ec2:CreateNetworkInterface', 'ec2:CreateNetworkInterfacePermission', 'ec2:DeleteNetworkInterface', 'ec2:DeleteNetworkInterfacePermission'],
            Resource: ['network-interface', 'security-group', 'subnet'].map((r) => `arn:aws:ec2:us-east-1:123456789012:${r}/*`),
            Condition: { ArnEquals: { 'ec2:Vpc': { 'Fn::Join': ['', ['arn:aws:ec2:us-east-1:123456789012:vpc/', { Ref: Match.stringLikeRegexp('^Network') }]] } } },
          },
          // the Describe calls have no resource-level permissions
          {
            Sid: 'DescribeTheNetwork',
            Effect: 'Allow',
            Action: ['ec2:DescribeDhcpOptions', 'ec2:DescribeNetworkInterfaces', 'ec2:DescribeSecurityGroups', 'ec2:DescribeSubnets', 'ec2:DescribeVpcs'],
            Resource: '*',
          },
        ]),
      },
    });
    const statements = Object.values(template.findResources('AWS::IAM::Policy')).flatMap((p) => p.Properties.PolicyDocument.Statement);
    const unconditioned = statements.filter((st) => [st.Action].flat().some((a: string) => /^ec2:(Create|Delete)/.test(a)) && !st.Condition);
    expect(unconditioned).toEqual([]);
    expect(complianceFindings(stack)).toEqual([]);
  });
});

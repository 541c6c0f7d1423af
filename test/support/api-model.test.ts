import { requestOfTask, untranslatablePatterns, validateRequests } from './api-model';
import { failingFirst, runLocal, stepFunctionsError } from './local-sfn';

const ROLE = 'arn:aws:iam::123456789012:role/TrainingRole';

/** A CreateTrainingJob request that SageMaker accepts (the shape of the plane's Train state). */
function trainingJob(overrides: Record<string, unknown> = {}) {
  return {
    service: 'sagemaker',
    operation: 'CreateTrainingJob',
    params: {
      TrainingJobName: 'tuneyard-chats-qlora-0123456789ab-train',
      RoleArn: ROLE,
      AlgorithmSpecification: { TrainingImage: '123456789012.dkr.ecr.us-east-1.amazonaws.com/trainer:1', TrainingInputMode: 'File' },
      HyperParameters: { method: 'qlora', lora_target_modules: 'q_proj,v_proj' },
      InputDataConfig: [
        {
          ChannelName: 'train',
          DataSource: { S3DataSource: { S3DataType: 'S3Prefix', S3Uri: 's3://data/datasets/chats/train.jsonl', S3DataDistributionType: 'FullyReplicated' } },
          ContentType: 'application/jsonlines',
          InputMode: 'File',
        },
      ],
      OutputDataConfig: { S3OutputPath: 's3://data/artifacts/run/', KmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/k', CompressionType: 'NONE' },
      ResourceConfig: { InstanceType: 'ml.g5.2xlarge', InstanceCount: 1, VolumeSizeInGB: 74 },
      StoppingCondition: { MaxRuntimeInSeconds: 86400, MaxWaitTimeInSeconds: 172800 },
      EnableManagedSpotTraining: true,
      CheckpointConfig: { S3Uri: 's3://data/checkpoints/run/', LocalPath: '/opt/ml/checkpoints' },
      Tags: [{ Key: 'tuneyard:component', Value: 'training' }],
      ...overrides,
    },
  };
}

function modelPackage(metadata: Record<string, string>) {
  return {
    service: 'sagemaker',
    operation: 'CreateModelPackage',
    params: { ModelPackageGroupName: 'tuneyard-models', ModelApprovalStatus: 'PendingManualApproval', CustomerMetadataProperties: metadata },
  };
}

describe('validateRequests', () => {
  test('accepts valid requests, one (empty) list of errors per request', () => {
    expect(validateRequests([trainingJob(), modelPackage({ baseModel: 's3://data/base-models/llama-3.1-8b/', runId: 'chats-qlora-0123' })])).toEqual([[], []]);
  });

  test('fails a HyperParameters value over 2,500 characters, naming the hyperparameter', () => {
    const modules = Array.from({ length: 60 }, (_, i) => `base_model.model.model.layers.${i}.mlp.gate_proj`).join(',');
    expect(modules.length).toBeGreaterThan(2500);
    const [errors] = validateRequests([trainingJob({ HyperParameters: { lora_target_modules: modules } })]);
    expect(errors).toEqual([`CreateTrainingJob.HyperParameters.lora_target_modules: length ${modules.length} is above the maximum 2500`]);
  });

  test('fails a CustomerMetadataProperties value with parentheses against the pattern, echoing the value', () => {
    const [errors] = validateRequests([modelPackage({ baseModel: 's3://data/base-models/Llama 3.1 (8B)/' })]);
    expect(errors).toEqual([
      'CreateModelPackage.CustomerMetadataProperties.baseModel: value "s3://data/base-models/Llama 3.1 (8B)/" does not match pattern ([\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@]*)${1,256}',
    ]);
    // letters of any script and spaces are allowed (\p{L}, \p{Z}); a JSON recipe is not
    expect(validateRequests([modelPackage({ baseModel: 's3://data/base-models/modèle 8b/' }), modelPackage({ recipe: '{"method":"qlora"}' })])).toEqual([
      [],
      [expect.stringMatching(/^CreateModelPackage\.CustomerMetadataProperties\.recipe: value "\{\\"method\\":\\"qlora\\"\}" does not match pattern/)],
    ]);
  });

  test('fails an unknown member, naming it and the members the model has', () => {
    const [errors] = validateRequests([{ ...modelPackage({ runId: 'r' }), params: { ...modelPackage({ runId: 'r' }).params, EvalReport: 's3://x/eval.json' } }]);
    expect(errors).toEqual([expect.stringMatching(/^CreateModelPackage\.EvalReport: unknown member \(the model has: ModelPackageName, .*CustomerMetadataProperties/)]);
  });

  test('fails a value outside an enum, a missing member, a wrong type, and a number over its maximum', () => {
    const [enumErrors] = validateRequests([{ ...modelPackage({ runId: 'r' }), params: { ...modelPackage({ runId: 'r' }).params, ModelApprovalStatus: 'true' } }]);
    expect(enumErrors).toEqual(['CreateModelPackage.ModelApprovalStatus: value "true" is not one of Approved, Rejected, PendingManualApproval']);
    const [other] = validateRequests([
      trainingJob({
        ResourceConfig: { InstanceType: 'ml.g5.2xlarge', InstanceCount: '1', VolumeSizeInGB: 74 },
        StoppingCondition: { MaxRuntimeInSeconds: 86400, MaxPendingTimeInSeconds: 3_000_000 },
        RoleArn: undefined,
      }),
    ]);
    expect(other).toEqual(
      expect.arrayContaining([
        'CreateTrainingJob: missing required member "RoleArn"',
        expect.stringMatching(/^CreateTrainingJob\.ResourceConfig\.InstanceCount: value "1" is not of type int/),
        'CreateTrainingJob.StoppingCondition.MaxPendingTimeInSeconds: value 3000000 is above the maximum 2419200',
      ]),
    );
    expect(other).toHaveLength(3);
  });

  test('fails a list or map over its maximum number of entries, and a pattern on a list member', () => {
    const tags = Array.from({ length: 51 }, (_, i) => ({ Key: `k${i}`, Value: 'v' }));
    const metadata = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v']));
    expect(validateRequests([trainingJob({ Tags: tags }), modelPackage(metadata), trainingJob({ AlgorithmSpecification: { TrainingInputMode: 'File', TrainingImage: 'i', ContainerArguments: ['a\nb'] } })])).toEqual([
      ['CreateTrainingJob.Tags: 51 entries, above the maximum 50'],
      ['CreateModelPackage.CustomerMetadataProperties: 51 entries, above the maximum 50'],
      // ContainerArgument's pattern is `.*`: Java's `.` stops at a line break
      [expect.stringMatching(/^CreateTrainingJob\.AlgorithmSpecification\.ContainerArguments\[0\]: value "a\\nb" does not match pattern \.\*$/)],
    ]);
  });

  test('clips an echoed value and keeps its length', () => {
    const [errors] = validateRequests([modelPackage({ baseModel: `(${'x'.repeat(200_000)}` })]);
    expect(errors).toHaveLength(2);
    expect(errors.join('\n').length).toBeLessThan(1000);
    expect(errors).toContain('CreateModelPackage.CustomerMetadataProperties.baseModel: length 200001 is above the maximum 256');
    expect(errors[1]).toMatch(/value "\(x{119}\.\.\." \(200001 characters\) does not match pattern/);
  });

  test('reports an unknown service or operation instead of accepting it', () => {
    expect(validateRequests([{ service: 'sagemaker', operation: 'CreateTrainingJobs', params: {} }])).toEqual([['CreateTrainingJobs: sagemaker has no operation "CreateTrainingJobs"']]);
  });

  test('can compile every pattern of the services the plane calls', () => {
    expect(untranslatablePatterns(['sagemaker', 'sns', 'lambda', 's3', 'stepfunctions', 'cloudwatch', 'events', 'kms', 'logs', 'bedrock-runtime'])).toEqual({
      sagemaker: [],
      sns: [],
      lambda: [],
      s3: [],
      stepfunctions: [],
      cloudwatch: [],
      events: [],
      kms: [],
      logs: [],
      'bedrock-runtime': [],
    });
  });

  test("refuses a Converse request the Bedrock Runtime model refuses (the judge's requests are checked against it)", () => {
    expect(validateRequests([{ service: 'bedrock-runtime', operation: 'Converse', params: { modelId: 'amazon.nova-pro-v1:0', messages: [{ role: 'judge', content: [{ text: 'x' }] }] } }])).toEqual([
      ['Converse.messages[0].role: value "judge" is not one of user, assistant, system'],
    ]);
  });
});

describe('requestOfTask', () => {
  test('maps optimized integrations, dropping .sync', () => {
    expect(requestOfTask('arn:aws:states:::sagemaker:createTrainingJob.sync', { TrainingJobName: 'j' })).toEqual({
      service: 'sagemaker',
      operation: 'CreateTrainingJob',
      params: { TrainingJobName: 'j' },
    });
    expect(requestOfTask('arn:aws:states:::states:startExecution.sync:2', {}).service).toBe('stepfunctions');
  });

  test('maps aws-sdk integrations with their PascalCase members as they are', () => {
    expect(requestOfTask('arn:aws:states:::aws-sdk:sagemaker:createModelPackage', { ModelPackageGroupName: 'g' })).toEqual({
      service: 'sagemaker',
      operation: 'CreateModelPackage',
      params: { ModelPackageGroupName: 'g' },
    });
    expect(requestOfTask('arn:aws-us-gov:states:::aws-sdk:sfn:describeExecution', {}).service).toBe('stepfunctions');
  });

  test('serializes an SNS Message and a Lambda Payload given as JSON, as Step Functions does', () => {
    expect(requestOfTask('arn:aws:states:::sns:publish', { TopicArn: 't', Message: { run: 'r' }, Subject: 's' })).toEqual({
      service: 'sns',
      operation: 'Publish',
      params: { TopicArn: 't', Message: '{"run":"r"}', Subject: 's' },
    });
    expect(requestOfTask('arn:aws:states:::sns:publish', { TopicArn: 't', Message: 'plain' }).params).toEqual({ TopicArn: 't', Message: 'plain' });
    expect(requestOfTask('arn:aws:states:::lambda:invoke', { FunctionName: 'f', Payload: { a: 1 } })).toEqual({
      service: 'lambda',
      operation: 'Invoke',
      params: { FunctionName: 'f', Payload: '{"a":1}' },
    });
  });

  test('maps a Lambda function ARN (the short form) to Invoke with the parameters as the payload', () => {
    const fn = 'arn:aws:lambda:us-east-1:123456789012:function:PlanRun';
    expect(requestOfTask(fn, { request: { a: 1 } })).toEqual({ service: 'lambda', operation: 'Invoke', params: { FunctionName: fn, Payload: '{"request":{"a":1}}' } });
    expect(validateRequests([requestOfTask(fn, { request: { a: 1 } })])).toEqual([[]]);
  });

  test('fails on a resource that is not a service integration', () => {
    expect(() => requestOfTask('arn:aws:states:us-east-1:123456789012:activity:a', {})).toThrow(/not a Step Functions service integration/);
    expect(() => requestOfTask('PlanRun', {})).toThrow(/not an ARN/);
  });
});

describe('runLocal', () => {
  // Train (retried once) then Register: the registry's lineage from the input
  const { HyperParameters: _fixed, ...trainParams } = trainingJob().params;
  const definition = {
    StartAt: 'Train',
    States: {
      Train: {
        Type: 'Task',
        Resource: 'arn:aws:states:::sagemaker:createTrainingJob.sync',
        Parameters: { ...trainParams, 'HyperParameters.$': '$.hyperParameters' },
        Retry: [{ ErrorEquals: ['SageMaker.AmazonSageMakerException'], MaxAttempts: 1 }],
        ResultPath: '$.training',
        Next: 'Register',
      },
      Register: {
        Type: 'Task',
        Resource: 'arn:aws:states:::aws-sdk:sagemaker:createModelPackage',
        Parameters: { ModelPackageGroupName: 'tuneyard-models', 'CustomerMetadataProperties.$': '$.lineage' },
        End: true,
      },
    },
  };
  const handlers = () => ({
    Train: failingFirst(1, () => stepFunctionsError('SageMaker.AmazonSageMakerException', 'throttled'), () => ({ TrainingJobStatus: 'Completed' })),
    Register: () => ({ ModelPackageArn: 'arn' }),
  });

  test('records every request sent (one per attempt) and finds none refused when all are valid', async () => {
    const run = await runLocal(definition, { hyperParameters: { method: 'qlora' }, lineage: { baseModel: 's3://data/base-models/llama-3.1-8b/' } }, handlers());
    expect(run.status).toBe('SUCCEEDED');
    expect(run.requests.map((r) => [r.state, r.service, r.operation])).toEqual([
      ['Train', 'sagemaker', 'CreateTrainingJob'],
      ['Train', 'sagemaker', 'CreateTrainingJob'],
      ['Register', 'sagemaker', 'CreateModelPackage'],
    ]);
    expect(run.requests[2].params).toEqual({ ModelPackageGroupName: 'tuneyard-models', CustomerMetadataProperties: { baseModel: 's3://data/base-models/llama-3.1-8b/' } });
    expect(run.requestErrors).toEqual([]);
  });

  test('reports what the API models refuse, by state, without changing how the run ends', async () => {
    const input = { hyperParameters: { lora_target_modules: 'q'.repeat(2501) }, lineage: { baseModel: 's3://data/base-models/Llama 3.1 (8B)/' } };
    const run = await runLocal(definition, input, handlers());
    expect(run.status).toBe('SUCCEEDED');
    expect(run.requestErrors).toEqual([
      'Train: CreateTrainingJob.HyperParameters.lora_target_modules: length 2501 is above the maximum 2500',
      'Train: CreateTrainingJob.HyperParameters.lora_target_modules: length 2501 is above the maximum 2500',
      expect.stringMatching(/^Register: CreateModelPackage\.CustomerMetadataProperties\.baseModel: value "s3:\/\/data\/base-models\/Llama 3\.1 \(8B\)\/" does not match pattern/),
    ]);
    const unchecked = await runLocal(definition, input, handlers(), { validateRequests: false });
    expect(unchecked.requests).toHaveLength(3);
    expect(unchecked.requestErrors).toEqual([]);
  });
});

/**
 * The usage-metrics handler with the real SDK clients (SageMaker, CloudWatch) against a moto
 * server on 127.0.0.1: the requests it makes are the ones the services accept, and what it puts
 * can be read back by name, dimensions and statistic.
 *
 * What moto cannot show: its training jobs are born Completed with start = end, so their hours are
 * 0 (the arithmetic is covered with fakes in constructs/usage-metrics/handler/index.test.ts), and
 * it has no inference components.
 */
import { CloudWatchClient, Dimension, GetMetricStatisticsCommand, ListMetricsCommand } from '@aws-sdk/client-cloudwatch';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateEndpointCommand, CreateEndpointConfigCommand, CreateModelCommand, CreateTrainingJobCommand, SageMakerClient } from '@aws-sdk/client-sagemaker';
import { run } from '../../constructs/usage-metrics/handler';
import { USAGE_ENV, USAGE_METRICS } from '../../constructs/usage-metrics/usage-contract';
import { MotoServer, startMoto } from '../support/moto';

let moto: MotoServer;
let sagemaker: SageMakerClient;
let cloudwatch: CloudWatchClient;
let s3: S3Client;

beforeAll(async () => {
  moto = await startMoto();
  sagemaker = new SageMakerClient(moto.clientConfig);
  cloudwatch = new CloudWatchClient(moto.clientConfig);
  s3 = new S3Client({ ...moto.clientConfig, forcePathStyle: true });
  for (const name of ['team-a-run1-train', 'team-b-run1-train']) {
    await sagemaker.send(
      new CreateTrainingJobCommand({
        TrainingJobName: name,
        AlgorithmSpecification: { TrainingImage: '123456789012.dkr.ecr.us-east-1.amazonaws.com/tuneyard-trainer:latest', TrainingInputMode: 'File' },
        RoleArn: 'arn:aws:iam::123456789012:role/TuneyardTraining',
        OutputDataConfig: { S3OutputPath: 's3://tuneyard-data/artifacts/' },
        ResourceConfig: { InstanceType: 'ml.g5.2xlarge', InstanceCount: 2, VolumeSizeInGB: 100 },
        StoppingCondition: { MaxRuntimeInSeconds: 86400 },
      }),
    );
  }
  await sagemaker.send(
    new CreateModelCommand({
      ModelName: 'chat-model',
      ExecutionRoleArn: 'arn:aws:iam::123456789012:role/TuneyardEndpoint',
      PrimaryContainer: { Image: '763104351884.dkr.ecr.us-east-1.amazonaws.com/vllm:latest' },
    }),
  );
  await sagemaker.send(
    new CreateEndpointConfigCommand({
      EndpointConfigName: 'chat-config',
      ProductionVariants: [{ VariantName: 'AllTraffic', ModelName: 'chat-model', InstanceType: 'ml.g4dn.xlarge', InitialInstanceCount: 3, InitialVariantWeight: 1 }],
    }),
  );
  await sagemaker.send(new CreateEndpointCommand({ EndpointName: 'chat', EndpointConfigName: 'chat-config' }));
}, 60_000);

afterAll(async () => {
  sagemaker?.destroy();
  cloudwatch?.destroy();
  s3?.destroy();
  await moto?.stop();
});

async function maximum(metricName: string, dimensions: Dimension[]): Promise<number[]> {
  const now = Date.now();
  const stats = await cloudwatch.send(
    new GetMetricStatisticsCommand({
      Namespace: 'Tuneyard/Usage',
      MetricName: metricName,
      Dimensions: dimensions,
      StartTime: new Date(now - 3600_000),
      EndTime: new Date(now + 60_000),
      Period: 3600,
      Statistics: ['Maximum'],
    }),
  );
  return (stats.Datapoints ?? []).map((d) => d.Maximum!);
}

test('publishes the prefix\'s ended jobs and the endpoint\'s instances, readable by name, dimensions and Maximum', async () => {
  // WHEN one run, and a second that republishes the same job
  const env = {
    [USAGE_ENV.namespace]: 'Tuneyard/Usage',
    [USAGE_ENV.trainingJobPrefixes]: JSON.stringify(['team-a-']),
    [USAGE_ENV.endpoints]: JSON.stringify([{ name: 'chat', components: false }]),
    [USAGE_ENV.lookbackMinutes]: '60',
  };
  const log = jest.spyOn(console, 'log').mockImplementation(() => undefined);
  const first = await run({ sagemaker, cloudwatch, s3 }, env, new Date());
  await run({ sagemaker, cloudwatch, s3 }, env, new Date());
  log.mockRestore();

  // THEN
  expect(first).toEqual({ published: 6, trainingJobs: 1, problems: [] });
  const listed = await cloudwatch.send(new ListMetricsCommand({ Namespace: 'Tuneyard/Usage' }));
  // moto lists a metric once per put of a past timestamp (CloudWatch lists it once): compare the distinct names
  const names = [...new Set((listed.Metrics ?? []).map((m) => `${m.MetricName}{${(m.Dimensions ?? []).map((d) => `${d.Name}=${d.Value}`).join(',')}}`))].sort();
  expect(names).toEqual(
    [
      'BillableInstanceHours{TrainingJobPrefix=team-a-,TrainingJobName=team-a-run1-train,InstanceType=ml.g5.2xlarge}',
      'EndpointDesiredInstances{EndpointName=chat}',
      'EndpointInstances{EndpointName=chat}',
      'TrainingInstanceHours{TrainingJobPrefix=team-a-,TrainingJobName=team-a-run1-train,InstanceType=ml.g5.2xlarge}',
      'BillableInstanceHours{TrainingJobPrefix=team-a-}',
      'TrainingInstanceHours{TrainingJobPrefix=team-a-}',
    ].sort(),
  );
  const jobDims = USAGE_METRICS.trainingInstanceHours.dimensions.map((Name, i) => ({ Name, Value: ['team-a-', 'team-a-run1-train', 'ml.g5.2xlarge'][i] }));
  // moto's job has no training time: 0 hours, put twice at the same end time, one Maximum
  expect(await maximum('TrainingInstanceHours', jobDims)).toEqual([0]);
  expect(await maximum('EndpointInstances', [{ Name: 'EndpointName', Value: 'chat' }])).toEqual([3]);
});

test('the hourly run counts complete dataset versions (with a manifest) and datasets, from a listing of datasets/', async () => {
  // GIVEN two complete versions of two datasets, one upload that stopped before its manifest, and a non-dataset manifest
  const sha = (c: string) => c.repeat(64);
  await s3.send(new CreateBucketCommand({ Bucket: 'tuneyard-data' }));
  for (const key of [
    `datasets/chats/${sha('a')}/train.jsonl`,
    `datasets/chats/${sha('a')}/manifest.json`,
    `datasets/chats/${sha('b')}/train.jsonl`,
    `datasets/code/${sha('c')}/manifest.json`,
    'artifacts/run-1/manifest.json',
  ]) {
    await s3.send(new PutObjectCommand({ Bucket: 'tuneyard-data', Key: key, Body: '{}' }));
  }
  const env = {
    [USAGE_ENV.namespace]: 'Tuneyard/Usage',
    [USAGE_ENV.trainingJobPrefixes]: '[]',
    [USAGE_ENV.endpoints]: '[]',
    [USAGE_ENV.lookbackMinutes]: '60',
    [USAGE_ENV.dataBucket]: 'tuneyard-data',
  };
  // WHEN
  const log = jest.spyOn(console, 'log').mockImplementation(() => undefined);
  await run({ sagemaker, cloudwatch, s3 }, env, new Date(), { task: 'datasets' });
  log.mockRestore();
  // THEN
  expect(await maximum('DatasetVersions', [{ Name: 'BucketName', Value: 'tuneyard-data' }])).toEqual([2]);
  expect(await maximum('Datasets', [{ Name: 'BucketName', Value: 'tuneyard-data' }])).toEqual([2]);
});

import { awsError, Call, fakeClients, Handler } from '../../../test/cli/support';
import { USAGE_ENV } from '../usage-contract';
import { run, settingsFromEnv, UsageClients } from './index';

const NOW = new Date('2026-11-22T12:00:00Z');
const minutesAgo = (m: number) => new Date(NOW.getTime() - m * 60_000);

const ENV = {
  [USAGE_ENV.namespace]: 'Tuneyard/Usage',
  [USAGE_ENV.trainingJobPrefixes]: JSON.stringify(['team-a-']),
  [USAGE_ENV.endpoints]: JSON.stringify([]),
  [USAGE_ENV.lookbackMinutes]: '60',
};

function clientsFor(handlers: Record<string, Handler>): { clients: UsageClients; calls: Call[] } {
  const { factory, calls } = fakeClients({ PutMetricDataCommand: () => ({}), ...handlers });
  const client = factory({} as never).sagemaker;
  return { clients: { sagemaker: client, cloudwatch: client, s3: client } as unknown as UsageClients, calls };
}

/** Every datum put, as `Name{dim=value,...}=value@iso`. */
function published(calls: Call[]): string[] {
  return calls
    .filter((c) => c.command === 'PutMetricDataCommand')
    .flatMap((c) => (c.input.MetricData as any[]).map((d) => `${d.MetricName}{${d.Dimensions.map((x: any) => `${x.Name}=${x.Value}`).join(',')}}=${d.Value}@${d.Timestamp.toISOString()}`));
}

beforeEach(() => {
  jest.spyOn(console, 'log').mockImplementation(() => undefined);
});
afterEach(() => jest.restoreAllMocks());

const job = (name: string, fields: Record<string, unknown>) => ({ TrainingJobName: name, ...fields });

describe('usage metrics handler: training jobs', () => {
  const jobs: Record<string, Record<string, unknown>> = {
    // two spot instances: ran an hour each, billed half an hour each
    'team-a-run1-train': job('team-a-run1-train', {
      TrainingJobStatus: 'Completed',
      ResourceConfig: { InstanceType: 'ml.g5.12xlarge', InstanceCount: 2 },
      TrainingTimeInSeconds: 3600,
      BillableTimeInSeconds: 1800,
      TrainingStartTime: minutesAgo(90),
      TrainingEndTime: minutesAgo(30),
    }),
    // failed early: no training or billable seconds from SageMaker, 10 minutes from start to end
    'team-a-run2-eval': job('team-a-run2-eval', {
      TrainingJobStatus: 'Failed',
      ResourceConfig: { InstanceType: 'ml.g5.2xlarge', InstanceCount: 1 },
      TrainingStartTime: minutesAgo(20),
      TrainingEndTime: minutesAgo(10),
    }),
  };
  const summaries = [
    { TrainingJobName: 'team-a-run1-train', TrainingJobStatus: 'Completed' },
    { TrainingJobName: 'team-a-run3-train', TrainingJobStatus: 'InProgress' },
    { TrainingJobName: 'other-team-a-run-train', TrainingJobStatus: 'Completed' },
    { TrainingJobName: 'team-a-run2-eval', TrainingJobStatus: 'Failed' },
  ];

  test('publishes wall-clock and billable instance-hours of each ended job of the prefix, at its end time', async () => {
    // GIVEN two pages of jobs, one still running and one of another prefix that contains ours
    const { clients, calls } = clientsFor({
      ListTrainingJobsCommand: (input) => (input.NextToken ? { TrainingJobSummaries: summaries.slice(2) } : { TrainingJobSummaries: summaries.slice(0, 2), NextToken: 'p2' }),
      DescribeTrainingJobCommand: (input) => jobs[input.TrainingJobName as string],
    });
    // WHEN
    const result = await run(clients, ENV, NOW);
    // THEN
    expect(result).toEqual({ published: 6, trainingJobs: 2, problems: [] });
    const list = calls.find((c) => c.command === 'ListTrainingJobsCommand')!.input;
    expect(list).toMatchObject({ NameContains: 'team-a-', LastModifiedTimeAfter: minutesAgo(60) });
    expect(calls.filter((c) => c.command === 'DescribeTrainingJobCommand').map((c) => c.input.TrainingJobName)).toEqual(['team-a-run1-train', 'team-a-run2-eval']);
    const put = calls.find((c) => c.command === 'PutMetricDataCommand')!.input;
    expect(put.Namespace).toBe('Tuneyard/Usage');
    expect(published(calls)).toEqual([
      `TrainingInstanceHours{TrainingJobPrefix=team-a-,TrainingJobName=team-a-run1-train,InstanceType=ml.g5.12xlarge}=2@${minutesAgo(30).toISOString()}`,
      `BillableInstanceHours{TrainingJobPrefix=team-a-,TrainingJobName=team-a-run1-train,InstanceType=ml.g5.12xlarge}=1@${minutesAgo(30).toISOString()}`,
      `TrainingInstanceHours{TrainingJobPrefix=team-a-,TrainingJobName=team-a-run2-eval,InstanceType=ml.g5.2xlarge}=${10 / 60}@${minutesAgo(10).toISOString()}`,
      `BillableInstanceHours{TrainingJobPrefix=team-a-,TrainingJobName=team-a-run2-eval,InstanceType=ml.g5.2xlarge}=0@${minutesAgo(10).toISOString()}`,
      // both ended between 11:00 and 12:00: the prefix's total for that hour, stamped at 11:00
      `TrainingInstanceHours{TrainingJobPrefix=team-a-}=${2 + 10 / 60}@2026-11-22T11:00:00.000Z`,
      `BillableInstanceHours{TrainingJobPrefix=team-a-}=1@2026-11-22T11:00:00.000Z`,
    ]);
  });

  test('counts the instances of every instance group, and falls back to the last change when the end time is missing', async () => {
    const { clients, calls } = clientsFor({
      ListTrainingJobsCommand: () => ({ TrainingJobSummaries: [{ TrainingJobName: 'team-a-hetero-train', TrainingJobStatus: 'Stopped' }] }),
      DescribeTrainingJobCommand: () =>
        job('team-a-hetero-train', {
          ResourceConfig: { InstanceGroups: [{ InstanceType: 'ml.p4d.24xlarge', InstanceCount: 2 }, { InstanceType: 'ml.c5.xlarge', InstanceCount: 1 }] },
          TrainingTimeInSeconds: 1800,
          BillableTimeInSeconds: 1800,
          LastModifiedTime: minutesAgo(3),
        }),
    });
    await run(clients, ENV, NOW);
    expect(published(calls)[0]).toBe(
      `TrainingInstanceHours{TrainingJobPrefix=team-a-,TrainingJobName=team-a-hetero-train,InstanceType=ml.p4d.24xlarge+ml.c5.xlarge}=1.5@${minutesAgo(3).toISOString()}`,
    );
  });

  test('a job that cannot be described is reported; the other jobs and the hourly total are still published', async () => {
    const { clients, calls } = clientsFor({
      ListTrainingJobsCommand: () => ({ TrainingJobSummaries: summaries }),
      DescribeTrainingJobCommand: (input) => {
        if (input.TrainingJobName === 'team-a-run2-eval') throw awsError('ThrottlingException', 'Rate exceeded');
        return jobs[input.TrainingJobName as string];
      },
    });
    await expect(run(clients, ENV, NOW)).rejects.toThrow('usage metrics: 1 could not be read: training job team-a-run2-eval: ThrottlingException: Rate exceeded');
    expect(published(calls)).toEqual(expect.arrayContaining([`TrainingInstanceHours{TrainingJobPrefix=team-a-}=2@2026-11-22T11:00:00.000Z`]));
    expect(published(calls)).toHaveLength(4);
  });

  test('a second run republishes the same values at the same timestamps (read with Maximum, a job counts once)', async () => {
    const handlers = {
      ListTrainingJobsCommand: () => ({ TrainingJobSummaries: summaries }),
      DescribeTrainingJobCommand: (input: Record<string, unknown>) => jobs[input.TrainingJobName as string],
    };
    const first = clientsFor(handlers);
    await run(first.clients, ENV, NOW);
    const second = clientsFor(handlers);
    await run(second.clients, ENV, new Date(NOW.getTime() + 60_000));
    expect(published(second.calls)).toEqual(published(first.calls));
  });

  test('skips a job that ended more than two weeks ago (CloudWatch would refuse the datapoint)', async () => {
    const { clients, calls } = clientsFor({
      ListTrainingJobsCommand: () => ({ TrainingJobSummaries: [{ TrainingJobName: 'team-a-old-train', TrainingJobStatus: 'Stopped' }] }),
      DescribeTrainingJobCommand: () => job('team-a-old-train', { TrainingTimeInSeconds: 60, TrainingEndTime: minutesAgo(15 * 24 * 60), ResourceConfig: { InstanceCount: 1, InstanceType: 'ml.g5.xlarge' } }),
    });
    expect(await run(clients, ENV, NOW)).toEqual({ published: 0, trainingJobs: 0, problems: [] });
    expect(calls.some((c) => c.command === 'PutMetricDataCommand')).toBe(false);
  });

  test('puts at most 1000 datapoints per call', async () => {
    const many = Array.from({ length: 600 }, (_, i) => ({ TrainingJobName: `team-a-${i}-train`, TrainingJobStatus: 'Completed' }));
    const { clients, calls } = clientsFor({
      ListTrainingJobsCommand: () => ({ TrainingJobSummaries: many }),
      DescribeTrainingJobCommand: (input) =>
        job(input.TrainingJobName as string, { TrainingTimeInSeconds: 60, BillableTimeInSeconds: 60, TrainingEndTime: minutesAgo(5), ResourceConfig: { InstanceCount: 1, InstanceType: 'ml.g5.xlarge' } }),
    });
    await run(clients, ENV, NOW);
    // 1200 per-job datapoints and the two hourly totals
    expect(calls.filter((c) => c.command === 'PutMetricDataCommand').map((c) => (c.input.MetricData as unknown[]).length)).toEqual([1000, 202]);
  });
});

describe('usage metrics handler: endpoints', () => {
  const env = (endpoints: unknown[]) => ({ ...ENV, [USAGE_ENV.trainingJobPrefixes]: '[]', [USAGE_ENV.endpoints]: JSON.stringify(endpoints) });

  test('publishes instances and, per inference component, copies; the endpoint total sums them', async () => {
    const { clients, calls } = clientsFor({
      DescribeEndpointCommand: () => ({ ProductionVariants: [{ VariantName: 'AllTraffic', CurrentInstanceCount: 2, DesiredInstanceCount: 3 }] }),
      ListInferenceComponentsCommand: (input) =>
        input.NextToken
          ? { InferenceComponents: [{ InferenceComponentName: 'support-bot' }] }
          : { InferenceComponents: [{ InferenceComponentName: 'chat-base' }], NextToken: 'p2' },
      DescribeInferenceComponentCommand: (input) =>
        input.InferenceComponentName === 'chat-base'
          ? { RuntimeConfig: { CurrentCopyCount: 2, DesiredCopyCount: 2 } }
          : { RuntimeConfig: { CurrentCopyCount: 0, DesiredCopyCount: 1 } },
    });
    const result = await run(clients, env([{ name: 'chat', components: true }]), NOW);
    expect(result.problems).toEqual([]);
    expect(calls.find((c) => c.command === 'ListInferenceComponentsCommand')!.input).toMatchObject({ EndpointNameEquals: 'chat' });
    const at = NOW.toISOString();
    expect(published(calls)).toEqual([
      `EndpointInstances{EndpointName=chat}=2@${at}`,
      `EndpointDesiredInstances{EndpointName=chat}=3@${at}`,
      `ComponentCopies{EndpointName=chat,InferenceComponentName=chat-base}=2@${at}`,
      `ComponentDesiredCopies{EndpointName=chat,InferenceComponentName=chat-base}=2@${at}`,
      `ComponentCopies{EndpointName=chat,InferenceComponentName=support-bot}=0@${at}`,
      `ComponentDesiredCopies{EndpointName=chat,InferenceComponentName=support-bot}=1@${at}`,
      `EndpointCopies{EndpointName=chat}=2@${at}`,
    ]);
  });

  test('a single-model endpoint has instances only, and an endpoint still being created publishes nothing yet', async () => {
    const { clients, calls } = clientsFor({
      DescribeEndpointCommand: (input) =>
        input.EndpointName === 'merged'
          ? { ProductionVariants: [{ VariantName: 'AllTraffic', CurrentInstanceCount: 1, DesiredInstanceCount: 1 }] }
          : { EndpointStatus: 'Creating' },
    });
    await run(clients, env([{ name: 'merged', components: false }, { name: 'new', components: false }]), NOW);
    expect(published(calls)).toEqual([`EndpointInstances{EndpointName=merged}=1@${NOW.toISOString()}`, `EndpointDesiredInstances{EndpointName=merged}=1@${NOW.toISOString()}`]);
    expect(calls.some((c) => c.command === 'ListInferenceComponentsCommand')).toBe(false);
  });

  test('a blue/green deployment\'s new fleet counts too; adapters add no copies of their own; a component that vanished is reported, the rest published', async () => {
    const { clients, calls } = clientsFor({
      DescribeEndpointCommand: () => ({
        ProductionVariants: [{ VariantName: 'AllTraffic', CurrentInstanceCount: 2, DesiredInstanceCount: 2 }],
        PendingDeploymentSummary: { EndpointConfigName: 'next', ProductionVariants: [{ VariantName: 'AllTraffic', CurrentInstanceCount: 1, DesiredInstanceCount: 2 }] },
      }),
      ListInferenceComponentsCommand: () => ({
        InferenceComponents: [{ InferenceComponentName: 'chat-base' }, { InferenceComponentName: 'support-bot' }, { InferenceComponentName: 'gone' }],
      }),
      DescribeInferenceComponentCommand: (input) => {
        if (input.InferenceComponentName === 'gone') throw awsError('ValidationException', 'Could not find inference component "gone".');
        return input.InferenceComponentName === 'chat-base'
          ? { Specification: { ModelName: 'base' }, RuntimeConfig: { CurrentCopyCount: 3, DesiredCopyCount: 3 } }
          : { Specification: { BaseInferenceComponentName: 'chat-base' }, RuntimeConfig: { CurrentCopyCount: 3, DesiredCopyCount: 3 } };
      },
    });
    await expect(run(clients, env([{ name: 'chat', components: true }]), new Date(NOW.getTime() + 17_500))).rejects.toThrow(
      'inference component gone of chat: ValidationException: Could not find inference component "gone".',
    );
    const at = NOW.toISOString(); // stamped at the start of the minute
    expect(published(calls)).toEqual([
      `EndpointInstances{EndpointName=chat}=3@${at}`,
      `EndpointDesiredInstances{EndpointName=chat}=4@${at}`,
      `ComponentCopies{EndpointName=chat,InferenceComponentName=chat-base}=3@${at}`,
      `ComponentDesiredCopies{EndpointName=chat,InferenceComponentName=chat-base}=3@${at}`,
      `ComponentCopies{EndpointName=chat,InferenceComponentName=support-bot}=3@${at}`,
      `ComponentDesiredCopies{EndpointName=chat,InferenceComponentName=support-bot}=3@${at}`,
      `EndpointCopies{EndpointName=chat}=3@${at}`,
    ]);
  });

  test('fails after publishing the rest when an endpoint cannot be read, naming it and the error', async () => {
    const { clients, calls } = clientsFor({
      DescribeEndpointCommand: (input) => {
        if (input.EndpointName === 'gone') throw awsError('ValidationException', 'Could not find endpoint "gone".');
        return { ProductionVariants: [{ CurrentInstanceCount: 1, DesiredInstanceCount: 1 }] };
      },
    });
    await expect(run(clients, env([{ name: 'gone', components: false }, { name: 'merged', components: false }]), NOW)).rejects.toThrow(
      'usage metrics: 1 could not be read: endpoint gone: ValidationException: Could not find endpoint "gone".',
    );
    expect(published(calls)).toHaveLength(2);
  });
});

describe('usage metrics handler: dataset versions', () => {
  const env = { ...ENV, [USAGE_ENV.trainingJobPrefixes]: '[]', [USAGE_ENV.dataBucket]: 'tuneyard-data' };
  const sha = (c: string) => c.repeat(64);

  test('counts the manifests of every page of datasets/, and the distinct dataset names', async () => {
    const { clients, calls } = clientsFor({
      ListObjectsV2Command: (input) =>
        input.ContinuationToken
          ? { Contents: [{ Key: `datasets/code/${sha('c')}/manifest.json` }, { Key: `datasets/code/${sha('c')}/eval.jsonl` }], IsTruncated: false }
          : { Contents: [{ Key: `datasets/chats/${sha('a')}/manifest.json` }, { Key: `datasets/chats/${sha('b')}/manifest.json` }], IsTruncated: true, NextContinuationToken: 't2' },
    });
    expect(await run(clients, env, NOW, { task: 'datasets' })).toEqual({ published: 2, trainingJobs: 0, problems: [] });
    expect(calls.find((c) => c.command === 'ListObjectsV2Command')!.input).toMatchObject({ Bucket: 'tuneyard-data', Prefix: 'datasets/' });
    expect(published(calls)).toEqual([`DatasetVersions{BucketName=tuneyard-data}=3@${NOW.toISOString()}`, `Datasets{BucketName=tuneyard-data}=2@${NOW.toISOString()}`]);
    // the dataset run does not touch SageMaker
    expect(calls.some((c) => c.command.startsWith('List') && c.command !== 'ListObjectsV2Command')).toBe(false);
  });

  test('fails when no data bucket is configured', async () => {
    const { clients } = clientsFor({});
    await expect(run(clients, ENV, NOW, { task: 'datasets' })).rejects.toThrow('usage metrics: the dataset count needs DATA_BUCKET');
  });
});

describe('usage metrics handler: settings', () => {
  test('fails when the environment is missing a value or has a wrong one, naming the variable', () => {
    const { [USAGE_ENV.namespace]: _, ...withoutNamespace } = ENV;
    expect(() => settingsFromEnv(withoutNamespace)).toThrow('usage metrics: environment variable METRICS_NAMESPACE is not set');
    expect(() => settingsFromEnv({ ...ENV, [USAGE_ENV.lookbackMinutes]: '1.5' })).toThrow('TRAINING_LOOKBACK_MINUTES must be a whole number of minutes; got 1.5');
    expect(() => settingsFromEnv({ ...ENV, [USAGE_ENV.endpoints]: '[{' })).toThrow(/^usage metrics: ENDPOINTS is not JSON: /);
    expect(settingsFromEnv(ENV)).toEqual({ namespace: 'Tuneyard/Usage', trainingJobPrefixes: ['team-a-'], endpoints: [], lookbackMinutes: 60, dataBucket: undefined });
  });
});

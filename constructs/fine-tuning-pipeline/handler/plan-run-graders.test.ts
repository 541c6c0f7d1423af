import * as fs from 'node:fs';
import * as path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { expectValidRequests } from '../../../test/support/api-model';
import { GRADERS_FILE_MAX_BYTES, MAX_BENCHMARK_DATASETS } from '../../../lib/run-request';
import { LONG_PYTHON_GRADER } from '../../../test/support/graders';
import { PlanRunEnvironment, planRunAndWriteGraders, RunRequestInvalid } from './plan-run';

const ENV: PlanRunEnvironment = {
  bucketName: 'data-bucket',
  volumeKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/k',
  outputKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/k',
  allowHubModels: false,
  deployStage: false,
};

const EXACT = { type: 'string_check', name: 'exact', input: '{{ sample.output_text }}', reference: '{{ item.reference }}', operation: 'eq' };
/** graders.json as PlanRun writes it for the request below: the trainer's tests read it as the graders channel. */
const FIXTURE = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'contracts', 'graders-file', 'graders.json');

const request = (graders?: unknown[]) => ({
  request: {
    dataset: { name: 'chats', sha256: 'c'.repeat(64) },
    baseModel: 's3://data-bucket/base-models/qwen2.5-0.5b/',
    recipe: { method: 'lora' },
    ...(graders ? { graders } : {}),
  },
});

class MemoryS3 {
  readonly puts: Array<{ Bucket: string; Key: string; Body: string; ContentType: string }> = [];
  async send(command: PutObjectCommand): Promise<unknown> {
    if (!(command instanceof PutObjectCommand)) throw new Error(`unexpected S3 command ${(command as object).constructor.name}`);
    this.puts.push(command.input as never);
    return {};
  }
}

describe('PlanRun writes the graders as graders.json, the evaluation job reads them from its graders channel', () => {
  test('a python grader over 2,500 characters plans: graders.json is written where the graders channel reads it', async () => {
    // GIVEN a run whose graders do not fit a hyperparameter
    expect(LONG_PYTHON_GRADER.source.length).toBeGreaterThan(2500);
    const s3 = new MemoryS3();
    // WHEN PlanRun plans it
    const { plan } = await planRunAndWriteGraders(request([EXACT, LONG_PYTHON_GRADER]), ENV, s3);
    // THEN one object, under the run's eval-reports/ prefix, holding the graders; the channel names it
    expect(s3.puts).toEqual([{ Bucket: 'data-bucket', Key: `eval-reports/${plan.runId}/graders.json`, Body: expect.any(String), ContentType: 'application/json' }]);
    expect(JSON.parse(s3.puts[0].Body)).toEqual([EXACT, LONG_PYTHON_GRADER]);
    const channel = plan.evaluationInputDataConfig.find((c) => c.ChannelName === 'graders')!;
    expect(channel).toEqual({
      ChannelName: 'graders',
      DataSource: { S3DataSource: { S3DataType: 'S3Prefix', S3Uri: `s3://data-bucket/${s3.puts[0].Key}`, S3DataDistributionType: 'FullyReplicated' } },
      ContentType: 'application/json',
      InputMode: 'File',
    });
    expect(plan.evaluationHyperParameters).not.toHaveProperty('graders');
    expect(Object.values(plan.evaluationHyperParameters).every((v) => v.length <= 2500)).toBe(true);
    expectValidRequests(s3.puts.map((params) => ({ service: 's3', operation: 'PutObject', params })));
    // the trainer's tests read this very file (TUNEYARD_UPDATE_FIXTURES=1 rewrites it)
    if (process.env.TUNEYARD_UPDATE_FIXTURES === '1') {
      fs.mkdirSync(path.dirname(FIXTURE), { recursive: true });
      fs.writeFileSync(FIXTURE, s3.puts[0].Body);
    }
    expect(fs.readFileSync(FIXTURE, 'utf8')).toBe(s3.puts[0].Body);
  });

  test('a retried PlanRun writes the same bytes to the same key (the run id hashes the graders)', async () => {
    const s3 = new MemoryS3();
    const first = await planRunAndWriteGraders(request([LONG_PYTHON_GRADER]), ENV, s3);
    const again = await planRunAndWriteGraders(request([LONG_PYTHON_GRADER]), ENV, s3);
    expect(again.plan.runId).toBe(first.plan.runId);
    expect(s3.puts[1]).toEqual(s3.puts[0]);
    // other graders: another run, another key
    await planRunAndWriteGraders(request([EXACT]), ENV, s3);
    expect(s3.puts[2].Key).not.toBe(s3.puts[0].Key);
  });

  test("with a probe and the most benchmarks, the evaluation job's channels stay within CreateTrainingJob's API model (at most 20)", async () => {
    const benchmarkDatasets = Array.from({ length: MAX_BENCHMARK_DATASETS }, (_, i) => ({ name: `bench-${i}`, sha256: String(i).repeat(64) }));
    const event = request([EXACT, LONG_PYTHON_GRADER]);
    const { plan } = await planRunAndWriteGraders({ request: { ...event.request, probeDataset: { name: 'probe', sha256: 'd'.repeat(64) }, benchmarkDatasets } }, ENV, new MemoryS3());
    expect(plan.evaluationInputDataConfig.map((c) => c.ChannelName)).toEqual(['model', 'adapter', 'eval', 'probe', ...benchmarkDatasets.map((b) => `benchmark-${b.name}`), 'graders']);
    expectValidRequests([
      {
        service: 'sagemaker',
        operation: 'CreateTrainingJob',
        params: {
          TrainingJobName: plan.evaluationJobName,
          RoleArn: 'arn:aws:iam::123456789012:role/TrainingRole',
          AlgorithmSpecification: { TrainingImage: '123456789012.dkr.ecr.us-east-1.amazonaws.com/trainer:1', TrainingInputMode: 'File' },
          HyperParameters: plan.evaluationHyperParameters,
          InputDataConfig: plan.evaluationInputDataConfig,
          OutputDataConfig: plan.evaluationOutputDataConfig,
          ResourceConfig: plan.evaluationResourceConfig,
          StoppingCondition: plan.evaluationStoppingCondition,
        },
      },
    ]);
  });

  test('a run without graders writes nothing and has no graders channel', async () => {
    const s3 = new MemoryS3();
    const { plan } = await planRunAndWriteGraders(request(), ENV, s3);
    expect(s3.puts).toEqual([]);
    expect(plan.gradersFile).toBeNull();
    expect(plan.evaluationInputDataConfig.map((c) => c.ChannelName)).not.toContain('graders');
  });

  test('fails as RunRequestInvalid, writing nothing, when the graders are over 64 KiB', async () => {
    const s3 = new MemoryS3();
    const huge = { ...LONG_PYTHON_GRADER, source: `${LONG_PYTHON_GRADER.source}# ${'x'.repeat(GRADERS_FILE_MAX_BYTES)}\n` };
    const refused = planRunAndWriteGraders(request([huge]), ENV, s3);
    await expect(refused).rejects.toBeInstanceOf(RunRequestInvalid);
    await expect(refused).rejects.toThrow(/^graders: \d+ bytes of JSON, over the 65536 a run's graders may take/);
    expect(s3.puts).toEqual([]);
  });
});

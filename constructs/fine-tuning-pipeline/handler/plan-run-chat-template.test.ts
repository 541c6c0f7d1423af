import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { MotoServer, startMoto } from '../../../test/support/moto';
import { makeChatTemplateTokenizers, PythonChatTemplate } from '../../../test/support/tokenizers';
import { recordingModelFiles } from '../../../test/support/model-files';
import { PlanRunEnvironment, planRunAndWriteGraders, RunRequestInvalid } from './plan-run';
import { TOKENIZER_CONFIG_MAX_BYTES } from '../../../lib/reward-vocabulary';

const ENV: PlanRunEnvironment = {
  bucketName: 'data-bucket',
  volumeKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/k',
  outputKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/k',
  allowHubModels: true,
  jobNamePrefix: 'tuneyard-',
  deployStage: false,
};
const EXACT = { type: 'string_check', name: 'exact', input: '{{ sample.output_text }}', reference: '{{ item.reference }}', operation: 'eq' };
const s3 = { send: async () => ({}) };
const baseOf = (name: string) => `s3://data-bucket/base-models/${name}/`;
// an rloo run's reward model: a folder without a model (the vocabulary check leaves it to the job)
const request = (baseModel: string, recipe: Record<string, unknown> = { method: 'grpo' }) => ({
  request: {
    dataset: { name: 'math-prompts', sha256: 'c'.repeat(64) },
    baseModel,
    baseModelParameters: 0.01,
    recipe,
    ...(recipe.method === 'rloo' ? { rewardModel: 's3://data-bucket/artifacts/rm/tuneyard-rm-train/output/model/' } : { graders: [EXACT] }),
  },
});

describe('PlanRun refuses a grpo or rloo run whose base model has no chat template, before any job starts', () => {
  // GIVEN tokenizer folders saved by the project's transformers (with a template in each place it writes one, and
  // without), staged on an S3 (moto) under base-models/<case>/, and what AutoTokenizer reads of each
  let moto: MotoServer;
  let client: S3Client;
  let dir: string;
  let python: Record<string, PythonChatTemplate>;

  const reader = () => recordingModelFiles(client);
  const put = (key: string, body: Buffer | string) => client.send(new PutObjectCommand({ Bucket: 'data-bucket', Key: key, Body: body }));

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-templates-'));
    python = makeChatTemplateTokenizers(dir);
    moto = await startMoto();
    client = new S3Client({ ...moto.clientConfig, forcePathStyle: true });
    await client.send(new CreateBucketCommand({ Bucket: 'data-bucket' }));
    for (const [name, { files }] of Object.entries(python)) {
      for (const f of files) await put(`base-models/${name}/${f}`, fs.readFileSync(path.join(dir, name, f)));
    }
    await put('base-models/no-config/tokenizer.json', fs.readFileSync(path.join(dir, 'none', 'tokenizer.json')));
    await put('base-models/not-json/tokenizer_config.json', '{"chat_template": ');
    await put('base-models/too-large/tokenizer_config.json', Buffer.alloc(TOKENIZER_CONFIG_MAX_BYTES + 1, ' '));
  }, 180_000);
  afterAll(async () => {
    await moto?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('refuses exactly the folders whose AutoTokenizer chat_template is falsy (what the trainer refuses)', async () => {
    // the layouts transformers writes are all covered
    expect(python.jinja.files).toContain('chat_template.jinja');
    expect(python['additional-only'].files).toEqual(expect.arrayContaining(['additional_chat_templates/tool_use.jinja']));
    expect(python['additional-only'].files).not.toContain('chat_template.jinja');
    expect(python['in-config'].files).not.toContain('chat_template.jinja');
    expect(python['json-only']).toMatchObject({ is_not_none: false, truthy: false }); // a processor's file: AutoTokenizer does not read it
    expect(python.none).toMatchObject({ is_not_none: false, truthy: false });
    expect(python.jinja.is_not_none && python['in-config'].is_not_none && python['list-in-config'].is_not_none).toBe(true);
    for (const [name, { truthy }] of Object.entries(python)) {
      const outcome = await planRunAndWriteGraders(request(baseOf(name)), ENV, s3, undefined, reader()).then(() => 'planned', (e) => e);
      if (truthy) expect([name, outcome]).toEqual([name, 'planned']);
      else expect([name, outcome]).toEqual([name, expect.any(RunRequestInvalid)]);
    }
  });

  test('fails with the folder, why, and the fix (recipe.chatTemplate), for grpo and rloo alike', async () => {
    for (const method of ['grpo', 'rloo']) {
      const error = await planRunAndWriteGraders(request(baseOf('none'), { method }), ENV, s3, undefined, reader()).catch((e) => e);
      expect(error).toBeInstanceOf(RunRequestInvalid);
      expect(error.message).toBe(
        `recipe.chatTemplate: the base model's tokenizer ("${baseOf('none')}") has no chat template (none in tokenizer_config.json, no chat_template.jinja), ` +
          `and a ${method} run asks its prompts as a chat: the evaluation job answers the eval prompts with the chat template for the reward gain. ` +
          'Set recipe.chatTemplate to "chatml", or use a base model that ships a chat template (most instruct models do).',
      );
    }
  });

  test('reads one listing and tokenizer_config.json; nothing once chat_template.jinja is listed', async () => {
    const files = reader();
    await planRunAndWriteGraders(request(baseOf('none')), ENV, s3, undefined, files).catch(() => undefined);
    expect(files.calls).toEqual(['List base-models/none/', 'Get base-models/none/tokenizer_config.json']);
    const jinja = reader();
    await planRunAndWriteGraders(request(baseOf('jinja')), ENV, s3, undefined, jinja);
    expect(jinja.calls).toEqual(['List base-models/jinja/']);
  });

  test('reads nothing with recipe.chatTemplate, for another method, or for a Hub id base model', async () => {
    const files = reader();
    await planRunAndWriteGraders(request(baseOf('none'), { method: 'grpo', chatTemplate: 'chatml' }), ENV, s3, undefined, files);
    await planRunAndWriteGraders(
      { request: { dataset: { name: 'chat', sha256: 'c'.repeat(64) }, baseModel: baseOf('none'), baseModelParameters: 0.01, recipe: { method: 'lora' } } },
      ENV,
      s3,
      undefined,
      files,
    );
    await planRunAndWriteGraders(request('Qwen/Qwen2.5-0.5B'), ENV, s3, undefined, files);
    expect(files.calls).toEqual([]);
  });

  test('no tokenizer_config.json, one that is not JSON, or one over the size limit is left to the training job', async () => {
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      for (const name of ['no-config', 'not-json', 'too-large', 'absent']) {
        await expect(planRunAndWriteGraders(request(baseOf(name)), ENV, s3, undefined, reader())).resolves.toBeDefined();
      }
      expect(warn.mock.calls.map((c) => c[0])).toEqual([
        expect.stringMatching(/not-json\/tokenizer_config\.json is not valid JSON \(.*\): the training job checks the chat template$/),
        expect.stringMatching(/too-large\/tokenizer_config\.json is over 4194304 bytes \(4194305\): the training job checks the chat template$/),
      ]);
    } finally {
      warn.mockRestore();
    }
  });
});

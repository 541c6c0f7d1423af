/**
 * report.html after the judge: the real JudgeAnswers handler (with a scripted Bedrock judge) run on the real eval job's
 * output (test/fixtures/contracts/eval-job: generations.jsonl and report.html, written by
 * training-images/trainer/tests/test_report.py), planned by the real PlanRun. Used by the judge-report unit tests and
 * the headless-browser test, so both look at the page the Lambda really writes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConverseCommand } from '@aws-sdk/client-bedrock-runtime';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { JudgePlan } from '../../lib/judge';
import { judgeAnswers, JudgeProgress, reportKey, type Sender } from '../../constructs/fine-tuning-pipeline/handler/judge-answers';
import { environmentSettings, planRunStep } from '../../constructs/fine-tuning-pipeline/handler/plan-run';

export const EVAL_JOB = path.join(__dirname, '..', 'fixtures', 'contracts', 'eval-job');
export const EVAL_JOB_REPORT = fs.readFileSync(path.join(EVAL_JOB, 'report.html'), 'utf8');
export const EVAL_JOB_GENERATIONS = fs.readFileSync(path.join(EVAL_JOB, 'generations.jsonl'), 'utf8');

/** What the scripted judge writes as its reasoning on item "cat": model text that must stay inert in the page. */
export const HOSTILE_REASONING = '<script>window.pwned=3</script><img src=x onerror="window.pwned=4"> A is the right word';

/** An S3 bucket in memory. */
export class MemoryS3 implements Sender {
  readonly objects = new Map<string, string>();
  readonly puts: Array<{ Bucket: string; Key: string; ContentType?: string }> = [];
  async send(command: any): Promise<any> {
    const input = command.input;
    if (command instanceof PutObjectCommand) {
      this.puts.push({ Bucket: input.Bucket, Key: input.Key, ContentType: input.ContentType });
      this.objects.set(`${input.Bucket}/${input.Key}`, input.Body as string);
      return {};
    }
    if (command instanceof GetObjectCommand) {
      const body = this.objects.get(`${input.Bucket}/${input.Key}`);
      if (body === undefined) throw Object.assign(new Error('The specified key does not exist.'), { name: 'NoSuchKey' });
      return { Body: { transformToString: async () => body } };
    }
    throw new Error(`unexpected S3 command ${command.constructor.name}`);
  }
}

/**
 * The judge: pairwise, it prefers the base answer on the prompts about a cat (with {@link HOSTILE_REASONING}), the
 * tuned answer on those about a dog, and calls the rest a tie; the score_model grader "fluency" scores the base answer
 * 4 and the tuned answer 1 on the prompts about bread, 3 and 3 elsewhere.
 */
export class ScriptedJudge implements Sender {
  calls = 0;
  async send(command: any): Promise<any> {
    if (!(command instanceof ConverseCommand)) throw new Error(`unexpected Bedrock command ${command.constructor.name}`);
    this.calls++;
    const input = command.input;
    const prompt = [...(input.system ?? []), ...input.messages!.flatMap((m) => m.content!)].map((b: any) => b.text).join('\n');
    let verdict: object;
    if (prompt.includes('Answer A:')) {
      const row = ROWS.find((r) => prompt.includes(JSON.stringify(r.prompt, null, 1)) && prompt.includes(r.tuned) && prompt.includes(r.base))!;
      const tunedIsA = prompt.includes(`Answer A:\n${row.tuned}\n\nAnswer B:`);
      const content = row.prompt[0].content;
      if (/: cat\b/.test(content)) verdict = { reasoning: HOSTILE_REASONING, winner: tunedIsA ? 'B' : 'A' };
      else if (/: dog\b/.test(content)) verdict = { reasoning: 'the tuned answer is closer to "chien" & shorter', winner: tunedIsA ? 'A' : 'B' };
      else verdict = { reasoning: 'neither answer is French', winner: 'tie' };
    } else {
      const row = ROWS.find((r) => prompt.includes(`Prompt: ${r.prompt[0].content}\n`))!;
      const tuned = ROWS.some((r) => r.prompt[0].content === row.prompt[0].content && prompt.includes(`Answer: ${r.tuned}\nRate`));
      const bread = /: bread\b/.test(row.prompt[0].content);
      verdict = { reasoning: `fluency of ${tuned ? 'the tuned' : 'the base'} answer`, score: bread ? (tuned ? 1 : 4) : 3 };
    }
    return { output: { message: { role: 'assistant', content: [{ text: JSON.stringify(verdict) }] } }, stopReason: 'end_turn', usage: { inputTokens: 100, outputTokens: 20 } };
  }
}

const ROWS: Array<{ index: number; prompt: Array<{ content: string }>; tuned: string; base: string }> = EVAL_JOB_GENERATIONS.trim()
  .split('\n')
  .map((l) => JSON.parse(l));

/** The judge plan the real PlanRun makes for a run with a judge and a score_model grader. */
export function judgedPlan(): JudgePlan {
  const env = environmentSettings({
    TUNEYARD_BUCKET_NAME: 'data-bucket',
    TUNEYARD_VOLUME_KMS_KEY_ARN: 'arn:aws:kms:us-east-1:123456789012:key/k',
    TUNEYARD_OUTPUT_KMS_KEY_ARN: 'arn:aws:kms:us-east-1:123456789012:key/k',
    TUNEYARD_JOB_NAME_PREFIX: 'tuneyard-',
    TUNEYARD_JUDGE_MODEL_IDS: 'amazon.nova-pro-v1:0',
  });
  const graders = [
    {
      type: 'score_model',
      name: 'fluency',
      model: 'judge',
      range: [1, 5],
      pass_threshold: 3,
      input: [{ role: 'user', content: 'Prompt: {{ item.prompt[0].content }}\nAnswer: {{ sample.output_text }}\nRate its fluency.' }],
    },
  ];
  const request = { dataset: { name: 'chats', sha256: 'c'.repeat(64) }, baseModel: 's3://data-bucket/base-models/qwen2.5-0.5b/', recipe: { method: 'lora' }, graders, judge: { modelId: 'amazon.nova-pro-v1:0' } };
  return planRunStep({ request }, env).plan.judge!;
}

/** Runs the judge to the end on the eval job's fixtures; returns the bucket, the plan, the last progress and report.html's key. */
export async function runJudgeOnEvalJob(s3 = new MemoryS3(), plan = judgedPlan()): Promise<{ s3: MemoryS3; plan: JudgePlan; progress: JudgeProgress; reportKey: string }> {
  s3.objects.set(`${plan.generations.bucket}/${plan.generations.key}`, EVAL_JOB_GENERATIONS);
  const key = reportKey(plan);
  if (!s3.objects.has(`${plan.generations.bucket}/${key}`)) s3.objects.set(`${plan.generations.bucket}/${key}`, EVAL_JOB_REPORT);
  const bedrock = new ScriptedJudge();
  let progress: JudgeProgress = { cursor: 0, parts: [], done: false };
  for (let i = 0; i < 100 && !progress.done; i++) progress = await judgeAnswers({ judge: plan, progress }, { s3, bedrock, remainingMs: () => 600_000 });
  return { s3, plan, progress, reportKey: key };
}

/** report.html as the judge leaves it. */
export async function judgedReport(): Promise<string> {
  const { s3, plan, reportKey: key } = await runJudgeOnEvalJob();
  return s3.objects.get(`${plan.generations.bucket}/${key}`)!;
}

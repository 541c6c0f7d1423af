import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { TuneyardValidationError } from './errors';
import { JUDGE_MODEL_ID } from './judge';

/**
 * The plane's configuration as JSON, for `cdk deploy` without editing code.
 *
 * It is read from the `tuneyard` context key (in cdk.json or `-c tuneyard='{"...": ...}'`), or
 * from a JSON file named by the `tuneyard:config` context key (`-c tuneyard:config=plane.json`).
 * Every field is optional; unknown keys are rejected with the closest valid name.
 */
export const PlaneConfigSchema = z.strictObject({
  stackName: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9-]{0,127}$/, 'must start with a letter and hold only letters, digits and hyphens (CloudFormation stack names)')
    .optional()
    .describe('CloudFormation stack name. Default: Tuneyard.'),
  removalPolicy: z
    .enum(['retain', 'destroy'])
    .optional()
    .describe('What happens to the data key and buckets when the stack is deleted. Default: retain.'),
  reserveLambdaConcurrency: z
    .boolean()
    .optional()
    .describe(
      "Reserve concurrency for the plane's Lambda functions (16 units in all). Accounts whose Lambda concurrency limit is 10 (new accounts) cannot reserve any: set false there. Default: true.",
    ),
  dataStore: z
    .strictObject({
      noncurrentVersionExpirationDays: days().describe('Days a noncurrent artifact/checkpoint/eval-report version is kept. Default: 30.'),
      checkpointExpirationDays: days().describe('Days spot checkpoints are kept. Default: 14.'),
      accessLogsRetentionDays: days().describe('Days S3 server access logs are kept. Default: 365.'),
      datasetAdminRoleArn: z
        .string()
        .regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/, 'must be an IAM role ARN such as arn:aws:iam::123456789012:role/DataAdmin')
        .optional()
        .describe('The only role that may overwrite or delete dataset versions. Default: none.'),
      existingBucketName: z
        .string()
        .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name (3-63 lower-case letters, digits, dots, hyphens)')
        .optional()
        .describe('Use this existing bucket instead of creating one. Default: a new bucket.'),
      existingKeyArn: z
        .string()
        .regex(/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/.+$/, 'must be a KMS key ARN such as arn:aws:kms:us-east-1:123456789012:key/<id>')
        .optional()
        .describe('Use this existing KMS key for the data. Default: a new key with rotation.'),
    })
    .optional(),
  network: z
    .strictObject({
      vpcId: z.string().regex(/^vpc-[0-9a-f]{8,17}$/, 'must be a VPC ID such as vpc-0123456789abcdef0').optional().describe('Use this VPC instead of creating one (with subnetIds, availabilityZones, vpcCidrBlock). Default: a new isolated VPC.'),
      subnetIds: z.array(z.string().regex(/^subnet-[0-9a-f]{8,17}$/, 'must be a subnet ID such as subnet-0123456789abcdef0')).min(1, 'must name at least one subnet').optional().describe('Private subnets of vpcId for the jobs.'),
      availabilityZones: z.array(z.string().regex(/^[a-z]{2}-[a-z]+-\d[a-z]$/, 'must be an Availability Zone such as us-east-1a')).optional().describe('AZs of the subnets (imported VPC) or of the new VPC (2).'),
      vpcCidrBlock: z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, 'must be an IPv4 CIDR such as 10.0.0.0/16').optional().describe('The IPv4 range of vpcId, or of the new VPC. Default for a new VPC: 10.80.0.0/16.'),
      s3PrefixListId: z.string().regex(/^pl-[0-9a-f]{8,17}$/, 'must be the pl-... ID of com.amazonaws.<region>.s3').optional().describe('The S3 managed prefix list, for HTTPS egress to the S3 gateway endpoint.'),
    })
    .superRefine((n, ctx) => {
      if (n.vpcId && (!n.subnetIds || !n.availabilityZones || !n.vpcCidrBlock)) {
        ctx.addIssue({ code: 'custom', path: ['vpcId'], message: 'an existing VPC needs subnetIds, availabilityZones and vpcCidrBlock too (no lookups at synth)' });
      }
      if (!n.vpcId && n.subnetIds) ctx.addIssue({ code: 'custom', path: ['subnetIds'], message: 'subnetIds applies to an existing vpcId only; remove it or set vpcId' });
    })
    .optional(),
  training: z
    .strictObject({
      imageUri: z.string().regex(/^[\w.-]+(:\d+)?\/[\w./-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$/, 'must be an image URI such as 123456789012.dkr.ecr.us-east-1.amazonaws.com/tuneyard-trainer:1.0').optional().describe('A prebuilt trainer image. Default: the bundled trainer, built at deploy.'),
      allowHubModels: z.boolean().optional().describe('Allow Hugging Face Hub ids as base models (jobs then run without network isolation). Default: false.'),
      jobNamePrefix: z.string().regex(/^[a-z0-9][a-z0-9-]{0,8}$/, 'must be 1-9 lower-case letters, digits or hyphens').optional().describe('Prefix of the training job names. Default: tuneyard-.'),
    })
    .optional(),
  pipeline: z
    .strictObject({
      timeoutDays: z.number().int('must be a whole number of days').min(1, 'must be at least 1 day').max(24, 'must be at most 24 days').optional().describe('The longest a run may take end to end, spot waits included. Default: 7.'),
      judgeModelIds: z
        .array(z.string().regex(JUDGE_MODEL_ID, 'must be a Bedrock model id ("amazon.nova-pro-v1:0") or inference profile id ("us.anthropic.claude-3-5-haiku-20241022-v1:0")'))
        .optional()
        .describe("The Amazon Bedrock models a run's LLM judge may name (RunRequest judge.modelId). Default: none (no judge)."),
    })
    .optional(),
  serving: z
    .strictObject({
      instanceType: z.string().regex(/^ml\.[a-z0-9-]+\.[a-z0-9]+$/, 'must be a SageMaker instance type such as ml.g5.2xlarge').describe('Instance type of the vLLM endpoint.'),
      baseModel: z.string().min(1).describe('The served model\'s name, for the memory preflight (e.g. meta-llama/Llama-3.1-8B-Instruct).'),
      modelPrefix: z
        .string()
        .regex(/^(base-models|artifacts)\/[A-Za-z0-9._\/-]+\/$/, 'must be a folder of the data bucket under base-models/ or artifacts/, ending in "/", such as base-models/llama-3.1-8b/')
        .describe('The uncompressed model folder in the data bucket that the endpoint serves.'),
      parametersBillions: z.number().positive('must be positive').optional().describe('Model size when the name does not tell it.'),
      endpointName: z.string().regex(/^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/, 'must be 1-63 letters, digits and hyphens').optional().describe('Default: derived from the stack.'),
      adapters: z
        .strictObject({
          minCopies: z.number().int().min(0, 'must be 0 (scale to zero) or more').optional().describe('Copies of the base model kept at least; 0 scales to zero when idle. Default: 1.'),
          maxCopies: z.number().int().min(1, 'must be at least 1').optional().describe('The most copies autoscaling may reach. Default: max(minCopies, 1).'),
        })
        .optional()
        .describe('Serve LoRA adapters as inference components on this endpoint (the Deploy stage adds each run\'s adapter).'),
    })
    .optional()
    .describe('A vLLM endpoint and the pipeline\'s Deploy stage. Default: none (an endpoint costs money every hour).'),
  observability: z
    .strictObject({
      enabled: z.boolean().optional().describe('The plane dashboard (and, with the pipeline, its alarms). Default: true.'),
      usageMetrics: z
        .boolean()
        .optional()
        .describe(
          'Publish training instance-hours, endpoint instances and copies, and dataset versions (a Lambda function on a schedule: every minute with serving, else every 5 minutes, plus hourly; SageMaker and S3 publish none of these). Default: true when enabled.',
        ),
      runbookUrl: z
        .string()
        .regex(/^https:\/\/\S+$/, 'must be the https:// URL of the README, such as https://github.com/acme/tuneyard/blob/main/README.md')
        .optional()
        .describe("Where the dashboard's runbook links point. Default: the texts name README.md's runbook entries."),
    })
    .optional(),
});

export type PlaneConfig = z.infer<typeof PlaneConfigSchema>;

function days() {
  return z.number().int('must be a whole number of days').min(1, 'must be at least 1 day').optional();
}

/** The context keys that carry the configuration. */
export const CONFIG_CONTEXT_KEY = 'tuneyard';
export const CONFIG_FILE_CONTEXT_KEY = 'tuneyard:config';

/**
 * Reads and validates the plane's configuration from CDK context values.
 * `baseDir` resolves a relative `tuneyard:config` path (the app's working directory).
 */
export function loadPlaneConfig(context: (key: string) => unknown, baseDir = process.cwd()): PlaneConfig {
  const file = context(CONFIG_FILE_CONTEXT_KEY);
  const inline = context(CONFIG_CONTEXT_KEY);
  if (file !== undefined && inline !== undefined) {
    throw new TuneyardValidationError(
      `Both context keys "${CONFIG_CONTEXT_KEY}" and "${CONFIG_FILE_CONTEXT_KEY}" are set; use one: the inline object or the file.`,
    );
  }
  if (file !== undefined) {
    if (typeof file !== 'string') {
      throw new TuneyardValidationError(`context "${CONFIG_FILE_CONTEXT_KEY}" must be a file path, got ${JSON.stringify(file)}.`);
    }
    const filePath = path.resolve(baseDir, file);
    let text: string;
    try {
      text = fs.readFileSync(filePath, 'utf8');
    } catch {
      throw new TuneyardValidationError(`${file}: cannot read the configuration file named by context "${CONFIG_FILE_CONTEXT_KEY}". Check the path (resolved to ${filePath}).`);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new TuneyardValidationError(`${file}: not valid JSON (${(e as Error).message}).`);
    }
    return parsePlaneConfig(raw, file);
  }
  const raw = typeof inline === 'string' ? parseInline(inline) : inline ?? {};
  return parsePlaneConfig(raw, `context "${CONFIG_CONTEXT_KEY}"`);
}

function parseInline(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TuneyardValidationError(`context "${CONFIG_CONTEXT_KEY}" is a string but not valid JSON (${(e as Error).message}).`);
  }
}

/** Validates a configuration object; `source` names where it came from in error messages. */
export function parsePlaneConfig(raw: unknown, source: string): PlaneConfig {
  const result = PlaneConfigSchema.safeParse(raw);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => `  - ${describeIssue(issue, raw)}`);
  throw new TuneyardValidationError(`${source}: invalid Tuneyard configuration:\n${lines.join('\n')}`);
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  const field = issue.path.join('.') || '(top level)';
  if (issue.code === 'unrecognized_keys') {
    return issue.keys
      .map((key) => {
        const known = knownKeys(issue.path);
        const near = closest(key, known);
        const fix = near ? `did you mean "${near}"?` : `valid keys: ${known.join(', ')}`;
        return `${issue.path.length ? `${field}.` : ''}${key}: unknown key; ${fix}`;
      })
      .join('\n  - ');
  }
  const value = valueAt(raw, issue.path);
  return `${field}: ${issue.message} (got ${JSON.stringify(value)})`;
}

function knownKeys(at: PropertyKey[]): string[] {
  let schema: z.ZodType = PlaneConfigSchema;
  for (const key of at) {
    const inner = unwrap(schema);
    schema = (inner as z.ZodObject).shape[key as string];
  }
  return Object.keys((unwrap(schema) as z.ZodObject).shape);
}

function unwrap(schema: z.ZodType): z.ZodType {
  return schema instanceof z.ZodOptional ? (schema.unwrap() as z.ZodType) : schema;
}

function valueAt(raw: unknown, at: PropertyKey[]): unknown {
  return at.reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined), raw);
}

/** The nearest candidate by edit distance, if within a third of its length (at least 3 edits). */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of candidates) {
    const distance = levenshtein(word.toLowerCase(), name.toLowerCase());
    if (distance <= Math.max(3, Math.floor(name.length / 3)) && (!best || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

import { isOnlineRl, Method } from './methods';

/**
 * What a training job costs, for `tuneyard estimate`: an on-demand price table for the GPU
 * instances in `instances.ts`, a stated spot discount, and a stated throughput assumption.
 *
 * Every figure here is an estimate for planning, not a quote. Check the AWS pricing page (or the
 * Price List API, service code `AmazonSageMaker`) before you budget.
 */

/**
 * SageMaker AI *training* on-demand prices, USD per instance-hour, region us-east-1.
 *
 * Source: the "Training" tab of https://aws.amazon.com/sagemaker/ai/pricing/ (On-Demand,
 * US East (N. Virginia)), as of 2025-06 (before the June 2025 P4/P5 price cuts took effect on
 * SageMaker). The g6 and g6e rows were not all listed for training then: they are the EC2
 * on-demand price × 1.4 (SageMaker's usual markup over EC2 for these families), rounded to the
 * cent, and are marked as derived. p5e/p5en are sold through training plans, not on demand:
 * they have no price here and the estimate says so. The table could not be re-checked from the
 * build machine (no network); PRICES_AS_OF says how old it is.
 */
export const PRICES_AS_OF = '2025-06';
export const PRICE_REGION = 'us-east-1';

const ON_DEMAND_USD_PER_HOUR: Readonly<Record<string, number>> = {
  'ml.g4dn.xlarge': 0.736,
  'ml.g4dn.2xlarge': 0.94,
  'ml.g4dn.4xlarge': 1.505,
  'ml.g4dn.8xlarge': 2.72,
  'ml.g4dn.12xlarge': 4.89,
  'ml.g4dn.16xlarge': 5.44,
  'ml.g5.xlarge': 1.408,
  'ml.g5.2xlarge': 1.515,
  'ml.g5.4xlarge': 2.03,
  'ml.g5.8xlarge': 3.06,
  'ml.g5.12xlarge': 7.09,
  'ml.g5.16xlarge': 5.12,
  'ml.g5.24xlarge': 10.18,
  'ml.g5.48xlarge': 20.36,
  // derived: EC2 on-demand × 1.4
  'ml.g6.xlarge': 1.13,
  'ml.g6.2xlarge': 1.37,
  'ml.g6.4xlarge': 1.85,
  'ml.g6.8xlarge': 2.82,
  'ml.g6.16xlarge': 4.76,
  'ml.g6.12xlarge': 6.44,
  'ml.g6.24xlarge': 9.35,
  'ml.g6.48xlarge': 18.69,
  // derived: EC2 on-demand × 1.4
  'ml.g6e.xlarge': 2.61,
  'ml.g6e.2xlarge': 3.14,
  'ml.g6e.4xlarge': 4.21,
  'ml.g6e.8xlarge': 6.34,
  'ml.g6e.16xlarge': 10.61,
  'ml.g6e.12xlarge': 14.69,
  'ml.g6e.24xlarge': 21.09,
  'ml.g6e.48xlarge': 42.18,
  'ml.p3.2xlarge': 3.825,
  'ml.p3.8xlarge': 14.688,
  'ml.p3.16xlarge': 28.152,
  'ml.p3dn.24xlarge': 35.894,
  'ml.p4d.24xlarge': 37.688,
  'ml.p4de.24xlarge': 47.11,
  'ml.p5.48xlarge': 113.07,
};

/**
 * ASSUMPTION, not a price: managed spot training is billed at 30% of on demand (a 70% discount).
 * AWS advertises "up to 90%"; GPU spot capacity in us-east-1 has typically cleared at 60-75% off.
 * Interruptions add time (the job resumes from its last checkpoint), which this ignores.
 */
export const SPOT_DISCOUNT = 0.7;

/** The on-demand price of one instance-hour, or undefined when the table has none. */
export function onDemandPricePerHour(instanceType: string): number | undefined {
  return ON_DEMAND_USD_PER_HOUR[instanceType];
}

/**
 * ASSUMPTION: training throughput in tokens per second per GPU for an 8B-parameter model at
 * sequence length 2048, bf16 (fp16 on T4/V100), gradient checkpointing on, by GPU model and
 * method. Compiled from public fine-tuning benchmarks (Hugging Face PEFT/TRL and Unsloth blog
 * posts, AWS SageMaker samples) and rounded down; not measured by Tuneyard.
 * Other model sizes scale inversely with the parameter count (see `estimateTrainingHours`).
 * DPO processes each pair's chosen and rejected sequences through the policy and a reference
 * pass: its rate is a third of LoRA's, per token of the dataset.
 */
export const TOKENS_PER_SECOND_PER_GPU_8B: Readonly<Record<string, Readonly<Record<'sft' | 'lora' | 'qlora', number>>>> = {
  T4: { sft: 100, lora: 150, qlora: 100 },
  V100: { sft: 250, lora: 350, qlora: 220 },
  A10G: { sft: 400, lora: 500, qlora: 350 },
  L4: { sft: 300, lora: 400, qlora: 280 },
  L40S: { sft: 900, lora: 1100, qlora: 750 },
  A100: { sft: 1400, lora: 1700, qlora: 1000 },
  H100: { sft: 3000, lora: 3500, qlora: 2000 },
  H200: { sft: 3300, lora: 3900, qlora: 2200 },
};

/** The reference model size of `TOKENS_PER_SECOND_PER_GPU_8B`, in billions of parameters. */
const REFERENCE_PARAMS_B = 8;

/**
 * ASSUMPTION: the share of linear speed-up a data-parallel job (DDP or FSDP) keeps on 2-8 GPUs of one
 * instance: each step waits for part of its gradient all-reduce or FSDP all-gathers that the backward
 * pass does not hide (the PCIe-only g4dn/g5/g6/g6e families hide less than NVLink p4d/p5). Not measured
 * by Tuneyard; 0.9 is a planning figure, not a benchmark.
 */
export const IN_INSTANCE_SCALING = 0.9;

/**
 * Across instances, the further share of per-GPU throughput a data-parallel job keeps, relative to one
 * 8-GPU instance, by total GPUs: Hugging Face's Ultra-Scale Playbook (2025), section "Data parallelism",
 * figure of throughput per GPU against data-parallel degree (8 → 16 → 32 → 64 GPUs: 40.1k, 37.6k, 35.4k,
 * 31.1k tokens/s per GPU). Values between the points are interpolated on log2(GPUs).
 */
export const ACROSS_INSTANCE_SCALING: ReadonlyArray<[gpus: number, efficiency: number]> = [
  [8, 1],
  [16, 0.937],
  [32, 0.881],
  [64, 0.775],
];

/** The share of linear speed-up a job on `gpus` GPUs over `instances` instances keeps (1 on one GPU). */
export function scalingEfficiency(gpus: number, instances = 1): number {
  if (gpus <= 1) return 1;
  if (instances <= 1) return IN_INSTANCE_SCALING;
  const points = ACROSS_INSTANCE_SCALING;
  const x = Math.log2(Math.max(gpus, points[0][0]));
  let across = points[points.length - 1][1];
  for (let i = 1; i < points.length; i++) {
    const [g0, e0] = points[i - 1];
    const [g1, e1] = points[i];
    if (gpus <= g1) {
      across = e0 + ((e1 - e0) * (x - Math.log2(g0))) / (Math.log2(g1) - Math.log2(g0));
      break;
    }
  }
  return IN_INSTANCE_SCALING * across;
}

export interface TrainingTimeInput {
  /** The GPU model (`instances.ts`). */
  readonly gpuModel: string;
  /** GPUs across all instances of the job. */
  readonly gpus: number;
  /** Instances the GPUs are spread over. @default 1 */
  readonly instances?: number;
  readonly method: Method;
  /** The base model's parameters, in billions. */
  readonly paramsB: number;
  /** Tokens in one pass over the training data. */
  readonly tokens: number;
  readonly epochs: number;
}

/**
 * Estimated wall-clock hours of training (excluding instance start-up and model download): the
 * throughput assumption per GPU, times the GPUs, times {@link scalingEfficiency}.
 */
export function estimateTrainingHours(input: TrainingTimeInput): number {
  const rates = TOKENS_PER_SECOND_PER_GPU_8B[input.gpuModel];
  if (!rates) throw new Error(`no throughput assumption for GPU model "${input.gpuModel}"`);
  // DPO: the chosen and the rejected sequence through the policy and the reference; a reward model: both through one model
  // GRPO and RLOO: each prompt's group of completions is generated token by token, then scored by the policy, the
  // reference (and a reward model); generation dominates, assumed at a tenth of LoRA's training throughput per training token
  const perGpu = input.method === 'dpo' ? rates.lora / 3 : input.method === 'reward' ? rates.lora / 2 : isOnlineRl(input.method) ? rates.lora / 10 : rates[input.method];
  const scaled = (perGpu * REFERENCE_PARAMS_B) / Math.max(input.paramsB, 0.1);
  return (input.tokens * input.epochs) / (scaled * input.gpus * scalingEfficiency(input.gpus, input.instances)) / 3600;
}

export interface CostEstimate {
  readonly onDemandUsd?: number;
  readonly spotUsd?: number;
}

/** Cost of `hours` on `instanceCount` instances, on demand and with the spot assumption. */
export function estimateCost(instanceType: string, instanceCount: number, hours: number): CostEstimate {
  const price = onDemandPricePerHour(instanceType);
  if (price === undefined) return {};
  const onDemandUsd = price * instanceCount * hours;
  return { onDemandUsd, spotUsd: onDemandUsd * (1 - SPOT_DISCOUNT) };
}

/**
 * Amazon Bedrock on-demand prices of a few judge models, USD per 1,000 tokens (input, output), region us-east-1.
 *
 * Source: https://aws.amazon.com/bedrock/pricing/ (On-Demand, US East (N. Virginia)), as quoted by pricing guides of
 * 2026-01 to 2026-04 that cite it (not re-checked against the AWS page from the build machine). A cross-region
 * inference profile (`us.`, `eu.`, ...) is billed at the source region's price of its model; global profiles and newer
 * model generations may be priced otherwise, and are not listed. A model not listed is "unpriced".
 */
export const JUDGE_PRICES_AS_OF = '2026-04';
const BEDROCK_USD_PER_1K_TOKENS: Readonly<Record<string, { readonly input: number; readonly output: number }>> = {
  'amazon.nova-micro-v1:0': { input: 0.000035, output: 0.00014 },
  'amazon.nova-lite-v1:0': { input: 0.00006, output: 0.00024 },
  'amazon.nova-pro-v1:0': { input: 0.0008, output: 0.0032 },
  'anthropic.claude-3-5-haiku-20241022-v1:0': { input: 0.0008, output: 0.004 },
  'anthropic.claude-3-7-sonnet-20250219-v1:0': { input: 0.003, output: 0.015 },
};

/** The on-demand price of a judge model (a geography's inference profile: its model's), or undefined when not listed. */
export function bedrockPricePer1kTokens(modelId: string): { readonly input: number; readonly output: number } | undefined {
  return BEDROCK_USD_PER_1K_TOKENS[modelId] ?? BEDROCK_USD_PER_1K_TOKENS[modelId.replace(/^(us|eu|apac|us-gov|ca|jp|au)\./, '')];
}

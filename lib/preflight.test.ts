import { findGpuInstance, gpuInstance } from './instances';
import { estimateInferenceMemory, estimateTrainingMemory, parametersFromName, resolveParameters, TrainingMemoryInput } from './preflight';

const BASE: TrainingMemoryInput = {
  method: 'qlora',
  parametersBillions: 8,
  maxLength: 2048,
  batchSize: 4,
  gradientCheckpointing: true,
  loraR: 16,
  instanceType: 'ml.g5.2xlarge',
  instanceCount: 1,
  distribution: 'none',
};

describe('GPU instance table', () => {
  test('knows the GPUs, memory and local storage of each family', () => {
    expect(gpuInstance('ml.g5.2xlarge')).toMatchObject({ gpus: 1, gpuModel: 'A10G', gpuMemoryGiB: 24, localNvme: true });
    expect(gpuInstance('ml.g5.48xlarge')).toMatchObject({ gpus: 8, vcpus: 192 });
    expect(gpuInstance('ml.p4d.24xlarge')).toMatchObject({ gpus: 8, gpuModel: 'A100', gpuMemoryGiB: 40, localNvme: true });
    expect(gpuInstance('ml.p4de.24xlarge').gpuMemoryGiB).toBe(80);
    expect(gpuInstance('ml.p5.48xlarge')).toMatchObject({ gpus: 8, gpuModel: 'H100', gpuMemoryGiB: 80 });
    expect(gpuInstance('ml.p3.2xlarge')).toMatchObject({ localNvme: false, bf16: false });
    expect(gpuInstance('ml.g6e.xlarge').gpuMemoryGiB).toBe(48);
    expect(findGpuInstance('ml.m5.xlarge')).toBeUndefined();
  });

  test('fails on an unknown instance type, listing the families', () => {
    expect(() => gpuInstance('ml.g9.2xlarge')).toThrow(/"ml.g9.2xlarge" is not a SageMaker GPU instance that Tuneyard knows; use one of ml\.g4dn\.\*, ml\.g5\.\*/);
  });
});

describe('estimateTrainingMemory', () => {
  test('full SFT of an 8B model does not fit a g5.2xlarge (~130 GiB)', () => {
    const e = estimateTrainingMemory({ ...BASE, method: 'sft' });
    expect(e.fits).toBe(false);
    expect(e.requiredGiB).toBeGreaterThan(120);
    expect(e.requiredGiB).toBeLessThan(140);
    expect(e.breakdown.gradientsAndOptimizer).toBeCloseTo((8e9 * 14) / 2 ** 30, 0);
    expect(e.advice).toMatch(/use qlora \(or lora\)/);
  });

  test('QLoRA of an 8B model fits a g5.2xlarge at 2048 tokens', () => {
    const e = estimateTrainingMemory(BASE);
    expect(e.fits).toBe(true);
    expect(e.breakdown.weights).toBeGreaterThan(4);
    expect(e.breakdown.weights).toBeLessThan(5);
    expect(e.requiredGiB).toBeLessThan(20);
  });

  test('QLoRA of a 70B model needs ~46 GiB', () => {
    const e = estimateTrainingMemory({ ...BASE, parametersBillions: 70, batchSize: 1 });
    expect(e.requiredGiB).toBeGreaterThan(40);
    expect(e.requiredGiB).toBeLessThan(52);
    expect(e.fits).toBe(false);
    expect(e.advice).toMatch(/QLoRA of a 70B model .* needs ~4\d(\.\d)? GiB per GPU; ml\.g5\.2xlarge has 24 GiB per GPU: use ml\.g6e\.2xlarge/);
    expect(estimateTrainingMemory({ ...BASE, parametersBillions: 70, batchSize: 1, instanceType: 'ml.p4de.24xlarge', distribution: 'ddp' }).fits).toBe(true);
  });

  test('full SFT of an 8B model with FSDP fits a p4d.24xlarge, and shards the optimizer 8 ways', () => {
    const sharded = estimateTrainingMemory({ ...BASE, method: 'sft', instanceType: 'ml.p4d.24xlarge', distribution: 'fsdp' });
    const unsharded = estimateTrainingMemory({ ...BASE, method: 'sft', instanceType: 'ml.p4d.24xlarge', distribution: 'ddp' });
    expect(sharded.fits).toBe(true);
    expect(sharded.shardedOver).toBe(8);
    expect(unsharded.fits).toBe(false);
    expect(unsharded.breakdown.gradientsAndOptimizer / sharded.breakdown.gradientsAndOptimizer).toBeCloseTo(8, 0);
    expect(unsharded.advice).toMatch(/shard with distribution "fsdp"/);
  });

  test('gradient checkpointing and longer sequences change the activations', () => {
    const on = estimateTrainingMemory(BASE);
    const off = estimateTrainingMemory({ ...BASE, gradientCheckpointing: false });
    const long = estimateTrainingMemory({ ...BASE, maxLength: 8192 });
    expect(off.breakdown.activations).toBeGreaterThan(on.breakdown.activations * 3);
    expect(long.breakdown.activations).toBeCloseTo(on.breakdown.activations * 4, 0);
  });
});

describe('model size', () => {
  test.each([
    ['meta-llama/Llama-3.1-8B-Instruct', 8],
    ['meta-llama/Llama-3.1-70B', 70],
    ['Qwen/Qwen2.5-0.5B', 0.5],
    ['Qwen/Qwen2.5-1.5B-Instruct', 1.5],
    ['s3://b/base-models/mistral-7b/', 7],
    ['HuggingFaceTB/SmolLM2-135M', 0.135],
  ])('reads %s as %d billion parameters', (name, billions) => {
    expect(parametersFromName(name)).toBe(billions);
  });

  test('fails when the name does not tell, asking for baseModelParameters', () => {
    expect(parametersFromName('mistralai/Mixtral-8x7B-v0.1')).toBeUndefined();
    expect(() => resolveParameters('s3://b/base-models/house-model/')).toThrow(
      /cannot tell the size of base model "s3:\/\/b\/base-models\/house-model\/" from its name; set baseModelParameters/,
    );
    expect(resolveParameters('s3://b/base-models/house-model/', 13)).toBe(13);
  });
});

describe('estimateInferenceMemory', () => {
  test('an 8B model in bf16 with 8k context fits a g6e.xlarge but not a g5.2xlarge with 8 full-length sequences', () => {
    const input = { parametersBillions: 8, maxModelLength: 8192, concurrentSequences: 8 };
    const g5 = estimateInferenceMemory({ ...input, instanceType: 'ml.g5.2xlarge' });
    expect(g5.breakdown.weights).toBeCloseTo(14.9, 1);
    expect(g5.breakdown.activations).toBeCloseTo(8, 0); // 128 KiB of KV cache per token
    expect(g5.fits).toBe(false);
    expect(estimateInferenceMemory({ ...input, instanceType: 'ml.g6e.xlarge' }).fits).toBe(true);
  });

  test('tensor parallelism splits weights and KV cache', () => {
    const one = estimateInferenceMemory({ parametersBillions: 70, maxModelLength: 4096, instanceType: 'ml.p4d.24xlarge', tensorParallel: 1 });
    const eight = estimateInferenceMemory({ parametersBillions: 70, maxModelLength: 4096, instanceType: 'ml.p4d.24xlarge' });
    expect(one.fits).toBe(false);
    expect(eight.fits).toBe(true);
    expect(() => estimateInferenceMemory({ parametersBillions: 8, maxModelLength: 4096, instanceType: 'ml.g5.2xlarge', tensorParallel: 2 })).toThrow(/tensorParallel must be a whole number from 1 to 1/);
  });
});

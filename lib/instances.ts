/**
 * SageMaker GPU instance types for training and inference: one table, used by the preflight
 * memory estimator, the run planner (KMS volume keys) and the endpoint constructs.
 *
 * Figures are the published ones (GPU memory is the nominal size per GPU; the usable part is a
 * little smaller, which the estimator's framework overhead accounts for).
 */
export interface GpuInstance {
  /** The SageMaker instance type, e.g. `ml.g5.2xlarge`. */
  readonly instanceType: string;
  /** GPUs on one instance. */
  readonly gpus: number;
  /** The GPU model. */
  readonly gpuModel: 'T4' | 'A10G' | 'L4' | 'L40S' | 'V100' | 'A100' | 'H100' | 'H200';
  /** Memory of one GPU in GiB (nominal). */
  readonly gpuMemoryGiB: number;
  /**
   * Whether the instance has local NVMe instance storage. SageMaker refuses a KMS volume key
   * (`VolumeKmsKeyId`, endpoint config `KmsKeyId`) on these: the instance store is encrypted by
   * the hardware instead.
   */
  readonly localNvme: boolean;
  /**
   * The total local NVMe instance storage in GB, on instances that have it. SageMaker trains on
   * that storage instead of an EBS volume and refuses a `VolumeSizeInGB` above it.
   */
  readonly localStorageGB?: number;
  /** vCPUs of one instance. */
  readonly vcpus: number;
  /**
   * The instance's host memory (RAM) in GiB, as AWS publishes it for the EC2 instance type (the
   * ml. type runs on the same hardware). The OS, Docker and SageMaker's agents take part of it.
   */
  readonly hostMemoryGiB: number;
  /** Whether the GPU computes in bfloat16 (Ampere and later); T4 and V100 do not. */
  readonly bf16: boolean;
  /** The GPU's CUDA compute capability (V100 7.0, T4 7.5, A100 8.0, ...): which kernels of a CUDA build it can run. */
  readonly computeCapability: number;
}

/**
 * CUDA compute capability of each GPU model (https://developer.nvidia.com/cuda-gpus). A CUDA build
 * runs on the capabilities it was compiled for and on later minor versions of the same major one.
 */
export const GPU_COMPUTE_CAPABILITY: Readonly<Record<GpuInstance['gpuModel'], number>> = {
  V100: 7.0,
  T4: 7.5,
  A100: 8.0,
  A10G: 8.6,
  L4: 8.9,
  L40S: 8.9,
  H100: 9.0,
  H200: 9.0,
};

type Family = Pick<GpuInstance, 'gpuModel' | 'gpuMemoryGiB' | 'localNvme' | 'bf16'>;

function family(prefix: string, spec: Family, sizes: Record<string, [gpus: number, vcpus: number, hostMemoryGiB: number]>): GpuInstance[] {
  const computeCapability = GPU_COMPUTE_CAPABILITY[spec.gpuModel];
  return Object.entries(sizes).map(([size, [gpus, vcpus, hostMemoryGiB]]) => ({ instanceType: `ml.${prefix}.${size}`, gpus, vcpus, hostMemoryGiB, computeCapability, ...spec }));
}

// g4dn, g5 and g6 share one shape: a single GPU up to 16xlarge, 4 GPUs on 12x/24x, 8 on 48x, and
// 4 GiB of host memory per vCPU (g5.xlarge: 4 vCPUs, 16 GiB). g6e has the same GPUs and vCPUs with
// twice the memory (g6e.xlarge: 32 GiB). Figures: the EC2 accelerated computing instance specifications.
const G_SHAPE: Record<string, [number, number, number]> = {
  xlarge: [1, 4, 16],
  '2xlarge': [1, 8, 32],
  '4xlarge': [1, 16, 64],
  '8xlarge': [1, 32, 128],
  '16xlarge': [1, 64, 256],
  '12xlarge': [4, 48, 192],
  '24xlarge': [4, 96, 384],
  '48xlarge': [8, 192, 768],
};
const G6E_SHAPE: Record<string, [number, number, number]> = Object.fromEntries(Object.entries(G_SHAPE).map(([size, [gpus, vcpus, memory]]) => [size, [gpus, vcpus, memory * 2]]));

const TABLE: readonly GpuInstance[] = [
  // g4dn has the same shape without the 24xlarge and 48xlarge sizes.
  ...family('g4dn', { gpuModel: 'T4', gpuMemoryGiB: 16, localNvme: true, bf16: false }, Object.fromEntries(Object.entries(G_SHAPE).filter(([size]) => size !== '24xlarge' && size !== '48xlarge'))),
  ...family('g5', { gpuModel: 'A10G', gpuMemoryGiB: 24, localNvme: true, bf16: true }, G_SHAPE),
  ...family('g6', { gpuModel: 'L4', gpuMemoryGiB: 24, localNvme: true, bf16: true }, G_SHAPE),
  ...family('g6e', { gpuModel: 'L40S', gpuMemoryGiB: 48, localNvme: true, bf16: true }, G6E_SHAPE),
  ...family('p3', { gpuModel: 'V100', gpuMemoryGiB: 16, localNvme: false, bf16: false }, {
    '2xlarge': [1, 8, 61],
    '8xlarge': [4, 32, 244],
    '16xlarge': [8, 64, 488],
  }),
  ...family('p3dn', { gpuModel: 'V100', gpuMemoryGiB: 32, localNvme: true, bf16: false }, { '24xlarge': [8, 96, 768] }),
  ...family('p4d', { gpuModel: 'A100', gpuMemoryGiB: 40, localNvme: true, bf16: true }, { '24xlarge': [8, 96, 1152] }),
  ...family('p4de', { gpuModel: 'A100', gpuMemoryGiB: 80, localNvme: true, bf16: true }, { '24xlarge': [8, 96, 1152] }),
  ...family('p5', { gpuModel: 'H100', gpuMemoryGiB: 80, localNvme: true, bf16: true }, { '48xlarge': [8, 192, 2048] }),
  ...family('p5e', { gpuModel: 'H200', gpuMemoryGiB: 141, localNvme: true, bf16: true }, { '48xlarge': [8, 192, 2048] }),
  ...family('p5en', { gpuModel: 'H200', gpuMemoryGiB: 141, localNvme: true, bf16: true }, { '48xlarge': [8, 192, 2048] }),
];

// Total local NVMe storage in GB (the EC2 instance store table; the ml. types have the same hardware).
const G_STORAGE: Record<string, number> = {
  xlarge: 250,
  '2xlarge': 450,
  '4xlarge': 600,
  '8xlarge': 900,
  '16xlarge': 1900,
  '12xlarge': 3760,
  '24xlarge': 3760,
  '48xlarge': 7520,
};
const LOCAL_STORAGE_GB: Record<string, number> = {
  ...Object.fromEntries(['g5', 'g6', 'g6e'].flatMap((f) => Object.entries(G_STORAGE).map(([size, gb]) => [`ml.${f}.${size}`, gb]))),
  'ml.g4dn.xlarge': 125,
  'ml.g4dn.2xlarge': 225,
  'ml.g4dn.4xlarge': 225,
  'ml.g4dn.8xlarge': 900,
  'ml.g4dn.16xlarge': 900,
  'ml.g4dn.12xlarge': 900,
  'ml.p3dn.24xlarge': 1800,
  'ml.p4d.24xlarge': 8000,
  'ml.p4de.24xlarge': 8000,
  'ml.p5.48xlarge': 30400,
  'ml.p5e.48xlarge': 30400,
  'ml.p5en.48xlarge': 30400,
};

/** Every GPU instance type Tuneyard knows, keyed by instance type. */
export const GPU_INSTANCES: ReadonlyMap<string, GpuInstance> = new Map(
  TABLE.map((i) => [i.instanceType, i.localNvme ? { ...i, localStorageGB: LOCAL_STORAGE_GB[i.instanceType] } : i]),
);

/** The instance's specification, or undefined when Tuneyard does not know the type. */
export function findGpuInstance(instanceType: string): GpuInstance | undefined {
  return GPU_INSTANCES.get(instanceType);
}

/** The instance's specification; an unknown type throws with the list of known ones. */
export function gpuInstance(instanceType: string): GpuInstance {
  const found = GPU_INSTANCES.get(instanceType);
  if (found) return found;
  const families = [...new Set(TABLE.map((i) => i.instanceType.split('.')[1]))].map((f) => `ml.${f}.*`);
  throw new Error(
    `instance type "${instanceType}" is not a SageMaker GPU instance that Tuneyard knows; use one of ${families.join(', ')} ` +
      '(e.g. "ml.g5.2xlarge")',
  );
}

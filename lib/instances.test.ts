import { GPU_INSTANCES, gpuInstance } from './instances';

describe('GPU instance table: host memory', () => {
  test('gives the published host RAM of each type, 16 GiB on the smallest g4dn, g5 and g6', () => {
    // GIVEN the EC2 accelerated computing specifications (the ml. types run on the same hardware)
    const published: Record<string, number> = {
      'ml.g4dn.xlarge': 16,
      'ml.g4dn.12xlarge': 192,
      'ml.g5.xlarge': 16,
      'ml.g5.2xlarge': 32,
      'ml.g5.12xlarge': 192,
      'ml.g5.48xlarge': 768,
      'ml.g6.xlarge': 16,
      'ml.g6.16xlarge': 256,
      'ml.g6e.xlarge': 32,
      'ml.g6e.12xlarge': 384,
      'ml.g6e.48xlarge': 1536,
      'ml.p3.2xlarge': 61,
      'ml.p3dn.24xlarge': 768,
      'ml.p4d.24xlarge': 1152,
      'ml.p4de.24xlarge': 1152,
      'ml.p5.48xlarge': 2048,
      'ml.p5en.48xlarge': 2048,
    };
    // THEN
    for (const [type, gib] of Object.entries(published)) expect([type, gpuInstance(type).hostMemoryGiB]).toEqual([type, gib]);
  });

  test('every type has a whole number of GiB of host memory, 4 GiB per vCPU or more', () => {
    for (const instance of GPU_INSTANCES.values()) {
      expect(Number.isInteger(instance.hostMemoryGiB)).toBe(true);
      expect(instance.hostMemoryGiB / instance.vcpus).toBeGreaterThanOrEqual(4);
    }
  });
});

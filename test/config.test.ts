import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { closest, loadPlaneConfig, parsePlaneConfig } from '../lib/config';

describe('plane configuration', () => {
  test('accepts an empty configuration', () => {
    expect(parsePlaneConfig({}, 'cdk.json')).toEqual({});
  });

  test('accepts every documented field', () => {
    const config = {
      stackName: 'Tuneyard-prod',
      removalPolicy: 'destroy',
      dataStore: {
        noncurrentVersionExpirationDays: 10,
        checkpointExpirationDays: 2,
        accessLogsRetentionDays: 400,
        datasetAdminRoleArn: 'arn:aws:iam::123456789012:role/DataAdmin',
        existingBucketName: 'my-data',
        existingKeyArn: 'arn:aws:kms:eu-west-1:123456789012:key/abc',
      },
    };
    expect(parsePlaneConfig(config, 'cdk.json')).toEqual(config);
  });

  test('fails when a key is unknown, suggesting the closest valid name', () => {
    expect(() => parsePlaneConfig({ dataStore: { checkpointExpiryDays: 3 } }, 'plane.json')).toThrow(
      /plane\.json: invalid Tuneyard configuration:\n {2}- dataStore\.checkpointExpiryDays: unknown key; did you mean "checkpointExpirationDays"\?/,
    );
  });

  test('fails when a top-level key is unknown and nothing is close, listing the valid keys', () => {
    expect(() => parsePlaneConfig({ frobnicate: true }, 'cdk.json')).toThrow(/frobnicate: unknown key; valid keys: stackName, removalPolicy, reserveLambdaConcurrency, dataStore/);
  });

  test('fails when a value has the wrong type, naming the field and the value', () => {
    expect(() => parsePlaneConfig({ dataStore: { checkpointExpirationDays: '3' } }, 'cdk.json')).toThrow(
      /dataStore\.checkpointExpirationDays: Invalid input: expected number, received string \(got "3"\)/,
    );
  });

  test('fails when a value is out of range', () => {
    expect(() => parsePlaneConfig({ dataStore: { checkpointExpirationDays: 0 } }, 'cdk.json')).toThrow(
      /dataStore\.checkpointExpirationDays: must be at least 1 day \(got 0\)/,
    );
    expect(() => parsePlaneConfig({ dataStore: { datasetAdminRoleArn: 'DataAdmin' } }, 'cdk.json')).toThrow(
      /datasetAdminRoleArn: must be an IAM role ARN such as arn:aws:iam::123456789012:role\/DataAdmin \(got "DataAdmin"\)/,
    );
    expect(() => parsePlaneConfig({ removalPolicy: 'keep' }, 'cdk.json')).toThrow(/removalPolicy: .*"retain"\|"destroy".*\(got "keep"\)/);
  });

  test('reads a JSON file named by the tuneyard:config context key', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-config-'));
    fs.writeFileSync(path.join(dir, 'plane.json'), JSON.stringify({ stackName: 'FromFile' }));
    const context = (key: string) => (key === 'tuneyard:config' ? 'plane.json' : undefined);
    expect(loadPlaneConfig(context, dir)).toEqual({ stackName: 'FromFile' });
  });

  test('reads an inline object or JSON string from the tuneyard context key', () => {
    expect(loadPlaneConfig((key) => (key === 'tuneyard' ? { stackName: 'Inline' } : undefined))).toEqual({ stackName: 'Inline' });
    expect(loadPlaneConfig((key) => (key === 'tuneyard' ? '{"stackName":"Cli"}' : undefined))).toEqual({ stackName: 'Cli' });
  });

  test('fails when the config file is missing or not JSON, naming the file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-config-'));
    fs.writeFileSync(path.join(dir, 'bad.json'), '{ "stackName": ');
    expect(() => loadPlaneConfig((k) => (k === 'tuneyard:config' ? 'missing.json' : undefined), dir)).toThrow(/missing\.json: cannot read/);
    expect(() => loadPlaneConfig((k) => (k === 'tuneyard:config' ? 'bad.json' : undefined), dir)).toThrow(/bad\.json: not valid JSON/);
  });

  test('fails when both the inline and the file context keys are set', () => {
    expect(() => loadPlaneConfig(() => 'x')).toThrow(/Both context keys "tuneyard" and "tuneyard:config" are set/);
  });

  test('fails when network or training values are wrong', () => {
    expect(() => parsePlaneConfig({ network: { vpcId: 'vpc-0123456789abcdef0' } }, 'cdk.json')).toThrow(/network\.vpcId: an existing VPC needs subnetIds, availabilityZones and vpcCidrBlock too/);
    expect(() => parsePlaneConfig({ network: { s3PrefixListId: 's3' } }, 'cdk.json')).toThrow(/network\.s3PrefixListId: must be the pl-\.\.\. ID/);
    expect(() => parsePlaneConfig({ training: { jobNamePrefix: 'Much_Too_Long_' } }, 'cdk.json')).toThrow(/training\.jobNamePrefix: must be 1-9 lower-case/);
    expect(() => parsePlaneConfig({ training: { imageUri: 'not an image' } }, 'cdk.json')).toThrow(/training\.imageUri: must be an image URI/);
    expect(parsePlaneConfig({ training: { allowHubModels: true, jobNamePrefix: 'ty-' } }, 'cdk.json')).toEqual({ training: { allowHubModels: true, jobNamePrefix: 'ty-' } });
  });

  test('closest finds near misses only', () => {
    expect(closest('stackname', ['stackName', 'dataStore'])).toBe('stackName');
    expect(closest('zzzzzzzz', ['stackName', 'dataStore'])).toBeUndefined();
  });
});

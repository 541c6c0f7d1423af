/**
 * Checks AWS requests against the services' API models (botocore's, from the project's Python
 * environment) the way the services check them: required and unknown members, types, minimums
 * and maximums, enums and patterns (test/support/api_model_check.py). A request this accepts can
 * still fail for other reasons (permissions, a missing resource); one it refuses, AWS refuses.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

/** One API call: the botocore service name, the operation (PascalCase) and its parameters. */
export interface ApiRequest {
  readonly service: string;
  readonly operation: string;
  readonly params: unknown;
}

const CHECKER = path.join(__dirname, 'api_model_check.py');

let venv: string | undefined;

/** The project's Python virtualenv: `TUNEYARD_VENV`, else the one scripts/python-env.sh builds (once) and prints. */
export function pythonEnv(): string {
  venv ??= process.env.TUNEYARD_VENV ?? execFileSync('bash', [path.join(__dirname, '..', '..', 'scripts', 'python-env.sh')], { encoding: 'utf8' }).trim();
  return venv;
}

/**
 * The errors of each request (an empty list for a valid one), in order; each names the operation
 * and the member's path: `CreateModelPackage.CustomerMetadataProperties.baseModel: value "..."
 * does not match pattern ...`. One Python process checks the whole batch.
 */
export function validateRequests(requests: readonly ApiRequest[]): string[][] {
  if (requests.length === 0) return [];
  const result = spawnSync(path.join(pythonEnv(), 'bin', 'python'), [CHECKER], {
    input: JSON.stringify(requests),
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`api_model_check.py exited with ${result.status}: ${result.stderr}`);
  const errors = JSON.parse(result.stdout) as string[][];
  if (errors.length !== requests.length) throw new Error(`api_model_check.py answered ${errors.length} results for ${requests.length} requests`);
  return errors;
}

/** Fails the test with every error of every request (each line prefixed with the request's service). */
export function expectValidRequests(requests: readonly ApiRequest[]): void {
  const errors = validateRequests(requests).flatMap((list, i) => list.map((e) => `${requests[i].service} ${e}`));
  expect(errors).toEqual([]);
}

/** The patterns of a model that api_model_check.py cannot compile (and so does not check), by service. */
export function untranslatablePatterns(services: readonly string[]): Record<string, string[]> {
  const out = execFileSync(path.join(pythonEnv(), 'bin', 'python'), [CHECKER, '--untranslatable', ...services], { encoding: 'utf8' });
  return JSON.parse(out);
}

/** A service's API model (botocore's `service-2.json`, newest API version) from the Python environment. */
export function serviceModel(service: string): any {
  const lib = path.join(pythonEnv(), 'lib');
  const python = fs.readdirSync(lib).find((d) => d.startsWith('python'));
  if (!python) throw new Error(`no python* folder in ${lib}`);
  const dir = path.join(lib, python, 'site-packages', 'botocore', 'data', service);
  const versions = fs.readdirSync(dir).sort();
  const folder = path.join(dir, versions[versions.length - 1]);
  const gz = path.join(folder, 'service-2.json.gz');
  const text = fs.existsSync(gz) ? zlib.gunzipSync(fs.readFileSync(gz)).toString('utf8') : fs.readFileSync(path.join(folder, 'service-2.json'), 'utf8');
  return JSON.parse(text);
}

/**
 * Step Functions' names of services that botocore names otherwise: in optimized integrations
 * (`states:::states:startExecution`) and in `aws-sdk:<service>:` (the SDK's client name, lower-case).
 */
const SERVICE_NAMES: Record<string, string> = {
  states: 'stepfunctions',
  sfn: 'stepfunctions',
  elasticmapreduce: 'emr',
  cloudwatchlogs: 'logs',
  eventbridge: 'events',
  applicationautoscaling: 'application-autoscaling',
  sagemakerruntime: 'sagemaker-runtime',
};

/**
 * The API request a Task state sends, from its Resource and its effective Parameters (the state's
 * input after `Parameters`):
 * - `arn:aws:states:::sagemaker:createTrainingJob.sync` (an optimized integration; `.sync` and
 *   `.waitForTaskToken` are how Step Functions waits, not part of the call) → sagemaker CreateTrainingJob;
 * - `arn:aws:states:::aws-sdk:sagemaker:createModelPackage` → sagemaker CreateModelPackage (the
 *   SDK integrations take the API's PascalCase member names as they are);
 * - `arn:aws:states:::sns:publish` → sns Publish (a Message given as JSON is sent serialized);
 * - `arn:aws:states:::lambda:invoke` → lambda Invoke (a Payload given as JSON is sent serialized);
 * - a Lambda function ARN (the short form, `payloadResponseOnly`) → lambda Invoke of that function
 *   with the Parameters as its Payload.
 */
export function requestOfTask(resource: string, params: unknown): ApiRequest {
  const arn = resource.split(':');
  if (arn[0] !== 'arn') throw new Error(`not an ARN: ${resource}`);
  if (arn[2] === 'lambda' && arn[5] === 'function') {
    return { service: 'lambda', operation: 'Invoke', params: { FunctionName: resource, Payload: JSON.stringify(params ?? {}) } };
  }
  if (arn[2] !== 'states' || arn[3] !== '' || arn[4] !== '') throw new Error(`not a Step Functions service integration: ${resource}`);
  const sdk = arn[5] === 'aws-sdk';
  const [service, action] = sdk ? [arn[6], arn[7]] : [arn[5], arn[6]];
  if (!service || !action) throw new Error(`not a Step Functions service integration: ${resource}`);
  const api = SERVICE_NAMES[service] ?? service;
  const operation = action.split('.')[0].replace(/^./, (c) => c.toUpperCase());
  let body = params as Record<string, unknown>;
  if (!sdk && body && typeof body === 'object') {
    // the optimized integrations serialize a JSON Message / Payload for the caller
    const serialized = (key: string) => (body[key] !== undefined && typeof body[key] !== 'string' ? { [key]: JSON.stringify(body[key]) } : {});
    if (api === 'sns' && operation === 'Publish') body = { ...body, ...serialized('Message') };
    if (api === 'lambda' && operation === 'Invoke') body = { ...body, ...serialized('Payload') };
  }
  return { service: api, operation, params: body };
}

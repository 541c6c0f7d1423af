/**
 * Runs a synthesized state machine definition locally with aws-local-stepfunctions, with local
 * handlers standing in for Lambda, SageMaker and SNS. Used by test/pipeline/ and by anyone who
 * adds states to the pipeline (Deploy): resolve the template's definition, run it, assert the
 * path taken (`entered`), the final status and output or error.
 */
import { createHash } from 'node:crypto';
import { ExecutionError, StateMachine } from 'aws-local-stepfunctions';
import { ApiRequest, requestOfTask, validateRequests } from './api-model';
import { TEST_ENV } from './app';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** A local stand-in for a Task state's resource: gets the state's effective input, returns its raw result. */
export type LocalHandler = (input: any) => unknown;

/** A request a Task state sent (one per attempt), as the service's API takes it. */
export interface RecordedRequest extends ApiRequest {
  /** The Task state that sent it. */
  readonly state: string;
  /** The state's Resource. */
  readonly resource: string;
}

/** What a local run ended with. */
export interface LocalRun {
  readonly status: 'SUCCEEDED' | 'FAILED';
  /** The execution's output (SUCCEEDED only). */
  readonly output?: any;
  /** The execution's error and cause (FAILED only). */
  readonly error?: string;
  readonly cause?: string;
  /** Every state entered, in order (a retried state appears once per entry, not per attempt). */
  readonly entered: string[];
  /** States that failed an attempt and were retried, in order. */
  readonly retried: string[];
  /** Every event of the execution. */
  readonly events: any[];
  /** Every request the Task states sent, in order (a retried state sends one per attempt). */
  readonly requests: RecordedRequest[];
  /**
   * What the services' API models refuse in {@link requests}, as `<state>: <Operation>.<member>: <problem>`
   * (see test/support/api-model.ts); empty when every request is valid or `validateRequests` is false.
   */
  readonly requestErrors: string[];
}

/**
 * The first (or the named) state machine's definition of a synthesized template, with its
 * intrinsics (Fn::Join, Ref, Fn::GetAtt, pseudo parameters) replaced by fixed test values.
 */
export function definitionFromTemplate(template: any, logicalId?: string): any {
  const resources: Record<string, any> = template.Resources ?? {};
  const ids = Object.keys(resources).filter((id) => resources[id].Type === 'AWS::StepFunctions::StateMachine');
  const id = logicalId ?? ids[0];
  if (!id || !resources[id]) throw new Error(`no state machine ${logicalId ?? ''} in the template (found: ${ids.join(', ') || 'none'})`);
  const definition = resolveTemplateValue(resources[id].Properties.DefinitionString, resources);
  if (typeof definition !== 'string') throw new Error('DefinitionString did not resolve to a string');
  return JSON.parse(definition);
}

/** A fake AWS resource id with the service's shape (`sg-0123...`), the same for the same logical id. */
function fakeId(prefix: string, logicalId: string, hexLength = 17): string {
  return `${prefix}${createHash('sha256').update(logicalId).digest('hex').slice(0, hexLength)}`;
}

/** The fake physical value of `Ref` to a resource: an ARN or an id of the service's shape where the resource's Ref is one. */
export function fakeRef(logicalId: string, type: string | undefined): string {
  const { region, account } = TEST_ENV;
  switch (type) {
    case 'AWS::EC2::SecurityGroup':
      return fakeId('sg-', logicalId);
    case 'AWS::EC2::Subnet':
      return fakeId('subnet-', logicalId);
    case 'AWS::EC2::VPC':
      return fakeId('vpc-', logicalId);
    case 'AWS::KMS::Key': {
      const hex = fakeId('', logicalId, 32);
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    }
    case 'AWS::SNS::Topic':
      return `arn:aws:sns:${region}:${account}:${logicalId}`;
    case 'AWS::StepFunctions::StateMachine':
      return `arn:aws:states:${region}:${account}:stateMachine:${logicalId}`;
    case 'AWS::IAM::Role':
    case 'AWS::Lambda::Function':
    case 'AWS::S3::Bucket':
    default:
      return logicalId.toLowerCase();
  }
}

/** The fake value of `Fn::GetAtt [logicalId, attribute]`. */
export function fakeGetAtt(logicalId: string, attribute: string, type: string | undefined): string {
  const { region, account } = TEST_ENV;
  if (attribute === 'Arn') {
    switch (type) {
      case 'AWS::Lambda::Function':
        return `arn:aws:lambda:${region}:${account}:function:${logicalId}`;
      case 'AWS::IAM::Role':
        return `arn:aws:iam::${account}:role/${logicalId}`;
      case 'AWS::S3::Bucket':
        return `arn:aws:s3:::${logicalId.toLowerCase()}`;
      case 'AWS::KMS::Key':
        return `arn:aws:kms:${region}:${account}:key/${logicalId}`;
      case 'AWS::SNS::Topic':
        return `arn:aws:sns:${region}:${account}:${logicalId}`;
      default:
        return `arn:aws:${(type ?? 'x::y').split('::')[1].toLowerCase()}:${region}:${account}:${logicalId}`;
    }
  }
  if (attribute === 'GroupId') return fakeRef(logicalId, 'AWS::EC2::SecurityGroup');
  // Names (ModelName, EndpointConfigName, ...) as valid SageMaker names: the logical id.
  if (attribute.endsWith('Name')) return logicalId;
  return `${logicalId}.${attribute}`;
}

/** A template value with its intrinsics (Fn::Join, Ref, Fn::GetAtt, Fn::Sub, pseudo parameters) replaced by the fixed test values. */
export function resolveTemplateValue(value: any, resources: Record<string, any>): any {
  if (Array.isArray(value)) return value.map((v) => resolveTemplateValue(v, resources));
  if (!value || typeof value !== 'object') return value;
  const keys = Object.keys(value);
  if (keys.length === 1) {
    const [key] = keys;
    const arg = value[key];
    if (key === 'Fn::Join') {
      const [separator, parts] = arg;
      return (resolveTemplateValue(parts, resources) as unknown[]).map(String).join(separator);
    }
    if (key === 'Ref') {
      const pseudo: Record<string, string> = {
        'AWS::Partition': 'aws',
        'AWS::Region': TEST_ENV.region,
        'AWS::AccountId': TEST_ENV.account,
        'AWS::URLSuffix': 'amazonaws.com',
        'AWS::StackName': 'Test',
      };
      if (arg in pseudo) return pseudo[arg];
      return fakeRef(arg, resources[arg]?.Type);
    }
    if (key === 'Fn::GetAtt') {
      const [id, attribute] = Array.isArray(arg) ? arg : String(arg).split('.');
      return fakeGetAtt(id, attribute, resources[id]?.Type);
    }
    if (key === 'Fn::Sub') {
      // "${Name}" / "${Logical.Attr}" in a string, with optional explicit variables (the image asset URI uses it)
      const [text, variables] = Array.isArray(arg) ? arg : [arg, {}];
      return String(text).replace(/\$\{([^}]+)\}/g, (_: string, name: string) => {
        if (name in variables) return String(resolveTemplateValue(variables[name], resources));
        const [id, attribute] = name.split('.');
        return String(resolveTemplateValue(attribute ? { 'Fn::GetAtt': [id, attribute] } : { Ref: id }, resources));
      });
    }
    if (key.startsWith('Fn::')) throw new Error(`local-sfn cannot resolve ${key}; add it to resolveTemplateValue`);
  }
  return Object.fromEntries(keys.map((k) => [k, resolveTemplateValue(value[k], resources)]));
}

/** An error as Step Functions reports it: `name` is the Error, `message` the Cause. */
export function stepFunctionsError(error: string, cause: string): Error {
  const e = new Error(cause);
  e.name = error;
  return e;
}

/**
 * A local stand-in for a Lambda Task that calls a real handler and reports a thrown error the
 * way the Lambda integration does: Error = the error's name, Cause = the runtime's JSON.
 */
export function lambdaTask(fn: (event: any) => unknown): LocalHandler {
  return async (input) => {
    try {
      return await fn(input);
    } catch (e) {
      const err = e as Error;
      throw stepFunctionsError(err.name, JSON.stringify({ errorType: err.name, errorMessage: err.message, trace: [] }));
    }
  };
}

/** A handler that fails with `error` the first `times` calls, then behaves like `then`. */
export function failingFirst(times: number, error: () => Error, then: LocalHandler): LocalHandler & { calls: number } {
  const handler = Object.assign(
    async (input: any) => {
      handler.calls++;
      if (handler.calls <= times) throw error();
      return then(input);
    },
    { calls: 0 },
  );
  return handler;
}

/**
 * What a CreateTrainingJob `.sync` Task returns for a job that completed (DescribeTrainingJob), built from
 * the request the state sent; no FinalMetricDataList or BillableTimeInSeconds: the states must not depend on them.
 */
export function completedJob(input: any, status: Record<string, unknown> = {}) {
  return {
    TrainingJobName: input.TrainingJobName,
    TrainingJobStatus: 'Completed',
    SecondaryStatus: 'Completed',
    ModelArtifacts: { S3ModelArtifacts: `${input.OutputDataConfig.S3OutputPath}${input.TrainingJobName}/output/model/` },
    ...status,
  };
}

/** Records what was published to SNS (the message object, the subject). */
export function snsRecorder(): LocalHandler & { messages: Array<{ subject?: string; message: any }> } {
  const messages: Array<{ subject?: string; message: any }> = [];
  return Object.assign(
    async (input: any) => {
      messages.push({ subject: input.Subject, message: input.Message });
      return { MessageId: `m-${messages.length}` };
    },
    { messages },
  );
}

/** Options of {@link runLocal}. */
export interface RunLocalOptions {
  /** The execution's name (`$$.Execution.Name`). @default 'local-run' */
  readonly executionName?: string;
  /** Wait before each retry in milliseconds, for every state. @default 0 */
  readonly retryIntervalMs?: number;
  /**
   * Check every request the Task states sent against the services' API models after the run
   * (`requestErrors`). The run's status does not depend on it: assert `requestErrors` to make it count.
   * @default true
   */
  readonly validateRequests?: boolean;
}

/**
 * Executes `definition` on `input` with `handlers` (by Task state name) and reports how it ended.
 * A Task without a handler fails the test: nothing here ever calls AWS.
 */
export async function runLocal(definition: any, input: Json, handlers: Record<string, LocalHandler>, options: RunLocalOptions = {}): Promise<LocalRun> {
  const tasks = Object.entries(definition.States as Record<string, any>)
    .filter(([, s]) => s.Type === 'Task')
    .map(([name]) => name);
  const taskResourceLocalHandlers: Record<string, LocalHandler> = {};
  const sent: Array<{ state: string; resource: string; params: unknown }> = [];
  for (const name of tasks) {
    const handler = handlers[name] ?? (() => { throw new Error(`local-sfn: no local handler for Task state ${name}`); });
    const resource: string = definition.States[name].Resource;
    taskResourceLocalHandlers[name] = (input) => {
      // a copy: what was sent, whatever the handler does with its input
      sent.push({ state: name, resource, params: input === undefined ? undefined : JSON.parse(JSON.stringify(input)) });
      return handler(input);
    };
  }
  const unknown = Object.keys(handlers).filter((name) => !tasks.includes(name));
  if (unknown.length) throw new Error(`local-sfn: handlers for states that are not Tasks of the definition: ${unknown.join(', ')}`);

  const machine = new StateMachine(definition, { validationOptions: { checkArn: false } });
  const executionName = options.executionName ?? 'local-run';
  const retryIntervalOverrides = Object.fromEntries(tasks.map((name) => [name, options.retryIntervalMs ?? 0]));
  // Wait states (the Deploy stage's poll loop) take no time locally.
  const waitTimeOverrides = Object.fromEntries(
    Object.entries(definition.States as Record<string, any>)
      .filter(([, s]) => s.Type === 'Wait')
      .map(([name]) => [name, 0]),
  );
  const execution = machine.run(input, {
    overrides: { taskResourceLocalHandlers: taskResourceLocalHandlers as any, retryIntervalOverrides, waitTimeOverrides },
    context: {
      Execution: {
        Name: executionName,
        Id: `arn:aws:states:${TEST_ENV.region}:${TEST_ENV.account}:execution:Pipeline:${executionName}`,
      },
    } as any,
  });
  const events: any[] = [];
  const collecting = (async () => {
    for await (const event of execution.eventLogs) events.push(event);
  })();
  let run: Pick<LocalRun, 'status' | 'output' | 'error' | 'cause'>;
  try {
    run = { status: 'SUCCEEDED', output: await execution.result };
  } catch (e) {
    if (!(e instanceof ExecutionError)) throw e;
    const failure = (e as Error & { cause?: Error }).cause as Error;
    run = { status: 'FAILED', error: failure.name, cause: failure.message };
  }
  await collecting;
  const requests: RecordedRequest[] = [];
  const requestErrors: string[] = [];
  for (const { state, resource, params } of sent) {
    try {
      requests.push({ state, resource, ...requestOfTask(resource, params) });
    } catch (e) {
      requestErrors.push(`${state}: local-sfn cannot tell the API request of resource ${resource}: ${(e as Error).message}`);
    }
  }
  if (options.validateRequests ?? true) {
    validateRequests(requests).forEach((errors, i) => requestErrors.push(...errors.map((e) => `${requests[i].state}: ${e}`)));
  }
  return {
    ...run,
    entered: events.filter((e) => e.type === 'StateEntered').map((e) => e.state.name),
    retried: events.filter((e) => e.type === 'StateRetried').map((e) => e.state.name),
    events,
    requests,
    requestErrors,
  };
}

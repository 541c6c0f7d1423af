/**
 * A SageMaker stand-in for the Deploy stage's function (constructs/vllm-endpoint/handler/deploy-run.ts),
 * started from the endpoint CloudFormation made (the synthesized template's endpoint, config, model
 * and components, intrinsics resolved; a `Fn::GetAtt` of a name is the logical id), and a clock that its sleeps move. Writes change its state;
 * what an endpoint or a written component reports afterwards is scripted, one status per describe.
 */
import { deployRun, DeployRunSettings, settingsFromEnvironment } from '../../constructs/vllm-endpoint/handler/deploy-run';
import { validateRequests } from '../support/api-model';
import { lambdaTask, LocalHandler, resolveTemplateValue } from '../support/local-sfn';

/** What a deployment does after its write, one entry per describe (the last repeats). */
export type EndpointStep = 'Updating' | 'deployed' | 'rolled-back' | 'Failed' | 'UpdateRollbackFailed';
export type ComponentStep = 'Creating' | 'Updating' | 'InService' | 'Failed';

/** A call the fake received: the operation (CreateModel, ...) and its input. */
export interface FakeCall {
  readonly operation: string;
  readonly input: any;
}

const WRITES = ['CreateModel', 'CreateEndpointConfig', 'UpdateEndpoint', 'CreateInferenceComponent', 'UpdateInferenceComponent'];

export class FakeSageMaker {
  readonly calls: FakeCall[] = [];
  readonly models = new Map<string, any>();
  readonly configs = new Map<string, any>();
  readonly components = new Map<string, any>();
  readonly endpoints = new Map<string, { EndpointName: string; EndpointStatus: string; EndpointConfigName: string; LastDeploymentConfig?: any; pending?: string; FailureReason?: string }>();
  /** Scripts of what happens after a write. */
  endpointSteps: EndpointStep[] = ['Updating', 'deployed'];
  componentSteps: ComponentStep[] = ['Creating', 'InService'];
  private written = new Set<string>();

  /** The SageMaker resources of a synthesized template, as SageMaker would describe them. */
  static fromTemplate(template: any): FakeSageMaker {
    const fake = new FakeSageMaker();
    const resources: Record<string, any> = template.Resources;
    for (const [id, resource] of Object.entries(resources)) {
      const props = resolveTemplateValue(resource.Properties ?? {}, resources);
      switch (resource.Type) {
        case 'AWS::SageMaker::Model':
          fake.models.set(id, { ModelName: id, ...props });
          break;
        case 'AWS::SageMaker::EndpointConfig':
          fake.configs.set(id, { EndpointConfigName: id, ...props });
          break;
        case 'AWS::SageMaker::Endpoint':
          fake.endpoints.set(props.EndpointName, {
            EndpointName: props.EndpointName,
            EndpointStatus: 'InService',
            EndpointConfigName: props.EndpointConfigName,
            ...(props.DeploymentConfig ? { LastDeploymentConfig: props.DeploymentConfig } : {}),
          });
          break;
        case 'AWS::SageMaker::InferenceComponent':
          fake.components.set(props.InferenceComponentName, { ...props, InferenceComponentStatus: 'InService' });
          break;
      }
    }
    return fake;
  }

  /** The writes, in order. */
  get writes(): FakeCall[] {
    return this.calls.filter((c) => WRITES.includes(c.operation));
  }

  /** What the SageMaker API model refuses in the calls (empty when every call is valid). */
  requestErrors(): string[] {
    return validateRequests(this.calls.map((c) => ({ service: 'sagemaker', operation: c.operation, params: c.input }))).flat();
  }

  readonly send = async (command: { constructor: { name: string }; input: any }): Promise<any> => {
    const operation = command.constructor.name.replace(/Command$/, '');
    const input = JSON.parse(JSON.stringify(command.input));
    this.calls.push({ operation, input });
    switch (operation) {
      case 'DescribeEndpoint':
        return this.describeEndpoint(input.EndpointName);
      case 'DescribeEndpointConfig':
        return this.configs.get(input.EndpointConfigName) ?? notFound(`endpoint configuration "${input.EndpointConfigName}"`);
      case 'DescribeModel':
        return this.models.get(input.ModelName) ?? notFound(`model "${input.ModelName}"`);
      case 'DescribeInferenceComponent':
        return this.describeComponent(input.InferenceComponentName);
      case 'ListInferenceComponents':
        return { InferenceComponents: [...this.components.values()].filter((c) => c.EndpointName === input.EndpointNameEquals).map((c) => ({ InferenceComponentName: c.InferenceComponentName })) };
      case 'CreateModel':
        if (this.models.has(input.ModelName)) throw awsError('ValidationException', `Cannot create already existing model "${input.ModelName}".`);
        this.models.set(input.ModelName, input);
        return { ModelArn: `arn:aws:sagemaker:us-east-1:123456789012:model/${input.ModelName.toLowerCase()}` };
      case 'CreateEndpointConfig':
        if (this.configs.has(input.EndpointConfigName)) throw awsError('ValidationException', `Cannot create already existing endpoint configuration "${input.EndpointConfigName}".`);
        this.configs.set(input.EndpointConfigName, input);
        return {};
      case 'UpdateEndpoint': {
        const endpoint = this.endpoints.get(input.EndpointName) ?? notFound(`endpoint "${input.EndpointName}"`);
        if (!this.configs.has(input.EndpointConfigName)) notFound(`endpoint configuration "${input.EndpointConfigName}"`);
        Object.assign(endpoint, { EndpointStatus: 'Updating', pending: input.EndpointConfigName, ...(input.DeploymentConfig ? { LastDeploymentConfig: input.DeploymentConfig } : {}) });
        return {};
      }
      case 'CreateInferenceComponent':
        if (this.components.has(input.InferenceComponentName)) throw awsError('ValidationException', `Cannot create already existing inference component "${input.InferenceComponentName}".`);
        this.components.set(input.InferenceComponentName, { ...input, InferenceComponentStatus: 'Creating' });
        this.written.add(input.InferenceComponentName);
        return {};
      case 'UpdateInferenceComponent': {
        const component = this.components.get(input.InferenceComponentName) ?? notFound(`inference component "${input.InferenceComponentName}"`);
        Object.assign(component, { Specification: input.Specification, InferenceComponentStatus: 'Updating' });
        this.written.add(input.InferenceComponentName);
        return {};
      }
      default:
        throw new Error(`FakeSageMaker: unexpected call ${operation}`);
    }
  };

  private describeEndpoint(name: string) {
    const endpoint = this.endpoints.get(name) ?? notFound(`endpoint "${name}"`);
    if (endpoint.pending) {
      const step = this.endpointSteps.length > 1 ? this.endpointSteps.shift()! : this.endpointSteps[0];
      if (step === 'deployed') Object.assign(endpoint, { EndpointStatus: 'InService', EndpointConfigName: endpoint.pending, pending: undefined });
      else if (step === 'rolled-back') Object.assign(endpoint, { EndpointStatus: 'InService', pending: undefined, FailureReason: 'Auto-rollback: alarm Invocation5xx went into ALARM' });
      else Object.assign(endpoint, { EndpointStatus: step, ...(step === 'Updating' ? {} : { FailureReason: 'The primary container for production variant AllTraffic did not pass the ping health check.' }) });
    }
    const { pending, ...described } = endpoint;
    return { ...described, ...(pending ? { PendingDeploymentSummary: { EndpointConfigName: pending } } : {}) };
  }

  private describeComponent(name: string) {
    const component = this.components.get(name) ?? notFound(`inference component "${name}"`);
    if (this.written.has(name)) {
      const step = this.componentSteps.length > 1 ? this.componentSteps.shift()! : this.componentSteps[0];
      component.InferenceComponentStatus = step;
      if (step === 'Failed') component.FailureReason = 'adapter_config.json not found in the archive';
    }
    return component;
  }
}

/** A Lambda-like clock: sleeps move it; each invocation has `timeoutMs`. */
export class FakeClock {
  now = Date.UTC(2026, 11, 1, 12);
  /** The sleeps of every invocation, in milliseconds. */
  readonly sleeps: number[] = [];
  constructor(readonly timeoutMs = 15 * 60_000) {}
}

/**
 * A local stand-in for the Deploy stage's Task states that runs the real handler with `fake` as
 * SageMaker and `clock` as time; `invocations` counts the handler's invocations.
 */
export function deployFunctionTask(fake: FakeSageMaker, settings: DeployRunSettings, clock = new FakeClock()): LocalHandler & { invocations: number } {
  const task = Object.assign(
    lambdaTask((event) => {
      task.invocations++;
      const started = clock.now;
      return deployRun(event, settings, {
        sagemaker: fake,
        sleep: async (ms) => {
          clock.sleeps.push(ms);
          clock.now += ms;
        },
        now: () => clock.now,
        remainingMs: () => clock.timeoutMs - (clock.now - started),
      });
    }),
    { invocations: 0 },
  );
  return task;
}

/** The Deploy function's settings, read from its synthesized environment (intrinsics resolved). */
export function deploySettingsFromTemplate(template: any): DeployRunSettings {
  const resources: Record<string, any> = template.Resources;
  const functions = Object.values(resources).filter((r) => r.Type === 'AWS::Lambda::Function' && r.Properties.Environment?.Variables?.TUNEYARD_ENDPOINT_NAME);
  if (functions.length !== 1) throw new Error(`expected one Deploy function in the template, found ${functions.length}`);
  return settingsFromEnvironment(resolveTemplateValue(functions[0].Properties.Environment.Variables, resources));
}

function awsError(name: string, message: string): Error {
  const e = new Error(message);
  e.name = name;
  return e;
}

function notFound(what: string): never {
  throw awsError('ValidationException', `Could not find ${what}.`);
}

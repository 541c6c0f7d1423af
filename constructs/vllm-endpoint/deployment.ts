import { Duration, Token } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { TuneyardValidationError } from '../../lib/errors';

/** A step of a canary or linear shift, or a rolling batch: a share of capacity or a count. */
export interface CapacitySize {
  /** `CAPACITY_PERCENT`, `INSTANCE_COUNT` (endpoints) or `COPY_COUNT` (inference components). */
  readonly type: 'CAPACITY_PERCENT' | 'INSTANCE_COUNT' | 'COPY_COUNT';
  /** The percentage (1-100) or the number of instances or copies. */
  readonly value: number;
}

/** Options shared by every strategy. */
export interface DeploymentTimingOptions {
  /**
   * Blue/green: how long the new fleet bakes with all traffic before the old fleet is
   * terminated (the auto-rollback alarms are watched throughout). Rolling: the wait between batches.
   *
   * @default Duration.minutes(10)
   */
  readonly waitInterval?: Duration;
  /**
   * The longest the whole update may take before SageMaker rolls it back.
   *
   * @default - SageMaker's default
   */
  readonly maximumExecutionTimeout?: Duration;
}

/** Canary and linear shifts. */
export interface TrafficShiftOptions extends DeploymentTimingOptions {
  /**
   * The share of capacity in the first step (canary) or in each step (linear).
   *
   * @default { type: 'CAPACITY_PERCENT', value: 10 } for canary, 25 for linear
   */
  readonly size?: CapacitySize;
}

/** Rolling updates (the only strategy inference components support). */
export interface RollingOptions extends DeploymentTimingOptions {
  /**
   * How much capacity each batch updates (MaximumBatchSize; a rollback rolls back in batches of the
   * same size). SageMaker accepts 5-50% of the fleet: a percentage from 5 to 50, or a count of
   * instances (endpoints) or copies (inference components) within 5-50% of every size the fleet
   * can have, so one copy out of one (100%) is refused.
   *
   * @default { type: 'CAPACITY_PERCENT', value: 50 }: half the fleet per batch
   */
  readonly batchSize?: CapacitySize;
}

/** The sizes a fleet can have while it is updated: instances of an endpoint or copies of a component. */
export interface FleetSize {
  /** The fewest instances or copies (the autoscaling minimum, or the fixed count). */
  readonly minimum: number;
  /** The most instances or copies (the autoscaling maximum, or the fixed count). */
  readonly maximum: number;
}

/** The share of the fleet a rolling batch may update: SageMaker's documented MaximumBatchSize range. */
const ROLLING_BATCH_PERCENT = { min: 5, max: 50 };
const DEFAULT_ROLLING_BATCH: CapacitySize = { type: 'CAPACITY_PERCENT', value: 50 };

/** The `DeploymentConfig` of UpdateEndpoint/UpdateInferenceComponent, in the API's PascalCase shape. */
export type ApiDeploymentConfig = Record<string, unknown>;

/**
 * How an update reaches the endpoint: blue/green (all at once, canary or linear) or rolling,
 * always with auto-rollback on the endpoint's alarms. Used both by CloudFormation updates of
 * the endpoint and by the pipeline's Deploy stage (UpdateEndpoint / UpdateInferenceComponent).
 */
export class VllmDeployment {
  /** Blue/green: a new fleet takes all traffic at once, bakes, then the old fleet goes. */
  public static allAtOnce(options: DeploymentTimingOptions = {}): VllmDeployment {
    return new VllmDeployment('ALL_AT_ONCE', options);
  }

  /** Blue/green with a canary step first. */
  public static canary(options: TrafficShiftOptions = {}): VllmDeployment {
    return new VllmDeployment('CANARY', options, options.size ?? { type: 'CAPACITY_PERCENT', value: 10 });
  }

  /** Blue/green shifting traffic in equal steps. */
  public static linear(options: TrafficShiftOptions = {}): VllmDeployment {
    return new VllmDeployment('LINEAR', options, options.size ?? { type: 'CAPACITY_PERCENT', value: 25 });
  }

  /** Rolling: batches of the fleet are replaced in place (needs no second fleet). */
  public static rolling(options: RollingOptions = {}): VllmDeployment {
    return new VllmDeployment('ROLLING', options, options.batchSize);
  }

  private constructor(
    /** The strategy. */
    public readonly kind: 'ALL_AT_ONCE' | 'CANARY' | 'LINEAR' | 'ROLLING',
    private readonly options: DeploymentTimingOptions,
    private readonly size?: CapacitySize,
  ) {}

  /**
   * The endpoint's DeploymentConfig (PascalCase, as UpdateEndpoint and CloudFormation take it).
   *
   * @param instances the variant's instance counts, to check a rolling batch given as INSTANCE_COUNT
   */
  public renderForEndpoint(scope: IConstruct, alarmNames: string[], instances?: FleetSize): ApiDeploymentConfig {
    const wait = this.waitSeconds(scope);
    const timeout = this.options.maximumExecutionTimeout?.toSeconds();
    const rollback = { AutoRollbackConfiguration: { Alarms: alarmNames.map((AlarmName) => ({ AlarmName })) } };
    if (this.kind === 'ROLLING') {
      const batch = this.rollingBatch(scope, 'INSTANCE_COUNT', instances);
      return {
        RollingUpdatePolicy: {
          MaximumBatchSize: capacity(batch),
          WaitIntervalInSeconds: wait,
          ...(timeout !== undefined ? { MaximumExecutionTimeoutInSeconds: timeout } : {}),
          RollbackMaximumBatchSize: capacity(batch),
        },
        ...rollback,
      };
    }
    const routing: Record<string, unknown> = { Type: this.kind, WaitIntervalInSeconds: wait };
    if (this.kind === 'CANARY') routing.CanarySize = capacity(this.checkSize(scope, this.size!, ['CAPACITY_PERCENT', 'INSTANCE_COUNT']));
    if (this.kind === 'LINEAR') routing.LinearStepSize = capacity(this.checkSize(scope, this.size!, ['CAPACITY_PERCENT', 'INSTANCE_COUNT']));
    return {
      BlueGreenUpdatePolicy: {
        TrafficRoutingConfiguration: routing,
        TerminationWaitInSeconds: 0,
        ...(timeout !== undefined ? { MaximumExecutionTimeoutInSeconds: timeout } : {}),
      },
      ...rollback,
    };
  }

  /**
   * An inference component's DeploymentConfig: rolling only (SageMaker's contract for components).
   *
   * @param copies the component's copy counts, to check a rolling batch given as COPY_COUNT
   */
  public renderForInferenceComponent(scope: IConstruct, alarmNames: string[], copies?: FleetSize): ApiDeploymentConfig {
    if (this.kind !== 'ROLLING') {
      throw new TuneyardValidationError(
        `inference components are updated with rolling deployments only; got a ${this.kind.toLowerCase().replace(/_/g, '-')} blue/green strategy. ` +
          'Use VllmDeployment.rolling(), or serve without inference components.',
        scope,
      );
    }
    const batch = this.rollingBatch(scope, 'COPY_COUNT', copies);
    const timeout = this.options.maximumExecutionTimeout?.toSeconds();
    return {
      RollingUpdatePolicy: {
        MaximumBatchSize: capacity(batch),
        WaitIntervalInSeconds: this.waitSeconds(scope),
        ...(timeout !== undefined ? { MaximumExecutionTimeoutInSeconds: timeout } : {}),
        RollbackMaximumBatchSize: capacity(batch),
      },
      AutoRollbackConfiguration: { Alarms: alarmNames.map((AlarmName) => ({ AlarmName })) },
    };
  }

  private waitSeconds(scope: IConstruct): number {
    const wait = (this.options.waitInterval ?? Duration.minutes(10)).toSeconds();
    if (!Token.isUnresolved(wait) && (wait < 0 || wait > 3600)) {
      throw new TuneyardValidationError(`deployment waitInterval must be 0-3600 seconds (SageMaker's limit); got ${wait}. Use e.g. Duration.minutes(10).`, scope);
    }
    return wait;
  }

  /**
   * The rolling batch, within SageMaker's 5-50% of the fleet: a percentage from 5 to 50, or a count
   * that is at least 5% of the largest fleet and at most 50% of the smallest.
   */
  private rollingBatch(scope: IConstruct, countType: 'INSTANCE_COUNT' | 'COPY_COUNT', fleet?: FleetSize): CapacitySize {
    const size = this.checkSize(scope, this.size ?? DEFAULT_ROLLING_BATCH, ['CAPACITY_PERCENT', countType]);
    const { min, max } = ROLLING_BATCH_PERCENT;
    if (size.type === 'CAPACITY_PERCENT') {
      if (size.value < min || size.value > max) {
        throw new TuneyardValidationError(
          `a rolling batch of ${size.value}% is outside the ${min}-${max}% of the fleet that SageMaker accepts (MaximumBatchSize). ` +
            `Use a batchSize from ${min} to ${max} percent, e.g. { type: 'CAPACITY_PERCENT', value: 50 }.`,
          scope,
        );
      }
      return size;
    }
    if (!fleet) return size;
    const unit = countType === 'INSTANCE_COUNT' ? 'instance' : 'copy';
    const units = countType === 'INSTANCE_COUNT' ? 'instances' : 'copies';
    const lowest = Math.ceil((fleet.maximum * min) / 100);
    const highest = Math.floor((fleet.minimum * max) / 100);
    if (size.value < lowest || size.value > highest) {
      const fleetSize = fleet.minimum === fleet.maximum ? `${fleet.minimum}` : `${fleet.minimum}-${fleet.maximum}`;
      const share = Math.round((size.value / (size.value > highest ? fleet.minimum : fleet.maximum)) * 100);
      throw new TuneyardValidationError(
        `a rolling batch of ${size.value} ${size.value === 1 ? unit : units} (${countType}) is ${share}% of a fleet of ${fleetSize} ${units}; ` +
          `SageMaker accepts ${min}-${max}% of the fleet (MaximumBatchSize). ` +
          (lowest <= highest ? `Use ${lowest === highest ? lowest : `${lowest}-${highest}`} ${units}, or a percentage` : 'Use a percentage') +
          `: { type: 'CAPACITY_PERCENT', value: 50 }.`,
        scope,
      );
    }
    return size;
  }

  private checkSize(scope: IConstruct, size: CapacitySize, allowed: CapacitySize['type'][]): CapacitySize {
    if (!allowed.includes(size.type)) {
      throw new TuneyardValidationError(`capacity size type ${size.type} is not valid here; use one of ${allowed.join(', ')}.`, scope);
    }
    const max = size.type === 'CAPACITY_PERCENT' ? 100 : Infinity;
    if (!Number.isInteger(size.value) || size.value < 1 || size.value > max) {
      throw new TuneyardValidationError(
        `capacity size ${size.value} (${size.type}) is invalid; use a whole number from 1${max === 100 ? ' to 100' : ''}.`,
        scope,
      );
    }
    return size;
  }
}

function capacity(size: CapacitySize): { Type: string; Value: number } {
  return { Type: size.type, Value: size.value };
}

/** Converts the API's PascalCase shape to the camelCase shape of the L1 property types. */
export function toCfnProperties(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(toCfnProperties);
  if (value && typeof value === 'object' && !Token.isUnresolved(value)) {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map(([k, v]) => [k.charAt(0).toLowerCase() + k.slice(1), toCfnProperties(v)]),
    );
  }
  return value;
}

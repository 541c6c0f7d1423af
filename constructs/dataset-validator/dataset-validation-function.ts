import * as path from 'node:path';
import { Duration, RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { createLogKey, createPlaneFunction } from '../../lib/plane-function';
import { TuneyardValidationError } from '../../lib/errors';
import { DATA_PREFIXES } from '../../lib/layout';
import { DatasetStore } from '../dataset-store';
import { acknowledgeOnGrantee, nagResource } from '../../lib/nag';

/** Properties of a {@link DatasetValidationFunction}. */
export interface DatasetValidationFunctionProps {
  /** The data bucket: the function reads `datasets/` and writes `datasets/<name>/<sha256>/validation-report.json`. */
  readonly store: DatasetStore;

  /**
   * Memory of the function in MiB. It also buys CPU: at 1769 MiB Lambda gives one full vCPU.
   *
   * @default 2048 - more than one vCPU: at the ~200 MB per CPU-second the validator reaches on one x86 core
   * (benchmarks/validate-throughput.ts; not measured on Lambda arm64) 1 GB takes seconds to tens of seconds,
   * bounded by the S3 read; plus room for the duplicate index (~16 bytes a distinct row: ~160 MB for 10 million rows;
   * twice that with an eval file, for the overlap check)
   */
  readonly memorySize?: number;

  /**
   * How long one validation may take.
   *
   * @default Duration.minutes(15) - the Lambda maximum
   */
  readonly timeout?: Duration;

  /**
   * The VPC to run the function in (the plane's training jobs run in one). The subnets need a route to
   * S3: an S3 gateway endpoint or a NAT gateway.
   *
   * @default - not in a VPC: the function reaches S3 over the AWS network with TLS
   */
  readonly vpc?: ec2.IVpc;

  /**
   * Where in `vpc` to place the function.
   *
   * @default - the VPC's private subnets
   */
  readonly vpcSubnets?: ec2.SubnetSelection;

  /**
   * Security groups of the function in `vpc`.
   *
   * @default - a new security group with outbound access only
   */
  readonly securityGroups?: ec2.ISecurityGroup[];

  /**
   * Concurrent executions reserved for (and capped at) this function, when `reserveConcurrency` is on.
   *
   * @default 5
   */
  readonly reservedConcurrentExecutions?: number;

  /**
   * Whether the function reserves concurrency (and is capped at it). Lambda keeps 100
   * units of an account's limit unreserved, so an account whose limit is 10 (new accounts) cannot
   * reserve any and the deployment fails: set this to false there, or ask for a limit increase.
   *
   * @default true
   */
  readonly reserveConcurrency?: boolean;

  /**
   * How long the function's logs are kept.
   *
   * @default logs.RetentionDays.ONE_YEAR
   */
  readonly logRetention?: logs.RetentionDays;

  /**
   * The KMS key that encrypts the function's log group. Its key policy must let CloudWatch Logs use it.
   *
   * @default - a new key with yearly rotation, whose policy allows this log group
   */
  readonly logEncryptionKey?: kms.IKey;

  /**
   * What happens to the log group (and the log key this construct creates) when they leave the stack.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * The ValidateDataset step: a Lambda (Node.js 24, arm64) that streams a dataset version's
 * `train.jsonl` (and `eval.jsonl`) from the data bucket through the rules `tuneyard validate` and
 * `tuneyard upload` apply (one implementation, `checkDatasetFiles` of lib/datasets: each file's rows,
 * the run's method, one format for both files, train/eval overlap refused unless the version's
 * `manifest.json` records `--allow-overlap`), writes `validation-report.json` beside them once, and
 * returns a summary (`ValidateDatasetOutput`) or fails with the error `DatasetInvalid` whose message
 * lists the first errors with their line numbers.
 *
 * Invoke it synchronously (Step Functions `LambdaInvoke`) with a `ValidateDatasetInput`.
 * The handler is bundled in-process by esbuild at synth (no Docker).
 */
export class DatasetValidationFunction extends Construct {
  /** The function. */
  public readonly function: lambda.IFunction;
  /** The function's execution role. */
  public readonly role: iam.IRole;
  /** The function's log group. */
  public readonly logGroup: logs.ILogGroup;
  /** The data store whose dataset versions the function validates. */
  public readonly store: DatasetStore;

  constructor(scope: Construct, id: string, props: DatasetValidationFunctionProps) {
    super(scope, id);
    const memorySize = props.memorySize ?? 2048;
    const timeout = props.timeout ?? Duration.minutes(15);
    const reservedConcurrentExecutions = props.reserveConcurrency === false ? undefined : (props.reservedConcurrentExecutions ?? 5);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    this.validateProps(props, memorySize, timeout, reservedConcurrentExecutions);

    const logKey = props.logEncryptionKey ?? createLogKey(this, 'LogKey', 'Tuneyard dataset validation function logs', removalPolicy);

    const { function: fn, role, logGroup } = createPlaneFunction(this, {
      ids: { function: 'Resource', role: 'ServiceRole', logGroup: 'LogGroup' },
      entry: path.join(__dirname, 'handler', 'index'),
      description: 'Tuneyard ValidateDataset: checks a dataset version against the format rules of lib/datasets',
      memorySize,
      timeout,
      reservedConcurrentExecutions,
      environment: { DATA_BUCKET: props.store.bucket.bucketName },
      logEncryptionKey: logKey,
      logRetention: props.logRetention ?? logs.RetentionDays.ONE_YEAR,
      removalPolicy,
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      securityGroups: props.securityGroups,
      outsideVpcReason: 'the function only calls S3 over TLS with a role scoped to datasets/.',
      policyScope: 'a prefix, the log group or the data key',
    });

    props.store.grantReadDatasets(role);
    this.grantWriteReports(props.store, role);
    this.acknowledgeFindings(role, props);

    this.function = fn;
    this.store = props.store;
    this.role = role;
    this.logGroup = logGroup;
  }

  /** PutObject of `datasets/<name>/<sha256>/validation-report.json` only, and only with `If-None-Match`. */
  private grantWriteReports(store: DatasetStore, role: iam.Role): void {
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'WriteValidationReportsOnce',
        actions: ['s3:PutObject'],
        resources: [store.bucket.arnForObjects(`${DATA_PREFIXES.datasets}*/validation-report.json`)],
        conditions: { Null: { 's3:if-none-match': 'false' } },
      }),
    );
    store.encryptionKey?.grant(role, 'kms:GenerateDataKey');
  }

  private validateProps(props: DatasetValidationFunctionProps, memorySize: number, timeout: Duration, reserved: number | undefined): void {
    if (!Token.isUnresolved(memorySize) && (!Number.isInteger(memorySize) || memorySize < 512 || memorySize > 10240)) {
      throw new TuneyardValidationError(
        `memorySize must be a whole number of MiB from 512 to 10240; got ${memorySize}. The default, 2048, validates about 1 GB in well under the timeout.`,
        this,
      );
    }
    if (!timeout.isUnresolved() && (timeout.toSeconds() < 30 || timeout.toSeconds() > 900)) {
      throw new TuneyardValidationError(
        `timeout must be from 30 seconds to 15 minutes (the Lambda maximum); got ${timeout.toHumanString()}. Use e.g. Duration.minutes(15).`,
        this,
      );
    }
    if (props.reserveConcurrency === false && props.reservedConcurrentExecutions !== undefined) {
      throw new TuneyardValidationError(
        `reservedConcurrentExecutions (${props.reservedConcurrentExecutions}) needs reserveConcurrency: remove one of them.`,
        this,
      );
    }
    if (reserved !== undefined && !Token.isUnresolved(reserved) && (!Number.isInteger(reserved) || reserved < 1)) {
      throw new TuneyardValidationError(
        `reservedConcurrentExecutions must be a whole number of at least 1 (0 would throttle every validation); got ${reserved}. Use e.g. 5.`,
        this,
      );
    }
    if (!props.vpc && (props.vpcSubnets || props.securityGroups)) {
      throw new TuneyardValidationError('vpcSubnets and securityGroups need a vpc; pass `vpc` too, or remove them.', this);
    }
  }

  private acknowledgeFindings(role: iam.Role, props: DatasetValidationFunctionProps): void {
    const datasets = nagResource(Stack.of(this), props.store.bucket.arnForObjects(`${DATA_PREFIXES.datasets}*`));
    acknowledgeOnGrantee(role, {
      [`AwsSolutions-IAM5[Resource::${datasets}]`]:
        'Reads any dataset version under datasets/: the version to validate is chosen per run (name and sha256 in the input).',
      [`AwsSolutions-IAM5[Resource::${datasets}/validation-report.json]`]:
        'Writes only the validation-report.json of a dataset version (any version; chosen per run), and only with If-None-Match.',
    });
  }

}

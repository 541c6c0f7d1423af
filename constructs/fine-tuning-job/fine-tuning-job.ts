import * as fs from 'node:fs';
import * as path from 'node:path';
import { Annotations, ArnFormat, Duration, Stack, Token } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { DatasetStore } from '../dataset-store';
import { acknowledge, acknowledgeOnGrantee, inControlPacks, nagResource } from '../../lib/nag';
import { trainerDirectory, TrainingImage } from '../training-image';
import { TuneyardValidationError } from '../../lib/errors';
import { DATA_PREFIXES } from '../../lib/layout';
import { grantVpcAttachment } from '../../lib/vpc-attachment';
import { estimateTrainingMemory, resolveParameters } from '../../lib/preflight';
import { parseRecipe, Recipe, resolveRecipe } from '../../lib/recipe';
import { DEFAULT_JOB_NAME_PREFIX, isJobNamePrefix, MAX_JOB_NAME_PREFIX_LENGTH, MAX_RUNTIME_HOURS } from '../../lib/run-request';

/**
 * The states' TimeoutSeconds: the longest a planned job can take (spot waits up to twice the
 * runtime limit) plus an hour for provisioning and upload. SageMaker's own stopping condition
 * ends the job first; this only guards against a lost `.sync` callback.
 */
export const JOB_STATE_TIMEOUT_SECONDS = 2 * MAX_RUNTIME_HOURS * 3600 + 3600;

/** The CloudWatch namespace of SageMaker training jobs (instance and MetricDefinitions metrics). */
export const TRAINING_JOBS_NAMESPACE = '/aws/sagemaker/TrainingJobs';

/** The run settings a construct's default recipe is checked with at synth. */
export interface DefaultRecipe {
  /** The recipe. */
  readonly recipe: Recipe;
  /** The base model (an `s3://` folder under base-models/ or a Hub id); its size comes from the name. */
  readonly baseModel: string;
  /** Parameters of the base model in billions, when its name does not tell. @default - read from `baseModel` */
  readonly baseModelParameters?: number;
  /** Instance type. @default 'ml.g5.2xlarge' */
  readonly instanceType?: string;
  /** Instances. @default 1 */
  readonly instanceCount?: number;
}

/** Properties of a {@link FineTuningJob}. */
export interface FineTuningJobProps {
  /** Where datasets, base models, checkpoints, artifacts and eval reports live. */
  readonly store: DatasetStore;
  /**
   * The image the training and evaluation jobs run.
   *
   * @default - the bundled trainer (`TrainingImage.fromBundled`), built by `cdk deploy`
   */
  readonly image?: TrainingImage;
  /**
   * The VPC the jobs run in: their network interfaces are placed in it, so SageMaker reads the
   * channels and writes the outputs through it (its S3 endpoint). Needed for Hub base models
   * (`allowHubModels`), which the jobs download through the VPC's NAT route.
   *
   * @default - no VPC: every job runs with network isolation (its containers have no network at
   * all; SageMaker itself downloads the channels and uploads the outputs, KMS-encrypted, and
   * the containers of a distributed job still reach each other, encrypted); no security group
   */
  readonly vpc?: ec2.IVpc;
  /**
   * The subnets of the jobs' network interfaces (with `vpc`).
   *
   * @default - the VPC's private subnets (isolated ones when it has no subnets with egress)
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /**
   * The ID of the S3 managed prefix list (`com.amazonaws.<region>.s3`), for the security group's
   * egress rule to the S3 gateway endpoint. SageMaker downloads the channels and uploads the
   * outputs and checkpoints through the jobs' network interfaces. A token is fine: pass
   * `PlaneNetwork.s3PrefixListId`, which is looked up at deploy time when not configured.
   *
   * @default - no S3 prefix-list rule: S3 must be reachable through an interface endpoint in the
   * VPC (covered by the HTTPS rule to the VPC CIDR); a warning says so (with `vpc`)
   */
  readonly s3PrefixListId?: string;
  /**
   * The KMS key for the training volume (on instance types without local NVMe storage) and the
   * job outputs in S3.
   *
   * @default - the data store's key
   */
  readonly encryptionKey?: kms.IKey;
  /**
   * A recipe and run settings checked at synth by the GPU memory preflight: a recipe that
   * cannot fit its instance fails synth.
   *
   * @default - none checked at synth (every run is still checked when it is planned)
   */
  readonly defaultRecipe?: DefaultRecipe;
  /**
   * The prefix of every training and evaluation job name; the pipeline may only create, describe
   * and stop jobs with it. Lower-case letters, digits and hyphens, at most 9 characters.
   *
   * @default 'tuneyard-'
   */
  readonly jobNamePrefix?: string;
  /**
   * Allow a Hugging Face Hub id as the base model. Jobs with a Hub model run WITHOUT network
   * isolation (the container downloads the weights), and need a route to huggingface.co (a NAT
   * gateway: the default PlaneNetwork has none). Staged `s3://` models stay isolated. Needs a
   * `vpc`: outside one, such a job's container would reach the whole internet.
   *
   * @default false
   */
  readonly allowHubModels?: boolean;
}

/** A metric that SageMaker reads from a training job's log lines (one of its MetricDefinitions). */
export interface TrainingMetricDefinition {
  /** The metric's name, e.g. `train_loss`. */
  readonly name: string;
  /** The regular expression whose first group is the value. */
  readonly regex: string;
}

/** Options of the Train and Evaluate states. */
export interface JobStateOptions {
  /** Where the trimmed DescribeTrainingJob result goes in the state. @default '$.training' or '$.evaluation' */
  readonly resultPath?: string;
  /** A comment on the state. @default - none */
  readonly comment?: string;
}

/** The trainer image's ENTRYPOINT (training-images/trainer/Dockerfile); `train` or `evaluate` follows it. */
export const TRAINER_ENTRYPOINT = ['python', '-m', 'tuneyard_trainer'];

/**
 * The fields of the `.sync` result (DescribeTrainingJob) that the states keep: only fields every
 * completed job has, since a ResultSelector path that points to nothing fails the state
 * (`States.Runtime`). FinalMetricDataList (absent when no metric line was matched) and
 * BillableTimeInSeconds are read with DescribeTrainingJob (`tuneyard describe`) instead.
 */
export const JOB_RESULT_FIELDS = ['TrainingJobName', 'TrainingJobStatus', 'SecondaryStatus', 'ModelArtifacts'] as const;

/**
 * SageMaker training and evaluation jobs for the pipeline: the execution role, the security
 * group, and Step Functions states that run the bundled trainer with the run's plan.
 *
 * The states read the run-dependent request fragments from `$.plan` (a `RunPlan`, made by
 * `planRun`); everything that decides security is fixed at synth: the role, the VPC, network
 * isolation, inter-container traffic encryption, the image and its metric definitions.
 *
 * The role may read `datasets/`, `base-models/` and `artifacts/` (the evaluation job reads the
 * trained adapter), write `artifacts/` and `eval-reports/`, read and write `checkpoints/`, use the
 * data key, pull the image, write the jobs' logs and (with a `vpc`) create its network interfaces
 * in the VPC. Without a `vpc` every job runs with network isolation and no VPC configuration.
 *
 * The state machine that runs the states must be granted with {@link grantStart}:
 * `CustomState` carries no policy statements.
 */
export class FineTuningJob extends Construct {
  /** The SageMaker execution role of the training and evaluation jobs. */
  public readonly role: iam.IRole;
  /** The data store the jobs read from and write to. */
  public readonly store: DatasetStore;
  /** The security group of the jobs' network interfaces (only with a `vpc`). */
  public readonly securityGroup?: ec2.ISecurityGroup;
  /** The key for the training volume and the outputs. */
  public readonly encryptionKey: kms.IKey;
  /** The prefix of every job name. */
  public readonly jobNamePrefix: string;
  /** Whether Hub base models are allowed (jobs with one run without network isolation). */
  public readonly allowHubModels: boolean;
  /** The lowest GPU compute capability the image runs on, when the image says (the bundled trainer's: 7.5). */
  public readonly minComputeCapability?: number;
  /** The MetricDefinitions of the jobs, from `training-images/trainer/metrics.json`. */
  public readonly metricDefinitions: TrainingMetricDefinition[];
  /** The default recipe, when one was given (it passed the preflight). */
  public readonly defaultRecipe?: DefaultRecipe;

  /** The image the jobs run. */
  public readonly image: TrainingImage;
  private readonly subnetIds?: string[];

  constructor(scope: Construct, id: string, props: FineTuningJobProps) {
    super(scope, id);
    this.jobNamePrefix = props.jobNamePrefix ?? DEFAULT_JOB_NAME_PREFIX;
    validateJobNamePrefix(this, this.jobNamePrefix);
    this.allowHubModels = props.allowHubModels ?? false;
    validateNetworkProps(this, props);
    this.store = props.store;
    this.image = props.image ?? TrainingImage.fromBundled(this, 'Image');
    this.minComputeCapability = this.image.minComputeCapability;
    const key = props.encryptionKey ?? props.store.encryptionKey;
    if (!key) {
      throw new TuneyardValidationError(
        'the data store has no KMS key and no encryptionKey was given; training volumes and outputs must be KMS-encrypted. Pass encryptionKey (a kms.IKey).',
        this,
      );
    }
    this.encryptionKey = key;
    if (props.defaultRecipe) {
      preflightDefaultRecipe(this, props.defaultRecipe);
      this.defaultRecipe = props.defaultRecipe;
    }
    this.metricDefinitions = readMetricDefinitions(this);

    const stack = Stack.of(this);
    if (props.vpc) {
      this.subnetIds = props.vpc.selectSubnets(props.vpcSubnets).subnetIds;
      this.securityGroup = this.createSecurityGroup(props.vpc, props.s3PrefixListId);
    }

    const role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('sagemaker.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': stack.account } },
      }),
      description: 'Tuneyard SageMaker training and evaluation jobs',
    });
    this.role = role;
    props.store.grantReadDatasets(role);
    props.store.grantReadBaseModels(role);
    props.store.grantReadArtifacts(role);
    props.store.grantWriteArtifacts(role);
    props.store.grantWriteEvalReports(role);
    // The evaluation job's graders channel: graders.json, which the pipeline's PlanRun writes under each run's eval-reports/.
    role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [props.store.bucket.arnForObjects(`${DATA_PREFIXES.evalReports}*/graders.json`)] }));
    props.store.grantReadWriteCheckpoints(role);
    key.grant(role, 'kms:Decrypt', 'kms:GenerateDataKey', 'kms:CreateGrant', 'kms:DescribeKey');
    this.image.grantPull(role);

    const logGroupArn = stack.formatArn({
      service: 'logs',
      resource: 'log-group',
      resourceName: `${TRAINING_JOBS_NAMESPACE}:*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'TrainingJobLogs',
        actions: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
        resources: [logGroupArn],
      }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'TrainingJobMetrics',
        actions: ['cloudwatch:PutMetricData'],
        resources: ['*'],
        conditions: { StringEquals: { 'cloudwatch:namespace': TRAINING_JOBS_NAMESPACE } },
      }),
    );
    // The jobs' network interfaces: created and deleted only in the plane VPC.
    const vpcArns = props.vpc ? grantVpcAttachment(role, props.vpc) : undefined;
    this.acknowledgeRoleFindings(role, props.store, logGroupArn, vpcArns && { networkInterfaces: vpcArns[0], subnets: vpcArns[1], securityGroups: vpcArns[2] });
  }

  /** Security group: traffic between the job's own containers (distributed training), HTTPS to the VPC endpoints. */
  private createSecurityGroup(vpc: ec2.IVpc, s3PrefixListId: string | undefined): ec2.SecurityGroup {
    const securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc,
      description: 'Tuneyard training jobs: inter-container traffic and HTTPS to the VPC endpoints only',
      allowAllOutbound: false,
    });
    securityGroup.addIngressRule(securityGroup, ec2.Port.allTraffic(), 'Inter-container traffic of distributed training jobs');
    acknowledge(
      securityGroup,
      inControlPacks(
        'EC2RestrictedCommonPorts',
        'The only ingress rule admits the group itself (the containers of one distributed job: NCCL picks its ports at run time); nothing outside the group can connect.',
      ),
    );
    securityGroup.addEgressRule(securityGroup, ec2.Port.allTraffic(), 'Inter-container traffic of distributed training jobs');
    securityGroup.addEgressRule(ec2.Peer.ipv4(vpc.vpcCidrBlock), ec2.Port.tcp(443), 'HTTPS to the interface VPC endpoints');
    if (s3PrefixListId) {
      securityGroup.addEgressRule(ec2.Peer.prefixList(s3PrefixListId), ec2.Port.tcp(443), 'HTTPS to S3 through the gateway endpoint');
    } else {
      Annotations.of(this).addWarningV2(
        'tuneyard:no-s3-prefix-list',
        'No s3PrefixListId: the training security group allows HTTPS to the VPC CIDR only, so S3 must be reachable through an S3 interface endpoint. ' +
          'With an S3 gateway endpoint, pass PlaneNetwork.s3PrefixListId (looked up at deploy time) or the ID of the com.amazonaws.<region>.s3 prefix list.',
      );
    }
    return securityGroup;
  }

  /**
   * The Train state: `sagemaker:createTrainingJob.sync` with the plan's training fragments
   * (`$.plan.trainingJobName`, `hyperParameters`, `inputDataConfig`, `outputDataConfig`,
   * `resourceConfig`, `stoppingCondition`, `enableManagedSpotTraining`, `checkpointConfig`),
   * container argument `train`, the trimmed DescribeTrainingJob result at `$.training`.
   */
  public trainState(id: string, options: JobStateOptions = {}): sfn.CustomState {
    return new sfn.CustomState(this, id, {
      stateJson: this.jobState('train', {
        'TrainingJobName.$': '$.plan.trainingJobName',
        'HyperParameters.$': '$.plan.hyperParameters',
        'InputDataConfig.$': '$.plan.inputDataConfig',
        'OutputDataConfig.$': '$.plan.outputDataConfig',
        'ResourceConfig.$': '$.plan.resourceConfig',
        'StoppingCondition.$': '$.plan.stoppingCondition',
        'EnableManagedSpotTraining.$': '$.plan.enableManagedSpotTraining',
        'CheckpointConfig.$': '$.plan.checkpointConfig',
      }, options.resultPath ?? '$.training', options.comment),
    });
  }

  /**
   * The Evaluate state: the same image with container argument `evaluate` (base vs tuned loss,
   * forgetting probe), on demand, with the plan's evaluation fragments; it writes `eval.json` to
   * `$.plan.evalReport`. The trimmed result goes to `$.evaluation`.
   */
  public evaluateState(id: string, options: JobStateOptions = {}): sfn.CustomState {
    return new sfn.CustomState(this, id, {
      stateJson: this.jobState('evaluate', {
        'TrainingJobName.$': '$.plan.evaluationJobName',
        'HyperParameters.$': '$.plan.evaluationHyperParameters',
        'InputDataConfig.$': '$.plan.evaluationInputDataConfig',
        'OutputDataConfig.$': '$.plan.evaluationOutputDataConfig',
        'ResourceConfig.$': '$.plan.evaluationResourceConfig',
        'StoppingCondition.$': '$.plan.evaluationStoppingCondition',
      }, options.resultPath ?? '$.evaluation', options.comment),
    });
  }

  /**
   * Lets a state machine role run the Train and Evaluate states: create, describe, stop and tag
   * jobs named with the prefix, read job tags (`sagemaker:ListTags`, which `.sync` needs), pass the execution role to SageMaker, manage the EventBridge rule
   * that `.sync` uses, and use the key for the volume and outputs. The pipeline must call it.
   */
  public grantStart(grantee: iam.IGrantable): iam.Grant {
    const stack = Stack.of(this);
    const jobs = stack.formatArn({ service: 'sagemaker', resource: 'training-job', resourceName: `${this.jobNamePrefix}*` });
    const grant = iam.Grant.addToPrincipal({
      grantee,
      actions: ['sagemaker:CreateTrainingJob', 'sagemaker:DescribeTrainingJob', 'sagemaker:StopTrainingJob', 'sagemaker:AddTags'],
      resourceArns: [jobs],
    });
    // The `.sync` integration reads the job's tags (the IAM policy Step Functions documents for
    // CreateTrainingJob `.sync` grants sagemaker:ListTags on "*").
    iam.Grant.addToPrincipal({ grantee, actions: ['sagemaker:ListTags'], resourceArns: ['*'] });
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['iam:PassRole'],
      resourceArns: [this.role.roleArn],
      conditions: { StringEquals: { 'iam:PassedToService': 'sagemaker.amazonaws.com' } },
    });
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
      resourceArns: [stack.formatArn({ service: 'events', resource: 'rule', resourceName: 'StepFunctionsGetEventsForSageMakerTrainingJobsRule' })],
    });
    this.encryptionKey.grant(grantee, 'kms:CreateGrant', 'kms:DescribeKey');
    acknowledgeOnGrantee(grantee, {
      'AwsSolutions-IAM5[Resource::*]':
        'sagemaker:ListTags on "*" is what Step Functions documents for the CreateTrainingJob .sync integration (it reads the tags of the job it tracks).',
      [`AwsSolutions-IAM5[Resource::${nagResource(stack, jobs)}]`]:
        'Training job names are derived from each run at run time; the state machine may only touch jobs with the plane prefix.',
    });
    return grant;
  }

  /** Training loss (metric `train_loss`) of every job with the prefix. */
  public metricTrainingLoss(props: cloudwatch.MathExpressionOptions = {}): cloudwatch.MathExpression {
    return this.searchMetric('train_loss', 'Average', 'Training loss', props);
  }

  /** Held-out loss (metric `eval_loss`) of every job with the prefix. */
  public metricEvalLoss(props: cloudwatch.MathExpressionOptions = {}): cloudwatch.MathExpression {
    return this.searchMetric('eval_loss', 'Average', 'Eval loss', props);
  }

  /** Tokens trained per second (metric `tokens_per_second`) of every job with the prefix. */
  public metricTokensPerSecond(props: cloudwatch.MathExpressionOptions = {}): cloudwatch.MathExpression {
    return this.searchMetric('tokens_per_second', 'Average', 'Tokens per second', props);
  }

  /** GPU utilisation in percent (summed over the GPUs of a host) of every job with the prefix. */
  public metricGpuUtilization(props: cloudwatch.MathExpressionOptions = {}): cloudwatch.MathExpression {
    return this.searchMetric('GPUUtilization', 'Average', 'GPU utilization', props);
  }

  /** GPU memory utilisation in percent (summed over the GPUs of a host) of every job with the prefix. */
  public metricGpuMemoryUtilization(props: cloudwatch.MathExpressionOptions = {}): cloudwatch.MathExpression {
    return this.searchMetric('GPUMemoryUtilization', 'Average', 'GPU memory utilization', props);
  }

  /**
   * Mean reward of each step's completions (metric `reward_mean`) of every job with the prefix:
   * GRPO (the weighted sum of its reward sources) and RLOO (the reward model's score).
   */
  public metricRewardMean(props: cloudwatch.MathExpressionOptions = {}): cloudwatch.MathExpression {
    return this.searchMetric('reward_mean', 'Average', 'Reward (mean)', props);
  }

  /** Mean per-token KL divergence of the policy from the reference model (metric `kl`) of every GRPO and RLOO job with the prefix. */
  public metricKl(props: cloudwatch.MathExpressionOptions = {}): cloudwatch.MathExpression {
    return this.searchMetric('kl', 'Average', 'KL', props);
  }

  /** Mean completion length in tokens (metric `completion_length`) of every GRPO and RLOO job with the prefix. */
  public metricCompletionLength(props: cloudwatch.MathExpressionOptions = {}): cloudwatch.MathExpression {
    return this.searchMetric('completion_length', 'Average', 'Completion length (tokens)', props);
  }

  /**
   * Share (0-1) of completions that reached the maximum completion length without ending (metric
   * `clipped_ratio`) of every GRPO and RLOO job with the prefix.
   */
  public metricClippedRatio(props: cloudwatch.MathExpressionOptions = {}): cloudwatch.MathExpression {
    return this.searchMetric('clipped_ratio', 'Average', 'Clipped ratio', props);
  }

  /**
   * Share (0-1) of completions that missed the run's `grpo_format_regex` (metric
   * `format_miss_ratio`) of every GRPO job with the prefix; published only by runs that set one.
   */
  public metricFormatMissRatio(props: cloudwatch.MathExpressionOptions = {}): cloudwatch.MathExpression {
    return this.searchMetric('format_miss_ratio', 'Average', 'Format-miss ratio', props);
  }

  /**
   * The clipped policy-gradient loss with its KL term (metric `policy_loss`) of every RLOO job with
   * the prefix: what an RLOO run logs instead of `train_loss`.
   */
  public metricPolicyLoss(props: cloudwatch.MathExpressionOptions = {}): cloudwatch.MathExpression {
    return this.searchMetric('policy_loss', 'Average', 'Policy loss (RLOO)', props);
  }

  /**
   * Share (0-1) of preference pairs whose chosen answer gets the higher reward (metric
   * `reward_accuracy`) of every DPO and reward-model job with the prefix.
   */
  public metricRewardAccuracy(props: cloudwatch.MathExpressionOptions = {}): cloudwatch.MathExpression {
    return this.searchMetric('reward_accuracy', 'Average', 'Preference accuracy', props);
  }

  /** Mean chosen minus rejected reward (metric `reward_margin`) of every DPO and reward-model job with the prefix. */
  public metricRewardMargin(props: cloudwatch.MathExpressionOptions = {}): cloudwatch.MathExpression {
    return this.searchMetric('reward_margin', 'Average', 'Reward margin', props);
  }

  /**
   * A SEARCH over the training-jobs namespace: SageMaker publishes both instance metrics and the
   * MetricDefinitions' metrics there with the dimension `Host` = `<job name>/algo-<n>`. The job
   * names are unknown at synth, so the search matches the prefix's words: CloudWatch splits
   * dimension values into tokens at punctuation, and an unquoted `Host=word` matches a value with
   * that token (a quoted `Host="..."` would need the whole value). One line per job and host.
   * Another prefix with the same words (`tuneyard-` and `tuneyard-dev-`) matches too: give each
   * plane a prefix with a word of its own.
   */
  private searchMetric(metricName: string, statistic: string, label: string, props: cloudwatch.MathExpressionOptions): cloudwatch.MathExpression {
    const period = props.period ?? Duration.minutes(5);
    const words = this.jobNamePrefix.split('-').filter((word) => word !== '');
    const host = words.length === 1 ? `Host=${words[0]}` : `(${words.map((word) => `Host=${word}`).join(' AND ')})`;
    const expression = `SEARCH('{${TRAINING_JOBS_NAMESPACE},Host} MetricName="${metricName}" ${host}', '${statistic}', ${period.toSeconds()})`;
    return new cloudwatch.MathExpression({ label, ...props, period, expression, usingMetrics: {} });
  }

  private jobState(mode: 'train' | 'evaluate', fromPlan: Record<string, string>, resultPath: string, comment?: string): Record<string, unknown> {
    const stack = Stack.of(this);
    return {
      Type: 'Task',
      ...(comment ? { Comment: comment } : {}),
      Resource: `arn:${stack.partition}:states:::sagemaker:createTrainingJob.sync`,
      TimeoutSeconds: JOB_STATE_TIMEOUT_SECONDS,
      Parameters: {
        ...fromPlan,
        RoleArn: this.role.roleArn,
        AlgorithmSpecification: {
          TrainingImage: this.image.imageUri,
          TrainingInputMode: 'File',
          MetricDefinitions: this.metricDefinitions.map((d) => ({ Name: d.name, Regex: d.regex })),
          // The image's own ENTRYPOINT, stated so that the mode argument follows it whatever SageMaker's
          // default invocation (`train`) would be: the container runs `python -m tuneyard_trainer <mode>`.
          ContainerEntrypoint: TRAINER_ENTRYPOINT,
          ContainerArguments: [mode],
        },
        ...(this.securityGroup && this.subnetIds ? { VpcConfig: { SecurityGroupIds: [this.securityGroup.securityGroupId], Subnets: this.subnetIds } } : {}),
        ...(this.allowHubModels ? { 'EnableNetworkIsolation.$': '$.plan.enableNetworkIsolation' } : { EnableNetworkIsolation: true }),
        EnableInterContainerTrafficEncryption: true,
        Environment: this.allowHubModels ? { HF_HUB_DISABLE_TELEMETRY: '1' } : { HF_HUB_OFFLINE: '1', HF_DATASETS_OFFLINE: '1', HF_HUB_DISABLE_TELEMETRY: '1' },
        Tags: [
          { Key: 'tuneyard:component', Value: mode === 'train' ? 'training' : 'evaluation' },
          { Key: 'tuneyard:plane', Value: stack.stackName },
        ],
      },
      ResultSelector: Object.fromEntries(JOB_RESULT_FIELDS.map((f) => [`${f}.$`, `$.${f}`])),
      ResultPath: resultPath,
    };
  }

  private acknowledgeRoleFindings(
    role: iam.Role,
    store: DatasetStore,
    logGroupArn: string,
    vpcArns: { readonly networkInterfaces: string; readonly subnets: string; readonly securityGroups: string } | undefined,
  ): void {
    const stack = Stack.of(this);
    const findings: Record<string, string> = {
      'AwsSolutions-IAM5[Resource::*]':
        'ec2:Describe* (network interfaces, VPCs, DHCP options, subnets, security groups) and ecr:GetAuthorizationToken support no resource-level ' +
        'permissions; cloudwatch:PutMetricData is limited by the cloudwatch:namespace condition to /aws/sagemaker/TrainingJobs.',
      [`AwsSolutions-IAM5[Resource::${nagResource(stack, logGroupArn)}]`]:
        'SageMaker names the log streams of a training job after the job at run time; the role may write only to the TrainingJobs log group.',
    };
    if (vpcArns) {
      Object.assign(findings, {
        [`AwsSolutions-IAM5[Resource::${nagResource(stack, vpcArns.networkInterfaces)}]`]:
          'SageMaker creates the job network interfaces at run time; the ec2:Vpc condition limits them to the plane VPC.',
        [`AwsSolutions-IAM5[Resource::${nagResource(stack, vpcArns.subnets)}]`]:
          'The subnets are chosen per job by the VpcConfig; the ec2:Vpc condition limits them to the plane VPC.',
        [`AwsSolutions-IAM5[Resource::${nagResource(stack, vpcArns.securityGroups)}]`]:
          'The security group is chosen per job by the VpcConfig; the ec2:Vpc condition limits it to the plane VPC.',
      });
    }
    const prefixReasons: Record<string, string> = {
      datasets: 'Jobs read the dataset version named by each run (content-addressed keys known only at run time); read-only.',
      baseModels: 'Jobs read the staged base model named by each run; read-only.',
      artifacts: 'The training job writes, and the evaluation job reads, the output of each run under artifacts/<run id>/, named at run time.',
      evalReports: 'The evaluation job writes eval.json under eval-reports/<run id>/, named at run time.',
      checkpoints: 'Spot checkpoints live under checkpoints/<run id>/, named at run time; a resumed job reads what it wrote.',
    };
    findings[`AwsSolutions-IAM5[Resource::${nagResource(stack, store.bucket.arnForObjects(`${DATA_PREFIXES.evalReports}*/graders.json`))}]`] =
      "The evaluation job reads its run's graders.json (eval-reports/<run id>/graders.json, named at run time), and no other object there.";
    for (const [prefix, reason] of Object.entries(prefixReasons)) {
      const arn = store.bucket.arnForObjects(`${DATA_PREFIXES[prefix as keyof typeof DATA_PREFIXES]}*`);
      findings[`AwsSolutions-IAM5[Resource::${nagResource(stack, arn)}]`] = reason;
    }
    acknowledgeOnGrantee(role, {
      ...findings,
      ...inControlPacks(
        'IAMNoInlinePolicy',
        "The statements belong to the training jobs' own execution role alone (nothing to share or version separately); each is scoped to a prefix, the key, the log group or the VPC.",
      ),
    });
  }
}

function validateJobNamePrefix(scope: Construct, prefix: string): void {
  if (Token.isUnresolved(prefix)) return;
  if (!isJobNamePrefix(prefix)) {
    throw new TuneyardValidationError(
      `jobNamePrefix "${prefix}" is invalid: use 1-${MAX_JOB_NAME_PREFIX_LENGTH} lower-case letters, digits or hyphens starting with a letter or digit ` +
        `(job names are <prefix><run id of up to 48 characters>-train, at most 63), e.g. "tuneyard-".`,
      scope,
    );
  }
}

function validateNetworkProps(scope: Construct, props: FineTuningJobProps): void {
  if (props.vpc) return;
  const vpcOnly = (['vpcSubnets', 's3PrefixListId'] as const).filter((name) => props[name] !== undefined);
  if (vpcOnly.length > 0) {
    throw new TuneyardValidationError(`${vpcOnly.join(' and ')} place the jobs in a VPC, but no vpc was given: pass vpc too, or remove ${vpcOnly.join(' and ')}.`, scope);
  }
  if (props.allowHubModels) {
    throw new TuneyardValidationError(
      'allowHubModels is true but no vpc was given: a job with a Hub base model runs without network isolation, and outside a VPC its container ' +
        'could reach the whole internet with the data it reads. Pass vpc (a VPC with a NAT route to huggingface.co), or leave allowHubModels ' +
        'false and stage base models under base-models/ in the data bucket.',
      scope,
    );
  }
}

function preflightDefaultRecipe(scope: Construct, defaults: DefaultRecipe): void {
  let recipe: Recipe;
  try {
    recipe = parseRecipe(defaults.recipe);
  } catch (e) {
    throw new TuneyardValidationError(`defaultRecipe: ${(e as Error).message}`, scope);
  }
  let parametersBillions: number;
  try {
    parametersBillions = resolveParameters(defaults.baseModel, defaults.baseModelParameters);
  } catch (e) {
    throw new TuneyardValidationError(`defaultRecipe: ${(e as Error).message}`, scope);
  }
  const resolved = resolveRecipe(recipe);
  let estimate;
  try {
    estimate = estimateTrainingMemory({
      method: resolved.method,
      parametersBillions,
      baseModel: defaults.baseModel,
      loraDropout: resolved.loraDropout,
      optim: resolved.optim,
      useLigerKernel: resolved.useLigerKernel,
      maxLength: resolved.maxLength,
      batchSize: resolved.batchSize,
      gradientAccumulation: resolved.gradientAccumulation,
      gradientCheckpointing: resolved.gradientCheckpointing,
      loraR: resolved.loraR,
      targetModules: resolved.targetModules,
      useLora: resolved.useLora,
      instanceType: defaults.instanceType ?? 'ml.g5.2xlarge',
      instanceCount: defaults.instanceCount ?? 1,
      distribution: resolved.distribution,
    });
  } catch (e) {
    throw new TuneyardValidationError(`defaultRecipe: ${(e as Error).message}`, scope);
  }
  if (!estimate.fits) throw new TuneyardValidationError(`defaultRecipe does not fit in GPU memory: ${estimate.advice}`, scope);
}

function readMetricDefinitions(scope: Construct): TrainingMetricDefinition[] {
  const file = path.join(trainerDirectory(), 'metrics.json');
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new TuneyardValidationError(`cannot read the trainer's metric definitions ${file}: ${(e as Error).message}. Regenerate it with python -m tuneyard_trainer.contracts.`, scope);
  }
  if (!Array.isArray(parsed) || !parsed.every((d) => d && typeof d.Name === 'string' && typeof d.Regex === 'string') || parsed.length > 40) {
    throw new TuneyardValidationError(`${file} must be a list of at most 40 {"Name","Regex"} objects (SageMaker MetricDefinitions).`, scope);
  }
  return parsed.map((d) => ({ name: d.Name, regex: d.Regex }));
}

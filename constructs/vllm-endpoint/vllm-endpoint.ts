import { Annotations, ArnFormat, Duration, Names, Stack, Token, Validations } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { TuneyardValidationError } from '../../lib/errors';
import { ApiDeploymentConfig, FleetSize, toCfnProperties, VllmDeployment } from './deployment';
import { VllmImage } from './image';
import { S3Location, VllmModelData } from './model-data';
import { checkServingFit, copyMemoryMb } from './model-fit';
import { acknowledge, inControlPacks, nagResource } from '../../lib/nag';
import { grantVpcAttachment } from '../../lib/vpc-attachment';

/**
 * The InferenceAmiVersion Tuneyard uses by default: NVIDIA driver 550, CUDA 12.4, with the CUDA
 * compatibility mount disabled, which AWS's vLLM DLC documentation pairs with its CUDA 12.9
 * SageMaker image (tags `server-sagemaker-cuda-v1.x`). Images built on CUDA 13 (the v2.x tags)
 * get {@link CUDA13_INFERENCE_AMI_VERSION} instead.
 */
export const DEFAULT_INFERENCE_AMI_VERSION = 'al2-ami-sagemaker-inference-gpu-3-1';

/** The InferenceAmiVersion with NVIDIA driver 580 and CUDA 13.0, which the CUDA 13 vLLM DLC tags (v2.x) need. */
export const CUDA13_INFERENCE_AMI_VERSION = 'al2023-ami-sagemaker-inference-gpu-4-1';

/** The NVIDIA driver (major version) of each GPU InferenceAmiVersion (SageMaker's ProductionVariant reference). */
const INFERENCE_AMI_DRIVERS: Readonly<Record<string, number>> = {
  'al2-ami-sagemaker-inference-gpu-2': 535,
  'al2-ami-sagemaker-inference-gpu-2-1': 535,
  'al2-ami-sagemaker-inference-gpu-3-1': 550,
  [CUDA13_INFERENCE_AMI_VERSION]: 580,
};

/** vLLM engine settings, passed as `SM_VLLM_*` environment variables (each becomes a `vllm serve` flag). */
export interface VllmEngineOptions {
  /**
   * The longest prompt + completion, in tokens (`--max-model-len`). It sizes the KV cache that the
   * preflight checks against GPU memory.
   *
   * @default 8192
   */
  readonly maxModelLength?: number;
  /**
   * GPUs the model is split over (`--tensor-parallel-size`). It must be at most the instance's GPU
   * count, divide it, and divide the model's attention heads.
   *
   * @default - every GPU of the instance (inference components: every GPU, one copy per instance)
   */
  readonly tensorParallelDegree?: number;
  /**
   * The share of each GPU's memory vLLM may use for weights, activations and KV cache (`--gpu-memory-utilization`).
   *
   * @default 0.9
   */
  readonly gpuMemoryUtilization?: number;
  /**
   * The weights' dtype (`--dtype`).
   *
   * @default 'auto' (bfloat16 where the GPU computes in it, float16 on T4/V100)
   */
  readonly dtype?: 'auto' | 'bfloat16' | 'float16';
  /**
   * Serve LoRA adapters on top of the model (`--enable-lora`). Always on with inference components
   * that carry adapters.
   *
   * @default false (true when adapters are added)
   */
  readonly enableLora?: boolean;
  /**
   * LoRA adapters resident on the GPU at once (`--max-loras`).
   *
   * @default 4 when LoRA is enabled
   */
  readonly maxLoras?: number;
  /**
   * The highest LoRA rank an adapter may have (`--max-lora-rank`); an adapter of higher rank fails to load.
   *
   * @default 64 when LoRA is enabled
   */
  readonly maxLoraRank?: number;
  /**
   * The name clients put in the request's `model` field.
   *
   * @default - `baseModel` when given, otherwise 'model'
   */
  readonly servedModelName?: string;
  /**
   * More environment variables for the container (other `SM_VLLM_*` flags, `VLLM_*` settings).
   * They override Tuneyard's.
   *
   * @default - none
   */
  readonly environment?: Record<string, string>;
}

/** Serving the base model and LoRA adapters as inference components. */
export interface InferenceComponentOptions {
  /**
   * Copies of the base model the endpoint keeps at least. 0 lets the endpoint scale to zero
   * instances when idle (managed instance scaling down to 0); the first request after that fails
   * with a `NoCapacityInvocationFailures` error, which wakes it: expect several minutes of cold
   * start (an instance, the image pull, the weights download and vLLM's start) before requests
   * succeed again. Clients should retry.
   *
   * @default 1
   */
  readonly minCopies?: number;
  /**
   * The most copies autoscaling may reach; instances follow (one instance per
   * `GPUs / tensorParallelDegree` copies).
   *
   * @default max(minCopies, 1)
   */
  readonly maxCopies?: number;
  /**
   * Concurrent requests per copy that target tracking aims for
   * (`SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution`). vLLM batches
   * requests, so a copy serves many at once.
   *
   * @default 16
   */
  readonly targetConcurrentRequestsPerCopy?: number;
  /**
   * Host memory reserved per copy, in MiB (`MinMemoryRequiredInMb`): SageMaker places a copy only
   * on an instance with this much memory free. Synth fails when the copies that the instance's
   * GPUs hold would need all of its memory.
   *
   * @default - the copy's GPUs' part of three quarters of the instance's host memory (ml.g5.xlarge: 12288; ml.g5.12xlarge at tensor parallel 2: 73728), leaving the rest to the OS and SageMaker's agents
   */
  readonly minMemoryRequiredInMb?: number;
  /**
   * LoRA adapters to add as components: name → S3 location of the adapter `.tar.gz`. More can be
   * added with {@link VllmEndpoint.addAdapter}.
   *
   * @default - none
   */
  readonly adapters?: Record<string, S3Location>;
}

/** Autoscaling of the single-model form. */
export interface InstanceScalingOptions {
  /**
   * Instances the endpoint keeps at least (a single-model endpoint cannot scale to zero; use
   * inference components for that).
   *
   * @default 1
   */
  readonly minInstances?: number;
  /** The most instances. */
  readonly maxInstances: number;
  /**
   * Concurrent requests per model (instance) that target tracking aims for
   * (`SageMakerVariantConcurrentRequestsPerModelHighResolution`).
   *
   * @default 16, unless `targetInvocationsPerInstance` is set
   */
  readonly targetConcurrentRequestsPerModel?: number;
  /**
   * Track invocations per instance per minute instead (`SageMakerVariantInvocationsPerInstance`).
   *
   * @default - concurrent requests are tracked
   */
  readonly targetInvocationsPerInstance?: number;
}

/** Capturing requests and responses for monitoring and future training data. */
export interface DataCaptureOptions {
  /** Where captures go (for example the plane's data bucket). */
  readonly bucket: s3.IBucket;
  /**
   * The key prefix of captures.
   *
   * @default 'data-capture/'
   */
  readonly prefix?: string;
  /**
   * The key that encrypts captures.
   *
   * @default - the bucket's key (captures to a bucket without a customer-managed key are refused)
   */
  readonly encryptionKey?: kms.IKey;
  /**
   * The share of requests captured, in percent.
   *
   * @default 100
   */
  readonly samplingPercentage?: number;
}

/** Thresholds of the auto-rollback alarms. */
export interface RollbackAlarmOptions {
  /**
   * 5xx errors per minute that, two minutes running, roll a deployment back.
   *
   * @default 5
   */
  readonly max5xxErrorsPerMinute?: number;
  /**
   * p99 model latency that, three minutes running, rolls a deployment back. LLM requests are
   * long: set it from the longest completion you allow.
   *
   * @default Duration.seconds(60)
   */
  readonly maxModelLatencyP99?: Duration;
}

/** Properties of a {@link VllmEndpoint}. */
export interface VllmEndpointProps {
  /** The SageMaker GPU instance type, e.g. `ml.g5.2xlarge`. */
  readonly instanceType: string;
  /** The weights to serve: an uncompressed S3 folder or a registered model package. */
  readonly modelData: VllmModelData;
  /**
   * The Hugging Face id of the served model or its base (e.g. `meta-llama/Llama-3.1-8B-Instruct`).
   * The preflight reads the size and attention heads from it; it is also the default served model name.
   *
   * @default - the preflight uses `parametersBillions`/`attentionHeads`, and skips what they do not give (with a warning)
   */
  readonly baseModel?: string;
  /**
   * The model's parameter count in billions, when `baseModel` does not state it.
   *
   * @default - read from `baseModel`
   */
  readonly parametersBillions?: number;
  /**
   * The model's attention heads (`num_attention_heads` in config.json), when `baseModel` is not a known family.
   *
   * @default - from Tuneyard's table of known models
   */
  readonly attentionHeads?: number;
  /**
   * The serving image.
   *
   * @default VllmImage.dlc() - AWS's vLLM SageMaker DLC at the pinned {@link DEFAULT_VLLM_DLC_TAG}
   */
  readonly image?: VllmImage;
  /**
   * vLLM engine settings.
   *
   * @default - the defaults of {@link VllmEngineOptions}
   */
  readonly vllm?: VllmEngineOptions;
  /**
   * Serve the base model and LoRA adapters as inference components (many adapters on one fleet,
   * scale to zero). Without it the endpoint serves one model on `instanceCount` instances.
   *
   * @default - single-model endpoint
   */
  readonly inferenceComponents?: InferenceComponentOptions;
  /**
   * Instances of the single-model form.
   *
   * @default 1
   */
  readonly instanceCount?: number;
  /**
   * Target-tracking autoscaling of the single-model form.
   *
   * @default - no autoscaling (inference components always scale between minCopies and maxCopies)
   */
  readonly autoScaling?: InstanceScalingOptions;
  /**
   * How updates reach the endpoint. Inference components support rolling only.
   *
   * @default - blue/green all at once with 10 minutes of baking (single model); rolling half the copies per batch (inference components)
   */
  readonly deployment?: VllmDeployment;
  /**
   * Thresholds of the 5xx and latency alarms that roll deployments back.
   *
   * @default - the defaults of {@link RollbackAlarmOptions}
   */
  readonly rollbackAlarms?: RollbackAlarmOptions;
  /**
   * The InferenceAmiVersion of the variant: the host's NVIDIA driver and CUDA, which must serve
   * the image's CUDA. Synth fails when the image needs a newer driver than the AMI has (the vLLM
   * DLC v2.x tags need driver 580: `al2023-ami-sagemaker-inference-gpu-4-1`).
   *
   * @default - CUDA13_INFERENCE_AMI_VERSION for an image that needs driver 580 (vLLM DLC v2.x), otherwise DEFAULT_INFERENCE_AMI_VERSION
   */
  readonly inferenceAmiVersion?: string;
  /**
   * How long the container may take to pass its first health check (vLLM loads the weights and
   * captures CUDA graphs first).
   *
   * @default - 10 minutes plus 30 seconds per billion parameters, at most 60 minutes (30 minutes when the size is unknown)
   */
  readonly containerStartupHealthCheckTimeout?: Duration;
  /**
   * How long downloading the weights to the instance may take.
   *
   * @default - 10 minutes plus 15 seconds per billion parameters, at most 60 minutes (30 minutes when the size is unknown)
   */
  readonly modelDataDownloadTimeout?: Duration;
  /**
   * The VPC the model containers attach to. The containers run with network isolation either way
   * (no network calls in or out); in a VPC, SageMaker reaches S3 through the VPC's endpoints.
   *
   * @default - no VPC attachment
   */
  readonly vpc?: ec2.IVpc;
  /**
   * Subnets of `vpc`.
   *
   * @default - the VPC's isolated subnets (`ec2.SubnetType.PRIVATE_ISOLATED`): a VPC without any needs `vpcSubnets`
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /**
   * Security groups of the model containers in `vpc`.
   *
   * @default - a new group with no inbound rules and HTTPS outbound only
   */
  readonly securityGroups?: ec2.ISecurityGroup[];
  /**
   * The ID of the S3 managed prefix list (`com.amazonaws.<region>.s3`): the new security group then
   * allows HTTPS to S3 through the VPC's gateway endpoint, where the model's weights are read. A
   * token is fine (pass `PlaneNetwork.s3PrefixListId`). Ignored with `securityGroups`.
   *
   * @default - HTTPS to the VPC range only: S3 must be reachable through an interface endpoint
   */
  readonly s3PrefixListId?: string;
  /**
   * The key that encrypts the instances' ML storage volume. SageMaker refuses a volume key on
   * instance types with local NVMe storage (g4dn, g5, g6, g6e, p4d, p5 and others), whose instance
   * store is encrypted by the hardware: on those no key is set, whatever is given, and a warning
   * (`tuneyard:endpoint-kms-unsupported`) says so.
   *
   * @default - a new customer-managed key with rotation, on instance types that accept one
   */
  readonly encryptionKey?: kms.IKey;
  /**
   * Capture requests and responses (single-model form).
   *
   * @default - no capture
   */
  readonly dataCapture?: DataCaptureOptions;
  /**
   * The endpoint's name (clients call it). Fixed because the auto-rollback alarms watch it.
   *
   * @default - a name derived from the construct path
   */
  readonly endpointName?: string;
  /**
   * A topic the rollback alarms (and the scale-from-zero alarm) also notify.
   *
   * @default - the alarms only drive SageMaker's auto-rollback (and the scale-out policy)
   */
  readonly alarmTopic?: sns.ITopic;
  /**
   * The role SageMaker assumes to pull the image, read the weights, write logs and read the
   * auto-rollback alarms (`cloudwatch:DescribeAlarms`) during deployments.
   *
   * @default - a new role with exactly those permissions
   */
  readonly role?: iam.IRole;
}

const VARIANT_NAME = 'AllTraffic';
const NAME_PATTERN = /^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/;

/**
 * A SageMaker real-time endpoint serving a model with vLLM.
 *
 * Two forms:
 * - **Single model** (default): the model (merged weights or a base model) on `instanceCount`
 *   instances, target-tracking autoscaling on concurrent requests or invocations per instance.
 *   Clients call the endpoint by name; the body's `model` field is `servedModelName`.
 * - **Inference components** (`inferenceComponents`): the base model is one component, each LoRA
 *   adapter another (`addAdapter`), sharing the base's GPUs. Clients pick the adapter with the
 *   `InferenceComponentName` request parameter. With `minCopies: 0` the endpoint scales to zero
 *   instances when idle; the next request fails with `NoCapacityInvocationFailures` and wakes it
 *   (a step-scaling policy on that alarm adds a copy). **The cold start takes minutes**: a new
 *   instance, the image pull, the weights download and vLLM's start (CUDA graph capture); clients
 *   must retry with backoff or keep `minCopies` at 1 where latency matters.
 *
 * Deployments are blue/green (single model) or rolling (inference components) with
 * auto-rollback on two alarms this construct creates: 5xx errors and p99 model latency.
 *
 * The preflight fails synth when the model cannot fit: weights plus KV cache per GPU against the
 * share vLLM may use, and a tensor parallel degree that the instance's GPUs and the model's
 * attention heads allow.
 */
export class VllmEndpoint extends Construct {
  /** The endpoint. */
  public readonly endpoint: sagemaker.CfnEndpoint;
  /** The endpoint's name. */
  public readonly endpointName: string;
  /** The endpoint's ARN. */
  public readonly endpointArn: string;
  /** The production variant's name. */
  public readonly variantName: string = VARIANT_NAME;
  /** The SageMaker model (the vLLM container and its weights). */
  public readonly model: sagemaker.CfnModel;
  /** The endpoint configuration. */
  public readonly endpointConfig: sagemaker.CfnEndpointConfig;
  /** The role SageMaker assumes. */
  public readonly role: iam.IRole;
  /** The instance type. */
  public readonly instanceType: string;
  /** GPUs per model copy. */
  public readonly tensorParallelDegree: number;
  /** The key of the ML storage volume, when the instance type accepts one. */
  public readonly encryptionKey?: kms.IKey;
  /** The base model's inference component (inference-component form). */
  public readonly baseComponent?: sagemaker.CfnInferenceComponent;
  /** The base component's name (clients pass it as `InferenceComponentName` for the base model). */
  public readonly baseComponentName?: string;
  /** 5xx errors above the threshold: rolls deployments back. */
  public readonly invocation5xxAlarm: cloudwatch.Alarm;
  /** p99 model latency above the threshold: rolls deployments back. */
  public readonly modelLatencyAlarm: cloudwatch.Alarm;
  /** Requests that found no copy (scale to zero): wakes the endpoint. */
  public readonly noCapacityAlarm?: cloudwatch.Alarm;
  /** The scalable target (variant instances or base component copies), when autoscaling. */
  public readonly scalableTarget?: appscaling.ScalableTarget;
  /** The deployment strategy in effect. */
  public readonly deployment: VllmDeployment;
  /** The environment of the vLLM container. */
  public readonly environment: Readonly<Record<string, string>>;
  /** The InferenceAmiVersion of the variant. */
  public readonly inferenceAmiVersion: string;
  /** The production variant of the endpoint's first configuration (later deployments copy the described config instead). */
  public readonly productionVariant: sagemaker.CfnEndpointConfig.ProductionVariantProperty;
  /** The container image URI. */
  public readonly imageUri: string;
  /** The model's VPC configuration, when in a VPC. */
  public readonly modelVpcConfig?: sagemaker.CfnModel.VpcConfigProperty;

  private readonly adapterComponents = new Map<string, sagemaker.CfnInferenceComponent>();
  /** The fleet a deployment updates: instances (single model) or base copies (inference components). */
  private readonly fleet: FleetSize;
  private readonly createdRole?: iam.Role;
  /** Prefixes the role writes under (data capture), for the acknowledgement of their wildcards. */
  private readonly writePrefixes: S3Location[] = [];
  /** The network-interface, subnet and security-group patterns the role may use in the VPC (by the ec2:Vpc condition). */
  private vpcResources: string[] = [];

  constructor(scope: Construct, id: string, props: VllmEndpointProps) {
    super(scope, id);
    const ic = props.inferenceComponents;
    const engine = props.vllm ?? {};
    this.instanceType = props.instanceType;
    this.validate(props);

    // --- Preflight: does the model fit the instance? ---
    const maxModelLength = engine.maxModelLength ?? 8192;
    const gpuMemoryUtilization = engine.gpuMemoryUtilization ?? 0.9;
    const fit = checkServingFit(this, {
      instanceType: props.instanceType,
      modelName: props.baseModel,
      parametersBillions: props.parametersBillions,
      attentionHeads: props.attentionHeads,
      tensorParallelDegree: engine.tensorParallelDegree,
      maxModelLength,
      gpuMemoryUtilization,
    });
    if (fit.skipped.length) {
      Annotations.of(this).addWarningV2('tuneyard:serving-preflight-partial', `Part of the serving preflight was skipped: ${fit.skipped.join('; ')}.`);
    }
    if (engine.dtype === 'bfloat16' && fit.instance && !fit.instance.bf16) {
      throw new TuneyardValidationError(
        `dtype bfloat16 needs an Ampere or later GPU; ${fit.instance.instanceType} has ${fit.instance.gpuModel}. Use dtype 'float16' or 'auto', or a g5/g6/p4d instance.`,
        this,
      );
    }
    this.tensorParallelDegree = fit.tensorParallelDegree;
    const billions = fit.parametersBillions;

    // --- Role ---
    if (props.role) {
      this.role = props.role;
    } else {
      this.createdRole = new iam.Role(this, 'Role', {
        assumedBy: new iam.ServicePrincipal('sagemaker.amazonaws.com'),
        description: `SageMaker execution role of the vLLM endpoint ${this.node.path}`,
      });
      this.role = this.createdRole;
    }

    this.endpointName = props.endpointName ?? Names.uniqueResourceName(this, { maxLength: 63, separator: '-' });
    this.grantHostingPermissions();

    // --- Encryption of the ML storage volume, decided per instance type ---
    const nvme = fit.instance?.localNvme ?? false;
    if (nvme) {
      Annotations.of(this).addWarningV2(
        'tuneyard:endpoint-kms-unsupported',
        `${props.instanceType} has local NVMe instance storage, on which SageMaker refuses an endpoint KMS key (KmsKeyId); the instance store ` +
          'is encrypted by the hardware instead. No key is set on the endpoint configuration.',
      );
    } else {
      this.encryptionKey = props.encryptionKey ?? new kms.Key(this, 'Key', {
        description: `ML storage volume of the vLLM endpoint ${this.node.path}`,
        enableKeyRotation: true,
      });
      this.encryptionKey.grant(this.role, 'kms:Decrypt', 'kms:GenerateDataKey');
    }

    // --- Model ---
    const image = (props.image ?? VllmImage.dlc()).bind(this, this.role);
    const weights = props.modelData.bind(this, this.role);
    const enableLora = engine.enableLora ?? !!ic;
    const environment: Record<string, string> = {
      SM_VLLM_MODEL: '/opt/ml/model',
      SM_VLLM_SERVED_MODEL_NAME: engine.servedModelName ?? props.baseModel ?? 'model',
      SM_VLLM_TENSOR_PARALLEL_SIZE: String(this.tensorParallelDegree),
      SM_VLLM_MAX_MODEL_LEN: String(maxModelLength),
      SM_VLLM_GPU_MEMORY_UTILIZATION: String(gpuMemoryUtilization),
      SM_VLLM_DTYPE: engine.dtype ?? 'auto',
      ...(enableLora
        ? {
            SM_VLLM_ENABLE_LORA: 'true',
            SM_VLLM_MAX_LORAS: String(engine.maxLoras ?? 4),
            SM_VLLM_MAX_LORA_RANK: String(engine.maxLoraRank ?? 64),
          }
        : {}),
      // Adapter inference components load and unload LoRAs in the running server.
      ...(ic ? { VLLM_ALLOW_RUNTIME_LORA_UPDATING: 'True' } : {}),
      ...engine.environment,
    };
    this.environment = environment;
    const vpcConfig = this.vpcConfig(props);
    this.model = new sagemaker.CfnModel(this, 'Model', {
      executionRoleArn: this.role.roleArn,
      enableNetworkIsolation: true,
      primaryContainer: {
        ...(weights.container.modelPackageName ? {} : { image: image.imageUri }),
        modelDataSource: weights.container.modelDataSource,
        modelPackageName: weights.container.modelPackageName,
        environment,
      },
      vpcConfig,
    });
    this.model.node.addDependency(this.role);

    // --- Endpoint configuration ---
    this.inferenceAmiVersion = this.pairAmi(props.inferenceAmiVersion, image.imageUri, image.minimumNvidiaDriver);
    const startup = seconds(this, 'containerStartupHealthCheckTimeout', props.containerStartupHealthCheckTimeout, billions, 30);
    const download = seconds(this, 'modelDataDownloadTimeout', props.modelDataDownloadTimeout, billions, 15);
    const gpus = fit.instance?.gpus ?? this.tensorParallelDegree;
    const copiesPerInstance = Math.max(1, Math.floor(gpus / this.tensorParallelDegree));
    const minCopies = ic?.minCopies ?? 1;
    const maxCopies = ic?.maxCopies ?? Math.max(minCopies, 1);
    // A component is updated with at least one copy (it starts with one); a variant with its instance count or autoscaling range.
    const instances = props.autoScaling?.maxInstances ?? props.instanceCount ?? 1;
    this.fleet = ic
      ? { minimum: Math.max(1, minCopies), maximum: maxCopies }
      : { minimum: props.autoScaling?.minInstances ?? props.instanceCount ?? 1, maximum: instances };

    const variant: sagemaker.CfnEndpointConfig.ProductionVariantProperty = ic
      ? {
          variantName: VARIANT_NAME,
          instanceType: props.instanceType,
          initialInstanceCount: Math.max(1, Math.ceil(minCopies / copiesPerInstance)),
          inferenceAmiVersion: this.inferenceAmiVersion,
          managedInstanceScaling: {
            status: 'ENABLED',
            minInstanceCount: Math.ceil(minCopies / copiesPerInstance),
            maxInstanceCount: Math.max(1, Math.ceil(maxCopies / copiesPerInstance)),
          },
          routingConfig: { routingStrategy: 'LEAST_OUTSTANDING_REQUESTS' },
        }
      : {
          variantName: VARIANT_NAME,
          modelName: this.model.attrModelName,
          instanceType: props.instanceType,
          initialInstanceCount: props.instanceCount ?? props.autoScaling?.minInstances ?? 1,
          initialVariantWeight: 1,
          inferenceAmiVersion: this.inferenceAmiVersion,
          containerStartupHealthCheckTimeoutInSeconds: startup,
          modelDataDownloadTimeoutInSeconds: download,
          routingConfig: { routingStrategy: 'LEAST_OUTSTANDING_REQUESTS' },
        };
    this.productionVariant = variant;
    this.imageUri = image.imageUri;
    this.modelVpcConfig = vpcConfig;
    this.endpointConfig = new sagemaker.CfnEndpointConfig(this, 'EndpointConfig', {
      productionVariants: [variant],
      kmsKeyId: this.encryptionKey?.keyArn,
      ...(ic ? { executionRoleArn: this.role.roleArn } : {}),
      dataCaptureConfig: props.dataCapture ? this.dataCaptureConfig(props.dataCapture) : undefined,
    });
    if (nvme) {
      acknowledge(
        this.endpointConfig,
        inControlPacks(
          'SageMakerEndpointConfigurationKMSKeyConfigured',
          `${props.instanceType} has local NVMe instance storage: SageMaker refuses an endpoint KmsKeyId on it and encrypts the instance store in hardware.`,
        ),
      );
    }
    if (this.createdRole) this.endpointConfig.node.addDependency(this.createdRole);

    // --- Alarms that roll deployments back (they watch fixed names, so the endpoint can reference them) ---
    if (ic) this.baseComponentName = componentName(this, 'base');
    const rollback = props.rollbackAlarms ?? {};
    this.invocation5xxAlarm = new cloudwatch.Alarm(this, 'Invocation5xxAlarm', {
      alarmDescription: `5xx errors of the vLLM endpoint ${this.endpointName}; rolls deployments back.`,
      metric: this.metricInvocation5XXErrors({ period: Duration.minutes(1) }),
      threshold: rollback.max5xxErrorsPerMinute ?? 5,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 2,
      datapointsToAlarm: 2,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    const latency = rollback.maxModelLatencyP99 ?? Duration.seconds(60);
    this.modelLatencyAlarm = new cloudwatch.Alarm(this, 'ModelLatencyAlarm', {
      alarmDescription: `p99 model latency of the vLLM endpoint ${this.endpointName} above ${latency.toHumanString()}; rolls deployments back.`,
      metric: this.metricModelLatency({ statistic: 'p99', period: Duration.minutes(1) }),
      threshold: latency.toMilliseconds() * 1000, // ModelLatency is in microseconds
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    const alarmNames = [this.invocation5xxAlarm.alarmName, this.modelLatencyAlarm.alarmName];
    for (const alarm of [this.invocation5xxAlarm, this.modelLatencyAlarm]) this.notifyOrAcknowledge(alarm, props.alarmTopic);
    // SageMaker reads the auto-rollback alarms with the execution role (the model's, and the endpoint
    // config's for inference components) when an update starts and while it bakes.
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['cloudwatch:DescribeAlarms'], resources: [this.invocation5xxAlarm.alarmArn, this.modelLatencyAlarm.alarmArn] }),
    );

    // --- Endpoint ---
    this.deployment = props.deployment ?? (ic ? VllmDeployment.rolling() : VllmDeployment.allAtOnce());
    this.endpoint = new sagemaker.CfnEndpoint(this, 'Resource', {
      endpointName: this.endpointName,
      endpointConfigName: this.endpointConfig.attrEndpointConfigName,
      deploymentConfig: ic ? undefined : (toCfnProperties(this.deployment.renderForEndpoint(this, alarmNames, this.fleet)) as sagemaker.CfnEndpoint.DeploymentConfigProperty),
    });
    this.endpointArn = this.endpoint.attrEndpointArn;

    // --- Inference components ---
    if (ic) {
      this.baseComponent = new sagemaker.CfnInferenceComponent(this, 'BaseComponent', {
        inferenceComponentName: this.baseComponentName,
        endpointName: this.endpointName,
        variantName: VARIANT_NAME,
        specification: {
          modelName: this.model.attrModelName,
          startupParameters: { containerStartupHealthCheckTimeoutInSeconds: startup, modelDataDownloadTimeoutInSeconds: download },
          computeResourceRequirements: {
            numberOfAcceleratorDevicesRequired: this.tensorParallelDegree,
            minMemoryRequiredInMb: copyMemoryMb(this, fit.instance, this.tensorParallelDegree, ic.minMemoryRequiredInMb),
          },
        },
        // A component cannot be created with 0 copies: it starts with one and scales in to minCopies.
        runtimeConfig: { copyCount: Math.max(1, minCopies) },
        deploymentConfig: toCfnProperties(this.deployment.renderForInferenceComponent(this, alarmNames, this.fleet)) as sagemaker.CfnInferenceComponent.InferenceComponentDeploymentConfigProperty,
      });
      this.baseComponent.node.addDependency(this.endpoint);
      for (const [name, location] of Object.entries(ic.adapters ?? {})) this.addAdapter(name, location);
      this.scalableTarget = this.scaleComponents(minCopies, maxCopies, ic.targetConcurrentRequestsPerCopy ?? 16);
      if (minCopies === 0) this.noCapacityAlarm = this.wakeFromZero(this.scalableTarget);
    } else if (props.autoScaling) {
      this.scalableTarget = this.scaleInstances(props.autoScaling);
    }
    if (this.noCapacityAlarm && props.alarmTopic) this.noCapacityAlarm.addAlarmAction(new cwActions.SnsAction(props.alarmTopic));
    this.acknowledgeRoleFindings(weights.readPrefix, this.vpcResources);
  }

  /** The API-shaped DeploymentConfig that UpdateEndpoint (single model) or UpdateInferenceComponent takes. */
  public get apiDeploymentConfig(): ApiDeploymentConfig {
    const alarms = [this.invocation5xxAlarm.alarmName, this.modelLatencyAlarm.alarmName];
    return this.baseComponent ? this.deployment.renderForInferenceComponent(this, alarms, this.fleet) : this.deployment.renderForEndpoint(this, alarms, this.fleet);
  }

  /** Whether the endpoint serves inference components. */
  public get usesInferenceComponents(): boolean {
    return this.baseComponent !== undefined;
  }

  /**
   * Adds a LoRA adapter as an inference component on the base component. Clients call it with
   * `InferenceComponentName: <name>`.
   *
   * @param name the adapter component's name (1-63 letters, digits and hyphens), unique in the account and region
   * @param location the adapter's `.tar.gz` in S3 (adapter_config.json + adapter_model.safetensors at its root)
   */
  public addAdapter(name: string, location: S3Location): sagemaker.CfnInferenceComponent {
    if (!this.baseComponent || !this.baseComponentName) {
      throw new TuneyardValidationError(
        `addAdapter("${name}") needs the inference-component form. Set inferenceComponents: {} on the endpoint, or merge the adapter into the model and serve the merged weights.`,
        this,
      );
    }
    if (!Token.isUnresolved(name) && !NAME_PATTERN.test(name)) {
      throw new TuneyardValidationError(`adapter name "${name}" is invalid: use 1-63 letters, digits and hyphens, starting and ending with a letter or digit.`, this);
    }
    if (this.adapterComponents.has(name)) {
      throw new TuneyardValidationError(`adapter "${name}" is already on this endpoint; give each adapter its own name.`, this);
    }
    if (!Token.isUnresolved(location.key) && !location.key.endsWith('.tar.gz')) {
      throw new TuneyardValidationError(
        `adapter "${name}" at "${location.key}" is not a .tar.gz: SageMaker loads adapter components from a gzip tarball (ArtifactUrl). ` +
          'Pack the adapter folder (adapter_config.json, adapter_model.safetensors) as adapter.tar.gz and pass its key.',
        this,
      );
    }
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [location.bucket.arnForObjects(location.key)] }));
    location.bucket.encryptionKey?.grantDecrypt(this.role);
    const component = new sagemaker.CfnInferenceComponent(this, `Adapter${name.replace(/[^A-Za-z0-9]/g, '')}`, {
      inferenceComponentName: name,
      endpointName: this.endpointName,
      specification: {
        baseInferenceComponentName: this.baseComponentName,
        container: { artifactUrl: `s3://${location.bucket.bucketName}/${location.key}` },
      },
    });
    component.node.addDependency(this.baseComponent);
    this.adapterComponents.set(name, component);
    return component;
  }

  /** The names of the adapter components. */
  public get adapterNames(): string[] {
    return [...this.adapterComponents.keys()];
  }

  /** Lets a principal invoke the endpoint (and its components). */
  public grantInvoke(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['sagemaker:InvokeEndpoint', 'sagemaker:InvokeEndpointWithResponseStream'],
      resourceArns: [this.endpointArn, `${this.endpointArn}/*`],
    });
  }

  /** Requests (Sum). */
  public metricInvocations(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.invocationMetric('Invocations', { statistic: 'Sum', ...props });
  }

  /** Time the model took to answer, in microseconds, as SageMaker sees it (default: p99). */
  public metricModelLatency(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.invocationMetric('ModelLatency', { statistic: 'p99', ...props });
  }

  /** SageMaker's own overhead per request, in microseconds (default: p99). */
  public metricOverheadLatency(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.invocationMetric('OverheadLatency', { statistic: 'p99', ...props });
  }

  /** Requests the model answered with a 4xx (Sum). */
  public metricInvocation4XXErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.invocationMetric('Invocation4XXErrors', { statistic: 'Sum', ...props });
  }

  /** Requests the model answered with a 5xx (Sum). */
  public metricInvocation5XXErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.invocationMetric('Invocation5XXErrors', { statistic: 'Sum', ...props });
  }

  /**
   * Concurrent requests per model (single model: `ConcurrentRequestsPerModel`) or per copy
   * (inference components: `ConcurrentRequestsPerCopy`), the metrics target tracking scales on (Maximum).
   */
  public metricConcurrentRequests(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.invocationMetric(this.baseComponent ? 'ConcurrentRequestsPerCopy' : 'ConcurrentRequestsPerModel', { statistic: 'Maximum', ...props });
  }

  /**
   * GPU utilization (Average): `/aws/sagemaker/Endpoints` `GPUUtilization` per variant (percent of
   * one GPU, summed over GPUs), or `/aws/sagemaker/InferenceComponents` `GPUUtilizationNormalized`
   * of the base component.
   */
  public metricGpuUtilization(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.utilizationMetric(this.baseComponent ? 'GPUUtilizationNormalized' : 'GPUUtilization', props);
  }

  /** GPU memory utilization (Average), in the same namespaces as {@link metricGpuUtilization}. */
  public metricGpuMemoryUtilization(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.utilizationMetric(this.baseComponent ? 'GPUMemoryUtilizationNormalized' : 'GPUMemoryUtilization', props);
  }

  /** Requests that arrived while the base component had no copy (scale to zero), `AWS/SageMaker` (Sum). */
  public metricNoCapacityInvocationFailures(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    if (!this.baseComponentName) {
      throw new TuneyardValidationError('NoCapacityInvocationFailures is published for inference components only; this endpoint serves a single model.', this);
    }
    return new cloudwatch.Metric({
      namespace: 'AWS/SageMaker',
      metricName: 'NoCapacityInvocationFailures',
      dimensionsMap: { InferenceComponentName: this.baseComponentName },
      statistic: 'Sum',
      ...props,
    });
  }

  private invocationMetric(metricName: string, props: cloudwatch.MetricOptions): cloudwatch.Metric {
    return new cloudwatch.Metric({ namespace: 'AWS/SageMaker', metricName, dimensionsMap: this.dimensions(), ...props });
  }

  private utilizationMetric(metricName: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    const namespace = this.baseComponentName ? '/aws/sagemaker/InferenceComponents' : '/aws/sagemaker/Endpoints';
    return new cloudwatch.Metric({ namespace, metricName, dimensionsMap: this.dimensions(), statistic: 'Average', ...props });
  }

  private dimensions(): Record<string, string> {
    return this.baseComponentName
      ? { InferenceComponentName: this.baseComponentName }
      : { EndpointName: this.endpointName, VariantName: VARIANT_NAME };
  }

  /**
   * The variant's InferenceAmiVersion: given, or the one whose NVIDIA driver the image needs. Fails
   * when a known AMI's driver is older than the image needs (a CUDA 13 image on a driver 550 host
   * fails its health check only after the instances are paid for).
   */
  private pairAmi(given: string | undefined, imageUri: string, minimumDriver: number | undefined): string {
    if (given === undefined) return minimumDriver !== undefined && minimumDriver > INFERENCE_AMI_DRIVERS[DEFAULT_INFERENCE_AMI_VERSION] ? CUDA13_INFERENCE_AMI_VERSION : DEFAULT_INFERENCE_AMI_VERSION;
    const driver = Token.isUnresolved(given) ? undefined : INFERENCE_AMI_DRIVERS[given];
    if (minimumDriver !== undefined && driver !== undefined && driver < minimumDriver) {
      const fits = Object.entries(INFERENCE_AMI_DRIVERS).filter(([, d]) => d >= minimumDriver).map(([ami]) => ami);
      throw new TuneyardValidationError(
        `the image ${imageUri} needs NVIDIA driver ${minimumDriver} or later; inferenceAmiVersion ${given} has driver ${driver}. ` +
          `Use inferenceAmiVersion ${fits.map((ami) => `'${ami}'`).join(' or ')} (or leave it unset to get it), or a vLLM DLC tag of the v1.x series.`,
        this,
      );
    }
    return given;
  }

  private validate(props: VllmEndpointProps): void {
    const ic = props.inferenceComponents;
    if (props.endpointName !== undefined && !Token.isUnresolved(props.endpointName) && !NAME_PATTERN.test(props.endpointName)) {
      throw new TuneyardValidationError(`endpointName "${props.endpointName}" is invalid: use 1-63 letters, digits and hyphens.`, this);
    }
    if (ic) {
      if (props.instanceCount !== undefined || props.autoScaling) {
        throw new TuneyardValidationError(
          'instanceCount and autoScaling configure the single-model form; with inferenceComponents the copies scale (minCopies, maxCopies) and instances follow. Remove them.',
          this,
        );
      }
      if (props.dataCapture) {
        throw new TuneyardValidationError('dataCapture is supported on the single-model form only in Tuneyard; remove it or serve without inferenceComponents.', this);
      }
      const min = ic.minCopies ?? 1;
      const max = ic.maxCopies ?? Math.max(min, 1);
      if (!Number.isInteger(min) || min < 0 || !Number.isInteger(max) || max < 1 || max < min) {
        throw new TuneyardValidationError(`inference component copies must satisfy 0 <= minCopies <= maxCopies, maxCopies >= 1; got minCopies ${min}, maxCopies ${max}.`, this);
      }
    }
    const scaling = props.autoScaling;
    if (scaling) {
      const min = scaling.minInstances ?? 1;
      if (min < 1) {
        throw new TuneyardValidationError(
          `a single-model endpoint cannot scale to ${min} instances. Use inferenceComponents: { minCopies: 0 } to scale to zero, or minInstances >= 1.`,
          this,
        );
      }
      if (scaling.maxInstances < min) {
        throw new TuneyardValidationError(`autoScaling.maxInstances (${scaling.maxInstances}) is below minInstances (${min}).`, this);
      }
    }
    const util = props.vllm?.gpuMemoryUtilization;
    if (util !== undefined && !(util > 0 && util <= 1)) {
      throw new TuneyardValidationError(`vllm.gpuMemoryUtilization must be a fraction in (0, 1]; got ${util}. Use e.g. 0.9.`, this);
    }
  }

  private notifyOrAcknowledge(alarm: cloudwatch.Alarm, topic?: sns.ITopic): void {
    if (topic) {
      alarm.addAlarmAction(new cwActions.SnsAction(topic));
      return;
    }
    acknowledge(
      alarm,
      inControlPacks(
        'CloudWatchAlarmAction',
        "SageMaker's auto-rollback watches this alarm's state during deployments (DeploymentConfig.AutoRollbackConfiguration); no alarmTopic was given to notify.",
        ['HIPAA.Security', 'NIST.800.53.R5'],
      ),
    );
  }

  /** Acknowledges, one by one, the findings on the role that this construct creates. */
  private acknowledgeRoleFindings(readPrefix: S3Location | undefined, vpcResources: string[]): void {
    const policy = this.createdRole?.node.tryFindChild('DefaultPolicy');
    if (!policy) return;
    const stack = Stack.of(this);
    const wildcards: Array<[string, string]> = [
      [
        'Resource::*',
        'ecr:GetAuthorizationToken and cloudwatch:PutMetricData (limited to the SageMaker namespaces by condition)' +
          (vpcResources.length ? ' and the EC2 Describe calls SageMaker makes to attach to the VPC' : '') +
          ' have no resource-level permissions.',
      ],
      [
        `Resource::${nagResource(stack, `arn:${stack.partition}:logs:${stack.region}:${stack.account}:log-group:/aws/sagemaker/Endpoints/${this.endpointName}:*`)}`,
        "The log streams of this endpoint's own log group.",
      ],
    ];
    if (readPrefix) {
      wildcards.push([
        `Resource::${nagResource(stack, readPrefix.bucket.arnForObjects(`${readPrefix.key}*`))}`,
        'The objects of the model folder that SageMaker copies to /opt/ml/model (read only).',
      ]);
    }
    for (const arn of vpcResources) {
      wildcards.push([
        `Resource::${nagResource(stack, arn)}`,
        "SageMaker creates and deletes the model containers' network interfaces at run time, in subnets and security groups chosen by the VpcConfig; the ec2:Vpc condition limits them to the endpoint's VPC.",
      ]);
    }
    for (const capture of this.writePrefixes) {
      wildcards.push([`Resource::${nagResource(stack, capture.bucket.arnForObjects(`${capture.key}*`))}`, 'Data capture files that SageMaker writes under the capture prefix (write only).']);
    }
    for (const [finding, reason] of wildcards) Validations.of(policy).acknowledge({ id: `AwsSolutions-IAM5[${finding}]`, reason });
    acknowledge(
      policy,
      inControlPacks(
        'IAMNoInlinePolicy',
        "The statements belong to this endpoint's own execution role alone (nothing to share or version separately); each is scoped to the model's prefix, the image repository, the log group or a key.",
      ),
    );
  }

  private grantHostingPermissions(): void {
    const stack = Stack.of(this);
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
        resources: [
          stack.formatArn({ service: 'logs', resource: 'log-group', resourceName: `/aws/sagemaker/Endpoints/${this.endpointName}`, arnFormat: ArnFormat.COLON_RESOURCE_NAME }),
          stack.formatArn({ service: 'logs', resource: 'log-group', resourceName: `/aws/sagemaker/Endpoints/${this.endpointName}:*`, arnFormat: ArnFormat.COLON_RESOURCE_NAME }),
        ],
      }),
    );
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['cloudwatch:PutMetricData'],
        resources: ['*'],
        conditions: { StringLike: { 'cloudwatch:namespace': ['AWS/SageMaker', '/aws/sagemaker/*'] } },
      }),
    );
  }

  private vpcConfig(props: VllmEndpointProps): sagemaker.CfnModel.VpcConfigProperty | undefined {
    if (!props.vpc) {
      if (props.vpcSubnets || props.securityGroups) {
        throw new TuneyardValidationError('vpcSubnets and securityGroups need vpc; pass the VPC too.', this);
      }
      return undefined;
    }
    const groups = props.securityGroups ?? [
      new ec2.SecurityGroup(this, 'SecurityGroup', {
        vpc: props.vpc,
        description: `vLLM endpoint ${this.node.path}: no inbound; HTTPS out to the VPC endpoints`,
        allowAllOutbound: false,
      }),
    ];
    if (!props.securityGroups) {
      groups[0].addEgressRule(ec2.Peer.ipv4(props.vpc.vpcCidrBlock), ec2.Port.tcp(443), 'HTTPS to the VPC endpoints');
      // The model's weights come from S3: through a gateway endpoint, that is the S3 prefix list, not the VPC range.
      if (props.s3PrefixListId) groups[0].addEgressRule(ec2.Peer.prefixList(props.s3PrefixListId), ec2.Port.tcp(443), 'HTTPS to S3 through the gateway endpoint');
    }
    const subnets = props.vpc.selectSubnets(props.vpcSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_ISOLATED });
    this.vpcResources = grantVpcAttachment(this.role, props.vpc);
    return { subnets: subnets.subnetIds, securityGroupIds: groups.map((g) => g.securityGroupId) };
  }

  private dataCaptureConfig(capture: DataCaptureOptions): sagemaker.CfnEndpointConfig.DataCaptureConfigProperty {
    const key = capture.encryptionKey ?? capture.bucket.encryptionKey;
    if (!key) {
      throw new TuneyardValidationError(
        `data capture to ${capture.bucket.node.path} needs a KMS key: the bucket has none that Tuneyard knows. Pass dataCapture.encryptionKey, or a bucket with its encryptionKey.`,
        this,
      );
    }
    const sampling = capture.samplingPercentage ?? 100;
    if (!Number.isInteger(sampling) || sampling < 1 || sampling > 100) {
      throw new TuneyardValidationError(`dataCapture.samplingPercentage must be a whole number from 1 to 100; got ${sampling}.`, this);
    }
    let prefix = capture.prefix ?? 'data-capture/';
    if (!Token.isUnresolved(prefix) && !prefix.endsWith('/')) prefix = `${prefix}/`;
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['s3:PutObject'], resources: [capture.bucket.arnForObjects(`${prefix}*`)] }));
    this.writePrefixes.push({ bucket: capture.bucket, key: prefix });
    key.grant(this.role, 'kms:GenerateDataKey', 'kms:Encrypt');
    return {
      enableCapture: true,
      initialSamplingPercentage: sampling,
      destinationS3Uri: `s3://${capture.bucket.bucketName}/${prefix}${this.endpointName}`,
      kmsKeyId: key.keyArn,
      captureOptions: [{ captureMode: 'Input' }, { captureMode: 'Output' }],
      captureContentTypeHeader: { jsonContentTypes: ['application/json'] },
    };
  }

  private scaleInstances(scaling: InstanceScalingOptions): appscaling.ScalableTarget {
    const target = new appscaling.ScalableTarget(this, 'ScalableTarget', {
      serviceNamespace: appscaling.ServiceNamespace.SAGEMAKER,
      resourceId: `endpoint/${this.endpointName}/variant/${VARIANT_NAME}`,
      scalableDimension: 'sagemaker:variant:DesiredInstanceCount',
      minCapacity: scaling.minInstances ?? 1,
      maxCapacity: scaling.maxInstances,
    });
    target.node.addDependency(this.endpoint);
    if (scaling.targetInvocationsPerInstance !== undefined) {
      target.scaleToTrackMetric('InvocationsPerInstance', {
        predefinedMetric: appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
        targetValue: scaling.targetInvocationsPerInstance,
      });
    } else {
      target.scaleToTrackMetric('ConcurrentRequestsPerModel', {
        predefinedMetric: appscaling.PredefinedMetric.SAGEMAKER_VARIANT_CONCURRENT_REQUESTS_PER_MODEL_HIGH_RESOLUTION,
        targetValue: scaling.targetConcurrentRequestsPerModel ?? 16,
      });
    }
    return target;
  }

  private scaleComponents(minCopies: number, maxCopies: number, targetPerCopy: number): appscaling.ScalableTarget {
    const target = new appscaling.ScalableTarget(this, 'ScalableTarget', {
      serviceNamespace: appscaling.ServiceNamespace.SAGEMAKER,
      resourceId: `inference-component/${this.baseComponentName}`,
      scalableDimension: 'sagemaker:inference-component:DesiredCopyCount',
      minCapacity: minCopies,
      maxCapacity: maxCopies,
    });
    target.node.addDependency(this.baseComponent!);
    target.scaleToTrackMetric('ConcurrentRequestsPerCopy', {
      predefinedMetric: appscaling.PredefinedMetric.SAGEMAKER_INFERENCE_COMPONENT_CONCURRENT_REQUESTS_PER_COPY_HIGH_RESOLUTION,
      targetValue: targetPerCopy,
    });
    return target;
  }

  /**
   * Target tracking cannot leave zero copies (it divides by the copy count): a step policy on
   * NoCapacityInvocationFailures adds the first copy when a request arrives.
   */
  private wakeFromZero(target: appscaling.ScalableTarget): cloudwatch.Alarm {
    const wake = new appscaling.StepScalingAction(this, 'ScaleOutFromZero', {
      scalingTarget: target,
      adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
      metricAggregationType: appscaling.MetricAggregationType.MAXIMUM,
      cooldown: Duration.minutes(1),
    });
    wake.addAdjustment({ adjustment: 1, lowerBound: 0 });
    const alarm = new cloudwatch.Alarm(this, 'NoCapacityAlarm', {
      alarmDescription: `A request reached ${this.endpointName} while it had no copy of the model: scale out from zero.`,
      metric: this.metricNoCapacityInvocationFailures({ period: Duration.minutes(1) }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      datapointsToAlarm: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    alarm.addAlarmAction(new cwActions.ApplicationScalingAction(wake));
    return alarm;
  }
}

function componentName(scope: Construct, suffix: string): string {
  return `${Names.uniqueResourceName(scope, { maxLength: 63 - suffix.length - 1, separator: '-' })}-${suffix}`;
}

/** A timeout in seconds: given, or sized from the model (base + per billion), within SageMaker's 60-3600 s. */
function seconds(scope: Construct, prop: string, given: Duration | undefined, billions: number | undefined, perBillion: number): number {
  if (given) {
    const s = given.toSeconds();
    if (!Token.isUnresolved(s) && (s < 60 || s > 3600)) {
      throw new TuneyardValidationError(`${prop} must be 60-3600 seconds (SageMaker's range); got ${s}. Use e.g. Duration.minutes(30).`, scope);
    }
    return s;
  }
  if (billions === undefined) return 1800;
  return Math.min(3600, Math.round(600 + perBillion * billions));
}

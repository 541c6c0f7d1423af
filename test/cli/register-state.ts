import { CreateModelPackageCommand, CreateModelPackageCommandInput, CreateModelPackageCommandOutput, SageMakerClient } from '@aws-sdk/client-sagemaker';
import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { planRunStep, PlanRunEnvironment, registryLookups } from '../../constructs/fine-tuning-pipeline/handler/plan-run';
import { ModelRegistry } from '../../constructs/model-registry';
import type { RunPlan } from '../../lib/run-request';
import { TEST_ENV, testApp } from '../support/app';
import { definitionFromTemplate, runLocal } from '../support/local-sfn';

/** The serving image the registered packages name. */
export const REGISTER_IMAGE = '763104351884.dkr.ecr.us-east-1.amazonaws.com/vllm:server-sagemaker-cuda-v1.0';

/** PlanRun's environment on a plane with a data bucket named `bucketName` (override it) and no Deploy stage. */
export const PLAN_RUN_ENV: PlanRunEnvironment = {
  bucketName: 'tuneyard-data',
  volumeKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/volume',
  outputKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/output',
  allowHubModels: false,
  deployStage: false,
};

/** What ReadEvalReport leaves at `$.report` for the Register state (null: a figure the run did not measure). */
export type RegisteredReport = {
  readonly evalLossRatio: number | null;
  readonly forgettingIncrease: number | null;
};

/** A model package the pipeline's Register state registered on moto. */
export interface RegisteredRun {
  /** The CreateModelPackage request the Register state sent. */
  readonly sent: CreateModelPackageCommandInput;
  readonly arn: string;
  readonly plan: RunPlan;
}

/**
 * The pipeline's real Register state (ModelRegistry.registerState, synthesized, intrinsics resolved) for a registry
 * with `group`, run locally with its CreateModelPackage sent to `sagemaker` (moto): the model packages it registers carry
 * the lineage the pipeline writes, whatever keys the Register state has.
 */
export function registerState(group: string, sagemaker: SageMakerClient, env: PlanRunEnvironment) {
  const stack = new Stack(testApp(), 'Registry', { env: TEST_ENV });
  const registry = new ModelRegistry(stack, 'Registry', { modelPackageGroupName: group, inferenceImageUri: REGISTER_IMAGE });
  new sfn.StateMachine(stack, 'Register', { definitionBody: sfn.DefinitionBody.fromChainable(registry.registerState('Register')) });
  const definition = definitionFromTemplate(Template.fromStack(stack).toJSON());

  /**
   * Plans `request` as PlanRun does (a reward model ARN read from the registry on moto), then registers the run's
   * model with the Register state on that plan, its training job and `report`.
   */
  return async function register(request: object, report: RegisteredReport): Promise<RegisteredRun> {
    const event = { request };
    const planned = planRunStep(event, env, await registryLookups(event, sagemaker));
    let sent: CreateModelPackageCommandInput | undefined;
    const result = await runLocal(
      definition,
      // the state's input as Step Functions holds it: JSON
      JSON.parse(JSON.stringify({ ...planned, training: { TrainingJobName: planned.plan.trainingJobName }, report })),
      {
        Register: (input: CreateModelPackageCommandInput): Promise<CreateModelPackageCommandOutput> => {
          sent = input;
          return sagemaker.send(new CreateModelPackageCommand(input));
        },
      },
    );
    if (result.status !== 'SUCCEEDED' || result.requestErrors.length) {
      throw new Error(`the Register state failed: ${result.error ?? ''} ${result.cause ?? ''} ${result.requestErrors.join('; ')}`);
    }
    return { sent: sent!, arn: result.output.registration.ModelPackageArn, plan: planned.plan };
  };
}

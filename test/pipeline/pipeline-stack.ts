import { Stack, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { DatasetStore } from '../../constructs/dataset-store';
import { DatasetValidationFunction } from '../../constructs/dataset-validator';
import { FineTuningJob } from '../../constructs/fine-tuning-job';
import { FineTuningPipeline, FineTuningPipelineProps, IPipelineModelRegistry } from '../../constructs/fine-tuning-pipeline';
import { NotificationTopic } from '../../constructs/notification-topic';
import { TrainingImage } from '../../constructs/training-image';
import { TEST_ENV, testApp } from '../support/app';

/**
 * A stand-in for the model registry (tests only): a CreateModelPackage task reading the plan's
 * lineage and the report, with its result at `$.registration`.
 */
export class RegistryStandIn extends Construct implements IPipelineModelRegistry {
  public registerState(id: string): sfn.CustomState {
    return new sfn.CustomState(this, id, {
      stateJson: {
        Type: 'Task',
        Resource: `arn:${Stack.of(this).partition}:states:::aws-sdk:sagemaker:createModelPackage`,
        Parameters: {
          ModelPackageGroupName: 'tuneyard-models',
          'CustomerMetadataProperties.$': '$.plan.lineage',
          'ModelApprovalStatus.$': "States.Format('{}', $.plan.autoApprove)",
          'EvalReport.$': '$.report.reportUri',
        },
        ResultPath: '$.registration',
        TimeoutSeconds: 300,
      },
    });
  }

  public grantRegister(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({ grantee, actions: ['sagemaker:CreateModelPackage'], resourceArns: ['arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard-models/*'] });
  }
}

/** A stack with the pipeline and the real constructs around it (the registry stood in). */
export function pipelineStack(overrides: Partial<FineTuningPipelineProps> = {}) {
  const stack = new Stack(testApp(), 'Pipeline', { env: TEST_ENV });
  const store = new DatasetStore(stack, 'Store');
  const vpc = new ec2.Vpc(stack, 'Vpc', { natGateways: 0, subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
  vpc.addFlowLog('FlowLogs');
  Validations.of(vpc).acknowledge({ id: 'AwsSolutions-VPC7', reason: 'Test VPC: the flow log goes to CloudWatch Logs (the rule looks for another form).' });
  for (const pack of ['HIPAA.Security', 'NIST.800.53.R5', 'PCI.DSS.321']) {
    for (const rule of ['IAMNoInlinePolicy', 'CloudWatchLogGroupEncrypted']) Validations.of(vpc).acknowledge({ id: `${pack}-${rule}`, reason: 'The test VPC flow log (the plane uses PlaneNetwork).' });
  }
  const trainingJob = new FineTuningJob(stack, 'Jobs', {
    store,
    vpc,
    s3PrefixListId: 'pl-12345678',
    image: TrainingImage.fromImageUri('123456789012.dkr.ecr.us-east-1.amazonaws.com/tuneyard-trainer:test'),
  });
  const validator = new DatasetValidationFunction(stack, 'Validator', { store });
  const topic = new NotificationTopic(stack, 'Topic');
  const pipeline = new FineTuningPipeline(stack, 'Pipeline', {
    store,
    trainingJob,
    registry: new RegistryStandIn(stack, 'Registry'),
    datasetValidator: validator.function,
    topic: topic.topic,
    planSettings: {
      bucketName: 'data-bucket',
      volumeKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/volume',
      outputKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/output',
      allowHubModels: false,
    },
    ...overrides,
  });
  Validations.of(pipeline.role.node.findChild('DefaultPolicy')).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard-models/*]',
    reason: 'The registry stand-in of these tests.',
  });
  return { stack, store, pipeline, topic };
}

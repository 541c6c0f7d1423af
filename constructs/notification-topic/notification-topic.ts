import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';

/** Properties of a {@link NotificationTopic}. */
export interface NotificationTopicProps {
  /**
   * The KMS key that encrypts the topic's messages at rest.
   *
   * A given key must allow the services that publish (Step Functions through the pipeline's
   * role, CloudWatch alarms) to use it; `allowCloudWatchAlarms` adds that grant on a key it can edit.
   *
   * @default - a new customer-managed key with yearly automatic rotation
   */
  readonly encryptionKey?: kms.IKey;

  /**
   * A display name for SMS and email subscriptions.
   *
   * @default 'Tuneyard'
   */
  readonly displayName?: string;

  /**
   * Let CloudWatch alarms of this account publish to the topic (alarm actions), including the
   * use of the key.
   *
   * @default true
   */
  readonly allowCloudWatchAlarms?: boolean;

  /**
   * What happens to a key this construct creates when it leaves the stack.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * The plane's notifications: run outcomes from the pipeline and alarm actions, on one SNS topic
 * encrypted with a KMS key, whose policy denies every publish that does not use TLS.
 */
export class NotificationTopic extends Construct {
  /** The topic. */
  public readonly topic: sns.ITopic;
  /** The key that encrypts the topic. */
  public readonly encryptionKey: kms.IKey;

  constructor(scope: Construct, id: string, props: NotificationTopicProps = {}) {
    super(scope, id);
    this.encryptionKey =
      props.encryptionKey ??
      new kms.Key(this, 'Key', {
        description: 'Tuneyard notifications (SNS topic encryption)',
        enableKeyRotation: true,
        removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
      });
    const topic = new sns.Topic(this, 'Resource', {
      displayName: props.displayName ?? 'Tuneyard',
      masterKey: this.encryptionKey,
      // Adds the topic policy statement that denies sns:Publish when aws:SecureTransport is false.
      enforceSSL: true,
    });
    if (props.allowCloudWatchAlarms ?? true) {
      const cloudwatch = new iam.ServicePrincipal('cloudwatch.amazonaws.com');
      topic.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'AllowCloudWatchAlarms',
          principals: [cloudwatch],
          actions: ['sns:Publish'],
          resources: [topic.topicArn],
          conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } },
        }),
      );
      // A key policy edit is a no-op on an imported key; its owner must grant CloudWatch themselves.
      this.encryptionKey.grant(cloudwatch, 'kms:Decrypt', 'kms:GenerateDataKey');
    }
    this.topic = topic;
  }

  /** The topic's ARN. */
  public get topicArn(): string {
    return this.topic.topicArn;
  }

  /** Permission to publish to the topic, including the use of its key. */
  public grantPublish(grantee: iam.IGrantable): iam.Grant {
    const grant = this.topic.grantPublish(grantee);
    this.encryptionKey.grant(grantee, 'kms:Decrypt', 'kms:GenerateDataKey');
    return grant;
  }
}

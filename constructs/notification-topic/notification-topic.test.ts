import * as iam from 'aws-cdk-lib/aws-iam';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { complianceFindings, testStack } from '../../test/support/app';
import { NotificationTopic } from './notification-topic';

describe('NotificationTopic', () => {
  test('encrypts the topic with a new rotating key and denies publishes without TLS', () => {
    // GIVEN
    const stack = testStack();
    // WHEN
    new NotificationTopic(stack, 'Topic');
    // THEN
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Action: 'sns:Publish', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          Match.objectLike({ Effect: 'Allow', Action: 'sns:Publish', Principal: { Service: 'cloudwatch.amazonaws.com' } }),
        ]),
      },
    });
    expect(complianceFindings(stack)).toEqual([]);
  });

  test('grantPublish allows sns:Publish and the key', () => {
    const stack = testStack();
    const topic = new NotificationTopic(stack, 'Topic');
    const role = new iam.Role(stack, 'Publisher', { assumedBy: new iam.ServicePrincipal('states.amazonaws.com') });
    topic.grantPublish(role);
    const statements = Template.fromStack(stack).findResources('AWS::IAM::Policy');
    const actions = Object.values(statements).flatMap((p: any) => p.Properties.PolicyDocument.Statement.flatMap((s: any) => [s.Action].flat()));
    expect(actions).toEqual(expect.arrayContaining(['sns:Publish', 'kms:Decrypt', 'kms:GenerateDataKey']));
  });
});

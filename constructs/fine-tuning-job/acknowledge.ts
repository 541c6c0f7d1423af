import { Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { IConstruct } from 'constructs';

/** A policy resource as cdk-nag names it in an IAM5 finding (intrinsics flattened to `<Id.Attr>`, `<AWS::Partition>`). */
export function nagResource(stack: Stack, arn: string): string {
  const visit = (node: unknown): string => {
    if (typeof node === 'string') return node;
    const o = node as Record<string, unknown>;
    if (o['Fn::Join']) {
      const [delimiter, items] = o['Fn::Join'] as [string, unknown[]];
      return items.map(visit).join(delimiter);
    }
    if (o['Fn::GetAtt']) {
      const [resource, attribute] = o['Fn::GetAtt'] as [unknown, unknown];
      return `<${visit(resource)}.${visit(attribute)}>`;
    }
    if (o.Ref) return `<${visit(o.Ref)}>`;
    return JSON.stringify(node);
  };
  return visit(stack.resolve(arn));
}

/**
 * Acknowledges findings on the policy that a grant to `grantee` went into: the default policy of a
 * role created in this app (imported roles and other principals have no policy here to mark).
 */
export function acknowledgeOnGrantee(grantee: iam.IGrantable, findings: Record<string, string>): void {
  const principal = grantee.grantPrincipal as unknown as Partial<IConstruct>;
  const policy = principal.node?.tryFindChild('DefaultPolicy');
  if (!policy) return;
  for (const [id, reason] of Object.entries(findings)) Validations.of(policy).acknowledge({ id, reason });
}

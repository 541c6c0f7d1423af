import { App, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks, HIPAASecurityChecks, NagPack, NIST80053R5Checks, PCIDSS321Checks } from 'cdk-nag';
import { IConstruct } from 'constructs';

/** The compliance packs every Tuneyard stack must pass. */
export function compliancePacks(scope: IConstruct): NagPack[] {
  return [new AwsSolutionsChecks(scope), new HIPAASecurityChecks(scope), new NIST80053R5Checks(scope), new PCIDSS321Checks(scope)];
}

/** Registers the packs on an app, so any unacknowledged finding fails `cdk synth`. */
export function addCompliancePacks(app: App): void {
  Validations.of(app).addPlugins(...compliancePacks(app));
}

/** The packs whose rules share names: their findings read `<pack>-<rule>`. */
export const CONTROL_PACKS = ['HIPAA.Security', 'NIST.800.53.R5', 'PCI.DSS.321'] as const;

/** `{ '<pack>-<rule>': reason }` for one rule of the control packs (all three, unless `packs` narrows them). */
export function inControlPacks(rule: string, reason: string, packs: readonly string[] = CONTROL_PACKS): Record<string, string> {
  return Object.fromEntries(packs.map((pack) => [`${pack}-${rule}`, reason]));
}

/** Acknowledges each finding (id → reason) on `scope` and what it contains; nothing when there is no scope. */
export function acknowledge(scope: IConstruct | undefined, findings: Record<string, string>): void {
  if (!scope) return;
  for (const [id, reason] of Object.entries(findings)) Validations.of(scope).acknowledge({ id, reason });
}

/**
 * A policy resource as cdk-nag names it in an IAM5 finding (intrinsics flattened to `<Id.Attr>`,
 * `<AWS::Partition>`; `${...}` of an Fn::Sub string to `<...>`).
 */
export function nagResource(stack: Stack, arn: string): string {
  const visit = (node: unknown): string => {
    if (typeof node === 'string') return node.replace(/\$\{/g, '<').replace(/}/g, '>');
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
 * Acknowledges findings where a grant to `grantee` lands: the role's default policy, or the role
 * itself (and so its future default policy) when the policy is not created yet. Imported roles and
 * other principals have nothing in this app to mark.
 */
export function acknowledgeOnGrantee(grantee: iam.IGrantable, findings: Record<string, string>): void {
  const principal = grantee.grantPrincipal as unknown as Partial<IConstruct>;
  if (!principal.node) return;
  const target = principal.node.tryFindChild('DefaultPolicy') ?? (principal as IConstruct);
  for (const [id, reason] of Object.entries(findings)) Validations.of(target).acknowledge({ id, reason });
}

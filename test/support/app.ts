import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { compliancePacks } from '../../lib/nag';

const CDK_JSON_CONTEXT = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'cdk.json'), 'utf8')).context as Record<string, unknown>;

/** The environment every test stack uses, so templates do not depend on the machine. */
export const TEST_ENV = { account: '123456789012', region: 'us-east-1' };

/**
 * An App with the project's feature flags (from cdk.json), no bundling, and output kept out of the tree.
 */
export function testApp(context: Record<string, unknown> = {}): App {
  return new App({
    context: { ...CDK_JSON_CONTEXT, 'aws:cdk:bundling-stacks': [], ...context },
  });
}

/** A stack in a test app with the fixed test environment. */
export function testStack(id = 'Test'): Stack {
  return new Stack(testApp(), id, { env: TEST_ENV });
}

/** Every unacknowledged finding of the four compliance packs, as "rule at path" lines. */
export function complianceFindings(stack: Stack): string[] {
  return compliancePacks(stack.node.root).flatMap((pack) =>
    pack
      .validateScope(stack)
      .violations.flatMap((v) => v.violatingResources.map((r) => `${v.ruleName} at ${r.resourceLogicalId ?? r.locations.join(',')}`)),
  );
}

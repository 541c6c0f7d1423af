import { App, Validations } from 'aws-cdk-lib';
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

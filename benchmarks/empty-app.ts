// The floor for the synth benchmark: one empty stack, the same runner (tsx), CLI and App options as bin/app.ts.
import { App, Stack } from 'aws-cdk-lib';

const app = new App({ builtinCloudFormationValidation: false });
new Stack(app, 'Empty');
app.synth();

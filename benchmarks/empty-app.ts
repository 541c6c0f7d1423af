// The floor for the synth benchmark: one empty stack, the same runner (tsx) and CLI as bin/app.ts.
import { App, Stack } from 'aws-cdk-lib';

const app = new App();
new Stack(app, 'Empty');
app.synth();

// A plain JavaScript CDK app: tuneyard by name with require(), one DatasetStore, synthesized into the
// folder given as the first argument. test/consumer/run.js runs it against the installed package.
const { App, Stack } = require('aws-cdk-lib');
const { DatasetStore } = require('tuneyard');

const app = new App({ outdir: process.argv[2] });
const stack = new Stack(app, 'Datasets', { env: { account: '111122223333', region: 'eu-west-1' } });
const store = new DatasetStore(stack, 'Data');
const template = app.synth().getStackByName(stack.stackName).template;
const buckets = Object.values(template.Resources).filter((r) => r.Type === 'AWS::S3::Bucket');
if (buckets.length === 0 || !store.bucket.bucketName) throw new Error('the DatasetStore synthesized no bucket');
console.log(`js-app: DatasetStore synthesized (${buckets.length} buckets)`);

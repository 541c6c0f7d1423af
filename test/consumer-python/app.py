"""A Python CDK app that composes Tuneyard's constructs from the wheel jsii-pacmak builds.

An imported (encrypted) bucket with a DatasetStore on it, the plane's network, one fine-tuning
pipeline (its training job given for a default recipe, the rest its defaults) and one vLLM
endpoint that the pipeline deploys to. It synthesizes with a fixed environment and the repository's feature
flags, runs the four cdk-nag packs over the stack, prints every finding and exits 1 on any.

Run by run.sh: python app.py <outdir> <cdk.json>
"""

import json
import sys
import time

STARTED = time.monotonic()

import aws_cdk as cdk  # noqa: E402 (imports are timed)
from aws_cdk import aws_kms as kms  # noqa: E402
from aws_cdk import aws_s3 as s3  # noqa: E402
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks, PCIDSS321Checks  # noqa: E402

import tuneyard  # noqa: E402

ENV = cdk.Environment(account="123456789012", region="us-east-1")


def compose(stack: cdk.Stack) -> None:
    key = kms.Key.from_key_arn(stack, "DataKey", "arn:aws:kms:us-east-1:123456789012:key/1111aaaa-22bb-33cc-44dd-555555eeeeee")
    bucket = s3.Bucket.from_bucket_attributes(stack, "DataBucket", bucket_name="team-ml-data", encryption_key=key)
    store = tuneyard.DatasetStore(stack, "DataStore", bucket=bucket, encryption_key=key)
    network = tuneyard.PlaneNetwork(stack, "Network")

    endpoint = tuneyard.VllmEndpoint(
        stack,
        "Endpoint",
        instance_type="ml.g5.2xlarge",
        base_model="meta-llama/Llama-3.1-8B-Instruct",
        model_data=tuneyard.VllmModelData.from_s3_prefix(store.bucket, "artifacts/run-1/model/full/"),
        vpc=network.vpc,
        s3_prefix_list_id=network.s3_prefix_list_id,
    )
    # The training job is given only for its default recipe (checked at synth); registry, validator
    # and topic are the pipeline's defaults.
    job = tuneyard.FineTuningJob(
        stack,
        "TrainingJob",
        store=store,
        vpc=network.vpc,
        s3_prefix_list_id=network.s3_prefix_list_id,
        job_name_prefix="teama-",
        default_recipe=tuneyard.DefaultRecipe(
            recipe=tuneyard.Recipe(method="qlora", lora_r=16, target_modules=["q_proj", "v_proj"]),
            base_model="meta-llama/Llama-3.1-8B-Instruct",
        ),
    )
    tuneyard.FineTuningPipeline(
        stack,
        "Pipeline",
        store=store,
        training_job=job,
        deploy_stage=tuneyard.VllmDeployStage(endpoint=endpoint),
        vpc=network.vpc,
    )


def lap(what: str, since: float) -> float:
    now = time.monotonic()
    print(f"{what}: {now - since:.1f} s")
    return now


def main(outdir: str, cdk_json: str) -> int:
    t = lap("imports (jsii runtime, aws-cdk-lib, cdk-nag, tuneyard)", STARTED)
    with open(cdk_json, encoding="utf-8") as f:
        flags = json.load(f)["context"]
    # As bin/app.ts: no built-in template validation (~2.5 s); cdk-nag runs below.
    app = cdk.App(outdir=outdir, context={**flags, "aws:cdk:bundling-stacks": []}, builtin_cloud_formation_validation=False)
    stack = cdk.Stack(app, "PythonConsumer", env=ENV)
    compose(stack)
    t = lap("compose", t)
    assembly = app.synth()
    template = assembly.get_stack_artifact(stack.artifact_id).template
    t = lap(f"synth ({len(template['Resources'])} resources)", t)

    findings = []
    for pack in (AwsSolutionsChecks(app), HIPAASecurityChecks(app), NIST80053R5Checks(app), PCIDSS321Checks(app)):
        for violation in pack.validate_scope(stack).violations:
            for resource in violation.violating_resources:
                where = resource.resource_logical_id or ",".join(resource.locations)
                findings.append(f"{violation.rule_name} at {where}")
    lap("cdk-nag", t)
    for finding in findings:
        print(f"finding: {finding}")
    print(f"cdk-nag (AwsSolutions, HIPAA, NIST 800-53 R5, PCI DSS 3.2.1): {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

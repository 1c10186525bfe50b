"""The template as CloudFormation sees it: `template.yaml` through the SAM translator (the
same `samtranslator` that `sam deploy` runs), with the given parameter values, printed as
JSON. No AWS call is made: the managed policies SAM attaches are named from a fixed map.

    python tests/iam/transform.py '{"VpcSubnetIds": ""}' < template.yaml
"""
import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class Policies:
    """The managed policies SAM may attach, by name (what the IAM lookup would return)."""

    NAMES = [
        "AWSLambdaBasicExecutionRole",
        "AWSLambdaVPCAccessExecutionRole",
        "AWSXrayWriteOnlyAccess",
        "AWSLambdaRole",
    ]

    def load(self):
        return {n: f"arn:aws:iam::aws:policy/service-role/{n}" for n in self.NAMES}


os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
params = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
template = yaml_parse(sys.stdin.read())
# What `sam package` does first: local code becomes an S3 object.
for resource in template.get("Resources", {}).values():
    props = resource.get("Properties", {})
    if resource.get("Type") == "AWS::Serverless::Function" and "CodeUri" in props:
        props["CodeUri"] = "s3://packaged/code.zip"
out = transform(template, params, Policies())
print(json.dumps(out))

"""The template as CloudFormation sees it: `template.yaml` through the
AWS::LanguageExtensions transform (SAM CLI's own port of it, which `sam build` and `sam
validate` run: Fn::ForEach makes each stream's resources) and then the SAM translator (the
same `samtranslator` that `sam deploy` runs), with the given parameter values, printed as
JSON. No AWS call is made: the managed policies SAM attaches are named from a fixed map.

    python tests/iam/transform.py '{"VpcSubnetIds": "", "Streams": "users,orders"}' < template.yaml

With --for-each-only, the template after Fn::ForEach alone (SAM's resources untranslated).
"""
import json
import os
import sys

from samcli.lib.cfn_language_extensions.api import create_default_intrinsic_resolver
from samcli.lib.cfn_language_extensions.models import ResolutionMode, TemplateProcessingContext
from samcli.lib.cfn_language_extensions.pipeline import ProcessingPipeline
from samcli.lib.cfn_language_extensions.processors import ForEachProcessor, TemplateParsingProcessor
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


def for_each(template, params):
    """Fn::ForEach expanded by SAM CLI's port of the AWS::LanguageExtensions transform, and
    nothing else resolved (its full pipeline also resolves Fn::Sub partially, into plain
    strings that still hold ${...}: fine for a local build, not what CloudFormation sees)."""
    context = TemplateProcessingContext(
        fragment=template, parameter_values=params, resolution_mode=ResolutionMode.PARTIAL
    )
    resolver = create_default_intrinsic_resolver(context)
    pipeline = ProcessingPipeline([TemplateParsingProcessor(), ForEachProcessor(intrinsic_resolver=resolver)])
    out = pipeline.process_template(context)
    out["Transform"] = [t for t in out["Transform"] if t != "AWS::LanguageExtensions"]
    return out


os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for_each_only = "--for-each-only" in sys.argv
args = [a for a in sys.argv[1:] if a != "--for-each-only"]
params = json.loads(args[0]) if args else {}
template = for_each(yaml_parse(sys.stdin.read()), params)
if for_each_only:
    print(json.dumps(template))
    sys.exit(0)
# What `sam package` does first: local code becomes an S3 object.
for resource in template.get("Resources", {}).values():
    props = resource.get("Properties", {})
    if resource.get("Type") == "AWS::Serverless::Function" and "CodeUri" in props:
        props["CodeUri"] = "s3://packaged/code.zip"
    if resource.get("Type") == "AWS::Serverless::LayerVersion" and "ContentUri" in props:
        props["ContentUri"] = "s3://packaged/layer.zip"
out = transform(template, params, Policies())
print(json.dumps(out))

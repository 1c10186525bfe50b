"""What `sam build` reads before it builds: the project's samconfig.toml (as the SAM CLI
reads it) and the template's stacks as the SAM CLI's stack provider loads them — with the
language extensions flag that file gives the build command, then without it.

    python tests/sam/stacks.py '{"Streams": "users,companies"}'

prints {"build_language_extensions": …, "with": {"functions": […], "resources": N} or
{"error": …}, "without": …}.
"""
import json
import os
import sys

from samcli.lib.config.samconfig import SamConfig
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
params = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
os.chdir(root)
config = SamConfig(root).get_all(["build"], "parameters")
flag = bool(config.get("language_extensions", False))


def load(enabled):
    try:
        stacks, _ = SamLocalStackProvider.get_stacks(
            "template.yaml", parameter_overrides=params, language_extensions_enabled=enabled
        )
    except Exception as e:  # what `sam build` would print
        return {"error": f"{type(e).__name__}: {e}"}
    resources = stacks[0].resources
    return {
        "functions": sorted(k for k, v in resources.items() if v.get("Type") == "AWS::Serverless::Function"),
        "resources": sorted(resources),
    }


print(json.dumps({"build_language_extensions": flag, "with": load(flag), "without": load(False)}))

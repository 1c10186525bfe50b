"""The statements `template.yaml` grants the sync function, as CloudFormation will see them
(through the SAM translator, see transform.py), with the stack's names filled in:

    python tests/iam/policy.py '{"ApiAuthSecretArn": "arn:…"}' '{"table": "state-1", "bucket": "lake-1"}'

prints {"managed": [ARN, …], "statements": [{"Action": […], "Resource": […], "Condition": …}],
"environment": {VAR: value}, "layers": [...]} for the function's role (and the function): its inline policies and every AWS::IAM::Policy attached to it, each
kept only where its condition holds for the given parameters. Names: `table`, `bucket` (may
hold `*` patterns), `queue`, `account`, `region`, `stack`.
"""
import json
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
params = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
names = {"table": "state", "bucket": "lake", "queue": "dlq", "account": "123456789012",
         "region": "us-east-1", "stack": "replay-sync"}
names.update(json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})

with open(os.path.join(here, "..", "..", "template.yaml")) as f:
    out = subprocess.run([sys.executable, os.path.join(here, "transform.py"), json.dumps(params)],
                         input=f.read(), capture_output=True, text=True, check=True).stdout
t = json.loads(out)
values = {k: v.get("Default", "") for k, v in t.get("Parameters", {}).items()}
values.update(params)
# A list parameter is a list where it is referenced (its value is "a,b").
for k, v in t.get("Parameters", {}).items():
    if v.get("Type") == "CommaDelimitedList" and isinstance(values[k], str):
        values[k] = [x.strip() for x in values[k].split(",")]
n = names
attrs = {
    ("StateTable", "Arn"): f"arn:aws:dynamodb:{n['region']}:{n['account']}:table/{n['table']}",
    ("OutputBucket", "Arn"): f"arn:aws:s3:::{n['bucket']}",
    ("DeadLetterQueue", "Arn"): f"arn:aws:sqs:{n['region']}:{n['account']}:{n['queue']}",
}
refs = {"StateTable": n["table"], "OutputBucket": n["bucket"], "AWS::Region": n["region"],
        "SyncLogGroup": "log-group", "StreamsLayer": "streams-layer", "AlarmTopic": "topic",
        "AWS::AccountId": n["account"], "AWS::StackName": n["stack"], "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com"}
NOVALUE = object()


def condition(name):
    return resolve(t["Conditions"][name])


def resolve(v):
    if isinstance(v, list):
        return [x for x in (resolve(i) for i in v) if x is not NOVALUE]
    if not isinstance(v, dict):
        return v
    if len(v) == 1:
        (k, a), = v.items()
        if k == "Ref":
            if a == "AWS::NoValue":
                return NOVALUE
            if a.startswith("StreamsLayer"):  # SAM names a layer's versions with a hash
                return "streams-layer"
            return refs[a] if a in refs else values[a]
        if k == "Fn::GetAtt":
            a = a.split(".") if isinstance(a, str) else a
            return attrs[tuple(a)]
        if k == "Fn::Sub":
            text, local = (a, {}) if isinstance(a, str) else (a[0], resolve(a[1]))
            out, i = "", 0
            while i < len(text):
                j = text.find("${", i)
                if j < 0:
                    out += text[i:]
                    break
                end = text.index("}", j)
                name = text[j + 2:end]
                out += text[i:j]
                if name in local:
                    out += str(local[name])
                elif "." in name:
                    out += attrs[tuple(name.split(".", 1))]
                else:
                    out += str(refs[name] if name in refs else values[name])
                i = end + 1
            return out
        if k == "Fn::If":
            return resolve(a[1] if condition(a[0]) else a[2])
        if k == "Fn::Equals":
            x, y = resolve(a)
            return str(x) == str(y)
        if k == "Fn::Not":
            return not resolve(a[0])
        if k == "Fn::And":
            return all(resolve(a))
        if k == "Fn::Or":
            return any(resolve(a))
        if k == "Fn::Join":
            sep, parts = a
            parts = resolve(parts)
            return sep.join(str(p) for p in (parts if isinstance(parts, list) else [parts]))
        if k == "Fn::Split":
            sep, text = a
            return str(resolve(text)).split(sep)
        if k == "Fn::Select":
            i, items = a
            return resolve(items)[int(resolve(i))]
        if k == "Condition":
            return condition(a)
    return {k: x for k, x in ((k, resolve(x)) for k, x in v.items()) if x is not NOVALUE}


role = t["Resources"]["SyncFunctionRole"]["Properties"]
docs = [p["PolicyDocument"] for p in role.get("Policies", [])]
for r in t["Resources"].values():
    if r.get("Type") != "AWS::IAM::Policy":
        continue
    if "Condition" in r and not condition(r["Condition"]):
        continue
    if {"Ref": "SyncFunctionRole"} in r["Properties"].get("Roles", []):
        docs.append(r["Properties"]["PolicyDocument"])
statements = []
for d in resolve(docs):
    for s in d["Statement"]:
        for key in ("Action", "Resource"):
            if isinstance(s.get(key), str):
                s[key] = [s[key]]
        statements.append(s)
function = t["Resources"]["SyncFunction"]["Properties"]
print(json.dumps({"managed": resolve(role.get("ManagedPolicyArns", [])), "statements": statements,
                  "environment": resolve(function["Environment"]["Variables"]),
                  "layers": [x for x in [resolve(function.get("Layers", []))] if x is not NOVALUE]}))

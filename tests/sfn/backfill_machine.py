"""Runs template.yaml's backfill state machine on moto (server mode, executing state
machines), its Lambda tasks answered by queued results, and prints what happened as JSON.

    python tests/sfn/backfill_machine.py ENDPOINT SCENARIO

SCENARIO: "ok" (three slices, the first carried on by a second part), "failed-child" (a
slice's answer the state machine cannot use: every child fails) or "no-stream" (a plan's
answer that does not name its stream: every child fails). In AWS a failed child
fails the Distributed Map (ToleratedFailureCount 0); moto 5.2.5 only counts it in the map
run's items, which is what the test can assert.
The Rust test (tests/backfill.rs) asserts on the printed events.
"""

import json
import sys
import time
import uuid

import boto3
import requests
from cfnlint.decode import cfn_yaml

endpoint, scenario = sys.argv[1], sys.argv[2]
region = "us-east-1"
kw = dict(
    endpoint_url=endpoint,
    region_name=region,
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
)
requests.post(
    f"{endpoint}/moto-api/config",
    json={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}},
).raise_for_status()

run = uuid.uuid4().hex[:8]
bucket, prefix, sync_id = f"lake-{run}", "raw", "user"
s3 = boto3.client("s3", **kw)
s3.create_bucket(Bucket=bucket)

iam = boto3.client("iam", **kw)
role = iam.create_role(
    RoleName=f"fn-{run}",
    AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
)["Role"]["Arn"]
lam = boto3.client("lambda", **kw)
fn = lam.create_function(
    FunctionName=f"replay-sync-{run}",
    Runtime="provided.al2023",
    Role=role,
    Handler="bootstrap",
    Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
)["FunctionArn"]

# The definition exactly as the template writes it, with its substitutions.
template = cfn_yaml.load("template.yaml")
text, subs = template["Resources"]["BackfillStateMachine"]["Properties"]["DefinitionString"][
    "Fn::Sub"
]
values = {
    "FunctionArn": fn,
    "LambdaRetry": subs["LambdaRetry"],
    "OutputBucket": bucket,
    "OutputPrefix": prefix,
}
for name, value in values.items():
    text = text.replace("${" + name + "}", value)
definition = json.loads(text)

sfn = boto3.client("stepfunctions", **kw)
machine = sfn.create_state_machine(
    name=f"backfill-{run}",
    definition=json.dumps(definition),
    roleArn=role,
    type="STANDARD",
)["stateMachineArn"]

# What the function would answer, in the order the tasks invoke it (one child at a time).
bf = "backfill-test"
slices = [
    {"backfill_id": bf, "since": f"2024-01-0{d}T00:00:00Z", "until": f"2024-01-0{d + 1}T00:00:00Z"}
    for d in (1, 2, 3)
]
key = f"{prefix}/{sync_id}/_backfills/{bf}/slices.json"
s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(slices).encode())
# The function names the stream in every answer (Planned, SliceOutcome), and the state
# machine passes it on to each slice and the commit.
answers = [
    {"stream": sync_id, "backfill_id": bf, "slices": 3, "bucket": bucket, "key": key,
     "max_concurrency": 1}
]
first_next = dict(slices[0], part=1, read_from="2024-01-01T12:00:00Z")
if scenario == "no-stream":
    # A plan's answer without the stream (as before several streams): the Map's children
    # and the commit cannot name it, and fail before invoking the function - proof that
    # they read it from the plan's answer. Only the plan's answer is queued.
    del answers[0]["stream"]
elif scenario == "ok":
    answers += [
        {"stream": sync_id, "done": False, "backfill_slice": first_next, "records_written": 10, "objects": 1},
        {"stream": sync_id, "done": True, "backfill_slice": first_next, "records_written": 5, "objects": 1},
        {"stream": sync_id, "done": True, "backfill_slice": slices[1], "records_written": 7, "objects": 1},
        {"stream": sync_id, "done": True, "backfill_slice": slices[2], "records_written": 0, "objects": 0},
        {"status": "completed", "run_id": bf, "checkpoints": 1},
    ]
else:
    # Not an answer of a slice step: no next part to pass on, so the child's next task
    # cannot build its input and the child fails.
    answers += [{"done": False}] * 3 + [{"status": "completed"}] * 3
requests.post(
    f"{endpoint}/moto-api/static/lambda-simple/response",
    json={"results": [json.dumps(a) if not isinstance(a, str) else a for a in answers], "region": region},
).raise_for_status()

execution = sfn.start_execution(
    stateMachineArn=machine,
    input=json.dumps({"stream": sync_id, "from": "2024-01-01T00:00:00Z", "to": "2024-01-04T00:00:00Z", "max_concurrency": 1}),
)["executionArn"]
deadline = time.time() + 60
while True:
    d = sfn.describe_execution(executionArn=execution)
    if d["status"] != "RUNNING" or time.time() > deadline:
        break
    time.sleep(0.2)

history = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
entered = [
    e["stateEnteredEventDetails"]["name"]
    for e in history
    if "stateEnteredEventDetails" in e
]
map_runs = []
for r in sfn.list_map_runs(executionArn=execution)["mapRuns"]:
    m = sfn.describe_map_run(mapRunArn=r["mapRunArn"])
    map_runs.append(
        {
            "status": m["status"],
            "items": m["itemCounts"],
            "max_concurrency": m.get("maxConcurrency"),
            "tolerated_failure_count": m.get("toleratedFailureCount"),
        }
    )
def task_payloads(events):
    out = []
    for e in events:
        det = e.get("taskScheduledEventDetails")
        if det:
            out.append(json.loads(det["parameters"]).get("Payload"))
    return out


payloads = task_payloads(history)
print(
    json.dumps(
        {
            "status": d["status"],
            "output": d.get("output"),
            "entered": entered,
            "task_payloads": payloads,
            "map_runs": map_runs,
            "types": [e["type"] for e in history],
        }
    )
)

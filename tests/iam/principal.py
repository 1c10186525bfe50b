"""Turns a fresh moto server into an account with IAM enforced, for the scenario suite:

    python tests/iam/principal.py http://127.0.0.1:PORT

creates an `admin` user (the tests' own set-up and reads) and a `function` user holding
exactly the statements `template.yaml` gives the sync function (tests/iam/policy.py, with
the tests' table, bucket and stream names as patterns and the prefix `raw/api`), then switches
moto's IAM enforcement on and prints both users' access keys as JSON.
"""
import json
import os
import subprocess
import sys
import urllib.request

import boto3

url = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
grants = json.loads(subprocess.run(
    [sys.executable, os.path.join(here, "policy.py"),
     # The scenarios' streams are named sync-<unique> (one stream, named by that pattern);
     # tests/streams.rs deploys users, companies, events and down, its file in the bucket.
     json.dumps({"OutputPrefix": "raw/api", "Streams": "sync-*,users,companies,events,down",
                 "StreamsConfig": "s3://lake-*/config/streams.toml"}),
     json.dumps({"table": "state-*", "bucket": "lake-*"})],
    capture_output=True, text=True, check=True).stdout)
iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")


def user(name, statements):
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": statements}))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


# moto checks the actions of DynamoDB calls but not their resources (it asks every DynamoDB
# statement about the resource "*"): there, the template's table ARN becomes "*". The
# resources are checked against the template by tests/iam.rs instead.
# One user policy holds what the role's several policies hold (one per stream): their
# statement ids made unique.
function = []
for i, st in enumerate(grants["statements"]):
    if all(a.startswith("dynamodb:") for a in st["Action"]):
        st = dict(st, Resource="*")
    function.append(dict(st, Sid=f"{st.get('Sid', 'Statement')}{i}"))

keys = {
    "admin": user("admin", [{"Effect": "Allow", "Action": "*", "Resource": "*"}]),
    "function": user("function", function),
}
# From here on every request is checked against its user's policy.
urllib.request.urlopen(urllib.request.Request(
    f"{url}/moto-api/reset-auth", data=b"0", method="POST",
    headers={"Content-Type": "text/plain"}))
print(json.dumps(keys))

//! `template.yaml`: the linters of record pass, and the properties the deployment relies on
//! (least privilege, one run at a time, protected data) are there.

mod common;

use std::process::Command;

use common::peers::{project_dir, venv_bin};
use serde_json::Value;

fn tool(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(venv_bin(program))
        .args(args)
        .current_dir(project_dir())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("SAM_CLI_TELEMETRY", "0")
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn ok(out: &std::process::Output) -> bool {
    if !out.status.success() {
        eprintln!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

#[test]
fn cfn_lint_passes() {
    assert!(ok(&tool("cfn-lint", &["template.yaml"])));
}

#[test]
fn sam_validate_lint_passes() {
    let out = tool("sam", &["validate", "--lint", "-t", "template.yaml"]);
    assert!(ok(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("is a valid SAM Template"));
}

/// The template as JSON (intrinsic tags as `{"Ref": …}`, `{"Fn::Sub": …}`), read with
/// cfn-lint's own loader.
fn template() -> Value {
    let out = tool(
        "python",
        &[
            "-c",
            "import json,sys; from cfnlint.decode import cfn_yaml; print(json.dumps(cfn_yaml.load('template.yaml')))",
        ],
    );
    assert!(ok(&out));
    serde_json::from_slice(&out.stdout).expect("template JSON")
}

#[test]
fn function_is_least_privilege_and_sized_by_parameters() {
    let t = template();
    let f = &t["Resources"]["SyncFunction"];
    assert_eq!(f["Type"], "AWS::Serverless::Function");
    assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda");
    let p = &f["Properties"];
    assert_eq!(p["Runtime"], "provided.al2023");
    assert_eq!(p["Handler"], "bootstrap");
    // The lease guarantees one run at a time; reserved concurrency is optional and off by
    // default (reserving 1 made a synchronous manual invoke fail during a scheduled run).
    assert_eq!(
        p["ReservedConcurrentExecutions"],
        serde_json::json!({"Fn::If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]})
    );
    assert_eq!(t["Parameters"]["ReservedConcurrency"]["Default"], 0);
    assert!(
        t["Conditions"]["HasReservedConcurrency"]
            .to_string()
            .contains("ReservedConcurrency")
    );
    // A private API: optional VPC placement, only when subnets are given.
    assert_eq!(p["VpcConfig"]["Fn::If"][0], "HasVpc");
    assert_eq!(
        p["VpcConfig"]["Fn::If"][1]["SubnetIds"]["Ref"],
        "VpcSubnetIds"
    );
    assert_eq!(
        p["VpcConfig"]["Fn::If"][1]["SecurityGroupIds"]["Ref"],
        "VpcSecurityGroupIds"
    );
    assert_eq!(t["Parameters"]["VpcSubnetIds"]["Default"], "");
    // Memory is the operator's choice, sized by default from the measured peak (README).
    assert_eq!(p["MemorySize"], serde_json::json!({"Ref": "MemorySize"}));
    let mem = &t["Parameters"]["MemorySize"];
    assert_eq!(mem["Default"], 256, "{mem}");

    // Its own role (not SAM's: see the_function_role_gets_vpc_access_only_with_a_vpc), with
    // inline statements only: no Crud/Write policy templates.
    assert_eq!(p["Role"]["Fn::GetAtt"][0], "SyncFunctionRole");
    assert!(p.get("Policies").is_none());
    let role = &t["Resources"]["SyncFunctionRole"]["Properties"];
    let policies = role["Policies"].as_array().unwrap();
    assert_eq!(policies.len(), 1);
    let statements = policies[0]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    let mut grants = Vec::new();
    for s in statements {
        assert_eq!(s["Effect"], "Allow");
        for a in s["Action"].as_array().unwrap() {
            grants.push((a.as_str().unwrap().to_string(), s["Resource"].to_string()));
        }
    }
    grants.sort();
    assert_eq!(
        grants.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        [
            "dynamodb:GetItem",
            "dynamodb:UpdateItem",
            "s3:GetObject",
            "s3:ListBucket",
            "s3:PutObject",
            "sqs:SendMessage"
        ]
    );
    for (action, resource) in &grants {
        if action.starts_with("dynamodb:") {
            assert_eq!(
                resource, r#"{"Fn::GetAtt":["StateTable","Arn"]}"#,
                "{action}"
            );
        } else if action.starts_with("sqs:") {
            assert_eq!(
                resource, r#"{"Fn::GetAtt":["DeadLetterQueue","Arn"]}"#,
                "{action}"
            );
        } else if action == "s3:ListBucket" {
            // The bucket, only for listings of the sync's prefix (tests/iam.rs reads it).
            assert_eq!(
                resource, r#"{"Fn::GetAtt":["OutputBucket","Arn"]}"#,
                "{action}"
            );
            let list = statements
                .iter()
                .find(|s| s["Action"][0] == "s3:ListBucket")
                .unwrap();
            assert_eq!(
                list["Condition"]["StringLike"]["s3:prefix"]["Fn::Sub"],
                "${OutputPrefix}/*"
            );
        } else {
            assert!(
                resource.contains("${OutputBucket.Arn}/${OutputPrefix}/*"),
                "{action} on {resource}"
            );
        }
    }

    // The contract's configuration, wired to the template's own table and bucket.
    let vars = &p["Environment"]["Variables"];
    for v in [
        "API_URL",
        "API_SINCE_PARAM",
        "API_UNTIL_PARAM",
        "FETCH_CONCURRENCY",
        "API_RECORDS_FIELD",
        "API_NEXT_PAGE_FIELD",
        "BUFFER_HOURS",
        "SYNC_ID",
    ] {
        assert!(vars.get(v).is_some(), "{v} is set");
    }
    assert!(
        vars["STATE_STORE"]
            .to_string()
            .contains("dynamodb://${StateTable}")
    );
    assert!(
        vars["OUTPUT"]
            .to_string()
            .contains("s3://${OutputBucket}/${OutputPrefix}")
    );

    // Slices: off unless the API's upper bound is named; the concurrency bounded as the
    // function's configuration bounds it.
    assert_eq!(t["Parameters"]["ApiUntilParam"]["Default"], "");
    let fc = &t["Parameters"]["FetchConcurrency"];
    assert_eq!(
        (
            fc["Default"].as_u64(),
            fc["MinValue"].as_u64(),
            fc["MaxValue"].as_u64()
        ),
        (Some(4), Some(1), Some(64))
    );

    // An EventBridge rule delivers the standard Scheduled Event, at a rate set by parameter.
    let ev = &p["Events"]["Schedule"];
    assert_eq!(ev["Type"], "Schedule");
    assert_eq!(ev["Properties"]["Schedule"]["Ref"], "ScheduleExpression");
    // It can be deployed disabled.
    assert_eq!(
        ev["Properties"]["State"],
        serde_json::json!({"Fn::If": ["ScheduleOn", "ENABLED", "DISABLED"]})
    );
    assert_eq!(t["Parameters"]["ScheduleEnabled"]["Default"], "true");
    // The output's description suggests no replay from a fixed old date.
    let out = t["Outputs"]["FunctionName"]["Description"].to_string();
    assert!(!out.contains("2024"), "{out}");
}

#[test]
fn storage_does_not_grow_forever() {
    let t = template();
    let rules = &t["Resources"]["OutputBucket"]["Properties"]["LifecycleConfiguration"]["Rules"];
    let rule = |id: &str| {
        rules
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["Id"] == id)
            .unwrap_or_else(|| panic!("no rule {id}: {rules}"))
            .clone()
    };
    let fp = rule("ExpireOldFingerprintSets");
    assert_eq!(fp["Status"], "Enabled");
    assert!(fp["Prefix"].to_string().contains("_fingerprints/"), "{fp}");
    assert_eq!(fp["ExpirationInDays"]["Ref"], "FingerprintRetentionDays");
    let nc = rule("ExpireNoncurrentVersions");
    assert_eq!(
        nc["NoncurrentVersionExpiration"]["NoncurrentDays"]["Ref"],
        "NoncurrentVersionDays"
    );
}

#[test]
fn secret_access_only_with_a_secret_and_only_to_it() {
    let t = template();
    let p = &t["Resources"]["AuthSecretPolicy"];
    assert_eq!(p["Condition"], "HasAuthSecret");
    assert_eq!(p["Properties"]["Roles"][0]["Ref"], "SyncFunctionRole");
    let st = &p["Properties"]["PolicyDocument"]["Statement"];
    assert_eq!(st.as_array().unwrap().len(), 2);
    assert_eq!(st[0]["Action"], "secretsmanager:GetSecretValue");
    assert_eq!(st[0]["Resource"]["Ref"], "ApiAuthSecretArn");
    let cond = t["Conditions"]["HasAuthSecret"].to_string();
    assert!(cond.contains("ApiAuthSecretArn"), "{cond}");
    // A secret under a customer-managed key: kms:Decrypt on that key, via Secrets Manager
    // only, and only when the key is given (issue 20, 10).
    let kms = &st[1]["Fn::If"];
    assert_eq!(kms[0], "HasSecretKey");
    assert_eq!(kms[1]["Action"], "kms:Decrypt");
    assert_eq!(kms[1]["Resource"]["Ref"], "ApiAuthSecretKmsKeyArn");
    assert!(
        kms[1]["Condition"]["StringEquals"]["kms:ViaService"]
            .to_string()
            .contains("secretsmanager.${AWS::Region}")
    );
    assert_eq!(kms[2]["Ref"], "AWS::NoValue");
    assert_eq!(t["Parameters"]["ApiAuthSecretKmsKeyArn"]["Default"], "");
}

#[test]
fn table_and_bucket_protect_the_data() {
    let t = template();
    let table = &t["Resources"]["StateTable"]["Properties"];
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(table["KeySchema"][0]["AttributeName"], "sync_id");
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );

    let bucket = &t["Resources"]["OutputBucket"]["Properties"];
    assert!(bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"].is_string());
    for k in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(bucket["PublicAccessBlockConfiguration"][k], true, "{k}");
    }
    let policy =
        &t["Resources"]["OutputBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(policy["Effect"], "Deny");
    assert_eq!(policy["Condition"]["Bool"]["aws:SecureTransport"], "false");
}

#[test]
fn failures_are_loud() {
    let t = template();
    let r = &t["Resources"];
    // Async invocations that still fail after Lambda's retries go to the dead-letter queue.
    let invoke = &r["SyncFunction"]["Properties"]["EventInvokeConfig"];
    assert_eq!(invoke["MaximumRetryAttempts"], 2);
    let on_failure = &invoke["DestinationConfig"]["OnFailure"];
    assert_eq!(on_failure["Type"], "SQS");
    assert_eq!(
        on_failure["Destination"]["Fn::GetAtt"][0],
        "DeadLetterQueue"
    );
    assert_eq!(r["DeadLetterQueue"]["Type"], "AWS::SQS::Queue");

    // An alarm on the function's errors and one on the queue's depth, both to the topic.
    let alarm = |name: &str| {
        let a = &r[name];
        assert_eq!(a["Type"], "AWS::CloudWatch::Alarm", "{name}");
        assert_eq!(
            a["Properties"]["AlarmActions"][0]["Ref"], "AlarmTopic",
            "{name}"
        );
        assert_eq!(a["Properties"]["Threshold"], 1, "{name}");
        a["Properties"].clone()
    };
    let errors = alarm("ErrorsAlarm");
    assert_eq!(errors["Namespace"], "AWS/Lambda");
    assert_eq!(errors["MetricName"], "Errors");
    assert_eq!(errors["Dimensions"][0]["Value"]["Ref"], "SyncFunction");
    let dlq = alarm("DeadLetterAlarm");
    assert_eq!(dlq["Namespace"], "AWS/SQS");
    assert_eq!(dlq["MetricName"], "ApproximateNumberOfMessagesVisible");
    assert_eq!(
        dlq["Dimensions"][0]["Value"]["Fn::GetAtt"][0],
        "DeadLetterQueue"
    );
    assert_eq!(r["AlarmTopic"]["Type"], "AWS::SNS::Topic");
    // CloudWatch can publish to the topic: not the AWS-managed SNS key (whose policy cannot
    // grant cloudwatch.amazonaws.com), but a key of its own that allows it.
    let key_ref = &r["AlarmTopic"]["Properties"]["KmsMasterKeyId"];
    assert_eq!(key_ref["Ref"], "AlarmTopicKey", "{key_ref}");
    let key = &r["AlarmTopicKey"];
    assert_eq!(key["Type"], "AWS::KMS::Key");
    let statements = key["Properties"]["KeyPolicy"]["Statement"]
        .as_array()
        .unwrap();
    let cw = statements
        .iter()
        .find(|s| s["Principal"]["Service"] == "cloudwatch.amazonaws.com")
        .expect("CloudWatch may use the key");
    let actions = cw["Action"].to_string();
    assert!(actions.contains("kms:Decrypt") && actions.contains("kms:GenerateDataKey"));
    assert!(
        statements
            .iter()
            .any(|s| s["Action"] == "kms:*" && s["Principal"]["AWS"].to_string().contains(":root")),
        "the account keeps administering its key"
    );

    // Freshness: no completed or partial run for FreshnessSeconds (missing data breaches),
    // from the Runs metric the function emits with its status.
    let fresh = alarm("FreshnessAlarm");
    assert_eq!(fresh["TreatMissingData"], "breaching");
    assert_eq!(fresh["ComparisonOperator"], "LessThanThreshold");
    let metrics = fresh["Metrics"].as_array().unwrap();
    let mut statuses: Vec<String> = metrics
        .iter()
        .filter_map(|m| m["MetricStat"]["Metric"]["Dimensions"].as_array())
        .flat_map(|d| d.iter().filter(|d| d["Name"] == "Status"))
        .map(|d| d["Value"].as_str().unwrap().to_string())
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            replay_sync::Status::Completed.as_str(),
            replay_sync::Status::Partial.as_str()
        ]
    );
    for m in metrics.iter().filter(|m| m.get("MetricStat").is_some()) {
        assert_eq!(
            m["MetricStat"]["Metric"]["Namespace"],
            replay_sync::metrics::NAMESPACE
        );
        assert_eq!(m["MetricStat"]["Metric"]["MetricName"], "Runs");
        assert_eq!(m["MetricStat"]["Period"]["Ref"], "FreshnessSeconds");
    }
    assert!(
        metrics
            .iter()
            .any(|m| m["ReturnData"] == true && m["Expression"].as_str().is_some()),
        "{metrics:?}"
    );

    // Lateness: the run's BufferUsed metric (EMF, namespace ReplaySync) at 80 % of the buffer.
    let lateness = &r["LatenessAlarm"]["Properties"];
    assert_eq!(lateness["Namespace"], "ReplaySync");
    assert_eq!(lateness["MetricName"], "BufferUsed");
    assert_eq!(lateness["Threshold"], 0.8);
    assert_eq!(lateness["Statistic"], "Maximum");
    // Every metric alarm names the stack before the sync id (the function's EMF dimensions
    // when STACK_NAME is set): two stacks with one sync id never share metrics (issue 20, 10).
    for name in ["LatenessAlarm", "MissedByBufferAlarm", "CursorAgeAlarm"] {
        let dims = &r[name]["Properties"]["Dimensions"];
        assert_eq!(dims[0]["Name"], "Stack", "{name}");
        assert_eq!(dims[0]["Value"]["Ref"], "AWS::StackName", "{name}");
        assert_eq!(dims[1]["Name"], "SyncId", "{name}");
        assert_eq!(dims[1]["Value"]["Ref"], "SyncId", "{name}");
    }
    for m in r["FreshnessAlarm"]["Properties"]["Metrics"]
        .as_array()
        .unwrap()
    {
        if let Some(dims) = m["MetricStat"]["Metric"]["Dimensions"].as_array() {
            assert_eq!(dims[0]["Name"], "Stack", "{m}");
        }
    }
    assert_eq!(
        r["SyncFunction"]["Properties"]["Environment"]["Variables"]["STACK_NAME"]["Ref"],
        "AWS::StackName"
    );
    assert_eq!(lateness["AlarmActions"][0]["Ref"], "AlarmTopic");
    // The cursor's age: runs that return partial without moving it page someone.
    let age = &r["CursorAgeAlarm"]["Properties"];
    assert_eq!(age["MetricName"], "CursorAgeSeconds");
    assert_eq!(age["Threshold"]["Ref"], "MaxCursorAgeSeconds");
    assert_eq!(age["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(age["AlarmActions"][0]["Ref"], "AlarmTopic");

    // Logs are kept for a bounded, chosen time, in the group the function writes to.
    assert_eq!(
        r["SyncLogGroup"]["Properties"]["RetentionInDays"]["Ref"],
        "LogRetentionDays"
    );
    assert_eq!(
        r["SyncFunction"]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"],
        "SyncLogGroup"
    );
}

#[test]
fn the_backfill_state_machine_is_a_distributed_map_with_least_privilege() {
    let t = template();
    let r = &t["Resources"];
    let sm = &r["BackfillStateMachine"]["Properties"];
    assert_eq!(sm["StateMachineType"], "STANDARD");
    let sub = sm["DefinitionString"]["Fn::Sub"].as_array().unwrap();
    let mut text = sub[0].as_str().unwrap().to_string();
    let vars = sub[1].as_object().unwrap();
    text = text.replace("${LambdaRetry}", vars["LambdaRetry"].as_str().unwrap());
    for v in ["FunctionArn", "OutputBucket", "OutputPrefix", "SyncId"] {
        text = text.replace(&format!("${{{v}}}"), v);
    }
    let def: Value = serde_json::from_str(&text).expect("the definition is JSON");
    let states = &def["States"];
    assert_eq!(def["StartAt"], "Plan");
    assert_eq!(states["Plan"]["Next"], "Slices");
    let map = &states["Slices"];
    assert_eq!(map["Type"], "Map");
    assert_eq!(
        map["ItemProcessor"]["ProcessorConfig"]["Mode"], "DISTRIBUTED",
        "a Distributed Map"
    );
    assert_eq!(map["ItemReader"]["ReaderConfig"]["InputType"], "JSON");
    assert_eq!(map["MaxConcurrencyPath"], "$.max_concurrency");
    assert_eq!(
        map["ToleratedFailureCount"], 0,
        "a failed slice fails the map"
    );
    assert!(map["ResultWriter"].is_object());
    assert_eq!(map["Next"], "Commit");
    // A slice that reaches the deadline goes on in the same child.
    let child = &map["ItemProcessor"]["States"];
    assert_eq!(child["SliceDone"]["Default"], "ReadSlice");
    assert_eq!(states["Commit"]["End"], true);
    // Throttling retried with backoff on every invocation; a busy lease on the commit.
    for task in [&states["Plan"], &child["ReadSlice"], &states["Commit"]] {
        let retry = task["Retry"].to_string();
        assert!(retry.contains("Lambda.TooManyRequestsException"), "{retry}");
        assert!(retry.contains("BackoffRate"), "{retry}");
    }
    assert!(states["Commit"]["Retry"].to_string().contains("StateBusy"));

    // Its role: invoke this function only; S3 on the backfill prefix only.
    let role = &r["BackfillRole"]["Properties"];
    let statements = role["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    for s in statements {
        let actions = s["Action"].to_string();
        let resource = s["Resource"].to_string();
        assert!(!resource.contains("\"*\""), "no wildcard resource: {s}");
        if actions.contains("lambda:") {
            assert!(resource.contains("SyncFunction"), "{s}");
        }
        if actions.contains("s3:") {
            assert!(
                resource.contains("${OutputBucket.Arn}/${OutputPrefix}/${SyncId}/_backfills/*"),
                "{s}"
            );
        }
        if actions.contains("states:") {
            assert!(
                resource.contains("replay-sync-backfill-${Id}")
                    && resource.contains("AWS::StackId"),
                "its own only: {s}"
            );
        }
    }
    assert_eq!(
        t["Outputs"]["BackfillStateMachineArn"]["Value"]["Ref"],
        "BackfillStateMachine"
    );
    // Named from the stack's id, so that a stack name of any length (up to 128) fits the
    // 80 characters of a state machine's name: "replay-sync-backfill-" and a UUID is 57.
    let name = &r["BackfillStateMachine"]["Properties"]["StateMachineName"]["Fn::Join"];
    assert_eq!(name[1][0], "replay-sync-backfill");
    assert!(name[1][1].to_string().contains("AWS::StackId"), "{name}");
    assert!("replay-sync-backfill-".len() + 36 <= 80);
}

#[test]
fn output_is_compressed_and_catalogued_for_athena() {
    let t = template();
    let r = &t["Resources"];
    assert_eq!(t["Parameters"]["OutputCompression"]["Default"], "gzip");
    let vars = &r["SyncFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(vars["OUTPUT_COMPRESSION"]["Ref"], "OutputCompression");

    // The table over PREFIX/SYNC_ID/: JSON SerDe, the seed's columns and _synced_at.
    let table = &r["LakeTable"]["Properties"]["TableInput"];
    let sd = &table["StorageDescriptor"];
    assert!(
        sd["Location"]
            .to_string()
            .contains("s3://${OutputBucket}/${OutputPrefix}/${SyncId}/"),
        "{sd}"
    );
    assert_eq!(
        sd["SerdeInfo"]["SerializationLibrary"],
        "org.openx.data.jsonserde.JsonSerDe"
    );
    let columns: Vec<&str> = sd["Columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "id",
            "name",
            "email",
            "address",
            "company",
            "job",
            "createdat",
            "updatedat",
            "_synced_at",
            "_cursor"
        ]
    );
    assert_eq!(table["TableType"], "EXTERNAL_TABLE");

    // The latest row per id, shipped as a named query (and one that creates a view), in a
    // workgroup whose results stay out of the data's prefix.
    for q in ["LatestByIdQuery", "LatestViewQuery"] {
        let p = &r[q]["Properties"];
        let text = p["QueryString"]["Fn::Sub"][0].as_str().unwrap();
        assert!(text.contains("row_number() OVER"), "{text}");
        assert!(text.contains("PARTITION BY id"), "{text}");
        assert!(text.contains("WHERE rn = 1"), "{text}");
        // Total: a timestamp Athena cannot read (a space for the T, lower case) orders last
        // instead of failing the whole query (issue 20, 10).
        assert!(
            text.contains(
                "coalesce(try(from_iso8601_timestamp(\"_cursor\")), try(from_iso8601_timestamp(replace(upper(updatedat), ' ', 'T')))) DESC NULLS LAST"
            ),
            "{text}"
        );
        assert_eq!(p["WorkGroup"]["Ref"], "QueryWorkGroup");
    }
    // The view is created in the lake's database, whatever the console has selected.
    let view = r["LatestViewQuery"]["Properties"]["QueryString"]["Fn::Sub"][0]
        .as_str()
        .unwrap();
    assert!(
        view.contains(r#"CREATE OR REPLACE VIEW "${Db}"."${Table}_latest""#),
        "{view}"
    );
    let wg = &r["QueryWorkGroup"]["Properties"]["WorkGroupConfiguration"];
    assert_eq!(wg["EnforceWorkGroupConfiguration"], true);
    let out = wg["ResultConfiguration"]["OutputLocation"].to_string();
    assert!(
        out.contains("athena-results/") && !out.contains("${SyncId}"),
        "{out}"
    );
}

#[test]
fn an_audit_runs_on_its_own_schedule_and_pages_when_the_buffer_missed_rows() {
    let t = template();
    let r = &t["Resources"];
    let ev = &r["SyncFunction"]["Properties"]["Events"]["Audit"];
    assert_eq!(ev["Type"], "Schedule");
    assert_eq!(ev["Properties"]["Input"], r#"{"audit": true}"#);
    assert_eq!(
        ev["Properties"]["Schedule"]["Ref"],
        "AuditScheduleExpression"
    );
    assert_eq!(
        ev["Properties"]["State"],
        serde_json::json!({"Fn::If": ["AuditOn", "ENABLED", "DISABLED"]})
    );
    // Staggered: the daily audit at minute 7, between two runs on the quarter hour (an
    // audit that meets a run fails with StateBusy and is retried; see the scenario).
    assert_eq!(
        t["Parameters"]["AuditScheduleExpression"]["Default"],
        "cron(7 3 * * ? *)"
    );
    assert_eq!(
        t["Parameters"]["ScheduleExpression"]["Default"],
        "cron(0/15 * * * ? *)"
    );
    assert_eq!(
        r["SyncFunction"]["Properties"]["EventInvokeConfig"]["MaximumRetryAttempts"], 2,
        "a busy audit is retried"
    );
    assert_eq!(t["Parameters"]["AuditScheduleEnabled"]["Default"], "true");
    let vars = &r["SyncFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(vars["AUDIT_HOURS"]["Ref"], "AuditHours");
    let alarm = &r["MissedByBufferAlarm"]["Properties"];
    assert_eq!(alarm["MetricName"], "RecordsMissedByBuffer");
    assert_eq!(alarm["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(alarm["Threshold"], 0);
    assert_eq!(alarm["AlarmActions"][0]["Ref"], "AlarmTopic");
}

/// As CloudFormation sees it (the SAM translator's output): the function's role gets
/// network-interface rights only when it is placed in a VPC (issue 20, 10: SAM attached
/// AWSLambdaVPCAccessExecutionRole to every deployment); an access log only with a bucket.
#[test]
fn the_function_role_gets_vpc_access_only_with_a_vpc() {
    let managed = |params: &str| -> Vec<String> {
        let out = tool("python", &["tests/iam/policy.py", params]);
        assert!(ok(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["managed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().rsplit('/').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(managed("{}"), ["AWSLambdaBasicExecutionRole"]);
    assert_eq!(
        managed(r#"{"VpcSubnetIds": "subnet-1,subnet-2", "VpcSecurityGroupIds": "sg-1"}"#),
        [
            "AWSLambdaBasicExecutionRole",
            "AWSLambdaVPCAccessExecutionRole"
        ]
    );
    let t = template();
    let logging = &t["Resources"]["OutputBucket"]["Properties"]["LoggingConfiguration"]["Fn::If"];
    assert_eq!(logging[0], "HasAccessLog");
    assert_eq!(
        logging[1]["DestinationBucketName"]["Ref"],
        "AccessLogBucket"
    );
    assert_eq!(t["Parameters"]["AccessLogBucket"]["Default"], "");
}

/// `sam local invoke SyncFunction -e events/dry-run.json --env-vars events/sam-local-env.json`
/// (the README's command): the file sets only variables the template declares (SAM ignores
/// others), and with them the function runs on files instead of the deployed table and
/// bucket (issue 20, 11). Run here as the binary, with the API and the folder moved.
#[test]
fn the_sam_local_env_vars_file_configures_a_working_dry_run() {
    let t = template();
    let declared = t["Resources"]["SyncFunction"]["Properties"]["Environment"]["Variables"]
        .as_object()
        .unwrap()
        .clone();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(project_dir().join("events/sam-local-env.json")).unwrap(),
    )
    .unwrap();
    let vars = file["SyncFunction"].as_object().unwrap();
    for k in vars.keys() {
        assert!(
            declared.contains_key(k),
            "{k} is not declared by the template"
        );
    }
    assert!(vars["STATE_STORE"].as_str().unwrap().starts_with("file://"));
    assert!(vars["OUTPUT"].as_str().unwrap().starts_with("file://"));

    let api = common::fixture::records_api(
        vec![common::fixture::user("a", "2024-01-15T10:00:00Z")],
        common::fixture::Paging::None,
    );
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_replay-sync"));
    cmd.env_clear()
        .current_dir(dir.path())
        .args(["invoke", "--event"])
        .arg(project_dir().join("events/dry-run.json"));
    for (k, v) in vars {
        let v = v
            .as_str()
            .unwrap()
            .replace("/tmp/replay-sync", &dir.path().to_string_lossy());
        let v = if k == "API_URL" { api.url("/x") } else { v };
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let s = common::summary(&out);
    assert_eq!(s["status"], "dry_run", "{s}");
    assert_eq!(s["records_fetched"], 1);
}

/// The variables of "Point it at your API" are parameters too: each goes to its variable,
/// empty by default (an empty variable is unset: today's behaviour) (issue 21).
#[test]
fn the_api_shape_variables_are_parameters_empty_by_default() {
    let t = template();
    let vars = &t["Resources"]["SyncFunction"]["Properties"]["Environment"]["Variables"];
    for (param, var) in [
        ("ApiPagination", "API_PAGINATION"),
        ("ApiPageSize", "API_PAGE_SIZE"),
        ("ApiCursorParam", "API_CURSOR_PARAM"),
        ("ApiNextCursorField", "API_NEXT_CURSOR_FIELD"),
        ("ApiSinceFormat", "API_SINCE_FORMAT"),
        ("IdField", "ID_FIELD"),
        ("CursorField", "CURSOR_FIELD"),
        ("CursorFormat", "CURSOR_FORMAT"),
        ("ApiAuth", "API_AUTH"),
        ("ApiTokenUrl", "API_TOKEN_URL"),
    ] {
        assert_eq!(vars[var]["Ref"], param, "{var}");
        assert_eq!(t["Parameters"][param]["Default"], "", "{param}");
    }
    // Empty is unset: the configuration the template gives by default is today's.
    let cfg = replay_sync::Config::from_lookup(|k| match k {
        "API_URL" => Some("https://api.example.com/users".into()),
        _ if vars.get(k).is_some() => Some(String::new()),
        _ => None,
    })
    .unwrap();
    assert_eq!(cfg.api.paging, replay_sync::config::PagingConfig::Next);
    assert!(cfg.api.fields.is_default());
}

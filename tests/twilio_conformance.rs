//! The fake Twilio and the operator's Twilio client, checked against Twilio's official OpenAPI
//! specs (third_party/twilio-oai): every request the client sends and every success the fake answers
//! must fit the spec's operations, parameters and schemas. Error shapes, secret-once, pagination
//! and fault injection are checked against what KEYS-API.md documents.

use twilio_operator_testkit as support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fake_twilio::{FakeTwilio, Faults, RecordedRequest};
use regex::Regex;
use serde_json::{Value, json};
use twilio_operator::twilio::{
    AccountConnection, Endpoint, ExposeSecret, KeyRequest, RetryPolicy, SecretString, TwilioClient, TwilioError,
};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "conformance-token";

fn spec(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("third_party/twilio-oai").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("spec is JSON")
}

async fn fake() -> FakeTwilio {
    let fake = support::start_fake_twilio(ACCOUNT, TOKEN).await.unwrap();
    fake.record_requests(true);
    fake
}

fn connection(fake: &FakeTwilio, password: &str) -> AccountConnection {
    support::fake_connection(fake, ACCOUNT, password)
}

fn client() -> TwilioClient {
    let retry =
        RetryPolicy { attempts: 3, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50) };
    TwilioClient::new(Endpoint::Override("unused".into()), retry).unwrap()
}

/// Checks recorded requests and responses against the operations of an OpenAPI spec.
struct Conformance {
    spec: Value,
}

impl Conformance {
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.trim_start_matches("#/components/schemas/");
                &self.spec["components"]["schemas"][name]
            }
            None => schema,
        }
    }

    fn operation(&self, method: &str, path: &str) -> Option<(String, &Value)> {
        let paths = self.spec["paths"].as_object()?;
        paths.iter().find_map(|(template, ops)| {
            let pattern = format!("^{}$", regex::escape(template).replace(r"\{", "{").replace(r"\}", "}"));
            let pattern = Regex::new(r"\{[A-Za-z]+\}").unwrap().replace_all(&pattern, "[^/]+").to_string();
            Regex::new(&pattern).unwrap().is_match(path).then(|| (template.clone(), &ops[method.to_lowercase()]))
        })
    }

    fn check_value(&self, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if value.is_null() {
            if schema.get("nullable") != Some(&json!(true)) && schema.get("type").is_some() {
                problems.push(format!("{at}: null but not nullable"));
            }
            return;
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("object") => {
                let Some(object) = value.as_object() else {
                    return problems.push(format!("{at}: not an object"));
                };
                if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                    for (name, field) in object {
                        match properties.get(name) {
                            Some(field_schema) => {
                                self.check_value(field_schema, field, &format!("{at}.{name}"), problems)
                            }
                            None => problems.push(format!("{at}.{name}: not in the spec")),
                        }
                    }
                    for name in properties.keys() {
                        if !object.contains_key(name) {
                            problems.push(format!("{at}.{name}: missing"));
                        }
                    }
                }
            }
            Some("array") => match value.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.check_value(&schema["items"], item, &format!("{at}[{i}]"), problems);
                    }
                }
                None => problems.push(format!("{at}: not an array")),
            },
            Some("string") => {
                let Some(text) = value.as_str() else {
                    return problems.push(format!("{at}: not a string"));
                };
                if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                    && !Regex::new(pattern).unwrap().is_match(text)
                {
                    problems.push(format!("{at}: {text:?} does not match {pattern}"));
                }
                if schema.get("format") == Some(&json!("date-time-rfc-2822")) {
                    let rfc2822 =
                        Regex::new(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$").unwrap();
                    if !rfc2822.is_match(text) {
                        problems.push(format!("{at}: {text:?} is not an RFC 2822 date"));
                    }
                }
            }
            Some("integer") if !value.is_i64() && !value.is_u64() => problems.push(format!("{at}: not an integer")),
            _ => {}
        }
    }

    fn check(&self, request: &RecordedRequest) -> Vec<String> {
        let mut problems = Vec::new();
        let at = format!("{} {}", request.method, request.path);
        let Some((template, op)) = self.operation(&request.method, &request.path) else {
            return vec![format!("{at}: no such operation in the spec")];
        };
        if op.is_null() {
            return vec![format!("{at}: method not in the spec for {template}")];
        }
        let parameters = op["parameters"].as_array().cloned().unwrap_or_default();
        let query_params: Vec<&Value> = parameters.iter().filter(|p| p["in"] == "query").collect();
        for (name, _) in &request.query {
            if !query_params.iter().any(|p| p["name"] == name.as_str()) {
                problems.push(format!("{at}: query parameter {name} not in the spec"));
            }
        }
        for p in &query_params {
            if p["required"] == true && !request.query.iter().any(|(n, _)| p["name"] == n.as_str()) {
                problems.push(format!("{at}: required query parameter {} missing", p["name"]));
            }
            if let (Some(max), Some((_, v))) =
                (p["schema"]["maximum"].as_i64(), request.query.iter().find(|(n, _)| p["name"] == n.as_str()))
                && v.parse::<i64>().map_or(true, |n| n > max || n < p["schema"]["minimum"].as_i64().unwrap_or(0))
            {
                problems.push(format!("{at}: {}={v} out of range", p["name"]));
            }
        }
        for p in parameters.iter().filter(|p| p["in"] == "path") {
            let name = p["name"].as_str().unwrap();
            let position =
                template.split('/').position(|s| s == format!("{{{name}}}") || s.starts_with(&format!("{{{name}}}.")));
            if let (Some(position), Some(pattern)) = (position, p["schema"]["pattern"].as_str()) {
                let segment = request.path.split('/').nth(position).unwrap_or("").trim_end_matches(".json");
                if !Regex::new(pattern).unwrap().is_match(segment) {
                    problems.push(format!("{at}: path parameter {name}={segment:?} does not match {pattern}"));
                }
            }
        }
        let form_schema = &op["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"];
        if form_schema.is_null() {
            if !request.form.is_empty() {
                problems.push(format!("{at}: a body where the spec has none"));
            }
        } else {
            if request.content_type.as_deref().is_none_or(|c| !c.starts_with("application/x-www-form-urlencoded")) {
                problems.push(format!("{at}: body is not form-encoded"));
            }
            let properties = form_schema["properties"].as_object().cloned().unwrap_or_default();
            for (name, value) in &request.form {
                match properties.get(name) {
                    None => problems.push(format!("{at}: form parameter {name} not in the spec")),
                    Some(p) => {
                        if let Some(values) = p["enum"].as_array()
                            && !values.iter().any(|v| v == value.as_str())
                        {
                            problems.push(format!("{at}: {name}={value} not one of {values:?}"));
                        }
                        if let Some(pattern) = p["pattern"].as_str()
                            && !Regex::new(pattern).unwrap().is_match(value)
                        {
                            problems.push(format!("{at}: {name}={value} does not match {pattern}"));
                        }
                    }
                }
            }
            for required in form_schema["required"].as_array().into_iter().flatten() {
                if !request.form.iter().any(|(n, _)| required == n.as_str()) {
                    problems.push(format!("{at}: required form parameter {required} missing"));
                }
            }
        }
        if (200..300).contains(&request.status) {
            let response = &op["responses"][request.status.to_string()];
            if response.is_null() {
                problems.push(format!("{at}: status {} not in the spec", request.status));
            } else if let Some(schema) = response["content"]["application/json"].get("schema") {
                match &request.response {
                    Some(body) => self.check_value(schema, body, &at, &mut problems),
                    None => problems.push(format!("{at}: no JSON body")),
                }
            }
        } else {
            let body = request.response.clone().unwrap_or(Value::Null);
            for field in ["code", "message", "more_info", "status"] {
                if body.get(field).is_none() {
                    problems.push(format!("{at}: error body lacks {field}: {body}"));
                }
            }
        }
        problems
    }
}

fn assert_conforms(spec_file: &str, requests: &[RecordedRequest], path_prefix: &str) {
    let conformance = Conformance { spec: spec(spec_file) };
    let relevant: Vec<&RecordedRequest> = requests.iter().filter(|r| r.path.starts_with(path_prefix)).collect();
    assert!(relevant.len() >= 5, "enough {path_prefix} traffic to judge: {}", relevant.len());
    let problems: Vec<String> = relevant.iter().flat_map(|r| conformance.check(r)).collect();
    assert!(problems.is_empty(), "{spec_file}: {problems:#?}");
}

#[tokio::test]
async fn the_operator_client_and_the_fake_speak_iam_v1_as_specified() {
    let fake = fake().await;
    let conn = connection(&fake, TOKEN);
    let twilio = client().with_page_size(2);
    twilio.list_keys(&conn).await.unwrap();
    let standard = twilio
        .create_key(&conn, &KeyRequest { friendly_name: "standard".into(), restricted_policy: None })
        .await
        .unwrap();
    let policy = vec!["/twilio/messaging/messages/create".to_string()];
    let restricted = twilio
        .create_key(&conn, &KeyRequest { friendly_name: "restricted".into(), restricted_policy: Some(policy) })
        .await
        .unwrap();
    for n in 0..3 {
        twilio
            .create_key(&conn, &KeyRequest { friendly_name: format!("extra {n}"), restricted_policy: None })
            .await
            .unwrap();
    }
    let fetched = twilio.fetch_key(&conn, &restricted.sid).await.unwrap();
    assert_eq!(fetched.policy, Some(json!({"allow": ["/twilio/messaging/messages/create"]})));
    let renamed = twilio
        .update_key(&conn, &restricted.sid, "renamed", Some(&["/twilio/messaging/messages/read".to_string()]))
        .await
        .unwrap();
    assert_eq!(renamed.friendly_name.as_deref(), Some("renamed"));
    assert_eq!(renamed.policy, Some(json!({"allow": ["/twilio/messaging/messages/read"]})));

    let listed = twilio.list_keys(&conn).await.unwrap();
    assert_eq!(listed.len(), 5, "all pages are followed (page size 2)");
    let list_calls = fake.recorded_requests().iter().filter(|r| r.method == "GET" && r.path == "/v1/Keys").count();
    assert!(list_calls >= 4, "verify + 3 pages, got {list_calls}");

    assert!(twilio.delete_key(&conn, &standard.sid).await.unwrap(), "this call deleted it");
    let again = twilio.delete_key(&conn, &standard.sid).await.expect("deleting a deleted key is not an error");
    assert!(!again, "a second delete reports the key as already gone");
    assert!(matches!(twilio.fetch_key(&conn, &standard.sid).await, Err(TwilioError::NotFound { code: Some(20404) })));

    let requests = fake.recorded_requests();
    assert!(
        requests
            .iter()
            .filter(|r| r.status >= 300)
            .all(|r| r.response.as_ref().is_some_and(|b| b.get("secret").is_none())),
        "errors never carry a secret"
    );
    let with_secret: Vec<_> =
        requests.iter().filter(|r| r.response.as_ref().is_some_and(|b| b.get("secret").is_some())).collect();
    assert!(
        with_secret.iter().all(|r| r.method == "POST" && r.path == "/v1/Keys" && r.status == 201),
        "secret only at create"
    );
    assert_eq!(with_secret.len(), 5);
    assert_conforms("twilio_iam_v1.json", &requests, "/v1/");
}

#[tokio::test]
async fn the_fake_serves_v2010_keys_as_specified() {
    let fake = fake().await;
    let http = reqwest::Client::new();
    let base = format!("{}/2010-04-01/Accounts/{ACCOUNT}", fake.url());
    let mut sids = Vec::new();
    for n in 0..3 {
        let created: Value = http
            .post(format!("{base}/Keys.json"))
            .basic_auth(ACCOUNT, Some(TOKEN))
            .form(&[("FriendlyName", format!("v2010 key {n}"))])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(created["secret"].is_string(), "v2010 create returns the secret");
        sids.push(created["sid"].as_str().unwrap().to_string());
    }
    let mut next = Some(format!("/2010-04-01/Accounts/{ACCOUNT}/Keys.json?PageSize=2"));
    let mut seen = 0;
    while let Some(uri) = next {
        let page: Value = http
            .get(format!("{}{uri}", fake.url()))
            .basic_auth(ACCOUNT, Some(TOKEN))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen += page["keys"].as_array().unwrap().len();
        next = page["next_page_uri"].as_str().map(str::to_string);
    }
    assert_eq!(seen, 3, "relative next_page_uri links cover every key");
    let key_url = format!("{base}/Keys/{}.json", sids[0]);
    let fetched: Value =
        http.get(&key_url).basic_auth(ACCOUNT, Some(TOKEN)).send().await.unwrap().json().await.unwrap();
    assert!(fetched.get("secret").is_none());
    let updated =
        http.post(&key_url).basic_auth(ACCOUNT, Some(TOKEN)).form(&[("FriendlyName", "renamed")]).send().await.unwrap();
    assert_eq!(updated.status(), 200);
    let deleted = http.delete(&key_url).basic_auth(ACCOUNT, Some(TOKEN)).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = http.get(&key_url).basic_auth(ACCOUNT, Some(TOKEN)).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let account = http.get(format!("{base}.json")).basic_auth(&sids[1], Some("wrong")).send().await.unwrap();
    assert_eq!(account.status(), 401);
    assert_conforms("twilio_api_v2010.json", &fake.recorded_requests(), "/2010-04-01/");
}

/// The proof of possession for adoption: one read of the account's messages made with the key's
/// own pair, answered as the v2010 spec says, and telling a working pair from any other.
#[tokio::test]
async fn the_proof_of_possession_is_a_v2010_read_that_only_a_working_pair_passes() {
    let fake = fake().await;
    let conn = connection(&fake, TOKEN);
    let twilio = client();
    let base = fake.url();
    let standard = twilio
        .create_key(&conn, &KeyRequest { friendly_name: "standard".into(), restricted_policy: None })
        .await
        .unwrap();
    let reader = vec!["/twilio/messaging/messages/read".to_string()];
    let sender = vec!["/twilio/messaging/messages/create".to_string()];
    let may_read = twilio
        .create_key(&conn, &KeyRequest { friendly_name: "reader".into(), restricted_policy: Some(reader) })
        .await
        .unwrap();
    let may_not_read = twilio
        .create_key(&conn, &KeyRequest { friendly_name: "sender".into(), restricted_policy: Some(sender) })
        .await
        .unwrap();
    fake.add_account("AC99999999999999999999999999999999", "other");
    let proves = |sid: String, secret: SecretString, account: &'static str| {
        let (twilio, base) = (&twilio, base.clone());
        async move { twilio.authenticates(&base, account, &sid, &secret).await.unwrap() }
    };
    assert!(proves(standard.sid.clone(), standard.secret.clone(), ACCOUNT).await, "a Standard key");
    assert!(proves(may_read.sid.clone(), may_read.secret.clone(), ACCOUNT).await, "a Restricted key that may read");
    assert!(!proves(may_not_read.sid.clone(), may_not_read.secret.clone(), ACCOUNT).await, "one that may not");
    assert!(!proves(standard.sid.clone(), SecretString::from("wrong"), ACCOUNT).await, "a wrong secret");
    assert!(
        !proves(standard.sid.clone(), standard.secret.clone(), "AC99999999999999999999999999999999").await,
        "another account"
    );
    let reads: Vec<RecordedRequest> =
        fake.recorded_requests().into_iter().filter(|r| r.path.ends_with("/Messages.json")).collect();
    assert_eq!(reads.len(), 5);
    let conformance = Conformance { spec: spec("twilio_api_v2010.json") };
    let problems: Vec<String> = reads.iter().flat_map(|r| conformance.check(r)).collect();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(reads.iter().all(|r| r.method == "GET" && r.form.is_empty()), "a read, nothing written");
}

#[tokio::test]
async fn the_fake_answers_bad_requests_as_twilio_does() {
    let fake = fake().await;
    let http = reqwest::Client::new();
    let create = |form: Vec<(&'static str, String)>, password: &'static str| {
        http.post(format!("{}/v1/Keys", fake.url())).basic_auth(ACCOUNT, Some(password)).form(&form).send()
    };
    let code = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (status, body["code"].as_i64().unwrap())
    };
    let account = ("AccountSid", ACCOUNT.to_string());
    assert_eq!(code(create(vec![account.clone()], "wrong").await.unwrap()).await, (401, 20003));
    assert_eq!(code(create(vec![], TOKEN).await.unwrap()).await.0, 400, "AccountSid is required");
    let long_name = ("FriendlyName", "x".repeat(65));
    assert_eq!(code(create(vec![account.clone(), long_name], TOKEN).await.unwrap()).await.0, 400);
    let restricted = ("KeyType", "restricted".to_string());
    assert_eq!(code(create(vec![account.clone(), restricted.clone()], TOKEN).await.unwrap()).await.0, 400);
    let too_many = ("Policy", json!({"allow": vec!["/twilio/x"; 101]}).to_string());
    assert_eq!(code(create(vec![account.clone(), restricted, too_many], TOKEN).await.unwrap()).await.0, 400);
    let response = http
        .get(format!("{}/v1/Keys/SK00000000000000000000000000000000", fake.url()))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, (404, 20404));
    let token = http
        .get(format!("{}/v1/Keys?AccountSid={ACCOUNT}&Page=3", fake.url()))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(code(token).await, (400, 21481), "pages are reached only through next-page URLs");

    // A Standard key may use the account but not manage keys.
    let created: Value = create(vec![account], TOKEN).await.unwrap().json().await.unwrap();
    let (sid, secret) = (created["sid"].as_str().unwrap(), created["secret"].as_str().unwrap());
    let listing = http
        .get(format!("{}/v1/Keys?AccountSid={ACCOUNT}", fake.url()))
        .basic_auth(sid, Some(secret))
        .send()
        .await
        .unwrap();
    assert_eq!(code(listing).await, (403, 20003));
    assert!(fake.accepts_key_pair(ACCOUNT, sid, secret));
}

#[tokio::test]
async fn injected_faults_are_retried_by_the_client_only_where_safe() {
    let fake = fake().await;
    let conn = connection(&fake, TOKEN);
    let twilio = client();
    fake.set_faults(Faults { error_rate: 1.0, ..Default::default() });
    let failed = twilio.list_keys(&conn).await.unwrap_err();
    assert!(failed.is_transient(), "{failed}");
    let counts = fake.request_counts();
    let attempts: u64 = counts.iter().filter(|(k, _)| k.starts_with("list_keys")).map(|(_, v)| v).sum();
    assert_eq!(attempts, 3, "an idempotent call is retried up to the policy's attempts: {counts:?}");

    let create = twilio.create_key(&conn, &KeyRequest { friendly_name: "x".into(), restricted_policy: None }).await;
    assert!(create.is_err());
    let creates: u64 = fake.request_counts().iter().filter(|(k, _)| k.starts_with("create_key")).map(|(_, v)| v).sum();
    let answered_503_first = fake.request_counts().get("create_key 503").is_some_and(|n| *n >= 1);
    assert!(creates <= 3, "creates are retried at most the policy's attempts");
    if answered_503_first {
        assert!(fake.request_counts().get("create_key 503") == Some(&1), "a create answered 5xx is never repeated");
    }
    assert!(fake.keys().is_empty());

    fake.set_faults(Faults { latency_ms: 150, ..Default::default() });
    let started = Instant::now();
    twilio.list_keys(&conn).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150), "latency is injected");
}

/// Auth token rotation (Accounts v1) and subaccounts (Api v2010), as the fake serves them: a
/// secondary token authenticates beside the primary until it is promoted (then the old primary
/// fails at once) or deleted; a subaccount has its own token, and its status (suspended, closed)
/// decides whether it authenticates at all.
#[tokio::test]
async fn the_fake_rotates_auth_tokens_and_makes_subaccounts_as_specified() {
    let fake = fake().await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", fake.url());
    let account_url = url(&format!("/2010-04-01/Accounts/{ACCOUNT}.json"));
    let status_as = |user: String, password: String, target: String| {
        let http = http.clone();
        async move { http.get(target).basic_auth(user, Some(password)).send().await.unwrap().status().as_u16() }
    };
    let secondary_url = url("/v1/AuthTokens/Secondary");
    let created = http.post(&secondary_url).basic_auth(ACCOUNT, Some(TOKEN)).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await.unwrap();
    let first_secondary = body["secondary_auth_token"].as_str().unwrap().to_string();
    assert_eq!(fake.secondary_auth_token(ACCOUNT).as_deref(), Some(first_secondary.as_str()));
    for token in [TOKEN, first_secondary.as_str()] {
        assert_eq!(status_as(ACCOUNT.into(), token.into(), account_url.clone()).await, 200, "both tokens authenticate");
    }
    // Auth tokens are managed with an auth token: a Main key may not.
    let (main_sid, main_secret) = fake.add_main_key(ACCOUNT);
    let by_key = http.post(&secondary_url).basic_auth(&main_sid, Some(&main_secret)).send().await.unwrap();
    assert_eq!(by_key.status(), 403);
    let deleted = http.delete(&secondary_url).basic_auth(ACCOUNT, Some(TOKEN)).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(status_as(ACCOUNT.into(), first_secondary.clone(), account_url.clone()).await, 401, "deleted");
    let again = http.delete(&secondary_url).basic_auth(ACCOUNT, Some(TOKEN)).send().await.unwrap();
    assert_eq!(again.status(), 404);

    let body: Value =
        http.post(&secondary_url).basic_auth(ACCOUNT, Some(TOKEN)).send().await.unwrap().json().await.unwrap();
    let next = body["secondary_auth_token"].as_str().unwrap().to_string();
    let promote_url = url("/v1/AuthTokens/Promote");
    let promoted = http.post(&promote_url).basic_auth(ACCOUNT, Some(&next)).send().await.unwrap();
    assert_eq!(promoted.status(), 200);
    let body: Value = promoted.json().await.unwrap();
    assert_eq!(body["auth_token"].as_str(), Some(next.as_str()));
    assert_eq!(fake.auth_token(ACCOUNT).as_deref(), Some(next.as_str()));
    assert_eq!(
        status_as(ACCOUNT.into(), TOKEN.into(), account_url.clone()).await,
        401,
        "the old primary fails at once"
    );
    assert_eq!(status_as(ACCOUNT.into(), next.clone(), account_url.clone()).await, 200);
    let nothing = http.post(&promote_url).basic_auth(ACCOUNT, Some(&next)).send().await.unwrap();
    assert_eq!(nothing.status(), 400, "no secondary to promote");

    // A subaccount: its own SID and auth token, shown once; its owner reads and updates it.
    let created = http
        .post(url("/2010-04-01/Accounts.json"))
        .basic_auth(ACCOUNT, Some(&next))
        .form(&[("FriendlyName", "tenant-a")])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let sub: Value = created.json().await.unwrap();
    let sub_sid = sub["sid"].as_str().unwrap().to_string();
    let sub_token = sub["auth_token"].as_str().unwrap().to_string();
    assert_eq!((sub["owner_account_sid"].as_str(), sub["status"].as_str()), (Some(ACCOUNT), Some("active")));
    let sub_url = url(&format!("/2010-04-01/Accounts/{sub_sid}.json"));
    assert_eq!(status_as(sub_sid.clone(), sub_token.clone(), sub_url.clone()).await, 200, "the subaccount's token");
    let fetched: Value =
        http.get(&sub_url).basic_auth(ACCOUNT, Some(&next)).send().await.unwrap().json().await.unwrap();
    assert!(fetched["auth_token"].is_null(), "the token is shown only at creation");
    let nested = http
        .post(url("/2010-04-01/Accounts.json"))
        .basic_auth(&sub_sid, Some(&sub_token))
        .form(&[("FriendlyName", "nested")])
        .send()
        .await
        .unwrap();
    assert_eq!(nested.status(), 403, "a subaccount makes no subaccounts");
    let set_status = |status: &'static str| {
        let (http, sub_url, next) = (http.clone(), sub_url.clone(), next.clone());
        async move { http.post(sub_url).basic_auth(ACCOUNT, Some(next)).form(&[("Status", status)]).send().await.unwrap() }
    };
    assert_eq!(set_status("suspended").await.status(), 200);
    assert_eq!(fake.account_status(&sub_sid), Some(("suspended".into(), ACCOUNT.into())));
    assert_eq!(status_as(sub_sid.clone(), sub_token.clone(), sub_url.clone()).await, 401, "suspended");
    assert_eq!(set_status("active").await.status(), 200);
    assert_eq!(status_as(sub_sid.clone(), sub_token.clone(), sub_url.clone()).await, 200, "active again");
    let closed: Value = set_status("closed").await.json().await.unwrap();
    assert_eq!(closed["status"].as_str(), Some("closed"));
    assert_eq!(set_status("active").await.status(), 400, "closed is final");
    assert_eq!(status_as(sub_sid.clone(), sub_token.clone(), sub_url.clone()).await, 401, "closed");

    let recorded = fake.recorded_requests();
    assert_conforms("twilio_accounts_v1.json", &recorded, "/v1/AuthTokens");
    assert_conforms("twilio_api_v2010.json", &recorded, "/2010-04-01/Accounts");
}

/// The calls the operator makes for auth token rotation and subaccounts, as its client sends
/// them: each fits the Accounts v1 or Api v2010 spec, and each does what the rotation and the
/// subaccount controller rely on (a lost promotion is told apart by the old token failing; a
/// subaccount is found again by its pending name).
#[tokio::test]
async fn the_operator_client_rotates_auth_tokens_and_manages_subaccounts_as_specified() {
    let fake = fake().await;
    let twilio = client();
    let base = fake.url();
    let primary = connection(&fake, TOKEN);
    let first = twilio.create_secondary_auth_token(&primary, &base).await.unwrap();
    assert!(twilio.delete_secondary_auth_token(&primary, &base).await.unwrap());
    assert!(!twilio.delete_secondary_auth_token(&primary, &base).await.unwrap(), "none left: 404 is not an error");
    assert!(!twilio.token_authenticates(&base, ACCOUNT, &first).await.unwrap(), "a deleted secondary fails");
    let next = twilio.create_secondary_auth_token(&primary, &base).await.unwrap();
    assert!(twilio.token_authenticates(&base, ACCOUNT, &next).await.unwrap());
    assert!(twilio.token_authenticates(&base, ACCOUNT, &SecretString::from(TOKEN)).await.unwrap());
    let with_next = support::fake_connection(&fake, ACCOUNT, next.expose_secret());
    twilio.promote_auth_token(&with_next, &base).await.unwrap();
    assert!(!twilio.token_authenticates(&base, ACCOUNT, &SecretString::from(TOKEN)).await.unwrap(), "old fails");
    let again = twilio.promote_auth_token(&with_next, &base).await;
    assert!(matches!(again, Err(TwilioError::Rejected { status: 400, .. })), "nothing to promote: {again:?}");

    let pending = "twilio-operator:pending:0b9f3c1e-1d2a-4c5b-9e8f-7a6b5c4d3e2f";
    let made = twilio.create_subaccount(&with_next, &base, pending).await.unwrap();
    assert!(made.auth_token.is_some(), "the token comes with the creation");
    let found = twilio.find_subaccounts(&with_next, &base, pending).await.unwrap();
    assert_eq!(
        found.iter().map(|a| a.sid.as_str()).collect::<Vec<_>>(),
        [made.sid.as_str()],
        "found by its pending name"
    );
    assert!(twilio.find_subaccounts(&with_next, &base, "another name").await.unwrap().is_empty());
    let renamed = twilio.update_subaccount(&with_next, &base, &made.sid, Some("team-a"), None).await.unwrap();
    assert_eq!(renamed.friendly_name.as_deref(), Some("team-a"));
    let fetched = twilio.fetch_subaccount(&with_next, &base, &made.sid).await.unwrap();
    assert!(fetched.auth_token.is_none() && fetched.status.as_deref() == Some("active"));
    let suspended = twilio.update_subaccount(&with_next, &base, &made.sid, None, Some("suspended")).await.unwrap();
    assert_eq!(suspended.status.as_deref(), Some("suspended"));
    let closed = twilio.update_subaccount(&with_next, &base, &made.sid, None, Some("closed")).await.unwrap();
    assert_eq!(closed.status.as_deref(), Some("closed"));
    assert!(twilio.fetch_subaccount(&with_next, &base, "AC/../Keys").await.is_err(), "no such SID reaches a URL");

    let recorded = fake.recorded_requests();
    assert_conforms("twilio_accounts_v1.json", &recorded, "/v1/AuthTokens");
    assert_conforms("twilio_api_v2010.json", &recorded, "/2010-04-01/Accounts");
}

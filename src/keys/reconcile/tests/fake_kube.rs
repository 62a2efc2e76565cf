//! A scripted stand-in for the API server, in process: objects kept as JSON by their path, the
//! verbs the executor uses (get, create, merge and JSON patches of objects and of their status,
//! delete with preconditions, finalizers), every write noted on a shared timeline, and failures
//! planned for a given request (refused, or carried out with its answer lost).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

/// What both fakes report, in the order it happened: "create secrets/app", "patch
/// twilioapikeys/app/status", "twilio create_key 201", "event KeyCreated".
#[derive(Clone, Debug, Default)]
pub struct Timeline(Arc<Mutex<Vec<String>>>);

impl Timeline {
    pub fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A failure planned for the next request of `verb` ("get", "create", "patch", "delete") on
/// `target` (as the timeline names it, e.g. "secrets/app" or "twilioapikeys/app/status").
struct PlannedFailure {
    verb: String,
    target: String,
    status: u16,
    after_effect: bool,
}

/// A change another writer makes to `path` right before the next request of `verb` on `target`
/// is served (so that a write based on an earlier read meets a newer object).
struct PlannedChange {
    verb: String,
    target: String,
    path: String,
    change: Box<dyn FnOnce(&mut Value) + Send>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    version: u64,
    planned: Vec<PlannedFailure>,
    changes: Vec<PlannedChange>,
}

#[derive(Clone)]
pub struct FakeKube {
    state: Arc<Mutex<State>>,
    timeline: Timeline,
}

impl FakeKube {
    pub fn new(timeline: Timeline) -> Self {
        Self { state: Arc::default(), timeline }
    }

    pub fn client(&self) -> kube::Client {
        let fake = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let fake = fake.clone();
            async move { Ok::<_, std::convert::Infallible>(fake.serve(request).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Stores `object` (with uid, resourceVersion) at the path of its kind; returns it as stored.
    pub fn put(&self, collection: &str, object: Value) -> Value {
        let mut state = self.state.lock().unwrap();
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let stored = stamp(&mut state, object, None);
        state.objects.insert(format!("{collection}/{name}"), stored.clone());
        stored
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// Changes the stored object with `change`, as another writer would.
    pub fn edit(&self, path: &str, change: impl FnOnce(&mut Value)) {
        let mut state = self.state.lock().unwrap();
        let mut object = state.objects.get(path).cloned().expect("an object to edit");
        change(&mut object);
        let stored = stamp(&mut state, object, None);
        state.objects.insert(path.to_string(), stored);
    }

    /// Before the next `verb` on `target` is served, another writer changes the object at `path`.
    pub fn change_before_next(
        &self,
        verb: &str,
        target: &str,
        path: &str,
        change: impl FnOnce(&mut Value) + Send + 'static,
    ) {
        let planned =
            PlannedChange { verb: verb.into(), target: target.into(), path: path.into(), change: Box::new(change) };
        self.state.lock().unwrap().changes.push(planned);
    }

    pub fn fail_next(&self, verb: &str, target: &str, status: u16, after_effect: bool) {
        let failure = PlannedFailure { verb: verb.into(), target: target.into(), status, after_effect };
        self.state.lock().unwrap().planned.push(failure);
    }

    async fn serve(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let body = body.collect_bytes().await.unwrap_or_default();
        let path = parts.uri.path().to_string();
        let content_type =
            parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let verb = match parts.method.as_str() {
            "GET" => "get",
            "POST" => "create",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "other",
        };
        let target = target_of(&path, verb, &body);
        let planned = {
            let mut state = self.state.lock().unwrap();
            if let Some(i) = state.changes.iter().position(|c| c.verb == verb && c.target == target) {
                let planned = state.changes.remove(i);
                if let Some(mut object) = state.objects.get(&planned.path).cloned() {
                    let old = object.clone();
                    (planned.change)(&mut object);
                    let stored = stamp(&mut state, object, Some(&old));
                    state.objects.insert(planned.path, stored);
                }
            }
            let index = state.planned.iter().position(|f| f.verb == verb && f.target == target);
            index.map(|i| state.planned.remove(i))
        };
        if let Some(failure) = &planned
            && !failure.after_effect
        {
            return status_response(failure.status, "planned failure");
        }
        let query = parts.uri.query().unwrap_or_default().to_string();
        let response = self.carry_out(verb, &path, &query, &content_type, &body);
        if response.status().is_success() && verb != "get" {
            let entry = match target.strip_prefix("events/") {
                Some(_) => format!(
                    "event {}",
                    serde_json::from_slice::<Value>(&body).unwrap_or_default()["reason"].as_str().unwrap_or_default()
                ),
                None => format!("{verb} {target}"),
            };
            self.timeline.push(entry);
        }
        match planned {
            Some(failure) => status_response(failure.status, "planned failure after the effect"),
            None => response,
        }
    }

    fn carry_out(&self, verb: &str, path: &str, query: &str, content_type: &str, body: &Bytes) -> Response<Body> {
        let mut state = self.state.lock().unwrap();
        let (object_path, status_only) = match path.strip_suffix("/status") {
            Some(object) => (object.to_string(), true),
            None => (path.to_string(), false),
        };
        match verb {
            "get" => match state.objects.get(&object_path) {
                Some(object) => json_response(200, object),
                None => list(&state, &object_path, query).unwrap_or_else(|| status_response(404, "not found")),
            },
            "create" => {
                let object: Value = serde_json::from_slice(body).unwrap_or_default();
                let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let path = format!("{path}/{name}");
                if state.objects.contains_key(&path) {
                    return status_response(409, "already exists");
                }
                let stored = stamp(&mut state, object, None);
                state.objects.insert(path, stored.clone());
                json_response(201, &stored)
            }
            "patch" => {
                let Some(old) = state.objects.get(&object_path).cloned() else {
                    return status_response(404, "not found");
                };
                let mut new = old.clone();
                let patch: Value = serde_json::from_slice(body).unwrap_or_default();
                if content_type.contains("json-patch") {
                    // As the API server's JSON patch does: a test for null passes on a missing field.
                    let operations: Vec<Value> = patch.as_array().cloned().unwrap_or_default();
                    let operations: Vec<Value> = operations
                        .into_iter()
                        .filter(|op| {
                            let path = op["path"].as_str().unwrap_or_default();
                            !(op["op"] == "test" && op["value"].is_null() && new.pointer(path).is_none())
                        })
                        .collect();
                    let Ok(operations) = serde_json::from_value::<json_patch::Patch>(Value::Array(operations)) else {
                        return status_response(400, "not a JSON patch");
                    };
                    if json_patch::patch(&mut new, &operations).is_err() {
                        return status_response(422, "the JSON patch does not apply");
                    }
                } else {
                    let expected = &patch["metadata"]["resourceVersion"];
                    if !expected.is_null() && *expected != old["metadata"]["resourceVersion"] {
                        return status_response(409, "the object has been modified");
                    }
                    json_patch::merge(&mut new, &patch);
                }
                // The status subresource writes status only; the object, everything else.
                let mut kept = if status_only { old.clone() } else { new.clone() };
                kept["status"] = if status_only { new["status"].take() } else { old["status"].clone() };
                if kept["status"].is_null() {
                    kept.as_object_mut().map(|o| o.remove("status"));
                }
                let stored = stamp(&mut state, kept, Some(&old));
                let finalized = stored["metadata"]["deletionTimestamp"].is_string()
                    && stored["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty);
                if finalized {
                    state.objects.remove(&object_path);
                } else {
                    state.objects.insert(object_path, stored.clone());
                }
                json_response(200, &stored)
            }
            "delete" => {
                let Some(old) = state.objects.get(&object_path).cloned() else {
                    return status_response(404, "not found");
                };
                let options: Value = serde_json::from_slice(body).unwrap_or_default();
                let preconditions = &options["preconditions"];
                for field in ["uid", "resourceVersion"] {
                    if !preconditions[field].is_null() && preconditions[field] != old["metadata"][field] {
                        return status_response(409, "precondition failed");
                    }
                }
                if old["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()) {
                    let mut deleting = old.clone();
                    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                    let stored = stamp(&mut state, deleting, Some(&old));
                    state.objects.insert(object_path, stored.clone());
                    return json_response(200, &stored);
                }
                state.objects.remove(&object_path);
                json_response(200, &old)
            }
            _ => status_response(405, "not supported"),
        }
    }
}

/// A list of the objects directly under `collection` whose labels match the query's
/// labelSelector (equality terms only, "a=b,c=d"), in name order; None when there are none
/// under it and it is not a known collection.
fn list(state: &State, collection: &str, query: &str) -> Option<Response<Body>> {
    let selector = query
        .split('&')
        .find_map(|p| p.strip_prefix("labelSelector="))
        .map(|s| s.replace("%3D", "=").replace("%2C", ",").replace("%2F", "/"))
        .unwrap_or_default();
    let terms: Vec<(&str, &str)> =
        selector.split(',').filter(|t| !t.is_empty()).filter_map(|t| t.split_once('=')).collect();
    let prefix = format!("{collection}/");
    let items: Vec<Value> = state
        .objects
        .iter()
        .filter(|(path, _)| path.strip_prefix(&prefix).is_some_and(|rest| !rest.contains('/')))
        .map(|(_, object)| object.clone())
        .filter(|object| terms.iter().all(|(k, v)| object["metadata"]["labels"][*k] == *v))
        .collect();
    let known =
        collection.ends_with("deployments") || collection.ends_with("statefulsets") || collection.ends_with("rollouts");
    if items.is_empty() && !known {
        return None;
    }
    // As the API server pages: at most `limit` items, and a continue token when there are more.
    let limit = query.split('&').find_map(|p| p.strip_prefix("limit=")).and_then(|l| l.parse::<usize>().ok());
    let more = limit.is_some_and(|limit| items.len() > limit);
    let items: Vec<Value> = items.into_iter().take(limit.unwrap_or(usize::MAX)).collect();
    let mut metadata = json!({"resourceVersion": state.version.to_string()});
    if more {
        metadata["continue"] = json!("more");
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "metadata": metadata, "items": items});
    Some(json_response(200, &list))
}

/// The object's uid (kept, or made), a new resourceVersion and, when its spec changed, generation.
fn stamp(state: &mut State, mut object: Value, old: Option<&Value>) -> Value {
    state.version += 1;
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let metadata = &mut object["metadata"];
    if metadata["uid"].is_null() {
        metadata["uid"] = json!(format!("uid-{name}"));
    }
    metadata["resourceVersion"] = json!(state.version.to_string());
    let generation = old.map_or(1, |old| {
        let previous = old["metadata"]["generation"].as_i64().unwrap_or(1);
        if old["spec"] != object["spec"] { previous + 1 } else { previous }
    });
    object["metadata"]["generation"] = json!(generation);
    object
}

/// "secrets/app", "twilioapikeys/app/status", "events/x": the last segments of a path.
fn target_of(path: &str, verb: &str, body: &Bytes) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let start = segments.iter().rposition(|s| *s == "namespaces").map_or(segments.len().saturating_sub(2), |i| i + 2);
    let mut target = segments[start.min(segments.len())..].join("/");
    if verb == "create" {
        let name = serde_json::from_slice::<Value>(body).unwrap_or_default()["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        target = format!("{target}/{name}");
    }
    target
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(value).unwrap_or_default()))
        .expect("a response")
}

fn status_response(code: u16, message: &str) -> Response<Body> {
    let reason = match code {
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        400 => "BadRequest",
        _ => "InternalError",
    };
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    json_response(code, &status)
}

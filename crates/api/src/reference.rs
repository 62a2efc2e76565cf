//! The API reference, `docs/reference.md`: every kind and every field of the CRDs, rendered as
//! Markdown from their OpenAPI v3 schemas (the same schemas the API server enforces), so that it
//! cannot say anything the CRDs do not.
//!
//! [`render`] is a pure function of the CustomResourceDefinitions; [`generate`] renders the
//! operator's own, exactly as [`super::crd_documents`] writes them to `crds/`. The command
//! `twilio-operator crd --docs` prints it, and a test fails when `docs/reference.md` differs.

use std::collections::HashMap;
use std::fmt::Write as _;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion, JSONSchemaProps, JSONSchemaPropsOrArray,
    JSONSchemaPropsOrBool, ValidationRule,
};

/// The command that prints the reference.
pub const COMMAND: &str = "twilio-operator crd --docs";
/// How to regenerate `docs/reference.md` from a checkout.
pub const REGENERATE: &str = "cargo run -- crd --docs > docs/reference.md";

/// The reference of the operator's CRDs, as committed in `docs/reference.md`.
pub fn generate() -> String {
    let crds: Vec<CustomResourceDefinition> =
        super::crd_documents().iter().filter_map(|(_, yaml)| serde_yaml::from_str(yaml).ok()).collect();
    render(&crds)
}

/// The Markdown reference of `crds`, in their order: each kind with its group, version, scope,
/// names and printer columns, then every field of its spec and status (and any other top-level
/// field) with its type, whether it is required, its default, its validation and description.
pub fn render(crds: &[CustomResourceDefinition]) -> String {
    // Links from the tables to the fields' headings need the headings' anchors, which GitHub
    // numbers in document order when they repeat: the first pass records them, the second
    // writes the document with them.
    let mut first = Renderer::default();
    first.document(crds);
    let mut second = Renderer { anchors: first.found, ..Renderer::default() };
    second.document(crds);
    second.out
}

/// The anchor GitHub gives a heading with this text: lowercase, spaces to '-', punctuation other
/// than '-' and '_' dropped.
pub fn github_slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// One field of a schema, named by its path from the resource's root.
struct Field<'a> {
    path: String,
    schema: &'a JSONSchemaProps,
    required: bool,
}

/// The fields below `schema` (its properties, its items' and its map values' properties, at any
/// depth), each followed by its own. `[]` in a path stands for each item of a list, `.*` for each
/// value of a map.
fn fields_below<'a>(schema: &'a JSONSchemaProps, prefix: &str, out: &mut Vec<Field<'a>>) {
    let required = schema.required.as_deref().unwrap_or_default();
    for (name, property) in schema.properties.iter().flatten() {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        out.push(Field { path: path.clone(), schema: property, required: required.contains(name) });
        children(property, &path, out);
    }
}

fn children<'a>(schema: &'a JSONSchemaProps, path: &str, out: &mut Vec<Field<'a>>) {
    fields_below(schema, path, out);
    let items_path = format!("{path}[]");
    match &schema.items {
        Some(JSONSchemaPropsOrArray::Schema(items)) => children(items, &items_path, out),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter().for_each(|s| children(s, &items_path, out)),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = &schema.additional_properties {
        children(values, &format!("{path}.*"), out);
    }
}

#[derive(Default)]
struct Renderer {
    out: String,
    /// How often each anchor was handed out, as GitHub counts them.
    slugs: HashMap<String, usize>,
    /// Anchors of the headings written so far, by key.
    found: HashMap<String, String>,
    /// Anchors from the first pass, by key.
    anchors: HashMap<String, String>,
}

impl Renderer {
    fn line(&mut self, text: &str) {
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn heading(&mut self, level: usize, text: &str, key: &str) {
        // github-slugger: a repeated anchor gets "-1", "-2", ... (skipping any already taken).
        let base = github_slug(text);
        let mut slug = base.clone();
        while self.slugs.contains_key(&slug) {
            let count = self.slugs.entry(base.clone()).or_insert(0);
            *count += 1;
            slug = format!("{base}-{count}");
        }
        self.slugs.insert(slug.clone(), 0);
        self.found.insert(key.to_string(), slug);
        self.line(&format!("{} {text}", "#".repeat(level)));
        self.line("");
    }

    fn link(&self, text: &str, key: &str) -> String {
        format!("[{text}](#{})", self.anchors.get(key).map(String::as_str).unwrap_or_default())
    }

    fn document(&mut self, crds: &[CustomResourceDefinition]) {
        self.line(&format!(
            "<!-- Generated by `{COMMAND}` from the CRDs' OpenAPI v3 schemas; do not edit. Regenerate: `{REGENERATE}` -->"
        ));
        self.line("");
        self.heading(1, "API reference", "top");
        self.line(&format!(
            "Generated by `{COMMAND}` from the OpenAPI v3 schemas of the CustomResourceDefinitions in \
             [`crds/`](../crds), which are themselves generated from the Rust types in \
             [`crates/api/src/lib.rs`](../crates/api/src/lib.rs); do not edit it by hand, run `{REGENERATE}`. \
             What the operator does when a field changes, and what each condition means, is in \
             [behaviour.md](behaviour.md)."
        ));
        self.line("");
        self.line("How to read it:");
        self.line("");
        self.line(
            "- A field is named by its path from the resource's root, such as `spec.rotation.gracePeriod`; \
             `[]` stands for each item of a list (`status.retiringKeys[].sid`) and `.*` for each value of a map.",
        );
        self.line("- A **required** field must be set whenever the object holding it is set.");
        self.line("- A **default** is filled in by the API server when the field is absent.");
        self.line(
            "- **Validation** is enforced by the API server when a resource is written. CEL rules \
             (`x-kubernetes-validations`) need Kubernetes 1.25 or later; whatever the API server, the \
             operator checks a TwilioApiKey's bounds and rules itself and reports a spec that breaks \
             them as `Stalled`, reason `InvalidSpec`, without calling Twilio.",
        );
        self.line(
            "- `apiVersion`, `kind` and `metadata` are those of every Kubernetes object and are not repeated here.",
        );
        self.line("");
        self.line("| Kind | API version | Scope | Short names | Description |");
        self.line("| --- | --- | --- | --- | --- |");
        for crd in crds {
            let spec = &crd.spec;
            for version in &spec.versions {
                let title = kind_title(crd, version);
                let description = root_schema(version).and_then(|s| s.description.as_deref()).unwrap_or_default();
                let row = format!(
                    "| {} | `{}/{}` | {} | {} | {} |",
                    self.link(&title, &title),
                    spec.group,
                    version.name,
                    spec.scope,
                    codes(spec.names.short_names.as_deref().unwrap_or_default()),
                    cell(&prose(description)),
                );
                self.line(&row);
            }
        }
        self.line("");
        for crd in crds {
            for version in &crd.spec.versions {
                self.kind(crd, version);
            }
        }
    }

    fn kind(&mut self, crd: &CustomResourceDefinition, version: &CustomResourceDefinitionVersion) {
        let spec = &crd.spec;
        let names = &spec.names;
        let title = kind_title(crd, version);
        self.heading(2, &title, &title);
        let root = root_schema(version);
        if let Some(description) = root.and_then(|s| s.description.as_deref()) {
            self.line(&prose(description));
            self.line("");
        }
        self.line("| Property | Value |");
        self.line("| --- | --- |");
        self.line(&format!("| API version | `{}/{}` |", spec.group, version.name));
        self.line(&format!("| Kind | `{}` |", names.kind));
        self.line(&format!("| Scope | {} |", spec.scope));
        self.line(&format!("| Plural | `{}` |", names.plural));
        if let Some(singular) = names.singular.as_deref().filter(|s| !s.is_empty()) {
            self.line(&format!("| Singular | `{singular}` |"));
        }
        if let Some(short) = names.short_names.as_deref().filter(|s| !s.is_empty()) {
            self.line(&format!("| Short names | {} |", codes(short)));
        }
        if let Some(categories) = names.categories.as_deref().filter(|s| !s.is_empty()) {
            self.line(&format!("| Categories | {} |", codes(categories)));
        }
        let mut subresources = Vec::new();
        if let Some(sub) = &version.subresources {
            if sub.status.is_some() {
                subresources.push("status".to_string());
            }
            if sub.scale.is_some() {
                subresources.push("scale".to_string());
            }
        }
        if !subresources.is_empty() {
            self.line(&format!("| Subresources | {} |", codes(&subresources)));
        }
        self.line(&format!("| Served | {} |", yes_no(version.served)));
        self.line(&format!("| Storage version | {} |", yes_no(version.storage)));
        if version.deprecated == Some(true) {
            let warning = version.deprecation_warning.as_deref().unwrap_or("deprecated");
            self.line(&format!("| Deprecated | {} |", cell(&prose(warning))));
        }
        if let Some(name) = crd.metadata.name.as_deref() {
            self.line(&format!("| CRD | [`crds/{name}.yaml`](../crds/{name}.yaml) |"));
        }
        self.line("");

        let columns = version.additional_printer_columns.as_deref().unwrap_or_default();
        if !columns.is_empty() {
            // Priority and description only when some column has them.
            let priorities = columns.iter().any(|c| c.priority.unwrap_or(0) != 0);
            let descriptions = columns.iter().any(|c| c.description.as_deref().is_some_and(|d| !d.trim().is_empty()));
            let mut header = vec!["Column", "Type", "JSONPath"];
            if priorities {
                self.line("Columns of `kubectl get` (those of priority above 0 only with `-o wide`):");
                header.push("Priority");
            } else {
                self.line("Columns of `kubectl get`:");
            }
            if descriptions {
                header.push("Description");
            }
            self.line("");
            self.line(&format!("| {} |", header.join(" | ")));
            self.line(&format!("|{}", " --- |".repeat(header.len())));
            for column in columns {
                let type_ = match column.format.as_deref() {
                    Some(format) => format!("{} ({format})", column.type_),
                    None => column.type_.clone(),
                };
                let mut cells = vec![cell(&column.name), cell(&type_), cell(&code(&column.json_path))];
                if priorities {
                    cells.push(column.priority.unwrap_or(0).to_string());
                }
                if descriptions {
                    cells.push(cell(&prose(column.description.as_deref().unwrap_or_default())));
                }
                self.line(&format!("| {} |", cells.join(" | ")));
            }
            self.line("");
        }

        let Some(root) = root else {
            self.line("This version has no schema.");
            self.line("");
            return;
        };
        let rules = rule_lines(root.x_kubernetes_validations.as_deref().unwrap_or_default(), "");
        if !rules.is_empty() {
            self.line("CEL rules on the whole object (`x-kubernetes-validations`):");
            self.line("");
            for rule in rules {
                self.line(&format!("- {rule}"));
            }
            self.line("");
        }
        // spec, then status, then anything else at the top level.
        let required = root.required.as_deref().unwrap_or_default();
        let properties: Vec<(&String, &JSONSchemaProps)> = root.properties.iter().flatten().collect();
        let rank = |name: &str| match name {
            "spec" => 0,
            "status" => 1,
            _ => 2,
        };
        let mut ordered = properties.clone();
        ordered.sort_by_key(|(name, _)| rank(name));
        for (name, schema) in ordered {
            let mut fields = vec![Field { path: name.clone(), schema, required: required.contains(name) }];
            children(schema, name, &mut fields);
            self.section(&title, name, &fields);
        }
    }

    fn section(&mut self, title: &str, top: &str, fields: &[Field]) {
        let heading = format!("{title} {top}");
        self.heading(3, &heading, &heading);
        self.line("| Field | Type | Required | Default |");
        self.line("| --- | --- | --- | --- |");
        for field in fields {
            let key = format!("{title}/{}", field.path);
            let row = format!(
                "| {} | {} | {} | {} |",
                cell(&self.link(&code(&field.path), &key)),
                cell(&type_name(field.schema)),
                yes_no(field.required),
                cell(&default_of(field.schema).unwrap_or_default()),
            );
            self.line(&row);
        }
        self.line("");
        for field in fields {
            self.field(title, field);
        }
    }

    fn field(&mut self, title: &str, field: &Field) {
        let schema = field.schema;
        self.heading(4, &code(&field.path), &format!("{title}/{}", field.path));
        if let Some(description) = schema.description.as_deref().filter(|d| !d.trim().is_empty()) {
            self.line(&prose(description));
            self.line("");
        }
        let mut type_ = format!("**Type:** {}", code(&type_name(schema)));
        if schema.nullable == Some(true) {
            type_.push_str(" (nullable)");
        }
        self.line(&format!("- {type_}"));
        self.line(&format!("- **Required:** {}", yes_no(field.required)));
        if let Some(default) = default_of(schema) {
            self.line(&format!("- **Default:** {default}"));
        }
        let mut validation = constraints(schema);
        let mut rules = rule_lines(schema.x_kubernetes_validations.as_deref().unwrap_or_default(), "");
        let mut nested = Vec::new();
        match &schema.items {
            Some(JSONSchemaPropsOrArray::Schema(items)) => nested.push(("each item", items.as_ref())),
            Some(JSONSchemaPropsOrArray::Schemas(items)) => nested.extend(items.iter().map(|s| ("each item", s))),
            None => {}
        }
        if let Some(JSONSchemaPropsOrBool::Schema(values)) = &schema.additional_properties {
            nested.push(("each value", values.as_ref()));
        }
        let mut notes = Vec::new();
        for (what, inner) in nested {
            validation.extend(constraints(inner).into_iter().map(|c| format!("{what}: {c}")));
            rules.extend(rule_lines(inner.x_kubernetes_validations.as_deref().unwrap_or_default(), what));
            if let Some(default) = default_of(inner) {
                notes.push(format!("**Default of {what}:** {default}"));
            }
            if let Some(description) = inner.description.as_deref().filter(|d| !d.trim().is_empty()) {
                notes.push(format!("**{}:** {}", capitalized(what), prose(description)));
            }
        }
        if !validation.is_empty() {
            self.line("- **Validation:**");
            for item in validation {
                self.line(&format!("  - {item}"));
            }
        }
        if !rules.is_empty() {
            self.line("- **CEL rules** (`x-kubernetes-validations`):");
            for rule in rules {
                self.line(&format!("  - {rule}"));
            }
        }
        for note in notes {
            self.line(&format!("- {note}"));
        }
        self.line("");
    }
}

fn kind_title(crd: &CustomResourceDefinition, version: &CustomResourceDefinitionVersion) -> String {
    if crd.spec.versions.len() > 1 {
        format!("{} {}", crd.spec.names.kind, version.name)
    } else {
        crd.spec.names.kind.clone()
    }
}

fn root_schema(version: &CustomResourceDefinitionVersion) -> Option<&JSONSchemaProps> {
    version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref())
}

/// A short name of a schema's type: `string (date-time)`, `[]object`, `map[string]string`, ...
fn type_name(schema: &JSONSchemaProps) -> String {
    let base = match schema.type_.as_deref() {
        Some("array") => {
            let item = match &schema.items {
                Some(JSONSchemaPropsOrArray::Schema(items)) => type_name(items),
                Some(JSONSchemaPropsOrArray::Schemas(items)) => {
                    items.iter().map(type_name).collect::<Vec<_>>().join(" | ")
                }
                None => "any".to_string(),
            };
            return format!("[]{item}");
        }
        Some("object") => match &schema.additional_properties {
            Some(JSONSchemaPropsOrBool::Schema(values)) if schema.properties.is_none() => {
                return format!("map[string]{}", type_name(values));
            }
            Some(JSONSchemaPropsOrBool::Bool(true)) if schema.properties.is_none() => {
                return "map[string]any".to_string();
            }
            _ => "object".to_string(),
        },
        Some(other) => other.to_string(),
        None if schema.x_kubernetes_int_or_string == Some(true) => "integer or string".to_string(),
        None => "any".to_string(),
    };
    let mut name = match schema.format.as_deref() {
        Some(format) => format!("{base} ({format})"),
        None => base,
    };
    if schema.x_kubernetes_embedded_resource == Some(true) {
        name.push_str(", embedded resource");
    }
    if schema.x_kubernetes_preserve_unknown_fields == Some(true) {
        name.push_str(", unknown fields kept");
    }
    name
}

/// The default of a schema, as Markdown (a string as itself, anything else as JSON).
fn default_of(schema: &JSONSchemaProps) -> Option<String> {
    schema.default.as_ref().map(|default| value(&default.0))
}

fn value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => code(s),
        other => code(&other.to_string()),
    }
}

/// The schema's own constraints, one phrase each (its CEL rules apart).
fn constraints(schema: &JSONSchemaProps) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(values) = &schema.enum_ {
        let values: Vec<String> = values.iter().filter(|v| !v.0.is_null()).map(|v| value(&v.0)).collect();
        out.push(format!("one of {}", values.join(", ")));
    }
    if let Some(range) = range(schema.min_length, schema.max_length, "character") {
        out.push(range);
    }
    if let Some(pattern) = &schema.pattern {
        out.push(format!("matches {}", code(pattern)));
    }
    match (schema.minimum, schema.maximum) {
        (None, None) => {}
        (minimum, maximum) => {
            let mut parts = Vec::new();
            if let Some(minimum) = minimum {
                let word = if schema.exclusive_minimum == Some(true) { "greater than" } else { "at least" };
                parts.push(format!("{word} {minimum}"));
            }
            if let Some(maximum) = maximum {
                let word = if schema.exclusive_maximum == Some(true) { "less than" } else { "at most" };
                parts.push(format!("{word} {maximum}"));
            }
            out.push(parts.join(" and "));
        }
    }
    if let Some(multiple) = schema.multiple_of {
        out.push(format!("a multiple of {multiple}"));
    }
    if let Some(range) = range(schema.min_items, schema.max_items, "item") {
        out.push(range);
    }
    if schema.unique_items == Some(true) {
        out.push("items are unique".to_string());
    }
    if let Some(range) = range(schema.min_properties, schema.max_properties, "entry") {
        out.push(range);
    }
    if let Some(list_type) = &schema.x_kubernetes_list_type {
        let keys = schema.x_kubernetes_list_map_keys.as_deref().unwrap_or_default();
        if keys.is_empty() {
            out.push(format!("list type {}", code(list_type)));
        } else {
            out.push(format!("list type {}, keyed by {}", code(list_type), codes(keys)));
        }
    }
    if let Some(map_type) = &schema.x_kubernetes_map_type {
        out.push(format!("map type {}", code(map_type)));
    }
    out
}

/// "1 to 64 characters", "at least 1 item", "at most 64 entries".
fn range(min: Option<i64>, max: Option<i64>, unit: &str) -> Option<String> {
    let plural = |n: i64| match (n, unit) {
        (1, _) => unit.to_string(),
        (_, "entry") => "entries".to_string(),
        _ => format!("{unit}s"),
    };
    match (min, max) {
        (None, None) => None,
        (Some(min), Some(max)) if min == max => Some(format!("exactly {min} {}", plural(max))),
        (Some(min), Some(max)) => Some(format!("{min} to {max} {}", plural(max))),
        (Some(min), None) => Some(format!("at least {min} {}", plural(min))),
        (None, Some(max)) => Some(format!("at most {max} {}", plural(max))),
    }
}

/// One line per CEL rule: its message, then the rule (and its field path and reason, if set).
fn rule_lines(rules: &[ValidationRule], prefix: &str) -> Vec<String> {
    rules
        .iter()
        .map(|rule| {
            let mut line = String::new();
            if !prefix.is_empty() {
                let _ = write!(line, "{prefix}: ");
            }
            match (&rule.message, &rule.message_expression) {
                (Some(message), _) => {
                    let _ = write!(line, "{}: ", prose(message));
                }
                (None, Some(expression)) => {
                    let _ = write!(line, "message {}: ", code(expression));
                }
                (None, None) => {}
            }
            line.push_str(&code(&rule.rule));
            if let Some(field_path) = &rule.field_path {
                let _ = write!(line, " (field {})", code(field_path));
            }
            if let Some(reason) = &rule.reason {
                let _ = write!(line, " (reason {})", code(reason));
            }
            if rule.optional_old_self == Some(true) {
                line.push_str(" (also on create: `oldSelf` optional)");
            }
            line
        })
        .collect()
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn codes(values: &[String]) -> String {
    values.iter().map(|v| code(v)).collect::<Vec<_>>().join(", ")
}

/// `text` as an inline code span, on one line, fenced by more backticks than it contains in a row.
fn code(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// A description as Markdown: lines of a paragraph joined (they are wrapped source text),
/// paragraphs kept, and outside code spans the characters Markdown would read as markup escaped.
fn prose(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| paragraph.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|paragraph| !paragraph.is_empty())
        .map(|paragraph| escape(&paragraph))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for (i, c) in text.chars().enumerate() {
        if c == '`' {
            in_code = !in_code;
            out.push(c);
            continue;
        }
        if in_code {
            out.push(c);
            continue;
        }
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '*' | '[' | ']' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' | '-' | '+' | '=' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// A Markdown table cell: one line, pipes escaped (also inside code spans, as GitHub requires).
fn cell(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CustomResourceDefinition {
        serde_yaml::from_str(
            r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.dev}
spec:
  group: example.dev
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wg]}
  scope: Cluster
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        description: A widget.
        required: [spec]
        properties:
          status:
            type: object
            properties:
              phase: {type: string, description: Where it is.}
          spec:
            type: object
            required: [size]
            x-kubernetes-validations:
            - {rule: "self.size > 1 || self.mode == 'A'", message: small widgets are mode A}
            properties:
              size: {type: integer, format: int32, minimum: 1, maximum: 10}
              mode: {type: string, enum: [A, B], default: A, description: "The mode, <A> or <B>."}
              parts:
                type: array
                maxItems: 3
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string, minLength: 1, maxLength: 8, pattern: "^[a-z]+$"}
              labels:
                type: object
                additionalProperties: {type: string, maxLength: 63}
"#,
        )
        .unwrap()
    }

    #[test]
    fn every_field_is_listed_with_type_requirement_default_and_validation() {
        let doc = render(&[sample()]);
        for expected in [
            "## Widget",
            "| Scope | Cluster |",
            "| Short names | `wg` |",
            "| API version | `example.dev/v1` |",
            "| Size | integer | `.spec.size` |",
            "### Widget spec",
            "### Widget status",
            "#### `spec.size`",
            "- **Type:** `integer (int32)`",
            "  - at least 1 and at most 10",
            "#### `spec.mode`",
            "- **Default:** `A`",
            "  - one of `A`, `B`",
            "The mode, &lt;A&gt; or &lt;B&gt;.",
            "#### `spec.parts[].name`",
            "  - 1 to 8 characters",
            "  - matches `^[a-z]+$`",
            "  - at most 3 items",
            "- **Type:** `map[string]string`",
            "  - each value: at most 63 characters",
            "  - small widgets are mode A: `self.size > 1 || self.mode == 'A'`",
            "| [`spec.size`](#specsize) | integer (int32) | yes |  |",
            "| [`spec.parts[].name`](#specpartsname) | string | yes |  |",
            "| [`status.phase`](#statusphase) | string | no |  |",
        ] {
            assert!(doc.contains(expected), "missing {expected:?} in:\n{doc}");
        }
        // spec comes before status whatever the schema's order.
        assert!(doc.find("### Widget spec") < doc.find("### Widget status"));
    }

    #[test]
    fn repeated_headings_get_numbered_anchors_like_github() {
        let mut twice = sample();
        twice.spec.names.kind = "Gadget".into();
        twice.metadata.name = Some("gadgets.example.dev".into());
        let doc = render(&[sample(), twice]);
        assert!(doc.contains("| [`spec.size`](#specsize) |"));
        assert!(doc.contains("| [`spec.size`](#specsize-1) |"));
        assert_eq!(github_slug("1. No input crashes or wedges it"), "1-no-input-crashes-or-wedges-it");
        assert_eq!(github_slug("`spec.rotation.gracePeriod`"), "specrotationgraceperiod");
        assert_eq!(github_slug("Revoking, suspending"), "revoking-suspending");
    }

    #[test]
    fn the_operators_reference_covers_its_four_kinds() {
        let doc = generate();
        for kind in ["TwilioApiKey", "TwilioAccount", "ClusterTwilioAccount", "TwilioSubaccount"] {
            assert!(doc.contains(&format!("\n## {kind}\n")), "{kind}");
        }
        assert!(doc.contains("#### `spec.rotation.gracePeriod`"));
        assert!(doc.starts_with("<!-- Generated by `twilio-operator crd --docs`"));
    }
}

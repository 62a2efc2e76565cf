//! The Secret's extra entries (`spec.secret.template.data`): minijinja templates over the key's
//! values. A template is checked before any call to Twilio by rendering it with stand-in values
//! of the same shape ([`check`]); rendering with the real values ([`render`]) reports only that
//! it failed: which entry, which line, what kind of error could each depend on the secret (a
//! template may branch on its characters), and would tell it to whoever reads the status.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior, context};

use crate::api::TwilioApiKey;
use crate::twilio::{ExposeSecret, SecretString};

/// The most entries `template.data` may hold (the CRD's maxProperties).
pub const MAX_ENTRIES: usize = 32;
/// The longest template, in bytes (the CRD's maxLength).
pub const MAX_TEMPLATE_LEN: usize = 8192;
/// The most bytes all rendered entries may hold together (a Secret holds at most 1 MiB).
pub const MAX_RENDERED_BYTES: usize = 512 * 1024;
/// How much work one template may do (minijinja's fuel: about one unit per instruction): far
/// more than any template that formats a few values, far less than a loop that would hold up
/// the operator.
const FUEL: u64 = 50_000;

/// What a template can use.
pub struct Values<'a> {
    pub account_sid: &'a str,
    pub api_key_sid: &'a str,
    pub api_key_secret: &'a SecretString,
    pub region: &'a str,
    pub edge: Option<&'a str>,
    pub friendly_name: &'a str,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(16);
    // What the user wrote is what the entry holds, its last line break included.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder().keep_trailing_newline(true).build() {
        env.set_syntax(syntax);
    }
    env
}

/// The one error [`render`] reports, whatever failed.
pub const RENDER_FAILED: &str = "spec.secret.template.data renders with stand-in values but not with the key's own; \
what failed is not said, since it could depend on the secret (check conditions on apiKeySecret and other values)";

/// Renders every entry of the spec's template with `values`. An error says nothing but that it
/// failed ([`RENDER_FAILED`]): not the entry, the line or the kind, which could each depend on
/// the values.
pub fn render(resource: &TwilioApiKey, values: &Values<'_>) -> Result<BTreeMap<String, String>, String> {
    render_explained(resource, values).map_err(|_| RENDER_FAILED.to_string())
}

/// Like [`render`], with an error that names the entry, the kind of failure and its line: for
/// stand-in values only.
fn render_explained(resource: &TwilioApiKey, values: &Values<'_>) -> Result<BTreeMap<String, String>, String> {
    let Some(template) = &resource.spec.secret.template else {
        return Ok(BTreeMap::new());
    };
    let env = environment();
    let ctx = context! {
        accountSid => values.account_sid,
        apiKeySid => values.api_key_sid,
        apiKeySecret => values.api_key_secret.expose_secret(),
        region => values.region,
        edge => values.edge.unwrap_or_default(),
        friendlyName => values.friendly_name,
    };
    let mut rendered = BTreeMap::new();
    let mut total = 0;
    for (key, source) in &template.data {
        let text = env.render_str(source, ctx.clone()).map_err(|error| {
            let line = error.line().map(|line| format!(" (line {line})")).unwrap_or_default();
            format!("spec.secret.template.data.{key}: {}{line}", error.kind())
        })?;
        total += key.len() + text.len();
        if total > MAX_RENDERED_BYTES {
            return Err(format!(
                "spec.secret.template.data renders more than {} KiB; the Secret could not hold it",
                MAX_RENDERED_BYTES / 1024
            ));
        }
        rendered.insert(key.clone(), text);
    }
    Ok(rendered)
}

/// Checks the spec's template before any call to Twilio: its entries' names, sizes, syntax and
/// variables, by rendering it with stand-ins shaped like the real values (a secret is 32
/// characters). Stand-ins are not secrets, so this error may say what the template engine says.
pub fn check(resource: &TwilioApiKey) -> Result<(), String> {
    let Some(template) = &resource.spec.secret.template else {
        return Ok(());
    };
    if template.data.len() > MAX_ENTRIES {
        return Err(format!(
            "spec.secret.template.data has {} entries; at most {MAX_ENTRIES} are allowed",
            template.data.len()
        ));
    }
    let keys = &resource.spec.secret.keys;
    for (key, source) in &template.data {
        let valid = !key.is_empty()
            && key.len() <= 253
            && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            let key = crate::api::text::shorten(key, 80);
            return Err(format!("spec.secret.template.data key {key:?} is not a valid Secret data key"));
        }
        if [&keys.account_sid, &keys.api_key_sid, &keys.api_key_secret].contains(&key) {
            return Err(format!(
                "spec.secret.template.data.{key} is one of spec.secret.keys; the operator writes that entry itself"
            ));
        }
        if source.len() > MAX_TEMPLATE_LEN {
            return Err(format!(
                "spec.secret.template.data.{key} is {} bytes; at most {MAX_TEMPLATE_LEN} are allowed",
                source.len()
            ));
        }
    }
    let stand_in = SecretString::from("0".repeat(32));
    let values = Values {
        account_sid: "AC00000000000000000000000000000000",
        api_key_sid: "SK00000000000000000000000000000000",
        api_key_secret: &stand_in,
        region: "us1",
        edge: None,
        friendly_name: &resource.desired_friendly_name(),
    };
    let env = environment();
    for (key, source) in &template.data {
        env.template_from_str(source).map_err(|error| {
            format!("spec.secret.template.data.{key}: {}", crate::api::text::shorten(&error.to_string(), 200))
        })?;
    }
    render_explained(resource, &values).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::fixtures::standard;

    fn with_template(entries: &[(&str, &str)]) -> TwilioApiKey {
        let mut resource = standard();
        resource.spec.secret.template = Some(crate::api::SecretDataTemplate {
            data: entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        });
        resource
    }

    fn values(secret: &SecretString) -> Values<'_> {
        Values {
            account_sid: "AC1",
            api_key_sid: "SK1",
            api_key_secret: secret,
            region: "ie1",
            edge: Some("dublin"),
            friendly_name: "team/app",
        }
    }

    #[test]
    fn env_files_json_documents_and_connection_strings_render_from_the_key() {
        let resource = with_template(&[
            (
                "TWILIO_ENV",
                "TWILIO_ACCOUNT_SID={{ accountSid }}\nTWILIO_API_KEY={{ apiKeySid }}\nTWILIO_API_SECRET={{ apiKeySecret }}",
            ),
            (
                "twilio.json",
                r#"{"sid": {{ apiKeySid | tojson }}, "secret": {{ apiKeySecret | tojson }}, "region": {{ region | tojson }}}"#,
            ),
            (
                "TWILIO_URL",
                "https://{{ apiKeySid }}:{{ apiKeySecret | urlencode }}@api.{{ edge }}.{{ region }}.twilio.com",
            ),
        ]);
        check(&resource).expect("valid");
        let secret = SecretString::from("s3cr\"t/+");
        let rendered = render(&resource, &values(&secret)).unwrap();
        assert_eq!(rendered["TWILIO_ENV"], "TWILIO_ACCOUNT_SID=AC1\nTWILIO_API_KEY=SK1\nTWILIO_API_SECRET=s3cr\"t/+");
        let json: serde_json::Value = serde_json::from_str(&rendered["twilio.json"]).expect("valid JSON");
        assert_eq!(json, serde_json::json!({"sid": "SK1", "secret": "s3cr\"t/+", "region": "ie1"}));
        // As Jinja's, minijinja's urlencode leaves '/' as it is (Twilio's secrets are alphanumeric).
        assert_eq!(rendered["TWILIO_URL"], "https://SK1:s3cr%22t/%2B@api.dublin.ie1.twilio.com");
    }

    #[test]
    fn a_bad_template_is_refused_before_twilio_and_never_shows_a_value() {
        let refused = [
            (with_template(&[("A", "{{ apiKeySecret ")]), "spec.secret.template.data.A"),
            (with_template(&[("A", "{{ password }}")]), "undefined"),
            (with_template(&[("TWILIO_API_KEY", "x")]), "is one of spec.secret.keys"),
            (with_template(&[("bad key", "x")]), "not a valid Secret data key"),
            (
                with_template(&[(
                    "A",
                    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
                )]),
                "fuel",
            ),
        ];
        for (resource, expected) in refused {
            let problem = check(&resource).expect_err(expected);
            assert!(problem.to_lowercase().contains(&expected.to_lowercase()), "{problem}");
        }
        let too_many: Vec<(String, String)> = (0..33).map(|i| (format!("K{i}"), "x".to_string())).collect();
        let pairs: Vec<(&str, &str)> = too_many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(check(&with_template(&pairs)).is_err());

        // With the real values, only that it failed is told.
        let resource = with_template(&[("A", "{{ apiKeySecret | int }}")]);
        let secret = SecretString::from("not-a-number-s3cret");
        let problem = render(&resource, &values(&secret)).expect_err("not a number");
        assert_eq!(problem, RENDER_FAILED);
    }

    /// Defect: a template that fails on a line chosen by a character of the secret (and passes
    /// the stand-in check) told that line in the condition, one character per edit.
    #[test]
    fn a_failure_with_the_real_values_reads_the_same_whatever_the_secret() {
        let lines: String = "abcdefghij"
            .chars()
            .map(|c| format!("{{% if apiKeySecret[0] == '{c}' %}}{{{{ nope }}}}{{% endif %}}\n"))
            .collect();
        let resource = with_template(&[("A", &lines), ("B", "{% if apiKeySecret[1] == 'x' %}{{ nope }}{% endif %}")]);
        check(&resource).expect("the stand-in secret (zeros) takes no branch");
        let mut problems = std::collections::BTreeSet::new();
        for secret in ["a0", "c0", "j0", "0x"] {
            let secret = SecretString::from(secret);
            problems.insert(render(&resource, &values(&secret)).expect_err("fails with this secret"));
        }
        assert_eq!(problems.into_iter().collect::<Vec<_>>(), [RENDER_FAILED]);
    }
}

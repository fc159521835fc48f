//! JSON schemas for `kubeconform`, generated from a live kube-apiserver's OpenAPI v3 document
//! instead of downloaded: one file per kind it serves (built-in kinds and every CRD installed),
//! named the way kubeconform's `-schema-location` template looks them up, in a plain and a strict
//! variant (the strict one refuses fields the schema does not document, as `-strict` expects).
//!
//! Each group-version's definitions are written once (`_definitions/`); a kind's file is a
//! reference into them, so the directory stays a few megabytes.

use std::path::Path;

use kube::Client;
use serde_json::{Map, Value, json};

use crate::HarnessError;

/// The `-schema-location` template for a directory written by [`write_kubeconform_schemas`].
pub fn schema_location(dir: &Path) -> String {
    format!("{}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}{{{{ .StrictSuffix }}}}.json", dir.display())
}

/// Writes the schemas of every kind the apiserver serves into `dir`; returns how many kinds.
pub async fn write_kubeconform_schemas(client: &Client, dir: &Path) -> Result<usize, HarnessError> {
    let index: Value = get_json(client, "/openapi/v3").await?;
    let paths = index["paths"].as_object().ok_or_else(|| HarnessError::Kube("/openapi/v3 has no paths".into()))?;
    let definitions_dir = dir.join("_definitions");
    std::fs::create_dir_all(&definitions_dir).map_err(|e| HarnessError::io(&definitions_dir, e))?;
    let mut kinds = 0;
    for (path, entry) in paths {
        let Some(url) = entry["serverRelativeURL"].as_str() else { continue };
        let document: Value = get_json(client, url).await?;
        let Some(schemas) = document["components"]["schemas"].as_object() else { continue };
        let slug = path.replace('/', "-");
        for strict in [false, true] {
            let suffix = if strict { "-strict" } else { "" };
            let definitions: Map<String, Value> =
                schemas.iter().map(|(name, schema)| (name.clone(), to_json_schema(schema, strict))).collect();
            let file = definitions_dir.join(format!("{slug}{suffix}.json"));
            write(&file, &json!({ "definitions": definitions }))?;
            for (name, schema) in schemas {
                for (api_version, kind) in group_version_kinds(schema) {
                    let kind_file =
                        dir.join(format!("{}{}{suffix}.json", kind.to_lowercase(), kind_suffix(&api_version)));
                    let reference = format!("_definitions/{slug}{suffix}.json#/definitions/{name}");
                    write(&kind_file, &json!({ "$ref": reference }))?;
                    kinds += usize::from(!strict);
                }
            }
        }
    }
    Ok(kinds)
}

async fn get_json(client: &Client, url: &str) -> Result<Value, HarnessError> {
    let request = http::Request::get(url).body(Vec::new()).map_err(|e| HarnessError::Kube(e.to_string()))?;
    let text = client.request_text(request).await.map_err(|e| HarnessError::Kube(format!("GET {url}: {e}")))?;
    serde_json::from_str(&text).map_err(|e| HarnessError::Kube(format!("GET {url}: {e}")))
}

fn write(path: &Path, value: &Value) -> Result<(), HarnessError> {
    std::fs::write(path, serde_json::to_vec(value).expect("JSON values serialize"))
        .map_err(|e| HarnessError::io(path, e))
}

/// The `(apiVersion, kind)` pairs a schema describes (`x-kubernetes-group-version-kind`).
fn group_version_kinds(schema: &Value) -> Vec<(String, String)> {
    let Some(list) = schema["x-kubernetes-group-version-kind"].as_array() else { return Vec::new() };
    list.iter()
        .filter_map(|gvk| {
            let (group, version, kind) = (gvk["group"].as_str()?, gvk["version"].as_str()?, gvk["kind"].as_str()?);
            let api_version = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
            Some((api_version, kind.to_owned()))
        })
        .collect()
}

/// kubeconform's `{{ .KindSuffix }}`: `-v1`, `-apps-v1`, `-prospector-v1alpha1`.
fn kind_suffix(api_version: &str) -> String {
    let (group, version) = api_version.split_once('/').map_or((api_version, None), |(g, v)| (g, Some(v)));
    let first = group.split('.').next().unwrap_or(group).to_lowercase();
    match version {
        Some(version) => format!("-{first}-{}", version.to_lowercase()),
        None => format!("-{first}"),
    }
}

/// Turns an OpenAPI v3 schema into the JSON schema (draft 4) kubeconform evaluates:
/// references point into `definitions`, `nullable` becomes a `null` type, int-or-string and
/// quantities take either, and in strict mode objects with documented properties refuse others
/// (unless the schema preserves unknown fields).
fn to_json_schema(schema: &Value, strict: bool) -> Value {
    match schema {
        Value::Object(object) => {
            let mut out = Map::new();
            for (key, value) in object {
                let value = match key.as_str() {
                    "$ref" => Value::String(
                        value.as_str().unwrap_or_default().replace("#/components/schemas/", "#/definitions/"),
                    ),
                    _ => to_json_schema(value, strict),
                };
                out.insert(key.clone(), value);
            }
            if out.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) || is_quantity(&out) {
                out.remove("type");
                out.remove("format");
                out.insert("oneOf".into(), json!([{ "type": "string" }, { "type": "number" }]));
            }
            if out.remove("nullable") == Some(Value::Bool(true))
                && let Some(Value::String(kind)) = out.get("type").cloned()
            {
                out.insert("type".into(), json!([kind, "null"]));
            }
            let preserves_unknown = out.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            if strict
                && out.contains_key("properties")
                && !out.contains_key("additionalProperties")
                && !preserves_unknown
            {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| to_json_schema(v, strict)).collect()),
        other => other.clone(),
    }
}

/// `resource.Quantity` is documented as a string; the apiserver also accepts numbers.
fn is_quantity(schema: &Map<String, Value>) -> bool {
    schema.get("description").and_then(Value::as_str).is_some_and(|d| d.starts_with("Quantity is a fixed-point"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_suffixes_follow_kubeconform() {
        assert_eq!(kind_suffix("v1"), "-v1");
        assert_eq!(kind_suffix("apps/v1"), "-apps-v1");
        assert_eq!(kind_suffix("prospector.dev/v1alpha1"), "-prospector-v1alpha1");
        assert_eq!(kind_suffix("rbac.authorization.k8s.io/v1"), "-rbac-v1");
    }

    #[test]
    fn strict_schemas_refuse_undocumented_fields_unless_unknown_fields_are_preserved() {
        let schema = json!({
            "type": "object",
            "properties": {
                "spec": {"$ref": "#/components/schemas/Spec"},
                "free": {"type": "object", "properties": {"a": {}}, "x-kubernetes-preserve-unknown-fields": true},
                "port": {"x-kubernetes-int-or-string": true, "format": "int-or-string"},
                "note": {"type": "string", "nullable": true},
            },
        });
        let strict = to_json_schema(&schema, true);
        assert_eq!(strict["additionalProperties"], false);
        assert_eq!(strict["properties"]["spec"]["$ref"], "#/definitions/Spec");
        assert!(strict["properties"]["free"].get("additionalProperties").is_none());
        assert_eq!(strict["properties"]["port"]["oneOf"][1]["type"], "number");
        assert_eq!(strict["properties"]["note"]["type"], json!(["string", "null"]));
        assert!(to_json_schema(&schema, false).get("additionalProperties").is_none());
    }
}

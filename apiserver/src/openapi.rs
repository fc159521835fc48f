//! The API description served at `GET /openapi.json`, generated from the handlers' own types and
//! annotations, so it cannot drift from what the server answers.

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::routes::{agents, customers, knowledge, upload};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Prospector", description = "The seed system's REST API on Prospector's custom resources."),
    paths(
        customers::register,
        customers::registration_status,
        customers::get_customer,
        customers::quotas,
        customers::rotate_key,
        agents::deploy,
        agents::status,
        agents::terminate,
        agents::report_usage,
        upload::upload,
        knowledge::search_documents,
        knowledge::list,
        knowledge::delete,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme the paths name: an API key or the admin token.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A customer's API key (sa_…) or the platform admin token"))
                    .build(),
            ),
        );
    }
}

/// The schema of `agent_type`: the seed's five names.
pub fn agent_type() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some([
        "lead_qualifier",
        "lead_researcher",
        "outreach_writer",
        "meeting_scheduler",
        "custom",
    ]))
}

/// `GET /openapi.json`.
pub async fn serve() -> axum::Json<Document> {
    axum::Json(ApiDoc::openapi())
}

/// The document as `docs/openapi.json` holds it (written by the `openapi` binary; a test fails
/// when the committed file differs).
pub fn document_json() -> String {
    let mut json = serde_json::to_string_pretty(&ApiDoc::openapi()).expect("the document serializes");
    json.push('\n');
    json
}

/// Where the committed copy lives.
pub const COMMITTED_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_openapi_document_is_current() {
        let committed = std::fs::read_to_string(COMMITTED_PATH).unwrap_or_default();
        assert!(
            committed == document_json(),
            "docs/openapi.json is out of date: run `cargo run -p prospector-apiserver --bin openapi` and commit it"
        );
    }

    #[test]
    fn every_endpoint_is_described_with_its_errors() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [
            ("/api/customers/register", "post"),
            ("/api/customers/{customer_id}/agents/deploy", "post"),
            ("/api/customers/{customer_id}/agents/status", "get"),
            ("/api/customers/{customer_id}/agents/{deployment_id}", "delete"),
            ("/api/customers/{customer_id}/quotas", "get"),
            ("/api/knowledge/upload", "post"),
            ("/api/knowledge/search", "post"),
            ("/api/knowledge/docs/{customer_id}", "get"),
            ("/api/knowledge/docs/{customer_id}/{document_id}", "delete"),
            ("/api/customers/{customer_id}", "get"),
            ("/api/customers/{customer_id}/api-keys/rotate", "post"),
            ("/api/agents/{deployment_id}/usage", "post"),
        ] {
            let operation = &paths[path][method];
            assert!(operation.is_object(), "{method} {path} is not described");
            let responses = operation["responses"].as_object().unwrap();
            assert!(responses.contains_key("401"), "{method} {path} does not describe 401");
        }
        let agent_type = &doc["components"]["schemas"]["DeployRequest"]["properties"]["agent_type"];
        assert_eq!(agent_type["enum"].as_array().map(Vec::len), Some(5), "{agent_type}");
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}

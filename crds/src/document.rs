//! `KnowledgeDocument` (namespaced, in a customer namespace): a document of the customer's
//! knowledge base. The operator stores, extracts, chunks, embeds and indexes it, and mines it
//! for ICP criteria.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;
use crate::customer::IcpCriteria;

/// Inline text is capped so that a document fits comfortably in one etcd object.
pub const MAX_INLINE_TEXT_BYTES: usize = 256 * 1024;

/// One document of a customer's knowledge base.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "prospector.dev",
    version = "v1alpha1",
    kind = "KnowledgeDocument",
    plural = "knowledgedocuments",
    shortname = "kdoc",
    category = "prospector",
    namespaced,
    status = "KnowledgeDocumentStatus",
    printcolumn = r#"{"name":"Filename","type":"string","jsonPath":".spec.filename"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Chunks","type":"integer","jsonPath":".status.chunkCount"}"#,
    printcolumn = r#"{"name":"Document ID","type":"string","jsonPath":".status.documentId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KnowledgeDocumentSpec {
    /// The original file name, e.g. `icp.pdf`.
    #[schemars(extend("minLength" = 1, "maxLength" = 255))]
    pub filename: String,
    /// The declared media type. A hint only: the type is sniffed from the bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 255))]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 32, "items" = {"type": "string", "maxLength": 63}))]
    pub tags: Vec<String>,
    /// Where the bytes come from: exactly one source, fixed at creation.
    pub source: DocumentSource,
}

/// The origin of a document's bytes. Exactly one field is set, and it never changes: a new
/// version of a document is a new KnowledgeDocument.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "[has(self.blob), has(self.url), has(self.configMapKeyRef), has(self.text)].filter(x, x).size() == 1",
        "message": "exactly one of blob, url, configMapKeyRef or text must be set"
    },
    {"rule": "self == oldSelf", "message": "source is immutable; create a new document instead"}
]))]
pub struct DocumentSource {
    /// Bytes uploaded through the REST API and stored in Postgres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<BlobRef>,
    /// An http(s) URL the embedder fetches, within the upload size limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 2048, "x-kubernetes-validations" = [
        {"rule": "self.startsWith('https://') || self.startsWith('http://')", "message": "url must start with http:// or https://"}
    ]))]
    pub url: Option<String>,
    /// A key of a ConfigMap in the document's namespace (GitOps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeyRef>,
    /// Inline text, at most 256 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 262144))]
    pub text: Option<String>,
}

/// A blob stored in Postgres, deduplicated per customer by its SHA-256.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BlobRef {
    /// Lower-case hex SHA-256 of the bytes.
    #[schemars(extend("pattern" = "^[0-9a-f]{64}$"))]
    pub sha256: String,
    /// Size in bytes.
    #[schemars(extend("minimum" = 0))]
    pub size: i64,
}

/// A key of a ConfigMap in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigMapKeyRef {
    #[schemars(extend("minLength" = 1, "maxLength" = 253))]
    pub name: String,
    #[schemars(extend("minLength" = 1, "maxLength" = 253))]
    pub key: String,
}

/// Where a document is in the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DocumentPhase {
    Pending,
    Queued,
    Processing,
    Ready,
    Failed,
}

/// What the operator observed about a document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KnowledgeDocumentStatus {
    /// `doc_<hex>`, as in the seed API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DocumentPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_length: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
    /// Processing attempts so far.
    #[serde(default)]
    pub attempts: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icp: Option<IcpCriteria>,
    /// The last error, phrased so a person can act on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
